//! Consumer groups over the wire: the driver of krust-core's [`Membership`] machine.
//!
//! [`GroupMember::join`] starts a tokio task that owns the membership: it finds the coordinator,
//! joins and syncs (computing the assignment when it is the leader), heartbeats, rediscovers the
//! coordinator when it moves, commits offsets (explicit, automatic, before revocations and on
//! close) and leaves on close. The task is never blocked by the application: heartbeats keep
//! flowing while the application processes records or handles a revocation.
//!
//! # The rebalance API
//!
//! Partition changes arrive as [`Rebalance`] events on a channel ([`GroupMember::next_event`]).
//! A [`Rebalance::Revoked`] event carries a [`RevokeGuard`]: the partitions stay owned (no other
//! member can get them) until the guard is dropped or [`RevokeGuard::done`] is called, so the
//! application may `await` a commit or a producer flush first. The wait is bounded by
//! `krust.revoke.timeout.ms`; after that the member releases the partitions anyway (and the
//! application must stop using them). Nothing in this API holds a lock while the application
//! runs, so awaiting other krust calls (commit, produce) inside the handling cannot deadlock.
//!
//! # Cancel safety
//!
//! [`GroupMember::next_event`] is cancel safe (a `tokio::sync::mpsc` receive). Dropping a
//! [`GroupMember::commit`] future abandons waiting for the answer; the commit may or may not be
//! applied. [`GroupMember::committed`] is cancel safe. [`GroupMember::close`] should be awaited
//! to completion; if dropped, the task still finishes leaving in the background.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::protocol::StrBytes;
use krust_core::fetch::TopicPartition;
use krust_core::group::offsets::{
    commit_action, offset_commit_request, offset_commit_results, offset_fetch_request,
    offset_fetch_results, CommitAction,
};
use krust_core::group::{
    GroupEvent, GroupMetadata, GroupRequest, Membership, OffsetBook, RequestFailure,
};
use krust_wire::{ApiKey, ErrorCode, KafkaRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::cluster::{Cluster, Lane, NodeId};
use crate::coordinator::{self, CoordinatorType};
use crate::error::{Error, Result};

pub mod admin;
mod config;
mod consumer;

pub use config::GroupSettings;
pub use consumer::GroupConsumer;
pub use krust_core::group::{Assignor, GroupMetadata as ConsumerGroupMetadata, OffsetAndMetadata};

/// What a member subscribes to.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// These topics.
    Topics(BTreeSet<String>),
    /// Every topic whose whole name matches this regular expression (checked on every topic
    /// refresh, so new topics are picked up).
    Pattern(regex::Regex),
}

impl Subscription {
    /// A subscription to the given topics.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(topics: I) -> Self {
        Subscription::Topics(topics.into_iter().map(Into::into).collect())
    }

    /// A subscription to topics matching `pattern` (anchored at both ends, as Java does).
    pub fn pattern(pattern: &str) -> Result<Self> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Subscription::Pattern)
            .map_err(|e| Error::config("subscription pattern", e.to_string()))
    }
}

/// A change of the member's partitions, for the application.
#[derive(Debug)]
pub enum Rebalance {
    /// Partitions newly assigned, with their committed offsets (`None`: nothing committed, use
    /// `auto.offset.reset`). Sent after every successful rebalance, possibly with no partition.
    Assigned {
        /// The partitions and their committed offsets.
        partitions: BTreeMap<TopicPartition, Option<OffsetAndMetadata>>,
        /// The generation (KIP-447 group metadata).
        metadata: GroupMetadata,
    },
    /// Stop these partitions and finish with them (commit, flush); they are released when the
    /// guard is dropped (or after `krust.revoke.timeout.ms`). With auto-commit, their consumed
    /// positions were committed before this event.
    Revoked {
        /// The partitions to give up.
        partitions: Vec<TopicPartition>,
        /// Releases them when dropped.
        guard: RevokeGuard,
    },
    /// These partitions are already gone (membership lost): stop them, do not commit them.
    Lost {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Why.
        reason: String,
    },
    /// The member stopped for good (fenced, unauthorized, misconfigured).
    Fatal(String),
}

/// Holds a revocation open; dropping it releases the partitions.
#[derive(Debug)]
pub struct RevokeGuard(Option<oneshot::Sender<()>>);

impl RevokeGuard {
    /// Releases the partitions now.
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for RevokeGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

enum Command {
    Subscribe(Subscription),
    Commit(
        BTreeMap<TopicPartition, OffsetAndMetadata>,
        Option<oneshot::Sender<Result<()>>>,
    ),
    Consumed(TopicPartition, OffsetAndMetadata),
    Polled,
    Close(oneshot::Sender<()>),
}

/// State shared between the task and the handle.
#[derive(Debug, Default)]
struct Shared {
    assignment: BTreeSet<TopicPartition>,
    metadata: GroupMetadata,
}

/// A member of a consumer group (see the module documentation). Cheap to clone; the task ends
/// when [`GroupMember::close`] is called or every handle is dropped.
#[derive(Clone)]
pub struct GroupMember {
    cmd: mpsc::UnboundedSender<Command>,
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Rebalance>>>,
    shared: Arc<Mutex<Shared>>,
    stable: watch::Receiver<u64>,
    cluster: Cluster,
    settings: Arc<GroupSettings>,
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember")
            .field("group", &self.settings.group.group_id)
            .finish()
    }
}

impl GroupMember {
    /// Starts a member of `settings.group.group_id` subscribed to `subscription` and returns
    /// at once; partitions arrive as [`Rebalance::Assigned`] events.
    pub fn join(
        cluster: Cluster,
        settings: GroupSettings,
        subscription: Subscription,
    ) -> Result<Self> {
        settings.validate()?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (stable_tx, stable_rx) = watch::channel(0);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let settings = Arc::new(settings);
        let mut machine = Membership::new(settings.group.clone(), Instant::now());
        // Members of one group in different processes must not retry in step.
        machine.seed_jitter(rand::random());
        let task = Task {
            cluster: cluster.clone(),
            settings: settings.clone(),
            machine,
            book: OffsetBook::new(
                settings
                    .enable_auto_commit
                    .then_some(settings.auto_commit_interval),
            ),
            subscription,
            events: ev_tx,
            shared: shared.clone(),
            stable: stable_tx,
            work: FuturesUnordered::new(),
            revoking: false,
            commits_waiting: Vec::new(),
            next_topic_refresh: Instant::now(),
            topic_refresh_running: false,
            close: None,
            generations_stable: 0,
            lane: Lane::new_member(),
        };
        tokio::spawn(task.run(cmd_rx));
        Ok(GroupMember {
            cmd: cmd_tx,
            events: Arc::new(tokio::sync::Mutex::new(ev_rx)),
            shared,
            stable: stable_rx,
            cluster,
            settings,
        })
    }

    /// The next partition change. `None` once the member is closed. Cancel safe.
    pub async fn next_event(&self) -> Option<Rebalance> {
        self.events.lock().await.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&self) -> Option<Rebalance> {
        self.events.try_lock().ok()?.try_recv().ok()
    }

    /// Changes the subscription (a rebalance follows).
    pub fn subscribe(&self, subscription: Subscription) {
        let _ = self.cmd.send(Command::Subscribe(subscription));
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.shared.lock().unwrap().assignment.clone()
    }

    /// The member task's current group metadata (generation, member id, instance id). It can
    /// be ahead of the rebalance events the application has handled; for
    /// `send_offsets_to_transaction` use the metadata of the assignment the records came from
    /// ([`GroupConsumer::group_metadata`](GroupConsumer::group_metadata), or the
    /// `metadata` of the last [`Rebalance::Assigned`] handled).
    pub fn group_metadata(&self) -> GroupMetadata {
        self.shared.lock().unwrap().metadata.clone()
    }

    /// Waits until the member has completed `n` rebalances in total (for tests and tools).
    pub async fn wait_rebalances(&self, n: u64) {
        let mut rx = self.stable.clone();
        let _ = rx.wait_for(|v| *v >= n).await;
    }

    /// The application polled (resets the `max.poll.interval.ms` timer).
    pub fn polled(&self) {
        let _ = self.cmd.send(Command::Polled);
    }

    /// The application consumed `tp` up to `next_offset` (exclusive): what auto-commit and
    /// commit-on-revoke commit.
    pub fn consumed(&self, tp: TopicPartition, next: OffsetAndMetadata) {
        let _ = self.cmd.send(Command::Consumed(tp, next));
    }

    /// Commits `offsets` (the next offsets to read, with optional metadata) and waits for the
    /// answer. Fails with the broker's error when the membership is stale (the partitions were
    /// reassigned: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS).
    ///
    /// Cancel safety: dropping the future stops waiting; the commit may still be applied.
    pub async fn commit(&self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Commit(offsets, Some(tx)))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Commits without waiting (errors are logged).
    pub fn commit_async(&self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) {
        let _ = self.cmd.send(Command::Commit(offsets, None));
    }

    /// The group's committed offsets for `partitions` (OffsetFetch with RequireStable when
    /// configured). Cancel safe.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        fetch_committed(
            &self.cluster,
            &self.settings.group.group_id,
            partitions,
            self.settings.require_stable,
        )
        .await
    }

    /// [`GroupMember::committed`], retried as `retry` says (see [`committed_retrying`]).
    pub(crate) async fn committed_retrying(
        &self,
        partitions: &[TopicPartition],
        retry: CommittedRetry,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        committed_retrying(
            &self.cluster,
            &self.settings.group.group_id,
            partitions,
            self.settings.require_stable,
            retry,
        )
        .await
    }

    /// Leaves the group: revokes everything (commits consumed positions with auto-commit; the
    /// application sees a [`Rebalance::Revoked`] it must release), sends LeaveGroup (dynamic
    /// members) and stops the task.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;
type Offsets = BTreeMap<TopicPartition, OffsetAndMetadata>;
type CommitReply = oneshot::Sender<Result<()>>;

enum Done {
    Group(GroupRequest, Result<GroupAnswer>),
    Committed(
        BTreeMap<TopicPartition, OffsetAndMetadata>,
        Option<oneshot::Sender<Result<()>>>,
        Result<()>,
    ),
    Revoked,
    Assigned(
        Vec<TopicPartition>,
        GroupMetadata,
        Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>>,
    ),
    Topics(Result<BTreeMap<String, i32>>),
}

enum GroupAnswer {
    Coordinator(std::result::Result<NodeId, ErrorCode>),
    Metadata(BTreeMap<String, i32>),
    Join(kafka_protocol::messages::JoinGroupResponse),
    Sync(kafka_protocol::messages::SyncGroupResponse),
    Code(ErrorCode),
}

struct Task {
    cluster: Cluster,
    settings: Arc<GroupSettings>,
    machine: Membership,
    book: OffsetBook,
    subscription: Subscription,
    events: mpsc::UnboundedSender<Rebalance>,
    shared: Arc<Mutex<Shared>>,
    stable: watch::Sender<u64>,
    work: FuturesUnordered<Work>,
    revoking: bool,
    commits_waiting: Vec<(Offsets, Option<CommitReply>)>,
    next_topic_refresh: Instant,
    topic_refresh_running: bool,
    close: Option<oneshot::Sender<()>>,
    generations_stable: u64,
    /// This member's own coordinator connection ([`Lane::Member`]).
    lane: Lane,
}

/// Sends a coordinator request on `lane` (a dedicated connection to `node`, see [`Lane`]). A
/// coordinator just found may not be in the broker pool yet: the broker list is refreshed once
/// first; a coordinator still missing from it is COORDINATOR_NOT_AVAILABLE (retriable).
async fn send_to_coordinator<R: KafkaRequest>(
    cluster: &Cluster,
    node: NodeId,
    lane: Lane,
    timeout: Duration,
    build: impl FnOnce(i16) -> R,
) -> Result<R::Response> {
    if !cluster.metadata().brokers.contains_key(&node) {
        cluster.refresh_metadata(&[]).await?;
        if !cluster.metadata().brokers.contains_key(&node) {
            // The coordinator left the broker list: COORDINATOR_NOT_AVAILABLE (retriable), and
            // the member finds its coordinator again.
            let refusal = crate::coordinator::unknown_coordinator(node);
            return Err(Error::broker_with(
                R::API_KEY,
                refusal.code,
                format!("coordinator {node}"),
                refusal.message,
            ));
        }
    }
    cluster
        .send_on(node, lane, timeout, build)
        .await
        .map(|(_, r)| r)
}

impl Task {
    async fn run(mut self, mut cmd: mpsc::UnboundedReceiver<Command>) {
        self.start_topic_refresh();
        loop {
            let now = Instant::now();
            self.pump(now);
            if self.machine.is_done() && self.work.is_empty() {
                break;
            }
            let wake = [
                self.machine.next_timeout(now),
                self.book.next_auto_commit(),
                (!self.topic_refresh_running).then_some(self.next_topic_refresh),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1))
            .max(now + Duration::from_millis(1));
            tokio::select! {
                c = cmd.recv() => match c {
                    Some(c) => self.command(c),
                    None => {
                        // Every handle dropped: leave.
                        self.machine.close(Instant::now());
                    }
                },
                Some(done) = self.work.next(), if !self.work.is_empty() => self.done(done),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.cluster.release_lane(self.lane);
        if let Some(tx) = self.close.take() {
            let _ = tx.send(());
        }
        debug!(group = %self.settings.group.group_id, "group member task ended");
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Subscribe(s) => {
                self.subscription = s;
                self.next_topic_refresh = now;
                if !self.topic_refresh_running {
                    self.start_topic_refresh();
                }
            }
            Command::Commit(offsets, reply) => self.start_commit(offsets, reply),
            Command::Consumed(tp, o) => self.book.handle_consumed(tp, o, now),
            Command::Polled => self.machine.handle_app_poll(now),
            Command::Close(tx) => {
                self.close = Some(tx);
                self.machine.close(now);
            }
        }
    }

    fn publish(&mut self) {
        let mut s = self.shared.lock().unwrap();
        s.assignment = self.machine.owned().clone();
        s.metadata = self.machine.group_metadata();
    }

    fn pump(&mut self, now: Instant) {
        self.machine.handle_timeout(now);
        while let Some(ev) = self.machine.poll_event() {
            match ev {
                GroupEvent::Assigned {
                    partitions,
                    metadata,
                } => {
                    // Committed offsets first, so the application can seed its positions.
                    let cluster = self.cluster.clone();
                    let group = self.settings.group.group_id.clone();
                    let stable = self.settings.require_stable;
                    self.work.push(Box::pin(async move {
                        let r = if partitions.is_empty() {
                            Ok(BTreeMap::new())
                        } else {
                            committed_retrying(
                                &cluster,
                                &group,
                                &partitions,
                                stable,
                                CommittedRetry::UntilKnown,
                            )
                            .await
                        };
                        Done::Assigned(partitions, metadata, r)
                    }));
                }
                GroupEvent::Revoke { partitions } => {
                    self.revoking = true;
                    let uncommitted = if self.settings.enable_auto_commit {
                        self.book.uncommitted(Some(&partitions))
                    } else {
                        BTreeMap::new()
                    };
                    let (tx, rx) = oneshot::channel();
                    let commit =
                        (!uncommitted.is_empty()).then(|| self.commit_future(uncommitted, None));
                    let events = self.events.clone();
                    let timeout = self.settings.group.revoke_timeout;
                    self.book.remove(&partitions);
                    self.work.push(Box::pin(async move {
                        if let Some(c) = commit {
                            let _ = tokio::time::timeout(timeout, c).await;
                        }
                        let _ = events.send(Rebalance::Revoked {
                            partitions,
                            guard: RevokeGuard(Some(tx)),
                        });
                        let _ = tokio::time::timeout(timeout, rx).await;
                        Done::Revoked
                    }));
                }
                GroupEvent::Lost { partitions, reason } => {
                    warn!(group = %self.settings.group.group_id, %reason, lost = partitions.len(), "partitions lost");
                    self.book.remove(&partitions);
                    let _ = self.events.send(Rebalance::Lost { partitions, reason });
                }
                GroupEvent::Fatal(e) => {
                    warn!(group = %self.settings.group.group_id, error = %e, "group member failed");
                    let _ = self.events.send(Rebalance::Fatal(e.to_string()));
                }
            }
        }
        self.publish();
        while let Some(req) = self.machine.poll_request(now) {
            self.send(req);
        }
        if let Some(offsets) = self.book.poll_auto_commit(now) {
            self.start_commit(offsets, None);
        }
        if !self.topic_refresh_running && now >= self.next_topic_refresh {
            self.start_topic_refresh();
        }
        if self.machine.coordinator().is_some() && !self.commits_waiting.is_empty() {
            for (o, r) in std::mem::take(&mut self.commits_waiting) {
                self.start_commit(o, r);
            }
        }
    }

    fn send(&mut self, req: GroupRequest) {
        let cluster = self.cluster.clone();
        let timeout = cluster.config().request_timeout + req.extra_timeout();
        let lane = self.lane;
        let plain = cluster.config().request_timeout;
        self.work.push(Box::pin(async move {
            let r = match &req {
                GroupRequest::FindCoordinator { key } => {
                    coordinator::lookup_once(&cluster, CoordinatorType::Group, key)
                        .await
                        .map(|r| GroupAnswer::Coordinator(r.map_err(|refusal| refusal.code)))
                }
                GroupRequest::Metadata { topics } => topic_counts(&cluster, Some(topics))
                    .await
                    .map(GroupAnswer::Metadata),
                GroupRequest::Join(j) => {
                    send_to_coordinator(&cluster, j.coordinator, lane, timeout, |v| j.to_request(v))
                        .await
                        .map(GroupAnswer::Join)
                }
                GroupRequest::Sync(s) => {
                    send_to_coordinator(&cluster, s.coordinator, lane, timeout, |v| s.to_request(v))
                        .await
                        .map(GroupAnswer::Sync)
                }
                GroupRequest::Heartbeat(h) => {
                    send_to_coordinator(&cluster, h.coordinator, lane, plain, |v| h.to_request(v))
                        .await
                        .map(|r| GroupAnswer::Code(ErrorCode(r.error_code)))
                }
                GroupRequest::Leave(l) => {
                    send_to_coordinator(&cluster, l.coordinator, lane, plain, |v| l.to_request(v))
                        .await
                        .map(|r| GroupAnswer::Code(ErrorCode(r.error_code)))
                }
            };
            Done::Group(req, r)
        }));
    }

    fn done(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::Group(req, Err(e)) => {
                debug!(group = %self.settings.group.group_id, error = %e, "group request failed");
                let f = if e.is_retriable() {
                    RequestFailure::Transport
                } else {
                    RequestFailure::Backoff
                };
                self.machine.handle_request_failed(&req, f, now);
            }
            Done::Group(req, Ok(answer)) => match (req, answer) {
                (_, GroupAnswer::Coordinator(r)) => self.machine.handle_find_coordinator(r, now),
                (_, GroupAnswer::Metadata(m)) => self.machine.handle_metadata(&m, now),
                (GroupRequest::Join(j), GroupAnswer::Join(r)) => {
                    self.machine.handle_join(&j, r, now)
                }
                (GroupRequest::Sync(s), GroupAnswer::Sync(r)) => {
                    self.machine.handle_sync(&s, r, now)
                }
                (GroupRequest::Heartbeat(h), GroupAnswer::Code(c)) => {
                    self.machine.handle_heartbeat(&h, c, now)
                }
                // LeaveGroup's answer changes nothing (the membership ended when it was sent);
                // no other pairing of request and answer occurs.
                _ => {}
            },
            Done::Committed(offsets, reply, r) => {
                match &r {
                    Ok(()) => self.book.handle_committed(&offsets),
                    Err(e) => {
                        if matches!(
                            e.code(),
                            Some(ErrorCode::NOT_COORDINATOR)
                                | Some(ErrorCode::COORDINATOR_NOT_AVAILABLE)
                        ) || e.is_transport()
                        {
                            self.machine.handle_coordinator_moved(now);
                        }
                        if reply.is_none() {
                            warn!(group = %self.settings.group.group_id, error = %e, "offset commit failed");
                        }
                    }
                }
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            Done::Revoked => {
                self.revoking = false;
                self.machine.handle_revoke_done(now);
            }
            Done::Assigned(partitions, metadata, committed) => {
                let committed = match committed {
                    Ok(c) => c,
                    Err(e) => {
                        // Never guess: starting from auto.offset.reset where offsets may be
                        // committed would read records twice or skip them.
                        let _ = self.events.send(Rebalance::Fatal(format!(
                            "could not fetch the committed offsets of the assigned partitions: {e}"
                        )));
                        return;
                    }
                };
                let partitions = partitions
                    .into_iter()
                    .map(|tp| {
                        let c = committed.get(&tp).cloned().flatten();
                        (tp, c)
                    })
                    .collect();
                let _ = self.events.send(Rebalance::Assigned {
                    partitions,
                    metadata,
                });
                self.generations_stable += 1;
                let _ = self.stable.send(self.generations_stable);
            }
            Done::Topics(r) => {
                self.topic_refresh_running = false;
                self.next_topic_refresh = now
                    + self
                        .settings
                        .topic_refresh
                        .min(self.cluster.config().metadata_max_age);
                match r {
                    Ok(counts) => {
                        let topics: BTreeSet<String> = match &self.subscription {
                            Subscription::Topics(t) => t.clone(),
                            Subscription::Pattern(re) => counts
                                .iter()
                                .filter(|(t, n)| **n > 0 && re.is_match(t) && !t.starts_with("__"))
                                .map(|(t, _)| t.clone())
                                .collect(),
                        };
                        let known: BTreeMap<String, i32> = counts
                            .into_iter()
                            .filter(|(t, n)| topics.contains(t) && *n > 0)
                            .collect();
                        self.machine.handle_metadata(&known, now);
                        self.machine.subscribe(topics, now);
                    }
                    Err(e) => {
                        debug!(error = %e, "topic refresh failed");
                        self.next_topic_refresh = now + self.cluster.config().retry_backoff_max;
                    }
                }
            }
        }
    }

    fn start_topic_refresh(&mut self) {
        self.topic_refresh_running = true;
        let cluster = self.cluster.clone();
        let wanted: Option<Vec<String>> = match &self.subscription {
            Subscription::Topics(t) => Some(t.iter().cloned().collect()),
            Subscription::Pattern(_) => None,
        };
        self.work.push(Box::pin(async move {
            Done::Topics(topic_counts(&cluster, wanted.as_deref()).await)
        }));
    }

    fn commit_future(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        coordinator: Option<NodeId>,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> {
        let cluster = self.cluster.clone();
        let member = self.machine.group_metadata();
        let coordinator = coordinator.or(self.machine.coordinator());
        Box::pin(async move { commit_offsets(&cluster, coordinator, &member, &offsets).await })
    }

    fn start_commit(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        reply: Option<oneshot::Sender<Result<()>>>,
    ) {
        if offsets.is_empty() {
            if let Some(tx) = reply {
                let _ = tx.send(Ok(()));
            }
            return;
        }
        let Some(node) = self.machine.coordinator() else {
            self.commits_waiting.push((offsets, reply));
            return;
        };
        let f = self.commit_future(offsets.clone(), Some(node));
        self.work.push(Box::pin(async move {
            let r = f.await;
            Done::Committed(offsets, reply, r)
        }));
    }
}

/// Partition counts of `topics` (all topics when `None`), from a fresh Metadata request. A
/// topic that does not exist has count 0.
pub(crate) async fn topic_counts(
    cluster: &Cluster,
    topics: Option<&[String]>,
) -> Result<BTreeMap<String, i32>> {
    let (_node, _v, resp) = cluster
        .send_any(|_v| {
            let mut req = MetadataRequest::default();
            req.topics = topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        let mut mt = MetadataRequestTopic::default();
                        mt.name = Some(StrBytes::from_string(t.clone()).into());
                        mt
                    })
                    .collect()
            });
            req.allow_auto_topic_creation = false;
            req
        })
        .await?;
    let mut out: BTreeMap<String, i32> = topics
        .unwrap_or_default()
        .iter()
        .map(|t| (t.clone(), 0))
        .collect();
    for t in resp.topics {
        let Some(name) = t.name else { continue };
        let n = if ErrorCode(t.error_code).is_ok() {
            t.partitions.len() as i32
        } else {
            0
        };
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

/// Commits `offsets` for `member`'s group (generation and member id from `member`; -1 and ""
/// commit outside a generation), retrying coordinator moves and transient errors within
/// `request.timeout.ms`.
pub(crate) async fn commit_offsets(
    cluster: &Cluster,
    coordinator: Option<NodeId>,
    member: &GroupMetadata,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
) -> Result<()> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut node = coordinator;
    let mut attempt = 0;
    loop {
        let n = match node {
            Some(n) => n,
            None => coordinator::find(cluster, CoordinatorType::Group, &member.group_id).await?,
        };
        let err = match cluster
            .send(n, |v| {
                offset_commit_request(&member.group_id, Some(member), offsets, v)
            })
            .await
        {
            Ok((_, resp)) => {
                cluster.note_throttle(n, resp.throttle_time_ms);
                let mut first: Option<(TopicPartition, ErrorCode)> = None;
                for (tp, code) in offset_commit_results(&resp) {
                    if !code.is_ok() && first.is_none() {
                        first = Some((tp, code));
                    }
                }
                let Some((tp, code)) = first else {
                    return Ok(());
                };
                let e = Error::broker_with(
                    ApiKey::OffsetCommit,
                    code,
                    format!("group `{}` partition {tp}", member.group_id),
                    None,
                );
                match commit_action(code) {
                    CommitAction::Done => return Ok(()),
                    CommitAction::RefreshCoordinator => {
                        node = None;
                        e
                    }
                    CommitAction::Retry => e,
                    CommitAction::Fenced | CommitAction::Fail => return Err(e),
                }
            }
            Err(e) if e.is_retriable() => {
                node = None;
                e
            }
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        crate::cluster::retry_pause(&cfg, &mut attempt).await;
    }
}

/// How long [`committed_retrying`] keeps asking while the answer is retriable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommittedRetry {
    /// At most this many retries after the first attempt; then the last error is returned.
    Bounded(u32),
    /// Until the offsets are known: a partition must never start from `auto.offset.reset`
    /// only because the answer was late.
    UntilKnown,
}

/// The committed offsets of `partitions`: [`fetch_committed`] again, after the retry backoff,
/// while its error is retriable (a coordinator moving, loading or not yet in the metadata, a
/// transport failure, or UNSTABLE_OFFSET_COMMIT while a transaction holding offsets stays
/// open, which can last up to its `transaction.timeout.ms`) and `retry` allows another
/// attempt. A non-retriable error (authorization, a bad group id) is returned at once.
pub(crate) async fn committed_retrying(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    require_stable: bool,
    retry: CommittedRetry,
) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
    let cfg = cluster.config().clone();
    let mut attempt = 0u32;
    loop {
        match fetch_committed(cluster, group, partitions, require_stable).await {
            Err(e)
                if e.is_retriable()
                    && match retry {
                        CommittedRetry::Bounded(n) => attempt < n,
                        CommittedRetry::UntilKnown => true,
                    } =>
            {
                // UNSTABLE_OFFSET_COMMIT is routine while a transaction is open: loud only
                // when it lasts.
                if attempt >= 3 {
                    warn!(group = %group, error = %e, attempt, "committed offsets not known yet; retrying");
                } else {
                    debug!(group = %group, error = %e, attempt, "committed offsets not known yet; retrying");
                }
                crate::cluster::retry_pause(&cfg, &mut attempt).await;
            }
            r => return r,
        }
    }
}

/// The committed offsets of `group` for `partitions`: `None` where nothing is committed.
/// Retries coordinator moves, loading coordinators and UNSTABLE_OFFSET_COMMIT (a transaction
/// holding offsets is still open) within `request.timeout.ms`.
pub async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    require_stable: bool,
) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut attempt = 0;
    loop {
        let node = coordinator::find(cluster, CoordinatorType::Group, group).await?;
        let err = match cluster
            .send(node, |v| {
                offset_fetch_request(group, Some(partitions), require_stable, v)
            })
            .await
        {
            Ok((_, resp)) => match offset_fetch_results(&resp) {
                Ok(map) => {
                    let mut out = BTreeMap::new();
                    let mut retry: Option<Error> = None;
                    for tp in partitions {
                        match map.get(tp) {
                            Some(Ok(o)) => {
                                out.insert(tp.clone(), o.clone());
                            }
                            Some(Err(code)) => {
                                let e = Error::broker_with(
                                    ApiKey::OffsetFetch,
                                    *code,
                                    format!("group `{group}` partition {tp}"),
                                    None,
                                );
                                if code.is_retriable() {
                                    retry = Some(e);
                                } else {
                                    return Err(e);
                                }
                            }
                            None => {
                                out.insert(tp.clone(), None);
                            }
                        }
                    }
                    match retry {
                        None => return Ok(out),
                        Some(e) => e,
                    }
                }
                Err(code) if code.is_retriable() => {
                    Error::broker_with(ApiKey::OffsetFetch, code, format!("group `{group}`"), None)
                }
                Err(code) => {
                    return Err(Error::broker_with(
                        ApiKey::OffsetFetch,
                        code,
                        format!("group `{group}`"),
                        None,
                    ))
                }
            },
            Err(e) if e.is_retriable() => e,
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        crate::cluster::retry_pause(&cfg, &mut attempt).await;
    }
}
