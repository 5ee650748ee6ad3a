//! Metadata (API 3) response.

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for MetadataResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::Metadata, v, 0, 13)?;
        let mut r = MetadataResponse::default();
        if v >= 3 {
            r.throttle_time_ms = src.i32()?;
        }
        r.brokers = src.array(|src| broker(src, v))?;
        if v >= 2 {
            r.cluster_id = src.nullable_string()?;
        }
        if v >= 1 {
            r.controller_id = src.i32()?.into();
        }
        r.topics = src.array(|src| topic(src, v))?;
        if (8..=10).contains(&v) {
            r.cluster_authorized_operations = src.i32()?;
        }
        if v >= 13 {
            r.error_code = src.i16()?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn broker<S: Source>(src: &mut S, v: i16) -> Result<MetadataResponseBroker> {
    let mut b = MetadataResponseBroker::default();
    b.node_id = src.i32()?.into();
    b.host = src.string()?;
    b.port = src.i32()?;
    if v >= 1 {
        b.rack = src.nullable_string()?;
    }
    b.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(b)
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<MetadataResponseTopic> {
    let mut t = MetadataResponseTopic::default();
    t.error_code = src.i16()?;
    // Nullable from v12 (topics may be identified by id alone); before that, never null.
    t.name = if v >= 12 {
        src.nullable_string()?.map(Into::into)
    } else {
        Some(src.string()?.into())
    };
    if v >= 10 {
        t.topic_id = src.uuid()?;
    }
    if v >= 1 {
        t.is_internal = src.bool()?;
    }
    t.partitions = src.array(|src| partition(src, v))?;
    if v >= 8 {
        t.topic_authorized_operations = src.i32()?;
    }
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S, v: i16) -> Result<MetadataResponsePartition> {
    let mut p = MetadataResponsePartition::default();
    p.error_code = src.i16()?;
    p.partition_index = src.i32()?;
    p.leader_id = src.i32()?.into();
    if v >= 7 {
        p.leader_epoch = src.i32()?;
    }
    p.replica_nodes = src.array(|src| src.i32().map(Into::into))?;
    p.isr_nodes = src.array(|src| src.i32().map(Into::into))?;
    if v >= 5 {
        p.offline_replicas = src.array(|src| src.i32().map(Into::into))?;
    }
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
