//! Finalized cluster features from an ApiVersions response (KIP-584): the level the cluster
//! has agreed on for a feature such as `transaction.version` (KIP-890 transactions v2 at
//! level ≥ 2). Only the *finalized* level counts: a broker's *supported* range says what it
//! could do, not what the cluster turned on.

use kafka_protocol::messages::ApiVersionsResponse;

/// The feature that gates KIP-890 transactions v2.
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// The finalized level of `name` (its `max_version_level`), or `None` when the response has
/// no finalized features (ApiVersions < v3, or an older broker) or does not list `name`.
pub fn finalized_level(response: &ApiVersionsResponse, name: &str) -> Option<i16> {
    response
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == name)
        .map(|f| f.max_version_level)
}

/// The finalized `transaction.version`: `Some(2)` or more means the cluster runs KIP-890
/// transactions v2; `None` or less means the classic protocol.
pub fn transaction_version(response: &ApiVersionsResponse) -> Option<i16> {
    finalized_level(response, TRANSACTION_VERSION)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::FinalizedFeatureKey;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn feature(name: &str, level: i16) -> FinalizedFeatureKey {
        let mut f = FinalizedFeatureKey::default();
        f.name = StrBytes::from_string(name.to_string());
        f.max_version_level = level;
        f.min_version_level = level;
        f
    }

    #[test]
    fn reads_the_finalized_transaction_version() {
        let mut r = ApiVersionsResponse::default();
        assert_eq!(transaction_version(&r), None);
        r.finalized_features = vec![
            feature("metadata.version", 20),
            feature(TRANSACTION_VERSION, 2),
        ];
        assert_eq!(transaction_version(&r), Some(2));
        assert_eq!(finalized_level(&r, "metadata.version"), Some(20));
        assert_eq!(finalized_level(&r, "group.version"), None);
        // A connection's versions keep it (read once at the handshake).
        let v = crate::versions::BrokerVersions::from_response(&r);
        assert_eq!(v.transaction_version(), Some(2));
        r.finalized_features.clear();
        let v = crate::versions::BrokerVersions::from_response(&r);
        assert_eq!(v.transaction_version(), None);
    }
}
