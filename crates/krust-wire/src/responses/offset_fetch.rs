//! OffsetFetch (API 9) response.
//!
//! Two shapes: up to v7, one group's offsets by topic plus a top-level error code; from v8
//! (KIP-709) the offsets of several groups, each with its own error code. v10 (KIP-848)
//! identifies topics by id instead of by name.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for OffsetFetchResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::OffsetFetch, v, 1, 10)?;
        let mut r = OffsetFetchResponse::default();
        if v >= 3 {
            r.throttle_time_ms = src.i32()?;
        }
        if v <= 7 {
            r.topics = src.array(|src| topic(src, v))?;
            if v >= 2 {
                r.error_code = src.i16()?;
            }
        } else {
            r.groups = src.array(|src| group(src, v))?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

/// A topic of the single-group shape (v1 to v7).
fn topic<S: Source>(src: &mut S, v: i16) -> Result<OffsetFetchResponseTopic> {
    let mut t = OffsetFetchResponseTopic::default();
    t.name = src.string()?.into();
    t.partitions = src.array(|src| partition(src, v))?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S, v: i16) -> Result<OffsetFetchResponsePartition> {
    let mut p = OffsetFetchResponsePartition::default();
    p.partition_index = src.i32()?;
    p.committed_offset = src.i64()?;
    if v >= 5 {
        p.committed_leader_epoch = src.i32()?;
    }
    p.metadata = src.nullable_string()?;
    p.error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}

/// A group of the multi-group shape (v8 and later).
fn group<S: Source>(src: &mut S, v: i16) -> Result<OffsetFetchResponseGroup> {
    let mut g = OffsetFetchResponseGroup::default();
    g.group_id = src.string()?.into();
    g.topics = src.array(|src| group_topic(src, v))?;
    g.error_code = src.i16()?;
    g.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(g)
}

fn group_topic<S: Source>(src: &mut S, v: i16) -> Result<OffsetFetchResponseTopics> {
    let mut t = OffsetFetchResponseTopics::default();
    // v10 carries the topic id in place of the name (absent, not null).
    if v <= 9 {
        t.name = src.string()?.into();
    } else {
        t.topic_id = src.uuid()?;
    }
    t.partitions = src.array(group_partition)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn group_partition<S: Source>(src: &mut S) -> Result<OffsetFetchResponsePartitions> {
    let mut p = OffsetFetchResponsePartitions::default();
    p.partition_index = src.i32()?;
    p.committed_offset = src.i64()?;
    p.committed_leader_epoch = src.i32()?;
    p.metadata = src.nullable_string()?;
    p.error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
