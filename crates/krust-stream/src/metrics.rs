//! Job metrics: counters updated by the running job, readable at any time through a
//! [`Metrics`] handle and emitted as tracing events (target `krust_stream::metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use krust_client::consumer::TopicPartition;

#[derive(Debug, Default)]
struct Inner {
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
    commits: AtomicU64,
    commit_nanos_total: AtomicU64,
    commit_nanos_max: AtomicU64,
    aborts: AtomicU64,
    rebalances: AtomicU64,
    lag: Mutex<BTreeMap<TopicPartition, i64>>,
}

/// A handle on a job's metrics (cheap to clone; shared with the running job).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

/// The metrics at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Input records processed (each at most once per attempt; replays after an abort count
    /// again).
    pub records_in: u64,
    /// Output records handed to the producer (dead letters not included).
    pub records_out: u64,
    /// Records that failed a stage (whatever the policy did with them).
    pub errors: u64,
    /// Records skipped by [`ErrorPolicy::Skip`](crate::ErrorPolicy::Skip).
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Successful commits (offset commits, or committed transactions).
    pub commits: u64,
    /// Mean commit latency (flush + commit, or send offsets + commit transaction).
    pub commit_latency_avg: Duration,
    /// Slowest commit.
    pub commit_latency_max: Duration,
    /// Transactions aborted (rebalance, error, shutdown).
    pub aborts: u64,
    /// Partition assignments received.
    pub rebalances: u64,
    /// Records behind the end of each owned partition (end offset - position), as of the last
    /// update.
    pub lag: BTreeMap<TopicPartition, i64>,
}

impl Metrics {
    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let i = &self.0;
        let commits = i.commits.load(Ordering::Relaxed);
        let total = i.commit_nanos_total.load(Ordering::Relaxed);
        MetricsSnapshot {
            records_in: i.records_in.load(Ordering::Relaxed),
            records_out: i.records_out.load(Ordering::Relaxed),
            errors: i.errors.load(Ordering::Relaxed),
            skipped: i.skipped.load(Ordering::Relaxed),
            dead_lettered: i.dead_lettered.load(Ordering::Relaxed),
            commits,
            commit_latency_avg: Duration::from_nanos(total.checked_div(commits).unwrap_or(0)),
            commit_latency_max: Duration::from_nanos(i.commit_nanos_max.load(Ordering::Relaxed)),
            aborts: i.aborts.load(Ordering::Relaxed),
            rebalances: i.rebalances.load(Ordering::Relaxed),
            lag: i.lag.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    pub(crate) fn add_in(&self, n: u64) {
        self.0.records_in.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_out(&self, n: u64) {
        self.0.records_out.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn error(&self) {
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn skipped(&self) {
        self.0.skipped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dead_lettered(&self) {
        self.0.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn aborted(&self) {
        self.0.aborts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rebalanced(&self) {
        self.0.rebalances.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn committed(&self, took: Duration) {
        let n = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.0.commits.fetch_add(1, Ordering::Relaxed);
        self.0.commit_nanos_total.fetch_add(n, Ordering::Relaxed);
        self.0.commit_nanos_max.fetch_max(n, Ordering::Relaxed);
    }
    pub(crate) fn set_lag(&self, lag: BTreeMap<TopicPartition, i64>) {
        *self.0.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// Emits the current values as one tracing event at INFO.
    pub fn emit(&self, job: &str) {
        let s = self.snapshot();
        let lag: i64 = s.lag.values().sum();
        tracing::info!(
            target: "krust_stream::metrics",
            job,
            records_in = s.records_in,
            records_out = s.records_out,
            errors = s.errors,
            skipped = s.skipped,
            dead_lettered = s.dead_lettered,
            commits = s.commits,
            commit_latency_avg_ms = s.commit_latency_avg.as_secs_f64() * 1e3,
            commit_latency_max_ms = s.commit_latency_max.as_secs_f64() * 1e3,
            aborts = s.aborts,
            lag,
            partitions = s.lag.len(),
            "stream job metrics"
        );
    }
}
