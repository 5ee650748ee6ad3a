//! ListGroups (API 16) response.

use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for ListGroupsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::ListGroups, v, 0, 5)?;
        let mut r = ListGroupsResponse::default();
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.error_code = src.i16()?;
        r.groups = src.array(|src| group(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn group<S: Source>(src: &mut S, v: i16) -> Result<ListedGroup> {
    let mut g = ListedGroup::default();
    g.group_id = src.string()?.into();
    g.protocol_type = src.string()?;
    if v >= 4 {
        g.group_state = src.string()?;
    }
    if v >= 5 {
        g.group_type = src.string()?;
    }
    g.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(g)
}
