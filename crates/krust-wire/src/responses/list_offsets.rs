//! ListOffsets (API 2) response. Flexible from v6.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for ListOffsetsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::ListOffsets, v, 1, 10)?;
        let mut r = ListOffsetsResponse::default();
        if v >= 2 {
            r.throttle_time_ms = src.i32()?;
        }
        r.topics = src.array(|src| topic(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<ListOffsetsTopicResponse> {
    let mut t = ListOffsetsTopicResponse::default();
    t.name = src.string()?.into();
    t.partitions = src.array(|src| partition(src, v))?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S, v: i16) -> Result<ListOffsetsPartitionResponse> {
    let mut p = ListOffsetsPartitionResponse::default();
    p.partition_index = src.i32()?;
    p.error_code = src.i16()?;
    p.timestamp = src.i64()?;
    p.offset = src.i64()?;
    if v >= 4 {
        p.leader_epoch = src.i32()?;
    }
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
