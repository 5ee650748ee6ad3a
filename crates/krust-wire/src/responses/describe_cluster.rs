//! DescribeCluster (API 60) response. Flexible at every version; v1 adds the endpoint type,
//! v2 whether each broker is fenced.

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for DescribeClusterResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::DescribeCluster, v, 0, 2)?;
        let mut r = DescribeClusterResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.error_code = src.i16()?;
        r.error_message = src.nullable_string()?;
        if v >= 1 {
            r.endpoint_type = src.i8()?;
        }
        r.cluster_id = src.string()?;
        r.controller_id = src.i32()?.into();
        r.brokers = src.array(|src| broker(src, v))?;
        r.cluster_authorized_operations = src.i32()?;
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}

fn broker<S: Source>(src: &mut S, v: i16) -> Result<DescribeClusterBroker> {
    let mut b = DescribeClusterBroker::default();
    b.broker_id = src.i32()?.into();
    b.host = src.string()?;
    b.port = src.i32()?;
    b.rack = src.nullable_string()?;
    if v >= 2 {
        b.is_fenced = src.bool()?;
    }
    b.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(b)
}
