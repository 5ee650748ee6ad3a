//! The asynchronous [`Producer`].
//!
//! ```no_run
//! # async fn demo() -> krust_client::Result<()> {
//! use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
//!
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("events").with_key("user-1").with_value("hello"))
//!     .await
//!     .expect("accepted");
//! let md = delivery.await.expect("written");
//! println!("{}-{}@{}", md.topic, md.partition, md.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! `send` reserves the record's size from `buffer.memory` (waiting when it is in use; `try_send`
//! hands the record back instead) and passes it to one background task, the driver
//! (`driver.rs`). The driver partitions records ([`krust_core::partitioner`]), batches them per
//! partition ([`krust_core::accumulator`]: `linger.ms`, `batch.size`), and sends ready batches
//! in one Produce request per broker (at most `max.in.flight.requests.per.connection`
//! outstanding per broker). Failed batches are retried with exponential backoff within
//! `delivery.timeout.ms`; leadership errors refresh metadata, and a partition whose leader moved
//! follows it once the old leader has answered for its in-flight batches.
//!
//! Every accepted record ends in exactly one result on its [`DeliveryFuture`]: offset, or a
//! [`ProduceError`] that says whether the record may have been written anyway and hands the
//! record back. [`Producer::flush`] waits for every record sent before it; [`Producer::close`]
//! for every record; dropping the last handle fails records not yet sent
//! ([`ProduceErrorKind::Closed`]) and lets in-flight requests finish, so no future hangs.
//!
//! # Idempotence (on by default)
//!
//! With `enable.idempotence` (the default unless `acks` is 0 or 1) the producer gets an id
//! (InitProducerId) and every batch carries per-partition sequence numbers fixed at its first
//! send, so a retry after a lost acknowledgement is deduplicated by the broker, and up to 5
//! batches per partition stay in order in flight. The rules (in [`krust_core::idempotence`]):
//! DUPLICATE_SEQUENCE_NUMBER is success; OUT_OF_ORDER_SEQUENCE_NUMBER behind an earlier failed
//! batch is retried in order; a lost sequence state (UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH,
//! OUT_OF_ORDER at the head of the line, or a batch that left with a sequence but without
//! success) drains the partition and bumps its epoch; a batch whose outcome is unknown is
//! retried, never failed before `delivery.timeout.ms`, and never re-sent under a new epoch.
//! [`Persistence::of`] a result says `Persisted`, `NotPersisted` or `PossiblyPersisted`. A
//! fatal error (for example PRODUCER_FENCED) stops the producer: every pending and later record
//! fails with [`ProduceErrorKind::Fatal`].
//!
//! # Transactions
//!
//! With `transactional.id` the producer is transactional (see the section on [`Producer`]):
//! `init_transactions`, then `begin_transaction` .. `send` .. `send_offsets_to_transaction` ..
//! `commit_transaction` / `abort_transaction`. One producer id and epoch serve every
//! partition, from the transaction coordinator (`krust_core::txn`); a partition receives no
//! batch before AddPartitionsToTxn added it (classic protocol), or Produce v12 adds it
//! (KIP-890, chosen when the cluster finalized `transaction.version` 2). A record of the
//! transaction that fails makes it abortable and is never re-sent under new sequence numbers.

pub mod bench;
mod config;
mod delivery;
mod driver;
mod pool;
pub mod probe;
mod queue;
mod record;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{oneshot, Semaphore, TryAcquireError};
use tracing::Instrument;

pub use config::{Acks, ProducerConfig};
pub use krust_core::partitioner::{Partitioner, TopicPartitions};
pub use krust_wire::record::{Compression, RecordHeader};
pub use record::{
    IntoTopic, Persistence, ProduceError, ProduceErrorKind, ProducerRecord, RecordMetadata,
    TrySendError, TrySendReason,
};

use driver::txn::{TxnCommand, TxnShared};
use driver::{Command, Driver, Pending, Stats};

use std::collections::BTreeMap;
use std::time::Duration;

pub use krust_core::fetch::TopicPartition;
pub use krust_core::group::{GroupMetadata, OffsetAndMetadata};

use crate::cluster::Cluster;
use crate::error::{Error, Result, TxnClass};

/// Bytes a batch adds around its records (magic v2 header).
const BATCH_OVERHEAD: usize = krust_wire::record::BATCH_HEADER_LEN;

/// Bytes of `buffer.memory` a record takes beyond its encoded size: what the producer keeps
/// per record until it completes (the pending record and its delivery slot, ~250 bytes), so
/// that the producer's memory stays within `buffer.memory` plus a constant whatever the
/// record size (with 100 B records, the bookkeeping outweighs the bytes).
pub(crate) const RECORD_OVERHEAD: usize = 256;

struct Shared {
    cluster: Cluster,
    config: ProducerConfig,
    memory: Arc<Semaphore>,
    closed: AtomicBool,
    stats: Arc<Stats>,
    owns_cluster: bool,
    txn: Arc<TxnShared>,
}

/// An asynchronous Kafka producer. Cheap to clone: clones share one background task.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    tx: queue::CommandTx,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client_id", &self.shared.config.client.client_id)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Counters since the producer started (a snapshot, for benchmarks and monitoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Records acknowledged (or written, with acks=0).
    pub records_acked: u64,
    /// Records failed.
    pub records_failed: u64,
    /// Batches sent, retries included.
    pub batches_sent: u64,
    /// Produce requests sent.
    pub requests_sent: u64,
    /// Batches re-sent after a failure.
    pub retries: u64,
    /// Record-batch bytes sent (after compression), retries included.
    pub bytes_sent: u64,
    /// Bytes of `buffer.memory` in use now.
    pub buffered_bytes: u64,
    /// Produce requests allowed in flight to the broker that answered last: its window (see
    /// [`ProducerConfig::adaptive_in_flight`]), or `max_in_flight` while unknown. 0 before any
    /// answer.
    pub in_flight_window: u64,
}

impl Producer {
    /// Connects to the cluster and starts the producer's background task.
    ///
    /// Fails if the configuration is invalid or no bootstrap server answers.
    ///
    /// Cancel safety: dropping the future before it completes leaves nothing running.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        Self::start(cluster, config, true)
    }

    /// Starts a producer on an existing [`Cluster`] (shared with other clients). Closing the
    /// producer leaves the cluster open. Must be called inside a tokio runtime.
    pub fn with_cluster(cluster: Cluster, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        Self::start(cluster, config, false)
    }

    fn start(cluster: Cluster, config: ProducerConfig, owns_cluster: bool) -> Result<Producer> {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue::command_queue();
        let memory = Arc::new(Semaphore::new(
            config.buffer_memory.min(Semaphore::MAX_PERMITS),
        ));
        let txn = Arc::new(TxnShared::default());
        let driver = Driver::new(
            cluster.clone(),
            config.clone(),
            stats.clone(),
            txn.clone(),
            memory.clone(),
        );
        let span = tracing::info_span!("krust_producer", client_id = %config.client.client_id);
        let mem = memory.clone();
        tokio::spawn(
            async move {
                driver.run(rx).await;
                // Wake every `send` waiting for memory: the producer is gone.
                mem.close();
            }
            .instrument(span),
        );
        Ok(Producer {
            shared: Arc::new(Shared {
                cluster,
                config,
                memory,
                closed: AtomicBool::new(false),
                stats,
                owns_cluster,
                txn,
            }),
            tx,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// The cluster connection (for metadata, or to build other clients on it).
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// Counters so far.
    pub fn stats(&self) -> ProducerStats {
        let s = &self.shared.stats;
        let available = self.shared.memory.available_permits();
        ProducerStats {
            records_acked: s.acked.load(Ordering::Relaxed),
            records_failed: s.failed.load(Ordering::Relaxed),
            batches_sent: s.batches.load(Ordering::Relaxed),
            requests_sent: s.requests.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            bytes_sent: s.bytes.load(Ordering::Relaxed),
            buffered_bytes: self.shared.config.buffer_memory.saturating_sub(available) as u64,
            in_flight_window: s.window.load(Ordering::Relaxed),
        }
    }

    /// Permits of `buffer.memory` a record of encoded size `size` takes: the size plus the
    /// per-record overhead, never more than the whole buffer (`check` refused larger records).
    fn reservation(&self, size: usize) -> usize {
        (size + RECORD_OVERHEAD)
            .min(self.shared.config.buffer_memory)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize)
            .max(1)
    }

    /// Checks a record and returns its accounted size.
    fn check(&self, record: &mut ProducerRecord) -> std::result::Result<usize, TrySendReason> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(TrySendReason::Closed);
        }
        let cfg = &self.shared.config;
        let size = record.encoded_size();
        if size + BATCH_OVERHEAD > cfg.max_request_size {
            return Err(TrySendReason::Invalid(ProduceErrorKind::RecordTooLarge {
                size: size + BATCH_OVERHEAD,
                max: cfg.max_request_size,
                limit: "max.request.size",
            }));
        }
        // A record's length is an i32 on the wire.
        let largest = cfg.buffer_memory.min(i32::MAX as usize);
        if size > largest {
            return Err(TrySendReason::Invalid(ProduceErrorKind::RecordTooLarge {
                size,
                max: largest,
                limit: if largest == cfg.buffer_memory {
                    "buffer.memory"
                } else {
                    "the largest record Kafka encodes"
                },
            }));
        }
        match record.timestamp {
            Some(t) if t < 0 => {
                return Err(TrySendReason::Invalid(ProduceErrorKind::InvalidRecord(
                    format!("negative timestamp {t}"),
                )))
            }
            Some(_) => {}
            None => record.timestamp = Some(crate::clock::now_ms()),
        }
        if record.topic.is_empty() {
            return Err(TrySendReason::Invalid(ProduceErrorKind::InvalidRecord(
                "empty topic name".into(),
            )));
        }
        if cfg.transactional_id.is_some() && !self.shared.txn.in_txn.load(Ordering::Acquire) {
            return Err(TrySendReason::Invalid(ProduceErrorKind::Transaction(
                "send outside a transaction: a producer with transactional.id sends only \
                 between begin_transaction and commit_transaction/abort_transaction (after \
                 init_transactions)"
                    .into(),
            )));
        }
        Ok(size)
    }

    // The record goes back by value, as tokio's `SendError<T>` does.
    #[allow(clippy::result_large_err)]
    //
    // The caller took `reserved` permits from `buffer.memory` and forgot them: the driver
    // gives them back when the record completes (in bulk, once per wake-up).
    fn enqueue(
        &self,
        record: ProducerRecord,
        size: usize,
        reserved: usize,
    ) -> std::result::Result<DeliveryFuture, (ProducerRecord, TrySendReason)> {
        // Both fit: `check` refused records above `u32::MAX` and `reservation` caps at it. The
        // arrival time is the driver's (one clock read per burst, not per record).
        let (size32, reserved32) = (size as u32, reserved as u32);
        match self.tx.send_record(record, size, |record, slot| {
            Pending::new(record, slot, size32, reserved32)
        }) {
            Ok(slot) => Ok(DeliveryFuture { slot }),
            Err(record) => {
                // The driver is gone: nobody else gives the permits back.
                self.shared.memory.add_permits(reserved);
                Err((record, TrySendReason::Closed))
            }
        }
    }

    /// Sends a record: waits for room in `buffer.memory`, then hands it to the background task
    /// and returns a [`DeliveryFuture`] for its result. Awaiting the returned future is
    /// optional; the record is produced either way.
    ///
    /// Fails at once (handing the record back in the error) if the producer is closed, the
    /// record is larger than `max.request.size` or `buffer.memory`, or it is invalid.
    ///
    /// Cancel safety: not cancel-safe for the record. If the future is dropped while waiting
    /// for memory, the record is dropped unsent (nothing was enqueued). Once the future
    /// resolved, the record is on its way whatever happens to the [`DeliveryFuture`].
    pub async fn send(
        &self,
        mut record: ProducerRecord,
    ) -> std::result::Result<DeliveryFuture, ProduceError> {
        let size = match self.check(&mut record) {
            Ok(s) => s,
            Err(reason) => return Err(refused(record, reason)),
        };
        let reserved = self.reservation(size);
        // The common case without a future (tokio hands released permits to waiters first, so
        // this never jumps the queue), then the wait.
        match self.shared.memory.try_acquire_many(reserved as u32) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => return Err(refused(record, TrySendReason::Closed)),
            Err(TryAcquireError::NoPermits) => {
                match self.shared.memory.acquire_many(reserved as u32).await {
                    Ok(p) => p.forget(),
                    Err(_) => return Err(refused(record, TrySendReason::Closed)),
                }
            }
        }
        self.enqueue(record, size, reserved)
            .map_err(|(record, reason)| refused(record, reason))
    }

    /// Sends a record if `buffer.memory` has room now; otherwise hands it back at once in a
    /// [`TrySendError`] (with [`TrySendReason::BufferFull`]), as it does when the producer is
    /// closed or the record invalid.
    // The record goes back by value, as tokio's `TrySendError<T>` does.
    #[allow(clippy::result_large_err)]
    pub fn try_send(
        &self,
        mut record: ProducerRecord,
    ) -> std::result::Result<DeliveryFuture, TrySendError> {
        let size = match self.check(&mut record) {
            Ok(s) => s,
            Err(reason) => return Err(TrySendError { record, reason }),
        };
        let reserved = self.reservation(size);
        match self.shared.memory.try_acquire_many(reserved as u32) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => {
                return Err(TrySendError {
                    record,
                    reason: TrySendReason::BufferFull,
                })
            }
            Err(TryAcquireError::Closed) => {
                return Err(TrySendError {
                    record,
                    reason: TrySendReason::Closed,
                })
            }
        };
        self.enqueue(record, size, reserved)
            .map_err(|(record, reason)| TrySendError { record, reason })
    }

    /// Sends everything buffered now (ignoring `linger.ms`) and waits until every record sent
    /// before this call has its result. Records sent meanwhile are not waited for.
    ///
    /// Cancel safety: cancel-safe; dropping the future only stops waiting.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops accepting records, sends everything buffered, waits until every record has its
    /// result (success, or failure at the latest when `delivery.timeout.ms` passes), then stops
    /// the background task (and closes the connections if [`Producer::new`] opened them).
    /// Later sends fail with [`TrySendReason::Closed`]. Affects every clone.
    ///
    /// Transactional producer: a transaction still open is not committed nor aborted here (its
    /// records are sent; the coordinator aborts it after `transaction.timeout.ms`, or the next
    /// `init_transactions` with the same id does); a transactional call still waiting gets
    /// [`Error::Closed`]. Commit or abort before closing.
    ///
    /// Cancel safety: cancel-safe; the close continues in the background and every record
    /// still gets its result.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        if self.shared.owns_cluster {
            self.shared.cluster.close();
        }
    }
}

/// # Transactions
///
/// With `transactional.id` set ([`ProducerConfig::with_transactional_id`]) records are sent
/// in transactions: all of a transaction's records (on any number of partitions) and the
/// consumer offsets given to [`Producer::send_offsets_to_transaction`] become visible to
/// `read_committed` consumers together at [`Producer::commit_transaction`], or never
/// ([`Producer::abort_transaction`]).
///
/// ```no_run
/// # async fn demo() -> krust_client::Result<()> {
/// use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
///
/// let producer =
///     Producer::new(ProducerConfig::new("127.0.0.1:9092").with_transactional_id("copier-1"))
///         .await?;
/// producer.init_transactions().await?;
/// producer.begin_transaction().await?;
/// let _ = producer.send(ProducerRecord::new("out").with_value("a")).await;
/// match producer.commit_transaction().await {
///     Ok(()) => {}
///     Err(e) if e.is_abortable() => producer.abort_transaction().await?,
///     Err(e) => return Err(e), // fatal: fenced by a newer instance, ...
/// }
/// # Ok(()) }
/// ```
///
/// Errors are [`Error::Transaction`] with a [`TxnClass`]: `Abortable` (abort, then go on),
/// `Fatal` (the producer is unusable: every later call and queued record fails with it),
/// `Usage` (a call in the wrong state; nothing changed), `CommitOutcomeUnknown`
/// (`commit_transaction` stopped waiting; the commit may still land: call it again or
/// re-initialise; abort is refused). Retriable broker errors are retried inside.
impl Producer {
    /// Sends a transactional call to the driver and waits for its answer, at most
    /// `transaction.timeout.ms` when `bounded` (then the call goes on in the background and
    /// `timeout_class` says what the application may do: `None` gives [`Error::Other`]).
    async fn txn_call(
        &self,
        cmd: TxnCommand,
        what: &str,
        bounded: bool,
        timeout_class: Option<TxnClass>,
    ) -> Result<()> {
        if self.shared.config.transactional_id.is_none() {
            return Err(Error::transaction(
                TxnClass::Usage,
                None,
                format!("{what}: not a transactional producer (set transactional.id)"),
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Txn(cmd, tx))
            .map_err(|_| Error::Closed)?;
        if !bounded {
            return rx.await.map_err(|_| Error::Closed)?;
        }
        let d = self.txn_wait();
        match tokio::time::timeout(d, rx).await {
            Ok(r) => r.map_err(|_| Error::Closed)?,
            Err(_) => {
                let message = format!(
                    "{what}: no outcome within {} ms (transaction.timeout.ms); it goes on in \
                     the background: call {what} again to keep waiting",
                    d.as_millis()
                );
                Err(match timeout_class {
                    Some(class) => Error::transaction(class, None, message),
                    None => Error::Other(message),
                })
            }
        }
    }

    fn txn_wait(&self) -> Duration {
        self.shared
            .config
            .transaction_timeout
            .max(self.shared.config.client.request_timeout)
    }

    /// Initialises the transactional producer: finds the transaction coordinator, gets the
    /// producer id and a new epoch for `transactional.id` (InitProducerId). This fences every
    /// older producer with the same id (their later requests fail with a fatal fenced error)
    /// and makes the coordinator complete or abort what they left open. Call once, before the
    /// first transaction; calling it again is legal only while a commit's outcome is unknown
    /// (it then resolves it: the pending `commit_transaction` fails with
    /// [`TxnClass::CommitOutcomeUnknown`]).
    ///
    /// Waits at most `transaction.timeout.ms` (then [`Error::Other`]: initialisation goes on;
    /// call again to keep waiting).
    pub async fn init_transactions(&self) -> Result<()> {
        self.txn_call(TxnCommand::Init, "init_transactions", true, None)
            .await
    }

    /// Starts a transaction: `send` is legal until `commit_transaction` or
    /// `abort_transaction`.
    pub async fn begin_transaction(&self) -> Result<()> {
        self.txn_call(TxnCommand::Begin, "begin_transaction", false, None)
            .await
    }

    /// Commits `offsets` of the consumer group `group` as part of the transaction (KIP-447):
    /// they become the group's committed offsets only if the transaction commits. `group`
    /// is the consumer's current [`GroupMetadata`] (generation and member id): the group
    /// coordinator rejects the commit of a member that is no longer in that generation (a
    /// zombie), which makes the transaction abortable.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &GroupMetadata,
    ) -> Result<()> {
        let offsets = offsets
            .into_iter()
            .map(|(tp, o)| krust_core::txn::TxnOffset {
                partition: tp,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
            })
            .collect();
        let cmd = TxnCommand::SendOffsets {
            offsets,
            group: group.clone(),
        };
        self.txn_call(cmd, "send_offsets_to_transaction", true, None)
            .await
    }

    /// Sends every record of the transaction (flush), waits for all of them, then commits
    /// (EndTxn). Any record that failed makes the commit fail with an abortable error.
    ///
    /// If the commit's outcome is unknown (the coordinator did not answer) it is retried
    /// inside; after `transaction.timeout.ms` this returns a
    /// [`TxnClass::CommitOutcomeUnknown`] error: call `commit_transaction` again (it waits for
    /// the same commit) or `init_transactions`. `abort_transaction` is refused meanwhile.
    pub async fn commit_transaction(&self) -> Result<()> {
        self.shared.txn.in_txn.store(false, Ordering::Release);
        self.txn_call(
            TxnCommand::Commit,
            "commit_transaction",
            true,
            Some(TxnClass::CommitOutcomeUnknown),
        )
        .await
    }

    /// Aborts the transaction: records not yet sent fail, the coordinator writes abort
    /// markers (`read_committed` consumers never see the transaction's records) and discards
    /// its offsets. Legal after an abortable error; refused while a commit's outcome is
    /// unknown.
    pub async fn abort_transaction(&self) -> Result<()> {
        self.shared.txn.in_txn.store(false, Ordering::Release);
        self.txn_call(TxnCommand::Abort, "abort_transaction", true, None)
            .await
    }

    /// The producer id and epoch in use (transactional producers, after
    /// `init_transactions`): record them to resume or fence this producer's transactions
    /// later.
    pub fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        *self.shared.txn.identity.lock().unwrap()
    }

    /// `transactional.id`, if set.
    pub fn transactional_id(&self) -> Option<&str> {
        self.shared.config.transactional_id.as_deref()
    }
}

fn refused(record: ProducerRecord, reason: TrySendReason) -> ProduceError {
    let partition = record.partition;
    let kind = match reason {
        TrySendReason::Closed | TrySendReason::BufferFull => ProduceErrorKind::Closed,
        TrySendReason::Invalid(k) => k,
    };
    ProduceError::new(record, partition, kind, Persistence::NotPersisted)
}

/// The result of one sent record: resolves to its [`RecordMetadata`] once acknowledged, or to
/// a [`ProduceError`] (which hands the record back).
///
/// Dropping it does not cancel the record. It resolves even if the producer is dropped or
/// its task stops (then with [`ProduceErrorKind::Closed`] and, since the outcome is unknown,
/// [`Persistence::PossiblyPersisted`]).
#[derive(Debug)]
#[must_use = "a DeliveryFuture tells whether the record was written"]
pub struct DeliveryFuture {
    slot: delivery::SlotFuture,
}

impl Future for DeliveryFuture {
    type Output = std::result::Result<RecordMetadata, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.slot.poll_result(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(r)) => Poll::Ready(r.map_err(|e| *e)),
            // A record given up by a gone driver leaves its own `Closed` result (with the
            // record: `Pending::close`, `Driver`'s drop); this covers a slot given up without
            // one (a batch in flight when the driver task was dropped), and a poll after the
            // result was read.
            Poll::Ready(None) => Poll::Ready(Err(ProduceError {
                topic: Arc::from(""),
                partition: None,
                kind: ProduceErrorKind::Closed,
                persistence: Persistence::PossiblyPersisted,
                record: None,
            })),
        }
    }
}
