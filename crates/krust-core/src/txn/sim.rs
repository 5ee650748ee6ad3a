//! A seeded simulation of the transaction machine against a model transaction coordinator and
//! model partition logs, on a virtual clock: random network delays (so requests and answers
//! of different connections reorder), lost answers, request timeouts, injected retriable
//! coordinator errors, produce timeouts, coordinator-side transaction timeouts (which fence
//! the producer), client crashes and restarts with the same transactional id, and
//! applications that re-initialise after a commit whose outcome is unknown.
//!
//! Checked after every run, on the read_committed view of the logs:
//! * no torn transaction: each transaction's records are all committed or none is;
//! * no aborted read: a transaction the machine reported aborted has no committed record;
//! * no lost commit: a transaction the machine reported committed has every record committed;
//! * no duplicate and no hanging (never-ended) data.
//!
//! Half the transactions also commit consumer offsets (send_offsets, KIP-447); the offsets
//! are one more "partition" of the transaction and must be all-or-nothing with its records.
//!
//! The checks have teeth: making `record_partition` say "send now" before the add is answered
//! fails seed 56 with a torn transaction; skipping AddOffsetsToTxn in classic mode fails seed
//! 0 with hanging offsets; ignoring the epoch of EndTxn v5 in V2 mode fences half the
//! transactions (the commit-rate floor below).
//!
//! Classic mode delivers every request before the client's timeout fires (only answers are
//! lost or late): the classic protocol cannot fence a request that lands after its own
//! transaction ended (the late-EndTxn and hanging-transaction holes that KIP-890 closes), so
//! no client can pass that. V2 mode lets requests land arbitrarily late.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use krust_wire::ErrorCode as E;

use super::*;

const MS: Duration = Duration::from_millis(1);
const PARTITIONS: i32 = 4;
/// The log index standing for the group's offsets (`__consumer_offsets`): a TxnOffsetCommit
/// is a pending write there, materialised or dropped by the transaction's marker.
const OFFSETS: i32 = PARTITIONS;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
const COORD_TXN_TIMEOUT: Duration = Duration::from_millis(3000);

#[derive(Debug, Clone)]
enum Msg {
    Request {
        inst: u32,
        req: TxnRequest,
    },
    Response {
        inst: u32,
        id: u64,
        resp: TxnResponse,
    },
    Produce {
        inst: u32,
        epoch: i16,
        p: i32,
        tag: u64,
    },
    ProduceAck {
        inst: u32,
        p: i32,
        tag: u64,
        error: E,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
    Unknown,
}

#[derive(Debug, Clone)]
enum Status {
    Empty,
    Ongoing(BTreeSet<i32>, Instant),
    Complete,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Data(u64),
    Marker(bool),
}

struct Coordinator {
    protocol: TxnProtocol,
    epoch: i16,
    status: Status,
    last_end: Option<(i16, bool)>,
    logs: Vec<Vec<Entry>>,
}

impl Coordinator {
    fn markers(&mut self, commit: bool) {
        if let Status::Ongoing(parts, _) = &self.status {
            for p in parts.clone() {
                self.logs[p as usize].push(Entry::Marker(commit));
            }
        }
        self.status = Status::Complete;
    }

    fn expire(&mut self, now: Instant) {
        if let Status::Ongoing(_, since) = &self.status {
            if now.duration_since(*since) > COORD_TXN_TIMEOUT {
                self.markers(false);
                self.epoch += 1; // fences the producer
                self.last_end = None;
            }
        }
    }

    fn add(&mut self, parts: &[i32], now: Instant) {
        match &mut self.status {
            Status::Ongoing(s, _) => s.extend(parts.iter().copied()),
            _ => self.status = Status::Ongoing(parts.iter().copied().collect(), now),
        }
    }

    fn request(&mut self, body: &TxnRequestBody, now: Instant) -> TxnResponse {
        self.expire(now);
        let fenced = |e: i16, cur: i16| e < cur;
        match body {
            TxnRequestBody::FindCoordinator { kind, .. } => TxnResponse::FindCoordinator {
                error: E::NONE,
                node_id: if *kind == CoordinatorKind::Group {
                    2
                } else {
                    1
                },
            },
            TxnRequestBody::InitProducerId { .. } => {
                self.markers(false);
                self.epoch += 1;
                self.last_end = None;
                TxnResponse::InitProducerId {
                    error: E::NONE,
                    producer_id: 1,
                    producer_epoch: self.epoch,
                }
            }
            TxnRequestBody::AddPartitionsToTxn {
                producer_epoch,
                partitions,
                ..
            } => {
                let error = if fenced(*producer_epoch, self.epoch) {
                    E::PRODUCER_FENCED
                } else {
                    let ps: Vec<i32> = partitions.iter().map(|t| t.partition).collect();
                    self.add(&ps, now);
                    E::NONE
                };
                TxnResponse::AddPartitionsToTxn {
                    results: partitions.iter().map(|t| (t.clone(), error)).collect(),
                }
            }
            TxnRequestBody::AddOffsetsToTxn { producer_epoch, .. } => {
                let error = if fenced(*producer_epoch, self.epoch) {
                    E::PRODUCER_FENCED
                } else {
                    self.add(&[OFFSETS], now);
                    E::NONE
                };
                TxnResponse::AddOffsetsToTxn { error }
            }
            TxnRequestBody::TxnOffsetCommit {
                producer_epoch,
                offsets,
                ..
            } => {
                let error = if fenced(*producer_epoch, self.epoch) {
                    E::PRODUCER_FENCED
                } else {
                    if self.protocol == TxnProtocol::V2 {
                        self.add(&[OFFSETS], now);
                    }
                    for o in offsets {
                        // The offset carries the transaction's tag.
                        self.logs[OFFSETS as usize].push(Entry::Data(o.offset as u64));
                    }
                    E::NONE
                };
                TxnResponse::TxnOffsetCommit {
                    results: offsets
                        .iter()
                        .map(|o| (o.partition.clone(), error))
                        .collect(),
                }
            }
            TxnRequestBody::EndTxn {
                producer_epoch: e,
                commit,
                ..
            } => {
                let (e, commit) = (*e, *commit);
                let error = match self.protocol {
                    TxnProtocol::Classic => {
                        if fenced(e, self.epoch) {
                            E::PRODUCER_FENCED
                        } else {
                            match self.status {
                                Status::Ongoing(..) => {
                                    self.markers(commit);
                                    self.last_end = Some((e, commit));
                                    E::NONE
                                }
                                Status::Complete if self.last_end == Some((e, commit)) => E::NONE,
                                _ => E::INVALID_TXN_STATE,
                            }
                        }
                    }
                    TxnProtocol::V2 => {
                        if e == self.epoch {
                            self.markers(commit);
                            self.last_end = Some((e, commit));
                            self.epoch += 1;
                            E::NONE
                        } else if e + 1 == self.epoch && self.last_end == Some((e, commit)) {
                            E::NONE // a retry of the EndTxn that bumped the epoch
                        } else if e < self.epoch {
                            E::PRODUCER_FENCED
                        } else {
                            E::INVALID_TXN_STATE
                        }
                    }
                };
                let (producer_id, producer_epoch) = match (self.protocol, error) {
                    (TxnProtocol::V2, E::NONE) => (1, self.epoch),
                    _ => (-1, -1),
                };
                TxnResponse::EndTxn {
                    error,
                    producer_id,
                    producer_epoch,
                }
            }
        }
    }

    fn produce(&mut self, epoch: i16, p: i32, tag: u64, now: Instant) -> E {
        self.expire(now);
        if epoch < self.epoch {
            return E::PRODUCER_FENCED;
        }
        if self.protocol == TxnProtocol::V2 {
            self.add(&[p], now); // Produce v12 adds the partition implicitly
        }
        self.logs[p as usize].push(Entry::Data(tag));
        E::NONE
    }
}

#[derive(Debug)]
enum Phase {
    Init,
    Idle,
    Producing {
        tag: u64,
        parts: Vec<i32>,
        sent: BTreeSet<i32>,
        acked: BTreeSet<i32>,
        abort: bool,
        /// send_offsets called and not yet answered.
        offsets_pending: bool,
    },
    Ending {
        tag: u64,
    },
}

struct Client {
    inst: u32,
    m: TransactionManager,
    phase: Phase,
    epoch: i16,
    /// Requests waiting for an answer: id -> deadline.
    waiting: HashMap<u64, Instant>,
    /// Produces waiting for an ack: partition -> (tag, deadline).
    produces: BTreeMap<i32, (u64, Instant)>,
}

struct Sim {
    rng: SmallRng,
    protocol: TxnProtocol,
    now: Instant,
    seq: u64,
    net: BinaryHeap<Reverse<(Instant, u64)>>,
    msgs: HashMap<u64, Msg>,
    coord: Coordinator,
    client: Option<Client>,
    restart_at: Option<Instant>,
    next_inst: u32,
    next_tag: u64,
    outcomes: BTreeMap<u64, Outcome>,
    records: BTreeMap<u64, BTreeSet<i32>>,
    txns_left: u32,
}

impl Sim {
    fn send(&mut self, msg: Msg, request: bool) {
        let r = self.rng.below(100);
        let delay = if r < 3 && !request {
            return; // lost answer
        } else if r < 12 {
            // Slow: past the request timeout. Classic: requests still land before it.
            let slow = MS * (200 + self.rng.below(900) as u32);
            if request && self.protocol == TxnProtocol::Classic {
                slow.min(REQUEST_TIMEOUT - MS)
            } else {
                slow
            }
        } else {
            MS * (1 + self.rng.below(60) as u32)
        };
        self.seq += 1;
        self.net.push(Reverse((self.now + delay, self.seq)));
        self.msgs.insert(self.seq, msg);
    }

    fn new_client(&mut self) {
        let inst = self.next_inst;
        self.next_inst += 1;
        let mut cfg = TxnConfig::new("sim");
        cfg.retry_backoff = BackoffPolicy::new(5 * MS, 50 * MS);
        let mut m = TransactionManager::new(cfg, self.rng.next_u64());
        m.set_protocol(self.protocol);
        m.init(self.now).unwrap();
        self.client = Some(Client {
            inst,
            m,
            phase: Phase::Init,
            epoch: -1,
            waiting: HashMap::new(),
            produces: BTreeMap::new(),
        });
    }

    fn kill_client(&mut self, restart_after: Duration) {
        if let Some(c) = self.client.take() {
            match c.phase {
                Phase::Producing { tag, .. } | Phase::Ending { tag } => {
                    self.outcomes.insert(tag, Outcome::Unknown);
                }
                _ => {}
            }
        }
        self.restart_at = Some(self.now + restart_after);
    }

    /// Runs the client's app logic and drains the machine until nothing changes.
    fn pump(&mut self) {
        for _ in 0..100 {
            let Some(mut c) = self.client.take() else {
                return;
            };
            let mut out: Vec<(Msg, bool)> = Vec::new();
            let mut progressed = false;
            let mut fatal = false;
            while let Some(ev) = c.m.poll_event() {
                progressed = true;
                match ev {
                    TxnEvent::Initialized { producer_epoch, .. } => {
                        c.epoch = producer_epoch;
                        c.phase = Phase::Idle;
                    }
                    TxnEvent::EpochBumped { producer_epoch, .. } => c.epoch = producer_epoch,
                    TxnEvent::PartitionsAdded(_) => {}
                    TxnEvent::OffsetsCommitted => {
                        if let Phase::Producing {
                            offsets_pending, ..
                        } = &mut c.phase
                        {
                            *offsets_pending = false;
                        }
                    }
                    TxnEvent::CommitOutcomeUnknown => {
                        let e =
                            c.m.abort(self.now)
                                .expect_err("abort after an unknown commit");
                        assert_eq!(e.class, TxnErrorClass::Usage);
                        if self.rng.below(2) == 0 {
                            if let Phase::Ending { tag } = c.phase {
                                self.outcomes.insert(tag, Outcome::Unknown);
                            }
                            c.m.init(self.now).unwrap();
                            c.waiting.clear();
                            c.phase = Phase::Init;
                        } else {
                            c.m.commit(self.now).unwrap();
                        }
                    }
                    TxnEvent::Completed { committed } => {
                        if let Phase::Ending { tag } = c.phase {
                            let o = if committed {
                                Outcome::Committed
                            } else {
                                Outcome::Aborted
                            };
                            self.outcomes.insert(tag, o);
                        }
                        c.phase = Phase::Idle;
                    }
                    TxnEvent::Failed(e) if e.is_fatal() => fatal = true,
                    TxnEvent::Failed(_) => {
                        if let Phase::Producing { tag, .. } = c.phase {
                            c.m.abort(self.now).unwrap();
                            c.phase = Phase::Ending { tag };
                        } else if let Phase::Ending { .. } = c.phase {
                            c.m.abort(self.now).unwrap();
                        }
                    }
                }
                if fatal {
                    break;
                }
            }
            if fatal {
                self.client = Some(c);
                let d = MS * (10 + self.rng.below(200) as u32);
                self.kill_client(d);
                return;
            }
            // App logic.
            match &mut c.phase {
                Phase::Idle if self.txns_left > 0 => {
                    self.txns_left -= 1;
                    c.m.begin().unwrap();
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    let mut parts: Vec<i32> = (0..PARTITIONS).collect();
                    for i in (1..parts.len()).rev() {
                        parts.swap(i, self.rng.below(i as u64 + 1) as usize);
                    }
                    parts.truncate(2 + self.rng.below(2) as usize);
                    self.records.insert(tag, BTreeSet::new());
                    let abort = self.rng.below(100) < 15;
                    let offsets_pending = self.rng.below(2) == 0;
                    if offsets_pending {
                        // Consume-transform-produce: the input offsets go with the output.
                        let offsets = vec![TxnOffset {
                            partition: TopicPartition::new("in", 0),
                            offset: tag as i64,
                            leader_epoch: None,
                            metadata: None,
                        }];
                        let group = GroupMetadata {
                            group_id: "g".into(),
                            generation_id: 1,
                            member_id: "m".into(),
                            instance_id: None,
                        };
                        c.m.send_offsets(offsets, group).unwrap();
                        self.records.get_mut(&tag).unwrap().insert(OFFSETS);
                    }
                    c.phase = Phase::Producing {
                        tag,
                        parts,
                        sent: BTreeSet::new(),
                        acked: BTreeSet::new(),
                        abort,
                        offsets_pending,
                    };
                    progressed = true;
                }
                Phase::Producing {
                    tag,
                    parts,
                    sent,
                    acked,
                    abort,
                    offsets_pending,
                } => {
                    for &p in parts.iter() {
                        if sent.contains(&p) {
                            continue;
                        }
                        let tp = TopicPartition::new("t", p);
                        if c.m.record_partition(&tp).unwrap_or(false) || c.m.is_partition_added(&tp)
                        {
                            sent.insert(p);
                            self.records.get_mut(tag).unwrap().insert(p);
                            c.produces.insert(p, (*tag, self.now + REQUEST_TIMEOUT));
                            out.push((
                                Msg::Produce {
                                    inst: c.inst,
                                    epoch: c.epoch,
                                    p,
                                    tag: *tag,
                                },
                                true,
                            ));
                            progressed = true;
                        }
                    }
                    if acked.len() == parts.len() && !*offsets_pending {
                        let tag = *tag;
                        if *abort {
                            c.m.abort(self.now).unwrap();
                        } else {
                            c.m.commit(self.now).unwrap();
                        }
                        c.phase = Phase::Ending { tag };
                        progressed = true;
                    }
                }
                _ => {}
            }
            let incomplete = !c.produces.is_empty();
            while let Some(req) = c.m.poll_request(self.now, incomplete) {
                c.waiting.insert(req.id, self.now + REQUEST_TIMEOUT);
                out.push((Msg::Request { inst: c.inst, req }, true));
                progressed = true;
            }
            self.client = Some(c);
            for (m, r) in out {
                self.send(m, r);
            }
            if !progressed {
                return;
            }
        }
        panic!("pump did not settle");
    }

    fn deliver(&mut self, msg: Msg) {
        let inst = self.client.as_ref().map(|c| c.inst);
        match msg {
            Msg::Request { inst: from, req } => {
                let r = self.rng.below(100);
                let resp = if r < 5 && !matches!(req.body, TxnRequestBody::FindCoordinator { .. }) {
                    // Injected retriable error, no state change.
                    let error = [
                        E::NOT_COORDINATOR,
                        E::COORDINATOR_LOAD_IN_PROGRESS,
                        E::CONCURRENT_TRANSACTIONS,
                    ][self.rng.below(3) as usize];
                    match &req.body {
                        TxnRequestBody::InitProducerId { .. } => TxnResponse::InitProducerId {
                            error,
                            producer_id: -1,
                            producer_epoch: -1,
                        },
                        TxnRequestBody::AddPartitionsToTxn { partitions, .. } => {
                            TxnResponse::AddPartitionsToTxn {
                                results: partitions.iter().map(|t| (t.clone(), error)).collect(),
                            }
                        }
                        TxnRequestBody::AddOffsetsToTxn { .. } => {
                            TxnResponse::AddOffsetsToTxn { error }
                        }
                        TxnRequestBody::TxnOffsetCommit { offsets, .. } => {
                            TxnResponse::TxnOffsetCommit {
                                results: offsets
                                    .iter()
                                    .map(|o| (o.partition.clone(), error))
                                    .collect(),
                            }
                        }
                        _ => TxnResponse::EndTxn {
                            error,
                            producer_id: -1,
                            producer_epoch: -1,
                        },
                    }
                } else {
                    self.coord.request(&req.body, self.now)
                };
                self.send(
                    Msg::Response {
                        inst: from,
                        id: req.id,
                        resp,
                    },
                    false,
                );
            }
            Msg::Produce {
                inst: from,
                epoch,
                p,
                tag,
            } => {
                let error = self.coord.produce(epoch, p, tag, self.now);
                self.send(
                    Msg::ProduceAck {
                        inst: from,
                        p,
                        tag,
                        error,
                    },
                    false,
                );
            }
            Msg::Response { inst: to, id, resp } if Some(to) == inst => {
                let c = self.client.as_mut().unwrap();
                // A timed-out request's connection is closed: its answer is not read.
                if c.waiting.remove(&id).is_some() {
                    c.m.handle_response(id, resp, self.now);
                }
            }
            Msg::ProduceAck {
                inst: to,
                p,
                tag,
                error,
            } if Some(to) == inst => {
                let c = self.client.as_mut().unwrap();
                if c.produces.get(&p).is_some_and(|(t, _)| *t == tag) {
                    c.produces.remove(&p);
                    if error == E::NONE {
                        if let Phase::Producing { acked, tag: t, .. } = &mut c.phase {
                            if *t == tag {
                                acked.insert(p);
                            }
                        }
                    } else {
                        c.m.handle_produce_failure(
                            &TopicPartition::new("t", p),
                            ProduceFailure::Error(error),
                        );
                    }
                }
            }
            _ => {} // to a dead instance
        }
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        let Some(c) = self.client.as_mut() else {
            return;
        };
        let expired: Vec<u64> = c
            .waiting
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(i, _)| *i)
            .collect();
        for id in expired {
            c.waiting.remove(&id);
            c.m.handle_failure(id, TransportFailure::Timeout, now);
        }
        let expired: Vec<i32> = c
            .produces
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            c.produces.remove(&p);
            c.m.handle_produce_failure(&TopicPartition::new("t", p), ProduceFailure::Timeout);
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.net.peek().map(|Reverse((t, _))| *t);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.restart_at);
        if let Some(c) = &self.client {
            consider(c.waiting.values().min().copied());
            consider(c.produces.values().map(|(_, d)| *d).min());
            consider(c.m.next_deadline());
        }
        t
    }

    fn run(&mut self) {
        self.new_client();
        self.pump();
        let mut steps = 0;
        while let Some(t) = self.next_time() {
            steps += 1;
            assert!(steps < 200_000, "runaway simulation");
            if t > self.now {
                self.now = t;
            }
            if self.restart_at.is_some_and(|r| r <= self.now) {
                self.restart_at = None;
                self.new_client();
            }
            while let Some(Reverse((at, id))) = self.net.peek().copied() {
                if at > self.now {
                    break;
                }
                self.net.pop();
                let msg = self.msgs.remove(&id).unwrap();
                self.deliver(msg);
            }
            self.fire_timeouts();
            if self.client.is_some() && self.rng.below(1000) < 3 {
                let d = MS * (10 + self.rng.below(500) as u32);
                self.kill_client(d);
            }
            self.pump();
            let idle = matches!(self.client.as_ref().map(|c| &c.phase), Some(Phase::Idle));
            if self.txns_left == 0 && idle {
                break;
            }
        }
        // Stop the client; let everything in the network land; expire what stayed open.
        self.kill_client(Duration::ZERO);
        self.client = None;
        while let Some(Reverse((at, id))) = self.net.pop() {
            self.now = self.now.max(at);
            let msg = self.msgs.remove(&id).unwrap();
            self.deliver(msg);
        }
        self.now += COORD_TXN_TIMEOUT * 2;
        self.coord.expire(self.now);
    }

    fn check(&self, seed: u64) {
        let mut committed: BTreeMap<u64, BTreeSet<i32>> = BTreeMap::new();
        for (p, log) in self.coord.logs.iter().enumerate() {
            let mut pending: Vec<u64> = Vec::new();
            for e in log {
                match e {
                    Entry::Data(tag) => pending.push(*tag),
                    Entry::Marker(true) => {
                        for tag in pending.drain(..) {
                            // A retried TxnOffsetCommit overwrites: duplicates are fine there.
                            assert!(
                                committed.entry(tag).or_default().insert(p as i32)
                                    || p as i32 == OFFSETS,
                                "seed {seed}: duplicate record of txn {tag} in p{p}"
                            );
                        }
                    }
                    Entry::Marker(false) => pending.clear(),
                }
            }
            assert!(
                pending.is_empty(),
                "seed {seed}: hanging data in p{p}: {pending:?}"
            );
        }
        for (tag, recs) in &self.records {
            let got = committed.get(tag).cloned().unwrap_or_default();
            let outcome = self.outcomes.get(tag).copied().unwrap_or(Outcome::Unknown);
            assert!(
                got.is_empty() || &got == recs,
                "seed {seed}: torn txn {tag}: {got:?} of {recs:?} ({outcome:?})"
            );
            match outcome {
                Outcome::Committed => {
                    assert_eq!(&got, recs, "seed {seed}: lost commit of txn {tag}")
                }
                Outcome::Aborted => {
                    assert!(got.is_empty(), "seed {seed}: aborted read of txn {tag}")
                }
                Outcome::Unknown => {}
            }
        }
    }
}

fn run_seed(seed: u64, protocol: TxnProtocol) -> (usize, usize) {
    let mut s = Sim {
        rng: SmallRng::new(seed),
        protocol,
        now: Instant::now(),
        seq: 0,
        net: BinaryHeap::new(),
        msgs: HashMap::new(),
        coord: Coordinator {
            protocol,
            epoch: -1,
            status: Status::Empty,
            last_end: None,
            logs: vec![Vec::new(); PARTITIONS as usize + 1],
        },
        client: None,
        restart_at: None,
        next_inst: 0,
        next_tag: 0,
        outcomes: BTreeMap::new(),
        records: BTreeMap::new(),
        txns_left: 8,
    };
    s.run();
    s.check(seed);
    let committed = s
        .outcomes
        .values()
        .filter(|o| **o == Outcome::Committed)
        .count();
    (committed, s.records.len())
}

#[test]
fn simulation_classic_and_v2_5000_seeds() {
    let mut totals = [(0, 0); 2];
    for seed in 0..2500u64 {
        for (i, protocol) in [TxnProtocol::Classic, TxnProtocol::V2]
            .into_iter()
            .enumerate()
        {
            let (c, n) = run_seed(seed * 2 + i as u64, protocol);
            totals[i].0 += c;
            totals[i].1 += n;
        }
    }
    eprintln!("committed/total: {totals:?}");
    // The faults must not be so heavy that nothing commits.
    for (c, n) in totals {
        assert!(c * 3 > n, "only {c} of {n} transactions committed");
    }
}
