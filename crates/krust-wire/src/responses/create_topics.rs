//! CreateTopics (API 19) response. Flexible from v5, which also reports each new topic's
//! partition count, replication factor and configs.

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{tagged_fields_if_flexible, unknown_tagged_fields, Source};

/// Tag of `CreatableTopicResult::topic_config_error_code` (v5+).
const TOPIC_CONFIG_ERROR_CODE: u32 = 0;

impl DecodeResponse for CreateTopicsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::CreateTopics, v, 2, 7)?;
        let mut r = CreateTopicsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.topics = src.array(|src| topic(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S, v: i16) -> Result<CreatableTopicResult> {
    let mut t = CreatableTopicResult::default();
    t.name = src.string()?.into();
    if v >= 7 {
        t.topic_id = src.uuid()?;
    }
    t.error_code = src.i16()?;
    t.error_message = src.nullable_string()?;
    if v >= 5 {
        t.num_partitions = src.i32()?;
        t.replication_factor = src.i16()?;
        t.configs = src.nullable_array(config)?;
    }
    t.unknown_tagged_fields =
        tagged_fields_if_flexible(src, &[TOPIC_CONFIG_ERROR_CODE], |src, _tag| {
            t.topic_config_error_code = src.i16()?;
            Ok(())
        })?;
    Ok(t)
}

/// Only present from v5, where all its fields exist.
fn config<S: Source>(src: &mut S) -> Result<CreatableTopicConfigs> {
    let mut c = CreatableTopicConfigs::default();
    c.name = src.string()?;
    c.value = src.nullable_string()?;
    c.read_only = src.bool()?;
    c.config_source = src.i8()?;
    c.is_sensitive = src.bool()?;
    c.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(c)
}
