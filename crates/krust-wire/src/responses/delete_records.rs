//! DeleteRecords (API 21) response. Flexible from v2.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DeleteRecordsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DeleteRecords, v, 0, 2)?;
        let mut r = DeleteRecordsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.topics = src.array(topic)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S) -> Result<DeleteRecordsTopicResult> {
    let mut t = DeleteRecordsTopicResult::default();
    t.name = src.string()?.into();
    t.partitions = src.array(partition)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition<S: Source>(src: &mut S) -> Result<DeleteRecordsPartitionResult> {
    let mut p = DeleteRecordsPartitionResult::default();
    p.partition_index = src.i32()?;
    p.low_watermark = src.i64()?;
    p.error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
