//! The assign-mode [`Consumer`]: the application names the partitions and where to start; the
//! consumer fetches them from their leaders and hands out records, through
//! [`Consumer::poll`] batches or as a [`futures::Stream`] ([`Consumer::stream`]).
//!
//! Positions live in the sans-IO [`Fetcher`] of krust-core (see `krust_core::fetch`): a group
//! coordinator (a later issue) drives the same structure through `assign`/`seek`/`position`.
//! The background work (one `BrokerSource` per leader, offset lookups, metadata, leader
//! migration with KIP-320 validation where offered) runs in tasks that end when the consumer is
//! dropped.
//!
//! ```no_run
//! # async fn example() -> krust_client::Result<()> {
//! use krust_client::consumer::{Consumer, ConsumerConfig, StartOffset, TopicPartition};
//!
//! let mut consumer = Consumer::connect(ConsumerConfig::new("127.0.0.1:9092")).await?;
//! consumer
//!     .assign([(TopicPartition::new("events", 0), StartOffset::Earliest)])
//!     .await?;
//! for record in consumer.poll().await? {
//!     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use krust_core::fetch::{FetchErrorKind, Fetcher};
use krust_wire::{ApiKey, ErrorCode};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

mod config;
mod driver;
mod offsets;

pub use config::ConsumerConfig;
pub use driver::SourceStats;
pub use krust_core::fetch::{
    ConsumerRecord, FetchCursor, IsolationLevel, OffsetReset, StartOffset, TopicPartition,
    Watermarks,
};
pub use krust_wire::record::{RecordHeader, TimestampType};
pub use offsets::{ListedOffset, OffsetSpec};

pub(crate) use offsets::{list_offsets, list_offsets_each};

use driver::Shared;

/// A snapshot of the consumer's prefetch state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchStats {
    /// Bytes fetched and not yet polled.
    pub buffered_bytes: usize,
    /// Bytes reserved by fetches in flight.
    pub reserved_bytes: usize,
    /// The budget (`krust.prefetch.max.bytes`).
    pub max_prefetch_bytes: usize,
    /// Whether fetching is stopped until the application polls.
    pub budget_exhausted: bool,
    /// Counters of the broker sources.
    pub sources: SourceStats,
}

/// An assign-mode Kafka consumer. See the [module docs](self).
///
/// Dropping it stops its background tasks.
pub struct Consumer {
    shared: Arc<Shared>,
    config: ConsumerConfig,
    data_rx: watch::Receiver<u64>,
    driver: tokio::task::JoinHandle<()>,
    eofs: Vec<TopicPartition>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment())
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.driver.abort();
        for (_, h) in self
            .shared
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            h.abort();
        }
    }
}

// --- Consumer groups (crates/krust-client/src/group/): the only group glue in this file. ---
impl Consumer {
    /// Joins the consumer group of the config's group settings ([`ConsumerConfig::group`],
    /// filled from `group.id`, `session.timeout.ms`, ... by
    /// [`ConsumerConfig::from_properties`]) and subscribes to `subscription` (topics or a
    /// regex): the group decides the partitions; positions start at the committed offsets, or
    /// at `auto.offset.reset` where nothing is committed. The returned
    /// [`GroupConsumer`](crate::group::GroupConsumer) polls records and handles rebalances; see
    /// [`crate::group`] for the rebalance events, commits and cancel safety.
    ///
    /// Fails naming `group.id` when the config has no group settings.
    pub fn subscribe(
        self,
        subscription: crate::group::Subscription,
    ) -> Result<crate::group::GroupConsumer> {
        let settings = self
            .config
            .group
            .clone()
            .ok_or_else(|| crate::error::Error::config("group.id", "required to subscribe"))?;
        crate::group::GroupConsumer::subscribe(self, settings, subscription)
    }

    /// As [`Consumer::subscribe`] with explicit group settings (the config's are not used).
    pub fn subscribe_with(
        self,
        settings: crate::group::GroupSettings,
        subscription: crate::group::Subscription,
    ) -> Result<crate::group::GroupConsumer> {
        crate::group::GroupConsumer::subscribe(self, settings, subscription)
    }
}

impl Consumer {
    /// Connects to the cluster and makes a consumer with nothing assigned.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        Consumer::with_cluster(cluster, config)
    }

    /// A consumer over an existing [`Cluster`] handle (sharing its connections). Must be called
    /// inside a tokio runtime.
    pub fn with_cluster(cluster: Cluster, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let (changed, _) = watch::channel(0u64);
        let (data, data_rx) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            cluster,
            fetcher: Mutex::new(Fetcher::new(config.fetch_config())),
            changed,
            data,
            stats: Mutex::new(SourceStats::default()),
            sources: Mutex::new(HashMap::new()),
            failed: Mutex::new(None),
        });
        let driver = driver::spawn_task(&shared, "driver", driver::run_driver(shared.clone()));
        Ok(Consumer {
            shared,
            config,
            data_rx,
            driver,
            eofs: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The cluster handle (connections, metadata).
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// Replaces the assignment with `partitions`, each starting where it says. Partitions that
    /// stay assigned restart at their new start too. Fails if a topic or partition does not
    /// exist (after waiting up to `request.timeout.ms` for a topic being created).
    ///
    /// Cancel safety: if cancelled, the assignment is unchanged.
    pub async fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = (TopicPartition, StartOffset)>,
    ) -> Result<()> {
        let partitions: Vec<(TopicPartition, StartOffset)> = partitions.into_iter().collect();
        self.check_partitions(partitions.iter().map(|(tp, _)| tp))
            .await?;
        {
            let mut f = self.shared.lock();
            let keep: HashSet<&TopicPartition> = partitions.iter().map(|(tp, _)| tp).collect();
            let old: Vec<TopicPartition> = f.assignment().cloned().collect();
            for tp in old {
                if !keep.contains(&tp) {
                    f.unassign(&tp);
                }
            }
            for (tp, start) in &partitions {
                f.assign(tp.clone(), *start);
            }
        }
        self.shared.notify_changed();
        Ok(())
    }

    /// Adds partitions to the assignment (or restarts assigned ones), keeping the others. The
    /// entry point for an incremental (cooperative) group assignment.
    ///
    /// Cancel safety: if cancelled, the assignment is unchanged.
    pub async fn incremental_assign(
        &mut self,
        partitions: impl IntoIterator<Item = (TopicPartition, StartOffset)>,
    ) -> Result<()> {
        let partitions: Vec<(TopicPartition, StartOffset)> = partitions.into_iter().collect();
        self.check_partitions(partitions.iter().map(|(tp, _)| tp))
            .await?;
        {
            let mut f = self.shared.lock();
            for (tp, start) in partitions {
                f.assign(tp, start);
            }
        }
        self.shared.notify_changed();
        Ok(())
    }

    /// Removes partitions from the assignment, returning the position each had (what a group
    /// member commits on revocation).
    pub fn unassign<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<(TopicPartition, Option<FetchCursor>)> {
        let out = {
            let mut f = self.shared.lock();
            partitions
                .into_iter()
                .map(|tp| (tp.clone(), f.unassign(tp)))
                .collect()
        };
        self.shared.notify_changed();
        out
    }

    async fn check_partitions<'a>(
        &self,
        tps: impl Iterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        let mut seen: HashMap<&str, i32> = HashMap::new();
        for tp in tps {
            let count = match seen.get(&*tp.topic) {
                Some(c) => *c,
                None => {
                    let t = self.shared.cluster.topic(&tp.topic).await?;
                    let c = t.partitions.len() as i32;
                    seen.insert(&tp.topic, c);
                    c
                }
            };
            if tp.partition < 0 || tp.partition >= count {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                });
            }
        }
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().assignment().cloned().collect()
    }

    /// Moves `tp` to `start`: records buffered for it are dropped, and the next record polled
    /// from it is the one at the new start. Fails if `tp` is not assigned.
    pub fn seek(&self, tp: &TopicPartition, start: StartOffset) -> Result<()> {
        if !self.shared.lock().seek(tp, start) {
            return Err(not_assigned(tp));
        }
        self.shared.notify_changed();
        Ok(())
    }

    /// The offset of the next record `poll` will return for `tp` (`None` while its start is
    /// being looked up, or if it is not assigned).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().position(tp).map(|c| c.offset)
    }

    /// The position of `tp` with its leader epoch (what a group commits).
    pub fn cursor(&self, tp: &TopicPartition) -> Option<FetchCursor> {
        self.shared.lock().position(tp)
    }

    /// Stops fetching and returning records of these partitions until [`resume`](Self::resume).
    /// Records already fetched are kept.
    pub fn pause<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        {
            let mut f = self.shared.lock();
            for tp in partitions {
                if !f.pause(tp) {
                    return Err(not_assigned(tp));
                }
            }
        }
        self.shared.notify_changed();
        Ok(())
    }

    /// Resumes paused partitions.
    pub fn resume<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        {
            let mut f = self.shared.lock();
            for tp in partitions {
                if !f.resume(tp) {
                    return Err(not_assigned(tp));
                }
            }
        }
        self.shared.notify_changed();
        self.shared.notify_data();
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        let f = self.shared.lock();
        f.assignment()
            .filter(|tp| f.is_paused(tp))
            .cloned()
            .collect()
    }

    /// Watermarks of `tp` as reported by its leader with the last fetch (the high watermark
    /// here is exact, unlike some brokers' ListOffsets LATEST).
    pub fn watermarks(&self, tp: &TopicPartition) -> Option<Watermarks> {
        self.shared.lock().watermarks(tp)
    }

    /// Whether `tp`'s position has reached the high watermark (the last stable offset under
    /// read_committed) last reported by a fetch, with no records left to poll.
    pub fn is_at_end(&self, tp: &TopicPartition) -> bool {
        self.shared.lock().is_at_end(tp)
    }

    /// Partitions that reached their end since the last call (with `enable.partition.eof`; each
    /// arrival at the end is reported once).
    pub fn take_partition_eofs(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.eofs)
    }

    /// The prefetch state (bytes buffered and reserved, budget, source counters).
    pub fn prefetch_stats(&self) -> PrefetchStats {
        let (buffered_bytes, reserved_bytes, budget_exhausted, max) = {
            let f = self.shared.lock();
            (
                f.buffered_bytes(),
                f.reserved_bytes(),
                f.is_budget_exhausted(),
                f.config().max_prefetch_bytes,
            )
        };
        PrefetchStats {
            buffered_bytes,
            reserved_bytes,
            max_prefetch_bytes: max,
            budget_exhausted,
            sources: *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Returns what is ready now without waiting: up to `max.poll.records` records, or the
    /// first pending partition error. An empty vector means nothing was ready.
    pub fn try_poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        let mut out = self.poll_vec();
        self.take_ready(&mut out)?;
        Ok(out)
    }

    /// Waits for records and returns up to `max.poll.records` of them (from one or more
    /// partitions, each in offset order), advancing the positions past them.
    ///
    /// Errors concerning a partition (offset out of range with `auto.offset.reset=none`,
    /// corrupt data, a non-retriable broker error) are returned once each, naming the
    /// partition; the consumer stays usable. With `enable.partition.eof`, also returns (maybe
    /// with no records) when a partition reaches its end.
    ///
    /// If a background task of the consumer died (a panic: a bug), the consumer cannot make
    /// progress any more, and this and every later poll fail with that error instead of waiting
    /// forever.
    ///
    /// Cancel safety: cancel-safe. Records are only taken from the buffer when the future
    /// completes; a dropped `poll` loses nothing.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        loop {
            self.data_rx.borrow_and_update();
            let mut out = self.poll_vec();
            let eof = self.take_ready(&mut out)?;
            if !out.is_empty() || eof {
                return Ok(out);
            }
            if self.data_rx.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// As [`poll`](Self::poll), but gives up after `timeout` and returns no records.
    pub async fn poll_timeout(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        match tokio::time::timeout(timeout, self.poll()).await {
            Ok(r) => r,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The records as a stream: each item is one record or one error (see
    /// [`poll`](Self::poll)). The stream never ends by itself.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(consumer, mut buf)| async move {
                loop {
                    if let Some(r) = buf.pop_front() {
                        return Some((Ok(r), (consumer, buf)));
                    }
                    match consumer.poll().await {
                        Ok(records) => buf.extend(records),
                        Err(e) => return Some((Err(e), (consumer, buf))),
                    }
                }
            },
        )
    }

    /// The consumer as an owned stream of records (for pipelines that move it into a task).
    /// Items are as in [`stream`](Self::stream).
    pub fn into_stream(self) -> impl Stream<Item = Result<ConsumerRecord>> + Send + 'static {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(mut consumer, mut buf)| async move {
                loop {
                    if let Some(r) = buf.pop_front() {
                        return Some((Ok(r), (consumer, buf)));
                    }
                    match consumer.poll().await {
                        Ok(records) => buf.extend(records),
                        Err(e) => return Some((Err(e), (consumer, buf))),
                    }
                }
            },
        )
    }

    /// The vector a poll fills: sized for a full poll (up to a cap), so that pushing records
    /// never regrows it (each regrowth copied every record polled so far).
    fn poll_vec(&self) -> Vec<ConsumerRecord> {
        Vec::with_capacity(self.config.max_poll_records.clamp(1, 4096))
    }

    /// Moves ready records into `out`; returns whether end-of-partition events were taken.
    fn take_ready(&mut self, out: &mut Vec<ConsumerRecord>) -> Result<bool> {
        if let Some(why) = self.shared.failure() {
            return Err(Error::Other(why));
        }
        let (err, freed, eofs) = {
            let mut f = self.shared.lock();
            let errors = f.take_errors();
            let err = errors.into_iter().next();
            if err.is_none() {
                f.poll_records(self.config.max_poll_records, out);
            }
            let freed = f.take_budget_wakeup();
            let eofs = if self.config.enable_partition_eof {
                f.take_eof()
            } else {
                Vec::new()
            };
            (err, freed, eofs)
        };
        // Only the prefetch budget gates fetching on the application's side: wake the sources
        // when a poll reopens it for a source that found it exhausted (waking them on every
        // poll would cost a re-plan per poll).
        if freed {
            self.shared.notify_changed();
        }
        let eof = !eofs.is_empty();
        self.eofs.extend(eofs);
        if let Some(e) = err {
            return Err(fetch_error(e));
        }
        Ok(eof)
    }

    /// For each partition, the first offset whose timestamp is at or after the given
    /// milliseconds since the epoch, with that record's timestamp; `None` when every record is
    /// older.
    pub async fn offsets_for_times(
        &self,
        query: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<HashMap<TopicPartition, Option<ListedOffset>>> {
        let req: Vec<(TopicPartition, OffsetSpec)> = query
            .into_iter()
            .map(|(tp, t)| (tp, OffsetSpec::Timestamp(t)))
            .collect();
        let found = list_offsets(&self.shared.cluster, &req, self.config.isolation_level).await?;
        Ok(req
            .into_iter()
            .map(|(tp, _)| {
                let v = found.get(&tp).copied().filter(|o| o.offset >= 0);
                (tp, v)
            })
            .collect())
    }

    /// The log start offset of each partition.
    pub async fn beginning_offsets(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.simple_offsets(partitions, OffsetSpec::Earliest).await
    }

    /// The end offset of each partition (the high watermark; the last stable offset under
    /// read_committed), from ListOffsets. Some brokers answer this wrongly (tansu); a partition
    /// being consumed has an exact value in [`watermarks`](Self::watermarks).
    pub async fn end_offsets(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.simple_offsets(partitions, OffsetSpec::Latest).await
    }

    async fn simple_offsets(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
        spec: OffsetSpec,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let req: Vec<(TopicPartition, OffsetSpec)> =
            partitions.into_iter().map(|tp| (tp, spec)).collect();
        let found = list_offsets(&self.shared.cluster, &req, self.config.isolation_level).await?;
        Ok(found.into_iter().map(|(tp, o)| (tp, o.offset)).collect())
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::Other(format!("partition {tp} is not assigned to this consumer"))
}

fn fetch_error(e: krust_core::fetch::FetchError) -> Error {
    let context = format!("partition {}", e.tp);
    match e.kind {
        FetchErrorKind::OffsetOutOfRange { offset } => Error::broker_with(
            ApiKey::Fetch,
            ErrorCode::OFFSET_OUT_OF_RANGE,
            context,
            Some(format!(
                "offset {offset} is out of range and auto.offset.reset is none; seek to continue"
            )),
        ),
        FetchErrorKind::Broker(code) => Error::broker_with(ApiKey::Fetch, code, context, None),
        FetchErrorKind::RecordTooLarge { offset } => Error::broker_with(
            ApiKey::Fetch,
            ErrorCode::MESSAGE_TOO_LARGE,
            context,
            Some(format!(
                "the batch at offset {offset} is larger than max.partition.fetch.bytes"
            )),
        ),
        kind @ FetchErrorKind::Corrupt { .. } => {
            Error::Other(krust_core::fetch::FetchError { tp: e.tp, kind }.to_string())
        }
        other => Error::Other(format!("partition {}: {other:?}", e.tp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A background task that panics is reported by `poll`, not left to hang it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicked_background_task_fails_poll() {
        let fake = krust_testkit::FakeCluster::start(1).await.unwrap();
        let mut consumer = Consumer::connect(ConsumerConfig::new(&fake.bootstrap()))
            .await
            .unwrap();
        let task = driver::spawn_task(&consumer.shared, "test", async {
            panic!("boom");
        });
        let _ = task.await;
        let err = consumer.poll().await.unwrap_err().to_string();
        assert!(err.contains("consumer test task panicked: boom"), "{err}");
        assert!(consumer.try_poll().is_err(), "the failure is sticky");
    }
}
