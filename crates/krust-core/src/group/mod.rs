//! Consumer groups, sans-IO: the classic group protocol's member state machine
//! ([`Membership`]), the assignors ([`assignor`]), offset bookkeeping ([`offsets`]) and the
//! requests the machine asks for ([`requests`]).
//!
//! Nothing here does I/O or reads a clock; krust-client's group driver sends the requests and
//! feeds answers and `now` back. The same machine runs in unit tests with a virtual clock and in
//! a seeded simulation of whole groups against a model coordinator (`sim` tests).

use std::sync::Arc;
use std::time::Duration;

pub mod assignor;
mod member;
pub mod offsets;
pub mod requests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use assignor::{
    builtin, Assignment, Assignor, CooperativeStickyAssignor, MemberSubscription, RangeAssignor,
    RebalanceProtocol, RoundRobinAssignor, StickyAssignor,
};
pub use member::{GroupEvent, Membership, RequestFailure};
pub use offsets::{OffsetAndMetadata, OffsetBook};
pub use requests::GroupRequest;

/// The membership a transactional producer sends with `TxnOffsetCommit` (KIP-447), and what
/// commits carry for fencing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The generation (-1 outside a generation).
    pub generation_id: i32,
    /// The member id the coordinator gave ("" before the first join).
    pub member_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
}

/// Why a member stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// The coordinator answered with an error the member cannot recover from (e.g.
    /// FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, INVALID_SESSION_TIMEOUT).
    Broker {
        /// The API.
        api: &'static str,
        /// The error code.
        code: krust_wire::ErrorCode,
    },
    /// The group protocol went wrong (unknown assignor chosen, an assignor broke the rules).
    Protocol(String),
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupError::Broker { api, code } => write!(f, "{api}: {code}"),
            GroupError::Protocol(m) => write!(f, "group protocol: {m}"),
        }
    }
}

impl std::error::Error for GroupError {}

/// Settings of one group member.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: makes the member static (KIP-345). Default none.
    pub instance_id: Option<String>,
    /// `session.timeout.ms`: the coordinator expires a member it has not heard from for this
    /// long. Default 45 000 ms.
    pub session_timeout: Duration,
    /// The rebalance timeout sent in JoinGroup: how long the coordinator waits for members to
    /// rejoin. Java uses `max.poll.interval.ms`. Default 300 000 ms.
    pub rebalance_timeout: Duration,
    /// `max.poll.interval.ms` enforcement: the member leaves the group when the application has
    /// not polled for this long (`None` disables). Default 300 000 ms.
    pub max_poll_interval: Option<Duration>,
    /// `heartbeat.interval.ms`. Default 3 000 ms; keep it under a third of the session timeout.
    pub heartbeat_interval: Duration,
    /// `retry.backoff.ms`. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`. Default 1 000 ms.
    pub retry_backoff_max: Duration,
    /// `partition.assignment.strategy`, in preference order. Default `[range,
    /// cooperative-sticky]` (Java's default since 3.0).
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `client.rack`, sent in the subscription (v3). Default none.
    pub rack: Option<String>,
    /// `krust.revoke.timeout.ms`: the longest the member waits for the application to finish
    /// a revocation (commit, flush) before releasing the partitions anyway. Keep it under the
    /// session timeout. Default 10 000 ms.
    pub revoke_timeout: Duration,
}

impl GroupConfig {
    /// Defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            instance_id: None,
            session_timeout: Duration::from_millis(45_000),
            rebalance_timeout: Duration::from_millis(300_000),
            max_poll_interval: Some(Duration::from_millis(300_000)),
            heartbeat_interval: Duration::from_millis(3_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            assignors: vec![Arc::new(RangeAssignor), Arc::new(CooperativeStickyAssignor)],
            rack: None,
            revoke_timeout: Duration::from_millis(10_000),
        }
    }
}
