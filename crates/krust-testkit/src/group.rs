//! The classic group coordinator: FindCoordinator, JoinGroup (with the member-id-required
//! round of v4+), SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch (RequireStable),
//! DescribeGroups, ListGroups, DeleteGroups; session and rebalance timeouts; static membership.
//!
//! State changes happen under the cluster mutex. A JoinGroup or SyncGroup that must wait parks
//! a oneshot sender in its member; whoever completes the phase (another member's request or
//! the timer tick) answers every parked call at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::cluster::Ctx;
use crate::errors as ec;
use crate::handlers::{sb, tn};
use crate::state::State;

/// A committed offset.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}

/// Group states, as DescribeGroups names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GState {
    fn name(self) -> &'static str {
        match self {
            GState::Empty => "Empty",
            GState::PreparingRebalance => "PreparingRebalance",
            GState::CompletingRebalance => "CompletingRebalance",
            GState::Stable => "Stable",
        }
    }
}

pub(crate) struct Member {
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_tx: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_tx: Option<oneshot::Sender<SyncGroupResponse>>,
}

pub(crate) struct Group {
    state: GState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    pending: HashSet<String>,
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    sync_deadline: Option<Instant>,
    join_not_before: Option<Instant>,
    pub(crate) offsets: BTreeMap<(String, i32), Committed>,
    /// Offsets committed inside transactions, by producer id, until EndTxn.
    pub(crate) pending_txn: HashMap<i64, BTreeMap<(String, i32), Committed>>,
}

/// A snapshot of a group, from [`FakeCluster::group`](crate::FakeCluster::group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable`.
    pub state: String,
    /// The current generation.
    pub generation: i32,
    /// Member ids, in join order.
    pub members: Vec<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The chosen protocol (assignor).
    pub protocol: Option<String>,
}

impl Group {
    pub(crate) fn info(&self) -> GroupInfo {
        GroupInfo {
            state: self.state.name().to_string(),
            generation: self.generation,
            members: self.members.keys().cloned().collect(),
            leader: self.leader.clone(),
            protocol: self.protocol.clone(),
        }
    }

    pub(crate) fn new() -> Self {
        Group {
            state: GState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashSet::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            sync_deadline: None,
            join_not_before: None,
            offsets: BTreeMap::new(),
            pending_txn: HashMap::new(),
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GState::PreparingRebalance {
            return;
        }
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_tx.take() {
                let _ = tx
                    .send(SyncGroupResponse::default().with_error_code(ec::REBALANCE_IN_PROGRESS));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.state = GState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id {
                if self.statics.get(i).is_some_and(|x| x == id) {
                    self.statics.remove(i);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        let best = candidates
            .iter()
            .map(|c| votes.get(c).copied().unwrap_or(0))
            .max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c).copied().unwrap_or(0) == best)
            .cloned()
    }

    /// Completes the join phase if every member has rejoined (or the deadline passed).
    fn maybe_complete_join(&mut self, now: Instant) -> bool {
        if self.state != GState::PreparingRebalance {
            return false;
        }
        if self.join_not_before.is_some_and(|t| now < t) {
            return false;
        }
        let all = self.members.values().all(|m| m.join_tx.is_some());
        let expired = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all && !expired {
            return false;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_tx.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.join_not_before = None;
        if self.members.is_empty() {
            self.state = GState::Empty;
            self.protocol = None;
            self.leader = None;
            return true;
        }
        self.protocol = self.choose_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GState::CompletingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.sync_deadline = Some(now + timeout);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = self.member_list();
        for (id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(tx) = m.join_tx.take() {
                let mut r = JoinGroupResponse::default()
                    .with_generation_id(self.generation)
                    .with_protocol_type(self.protocol_type.as_deref().map(sb))
                    .with_protocol_name(Some(sb(&protocol)))
                    .with_leader(sb(&leader))
                    .with_member_id(sb(id));
                if *id == leader {
                    r.members = members.clone();
                }
                let _ = tx.send(r);
            }
        }
        true
    }

    fn member_list(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|(id, m)| {
                JoinGroupResponseMember::default()
                    .with_member_id(sb(id))
                    .with_group_instance_id(m.instance_id.as_deref().map(sb))
                    .with_metadata(
                        m.protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default(),
                    )
            })
            .collect()
    }

    fn join_response_now(&self, member_id: &str) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(sb))
            .with_protocol_name(self.protocol.as_deref().map(sb))
            .with_leader(sb(self.leader.as_deref().unwrap_or_default()))
            .with_member_id(sb(member_id))
    }

    /// KIP-447 checks of a TxnOffsetCommit naming a member and generation.
    pub(crate) fn check_txn_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ec::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Checks a member id against static membership: a known instance id with another member
    /// id means the caller is a fenced zombie.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(i) = instance_id {
            if let Some(current) = self.statics.get(i) {
                if current != member_id {
                    return Err(ec::FENCED_INSTANCE_ID);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ec::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }
}

/// Expires sessions and rebalance deadlines. Returns whether anything changed.
pub(crate) fn tick(s: &mut State, now: Instant) -> bool {
    let mut changed = false;
    for g in s.groups.values_mut() {
        let expired: Vec<String> = g
            .members
            .iter()
            .filter(|(_, m)| {
                m.join_tx.is_none() && m.sync_tx.is_none() && now > m.last_seen + m.session_timeout
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::debug!(member = %id, "session expired");
                g.remove_member(id);
            }
            if g.members.is_empty() && g.state != GState::PreparingRebalance {
                g.state = GState::Empty;
                g.generation += 1;
                g.leader = None;
            } else {
                g.prepare_rebalance(now);
            }
            changed = true;
        }
        // A leader that never sends its SyncGroup within the rebalance timeout: members that
        // did not sync are dropped and the group rebalances again.
        if g.state == GState::CompletingRebalance && g.sync_deadline.is_some_and(|d| now >= d) {
            let stale: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.sync_tx.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            for id in &stale {
                g.remove_member(id);
            }
            g.sync_deadline = None;
            g.prepare_rebalance(now);
            changed = true;
        }
        changed |= g.maybe_complete_join(now);
    }
    changed
}

fn coordinator_check(s: &State, ctx: &Ctx<'_>, group: &str) -> Result<(), i16> {
    if group.is_empty() {
        return Err(ec::INVALID_GROUP_ID);
    }
    if s.coordinator(0, group) != ctx.broker {
        return Err(ec::NOT_COORDINATOR);
    }
    Ok(())
}

pub(crate) fn find_coordinator(
    ctx: &Ctx<'_>,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let s = ctx.shared.lock();
    let lookup = |key: &str| -> (i16, i32, String, i32) {
        if req.key_type > 1 {
            return (ec::INVALID_REQUEST, -1, String::new(), -1);
        }
        let b = s.coordinator(req.key_type, key);
        let bs = &s.brokers[b as usize];
        if !bs.up {
            return (ec::COORDINATOR_NOT_AVAILABLE, -1, String::new(), -1);
        }
        (0, b, bs.advertised.0.clone(), i32::from(bs.advertised.1))
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        for k in &req.coordinator_keys {
            let (code, node, host, port) = lookup(k);
            resp.coordinators.push(
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(sb(&host))
                    .with_port(port)
                    .with_error_code(code),
            );
        }
    } else {
        let (code, node, host, port) = lookup(&req.key);
        resp.error_code = code;
        resp.node_id = BrokerId(node);
        resp.host = sb(&host);
        resp.port = port;
    }
    resp
}

fn join_error(code: i16, member_id: &StrBytes) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(member_id.clone())
}

pub(crate) async fn join_group(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let rx = {
        let mut s = ctx.shared.lock();
        let now = Instant::now();
        let group_id = req.group_id.0.to_string();
        if let Err(code) = coordinator_check(&s, ctx, &group_id) {
            return join_error(code, &req.member_id);
        }
        if req.session_timeout_ms < s.cfg.min_session_timeout_ms
            || req.session_timeout_ms > s.cfg.max_session_timeout_ms
        {
            return join_error(ec::INVALID_SESSION_TIMEOUT, &req.member_id);
        }
        let initial_delay = s.cfg.initial_rebalance_delay;
        let client_id = ctx.client_id.clone();
        let new_id = s.new_member_id(if client_id.is_empty() {
            "member"
        } else {
            &client_id
        });
        let g = s.groups.entry(group_id).or_insert_with(Group::new);
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        let ptype = req.protocol_type.to_string();
        if g.state != GState::Empty || !g.members.is_empty() {
            let compatible = g.protocol_type.as_deref() == Some(ptype.as_str())
                && g.members.values().all(|m| {
                    m.protocols
                        .iter()
                        .any(|(n, _)| protocols.iter().any(|(x, _)| x == n))
                });
            let is_member = g.members.contains_key(req.member_id.as_str());
            if !(compatible || (is_member && g.members.len() == 1)) {
                return join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
            }
        }
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        let rebalance_timeout = if ctx.version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        };
        let make = |assignment: Bytes| Member {
            instance_id: instance.clone(),
            client_id: client_id.clone(),
            session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance_timeout.max(0) as u64),
            protocols: protocols.clone(),
            assignment,
            last_seen: now,
            join_tx: None,
            sync_tx: None,
        };
        let member_id: String;
        if req.member_id.is_empty() {
            if let Some(i) = &instance {
                member_id = format!("{i}-{new_id}");
                if let Some(old) = g.statics.get(i).cloned() {
                    // A static member restarting: it takes over the old member's place.
                    let old_m = g.members.shift_remove(&old);
                    let was_leader = g.leader.as_deref() == Some(old.as_str());
                    let unchanged = old_m.as_ref().is_some_and(|m| m.protocols == protocols);
                    let assignment = old_m.map(|m| m.assignment).unwrap_or_default();
                    g.members.insert(member_id.clone(), make(assignment));
                    g.statics.insert(i.clone(), member_id.clone());
                    if was_leader {
                        g.leader = Some(member_id.clone());
                    }
                    if g.state == GState::Stable && unchanged && !was_leader {
                        return g.join_response_now(&member_id);
                    }
                } else {
                    g.members.insert(member_id.clone(), make(Bytes::new()));
                    g.statics.insert(i.clone(), member_id.clone());
                }
            } else if ctx.version >= 4 {
                g.pending.insert(new_id.clone());
                return join_error(ec::MEMBER_ID_REQUIRED, &sb(&new_id));
            } else {
                member_id = new_id;
                g.members.insert(member_id.clone(), make(Bytes::new()));
            }
        } else {
            member_id = req.member_id.to_string();
            if g.pending.remove(&member_id) {
                g.members.insert(member_id.clone(), make(Bytes::new()));
            } else {
                if let Err(code) = g.check_member(&member_id, instance.as_deref()) {
                    return join_error(code, &req.member_id);
                }
                let m = g.members.get_mut(&member_id).expect("checked");
                let unchanged = m.protocols == protocols;
                m.protocols = protocols.clone();
                m.session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
                m.rebalance_timeout = Duration::from_millis(rebalance_timeout.max(0) as u64);
                m.last_seen = now;
                let is_leader = g.leader.as_deref() == Some(member_id.as_str());
                if g.state == GState::Stable && unchanged && !is_leader {
                    return g.join_response_now(&member_id);
                }
                // A retried JoinGroup between join and sync: answer with the current
                // generation again (the leader gets the member list again).
                if g.state == GState::CompletingRebalance && unchanged {
                    let mut r = g.join_response_now(&member_id);
                    if is_leader {
                        r.members = g.member_list();
                    }
                    return r;
                }
            }
        }
        g.protocol_type = Some(ptype);
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(&member_id) {
            if let Some(old) = m.join_tx.replace(tx) {
                let _ = old.send(join_error(ec::UNKNOWN_MEMBER_ID, &sb(&member_id)));
            }
        }
        if g.state == GState::Empty && !initial_delay.is_zero() {
            g.join_not_before = Some(now + initial_delay);
        }
        g.prepare_rebalance(now);
        g.maybe_complete_join(now);
        rx
    };
    ctx.shared.bump_groups();
    match rx.await {
        Ok(r) => r,
        Err(_) => join_error(ec::UNKNOWN_MEMBER_ID, &req.member_id),
    }
}

pub(crate) async fn sync_group(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let err = |code| SyncGroupResponse::default().with_error_code(code);
    let rx = {
        let mut s = ctx.shared.lock();
        let group_id = req.group_id.0.to_string();
        if let Err(code) = coordinator_check(&s, ctx, &group_id) {
            return err(code);
        }
        let Some(g) = s.groups.get_mut(&group_id) else {
            return err(ec::UNKNOWN_MEMBER_ID);
        };
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        if let Err(code) = g.check_member(&member_id, instance.as_deref()) {
            return err(code);
        }
        if req.generation_id != g.generation {
            return err(ec::ILLEGAL_GENERATION);
        }
        let ok = |g: &Group, assignment: Bytes| {
            SyncGroupResponse::default()
                .with_protocol_type(g.protocol_type.as_deref().map(sb))
                .with_protocol_name(g.protocol.as_deref().map(sb))
                .with_assignment(assignment)
        };
        match g.state {
            GState::PreparingRebalance => return err(ec::REBALANCE_IN_PROGRESS),
            GState::Empty => return err(ec::UNKNOWN_MEMBER_ID),
            GState::Stable => {
                let a = g.members[&member_id].assignment.clone();
                g.members[&member_id].last_seen = Instant::now();
                return ok(g, a);
            }
            GState::CompletingRebalance => {}
        }
        let (tx, rx) = oneshot::channel();
        g.members[&member_id].sync_tx = Some(tx);
        if g.leader.as_deref() == Some(member_id.as_str()) {
            let assignments: HashMap<String, Bytes> = req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect();
            let now = Instant::now();
            g.state = GState::Stable;
            let ptype = g.protocol_type.clone();
            let proto = g.protocol.clone();
            for (id, m) in g.members.iter_mut() {
                m.assignment = assignments.get(id).cloned().unwrap_or_default();
                m.last_seen = now;
                if let Some(tx) = m.sync_tx.take() {
                    let _ = tx.send(
                        SyncGroupResponse::default()
                            .with_protocol_type(ptype.as_deref().map(sb))
                            .with_protocol_name(proto.as_deref().map(sb))
                            .with_assignment(m.assignment.clone()),
                    );
                }
            }
        }
        rx
    };
    ctx.shared.bump_groups();
    match rx.await {
        Ok(r) => r,
        Err(_) => err(ec::REBALANCE_IN_PROGRESS),
    }
}

pub(crate) fn heartbeat(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = (|| {
        let mut s = ctx.shared.lock();
        let group_id = req.group_id.0.to_string();
        coordinator_check(&s, ctx, &group_id)?;
        let g = s.groups.get_mut(&group_id).ok_or(ec::UNKNOWN_MEMBER_ID)?;
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        g.check_member(&member_id, instance.as_deref())?;
        if req.generation_id != g.generation {
            return Err(ec::ILLEGAL_GENERATION);
        }
        g.members[&member_id].last_seen = Instant::now();
        if g.state == GState::PreparingRebalance {
            return Err(ec::REBALANCE_IN_PROGRESS);
        }
        Ok(())
    })()
    .err()
    .unwrap_or(0);
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) fn leave_group(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let mut s = ctx.shared.lock();
    let group_id = req.group_id.0.to_string();
    if let Err(code) = coordinator_check(&s, ctx, &group_id) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let Some(g) = s.groups.get_mut(&group_id) else {
        return LeaveGroupResponse::default().with_error_code(ec::UNKNOWN_MEMBER_ID);
    };
    let leaving: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    let mut any = false;
    for (mut id, instance) in leaving {
        // v3+: a static member may leave by instance id alone.
        if id.is_empty() {
            if let Some(cur) = instance.as_ref().and_then(|i| g.statics.get(i)) {
                id = cur.clone();
            }
        }
        let code = match g.check_member(&id, instance.as_deref()) {
            Ok(()) => {
                g.remove_member(&id);
                any = true;
                0
            }
            Err(c) => c,
        };
        if ctx.version >= 3 {
            resp.members.push(
                MemberResponse::default()
                    .with_member_id(sb(&id))
                    .with_group_instance_id(instance.as_deref().map(sb))
                    .with_error_code(code),
            );
        } else {
            resp.error_code = code;
        }
    }
    if any {
        let now = Instant::now();
        if g.members.is_empty() {
            if g.state != GState::PreparingRebalance {
                g.generation += 1;
            }
            g.state = GState::PreparingRebalance;
            g.rebalance_deadline = Some(now);
            g.maybe_complete_join(now);
        } else {
            g.prepare_rebalance(now);
            g.maybe_complete_join(now);
        }
        drop(s);
        ctx.shared.bump_groups();
    }
    resp
}

fn commit_check(
    g: &mut Group,
    generation: i32,
    member_id: &str,
    instance: Option<&str>,
) -> Result<(), i16> {
    if generation < 0 && member_id.is_empty() {
        return if g.members.is_empty() {
            Ok(())
        } else {
            Err(ec::UNKNOWN_MEMBER_ID)
        };
    }
    g.check_member(member_id, instance)?;
    if generation != g.generation {
        return Err(ec::ILLEGAL_GENERATION);
    }
    // Kafka (since KIP-429) accepts commits of the current generation while the group is
    // preparing a rebalance; only between join and sync is the generation in limbo.
    if g.state == GState::CompletingRebalance {
        return Err(ec::REBALANCE_IN_PROGRESS);
    }
    g.members[member_id].last_seen = Instant::now();
    Ok(())
}

pub(crate) fn offset_commit(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut s = ctx.shared.lock();
    let group_id = req.group_id.0.to_string();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let mut group_err = coordinator_check(&s, ctx, &group_id).err();
    let topics_known: HashMap<String, usize> = req
        .topics
        .iter()
        .map(|t| {
            let n = t.name.0.to_string();
            let c = if s.is_hidden(&n) {
                0
            } else {
                s.topics.get(&n).map(|x| x.partitions.len()).unwrap_or(0)
            };
            (n, c)
        })
        .collect();
    if group_err.is_none() {
        if !s.groups.contains_key(&group_id) && req.generation_id_or_member_epoch >= 0 {
            group_err = Some(ec::ILLEGAL_GENERATION);
        } else {
            let g = s.groups.entry(group_id.clone()).or_insert_with(Group::new);
            group_err = commit_check(
                g,
                req.generation_id_or_member_epoch,
                req.member_id.as_str(),
                instance.as_deref(),
            )
            .err();
        }
    }
    let mut resp = OffsetCommitResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = OffsetCommitResponseTopic::default().with_name(t.name.clone());
        for p in t.partitions {
            let code = match group_err {
                Some(c) => c,
                None if p.partition_index < 0
                    || p.partition_index as usize >= topics_known[&name] =>
                {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                }
                None => {
                    let g = s.groups.get_mut(&group_id).expect("created above");
                    g.offsets.insert(
                        (name.clone(), p.partition_index),
                        Committed {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        },
                    );
                    0
                }
            };
            tr.partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        resp.topics.push(tr);
    }
    resp
}

type FetchedTopic = (String, Vec<(i32, i64, i32, Option<String>, i16)>);

fn fetch_group_offsets(
    s: &State,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<FetchedTopic> {
    let g = s.groups.get(group_id);
    let topics = topics.unwrap_or_else(|| {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        if let Some(g) = g {
            for (t, p) in g.offsets.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
        }
        by_topic.into_iter().collect()
    });
    topics
        .into_iter()
        .map(|(t, parts)| {
            let rows = parts
                .into_iter()
                .map(|p| {
                    let key = (t.clone(), p);
                    let pending =
                        g.is_some_and(|g| g.pending_txn.values().any(|m| m.contains_key(&key)));
                    if require_stable && pending {
                        return (p, -1, -1, None, ec::UNSTABLE_OFFSET_COMMIT);
                    }
                    match g.and_then(|g| g.offsets.get(&key)) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone(), 0),
                        None => (p, -1, -1, Some(String::new()), 0),
                    }
                })
                .collect();
            (t, rows)
        })
        .collect()
}

pub(crate) fn offset_fetch(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let s = ctx.shared.lock();
    let v = ctx.version;
    let mut resp = OffsetFetchResponse::default();
    if v >= 8 {
        for rg in &req.groups {
            let gid = rg.group_id.0.to_string();
            let mut out = OffsetFetchResponseGroup::default().with_group_id(rg.group_id.clone());
            if let Err(code) = coordinator_check(&s, ctx, &gid) {
                out.error_code = code;
                resp.groups.push(out);
                continue;
            }
            let topics = rg.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            for (t, rows) in fetch_group_offsets(&s, &gid, topics, req.require_stable) {
                out.topics.push(
                    OffsetFetchResponseTopics::default()
                        .with_name(tn(&t))
                        .with_partitions(
                            rows.into_iter()
                                .map(|(p, o, e, m, c)| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(m.as_deref().map(sb))
                                        .with_error_code(c)
                                })
                                .collect(),
                        ),
                );
            }
            resp.groups.push(out);
        }
        return resp;
    }
    let gid = req.group_id.0.to_string();
    if let Err(code) = coordinator_check(&s, ctx, &gid) {
        if v >= 2 {
            resp.error_code = code;
        }
        for t in req.topics.iter().flatten() {
            resp.topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            );
        }
        return resp;
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    for (t, rows) in fetch_group_offsets(&s, &gid, topics, v >= 7 && req.require_stable) {
        resp.topics.push(
            OffsetFetchResponseTopic::default()
                .with_name(tn(&t))
                .with_partitions(
                    rows.into_iter()
                        .map(|(p, o, e, m, c)| {
                            let mut x = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_metadata(m.as_deref().map(sb))
                                .with_error_code(c);
                            if v >= 5 {
                                x.committed_leader_epoch = e;
                            }
                            x
                        })
                        .collect(),
                ),
        );
    }
    resp
}

pub(crate) fn describe_groups(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let s = ctx.shared.lock();
    let mut resp = DescribeGroupsResponse::default();
    for gid in req.groups {
        let id = gid.0.to_string();
        let mut d = DescribedGroup::default().with_group_id(gid.clone());
        if let Err(code) = coordinator_check(&s, ctx, &id) {
            d.error_code = code;
            resp.groups.push(d);
            continue;
        }
        match s.groups.get(&id) {
            None => {
                d.group_state = sb("Dead");
            }
            Some(g) => {
                d.group_state = sb(g.state.name());
                d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or_default());
                d.protocol_data = sb(g.protocol.as_deref().unwrap_or_default());
                let proto = g.protocol.clone().unwrap_or_default();
                d.members = g
                    .members
                    .iter()
                    .map(|(mid, m)| {
                        let mut x = DescribedGroupMember::default()
                            .with_member_id(sb(mid))
                            .with_client_id(sb(&m.client_id))
                            .with_client_host(sb("/127.0.0.1"))
                            .with_member_metadata(
                                m.protocols
                                    .iter()
                                    .find(|(n, _)| *n == proto)
                                    .map(|(_, b)| b.clone())
                                    .unwrap_or_default(),
                            )
                            .with_member_assignment(m.assignment.clone());
                        if ctx.version >= 4 {
                            x.group_instance_id = m.instance_id.as_deref().map(sb);
                        }
                        x
                    })
                    .collect();
            }
        }
        resp.groups.push(d);
    }
    resp
}

pub(crate) fn list_groups(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let s = ctx.shared.lock();
    let mut resp = ListGroupsResponse::default();
    let mut ids: Vec<&String> = s.groups.keys().collect();
    ids.sort();
    for id in ids {
        if s.coordinator(0, id) != ctx.broker {
            continue;
        }
        let g = &s.groups[id];
        if !req.states_filter.is_empty()
            && !req
                .states_filter
                .iter()
                .any(|f| f.as_str() == g.state.name())
        {
            continue;
        }
        if !req.types_filter.is_empty()
            && !req
                .types_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case("classic"))
        {
            continue;
        }
        let mut l = ListedGroup::default()
            .with_group_id(GroupId(sb(id)))
            .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or_default()));
        if ctx.version >= 4 {
            l.group_state = sb(g.state.name());
        }
        if ctx.version >= 5 {
            l.group_type = sb("classic");
        }
        resp.groups.push(l);
    }
    resp
}

pub(crate) fn delete_groups(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut s = ctx.shared.lock();
    let mut resp = DeleteGroupsResponse::default();
    for gid in req.groups_names {
        let id = gid.0.to_string();
        let code = match coordinator_check(&s, ctx, &id) {
            Err(c) => c,
            Ok(()) => match s.groups.get(&id) {
                None => ec::GROUP_ID_NOT_FOUND,
                Some(g) if !g.members.is_empty() => ec::NON_EMPTY_GROUP,
                Some(_) => {
                    s.groups.remove(&id);
                    0
                }
            },
        };
        resp.results.push(
            DeletableGroupResult::default()
                .with_group_id(gid.clone())
                .with_error_code(code),
        );
    }
    resp
}
