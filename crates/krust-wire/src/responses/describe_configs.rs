//! DescribeConfigs (API 32) response. Flexible from v4; v3 adds each config's type and
//! documentation.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DescribeConfigsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DescribeConfigs, v, 1, 4)?;
        let mut r = DescribeConfigsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.results = src.array(|src| resource(src, v))?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn resource<S: Source>(src: &mut S, v: i16) -> Result<DescribeConfigsResult> {
    let mut res = DescribeConfigsResult::default();
    res.error_code = src.i16()?;
    res.error_message = src.nullable_string()?;
    res.resource_type = src.i8()?;
    res.resource_name = src.string()?;
    res.configs = src.array(|src| config(src, v))?;
    res.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(res)
}

fn config<S: Source>(src: &mut S, v: i16) -> Result<DescribeConfigsResourceResult> {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = src.string()?;
    c.value = src.nullable_string()?;
    c.read_only = src.bool()?;
    c.config_source = src.i8()?;
    c.is_sensitive = src.bool()?;
    c.synonyms = src.array(synonym)?;
    if v >= 3 {
        c.config_type = src.i8()?;
        c.documentation = src.nullable_string()?;
    }
    c.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(c)
}

fn synonym<S: Source>(src: &mut S) -> Result<DescribeConfigsSynonym> {
    let mut s = DescribeConfigsSynonym::default();
    s.name = src.string()?;
    s.value = src.nullable_string()?;
    s.source = src.i8()?;
    s.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(s)
}
