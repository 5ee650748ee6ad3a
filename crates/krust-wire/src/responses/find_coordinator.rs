//! FindCoordinator (API 10) response.
//!
//! Flexible from v3. Up to v3 the response describes one coordinator; from v4 (batched lookups,
//! KIP-699) it carries a list of them and the top-level fields are gone.

use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for FindCoordinatorResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::FindCoordinator, v, 0, 6)?;
        let mut r = FindCoordinatorResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        if v <= 3 {
            r.error_code = src.i16()?;
            if v >= 1 {
                r.error_message = src.nullable_string()?;
            }
            r.node_id = src.i32()?.into();
            r.host = src.string()?;
            r.port = src.i32()?;
        } else {
            r.coordinators = src.array(coordinator)?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

/// Only present from v4, where all its fields exist.
fn coordinator<S: Source>(src: &mut S) -> Result<Coordinator> {
    let mut c = Coordinator::default();
    c.key = src.string()?;
    c.node_id = src.i32()?.into();
    c.host = src.string()?;
    c.port = src.i32()?;
    c.error_code = src.i16()?;
    c.error_message = src.nullable_string()?;
    c.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(c)
}
