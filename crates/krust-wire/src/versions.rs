//! Version negotiation: per API, the highest version inside both krust's range
//! ([`ApiKey::client_range`]) and the range the broker announced in its ApiVersions answer.
//!
//! ApiVersions itself is bootstrapped: krust first asks with the highest version it speaks. A
//! broker that does not know that version answers `UNSUPPORTED_VERSION` with a *v0* body
//! listing the ApiVersions versions it does support ([`decode_api_versions`] handles that), and
//! krust asks again with the highest version both sides know ([`api_versions_retry`]).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::api::ApiKey;
use crate::error::{Error, Result};
use crate::error_code::ErrorCode;
use crate::responses::decode_response;

/// The version ranges one broker supports, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerVersions {
    ranges: HashMap<i16, (i16, i16)>,
    transaction_version: Option<i16>,
}

impl BrokerVersions {
    /// The ranges from a successful ApiVersions response.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        BrokerVersions {
            ranges: resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
            transaction_version: crate::features::transaction_version(resp),
        }
    }

    /// The cluster's finalized `transaction.version` as this broker announced it (see
    /// [`crate::features::transaction_version`]); `None` when it announced none.
    pub fn transaction_version(&self) -> Option<i16> {
        self.transaction_version
    }

    /// A broker that supports exactly `ranges` (for tests and fakes).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (i16, (i16, i16))>) -> Self {
        BrokerVersions {
            ranges: ranges.into_iter().collect(),
            transaction_version: None,
        }
    }

    /// The broker's range for `api`, if it offers the API at all.
    pub fn range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&api.key()).copied()
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn negotiate(&self, api: ApiKey) -> Result<i16> {
        let (cmin, cmax) = api.client_range();
        let (bmin, bmax) = self.range(api).ok_or(Error::UnsupportedApi {
            api: api.name(),
            key: api.key(),
        })?;
        let (lo, hi) = (cmin.max(bmin), cmax.min(bmax));
        if lo > hi {
            return Err(Error::NoCommonVersion {
                api: api.name(),
                client_min: cmin,
                client_max: cmax,
                broker_min: bmin,
                broker_max: bmax,
            });
        }
        Ok(hi)
    }

    /// Whether the broker offers `api` in a version krust can use.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.negotiate(api).is_ok()
    }
}

/// Decodes an ApiVersions response to a request of `requested` version. A broker that rejects
/// the version answers `UNSUPPORTED_VERSION` with a v0 body; that case is decoded as v0.
pub fn decode_api_versions(body: Bytes, requested: i16) -> Result<ApiVersionsResponse> {
    // The error code is the first field in every version.
    if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == ErrorCode::UNSUPPORTED_VERSION.0
    {
        if let Ok(r) = decode_response::<ApiVersionsResponse>(body.clone(), 0) {
            return Ok(r);
        }
    }
    decode_response(body, requested)
}

/// After an `UNSUPPORTED_VERSION` answer, the ApiVersions version to ask with next: the highest
/// version both krust and the broker know, or `None` if there is none (or the answer was not
/// `UNSUPPORTED_VERSION`).
pub fn api_versions_retry(resp: &ApiVersionsResponse, requested: i16) -> Option<i16> {
    if resp.error_code != ErrorCode::UNSUPPORTED_VERSION.0 {
        return None;
    }
    let (cmin, _) = ApiKey::ApiVersions.client_range();
    let broker_max = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions.key())
        .map(|k| k.max_version)
        .unwrap_or(0);
    let v = broker_max.min(requested - 1);
    (v >= cmin).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::protocol::Encodable;

    fn broker(ranges: &[(ApiKey, i16, i16)]) -> BrokerVersions {
        BrokerVersions::from_ranges(ranges.iter().map(|&(a, lo, hi)| (a.key(), (lo, hi))))
    }

    #[test]
    fn picks_the_highest_common_version() {
        let b = broker(&[(ApiKey::Produce, 0, 7), (ApiKey::Fetch, 4, 17)]);
        assert_eq!(b.negotiate(ApiKey::Produce).unwrap(), 7);
        assert_eq!(
            b.negotiate(ApiKey::Fetch).unwrap(),
            ApiKey::Fetch.client_range().1
        );
    }

    #[test]
    fn names_the_api_and_both_ranges_when_there_is_no_overlap() {
        let b = broker(&[(ApiKey::Produce, 0, 2)]);
        let e = b.negotiate(ApiKey::Produce).unwrap_err().to_string();
        assert!(e.contains("Produce"), "{e}");
        assert!(e.contains("3..=12") && e.contains("0..=2"), "{e}");
        let e = b.negotiate(ApiKey::EndTxn).unwrap_err().to_string();
        assert!(e.contains("does not support EndTxn"), "{e}");
    }

    #[test]
    fn falls_back_when_apiversions_v3_is_unsupported() {
        let mut resp = ApiVersionsResponse::default();
        resp.error_code = ErrorCode::UNSUPPORTED_VERSION.0;
        let mut k = ApiVersion::default();
        k.api_key = 18;
        k.min_version = 0;
        k.max_version = 2;
        resp.api_keys.push(k);
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 0).unwrap();
        let decoded = decode_api_versions(buf.freeze(), 3).unwrap();
        assert_eq!(decoded.error_code, 35);
        assert_eq!(api_versions_retry(&decoded, 3), Some(2));
        let mut old = decoded.clone();
        old.api_keys.clear();
        assert_eq!(api_versions_retry(&old, 3), Some(0));
        old.error_code = 0;
        assert_eq!(api_versions_retry(&old, 3), None);
    }
}
