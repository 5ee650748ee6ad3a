//! The producer's background task: owns the [`Accumulator`], partitions incoming records,
//! drains ready batches into Produce requests per broker (the *broker sinks*: at most
//! `max.in.flight.requests.per.connection` requests outstanding per broker), handles responses,
//! retries, metadata refreshes, migrations, expiry, flush and close.
//!
//! One task, no locks: everything the task knows arrives as a [`Command`] (from the
//! [`Producer`](super::Producer) handles) or as an [`Event`] (a request or lookup it started
//! finishing). Every record it accepts leaves exactly once, with a result: acknowledged in
//! `Driver::succeed` or failed in `Driver::fail_record` (handed back), both through
//! `Driver::finish` (its `buffer.memory` and its flush generation); that is what makes "never
//! drop a record silently" checkable in few places. Records are encoded into their batch as
//! they are appended (see `Accepted`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use krust_core::accumulator::{
    Accumulator, AccumulatorConfig, BatchId, Drained, Failure, FailureOutcome, NodeId,
    ProducerBatch, TopicPartition,
};
use krust_core::backoff::BackoffPolicy;
use krust_core::idempotence::{
    bumped, classify_produce, IdempotenceState, InitFailure, ProduceVerdict, SequenceFault,
};
use krust_core::partitioner::{BuiltinPartitioner, TopicPartitions};
use krust_core::window::{InFlightWindow, Sent};
use krust_wire::frame::{PartitionBatch, ProduceBatches};
use krust_wire::record::{BatchBuilder, EncodedBatch, BATCH_HEADER_LEN};
use krust_wire::{classify, ApiKey, ErrorCode, Retry};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, trace, warn};

use super::config::{Acks, ProducerConfig};
use super::pool::BufferPool;
use super::record::{Persistence, ProduceError, ProduceErrorKind, ProducerRecord, RecordMetadata};
use crate::cluster::{Cluster, ClusterMetadata};
use crate::error::Error;

#[path = "txn.rs"]
pub(crate) mod txn;

#[path = "sticky.rs"]
mod sticky;
use sticky::StickyMirror;

use txn::{TxnCommand, TxnDriver, TxnReply, TxnShared};

/// Records not completed yet, counted per flush generation: generations only grow, so the
/// count of the current one is at the back and a completion's is near the front (a
/// `BTreeMap` lookup per record before).
#[derive(Default)]
struct Outstanding(VecDeque<(u64, usize)>);

impl Outstanding {
    fn add(&mut self, gen: u64) {
        match self.0.back_mut() {
            Some((g, n)) if *g == gen => *n += 1,
            _ => self.0.push_back((gen, 1)),
        }
    }

    fn remove(&mut self, gen: u64) {
        if let Some(i) = self.0.iter().position(|(g, _)| *g == gen) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.remove(i);
            }
        }
    }

    /// The oldest generation with a record not completed.
    fn oldest(&self) -> Option<u64> {
        self.0.front().map(|(g, _)| *g)
    }
}

/// Largest capacity a partition's first batch builder starts with (see `Driver::route`).
const FIRST_BUILDER_CAPACITY: usize = 64 * 1024;

/// The batch-buffer pool keeps at most `buffer.memory / POOL_SHARE` bytes of spare buffers.
const POOL_SHARE: usize = 4;

/// Commands of a burst handled at least, once a batch stopped taking records, before it is
/// sent mid-burst (a pass over the accumulator per closed batch would cost a lot per record
/// with many partitions and small batches).
const SEND_ON_CLOSE_AFTER: usize = 256;

/// Commands of one burst handled between two passes that send the batches they filled.
const BURST_SEND_EVERY: usize = 4096;

/// What a [`DeliveryFuture`](super::DeliveryFuture) resolves to. On success the metadata's
/// topic is the record's own topic name, moved. The rare error is boxed so a result (and a
/// delivery slot) stays small.
pub(crate) type Delivery = Result<RecordMetadata, Box<ProduceError>>;

use super::delivery::{DeliverySlot, Resolutions};

/// A record accepted by `send`, on its way.
///
/// Records the driver will never see (still queued when it is gone, or waiting for metadata
/// when it is dropped) are given up with [`Pending::close`], which hands the record back. A
/// `Pending` dropped otherwise still ends its future (without a result: see
/// [`DeliveryFuture`](super::DeliveryFuture)).
pub(crate) struct Pending {
    pub record: ProducerRecord,
    /// Where its result goes (a slot of a shared chunk, not a channel per record). Reading a
    /// delivered result is never refused by tokio's cooperative budget (an application polling
    /// finished deliveries with `now_or_never` between sends sees every one that is finished).
    slot: DeliverySlot,
    /// Encoded size (upper bound): what `batch.size` counts (at most `u32::MAX`: larger
    /// records are refused by `send`).
    pub size: u32,
    /// Permits of `buffer.memory` taken (and forgotten) for it: its size plus
    /// [`RECORD_OVERHEAD`](super::RECORD_OVERHEAD). They go back when it completes.
    pub reserved: u32,
}

/// A record the driver took from the queue: when, and in which flush generation. (Kept out of
/// [`Pending`], which the sending thread writes: the fewer bytes a record takes across the
/// queue, the fewer cache lines move between the two threads.)
pub(crate) struct Arrived {
    p: Pending,
    at: Instant,
    gen: u64,
}

impl Pending {
    pub(crate) fn new(
        record: ProducerRecord,
        slot: DeliverySlot,
        size: u32,
        reserved: u32,
    ) -> Self {
        Pending {
            record,
            slot,
            size,
            reserved,
        }
    }

    /// Its delivery slot (for the command queue to attach).
    pub(crate) fn slot_mut(&mut self) -> &mut DeliverySlot {
        &mut self.slot
    }

    /// Gives the record up because the producer task is gone: [`ProduceErrorKind::Closed`],
    /// possibly persisted (as far as the application can tell), handing the record back.
    pub(crate) fn close(self) {
        let Pending {
            record, mut slot, ..
        } = self;
        let partition = record.partition;
        slot.resolve(Err(Box::new(ProduceError::new(
            record,
            partition,
            ProduceErrorKind::Closed,
            Persistence::PossiblyPersisted,
        ))));
    }
}

/// A record appended to a batch: what completing it takes. Its key, value and headers are
/// already encoded into the batch's [`BatchBuilder`] (the bytes are read once, while the record
/// is fresh from the queue, and the record's buffers are released then; a value of 512 bytes
/// and up is kept by reference until the batch is finished, and one of 4 KiB and up until the
/// batch is acknowledged, written from the application's buffer: [`EncodedBatch`]); a failed
/// record is rebuilt from the batch's bytes to be handed back ([`Driver::records_of`]). Dropped without
/// a result (the driver task dropped with the batch in flight), its slot ends the future
/// without one ([`ProduceErrorKind::Closed`], possibly persisted).
pub(crate) struct Accepted {
    slot: DeliverySlot,
    /// The record's own topic name, moved to its result (see `succeed`).
    topic: Arc<str>,
    timestamp: i64,
    enqueued: Instant,
    gen: u64,
    reserved: usize,
    /// Whether the application chose the partition (the record handed back says so).
    explicit_partition: bool,
}

/// A partition's batch that is taking records, and its builder.
#[derive(Default)]
struct OpenBatch {
    batch: Option<(BatchId, BatchBuilder)>,
    /// Encoded length of the partition's last batch: the capacity a new builder starts with.
    last_len: usize,
}

/// What the handles ask of the driver.
pub(crate) enum Command {
    Send(Pending),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
    /// A transactional call (transactional producers only).
    Txn(TxnCommand, TxnReply),
}

/// Counters, shared with the handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub batches: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
    /// The in-flight window of the broker that answered last (0: none yet).
    pub window: AtomicU64,
}

/// How a Produce request ended.
enum Outcome {
    /// acks=1/all: the broker's answer.
    Response(ProduceResponse),
    /// acks=0: written to the socket.
    Written,
    /// Failed; `sent` says whether the request may have reached the broker.
    Failed { error: Error, sent: bool },
}

enum Event {
    Produced {
        node: NodeId,
        batches: Vec<(TopicPartition, BatchId)>,
        outcome: Outcome,
        /// Latency probe (`KRUST_LAT_PROBE`): drained, first polled, depth, records.
        probe: Option<(Instant, Instant, u32, u32)>,
        /// The request as its broker's in-flight window marked it, and its connection's
        /// round-trip floor.
        mark: Sent,
        floor: Option<Duration>,
    },
    Topic {
        name: String,
        result: Result<(), Error>,
    },
    Refreshed(Result<Arc<ClusterMetadata>, Error>),
    /// InitProducerId finished: the identity, or why not.
    ProducerId(Result<(i64, i16), (InitFailure, String)>),
    /// A transaction request (its machine id) finished.
    Txn {
        id: u64,
        result: Result<krust_core::txn::TxnResponse, krust_core::txn::TransportFailure>,
    },
    /// The transaction protocol was chosen (or the cluster could not be asked).
    TxnProtocol(Result<krust_core::txn::TxnProtocol, String>),
}

struct TopicState {
    available: Vec<i32>,
    sticky: StickyMirror,
    /// Every partition of the topic, built once (appending a record then takes no reference
    /// count); its length is the topic's partition count.
    partitions: Vec<TopicPartition>,
    /// Per partition: the open batch's builder.
    open: Vec<OpenBatch>,
}

pub(crate) struct Driver {
    cluster: Cluster,
    cfg: ProducerConfig,
    acc: Accumulator<Accepted>,
    /// Builders of batches that stopped taking records before their first send (a newer batch
    /// opened behind them), by batch.
    closed: HashMap<BatchId, BatchBuilder>,
    partitioner: BuiltinPartitioner,
    /// Known topics: name to index in `topic_states` (a cheap hash; looked up when a record's
    /// name is not the last one's, see `topic_index`).
    topics: HashMap<Arc<str>, usize, BuildHasherDefault<FnvHasher>>,
    topic_states: Vec<TopicState>,
    /// The last routed record's topic name and its index (see `topic_index`).
    last_topic: Option<(Arc<str>, usize)>,
    /// Buffers for storing a batch's results (kept between batches).
    resolutions: Resolutions,
    /// Keys and values of the records encoded in this burst, released together after it
    /// ([`Driver::release_spent`]). An application that sends clones of one `Bytes` changes
    /// its shared count with every send: releasing each clone right after its record was
    /// encoded would move that count's cache line between the two threads once per record.
    spent: Vec<Bytes>,
    /// A batch stopped taking records during the current burst (see `send_mid_burst`).
    closed_in_burst: bool,
    /// Records for topics whose metadata is not known yet.
    waiting: HashMap<String, VecDeque<Arrived>>,
    lookups: HashSet<String>,
    lookup_retry_at: HashMap<String, Instant>,
    last_error: HashMap<String, String>,
    md_seen: Option<Arc<ClusterMetadata>>,
    refresh_in_flight: bool,
    refresh_wanted: bool,
    refresh_not_before: Instant,
    /// Each broker's Produce requests in flight and the window they keep to
    /// (`adaptive_in_flight`).
    in_flight: HashMap<NodeId, InFlightWindow>,
    events: FuturesUnordered<BoxFuture<'static, Event>>,
    gen: u64,
    outstanding: Outstanding,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    close_waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
    dropped: bool,
    stats: Arc<Stats>,
    /// Idempotence (`None` when off): the producer identity and InitProducerId requests.
    idem: Option<IdempotenceState>,
    /// Drained partitions waiting for a fresh identity (sequence reset).
    resets_waiting: Vec<TopicPartition>,
    /// Partitions answered UNKNOWN_PRODUCER_ID under an identity other than the producer's
    /// current one (a local KIP-360 epoch bump): the broker does not know the producer id at
    /// all (a broker that lost its producer state, as tansu after a restart), so their reset
    /// takes a fresh id from InitProducerId instead of another bump.
    fresh_id_wanted: std::collections::HashSet<TopicPartition>,
    /// Transactions (`None` without `transactional.id`). The producer identity then comes
    /// from the transaction machine, producer-wide, and `idem` is `None`.
    txn: Option<TxnDriver>,
    /// `buffer.memory`, and the permits of completed records not given back yet (returned in
    /// bulk, once per wake-up, by [`Driver::release_memory`]).
    memory: Arc<Semaphore>,
    to_release: usize,
    /// Latency probe of the answer being handled (`KRUST_LAT_PROBE`).
    probe: Option<super::probe::RequestProbe>,
    /// Record bytes that can make a batch sendable, from the last readiness pass: queued
    /// records that add up to this wake the driver in lazy mode.
    room: usize,
    /// Large batch buffers recycled from batch to batch.
    pool: BufferPool,
}

impl Drop for Driver {
    /// The task dropped before it finished (a runtime shutting down): records not sent yet are
    /// given up with [`ProduceErrorKind::Closed`], handed back; those in flight end without a
    /// result (possibly persisted).
    fn drop(&mut self) {
        self.abort_unsent(ProduceErrorKind::Closed);
    }
}

impl Driver {
    pub(crate) fn new(
        cluster: Cluster,
        cfg: ProducerConfig,
        stats: Arc<Stats>,
        txn_shared: Arc<TxnShared>,
        memory: Arc<Semaphore>,
    ) -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x006b_7275_7374);
            h.finish()
        };
        let acc_cfg = AccumulatorConfig {
            batch_size: cfg.batch_size,
            linger: cfg.linger,
            delivery_timeout: cfg.delivery_timeout,
            max_in_flight_per_partition: cfg.max_in_flight,
            retries: cfg.retries,
            backoff: BackoffPolicy::new(cfg.client.retry_backoff, cfg.client.retry_backoff_max),
            idempotent: cfg.idempotence(),
        };
        let backoff = BackoffPolicy::new(cfg.client.retry_backoff, cfg.client.retry_backoff_max);
        let txn = cfg.transactional_id.as_deref().map(|id| {
            TxnDriver::new(
                id,
                cfg.transaction_timeout,
                backoff,
                seed.rotate_left(47),
                txn_shared,
            )
        });
        let idem = (cfg.idempotence() && txn.is_none()).then(|| {
            IdempotenceState::new(
                BackoffPolicy::new(cfg.client.retry_backoff, cfg.client.retry_backoff_max),
                seed.rotate_left(33),
                cfg.first_sequence,
                Instant::now(),
            )
        });
        let pool = BufferPool::new(cfg.buffer_memory / POOL_SHARE);
        Driver {
            partitioner: BuiltinPartitioner::new(cfg.batch_size, cfg.partitioner_ignore_keys, seed),
            acc: {
                let mut acc = Accumulator::new(acc_cfg, seed.rotate_left(17));
                acc.set_backlog_batch_size(cfg.effective_backlog_batch_size());
                acc
            },
            cluster,
            cfg,
            closed: HashMap::new(),
            topics: HashMap::default(),
            topic_states: Vec::new(),
            last_topic: None,
            resolutions: Resolutions::default(),
            spent: Vec::new(),
            closed_in_burst: false,
            waiting: HashMap::new(),
            lookups: HashSet::new(),
            lookup_retry_at: HashMap::new(),
            last_error: HashMap::new(),
            md_seen: None,
            refresh_in_flight: false,
            refresh_wanted: false,
            refresh_not_before: Instant::now(),
            in_flight: HashMap::new(),
            events: FuturesUnordered::new(),
            gen: 0,
            outstanding: Outstanding::default(),
            flush_waiters: Vec::new(),
            close_waiters: Vec::new(),
            closing: false,
            dropped: false,
            stats,
            idem,
            resets_waiting: Vec::new(),
            fresh_id_wanted: Default::default(),
            txn,
            memory,
            to_release: 0,
            probe: None,
            room: usize::MAX,
            pool,
        }
    }

    /// Runs until closed (or every handle is dropped) and every accepted record is completed.
    pub(crate) async fn run(mut self, mut rx: super::queue::CommandRx) {
        let mut rx_open = true;
        loop {
            let now = Instant::now();
            self.txn_forget_added();
            self.poll_metadata_snapshot();
            self.release_spent();
            self.expire(now);
            if self.dropped {
                self.abort_unsent(ProduceErrorKind::Closed);
            }
            let idem_next = self.drive_idempotence(now);
            let txn_next = self.drive_txn(now);
            let next = [self.send_ready(now), idem_next, txn_next]
                .into_iter()
                .flatten()
                .min();
            self.release_memory();
            self.check_flushes();
            if (self.closing || self.dropped) && self.is_idle() {
                break;
            }
            // Lazy command queue while the timer fires within linger.ms anyway: records
            // queued meanwhile are picked up then, with their batches opened at their arrival,
            // unless they add up to enough to make a batch sendable.
            let lazy = !self.cfg.linger.is_zero()
                && !self.closing
                && !self.dropped
                && next.is_some_and(|t| t <= now + self.cfg.linger);
            rx.set_lazy(lazy.then_some(self.room));
            let sleep_until = next.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                Some(ev) = self.events.next(), if !self.events.is_empty() => {
                    self.handle_event(ev);
                    // Take whatever else finished, without waiting.
                    while let Some(Some(ev)) = self.events.next().now_or_never() {
                        self.handle_event(ev);
                    }
                }
                cmds = rx.recv_many(), if rx_open => {
                    match cmds {
                        Some(mut cmds) => {
                            // A burst at a time (one readiness pass and one clock read per
                            // burst); in a long burst, the batches it filled are sent every
                            // `BURST_SEND_EVERY` commands so sending keeps up.
                            let now = rx.first_unwoken().unwrap_or_else(Instant::now);
                            let mut since_send = 0;
                            for cmd in cmds.drain(..) {
                                self.handle_command(cmd, now);
                                since_send += 1;
                                // A batch that stopped taking records goes out while its bytes
                                // are still in the cache.
                                if since_send == BURST_SEND_EVERY
                                    || (self.closed_in_burst && since_send >= SEND_ON_CLOSE_AFTER)
                                {
                                    self.send_mid_burst();
                                    since_send = 0;
                                }
                            }
                            self.release_spent();
                            rx.recycle(cmds);
                        }
                        None => {
                            rx_open = false;
                            if !self.closing {
                                debug!("every producer handle dropped: failing unsent records");
                                self.dropped = true;
                            }
                        }
                    }
                }
                _ = async {
                    match sleep_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => futures::future::pending::<()>().await,
                    }
                } => {}
            }
        }
        self.release_memory();
        debug_assert!(
            !self.acc.is_empty() || self.closed.is_empty(),
            "builders left behind by completed batches"
        );
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
        for (_, w) in self.flush_waiters.drain(..) {
            let _ = w.send(());
        }
        debug!("producer driver finished");
    }

    /// In a long burst: sends the batches filled so far (a request goes out when its future is
    /// first polled) and takes the answers already there, as one turn of the loop would.
    fn send_mid_burst(&mut self) {
        self.release_spent();
        self.send_ready(Instant::now());
        while let Some(Some(ev)) = self.events.next().now_or_never() {
            self.handle_event(ev);
        }
        self.release_memory();
    }

    /// Releases the keys and values of the records encoded since the last call (at most a
    /// burst's worth: see `BURST_SEND_EVERY`).
    fn release_spent(&mut self) {
        self.spent.clear();
        if self.spent.capacity() > 2 * BURST_SEND_EVERY {
            self.spent = Vec::new();
        }
    }

    /// Nothing buffered and no Produce request outstanding. (Metadata lookups may still be
    /// running: they are dropped with the driver, as nothing waits for them any more.)
    fn is_idle(&self) -> bool {
        self.acc.is_empty()
            && self.waiting.is_empty()
            && self.in_flight.values().all(|w| w.requests() == 0)
    }

    // ------------------------------------------------------------------ commands

    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Send(p) => self.accept(p, now),
            Command::Txn(cmd, reply) => self.handle_txn_command(cmd, reply),
            Command::Flush(w) => {
                let target = self.gen;
                self.gen += 1;
                self.flush_waiters.push((target, w));
                self.acc.set_flushing(true);
            }
            Command::Close(w) => {
                self.gen += 1;
                self.closing = true;
                self.close_waiters.push(w);
                self.acc.set_flushing(true);
            }
        }
    }

    /// A record from `send`: refused if the producer cannot take it, else routed.
    fn accept(&mut self, p: Pending, now: Instant) {
        let gen = self.gen;
        self.outstanding.add(gen);
        let refused = if self.dropped {
            Some(ProduceErrorKind::Closed)
        } else if let Some(reason) = self.fatal() {
            Some(ProduceErrorKind::Fatal(reason))
        } else {
            self.txn_refuse()
        };
        if let Some(kind) = refused {
            let p = Arrived { p, at: now, gen };
            self.fail(p, None, kind, Persistence::NotPersisted);
            return;
        }
        // The record goes on as it is (not wrapped in an `Arrived`, which would copy its
        // 152 bytes once more per record).
        self.route(p, now, gen, now);
    }

    /// Partitions and appends a record, or parks it until its topic's metadata is known.
    fn route(&mut self, p: Pending, at: Instant, gen: u64, now: Instant) {
        let Some(ti) = self.topic_index(&p.record.topic) else {
            let p = Arrived { p, at, gen };
            let topic = p.p.record.topic.clone();
            match self.waiting.get_mut(&*topic) {
                Some(parked) => parked.push_back(p),
                None => {
                    self.waiting.insert(topic.to_string(), VecDeque::from([p]));
                }
            }
            self.start_lookup(&topic, now);
            return;
        };
        let state = &mut self.topic_states[ti];
        let count = state.partitions.len() as i32;
        // From here on the driver's copy of the name: see `topic_index`.
        let topic_arc: &str = match state.partitions.first() {
            Some(tp) => &tp.topic,
            None => "",
        };
        let parts = TopicPartitions {
            count,
            available: &state.available,
        };
        let mut sticky = false;
        let partition = match p.record.partition {
            Some(x) => x,
            None => {
                let custom = self.cfg.partitioner.as_ref().and_then(|c| {
                    c.partition(
                        topic_arc,
                        p.record.key.as_deref(),
                        p.record.value.as_deref(),
                        parts,
                    )
                });
                match custom {
                    Some(x) => x,
                    None => {
                        sticky = p.record.key.is_none() || self.cfg.partitioner_ignore_keys;
                        if sticky {
                            state.sticky.partition(
                                &mut self.partitioner,
                                topic_arc,
                                p.record.key.as_deref(),
                                parts,
                            )
                        } else {
                            self.partitioner
                                .partition(topic_arc, p.record.key.as_deref(), parts)
                        }
                    }
                }
            }
        };
        if partition < 0 || partition >= count {
            self.fail(
                Arrived { p, at, gen },
                Some(partition),
                ProduceErrorKind::InvalidPartition { partitions: count },
                Persistence::NotPersisted,
            );
            return;
        }
        if self.txn.is_some() {
            let tp = state.partitions[partition as usize].clone();
            if let Err(kind) = self.txn_record_partition(&tp) {
                self.fail(
                    Arrived { p, at, gen },
                    Some(partition),
                    kind,
                    Persistence::NotPersisted,
                );
                return;
            }
        }
        let enqueued = at;
        let Pending {
            record:
                ProducerRecord {
                    topic,
                    partition: chosen,
                    key,
                    value,
                    headers,
                    timestamp,
                },
            slot,
            size,
            reserved,
        } = p;
        let size = size as usize;
        let timestamp = timestamp.unwrap_or(0);
        let entry = Accepted {
            slot,
            topic,
            timestamp,
            enqueued,
            gen,
            reserved: reserved as usize,
            explicit_partition: chosen.is_some(),
        };
        let state = &mut self.topic_states[ti];
        let tp = &state.partitions[partition as usize];
        let appended = self.acc.append(tp, entry, size, now);
        let open = &mut state.open[partition as usize];
        if appended.new_batch {
            if let Some((id, b)) = open.batch.take() {
                // It stopped taking records; it is encoded at its first send.
                self.closed.insert(id, b);
                self.closed_in_burst = true;
            }
            // The partition's last batch's size (a steady stream's batches are alike); for its
            // first, `batch.size` up to FIRST_BUILDER_CAPACITY (many partitions with a large
            // `batch.size` do not each hold that much before they show they need it); never
            // less than this record.
            let capacity = match open.last_len {
                0 => self.cfg.batch_size.min(FIRST_BUILDER_CAPACITY),
                last => last.min(self.cfg.batch_size),
            }
            .max(size);
            let buffer = self.pool.take(capacity.saturating_add(BATCH_HEADER_LEN));
            open.batch = Some((
                appended.batch,
                BatchBuilder::new(self.cfg.compression).with_buffer(buffer),
            ));
        }
        if !appended.new_batch
            && open
                .batch
                .as_ref()
                .is_none_or(|(id, _)| *id != appended.batch)
        {
            // Cannot happen (see `OpenBatch`); should it, the batch's builder is the one kept
            // for it, never a new one missing its earlier records.
            debug_assert!(
                false,
                "the open batch {:?} lost its builder",
                appended.batch
            );
            if let Some(b) = self.closed.remove(&appended.batch) {
                open.batch = Some((appended.batch, b));
            }
        }
        match &mut open.batch {
            Some((id, b)) if *id == appended.batch => {
                // Validated in `send` (sizes fit an i32); a batch cannot reach i32::MAX
                // records within `buffer.memory`.
                // A large value is kept by reference until the batch is written out (copied
                // then, while that part of the batch is in the cache); a value copied now is
                // handed back and released with the burst.
                match b.push_shared(timestamp, key.as_deref(), value, &headers) {
                    Ok((_, copied)) => self.spent.extend(copied),
                    Err(e) => warn!(error = %e, "record could not be encoded"),
                }
                self.spent.extend(key);
            }
            _ => {
                // An open batch's builder is the partition's from its creation until its first
                // send, which closes the batch: a new one is opened for the next record.
                warn!(batch = ?appended.batch, "no builder for the open batch");
            }
        }
        if sticky {
            state.sticky.appended(
                &mut self.partitioner,
                self.cfg.batch_size,
                &tp.topic,
                partition,
                size,
                appended.batch_full,
            );
        }
    }

    /// The index in `topic_states` of a record's topic, or `None` while the topic's metadata
    /// is unknown.
    ///
    /// The record's name is shared with the sending thread, which changes its reference count
    /// with every send and result, on the cache line that also holds the name's bytes:
    /// reading those bytes here for every record would pull that line back and forth between
    /// the two threads. A record whose name is the same allocation as the last one's (the
    /// usual case: `IntoTopic` hands out one allocation per name and thread) is recognised by
    /// its address alone.
    fn topic_index(&mut self, topic: &Arc<str>) -> Option<usize> {
        if let Some((theirs, index)) = &self.last_topic {
            if Arc::ptr_eq(theirs, topic) {
                return Some(*index);
            }
        }
        let index = *self.topics.get(&**topic)?;
        self.last_topic = Some((topic.clone(), index));
        Some(index)
    }

    // ------------------------------------------------------------------ metadata

    fn start_lookup(&mut self, topic: &str, now: Instant) {
        if self.lookups.contains(topic) || self.lookup_retry_at.get(topic).is_some_and(|t| now < *t)
        {
            return;
        }
        self.lookups.insert(topic.to_string());
        let cluster = self.cluster.clone();
        let name = topic.to_string();
        self.events.push(
            async move {
                let result = cluster.topic(&name).await.map(|_| ());
                Event::Topic { name, result }
            }
            .boxed(),
        );
    }

    fn poll_metadata_snapshot(&mut self) {
        let md = self.cluster.metadata();
        if self.md_seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &md)) {
            return;
        }
        self.apply_metadata(&md);
        self.md_seen = Some(md);
    }

    /// Takes leaders and partition counts for the topics we produce to from a snapshot, moves
    /// buffers whose leader changed (migration), and routes records that waited for a topic.
    fn apply_metadata(&mut self, md: &ClusterMetadata) {
        let now = Instant::now();
        let names: Vec<String> = self
            .topics
            .keys()
            .map(|t| t.to_string())
            .chain(self.waiting.keys().cloned())
            .collect();
        for name in names {
            let Some(t) = md.topics.get(&name) else {
                continue;
            };
            if t.error.is_some() || t.partitions.is_empty() {
                continue;
            }
            let arc: Arc<str> = match self.topics.get_key_value(name.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(name.as_str()),
            };
            let mut available: Vec<i32> = t
                .partitions
                .iter()
                .filter(|p| p.leader.is_some())
                .map(|p| p.partition)
                .collect();
            available.sort_unstable();
            let count = t
                .partitions
                .iter()
                .map(|p| p.partition + 1)
                .max()
                .unwrap_or(0);
            for p in &t.partitions {
                let tp = TopicPartition::new(arc.clone(), p.partition);
                if self.acc.set_leader(&tp, p.leader, p.leader_epoch) {
                    debug!(%tp, leader = ?p.leader, epoch = p.leader_epoch, "partition leader changed");
                }
            }
            let all = |arc: &Arc<str>| {
                (0..count)
                    .map(|p| TopicPartition::new(arc.clone(), p))
                    .collect()
            };
            match self.topics.get(&arc) {
                Some(&i) => {
                    let state = &mut self.topic_states[i];
                    state.available = available;
                    if state.partitions.len() != count as usize {
                        state.partitions = all(&arc);
                        // Never shrunk: a partition missing from one answer (a topic re-created
                        // smaller, a stale broker) keeps its open batch's builder for when it
                        // is back, as the accumulator keeps the batch (records are only routed
                        // below `count`).
                        if state.open.len() < count as usize {
                            state.open.resize_with(count as usize, OpenBatch::default);
                        }
                    }
                }
                None => {
                    self.topics.insert(arc.clone(), self.topic_states.len());
                    self.topic_states.push(TopicState {
                        available,
                        sticky: StickyMirror::new(&self.partitioner, &name),
                        partitions: all(&arc),
                        open: (0..count).map(|_| OpenBatch::default()).collect(),
                    });
                }
            }
            if let Some(q) = self.waiting.remove(&name) {
                for Arrived { p, at, gen } in q {
                    self.route(p, at, gen, now);
                }
            }
        }
    }

    fn want_refresh(&mut self) {
        self.refresh_wanted = true;
        self.cluster.request_metadata_refresh();
    }

    fn maybe_refresh(&mut self, now: Instant) -> Option<Instant> {
        if !self.refresh_wanted || self.refresh_in_flight {
            return None;
        }
        if now < self.refresh_not_before {
            return Some(self.refresh_not_before);
        }
        self.refresh_wanted = false;
        self.refresh_in_flight = true;
        self.refresh_not_before = now + self.cfg.client.retry_backoff;
        let cluster = self.cluster.clone();
        let topics: Vec<String> = self.topics.keys().map(|t| t.to_string()).collect();
        self.events
            .push(async move { Event::Refreshed(cluster.refresh_metadata(&topics).await) }.boxed());
        None
    }

    // ------------------------------------------------------------------ sending

    /// Sends what is ready; returns when to look again.
    fn send_ready(&mut self, now: Instant) -> Option<Instant> {
        // Every batch closed so far goes out in this pass.
        self.closed_in_burst = false;
        let ready = self.acc.poll_ready(now);
        self.room = ready.room;
        if !ready.unknown_leaders.is_empty() {
            self.refresh_wanted = true;
        }
        let mut next = ready.next_check.filter(|t| *t > now);
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(t) = self.maybe_refresh(now) {
            earliest(t);
        }
        for (topic, q) in &self.waiting {
            if let Some(p) = q.front() {
                earliest(p.at + self.cfg.delivery_timeout);
            }
            if let Some(t) = self.lookup_retry_at.get(topic) {
                if *t > now {
                    earliest(*t);
                }
            }
        }
        let retry_lookups: Vec<String> = self
            .waiting
            .keys()
            .filter(|t| !self.lookups.contains(*t))
            .cloned()
            .collect();
        for t in retry_lookups {
            self.start_lookup(&t, now);
        }
        let transactional = self.txn.is_some();
        let mut took_events = false;
        for node in ready.nodes {
            loop {
                // Within the broker's window (answers wake this loop).
                let window = self.in_flight.get(&node);
                if window.is_some_and(|w| !w.allows()) {
                    break;
                }
                let in_flight = window.map_or(0, InFlightWindow::requests);
                // The broker answers this connection's requests one at a time: a request of
                // partial batches only waits in line behind unanswered ones, while its
                // batches could keep taking records. It goes when an answer brings the count
                // below `max_in_flight_partial` (answers wake this loop) or once a batch is
                // complete.
                if in_flight >= self.cfg.max_in_flight_partial.max(1)
                    && !self.acc.has_complete_batch(node, now)
                {
                    break;
                }
                let (closed, topics, states, pool) = (
                    &mut self.closed,
                    &self.topics,
                    &mut self.topic_states,
                    &self.pool,
                );
                let drained = self.acc.drain(node, now, self.cfg.max_request_size, |b| {
                    let builder = take_builder(closed, topics, states, b);
                    if let Some(len) = builder.as_ref().map(BatchBuilder::inline_size) {
                        if let Some(o) = open_batch(topics, states, b.topic_partition()) {
                            o.last_len = len;
                        }
                    }
                    encode_batch(b, builder, transactional, pool)
                });
                if drained.is_empty() {
                    break;
                }
                self.start_request(node, drained);
                // The request reaches its connection's writer now (its future's first poll),
                // not after the next batches are encoded: the broker starts on it meanwhile.
                // Answers already there are taken on the way.
                while let Some(Some(ev)) = self.events.next().now_or_never() {
                    self.handle_event(ev);
                    took_events = true;
                }
            }
        }
        if took_events {
            // What they changed (a slot freed at a broker visited earlier in this pass, a
            // retry due, a refresh wanted, records routed) is looked at by the next pass, at
            // once, as when the loop takes them.
            next = Some(now);
        }
        next
    }

    fn start_request(&mut self, node: NodeId, drained: Vec<Drained>) {
        // Latency probe (`KRUST_LAT_PROBE`): drained at, depth, records; nothing when off.
        let probe_start = super::probe::enabled().then(|| {
            let depth = self
                .in_flight
                .get(&node)
                .map_or(0, InFlightWindow::requests) as u32;
            let records: u32 = drained.iter().map(|d| d.record_count as u32).sum();
            (Instant::now(), depth, records)
        });
        let mut by_topic: BTreeMap<Arc<str>, Vec<PartitionBatch>> = BTreeMap::new();
        let mut bytes = 0usize;
        for d in &drained {
            bytes += d.data.len();
            if d.attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            by_topic
                .entry(d.tp.topic.clone())
                .or_default()
                .push((d.tp.partition, Some(d.data.clone())));
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .batches
            .fetch_add(drained.len() as u64, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        trace!(node, batches = drained.len(), bytes, "produce request");
        let topics: Vec<_> = by_topic
            .into_iter()
            .map(|(t, parts)| (TopicName(StrBytes::from_string(t.to_string())), parts))
            .collect();
        let batches: Vec<(TopicPartition, BatchId)> =
            drained.into_iter().map(|d| (d.tp, d.id)).collect();
        let acks = self.cfg.acks;
        let transactional_id = self
            .txn
            .as_ref()
            .map(|t| TransactionalId(StrBytes::from_string(t.transactional_id().to_string())));
        let timeout_ms = self
            .cfg
            .client
            .request_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32;
        // acks=0 has no answers to size a window from.
        let (max, adaptive) = (
            self.cfg.max_in_flight,
            self.cfg.adaptive_in_flight && self.cfg.acks != Acks::None,
        );
        let mark = self
            .in_flight
            .entry(node)
            .or_insert_with(|| InFlightWindow::new(max, adaptive))
            .sent(bytes, Instant::now());
        let cluster = self.cluster.clone();
        self.events.push(
            async move {
                let probe = probe_start
                    .map(|(drained, depth, records)| (drained, Instant::now(), depth, records));
                // Connecting first tells "never sent" apart from "sent, outcome unknown".
                let conn = match cluster.connection(node).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        return Event::Produced {
                            node,
                            batches,
                            outcome: Outcome::Failed { error, sent: false },
                            probe,
                            mark,
                            floor: None,
                        }
                    }
                };
                let build = move |_v: i16| ProduceBatches {
                    transactional_id,
                    acks: acks.wire(),
                    timeout_ms,
                    topics,
                };
                let outcome = if acks == Acks::None {
                    match cluster.send_no_response(node, build).await {
                        Ok(_) => Outcome::Written,
                        Err(error) => Outcome::Failed { error, sent: true },
                    }
                } else {
                    match cluster.send(node, build).await {
                        Ok((_, resp)) => Outcome::Response(resp),
                        Err(error) => {
                            let sent = !matches!(
                                error,
                                Error::Unsupported { .. } | Error::Closed | Error::Config { .. }
                            );
                            Outcome::Failed { error, sent }
                        }
                    }
                };
                Event::Produced {
                    node,
                    batches,
                    outcome,
                    probe,
                    mark,
                    floor: conn.round_trip_floor(),
                }
            }
            .boxed(),
        );
    }

    // ------------------------------------------------------------------ events

    fn handle_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Topic { name, result } => {
                self.lookups.remove(&name);
                match result {
                    Ok(()) => {
                        self.lookup_retry_at.remove(&name);
                        let md = self.cluster.metadata();
                        self.apply_metadata(&md);
                        self.md_seen = Some(md);
                    }
                    Err(e) => {
                        warn!(topic = %name, error = %e, "topic metadata lookup failed");
                        self.last_error.insert(name.clone(), e.to_string());
                        self.lookup_retry_at
                            .insert(name.clone(), now + self.cfg.client.retry_backoff_max);
                        // Records whose own deadline passed fail now; the rest wait for a retry.
                        if !e.is_retriable() && !matches!(e, Error::UnknownTopic(_)) {
                            if let Some(q) = self.waiting.remove(&name) {
                                for p in q {
                                    self.fail(
                                        p,
                                        None,
                                        ProduceErrorKind::Metadata(e.to_string()),
                                        Persistence::NotPersisted,
                                    );
                                }
                            }
                        }
                    }
                }
            }
            Event::ProducerId(result) => self.handle_producer_id(result, now),
            Event::Txn { id, result } => self.handle_txn_answer(id, result),
            Event::TxnProtocol(result) => self.handle_txn_protocol(result),
            Event::Refreshed(result) => {
                self.refresh_in_flight = false;
                match result {
                    Ok(md) => {
                        self.apply_metadata(&md);
                        self.md_seen = Some(md);
                    }
                    Err(e) => {
                        debug!(error = %e, "metadata refresh failed");
                        self.refresh_wanted = true;
                    }
                }
            }
            Event::Produced {
                node,
                batches,
                outcome,
                probe,
                mark,
                floor,
            } => {
                if let Some(w) = self.in_flight.get_mut(&node) {
                    w.set_round_trip(floor);
                    match &outcome {
                        Outcome::Response(_) => w.answered(mark, now),
                        Outcome::Failed { .. } => w.failed(mark),
                        Outcome::Written => w.written(mark),
                    }
                    self.stats.window.store(w.limit() as u64, Ordering::Relaxed);
                }
                self.probe =
                    probe.map(
                        |(drained, polled, depth, records)| super::probe::RequestProbe {
                            drained,
                            polled,
                            answered: now,
                            depth,
                            records,
                        },
                    );
                match outcome {
                    Outcome::Written => {
                        for (tp, id) in batches {
                            if let Some(b) = self.acc.handle_success(&tp, id) {
                                self.succeed(b, -1, -1);
                            }
                        }
                    }
                    Outcome::Response(resp) => self.handle_response(node, batches, resp, now),
                    Outcome::Failed { error, sent } => {
                        debug!(node, error = %error, sent, "produce request failed");
                        let failure = Failure {
                            retriable: error.is_retriable(),
                            outcome_unknown: sent,
                        };
                        if error.is_retriable() {
                            self.want_refresh();
                        }
                        let kind = if error.is_transport() || error.is_timeout() {
                            ProduceErrorKind::Transport(error.to_string())
                        } else {
                            ProduceErrorKind::Metadata(error.to_string())
                        };
                        for (tp, id) in batches {
                            self.last_error
                                .insert(tp.topic.to_string(), error.to_string());
                            self.batch_failed(&tp, id, failure, kind.clone(), now);
                        }
                    }
                }
            }
        }
    }

    fn handle_response(
        &mut self,
        node: NodeId,
        batches: Vec<(TopicPartition, BatchId)>,
        resp: ProduceResponse,
        now: Instant,
    ) {
        self.cluster.note_throttle(node, resp.throttle_time_ms);
        let mut results: HashMap<(String, i32), _> = HashMap::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                results.insert((t.name.0.to_string(), p.index), p);
            }
        }
        let mut refresh = false;
        let mut work = Vec::with_capacity(batches.len());
        for (tp, id) in batches {
            match results.get(&(tp.topic.to_string(), tp.partition)) {
                None => work.push((tp, id, Err((ErrorCode::UNKNOWN_SERVER_ERROR, None, true)))),
                Some(p) if p.error_code == 0 => {
                    work.push((tp, id, Ok((p.base_offset, p.log_append_time_ms))))
                }
                Some(p) => work.push((
                    tp,
                    id,
                    Err((
                        ErrorCode(p.error_code),
                        p.error_message.as_ref().map(|m| m.to_string()),
                        false,
                    )),
                )),
            }
        }
        drop(results);
        for (tp, id, r) in work {
            let r = match r {
                Err((code, message, false)) if self.idem.is_some() || self.txn.is_some() => {
                    match classify_produce(code) {
                        ProduceVerdict::Persisted { .. } => {
                            // DUPLICATE_SEQUENCE_NUMBER: an earlier attempt was written; the
                            // broker no longer knows its offset.
                            Ok((-1, -1))
                        }
                        ProduceVerdict::Sequence(_) if self.txn.is_some() => {
                            // In a transaction a sequence fault is final for the batch (never
                            // re-sent under new sequence numbers): the transaction must abort,
                            // and the abort bumps the epoch.
                            debug!(%tp, %code, "sequence error in a transaction");
                            self.last_error
                                .insert(tp.topic.to_string(), code.to_string());
                            let failure = Failure {
                                retriable: false,
                                outcome_unknown: false,
                            };
                            self.batch_failed(
                                &tp,
                                id,
                                failure,
                                ProduceErrorKind::Broker { code, message },
                                now,
                            );
                            continue;
                        }
                        ProduceVerdict::Sequence(fault) => {
                            debug!(%tp, %code, "sequence error");
                            self.sequence_error(&tp, id, fault, code, message, now);
                            continue;
                        }
                        ProduceVerdict::Fatal => {
                            let reason = format!("{code} on {tp}");
                            warn!(%tp, %code, "fatal produce error: stopping the producer");
                            if let Some(idem) = self.idem.as_mut() {
                                idem.set_fatal(reason);
                            }
                            Err((code, message, false))
                        }
                        ProduceVerdict::Other => Err((code, message, false)),
                    }
                }
                r => r,
            };
            match r {
                Ok((base, log_append)) => {
                    if let Some(b) = self.acc.handle_success(&tp, id) {
                        self.succeed(b, base, log_append);
                    }
                }
                Err((code, message, missing)) => {
                    let action = if missing {
                        Retry::Backoff
                    } else {
                        classify(ApiKey::Produce, code)
                    };
                    refresh |= action == Retry::RefreshMetadata;
                    let failure = Failure {
                        retriable: matches!(action, Retry::Backoff | Retry::RefreshMetadata),
                        // The leader may have written it: replication, or the broker's own
                        // timeout, failed after the append; or the response lacked the partition.
                        outcome_unknown: missing
                            || matches!(
                                code,
                                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                                    | ErrorCode::REQUEST_TIMED_OUT
                                    | ErrorCode::NETWORK_EXCEPTION
                            ),
                    };
                    debug!(%tp, %code, ?action, "produce error");
                    self.last_error
                        .insert(tp.topic.to_string(), code.to_string());
                    self.batch_failed(
                        &tp,
                        id,
                        failure,
                        ProduceErrorKind::Broker { code, message },
                        now,
                    );
                }
            }
        }
        if refresh {
            self.want_refresh();
        }
    }

    fn batch_failed(
        &mut self,
        tp: &TopicPartition,
        id: BatchId,
        mut failure: Failure,
        mut kind: ProduceErrorKind,
        now: Instant,
    ) {
        if let Some(reason) = self.fatal() {
            // Stopped: nothing is retried; the record says whether it may be in the log.
            failure.retriable = false;
            kind = ProduceErrorKind::Fatal(reason);
        }
        match self.acc.handle_failure(tp, id, failure, now) {
            FailureOutcome::Retrying { retry_at } => {
                trace!(%tp, ?id, in_ms = (retry_at - now).as_millis() as u64, "batch will be retried");
            }
            FailureOutcome::Failed(b) => {
                let kind = if now >= b.created() + self.cfg.delivery_timeout && failure.retriable {
                    ProduceErrorKind::DeliveryTimeout {
                        last_error: Some(kind.to_string()),
                    }
                } else {
                    kind
                };
                warn!(%tp, records = b.record_count(), error = %kind, "batch failed");
                self.fail_batch(b, kind);
            }
            FailureOutcome::Unknown => {}
        }
    }

    // ------------------------------------------------------------------ idempotence

    /// The fatal reason, once the idempotent producer has stopped.
    fn fatal(&self) -> Option<String> {
        if let Some(reason) = self.txn.as_ref().and_then(|t| t.fatal()) {
            return Some(reason);
        }
        self.idem
            .as_ref()
            .and_then(|i| i.fatal())
            .map(|r| r.to_string())
    }

    fn sequence_error(
        &mut self,
        tp: &TopicPartition,
        id: BatchId,
        fault: SequenceFault,
        code: ErrorCode,
        message: Option<String>,
        now: Instant,
    ) {
        self.last_error
            .insert(tp.topic.to_string(), code.to_string());
        if fault == SequenceFault::UnknownProducer {
            let current = self.idem.as_ref().and_then(|i| i.identity());
            let partition = self.acc.partition(tp).map(|b| b.producer());
            if current.is_some() && partition.is_some() && partition != current {
                self.fresh_id_wanted.insert(tp.clone());
            }
        }
        match self.acc.handle_sequence_error(tp, id, fault, now) {
            FailureOutcome::Retrying { .. } | FailureOutcome::Unknown => {}
            FailureOutcome::Failed(b) => {
                let kind = ProduceErrorKind::DeliveryTimeout {
                    last_error: Some(ProduceErrorKind::Broker { code, message }.to_string()),
                };
                warn!(%tp, records = b.record_count(), error = %kind, "batch failed");
                self.fail_batch(b, kind);
            }
        }
    }

    /// Asks for a producer identity when one is wanted, resets drained partitions, and stops
    /// everything that waits once the producer is fatal. Returns when to look again.
    fn drive_idempotence(&mut self, now: Instant) -> Option<Instant> {
        let first = self.idem.as_ref()?.first_sequence();
        if let Some(reason) = self.fatal() {
            self.abort_unsent(ProduceErrorKind::Fatal(reason));
            return None;
        }
        for tp in self.acc.partitions_awaiting_reset() {
            if self.resets_waiting.contains(&tp) {
                continue;
            }
            let current = self.acc.partition(&tp).map(|b| b.producer());
            let fresh = self.fresh_id_wanted.remove(&tp);
            match current.and_then(bumped).filter(|_| !fresh) {
                Some(bumped) => {
                    // KIP-360: the same producer id with the next epoch, for this partition.
                    // The broker then refuses any late request of the old epoch (a zombie
                    // retry held somewhere) instead of writing it after newer records.
                    debug!(%tp, epoch = bumped.epoch, "partition drained: epoch bump");
                    if let Some(unknown) = self.acc.reset_partition(&tp, bumped, first) {
                        self.fail_unknown_after_reset(&tp, unknown);
                    }
                }
                None => {
                    debug!(%tp, fresh, "partition drained: asking for a fresh id");
                    self.resets_waiting.push(tp);
                    if let Some(idem) = self.idem.as_mut() {
                        idem.request_fresh(now);
                    }
                }
            }
        }
        let idem = self.idem.as_mut()?;
        match idem.poll_request(now) {
            Ok(()) => {
                self.start_init_producer_id();
                None
            }
            Err(next) => next,
        }
    }

    /// Batches whose outcome was unknown when their partition's sequence state was reset: not
    /// re-sent (that could write them twice), reported possibly persisted.
    fn fail_unknown_after_reset(
        &mut self,
        tp: &TopicPartition,
        unknown: Vec<ProducerBatch<Accepted>>,
    ) {
        for b in unknown {
            let why = self
                .last_error
                .get(&*tp.topic)
                .cloned()
                .unwrap_or_else(|| "sequence state lost".into());
            self.fail_batch(b, ProduceErrorKind::SequenceReset(why));
        }
    }

    fn start_init_producer_id(&mut self) {
        let cluster = self.cluster.clone();
        self.events.push(
            async move {
                let result = cluster
                    .send_any(|_v| {
                        InitProducerIdRequest::default()
                            .with_transactional_id(None)
                            .with_transaction_timeout_ms(60_000)
                    })
                    .await;
                let result = match result {
                    Ok((node, _, resp)) => init_result(node, &resp),
                    Err(e) => {
                        let f = if e.is_retriable() {
                            InitFailure::Retriable
                        } else {
                            InitFailure::Fatal
                        };
                        Err((f, format!("InitProducerId: {e}")))
                    }
                };
                Event::ProducerId(result)
            }
            .boxed(),
        );
    }

    fn handle_producer_id(
        &mut self,
        result: Result<(i64, i16), (InitFailure, String)>,
        now: Instant,
    ) {
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        match result {
            Ok((pid, epoch)) => {
                let (id, first) = idem.handle_identity(pid, epoch, now);
                debug!(producer_id = pid, epoch, "producer identity");
                self.acc.set_default_producer(id, first);
                for tp in std::mem::take(&mut self.resets_waiting) {
                    match self.acc.reset_partition(&tp, id, first) {
                        Some(unknown) => self.fail_unknown_after_reset(&tp, unknown),
                        // Something went in flight meanwhile (cannot happen: a pending reset
                        // blocks sending); ask again once it is back.
                        None => self.resets_waiting.push(tp),
                    }
                }
            }
            Err((failure, reason)) => {
                warn!(%reason, ?failure, "InitProducerId failed");
                idem.handle_error(failure, reason, now);
            }
        }
    }

    // ------------------------------------------------------------------ completion

    fn expire(&mut self, now: Instant) {
        for b in self.acc.expire(now) {
            let last = self.last_error.get(&*b.topic_partition().topic).cloned();
            self.fail_batch(b, ProduceErrorKind::DeliveryTimeout { last_error: last });
        }
        let timeout = self.cfg.delivery_timeout;
        let topics: Vec<String> = self.waiting.keys().cloned().collect();
        for t in topics {
            let q = self.waiting.get_mut(&t).expect("listed");
            let mut expired = Vec::new();
            while q.front().is_some_and(|p| now >= p.at + timeout) {
                expired.push(q.pop_front().expect("front"));
            }
            if q.is_empty() {
                self.waiting.remove(&t);
            }
            let last = self.last_error.get(&t).cloned();
            for p in expired {
                self.fail(
                    p,
                    None,
                    ProduceErrorKind::DeliveryTimeout {
                        last_error: last
                            .clone()
                            .or_else(|| Some("topic metadata unavailable".into())),
                    },
                    Persistence::NotPersisted,
                );
            }
        }
    }

    /// Fails, with `kind`, every record not yet sent: the accumulator's waiting batches and the
    /// records waiting for their topic's metadata. Returns whether there was any.
    pub(super) fn abort_unsent(&mut self, kind: ProduceErrorKind) -> bool {
        let batches = self.acc.abort_waiting();
        let waiting: Vec<Arrived> = self.waiting.drain().flat_map(|(_, q)| q).collect();
        if batches.is_empty() && waiting.is_empty() {
            return false;
        }
        debug!(
            batches = batches.len(),
            records = waiting.len(),
            error = %kind,
            "failing unsent records"
        );
        for b in batches {
            self.fail_batch(b, kind.clone());
        }
        for p in waiting {
            self.fail(p, None, kind.clone(), Persistence::NotPersisted);
        }
        true
    }

    fn succeed(&mut self, b: ProducerBatch<Accepted>, base_offset: i64, log_append_time: i64) {
        let partition = b.topic_partition().partition;
        let mut records = b.into_records();
        self.stats
            .acked
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        // The results go out a chunk of slots at a time (one lock per chunk, not per record).
        let mut resolutions = std::mem::take(&mut self.resolutions);
        for (i, p) in records.drain(..).enumerate() {
            let Accepted {
                mut slot,
                topic,
                timestamp,
                enqueued,
                gen,
                reserved,
                ..
            } = p;
            let offset = if base_offset >= 0 {
                base_offset + i as i64
            } else {
                -1
            };
            let timestamp = if log_append_time >= 0 {
                log_append_time
            } else {
                timestamp
            };
            let md = RecordMetadata {
                // Moved, not cloned: the name's count is not touched here (only by the thread
                // that sent the record and reads the result, or here if nobody reads it).
                topic,
                partition,
                offset,
                timestamp,
            };
            self.finish(gen, reserved);
            resolutions.add(&mut slot, Ok(md));
            if let Some(rp) = &self.probe {
                super::probe::record(enqueued, rp, Instant::now());
            }
        }
        resolutions.flush();
        self.resolutions = resolutions;
        self.acc.recycle_records(records);
    }

    fn fail_batch(&mut self, b: ProducerBatch<Accepted>, kind: ProduceErrorKind) {
        let persistence = if b.is_possibly_persisted() {
            Persistence::PossiblyPersisted
        } else {
            Persistence::NotPersisted
        };
        let partition = b.topic_partition().partition;
        self.txn_batch_failed(b.base_sequence() >= 0);
        let mut records = self.records_of(&b).into_iter();
        for p in b.into_records() {
            let Accepted {
                slot,
                topic,
                timestamp,
                gen,
                reserved,
                explicit_partition,
                ..
            } = p;
            let record = match records.next() {
                Some(r) => ProducerRecord {
                    topic,
                    partition: explicit_partition.then_some(partition),
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: Some(timestamp),
                },
                None => ProducerRecord::new(topic).with_timestamp(timestamp),
            };
            self.fail_record(
                record,
                slot,
                (gen, reserved),
                Some(partition),
                kind.clone(),
                persistence,
            );
        }
    }

    /// A failed batch's records, rebuilt from its bytes (its builder before the first send):
    /// handed back to the application in their errors.
    fn records_of(&mut self, b: &ProducerBatch<Accepted>) -> Vec<krust_wire::record::Record> {
        let bytes = match b.encoded().or(b.previous_encoding()) {
            Some(encoded) => Some(encoded.to_bytes()),
            None => take_builder(&mut self.closed, &self.topics, &mut self.topic_states, b)
                .and_then(|builder| builder.finish(-1, -1, -1, false).ok()),
        };
        let decoded = bytes.and_then(|bytes| {
            let batch = krust_wire::record::batches(bytes).next()?.ok()?;
            // Bytes this producer built: no bound beyond what it had buffered.
            let limits = krust_wire::compression::DecompressLimits {
                max_output: usize::MAX,
                max_ratio: usize::MAX,
                ..Default::default()
            };
            batch.inflate_with(&limits).ok()?.into_records().ok()
        });
        match decoded {
            Some(records) if records.len() == b.record_count() => records,
            _ => {
                warn!(batch = ?b.id(), "a failed batch's records could not be rebuilt");
                Vec::new()
            }
        }
    }

    fn fail(
        &mut self,
        p: Arrived,
        partition: Option<i32>,
        kind: ProduceErrorKind,
        persistence: Persistence,
    ) {
        let Arrived {
            p:
                Pending {
                    record,
                    slot,
                    reserved,
                    ..
                },
            gen,
            ..
        } = p;
        self.fail_record(
            record,
            slot,
            (gen, reserved as usize),
            partition,
            kind,
            persistence,
        );
    }

    /// Completes a record with an error that hands it back.
    fn fail_record(
        &mut self,
        record: ProducerRecord,
        mut slot: DeliverySlot,
        (gen, reserved): (u64, usize),
        partition: Option<i32>,
        kind: ProduceErrorKind,
        persistence: Persistence,
    ) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        if self.txn.is_some()
            && !matches!(
                kind,
                ProduceErrorKind::Transaction(_) | ProduceErrorKind::Fatal(_)
            )
        {
            // A record of the open transaction is lost: the transaction must not commit.
            let tp = TopicPartition::new(&*record.topic, partition.unwrap_or(-1));
            self.txn_produce_failed(&tp, &kind);
        }
        let err = ProduceError::new(record, partition, kind, persistence);
        self.finish(gen, reserved);
        slot.resolve(Err(Box::new(err)));
    }

    fn finish(&mut self, gen: u64, reserved: usize) {
        self.to_release += reserved;
        self.outstanding.remove(gen);
    }

    /// Gives `buffer.memory` back for the records completed since the last call.
    fn release_memory(&mut self) {
        if self.to_release > 0 {
            self.memory
                .add_permits(std::mem::take(&mut self.to_release));
        }
    }

    fn check_flushes(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let oldest = self.outstanding.oldest();
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if oldest.is_none_or(|o| o > self.flush_waiters[i].0) {
                let (_, w) = self.flush_waiters.swap_remove(i);
                let _ = w.send(());
            } else {
                i += 1;
            }
        }
        let committing = self.txn.as_ref().is_some_and(|t| {
            t.commit_requested() || t.tm_state() == krust_core::txn::TxnState::Committing
        });
        if self.flush_waiters.is_empty() && !self.closing && !committing {
            self.acc.set_flushing(false);
        }
    }
}

/// The open-batch slot of a batch's partition.
fn open_batch<'a>(
    topics: &HashMap<Arc<str>, usize, BuildHasherDefault<FnvHasher>>,
    states: &'a mut [TopicState],
    tp: &TopicPartition,
) -> Option<&'a mut OpenBatch> {
    let ti = *topics.get(&*tp.topic)?;
    states[ti].open.get_mut(usize::try_from(tp.partition).ok()?)
}

/// Takes the builder holding a batch's records (before its first send; `None` once sent).
fn take_builder<R>(
    closed: &mut HashMap<BatchId, BatchBuilder>,
    topics: &HashMap<Arc<str>, usize, BuildHasherDefault<FnvHasher>>,
    states: &mut [TopicState],
    b: &ProducerBatch<R>,
) -> Option<BatchBuilder> {
    if let Some(builder) = closed.remove(&b.id()) {
        return Some(builder);
    }
    let open = open_batch(topics, states, b.topic_partition())?;
    match &open.batch {
        Some((id, _)) if *id == b.id() => open.batch.take().map(|(_, builder)| builder),
        _ => None,
    }
}

/// Encodes a batch for its first send (or its first send under a new identity), with the
/// identity and sequence the accumulator fixed: finishes the builder its records were pushed
/// into, or re-stamps the bytes it was sent with before a sequence reset.
fn encode_batch(
    b: &ProducerBatch<Accepted>,
    builder: Option<BatchBuilder>,
    transactional: bool,
    pool: &BufferPool,
) -> EncodedBatch {
    let id = b.producer();
    let encoded = match (builder, b.previous_encoding()) {
        (Some(builder), _) => builder.finish_encoded(
            id.producer_id,
            id.epoch,
            b.base_sequence(),
            transactional,
            &mut { pool },
        ),
        (None, Some(old)) => old.restamp(id.producer_id, id.epoch, b.base_sequence()),
        (None, None) => Err(krust_wire::Error::Encode {
            what: "record batch",
            detail: format!("the records of batch {:?} are gone", b.id()),
        }),
    };
    match encoded {
        Ok(bytes) => bytes,
        Err(e) => {
            // Cannot happen (every batch has a builder until its first send, and its bytes
            // after): the broker rejects the empty batch and its records fail with its error.
            warn!(error = %e, "batch could not be encoded");
            EncodedBatch::from(Bytes::new())
        }
    }
}

/// An InitProducerId answer: the identity, or whether to retry.
fn init_result(
    node: NodeId,
    resp: &InitProducerIdResponse,
) -> Result<(i64, i16), (InitFailure, String)> {
    let code = ErrorCode(resp.error_code);
    if code == ErrorCode::NONE {
        return Ok((resp.producer_id.0, resp.producer_epoch));
    }
    let f = match classify(ApiKey::InitProducerId, code) {
        Retry::Backoff
        | Retry::RefreshMetadata
        | Retry::RefreshCoordinator
        | Retry::Rebootstrap => InitFailure::Retriable,
        _ => InitFailure::Fatal,
    };
    Err((f, format!("InitProducerId on broker {node}: {code}")))
}

/// FNV-1a: a short topic name hashes in a few dozen instructions (SipHash takes ~150 per
/// lookup). The names are the application's own, so flooding is no concern.
#[derive(Default)]
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Outstanding;

    #[test]
    fn outstanding_records_per_generation_give_the_oldest_unfinished_one() {
        let mut o = Outstanding::default();
        assert_eq!(o.oldest(), None);
        for gen in [3, 3, 4, 6, 6, 6] {
            o.add(gen);
        }
        assert_eq!(o.oldest(), Some(3));
        // Completions in any order: a generation leaves when its last record completes.
        o.remove(6);
        o.remove(3);
        assert_eq!(o.oldest(), Some(3));
        o.remove(4);
        o.remove(3);
        assert_eq!(o.oldest(), Some(6));
        o.remove(6);
        o.add(7);
        o.remove(6);
        assert_eq!(o.oldest(), Some(7));
        // An unknown generation is ignored.
        o.remove(1);
        o.remove(7);
        assert_eq!(o.oldest(), None);
    }
}
