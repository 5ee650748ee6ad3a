//! The cluster's shared state: brokers, topics and partitions, producer ids, transactions and
//! groups. One mutex guards all of it; handlers take it briefly and never across an await.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use uuid::Uuid;

use crate::group::Group;
use crate::log::{PartitionLog, SeqPolicy};
use crate::txn::TxnState;

/// Which generation of the transaction protocol the fake's coordinator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnProtocol {
    /// Kafka's original protocol (transaction.version 0/1): the epoch only changes on
    /// InitProducerId.
    #[default]
    Classic,
    /// KIP-890 part 2 (transaction.version 2): the coordinator bumps the producer epoch at the
    /// end of every transaction (returned by EndTxn v5+), and Produce v12+ adds partitions to
    /// the transaction implicitly.
    Kip890,
}

/// Configuration of a [`FakeCluster`](crate::FakeCluster); build with the `with_*` setters.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) brokers: usize,
    pub(crate) base_port: Option<u16>,
    pub(crate) host: String,
    pub(crate) cluster_id: String,
    pub(crate) version_caps: HashMap<i16, i16>,
    pub(crate) disabled_apis: HashSet<i16>,
    pub(crate) first_sequence: i32,
    pub(crate) auto_create_topics: bool,
    pub(crate) default_partitions: i32,
    pub(crate) txn_protocol: TxnProtocol,
    pub(crate) unsorted_aborted: bool,
    pub(crate) topics: Vec<(String, i32, i16)>,
    pub(crate) max_txn_timeout_ms: i32,
    pub(crate) min_session_timeout_ms: i32,
    pub(crate) max_session_timeout_ms: i32,
    pub(crate) initial_rebalance_delay: Duration,
    pub(crate) first_producer_id: i64,
    pub(crate) fetch_sessions: bool,
    pub(crate) txn_marker_delay: Duration,
    pub(crate) partial_trailing_batches: bool,
    pub(crate) request_log_limit: usize,
    pub(crate) leader_failover: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            brokers: 1,
            base_port: None,
            host: "127.0.0.1".into(),
            cluster_id: "krust-fake-cluster".into(),
            version_caps: HashMap::new(),
            disabled_apis: HashSet::new(),
            first_sequence: 0,
            auto_create_topics: false,
            default_partitions: 1,
            txn_protocol: TxnProtocol::Classic,
            unsorted_aborted: false,
            topics: Vec::new(),
            max_txn_timeout_ms: 900_000,
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay: Duration::ZERO,
            first_producer_id: 1000,
            fetch_sessions: true,
            txn_marker_delay: Duration::ZERO,
            partial_trailing_batches: false,
            request_log_limit: 1_000_000,
            leader_failover: false,
        }
    }
}

impl ClusterConfig {
    /// Defaults: 1 broker on an ephemeral loopback port, no topics, no auto-creation, classic
    /// transactions, first sequence 0.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of brokers (ids 0..n). Default 1.
    pub fn with_brokers(mut self, n: usize) -> Self {
        self.brokers = n.max(1);
        self
    }
    /// Listen on `port`, `port + 1`, ... instead of ephemeral ports.
    pub fn with_base_port(mut self, port: u16) -> Self {
        self.base_port = Some(port);
        self
    }
    /// Cluster id reported in Metadata. Default `krust-fake-cluster`.
    pub fn with_cluster_id(mut self, id: impl Into<String>) -> Self {
        self.cluster_id = id.into();
        self
    }
    /// Advertise at most `max` for `api` in ApiVersions (pretend to be an older Kafka).
    pub fn with_max_version(mut self, api: kafka_protocol::messages::ApiKey, max: i16) -> Self {
        self.version_caps.insert(api as i16, max);
        self
    }
    /// Do not advertise (nor serve) `api` at all.
    pub fn without_api(mut self, api: kafka_protocol::messages::ApiKey) -> Self {
        self.disabled_apis.insert(api as i16);
        self
    }
    /// The sequence number a producer's first batch on a partition must carry (Kafka: 0). Set
    /// near `i32::MAX` to exercise sequence wrap-around.
    pub fn with_first_sequence(mut self, seq: i32) -> Self {
        self.first_sequence = seq;
        self
    }
    /// Create unknown topics on Metadata requests that allow it (Kafka's
    /// `auto.create.topics.enable`). Default off.
    pub fn with_auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = on;
        self
    }
    /// Partition count for auto-created topics and CreateTopics with -1. Default 1.
    pub fn with_default_partitions(mut self, n: i32) -> Self {
        self.default_partitions = n.max(1);
        self
    }
    /// Transaction protocol generation. Default [`TxnProtocol::Classic`].
    pub fn with_txn_protocol(mut self, p: TxnProtocol) -> Self {
        self.txn_protocol = p;
        self
    }
    /// Return read_committed aborted-transaction lists in reverse order (some brokers do not
    /// sort them; clients must not rely on the order).
    pub fn with_unsorted_aborted_list(mut self, on: bool) -> Self {
        self.unsorted_aborted = on;
        self
    }
    /// Create `topic` with `partitions` partitions and replication factor `rf` at start.
    pub fn with_topic(mut self, topic: impl Into<String>, partitions: i32, rf: i16) -> Self {
        self.topics.push((topic.into(), partitions, rf));
        self
    }
    /// Largest transaction timeout InitProducerId accepts. Default 15 minutes.
    pub fn with_max_transaction_timeout(mut self, d: Duration) -> Self {
        self.max_txn_timeout_ms = d.as_millis().min(i32::MAX as u128) as i32;
        self
    }
    /// Session-timeout bounds for JoinGroup (Kafka's group.min/max.session.timeout.ms).
    /// Default 1 s ..= 30 min.
    pub fn with_session_timeout_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_session_timeout_ms = min.as_millis() as i32;
        self.max_session_timeout_ms = max.as_millis().min(i32::MAX as u128) as i32;
        self
    }
    /// Wait this long after the first member joins an empty group before completing the join
    /// (Kafka's group.initial.rebalance.delay.ms; default 0 here, 3 s in Kafka).
    pub fn with_initial_rebalance_delay(mut self, d: Duration) -> Self {
        self.initial_rebalance_delay = d;
        self
    }
    /// Whether brokers grant fetch sessions (KIP-227) to Fetch v7+ requests that ask for one.
    /// Default on (as Kafka); off declines every session (session id 0), which Kafka allows.
    pub fn with_fetch_sessions(mut self, on: bool) -> Self {
        self.fetch_sessions = on;
        self
    }
    /// Write transaction markers this long after EndTxn (Kafka writes them asynchronously).
    /// Meanwhile the transaction is PrepareCommit/PrepareAbort: the LSO stays put, and
    /// InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and transactional Produce
    /// get CONCURRENT_TRANSACTIONS, which clients must retry. Default 0 (immediate).
    pub fn with_txn_marker_delay(mut self, d: Duration) -> Self {
        self.txn_marker_delay = d;
        self
    }
    /// End Fetch answers that hit a byte limit with the first bytes of the next batch (a
    /// partial batch), as Kafka does; clients must ignore it. Default off (whole batches only).
    pub fn with_partial_trailing_batches(mut self, on: bool) -> Self {
        self.partial_trailing_batches = on;
        self
    }
    /// Keep at most this many entries in the request log, dropping the oldest (0 disables the
    /// log). Default 1,000,000.
    pub fn with_request_log_limit(mut self, entries: usize) -> Self {
        self.request_log_limit = entries;
        self
    }
    /// When a broker goes down, move leadership of its partitions to another live replica
    /// (bumping the leader epoch; a partition with no live replica gets leader -1 until its
    /// broker returns), and let coordinators of the down broker move to the next live broker,
    /// as a real cluster's controller would. Default off: leaders stay where tests put them.
    pub fn with_leader_failover(mut self, on: bool) -> Self {
        self.leader_failover = on;
        self
    }
    /// The first producer id handed out. Default 1000.
    pub fn with_first_producer_id(mut self, id: i64) -> Self {
        self.first_producer_id = id;
        self
    }
}

/// Per-broker mutable settings.
#[derive(Debug, Clone)]
pub(crate) struct BrokerState {
    pub(crate) up: bool,
    pub(crate) advertised: (String, u16),
    pub(crate) rtt: Duration,
    pub(crate) throttle: Duration,
}

/// A partition of a topic.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub(crate) leader: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) log: PartitionLog,
}

impl Partition {
    pub(crate) fn epoch(&self) -> i32 {
        self.log.leader_epoch()
    }
}

/// A topic.
#[derive(Debug, Clone)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) configs: BTreeMap<String, String>,
    pub(crate) replication_factor: i16,
}

/// A producer id handed out by InitProducerId.
#[derive(Debug, Clone)]
pub(crate) struct ProducerInfo {
    pub(crate) epoch: i16,
}

/// Everything behind the cluster mutex.
pub(crate) struct State {
    pub(crate) cfg: ClusterConfig,
    pub(crate) brokers: Vec<BrokerState>,
    pub(crate) topics: IndexMap<String, Topic>,
    pub(crate) hidden: HashMap<String, Option<Instant>>,
    pub(crate) coordinator_overrides: HashMap<(i8, String), i32>,
    pub(crate) next_producer_id: i64,
    pub(crate) producers: HashMap<i64, ProducerInfo>,
    /// Producer ids every Produce refuses with UNKNOWN_PRODUCER_ID.
    pub(crate) lost_producer_ids: std::collections::HashSet<i64>,
    pub(crate) txns: HashMap<String, TxnState>,
    pub(crate) groups: HashMap<String, Group>,
    pub(crate) next_member: u64,
    pub(crate) fetch_sessions: HashMap<i32, crate::handlers::fetch::FetchSession>,
    pub(crate) next_fetch_session: i32,
}

impl State {
    pub(crate) fn new(cfg: ClusterConfig, brokers: Vec<BrokerState>) -> Self {
        let next_producer_id = cfg.first_producer_id;
        let mut s = State {
            cfg,
            brokers,
            topics: IndexMap::new(),
            hidden: HashMap::new(),
            coordinator_overrides: HashMap::new(),
            next_producer_id,
            producers: HashMap::new(),
            lost_producer_ids: Default::default(),
            txns: HashMap::new(),
            groups: HashMap::new(),
            next_member: 0,
            fetch_sessions: HashMap::new(),
            next_fetch_session: 0,
        };
        for (t, p, rf) in s.cfg.topics.clone() {
            let _ = s.create_topic(&t, p, rf, BTreeMap::new(), None);
        }
        s
    }

    pub(crate) fn seq_policy(&self) -> SeqPolicy {
        SeqPolicy {
            first_sequence: self.cfg.first_sequence,
        }
    }

    pub(crate) fn broker_count(&self) -> i32 {
        self.brokers.len() as i32
    }

    /// Creates a topic, leaders spread round-robin; `assignment` overrides replica lists.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: BTreeMap<String, String>,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<(), i16> {
        use crate::errors as ec;
        if name.is_empty()
            || name.len() > 249
            || name == "."
            || name == ".."
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        {
            return Err(ec::INVALID_TOPIC_EXCEPTION);
        }
        if self.topics.contains_key(name) {
            return Err(ec::TOPIC_ALREADY_EXISTS);
        }
        let n = self.broker_count();
        let rf = if rf <= 0 { 1.min(n as i16) } else { rf };
        if i32::from(rf) > n {
            return Err(ec::INVALID_REPLICATION_FACTOR);
        }
        let partitions = if partitions <= 0 {
            self.cfg.default_partitions
        } else {
            partitions
        };
        let offset = (self.topics.len() as i32) % n;
        let parts = (0..partitions)
            .map(|p| {
                let replicas = match &assignment {
                    Some(a) if (p as usize) < a.len() && !a[p as usize].is_empty() => {
                        a[p as usize].clone()
                    }
                    _ => (0..i32::from(rf)).map(|r| (p + offset + r) % n).collect(),
                };
                Partition {
                    leader: replicas[0],
                    replicas,
                    log: PartitionLog::new(0),
                }
            })
            .collect();
        self.topics.insert(
            name.to_string(),
            Topic {
                id: Uuid::from_u128(rand::random::<u128>() | 1),
                partitions: parts,
                configs,
                replication_factor: rf,
            },
        );
        Ok(())
    }

    /// Adds partitions to `topic` up to `count`.
    pub(crate) fn grow_topic(&mut self, name: &str, count: i32) -> Result<(), i16> {
        use crate::errors as ec;
        let n = self.broker_count();
        let Some(t) = self.topics.get_mut(name) else {
            return Err(ec::UNKNOWN_TOPIC_OR_PARTITION);
        };
        let have = t.partitions.len() as i32;
        if count <= have {
            return Err(ec::INVALID_PARTITIONS);
        }
        for p in have..count {
            let replicas: Vec<i32> = (0..i32::from(t.replication_factor))
                .map(|r| (p + r) % n)
                .collect();
            t.partitions.push(Partition {
                leader: replicas[0],
                replicas,
                log: PartitionLog::new(0),
            });
        }
        Ok(())
    }

    /// Whether `topic` is currently hidden from Metadata (and treated as unknown).
    pub(crate) fn is_hidden(&self, topic: &str) -> bool {
        match self.hidden.get(topic) {
            None => false,
            Some(None) => true,
            Some(Some(until)) => Instant::now() < *until,
        }
    }

    /// A partition if its topic exists and is visible.
    pub(crate) fn partition(&self, topic: &str, p: i32) -> Option<&Partition> {
        if self.is_hidden(topic) {
            return None;
        }
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(p).ok()?)
    }

    /// Mutable partition if its topic exists and is visible.
    pub(crate) fn partition_mut(&mut self, topic: &str, p: i32) -> Option<&mut Partition> {
        if self.is_hidden(topic) {
            return None;
        }
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(p).ok()?)
    }

    /// The coordinator broker for a group (`key_type` 0) or transactional id (1).
    pub(crate) fn coordinator(&self, key_type: i8, key: &str) -> i32 {
        if let Some(b) = self.coordinator_overrides.get(&(key_type, key.to_string())) {
            return *b;
        }
        // FNV-1a: stable across runs, unlike std's randomized hasher.
        let mut h: u32 = 0x811c9dc5;
        for b in key.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x01000193);
        }
        let n = self.brokers.len();
        let home = (h % n as u32) as usize;
        if self.cfg.leader_failover {
            for i in 0..n {
                let b = (home + i) % n;
                if self.brokers[b].up {
                    return b as i32;
                }
            }
        }
        home as i32
    }

    /// Milliseconds since the Unix epoch (record and marker timestamps).
    pub(crate) fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// Allocates a fresh producer id at epoch 0.
    pub(crate) fn new_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        self.producers.insert(id, ProducerInfo { epoch: 0 });
        id
    }

    /// A new unique member id.
    pub(crate) fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!(
            "{client_id}-{:08x}-{}",
            self.next_member,
            rand::random::<u32>()
        )
    }
}
