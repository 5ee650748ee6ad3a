//! SyncGroup (API 14) response.

use kafka_protocol::messages::sync_group_response::SyncGroupResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for SyncGroupResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::SyncGroup, v, 0, 5)?;
        let mut r = SyncGroupResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.error_code = src.i16()?;
        // v5 (KIP-559): both nullable, and null (the default) before v5.
        if v >= 5 {
            r.protocol_type = src.nullable_string()?;
            r.protocol_name = src.nullable_string()?;
        }
        // The member's assignment, opaque to the wire layer: a zero-copy slice of the frame.
        r.assignment = src.bytes()?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
