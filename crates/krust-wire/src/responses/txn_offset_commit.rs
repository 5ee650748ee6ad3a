//! TxnOffsetCommit (API 28) response.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for TxnOffsetCommitResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        // The layout is the same at every version; only flexibility (v3+) and the error codes a
        // broker may return change.
        check_version(ApiKey::TxnOffsetCommit, v, 0, 5)?;
        let mut r = TxnOffsetCommitResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.topics = src.array(topic)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S) -> Result<TxnOffsetCommitResponseTopic> {
    let mut t = TxnOffsetCommitResponseTopic::default();
    t.name = src.string()?.into();
    t.partitions = src.array(partition)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S) -> Result<TxnOffsetCommitResponsePartition> {
    let mut p = TxnOffsetCommitResponsePartition::default();
    p.partition_index = src.i32()?;
    p.error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
