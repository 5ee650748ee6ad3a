//! SaslHandshake (API 17) response. Never flexible, and has no tagged fields.

use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::Source;

impl DecodeResponse for SaslHandshakeResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::SaslHandshake, v, 0, 1)?;
        let mut r = SaslHandshakeResponse::default();
        r.error_code = src.i16()?;
        r.mechanisms = src.array(|src| src.string())?;
        Ok(r)
    }
}
