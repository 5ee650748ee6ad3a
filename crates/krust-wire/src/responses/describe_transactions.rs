//! DescribeTransactions (API 65) response.

use kafka_protocol::messages::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DescribeTransactionsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        // A single version, flexible from the start.
        check_version(ApiKey::DescribeTransactions, v, 0, 0)?;
        let mut r = DescribeTransactionsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.transaction_states = src.array(transaction_state)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn transaction_state<S: Source>(src: &mut S) -> Result<TransactionState> {
    let mut t = TransactionState::default();
    t.error_code = src.i16()?;
    t.transactional_id = src.string()?.into();
    t.transaction_state = src.string()?;
    t.transaction_timeout_ms = src.i32()?;
    t.transaction_start_time_ms = src.i64()?;
    t.producer_id = src.i64()?.into();
    t.producer_epoch = src.i16()?;
    t.topics = src.array(topic)?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}

fn topic<S: Source>(src: &mut S) -> Result<TopicData> {
    let mut t = TopicData::default();
    t.topic = src.string()?.into();
    t.partitions = src.array(|src| src.i32())?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}
