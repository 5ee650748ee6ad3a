//! The producer's record accumulator: per-partition buffers of batches, waiting and in flight.
//!
//! One [`PartitionBuffer`] per topic partition holds its [`ProducerBatch`]es in send order:
//! in-flight batches and batches waiting to be sent (the last one may still be open for appends).
//! The [`Accumulator`] owns every buffer and answers the driver's questions:
//!
//! - where does a record go ([`Accumulator::append`]), and is its batch now full;
//! - which brokers have something ready to send, and when to look again
//!   ([`Accumulator::poll_ready`]: linger expiry, retry backoff, delivery deadlines);
//! - what goes into the next Produce request to a broker ([`Accumulator::drain`]: at most one batch
//!   per partition, rotating the starting partition so none starves);
//! - what happened to a batch ([`Accumulator::handle_success`], [`Accumulator::handle_failure`]:
//!   retry within `retries` and `delivery.timeout.ms`, or fail);
//! - which batches expired ([`Accumulator::expire`]).
//!
//! It is generic over the record handle `R` (the driver's record plus its completion channel); it
//! never looks inside one. Encoding is the driver's: [`Accumulator::drain`] takes a closure that
//! turns a batch into wire bytes the first time it is sent; those bytes are kept and re-sent
//! unchanged on every retry.
//!
//! # Idempotence slots
//!
//! Each buffer carries a [`ProducerIdentity`] and the next sequence number. A batch gets its
//! producer id, epoch and base sequence when it is *first* sent and keeps them (and its encoded
//! bytes) across retries. Per-partition in-flight batches are bounded
//! (`max.in.flight.requests.per.connection`, 5 at most with idempotence) and kept in order:
//!
//! - after a retriable failure nothing new is sent for that partition until every in-flight batch
//!   has come back, then the failed batch goes first (the "rewind" of franz-go's `recBuf`);
//! - a partition's batches never go to a new leader while batches are in flight to the old one;
//! - a batch whose outcome is unknown (timeout, connection lost, NOT_ENOUGH_REPLICAS_AFTER_APPEND)
//!   is marked *possibly persisted*, a fact kept until it is reported.
//!
//! Without a producer identity (idempotence off) the sequence stays -1, exactly as Kafka expects.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use krust_wire::record::EncodedBatch;

use crate::backoff::{BackoffPolicy, SmallRng};

pub use crate::fetch::{NodeId, TopicPartition};

/// Size of a magic-v2 record batch header: an empty batch costs this many bytes.
pub const BATCH_OVERHEAD: usize = 61;

/// The producer id and epoch written into batches (`-1`/`-1`: not idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id from InitProducerId, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub epoch: i16,
}

impl ProducerIdentity {
    /// No identity: a non-idempotent producer.
    pub const NONE: ProducerIdentity = ProducerIdentity {
        producer_id: -1,
        epoch: -1,
    };

    /// Whether this is a real identity (idempotent producer).
    pub fn is_some(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Kafka's sequence arithmetic: `sequence + increment`, wrapping from `i32::MAX` to 0
/// (`DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Accumulator settings (taken from the producer configuration).
#[derive(Debug, Clone)]
pub struct AccumulatorConfig {
    /// `batch.size`: target bytes per batch. A record larger than this gets a batch of its own.
    pub batch_size: usize,
    /// `linger.ms`: how long a batch that is not full waits for more records.
    pub linger: Duration,
    /// `delivery.timeout.ms`: time from append to success or failure, retries included.
    pub delivery_timeout: Duration,
    /// Batches in flight per partition (`max.in.flight.requests.per.connection`; at least 1).
    pub max_in_flight_per_partition: usize,
    /// `retries`: retry attempts per batch (within the delivery timeout).
    pub retries: u32,
    /// `retry.backoff.ms` / `retry.backoff.max.ms`.
    pub backoff: BackoffPolicy,
    /// `enable.idempotence`: nothing is sent for a partition until it has a producer identity
    /// ([`Accumulator::set_default_producer`]), and a batch that leaves with a sequence number
    /// but without success puts its partition into a sequence reset
    /// ([`Accumulator::partitions_awaiting_reset`]). Default false.
    pub idempotent: bool,
}

impl Default for AccumulatorConfig {
    fn default() -> Self {
        Self {
            batch_size: 16384,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(120),
            max_in_flight_per_partition: 5,
            retries: u32::MAX,
            backoff: BackoffPolicy::default(),
            idempotent: false,
        }
    }
}

/// Identifies a batch for its whole life (unique within one accumulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    /// The partition's newest batch, still taking records.
    Open,
    /// Closed (full, or flushed), waiting to be sent or re-sent.
    Waiting,
    /// Sent to `node`, awaiting the response.
    InFlight { node: NodeId },
}

/// A batch of records for one partition.
pub struct ProducerBatch<R> {
    id: BatchId,
    tp: TopicPartition,
    records: Vec<R>,
    size: usize,
    created: Instant,
    attempts: u32,
    state: BatchState,
    producer: ProducerIdentity,
    base_sequence: i32,
    encoded: Option<EncodedBatch>,
    /// The bytes of its last send before a sequence reset took its identity away (see
    /// [`ProducerBatch::previous_encoding`]).
    previous_encoding: Option<EncodedBatch>,
    possibly_persisted: bool,
}

impl<R> fmt::Debug for ProducerBatch<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerBatch")
            .field("id", &self.id)
            .field("tp", &self.tp)
            .field("records", &self.records.len())
            .field("size", &self.size)
            .field("attempts", &self.attempts)
            .field("state", &self.state)
            .field("base_sequence", &self.base_sequence)
            .field("possibly_persisted", &self.possibly_persisted)
            .finish()
    }
}

impl<R> ProducerBatch<R> {
    /// The batch's id.
    pub fn id(&self) -> BatchId {
        self.id
    }
    /// Its partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    /// Its records, in append order.
    pub fn records(&self) -> &[R] {
        &self.records
    }
    /// Takes the records out (to complete them).
    pub fn into_records(self) -> Vec<R> {
        self.records
    }
    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
    /// Estimated uncompressed size in bytes (header included).
    pub fn estimated_size(&self) -> usize {
        self.size
    }
    /// When the batch was created (its first record appended).
    pub fn created(&self) -> Instant {
        self.created
    }
    /// How many times it was sent.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The producer identity it was (or will be) sent with.
    pub fn producer(&self) -> ProducerIdentity {
        self.producer
    }
    /// Its base sequence (-1 without idempotence or before the first send).
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }
    /// Its wire bytes, once encoded for the first send.
    pub fn encoded(&self) -> Option<&EncodedBatch> {
        self.encoded.as_ref()
    }
    /// After [`Accumulator::reset_partition`] took its identity and sequence: the bytes it was
    /// sent with before (the same records), for the next encoding to re-stamp instead of
    /// building again. `None` otherwise.
    pub fn previous_encoding(&self) -> Option<&EncodedBatch> {
        self.previous_encoding.as_ref()
    }
    /// Whether a send's outcome was unknown: the broker may have written it.
    pub fn is_possibly_persisted(&self) -> bool {
        self.possibly_persisted
    }
    /// Whether it is in flight now.
    pub fn is_in_flight(&self) -> bool {
        matches!(self.state, BatchState::InFlight { .. })
    }
}

/// The outcome of [`Accumulator::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The batch the record went into.
    pub batch: BatchId,
    /// Whether a new batch was started for it.
    pub new_batch: bool,
    /// Whether the partition's open batch is now (about) full: another record of the average
    /// size would not fit. The uniform sticky partitioner switches on this.
    pub batch_full: bool,
}

/// A batch taken by [`Accumulator::drain`] for a request.
#[derive(Debug, Clone)]
pub struct Drained {
    /// Its partition.
    pub tp: TopicPartition,
    /// Its id, to report the outcome.
    pub id: BatchId,
    /// The bytes to send (the same on every attempt).
    pub data: EncodedBatch,
    /// Number of records.
    pub record_count: usize,
    /// Attempt number, 1 for the first send.
    pub attempt: u32,
}

/// How a send failed, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Whether Kafka (or the transport) says a retry may succeed.
    pub retriable: bool,
    /// Whether the broker may have written the batch anyway (timeout, connection lost with the
    /// request in flight, NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub outcome_unknown: bool,
}

/// What [`Accumulator::handle_failure`] decided.
#[derive(Debug)]
pub enum FailureOutcome<R> {
    /// The batch stays and will be re-sent after a backoff (at `retry_at`).
    Retrying {
        /// When the partition may send again.
        retry_at: Instant,
    },
    /// The batch is given up: the caller completes its records with the error. Check
    /// [`ProducerBatch::is_possibly_persisted`] to report truthfully.
    Failed(ProducerBatch<R>),
    /// The batch was not known (already completed, or expired meanwhile).
    Unknown,
}

/// What [`Accumulator::poll_ready`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Brokers with at least one sendable batch.
    pub nodes: BTreeSet<NodeId>,
    /// Partitions with waiting batches but no known leader (refresh metadata).
    pub unknown_leaders: Vec<TopicPartition>,
    /// The earliest time something changes on its own (linger end, backoff end, a delivery
    /// deadline), if anything is buffered.
    pub next_check: Option<Instant>,
    /// Fewest record bytes (as sized for [`Accumulator::append`]) that can make a batch
    /// sendable before `next_check`: the least room left in an open batch below `batch.size`,
    /// or what a new batch holds. Records smaller than this in total, wherever they go, only
    /// fill batches that stay open.
    pub room: usize,
}

/// The batches of one partition, in send order.
pub struct PartitionBuffer<R> {
    /// Records in the last batch opened before the current one: the capacity a new batch's
    /// record vector starts with, so a steady stream does not regrow (and copy) it.
    last_batch_records: usize,
    tp: TopicPartition,
    batches: VecDeque<ProducerBatch<R>>,
    leader: Option<NodeId>,
    leader_epoch: i32,
    in_flight: usize,
    /// After a retriable failure: send nothing until in-flight batches are back (order).
    rewinding: bool,
    retry_at: Option<Instant>,
    producer: ProducerIdentity,
    next_sequence: i32,
    /// Idempotence: a batch with a sequence number left without success (or the broker lost
    /// track of the producer): send nothing until the in-flight batches are back, then take a
    /// new producer identity ([`Accumulator::reset_partition`]).
    reset_pending: bool,
    /// Transactions: the partition is not yet part of the open transaction
    /// (AddPartitionsToTxn pending); nothing is sent ([`Accumulator::set_held`]).
    held: bool,
}

impl<R> fmt::Debug for PartitionBuffer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionBuffer")
            .field("tp", &self.tp)
            .field("batches", &self.batches.len())
            .field("leader", &self.leader)
            .field("in_flight", &self.in_flight)
            .field("rewinding", &self.rewinding)
            .field("next_sequence", &self.next_sequence)
            .field("reset_pending", &self.reset_pending)
            .finish()
    }
}

impl<R> PartitionBuffer<R> {
    fn new(tp: TopicPartition, producer: ProducerIdentity, next_sequence: i32) -> Self {
        Self {
            tp,
            batches: VecDeque::new(),
            leader: None,
            leader_epoch: -1,
            in_flight: 0,
            rewinding: false,
            retry_at: None,
            producer,
            next_sequence,
            reset_pending: false,
            held: false,
            last_batch_records: 0,
        }
    }

    /// The partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// The leader epoch from metadata (-1 if unknown).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    /// Batches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
    /// Batches held (waiting and in flight).
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }
    /// Records held (waiting and in flight).
    pub fn record_count(&self) -> usize {
        self.batches.iter().map(|b| b.records.len()).sum()
    }
    /// The next sequence number a new batch would get.
    pub fn next_sequence(&self) -> i32 {
        self.next_sequence
    }
    /// The producer identity new batches of this partition get.
    pub fn producer(&self) -> ProducerIdentity {
        self.producer
    }
    /// Whether a sequence reset is pending (idempotence; see
    /// [`Accumulator::partitions_awaiting_reset`]).
    pub fn is_reset_pending(&self) -> bool {
        self.reset_pending
    }

    /// Whether the open batch could not go now even if it were closed: every in-flight slot
    /// is taken, or a closed batch waits ahead of it (see
    /// [`Accumulator::set_backlog_batch_size`]).
    fn is_backlogged(&self, max_in_flight: usize) -> bool {
        self.in_flight >= max_in_flight
            || self.batches.iter().any(|b| b.state == BatchState::Waiting)
    }

    /// Whether nothing of this partition may go now, whatever its batches: no leader, held,
    /// its producer identity unknown or a sequence reset pending (idempotence), or backing
    /// off.
    fn is_blocked(&self, cfg: &AccumulatorConfig, now: Instant) -> bool {
        self.leader.is_none()
            || self.held
            || (cfg.idempotent && (self.reset_pending || !self.producer.is_some()))
            || self.retry_at.is_some_and(|t| now < t)
    }

    /// Whether a batch that became ready now could be sent now: not blocked and not
    /// backlogged.
    fn could_send(&self, cfg: &AccumulatorConfig, now: Instant) -> bool {
        !self.is_blocked(cfg, now) && !self.is_backlogged(cfg.max_in_flight_per_partition.max(1))
    }

    /// The first batch not in flight, if it may be sent now to `leader`.
    fn sendable(&self, now: Instant, cfg: &AccumulatorConfig, flushing: bool) -> Option<usize> {
        let leader = self.leader?;
        if self.is_blocked(cfg, now)
            || self.in_flight >= cfg.max_in_flight_per_partition.max(1)
            || (self.rewinding && self.in_flight > 0)
        {
            return None;
        }
        // Never split a partition's in-flight batches across brokers: a leader change waits
        // for the old leader's answers before anything goes to the new one.
        if self
            .batches
            .iter()
            .any(|b| matches!(b.state, BatchState::InFlight { node } if node != leader))
        {
            return None;
        }
        let idx = self
            .batches
            .iter()
            .position(|b| !matches!(b.state, BatchState::InFlight { .. }))?;
        let b = &self.batches[idx];
        let ready = match b.state {
            BatchState::Waiting => true,
            BatchState::Open => {
                flushing || b.size >= cfg.batch_size || now >= b.created + cfg.linger
            }
            BatchState::InFlight { .. } => false,
        };
        ready.then_some(idx)
    }

    /// When this buffer next changes on its own, after `now`. Past deadlines are skipped: a
    /// linger that ended while a retry backoff blocks the partition must not hide the
    /// backoff's end (the driver would sleep past it and, with nothing in flight, forever).
    fn next_check(&self, cfg: &AccumulatorConfig, now: Instant) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| {
            if x > now {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let Some(r) = self.retry_at {
            consider(r);
        }
        for b in &self.batches {
            consider(b.created + cfg.delivery_timeout);
            if b.state == BatchState::Open {
                consider(b.created + cfg.linger);
            }
        }
        t
    }
}

/// Every partition's buffer, and the bookkeeping across them.
pub struct Accumulator<R> {
    cfg: AccumulatorConfig,
    partitions: BTreeMap<TopicPartition, PartitionBuffer<R>>,
    next_batch_id: u64,
    flushing: bool,
    drain_cursor: HashMap<NodeId, usize>,
    rng: SmallRng,
    default_producer: ProducerIdentity,
    first_sequence: i32,
    /// How large an open batch may grow while its partition is backlogged
    /// ([`Accumulator::set_backlog_batch_size`]); `cfg.batch_size` means never past it.
    backlog_batch_size: usize,
    /// Emptied record vectors of completed batches ([`Accumulator::recycle_records`]), for
    /// the next batches to fill without a fresh allocation.
    spare_records: Vec<Vec<R>>,
}

/// Emptied record vectors kept for reuse.
const SPARE_RECORD_VECTORS: usize = 2;

/// Records a new batch's vector is sized for at most (and a kept vector shrunk to).
const RECORDS_CAPACITY_CAP: usize = 16 * 1024;

impl<R> fmt::Debug for Accumulator<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accumulator")
            .field("partitions", &self.partitions.len())
            .field("flushing", &self.flushing)
            .finish()
    }
}

impl<R> Accumulator<R> {
    /// An empty accumulator; `seed` drives the backoff jitter.
    pub fn new(cfg: AccumulatorConfig, seed: u64) -> Self {
        Self {
            backlog_batch_size: cfg.batch_size,
            cfg,
            partitions: BTreeMap::new(),
            next_batch_id: 0,
            flushing: false,
            drain_cursor: HashMap::new(),
            rng: SmallRng::new(seed),
            default_producer: ProducerIdentity::NONE,
            first_sequence: 0,
            spare_records: Vec::new(),
        }
    }

    /// Hands back the emptied record vector of a completed batch (from
    /// [`ProducerBatch::into_records`]) so a later batch reuses its memory instead of
    /// allocating (a large vector is fresh memory the system must map and zero again). At most
    /// a couple are kept.
    pub fn recycle_records(&mut self, mut records: Vec<R>) {
        records.clear();
        if self.spare_records.len() < SPARE_RECORD_VECTORS && records.capacity() > 0 {
            // A batch grown past the cap (a backlogged partition of tiny records) does not pin
            // its size here for good.
            records.shrink_to(RECORDS_CAPACITY_CAP);
            self.spare_records.push(records);
        }
    }

    /// Lets a backlogged partition's open batch grow past `batch.size` up to `cap` bytes
    /// (estimated; at least `batch.size`, which is the default: no growth).
    ///
    /// A partition is backlogged when its open batch could not be sent now anyway: all its
    /// in-flight slots are taken, or a closed batch waits ahead of it. Its records then wait
    /// regardless, and one larger batch carries them in the next free slot, where batches of
    /// `batch.size` would drain at most `max_in_flight x batch.size` bytes per round trip and
    /// fall behind a producer faster than that. While nothing waits, batches close at
    /// `batch.size` exactly as before.
    pub fn set_backlog_batch_size(&mut self, cap: usize) {
        self.backlog_batch_size = cap.max(self.cfg.batch_size);
    }

    /// The cap set by [`Accumulator::set_backlog_batch_size`].
    pub fn backlog_batch_size(&self) -> usize {
        self.backlog_batch_size
    }

    /// The settings.
    pub fn config(&self) -> &AccumulatorConfig {
        &self.cfg
    }

    /// The buffer of `tp`, if it exists.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionBuffer<R>> {
        self.partitions.get(tp)
    }

    /// Every buffer.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionBuffer<R>> {
        self.partitions.values()
    }

    fn buffer_mut(&mut self, tp: &TopicPartition) -> &mut PartitionBuffer<R> {
        let (producer, first) = (self.default_producer, self.first_sequence);
        // One lookup in the common case (the partition exists); a key clone is an Arc clone.
        self.partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionBuffer::new(tp.clone(), producer, first))
    }

    /// Sets the leader of `tp` from metadata. Returns true when the leader changed (a
    /// *migration*: waiting batches will be drained for the new leader, once the old leader has
    /// answered for the in-flight ones).
    pub fn set_leader(&mut self, tp: &TopicPartition, leader: Option<NodeId>, epoch: i32) -> bool {
        let b = self.buffer_mut(tp);
        // Ignore stale metadata (an older epoch) when both epochs are known.
        if epoch >= 0 && b.leader_epoch >= 0 && epoch < b.leader_epoch {
            return false;
        }
        let changed = b.leader != leader;
        b.leader = leader;
        b.leader_epoch = epoch;
        changed
    }

    /// Sets the producer identity used for batches of `tp` not yet sent, resetting its
    /// sequence to `next_sequence` (idempotence: after InitProducerId or an epoch bump).
    pub fn set_producer(
        &mut self,
        tp: &TopicPartition,
        producer: ProducerIdentity,
        next_sequence: i32,
    ) {
        let b = self.buffer_mut(tp);
        b.producer = producer;
        b.next_sequence = next_sequence;
    }

    /// Transactions: while `held`, nothing of `tp` is sent (its AddPartitionsToTxn has not been
    /// answered yet: a batch must never reach a partition before the coordinator knows it is
    /// part of the transaction). Records are still appended.
    pub fn set_held(&mut self, tp: &TopicPartition, held: bool) {
        self.buffer_mut(tp).held = held;
    }

    /// Transactions: releases every held partition (the transaction ended).
    pub fn release_all_held(&mut self) {
        for b in self.partitions.values_mut() {
            b.held = false;
        }
    }

    /// Whether `tp` is held (see [`Accumulator::set_held`]).
    pub fn is_held(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|b| b.held)
    }

    /// Idempotence: the identity (from InitProducerId) and first sequence number (Kafka: 0) of
    /// every partition that has none yet, now and when a buffer is created later. Partitions that
    /// already have an identity keep theirs (their sequence numbers belong to it).
    pub fn set_default_producer(&mut self, producer: ProducerIdentity, first_sequence: i32) {
        self.default_producer = producer;
        self.first_sequence = first_sequence;
        for b in self.partitions.values_mut() {
            if !b.producer.is_some() {
                b.producer = producer;
                b.next_sequence = first_sequence;
            }
        }
    }

    /// Idempotence: partitions whose sequence reset is pending and that have nothing in flight
    /// any more (drained): each needs a new producer identity (the next epoch, or a fresh id),
    /// given with [`Accumulator::reset_partition`].
    pub fn partitions_awaiting_reset(&self) -> Vec<TopicPartition> {
        self.partitions
            .values()
            .filter(|b| b.reset_pending && b.in_flight == 0)
            .map(|b| b.tp.clone())
            .collect()
    }

    /// Idempotence: gives a drained partition (nothing in flight) a new identity and sequence
    /// space starting at `first_sequence` (the effect of KIP-360's epoch bump).
    ///
    /// Batches that were sent before and whose every attempt was answered (definitely not
    /// written) lose their identity and sequence and are re-stamped on their next send. Batches
    /// that are *possibly persisted* are handed back, to be reported as such: re-sending them
    /// under the new identity could write them twice. Sequence numbers of the old identity are
    /// never reused, so no later record can be taken for a duplicate and dropped.
    ///
    /// Returns `None` (and changes nothing) while batches are still in flight.
    pub fn reset_partition(
        &mut self,
        tp: &TopicPartition,
        producer: ProducerIdentity,
        first_sequence: i32,
    ) -> Option<Vec<ProducerBatch<R>>> {
        let b = self.partitions.get_mut(tp)?;
        if b.in_flight > 0 {
            return None;
        }
        b.producer = producer;
        b.next_sequence = first_sequence;
        b.reset_pending = false;
        b.rewinding = false;
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(b.batches.len());
        for mut batch in b.batches.drain(..) {
            if batch.base_sequence >= 0 || batch.encoded.is_some() {
                if batch.possibly_persisted {
                    out.push(batch);
                    continue;
                }
                if let Some(old) = batch.encoded.take() {
                    batch.previous_encoding = Some(old);
                }
                batch.base_sequence = -1;
                batch.producer = ProducerIdentity::NONE;
                if batch.state != BatchState::Open {
                    batch.state = BatchState::Waiting;
                }
            }
            keep.push_back(batch);
        }
        b.batches = keep;
        Some(out)
    }

    /// Idempotence: the broker answered batch `id` with a sequence error (see
    /// [`crate::idempotence::SequenceFault`]).
    ///
    /// OUT_OF_ORDER_SEQUENCE_NUMBER behind an earlier unacknowledged batch of the partition is
    /// the consequence of that batch's failure: retried in order once the earlier ones are back
    /// (as any retriable failure). At the head of the line, or UNKNOWN_PRODUCER_ID /
    /// INVALID_PRODUCER_EPOCH anywhere, the partition's sequence state is gone: the batch waits,
    /// and the partition is reset once nothing is in flight (KIP-360). Past the delivery
    /// timeout the batch is handed back instead (the partition still resets).
    pub fn handle_sequence_error(
        &mut self,
        tp: &TopicPartition,
        id: BatchId,
        fault: crate::idempotence::SequenceFault,
        now: Instant,
    ) -> FailureOutcome<R> {
        use crate::idempotence::SequenceFault;
        let timeout = self.cfg.delivery_timeout;
        let Some((b, idx)) = self.find(tp, id) else {
            return FailureOutcome::Unknown;
        };
        if fault == SequenceFault::OutOfOrder && idx > 0 {
            return self.handle_failure(
                tp,
                id,
                Failure {
                    retriable: true,
                    outcome_unknown: false,
                },
                now,
            );
        }
        if b.batches[idx].is_in_flight() {
            b.in_flight -= 1;
        }
        b.reset_pending = true;
        if now >= b.batches[idx].created + timeout {
            let batch = b.batches.remove(idx).expect("found above");
            if b.in_flight == 0 {
                b.rewinding = false;
            }
            return FailureOutcome::Failed(batch);
        }
        b.batches[idx].state = BatchState::Waiting;
        FailureOutcome::Retrying { retry_at: now }
    }

    /// Appends `record` (estimated encoded size `size`, from the record's own fields) to `tp`'s
    /// open batch, or to a new batch when it would overflow `batch.size` (or, while the
    /// partition is backlogged, the cap of [`Accumulator::set_backlog_batch_size`]).
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        record: R,
        size: usize,
        now: Instant,
    ) -> Appended {
        let batch_size = self.cfg.batch_size;
        let backlog_cap = self.backlog_batch_size;
        let max_in_flight = self.cfg.max_in_flight_per_partition.max(1);
        let next_id = self.next_batch_id;
        let (producer, first) = (self.default_producer, self.first_sequence);
        // As `buffer_mut`, borrowing only the partitions (a new batch may take a spare vector).
        let b = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionBuffer::new(tp.clone(), producer, first));
        let fits = b.batches.back().is_some_and(|last| {
            last.state == BatchState::Open
                && (last.records.is_empty()
                    || last.size + size <= batch_size
                    || (last.size + size <= backlog_cap && b.is_backlogged(max_in_flight)))
        });
        let mut new_batch = false;
        if !fits {
            if let Some(last) = b.batches.back_mut() {
                if last.state == BatchState::Open {
                    last.state = BatchState::Waiting;
                }
                b.last_batch_records = last.records.len();
            }
            // Capped, so one large batch does not make every later one reserve as much.
            let capacity = b.last_batch_records.min(RECORDS_CAPACITY_CAP);
            let records = match self.spare_records.pop() {
                Some(mut v) => {
                    v.reserve(capacity);
                    v
                }
                None => Vec::with_capacity(capacity),
            };
            b.batches.push_back(ProducerBatch {
                id: BatchId(next_id),
                tp: tp.clone(),
                records,
                size: BATCH_OVERHEAD,
                created: now,
                attempts: 0,
                state: BatchState::Open,
                producer: ProducerIdentity::NONE,
                base_sequence: -1,
                encoded: None,
                previous_encoding: None,
                possibly_persisted: false,
            });
            new_batch = true;
        }
        let last = b.batches.back_mut().expect("a batch is open");
        last.records.push(record);
        last.size += size;
        let avg = (last.size - BATCH_OVERHEAD) / last.records.len();
        let batch_full = last.size + avg.max(1) > batch_size;
        let id = last.id;
        if new_batch {
            self.next_batch_id += 1;
        }
        Appended {
            batch: id,
            new_batch,
            batch_full,
        }
    }

    /// While flushing, every batch is sendable at once, linger or not (Java's
    /// `flushInProgress`).
    pub fn set_flushing(&mut self, flushing: bool) {
        self.flushing = flushing;
    }

    /// Whether a flush is in progress.
    pub fn is_flushing(&self) -> bool {
        self.flushing
    }

    /// Which brokers have sendable batches at `now`, which partitions lack a leader, and when
    /// to look again.
    pub fn poll_ready(&self, now: Instant) -> Readiness {
        let batch_size = self.cfg.batch_size;
        let mut r = Readiness {
            room: batch_size.saturating_sub(BATCH_OVERHEAD).max(1),
            ..Readiness::default()
        };
        for b in self.partitions.values() {
            if b.batches.is_empty() {
                continue;
            }
            if let Some(last) = b.batches.back() {
                // A record that does not fit closes the batch, as one that fills it does. A
                // partition that could not send such a batch now (no leader, held, backing off,
                // waiting for its producer identity, every in-flight slot taken or a closed
                // batch ahead, which includes a batch grown past `batch.size` meanwhile) waits
                // for an answer or a timer that wakes the driver anyway.
                if last.state == BatchState::Open
                    && !last.records.is_empty()
                    && last.size < batch_size
                    && b.could_send(&self.cfg, now)
                {
                    r.room = r.room.min(batch_size - last.size);
                }
            }
            if let Some(t) = b.next_check(&self.cfg, now) {
                r.next_check = Some(r.next_check.map_or(t, |x| x.min(t)));
            }
            match b.leader {
                None => {
                    if b.batches.iter().any(|x| !x.is_in_flight()) {
                        r.unknown_leaders.push(b.tp.clone());
                    }
                }
                Some(node) => {
                    if b.sendable(now, &self.cfg, self.flushing).is_some() {
                        r.nodes.insert(node);
                    }
                }
            }
        }
        r
    }

    /// Whether a partition led by `node` has a sendable batch that is *complete*: closed
    /// (a newer batch opened behind it, or it is a retry) or at least `batch.size`. A request
    /// that carries only open batches below `batch.size` would be partial; the producer may
    /// hold such a request while another one to `node` is unanswered.
    pub fn has_complete_batch(&self, node: NodeId, now: Instant) -> bool {
        self.partitions.values().any(|b| {
            b.leader == Some(node)
                && b.sendable(now, &self.cfg, self.flushing)
                    .is_some_and(|idx| {
                        let batch = &b.batches[idx];
                        batch.state != BatchState::Open || batch.size >= self.cfg.batch_size
                    })
        })
    }

    /// Takes the batches for one Produce request to `node`: at most one per partition led by
    /// `node`, the first sendable one of each, until `max_bytes` (first batch always taken).
    ///
    /// `encode` turns a batch into wire bytes on its first send (its producer identity and base
    /// sequence are set by then); on retries the kept bytes are reused. Drained batches are in
    /// flight until [`Accumulator::handle_success`] or [`Accumulator::handle_failure`].
    pub fn drain<F>(
        &mut self,
        node: NodeId,
        now: Instant,
        max_bytes: usize,
        mut encode: F,
    ) -> Vec<Drained>
    where
        F: FnMut(&ProducerBatch<R>) -> EncodedBatch,
    {
        let tps: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, b)| b.leader == Some(node) && !b.batches.is_empty())
            .map(|(tp, _)| tp.clone())
            .collect();
        if tps.is_empty() {
            return Vec::new();
        }
        let cursor = self.drain_cursor.entry(node).or_insert(0);
        let start = *cursor % tps.len();
        *cursor = cursor.wrapping_add(1);
        let mut out = Vec::new();
        let mut total = 0usize;
        for i in 0..tps.len() {
            let tp = &tps[(start + i) % tps.len()];
            let b = self.partitions.get_mut(tp).expect("listed above");
            let Some(idx) = b.sendable(now, &self.cfg, self.flushing) else {
                continue;
            };
            let producer = b.producer;
            let next_seq = b.next_sequence;
            let batch = &mut b.batches[idx];
            if batch.encoded.is_none() {
                // First send: the identity and sequence are fixed now, for good.
                batch.producer = producer;
                if producer.is_some() {
                    batch.base_sequence = next_seq;
                    b.next_sequence = increment_sequence(next_seq, batch.records.len() as i32);
                }
                let batch = &mut b.batches[idx];
                let data = encode(batch);
                batch.encoded = Some(data);
                batch.previous_encoding = None;
            }
            let batch = &mut b.batches[idx];
            let data = batch.encoded.clone().expect("encoded above");
            if !out.is_empty() && total + data.len() > max_bytes {
                // Stays encoded and waiting; goes in the next request.
                if batch.state == BatchState::Open {
                    batch.state = BatchState::Waiting;
                }
                continue;
            }
            total += data.len();
            batch.state = BatchState::InFlight { node };
            batch.attempts += 1;
            b.in_flight += 1;
            b.retry_at = None;
            out.push(Drained {
                tp: tp.clone(),
                id: batch.id,
                data,
                record_count: batch.records.len(),
                attempt: batch.attempts,
            });
        }
        out
    }

    fn find(
        &mut self,
        tp: &TopicPartition,
        id: BatchId,
    ) -> Option<(&mut PartitionBuffer<R>, usize)> {
        let b = self.partitions.get_mut(tp)?;
        let idx = b.batches.iter().position(|x| x.id == id)?;
        Some((b, idx))
    }

    /// The broker accepted batch `id`: it leaves the buffer, for the caller to complete.
    pub fn handle_success(&mut self, tp: &TopicPartition, id: BatchId) -> Option<ProducerBatch<R>> {
        let (b, idx) = self.find(tp, id)?;
        let batch = b.batches.remove(idx)?;
        if batch.is_in_flight() {
            b.in_flight -= 1;
        }
        if b.in_flight == 0 {
            b.rewinding = false;
        }
        Some(batch)
    }

    /// Sending batch `id` failed at `now`. Retried (after a backoff, first in line for its
    /// partition) if the failure is retriable, attempts remain and the delivery timeout has not
    /// passed; otherwise handed back as [`FailureOutcome::Failed`].
    pub fn handle_failure(
        &mut self,
        tp: &TopicPartition,
        id: BatchId,
        failure: Failure,
        now: Instant,
    ) -> FailureOutcome<R> {
        let cfg = self.cfg.clone();
        let Some(b) = self.partitions.get_mut(tp) else {
            return FailureOutcome::Unknown;
        };
        let Some(idx) = b.batches.iter().position(|x| x.id == id) else {
            return FailureOutcome::Unknown;
        };
        let batch = &mut b.batches[idx];
        if batch.is_in_flight() {
            b.in_flight -= 1;
        }
        let batch = &mut b.batches[idx];
        batch.possibly_persisted |= failure.outcome_unknown;
        let expired = now >= batch.created + cfg.delivery_timeout;
        let attempts_left = batch.attempts <= cfg.retries;
        if failure.retriable && attempts_left && !expired {
            batch.state = BatchState::Waiting;
            let delay = cfg
                .backoff
                .delay(batch.attempts.saturating_sub(1), &mut self.rng);
            let retry_at = now + delay;
            b.retry_at = Some(b.retry_at.map_or(retry_at, |t| t.max(retry_at)));
            b.rewinding = b.in_flight > 0;
            FailureOutcome::Retrying { retry_at }
        } else {
            let batch = b.batches.remove(idx).expect("found above");
            if b.in_flight == 0 {
                b.rewinding = false;
            }
            // Its sequence numbers were used and never written: later batches would be out of
            // order. Reset once the in-flight ones are back.
            b.reset_pending |= batch.base_sequence >= 0;
            FailureOutcome::Failed(batch)
        }
    }

    /// Removes and returns every batch whose delivery timeout passed at `now` and that is not in
    /// flight (an in-flight batch expires when its request comes back or times out).
    pub fn expire(&mut self, now: Instant) -> Vec<ProducerBatch<R>> {
        let timeout = self.cfg.delivery_timeout;
        let mut out = Vec::new();
        for b in self.partitions.values_mut() {
            if b.batches.is_empty() {
                continue;
            }
            let mut keep = VecDeque::with_capacity(b.batches.len());
            for batch in b.batches.drain(..) {
                if !batch.is_in_flight() && now >= batch.created + timeout {
                    b.reset_pending |= batch.base_sequence >= 0;
                    out.push(batch);
                } else {
                    keep.push_back(batch);
                }
            }
            b.batches = keep;
        }
        out
    }

    /// Removes and returns every batch that is not in flight (closing without sending).
    pub fn abort_waiting(&mut self) -> Vec<ProducerBatch<R>> {
        let mut out = Vec::new();
        for b in self.partitions.values_mut() {
            let mut keep = VecDeque::new();
            for batch in b.batches.drain(..) {
                if batch.is_in_flight() {
                    keep.push_back(batch);
                } else {
                    b.reset_pending |= batch.base_sequence >= 0;
                    out.push(batch);
                }
            }
            b.batches = keep;
        }
        out
    }

    /// Whether no batch is held (waiting or in flight).
    pub fn is_empty(&self) -> bool {
        self.partitions.values().all(|b| b.batches.is_empty())
    }

    /// Batches in flight, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|b| b.in_flight).sum()
    }

    /// Records held (waiting and in flight), over all partitions.
    pub fn record_count(&self) -> usize {
        self.partitions.values().map(|b| b.record_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccumulatorConfig {
        let mut backoff = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(1));
        backoff.jitter = 0.0;
        AccumulatorConfig {
            batch_size: 1000,
            linger: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(30),
            max_in_flight_per_partition: 5,
            retries: u32::MAX,
            backoff,
            idempotent: false,
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn enc(b: &ProducerBatch<u32>) -> EncodedBatch {
        // A fake encoding: the record values, one byte each, behind the base sequence.
        let mut v = b.base_sequence().to_be_bytes().to_vec();
        v.extend(b.records().iter().map(|r| *r as u8));
        bytes::Bytes::from(v).into()
    }

    const RETRY: Failure = Failure {
        retriable: true,
        outcome_unknown: false,
    };

    #[test]
    fn a_recycled_record_vector_is_the_next_batch_s_and_only_a_couple_are_kept() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        let mut v: Vec<u32> = Vec::with_capacity(1000);
        v.push(7);
        let buf = v.as_ptr();
        a.recycle_records(v);
        let ap = a.append(&tp(0), 1u32, 100, t0);
        assert!(ap.new_batch);
        let b = a.partitions.get(&tp(0)).unwrap().batches.back().unwrap();
        assert_eq!(b.records(), &[1], "the recycled vector came back empty");
        assert_eq!(
            b.records().as_ptr(),
            buf,
            "the next batch filled the recycled vector"
        );
        for _ in 0..5 {
            a.recycle_records(Vec::with_capacity(10));
        }
        a.recycle_records(Vec::new());
        assert_eq!(a.spare_records.len(), SPARE_RECORD_VECTORS);
    }

    #[test]
    fn linger_then_ready() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        let ap = a.append(&tp(0), 1u32, 100, t0);
        assert!(ap.new_batch && !ap.batch_full);
        let r = a.poll_ready(t0);
        assert!(r.nodes.is_empty());
        assert_eq!(r.next_check, Some(t0 + Duration::from_millis(10)));
        assert!(a.drain(1, t0, usize::MAX, enc).is_empty());
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(a.poll_ready(t1).nodes, BTreeSet::from([1]));
        let d = a.drain(1, t1, usize::MAX, enc);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].record_count, 1);
        assert_eq!(d[0].attempt, 1);
        assert_eq!(a.in_flight(), 1);
        let done = a.handle_success(&tp(0), d[0].id).unwrap();
        assert_eq!(done.into_records(), vec![1]);
        assert!(a.is_empty());
    }

    /// `room` is the least that can make a batch sendable before linger: records adding up to
    /// less leave every batch open, and `room` bytes to the fullest partition make it ready.
    #[test]
    fn room_is_the_least_that_makes_a_batch_sendable() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_leader(&tp(1), Some(1), 0);
        assert_eq!(a.poll_ready(t0).room, 1000 - BATCH_OVERHEAD);
        a.append(&tp(0), 1u32, 300, t0);
        a.append(&tp(1), 2u32, 500, t0);
        let r = a.poll_ready(t0);
        assert_eq!(r.room, 1000 - BATCH_OVERHEAD - 500);
        assert!(r.nodes.is_empty());
        // Less than `room` to the fullest partition: still open.
        a.append(&tp(1), 3u32, r.room - 1, t0);
        let r = a.poll_ready(t0);
        assert!(r.nodes.is_empty());
        assert_eq!(r.room, 1);
        // A record that does not fit closes the batch: sendable.
        a.append(&tp(1), 4u32, 2, t0);
        let r = a.poll_ready(t0);
        assert_eq!(r.nodes, BTreeSet::from([1]));
        // Partitions that could not send a batch filled now do not count: tp(1) has a closed
        // batch ahead of its open one, tp(2) no leader.
        assert_eq!(r.room, 1000 - BATCH_OVERHEAD - 300);
        a.append(&tp(2), 5u32, 900, t0);
        assert_eq!(a.poll_ready(t0).room, 1000 - BATCH_OVERHEAD - 300);
    }

    #[test]
    fn full_batches_are_ready_before_linger() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        let mut full_seen = false;
        let mut new_batches = 0;
        for i in 0..20u32 {
            let ap = a.append(&tp(0), i, 100, t0);
            full_seen |= ap.batch_full;
            new_batches += usize::from(ap.new_batch);
        }
        assert!(full_seen);
        // 61 + 9 * 100 = 961 <= 1000: nine records per batch.
        assert_eq!(new_batches, 3);
        let r = a.poll_ready(t0);
        assert_eq!(r.nodes, BTreeSet::from([1]));
        // One batch per partition per request.
        let d = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].record_count, 9);
        // In-flight limit 5 per partition: the second batch is also sendable now.
        let d2 = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d2.len(), 1);
        assert_eq!(d2[0].record_count, 9);
        // The third (2 records) still lingers.
        assert!(a.drain(1, t0, usize::MAX, enc).is_empty());
    }

    #[test]
    fn a_complete_batch_is_a_closed_or_full_one() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.linger = Duration::ZERO;
        let mut a = Accumulator::new(c, 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_leader(&tp(1), Some(2), 0);
        // Nothing buffered: nothing complete.
        assert!(!a.has_complete_batch(1, t0));
        // An open batch below batch.size is sendable (linger 0) but partial.
        a.append(&tp(0), 1u32, 100, t0);
        assert_eq!(a.poll_ready(t0).nodes, BTreeSet::from([1]));
        assert!(!a.has_complete_batch(1, t0));
        // Filled until the next record opens a new batch: the first one is closed.
        for i in 2..=10u32 {
            a.append(&tp(0), i, 100, t0);
        }
        assert!(a.has_complete_batch(1, t0));
        // Another leader's complete batch does not count for node 1, and vice versa.
        assert!(!a.has_complete_batch(2, t0));
        let d = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d[0].record_count, 9);
        // Only the open one-record batch is left: partial again.
        assert!(!a.has_complete_batch(1, t0));
        // An open batch that reached batch.size exactly is complete.
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.append(&tp(0), 1u32, 1000 - BATCH_OVERHEAD, t0);
        assert!(a.has_complete_batch(1, t0));
    }

    #[test]
    fn oversized_record_gets_its_own_batch() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.append(&tp(0), 1u32, 100, t0);
        let ap = a.append(&tp(0), 2u32, 5000, t0);
        assert!(ap.new_batch && ap.batch_full);
        let ap = a.append(&tp(0), 3u32, 10, t0);
        assert!(ap.new_batch);
        assert_eq!(a.partition(&tp(0)).unwrap().batch_count(), 3);
    }

    #[test]
    fn flush_makes_everything_ready() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        for p in 0..3 {
            a.set_leader(&tp(p), Some(p % 2), 0);
            a.append(&tp(p), p as u32, 10, t0);
        }
        assert!(a.poll_ready(t0).nodes.is_empty());
        a.set_flushing(true);
        assert_eq!(a.poll_ready(t0).nodes, BTreeSet::from([0, 1]));
        let d0 = a.drain(0, t0, usize::MAX, enc);
        assert_eq!(d0.len(), 2, "partitions 0 and 2 lead by node 0");
        let d1 = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d1.len(), 1);
    }

    #[test]
    fn max_bytes_splits_requests_but_takes_one_batch_at_least() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_flushing(true);
        for p in 0..4 {
            a.set_leader(&tp(p), Some(1), 0);
            a.append(&tp(p), 7u32, 10, t0);
        }
        // enc() makes 5 bytes per one-record batch.
        let d = a.drain(1, t0, 1, enc);
        assert_eq!(d.len(), 1);
        let d = a.drain(1, t0, 10, enc);
        assert_eq!(d.len(), 2);
        let d = a.drain(1, t0, 100, enc);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn drain_rotates_partitions_for_fairness() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_flushing(true);
        let mut firsts = BTreeSet::new();
        for round in 0..3 {
            for p in 0..3 {
                a.set_leader(&tp(p), Some(1), 0);
                a.append(&tp(p), round, 10, t0);
            }
            let d = a.drain(1, t0, 1, enc);
            firsts.insert(d[0].tp.partition);
            for x in d {
                a.handle_success(&x.tp, x.id);
            }
        }
        assert_eq!(firsts.len(), 3, "each partition went first once");
    }

    #[test]
    fn retry_keeps_bytes_and_sequence_and_goes_first_after_in_flight_returns() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_producer(
            &tp(0),
            ProducerIdentity {
                producer_id: 7,
                epoch: 0,
            },
            0,
        );
        a.set_flushing(true);
        // Three batches of 9, 9 and 2 records.
        for i in 0..20u32 {
            a.append(&tp(0), i, 100, t0);
        }
        let d1 = a.drain(1, t0, usize::MAX, enc).remove(0);
        let d2 = a.drain(1, t0, usize::MAX, enc).remove(0);
        assert_eq!(&d1.data.to_bytes()[..4], &0i32.to_be_bytes());
        assert_eq!(&d2.data.to_bytes()[..4], &9i32.to_be_bytes());
        assert_eq!(a.partition(&tp(0)).unwrap().next_sequence(), 18);
        // The first fails; the second is still in flight: nothing may be sent (rewind).
        let out = a.handle_failure(&tp(0), d1.id, RETRY, t0);
        let FailureOutcome::Retrying { retry_at } = out else {
            panic!("{out:?}")
        };
        assert_eq!(retry_at, t0 + Duration::from_millis(100));
        let later = t0 + Duration::from_secs(1);
        assert!(a.drain(1, later, usize::MAX, enc).is_empty());
        // The second fails too (out of order behind the first, say).
        a.handle_failure(&tp(0), d2.id, RETRY, later);
        assert!(a.drain(1, later, usize::MAX, enc).is_empty(), "backoff");
        let later = later + Duration::from_millis(100);
        // Now the first goes first, with the same bytes and sequence, attempt 2.
        let r1 = a.drain(1, later, usize::MAX, enc).remove(0);
        assert_eq!(r1.id, d1.id);
        assert_eq!(r1.data.to_bytes(), d1.data.to_bytes());
        assert_eq!(r1.attempt, 2);
        let r2 = a.drain(1, later, usize::MAX, enc).remove(0);
        assert_eq!(r2.id, d2.id);
        assert_eq!(r2.data.to_bytes(), d2.data.to_bytes());
        // And the third gets the next sequence.
        let r3 = a.drain(1, later, usize::MAX, enc).remove(0);
        assert_eq!(&r3.data.to_bytes()[..4], &18i32.to_be_bytes());
        assert_eq!(a.partition(&tp(0)).unwrap().next_sequence(), 20);
    }

    #[test]
    fn non_retriable_or_timed_out_failures_hand_the_batch_back() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let d = a.drain(1, t0, usize::MAX, enc).remove(0);
        let out = a.handle_failure(
            &tp(0),
            d.id,
            Failure {
                retriable: false,
                outcome_unknown: false,
            },
            t0,
        );
        assert!(matches!(out, FailureOutcome::Failed(b) if !b.is_possibly_persisted()));
        // Retriable, but past the delivery timeout, and the outcome unknown.
        a.append(&tp(0), 2u32, 10, t0);
        let d = a.drain(1, t0, usize::MAX, enc).remove(0);
        let out = a.handle_failure(
            &tp(0),
            d.id,
            Failure {
                retriable: true,
                outcome_unknown: true,
            },
            t0 + Duration::from_secs(30),
        );
        assert!(matches!(out, FailureOutcome::Failed(b) if b.is_possibly_persisted()));
        assert!(a.is_empty());
        // Unknown batch.
        assert!(matches!(
            a.handle_failure(&tp(0), d.id, RETRY, t0),
            FailureOutcome::Unknown
        ));
    }

    #[test]
    fn retries_are_bounded() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.retries = 2;
        let mut a = Accumulator::new(c, 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let mut now = t0;
        for attempt in 1..=3 {
            let d = a.drain(1, now, usize::MAX, enc).remove(0);
            assert_eq!(d.attempt, attempt);
            match a.handle_failure(&tp(0), d.id, RETRY, now) {
                FailureOutcome::Retrying { retry_at } => {
                    assert!(attempt < 3);
                    now = retry_at;
                }
                FailureOutcome::Failed(_) => assert_eq!(attempt, 3, "two retries, then fail"),
                FailureOutcome::Unknown => panic!(),
            }
        }
    }

    #[test]
    fn backoff_grows_per_attempt() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..5 {
            let d = a.drain(1, now, usize::MAX, enc).remove(0);
            let FailureOutcome::Retrying { retry_at } = a.handle_failure(&tp(0), d.id, RETRY, now)
            else {
                panic!()
            };
            delays.push((retry_at - now).as_millis());
            now = retry_at;
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1000]);
    }

    #[test]
    fn migration_waits_for_old_leader_then_moves_buffer() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 5);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let d = a.drain(1, t0, usize::MAX, enc).remove(0);
        a.append(&tp(0), 2u32, 10, t0);
        // Stale metadata is ignored; a newer epoch moves the partition.
        assert!(!a.set_leader(&tp(0), Some(3), 4));
        assert!(a.set_leader(&tp(0), Some(2), 6));
        // Batch 1 is still in flight to node 1: nothing goes to node 2 yet.
        assert!(a.poll_ready(t0).nodes.is_empty());
        assert!(a.drain(2, t0, usize::MAX, enc).is_empty());
        // Node 1 answers NOT_LEADER: retry on node 2, in order.
        a.handle_failure(&tp(0), d.id, RETRY, t0);
        let now = t0 + Duration::from_millis(100);
        assert_eq!(a.poll_ready(now).nodes, BTreeSet::from([2]));
        let r = a.drain(2, now, usize::MAX, enc).remove(0);
        assert_eq!(r.id, d.id);
        let r2 = a.drain(2, now, usize::MAX, enc).remove(0);
        assert_ne!(r2.id, d.id);
    }

    #[test]
    fn unknown_leader_is_reported() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.append(&tp(0), 1u32, 10, t0);
        let r = a.poll_ready(t0 + Duration::from_secs(1));
        assert_eq!(r.unknown_leaders, vec![tp(0)]);
        assert!(r.nodes.is_empty());
    }

    #[test]
    fn expiry_spares_in_flight_batches() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let d = a.drain(1, t0, usize::MAX, enc).remove(0);
        a.append(&tp(0), 2u32, 10, t0);
        a.append(&tp(1), 3u32, 10, t0);
        let r = a.poll_ready(t0);
        assert_eq!(r.next_check, Some(t0 + Duration::from_millis(10)));
        assert!(a.expire(t0 + Duration::from_secs(29)).is_empty());
        let expired = a.expire(t0 + Duration::from_secs(30));
        let mut recs: Vec<u32> = expired.into_iter().flat_map(|b| b.into_records()).collect();
        recs.sort();
        assert_eq!(recs, vec![2, 3]);
        assert!(a.handle_success(&tp(0), d.id).is_some());
        assert!(a.is_empty());
    }

    #[test]
    fn in_flight_limit_one_keeps_strict_order() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.max_in_flight_per_partition = 1;
        let mut a = Accumulator::new(c, 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 900, t0);
        a.append(&tp(0), 2u32, 900, t0);
        let d = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d.len(), 1);
        assert!(a.drain(1, t0, usize::MAX, enc).is_empty());
        a.handle_success(&tp(0), d[0].id);
        assert_eq!(a.drain(1, t0, usize::MAX, enc).len(), 1);
    }

    #[test]
    fn abort_waiting_returns_everything_not_in_flight() {
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_leader(&tp(0), Some(1), 0);
        a.set_flushing(true);
        a.append(&tp(0), 1u32, 10, t0);
        let _d = a.drain(1, t0, usize::MAX, enc);
        a.append(&tp(0), 2u32, 10, t0);
        let w = a.abort_waiting();
        assert_eq!(w.len(), 1);
        assert_eq!(a.in_flight(), 1);
        assert_eq!(a.record_count(), 1);
    }

    /// Seeded random interleavings of appends, drains, responses (success, retriable and fatal
    /// failures, unknown outcomes), leader moves, expiry and time. Invariants: every record
    /// completes exactly once; with one batch in flight per partition, successes per partition
    /// follow append order and sequence numbers are contiguous, assigned once and never reused.
    #[test]
    fn randomized_interleavings_keep_every_record_and_the_order() {
        use std::collections::BTreeMap as Map;
        for seed in 0..300u64 {
            let mut rng = SmallRng::new(seed);
            let mut c = cfg();
            c.max_in_flight_per_partition = 1;
            c.delivery_timeout = Duration::from_secs(5);
            let mut a: Accumulator<u32> = Accumulator::new(c, seed);
            let t0 = Instant::now();
            let mut now = t0;
            let parts = 3;
            for p in 0..parts {
                a.set_leader(&tp(p), Some(p % 2), 0);
                a.set_producer(
                    &tp(p),
                    ProducerIdentity {
                        producer_id: 1,
                        epoch: 0,
                    },
                    0,
                );
            }
            let mut epoch = 0;
            let mut next = 0u32;
            let mut appended: Map<i32, Vec<u32>> = Map::new();
            let mut done: Map<u32, bool> = Map::new();
            let mut acked: Map<i32, Vec<u32>> = Map::new();
            let mut acked_seq: Map<i32, Vec<(i32, usize)>> = Map::new();
            let mut in_flight: Vec<(TopicPartition, BatchId)> = Vec::new();
            let mut seqs: Map<BatchId, i32> = Map::new();
            for _ in 0..400 {
                match rng.below(10) {
                    0..=3 => {
                        let p = rng.below(parts as u64) as i32;
                        a.append(&tp(p), next, 100 + rng.below(400) as usize, now);
                        appended.entry(p).or_default().push(next);
                        next += 1;
                    }
                    4 => now += Duration::from_millis(rng.below(300)),
                    5 => {
                        epoch += 1;
                        let p = rng.below(parts as u64) as i32;
                        a.set_leader(&tp(p), Some(rng.below(2) as i32), epoch);
                    }
                    6 => {
                        for b in a.expire(now) {
                            for r in b.into_records() {
                                assert!(done.insert(r, false).is_none(), "seed {seed}: {r} twice");
                            }
                        }
                    }
                    _ => {
                        if !in_flight.is_empty() && rng.below(2) == 0 {
                            let i = rng.below(in_flight.len() as u64) as usize;
                            let (t, id) = in_flight.swap_remove(i);
                            match rng.below(4) {
                                0 | 1 => {
                                    let b = a.handle_success(&t, id).expect("in flight");
                                    let p = t.partition;
                                    acked_seq
                                        .entry(p)
                                        .or_default()
                                        .push((b.base_sequence(), b.record_count()));
                                    assert_eq!(seqs[&id], b.base_sequence(), "seed {seed}");
                                    for r in b.into_records() {
                                        assert!(done.insert(r, true).is_none());
                                        acked.entry(p).or_default().push(r);
                                    }
                                }
                                x => {
                                    let f = Failure {
                                        retriable: x == 2 || rng.below(2) == 0,
                                        outcome_unknown: rng.below(2) == 0,
                                    };
                                    if let FailureOutcome::Failed(b) =
                                        a.handle_failure(&t, id, f, now)
                                    {
                                        for r in b.into_records() {
                                            assert!(done.insert(r, false).is_none());
                                        }
                                    }
                                }
                            }
                        } else {
                            for node in a.poll_ready(now).nodes {
                                for d in a.drain(node, now, usize::MAX, enc) {
                                    let seq = i32::from_be_bytes(
                                        d.data.to_bytes()[..4].try_into().unwrap(),
                                    );
                                    if let Some(old) = seqs.insert(d.id, seq) {
                                        assert_eq!(old, seq, "seed {seed}: sequence changed");
                                    }
                                    in_flight.push((d.tp, d.id));
                                }
                            }
                        }
                    }
                }
            }
            // Drain everything: answer all successfully until empty (or expired).
            let mut guard = 0;
            while !a.is_empty() {
                guard += 1;
                assert!(guard < 10_000, "seed {seed}: stuck");
                for (t, id) in in_flight.drain(..) {
                    let b = a.handle_success(&t, id).expect("in flight");
                    acked_seq
                        .entry(t.partition)
                        .or_default()
                        .push((b.base_sequence(), b.record_count()));
                    for r in b.into_records() {
                        assert!(done.insert(r, true).is_none());
                        acked.entry(t.partition).or_default().push(r);
                    }
                }
                now += Duration::from_millis(50);
                for b in a.expire(now) {
                    for r in b.into_records() {
                        assert!(done.insert(r, false).is_none());
                    }
                }
                for node in a.poll_ready(now).nodes {
                    for d in a.drain(node, now, usize::MAX, enc) {
                        in_flight.push((d.tp, d.id));
                    }
                }
            }
            assert_eq!(
                done.len() as u32,
                next,
                "seed {seed}: every record completed once"
            );
            for (p, recs) in &acked {
                let order: Vec<u32> = appended[p]
                    .iter()
                    .copied()
                    .filter(|r| recs.contains(r))
                    .collect();
                assert_eq!(recs, &order, "seed {seed}: partition {p} order");
                // Acknowledged sequences increase; a failed batch leaves a gap, never a reuse.
                let seq = &acked_seq[p];
                for w in seq.windows(2) {
                    assert!(w[1].0 >= w[0].0 + w[0].1 as i32, "seed {seed}: {seq:?}");
                }
            }
        }
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 10), 8);
    }

    /// Sizes (estimated bytes) of the partition's batches, oldest first.
    fn batch_sizes(a: &Accumulator<u32>, p: i32) -> Vec<usize> {
        a.partition(&tp(p))
            .map(|b| b.batches.iter().map(|x| x.size).collect())
            .unwrap_or_default()
    }

    #[test]
    fn batches_close_at_batch_size_while_the_partition_keeps_up() {
        // The driver's shape without a backlog: drain after every append, answers come back
        // before the in-flight slots run out. The backlog cap must not matter here.
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_backlog_batch_size(50_000);
        assert_eq!(a.backlog_batch_size(), 50_000);
        a.set_leader(&tp(0), Some(1), 0);
        let mut sent = Vec::new();
        for i in 0..200u32 {
            a.append(&tp(0), i, 100, t0);
            for d in a.drain(1, t0, usize::MAX, enc) {
                assert!(a.partition(&tp(0)).unwrap().in_flight() < 5);
                let done = a.handle_success(&d.tp, d.id).unwrap();
                assert!(done.estimated_size() <= 1000, "{}", done.estimated_size());
                sent.push(done.record_count());
            }
        }
        // 61 + 9 * 100 <= 1000: every full batch has nine records, as without the cap.
        assert_eq!(sent, vec![9; 22]);
    }

    #[test]
    fn a_backlogged_partition_grows_its_open_batch_up_to_the_cap() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.idempotent = true;
        let mut a = Accumulator::new(c, 1);
        a.set_backlog_batch_size(3_000);
        a.set_default_producer(
            ProducerIdentity {
                producer_id: 7,
                epoch: 0,
            },
            0,
        );
        a.set_leader(&tp(0), Some(1), 0);
        // Five full batches of nine records fill the in-flight slots (the 46th record closes
        // the fifth and opens the next batch).
        let mut in_flight = Vec::new();
        for i in 0..46u32 {
            a.append(&tp(0), i, 100, t0);
            in_flight.extend(a.drain(1, t0, usize::MAX, enc));
        }
        assert_eq!(in_flight.len(), 5);
        assert_eq!(a.partition(&tp(0)).unwrap().in_flight(), 5);
        // Backlogged: the open batch takes records past batch.size (1000), up to 3000.
        for i in 46..100u32 {
            a.append(&tp(0), i, 100, t0);
            assert!(a.drain(1, t0, usize::MAX, enc).is_empty());
        }
        // 61 + 29 * 100 = 2961 <= 3000; the 30th record opened the next batch, which keeps
        // growing too (a closed batch waits ahead of it): 55 = 29 + 26.
        let sizes = batch_sizes(&a, 0);
        assert_eq!(sizes[5..], [61 + 2900, 61 + 2600]);
        // A free slot carries the grown batch whole, with the next sequence numbers.
        a.handle_success(&tp(0), in_flight[0].id).unwrap();
        let d = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].record_count, 29);
        let big = &a.partition(&tp(0)).unwrap().batches[4];
        assert_eq!(big.base_sequence(), 45);
        assert_eq!(a.partition(&tp(0)).unwrap().next_sequence(), 45 + 29);
        // Once slots are free and nothing waits, batches close at batch.size again.
        for x in in_flight.iter().skip(1) {
            a.handle_success(&tp(0), x.id).unwrap();
        }
        a.handle_success(&tp(0), d[0].id).unwrap();
        let d = a.drain(1, t0, usize::MAX, enc);
        assert_eq!(d[0].record_count, 26);
        let mut counts = Vec::new();
        for i in 100..120u32 {
            a.append(&tp(0), i, 100, t0);
            counts.extend(
                a.drain(1, t0, usize::MAX, enc)
                    .iter()
                    .map(|d| d.record_count),
            );
        }
        assert_eq!(counts, [9, 9]);
        assert_eq!(batch_sizes(&a, 0), [61 + 2600, 961, 961, 61 + 200]);
    }

    #[test]
    fn records_behind_a_waiting_batch_grow_the_open_one() {
        // No slot is taken, but a closed batch has not gone yet (no drain between appends):
        // its followers wait behind it anyway and collect in one batch.
        let t0 = Instant::now();
        let mut a = Accumulator::new(cfg(), 1);
        a.set_backlog_batch_size(10_000);
        a.set_leader(&tp(0), Some(1), 0);
        for i in 0..50u32 {
            a.append(&tp(0), i, 100, t0);
        }
        assert_eq!(batch_sizes(&a, 0), [61 + 900, 61 + 4100]);
        // Without a cap (the default) the same appends close at batch.size.
        let mut b = Accumulator::new(cfg(), 1);
        assert_eq!(b.backlog_batch_size(), 1000);
        b.set_leader(&tp(0), Some(1), 0);
        for i in 0..50u32 {
            b.append(&tp(0), i, 100, t0);
        }
        assert_eq!(batch_sizes(&b, 0), [961, 961, 961, 961, 961, 561]);
    }
}
