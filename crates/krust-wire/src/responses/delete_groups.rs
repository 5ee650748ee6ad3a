//! DeleteGroups (API 42) response. Flexible from v2.

use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DeleteGroupsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DeleteGroups, v, 0, 2)?;
        let mut r = DeleteGroupsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.results = src.array(group)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn group<S: Source>(src: &mut S) -> Result<DeletableGroupResult> {
    let mut g = DeletableGroupResult::default();
    g.group_id = src.string()?.into();
    g.error_code = src.i16()?;
    g.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(g)
}
