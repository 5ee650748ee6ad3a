//! EndTxn (API 26) response.

use kafka_protocol::messages::end_txn_response::EndTxnResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for EndTxnResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::EndTxn, v, 0, 5)?;
        let mut r = EndTxnResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.error_code = src.i16()?;
        // v5 (KIP-890): the producer id and epoch to use after the transaction ends (the
        // coordinator bumps the epoch on every EndTxn); older versions keep the -1 defaults.
        if v >= 5 {
            r.producer_id = src.i64()?.into();
            r.producer_epoch = src.i16()?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
