//! AddOffsetsToTxn (API 25) response.

use kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for AddOffsetsToTxnResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::AddOffsetsToTxn, v, 0, 4)?;
        let mut r = AddOffsetsToTxnResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.error_code = src.i16()?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
