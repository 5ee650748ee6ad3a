//! [`Job`]: runs a pipeline: reads the source, applies the operators, writes the sink, commits
//! per the delivery guarantee, follows rebalances, and stops at the end of a bounded source,
//! on SIGINT/SIGTERM or through a [`ShutdownHandle`].
//!
//! The loop and the guarantees are described on [`Job`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use krust_client::consumer::{ConsumerRecord, StartOffset, TopicPartition};
use krust_client::group::{
    ConsumerGroupMetadata, GroupMember, OffsetAndMetadata, Rebalance, Subscription,
};
use krust_client::producer::{DeliveryFuture, IntoTopic, ProducerRecord};
use krust_client::{Admin, Cluster, Consumer, Producer};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{RecordError, StreamError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pipeline::{Chain, Pipeline, Staged};
use crate::record::{Origin, Record};
use crate::sink::{DeliveryGuarantee, KafkaSink, TopicSelector};
use crate::source::{ErrorPolicy, SourceConfig, StartPosition, StopPosition, Topics};
use crate::txn;

/// Why a job ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A bounded source reached every stop offset.
    BoundedEnd,
    /// SIGINT or SIGTERM.
    Signal,
    /// [`ShutdownHandle::shutdown`].
    Shutdown,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// Why it stopped.
    pub reason: StopReason,
    /// The final metrics.
    pub metrics: MetricsSnapshot,
}

/// Asks a running job to stop gracefully (finish the open transaction or commit what is
/// acknowledged, leave the group). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Requests the stop; [`Job::run`] returns once it is done.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// A pipeline ended in a sink, ready to run.
///
/// # The loop
///
/// One task polls the consumer, runs every polled record through the operators (async stages
/// concurrently, outputs in input order), hands the outputs to the producer, and commits every
/// commit interval. Because a polled batch is processed whole before anything else happens,
/// the consumer's position of a partition is always the offset after the last record
/// processed: that is what gets committed (capped at the stop offset of a bounded source).
///
/// - NONE: positions are committed every interval, acknowledged or not.
/// - AT_LEAST_ONCE: at each interval the producer is flushed and every delivery checked; only
///   then are the positions committed. A failed delivery stops the job before its input offset
///   is committed. On revocation the same happens before the partitions are released.
/// - EXACTLY_ONCE: the first record after a commit begins a transaction; at each interval the
///   producer is flushed, the positions are added to the transaction with the group's current
///   metadata (generation, member id: KIP-447 fences a zombie that lost its partitions) and the
///   transaction is committed. On revocation or loss of partitions, or when a commit fails
///   with an abortable error, the open transaction is aborted and every partition it touched is
///   rewound to its first record in it; partitions that move start at the group's committed
///   offsets, fetched with RequireStable so a transaction still holding offsets is waited for.
///   The transactional id is `<prefix>-<instance id>`: a restarted instance fences its
///   predecessor and aborts the transaction it left open when it initialises.
pub struct Job {
    runner: Box<dyn Runner>,
    metrics: Metrics,
    shutdown: ShutdownHandle,
    shutdown_rx: watch::Receiver<bool>,
    signals: bool,
    name: String,
    metrics_interval: Duration,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

trait Runner: Send {
    fn run(
        self: Box<Self>,
        ctl: Control,
    ) -> Pin<Box<dyn Future<Output = Result<StopReason, StreamError>> + Send>>;
}

struct Control {
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    signals: Signals,
    name: String,
    metrics_interval: Duration,
}

impl Job {
    pub(crate) fn new<T: Send + 'static>(
        pipeline: Pipeline<T>,
        sink: KafkaSink<T>,
    ) -> Result<Job, StreamError> {
        let settings = Settings::check(&pipeline.source, &sink)?;
        let (tx, rx) = watch::channel(false);
        Ok(Job {
            runner: Box::new(Plan {
                source: pipeline.source,
                chain: pipeline.chain,
                sink,
                settings,
            }),
            metrics: Metrics::default(),
            shutdown: ShutdownHandle(Arc::new(tx)),
            shutdown_rx: rx,
            signals: true,
            name: "krust-stream".into(),
            metrics_interval: Duration::from_secs(10),
        })
    }

    /// The job's metrics (readable while it runs).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// A handle that stops the job gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Whether SIGINT/SIGTERM stop the job gracefully (default true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// The job's name in logs and metric events (default `krust-stream`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How often metrics are emitted as a tracing event (default 10 s).
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.metrics_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Runs until a bounded source ends, a signal (if handled) or the shutdown handle stops
    /// it gracefully, or an error stops it (the open transaction is then aborted, and the
    /// member leaves the group).
    ///
    /// Cancel safety: dropping the future stops the job abruptly, like a crash: nothing
    /// uncommitted is committed (an open transaction stays open until the instance restarts or
    /// the broker's transaction timeout aborts it).
    pub async fn run(self) -> Result<JobSummary, StreamError> {
        let ctl = Control {
            metrics: self.metrics.clone(),
            shutdown: self.shutdown_rx,
            signals: Signals::install(self.signals),
            name: self.name.clone(),
            metrics_interval: self.metrics_interval,
        };
        let reason = self.runner.run(ctl).await?;
        self.metrics.emit(&self.name);
        Ok(JobSummary {
            reason,
            metrics: self.metrics.snapshot(),
        })
    }
}

/// The checked combination of source and sink settings.
#[derive(Debug, Clone)]
struct Settings {
    guarantee: DeliveryGuarantee,
    commit_interval: Duration,
    /// The producer's final configuration (checked at build time).
    producer: krust_client::ProducerConfig,
}

impl Settings {
    fn check<T>(source: &SourceConfig, sink: &KafkaSink<T>) -> Result<Settings, StreamError> {
        let g = sink.guarantee;
        let commit_interval = sink.commit_interval.unwrap_or(match g {
            DeliveryGuarantee::ExactlyOnce => Duration::from_millis(100),
            DeliveryGuarantee::AtLeastOnce => Duration::from_secs(1),
            DeliveryGuarantee::None => Duration::from_secs(5),
        });
        let group = source.group.as_ref();
        if g != DeliveryGuarantee::None && group.is_none() {
            return Err(StreamError::config(
                "group_id",
                format!(
                    "{} commits input offsets to a consumer group: set the source's group_id",
                    match g {
                        DeliveryGuarantee::AtLeastOnce => "AT_LEAST_ONCE",
                        _ => "EXACTLY_ONCE",
                    }
                ),
            ));
        }
        let mut transactional_id = None;
        if g == DeliveryGuarantee::ExactlyOnce {
            let group = group.expect("checked above");
            let instance = sink
                .instance_id
                .clone()
                .or_else(|| group.group.instance_id.clone())
                .ok_or_else(|| {
                    StreamError::config(
                        "instance_id",
                        "EXACTLY_ONCE needs an instance id that stays the same when this \
                         instance restarts and differs between instances (the transactional \
                         id is <prefix>-<instance id>; a restart fences its predecessor)",
                    )
                })?;
            if instance.is_empty() {
                return Err(StreamError::config("instance_id", "must not be empty"));
            }
            let timeout = sink
                .transaction_timeout
                .unwrap_or(sink.producer.transaction_timeout);
            let session = group.group.session_timeout;
            if timeout <= commit_interval + session {
                return Err(StreamError::config(
                    "transaction_timeout",
                    format!(
                        "{} ms must be greater than commit_interval ({} ms) + session.timeout.ms \
                         ({} ms): the broker would abort (and fence) the open transaction of \
                         an instance the group still counts as alive; raise \
                         transaction_timeout or lower the commit interval or the session \
                         timeout",
                        timeout.as_millis(),
                        commit_interval.as_millis(),
                        session.as_millis()
                    ),
                ));
            }
            if timeout > session * 20 {
                warn!(
                    transaction_timeout_ms = timeout.as_millis() as u64,
                    session_timeout_ms = session.as_millis() as u64,
                    "after a crash, the partitions of the dead instance wait up to \
                     transaction.timeout.ms for its open transaction unless it restarts"
                );
            }
            let prefix = sink.transactional_id_prefix.clone().unwrap_or_default();
            transactional_id = Some(format!("{prefix}-{instance}"));
        }
        if source.stop.is_some() && matches!(source.topics, Topics::Pattern(_)) {
            debug!("bounded source over a pattern: topics are matched once, at start");
        }
        let mut producer = sink.producer.clone();
        if let Some(id) = &transactional_id {
            // The timeout first: setting the id then lowers a default delivery.timeout.ms to
            // it.
            if let Some(t) = sink.transaction_timeout {
                producer = producer.with_transaction_timeout(t);
            }
            producer = producer.with_transactional_id(id.clone());
        }
        producer.validate()?;
        Ok(Settings {
            guarantee: g,
            commit_interval,
            producer,
        })
    }
}

/// Everything needed to start the job.
struct Plan<T> {
    source: SourceConfig,
    chain: Chain<T>,
    sink: KafkaSink<T>,
    settings: Settings,
}

impl<T: Send + 'static> Runner for Plan<T> {
    fn run(
        self: Box<Self>,
        ctl: Control,
    ) -> Pin<Box<dyn Future<Output = Result<StopReason, StreamError>> + Send>> {
        Box::pin(async move { run_plan(*self, ctl).await })
    }
}

async fn run_plan<T: Send + 'static>(
    plan: Plan<T>,
    ctl: Control,
) -> Result<StopReason, StreamError> {
    let Plan {
        source,
        chain,
        sink,
        settings,
    } = plan;
    let cluster = Cluster::connect(source.consumer.client.clone()).await?;
    let consumer = Consumer::with_cluster(cluster.clone(), source.consumer.clone())?;
    let pconfig = settings.producer.clone();
    let producer = match Producer::new(pconfig).await {
        Ok(p) => p,
        Err(e) => {
            cluster.close();
            return Err(e.into());
        }
    };
    let mut job = Running {
        chain,
        sink,
        settings,
        consumer,
        producer,
        cluster,
        member: None,
        applied_metadata: None,
        group_cluster: None,
        owned: BTreeSet::new(),
        stops: None,
        started_once: BTreeSet::new(),
        last_committed: HashMap::new(),
        pending: Vec::new(),
        round: None,
        txn_open: false,
        txn_started: Instant::now(),
        txn_start: HashMap::new(),
        dirty: false,
        last_commit: Instant::now(),
        next_global_check: Instant::now(),
        metrics: ctl.metrics.clone(),
        name: ctl.name.clone(),
        source,
    };
    let result = job.run(ctl).await;
    job.finish(result.is_ok()).await;
    result
}

/// The state of a running job.
struct Running<T> {
    source: SourceConfig,
    chain: Chain<T>,
    sink: KafkaSink<T>,
    settings: Settings,
    consumer: Consumer,
    producer: Producer,
    cluster: Cluster,
    member: Option<GroupMember>,
    /// The group metadata of the last assignment this job applied: the membership its records
    /// belong to. The member's own (`GroupMember::group_metadata`) can already be a newer
    /// generation, in which these partitions may be someone else's; offsets sent with it would
    /// be accepted and the records written twice.
    applied_metadata: Option<ConsumerGroupMetadata>,
    /// The member's own connections.
    group_cluster: Option<Cluster>,
    /// Partitions this instance processes now.
    owned: BTreeSet<TopicPartition>,
    /// Bounded: the stop offset of every partition in scope.
    stops: Option<BTreeMap<TopicPartition, i64>>,
    /// Partitions that already started once in this process (an explicit start position
    /// applies only to a partition's first assignment; afterwards the committed offset wins).
    started_once: BTreeSet<TopicPartition>,
    /// The last offset committed (or found committed) per owned partition.
    last_committed: HashMap<TopicPartition, i64>,
    /// Deliveries not yet checked (AT_LEAST_ONCE, EXACTLY_ONCE).
    pending: Vec<(Arc<str>, DeliveryFuture)>,
    /// AT_LEAST_ONCE: the commit round in flight (its offsets wait for its deliveries while
    /// processing goes on).
    round: Option<Round>,
    txn_open: bool,
    txn_started: Instant,
    /// EXACTLY_ONCE: the first offset processed in the open transaction, per partition (where
    /// an abort rewinds to).
    txn_start: HashMap<TopicPartition, i64>,
    /// Records processed since the last commit.
    dirty: bool,
    last_commit: Instant,
    next_global_check: Instant,
    metrics: Metrics,
    name: String,
}

/// An AT_LEAST_ONCE commit round: positions taken at one moment, committed once every output
/// sent before that moment is acknowledged.
struct Round {
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    acks: tokio::task::JoinHandle<Result<(), StreamError>>,
    started: Instant,
}

/// Waits for every delivery; the first failure is returned.
async fn await_deliveries(pending: Vec<(Arc<str>, DeliveryFuture)>) -> Result<(), StreamError> {
    let mut first = None;
    for (topic, d) in pending {
        if let Err(e) = d.await {
            if first.is_none() {
                first = Some(StreamError::Produce {
                    topic: topic.to_string(),
                    source: Box::new(e),
                });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

async fn round_acks(round: &mut Option<Round>) -> Result<(), StreamError> {
    match round {
        Some(r) => match (&mut r.acks).await {
            Ok(res) => res,
            Err(e) => Err(StreamError::Transaction(format!(
                "delivery check task failed: {e}"
            ))),
        },
        None => std::future::pending().await,
    }
}

enum Step {
    RoundAcked(Result<(), StreamError>),
    Shutdown(StopReason),
    Group(Option<Rebalance>),
    Commit,
    Discover,
    Metrics,
    Records(krust_client::Result<Vec<ConsumerRecord>>),
}

/// Whether a failed offset commit can simply be retried later: the group is rebalancing or
/// the membership moved on (the partitions' next owner starts at the last commit), or the
/// failure is transient.
fn commit_can_wait(e: &StreamError) -> bool {
    use krust_wire::ErrorCode as code;
    let StreamError::Client(c) = e else {
        return false;
    };
    c.is_retriable()
        || c.is_transport()
        || c.is_timeout()
        || matches!(
            c.code(),
            Some(code::ILLEGAL_GENERATION | code::UNKNOWN_MEMBER_ID | code::REBALANCE_IN_PROGRESS)
        )
}

/// Awaits `fut` (a broker round: a commit, a flush, an offset fetch) while telling the group
/// that the job is alive: `max.poll.interval.ms` is meant to catch a stuck application, not a
/// slow broker or a transaction that another instance's crash holds open.
async fn alive<F: Future>(member: Option<&GroupMember>, fut: F) -> F::Output {
    let Some(m) = member else {
        return fut.await;
    };
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tick.tick() => m.polled(),
        }
    }
}

async fn next_event(member: &Option<GroupMember>) -> Option<Rebalance> {
    match member {
        Some(m) => m.next_event().await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, installed when the job starts (a signal during start-up is not lost
/// and does not kill the process).
struct Signals {
    #[cfg(unix)]
    streams: Vec<tokio::signal::unix::Signal>,
    enabled: bool,
}

impl Signals {
    fn install(enabled: bool) -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = if enabled {
                [SignalKind::interrupt(), SignalKind::terminate()]
                    .into_iter()
                    .filter_map(|k| signal(k).ok())
                    .collect()
            } else {
                Vec::new()
            };
            Signals { streams, enabled }
        }
        #[cfg(not(unix))]
        {
            Signals { enabled }
        }
    }

    /// Resolves when a signal arrives (never when disabled).
    async fn recv(&mut self) {
        if !self.enabled {
            return std::future::pending().await;
        }
        #[cfg(unix)]
        {
            if self.streams.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.streams.iter_mut().map(|s| Box::pin(s.recv()));
            let _ = futures::future::select_all(waits).await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

impl<T: Send + 'static> Running<T> {
    fn eos(&self) -> bool {
        self.settings.guarantee == DeliveryGuarantee::ExactlyOnce
    }

    fn group_id(&self) -> Option<&str> {
        self.source
            .group
            .as_ref()
            .map(|g| g.group.group_id.as_str())
    }

    async fn run(&mut self, mut ctl: Control) -> Result<StopReason, StreamError> {
        if self.eos() {
            if self.sink.abort_lingering {
                let prefix = format!(
                    "{}-",
                    self.sink
                        .transactional_id_prefix
                        .as_deref()
                        .unwrap_or_default()
                );
                let aborted = Admin::new(self.producer.cluster().clone())
                    .abort_lingering(&prefix)
                    .await?;
                info!(job = %self.name, %prefix, aborted = aborted.len(), "lingering transactions aborted");
            }
            txn::init(&self.producer).await?;
        }
        let scope = self.scope().await?;
        if let Some(stop) = self.source.stop.clone() {
            let stops = self.stop_offsets(&scope, &stop).await?;
            info!(job = %self.name, partitions = stops.len(), records = stops.values().sum::<i64>(), "bounded source: stop offsets fixed");
            self.stops = Some(stops);
        }
        let group_mode =
            self.source.group.is_some() && !matches!(self.source.topics, Topics::Partitions(_));
        if group_mode {
            let mut settings = self.source.group.clone().expect("group mode");
            settings.enable_auto_commit = false;
            if let Some(d) = self.source.discovery {
                settings.topic_refresh = d;
            }
            let subscription = match &self.source.topics {
                Topics::Names(n) => Subscription::topics(n.iter().cloned()),
                Topics::Pattern(p) => Subscription::pattern(p)?,
                Topics::Partitions(_) => unreachable!("assign mode"),
            };
            // The member gets connections of its own: its commits must not queue behind the
            // consumer's fetch long-polls on a shared connection (a broker answers one
            // connection's requests in order).
            let group_cluster = Cluster::connect(self.source.consumer.client.clone()).await?;
            self.group_cluster = Some(group_cluster.clone());
            self.member = Some(GroupMember::join(group_cluster, settings, subscription)?);
        } else {
            self.assign_new(scope).await?;
        }
        let bounded = self.stops.is_some();
        let discovery = (!bounded && !group_mode)
            .then_some(self.source.discovery)
            .flatten();
        let mut next_discovery = discovery.map(|d| Instant::now() + d);
        let mut next_metrics = Instant::now() + ctl.metrics_interval;
        let poll_timeout = self.source.poll_timeout;
        loop {
            if bounded && self.bounded_done().await? {
                info!(job = %self.name, "bounded source reached every stop offset");
                return Ok(StopReason::BoundedEnd);
            }
            if let Some(m) = &self.member {
                m.polled();
            }
            let commit_at = self.next_commit();
            let step = tokio::select! {
                biased;
                r = ctl.shutdown.wait_for(|v| *v) => {
                    let _ = r;
                    Step::Shutdown(StopReason::Shutdown)
                }
                _ = ctl.signals.recv() => Step::Shutdown(StopReason::Signal),
                e = next_event(&self.member) => Step::Group(e),
                r = round_acks(&mut self.round) => Step::RoundAcked(r),
                _ = sleep_until_opt(commit_at) => Step::Commit,
                _ = sleep_until_opt(next_discovery) => Step::Discover,
                _ = tokio::time::sleep_until(next_metrics.into()) => Step::Metrics,
                r = self.consumer.poll_timeout(poll_timeout) => Step::Records(r),
            };
            match step {
                Step::Shutdown(reason) => {
                    info!(job = %self.name, ?reason, "stopping");
                    return Ok(reason);
                }
                Step::Group(None) => {
                    return Err(StreamError::Group("the group member stopped".into()))
                }
                Step::Group(Some(ev)) => self.on_rebalance(ev).await?,
                Step::Commit => {
                    if self.settings.guarantee == DeliveryGuarantee::AtLeastOnce {
                        self.start_round();
                    } else {
                        self.commit().await?;
                    }
                }
                Step::RoundAcked(r) => {
                    r?;
                    self.finish_round().await?;
                }
                Step::Discover => {
                    let scope = self.scope().await?;
                    self.assign_new(scope).await?;
                    next_discovery = discovery.map(|d| Instant::now() + d);
                }
                Step::Metrics => {
                    self.update_lag();
                    self.metrics.emit(&ctl.name);
                    next_metrics = Instant::now() + ctl.metrics_interval;
                }
                Step::Records(r) => {
                    let records = r?;
                    if !records.is_empty() {
                        self.process(records).await?;
                    }
                }
            }
        }
    }

    /// Commits what is done (graceful) or aborts (error), leaves the group, closes clients.
    async fn finish(&mut self, graceful: bool) {
        if graceful {
            if let Err(e) = self.commit().await {
                warn!(job = %self.name, error = %e, "final commit failed");
                if self.txn_open {
                    let _ = self.abort().await;
                }
            }
        } else if self.txn_open {
            let _ = self.abort().await;
        }
        self.update_lag();
        if let Some(member) = self.member.take() {
            let closing = member.clone();
            let close = tokio::spawn(async move { closing.close().await });
            while let Some(ev) = member.next_event().await {
                if let Rebalance::Revoked { partitions, guard } = ev {
                    self.consumer.unassign(partitions.iter());
                    drop(guard);
                }
            }
            let _ = close.await;
        }
        self.producer.close().await;
        if let Some(c) = self.group_cluster.take() {
            c.close();
        }
        self.cluster.close();
    }

    /// The partitions the source covers now.
    async fn scope(&self) -> Result<Vec<TopicPartition>, StreamError> {
        let admin = Admin::new(self.cluster.clone());
        let names: Vec<String> = match &self.source.topics {
            Topics::Partitions(p) => return Ok(p.clone()),
            Topics::Names(n) => n.clone(),
            Topics::Pattern(p) => {
                let re = regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| StreamError::config("topic_pattern", e.to_string()))?;
                admin
                    .list_topics()
                    .await?
                    .into_iter()
                    .filter(|t| re.is_match(t) && !t.starts_with("__"))
                    .collect()
            }
        };
        let mut out = Vec::new();
        for name in names {
            let t = self.cluster.topic(&name).await?;
            out.extend(
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(name.clone(), p.partition)),
            );
        }
        out.sort();
        Ok(out)
    }

    /// Bounded: the stop offset of every partition in scope.
    async fn stop_offsets(
        &self,
        scope: &[TopicPartition],
        stop: &StopPosition,
    ) -> Result<BTreeMap<TopicPartition, i64>, StreamError> {
        match stop {
            StopPosition::Offsets(m) => Ok(m.clone()),
            StopPosition::Latest => self.end_offsets(scope).await,
            StopPosition::Timestamp(t) => {
                let ends = self.end_offsets(scope).await?;
                let found = self
                    .consumer
                    .offsets_for_times(scope.iter().map(|tp| (tp.clone(), *t)))
                    .await?;
                Ok(ends
                    .into_iter()
                    .map(|(tp, end)| {
                        let at = found
                            .get(&tp)
                            .copied()
                            .flatten()
                            .map_or(end, |l| l.offset.min(end));
                        (tp, at)
                    })
                    .collect())
            }
        }
    }

    /// The end of each partition from a Fetch (the high watermark, or the last stable offset
    /// under read_committed): exact where some brokers' ListOffsets LATEST is not.
    async fn end_offsets(
        &self,
        scope: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, StreamError> {
        if scope.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut config = self.source.consumer.clone();
        config.max_partition_fetch_bytes = 1024;
        config.group = None;
        let mut probe = Consumer::with_cluster(self.cluster.clone(), config)?;
        probe
            .assign(scope.iter().map(|tp| (tp.clone(), StartOffset::Earliest)))
            .await?;
        let deadline = Instant::now() + self.cluster.config().request_timeout;
        let mut ends = BTreeMap::new();
        while ends.len() < scope.len() {
            if Instant::now() > deadline {
                let missing: Vec<String> = scope
                    .iter()
                    .filter(|tp| !ends.contains_key(*tp))
                    .map(|tp| format!("{tp:?}"))
                    .collect();
                return Err(StreamError::Client(krust_client::Error::Other(format!(
                    "could not learn the end offsets of {} for the bounded source",
                    missing.join(", ")
                ))));
            }
            let _ = probe.poll_timeout(Duration::from_millis(100)).await?;
            for tp in scope {
                if let Some(w) = probe.watermarks(tp) {
                    let end = if w.last_stable_offset >= 0
                        && self.source.consumer.isolation_level
                            == krust_client::consumer::IsolationLevel::ReadCommitted
                    {
                        w.last_stable_offset
                    } else {
                        w.high_watermark
                    };
                    ends.insert(tp.clone(), end);
                }
            }
        }
        Ok(ends)
    }

    /// Where `tp` starts given its committed offset.
    fn start_for(&self, tp: &TopicPartition, committed: Option<i64>) -> StartOffset {
        fn resolve(p: &StartPosition, tp: &TopicPartition, committed: Option<i64>) -> StartOffset {
            match p {
                StartPosition::Committed(fallback) => match committed {
                    Some(o) => StartOffset::Offset(o),
                    None => resolve(fallback, tp, None),
                },
                StartPosition::Earliest => StartOffset::Earliest,
                StartPosition::Latest => StartOffset::Latest,
                StartPosition::Timestamp(t) => StartOffset::Timestamp(*t),
                StartPosition::Offsets(m, fallback) => match m.get(tp) {
                    Some(o) => StartOffset::Offset(*o),
                    None => resolve(fallback, tp, committed),
                },
            }
        }
        if self.started_once.contains(tp) {
            // Moved back to this instance: resume where the group is.
            return match committed {
                Some(o) => StartOffset::Offset(o),
                None => resolve(&StartPosition::default(), tp, None),
            };
        }
        resolve(&self.source.start, tp, committed)
    }

    /// The group's committed offsets for `tps` (empty without a group).
    async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, StreamError> {
        let Some(group) = self.group_id() else {
            return Ok(tps.iter().map(|tp| (tp.clone(), None)).collect());
        };
        let mut attempt = 0;
        loop {
            let r = match &self.member {
                Some(m) => alive(Some(m), m.committed(tps)).await,
                None => krust_client::group::fetch_committed(&self.cluster, group, tps, true).await,
            };
            match r {
                Ok(m) => {
                    return Ok(m
                        .into_iter()
                        .map(|(tp, o)| (tp, o.map(|o| o.offset).filter(|o| *o >= 0)))
                        .collect())
                }
                Err(e) if attempt < 5 && e.is_retriable() => {
                    warn!(job = %self.name, error = %e, "fetching committed offsets failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Starts the partitions of `tps` this instance does not own yet.
    async fn assign_new(&mut self, tps: Vec<TopicPartition>) -> Result<(), StreamError> {
        let new: Vec<TopicPartition> = tps
            .into_iter()
            .filter(|tp| !self.owned.contains(tp))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let committed = self.committed(&new).await?;
        let mut starts = Vec::with_capacity(new.len());
        let mut out_of_scope = Vec::new();
        for tp in &new {
            let c = committed.get(tp).copied().flatten();
            if let Some(stops) = &self.stops {
                if !stops.contains_key(tp) {
                    // Bounded: a partition that was not there at the start is not read.
                    out_of_scope.push(tp.clone());
                    continue;
                }
            }
            starts.push((tp.clone(), self.start_for(tp, c)));
            if let Some(c) = c {
                self.last_committed.insert(tp.clone(), c);
            }
        }
        debug!(job = %self.name, ?starts, "assigning");
        self.consumer.incremental_assign(starts.clone()).await?;
        for (tp, _) in starts {
            self.started_once.insert(tp.clone());
            self.owned.insert(tp);
        }
        if !out_of_scope.is_empty() {
            debug!(job = %self.name, ?out_of_scope, "not in the bounded source's scope");
            self.owned.extend(out_of_scope);
        }
        Ok(())
    }

    async fn on_rebalance(&mut self, ev: Rebalance) -> Result<(), StreamError> {
        match ev {
            Rebalance::Assigned {
                partitions,
                metadata,
            } => {
                self.applied_metadata = Some(metadata);
                self.metrics.rebalanced();
                let tps: Vec<TopicPartition> = partitions.into_keys().collect();
                info!(job = %self.name, partitions = ?tps, "assigned");
                self.assign_new(tps).await?;
            }
            Rebalance::Revoked { partitions, guard } => {
                info!(job = %self.name, partitions = ?partitions, "revoked");
                match self.settings.guarantee {
                    DeliveryGuarantee::ExactlyOnce => {
                        if self.txn_open {
                            self.abort().await?;
                        }
                    }
                    DeliveryGuarantee::AtLeastOnce => {
                        if let Err(e) = self.commit().await {
                            if matches!(e, StreamError::Produce { .. }) {
                                return Err(e);
                            }
                            warn!(job = %self.name, error = %e, "commit before revocation failed; the next owner may repeat some records");
                        }
                    }
                    DeliveryGuarantee::None => {
                        let _ = self.commit().await;
                    }
                }
                self.release(&partitions);
                drop(guard);
            }
            Rebalance::Lost { partitions, reason } => {
                warn!(job = %self.name, partitions = ?partitions, %reason, "partitions lost");
                if self.eos() && self.txn_open {
                    self.abort().await?;
                }
                self.release(&partitions);
            }
            Rebalance::Fatal(e) => return Err(StreamError::Group(e)),
        }
        Ok(())
    }

    fn release(&mut self, partitions: &[TopicPartition]) {
        self.consumer.unassign(partitions.iter());
        for tp in partitions {
            self.owned.remove(tp);
            self.last_committed.remove(tp);
            self.txn_start.remove(tp);
        }
        self.metrics.set_lag(BTreeMap::new());
    }

    fn next_commit(&self) -> Option<Instant> {
        let interval = self.settings.commit_interval;
        if self.eos() {
            return self.txn_open.then_some(self.txn_started + interval);
        }
        if self.round.is_some() {
            return None;
        }
        if self.dirty && self.group_id().is_some() {
            return Some(self.last_commit + interval);
        }
        None
    }

    /// Bounded: whether every partition reached its stop (with a group: every partition of
    /// the job, across instances, has its stop offset committed).
    async fn bounded_done(&mut self) -> Result<bool, StreamError> {
        let (local, in_scope) = {
            let Some(stops) = &self.stops else {
                return Ok(false);
            };
            let mut paused = Vec::new();
            let mut local = true;
            for tp in &self.owned {
                let Some(stop) = stops.get(tp) else { continue };
                if self.consumer.position(tp).is_some_and(|p| p >= *stop) {
                    paused.push(tp.clone());
                } else {
                    local = false;
                }
            }
            let already = self.consumer.paused();
            paused.retain(|tp| !already.contains(tp));
            if !paused.is_empty() {
                let _ = self.consumer.pause(paused.iter());
            }
            (local, stops.keys().all(|tp| self.owned.contains(tp)))
        };
        if !local {
            return Ok(false);
        }
        if self.dirty || self.txn_open {
            self.commit().await?;
        }
        if self.member.is_none() {
            // Assign mode: this instance owns every partition in scope.
            return Ok(in_scope);
        }
        if Instant::now() < self.next_global_check {
            return Ok(false);
        }
        self.next_global_check = Instant::now() + Duration::from_millis(300);
        let all: Vec<TopicPartition> = self
            .stops
            .as_ref()
            .expect("bounded")
            .keys()
            .cloned()
            .collect();
        let committed = self.committed(&all).await?;
        let stops = self.stops.as_ref().expect("bounded");
        Ok(stops.iter().all(|(tp, stop)| {
            *stop == 0
                || committed
                    .get(tp)
                    .copied()
                    .flatten()
                    .is_some_and(|c| c >= *stop)
        }))
    }

    /// Runs a polled batch through the operators and into the sink.
    async fn process(&mut self, records: Vec<ConsumerRecord>) -> Result<(), StreamError> {
        let mut batch = Vec::with_capacity(records.len());
        let mut last: Option<(Arc<str>, i32, bool, i64)> = None;
        let mut to_pause = Vec::new();
        for r in records {
            let fresh = match &last {
                Some((t, p, _, _)) => {
                    !(Arc::ptr_eq(t, &r.topic) || **t == *r.topic) || *p != r.partition
                }
                None => true,
            };
            if fresh {
                let tp = TopicPartition::new(r.topic.clone(), r.partition);
                let owned = self.owned.contains(&tp);
                let stop = self
                    .stops
                    .as_ref()
                    .map_or(i64::MAX, |s| s.get(&tp).copied().unwrap_or(0));
                last = Some((r.topic.clone(), r.partition, owned, stop));
            }
            let (_, _, owned, stop) = last.as_ref().expect("set above");
            if !*owned {
                continue;
            }
            if r.offset >= *stop {
                to_pause.push(TopicPartition::new(r.topic.clone(), r.partition));
                continue;
            }
            if self.eos() {
                self.txn_start
                    .entry(TopicPartition::new(r.topic.clone(), r.partition))
                    .or_insert(r.offset);
            }
            batch.push(r);
        }
        if !to_pause.is_empty() {
            to_pause.dedup();
            let _ = self.consumer.pause(to_pause.iter());
        }
        if batch.is_empty() {
            return Ok(());
        }
        if self.eos() && !self.txn_open {
            txn::begin(&self.producer).await?;
            self.txn_open = true;
            self.txn_started = Instant::now();
        }
        self.dirty = true;
        self.metrics.add_in(batch.len() as u64);
        let keep_raw = matches!(self.source.error_policy, ErrorPolicy::DeadLetter(_));
        let chain = self.chain.clone();
        let mut all_now = true;
        let staged: Vec<(Option<ConsumerRecord>, Origin, Staged<T>)> = batch
            .into_iter()
            .map(|r| {
                let origin = Origin {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: r.offset,
                };
                let raw = keep_raw.then(|| r.clone());
                let s = chain(r);
                if matches!(s, Staged::Later(_)) {
                    all_now = false;
                }
                (raw, origin, s)
            })
            .collect();
        if all_now {
            for (raw, origin, s) in staged {
                let Staged::Now(result) = s else {
                    unreachable!("checked")
                };
                self.handle(raw, origin, result).await?;
            }
        } else {
            let mut results = futures::stream::iter(
                staged
                    .into_iter()
                    .map(|(raw, origin, s)| async move { (raw, origin, s.resolve().await) }),
            )
            .buffered(4096);
            while let Some((raw, origin, result)) = results.next().await {
                self.handle(raw, origin, result).await?;
            }
        }
        Ok(())
    }

    /// Writes one input record's outputs, or applies the error policy.
    async fn handle(
        &mut self,
        raw: Option<ConsumerRecord>,
        origin: Origin,
        result: Result<Vec<Record<T>>, RecordError>,
    ) -> Result<(), StreamError> {
        let outs = match result {
            Ok(outs) => outs,
            Err(e) => return self.record_error(raw, origin, e).await,
        };
        let records = match self.to_producer_records(&outs) {
            Ok(r) => r,
            Err(e) => return self.record_error(raw, origin, e).await,
        };
        let n = records.len() as u64;
        for pr in records {
            self.send(pr).await?;
        }
        self.metrics.add_out(n);
        Ok(())
    }

    /// The producer records of one input's outputs (all or none: a serialization error fails
    /// the input record as a whole).
    fn to_producer_records(&self, outs: &[Record<T>]) -> Result<Vec<ProducerRecord>, RecordError> {
        let mut records = Vec::with_capacity(outs.len());
        for out in outs {
            let value = self
                .sink
                .serializer
                .serialize(&out.value)
                .map_err(|e| RecordError::new("serialize", e))?;
            let topic = match &self.sink.topic {
                TopicSelector::Fixed(t) => t.clone(),
                TopicSelector::PerRecord(f) => f(out).into_topic(),
            };
            let mut pr = ProducerRecord::new(topic);
            pr.value = Some(value);
            pr.key = match &self.sink.key {
                Some(f) => f(out),
                None => out.key.clone(),
            };
            pr.headers = match &self.sink.headers {
                Some(f) => f(out),
                None => out.headers.clone(),
            };
            pr.partition = self.sink.partition.as_ref().and_then(|f| f(out));
            pr.timestamp = Some(out.timestamp);
            records.push(pr);
        }
        Ok(records)
    }

    async fn send(&mut self, pr: ProducerRecord) -> Result<(), StreamError> {
        let topic = pr.topic.clone();
        match self.producer.send(pr).await {
            Ok(delivery) => {
                if self.settings.guarantee != DeliveryGuarantee::None {
                    self.pending.push((topic, delivery));
                }
                Ok(())
            }
            Err(e) => Err(StreamError::Produce {
                topic: topic.to_string(),
                source: Box::new(e),
            }),
        }
    }

    async fn record_error(
        &mut self,
        raw: Option<ConsumerRecord>,
        origin: Origin,
        error: RecordError,
    ) -> Result<(), StreamError> {
        self.metrics.error();
        match self.source.error_policy.clone() {
            ErrorPolicy::Fail => Err(StreamError::Record {
                topic: origin.topic.to_string(),
                partition: origin.partition,
                offset: origin.offset,
                error,
            }),
            ErrorPolicy::Skip => {
                self.metrics.skipped();
                warn!(job = %self.name, topic = %origin.topic, partition = origin.partition, offset = origin.offset, %error, "record skipped");
                Ok(())
            }
            ErrorPolicy::DeadLetter(topic) => {
                let raw = raw.expect("kept for the dead-letter policy");
                let mut pr = ProducerRecord::new(topic);
                pr.key = raw.key;
                pr.value = raw.value;
                pr.timestamp = Some(raw.timestamp);
                pr.headers = raw.headers;
                for (k, v) in [
                    ("krust.error", error.message.clone()),
                    ("krust.error.stage", error.stage.clone()),
                    ("krust.source.topic", origin.topic.to_string()),
                    ("krust.source.partition", origin.partition.to_string()),
                    ("krust.source.offset", origin.offset.to_string()),
                ] {
                    pr.headers.push(krust_client::consumer::RecordHeader::new(
                        k.to_string(),
                        Some(bytes::Bytes::from(v)),
                    ));
                }
                debug!(job = %self.name, topic = %origin.topic, partition = origin.partition, offset = origin.offset, %error, "record dead-lettered");
                self.send(pr).await?;
                self.metrics.dead_lettered();
                Ok(())
            }
        }
    }

    /// The positions to commit: owned partitions whose position moved since the last commit
    /// (capped at the stop offset when bounded).
    fn positions(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let mut out = BTreeMap::new();
        for tp in &self.owned {
            let Some(cursor) = self.consumer.cursor(tp) else {
                continue;
            };
            let mut at = cursor.offset;
            if let Some(stops) = &self.stops {
                match stops.get(tp) {
                    Some(s) => at = at.min(*s),
                    None => continue,
                }
            }
            if self.last_committed.get(tp) == Some(&at) {
                continue;
            }
            out.insert(
                tp.clone(),
                OffsetAndMetadata {
                    offset: at,
                    leader_epoch: cursor.leader_epoch,
                    metadata: None,
                },
            );
        }
        out
    }

    /// Flushes the producer and waits for every pending delivery; the first failure is
    /// returned.
    async fn check_deliveries(&mut self) -> Result<(), StreamError> {
        alive(self.member.as_ref(), self.producer.flush()).await;
        let pending = std::mem::take(&mut self.pending);
        alive(self.member.as_ref(), await_deliveries(pending)).await
    }

    fn group_metadata(&self) -> ConsumerGroupMetadata {
        if let Some(applied) = &self.applied_metadata {
            return applied.clone();
        }
        match &self.member {
            Some(m) => m.group_metadata(),
            None => ConsumerGroupMetadata {
                group_id: self.group_id().unwrap_or_default().to_string(),
                generation_id: -1,
                member_id: String::new(),
                instance_id: None,
            },
        }
    }

    /// One commit per the guarantee (see [`Job`]).
    async fn commit(&mut self) -> Result<(), StreamError> {
        let started = Instant::now();
        // Whether the offsets are committed (else the next round retries them).
        let mut done = true;
        match self.settings.guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                if !self.txn_open {
                    return Ok(());
                }
                if let Err(e) = self.check_deliveries().await {
                    warn!(job = %self.name, error = %e, "an output failed; aborting the transaction");
                    self.abort().await?;
                    return Ok(());
                }
                let offsets = self.positions();
                let metadata = self.group_metadata();
                let member = self.member.clone();
                match alive(
                    member.as_ref(),
                    txn::commit(&self.producer, &offsets, &metadata),
                )
                .await
                {
                    Ok(()) => {
                        self.txn_open = false;
                        self.txn_start.clear();
                        self.note_committed(&offsets, started);
                    }
                    Err(txn::Failure::Abortable(why)) => {
                        warn!(job = %self.name, error = %why, "transaction commit failed; aborting and replaying");
                        self.abort().await?;
                    }
                    Err(txn::Failure::Fatal(e)) => return Err(e),
                }
            }
            DeliveryGuarantee::AtLeastOnce => {
                if let Some(r) = self.round.as_mut() {
                    let acked = match (&mut r.acks).await {
                        Ok(res) => res,
                        Err(e) => Err(StreamError::Transaction(format!(
                            "delivery check task failed: {e}"
                        ))),
                    };
                    acked?;
                    self.finish_round().await?;
                }
                self.check_deliveries().await?;
                let offsets = self.positions();
                if let Err(e) = self.commit_offsets(offsets, started).await {
                    if !commit_can_wait(&e) {
                        return Err(e);
                    }
                    // The outputs are acknowledged; the offsets go with the next commit (or
                    // the partition's next owner repeats them: at least once).
                    warn!(job = %self.name, error = %e, "offset commit failed; retrying with the next one");
                    done = false;
                }
            }
            DeliveryGuarantee::None => {
                let offsets = self.positions();
                if let Err(e) = self.commit_offsets(offsets, started).await {
                    warn!(job = %self.name, error = %e, "offset commit failed");
                    done = false;
                }
            }
        }
        self.dirty = !done;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// AT_LEAST_ONCE: takes the positions now and starts waiting for the deliveries sent so
    /// far in the background; [`Self::finish_round`] commits them once all are acknowledged.
    fn start_round(&mut self) {
        if self.round.is_some() {
            return;
        }
        let offsets = self.positions();
        let pending = std::mem::take(&mut self.pending);
        self.dirty = false;
        self.last_commit = Instant::now();
        if offsets.is_empty() && pending.is_empty() {
            return;
        }
        self.round = Some(Round {
            offsets,
            acks: tokio::spawn(await_deliveries(pending)),
            started: Instant::now(),
        });
    }

    /// Commits the offsets of the round whose deliveries were all acknowledged.
    async fn finish_round(&mut self) -> Result<(), StreamError> {
        let Some(round) = self.round.take() else {
            return Ok(());
        };
        let mut offsets = round.offsets;
        offsets.retain(|tp, _| self.owned.contains(tp));
        if let Err(e) = self.commit_offsets(offsets, round.started).await {
            if !commit_can_wait(&e) {
                return Err(e);
            }
            warn!(job = %self.name, error = %e, "offset commit failed; retrying with the next one");
            self.dirty = true;
        }
        Ok(())
    }

    fn note_committed(
        &mut self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        started: Instant,
    ) {
        for (tp, o) in offsets {
            self.last_committed.insert(tp.clone(), o.offset);
        }
        let took = started.elapsed();
        self.metrics.committed(took);
        debug!(job = %self.name, partitions = offsets.len(), took_ms = took.as_secs_f64() * 1e3, "committed");
    }

    async fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        started: Instant,
    ) -> Result<(), StreamError> {
        let Some(group) = self.group_id().map(str::to_owned) else {
            return Ok(());
        };
        if offsets.is_empty() {
            return Ok(());
        }
        match &self.member {
            Some(m) => alive(Some(m), m.commit(offsets.clone())).await?,
            None => {
                for (tp, o) in &offsets {
                    krust_client::group::admin::reset_offsets(
                        &self.cluster,
                        &group,
                        std::slice::from_ref(tp),
                        krust_client::group::admin::ResetTo::Offset(o.offset),
                    )
                    .await?;
                }
            }
        }
        self.note_committed(&offsets, started);
        Ok(())
    }

    /// Aborts the open transaction and rewinds every partition it touched.
    async fn abort(&mut self) -> Result<(), StreamError> {
        let member = self.member.clone();
        let r = alive(member.as_ref(), txn::abort(&self.producer)).await;
        self.pending.clear();
        self.txn_open = false;
        self.metrics.aborted();
        let mut rewound = Vec::new();
        for (tp, offset) in self.txn_start.drain() {
            if self.owned.contains(&tp) {
                let _ = self.consumer.seek(&tp, StartOffset::Offset(offset));
                rewound.push(tp);
            }
        }
        // A bounded partition may have been paused at its stop: it has to be read again.
        let _ = self.consumer.resume(rewound.iter());
        r
    }

    fn update_lag(&self) {
        let mut lag = BTreeMap::new();
        for tp in &self.owned {
            if let (Some(w), Some(p)) = (self.consumer.watermarks(tp), self.consumer.position(tp)) {
                lag.insert(tp.clone(), (w.high_watermark - p).max(0));
            }
        }
        self.metrics.set_lag(lag);
    }
}
