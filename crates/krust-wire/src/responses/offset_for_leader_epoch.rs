//! OffsetForLeaderEpoch (API 23) response. Flexible from v4.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for OffsetForLeaderEpochResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::OffsetForLeaderEpoch, v, 2, 4)?;
        let mut r = OffsetForLeaderEpochResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.topics = src.array(topic)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S) -> Result<OffsetForLeaderTopicResult> {
    let mut t = OffsetForLeaderTopicResult::default();
    t.topic = src.string()?.into();
    t.partitions = src.array(partition)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S) -> Result<EpochEndOffset> {
    let mut p = EpochEndOffset::default();
    p.error_code = src.i16()?;
    p.partition = src.i32()?;
    p.leader_epoch = src.i32()?;
    p.end_offset = src.i64()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
