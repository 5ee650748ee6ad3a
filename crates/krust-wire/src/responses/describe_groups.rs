//! DescribeGroups (API 15) response.

use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DescribeGroupsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DescribeGroups, v, 0, 6)?;
        let mut r = DescribeGroupsResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.groups = src.array(|src| group(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn group<S: Source>(src: &mut S, v: i16) -> Result<DescribedGroup> {
    let mut g = DescribedGroup::default();
    g.error_code = src.i16()?;
    // v6 places the (nullable) error message right after the code, before the group id.
    if v >= 6 {
        g.error_message = src.nullable_string()?;
    }
    g.group_id = src.string()?.into();
    g.group_state = src.string()?;
    g.protocol_type = src.string()?;
    g.protocol_data = src.string()?;
    g.members = src.array(|src| member(src, v))?;
    if v >= 3 {
        g.authorized_operations = src.i32()?;
    }
    g.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(g)
}

fn member<S: Source>(src: &mut S, v: i16) -> Result<DescribedGroupMember> {
    let mut m = DescribedGroupMember::default();
    m.member_id = src.string()?;
    if v >= 4 {
        m.group_instance_id = src.nullable_string()?;
    }
    m.client_id = src.string()?;
    m.client_host = src.string()?;
    // Both opaque to the wire layer (embedded consumer-protocol messages): zero-copy slices.
    m.member_metadata = src.bytes()?;
    m.member_assignment = src.bytes()?;
    m.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(m)
}
