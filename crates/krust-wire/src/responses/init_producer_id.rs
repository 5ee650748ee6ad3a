//! InitProducerId (API 22) response.

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{unknown_tagged_fields, Source};

impl DecodeResponse for InitProducerIdResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::InitProducerId, v, 0, 6)?;
        let mut r = InitProducerIdResponse::default();
        r.throttle_time_ms = src.i32()?;
        r.error_code = src.i16()?;
        r.producer_id = src.i64()?.into();
        r.producer_epoch = src.i16()?;
        // v6 (KIP-939, two-phase commit): the producer of a transaction left prepared, if any;
        // older versions keep the -1 defaults.
        if v >= 6 {
            r.ongoing_txn_producer_id = src.i64()?.into();
            r.ongoing_txn_producer_epoch = src.i16()?;
        }
        r.unknown_tagged_fields = unknown_tagged_fields(src)?;
        Ok(r)
    }
}
