//! ApiVersions: the served versions, after the cluster's caps.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::sb;
use crate::cluster::{advertised_range, Ctx};
use crate::errors as ec;
use crate::state::State;

fn api_list(s: &State) -> Vec<ApiVersion> {
    ApiKey::iter()
        .filter_map(|api| {
            let (min, max) = advertised_range(s, api)?;
            Some(
                ApiVersion::default()
                    .with_api_key(api as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect()
}

/// The answer to an ApiVersions request of a version the fake does not serve (encoded as v0).
pub(crate) fn unsupported(s: &State) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ec::UNSUPPORTED_VERSION)
        .with_api_keys(api_list(s))
}

pub(crate) fn handle(ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let s = ctx.shared.lock();
    let mut resp = ApiVersionsResponse::default().with_api_keys(api_list(&s));
    if ctx.version >= 3 && s.cfg.txn_protocol == crate::TxnProtocol::Kip890 {
        resp.supported_features = vec![SupportedFeatureKey::default()
            .with_name(sb("transaction.version"))
            .with_min_version(0)
            .with_max_version(2)];
        resp.finalized_features_epoch = 1;
        resp.finalized_features = vec![FinalizedFeatureKey::default()
            .with_name(sb("transaction.version"))
            .with_min_version_level(2)
            .with_max_version_level(2)];
    }
    resp
}
