//! The transaction coordinator: InitProducerId (idempotent and transactional; an epoch bump
//! fences the previous producer and aborts its open transaction), AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn; markers written to the partitions (so the LSO and
//! the aborted lists are real); the transaction timeout, which aborts and fences.
//!
//! Both protocol generations: [`TxnProtocol::Classic`](crate::TxnProtocol::Classic) and
//! [`TxnProtocol::Kip890`](crate::TxnProtocol::Kip890) (the epoch is bumped at the end of every
//! transaction, so a delayed request of transaction *k* is fenced in transaction *k+1*).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use crate::cluster::Ctx;
use crate::errors as ec;
use crate::group::{Committed, Group};
use crate::state::State;
use crate::TxnProtocol;

/// Where a transactional id's transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// A transactional id's coordinator state.
#[derive(Debug, Clone)]
pub(crate) struct TxnState {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// The producer id and epoch the last InitProducerId *with* an expected id and epoch
    /// (KIP-360) bumped from; (-1, -1) after an init without one (a new producer instance) or a
    /// timeout fence. A retry of that bump, whose answer the producer lost, carries these and
    /// gets the current id and epoch again instead of being fenced (Kafka keeps
    /// `lastProducerId`/`lastProducerEpoch` for this).
    pub(crate) last_producer_id: i64,
    pub(crate) last_epoch: i16,
    pub(crate) status: TxnStatus,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) groups: BTreeSet<String>,
    pub(crate) timeout: Duration,
    pub(crate) started: Option<Instant>,
    pub(crate) started_ms: i64,
    /// While markers are pending (Prepare*): when to write them, the outcome, the marker epoch.
    pub(crate) completing: Option<(Instant, bool, i16)>,
}

impl TxnStatus {
    fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }
}

impl TxnStatus {
    /// Whether markers are still being written (requests get CONCURRENT_TRANSACTIONS).
    pub(crate) fn is_preparing(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

impl TxnState {
    pub(crate) fn begin(&mut self) {
        self.status = TxnStatus::Ongoing;
        self.started = Some(Instant::now());
        self.started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.partitions.clear();
        self.groups.clear();
    }
}

/// Writes the markers of a transaction and settles its group offsets.
fn complete(s: &mut State, txn_id: &str, commit: bool, marker_epoch: i16) {
    let Some(t) = s.txns.get(txn_id).cloned() else {
        return;
    };
    let now_ms = s.now_ms();
    for (topic, p) in &t.partitions {
        if let Some(part) = s
            .topics
            .get_mut(topic)
            .and_then(|x| x.partitions.get_mut(*p as usize))
        {
            let le = part.epoch();
            part.log
                .write_marker(t.producer_id, marker_epoch, commit, le, now_ms);
        }
    }
    for g in &t.groups {
        if let Some(group) = s.groups.get_mut(g) {
            if let Some(pending) = group.pending_txn.remove(&t.producer_id) {
                if commit {
                    group.offsets.extend(pending);
                }
            }
        }
    }
    let t = s.txns.get_mut(txn_id).expect("exists");
    t.status = if commit {
        TxnStatus::CompleteCommit
    } else {
        TxnStatus::CompleteAbort
    };
    t.started = None;
}

/// Bumps an epoch, moving to a new producer id when it would overflow.
fn bump(s: &mut State, pid: i64, epoch: i16) -> (i64, i16) {
    if epoch >= i16::MAX - 1 {
        (s.new_producer_id(), 0)
    } else {
        s.producers
            .insert(pid, crate::state::ProducerInfo { epoch: epoch + 1 });
        (pid, epoch + 1)
    }
}

/// Aborts and fences transactions past their timeout. Returns whether anything changed.
pub(crate) fn tick(s: &mut State, now: Instant) -> bool {
    let due: Vec<(String, bool, i16)> = s
        .txns
        .iter()
        .filter_map(|(k, t)| match t.completing {
            Some((at, commit, epoch)) if now >= at => Some((k.clone(), commit, epoch)),
            _ => None,
        })
        .collect();
    for (id, commit, epoch) in &due {
        complete(s, id, *commit, *epoch);
        if let Some(t) = s.txns.get_mut(id) {
            t.completing = None;
        }
    }
    let expired: Vec<String> = s
        .txns
        .iter()
        .filter(|(_, t)| {
            t.status == TxnStatus::Ongoing && t.started.is_some_and(|st| now > st + t.timeout)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for id in &expired {
        let (pid, epoch) = {
            let t = &s.txns[id];
            (t.producer_id, t.epoch)
        };
        tracing::debug!(txn = %id, "transaction timed out; aborting and fencing");
        complete(s, id, false, epoch.saturating_add(1));
        let (npid, nepoch) = bump(s, pid, epoch);
        let t = s.txns.get_mut(id).expect("exists");
        t.producer_id = npid;
        t.epoch = nepoch;
        // The timed-out producer is fenced: no retry of an earlier bump may resume it.
        t.last_producer_id = -1;
        t.last_epoch = -1;
    }
    !expired.is_empty() || !due.is_empty()
}

fn fenced(version: i16, min_fenced_version: i16) -> i16 {
    if version >= min_fenced_version {
        ec::PRODUCER_FENCED
    } else {
        ec::INVALID_PRODUCER_EPOCH
    }
}

/// Common checks of a transactional request against the coordinator state.
fn check(
    s: &State,
    ctx: &Ctx<'_>,
    txn_id: &str,
    pid: i64,
    epoch: i16,
    min_fenced_version: i16,
) -> Result<(), i16> {
    if s.coordinator(1, txn_id) != ctx.broker {
        return Err(ec::NOT_COORDINATOR);
    }
    let t = s.txns.get(txn_id).ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
    if t.producer_id != pid {
        return Err(ec::INVALID_PRODUCER_ID_MAPPING);
    }
    if epoch < t.epoch {
        return Err(fenced(ctx.version, min_fenced_version));
    }
    if epoch > t.epoch {
        return Err(ec::INVALID_PRODUCER_EPOCH);
    }
    if t.status.is_preparing() {
        return Err(ec::CONCURRENT_TRANSACTIONS);
    }
    Ok(())
}

pub(crate) fn init_producer_id(
    ctx: &Ctx<'_>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut s = ctx.shared.lock();
    let out = |r: Result<(i64, i16), i16>| match r {
        Ok((pid, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    };
    let txn_id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty());
    let Some(txn_id) = txn_id else {
        let pid = req.producer_id.0;
        if pid >= 0 {
            // KIP-360: an idempotent producer bumping its own epoch.
            return out(match s.producers.get(&pid).map(|p| p.epoch) {
                Some(e) if e == req.producer_epoch => Ok(bump(&mut s, pid, e)),
                // A retry of the bump just made (its answer was lost): the same result. An
                // idempotent producer id belongs to one producer, so nobody is fenced.
                Some(e) if e > 0 && e - 1 == req.producer_epoch => Ok((pid, e)),
                Some(_) => Err(ec::INVALID_PRODUCER_EPOCH),
                None => Ok((s.new_producer_id(), 0)),
            });
        }
        return out(Ok((s.new_producer_id(), 0)));
    };
    if s.coordinator(1, &txn_id) != ctx.broker {
        return out(Err(ec::NOT_COORDINATOR));
    }
    if req.transaction_timeout_ms <= 0 || req.transaction_timeout_ms > s.cfg.max_txn_timeout_ms {
        return out(Err(ec::INVALID_TRANSACTION_TIMEOUT));
    }
    let timeout = Duration::from_millis(req.transaction_timeout_ms as u64);
    let Some(t) = s.txns.get(&txn_id).cloned() else {
        let pid = s.new_producer_id();
        s.txns.insert(
            txn_id,
            TxnState {
                producer_id: pid,
                epoch: 0,
                last_producer_id: -1,
                last_epoch: -1,
                status: TxnStatus::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                timeout,
                started: None,
                started_ms: -1,
                completing: None,
            },
        );
        return out(Ok((pid, 0)));
    };
    if t.status.is_preparing() {
        return out(Err(ec::CONCURRENT_TRANSACTIONS));
    }
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    if let Some(expected) = expected {
        if expected != (t.producer_id, t.epoch) {
            // KIP-360: the previous id and epoch is a retry of the bump this coordinator
            // already made (its answer was lost): the same result again, nothing bumped or
            // aborted. Once the producer has started a transaction under the new epoch, it has
            // the answer, so an old-epoch request then is a zombie.
            let retry = t.last_epoch >= 0 && expected == (t.last_producer_id, t.last_epoch);
            if retry && t.status != TxnStatus::Ongoing {
                return out(Ok((t.producer_id, t.epoch)));
            }
            return out(Err(fenced(ctx.version, 4)));
        }
    }
    if t.status == TxnStatus::Ongoing {
        // Fence the previous incarnation: abort its transaction with the bumped epoch.
        complete(&mut s, &txn_id, false, t.epoch.saturating_add(1));
    }
    let (pid, epoch) = bump(&mut s, t.producer_id, t.epoch);
    let t = s.txns.get_mut(&txn_id).expect("exists");
    (t.last_producer_id, t.last_epoch) = match expected {
        Some(_) => (t.producer_id, t.epoch),
        None => (-1, -1),
    };
    t.producer_id = pid;
    t.epoch = epoch;
    t.status = TxnStatus::Empty;
    t.partitions.clear();
    t.groups.clear();
    t.timeout = timeout;
    drop(s);
    ctx.shared.bump_data();
    out(Ok((pid, epoch)))
}

pub(crate) fn add_partitions(
    ctx: &Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut s = ctx.shared.lock();
    let txn_id = req.v3_and_below_transactional_id.0.to_string();
    let mut err = check(
        &s,
        ctx,
        &txn_id,
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
        2,
    )
    .err();
    let mut unknown = BTreeSet::new();
    for t in &req.v3_and_below_topics {
        for p in &t.partitions {
            if s.partition(&t.name.0, *p).is_none() {
                unknown.insert((t.name.0.to_string(), *p));
            }
        }
    }
    if err.is_none() && !unknown.is_empty() {
        err = Some(ec::OPERATION_NOT_ATTEMPTED);
    }
    if err.is_none() {
        let t = s.txns.get_mut(&txn_id).expect("checked");
        if t.status != TxnStatus::Ongoing {
            t.begin();
        }
        for tp in &req.v3_and_below_topics {
            for p in &tp.partitions {
                t.partitions.insert((tp.name.0.to_string(), *p));
            }
        }
    }
    let mut resp = AddPartitionsToTxnResponse::default();
    for tp in &req.v3_and_below_topics {
        let mut tr = AddPartitionsToTxnTopicResult::default().with_name(tp.name.clone());
        for p in &tp.partitions {
            let code = if unknown.contains(&(tp.name.0.to_string(), *p)) {
                ec::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                err.unwrap_or(0)
            };
            tr.results_by_partition.push(
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(*p)
                    .with_partition_error_code(code),
            );
        }
        resp.results_by_topic_v3_and_below.push(tr);
    }
    resp
}

pub(crate) fn add_offsets(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let mut s = ctx.shared.lock();
    let txn_id = req.transactional_id.0.to_string();
    let r = check(&s, ctx, &txn_id, req.producer_id.0, req.producer_epoch, 2);
    if r.is_ok() {
        let t = s.txns.get_mut(&txn_id).expect("checked");
        if t.status != TxnStatus::Ongoing {
            t.begin();
        }
        t.groups.insert(req.group_id.0.to_string());
    }
    AddOffsetsToTxnResponse::default().with_error_code(r.err().unwrap_or(0))
}

pub(crate) fn txn_offset_commit(
    ctx: &Ctx<'_>,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let mut s = ctx.shared.lock();
    let txn_id = req.transactional_id.0.to_string();
    let group_id = req.group_id.0.to_string();
    // KIP-890 (transaction.version 2): TxnOffsetCommit v5 adds the group to the transaction
    // implicitly (no AddOffsetsToTxn), starting the transaction if none is open.
    let implicit_add = s.cfg.txn_protocol == TxnProtocol::Kip890 && ctx.version >= 5;
    if implicit_add && s.coordinator(0, &group_id) == ctx.broker {
        if let Some(t) = s.txns.get_mut(&txn_id) {
            let current = t.producer_id == req.producer_id.0 && t.epoch == req.producer_epoch;
            if current && !t.status.is_preparing() {
                if t.status != TxnStatus::Ongoing {
                    t.begin();
                }
                t.groups.insert(group_id.clone());
            }
        }
    }
    let err = (|| {
        if s.coordinator(0, &group_id) != ctx.broker {
            return Err(ec::NOT_COORDINATOR);
        }
        let t = s.txns.get(&txn_id).ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
        if t.producer_id != req.producer_id.0 {
            return Err(ec::INVALID_PRODUCER_ID_MAPPING);
        }
        if req.producer_epoch < t.epoch {
            return Err(fenced(ctx.version, 3));
        }
        if t.status != TxnStatus::Ongoing || !t.groups.contains(&group_id) {
            return Err(ec::INVALID_TXN_STATE);
        }
        // KIP-447: a commit naming a group generation is checked against it.
        if ctx.version >= 3 && !req.member_id.is_empty() && req.generation_id >= 0 {
            if let Some(g) = s.groups.get(&group_id) {
                g.check_txn_member(
                    req.member_id.as_str(),
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                )?;
            }
        }
        Ok(())
    })()
    .err();
    let mut resp = TxnOffsetCommitResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = TxnOffsetCommitResponseTopic::default().with_name(t.name.clone());
        for p in t.partitions {
            let code = match err {
                Some(c) => c,
                None => {
                    let g = s.groups.entry(group_id.clone()).or_insert_with(Group::new);
                    g.pending_txn.entry(req.producer_id.0).or_default().insert(
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
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        resp.topics.push(tr);
    }
    resp
}

pub(crate) fn end_txn(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let mut s = ctx.shared.lock();
    let txn_id = req.transactional_id.0.to_string();
    let kip890 = s.cfg.txn_protocol == TxnProtocol::Kip890;
    let done = |t: &TxnState| {
        (t.status == TxnStatus::CompleteCommit && req.committed)
            || (t.status == TxnStatus::CompleteAbort && !req.committed)
    };
    let r: Result<(), i16> = (|| {
        if s.coordinator(1, &txn_id) != ctx.broker {
            return Err(ec::NOT_COORDINATOR);
        }
        let t = s
            .txns
            .get(&txn_id)
            .ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?
            .clone();
        if t.producer_id != req.producer_id.0 {
            return Err(ec::INVALID_PRODUCER_ID_MAPPING);
        }
        // KIP-890: a retry of the EndTxn that completed (and bumped the epoch) succeeds.
        if kip890 && req.producer_epoch == t.epoch - 1 && done(&t) {
            return Ok(());
        }
        if req.producer_epoch < t.epoch {
            return Err(fenced(ctx.version, 2));
        }
        if req.producer_epoch > t.epoch {
            return Err(ec::INVALID_PRODUCER_EPOCH);
        }
        match t.status {
            TxnStatus::Ongoing => {
                let marker_epoch = if kip890 { t.epoch + 1 } else { t.epoch };
                let delay = s.cfg.txn_marker_delay;
                if delay.is_zero() {
                    complete(&mut s, &txn_id, req.committed, marker_epoch);
                } else {
                    // Markers are written later; until then the transaction is Prepare*.
                    let t = s.txns.get_mut(&txn_id).expect("exists");
                    t.status = if req.committed {
                        TxnStatus::PrepareCommit
                    } else {
                        TxnStatus::PrepareAbort
                    };
                    t.completing = Some((Instant::now() + delay, req.committed, marker_epoch));
                }
                if kip890 {
                    let (pid, epoch) = bump(&mut s, t.producer_id, t.epoch);
                    let t = s.txns.get_mut(&txn_id).expect("exists");
                    t.producer_id = pid;
                    t.epoch = epoch;
                }
                Ok(())
            }
            _ if done(&t) && !kip890 => Ok(()),
            _ => Err(ec::INVALID_TXN_STATE),
        }
    })();
    let mut resp = EndTxnResponse::default().with_error_code(r.err().unwrap_or(0));
    if ctx.version >= 5 {
        let (pid, epoch) = s
            .txns
            .get(&txn_id)
            .map(|t| (t.producer_id, t.epoch))
            .unwrap_or((-1, -1));
        resp.producer_id = ProducerId(pid);
        resp.producer_epoch = epoch;
    }
    drop(s);
    ctx.shared.bump_data();
    resp
}

pub(crate) fn list_transactions(
    ctx: &Ctx<'_>,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    let s = ctx.shared.lock();
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ];
    let mut resp = ListTransactionsResponse::default().with_unknown_state_filters(
        req.state_filters
            .iter()
            .filter(|f| !known.contains(&f.as_str()))
            .cloned()
            .collect(),
    );
    let mut ids: Vec<&String> = s.txns.keys().collect();
    ids.sort();
    for id in ids {
        let t = &s.txns[id];
        if s.coordinator(1, id) != ctx.broker {
            continue;
        }
        if !req.state_filters.is_empty()
            && !req
                .state_filters
                .iter()
                .any(|f| f.as_str() == t.status.name())
        {
            continue;
        }
        if !req.producer_id_filters.is_empty()
            && !req.producer_id_filters.iter().any(|p| p.0 == t.producer_id)
        {
            continue;
        }
        resp.transaction_states.push(
            TransactionState::default()
                .with_transactional_id(TransactionalId(crate::handlers::sb(id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(crate::handlers::sb(t.status.name())),
        );
    }
    resp
}

pub(crate) fn describe_transactions(
    ctx: &Ctx<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let s = ctx.shared.lock();
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let key = id.0.to_string();
        let mut ts = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if s.coordinator(1, &key) != ctx.broker {
            ts.error_code = ec::NOT_COORDINATOR;
        } else if let Some(t) = s.txns.get(&key) {
            ts.transaction_state = crate::handlers::sb(t.status.name());
            ts.transaction_timeout_ms = t.timeout.as_millis() as i32;
            ts.producer_id = ProducerId(t.producer_id);
            ts.producer_epoch = t.epoch;
            if t.status == TxnStatus::Ongoing {
                ts.transaction_start_time_ms = t.started_ms;
                let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
                for (topic, p) in &t.partitions {
                    by_topic.entry(topic).or_default().push(*p);
                }
                ts.topics = by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        TopicData::default()
                            .with_topic(crate::handlers::tn(t))
                            .with_partitions(ps)
                    })
                    .collect();
            }
        } else {
            ts.error_code = ec::TRANSACTIONAL_ID_NOT_FOUND;
        }
        resp.transaction_states.push(ts);
    }
    resp
}
