//! ListTransactions (API 66) response.

use kafka_protocol::messages::list_transactions_response::{
    ListTransactionsResponse, TransactionState,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for ListTransactionsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        // Always flexible; v1 and v2 changed only the request (duration and id-pattern filters).
        check_version(ApiKey::ListTransactions, v, 0, 2)?;
        let mut r = ListTransactionsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.error_code = src.i16()?;
        r.unknown_state_filters = src.array(|src| src.string())?;
        r.transaction_states = src.array(transaction_state)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn transaction_state<S: Source>(src: &mut S) -> Result<TransactionState> {
    let mut t = TransactionState::default();
    t.transactional_id = src.string()?.into();
    t.producer_id = src.i64()?.into();
    t.transaction_state = src.string()?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}
