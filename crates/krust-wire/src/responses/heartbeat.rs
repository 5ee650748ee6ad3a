//! Heartbeat (API 12) response.

use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for HeartbeatResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::Heartbeat, v, 0, 4)?;
        let mut r = HeartbeatResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.error_code = src.i16()?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
