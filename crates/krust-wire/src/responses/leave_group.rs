//! LeaveGroup (API 13) response.

use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for LeaveGroupResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::LeaveGroup, v, 0, 5)?;
        let mut r = LeaveGroupResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.error_code = src.i16()?;
        // v3 (KIP-345) made the request a batch; the response reports on each member.
        if v >= 3 {
            r.members = src.array(member)?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn member<S: Source>(src: &mut S) -> Result<MemberResponse> {
    let mut m = MemberResponse::default();
    m.member_id = src.string()?;
    m.group_instance_id = src.nullable_string()?;
    m.error_code = src.i16()?;
    m.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(m)
}
