//! Produce (API 0) response.
//!
//! Flexible from v9. The tagged fields `current_leader` (per partition) and `node_endpoints`
//! (response level) are defined from v10 only; at v9 tag 0 is still reserved for them, so a
//! non-empty tag 0 is rejected there (as Kafka's own generated decoders do) instead of being kept
//! as an unknown field that could never be encoded again.

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    ProduceResponse, TopicProduceResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{tagged_fields_if_flexible, unknown_tagged_fields, Source};

impl DecodeResponse for ProduceResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::Produce, v, 3, 13)?;
        let mut r = ProduceResponse::default();
        r.responses = src.array(|src| topic(src, v))?;
        r.throttle_time_ms = src.i32()?;
        r.unknown_tagged_fields = tagged_fields_if_flexible(src, &[0], |src, _tag| {
            if v >= 10 {
                r.node_endpoints = src.array(node_endpoint)?;
            }
            Ok(())
        })?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<TopicProduceResponse> {
    let mut t = TopicProduceResponse::default();
    // Topics are named up to v12 and identified by id from v13.
    if v <= 12 {
        t.name = src.string()?.into();
    } else {
        t.topic_id = src.uuid()?;
    }
    t.partition_responses = src.array(|src| partition(src, v))?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S, v: i16) -> Result<PartitionProduceResponse> {
    let mut p = PartitionProduceResponse::default();
    p.index = src.i32()?;
    p.error_code = src.i16()?;
    p.base_offset = src.i64()?;
    p.log_append_time_ms = src.i64()?;
    if v >= 5 {
        p.log_start_offset = src.i64()?;
    }
    if v >= 8 {
        p.record_errors = src.array(record_error)?;
        p.error_message = src.nullable_string()?;
    }
    p.unknown_tagged_fields = tagged_fields_if_flexible(src, &[0], |src, _tag| {
        if v >= 10 {
            p.current_leader = leader(src)?;
        }
        Ok(())
    })?;
    Ok(p)
}

fn record_error<S: Source>(src: &mut S) -> Result<BatchIndexAndErrorMessage> {
    let mut e = BatchIndexAndErrorMessage::default();
    e.batch_index = src.i32()?;
    e.batch_index_error_message = src.nullable_string()?;
    e.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(e)
}

/// Only ever decoded as a tagged field, hence only at v10+ where all its fields exist.
fn leader<S: Source>(src: &mut S) -> Result<LeaderIdAndEpoch> {
    let mut l = LeaderIdAndEpoch::default();
    l.leader_id = src.i32()?.into();
    l.leader_epoch = src.i32()?;
    l.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(l)
}

/// Only ever decoded as a tagged field, hence only at v10+ where all its fields exist.
fn node_endpoint<S: Source>(src: &mut S) -> Result<NodeEndpoint> {
    let mut n = NodeEndpoint::default();
    n.node_id = src.i32()?.into();
    n.host = src.string()?;
    n.port = src.i32()?;
    n.rack = src.nullable_string()?;
    n.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::ProduceResponse;

    use crate::decode_response;

    /// A v9 (flexible) response with one partition whose tagged section holds `tag0`.
    fn v9_with_tag0(tag0: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(2); // one topic
        b.put_slice(&[2, b't']); // name "t"
        b.put_u8(2); // one partition
        b.put_i32(0); // index
        b.put_i16(0); // error code
        b.put_i64(10); // base offset
        b.put_i64(-1); // log append time
        b.put_i64(0); // log start offset
        b.put_u8(1); // no record errors
        b.put_u8(0); // null error message
        b.put_slice(&[1, 0, tag0.len() as u8]); // one tagged field: tag 0
        b.put_slice(tag0);
        b.put_u8(0); // topic tagged fields
        b.put_i32(0); // throttle time
        b.put_u8(0); // response tagged fields
        b.freeze()
    }

    #[test]
    fn tag_zero_before_v10_is_rejected_unless_empty() {
        // Tag 0 (current_leader) only exists from v10. Kafka's generated decoders reject it at
        // v9; keeping it as unknown would produce a value kafka-protocol cannot encode back.
        assert!(decode_response::<ProduceResponse>(v9_with_tag0(&[0; 9]), 9).is_err());
        let r = decode_response::<ProduceResponse>(v9_with_tag0(&[]), 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.base_offset, 10);
        assert_eq!(p.current_leader, Default::default());
        assert!(p.unknown_tagged_fields.is_empty());
    }
}
