//! DeleteTopics (API 20) response. Flexible from v4.

use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DeleteTopicsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DeleteTopics, v, 1, 6)?;
        let mut r = DeleteTopicsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.responses = src.array(|src| topic(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<DeletableTopicResult> {
    let mut t = DeletableTopicResult::default();
    // Nullable from v6 (topics may be deleted by id alone); before that, never null.
    t.name = if v >= 6 {
        src.nullable_string()?.map(Into::into)
    } else {
        Some(src.string()?.into())
    };
    if v >= 6 {
        t.topic_id = src.uuid()?;
    }
    t.error_code = src.i16()?;
    if v >= 5 {
        t.error_message = src.nullable_string()?;
    }
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}
