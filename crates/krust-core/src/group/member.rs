//! [`Membership`]: one member of a classic consumer group, as a sans-IO state machine.
//!
//! The driver asks [`Membership::poll_request`] what to send (FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, or a metadata lookup the leader needs), sends it, and feeds
//! the answer back through the matching `handle_*`; it calls [`Membership::handle_timeout`] at
//! [`Membership::next_timeout`], and drains [`Membership::poll_event`] for what the
//! application must see (assigned, revoke, lost). Nothing here reads a clock: `now` comes in.
//!
//! # Ownership lease (the invariant that keeps a partition with one member)
//!
//! A member may hold partitions only while its *lease* is valid: until
//! `last_ok + min(session.timeout, rebalance.timeout)`, where `last_ok` is the time the member
//! **sent** the last request the coordinator answered successfully as a member of the current
//! generation (heartbeat, join or sync). The coordinator can only hand the member's partitions
//! to someone else after expiring it (no news for `session.timeout` after it *received*
//! something, which is later than we sent it) or after a rebalance that started after that
//! success went past `rebalance.timeout` without it. Both happen no earlier than the lease's end,
//! so when the lease runs out the member reports its partitions *lost* and stops, before anyone
//! else can get them. (The bug this prevents: a member cut off from its coordinator consuming
//! partitions that were already reassigned.)
//!
//! # Rebalance protocols
//!
//! Eager (range, roundrobin, sticky): before every join the member revokes everything and
//! waits for the application to finish (bounded by `revoke_timeout`). Cooperative
//! (cooperative-sticky, KIP-429): the member joins with its owned partitions; after SyncGroup it
//! revokes only what it lost (the rest keeps flowing) and, if it revoked anything, rejoins so
//! the follow-up rebalance can hand those partitions on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_wire::group_protocol::{
    decode_assignment, encode_subscription, ConsumerProtocolSubscription,
};
use krust_wire::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use krust_wire::kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::ErrorCode;

use super::assignor::{
    cooperative_adjust, encode_member_assignment, validate, Assignor, MemberSubscription,
    RebalanceProtocol,
};
use super::requests::{GroupRequest, HeartbeatReq, JoinReq, LeaveReq, SyncReq};
use super::{GroupConfig, GroupError, GroupMetadata};
use crate::backoff::{Backoff, BackoffPolicy, SmallRng};
use crate::fetch::{NodeId, TopicPartition};

/// What the application must learn about its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// Partitions newly assigned (eager: the whole assignment). Sent after every successful
    /// SyncGroup, possibly with no partitions, so the application sees each generation.
    Assigned {
        /// The partitions added.
        partitions: Vec<TopicPartition>,
        /// The membership they belong to.
        metadata: GroupMetadata,
    },
    /// Stop these partitions, commit what was processed, then call
    /// [`Membership::handle_revoke_done`]. They stay owned until then (or until
    /// `revoke_timeout` passes).
    Revoke {
        /// The partitions to give up.
        partitions: Vec<TopicPartition>,
    },
    /// These partitions are gone already (membership lost, lease expired): stop them and do not
    /// commit their offsets (another member may own them).
    Lost {
        /// The partitions lost.
        partitions: Vec<TopicPartition>,
        /// Why.
        reason: String,
    },
    /// The member cannot continue (fenced static member, authorization, bad configuration).
    Fatal(GroupError),
}

/// What a pending revocation leads to once the application is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRevoke {
    /// Eager: join the group now.
    Join,
    /// Cooperative: rejoin for the follow-up rebalance.
    Rejoin,
    /// Nothing more (unsubscribe).
    Nothing,
    /// Leave the group (close).
    Leave,
}

#[derive(Debug, Clone)]
struct PendingRevoke {
    partitions: Vec<TopicPartition>,
    deadline: Instant,
    then: AfterRevoke,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Not in a generation; join when possible.
    NeedJoin,
    /// JoinGroup in flight.
    Joining,
    /// Joined; the SyncGroup to send (leader: assignments computed once metadata is known).
    Sync {
        members: Option<Vec<MemberSubscription>>,
    },
    /// SyncGroup in flight.
    Syncing,
    /// In a generation with an assignment.
    Stable,
    /// Waiting for the application to poll again after `max.poll.interval.ms` passed.
    PollTimedOut,
    /// Not subscribed.
    Idle,
    /// Left the group (closed).
    Left,
    /// Stopped by a fatal error.
    Failed,
}

/// One member of a classic consumer group (see the module documentation).
#[derive(Debug)]
pub struct Membership {
    cfg: GroupConfig,
    topics: BTreeSet<String>,
    metadata: BTreeMap<String, i32>,
    /// Leader only: the partition counts the last assignment was computed with (a change
    /// triggers a rebalance, as in Java).
    assigned_with: BTreeMap<String, i32>,
    /// The partition counts of this member's own topics (those known) at its last join; a
    /// change triggers a rebalance whoever the leader is (librdkafka does the same).
    joined_with: BTreeMap<String, i32>,
    /// The counts the current assignment was made under (`joined_with` of the join that
    /// produced it; kept across a static rejoin that returns the same generation).
    assignment_counts: BTreeMap<String, i32>,
    /// This member is the leader of a generation whose assignment it did not compute
    /// (KIP-814 `skip_assignment`, a static leader rejoining).
    skipped_assignment: bool,
    coordinator: Option<NodeId>,
    finding: bool,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    phase: Phase,
    rejoin: Option<String>,
    owned: BTreeSet<TopicPartition>,
    /// The last assignment and its generation (the sticky assignor's user data).
    last_assignment: (Vec<TopicPartition>, i32),
    pending: Option<PendingRevoke>,
    hb_in_flight: bool,
    next_heartbeat: Option<Instant>,
    lease_anchor: Option<Instant>,
    /// The retry backoff after a failed request (KIP-580: `retry.backoff.ms` doubling up to
    /// `retry.backoff.max.ms`, ±20% jitter); no request leaves while it waits.
    backoff: Backoff,
    /// The jitter's random source ([`Membership::seed_jitter`]).
    rng: SmallRng,
    last_poll: Instant,
    closing: bool,
    leave_wanted: bool,
    /// The join or sync in flight (stale answers are ignored).
    seq: u64,
    metadata_in_flight: bool,
    events: VecDeque<GroupEvent>,
}

/// A deterministic seed for a member's jitter: FNV-1a over the group and instance ids.
fn jitter_seed(cfg: &GroupConfig) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let instance = cfg.instance_id.as_deref().unwrap_or("");
    for b in cfg.group_id.bytes().chain([0]).chain(instance.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Membership {
    /// A member that has not joined yet.
    pub fn new(cfg: GroupConfig, now: Instant) -> Self {
        let backoff = Backoff::new(BackoffPolicy::new(cfg.retry_backoff, cfg.retry_backoff_max));
        let rng = SmallRng::new(jitter_seed(&cfg));
        Membership {
            cfg,
            topics: BTreeSet::new(),
            metadata: BTreeMap::new(),
            assigned_with: BTreeMap::new(),
            joined_with: BTreeMap::new(),
            assignment_counts: BTreeMap::new(),
            skipped_assignment: false,
            coordinator: None,
            finding: false,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            phase: Phase::Idle,
            rejoin: None,
            owned: BTreeSet::new(),
            last_assignment: (Vec::new(), -1),
            pending: None,
            hb_in_flight: false,
            next_heartbeat: None,
            lease_anchor: None,
            backoff,
            rng,
            last_poll: now,
            closing: false,
            leave_wanted: false,
            seq: 0,
            metadata_in_flight: false,
            events: VecDeque::new(),
        }
    }

    /// Reseeds the retry backoff's jitter. The default seed comes from the group and instance
    /// ids, so a simulation replays exactly; a driver gives each member a random seed so that
    /// members of one group do not retry in step.
    pub fn seed_jitter(&mut self, seed: u64) {
        self.rng = SmallRng::new(seed);
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// Sets the subscribed topics (a regex subscription is resolved by the driver and passed
    /// here whenever the matching set changes). A change triggers a rebalance; an empty set
    /// leaves the group's assignment (revoking everything).
    pub fn subscribe(&mut self, topics: BTreeSet<String>, now: Instant) {
        if topics == self.topics && !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.topics = topics;
        self.last_poll = now;
        if matches!(self.phase, Phase::Left | Phase::Failed) {
            return;
        }
        if self.topics.is_empty() {
            if !self.owned.is_empty() {
                self.begin_revoke(
                    self.owned.iter().cloned().collect(),
                    AfterRevoke::Nothing,
                    now,
                );
            }
            self.phase = Phase::Idle;
            return;
        }
        if matches!(self.phase, Phase::Idle) {
            self.phase = Phase::NeedJoin;
        }
        self.request_rejoin("subscription changed", now);
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &BTreeSet<String> {
        &self.topics
    }

    /// Partition counts for topics (the driver passes what metadata says about the subscribed
    /// topics). A change of a subscribed topic's partition count triggers a rebalance.
    pub fn handle_metadata(&mut self, counts: &BTreeMap<String, i32>, now: Instant) {
        self.metadata_in_flight = false;
        for (t, n) in counts {
            self.metadata.insert(t.clone(), *n);
        }
        if matches!(self.phase, Phase::Stable) && self.assignment_outdated() {
            self.request_rejoin("partition count of a subscribed topic changed", now);
        }
    }

    /// A metadata lookup asked for by [`GroupRequest::Metadata`] failed.
    pub fn handle_metadata_failed(&mut self, now: Instant) {
        self.metadata_in_flight = false;
        self.backoff(now);
    }

    /// The application polled (resets the `max.poll.interval.ms` timer; after a poll timeout,
    /// rejoins).
    pub fn handle_app_poll(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.phase, Phase::PollTimedOut) {
            self.phase = Phase::NeedJoin;
            self.rejoin = Some("application polled again".into());
        }
    }

    /// The membership a transactional producer needs (KIP-447), or `None` outside a
    /// generation.
    pub fn group_metadata(&self) -> GroupMetadata {
        GroupMetadata {
            group_id: self.cfg.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            instance_id: self.cfg.instance_id.clone(),
        }
    }

    /// The partitions this member owns now (including ones being revoked).
    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    /// The partitions being revoked (waiting for [`Membership::handle_revoke_done`]).
    pub fn revoking(&self) -> &[TopicPartition] {
        self.pending.as_ref().map_or(&[], |p| &p.partitions)
    }

    /// The coordinator, if known.
    pub fn coordinator(&self) -> Option<NodeId> {
        self.coordinator
    }

    /// Whether the member is in a generation with an assignment and no rebalance pending.
    pub fn is_stable(&self) -> bool {
        matches!(self.phase, Phase::Stable) && self.rejoin.is_none() && self.pending.is_none()
    }

    /// Whether the member left the group or failed (nothing more will be sent).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Left | Phase::Failed)
    }

    /// The name of the protocol (assignor) chosen for this generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        let name = self.protocol.as_deref();
        let a = name
            .and_then(|n| self.cfg.assignors.iter().find(|a| a.name() == n))
            .or_else(|| self.cfg.assignors.first());
        a.map_or(RebalanceProtocol::Eager, |a| a.protocol())
    }

    fn lease(&self) -> Duration {
        self.cfg.session_timeout.min(self.cfg.rebalance_timeout)
    }

    fn backoff(&mut self, now: Instant) {
        self.backoff.handle_failure(now, &mut self.rng);
    }

    fn ok(&mut self) {
        self.backoff.handle_success();
    }

    fn request_rejoin(&mut self, reason: &str, now: Instant) {
        if matches!(
            self.phase,
            Phase::Left | Phase::Failed | Phase::Idle | Phase::PollTimedOut
        ) {
            return;
        }
        if self.rejoin.is_none() {
            self.rejoin = Some(reason.to_string());
        }
        let _ = now;
    }

    fn begin_revoke(&mut self, partitions: Vec<TopicPartition>, then: AfterRevoke, now: Instant) {
        if let Some(p) = &mut self.pending {
            // Merge into the revocation already running.
            for tp in partitions {
                if !p.partitions.contains(&tp) {
                    p.partitions.push(tp);
                }
            }
            if then != AfterRevoke::Nothing {
                p.then = then;
            }
            return;
        }
        if partitions.is_empty() {
            self.after_revoke(then, now);
            return;
        }
        self.events.push_back(GroupEvent::Revoke {
            partitions: partitions.clone(),
        });
        self.pending = Some(PendingRevoke {
            partitions,
            deadline: now + self.cfg.revoke_timeout,
            then,
        });
    }

    /// The application finished handling the last [`GroupEvent::Revoke`] (committed,
    /// flushed): the partitions are released.
    pub fn handle_revoke_done(&mut self, now: Instant) {
        if let Some(p) = self.pending.take() {
            for tp in &p.partitions {
                self.owned.remove(tp);
            }
            self.after_revoke(p.then, now);
        }
    }

    fn after_revoke(&mut self, then: AfterRevoke, now: Instant) {
        match then {
            AfterRevoke::Join => {
                if !matches!(self.phase, Phase::Left | Phase::Failed | Phase::Idle) {
                    self.phase = Phase::NeedJoin;
                }
            }
            AfterRevoke::Rejoin => self.request_rejoin("partitions revoked (follow-up)", now),
            AfterRevoke::Nothing | AfterRevoke::Leave => {}
        }
    }

    /// Drops every owned partition as lost and forgets the generation (and, with
    /// `reset_member`, the member id).
    fn lose(&mut self, reason: &str, reset_member: bool) {
        self.pending = None;
        let lost: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        if !lost.is_empty() {
            self.events.push_back(GroupEvent::Lost {
                partitions: lost,
                reason: reason.to_string(),
            });
        }
        self.generation = -1;
        self.lease_anchor = None;
        if reset_member {
            self.member_id.clear();
        }
    }

    fn fail(&mut self, err: GroupError) {
        self.lose("member failed", false);
        self.phase = Phase::Failed;
        self.events.push_back(GroupEvent::Fatal(err));
    }

    /// Starts leaving the group: revokes everything (the application may commit), then sends
    /// LeaveGroup (dynamic members; static members keep their place for a restart within the
    /// session timeout, as in KIP-345), then stops.
    pub fn close(&mut self, now: Instant) {
        if self.closing || matches!(self.phase, Phase::Left | Phase::Failed) {
            return;
        }
        self.closing = true;
        if !self.owned.is_empty() {
            let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.begin_revoke(all, AfterRevoke::Leave, now);
        }
    }

    /// The next instant after `now` at which [`Membership::handle_timeout`] or
    /// [`Membership::poll_request`] may have something new to do (a heartbeat, a backoff's end,
    /// the lease, the revocation deadline, `max.poll.interval.ms`). Call both then, and
    /// whenever an answer or an application event arrives.
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x.filter(|x| *x > now) {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        at(self.backoff.poll_deadline());
        at(self.pending.as_ref().map(|p| p.deadline));
        if !self.owned.is_empty() {
            at(self.lease_anchor.map(|a| a + self.lease()));
        }
        if matches!(self.phase, Phase::Stable) && !self.hb_in_flight {
            at(self.next_heartbeat);
        }
        if self.cfg.max_poll_interval.is_some() && self.in_group() {
            at(self.cfg.max_poll_interval.map(|d| self.last_poll + d));
        }
        t
    }

    fn assignment_outdated(&self) -> bool {
        self.assigned_with
            .iter()
            .chain(self.assignment_counts.iter())
            .any(|(t, n)| self.metadata.get(t).is_some_and(|m| m != n))
    }

    fn in_group(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Idle | Phase::Left | Phase::Failed | Phase::PollTimedOut
        )
    }

    /// Runs the timers: the lease, the revocation deadline, `max.poll.interval.ms`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = &self.pending {
            if now >= p.deadline {
                // Bounded wait: the application did not finish in time; the partitions are
                // released anyway (the driver stops delivering them).
                self.handle_revoke_done(now);
            }
        }
        if !self.owned.is_empty() {
            if let Some(a) = self.lease_anchor {
                if now >= a + self.lease() {
                    self.lose("no successful heartbeat within the session timeout", false);
                    self.request_rejoin("lease expired", now);
                }
            }
        }
        if let Some(d) = self.cfg.max_poll_interval {
            if self.in_group() && !self.closing && now >= self.last_poll + d {
                self.lose("max.poll.interval.ms passed without a poll", false);
                self.phase = Phase::PollTimedOut;
                self.rejoin = None;
                self.leave_wanted = true;
            }
        }
    }
}

// The request side.
impl Membership {
    fn subscription_bytes(&self, assignor: &Arc<dyn Assignor>) -> Bytes {
        let cooperative = assignor.protocol() == RebalanceProtocol::Cooperative;
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = self
            .topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect();
        let (last, last_gen) = &self.last_assignment;
        s.user_data = assignor.user_data(last, *last_gen);
        // Eager members revoked everything before joining; they report nothing.
        let owned: &BTreeSet<TopicPartition> = &self.owned;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        if cooperative {
            for tp in owned {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
        }
        s.owned_partitions = by_topic
            .into_iter()
            .map(|(t, ps)| {
                let mut o = OwnedTopic::default();
                o.topic = StrBytes::from_string(t.to_string()).into();
                o.partitions = ps;
                o
            })
            .collect();
        s.generation_id = if cooperative { self.generation } else { -1 };
        s.rack_id = self.cfg.rack.clone().map(StrBytes::from_string);
        encode_subscription(&s, krust_wire::group_protocol::MAX_VERSION)
            .expect("a subscription built here always encodes")
    }

    /// What to send next, if anything. The returned request is considered in flight until its
    /// `handle_*` (or `handle_*_failed`) is called.
    pub fn poll_request(&mut self, now: Instant) -> Option<GroupRequest> {
        if let Some(r) = self.poll_leave(now) {
            return Some(r);
        }
        if matches!(
            self.phase,
            Phase::Left | Phase::Failed | Phase::Idle | Phase::PollTimedOut
        ) {
            return None;
        }
        if self.backoff.is_waiting(now) {
            return None;
        }
        if self.coordinator.is_none() {
            if self.finding {
                return None;
            }
            self.finding = true;
            return Some(GroupRequest::FindCoordinator {
                key: self.cfg.group_id.clone(),
            });
        }
        let coordinator = self.coordinator?;
        if self.closing {
            return None;
        }
        // A rejoin waits for a revocation in progress.
        if self.rejoin.is_some() && self.pending.is_none() && matches!(self.phase, Phase::Stable) {
            self.phase = Phase::NeedJoin;
        }
        match &self.phase {
            Phase::NeedJoin if self.pending.is_none() => {
                if self.rebalance_protocol() == RebalanceProtocol::Eager && !self.owned.is_empty() {
                    let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
                    self.begin_revoke(all, AfterRevoke::Join, now);
                    if self.pending.is_some() {
                        return None;
                    }
                }
                self.rejoin = None;
                self.phase = Phase::Joining;
                self.assigned_with.clear();
                self.joined_with = self
                    .topics
                    .iter()
                    .filter_map(|t| self.metadata.get(t).map(|n| (t.clone(), *n)))
                    .collect();
                let protocols = self
                    .cfg
                    .assignors
                    .iter()
                    .map(|a| (a.name().to_string(), self.subscription_bytes(a)))
                    .collect();
                self.seq += 1;
                Some(GroupRequest::Join(JoinReq {
                    seq: self.seq,
                    coordinator,
                    group_id: self.cfg.group_id.clone(),
                    member_id: self.member_id.clone(),
                    instance_id: self.cfg.instance_id.clone(),
                    session_timeout: self.cfg.session_timeout,
                    rebalance_timeout: self.cfg.rebalance_timeout,
                    protocols,
                    sent_at: now,
                }))
            }
            Phase::Sync { members } => {
                let assignments = match members {
                    None => Vec::new(),
                    Some(members) => {
                        let missing: Vec<String> = members
                            .iter()
                            .flat_map(|m| m.topics.iter())
                            .filter(|t| !self.metadata.contains_key(*t))
                            .cloned()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect();
                        if !missing.is_empty() {
                            if self.metadata_in_flight {
                                return None;
                            }
                            self.metadata_in_flight = true;
                            return Some(GroupRequest::Metadata { topics: missing });
                        }
                        let used: BTreeMap<String, i32> = members
                            .iter()
                            .flat_map(|m| m.topics.iter())
                            .map(|t| (t.clone(), self.metadata.get(t).copied().unwrap_or(0)))
                            .collect();
                        match self.compute_assignment(members) {
                            Ok(a) => {
                                self.assigned_with = used;
                                a
                            }
                            Err(e) => {
                                self.fail(e);
                                return None;
                            }
                        }
                    }
                };
                self.phase = Phase::Syncing;
                self.seq += 1;
                Some(GroupRequest::Sync(SyncReq {
                    seq: self.seq,
                    coordinator,
                    group_id: self.cfg.group_id.clone(),
                    generation: self.generation,
                    member_id: self.member_id.clone(),
                    instance_id: self.cfg.instance_id.clone(),
                    protocol: self.protocol.clone().unwrap_or_default(),
                    assignments,
                    sent_at: now,
                }))
            }
            Phase::Stable => {
                if self.hb_in_flight || self.next_heartbeat.is_some_and(|t| now < t) {
                    return None;
                }
                self.hb_in_flight = true;
                Some(GroupRequest::Heartbeat(HeartbeatReq {
                    coordinator,
                    group_id: self.cfg.group_id.clone(),
                    generation: self.generation,
                    member_id: self.member_id.clone(),
                    instance_id: self.cfg.instance_id.clone(),
                    sent_at: now,
                }))
            }
            _ => None,
        }
    }

    fn poll_leave(&mut self, now: Instant) -> Option<GroupRequest> {
        let wants =
            (self.closing && self.pending.is_none()) || (self.leave_wanted && !self.closing);
        if !wants || matches!(self.phase, Phase::Left | Phase::Failed) {
            return None;
        }
        let coordinator = self.coordinator;
        let dynamic = self.cfg.instance_id.is_none();
        let poll_timeout = self.leave_wanted && !self.closing;
        self.leave_wanted = false;
        let member_id = std::mem::take(&mut self.member_id);
        if self.closing {
            self.lose("closed", true);
            self.phase = Phase::Left;
        } else {
            self.generation = -1;
        }
        // Static members never send LeaveGroup (KIP-345, as Java): a restart within the session
        // timeout keeps their partitions.
        let _ = poll_timeout;
        let send = !member_id.is_empty() && dynamic && coordinator.is_some();
        let _ = now;
        send.then(|| {
            GroupRequest::Leave(LeaveReq {
                coordinator: coordinator.expect("checked"),
                group_id: self.cfg.group_id.clone(),
                member_id,
                instance_id: self.cfg.instance_id.clone(),
            })
        })
    }

    fn compute_assignment(
        &self,
        members: &[MemberSubscription],
    ) -> Result<Vec<(String, Bytes)>, GroupError> {
        let name = self.protocol.clone().unwrap_or_default();
        let assignor = self
            .cfg
            .assignors
            .iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                GroupError::Protocol(format!("the group chose unknown assignor `{name}`"))
            })?;
        let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
        let partitions: BTreeMap<String, i32> = topics
            .into_iter()
            .filter_map(|t| self.metadata.get(t).map(|n| (t.clone(), *n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut a = assignor.assign(&partitions, members);
        for m in members {
            a.entry(m.member_id.clone()).or_default();
        }
        validate(&a, &partitions, members)
            .map_err(|e| GroupError::Protocol(format!("assignor `{name}`: {e}")))?;
        if assignor.protocol() == RebalanceProtocol::Cooperative {
            cooperative_adjust(&mut a, members);
        }
        Ok(a.into_iter()
            .map(|(member, tps)| (member, encode_member_assignment(&tps)))
            .collect())
    }
}

/// How a failed group request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// Transport error or timeout: the coordinator may have moved; find it again.
    Transport,
    /// The request could not even be built or sent (no connection yet): retry after a backoff.
    Backoff,
}

// The response side.
impl Membership {
    /// FindCoordinator answered: `Ok(node)` or the error code.
    pub fn handle_find_coordinator(&mut self, result: Result<NodeId, ErrorCode>, now: Instant) {
        self.finding = false;
        match result {
            Ok(node) => {
                self.coordinator = Some(node);
                self.ok();
            }
            Err(code) => {
                if is_fatal(code) {
                    self.fail(GroupError::Broker {
                        api: "FindCoordinator",
                        code,
                    });
                } else {
                    self.backoff(now);
                }
            }
        }
    }

    /// FindCoordinator could not be sent or got no answer.
    pub fn handle_find_coordinator_failed(&mut self, now: Instant) {
        self.finding = false;
        self.backoff(now);
    }

    /// A request outside the machine (a commit, an offset fetch) was told the coordinator
    /// moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE) or lost its connection: find it again.
    pub fn handle_coordinator_moved(&mut self, now: Instant) {
        if self.coordinator.is_some() {
            self.coordinator_lost(now);
        }
    }

    fn coordinator_lost(&mut self, now: Instant) {
        self.coordinator = None;
        self.backoff(now);
    }

    /// A group request (join, sync, heartbeat) failed without an answer.
    pub fn handle_request_failed(
        &mut self,
        req: &GroupRequest,
        failure: RequestFailure,
        now: Instant,
    ) {
        match req {
            GroupRequest::FindCoordinator { .. } => self.handle_find_coordinator_failed(now),
            GroupRequest::Metadata { .. } => self.handle_metadata_failed(now),
            GroupRequest::Leave(_) => {}
            GroupRequest::Heartbeat(h) => {
                self.hb_in_flight = false;
                if h.generation == self.generation {
                    self.next_heartbeat = Some(now + self.cfg.retry_backoff);
                }
                if failure == RequestFailure::Transport {
                    self.coordinator_lost(now);
                }
            }
            GroupRequest::Join(j) => {
                if j.seq != self.seq {
                    return;
                }
                if matches!(self.phase, Phase::Joining) {
                    self.phase = Phase::NeedJoin;
                }
                if failure == RequestFailure::Transport {
                    self.coordinator_lost(now);
                } else {
                    self.backoff(now);
                }
            }
            GroupRequest::Sync(r) => {
                if r.seq != self.seq {
                    return;
                }
                if matches!(self.phase, Phase::Syncing) {
                    self.phase = Phase::NeedJoin;
                }
                if failure == RequestFailure::Transport {
                    self.coordinator_lost(now);
                } else {
                    self.backoff(now);
                }
            }
        }
    }

    /// JoinGroup answered.
    pub fn handle_join(&mut self, req: &JoinReq, resp: JoinGroupResponse, now: Instant) {
        if !matches!(self.phase, Phase::Joining) || req.seq != self.seq {
            return;
        }
        let code = ErrorCode(resp.error_code);
        match code {
            ErrorCode::NONE => {
                self.ok();
                self.member_id = resp.member_id.to_string();
                self.generation = resp.generation_id;
                self.protocol = resp.protocol_name.as_ref().map(|p| p.to_string());
                self.lease_anchor = Some(req.sent_at);
                let known = self
                    .protocol
                    .as_deref()
                    .is_some_and(|p| self.cfg.assignors.iter().any(|a| a.name() == p));
                if !known {
                    self.fail(GroupError::Protocol(format!(
                        "the coordinator chose protocol {:?}, which this member did not offer",
                        self.protocol
                    )));
                    return;
                }
                let leader = resp.leader.as_str() == resp.member_id.as_str();
                self.skipped_assignment = leader && resp.skip_assignment;
                let members = if leader && !resp.skip_assignment {
                    Some(
                        resp.members
                            .into_iter()
                            .map(|m| {
                                MemberSubscription::from_metadata(
                                    m.member_id.to_string(),
                                    m.group_instance_id.map(|i| i.to_string()),
                                    m.metadata,
                                )
                            })
                            .collect(),
                    )
                } else {
                    None
                };
                self.phase = Phase::Sync { members };
            }
            ErrorCode::MEMBER_ID_REQUIRED => {
                // KIP-394: join again at once with the id the coordinator gave us.
                self.member_id = resp.member_id.to_string();
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.lose("the coordinator no longer knows this member", true);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::ILLEGAL_GENERATION => {
                self.lose("stale generation", false);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::REBALANCE_IN_PROGRESS | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS => {
                self.phase = Phase::NeedJoin;
                self.backoff(now);
            }
            ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
                self.phase = Phase::NeedJoin;
                self.coordinator_lost(now);
            }
            code if is_fatal(code) || !code.is_retriable() => {
                self.fail(GroupError::Broker {
                    api: "JoinGroup",
                    code,
                });
            }
            _ => {
                self.phase = Phase::NeedJoin;
                self.backoff(now);
            }
        }
    }

    /// SyncGroup answered.
    pub fn handle_sync(&mut self, req: &SyncReq, resp: SyncGroupResponse, now: Instant) {
        if !matches!(self.phase, Phase::Syncing) || req.seq != self.seq {
            return;
        }
        let code = ErrorCode(resp.error_code);
        match code {
            ErrorCode::NONE => {
                self.ok();
                let assignment = match decode_assignment(resp.assignment) {
                    Ok((_, a)) => a,
                    Err(_) => {
                        self.phase = Phase::NeedJoin;
                        self.backoff(now);
                        return;
                    }
                };
                let new: BTreeSet<TopicPartition> = assignment
                    .assigned_partitions
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(move |p| TopicPartition::new(t.topic.as_str(), *p))
                    })
                    .collect();
                self.lease_anchor = Some(req.sent_at);
                self.phase = Phase::Stable;
                self.next_heartbeat = Some(now + self.cfg.heartbeat_interval);
                // A static rejoin without a rebalance returns the generation (and assignment)
                // we had: it was made under the counts we had then, not the ones now.
                let same_generation =
                    self.generation >= 0 && self.last_assignment.1 == self.generation;
                if !same_generation {
                    self.assignment_counts = self.joined_with.clone();
                    if self.skipped_assignment {
                        // A restarted static leader cannot tell whether partitions were added
                        // while it was away (Java shares this gap): rebalance once to be sure.
                        self.request_rejoin("static leader rejoined without a baseline", now);
                    }
                }
                self.last_assignment = (new.iter().cloned().collect(), self.generation);
                let revoked: Vec<TopicPartition> = self.owned.difference(&new).cloned().collect();
                let added: Vec<TopicPartition> = new.difference(&self.owned).cloned().collect();
                self.owned.extend(added.iter().cloned());
                self.events.push_back(GroupEvent::Assigned {
                    partitions: added,
                    metadata: self.group_metadata(),
                });
                if !revoked.is_empty() {
                    // Cooperative: give up what moved, then rejoin for the follow-up. (Eager
                    // members own nothing here: they revoked everything before joining.)
                    self.begin_revoke(revoked, AfterRevoke::Rejoin, now);
                }
                // Leader: a partition count changed after the assignment was computed.
                if self.assignment_outdated() {
                    self.request_rejoin("metadata changed during the rebalance", now);
                }
            }
            ErrorCode::REBALANCE_IN_PROGRESS => {
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.lose("the coordinator no longer knows this member", true);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::ILLEGAL_GENERATION => {
                self.lose("stale generation", false);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
                self.phase = Phase::NeedJoin;
                self.coordinator_lost(now);
            }
            code if is_fatal(code) || !code.is_retriable() => {
                self.fail(GroupError::Broker {
                    api: "SyncGroup",
                    code,
                });
            }
            _ => {
                self.phase = Phase::NeedJoin;
                self.backoff(now);
            }
        }
    }

    /// Heartbeat answered with `code`.
    pub fn handle_heartbeat(&mut self, req: &HeartbeatReq, code: ErrorCode, now: Instant) {
        self.hb_in_flight = false;
        if req.generation != self.generation || req.member_id != self.member_id {
            return;
        }
        self.next_heartbeat = Some(now + self.cfg.heartbeat_interval);
        match code {
            ErrorCode::NONE => {
                self.ok();
                if matches!(self.phase, Phase::Stable) {
                    self.lease_anchor = Some(req.sent_at);
                }
            }
            ErrorCode::REBALANCE_IN_PROGRESS => {
                self.request_rejoin("the group is rebalancing", now)
            }
            ErrorCode::ILLEGAL_GENERATION => {
                self.lose("stale generation", false);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.lose("the coordinator no longer knows this member", true);
                self.phase = Phase::NeedJoin;
            }
            ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_lost(now);
            }
            code if is_fatal(code) => self.fail(GroupError::Broker {
                api: "Heartbeat",
                code,
            }),
            _ => self.backoff(now),
        }
    }
}

/// Codes after which the member cannot go on.
fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::FENCED_INSTANCE_ID
            | ErrorCode::GROUP_AUTHORIZATION_FAILED
            | ErrorCode::INVALID_SESSION_TIMEOUT
            | ErrorCode::INCONSISTENT_GROUP_PROTOCOL
            | ErrorCode::INVALID_GROUP_ID
            | ErrorCode::GROUP_MAX_SIZE_REACHED
            | ErrorCode::UNSUPPORTED_VERSION
            | ErrorCode::INVALID_REQUEST
    )
}
