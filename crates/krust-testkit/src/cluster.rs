//! The fake cluster: brokers (one loopback listener each), connection handling, the hook
//! pipeline, the request log, and the controls tests use to misbehave on purpose.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::batch;
use crate::group::GroupInfo;
use crate::handlers;
use crate::hooks::{
    Action, Hook, HookFn, HookId, Intercept, LoggedRequest, ProducedBatch, Request,
};
use crate::state::{BrokerState, ClusterConfig, State};

/// State shared by every task of a cluster.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    hooks: Mutex<Vec<Hook>>,
    next_hook: AtomicU64,
    log: Mutex<std::collections::VecDeque<LoggedRequest>>,
    log_limit: usize,
    log_changed: Notify,
    /// Bumped on every append (and marker); long-polling fetches and joins wait on it.
    pub(crate) data: watch::Sender<u64>,
    /// Bumped whenever group state changes that waiting JoinGroup/SyncGroup calls care about.
    pub(crate) group_changed: watch::Sender<u64>,
    /// Per broker: whether it is up (connections exit and the listener closes when false).
    up: Vec<watch::Sender<bool>>,
    shutdown: watch::Sender<bool>,
    /// How many client connections are being served (accepted and not yet finished).
    conns: watch::Sender<usize>,
    pub(crate) started: Instant,
    listen: Vec<SocketAddr>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn bump_data(&self) {
        self.data.send_modify(|v| *v += 1);
    }
    pub(crate) fn bump_groups(&self) {
        self.group_changed.send_modify(|v| *v += 1);
    }
}

/// An in-process fake Kafka cluster on loopback. Dropping it stops every broker.
///
/// The fake trusts its clients' bytes: it decodes requests with `kafka-protocol`'s generated
/// codecs, which allocate what the wire asks for. It is a test tool, not a server to expose.
///
/// `FakeCluster` is a cheap handle: clones share the cluster, which stops when the last clone
/// is dropped. A hook that needs to drive the cluster (move a leader when it sees a request)
/// captures a [`WeakCluster`] from [`FakeCluster::downgrade`]; a strong clone inside a hook
/// would keep the cluster alive forever.
#[derive(Clone)]
pub struct FakeCluster {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

/// Stops the cluster's tasks when the last [`FakeCluster`] handle goes.
struct Guard {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// A non-owning handle to a [`FakeCluster`], for hooks.
#[derive(Clone)]
pub struct WeakCluster {
    shared: std::sync::Weak<Shared>,
    guard: std::sync::Weak<Guard>,
}

impl std::fmt::Debug for WeakCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakCluster").finish_non_exhaustive()
    }
}

impl WeakCluster {
    /// The cluster, if it is still running.
    pub fn upgrade(&self) -> Option<FakeCluster> {
        Some(FakeCluster {
            shared: self.shared.upgrade()?,
            guard: self.guard.upgrade()?,
        })
    }
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster")
            .field("brokers", &self.shared.listen)
            .finish()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

impl FakeCluster {
    /// Starts a cluster of `brokers` brokers on ephemeral loopback ports. Cancel safe (a
    /// cancelled start releases its ports).
    pub async fn start(brokers: usize) -> std::io::Result<FakeCluster> {
        Self::with_config(ClusterConfig::new().with_brokers(brokers)).await
    }

    /// Starts a cluster from a configuration. Cancel safe.
    pub async fn with_config(cfg: ClusterConfig) -> std::io::Result<FakeCluster> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..cfg.brokers {
            let port = cfg.base_port.map(|p| p + i as u16).unwrap_or(0);
            let addr: SocketAddr = format!("{}:{port}", cfg.host)
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let l = bind(addr).await?;
            addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        let brokers = addrs
            .iter()
            .map(|a| BrokerState {
                up: true,
                advertised: (a.ip().to_string(), a.port()),
                rtt: Duration::ZERO,
                throttle: Duration::ZERO,
            })
            .collect();
        let log_limit = cfg.request_log_limit;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(cfg, brokers)),
            hooks: Mutex::new(Vec::new()),
            next_hook: AtomicU64::new(1),
            log: Mutex::new(std::collections::VecDeque::new()),
            log_limit,
            log_changed: Notify::new(),
            data: watch::channel(0).0,
            group_changed: watch::channel(0).0,
            up: addrs.iter().map(|_| watch::channel(true).0).collect(),
            shutdown: watch::channel(false).0,
            conns: watch::channel(0).0,
            started: Instant::now(),
            listen: addrs.clone(),
        });
        let mut tasks = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            tasks.push(tokio::spawn(run_broker(shared.clone(), i as i32, l)));
        }
        tasks.push(tokio::spawn(run_ticker(Arc::downgrade(&shared))));
        tracing::debug!(brokers = ?addrs, "fake cluster started");
        let guard = Arc::new(Guard {
            shared: shared.clone(),
            tasks,
        });
        Ok(FakeCluster { shared, guard })
    }

    /// A non-owning handle, for hooks that drive the cluster.
    pub fn downgrade(&self) -> WeakCluster {
        WeakCluster {
            shared: Arc::downgrade(&self.shared),
            guard: Arc::downgrade(&self.guard),
        }
    }

    /// `host:port,host:port,...` of every broker (as listened on).
    pub fn bootstrap(&self) -> String {
        self.shared
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The address broker `id` listens on.
    pub fn broker_addr(&self, id: i32) -> SocketAddr {
        self.shared.listen[id as usize]
    }

    /// Number of brokers.
    pub fn broker_count(&self) -> usize {
        self.shared.listen.len()
    }

    // ---- topics -------------------------------------------------------------------------

    /// Creates a topic (replication factor capped at the broker count). Errors with the Kafka
    /// error code (e.g. 36 TOPIC_ALREADY_EXISTS).
    pub fn create_topic(&self, topic: &str, partitions: i32, rf: i16) -> Result<(), i16> {
        let rf = rf.min(self.broker_count() as i16);
        self.shared
            .lock()
            .create_topic(topic, partitions, rf, BTreeMap::new(), None)
    }

    /// Deletes a topic and its data. Returns whether it existed.
    pub fn delete_topic(&self, topic: &str) -> bool {
        self.shared.lock().topics.shift_remove(topic).is_some()
    }

    /// The leader and leader epoch of a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let s = self.shared.lock();
        let p = s.topics.get(topic)?.partitions.get(partition as usize)?;
        Some((p.leader, p.epoch()))
    }

    /// Moves a partition's leadership to `broker`, bumping the leader epoch. Returns the new
    /// epoch. Clients sending to the old leader get NOT_LEADER_OR_FOLLOWER; clients stating the
    /// old epoch get FENCED_LEADER_EPOCH.
    pub fn move_leader(&self, topic: &str, partition: i32, broker: i32) -> Option<i32> {
        let mut s = self.shared.lock();
        let p = s
            .topics
            .get_mut(topic)?
            .partitions
            .get_mut(partition as usize)?;
        p.leader = broker;
        if !p.replicas.contains(&broker) {
            p.replicas.insert(0, broker);
        }
        let epoch = p.epoch() + 1;
        p.log.bump_epoch(epoch);
        Some(epoch)
    }

    /// Hides a topic: Metadata, Produce and Fetch treat it as unknown until `for_` elapses (or
    /// [`FakeCluster::unhide_topic`] is called when `for_` is `None`). The data is kept.
    pub fn hide_topic(&self, topic: &str, for_: Option<Duration>) {
        let until = for_.map(|d| Instant::now() + d);
        self.shared.lock().hidden.insert(topic.to_string(), until);
    }

    /// Makes a hidden topic visible again.
    pub fn unhide_topic(&self, topic: &str) {
        self.shared.lock().hidden.remove(topic);
    }

    /// `(log start, high watermark, last stable offset)` of a partition.
    pub fn offsets(&self, topic: &str, partition: i32) -> Option<(i64, i64, i64)> {
        let s = self.shared.lock();
        let p = s.topics.get(topic)?.partitions.get(partition as usize)?;
        Some((p.log.log_start, p.log.high_watermark(), p.log.last_stable()))
    }

    /// Every data record value in a partition, with its offset (control batches skipped,
    /// aborted records included; compressed batches are inflated).
    pub fn records(&self, topic: &str, partition: i32) -> Option<Vec<(i64, Option<Bytes>)>> {
        let s = self.shared.lock();
        let p = s.topics.get(topic)?.partitions.get(partition as usize)?;
        let mut out = Vec::new();
        for b in &p.log.batches {
            out.extend(batch::read_values(&b.bytes).ok()?);
        }
        Some(out)
    }

    /// Evicts every fetch session (as a broker under session-cache pressure does): the next
    /// incremental fetch of each gets FETCH_SESSION_ID_NOT_FOUND.
    pub fn evict_fetch_sessions(&self) {
        self.shared.lock().fetch_sessions.clear();
    }

    /// Appends a record batch (wire form, e.g. from [`batch::data_batch`] or
    /// `krust_wire::record::BatchBuilder`) to a partition as if its leader had received it, with
    /// the same checks as Produce (CRC, idempotence). Returns the base offset, or the Kafka error.
    /// Wakes long-polling fetches.
    pub fn append(&self, topic: &str, partition: i32, records: Bytes) -> Result<i64, i16> {
        let batches = batch::split_batches(&records).map_err(|_| crate::errors::CORRUPT_MESSAGE)?;
        let mut s = self.shared.lock();
        let policy = s.seq_policy();
        let p = s
            .partition_mut(topic, partition)
            .ok_or(crate::errors::UNKNOWN_TOPIC_OR_PARTITION)?;
        let epoch = p.epoch();
        let mut first = None;
        for (h, b) in &batches {
            match p.log.append(h, b, epoch, policy) {
                crate::log::Append::Appended(o) | crate::log::Append::Duplicate(o) => {
                    first.get_or_insert(o);
                }
                crate::log::Append::Rejected(code) => return Err(code),
            }
        }
        drop(s);
        self.shared.bump_data();
        Ok(first.unwrap_or(-1))
    }

    /// The offset group `group` committed for a partition, if any.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let s = self.shared.lock();
        let g = s.groups.get(group)?;
        g.offsets
            .get(&(topic.to_string(), partition))
            .map(|c| c.offset)
    }

    /// Sets the offset group `group` has committed for a partition (creating the group, empty,
    /// if needed), as an admin tool would.
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let mut s = self.shared.lock();
        let g = s
            .groups
            .entry(group.to_string())
            .or_insert_with(crate::group::Group::new);
        g.offsets.insert(
            (topic.to_string(), partition),
            crate::group::Committed {
                offset,
                leader_epoch: -1,
                metadata: None,
            },
        );
    }

    /// Forgets what a partition knows about a producer (as after retention): its next batch
    /// with a non-initial sequence gets UNKNOWN_PRODUCER_ID.
    pub fn forget_producer(&self, topic: &str, partition: i32, producer_id: i64) {
        if let Some(p) = self.shared.lock().partition_mut(topic, partition) {
            p.log.forget_producer(producer_id);
        }
    }

    /// Makes the cluster forget every producer id issued so far, as a broker restarted without
    /// its producer state does (tansu with memory storage): any later Produce carrying one of
    /// them, at any epoch or sequence, gets UNKNOWN_PRODUCER_ID. Ids issued afterwards work.
    pub fn lose_producer_ids(&self) {
        let mut s = self.shared.lock();
        let issued: Vec<i64> = (s.cfg.first_producer_id..s.next_producer_id).collect();
        s.lost_producer_ids.extend(issued);
    }

    // ---- brokers ------------------------------------------------------------------------

    /// Takes a broker down: its connections are dropped, new ones refused until
    /// [`FakeCluster::broker_up`], and its fetch sessions forgotten (as in a restart). Its
    /// partitions keep it as leader (move them with [`FakeCluster::move_leader`]); it leaves
    /// their ISR, so acks=all produce can fail with NOT_ENOUGH_REPLICAS.
    pub fn broker_down(&self, broker: i32) {
        let mut s = self.shared.lock();
        s.brokers[broker as usize].up = false;
        s.fetch_sessions.retain(|_, f| f.broker != broker);
        if s.cfg.leader_failover {
            let up: Vec<bool> = s.brokers.iter().map(|b| b.up).collect();
            for t in s.topics.values_mut() {
                for p in t.partitions.iter_mut().filter(|p| p.leader == broker) {
                    let next = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != broker && up.get(*r as usize) == Some(&true))
                        .unwrap_or(-1);
                    p.leader = next;
                    let epoch = p.epoch() + 1;
                    p.log.bump_epoch(epoch);
                }
            }
        }
        drop(s);
        self.shared.up[broker as usize].send_replace(false);
    }

    /// Brings a broker back up on the same address.
    pub fn broker_up(&self, broker: i32) {
        let mut s = self.shared.lock();
        s.brokers[broker as usize].up = true;
        if s.cfg.leader_failover {
            for t in s.topics.values_mut() {
                for p in t.partitions.iter_mut().filter(|p| p.leader == -1) {
                    if p.replicas.contains(&broker) {
                        p.leader = broker;
                        let epoch = p.epoch() + 1;
                        p.log.bump_epoch(epoch);
                    }
                }
            }
        }
        drop(s);
        self.shared.up[broker as usize].send_replace(true);
    }

    /// Sets `throttle_time_ms` on every response of `broker` and, as Kafka does (KIP-219),
    /// mutes the connection for that long after each response: later requests on it wait.
    /// Zero turns it off.
    pub fn set_throttle(&self, broker: i32, throttle: Duration) {
        self.shared.lock().brokers[broker as usize].throttle = throttle;
    }

    /// Adds `rtt` before every response of `broker` (responses stay pipelined).
    pub fn set_rtt(&self, broker: i32, rtt: Duration) {
        self.shared.lock().brokers[broker as usize].rtt = rtt;
    }

    /// Makes `broker` advertise `host:port` in Metadata and FindCoordinator (e.g. a
    /// [`FaultProxy`](crate::FaultProxy) in front of it).
    pub fn set_advertised(&self, broker: i32, host: &str, port: u16) {
        self.shared.lock().brokers[broker as usize].advertised = (host.to_string(), port);
    }

    /// Makes `broker` the coordinator of group `key` (`key_type` 0) or transactional id `key`
    /// (`key_type` 1). Requests for it to other brokers get NOT_COORDINATOR.
    pub fn move_coordinator(&self, key_type: i8, key: &str, broker: i32) {
        self.shared
            .lock()
            .coordinator_overrides
            .insert((key_type, key.to_string()), broker);
    }

    /// The coordinator of group `key` (`key_type` 0) or transactional id `key` (1).
    pub fn coordinator(&self, key_type: i8, key: &str) -> i32 {
        self.shared.lock().coordinator(key_type, key)
    }

    // ---- groups -------------------------------------------------------------------------

    /// A snapshot of a consumer group, if it exists.
    pub fn group(&self, group: &str) -> Option<GroupInfo> {
        self.shared.lock().groups.get(group).map(|g| g.info())
    }

    /// Waits until `pred` holds for the group's snapshot (checked on every group change and
    /// every timer tick that changed something). Cancel safe.
    pub async fn wait_for_group(&self, group: &str, mut pred: impl FnMut(&GroupInfo) -> bool) {
        let mut rx = self.shared.group_changed.subscribe();
        loop {
            rx.borrow_and_update();
            if self.group(group).is_some_and(|g| pred(&g)) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    // ---- hooks --------------------------------------------------------------------------

    /// Installs a hook: `f` sees each request matching `filter` before the fake handles it.
    /// Hooks run in installation order; the first to return an action takes the request. A
    /// hook may call any cluster method (capture [`FakeCluster::downgrade`]), including
    /// installing or removing hooks.
    pub fn intercept(
        &self,
        filter: Intercept,
        f: impl FnMut(&Request) -> Option<Action> + Send + 'static,
    ) -> HookId {
        let id = HookId(self.shared.next_hook.fetch_add(1, Ordering::Relaxed));
        let f: HookFn = Box::new(f);
        self.shared
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Hook {
                id,
                filter,
                f: Arc::new(Mutex::new(f)),
                fired: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            });
        id
    }

    /// Removes a hook. Returns whether it was still installed.
    pub fn remove_hook(&self, id: HookId) -> bool {
        let mut hooks = self.shared.hooks.lock().unwrap_or_else(|e| e.into_inner());
        let before = hooks.len();
        hooks.retain(|h| h.id != id);
        hooks.len() != before
    }

    /// Removes every hook.
    pub fn clear_hooks(&self) {
        self.shared
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Answers the next request of `api` with error `code`.
    pub fn fail_next(&self, api: ApiKey, code: i16) -> HookId {
        self.intercept(Intercept::api(api).once(), move |_| {
            Some(Action::Error(code))
        })
    }

    /// Answers the next `n` requests of `api` with error `code`.
    pub fn fail_next_n(&self, api: ApiKey, code: i16, n: usize) -> HookId {
        let mut left = n;
        self.intercept(Intercept::api(api), move |_| {
            if left == 0 {
                return None;
            }
            left -= 1;
            Some(Action::Error(code))
        })
    }

    /// An error stack (librdkafka mock style): the next requests of `api` are answered, in
    /// order, with these `(error code, delay)` pairs; code 0 lets the request through after the
    /// delay. The hook removes itself when the stack is empty.
    pub fn push_errors(
        &self,
        api: ApiKey,
        errors: impl IntoIterator<Item = (i16, Duration)>,
    ) -> HookId {
        let mut stack: std::collections::VecDeque<(i16, Duration)> = errors.into_iter().collect();
        let id = Arc::new(Mutex::new(None::<HookId>));
        let id2 = id.clone();
        let weak = self.downgrade();
        let hook = self.intercept(Intercept::api(api), move |_| {
            let (code, delay) = stack.pop_front()?;
            if stack.is_empty() {
                let own = *id2.lock().unwrap_or_else(|e| e.into_inner());
                if let (Some(c), Some(own)) = (weak.upgrade(), own) {
                    c.remove_hook(own);
                }
            }
            Some(match (code, delay.is_zero()) {
                (0, _) => Action::Delay(delay),
                (c, true) => Action::Error(c),
                (c, false) => Action::DelayThen(delay, Box::new(Action::Error(c))),
            })
        });
        *id.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
        hook
    }

    /// Closes the connection on the next request of `api` (no answer).
    pub fn close_next(&self, api: ApiKey) -> HookId {
        self.intercept(Intercept::api(api).once(), |_| Some(Action::Close))
    }

    /// Never answers the next request of `api`.
    pub fn hang_next(&self, api: ApiKey) -> HookId {
        self.intercept(Intercept::api(api).once(), |_| Some(Action::Hang))
    }

    /// Delays the next request of `api` by `d` (others proceed).
    pub fn delay_next(&self, api: ApiKey, d: Duration) -> HookId {
        self.intercept(Intercept::api(api).once(), move |_| Some(Action::Delay(d)))
    }

    /// Handles the next request of `api`, then drops its response and closes the connection.
    pub fn drop_response_next(&self, api: ApiKey) -> HookId {
        self.intercept(Intercept::api(api).once(), |_| Some(Action::DropResponse))
    }

    // ---- request log ---------------------------------------------------------------------

    /// Every request received so far, in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The logged requests of one API.
    pub fn requests_of(&self, api: ApiKey) -> Vec<LoggedRequest> {
        self.request_log()
            .into_iter()
            .filter(|r| r.api_key == api)
            .collect()
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Waits until `pred` holds for the request log (checked on every new request). Cancel
    /// safe.
    pub async fn wait_for_log(&self, mut pred: impl FnMut(&[LoggedRequest]) -> bool) {
        loop {
            let notified = self.shared.log_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(
                self.shared
                    .log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .make_contiguous(),
            ) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the fake serves no client connection: every connection has been closed and
    /// every request it delivered has been handled (a request held by a delay hook included).
    /// After the clients have closed, this is the point from which the fake's state is final.
    /// Cancel safe.
    pub async fn wait_for_no_connections(&self) {
        let mut rx = self.shared.conns.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: `wait_for` cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Waits until at least `n` requests of `api` have arrived. Cancel safe.
    pub async fn wait_for_requests(&self, api: ApiKey, n: usize) {
        self.wait_for_log(|log| log.iter().filter(|r| r.api_key == api).count() >= n)
            .await
    }
}

// ---- serving ----------------------------------------------------------------------------

async fn run_ticker(shared: std::sync::Weak<Shared>) {
    let mut iv = tokio::time::interval(Duration::from_millis(10));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        iv.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let changed = {
            let mut s = shared.lock();
            let now = Instant::now();
            let g = crate::group::tick(&mut s, now);
            let t = crate::txn::tick(&mut s, now);
            (g, t)
        };
        if changed.0 {
            shared.bump_groups();
        }
        if changed.1 {
            shared.bump_data();
        }
    }
}

async fn run_broker(shared: Arc<Shared>, id: i32, listener: TcpListener) {
    let addr = shared.listen[id as usize];
    let mut listener = Some(listener);
    let mut up_rx = shared.up[id as usize].subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !*up_rx.borrow_and_update() {
            listener = None;
            tokio::select! {
                _ = up_rx.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(broker = id, %e, "rebinding failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        loop {
            tokio::select! {
                r = l.accept() => match r {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        // Counted before the task starts, so a waiter never sees a gap.
                        shared.conns.send_modify(|n| *n += 1);
                        tokio::spawn(serve_conn(shared.clone(), id, stream));
                    }
                    Err(e) => tracing::warn!(broker = id, %e, "accept failed"),
                },
                _ = up_rx.changed() => {
                    if !*up_rx.borrow_and_update() {
                        break;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
        drop(l);
    }
}

/// What the processor hands the writer.
enum Out {
    Frame(Instant, BytesMut),
    Close(Instant),
}

/// Uncounts a served connection when its task ends, however it ends.
struct ConnCount(Arc<Shared>);

impl Drop for ConnCount {
    fn drop(&mut self) {
        self.0.conns.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn serve_conn(shared: Arc<Shared>, broker: i32, stream: TcpStream) {
    let _count = ConnCount(shared.clone());
    let mut up_rx = shared.up[broker as usize].subscribe();
    if !*up_rx.borrow_and_update() {
        return;
    }
    let mut shutdown = shared.shutdown.subscribe();
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Frame(at, buf) => {
                    tokio::time::sleep_until(at.into()).await;
                    if wr.write_all(&buf).await.is_err() {
                        return;
                    }
                }
                Out::Close(at) => {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    });
    let reader = krust_wire::frame::FrameReader::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let work = async {
        loop {
            loop {
                let frame = match reader.try_read(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(broker, %e, "bad frame; closing");
                        return;
                    }
                };
                let arrived = Instant::now();
                match process(&shared, broker, frame).await {
                    Reply::Frame(b) => {
                        let (rtt, throttle) = {
                            let s = shared.lock();
                            let b = &s.brokers[broker as usize];
                            (b.rtt, b.throttle)
                        };
                        if tx.send(Out::Frame(arrived + rtt, b)).is_err() {
                            return;
                        }
                        if !throttle.is_zero() {
                            // KIP-219: the broker mutes a throttled connection.
                            tokio::time::sleep(throttle).await;
                        }
                    }
                    Reply::None => {}
                    Reply::Close => {
                        let _ = tx.send(Out::Close(Instant::now()));
                        return;
                    }
                }
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = async { while up_rx.changed().await.is_ok() { if !*up_rx.borrow_and_update() { return; } } std::future::pending::<()>().await } => {
            writer.abort();
            return;
        }
        _ = shutdown.changed() => { writer.abort(); return; }
    }
    drop(tx);
    let _ = writer.await;
}

pub(crate) enum Reply {
    Frame(BytesMut),
    None,
    Close,
}

/// Handler context: which broker, which request version.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) broker: i32,
    pub(crate) version: i16,
    pub(crate) client_id: String,
}

/// The versions the fake serves for an API (before configured caps); `None` if unsupported.
pub(crate) fn served_range(api: ApiKey, kip890: bool) -> Option<(i16, i16)> {
    use ApiKey as K;
    let r = match api {
        K::Produce => (3, if kip890 { 12 } else { 11 }),
        K::Fetch => (4, 12),
        K::ListOffsets => (1, 9),
        K::Metadata => (0, 12),
        K::OffsetCommit => (2, 9),
        K::OffsetFetch => (1, 9),
        K::FindCoordinator => (0, 6),
        K::JoinGroup => (0, 9),
        K::Heartbeat => (0, 4),
        K::LeaveGroup => (0, 5),
        K::SyncGroup => (0, 5),
        K::DescribeGroups => (0, 5),
        K::ListGroups => (0, 5),
        K::ApiVersions => (0, 4),
        K::CreateTopics => (2, 7),
        K::DeleteTopics => (1, 6),
        K::DeleteRecords => (0, 2),
        K::InitProducerId => (0, 5),
        K::OffsetForLeaderEpoch => (2, 4),
        K::AddPartitionsToTxn => (0, 3),
        K::AddOffsetsToTxn => (0, 3),
        K::EndTxn => (0, if kip890 { 5 } else { 3 }),
        K::TxnOffsetCommit => (0, if kip890 { 5 } else { 3 }),
        K::DescribeConfigs => (1, 4),
        K::CreatePartitions => (0, 3),
        K::DeleteGroups => (0, 2),
        K::DescribeCluster => (0, 1),
        K::DescribeTransactions => (0, 0),
        K::ListTransactions => (0, 1),
        _ => return None,
    };
    Some(r)
}

/// The advertised range after caps, or `None` if not served.
pub(crate) fn advertised_range(s: &State, api: ApiKey) -> Option<(i16, i16)> {
    if s.cfg.disabled_apis.contains(&(api as i16)) {
        return None;
    }
    let (min, mut max) = served_range(api, s.cfg.txn_protocol == crate::TxnProtocol::Kip890)?;
    if let Some(cap) = s.cfg.version_caps.get(&(api as i16)) {
        max = max.min(*cap);
    }
    (max >= min).then_some((min, max))
}

fn produce_batches(body: &RequestKind) -> Vec<ProducedBatch> {
    let RequestKind::Produce(p) = body else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &p.topic_data {
        for pd in &t.partition_data {
            let Some(records) = &pd.records else { continue };
            if let Ok(batches) = batch::split_batches(records) {
                for (h, _) in batches {
                    out.push(ProducedBatch {
                        topic: t.name.0.to_string(),
                        partition: pd.index,
                        producer_id: h.producer_id,
                        producer_epoch: h.producer_epoch,
                        base_sequence: h.base_sequence,
                        record_count: h.record_count,
                        transactional: h.is_transactional(),
                    });
                }
            }
        }
    }
    out
}

fn encode_reply(api: ApiKey, version: i16, correlation_id: i32, resp: &ResponseKind) -> Reply {
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(&[0, 0, 0, 0]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let Err(e) = header.encode(&mut out, api.response_header_version(version)) {
        tracing::error!(?api, version, %e, "encoding response header");
        return Reply::Close;
    }
    if let Err(e) = resp.encode(&mut out, version) {
        tracing::error!(?api, version, %e, "encoding response; closing the connection");
        return Reply::Close;
    }
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Reply::Frame(out)
}

async fn process(shared: &Arc<Shared>, broker: i32, mut frame: Bytes) -> Reply {
    if frame.len() < 8 {
        return Reply::Close;
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(api) = ApiKey::try_from(key) else {
        tracing::debug!(key, "unknown api key; closing");
        return Reply::Close;
    };
    let range = advertised_range(&shared.lock(), api);
    // An ApiVersions request of a version the fake does not know is answered with v0 and
    // UNSUPPORTED_VERSION, so that the client can retry with a version it can (Kafka's rule).
    if api == ApiKey::ApiVersions && range.is_some_and(|(_, max)| version > max) {
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let resp = handlers::api_versions::unsupported(&shared.lock());
        return encode_reply(api, 0, correlation_id, &ResponseKind::ApiVersions(resp));
    }
    let Some((min, max)) = range else {
        tracing::debug!(?api, "api not served; closing");
        return Reply::Close;
    };
    if version < min || version > max {
        tracing::debug!(?api, version, "version not served; closing");
        return Reply::Close;
    }
    let header = match RequestHeader::decode(&mut frame, api.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(%e, "bad request header; closing");
            return Reply::Close;
        }
    };
    let body = match RequestKind::decode(api, &mut frame, version) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(?api, version, %e, "bad request body; closing");
            return Reply::Close;
        }
    };
    let correlation_id = header.correlation_id;
    let client_id = header.client_id.as_ref().map(|c| c.to_string());
    {
        let entry = LoggedRequest {
            at: shared.started.elapsed(),
            broker,
            api_key: api,
            version,
            correlation_id,
            client_id: client_id.clone(),
            batches: produce_batches(&body),
        };
        if shared.log_limit > 0 {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() >= shared.log_limit {
                log.pop_front();
            }
            log.push_back(entry);
        }
        shared.log_changed.notify_waiters();
    }
    let req = Request {
        broker,
        api_key: api,
        version,
        correlation_id,
        client_id,
        body,
    };
    let mut action = None;
    let candidates: Vec<Hook> = shared
        .hooks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|h| {
            h.filter.api.is_none_or(|a| a == api) && h.filter.broker.is_none_or(|b| b == broker)
        })
        .cloned()
        .collect();
    for h in candidates {
        let mut f = h.f.lock().unwrap_or_else(|e| e.into_inner());
        if h.filter.once && h.fired.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(a) = (f)(&req) {
            if h.filter.once {
                h.fired.store(true, Ordering::SeqCst);
                drop(f);
                shared
                    .hooks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|x| x.id != h.id);
            }
            action = Some(a);
            break;
        }
    }
    let mut drop_response = false;
    loop {
        match action.take() {
            None => break,
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                break;
            }
            Some(Action::DelayThen(d, inner)) => {
                tokio::time::sleep(d).await;
                action = Some(*inner);
            }
            Some(Action::Close) => return Reply::Close,
            Some(Action::Hang) => std::future::pending::<()>().await,
            Some(Action::DropResponse) => {
                drop_response = true;
                break;
            }
            Some(Action::Respond(r)) => return encode_reply(api, version, correlation_id, &r),
            Some(Action::Error(code)) => {
                return match handlers::errors::error_response(&req.body, version, code) {
                    Some(r) => encode_reply(api, version, correlation_id, &r),
                    None => Reply::Close,
                }
            }
        }
    }
    let ctx = Ctx {
        shared,
        broker,
        version,
        client_id: req.client_id.clone().unwrap_or_default(),
    };
    let resp = handlers::dispatch(&ctx, req.body).await;
    if matches!(
        api,
        ApiKey::Heartbeat | ApiKey::LeaveGroup | ApiKey::OffsetCommit | ApiKey::DeleteGroups
    ) {
        shared.bump_groups();
    }
    if drop_response {
        return Reply::Close;
    }
    match resp {
        Some(mut r) => {
            let throttle = shared.lock().brokers[broker as usize].throttle;
            if !throttle.is_zero() {
                set_throttle(&mut r, throttle.as_millis().min(i32::MAX as u128) as i32);
            }
            encode_reply(api, version, correlation_id, &r)
        }
        None => Reply::None,
    }
}

fn set_throttle(r: &mut ResponseKind, ms: i32) {
    macro_rules! throttle {
        ($($v:ident),*) => {
            match r {
                $(ResponseKind::$v(x) => x.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    throttle!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeConfigs,
        CreatePartitions,
        DeleteGroups,
        DescribeCluster,
        DescribeTransactions,
        ListTransactions
    );
}
