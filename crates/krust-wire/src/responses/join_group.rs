//! JoinGroup (API 11) response.

use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for JoinGroupResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::JoinGroup, v, 0, 9)?;
        let mut r = JoinGroupResponse::default();
        if v >= 2 {
            r.throttle_time_ms = src.i32()?;
        }
        r.error_code = src.i16()?;
        r.generation_id = src.i32()?;
        if v >= 7 {
            r.protocol_type = src.nullable_string()?;
        }
        // Nullable from v7 (KIP-559: null when the join failed); before that, never null.
        r.protocol_name = if v >= 7 {
            src.nullable_string()?
        } else {
            Some(src.string()?)
        };
        r.leader = src.string()?;
        if v >= 9 {
            r.skip_assignment = src.bool()?;
        }
        r.member_id = src.string()?;
        r.members = src.array(|src| member(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn member<S: Source>(src: &mut S, v: i16) -> Result<JoinGroupResponseMember> {
    let mut m = JoinGroupResponseMember::default();
    m.member_id = src.string()?;
    if v >= 5 {
        m.group_instance_id = src.nullable_string()?;
    }
    // The member's subscription metadata, opaque to the wire layer: a zero-copy slice.
    m.metadata = src.bytes()?;
    m.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(m)
}
