//! The consumer's background tasks: the *driver* (metadata, offset lookups, position
//! validation, one [`BrokerSource`] per leader) and the broker sources themselves (one fetch
//! pipeline per broker over every assigned partition it leads).
//!
//! All of them share [`Shared`]: the sans-IO [`Fetcher`] behind a mutex (held only for short,
//! non-blocking calls, never across an await), and two watch channels: `changed` wakes the
//! driver and the sources (assignment, seek, pause, a poll that freed prefetch budget, new
//! metadata), `data` wakes a waiting `poll` (records, errors, end-of-partition events).
//! Responses are split into CRC-checked batches by the source, outside the lock; batches are
//! decompressed one at a time by `poll` (so compressed data cannot fill memory at its
//! compression ratio).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use krust_core::fetch::{
    partition_outcome, Fetcher, LookupResult, ParseOptions, PartitionOutcome, TopicPartition,
    ValidationResult,
};
use krust_wire::record::DecompressLimits;
use krust_wire::{ApiKey, ErrorCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::cluster::{Cluster, ClusterMetadata, NodeId};
use crate::error::Error;

/// State shared by the consumer handle and its tasks.
pub(crate) struct Shared {
    pub(crate) cluster: Cluster,
    pub(crate) fetcher: Mutex<Fetcher>,
    /// Bumped when the fetch plan may have changed.
    pub(crate) changed: watch::Sender<u64>,
    /// Bumped when something became available to `poll`.
    pub(crate) data: watch::Sender<u64>,
    /// Counters for observability and tests.
    pub(crate) stats: Mutex<SourceStats>,
    pub(crate) sources: Mutex<HashMap<NodeId, JoinHandle<()>>>,
    /// Set when a background task ended abnormally (a panic): the consumer can no longer make
    /// progress, and `poll` returns this error instead of waiting forever.
    pub(crate) failed: Mutex<Option<String>>,
}

/// Counters kept by the broker sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Fetch requests sent.
    pub fetches: u64,
    /// Fetch requests that failed as a whole (transport, timeout, broker-level error).
    pub failed_fetches: u64,
    /// Times a source found the prefetch budget exhausted and waited for `poll`.
    pub budget_waits: u64,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Fetcher> {
        self.fetcher.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn notify_changed(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn notify_data(&self) {
        self.data.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn stats(&self) -> MutexGuard<'_, SourceStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the consumer stopped, if a background task died.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Spawns one of the consumer's background tasks so that it cannot die silently: a panic is
/// recorded in [`Shared::failed`] and wakes `poll`, which reports it. (A lookup task that
/// panicked used to leave its partitions "looking up" forever, and a panicked driver left
/// `poll` waiting forever.)
pub(crate) fn spawn_task(
    shared: &Arc<Shared>,
    what: &'static str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    use futures::FutureExt;
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(task = what, panic = %msg, "consumer task panicked");
            if let Some(shared) = weak.upgrade() {
                shared
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| format!("consumer {what} task panicked: {msg}"));
                shared.notify_data();
            }
        }
    })
}

/// Feeds the leaders from `md` into the fetcher. A topic the metadata reports as unknown, or
/// a partition beyond its partition count, is reported to the application once (the consumer
/// keeps looking for it).
fn apply_metadata(fetcher: &mut Fetcher, md: &ClusterMetadata) {
    let tps: Vec<TopicPartition> = fetcher.assignment().cloned().collect();
    for tp in tps {
        match md.topics.get(&*tp.topic) {
            Some(t) => match t.partition(tp.partition) {
                Some(p) => fetcher.handle_leader(&tp, p.leader, p.leader_epoch),
                None => match t.error {
                    Some(code) if code != ErrorCode::LEADER_NOT_AVAILABLE => {
                        fetcher.handle_missing(&tp, code)
                    }
                    Some(_) => fetcher.handle_leader(&tp, None, -1),
                    None => fetcher.handle_missing(&tp, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                },
            },
            None => fetcher.handle_leader(&tp, None, -1),
        }
    }
}

/// The driver task: runs until the consumer is dropped (it is aborted then).
pub(crate) async fn run_driver(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    let mut last_md: Option<Arc<ClusterMetadata>> = None;
    let mut refresh_attempt = 0u32;
    let cfg = shared.cluster.config().clone();
    loop {
        changed.borrow_and_update();
        let now = Instant::now();
        // Metadata: apply the latest snapshot, and refresh when the fetcher asks.
        let (want_refresh, topics, errors, applied) = {
            let mut f = shared.lock();
            let md = shared.cluster.metadata();
            let applied = last_md.as_ref().is_none_or(|m| !Arc::ptr_eq(m, &md));
            if applied {
                apply_metadata(&mut f, &md);
                last_md = Some(md);
            }
            (
                f.take_metadata_request(),
                f.topics(),
                f.has_errors(),
                applied,
            )
        };
        if errors {
            shared.notify_data();
        }
        let mut leaders_fed = applied;
        if want_refresh && !topics.is_empty() {
            match shared.cluster.refresh_metadata(&topics).await {
                Ok(md) => {
                    let (errors, leaderless) = {
                        let mut f = shared.lock();
                        apply_metadata(&mut f, &md);
                        let leaderless = f.assignment().any(|tp| f.leader(tp).is_none());
                        (f.has_errors(), leaderless)
                    };
                    last_md = Some(md);
                    // Back off further while partitions stay leaderless (a deleted topic).
                    refresh_attempt = if leaderless { refresh_attempt + 1 } else { 0 };
                    if errors {
                        shared.notify_data();
                    }
                    leaders_fed = true;
                }
                Err(e) => {
                    debug!(error = %e, "consumer metadata refresh failed");
                    refresh_attempt += 1;
                }
            }
        }
        if leaders_fed {
            // Leaders may have moved: sources that now lead more partitions re-plan. The driver
            // itself handles the new state below, so it marks its own wake-up as seen (else a
            // leaderless partition would make it refresh metadata in a tight loop).
            shared.notify_changed();
            changed.borrow_and_update();
        }
        // Offset lookups and validations.
        let (lookups, validations) = {
            let mut f = shared.lock();
            (f.poll_lookups(now), f.poll_validations(now))
        };
        for lookup in lookups {
            spawn_task(&shared, "offset lookup", run_lookup(shared.clone(), lookup));
        }
        for v in validations {
            spawn_task(
                &shared,
                "position validation",
                run_validation(shared.clone(), v),
            );
        }
        // One source per leader.
        {
            let leaders = shared.lock().leaders();
            let mut sources = shared.sources.lock().unwrap_or_else(|e| e.into_inner());
            sources.retain(|_, h| !h.is_finished());
            for node in leaders {
                sources.entry(node).or_insert_with(|| {
                    let source = BrokerSource {
                        shared: shared.clone(),
                        node,
                    };
                    spawn_task(&shared, "fetch source", source.run())
                });
            }
        }
        // Sleep until something changes, a backoff ends, or a leaderless partition needs
        // another metadata refresh.
        let (next_retry, leaderless) = {
            let f = shared.lock();
            let leaderless = f.assignment().any(|tp| f.leader(tp).is_none());
            (f.next_retry(Instant::now()), leaderless)
        };
        let mut wait = Duration::from_secs(1);
        if let Some(t) = next_retry {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        if leaderless {
            wait = wait.min(crate::cluster::backoff_delay(
                cfg.retry_backoff,
                cfg.retry_backoff_max,
                refresh_attempt,
            ));
            shared.lock().request_metadata();
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn run_lookup(shared: Arc<Shared>, lookup: krust_core::fetch::OffsetLookup) {
    let isolation = shared.lock().config().isolation;
    let res = shared
        .cluster
        .send(lookup.node, |_v| lookup.to_request(isolation))
        .await;
    let now = Instant::now();
    let mut refresh = false;
    {
        let mut f = shared.lock();
        match res {
            Ok((_v, resp)) => {
                shared
                    .cluster
                    .note_throttle(lookup.node, resp.throttle_time_ms);
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                        let code = ErrorCode(p.error_code);
                        let result = if code.is_ok() {
                            LookupResult::Found {
                                offset: p.offset,
                                leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                            }
                        } else {
                            LookupResult::Error(code)
                        };
                        refresh |= f
                            .handle_lookup(lookup.token, &tp, result, now)
                            .refresh_metadata;
                    }
                }
                // Partitions the broker left out are looked up again.
                f.handle_lookup_done(&lookup, now);
            }
            Err(e) => {
                debug!(broker = lookup.node, error = %e, "ListOffsets failed");
                f.handle_lookup_failed(&lookup, now);
                refresh = true;
            }
        }
    }
    if refresh {
        shared.cluster.request_metadata_refresh();
    }
    shared.notify_changed();
}

async fn run_validation(shared: Arc<Shared>, v: krust_core::fetch::Validation) {
    let now_supported = match shared
        .cluster
        .version(v.node, ApiKey::OffsetForLeaderEpoch)
        .await
    {
        Ok(_) => true,
        Err(Error::Unsupported { .. }) => false,
        Err(e) => {
            debug!(broker = v.node, error = %e, "cannot reach the leader to validate positions");
            shared.lock().handle_validation_failed(&v, Instant::now());
            shared.notify_changed();
            return;
        }
    };
    if !now_supported {
        // The broker does not offer OffsetForLeaderEpoch (tansu): skip validation cleanly.
        let mut f = shared.lock();
        let now = Instant::now();
        for (tp, _, _) in &v.partitions {
            f.handle_validation(v.token, tp, ValidationResult::Unsupported, now);
        }
        drop(f);
        shared.notify_changed();
        return;
    }
    let res = shared.cluster.send(v.node, |_ver| v.to_request()).await;
    let now = Instant::now();
    let mut data = false;
    {
        let mut f = shared.lock();
        match res {
            Ok((_ver, resp)) => {
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.topic.0.as_str(), p.partition);
                        let code = ErrorCode(p.error_code);
                        let result = if code.is_ok() {
                            ValidationResult::EndOffset {
                                leader_epoch: p.leader_epoch,
                                end_offset: p.end_offset,
                            }
                        } else {
                            ValidationResult::Error(code)
                        };
                        let fu = f.handle_validation(v.token, &tp, result, now);
                        if fu.data_ready {
                            warn!(partition = %tp, "log truncation detected; position moved back");
                        }
                        data |= fu.data_ready;
                    }
                }
                f.handle_validation_done(&v, now);
            }
            Err(e) => {
                debug!(broker = v.node, error = %e, "OffsetForLeaderEpoch failed");
                f.handle_validation_failed(&v, now);
            }
        }
    }
    if data {
        shared.notify_data();
    }
    shared.notify_changed();
}

/// A broker's fetch pipeline: one fetch in flight at a time over every ready partition the
/// broker leads. Ends when the broker leads no assigned partition (the driver starts a new one
/// when it does again).
pub(crate) struct BrokerSource {
    pub(crate) shared: Arc<Shared>,
    pub(crate) node: NodeId,
}

impl BrokerSource {
    /// Runs the pipeline until the broker leads nothing assigned (or the task is aborted).
    pub(crate) async fn run(self) {
        let BrokerSource { shared, node } = self;
        let mut changed = shared.changed.subscribe();
        let timeout_base = shared.cluster.config().request_timeout;
        loop {
            changed.borrow_and_update();
            let now = Instant::now();
            let (plan, next_retry, leads, exhausted, opts) = {
                let mut f = shared.lock();
                let plan = f.plan_fetch(node, now);
                let leads = f.leaders().contains(&node);
                let opts = ParseOptions {
                    isolation: f.config().isolation,
                    limits: DecompressLimits::default(),
                    check_crcs: f.config().check_crcs,
                };
                (
                    plan,
                    f.next_retry(now),
                    leads,
                    f.is_budget_exhausted(),
                    opts,
                )
            };
            let Some(plan) = plan else {
                if !leads {
                    shared.notify_changed();
                    return;
                }
                if exhausted {
                    shared.stats().budget_waits += 1;
                }
                let wait = next_retry
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(5))
                    .max(Duration::from_millis(1));
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            };
            shared.stats().fetches += 1;
            let timeout = timeout_base + Duration::from_millis(plan.max_wait_ms.max(0) as u64);
            let res = shared
                .cluster
                .send_timeout(node, timeout, |_v| plan.to_request())
                .await;
            let now = Instant::now();
            let followup = match res {
                Ok((_v, resp)) => {
                    shared.cluster.note_throttle(node, resp.throttle_time_ms);
                    let code = ErrorCode(resp.error_code);
                    if !code.is_ok() {
                        debug!(broker = node, %code, "fetch failed");
                        shared.stats().failed_fetches += 1;
                        shared.lock().handle_fetch_failed(&plan, now)
                    } else {
                        // Parse and decompress outside the lock.
                        let mut outcomes: Vec<(TopicPartition, PartitionOutcome)> = Vec::new();
                        for t in &resp.responses {
                            for p in &t.partitions {
                                let tp = TopicPartition::new(t.topic.0.as_str(), p.partition_index);
                                let Some(planned) = plan.partition(&tp) else {
                                    continue;
                                };
                                outcomes.push((tp, partition_outcome(planned, p, &opts)));
                            }
                        }
                        drop(resp);
                        shared.lock().handle_fetch(&plan, outcomes, now)
                    }
                }
                Err(e) => {
                    debug!(broker = node, error = %e, "fetch failed");
                    shared.stats().failed_fetches += 1;
                    shared.lock().handle_fetch_failed(&plan, now)
                }
            };
            // The fetch released its reservation: a source parked on the prefetch budget must
            // plan again now (this source re-plans at once and would otherwise take the freed
            // budget back every time, starving the parked one).
            let budget_freed = shared.lock().take_budget_wakeup();
            if followup.refresh_metadata {
                shared.cluster.request_metadata_refresh();
                shared.lock().request_metadata();
                shared.notify_changed();
            } else if followup.lookup_needed || budget_freed {
                shared.notify_changed();
            }
            if followup.data_ready {
                shared.notify_data();
            }
        }
    }
}
