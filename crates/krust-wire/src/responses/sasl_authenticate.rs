//! SaslAuthenticate (API 36) response. Flexible from v2.

use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for SaslAuthenticateResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::SaslAuthenticate, v, 0, 2)?;
        let mut r = SaslAuthenticateResponse::default();
        r.error_code = src.i16()?;
        r.error_message = src.nullable_string()?;
        r.auth_bytes = src.bytes()?;
        if v >= 1 {
            r.session_lifetime_ms = src.i64()?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
