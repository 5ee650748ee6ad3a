//! [`Admin`]: topics (create, delete, add partitions, describe, list), the cluster, offsets
//! (earliest, latest, by time), record deletion and configs.
//!
//! Errors name what they concern and carry the broker's own message, e.g.
//! ``CreateTopics (topic `orders`): TOPIC_ALREADY_EXISTS (36): Topic 'orders' already exists.``
//! Topic creation, deletion and partition creation go to the controller (any broker when the
//! controller is unknown or unreachable; a NOT_CONTROLLER answer refreshes metadata and
//! retries).
//!
//! ```no_run
//! # async fn example() -> krust_client::Result<()> {
//! use krust_client::admin::{Admin, NewTopic};
//! use krust_client::ClientConfig;
//!
//! let admin = Admin::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! admin
//!     .create_topics(&[NewTopic::new("events", 3, 1).with_config("retention.ms", "3600000")])
//!     .await?;
//! println!("{:?}", admin.describe_topics(&["events"]).await?);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use krust_core::fetch::{IsolationLevel, TopicPartition};
use krust_wire::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use krust_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use krust_wire::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use krust_wire::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use krust_wire::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use krust_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use krust_wire::kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, MetadataRequest, TopicName,
};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::{ApiKey, ErrorCode, KafkaRequest};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, NodeId, TopicMetadata};
use crate::config::ClientConfig;
use crate::consumer::list_offsets;
pub use crate::consumer::{ListedOffset, OffsetSpec};
use crate::error::{Error, Result};

mod transactions;
pub use transactions::{
    abort_lingering, abort_transactions, complete_transaction, describe_transactions,
    list_transactions, AbortedTransaction, ListedTransaction, TransactionDescription,
    TransactionFilter,
};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions (-1: the broker's `num.partitions`).
    pub num_partitions: i32,
    /// Replication factor (-1: the broker's `default.replication.factor`).
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `num_partitions` partitions of `replication_factor` replicas each.
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            num_partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a topic config.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// A broker, as described by the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// Node id.
    pub node_id: NodeId,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// The cluster, as described by DescribeCluster (or Metadata on brokers without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// The controller's node id, if known.
    pub controller: Option<NodeId>,
    /// The brokers, by node id.
    pub brokers: Vec<BrokerDescription>,
}

/// A resource whose configs can be described.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker, by node id.
    Broker(NodeId),
}

impl ConfigResource {
    fn type_code(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    fn name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(b) => b.to_string(),
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic `{t}`"),
            ConfigResource::Broker(b) => write!(f, "broker {b}"),
        }
    }
}

/// Where a config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically as the cluster-wide default.
    DynamicDefaultBroker,
    /// From the broker's static configuration.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Set as a dynamic broker logger config.
    DynamicBrokerLogger,
    /// Not known (older brokers, or a newer code).
    Unknown,
}

impl ConfigSource {
    fn from_code(c: i8) -> Self {
        match c {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            _ => ConfigSource::Unknown,
        }
    }
}

/// One config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (`None` when sensitive or unset).
    pub value: Option<String>,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether it is sensitive (the value is hidden).
    pub is_sensitive: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
}

/// The configs of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDescription {
    /// The resource.
    pub resource: ConfigResource,
    /// Its entries, in the broker's order.
    pub entries: Vec<ConfigEntry>,
}

impl ConfigDescription {
    /// The value of config `name`, if present and not hidden.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }
}

/// A Kafka admin client. Cheap to clone (shares its [`Cluster`]).
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Cluster,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn msg(m: Option<StrBytes>) -> Option<String> {
    m.map(|m| m.to_string()).filter(|m| !m.is_empty())
}

impl Admin {
    /// Connects to the cluster.
    pub async fn connect(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// An admin client over an existing cluster handle.
    pub fn new(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn timeout_ms(&self) -> i32 {
        self.cluster
            .config()
            .request_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32
    }

    /// Sends to the controller; falls back to any broker when the controller is unknown or
    /// cannot be reached.
    async fn send_controller<R: KafkaRequest>(
        &self,
        build: impl Fn(i16) -> R,
    ) -> Result<(NodeId, R::Response)> {
        if let Some(c) = self.cluster.metadata().controller {
            match self.cluster.send(c, &build).await {
                Ok((_v, r)) => return Ok((c, r)),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(controller = c, error = %e, "controller unreachable; trying any broker");
                }
                Err(e) => return Err(e),
            }
        }
        let (node, _v, r) = self.cluster.send_any(&build).await?;
        Ok((node, r))
    }

    /// Creates topics. Fails with the first topic the broker refused, naming it and quoting
    /// the broker's message (TOPIC_ALREADY_EXISTS included: check
    /// [`Error::code`](crate::Error::code) to tolerate it).
    ///
    /// Cancel safety: if cancelled, some topics may have been created.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        self.create_topics_inner(topics, false).await
    }

    /// Asks the broker to validate the creation of `topics` without creating them.
    pub async fn validate_create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        self.create_topics_inner(topics, true).await
    }

    async fn create_topics_inner(&self, topics: &[NewTopic], validate_only: bool) -> Result<()> {
        let timeout_ms = self.timeout_ms();
        let mut attempt = 0;
        loop {
            let (node, resp) = self
                .send_controller(|_v| {
                    let mut req = CreateTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.validate_only = validate_only;
                    req.topics = topics
                        .iter()
                        .map(|t| {
                            let mut ct = CreatableTopic::default();
                            ct.name = TopicName(sb(&t.name));
                            ct.num_partitions = t.num_partitions;
                            ct.replication_factor = t.replication_factor;
                            ct.configs = t
                                .configs
                                .iter()
                                .map(|(k, v)| {
                                    let mut c = CreatableTopicConfig::default();
                                    c.name = sb(k);
                                    c.value = Some(sb(v));
                                    c
                                })
                                .collect();
                            ct
                        })
                        .collect();
                    req
                })
                .await?;
            self.cluster.note_throttle(node, resp.throttle_time_ms);
            let mut not_controller = false;
            for r in resp.topics {
                let code = ErrorCode(r.error_code);
                if code == ErrorCode::NOT_CONTROLLER && attempt < 3 {
                    not_controller = true;
                    continue;
                }
                if !code.is_ok() {
                    return Err(Error::broker_with(
                        ApiKey::CreateTopics,
                        code,
                        format!("topic `{}` on broker {node}", r.name.0),
                        msg(r.error_message),
                    ));
                }
            }
            if !not_controller {
                return Ok(());
            }
            attempt += 1;
            self.cluster.refresh_metadata(&[]).await?;
        }
    }

    /// Deletes topics. Fails with the first topic the broker refused, naming it.
    ///
    /// Cancel safety: if cancelled, some topics may have been deleted.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let timeout_ms = self.timeout_ms();
        let mut attempt = 0;
        loop {
            let (node, resp) = self
                .send_controller(|v| {
                    let mut req = DeleteTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    if v >= 6 {
                        req.topics = names
                            .iter()
                            .map(|n| {
                                let mut s = DeleteTopicState::default();
                                s.name = Some(TopicName(sb(n)));
                                s
                            })
                            .collect();
                    } else {
                        req.topic_names = names.iter().map(|n| TopicName(sb(n))).collect();
                    }
                    req
                })
                .await?;
            self.cluster.note_throttle(node, resp.throttle_time_ms);
            let mut not_controller = false;
            for r in resp.responses {
                let code = ErrorCode(r.error_code);
                if code == ErrorCode::NOT_CONTROLLER && attempt < 3 {
                    not_controller = true;
                    continue;
                }
                if !code.is_ok() {
                    let name = r.name.map(|n| n.0.to_string()).unwrap_or_default();
                    return Err(Error::broker_with(
                        ApiKey::DeleteTopics,
                        code,
                        format!("topic `{name}` on broker {node}"),
                        msg(r.error_message),
                    ));
                }
            }
            if !not_controller {
                return Ok(());
            }
            attempt += 1;
            self.cluster.refresh_metadata(&[]).await?;
        }
    }

    /// Grows `topic` to `total_partitions` partitions (CreatePartitions; not every broker
    /// offers it — tansu does not, which gives an [`Error::Unsupported`]).
    pub async fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<()> {
        let timeout_ms = self.timeout_ms();
        let (node, resp) = self
            .send_controller(|_v| {
                let mut req = CreatePartitionsRequest::default();
                req.timeout_ms = timeout_ms;
                let mut t = CreatePartitionsTopic::default();
                t.name = TopicName(sb(topic));
                t.count = total_partitions;
                t.assignments = None;
                req.topics = vec![t];
                req
            })
            .await?;
        self.cluster.note_throttle(node, resp.throttle_time_ms);
        for r in resp.results {
            let code = ErrorCode(r.error_code);
            if !code.is_ok() {
                return Err(Error::broker_with(
                    ApiKey::CreatePartitions,
                    code,
                    format!("topic `{}` on broker {node}", r.name.0),
                    msg(r.error_message),
                ));
            }
        }
        Ok(())
    }

    /// Describes the cluster: id, controller and brokers (DescribeCluster, or Metadata on
    /// brokers that do not offer it).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        match self
            .cluster
            .send_any(|_v| DescribeClusterRequest::default())
            .await
        {
            Ok((node, _v, resp)) => {
                self.cluster.note_throttle(node, resp.throttle_time_ms);
                let code = ErrorCode(resp.error_code);
                if !code.is_ok() {
                    return Err(Error::broker_with(
                        ApiKey::DescribeCluster,
                        code,
                        format!("broker {node}"),
                        msg(resp.error_message),
                    ));
                }
                let mut brokers: Vec<BrokerDescription> = resp
                    .brokers
                    .into_iter()
                    .map(|b| BrokerDescription {
                        node_id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                    })
                    .collect();
                brokers.sort_by_key(|b| b.node_id);
                Ok(ClusterDescription {
                    cluster_id: Some(resp.cluster_id.to_string()).filter(|c| !c.is_empty()),
                    controller: Some(resp.controller_id.0).filter(|c| *c >= 0),
                    brokers,
                })
            }
            Err(Error::Unsupported { .. }) => {
                let md = self.cluster.refresh_metadata(&[]).await?;
                Ok(ClusterDescription {
                    cluster_id: md.cluster_id.clone(),
                    controller: md.controller,
                    brokers: md
                        .brokers
                        .iter()
                        .map(|(id, b)| BrokerDescription {
                            node_id: *id,
                            host: b.host.clone(),
                            port: b.port,
                            rack: b.rack.clone(),
                        })
                        .collect(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Metadata for `topics` (all topics when `None`), never creating a topic.
    async fn topic_metadata(&self, topics: Option<&[&str]>) -> Result<Vec<TopicMetadata>> {
        let (node, _v, resp) = self
            .cluster
            .send_any(|_v| {
                let mut req = MetadataRequest::default();
                req.allow_auto_topic_creation = false;
                req.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|t| {
                            let mut mt = MetadataRequestTopic::default();
                            mt.name = Some(TopicName(sb(t)));
                            mt
                        })
                        .collect()
                });
                req
            })
            .await?;
        self.cluster.note_throttle(node, resp.throttle_time_ms);
        Ok(resp
            .topics
            .into_iter()
            .filter_map(TopicMetadata::from_response)
            .collect())
    }

    /// Lists topic names (internal topics excluded), sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .topic_metadata(None)
            .await?
            .into_iter()
            .filter(|t| !t.is_internal && t.error.is_none())
            .map(|t| t.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Describes topics: partitions, leaders, replicas, ISR. An unknown topic is an error
    /// naming it (no topic is auto-created).
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicMetadata>> {
        let topics = self.topic_metadata(Some(names)).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let t = topics
                .iter()
                .find(|t| t.name == *name)
                .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
            match t.error {
                Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                    return Err(Error::UnknownTopic(name.to_string()))
                }
                Some(code) => {
                    return Err(Error::broker_with(
                        ApiKey::Metadata,
                        code,
                        format!("topic `{name}`"),
                        None,
                    ))
                }
                None => out.push(t.clone()),
            }
        }
        Ok(out)
    }

    /// Looks up offsets: earliest, latest or by timestamp, per partition (ListOffsets to each
    /// leader, read_uncommitted). A by-timestamp lookup past every record gives offset -1.
    pub async fn list_offsets(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
    ) -> Result<HashMap<TopicPartition, ListedOffset>> {
        list_offsets(&self.cluster, requests, IsolationLevel::ReadUncommitted).await
    }

    /// Deletes the records before the given offsets (moves the log start offset), returning
    /// each partition's new low watermark. Sent to each partition's leader.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<HashMap<TopicPartition, i64>> {
        let mut by_node: BTreeMap<NodeId, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, offset) in before {
            let t = self.cluster.topic(&tp.topic).await?;
            let leader = t
                .partition(tp.partition)
                .ok_or_else(|| Error::UnknownPartition {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                })?
                .leader
                .ok_or_else(|| {
                    Error::broker_with(
                        ApiKey::DeleteRecords,
                        ErrorCode::LEADER_NOT_AVAILABLE,
                        format!("partition {tp}"),
                        None,
                    )
                })?;
            by_node
                .entry(leader)
                .or_default()
                .push((tp.clone(), *offset));
        }
        let timeout_ms = self.timeout_ms();
        let sends = by_node.into_iter().map(|(node, parts)| async move {
            let res = self
                .cluster
                .send(node, |_v| {
                    let mut topics: BTreeMap<&str, Vec<DeleteRecordsPartition>> = BTreeMap::new();
                    for (tp, off) in &parts {
                        let mut p = DeleteRecordsPartition::default();
                        p.partition_index = tp.partition;
                        p.offset = *off;
                        topics.entry(&tp.topic).or_default().push(p);
                    }
                    let mut req = DeleteRecordsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.topics = topics
                        .into_iter()
                        .map(|(t, ps)| {
                            let mut dt = DeleteRecordsTopic::default();
                            dt.name = TopicName(sb(t));
                            dt.partitions = ps;
                            dt
                        })
                        .collect();
                    req
                })
                .await;
            (node, res)
        });
        let mut out = HashMap::new();
        for (node, res) in join_all(sends).await {
            let (_v, resp) = res?;
            self.cluster.note_throttle(node, resp.throttle_time_ms);
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                    let code = ErrorCode(p.error_code);
                    if !code.is_ok() {
                        return Err(Error::broker_with(
                            ApiKey::DeleteRecords,
                            code,
                            format!("partition {tp} on broker {node}"),
                            None,
                        ));
                    }
                    out.insert(tp, p.low_watermark);
                }
            }
        }
        Ok(out)
    }

    /// Describes the configs of topics and brokers (all keys). Broker resources are asked of
    /// that broker, topics of any broker.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<Vec<ConfigDescription>> {
        let mut out = Vec::with_capacity(resources.len());
        for res in resources {
            let build = |_v: i16| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = res.type_code();
                r.resource_name = sb(&res.name());
                r.configuration_keys = None;
                let mut req = DescribeConfigsRequest::default();
                req.resources = vec![r];
                req
            };
            let (node, resp) = match res {
                ConfigResource::Broker(b) => {
                    let (_v, r) = self.cluster.send(*b, build).await?;
                    (*b, r)
                }
                ConfigResource::Topic(_) => {
                    let (n, _v, r) = self.cluster.send_any(build).await?;
                    (n, r)
                }
            };
            self.cluster.note_throttle(node, resp.throttle_time_ms);
            for r in resp.results {
                let code = ErrorCode(r.error_code);
                if !code.is_ok() {
                    return Err(Error::broker_with(
                        ApiKey::DescribeConfigs,
                        code,
                        format!("{res} on broker {node}"),
                        msg(r.error_message),
                    ));
                }
                out.push(ConfigDescription {
                    resource: res.clone(),
                    entries: r
                        .configs
                        .into_iter()
                        .map(|c| ConfigEntry {
                            name: c.name.to_string(),
                            value: c.value.map(|v| v.to_string()),
                            read_only: c.read_only,
                            is_sensitive: c.is_sensitive,
                            source: ConfigSource::from_code(c.config_source),
                        })
                        .collect(),
                });
            }
        }
        Ok(out)
    }
}
