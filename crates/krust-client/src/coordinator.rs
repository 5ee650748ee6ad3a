//! FindCoordinator, written once: the request for a key of a given type, the answer parsed at
//! every version (v0-v3 carry one answer in the top-level fields, v4+ a batched
//! `coordinators` array, KIP-699), and the lookup that retries while the coordinator is
//! loading, unavailable or moving.
//!
//! Group members and the transactional producer drive their own retries (their state machines
//! own the backoff); they use [`lookup_once`]. Everything else uses [`find`].

use std::time::Instant;

use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use krust_wire::{ApiKey, ErrorCode};
use tracing::debug;

use crate::cluster::{retry_pause, Cluster, NodeId};
use crate::error::{Error, Result};

/// What kind of coordinator a key names (FindCoordinator's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoordinatorType {
    /// A consumer group's coordinator (`key_type` 0, the key is the group id).
    Group,
    /// A transactional id's coordinator (`key_type` 1).
    Transaction,
}

impl CoordinatorType {
    /// The wire `key_type`.
    pub(crate) fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }

    /// How errors name `key`: "group `g`", "transactional id `t`".
    pub(crate) fn describe(self, key: &str) -> String {
        match self {
            CoordinatorType::Group => format!("group `{key}`"),
            CoordinatorType::Transaction => format!("transactional id `{key}`"),
        }
    }
}

/// The FindCoordinator request for `key` at `version` (v4+ batch the key in `coordinator_keys`).
pub(crate) fn request(kind: CoordinatorType, key: &str, version: i16) -> FindCoordinatorRequest {
    let mut r = FindCoordinatorRequest::default().with_key_type(kind.key_type());
    let k = StrBytes::from_string(key.to_string());
    if version >= 4 {
        r.coordinator_keys = vec![k];
    } else {
        r.key = k;
    }
    r
}

/// A coordinator the broker refused to name: its error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The error code (never NONE).
    pub code: ErrorCode,
    /// The broker's message, if it sent a non-empty one.
    pub message: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, message: Option<&StrBytes>) -> Self {
        Refusal {
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }
    }

    /// The client error for this refusal, naming the key.
    pub(crate) fn into_error(self, kind: CoordinatorType, key: &str) -> Error {
        Error::broker_with(
            ApiKey::FindCoordinator,
            self.code,
            kind.describe(key),
            self.message,
        )
    }
}

/// The coordinator of `key` in a FindCoordinator response of `version`.
///
/// v4+ answers are matched by key (an answer for another key only counts when it is the single
/// one, for brokers that echo no key). No answer, or success with a negative node id, is
/// COORDINATOR_NOT_AVAILABLE (retriable), never a node to connect to.
pub(crate) fn parse(
    resp: &FindCoordinatorResponse,
    version: i16,
    key: &str,
) -> std::result::Result<NodeId, Refusal> {
    let (code, node, message) = if version >= 4 {
        let c = resp.coordinators.iter().find(|c| c.key.as_str() == key).or(
            match resp.coordinators.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        );
        match c {
            Some(c) => (
                ErrorCode(c.error_code),
                c.node_id.0,
                c.error_message.as_ref(),
            ),
            None => return Err(Refusal::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, None)),
        }
    } else {
        (
            ErrorCode(resp.error_code),
            resp.node_id.0,
            resp.error_message.as_ref(),
        )
    };
    if !code.is_ok() {
        return Err(Refusal::new(code, message));
    }
    if node < 0 {
        return Err(Refusal::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, None));
    }
    Ok(node)
}

/// One FindCoordinator round trip to any broker: `Ok(Ok(node))` (the node is in the pool's
/// broker list), `Ok(Err(refusal))` when the broker answered with an error, `Err` when the
/// request itself failed. The caller retries.
///
/// A coordinator that is still not in the broker list after a metadata refresh (the refresh
/// failed, or the metadata is behind the coordinator's answer) is refused as
/// COORDINATOR_NOT_AVAILABLE: retriable, like any coordinator that cannot be reached yet, so
/// callers need no case of their own for an unknown broker.
pub(crate) async fn lookup_once(
    cluster: &Cluster,
    kind: CoordinatorType,
    key: &str,
) -> Result<std::result::Result<NodeId, Refusal>> {
    let (_, version, resp) = cluster.send_any(|v| request(kind, key, v)).await?;
    let answer = parse(&resp, version, key);
    let Ok(node) = answer else {
        return Ok(answer);
    };
    if cluster.metadata().brokers.contains_key(&node) {
        return Ok(Ok(node));
    }
    // The coordinator is a broker the pool has not seen yet: load the broker list so a request
    // to it can connect.
    if let Err(e) = cluster.refresh_metadata(&[]).await {
        debug!(key, ?kind, node, error = %e, "metadata refresh for a new coordinator failed");
    }
    if cluster.metadata().brokers.contains_key(&node) {
        Ok(Ok(node))
    } else {
        Ok(Err(unknown_coordinator(node)))
    }
}

/// The refusal for a coordinator `node` missing from the broker list: COORDINATOR_NOT_AVAILABLE
/// (retriable), saying why.
pub(crate) fn unknown_coordinator(node: NodeId) -> Refusal {
    Refusal {
        code: ErrorCode::COORDINATOR_NOT_AVAILABLE,
        message: Some(format!("coordinator {node} is not in the cluster metadata")),
    }
}

/// The coordinator of `key`, retried with the retry backoff within `request.timeout.ms` while
/// the answer is retriable (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
/// NOT_COORDINATOR, a transport failure or timeout). Other errors (an authorization failure,
/// an invalid key) fail at once and name the key.
pub(crate) async fn find(cluster: &Cluster, kind: CoordinatorType, key: &str) -> Result<NodeId> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut attempt = 0;
    loop {
        let err = match lookup_once(cluster, kind, key).await {
            Ok(Ok(node)) => return Ok(node),
            Ok(Err(refusal)) => refusal.into_error(kind, key),
            Err(e) => e,
        };
        if !err.is_retriable() || Instant::now() >= deadline {
            return Err(err);
        }
        debug!(key, ?kind, error = %err, attempt, "coordinator lookup retried");
        retry_pause(&cfg, &mut attempt).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::BrokerId;

    fn single(code: ErrorCode, node: i32, message: Option<&str>) -> FindCoordinatorResponse {
        let mut r = FindCoordinatorResponse::default();
        r.error_code = code.0;
        r.node_id = BrokerId(node);
        r.error_message = message.map(|m| StrBytes::from_string(m.into()));
        r
    }

    fn entry(key: &str, code: ErrorCode, node: i32, message: Option<&str>) -> Coordinator {
        let mut c = Coordinator::default();
        c.key = StrBytes::from_string(key.into());
        c.error_code = code.0;
        c.node_id = BrokerId(node);
        c.error_message = message.map(|m| StrBytes::from_string(m.into()));
        c
    }

    fn batched(entries: Vec<Coordinator>) -> FindCoordinatorResponse {
        let mut r = FindCoordinatorResponse::default();
        r.coordinators = entries;
        r
    }

    #[test]
    fn request_shape_per_version() {
        for v in 0..=3 {
            let r = request(CoordinatorType::Transaction, "tx", v);
            assert_eq!(r.key.as_str(), "tx");
            assert!(r.coordinator_keys.is_empty());
            assert_eq!(r.key_type, 1);
        }
        for v in 4..=6 {
            let r = request(CoordinatorType::Group, "g", v);
            assert_eq!(r.key.as_str(), "");
            assert_eq!(
                r.coordinator_keys
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>(),
                ["g"]
            );
            assert_eq!(r.key_type, 0);
        }
    }

    #[test]
    fn single_answer_v0_to_v3() {
        for v in 0..=3 {
            assert_eq!(parse(&single(ErrorCode::NONE, 7, None), v, "g"), Ok(7));
            let refused = parse(
                &single(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS, -1, Some("loading")),
                v,
                "g",
            )
            .unwrap_err();
            assert_eq!(refused.code, ErrorCode::COORDINATOR_LOAD_IN_PROGRESS);
            assert_eq!(refused.message.as_deref(), Some("loading"));
            // The v4 array is not read below v4.
            let mut r = single(ErrorCode::NONE, 3, None);
            r.coordinators = vec![entry("g", ErrorCode::NONE, 9, None)];
            assert_eq!(parse(&r, v, "g"), Ok(3));
        }
    }

    #[test]
    fn batched_answer_v4_plus_matches_the_key() {
        let r = batched(vec![
            entry("other", ErrorCode::NOT_COORDINATOR, -1, None),
            entry("g", ErrorCode::NONE, 2, None),
        ]);
        assert_eq!(parse(&r, 4, "g"), Ok(2));
        assert_eq!(
            parse(&r, 4, "other").unwrap_err().code,
            ErrorCode::NOT_COORDINATOR
        );
        // A key the broker did not answer among several: no coordinator.
        assert_eq!(
            parse(&r, 4, "missing").unwrap_err().code,
            ErrorCode::COORDINATOR_NOT_AVAILABLE
        );
        // A single answer that echoes no key is taken.
        let r = batched(vec![entry("", ErrorCode::NONE, 5, None)]);
        assert_eq!(parse(&r, 5, "g"), Ok(5));
        // The top-level fields are ignored at v4+.
        let mut r = batched(vec![entry("g", ErrorCode::NONE, 4, None)]);
        r.error_code = ErrorCode::NOT_COORDINATOR.0;
        r.node_id = BrokerId(1);
        assert_eq!(parse(&r, 6, "g"), Ok(4));
    }

    #[test]
    fn empty_or_negative_answers_are_not_available() {
        let e = parse(&batched(vec![]), 4, "g").unwrap_err();
        assert_eq!(e.code, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        let e = parse(&single(ErrorCode::NONE, -1, None), 2, "g").unwrap_err();
        assert_eq!(e.code, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        let e = parse(
            &batched(vec![entry("g", ErrorCode::NONE, -1, None)]),
            4,
            "g",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::COORDINATOR_NOT_AVAILABLE);
    }

    #[test]
    fn unknown_coordinator_is_retriable() {
        let r = unknown_coordinator(7);
        assert_eq!(r.code, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        let e = r.into_error(CoordinatorType::Group, "g");
        assert!(e.is_retriable(), "{e}");
        let text = e.to_string();
        assert!(text.contains("coordinator 7"), "{text}");
        assert!(text.contains("group `g`"), "{text}");
    }

    #[test]
    fn error_classes() {
        for code in [
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
            ErrorCode::NOT_COORDINATOR,
        ] {
            for v in [1, 4] {
                let r = if v >= 4 {
                    batched(vec![entry("t", code, -1, None)])
                } else {
                    single(code, -1, None)
                };
                let e = parse(&r, v, "t")
                    .unwrap_err()
                    .into_error(CoordinatorType::Transaction, "t");
                assert!(e.is_retriable(), "{code} at v{v}");
                assert_eq!(e.code(), Some(code));
            }
        }
        for (kind, code, name) in [
            (
                CoordinatorType::Group,
                ErrorCode::GROUP_AUTHORIZATION_FAILED,
                "group `orders`",
            ),
            (
                CoordinatorType::Transaction,
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "transactional id `orders`",
            ),
        ] {
            let r = batched(vec![entry("orders", code, -1, Some("denied"))]);
            let e = parse(&r, 4, "orders")
                .unwrap_err()
                .into_error(kind, "orders");
            assert!(!e.is_retriable());
            let text = e.to_string();
            assert!(text.contains(name), "{text}");
            assert!(text.contains("denied"), "{text}");
        }
        // An empty broker message is not shown as one.
        let e = parse(&single(ErrorCode::INVALID_REQUEST, -1, Some("")), 3, "g").unwrap_err();
        assert_eq!(e.message, None);
        assert!(!e.into_error(CoordinatorType::Group, "g").is_retriable());
    }
}
