//! The broker pool and the metadata cache: the shared core of every krust client.
//!
//! A [`Cluster`] owns one [`Connection`] per broker (made on first use, remade after a failure
//! with exponential backoff and jitter), a metadata snapshot that is refreshed on demand, on
//! the errors that call for it ([`Cluster::request_metadata_refresh`]) and at least every
//! `metadata.max.age.ms`, and the bootstrap addresses, which are tried again whenever no known
//! broker can be reached (re-bootstrap).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use krust_wire::{ApiKey, ErrorCode, KafkaRequest};
use rand::Rng;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::ClientConfig;
pub use crate::conn::NodeId;

use crate::conn::{ConnectOptions, Connection};
use crate::error::{Error, Result};

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: i32,
    /// Rack, if the broker has one.
    pub rack: Option<String>,
}

impl BrokerAddress {
    /// `host:port`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Which connection to a broker a request travels on.
///
/// A Kafka broker serves the requests of one connection one at a time, in order. A long-polling
/// request (a Fetch waiting `fetch.max.wait.ms`, a JoinGroup held until the group forms) would
/// therefore delay everything queued behind it on the same socket: heartbeats would miss their
/// deadline while a fetch waits. Each lane is its own TCP connection to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Lane {
    /// Produce, Fetch, Metadata and admin requests.
    Default,
    /// Group coordinator requests (JoinGroup, SyncGroup, Heartbeat, offsets).
    Group,
    /// Transaction coordinator requests.
    Transaction,
    /// One consumer-group member's own coordinator connection (JoinGroup, SyncGroup,
    /// Heartbeat, LeaveGroup). Members sharing a `Cluster` (consumers made with
    /// `Consumer::with_cluster`) must not share one: the coordinator parks a member's JoinGroup
    /// until the group forms, and the heartbeat another member needs in order to learn of that
    /// rebalance would wait behind it on the same socket, so the group would wedge until the
    /// rebalance timeout. Make one with [`Lane::new_member`]; give it back with
    /// [`Cluster::release_lane`].
    Member(u64),
}

impl Lane {
    /// A [`Lane::Member`] no other lane of this process uses.
    pub fn new_member() -> Lane {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Lane::Member(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// One partition's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, if the partition has a leader.
    pub leader: Option<NodeId>,
    /// Leader epoch (-1 when the broker does not send one).
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<NodeId>,
    /// In-sync replica node ids.
    pub isr: Vec<NodeId>,
    /// Error for this partition (e.g. LEADER_NOT_AVAILABLE), if any.
    pub error: Option<ErrorCode>,
}

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (nil when the broker does not send one).
    pub topic_id: Uuid,
    /// Whether the topic is internal (e.g. `__consumer_offsets`).
    pub is_internal: bool,
    /// Topic-level error, if any.
    pub error: Option<ErrorCode>,
    /// Partitions, indexed by partition id.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The metadata of one topic of a Metadata response, partitions sorted by id; `None` for a
    /// topic the broker identified by id only.
    pub fn from_response(t: MetadataResponseTopic) -> Option<TopicMetadata> {
        let name = t.name?.0.to_string();
        let mut partitions: Vec<PartitionMetadata> = t
            .partitions
            .into_iter()
            .map(|p| PartitionMetadata {
                partition: p.partition_index,
                leader: Some(p.leader_id.0).filter(|l| *l >= 0),
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.into_iter().map(|n| n.0).collect(),
                isr: p.isr_nodes.into_iter().map(|n| n.0).collect(),
                error: ErrorCode(p.error_code).err(),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Some(TopicMetadata {
            name,
            topic_id: t.topic_id,
            is_internal: t.is_internal,
            error: ErrorCode(t.error_code).err(),
            partitions,
        })
    }

    /// The partition with id `p`.
    pub fn partition(&self, p: i32) -> Option<&PartitionMetadata> {
        usize::try_from(p).ok().and_then(|i| self.partitions.get(i))
    }
}

/// A snapshot of what the client knows about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Brokers by node id.
    pub brokers: BTreeMap<NodeId, BrokerAddress>,
    /// Topics known so far, by name.
    pub topics: HashMap<String, TopicMetadata>,
    /// The controller's node id.
    pub controller: Option<NodeId>,
    /// The cluster id.
    pub cluster_id: Option<String>,
}

impl ClusterMetadata {
    /// The leader of `topic`/`partition`, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<NodeId> {
        self.topics.get(topic)?.partition(partition)?.leader
    }
}

struct BrokerSlot {
    node: NodeId,
    addr: Mutex<String>,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Consecutive connection failures and the earliest next attempt.
    backoff: Mutex<(u32, Option<Instant>)>,
    throttled_until: Mutex<Option<Instant>>,
}

impl BrokerSlot {
    fn new(node: NodeId, addr: String) -> Arc<Self> {
        Arc::new(BrokerSlot {
            node,
            addr: Mutex::new(addr),
            conn: tokio::sync::Mutex::new(None),
            backoff: Mutex::new((0, None)),
            throttled_until: Mutex::new(None),
        })
    }
}

struct Inner {
    config: ClientConfig,
    /// Connection settings with security prepared (TLS files read) once for all brokers.
    connect: ConnectOptions,
    brokers: Mutex<BTreeMap<NodeId, Arc<BrokerSlot>>>,
    /// Extra connections to known brokers, one per non-default [`Lane`].
    lanes: Mutex<BTreeMap<(NodeId, Lane), Arc<BrokerSlot>>>,
    bootstrap: Vec<Arc<BrokerSlot>>,
    metadata: RwLock<Arc<ClusterMetadata>>,
    interest: Mutex<BTreeSet<String>>,
    refresh_wanted: Notify,
    refreshing: tokio::sync::Mutex<()>,
    closed: std::sync::atomic::AtomicBool,
}

/// A handle on a Kafka cluster: connections and metadata. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .finish()
    }
}

/// Exponential backoff with ±20% jitter (KIP-580): `base * 2^attempt`, capped at `max`.
pub(crate) fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    exp.mul_f64(jitter).min(max)
}

/// Sleeps the retry backoff of the `attempt`-th retry (`retry.backoff.ms` doubling up to
/// `retry.backoff.max.ms`, with jitter) and counts the attempt.
pub(crate) async fn retry_pause(cfg: &ClientConfig, attempt: &mut u32) {
    tokio::time::sleep(backoff_delay(
        cfg.retry_backoff,
        cfg.retry_backoff_max,
        *attempt,
    ))
    .await;
    *attempt += 1;
}

impl Cluster {
    /// Connects to the cluster: reaches a bootstrap server and loads the broker list.
    ///
    /// Fails with [`Error::Bootstrap`] when no bootstrap server answers within
    /// `socket.connection.setup.timeout.ms`.
    pub async fn connect(config: ClientConfig) -> Result<Cluster> {
        config.validate()?;
        let connect = ConnectOptions::from_config(&config)?;
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let addr = crate::config::strip_scheme(s).to_string();
                BrokerSlot::new(-1 - i as i32, addr)
            })
            .collect();
        let inner = Arc::new(Inner {
            config,
            connect,
            brokers: Mutex::new(BTreeMap::new()),
            lanes: Mutex::new(BTreeMap::new()),
            bootstrap,
            metadata: RwLock::new(Arc::new(ClusterMetadata::default())),
            interest: Mutex::new(BTreeSet::new()),
            refresh_wanted: Notify::new(),
            refreshing: tokio::sync::Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let cluster = Cluster { inner };
        cluster.refresh_metadata(&[]).await.map_err(|e| match e {
            // Authentication and TLS failures are configuration problems: shown as they are.
            Error::Bootstrap { .. } | Error::Authentication { .. } | Error::Tls { .. } => e,
            other => Error::Bootstrap {
                servers: cluster.inner.config.bootstrap_servers.join(","),
                last_error: other.to_string(),
            },
        })?;
        tokio::spawn(refresh_loop(Arc::downgrade(&cluster.inner)));
        Ok(cluster)
    }

    /// The configuration this cluster handle was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner.metadata.read().unwrap().clone()
    }

    /// Asks for a metadata refresh soon, without waiting for it (after NOT_LEADER and the like).
    pub fn request_metadata_refresh(&self) {
        self.inner.refresh_wanted.notify_one();
    }

    /// Records that `node` asked us to back off for `throttle_ms` (KIP-219): requests to it are
    /// held until then. Throttling is not an error and does not grow any retry backoff.
    pub fn note_throttle(&self, node: NodeId, throttle_ms: i32) {
        if throttle_ms <= 0 {
            return;
        }
        if let Some(slot) = self.slot(node) {
            *slot.throttled_until.lock().unwrap() =
                Some(Instant::now() + Duration::from_millis(throttle_ms as u64));
        }
    }

    /// Closes every connection; later requests fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.refresh_wanted.notify_one();
        let slots: Vec<_> = self
            .inner
            .brokers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let lanes: Vec<_> = self.inner.lanes.lock().unwrap().values().cloned().collect();
        for s in slots
            .iter()
            .chain(&lanes)
            .chain(self.inner.bootstrap.iter())
        {
            if let Ok(mut c) = s.conn.try_lock() {
                if let Some(c) = c.take() {
                    c.close("client closed");
                }
            }
        }
    }

    fn slot(&self, node: NodeId) -> Option<Arc<BrokerSlot>> {
        if node < 0 {
            return usize::try_from(-1 - node)
                .ok()
                .and_then(|i| self.inner.bootstrap.get(i).cloned());
        }
        self.inner.brokers.lock().unwrap().get(&node).cloned()
    }

    fn lane_slot(&self, node: NodeId, lane: Lane) -> Option<Arc<BrokerSlot>> {
        if lane == Lane::Default || node < 0 {
            return self.slot(node);
        }
        let main = self.slot(node)?;
        let mut lanes = self.inner.lanes.lock().unwrap();
        Some(
            lanes
                .entry((node, lane))
                .or_insert_with(|| BrokerSlot::new(node, main.addr.lock().unwrap().clone()))
                .clone(),
        )
    }

    /// The connection to `node` on `lane`, made if needed.
    pub async fn connection_on(&self, node: NodeId, lane: Lane) -> Result<Arc<Connection>> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let Some(slot) = self.lane_slot(node, lane) else {
            // Stale metadata (or a broker restarting): the next one may list it.
            self.request_metadata_refresh();
            return Err(Error::UnknownBroker(node));
        };
        self.slot_connection(&slot).await
    }

    /// Sends a request to broker `node` on `lane` (each lane its own connection) and waits up
    /// to `timeout` for its response. The version is negotiated; `build(version)` makes the
    /// request; a throttle `node` asked for is waited out first. Returns the version used and
    /// the response. Cancel safe as [`Cluster::send`].
    pub async fn send_on<R: KafkaRequest>(
        &self,
        node: NodeId,
        lane: Lane,
        timeout: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        let conn = self.connection_on(node, lane).await?;
        let version = conn.version_for(R::API_KEY)?;
        let req = build(version);
        self.wait_throttle(node).await;
        let resp = conn.request(&req, version, timeout).await?;
        Ok((version, resp))
    }

    /// Closes and forgets `lane`'s connections to every broker (a group member that ended gives
    /// back its [`Lane::Member`]); a later request on the lane connects again. The default lane
    /// is left alone.
    pub fn release_lane(&self, lane: Lane) {
        if lane == Lane::Default {
            return;
        }
        let mut gone = Vec::new();
        self.inner.lanes.lock().unwrap().retain(|(_, l), slot| {
            if *l == lane {
                gone.push(slot.clone());
            }
            *l != lane
        });
        for slot in gone {
            // A connection being made right now is dropped (and so closed) with its slot.
            if let Ok(mut c) = slot.conn.try_lock() {
                if let Some(c) = c.take() {
                    c.close("lane released");
                }
            }
        }
    }

    /// The connection to `node`, made if needed.
    pub async fn connection(&self, node: NodeId) -> Result<Arc<Connection>> {
        self.connection_on(node, Lane::Default).await
    }

    async fn slot_connection(&self, slot: &Arc<BrokerSlot>) -> Result<Arc<Connection>> {
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
            *guard = None;
        }
        let wait = slot.backoff.lock().unwrap().1;
        if let Some(at) = wait {
            tokio::time::sleep_until(at.into()).await;
        }
        let addr = slot.addr.lock().unwrap().clone();
        let cfg = &self.inner.config;
        match Connection::connect_with(slot.node, &addr, &self.inner.connect).await {
            Ok(c) => {
                debug!(broker = slot.node, %addr, "connected");
                *slot.backoff.lock().unwrap() = (0, None);
                let c = Arc::new(c);
                *guard = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let mut b = slot.backoff.lock().unwrap();
                let delay = backoff_delay(cfg.reconnect_backoff, cfg.reconnect_backoff_max, b.0);
                b.0 = b.0.saturating_add(1);
                b.1 = Some(Instant::now() + delay);
                warn!(broker = slot.node, %addr, error = %e, ?delay, "connection failed");
                Err(e)
            }
        }
    }

    async fn wait_throttle(&self, node: NodeId) {
        let until = self
            .slot(node)
            .and_then(|s| *s.throttled_until.lock().unwrap());
        if let Some(at) = until {
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            }
        }
    }

    /// Sends a request to broker `node` and waits for its response, within
    /// `request.timeout.ms`. The version is negotiated; `build(version)` makes the request.
    /// Returns the version used and the response.
    ///
    /// Cancel safety: dropping the future is safe (see [`Connection::request`]); the request may
    /// or may not have reached the broker.
    pub async fn send<R: KafkaRequest>(
        &self,
        node: NodeId,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        let timeout = self.inner.config.request_timeout;
        self.send_timeout(node, timeout, build).await
    }

    /// As [`Cluster::send`] with an explicit timeout (for long-polling fetches): the default
    /// lane of [`Cluster::send_on`].
    pub async fn send_timeout<R: KafkaRequest>(
        &self,
        node: NodeId,
        timeout: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        self.send_on(node, Lane::Default, timeout, build).await
    }

    /// Sends a request expecting no response (acks=0 Produce); resolves once it is written.
    pub async fn send_no_response<R: KafkaRequest>(
        &self,
        node: NodeId,
        build: impl FnOnce(i16) -> R,
    ) -> Result<i16> {
        let conn = self.connection(node).await?;
        let version = conn.version_for(R::API_KEY)?;
        let req = build(version);
        self.wait_throttle(node).await;
        conn.send_only(&req, version, self.inner.config.request_timeout)
            .await?;
        Ok(version)
    }

    /// Sends a request to any reachable broker: known brokers first (starting at a random one),
    /// then the bootstrap addresses (re-bootstrap when every known broker is gone).
    pub async fn send_any<R: KafkaRequest>(
        &self,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(NodeId, i16, R::Response)> {
        let conn = self.any_connection().await?;
        let node = conn.node();
        let version = conn.version_for(R::API_KEY)?;
        let req = build(version);
        self.wait_throttle(node).await;
        let resp = conn
            .request(&req, version, self.inner.config.request_timeout)
            .await?;
        Ok((node, version, resp))
    }

    /// A connection to any reachable broker.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut known: Vec<Arc<BrokerSlot>> = self
            .inner
            .brokers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        if !known.is_empty() {
            let start = rand::thread_rng().gen_range(0..known.len());
            known.rotate_left(start);
        }
        // Prefer slots that already have a live connection.
        for s in &known {
            if let Ok(g) = s.conn.try_lock() {
                if let Some(c) = g.as_ref().filter(|c| c.is_alive()) {
                    return Ok(c.clone());
                }
            }
        }
        let mut last: Option<Error> = None;
        for s in known.iter().chain(self.inner.bootstrap.iter()) {
            match self.slot_connection(s).await {
                Ok(c) => return Ok(c),
                // Wrong credentials or an untrusted certificate will not get better on
                // another broker of the same cluster: report it as it is.
                Err(e @ (Error::Authentication { .. } | Error::Tls { .. })) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Bootstrap {
            servers: self.inner.config.bootstrap_servers.join(","),
            last_error: last.map_or_else(|| "no brokers".into(), |e| e.to_string()),
        })
    }

    /// Refreshes metadata for `topics` plus every topic asked about before (the interest set).
    /// An empty interest set loads the broker list only.
    pub async fn refresh_metadata(&self, topics: &[String]) -> Result<Arc<ClusterMetadata>> {
        {
            let mut interest = self.inner.interest.lock().unwrap();
            interest.extend(topics.iter().cloned());
        }
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let wanted: Vec<String> = self
            .inner
            .interest
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        let allow_create = self.inner.config.allow_auto_create_topics;
        let (node, _v, resp) = self
            .send_any(|_v| {
                let mut req = MetadataRequest::default();
                req.topics = Some(
                    wanted
                        .iter()
                        .map(|t| {
                            let mut mt = MetadataRequestTopic::default();
                            mt.name = Some(StrBytes::from_string(t.clone()).into());
                            mt
                        })
                        .collect(),
                );
                req.allow_auto_topic_creation = allow_create;
                req
            })
            .await?;
        self.note_throttle(node, resp.throttle_time_ms);
        Ok(self.merge(resp))
    }

    fn merge(&self, resp: MetadataResponse) -> Arc<ClusterMetadata> {
        let old = self.metadata();
        let mut md = ClusterMetadata {
            brokers: BTreeMap::new(),
            topics: old.topics.clone(),
            controller: Some(resp.controller_id.0).filter(|c| *c >= 0),
            cluster_id: resp.cluster_id.map(|c| c.to_string()),
        };
        for b in resp.brokers {
            md.brokers.insert(
                b.node_id.0,
                BrokerAddress {
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                },
            );
        }
        for t in resp.topics {
            let Some(topic) = TopicMetadata::from_response(t) else {
                continue;
            };
            // Partition ids are dense 0..n in Kafka; a hole means a broken answer, which is
            // recorded as a missing partition rather than trusted.
            let dense = topic
                .partitions
                .iter()
                .enumerate()
                .all(|(i, p)| p.partition == i as i32);
            if !dense {
                warn!(topic = %topic.name, "metadata with non-contiguous partition ids ignored");
                continue;
            }
            md.topics.insert(topic.name.clone(), topic);
        }
        // Update the broker pool: new brokers get slots, moved brokers lose their connection.
        {
            let mut slots = self.inner.brokers.lock().unwrap();
            for (id, b) in &md.brokers {
                let addr = b.addr();
                match slots.get(id) {
                    Some(s) => {
                        let mut a = s.addr.lock().unwrap();
                        if *a != addr {
                            info!(broker = id, old = %*a, new = %addr, "broker address changed");
                            *a = addr;
                            if let Ok(mut c) = s.conn.try_lock() {
                                *c = None;
                            }
                        }
                    }
                    None => {
                        slots.insert(*id, BrokerSlot::new(*id, addr));
                    }
                }
            }
            slots.retain(|id, _| md.brokers.contains_key(id));
            // Lane connections follow their broker: gone or moved brokers lose them (they are
            // recreated from the current address on next use).
            self.inner.lanes.lock().unwrap().retain(|(id, _), lane| {
                slots
                    .get(id)
                    .is_some_and(|main| *main.addr.lock().unwrap() == *lane.addr.lock().unwrap())
            });
        }
        let md = Arc::new(md);
        *self.inner.metadata.write().unwrap() = md.clone();
        md
    }

    /// Metadata for `topic`, loading it if not known yet. Retries while the topic is being
    /// created (UNKNOWN_TOPIC_OR_PARTITION / LEADER_NOT_AVAILABLE) for up to
    /// `request.timeout.ms`, then fails with [`Error::UnknownTopic`].
    pub async fn topic(&self, topic: &str) -> Result<TopicMetadata> {
        if let Some(t) = self.metadata().topics.get(topic) {
            if t.error.is_none() && !t.partitions.is_empty() {
                return Ok(t.clone());
            }
        }
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut attempt = 0;
        loop {
            let md = self.refresh_metadata(&[topic.to_string()]).await?;
            match md.topics.get(topic) {
                Some(t) if t.error.is_none() && !t.partitions.is_empty() => return Ok(t.clone()),
                Some(t)
                    if !matches!(
                        t.error,
                        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                            | Some(ErrorCode::LEADER_NOT_AVAILABLE)
                            | None
                    ) =>
                {
                    return Err(Error::broker_with(
                        ApiKey::Metadata,
                        t.error.unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR),
                        format!("topic `{topic}`"),
                        None,
                    ));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                self.inner.interest.lock().unwrap().remove(topic);
                return Err(Error::UnknownTopic(topic.to_string()));
            }
            let cfg = &self.inner.config;
            retry_pause(cfg, &mut attempt).await;
        }
    }

    /// The version that will be used for `api` with broker `node` (connecting if needed).
    pub async fn version(&self, node: NodeId, api: ApiKey) -> Result<i16> {
        self.connection(node).await?.version_for(api)
    }
}

async fn refresh_loop(weak: Weak<Inner>) {
    let mut last_refresh = Instant::now();
    loop {
        // Hold a strong reference for at most a second at a time, so dropping every `Cluster`
        // handle ends this task promptly.
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let due = last_refresh + inner.config.metadata_max_age;
        let wanted = tokio::time::timeout(Duration::from_secs(1), inner.refresh_wanted.notified())
            .await
            .is_ok();
        if !wanted && Instant::now() < due {
            continue;
        }
        // Coalesce bursts of refresh requests.
        tokio::time::sleep(inner.config.retry_backoff).await;
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let cluster = Cluster { inner };
        if let Err(e) = cluster.refresh_metadata(&[]).await {
            debug!(error = %e, "background metadata refresh failed");
        }
        last_refresh = Instant::now();
    }
}
