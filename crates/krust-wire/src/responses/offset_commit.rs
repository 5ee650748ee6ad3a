//! OffsetCommit (API 8) response.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for OffsetCommitResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::OffsetCommit, v, 2, 10)?;
        let mut r = OffsetCommitResponse::default();
        if v >= 3 {
            r.throttle_time_ms = src.i32()?;
        }
        r.topics = src.array(|src| topic(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<OffsetCommitResponseTopic> {
    let mut t = OffsetCommitResponseTopic::default();
    // v10 (KIP-848) identifies topics by id instead of by name: the name is absent, not null.
    if v <= 9 {
        t.name = src.string()?.into();
    } else {
        t.topic_id = src.uuid()?;
    }
    t.partitions = src.array(partition)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S) -> Result<OffsetCommitResponsePartition> {
    let mut p = OffsetCommitResponsePartition::default();
    p.partition_index = src.i32()?;
    p.error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
