//! Fetch (API 1) response.
//!
//! Flexible from v12. Records stay an opaque, zero-copy slice of the frame here; record batches
//! are parsed by the batch codec. The response-level `node_endpoints` tag is defined from v16
//! only; at v12..=15 tag 0 is still reserved for it, so a non-empty tag 0 is rejected there (as
//! Kafka's own generated decoders do).

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch,
    NodeEndpoint, PartitionData, SnapshotId,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{tagged_fields_if_flexible, unknown_tagged_fields, Source};

/// Tags of `PartitionData`'s tagged fields.
const DIVERGING_EPOCH: u32 = 0;
const CURRENT_LEADER: u32 = 1;
const SNAPSHOT_ID: u32 = 2;

impl DecodeResponse for FetchResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::Fetch, v, 4, 18)?;
        let mut r = FetchResponse::default();
        r.throttle_time_ms = src.i32()?;
        if v >= 7 {
            r.error_code = src.i16()?;
            r.session_id = src.i32()?;
        }
        r.responses = src.array(|src| topic(src, v))?;
        r.unknown_tagged_fields = tagged_fields_if_flexible(src, &[0], |src, _tag| {
            if v >= 16 {
                r.node_endpoints = src.array(node_endpoint)?;
            }
            Ok(())
        })?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<FetchableTopicResponse> {
    let mut t = FetchableTopicResponse::default();
    // Topics are named up to v12 and identified by id from v13.
    if v <= 12 {
        t.topic = src.string()?.into();
    } else {
        t.topic_id = src.uuid()?;
    }
    t.partitions = src.array(|src| partition(src, v))?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S, v: i16) -> Result<PartitionData> {
    let mut p = PartitionData::default();
    p.partition_index = src.i32()?;
    p.error_code = src.i16()?;
    p.high_watermark = src.i64()?;
    p.last_stable_offset = src.i64()?;
    if v >= 5 {
        p.log_start_offset = src.i64()?;
    }
    p.aborted_transactions = src.nullable_array(aborted_transaction)?;
    if v >= 11 {
        p.preferred_read_replica = src.i32()?.into();
    }
    p.records = src.nullable_bytes()?;
    p.unknown_tagged_fields = tagged_fields_if_flexible(
        src,
        &[DIVERGING_EPOCH, CURRENT_LEADER, SNAPSHOT_ID],
        |src, tag| {
            match tag {
                DIVERGING_EPOCH => p.diverging_epoch = epoch_end_offset(src)?,
                CURRENT_LEADER => p.current_leader = leader(src)?,
                _ => p.snapshot_id = snapshot_id(src)?,
            }
            Ok(())
        },
    )?;
    Ok(p)
}

fn aborted_transaction<S: Source>(src: &mut S) -> Result<AbortedTransaction> {
    let mut a = AbortedTransaction::default();
    a.producer_id = src.i64()?.into();
    a.first_offset = src.i64()?;
    a.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(a)
}

/// Only ever decoded as a tagged field (v12+), where all its fields exist.
fn epoch_end_offset<S: Source>(src: &mut S) -> Result<EpochEndOffset> {
    let mut e = EpochEndOffset::default();
    e.epoch = src.i32()?;
    e.end_offset = src.i64()?;
    e.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(e)
}

/// Only ever decoded as a tagged field (v12+), where all its fields exist.
fn leader<S: Source>(src: &mut S) -> Result<LeaderIdAndEpoch> {
    let mut l = LeaderIdAndEpoch::default();
    l.leader_id = src.i32()?.into();
    l.leader_epoch = src.i32()?;
    l.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(l)
}

/// Only ever decoded as a tagged field (v12+).
fn snapshot_id<S: Source>(src: &mut S) -> Result<SnapshotId> {
    let mut s = SnapshotId::default();
    s.end_offset = src.i64()?;
    s.epoch = src.i32()?;
    s.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(s)
}

/// Only ever decoded as a tagged field (v16+), where all its fields exist.
fn node_endpoint<S: Source>(src: &mut S) -> Result<NodeEndpoint> {
    let mut n = NodeEndpoint::default();
    n.node_id = src.i32()?.into();
    n.host = src.string()?;
    n.port = src.i32()?;
    n.rack = src.nullable_string()?;
    n.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(n)
}
