//! AddPartitionsToTxn (API 24) response.
//!
//! Two shapes: up to v3, one transaction's results by topic; from v4 (KIP-890, sent by brokers
//! to verify transactions on each other's behalf) a top-level error code and the results of
//! several transactions, each by topic. The per-topic result is the same struct in both.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for AddPartitionsToTxnResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::AddPartitionsToTxn, v, 0, 5)?;
        let mut r = AddPartitionsToTxnResponse::default();
        r.throttle_time_ms = src.i32()?;
        if v >= 4 {
            r.error_code = src.i16()?;
            r.results_by_transaction = src.array(transaction_result)?;
        } else {
            r.results_by_topic_v3_and_below = src.array(topic_result)?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn transaction_result<S: Source>(src: &mut S) -> Result<AddPartitionsToTxnResult> {
    let mut t = AddPartitionsToTxnResult::default();
    t.transactional_id = src.string()?.into();
    t.topic_results = src.array(topic_result)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn topic_result<S: Source>(src: &mut S) -> Result<AddPartitionsToTxnTopicResult> {
    let mut t = AddPartitionsToTxnTopicResult::default();
    t.name = src.string()?.into();
    t.results_by_partition = src.array(partition_result)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn partition_result<S: Source>(src: &mut S) -> Result<AddPartitionsToTxnPartitionResult> {
    let mut p = AddPartitionsToTxnPartitionResult::default();
    p.partition_index = src.i32()?;
    p.partition_error_code = src.i16()?;
    p.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(p)
}
