//! The transactional half of the producer driver: it owns the
//! [`TransactionManager`](krust_core::txn::TransactionManager) (sans-IO), sends the requests it
//! asks for on the transaction coordinator's lane, feeds answers and produce failures back, and
//! turns its events into producer actions (identity and sequence resets, released partitions,
//! the application's pending calls).
//!
//! The plan is the one in `krust_core::txn`'s module docs ("How the producer driver drives
//! it"). What this file adds:
//!
//! * A partition is *held* in the accumulator ([`Accumulator::set_held`]) from the first record
//!   of a transaction until AddPartitionsToTxn named it: nothing reaches a partition before the
//!   coordinator knows it is in the transaction.
//! * `commit_transaction` waits until every record accepted before it is in a partition buffer
//!   (records waiting for topic metadata included), then calls `commit`: the machine holds
//!   EndTxn while any batch is queued or in flight (the flush).
//! * An abortable error fails every batch not yet sent (Java's `abortUndrainedBatches`); a
//!   batch that already had a sequence number makes the abort bump the epoch.
//! * One producer-wide identity: `Initialized` / `EpochBumped` reset every partition to the new
//!   epoch and the first sequence; the per-partition local epoch bumps of the idempotent
//!   producer are not used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use krust_core::accumulator::ProducerIdentity;
use krust_core::fetch::TopicPartition;
use krust_core::txn::{
    CoordinatorKind, GroupMetadata, ProduceFailure, TransactionManager, TransportFailure,
    TxnConfig, TxnError, TxnErrorClass, TxnEvent, TxnOffset, TxnProtocol, TxnRequest,
    TxnRequestBody, TxnResponse, TxnState, TxnTarget,
};
use krust_wire::{ApiKey, ErrorCode};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{Driver, Event};
use crate::cluster::{Cluster, Lane};
use crate::coordinator::{self, CoordinatorType};
use crate::error::{Error, TxnClass};
use crate::producer::record::ProduceErrorKind;

/// A transactional call from a [`Producer`](crate::producer::Producer) handle.
pub(crate) enum TxnCommand {
    Init,
    Begin,
    SendOffsets {
        offsets: Vec<TxnOffset>,
        group: GroupMetadata,
    },
    Commit,
    Abort,
}

/// Where a transactional call's result goes.
pub(crate) type TxnReply = oneshot::Sender<Result<(), Error>>;

/// What the handles read without asking the driver.
#[derive(Debug, Default)]
pub(crate) struct TxnShared {
    /// The producer id and epoch in use.
    pub identity: Mutex<Option<(i64, i16)>>,
    /// A transaction is open for sends (begin succeeded; commit/abort not called yet).
    pub in_txn: AtomicBool,
}

/// The driver's transactional state.
pub(crate) struct TxnDriver {
    tm: TransactionManager,
    protocol_known: bool,
    negotiating: bool,
    negotiate_at: Option<Instant>,
    init_waiters: Vec<TxnReply>,
    offsets_waiters: Vec<TxnReply>,
    /// `commit_transaction` calls waiting for accepted records to reach their partitions.
    commit_deferred: Vec<TxnReply>,
    commit_waiters: Vec<TxnReply>,
    abort_waiters: Vec<TxnReply>,
    shared: Arc<TxnShared>,
    transactional_id: Arc<str>,
    /// The partition the previous record of this burst went to, once the transaction has it:
    /// the next record to it skips `record_partition` (two partition builds and a set lookup).
    /// Forgotten at every transactional command and answer and at each turn of the driver's
    /// loop, so it lives within one burst of commands, each checked by `txn_refuse`.
    last_added: Option<TopicPartition>,
}

impl TxnDriver {
    pub(crate) fn new(
        transactional_id: &str,
        transaction_timeout: Duration,
        backoff: krust_core::backoff::BackoffPolicy,
        seed: u64,
        shared: Arc<TxnShared>,
    ) -> Self {
        let mut cfg = TxnConfig::new(transactional_id);
        cfg.transaction_timeout = transaction_timeout;
        cfg.retry_backoff = backoff;
        TxnDriver {
            tm: TransactionManager::new(cfg, seed),
            protocol_known: false,
            negotiating: false,
            negotiate_at: None,
            init_waiters: Vec::new(),
            offsets_waiters: Vec::new(),
            commit_deferred: Vec::new(),
            commit_waiters: Vec::new(),
            abort_waiters: Vec::new(),
            shared,
            last_added: None,
            transactional_id: Arc::from(transactional_id),
        }
    }

    /// The transactional id (for Produce requests).
    pub(crate) fn transactional_id(&self) -> &Arc<str> {
        &self.transactional_id
    }

    /// The machine's state.
    pub(crate) fn tm_state(&self) -> TxnState {
        self.tm.state()
    }

    /// Whether new records are refused (a commit is under way).
    pub(crate) fn commit_requested(&self) -> bool {
        !self.commit_deferred.is_empty()
    }

    /// The fatal error's text, once the producer is unusable.
    pub(crate) fn fatal(&self) -> Option<String> {
        (self.tm.state() == TxnState::FatalError).then(|| {
            self.tm.last_error().map_or_else(
                || "transactional producer unusable".into(),
                |e| e.to_string(),
            )
        })
    }
}

/// The application-facing error for a machine error.
pub(crate) fn txn_error(e: &TxnError) -> Error {
    let class = match e.class {
        TxnErrorClass::Abortable { .. } => TxnClass::Abortable,
        TxnErrorClass::Fatal => TxnClass::Fatal,
        _ => TxnClass::Usage,
    };
    Error::Transaction {
        class,
        code: e.code,
        message: e.message.clone(),
    }
}

fn reply_all(waiters: &mut Vec<TxnReply>, make: impl Fn() -> Result<(), Error>) {
    for w in waiters.drain(..) {
        let _ = w.send(make());
    }
}

impl Driver {
    // ------------------------------------------------------------------ commands

    pub(super) fn handle_txn_command(&mut self, cmd: TxnCommand, reply: TxnReply) {
        let now = Instant::now();
        if let Some(t) = self.txn.as_mut() {
            t.last_added = None;
        }
        let Some(t) = self.txn.as_mut() else {
            let _ = reply.send(Err(Error::transaction(
                TxnClass::Usage,
                None,
                "not a transactional producer: set transactional.id",
            )));
            return;
        };
        match cmd {
            TxnCommand::Init => {
                if t.tm.state() == TxnState::FatalError {
                    let e = t.tm.init(now).err().map(|e| txn_error(&e));
                    let _ = reply.send(Err(e.unwrap_or(Error::Closed)));
                    return;
                }
                if !t.protocol_known {
                    t.init_waiters.push(reply);
                    self.start_negotiation(now);
                    return;
                }
                self.txn_init(reply, now);
            }
            TxnCommand::Begin => {
                let r = t.tm.begin().map_err(|e| txn_error(&e));
                if r.is_ok() {
                    t.shared.in_txn.store(true, Ordering::Release);
                }
                let _ = reply.send(r);
            }
            TxnCommand::SendOffsets { offsets, group } => match t.tm.send_offsets(offsets, group) {
                Ok(()) => t.offsets_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(txn_error(&e)));
                }
            },
            TxnCommand::Commit => {
                t.shared.in_txn.store(false, Ordering::Release);
                match t.tm.state() {
                    // A second call while committing waits for the same commit.
                    TxnState::Committing => t.commit_waiters.push(reply),
                    TxnState::InTransaction => {
                        // Flush first: linger no longer applies; EndTxn waits for the batches.
                        t.commit_deferred.push(reply);
                        self.acc.set_flushing(true);
                    }
                    _ => match t.tm.commit(now) {
                        Ok(()) => t.commit_waiters.push(reply),
                        Err(e) => {
                            let _ = reply.send(Err(txn_error(&e)));
                        }
                    },
                }
            }
            TxnCommand::Abort => {
                t.shared.in_txn.store(false, Ordering::Release);
                match t.tm.abort(now) {
                    Ok(()) => {
                        reply_all(&mut t.commit_deferred, || {
                            Err(Error::transaction(
                                TxnClass::Usage,
                                None,
                                "the transaction was aborted while the commit waited",
                            ))
                        });
                        t.abort_waiters.push(reply);
                        self.fail_undrained("transaction aborted");
                    }
                    Err(e) => {
                        let _ = reply.send(Err(txn_error(&e)));
                    }
                }
            }
        }
    }

    fn txn_init(&mut self, reply: TxnReply, now: Instant) {
        let Some(t) = self.txn.as_mut() else { return };
        let unknown = t.tm.is_commit_outcome_unknown();
        match t.tm.init(now) {
            Ok(()) => {
                if unknown {
                    // The coordinator now decides the pending commit's fate (it completes a
                    // prepared commit, aborts an open transaction): the caller cannot know.
                    reply_all(&mut t.commit_waiters, || {
                        Err(Error::transaction(
                            TxnClass::CommitOutcomeUnknown,
                            None,
                            "the producer was re-initialised while the commit's outcome was \
                             unknown: the coordinator completed or aborted it",
                        ))
                    });
                }
                t.init_waiters.push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(txn_error(&e)));
            }
        }
    }

    /// Reads the cluster's `transaction.version` and API maxima (ApiVersions on any broker)
    /// to choose the protocol before the first `init`.
    fn start_negotiation(&mut self, now: Instant) {
        let Some(t) = self.txn.as_mut() else { return };
        if t.negotiating || t.negotiate_at.is_some_and(|at| now < at) {
            return;
        }
        t.negotiating = true;
        t.negotiate_at = None;
        let cluster = self.cluster.clone();
        self.events.push(
            async move {
                let r = async {
                    let conn = cluster.any_connection().await?;
                    let v = |api| conn.version_for(api).ok();
                    let (end, produce) = (v(ApiKey::EndTxn), v(ApiKey::Produce));
                    // From the ApiVersions answer the connection got when it opened.
                    let tv = conn.versions().transaction_version();
                    Ok::<_, Error>(TxnProtocol::negotiate(tv, end, produce))
                }
                .await;
                Event::TxnProtocol(r.map_err(|e| e.to_string()))
            }
            .boxed(),
        );
    }

    pub(super) fn handle_txn_protocol(&mut self, result: Result<TxnProtocol, String>) {
        let now = Instant::now();
        if let Some(t) = self.txn.as_mut() {
            t.last_added = None;
        }
        let retry = self.cfg.client.retry_backoff_max;
        let Some(t) = self.txn.as_mut() else { return };
        t.negotiating = false;
        match result {
            Ok(p) => {
                debug!(protocol = ?p, "transaction protocol");
                t.protocol_known = true;
                t.tm.set_protocol(p);
                let waiters = std::mem::take(&mut t.init_waiters);
                for w in waiters {
                    self.txn_init(w, now);
                }
            }
            Err(e) => {
                warn!(error = %e, "could not read the cluster's transaction version; retrying");
                t.negotiate_at = Some(now + retry);
            }
        }
    }

    // ------------------------------------------------------------------ the loop

    /// Sends what the machine asks for and applies its events. Returns when to look again.
    /// Forgets the partition cached by `txn_record_partition`.
    pub(super) fn txn_forget_added(&mut self) {
        if let Some(t) = self.txn.as_mut() {
            t.last_added = None;
        }
    }

    pub(super) fn drive_txn(&mut self, now: Instant) -> Option<Instant> {
        let t = self.txn.as_ref()?;
        let mut next = None;
        if !t.protocol_known && !t.init_waiters.is_empty() {
            self.start_negotiation(now);
            next = self.txn.as_ref().and_then(|t| t.negotiate_at);
        }
        loop {
            self.apply_txn_events();
            if let Some(reason) = self.txn.as_ref().and_then(|t| t.fatal()) {
                self.txn_stop(&reason);
                return None;
            }
            match self.txn.as_ref().map(|t| t.tm.state()) {
                Some(TxnState::AbortableError) => {
                    self.fail_undrained("the transaction failed and must be aborted")
                }
                // A batch that came back for a retry while aborting is not sent again.
                Some(TxnState::Aborting) => self.fail_undrained("transaction aborted"),
                _ => {}
            }
            let t = self.txn.as_mut().expect("checked above");
            if !t.commit_deferred.is_empty() && self.waiting.is_empty() {
                let waiters = std::mem::take(&mut t.commit_deferred);
                match t.tm.commit(now) {
                    Ok(()) => t.commit_waiters.extend(waiters),
                    Err(e) => {
                        for w in waiters {
                            let _ = w.send(Err(txn_error(&e)));
                        }
                    }
                }
                continue;
            }
            let incomplete = !self.acc.is_empty() || !self.waiting.is_empty();
            let t = self.txn.as_mut().expect("checked above");
            match t.tm.poll_request(now, incomplete) {
                Some(req) => self.start_txn_request(req),
                None => break,
            }
        }
        let t = self.txn.as_ref()?;
        match (next, t.tm.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn apply_txn_events(&mut self) {
        while let Some(ev) = self.txn.as_mut().and_then(|t| t.tm.poll_event()) {
            match ev {
                TxnEvent::Initialized {
                    producer_id,
                    producer_epoch,
                } => {
                    debug!(
                        producer_id,
                        producer_epoch, "transactional producer initialised"
                    );
                    self.txn_identity(producer_id, producer_epoch);
                    if let Some(t) = self.txn.as_mut() {
                        reply_all(&mut t.init_waiters, || Ok(()));
                    }
                }
                TxnEvent::EpochBumped {
                    producer_id,
                    producer_epoch,
                } => {
                    debug!(producer_id, producer_epoch, "producer epoch bumped");
                    self.txn_identity(producer_id, producer_epoch);
                }
                TxnEvent::PartitionsAdded(tps) => {
                    for tp in &tps {
                        self.acc.set_held(tp, false);
                    }
                }
                TxnEvent::OffsetsCommitted => {
                    if let Some(t) = self.txn.as_mut() {
                        reply_all(&mut t.offsets_waiters, || Ok(()));
                    }
                }
                TxnEvent::CommitOutcomeUnknown => {
                    warn!("EndTxn(commit) got no answer: retrying it; abort is refused until it resolves");
                }
                TxnEvent::Completed { committed } => {
                    debug!(committed, "transaction completed");
                    self.acc.release_all_held();
                    if self.flush_waiters.is_empty() && !self.closing {
                        self.acc.set_flushing(false);
                    }
                    if let Some(t) = self.txn.as_mut() {
                        if committed {
                            reply_all(&mut t.commit_waiters, || Ok(()));
                        } else {
                            reply_all(&mut t.abort_waiters, || Ok(()));
                        }
                    }
                }
                TxnEvent::Failed(e) => {
                    warn!(error = %e, "transaction error");
                    if let Some(t) = self.txn.as_mut() {
                        let f = || Err(txn_error(&e));
                        reply_all(&mut t.offsets_waiters, f);
                        reply_all(&mut t.commit_waiters, f);
                        reply_all(&mut t.commit_deferred, f);
                        if e.is_fatal() {
                            reply_all(&mut t.init_waiters, f);
                            reply_all(&mut t.abort_waiters, f);
                        }
                    }
                }
            }
        }
    }

    /// The new producer-wide identity: every partition restarts at the first sequence.
    fn txn_identity(&mut self, producer_id: i64, epoch: i16) {
        let id = ProducerIdentity { producer_id, epoch };
        let first = self.cfg.first_sequence;
        self.acc.set_default_producer(id, first);
        let tps: Vec<TopicPartition> = self
            .acc
            .partitions()
            .map(|b| b.topic_partition().clone())
            .collect();
        for tp in tps {
            match self.acc.reset_partition(&tp, id, first) {
                Some(unknown) => self.fail_unknown_after_reset(&tp, unknown),
                None => warn!(%tp, "epoch changed with batches in flight"),
            }
        }
        if let Some(t) = self.txn.as_ref() {
            *t.shared.identity.lock().unwrap() = Some((producer_id, epoch));
        }
    }

    /// Fails every batch not yet sent and every record still waiting for its topic: they
    /// belong to a transaction that will not commit. A failed batch that already had a
    /// sequence number makes the abort bump the epoch.
    fn fail_undrained(&mut self, why: &str) {
        // (A batch with a sequence number makes the abort bump: see `fail_batch`.)
        if !self.abort_unsent(ProduceErrorKind::Transaction(why.to_string())) {
            return;
        }
        self.acc.release_all_held();
    }

    /// The producer is unusable: every queued record and every waiting call fails.
    fn txn_stop(&mut self, reason: &str) {
        self.acc.release_all_held();
        self.abort_unsent(ProduceErrorKind::Fatal(reason.to_string()));
        if let Some(t) = self.txn.as_mut() {
            let err = t.tm.last_error().cloned();
            let f = || {
                Err(match &err {
                    Some(e) => txn_error(e),
                    None => Error::transaction(TxnClass::Fatal, None, reason),
                })
            };
            reply_all(&mut t.init_waiters, f);
            reply_all(&mut t.offsets_waiters, f);
            reply_all(&mut t.commit_deferred, f);
            reply_all(&mut t.commit_waiters, f);
            reply_all(&mut t.abort_waiters, f);
            t.shared.in_txn.store(false, Ordering::Release);
        }
    }

    // ------------------------------------------------------------------ produce path

    /// Called for each record before it is appended to `tp`: holds the partition until the
    /// coordinator added it. `Err`: the record must fail with this text.
    pub(super) fn txn_record_partition(
        &mut self,
        tp: &TopicPartition,
    ) -> Result<(), ProduceErrorKind> {
        let Some(t) = self.txn.as_mut() else {
            return Ok(());
        };
        if t.last_added.as_ref() == Some(tp) {
            // Added already, and nothing transactional happened since (`txn_refuse` checked
            // the state for this record).
            return Ok(());
        }
        match t.tm.record_partition(tp) {
            Ok(true) => {
                t.last_added = Some(tp.clone());
                Ok(())
            }
            Ok(false) => {
                self.acc.set_held(tp, true);
                Ok(())
            }
            Err(e) if e.is_fatal() => Err(ProduceErrorKind::Fatal(e.to_string())),
            Err(e) => Err(ProduceErrorKind::Transaction(e.to_string())),
        }
    }

    /// Why a new record is refused before routing, if it is.
    pub(super) fn txn_refuse(&self) -> Option<ProduceErrorKind> {
        let t = self.txn.as_ref()?;
        if let Some(reason) = t.fatal() {
            return Some(ProduceErrorKind::Fatal(reason));
        }
        if t.tm.state() == TxnState::AbortableError {
            let why = t.tm.last_error().map(|e| e.to_string()).unwrap_or_default();
            return Some(ProduceErrorKind::Transaction(format!(
                "the transaction failed and must be aborted ({why})"
            )));
        }
        if t.commit_requested() || t.tm.state() != TxnState::InTransaction {
            return Some(ProduceErrorKind::Transaction(format!(
                "send outside a transaction (state {:?}): call begin_transaction first",
                t.tm.state()
            )));
        }
        None
    }

    /// A batch of the transaction failed for good after it got a sequence number: the
    /// abort must bump the epoch (the partition's sequence space has a gap).
    pub(super) fn txn_batch_failed(&mut self, had_sequence: bool) {
        if let (true, Some(t)) = (had_sequence, self.txn.as_mut()) {
            t.tm.require_epoch_bump();
        }
    }

    /// A record of the transaction (partition -1: it never got one) failed for good: the
    /// transaction cannot commit.
    pub(super) fn txn_produce_failed(&mut self, tp: &TopicPartition, kind: &ProduceErrorKind) {
        let Some(t) = self.txn.as_mut() else { return };
        let failure = match kind {
            ProduceErrorKind::Broker { code, .. } => ProduceFailure::Error(*code),
            _ => ProduceFailure::Timeout,
        };
        t.tm.handle_produce_failure(tp, failure);
    }

    // ------------------------------------------------------------------ requests

    fn start_txn_request(&mut self, req: TxnRequest) {
        let cluster = self.cluster.clone();
        let timeout = self.cfg.client.request_timeout;
        let TxnRequest { id, target, body } = req;
        debug!(id, ?target, api = ?body.api(), "transaction request");
        self.events.push(
            async move {
                let result = match target {
                    TxnTarget::AnyBroker => find_coordinator(&cluster, &body).await,
                    TxnTarget::TxnCoordinator(node) | TxnTarget::GroupCoordinator(node) => {
                        to_coordinator(&cluster, node, timeout, &body).await
                    }
                };
                Event::Txn { id, result }
            }
            .boxed(),
        );
    }

    pub(super) fn handle_txn_answer(
        &mut self,
        id: u64,
        result: Result<TxnResponse, TransportFailure>,
    ) {
        let now = Instant::now();
        let Some(t) = self.txn.as_mut() else { return };
        t.last_added = None;
        match result {
            Ok(resp) => t.tm.handle_response(id, resp, now),
            Err(f) => {
                debug!(id, failure = ?f, "transaction request failed");
                t.tm.handle_failure(id, f, now)
            }
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn transport(e: &Error) -> TransportFailure {
    if e.is_timeout() {
        TransportFailure::Timeout
    } else {
        TransportFailure::Disconnected
    }
}

async fn find_coordinator(
    cluster: &Cluster,
    body: &TxnRequestBody,
) -> Result<TxnResponse, TransportFailure> {
    let TxnRequestBody::FindCoordinator { key, kind } = body else {
        return Err(TransportFailure::Disconnected);
    };
    let kind = match kind {
        CoordinatorKind::Group => CoordinatorType::Group,
        CoordinatorKind::Transaction => CoordinatorType::Transaction,
    };
    match coordinator::lookup_once(cluster, kind, key).await {
        Ok(Ok(node_id)) => Ok(TxnResponse::FindCoordinator {
            error: ErrorCode::NONE,
            node_id,
        }),
        Ok(Err(refusal)) => Ok(TxnResponse::FindCoordinator {
            error: refusal.code,
            node_id: -1,
        }),
        Err(e) => {
            debug!(error = %e, "FindCoordinator failed");
            Err(transport(&e))
        }
    }
}

async fn to_coordinator(
    cluster: &Cluster,
    node: i32,
    timeout: Duration,
    body: &TxnRequestBody,
) -> Result<TxnResponse, TransportFailure> {
    let conn = match cluster.connection_on(node, Lane::Transaction).await {
        Ok(c) => c,
        Err(e) => {
            // An unknown broker has asked for a metadata refresh already.
            debug!(node, error = %e, "no connection to the coordinator");
            return Err(TransportFailure::Disconnected);
        }
    };
    let tid = |s: &str| TransactionalId(sb(s));
    let unsupported = |api: ApiKey| -> Result<TxnResponse, TransportFailure> {
        warn!(node, ?api, "the coordinator does not support this API");
        Ok(error_response(body, ErrorCode::UNSUPPORTED_VERSION))
    };
    macro_rules! version {
        ($api:expr, $cap:expr) => {
            match conn.versions().range($api) {
                Some((min, max)) if min <= $cap => max.min($cap),
                _ => return unsupported($api),
            }
        };
    }
    let res = match body {
        TxnRequestBody::InitProducerId {
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        } => {
            let v = version!(ApiKey::InitProducerId, 5);
            let req = InitProducerIdRequest::default()
                .with_transactional_id(Some(tid(transactional_id)))
                .with_transaction_timeout_ms(*transaction_timeout_ms)
                .with_producer_id(ProducerId(*producer_id))
                .with_producer_epoch(*producer_epoch);
            conn.request(&req, v, timeout)
                .await
                .map(|r: InitProducerIdResponse| TxnResponse::InitProducerId {
                    error: ErrorCode(r.error_code),
                    producer_id: r.producer_id.0,
                    producer_epoch: r.producer_epoch,
                })
        }
        TxnRequestBody::AddPartitionsToTxn {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        } => {
            // v4+ is the brokers' batched verification form; a client speaks at most v3.
            let v = version!(ApiKey::AddPartitionsToTxn, 3);
            let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
            for tp in partitions {
                match topics.last_mut() {
                    Some(t) if t.name.0.as_str() == &*tp.topic => t.partitions.push(tp.partition),
                    _ => topics.push(
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(sb(&tp.topic)))
                            .with_partitions(vec![tp.partition]),
                    ),
                }
            }
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid(transactional_id))
                .with_v3_and_below_producer_id(ProducerId(*producer_id))
                .with_v3_and_below_producer_epoch(*producer_epoch)
                .with_v3_and_below_topics(topics);
            conn.request(&req, v, timeout)
                .await
                .map(|r: AddPartitionsToTxnResponse| {
                    let top = ErrorCode(r.error_code);
                    let mut results = Vec::new();
                    for t in &r.results_by_topic_v3_and_below {
                        for p in &t.results_by_partition {
                            let code = ErrorCode(p.partition_error_code);
                            let code = if code == ErrorCode::NONE { top } else { code };
                            results.push((
                                TopicPartition::new(t.name.0.as_str(), p.partition_index),
                                code,
                            ));
                        }
                    }
                    if results.is_empty() && top != ErrorCode::NONE {
                        results = partitions.iter().map(|tp| (tp.clone(), top)).collect();
                    }
                    TxnResponse::AddPartitionsToTxn { results }
                })
        }
        TxnRequestBody::AddOffsetsToTxn {
            transactional_id,
            producer_id,
            producer_epoch,
            group_id,
        } => {
            let v = version!(ApiKey::AddOffsetsToTxn, 4);
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid(transactional_id))
                .with_producer_id(ProducerId(*producer_id))
                .with_producer_epoch(*producer_epoch)
                .with_group_id(GroupId(sb(group_id)));
            conn.request(&req, v, timeout)
                .await
                .map(|r: AddOffsetsToTxnResponse| TxnResponse::AddOffsetsToTxn {
                    error: ErrorCode(r.error_code),
                })
        }
        TxnRequestBody::TxnOffsetCommit {
            transactional_id,
            producer_id,
            producer_epoch,
            group,
            offsets,
        } => {
            let v = version!(ApiKey::TxnOffsetCommit, 5);
            let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
            for o in offsets {
                let p = TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(o.partition.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(o.leader_epoch.unwrap_or(-1))
                    .with_committed_metadata(o.metadata.as_deref().map(sb));
                match topics
                    .iter_mut()
                    .find(|t| t.name.0.as_str() == &*o.partition.topic)
                {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(sb(&o.partition.topic)))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(tid(transactional_id))
                .with_group_id(GroupId(sb(&group.group_id)))
                .with_producer_id(ProducerId(*producer_id))
                .with_producer_epoch(*producer_epoch)
                .with_generation_id(group.generation_id)
                .with_member_id(sb(&group.member_id))
                .with_group_instance_id(group.instance_id.as_deref().map(sb))
                .with_topics(topics);
            conn.request(&req, v, timeout)
                .await
                .map(|r: TxnOffsetCommitResponse| {
                    let mut results = Vec::new();
                    for t in &r.topics {
                        for p in &t.partitions {
                            results.push((
                                TopicPartition::new(t.name.0.as_str(), p.partition_index),
                                ErrorCode(p.error_code),
                            ));
                        }
                    }
                    TxnResponse::TxnOffsetCommit { results }
                })
        }
        TxnRequestBody::EndTxn {
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
        } => {
            let v = version!(ApiKey::EndTxn, 5);
            let req = EndTxnRequest::default()
                .with_transactional_id(tid(transactional_id))
                .with_producer_id(ProducerId(*producer_id))
                .with_producer_epoch(*producer_epoch)
                .with_committed(*commit);
            conn.request(&req, v, timeout)
                .await
                .map(|r: EndTxnResponse| TxnResponse::EndTxn {
                    error: ErrorCode(r.error_code),
                    producer_id: if v >= 5 { r.producer_id.0 } else { -1 },
                    producer_epoch: if v >= 5 { r.producer_epoch } else { -1 },
                })
        }
        TxnRequestBody::FindCoordinator { .. } => return find_coordinator(cluster, body).await,
    };
    res.map_err(|e| {
        debug!(node, error = %e, "coordinator request failed");
        transport(&e)
    })
}

/// An answer carrying `code` for every part of `body` (a request the broker cannot take).
fn error_response(body: &TxnRequestBody, code: ErrorCode) -> TxnResponse {
    match body {
        TxnRequestBody::FindCoordinator { .. } => TxnResponse::FindCoordinator {
            error: code,
            node_id: -1,
        },
        TxnRequestBody::InitProducerId { .. } => TxnResponse::InitProducerId {
            error: code,
            producer_id: -1,
            producer_epoch: -1,
        },
        TxnRequestBody::AddPartitionsToTxn { partitions, .. } => TxnResponse::AddPartitionsToTxn {
            results: partitions.iter().map(|p| (p.clone(), code)).collect(),
        },
        TxnRequestBody::AddOffsetsToTxn { .. } => TxnResponse::AddOffsetsToTxn { error: code },
        TxnRequestBody::TxnOffsetCommit { offsets, .. } => TxnResponse::TxnOffsetCommit {
            results: offsets
                .iter()
                .map(|o| (o.partition.clone(), code))
                .collect(),
        },
        TxnRequestBody::EndTxn { .. } => TxnResponse::EndTxn {
            error: code,
            producer_id: -1,
            producer_epoch: -1,
        },
    }
}
