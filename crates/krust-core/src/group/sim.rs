//! A seeded simulation of whole consumer groups: several [`Membership`] machines against a
//! model of Kafka's classic group coordinator, with random message delays, lost requests and
//! responses, injected coordinator errors, coordinator moves, crashes, restarts (static and
//! dynamic), graceful leaves, slow revocations and stalled applications, all on a virtual
//! clock.
//!
//! Checked at every step: no partition is held by two live members. Checked after the faults
//! stop and the group settles: every member is stable in one generation and every partition of
//! a subscribed topic is held by exactly one member.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_wire::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use krust_wire::kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::ErrorCode;

use super::assignor::{builtin, Assignor};
use super::requests::GroupRequest;
use super::{GroupConfig, GroupEvent, Membership, RequestFailure};
use crate::backoff::SmallRng;
use crate::fetch::TopicPartition;

const MS: Duration = Duration::from_millis(1);

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

// ---------------------------------------------------------------------------------------------
// The model coordinator.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Empty,
    Preparing,
    Completing,
    Stable,
}

struct CMember {
    instance_id: Option<String>,
    protocols: Vec<(String, Bytes)>,
    session: Duration,
    rebalance: Duration,
    last_heard: Instant,
    /// A parked JoinGroup: (simulated member index, incarnation, request id).
    join: Option<(usize, u32, u64)>,
    sync: Option<(usize, u32, u64)>,
    assignment: Bytes,
}

/// An answer the coordinator produced, to be delivered to a member.
enum Answer {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Code(ErrorCode),
}

struct Coordinator {
    state: CState,
    generation: i32,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, CMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: BTreeSet<String>,
    statics: HashMap<String, String>,
    deadline: Option<Instant>,
    next_id: u64,
    out: Vec<((usize, u32, u64), Answer)>,
}

impl Coordinator {
    fn new() -> Self {
        Coordinator {
            state: CState::Empty,
            generation: 0,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeSet::new(),
            statics: HashMap::new(),
            deadline: None,
            next_id: 0,
            out: Vec::new(),
        }
    }

    fn prepare(&mut self, now: Instant) {
        if self.state == CState::Preparing {
            return;
        }
        // Parked syncs learn about the rebalance.
        let parked: Vec<_> = self
            .members
            .values_mut()
            .filter_map(|m| m.sync.take())
            .collect();
        for to in parked {
            self.out
                .push((to, Answer::Code(ErrorCode::REBALANCE_IN_PROGRESS)));
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance)
            .max()
            .unwrap_or_default();
        self.state = CState::Preparing;
        self.deadline = Some(now + timeout);
    }

    fn remove(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(i) = m.instance_id {
                if self.statics.get(&i).is_some_and(|x| x == id) {
                    self.statics.remove(&i);
                }
            }
            if let Some(to) = m.join {
                self.out
                    .push((to, Answer::Code(ErrorCode::UNKNOWN_MEMBER_ID)));
            }
            if let Some(to) = m.sync {
                self.out
                    .push((to, Answer::Code(ErrorCode::UNKNOWN_MEMBER_ID)));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn join_response(&self, id: &str) -> JoinGroupResponse {
        let mut r = JoinGroupResponse::default();
        r.generation_id = self.generation;
        r.protocol_type = Some(sb("consumer"));
        r.protocol_name = self.protocol.as_deref().map(sb);
        r.leader = sb(self.leader.as_deref().unwrap_or(""));
        r.member_id = sb(id);
        if self.leader.as_deref() == Some(id) {
            let proto = self.protocol.clone().unwrap_or_default();
            r.members = self
                .members
                .iter()
                .map(|(mid, m)| {
                    let mut x = JoinGroupResponseMember::default();
                    x.member_id = sb(mid);
                    x.group_instance_id = m.instance_id.as_deref().map(sb);
                    x.metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == proto)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    x
                })
                .collect();
        }
        r
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != CState::Preparing {
            return;
        }
        let all = self.members.values().all(|m| m.join.is_some());
        let expired = self.deadline.is_some_and(|d| now >= d);
        if !all && !expired {
            return;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.generation += 1;
        self.deadline = None;
        if self.members.is_empty() {
            self.state = CState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        // The protocol every member supports, preferring the first member's order.
        let first = self.members.values().next().expect("non-empty");
        self.protocol = first.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(x, _)| x == n))
        });
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = CState::Completing;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.join_response(&id);
            let m = self.members.get_mut(&id).expect("present");
            m.last_heard = now;
            let to = m.join.take().expect("all joined");
            self.out.push((to, Answer::Join(resp)));
        }
    }

    fn tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.join.is_none() && m.sync.is_none() && now >= m.last_heard + m.session
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            self.remove(&id);
            if self.state != CState::Preparing {
                self.prepare(now);
            }
        }
        if self.state == CState::Preparing {
            self.maybe_complete_join(now);
        }
    }

    fn handle(&mut self, from: (usize, u32, u64), req: &GroupRequest, now: Instant) {
        match req {
            GroupRequest::Join(j) => {
                let mut id = j.member_id.clone();
                if id.is_empty() {
                    if let Some(inst) = &j.instance_id {
                        // Static member (re)joining: takes over its instance's slot.
                        self.next_id += 1;
                        let new_id = format!("{inst}-{}", self.next_id);
                        if let Some(old) = self.statics.get(inst).cloned() {
                            if let Some(mut m) = self.members.remove(&old) {
                                if let Some(to) = m.join.take() {
                                    self.out
                                        .push((to, Answer::Code(ErrorCode::FENCED_INSTANCE_ID)));
                                }
                                if let Some(to) = m.sync.take() {
                                    self.out
                                        .push((to, Answer::Code(ErrorCode::FENCED_INSTANCE_ID)));
                                }
                                let same = m.protocols == j.protocols;
                                m.protocols = j.protocols.clone();
                                m.last_heard = now;
                                if self.leader.as_deref() == Some(old.as_str()) {
                                    self.leader = Some(new_id.clone());
                                }
                                self.statics.insert(inst.clone(), new_id.clone());
                                if self.state == CState::Stable && same {
                                    // KIP-345: no rebalance; the member gets the current
                                    // generation and syncs to its old assignment.
                                    self.members.insert(new_id.clone(), m);
                                    let mut r = self.join_response(&new_id);
                                    r.members.clear();
                                    r.skip_assignment =
                                        self.leader.as_deref() == Some(new_id.as_str());
                                    self.out.push((from, Answer::Join(r)));
                                    return;
                                }
                                m.join = Some(from);
                                self.members.insert(new_id, m);
                                self.prepare(now);
                                self.maybe_complete_join(now);
                                return;
                            }
                        }
                        self.statics.insert(inst.clone(), new_id.clone());
                        id = new_id;
                    } else {
                        self.next_id += 1;
                        let new_id = format!("m-{}", self.next_id);
                        self.pending.insert(new_id.clone());
                        let mut r = JoinGroupResponse::default();
                        r.error_code = ErrorCode::MEMBER_ID_REQUIRED.0;
                        r.member_id = sb(&new_id);
                        self.out.push((from, Answer::Join(r)));
                        return;
                    }
                } else if !self.members.contains_key(&id) && !self.pending.remove(&id) {
                    let mut r = JoinGroupResponse::default();
                    r.error_code = ErrorCode::UNKNOWN_MEMBER_ID.0;
                    self.out.push((from, Answer::Join(r)));
                    return;
                }
                let m = self.members.entry(id.clone()).or_insert_with(|| CMember {
                    instance_id: j.instance_id.clone(),
                    protocols: Vec::new(),
                    session: j.session_timeout,
                    rebalance: j.rebalance_timeout,
                    last_heard: now,
                    join: None,
                    sync: None,
                    assignment: Bytes::new(),
                });
                m.protocols = j.protocols.clone();
                m.last_heard = now;
                if let Some(old) = m.join.replace(from) {
                    self.out
                        .push((old, Answer::Code(ErrorCode::REBALANCE_IN_PROGRESS)));
                }
                if let Some(old) = m.sync.take() {
                    self.out
                        .push((old, Answer::Code(ErrorCode::REBALANCE_IN_PROGRESS)));
                }
                self.prepare(now);
                self.maybe_complete_join(now);
            }
            GroupRequest::Sync(s) => {
                let Some(m) = self.members.get_mut(&s.member_id) else {
                    self.out
                        .push((from, Answer::Code(ErrorCode::UNKNOWN_MEMBER_ID)));
                    return;
                };
                m.last_heard = now;
                if s.generation != self.generation {
                    self.out
                        .push((from, Answer::Code(ErrorCode::ILLEGAL_GENERATION)));
                    return;
                }
                match self.state {
                    CState::Preparing | CState::Empty => {
                        self.out
                            .push((from, Answer::Code(ErrorCode::REBALANCE_IN_PROGRESS)));
                    }
                    CState::Stable => {
                        let mut r = SyncGroupResponse::default();
                        r.assignment = m.assignment.clone();
                        r.protocol_name = self.protocol.as_deref().map(sb);
                        self.out.push((from, Answer::Sync(r)));
                    }
                    CState::Completing => {
                        m.sync = Some(from);
                        if self.leader.as_deref() == Some(s.member_id.as_str()) {
                            for m in self.members.values_mut() {
                                m.assignment = Bytes::new();
                            }
                            for (mid, a) in &s.assignments {
                                if let Some(m) = self.members.get_mut(mid) {
                                    m.assignment = a.clone();
                                }
                            }
                            self.state = CState::Stable;
                            for m in self.members.values_mut() {
                                if let Some(to) = m.sync.take() {
                                    let mut r = SyncGroupResponse::default();
                                    r.assignment = m.assignment.clone();
                                    self.out.push((to, Answer::Sync(r)));
                                }
                            }
                        }
                    }
                }
            }
            GroupRequest::Heartbeat(h) => {
                let code = match self.members.get_mut(&h.member_id) {
                    None => ErrorCode::UNKNOWN_MEMBER_ID,
                    Some(m) => {
                        m.last_heard = now;
                        if h.generation != self.generation {
                            ErrorCode::ILLEGAL_GENERATION
                        } else if self.state != CState::Stable {
                            ErrorCode::REBALANCE_IN_PROGRESS
                        } else {
                            ErrorCode::NONE
                        }
                    }
                };
                self.out.push((from, Answer::Code(code)));
            }
            GroupRequest::Leave(l) => {
                if self.members.contains_key(&l.member_id) {
                    self.remove(&l.member_id);
                    if self.members.is_empty() {
                        self.state = CState::Empty;
                        self.deadline = None;
                    } else {
                        self.prepare(now);
                        self.maybe_complete_join(now);
                    }
                }
                self.out.push((from, Answer::Code(ErrorCode::NONE)));
            }
            GroupRequest::FindCoordinator { .. } | GroupRequest::Metadata { .. } => {
                unreachable!("answered by the network model")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The network and the members.

enum Ev {
    /// A request reaches the coordinator node `node`.
    Request {
        m: usize,
        inc: u32,
        id: u64,
        node: i32,
        drop_response: bool,
    },
    /// An answer reaches a member.
    Answer {
        m: usize,
        inc: u32,
        id: u64,
        answer: SimAnswer,
    },
    /// A request's timeout.
    Timeout { m: usize, inc: u32, id: u64 },
    /// The application finished a revocation.
    RevokeDone { m: usize, inc: u32, rev: u64 },
    /// The member's timers.
    Wake { m: usize, inc: u32 },
    /// The coordinator's timers.
    Tick,
    /// The application polls.
    AppPoll { m: usize, inc: u32 },
    /// A scripted fault or membership change.
    Chaos,
}

enum SimAnswer {
    Coordinator(Result<i32, ErrorCode>),
    Metadata,
    Group(Answer),
}

struct SimMember {
    inc: u32,
    alive: bool,
    machine: Membership,
    in_flight: HashMap<u64, GroupRequest>,
    revokes: u64,
    stalled_until: Option<Instant>,
    instance: Option<String>,
    topics: BTreeSet<String>,
}

struct Sim {
    rng: SmallRng,
    t0: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: HashMap<usize, Ev>,
    coord: Coordinator,
    node: i32,
    members: Vec<SimMember>,
    partitions: BTreeMap<String, i32>,
    assignors: Vec<Arc<dyn Assignor>>,
    faults: bool,
    next_req: u64,
    static_members: bool,
    cfg_template: GroupConfig,
    log: Vec<String>,
    /// Requests whose answer the network loses.
    pending_drop: BTreeSet<u64>,
    trace: bool,
}

fn brief(r: &GroupRequest) -> String {
    match r {
        GroupRequest::FindCoordinator { .. } => "FindCoordinator".into(),
        GroupRequest::Metadata { .. } => "Metadata".into(),
        GroupRequest::Join(j) => format!("Join id={:?} inst={:?}", j.member_id, j.instance_id),
        GroupRequest::Sync(s) => format!(
            "Sync gen={} id={} n={}",
            s.generation,
            s.member_id,
            s.assignments.len()
        ),
        GroupRequest::Heartbeat(h) => format!("Heartbeat gen={} id={}", h.generation, h.member_id),
        GroupRequest::Leave(l) => format!("Leave id={}", l.member_id),
    }
}

impl Sim {
    fn at(&mut self, t: Instant, e: Ev) {
        self.seq += 1;
        let k = self.seq as usize;
        self.events.insert(k, e);
        self.queue.push(Reverse((t, self.seq, k)));
    }

    fn delay(&mut self) -> Duration {
        let max = if self.faults { 40 } else { 5 };
        MS * self.rng.below(max) as u32
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.faults && self.rng.below(1000) < per_mille
    }

    fn new_member(&mut self, instance: Option<String>, topics: BTreeSet<String>) -> usize {
        let mut cfg = self.cfg_template.clone();
        cfg.instance_id = instance.clone();
        cfg.assignors = self.assignors.clone();
        let mut machine = Membership::new(cfg, self.now);
        machine.handle_metadata(&self.partitions, self.now);
        machine.subscribe(topics.clone(), self.now);
        self.members.push(SimMember {
            inc: 0,
            alive: true,
            machine,
            in_flight: HashMap::new(),
            revokes: 0,
            stalled_until: None,
            instance,
            topics,
        });
        let m = self.members.len() - 1;
        let (now, inc) = (self.now, 0);
        self.at(now, Ev::Wake { m, inc });
        self.at(now, Ev::AppPoll { m, inc });
        m
    }

    fn restart(&mut self, m: usize) {
        let inc = self.members[m].inc + 1;
        let mut cfg = self.cfg_template.clone();
        cfg.instance_id = self.members[m].instance.clone();
        cfg.assignors = self.assignors.clone();
        let mut machine = Membership::new(cfg, self.now);
        machine.handle_metadata(&self.partitions, self.now);
        machine.subscribe(self.members[m].topics.clone(), self.now);
        let sm = &mut self.members[m];
        sm.inc = inc;
        sm.alive = true;
        sm.machine = machine;
        sm.in_flight.clear();
        sm.stalled_until = None;
        let now = self.now;
        self.at(now, Ev::Wake { m, inc });
        self.at(now, Ev::AppPoll { m, inc });
    }

    /// Lets member `m` act: timers, events, requests.
    fn pump(&mut self, m: usize) {
        if !self.members[m].alive {
            return;
        }
        let now = self.now;
        self.members[m].machine.handle_timeout(now);
        while let Some(ev) = self.members[m].machine.poll_event() {
            match ev {
                GroupEvent::Revoke { .. } => {
                    self.members[m].revokes += 1;
                    let rev = self.members[m].revokes;
                    // Usually quick; sometimes slower than the revoke timeout.
                    let d = if self.chance(30) {
                        MS * (300 + self.rng.below(900) as u32)
                    } else {
                        MS * self.rng.below(30) as u32
                    };
                    let inc = self.members[m].inc;
                    self.at(now + d, Ev::RevokeDone { m, inc, rev });
                }
                GroupEvent::Fatal(e) => panic!("member {m} failed: {e}\n{}", self.log.join("\n")),
                GroupEvent::Assigned { .. } | GroupEvent::Lost { .. } => {}
            }
        }
        while let Some(req) = self.members[m].machine.poll_request(now) {
            self.next_req += 1;
            let id = self.next_req;
            let inc = self.members[m].inc;
            let timeout = MS * 400 + req.extra_timeout();
            match &req {
                GroupRequest::FindCoordinator { .. } => {
                    let answer = if self.chance(50) {
                        Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
                    } else {
                        Ok(self.node)
                    };
                    let d = self.delay() + self.delay();
                    self.at(
                        now + d,
                        Ev::Answer {
                            m,
                            inc,
                            id,
                            answer: SimAnswer::Coordinator(answer),
                        },
                    );
                }
                GroupRequest::Metadata { .. } => {
                    let d = self.delay() + self.delay();
                    self.at(
                        now + d,
                        Ev::Answer {
                            m,
                            inc,
                            id,
                            answer: SimAnswer::Metadata,
                        },
                    );
                }
                GroupRequest::Leave(_) => {
                    let node = req.coordinator().expect("has a coordinator");
                    let d = self.delay();
                    if !self.chance(50) {
                        self.at(
                            now + d,
                            Ev::Request {
                                m,
                                inc,
                                id,
                                node,
                                drop_response: false,
                            },
                        );
                    }
                }
                _ => {
                    let node = req.coordinator().expect("has a coordinator");
                    let drop_request = self.chance(20);
                    let drop_response = self.chance(20);
                    if !drop_request {
                        let d = self.delay();
                        self.at(
                            now + d,
                            Ev::Request {
                                m,
                                inc,
                                id,
                                node,
                                drop_response,
                            },
                        );
                    }
                    self.at(now + timeout, Ev::Timeout { m, inc, id });
                }
            }
            if self.trace {
                self.log.push(format!(
                    "{:?} m{m}.{inc} sends #{id} {}",
                    now - self.t0,
                    brief(&req)
                ));
            }
            self.members[m].in_flight.insert(id, req);
        }
        if let Some(t) = self.members[m].machine.next_timeout(now) {
            let inc = self.members[m].inc;
            self.at(t.max(now), Ev::Wake { m, inc });
        }
    }

    fn flush_coordinator(&mut self) {
        let out = std::mem::take(&mut self.coord.out);
        for ((m, inc, id), answer) in out {
            if self.pending_drop.remove(&id) {
                continue;
            }
            let d = self.delay();
            let now = self.now;
            self.at(
                now + d,
                Ev::Answer {
                    m,
                    inc,
                    id,
                    answer: SimAnswer::Group(answer),
                },
            );
        }
    }

    fn owners(&self) -> BTreeMap<TopicPartition, Vec<usize>> {
        let mut out: BTreeMap<TopicPartition, Vec<usize>> = BTreeMap::new();
        for (i, sm) in self.members.iter().enumerate() {
            if sm.alive {
                for tp in sm.machine.owned() {
                    out.entry(tp.clone()).or_default().push(i);
                }
            }
        }
        out
    }

    fn settled(&self) -> bool {
        let live: Vec<&SimMember> = self
            .members
            .iter()
            .filter(|m| m.alive && !m.machine.is_done())
            .collect();
        let stable = live.iter().all(|m| {
            m.machine.is_stable()
                && m.in_flight
                    .values()
                    .all(|r| matches!(r, GroupRequest::Heartbeat(_) | GroupRequest::Leave(_)))
        });
        let gens: BTreeSet<i32> = live
            .iter()
            .map(|m| m.machine.group_metadata().generation_id)
            .collect();
        if !stable || gens.len() > 1 {
            return false;
        }
        let owned: usize = live.iter().map(|m| m.machine.owned().len()).sum();
        let wanted: i32 = self
            .partitions
            .iter()
            .filter(|(t, _)| live.iter().any(|m| m.topics.contains(*t)))
            .map(|(_, n)| *n)
            .sum();
        owned == wanted as usize
    }

    fn check_exclusive(&mut self) {
        let now = self.now;
        for m in 0..self.members.len() {
            if self.members[m].alive {
                self.members[m].machine.handle_timeout(now);
            }
        }
        for (tp, owners) in self.owners() {
            assert!(
                owners.len() <= 1,
                "{tp} owned by members {owners:?} at {:?}\n{}",
                now - self.t0,
                self.log.join("\n")
            );
        }
    }

    fn chaos(&mut self) {
        if !self.faults {
            return;
        }
        let alive: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].alive)
            .collect();
        match self.rng.below(10) {
            0 => {
                // Coordinator moves (state kept, as Kafka's group log keeps it).
                self.node = (self.node + 1) % 3;
                self.log.push(format!(
                    "{:?} coordinator -> {}",
                    self.now - self.t0,
                    self.node
                ));
            }
            1 if !alive.is_empty() => {
                let m = alive[self.rng.below(alive.len() as u64) as usize];
                self.members[m].alive = false;
                self.log.push(format!("{:?} crash {m}", self.now - self.t0));
            }
            2 => {
                let dead: Vec<usize> = (0..self.members.len())
                    .filter(|&i| !self.members[i].alive)
                    .collect();
                if let Some(&m) = dead.first() {
                    self.log
                        .push(format!("{:?} restart {m}", self.now - self.t0));
                    self.restart(m);
                }
            }
            3 if self.members.len() < 6 => {
                let inst = self
                    .static_members
                    .then(|| format!("i{}", self.members.len()));
                let topics = self.topic_set();
                let m = self.new_member(inst, topics);
                self.log
                    .push(format!("{:?} new member {m}", self.now - self.t0));
            }
            4 if alive.len() > 1 => {
                let m = alive[self.rng.below(alive.len() as u64) as usize];
                self.members[m].machine.close(self.now);
                self.log.push(format!("{:?} close {m}", self.now - self.t0));
                self.pump(m);
            }
            5 if !alive.is_empty() => {
                // The application stops polling past max.poll.interval.
                let m = alive[self.rng.below(alive.len() as u64) as usize];
                let until = self.now + MS * (800 + self.rng.below(800) as u32);
                self.members[m].stalled_until = Some(until);
                self.log.push(format!("{:?} stall {m}", self.now - self.t0));
            }
            6 => {
                // A topic grows.
                let n = self.partitions.get_mut("t1").expect("t1");
                if *n < 8 {
                    *n += 1;
                    self.log
                        .push(format!("{:?} t1 grows to {n}", self.now - self.t0));
                    for m in 0..self.members.len() {
                        let counts = self.partitions.clone();
                        self.members[m].machine.handle_metadata(&counts, self.now);
                    }
                }
            }
            _ => {}
        }
    }

    fn topic_set(&mut self) -> BTreeSet<String> {
        let mut s = BTreeSet::from(["t0".to_string()]);
        if self.rng.below(3) > 0 {
            s.insert("t1".to_string());
        }
        s
    }

    fn run_until(&mut self, end: Instant) {
        while let Some(Reverse((t, _, k))) = self.queue.peek().cloned() {
            if t > end {
                break;
            }
            self.queue.pop();
            self.now = t;
            let ev = self.events.remove(&k).expect("event");
            // Ownership only grows on a SyncGroup answer: check after those.
            let grows = matches!(
                &ev,
                Ev::Answer {
                    answer: SimAnswer::Group(Answer::Sync(_)),
                    ..
                }
            );
            self.step(ev);
            if grows {
                self.check_exclusive();
            }
        }
        self.now = end;
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Tick => {
                self.coord.tick(now);
                self.flush_coordinator();
                self.at(now + MS * 50, Ev::Tick);
            }
            Ev::Chaos => {
                self.chaos();
                let d = MS * (100 + self.rng.below(700) as u32);
                self.at(now + d, Ev::Chaos);
            }
            Ev::AppPoll { m, inc } => {
                if self.members[m].inc != inc || !self.members[m].alive {
                    return;
                }
                if self.members[m].stalled_until.is_some_and(|t| now < t) {
                    self.at(now + MS * 300, Ev::AppPoll { m, inc });
                    return;
                }
                self.members[m].machine.handle_app_poll(now);
                self.pump(m);
                self.at(now + MS * 300, Ev::AppPoll { m, inc });
            }
            Ev::Wake { m, inc } => {
                if self.members[m].inc == inc {
                    self.pump(m);
                }
            }
            Ev::RevokeDone { m, inc, rev } => {
                let sm = &mut self.members[m];
                if sm.inc == inc && sm.alive && sm.revokes == rev {
                    sm.machine.handle_revoke_done(now);
                    self.pump(m);
                }
            }
            Ev::Request {
                m,
                inc,
                id,
                node,
                drop_response,
            } => {
                let Some(req) = self.members[m].in_flight.get(&id).cloned() else {
                    return;
                };
                if node != self.node || self.chance(15) {
                    let code = if node != self.node {
                        ErrorCode::NOT_COORDINATOR
                    } else {
                        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
                    };
                    let answer = match &req {
                        GroupRequest::Join(_) => {
                            let mut r = JoinGroupResponse::default();
                            r.error_code = code.0;
                            Answer::Join(r)
                        }
                        GroupRequest::Sync(_) => {
                            let mut r = SyncGroupResponse::default();
                            r.error_code = code.0;
                            Answer::Sync(r)
                        }
                        _ => Answer::Code(code),
                    };
                    let d = self.delay();
                    self.at(
                        now + d,
                        Ev::Answer {
                            m,
                            inc,
                            id,
                            answer: SimAnswer::Group(answer),
                        },
                    );
                    return;
                }
                if drop_response {
                    self.pending_drop.insert(id);
                }
                self.coord.handle((m, inc, id), &req, now);
                self.flush_coordinator();
            }
            Ev::Timeout { m, inc, id } => {
                let sm = &mut self.members[m];
                if sm.inc != inc || !sm.alive {
                    return;
                }
                if let Some(req) = sm.in_flight.remove(&id) {
                    sm.machine
                        .handle_request_failed(&req, RequestFailure::Transport, now);
                    self.pump(m);
                }
            }
            Ev::Answer { m, inc, id, answer } => {
                let sm = &mut self.members[m];
                if sm.inc != inc || !sm.alive {
                    return;
                }
                let Some(req) = sm.in_flight.remove(&id) else {
                    return;
                };
                if self.trace {
                    let a = match &answer {
                        SimAnswer::Coordinator(r) => format!("coordinator {r:?}"),
                        SimAnswer::Metadata => "metadata".into(),
                        SimAnswer::Group(Answer::Join(r)) => format!(
                            "join {} gen {} id {} leader {}",
                            ErrorCode(r.error_code),
                            r.generation_id,
                            r.member_id,
                            r.leader
                        ),
                        SimAnswer::Group(Answer::Sync(r)) => format!(
                            "sync {} {:?}",
                            ErrorCode(r.error_code),
                            krust_wire::group_protocol::decode_assignment(r.assignment.clone())
                                .map(|(_, a)| a
                                    .assigned_partitions
                                    .iter()
                                    .map(|t| (t.topic.to_string(), t.partitions.clone()))
                                    .collect::<Vec<_>>())
                        ),
                        SimAnswer::Group(Answer::Code(c)) => format!("{c}"),
                    };
                    self.log
                        .push(format!("{:?} m{m}.{inc} gets #{id} {a}", now - self.t0));
                }
                match (answer, &req) {
                    (SimAnswer::Coordinator(r), _) => sm.machine.handle_find_coordinator(r, now),
                    (SimAnswer::Metadata, GroupRequest::Metadata { topics }) => {
                        let counts = topics
                            .iter()
                            .map(|t| (t.clone(), self.partitions.get(t).copied().unwrap_or(0)))
                            .collect();
                        sm.machine.handle_metadata(&counts, now);
                    }
                    (SimAnswer::Group(Answer::Join(r)), GroupRequest::Join(j)) => {
                        sm.machine.handle_join(j, r, now)
                    }
                    (SimAnswer::Group(Answer::Code(c)), GroupRequest::Join(j)) => {
                        let mut r = JoinGroupResponse::default();
                        r.error_code = c.0;
                        sm.machine.handle_join(j, r, now)
                    }
                    (SimAnswer::Group(Answer::Sync(r)), GroupRequest::Sync(s)) => {
                        sm.machine.handle_sync(s, r, now)
                    }
                    (SimAnswer::Group(Answer::Code(c)), GroupRequest::Sync(s)) => {
                        let mut r = SyncGroupResponse::default();
                        r.error_code = c.0;
                        sm.machine.handle_sync(s, r, now)
                    }
                    (SimAnswer::Group(Answer::Code(c)), GroupRequest::Heartbeat(h)) => {
                        sm.machine.handle_heartbeat(h, c, now)
                    }
                    (SimAnswer::Group(Answer::Code(_)), GroupRequest::Leave(_)) => {}
                    _ => panic!("answer does not match request {req:?}"),
                }
                self.pump(m);
            }
        }
    }
}

/// Runs one seeded scenario; panics (with a log) if an invariant breaks.
pub(super) fn run(seed: u64) -> usize {
    let mut rng = SmallRng::new(seed);
    let assignor = ["range", "roundrobin", "sticky", "cooperative-sticky"][rng.below(4) as usize];
    let t0 = Instant::now();
    let mut cfg = GroupConfig::new("g");
    cfg.session_timeout = MS * 1000;
    cfg.rebalance_timeout = MS * 1000;
    cfg.max_poll_interval = Some(MS * 1000);
    cfg.heartbeat_interval = MS * 333;
    cfg.retry_backoff = MS * 20;
    cfg.retry_backoff_max = MS * 200;
    cfg.revoke_timeout = MS * 400;
    let static_members = rng.below(3) == 0;
    let mut sim = Sim {
        rng,
        t0,
        now: t0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        coord: Coordinator::new(),
        node: 0,
        members: Vec::new(),
        partitions: BTreeMap::from([("t0".to_string(), 12), ("t1".to_string(), 5)]),
        assignors: vec![builtin(assignor).expect("builtin")],
        faults: true,
        next_req: 0,
        static_members,
        cfg_template: cfg,
        log: vec![format!(
            "seed {seed} assignor {assignor} static {static_members}"
        )],
        pending_drop: BTreeSet::new(),
        trace: std::env::var("KRUST_GROUP_SIM_TRACE").is_ok_and(|v| v == "full"),
    };
    let n = 2 + sim.rng.below(3) as usize;
    for i in 0..n {
        let inst = static_members.then(|| format!("i{i}"));
        let topics = sim.topic_set();
        sim.new_member(inst, topics);
    }
    sim.at(t0, Ev::Tick);
    sim.at(t0 + MS * 300, Ev::Chaos);
    let fault_time = MS * (300 + sim.rng.below(2000) as u32);
    sim.run_until(t0 + fault_time);
    // Settle: no more faults; stalled applications poll again.
    sim.faults = false;
    for m in 0..sim.members.len() {
        sim.members[m].stalled_until = None;
    }
    // Run until settled (checked every 100 ms), for at most 10 s.
    let give_up = sim.now + MS * 10_000;
    while sim.now < give_up {
        let next = sim.now + MS * 100;
        sim.run_until(next);
        if sim.settled() {
            break;
        }
    }
    sim.check_exclusive();
    // Everyone alive and not closing is stable in one generation, and the partitions of the
    // subscribed topics are split exactly.
    let live: Vec<usize> = (0..sim.members.len())
        .filter(|&i| sim.members[i].alive && !sim.members[i].machine.is_done())
        .collect();
    let ctx = || format!("seed {seed}\n{}", sim.log.join("\n"));
    let mut generation = None;
    for &m in &live {
        let mm = &sim.members[m].machine;
        assert!(
            mm.is_stable(),
            "member {m} not stable after settling: {mm:?}\n{}",
            ctx()
        );
        let g = mm.group_metadata().generation_id;
        assert!(
            generation.is_none_or(|x| x == g),
            "generations differ\n{}",
            ctx()
        );
        generation = Some(g);
    }
    let owners = sim.owners();
    for (topic, &count) in &sim.partitions {
        if !live.iter().any(|&m| sim.members[m].topics.contains(topic)) {
            continue;
        }
        for p in 0..count {
            let tp = TopicPartition::new(topic.as_str(), p);
            let o = owners.get(&tp).map_or(0, Vec::len);
            assert_eq!(o, 1, "{tp} has {o} owners after settling\n{}", ctx());
        }
    }
    sim.seq as usize
}
