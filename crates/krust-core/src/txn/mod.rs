//! Transactions, sans-IO: the transactional producer's state machine
//! ([`TransactionManager`]), modelled on the semantics of Kafka's Java `TransactionManager`,
//! the error classification it applies ([`classify`]) and the `transaction.timeout.ms`
//! validation ([`validate_timeouts`]).
//!
//! Nothing here does I/O or reads a clock. The caller feeds API calls (`init`, `begin`,
//! `record_partition`, `send_offsets`, `commit`, `abort`), broker answers
//! ([`TransactionManager::handle_response`]), transport failures
//! ([`TransactionManager::handle_failure`]) and produce failures
//! ([`TransactionManager::handle_produce_failure`]) with `now`, and takes requests out with
//! [`TransactionManager::poll_request`] and events with [`TransactionManager::poll_event`].
//!
//! # Error classes
//!
//! * **retriable**: handled inside (coordinator looked up again, request re-sent after a
//!   backoff; CONCURRENT_TRANSACTIONS after a short fixed backoff). Never surfaced.
//! * **abortable**: the transaction cannot commit; the application must call `abort` and may
//!   then go on with a new transaction ([`TxnErrorClass::Abortable`]).
//! * **fatal**: the producer is unusable (fenced by a newer instance, not authorised, the
//!   coordinator says the state is invalid). Every later call returns the same error.
//!
//! # Rules kept
//!
//! * AddPartitionsToTxn is batched (every partition recorded while one is in flight goes in the
//!   next request) and always precedes the first produce to a partition: a partition is
//!   sendable only once [`TxnEvent::PartitionsAdded`] named it.
//! * A commit whose outcome is unknown (EndTxn timed out or its connection died) is retried
//!   inside; while it is unknown, `abort` is refused: the legal moves are waiting for (or
//!   calling again) `commit`, or re-initialising with `init`. An abort would let the delayed
//!   commit land later, or report aborted data that is in fact committed.
//! * A produce failure inside a transaction (including a delivery timeout, whose batch may be
//!   persisted) is abortable. The batch is never retried in place with new sequence numbers
//!   (KAFKA-18579); the epoch is bumped after the abort so a late copy of it is fenced.
//! * KIP-890 (transactions v2, [`TxnProtocol::V2`]): partitions are added implicitly by
//!   Produce v12, TxnOffsetCommit is sent without AddOffsetsToTxn, and every EndTxn (v5) bumps
//!   the epoch: its response carries the producer id and epoch of the next transaction, so a
//!   delayed request of an older transaction is fenced.
//! * KIP-447: TxnOffsetCommit carries the consumer's [`GroupMetadata`] (generation, member id,
//!   instance id), so a zombie's commit is rejected by the group coordinator.
//!
//! # How the producer driver drives it (stage 2)
//!
//! 1. At construction: [`validate_timeouts`] (`transaction.timeout.ms` against
//!    `delivery.timeout.ms`); build the machine with [`TxnConfig`].
//! 2. After ApiVersions from any broker: [`TxnProtocol::negotiate`] with
//!    `krust_wire::features::transaction_version` and the EndTxn / Produce / AddPartitionsToTxn
//!    maxima, then [`TransactionManager::set_protocol`] before `init`.
//! 3. One driver loop (the producer's task) owns the machine. On every wake-up: feed what came
//!    in, then `while let Some(req) = poll_request(now, batches_incomplete)` send `req` on the
//!    coordinator lane of `req.target` (AnyBroker: least-loaded broker) and remember `req.id`;
//!    sleep until the earliest of the next response, [`TransactionManager::next_deadline`] and
//!    the producer's own timers. `batches_incomplete` is true while any batch of the current
//!    transaction is queued or in flight: EndTxn waits for it (commit flushes first; abort
//!    first fails the undrained batches, then waits for in-flight ones).
//! 4. Responses: decode with krust-wire, convert to [`TxnResponse`] and call `handle_response`
//!    with the request's id. A request timeout or a dead connection: `handle_failure`.
//!    Responses to ids the machine no longer waits for are ignored by it.
//! 5. Produce path: before draining a batch for partition p of the current transaction, call
//!    `record_partition(p)`; drain it only when it returns `Ok(true)` or once
//!    [`TxnEvent::PartitionsAdded`] named p. Stamp batches with `producer_id_and_epoch()` and
//!    the transactional flag. A batch that finally fails (any error the idempotence machine
//!    gives up on, or a delivery timeout) goes to `handle_produce_failure`; its records are
//!    failed to the application and are *not* re-sent.
//! 6. Events: `Initialized` / `EpochBumped` set the idempotence machine's producer id and
//!    epoch (and reset sequences); `PartitionsAdded` wakes the accumulator; `OffsetsCommitted`,
//!    `Completed` and `Failed` complete the application's pending futures. A fatal error stops
//!    the producer: every queued record fails with it.
//!    In V2 mode every `EpochBumped` after `Completed` starts the next transaction on a new
//!    epoch: sequences restart at 0 on every partition.
//! 7. Application calls map one to one: `init_transactions` -> `init`, `begin_transaction` ->
//!    `begin`, `send_offsets_to_transaction` -> `send_offsets`, `commit_transaction` -> flush
//!    then `commit`, `abort_transaction` -> `abort`. A `commit_transaction` that times out on
//!    the application side leaves the machine committing; calling it again waits for the same
//!    commit. `CommitOutcomeUnknown` is not a failure of the future: the machine keeps
//!    retrying; `abort_transaction` returns the usage error until the commit resolves, and
//!    `init_transactions` is the other way out (the outcome is then decided by the
//!    coordinator, and reported to the application as unknown).
//! 8. Stage 2 (done): `krust-client`'s producer driver (`producer/txn.rs`) drives the machine
//!    as above. A batch that failed after it got a sequence number also calls
//!    [`TransactionManager::require_epoch_bump`] (the driver cannot rewind sequence numbers,
//!    so the gap is closed by the abort's epoch bump). Tests on the fake cluster
//!    (`krust-client/tests/txn_fake.rs`): T7, T8 (EndTxn and Produce), fencing, KIP-447,
//!    the unknown-commit rule, a seeded randomized run with connections cut; on the real
//!    broker in `txn_tansu.rs`.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use krust_wire::ErrorCode;

use crate::backoff::{Backoff, BackoffPolicy, SmallRng};
pub use crate::fetch::TopicPartition;
pub use crate::group::GroupMetadata;

mod classify;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use classify::{classify, RetryKind, TxnApi, TxnErrorClass};

/// The machine's state (Kafka's `TransactionManager.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// `init` not called yet.
    Uninitialized,
    /// Looking up the coordinator and asking for a producer id.
    Initializing,
    /// Between transactions.
    Ready,
    /// A transaction is open.
    InTransaction,
    /// `commit` called; EndTxn(commit) pending or in flight. See
    /// [`TransactionManager::is_commit_outcome_unknown`].
    Committing,
    /// `abort` called; EndTxn(abort) (and maybe an epoch bump) pending or in flight.
    Aborting,
    /// The transaction cannot commit; only `abort` is legal.
    AbortableError,
    /// The producer is unusable.
    FatalError,
}

/// Which transaction protocol the cluster speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnProtocol {
    /// Explicit AddPartitionsToTxn / AddOffsetsToTxn, one epoch for many transactions.
    #[default]
    Classic,
    /// KIP-890 transactions v2: implicit adds, an epoch bump per transaction.
    V2,
}

impl TxnProtocol {
    /// V2 when the cluster finalized `transaction.version` ≥ 2 and the versions negotiated
    /// with the broker reach EndTxn v5 and Produce v12; Classic otherwise. Each argument is
    /// the highest version both sides speak (or the feature level), `None` when unknown.
    ///
    /// AddPartitionsToTxn's version does not decide: a V2 producer never sends it (Produce v12
    /// adds partitions implicitly), and brokers keep AddPartitionsToTxn v4+ for broker-to-broker
    /// verification (a client speaks at most v3), as the Java client does.
    pub fn negotiate(
        transaction_version: Option<i16>,
        end_txn: Option<i16>,
        produce: Option<i16>,
    ) -> TxnProtocol {
        let at_least = |v: Option<i16>, min: i16| v.is_some_and(|v| v >= min);
        if at_least(transaction_version, 2) && at_least(end_txn, 5) && at_least(produce, 12) {
            TxnProtocol::V2
        } else {
            TxnProtocol::Classic
        }
    }
}

/// Settings of the transaction machine.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transactional.id`.
    pub transactional_id: String,
    /// `transaction.timeout.ms`: sent in InitProducerId. Default 60 000 ms.
    pub transaction_timeout: Duration,
    /// Backoff between retries of a retriable error (`retry.backoff.ms` ..
    /// `retry.backoff.max.ms`). Default 100 ms .. 1 000 ms.
    pub retry_backoff: BackoffPolicy,
    /// The short fixed backoff after CONCURRENT_TRANSACTIONS (the previous transaction is still
    /// being completed by the coordinator). Default 20 ms, as Java.
    pub concurrent_transactions_backoff: Duration,
}

impl TxnConfig {
    /// Defaults for `transactional_id`.
    pub fn new(transactional_id: impl Into<String>) -> Self {
        TxnConfig {
            transactional_id: transactional_id.into(),
            transaction_timeout: Duration::from_secs(60),
            retry_backoff: BackoffPolicy::default(),
            concurrent_transactions_backoff: Duration::from_millis(20),
        }
    }
}

/// `transaction.timeout.ms` is invalid, alone or against `delivery.timeout.ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutConfigError(pub String);

impl fmt::Display for TimeoutConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeoutConfigError {}

/// Checks `transaction.timeout.ms` against `delivery.timeout.ms`: the transaction timeout
/// must be positive and fit the wire's i32 milliseconds, and a record must not be allowed to
/// stay undelivered longer than its transaction may stay open (the coordinator would abort the
/// transaction under a record still being retried, whose late arrival then fails or lands in
/// the wrong transaction).
pub fn validate_timeouts(
    transaction_timeout: Duration,
    delivery_timeout: Duration,
) -> Result<(), TimeoutConfigError> {
    let txn_ms = transaction_timeout.as_millis();
    if txn_ms == 0 {
        return Err(TimeoutConfigError(
            "transaction.timeout.ms must be at least 1".into(),
        ));
    }
    if txn_ms > i32::MAX as u128 {
        return Err(TimeoutConfigError(format!(
            "transaction.timeout.ms = {txn_ms} does not fit the protocol (at most {})",
            i32::MAX
        )));
    }
    if delivery_timeout > transaction_timeout {
        return Err(TimeoutConfigError(format!(
            "delivery.timeout.ms = {} must be <= transaction.timeout.ms = {txn_ms}: a record \
             could still be retried after the coordinator aborted its transaction",
            delivery_timeout.as_millis()
        )));
    }
    Ok(())
}

/// An error surfaced to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnError {
    /// Abortable, fatal, or a usage error (an API called in the wrong state; the state does
    /// not change).
    pub class: TxnErrorClass,
    /// The API that failed, if a broker answer caused it.
    pub api: Option<TxnApi>,
    /// The broker's error code, if any.
    pub code: Option<ErrorCode>,
    /// What happened, for people.
    pub message: String,
}

impl TxnError {
    fn broker(api: TxnApi, code: ErrorCode, class: TxnErrorClass) -> Self {
        TxnError {
            class,
            api: Some(api),
            code: Some(code),
            message: format!("{api:?}: {code}"),
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        TxnError {
            class: TxnErrorClass::Usage,
            api: None,
            code: None,
            message: message.into(),
        }
    }

    /// The producer is unusable.
    pub fn is_fatal(&self) -> bool {
        self.class == TxnErrorClass::Fatal
    }

    /// The application must abort the transaction and may go on.
    pub fn is_abortable(&self) -> bool {
        matches!(self.class, TxnErrorClass::Abortable { .. })
    }

    /// A newer producer with the same transactional id took over.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self.code,
            Some(
                ErrorCode::PRODUCER_FENCED
                    | ErrorCode::INVALID_PRODUCER_EPOCH
                    | ErrorCode::TRANSACTION_COORDINATOR_FENCED
            )
        ) && self.is_fatal()
    }

    /// An authorization failure.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code,
            Some(
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                    | ErrorCode::CLUSTER_AUTHORIZATION_FAILED
                    | ErrorCode::GROUP_AUTHORIZATION_FAILED
                    | ErrorCode::TOPIC_AUTHORIZATION_FAILED
            )
        )
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            TxnErrorClass::Abortable { .. } => "abortable",
            TxnErrorClass::Fatal => "fatal",
            TxnErrorClass::Usage => "invalid call",
            _ => "transaction",
        };
        write!(f, "{class} transaction error: {}", self.message)
    }
}

impl std::error::Error for TxnError {}

/// Which coordinator a FindCoordinator looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorKind {
    /// The transaction coordinator (key type 1).
    Transaction,
    /// The consumer group coordinator (key type 0), for TxnOffsetCommit.
    Group,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnTarget {
    /// Any broker (FindCoordinator): the least loaded.
    AnyBroker,
    /// The transaction coordinator.
    TxnCoordinator(i32),
    /// The group coordinator of the offsets being committed.
    GroupCoordinator(i32),
}

/// One offset in a TxnOffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOffset {
    /// The partition consumed.
    pub partition: TopicPartition,
    /// The next offset to read.
    pub offset: i64,
    /// Leader epoch of the last record consumed (KIP-320), if known.
    pub leader_epoch: Option<i32>,
    /// Free-form metadata.
    pub metadata: Option<String>,
}

/// The payload of a request; producer id, epoch and transactional id are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRequestBody {
    /// FindCoordinator for `key`.
    FindCoordinator {
        /// Transactional id or group id.
        key: String,
        /// Which coordinator.
        kind: CoordinatorKind,
    },
    /// InitProducerId; `producer_id` / `producer_epoch` are -1 on the first call and the
    /// current values when bumping the epoch (KIP-360).
    InitProducerId {
        /// `transactional.id`.
        transactional_id: String,
        /// `transaction.timeout.ms`.
        transaction_timeout_ms: i32,
        /// Current producer id or -1.
        producer_id: i64,
        /// Current epoch or -1.
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn (classic only), batched.
    AddPartitionsToTxn {
        /// `transactional.id`.
        transactional_id: String,
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
        /// The partitions, sorted.
        partitions: Vec<TopicPartition>,
    },
    /// AddOffsetsToTxn (classic only).
    AddOffsetsToTxn {
        /// `transactional.id`.
        transactional_id: String,
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
        /// The group whose offsets will be committed.
        group_id: String,
    },
    /// TxnOffsetCommit to the group coordinator, with KIP-447 group metadata.
    TxnOffsetCommit {
        /// `transactional.id`.
        transactional_id: String,
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
        /// Group id, generation, member id, instance id.
        group: GroupMetadata,
        /// The offsets still to commit.
        offsets: Vec<TxnOffset>,
    },
    /// EndTxn.
    EndTxn {
        /// `transactional.id`.
        transactional_id: String,
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
        /// Commit (true) or abort.
        commit: bool,
    },
}

impl TxnRequestBody {
    /// The API of this request.
    pub fn api(&self) -> TxnApi {
        match self {
            TxnRequestBody::FindCoordinator { .. } => TxnApi::FindCoordinator,
            TxnRequestBody::InitProducerId { .. } => TxnApi::InitProducerId,
            TxnRequestBody::AddPartitionsToTxn { .. } => TxnApi::AddPartitionsToTxn,
            TxnRequestBody::AddOffsetsToTxn { .. } => TxnApi::AddOffsetsToTxn,
            TxnRequestBody::TxnOffsetCommit { .. } => TxnApi::TxnOffsetCommit,
            TxnRequestBody::EndTxn { .. } => TxnApi::EndTxn,
        }
    }
}

/// A request the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRequest {
    /// Echo it in `handle_response` / `handle_failure`.
    pub id: u64,
    /// Where to send it.
    pub target: TxnTarget,
    /// What to send.
    pub body: TxnRequestBody,
}

/// A broker's answer, reduced to what the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResponse {
    /// FindCoordinator.
    FindCoordinator {
        /// Error code.
        error: ErrorCode,
        /// The coordinator's node id.
        node_id: i32,
    },
    /// InitProducerId.
    InitProducerId {
        /// Error code.
        error: ErrorCode,
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn: one code per partition (a top-level error is given to each).
    AddPartitionsToTxn {
        /// Per-partition codes.
        results: Vec<(TopicPartition, ErrorCode)>,
    },
    /// AddOffsetsToTxn.
    AddOffsetsToTxn {
        /// Error code.
        error: ErrorCode,
    },
    /// TxnOffsetCommit: one code per partition.
    TxnOffsetCommit {
        /// Per-partition codes.
        results: Vec<(TopicPartition, ErrorCode)>,
    },
    /// EndTxn; v5 carries the next producer id and epoch (-1 before).
    EndTxn {
        /// Error code.
        error: ErrorCode,
        /// Next producer id (v5) or -1.
        producer_id: i64,
        /// Next epoch (v5) or -1.
        producer_epoch: i16,
    },
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The request timed out (its connection is closed; it may still be processed).
    Timeout,
    /// The connection died with the request in flight, or it could not be sent.
    Disconnected,
}

/// How a produce batch of the transaction finally failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceFailure {
    /// The broker answered an error the idempotence machine does not retry.
    Error(ErrorCode),
    /// The delivery timeout expired: the batch may be persisted.
    Timeout,
}

/// What the machine tells the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEvent {
    /// `init` finished: use this producer id and epoch.
    Initialized {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
    },
    /// These partitions are in the transaction: their batches may be sent.
    PartitionsAdded(Vec<TopicPartition>),
    /// The epoch (maybe the id) changed: reset sequences.
    EpochBumped {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
    },
    /// `send_offsets` finished.
    OffsetsCommitted,
    /// EndTxn(commit) got no answer; it is retried, and `abort` is refused until it resolves.
    CommitOutcomeUnknown,
    /// The transaction ended.
    Completed {
        /// Committed (true) or aborted.
        committed: bool,
    },
    /// An abortable or fatal error.
    Failed(TxnError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetsStage {
    AddOffsets,
    Commit,
}

#[derive(Debug, Clone)]
struct PendingOffsets {
    group: GroupMetadata,
    offsets: Vec<TxnOffset>,
    stage: OffsetsStage,
}

/// What the request in flight was.
#[derive(Debug, Clone)]
enum Inflight {
    FindCoordinator(CoordinatorKind),
    InitProducerId,
    AddPartitions(Vec<TopicPartition>),
    AddOffsets,
    TxnOffsetCommit,
    EndTxn(bool),
}

/// The transactional producer's state machine. See the module docs.
#[derive(Debug)]
pub struct TransactionManager {
    cfg: TxnConfig,
    protocol: TxnProtocol,
    state: TxnState,
    producer_id: i64,
    producer_epoch: i16,
    coordinator: Option<i32>,
    group_coordinator: Option<(String, i32)>,
    /// The InitProducerId still to send (init, or a KIP-360 bump).
    init_pending: bool,
    /// The next InitProducerId bumps the current epoch (after an abortable produce failure).
    bump_after_abort: bool,
    added: BTreeSet<TopicPartition>,
    /// The coordinator may hold a transaction (Java's `transactionStarted`): a partition or
    /// the offsets were added (classic), or a batch / TxnOffsetCommit may have added one
    /// implicitly (v2). Without it, commit and abort end locally, with no EndTxn.
    started: bool,
    pending_add: BTreeSet<TopicPartition>,
    offsets: Option<PendingOffsets>,
    /// EndTxn to send: commit (true) or abort.
    end: Option<bool>,
    commit_unknown: bool,
    last_error: Option<TxnError>,
    inflight: Option<(u64, Inflight)>,
    next_id: u64,
    not_before: Option<Instant>,
    backoff: Backoff,
    rng: SmallRng,
    events: VecDeque<TxnEvent>,
}

impl TransactionManager {
    /// A machine in [`TxnState::Uninitialized`].
    pub fn new(cfg: TxnConfig, seed: u64) -> Self {
        let backoff = Backoff::new(cfg.retry_backoff);
        TransactionManager {
            cfg,
            protocol: TxnProtocol::Classic,
            state: TxnState::Uninitialized,
            producer_id: -1,
            producer_epoch: -1,
            coordinator: None,
            group_coordinator: None,
            init_pending: false,
            bump_after_abort: false,
            added: BTreeSet::new(),
            started: false,
            pending_add: BTreeSet::new(),
            offsets: None,
            end: None,
            commit_unknown: false,
            last_error: None,
            inflight: None,
            next_id: 1,
            not_before: None,
            backoff,
            rng: SmallRng::new(seed),
            events: VecDeque::new(),
        }
    }

    /// Chooses the protocol (see [`TxnProtocol::negotiate`]); call before `init`.
    pub fn set_protocol(&mut self, protocol: TxnProtocol) {
        self.protocol = protocol;
    }

    /// The protocol in use.
    pub fn protocol(&self) -> TxnProtocol {
        self.protocol
    }

    /// The state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// True while an EndTxn(commit) got no answer: `abort` is refused.
    pub fn is_commit_outcome_unknown(&self) -> bool {
        self.commit_unknown
    }

    /// The producer id and epoch to stamp batches with (-1, -1 before `init` finished).
    pub fn producer_id_and_epoch(&self) -> (i64, i16) {
        (self.producer_id, self.producer_epoch)
    }

    /// True when `tp`'s batches may be sent in the current transaction.
    pub fn is_partition_added(&self, tp: &TopicPartition) -> bool {
        self.added.contains(tp)
    }

    /// The error that put the machine in AbortableError or FatalError.
    pub fn last_error(&self) -> Option<&TxnError> {
        self.last_error.as_ref()
    }

    /// When the machine next wants `poll_request` called (a backoff ends).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.inflight.is_some() {
            None
        } else {
            self.not_before
        }
    }

    /// The next event for the producer.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    fn fatal_guard(&self) -> Result<(), TxnError> {
        match (&self.state, &self.last_error) {
            (TxnState::FatalError, Some(e)) => Err(e.clone()),
            (TxnState::FatalError, None) => Err(TxnError::usage("the producer is unusable")),
            _ => Ok(()),
        }
    }

    fn reset_txn(&mut self) {
        self.added.clear();
        self.started = false;
        self.pending_add.clear();
        self.offsets = None;
        self.end = None;
        self.commit_unknown = false;
    }

    /// `init_transactions`: fences older producers with this transactional id and completes
    /// what they left open. Legal once from Uninitialized, and again while a commit's outcome
    /// is unknown (re-initialising resolves it: the coordinator completes a prepared commit and
    /// aborts an open transaction).
    pub fn init(&mut self, _now: Instant) -> Result<(), TxnError> {
        self.fatal_guard()?;
        match self.state {
            TxnState::Uninitialized => {}
            TxnState::Committing if self.commit_unknown => {
                // Forget the unknown EndTxn: its answer (if any) is ignored.
                self.inflight = None;
            }
            TxnState::Initializing => return Ok(()),
            s => return Err(TxnError::usage(format!("init called in state {s:?}"))),
        }
        self.reset_txn();
        self.state = TxnState::Initializing;
        self.init_pending = true;
        self.bump_after_abort = false;
        Ok(())
    }

    /// `begin_transaction`.
    pub fn begin(&mut self) -> Result<(), TxnError> {
        self.fatal_guard()?;
        if self.state == TxnState::Uninitialized {
            return Err(TxnError::usage(
                "begin called before init (call init_transactions first)",
            ));
        }
        if self.state != TxnState::Ready {
            return Err(TxnError::usage(format!(
                "begin called in state {:?}",
                self.state
            )));
        }
        self.reset_txn();
        self.state = TxnState::InTransaction;
        Ok(())
    }

    fn abortable_guard(&self) -> Result<(), TxnError> {
        self.fatal_guard()?;
        if self.state == TxnState::AbortableError {
            return Err(self
                .last_error
                .clone()
                .unwrap_or_else(|| TxnError::usage("the transaction must be aborted")));
        }
        Ok(())
    }

    /// A record for `tp` is about to be produced. `Ok(true)`: its batches may be sent now;
    /// `Ok(false)`: wait for [`TxnEvent::PartitionsAdded`] (AddPartitionsToTxn is batched).
    pub fn record_partition(&mut self, tp: &TopicPartition) -> Result<bool, TxnError> {
        self.abortable_guard()?;
        if self.state != TxnState::InTransaction {
            return Err(TxnError::usage(format!(
                "send outside a transaction (state {:?})",
                self.state
            )));
        }
        if self.added.contains(tp) {
            return Ok(true);
        }
        if self.protocol == TxnProtocol::V2 {
            // Produce v12 adds the partition implicitly.
            self.added.insert(tp.clone());
            self.started = true;
            return Ok(true);
        }
        let in_flight =
            matches!(&self.inflight, Some((_, Inflight::AddPartitions(p))) if p.contains(tp));
        if !in_flight {
            self.pending_add.insert(tp.clone());
        }
        Ok(false)
    }

    /// `send_offsets_to_transaction` (KIP-447): commits `offsets` for `group` as part of the
    /// transaction. Completes with [`TxnEvent::OffsetsCommitted`].
    pub fn send_offsets(
        &mut self,
        offsets: Vec<TxnOffset>,
        group: GroupMetadata,
    ) -> Result<(), TxnError> {
        self.abortable_guard()?;
        if self.state != TxnState::InTransaction {
            return Err(TxnError::usage(format!(
                "send_offsets outside a transaction (state {:?})",
                self.state
            )));
        }
        if self.offsets.is_some() {
            return Err(TxnError::usage("send_offsets already in progress"));
        }
        if self
            .group_coordinator
            .as_ref()
            .is_some_and(|(g, _)| *g != group.group_id)
        {
            self.group_coordinator = None;
        }
        let stage = match self.protocol {
            TxnProtocol::Classic => OffsetsStage::AddOffsets,
            TxnProtocol::V2 => OffsetsStage::Commit,
        };
        self.offsets = Some(PendingOffsets {
            group,
            offsets,
            stage,
        });
        Ok(())
    }

    fn is_empty_txn(&self) -> bool {
        !self.started
            && self.pending_add.is_empty()
            && self.offsets.is_none()
            && !matches!(
                self.inflight,
                Some((_, Inflight::AddPartitions(_) | Inflight::AddOffsets))
                    | Some((_, Inflight::TxnOffsetCommit))
            )
    }

    /// `commit_transaction` (after the producer flushed). Completes with
    /// [`TxnEvent::Completed`]. Calling it again while committing waits for the same commit.
    pub fn commit(&mut self, _now: Instant) -> Result<(), TxnError> {
        self.abortable_guard()?;
        match self.state {
            TxnState::Committing => return Ok(()),
            TxnState::InTransaction => {}
            s => return Err(TxnError::usage(format!("commit called in state {s:?}"))),
        }
        self.state = TxnState::Committing;
        if self.is_empty_txn() && self.offsets.is_none() {
            // Nothing was added: the coordinator knows of no transaction.
            self.finish(true);
        } else {
            self.end = Some(true);
        }
        Ok(())
    }

    /// `abort_transaction`. Refused while a commit's outcome is unknown (retry `commit` or
    /// re-`init`). Completes with [`TxnEvent::Completed`].
    pub fn abort(&mut self, _now: Instant) -> Result<(), TxnError> {
        self.fatal_guard()?;
        match self.state {
            TxnState::Aborting => return Ok(()),
            TxnState::InTransaction | TxnState::AbortableError => {}
            TxnState::Committing if self.commit_unknown => {
                return Err(TxnError::usage(
                    "abort refused: the commit's outcome is unknown (it may still land); \
                     retry commit or re-initialise the producer",
                ))
            }
            s => return Err(TxnError::usage(format!("abort called in state {s:?}"))),
        }
        self.state = TxnState::Aborting;
        self.pending_add.clear();
        self.offsets = None;
        self.end = Some(false);
        self.end_unstarted_abort();
        Ok(())
    }

    /// An abort of a transaction the coordinator never heard of ends here (after the epoch
    /// bump it may need), once no add is in flight.
    fn end_unstarted_abort(&mut self) {
        let add_in_flight = matches!(
            &self.inflight,
            Some((_, Inflight::AddPartitions(_) | Inflight::AddOffsets))
        );
        if self.state != TxnState::Aborting
            || self.end != Some(false)
            || self.started
            || add_in_flight
        {
            return;
        }
        self.end = None;
        if self.bump_after_abort && self.protocol == TxnProtocol::Classic {
            self.init_pending = true;
        } else {
            self.finish(false);
        }
    }

    /// A produce batch of the current transaction finally failed. Always at least abortable
    /// (the batch is never retried in place with new sequences); fenced and authorization
    /// errors are fatal.
    pub fn handle_produce_failure(&mut self, tp: &TopicPartition, failure: ProduceFailure) {
        if self.state == TxnState::FatalError {
            // Already unusable (every record of a fenced batch reports the same error).
            return;
        }
        let (class, code) = match failure {
            ProduceFailure::Timeout => (TxnErrorClass::Abortable { bump_epoch: true }, None),
            ProduceFailure::Error(code) => match classify(TxnApi::Produce, code) {
                TxnErrorClass::Retriable(_) => {
                    (TxnErrorClass::Abortable { bump_epoch: true }, Some(code))
                }
                c => (c, Some(code)),
            },
        };
        let in_txn = matches!(
            self.state,
            TxnState::InTransaction
                | TxnState::Committing
                | TxnState::Aborting
                | TxnState::AbortableError
        );
        if !in_txn && class != TxnErrorClass::Fatal {
            // No transaction is open (EndTxn waits for every batch, so this is a late report
            // of an already-ended one): nothing to abort.
            return;
        }
        let err = TxnError {
            class,
            api: Some(TxnApi::Produce),
            code,
            message: match code {
                Some(c) => format!("produce to {tp:?} failed: {c}"),
                None => format!("produce to {tp:?} timed out (possibly persisted)"),
            },
        };
        self.fail(err);
    }

    /// A batch of the open transaction left with a sequence number and was not written (an
    /// error answer, or failed before it was re-sent): its partition's sequence space has a
    /// gap, which only a new epoch closes. The abort bumps the epoch (classic; KIP-890 bumps
    /// at every EndTxn anyway). Outside a transaction this does nothing.
    pub fn require_epoch_bump(&mut self) {
        if matches!(
            self.state,
            TxnState::InTransaction
                | TxnState::Committing
                | TxnState::Aborting
                | TxnState::AbortableError
        ) {
            self.bump_after_abort = true;
        }
    }

    /// Applies an abortable or fatal error.
    fn fail(&mut self, err: TxnError) {
        match err.class {
            TxnErrorClass::Fatal => {
                self.state = TxnState::FatalError;
                self.inflight = None;
                self.init_pending = false;
                self.end = None;
                self.last_error = Some(err.clone());
                self.events.push_back(TxnEvent::Failed(err));
            }
            TxnErrorClass::Abortable { bump_epoch } => {
                if bump_epoch {
                    self.bump_after_abort = true;
                }
                match self.state {
                    TxnState::InTransaction | TxnState::Committing => {
                        self.state = TxnState::AbortableError;
                        self.pending_add.clear();
                        self.offsets = None;
                        self.end = None;
                        self.commit_unknown = false;
                        self.last_error = Some(err.clone());
                        self.events.push_back(TxnEvent::Failed(err));
                    }
                    TxnState::AbortableError | TxnState::Aborting => {}
                    // Outside a transaction an abortable answer cannot be aborted away.
                    _ => self.fail(TxnError {
                        class: TxnErrorClass::Fatal,
                        ..err
                    }),
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, committed: bool) {
        self.reset_txn();
        self.state = TxnState::Ready;
        self.last_error = None;
        self.events.push_back(TxnEvent::Completed { committed });
    }

    fn next_request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next request to send, if any. `batches_incomplete`: the producer still has
    /// batches of this transaction queued or in flight (EndTxn waits for them).
    pub fn poll_request(&mut self, now: Instant, batches_incomplete: bool) -> Option<TxnRequest> {
        if self.inflight.is_some() || self.state == TxnState::FatalError {
            return None;
        }
        if self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        self.not_before = None;
        if !self.init_pending
            && self.pending_add.is_empty()
            && self.offsets.is_none()
            && self.end.is_none()
        {
            // Nothing to send (the common case on every producer wake-up).
            return None;
        }
        let tid = self.cfg.transactional_id.clone();
        let (pid, epoch) = (self.producer_id, self.producer_epoch);
        let wants_txn_coordinator = self.init_pending
            || !self.pending_add.is_empty()
            || self
                .offsets
                .as_ref()
                .is_some_and(|o| o.stage == OffsetsStage::AddOffsets)
            || (self.end.is_some() && !batches_incomplete);
        let (inflight, target, body) = if wants_txn_coordinator && self.coordinator.is_none() {
            (
                Inflight::FindCoordinator(CoordinatorKind::Transaction),
                TxnTarget::AnyBroker,
                TxnRequestBody::FindCoordinator {
                    key: tid,
                    kind: CoordinatorKind::Transaction,
                },
            )
        } else if self.init_pending {
            // `init` (also the re-init after an unknown commit) is a plain InitProducerId: it
            // fences every older epoch whatever the coordinator's state. Only the KIP-360
            // bump after an abort names the current producer id and epoch.
            let bump = self.state != TxnState::Initializing;
            (
                Inflight::InitProducerId,
                TxnTarget::TxnCoordinator(self.coordinator?),
                TxnRequestBody::InitProducerId {
                    transactional_id: tid,
                    transaction_timeout_ms: self
                        .cfg
                        .transaction_timeout
                        .as_millis()
                        .min(i32::MAX as u128) as i32,
                    producer_id: if bump { pid } else { -1 },
                    producer_epoch: if bump { epoch } else { -1 },
                },
            )
        } else if !self.pending_add.is_empty() {
            let parts: Vec<TopicPartition> =
                std::mem::take(&mut self.pending_add).into_iter().collect();
            (
                Inflight::AddPartitions(parts.clone()),
                TxnTarget::TxnCoordinator(self.coordinator?),
                TxnRequestBody::AddPartitionsToTxn {
                    transactional_id: tid,
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions: parts,
                },
            )
        } else if let Some(o) = &self.offsets {
            match o.stage {
                OffsetsStage::AddOffsets => (
                    Inflight::AddOffsets,
                    TxnTarget::TxnCoordinator(self.coordinator?),
                    TxnRequestBody::AddOffsetsToTxn {
                        transactional_id: tid,
                        producer_id: pid,
                        producer_epoch: epoch,
                        group_id: o.group.group_id.clone(),
                    },
                ),
                OffsetsStage::Commit => match &self.group_coordinator {
                    Some((g, node)) if *g == o.group.group_id => (
                        Inflight::TxnOffsetCommit,
                        TxnTarget::GroupCoordinator(*node),
                        TxnRequestBody::TxnOffsetCommit {
                            transactional_id: tid,
                            producer_id: pid,
                            producer_epoch: epoch,
                            group: o.group.clone(),
                            offsets: o.offsets.clone(),
                        },
                    ),
                    _ => (
                        Inflight::FindCoordinator(CoordinatorKind::Group),
                        TxnTarget::AnyBroker,
                        TxnRequestBody::FindCoordinator {
                            key: o.group.group_id.clone(),
                            kind: CoordinatorKind::Group,
                        },
                    ),
                },
            }
        } else if let Some(commit) = self.end {
            if batches_incomplete {
                return None;
            }
            (
                Inflight::EndTxn(commit),
                TxnTarget::TxnCoordinator(self.coordinator?),
                TxnRequestBody::EndTxn {
                    transactional_id: tid,
                    producer_id: pid,
                    producer_epoch: epoch,
                    commit,
                },
            )
        } else {
            return None;
        };
        if matches!(inflight, Inflight::TxnOffsetCommit) {
            // Adds the offsets partition implicitly (v2) or after AddOffsetsToTxn (classic).
            self.started = true;
        }
        let id = self.next_request_id();
        self.inflight = Some((id, inflight));
        Some(TxnRequest { id, target, body })
    }

    fn take_inflight(&mut self, id: u64) -> Option<Inflight> {
        match &self.inflight {
            Some((i, _)) if *i == id => self.inflight.take().map(|(_, f)| f),
            _ => None,
        }
    }

    fn retry(&mut self, kind: RetryKind, now: Instant, group: bool) {
        let delay_until = match kind {
            RetryKind::ConcurrentTransactions => now + self.cfg.concurrent_transactions_backoff,
            RetryKind::Coordinator => {
                if group {
                    self.group_coordinator = None;
                } else {
                    self.coordinator = None;
                }
                self.backoff.handle_failure(now, &mut self.rng)
            }
            RetryKind::Backoff => self.backoff.handle_failure(now, &mut self.rng),
        };
        self.not_before = Some(delay_until);
    }

    /// A request got no answer. Retried inside; an EndTxn(commit) becomes "outcome unknown".
    pub fn handle_failure(&mut self, id: u64, failure: TransportFailure, now: Instant) {
        let _ = failure;
        let Some(inflight) = self.take_inflight(id) else {
            return;
        };
        let group = matches!(inflight, Inflight::TxnOffsetCommit);
        match inflight {
            Inflight::AddPartitions(parts) => self.requeue_adds(parts),
            Inflight::EndTxn(true) if !self.commit_unknown => {
                self.commit_unknown = true;
                self.events.push_back(TxnEvent::CommitOutcomeUnknown);
            }
            _ => {}
        }
        self.retry(RetryKind::Coordinator, now, group);
        self.end_unstarted_abort();
    }

    fn requeue_adds(&mut self, parts: Vec<TopicPartition>) {
        if matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
            self.pending_add.extend(parts);
        }
    }

    /// A broker answered request `id`. Answers to requests the machine no longer waits for
    /// are ignored.
    pub fn handle_response(&mut self, id: u64, response: TxnResponse, now: Instant) {
        let Some(inflight) = self.take_inflight(id) else {
            return;
        };
        match (inflight, response) {
            (Inflight::FindCoordinator(kind), TxnResponse::FindCoordinator { error, node_id }) => {
                match classify(TxnApi::FindCoordinator, error) {
                    TxnErrorClass::Ok if node_id >= 0 => {
                        self.backoff.handle_success();
                        match kind {
                            CoordinatorKind::Transaction => self.coordinator = Some(node_id),
                            CoordinatorKind::Group => {
                                if let Some(o) = &self.offsets {
                                    self.group_coordinator =
                                        Some((o.group.group_id.clone(), node_id));
                                }
                            }
                        }
                    }
                    TxnErrorClass::Ok => self.retry(RetryKind::Backoff, now, false),
                    TxnErrorClass::Retriable(k) => self.retry(k.no_coordinator(), now, false),
                    TxnErrorClass::Abortable { bump_epoch } if kind == CoordinatorKind::Group => {
                        self.fail(TxnError::broker(
                            TxnApi::FindCoordinator,
                            error,
                            TxnErrorClass::Abortable { bump_epoch },
                        ))
                    }
                    _ => self.fail(TxnError::broker(
                        TxnApi::FindCoordinator,
                        error,
                        TxnErrorClass::Fatal,
                    )),
                }
            }
            (
                Inflight::InitProducerId,
                TxnResponse::InitProducerId {
                    error,
                    producer_id,
                    producer_epoch,
                },
            ) => match classify(TxnApi::InitProducerId, error) {
                TxnErrorClass::Ok => {
                    self.backoff.handle_success();
                    self.init_pending = false;
                    self.producer_id = producer_id;
                    self.producer_epoch = producer_epoch;
                    if self.state == TxnState::Initializing {
                        self.state = TxnState::Ready;
                        self.events.push_back(TxnEvent::Initialized {
                            producer_id,
                            producer_epoch,
                        });
                    } else {
                        // The KIP-360 bump after an abort.
                        self.bump_after_abort = false;
                        self.events.push_back(TxnEvent::EpochBumped {
                            producer_id,
                            producer_epoch,
                        });
                        self.finish(false);
                    }
                }
                TxnErrorClass::Retriable(k) => self.retry(k, now, false),
                c => {
                    // An InitProducerId cannot be aborted away.
                    let _ = c;
                    self.fail(TxnError::broker(
                        TxnApi::InitProducerId,
                        error,
                        TxnErrorClass::Fatal,
                    ))
                }
            },
            (Inflight::AddPartitions(sent), TxnResponse::AddPartitionsToTxn { results }) => {
                self.handle_add_partitions(sent, results, now)
            }
            (Inflight::AddOffsets, TxnResponse::AddOffsetsToTxn { error }) => {
                match classify(TxnApi::AddOffsetsToTxn, error) {
                    TxnErrorClass::Ok => {
                        self.backoff.handle_success();
                        self.started = true;
                        if let Some(o) = &mut self.offsets {
                            o.stage = OffsetsStage::Commit;
                        }
                        self.end_unstarted_abort();
                    }
                    TxnErrorClass::Retriable(k) => self.retry(k, now, false),
                    c => self.fail(TxnError::broker(TxnApi::AddOffsetsToTxn, error, c)),
                }
            }
            (Inflight::TxnOffsetCommit, TxnResponse::TxnOffsetCommit { results }) => {
                self.handle_txn_offset_commit(results, now)
            }
            (
                Inflight::EndTxn(commit),
                TxnResponse::EndTxn {
                    error,
                    producer_id,
                    producer_epoch,
                },
            ) => match classify(TxnApi::EndTxn, error) {
                TxnErrorClass::Ok => {
                    self.backoff.handle_success();
                    if self.protocol == TxnProtocol::V2 && producer_id >= 0 && producer_epoch >= 0 {
                        self.producer_id = producer_id;
                        self.producer_epoch = producer_epoch;
                        self.bump_after_abort = false;
                        self.events.push_back(TxnEvent::EpochBumped {
                            producer_id,
                            producer_epoch,
                        });
                    }
                    if !commit && self.bump_after_abort && self.protocol == TxnProtocol::Classic {
                        self.end = None;
                        self.added.clear();
                        self.init_pending = true;
                    } else {
                        self.finish(commit);
                    }
                }
                TxnErrorClass::Retriable(k) => self.retry(k, now, false),
                TxnErrorClass::Abortable { bump_epoch } if !commit => {
                    // The abort itself was refused with an abortable error: bump the epoch,
                    // which aborts whatever the coordinator holds open.
                    let _ = bump_epoch;
                    self.end = None;
                    self.added.clear();
                    self.init_pending = true;
                }
                c => self.fail(TxnError::broker(TxnApi::EndTxn, error, c)),
            },
            (inflight, response) => {
                // A response of the wrong type for the request: a driver bug; treat it as lost.
                let _ = response;
                self.inflight = Some((id, inflight));
                self.handle_failure(id, TransportFailure::Disconnected, now);
            }
        }
    }

    fn handle_add_partitions(
        &mut self,
        sent: Vec<TopicPartition>,
        results: Vec<(TopicPartition, ErrorCode)>,
        now: Instant,
    ) {
        let mut added = Vec::new();
        let mut retry: Option<RetryKind> = None;
        let mut failure: Option<TxnError> = None;
        let mut answered = BTreeSet::new();
        for (tp, code) in results {
            if !sent.contains(&tp) || !answered.insert(tp.clone()) {
                continue;
            }
            match classify(TxnApi::AddPartitionsToTxn, code) {
                TxnErrorClass::Ok => added.push(tp),
                TxnErrorClass::Retriable(k) => {
                    retry = Some(retry.map_or(k, |r| r.max(k)));
                    self.requeue_adds(vec![tp]);
                }
                c => {
                    let e = TxnError::broker(TxnApi::AddPartitionsToTxn, code, c);
                    failure = Some(match failure {
                        Some(f) if f.is_fatal() => f,
                        _ => e,
                    });
                }
            }
        }
        // Partitions the broker did not answer for are retried.
        let missing: Vec<_> = sent.into_iter().filter(|t| !answered.contains(t)).collect();
        if !missing.is_empty() {
            retry = Some(retry.unwrap_or(RetryKind::Backoff));
            self.requeue_adds(missing);
        }
        if !added.is_empty() {
            self.started = true;
            for tp in &added {
                self.added.insert(tp.clone());
            }
            if matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
                self.events.push_back(TxnEvent::PartitionsAdded(added));
            }
        }
        if let Some(f) = failure {
            self.fail(f);
        } else if let Some(k) = retry {
            self.retry(k, now, false);
        } else {
            self.backoff.handle_success();
        }
        self.end_unstarted_abort();
    }

    fn handle_txn_offset_commit(
        &mut self,
        results: Vec<(TopicPartition, ErrorCode)>,
        now: Instant,
    ) {
        let mut retry: Option<RetryKind> = None;
        let mut failure: Option<TxnError> = None;
        let mut done = BTreeSet::new();
        for (tp, code) in results {
            match classify(TxnApi::TxnOffsetCommit, code) {
                TxnErrorClass::Ok => {
                    done.insert(tp);
                }
                TxnErrorClass::Retriable(k) => retry = Some(retry.map_or(k, |r| r.max(k))),
                c => {
                    let e = TxnError::broker(TxnApi::TxnOffsetCommit, code, c);
                    failure = Some(match failure {
                        Some(f) if f.is_fatal() => f,
                        _ => e,
                    });
                }
            }
        }
        if let Some(f) = failure {
            self.fail(f);
            return;
        }
        let Some(o) = &mut self.offsets else { return };
        o.offsets.retain(|x| !done.contains(&x.partition));
        if o.offsets.is_empty() {
            self.offsets = None;
            self.backoff.handle_success();
            self.events.push_back(TxnEvent::OffsetsCommitted);
        } else {
            let k = retry.unwrap_or(RetryKind::Backoff);
            self.retry(k, now, true);
        }
    }

    /// Test helper: the current (pid, epoch, state, commit-unknown) summary.
    #[cfg(test)]
    pub(crate) fn debug_summary(&self) -> String {
        format!(
            "{:?} pid={} epoch={} unknown={} inflight={:?}",
            self.state, self.producer_id, self.producer_epoch, self.commit_unknown, self.inflight
        )
    }
}
