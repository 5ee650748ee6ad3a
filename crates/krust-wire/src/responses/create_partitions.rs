//! CreatePartitions (API 37) response. Flexible from v2.

use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for CreatePartitionsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::CreatePartitions, v, 0, 3)?;
        let mut r = CreatePartitionsResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.results = src.array(topic)?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn topic<S: Source>(src: &mut S) -> Result<CreatePartitionsTopicResult> {
    let mut t = CreatePartitionsTopicResult::default();
    t.name = src.string()?.into();
    t.error_code = src.i16()?;
    t.error_message = src.nullable_string()?;
    t.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(t)
}
