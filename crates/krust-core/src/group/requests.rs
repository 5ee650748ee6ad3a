//! The requests the membership machine asks the driver to send, and their encoding into
//! `kafka-protocol` request types at a negotiated version (fields a version lacks are left at
//! their defaults, which `kafka-protocol` requires).

use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_wire::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use krust_wire::kafka_protocol::messages::leave_group_request::MemberIdentity;
use krust_wire::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use krust_wire::kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use krust_wire::kafka_protocol::protocol::StrBytes;

use crate::fetch::NodeId;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A request the membership machine wants sent.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupRequest {
    /// Find the group coordinator (send to any broker).
    FindCoordinator {
        /// The group id.
        key: String,
    },
    /// The leader needs partition counts for these topics (answer with
    /// [`Membership::handle_metadata`](super::Membership::handle_metadata), 0 for a topic that
    /// does not exist).
    Metadata {
        /// The topics.
        topics: Vec<String>,
    },
    /// JoinGroup to the coordinator.
    Join(JoinReq),
    /// SyncGroup to the coordinator.
    Sync(SyncReq),
    /// Heartbeat to the coordinator.
    Heartbeat(HeartbeatReq),
    /// LeaveGroup to the coordinator (no answer is awaited by the machine).
    Leave(LeaveReq),
}

impl GroupRequest {
    /// The broker to send to (`None`: any broker).
    pub fn coordinator(&self) -> Option<NodeId> {
        match self {
            GroupRequest::FindCoordinator { .. } | GroupRequest::Metadata { .. } => None,
            GroupRequest::Join(r) => Some(r.coordinator),
            GroupRequest::Sync(r) => Some(r.coordinator),
            GroupRequest::Heartbeat(r) => Some(r.coordinator),
            GroupRequest::Leave(r) => Some(r.coordinator),
        }
    }

    /// How long the driver should wait for the answer, beyond `request.timeout.ms`: a
    /// JoinGroup is held by the coordinator for up to the rebalance timeout (Java waits that
    /// plus 5 s).
    pub fn extra_timeout(&self) -> Duration {
        match self {
            GroupRequest::Join(r) => r.rebalance_timeout + Duration::from_secs(5),
            GroupRequest::Sync(r) => {
                let _ = r;
                Duration::ZERO
            }
            _ => Duration::ZERO,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinReq {
    /// Identifies this request among the member's joins and syncs (stale answers are ignored).
    pub seq: u64,
    /// The coordinator.
    pub coordinator: NodeId,
    /// Group id.
    pub group_id: String,
    /// Member id ("" on the first join).
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// The rebalance timeout (`max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    /// (assignor name, subscription bytes), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// When the machine produced it (the lease anchor if it succeeds).
    pub sent_at: Instant,
}

impl JoinReq {
    /// The request at `version`.
    pub fn to_request(&self, version: i16) -> JoinGroupRequest {
        let mut r = JoinGroupRequest::default();
        r.group_id = sb(&self.group_id).into();
        r.session_timeout_ms = ms(self.session_timeout);
        if version >= 1 {
            r.rebalance_timeout_ms = ms(self.rebalance_timeout);
        }
        r.member_id = sb(&self.member_id);
        if version >= 5 {
            r.group_instance_id = self.instance_id.as_deref().map(sb);
        }
        r.protocol_type = sb(krust_wire::group_protocol::PROTOCOL_TYPE);
        r.protocols = self
            .protocols
            .iter()
            .map(|(n, m)| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = sb(n);
                p.metadata = m.clone();
                p
            })
            .collect();
        r
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReq {
    /// Identifies this request among the member's joins and syncs (stale answers are ignored).
    pub seq: u64,
    /// The coordinator.
    pub coordinator: NodeId,
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// The chosen protocol (assignor).
    pub protocol: String,
    /// (member id, assignment bytes): the leader's assignments; empty for followers.
    pub assignments: Vec<(String, Bytes)>,
    /// When the machine produced it.
    pub sent_at: Instant,
}

impl SyncReq {
    /// The request at `version`.
    pub fn to_request(&self, version: i16) -> SyncGroupRequest {
        let mut r = SyncGroupRequest::default();
        r.group_id = sb(&self.group_id).into();
        r.generation_id = self.generation;
        r.member_id = sb(&self.member_id);
        if version >= 3 {
            r.group_instance_id = self.instance_id.as_deref().map(sb);
        }
        if version >= 5 {
            r.protocol_type = Some(sb(krust_wire::group_protocol::PROTOCOL_TYPE));
            r.protocol_name = Some(sb(&self.protocol));
        }
        r.assignments = self
            .assignments
            .iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = sb(m);
                x.assignment = a.clone();
                x
            })
            .collect();
        r
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReq {
    /// The coordinator.
    pub coordinator: NodeId,
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// When the machine produced it (the lease anchor if it succeeds).
    pub sent_at: Instant,
}

impl HeartbeatReq {
    /// The request at `version`.
    pub fn to_request(&self, version: i16) -> HeartbeatRequest {
        let mut r = HeartbeatRequest::default();
        r.group_id = sb(&self.group_id).into();
        r.generation_id = self.generation;
        r.member_id = sb(&self.member_id);
        if version >= 3 {
            r.group_instance_id = self.instance_id.as_deref().map(sb);
        }
        r
    }
}

/// A LeaveGroup request.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveReq {
    /// The coordinator.
    pub coordinator: NodeId,
    /// Group id.
    pub group_id: String,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
}

impl LeaveReq {
    /// The request at `version` (v3+ names members in a batch).
    pub fn to_request(&self, version: i16) -> LeaveGroupRequest {
        let mut r = LeaveGroupRequest::default();
        r.group_id = sb(&self.group_id).into();
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = sb(&self.member_id);
            m.group_instance_id = self.instance_id.as_deref().map(sb);
            if version >= 5 {
                m.reason = Some(sb("the consumer is closing"));
            }
            r.members = vec![m];
        } else {
            r.member_id = sb(&self.member_id);
        }
        r
    }
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
