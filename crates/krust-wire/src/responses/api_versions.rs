//! ApiVersions (API 18) response.
//!
//! Flexible from v3, but unlike every other API its response *header* stays v0 (no tagged
//! fields) even then, so that a client can read the answer before knowing what the broker
//! speaks; that is the header's business, the body below follows the usual rule. A broker that
//! does not support the requested version answers UNSUPPORTED_VERSION with a v0 body, so a
//! caller that fails to decode a newer version can retry the same bytes as v0.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, ApiVersionsResponse, FinalizedFeatureKey, SupportedFeatureKey,
};

use super::{check_version, DecodeResponse};
use crate::api::ApiKey;
use crate::error::Result;
use crate::protocol::{tagged_fields_if_flexible, unknown_tagged_fields, Source};

/// Tags of the response's tagged fields (all v3+).
const SUPPORTED_FEATURES: u32 = 0;
const FINALIZED_FEATURES_EPOCH: u32 = 1;
const FINALIZED_FEATURES: u32 = 2;
const ZK_MIGRATION_READY: u32 = 3;

impl DecodeResponse for ApiVersionsResponse {
    fn decode_body<S: Source>(src: &mut S, v: i16) -> Result<Self> {
        check_version(ApiKey::ApiVersions, v, 0, 4)?;
        let mut r = ApiVersionsResponse::default();
        r.error_code = src.i16()?;
        r.api_keys = src.array(api_version)?;
        if v >= 1 {
            r.throttle_time_ms = src.i32()?;
        }
        r.unknown_tagged_fields = tagged_fields_if_flexible(
            src,
            &[
                SUPPORTED_FEATURES,
                FINALIZED_FEATURES_EPOCH,
                FINALIZED_FEATURES,
                ZK_MIGRATION_READY,
            ],
            |src, tag| {
                match tag {
                    SUPPORTED_FEATURES => r.supported_features = src.array(supported_feature)?,
                    FINALIZED_FEATURES_EPOCH => r.finalized_features_epoch = src.i64()?,
                    FINALIZED_FEATURES => r.finalized_features = src.array(finalized_feature)?,
                    _ => r.zk_migration_ready = src.bool()?,
                }
                Ok(())
            },
        )?;
        Ok(r)
    }
}

fn api_version<S: Source>(src: &mut S) -> Result<ApiVersion> {
    let mut a = ApiVersion::default();
    a.api_key = src.i16()?;
    a.min_version = src.i16()?;
    a.max_version = src.i16()?;
    a.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(a)
}

/// Only ever decoded inside a tagged field (v3+), where all its fields exist.
fn supported_feature<S: Source>(src: &mut S) -> Result<SupportedFeatureKey> {
    let mut f = SupportedFeatureKey::default();
    f.name = src.string()?;
    f.min_version = src.i16()?;
    f.max_version = src.i16()?;
    f.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(f)
}

/// Only ever decoded inside a tagged field (v3+), where all its fields exist.
fn finalized_feature<S: Source>(src: &mut S) -> Result<FinalizedFeatureKey> {
    let mut f = FinalizedFeatureKey::default();
    f.name = src.string()?;
    f.max_version_level = src.i16()?;
    f.min_version_level = src.i16()?;
    f.unknown_tagged_fields = unknown_tagged_fields(src)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ApiVersionsResponse;

    use crate::api::ApiKey;
    use crate::decode_response;

    #[test]
    fn body_is_flexible_from_v3() {
        assert!(!ApiKey::ApiVersions.is_flexible(2));
        assert!(ApiKey::ApiVersions.is_flexible(3));
        assert!(ApiKey::ApiVersions.is_flexible(4));
    }

    #[test]
    fn unsupported_version_answer_decodes_as_v0() {
        // What a broker sends when it does not know the requested version: a v0 body.
        let mut b = BytesMut::new();
        b.put_i16(35); // UNSUPPORTED_VERSION
        b.put_i32(1); // one API
        b.put_slice(&[0, 18, 0, 0, 0, 3]); // ApiVersions 0..=3
        let body = b.freeze();
        let r = decode_response::<ApiVersionsResponse>(body.clone(), 0).unwrap();
        assert_eq!(r.error_code, 35);
        assert_eq!((r.api_keys[0].api_key, r.api_keys[0].max_version), (18, 3));
        assert!(decode_response::<ApiVersionsResponse>(body, 3).is_err());
    }
}
