//! [`KafkaSource`]: what a job reads (topics, a topic regex or explicit partitions), as which
//! consumer group, from where (committed offsets with a fallback, earliest, latest, a
//! timestamp, explicit offsets), until where (unbounded, or bounded by stop offsets), how values
//! are decoded, and what happens to a record that cannot be processed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use krust_client::consumer::{ConsumerConfig, TopicPartition};
use krust_client::group::GroupSettings;
use krust_client::Properties;

use crate::codec::{BytesDeserializer, Deserializer};
use crate::error::StreamError;

/// What a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    /// These topics (every partition).
    Names(Vec<String>),
    /// Every topic whose whole name matches this regular expression (internal `__` topics
    /// excluded); new matching topics are picked up by partition discovery.
    Pattern(String),
    /// Exactly these partitions (no consumer group assignment: one process reads them all).
    Partitions(Vec<TopicPartition>),
}

/// Where a partition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The group's committed offset; where there is none, the fallback (the default, with
    /// [`StartPosition::Earliest`] as the fallback). The only choice under which a restarted or
    /// rebalanced job resumes where it stopped.
    Committed(Box<StartPosition>),
    /// The oldest record still kept.
    Earliest,
    /// The end of the log at the moment the partition is assigned.
    Latest,
    /// The first record whose timestamp is at or after these milliseconds since the epoch
    /// (the end of the log where there is none).
    Timestamp(i64),
    /// These offsets; partitions not listed use the fallback.
    Offsets(BTreeMap<TopicPartition, i64>, Box<StartPosition>),
}

impl StartPosition {
    /// Committed offsets, falling back to `fallback` where nothing is committed.
    pub fn committed_or(fallback: StartPosition) -> Self {
        StartPosition::Committed(Box::new(fallback))
    }
}

impl Default for StartPosition {
    fn default() -> Self {
        StartPosition::committed_or(StartPosition::Earliest)
    }
}

/// Where a bounded source stops: each partition is read up to (not including) its stop offset,
/// then the job ends once every partition has reached its stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopPosition {
    /// The end of each partition when the job starts (from a Fetch's high watermark, or the
    /// last stable offset under read_committed: exact even where a broker's ListOffsets is
    /// not).
    Latest,
    /// These offsets; partitions not listed are not read.
    Offsets(BTreeMap<TopicPartition, i64>),
    /// The first offset whose record timestamp is at or after these milliseconds since the
    /// epoch (the end at job start where there is none).
    Timestamp(i64),
}

/// What happens to a record that fails a stage (deserialization, `try_map`, serialization).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// The job stops with the error (the default: nothing is silently lost).
    #[default]
    Fail,
    /// The record is skipped and counted ([`MetricsSnapshot::skipped`](crate::MetricsSnapshot::skipped)),
    /// with a warning in the log.
    Skip,
    /// The input record is written as it was (key, value, headers) to this topic, with
    /// headers `krust.error`, `krust.error.stage`, `krust.source.topic`,
    /// `krust.source.partition` and `krust.source.offset`. It is written with the job's
    /// delivery guarantee (in the same transaction under EXACTLY_ONCE).
    DeadLetter(String),
}

/// The untyped part of a source.
#[derive(Debug, Clone)]
pub(crate) struct SourceConfig {
    pub consumer: ConsumerConfig,
    pub group: Option<GroupSettings>,
    pub topics: Topics,
    pub start: StartPosition,
    pub stop: Option<StopPosition>,
    pub discovery: Option<Duration>,
    pub error_policy: ErrorPolicy,
    pub poll_timeout: Duration,
}

/// A configured source of `T` values; turn it into a [`Pipeline`](crate::Pipeline) with
/// `.into()` or [`KafkaSource::pipeline`].
pub struct KafkaSource<T> {
    pub(crate) config: SourceConfig,
    pub(crate) deserializer: Arc<dyn Deserializer<Output = T>>,
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.config)
            .finish()
    }
}

impl KafkaSource<bytes::Bytes> {
    /// A builder reading from the cluster at `bootstrap_servers` (`host:port[,host:port]`).
    /// Values are raw bytes until [`KafkaSourceBuilder::deserializer`] says otherwise.
    pub fn builder(bootstrap_servers: &str) -> KafkaSourceBuilder<BytesDeserializer> {
        let mut props = Properties::new();
        props.set("bootstrap.servers", bootstrap_servers);
        KafkaSourceBuilder {
            props,
            topics: None,
            group_id: None,
            start: StartPosition::default(),
            stop: None,
            discovery: Some(Duration::from_secs(60)),
            error_policy: ErrorPolicy::Fail,
            deserializer: BytesDeserializer,
            poll_timeout: Duration::from_millis(100),
        }
    }
}

impl<T: Send + 'static> KafkaSource<T> {
    /// The source as the start of a pipeline.
    pub fn pipeline(self) -> crate::Pipeline<T> {
        self.into()
    }

    /// The consumer group id, if any.
    pub fn group_id(&self) -> Option<&str> {
        self.config
            .group
            .as_ref()
            .map(|g| g.group.group_id.as_str())
    }
}

/// Builds a [`KafkaSource`]; nothing connects until the job runs.
#[derive(Debug, Clone)]
pub struct KafkaSourceBuilder<D> {
    props: Properties,
    topics: Option<Topics>,
    group_id: Option<String>,
    start: StartPosition,
    stop: Option<StopPosition>,
    discovery: Option<Duration>,
    error_policy: ErrorPolicy,
    deserializer: D,
    poll_timeout: Duration,
}

impl<D: Deserializer> KafkaSourceBuilder<D> {
    /// Reads one topic (may be called again to add topics).
    pub fn topic(self, topic: impl Into<String>) -> Self {
        self.topics([topic.into()])
    }

    /// Reads these topics (adding to topics given before).
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        let mut names = match self.topics.take() {
            Some(Topics::Names(n)) => n,
            _ => Vec::new(),
        };
        names.extend(topics.into_iter().map(Into::into));
        self.topics = Some(Topics::Names(names));
        self
    }

    /// Reads every topic whose whole name matches `regex`.
    pub fn topic_pattern(mut self, regex: impl Into<String>) -> Self {
        self.topics = Some(Topics::Pattern(regex.into()));
        self
    }

    /// Reads exactly these partitions (no group assignment).
    pub fn partitions<I: IntoIterator<Item = (S, i32)>, S: Into<String>>(
        mut self,
        partitions: I,
    ) -> Self {
        self.topics = Some(Topics::Partitions(
            partitions
                .into_iter()
                .map(|(t, p)| TopicPartition::new(t.into(), p))
                .collect(),
        ));
        self
    }

    /// The consumer group (`group.id`): instances of the job with one group share the
    /// partitions, and commits go to it. Required for AT_LEAST_ONCE and EXACTLY_ONCE.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where partitions start (default: committed offsets, else earliest).
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Makes the source bounded: it stops at `stop` and the job ends by itself.
    pub fn bounded(mut self, stop: StopPosition) -> Self {
        self.stop = Some(stop);
        self
    }

    /// How often an unbounded source looks for new partitions and, with a regex, new topics
    /// (default 60 s; `None` turns discovery off). Ignored when bounded.
    pub fn partition_discovery(mut self, every: Option<Duration>) -> Self {
        self.discovery = every;
        self
    }

    /// How values are decoded.
    pub fn deserializer<D2: Deserializer>(self, deserializer: D2) -> KafkaSourceBuilder<D2> {
        KafkaSourceBuilder {
            props: self.props,
            topics: self.topics,
            group_id: self.group_id,
            start: self.start,
            stop: self.stop,
            discovery: self.discovery,
            error_policy: self.error_policy,
            deserializer,
            poll_timeout: self.poll_timeout,
        }
    }

    /// What to do with a record that fails a stage (default: fail the job).
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// Sets a consumer property by its Kafka name (`session.timeout.ms`,
    /// `isolation.level`, `max.poll.records`, `security.protocol`, ...). Unknown names fail
    /// [`build`](Self::build). `enable.auto.commit` is always false: the job commits.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.props.set(name, value);
        self
    }

    /// Builds the source, checking the settings.
    pub fn build(self) -> Result<KafkaSource<D::Output>, StreamError> {
        let topics = self.topics.ok_or_else(|| {
            StreamError::config(
                "topics",
                "name topics, a topic pattern or partitions to read",
            )
        })?;
        match &topics {
            Topics::Names(n) if n.is_empty() || n.iter().any(|t| t.is_empty()) => {
                return Err(StreamError::config(
                    "topics",
                    "topic names must not be empty",
                ))
            }
            Topics::Pattern(p) => {
                regex::Regex::new(p).map_err(|e| {
                    StreamError::config(
                        "topic_pattern",
                        e.to_string().lines().last().unwrap_or_default().trim(),
                    )
                })?;
            }
            Topics::Partitions(ps) if ps.is_empty() => {
                return Err(StreamError::config("partitions", "no partition given"))
            }
            _ => {}
        }
        let mut props = self.props;
        if let Some(g) = &self.group_id {
            if g.is_empty() {
                return Err(StreamError::config("group_id", "must not be empty"));
            }
            props.set("group.id", g.clone());
        }
        if props.contains("enable.auto.commit") {
            return Err(StreamError::config(
                "enable.auto.commit",
                "the job commits offsets itself (per its delivery guarantee); remove it",
            ));
        }
        props.set("enable.auto.commit", "false");
        if !props.contains("isolation.level") {
            props.set("isolation.level", "read_committed");
        }
        let mut consumer = ConsumerConfig::from_properties(props)?;
        let group = consumer.group.take();
        if let Some(StopPosition::Offsets(m)) = &self.stop {
            if m.values().any(|o| *o < 0) {
                return Err(StreamError::config(
                    "bounded",
                    "stop offsets must not be negative",
                ));
            }
        }
        Ok(KafkaSource {
            config: SourceConfig {
                consumer,
                group,
                topics,
                start: self.start,
                stop: self.stop,
                discovery: self.discovery.filter(|d| !d.is_zero()),
                error_policy: self.error_policy,
                poll_timeout: self.poll_timeout,
            },
            deserializer: Arc::new(self.deserializer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krust_client::consumer::IsolationLevel;

    #[test]
    fn build_checks() {
        let e = KafkaSource::builder("127.0.0.1:1").build().unwrap_err();
        assert!(e.to_string().contains("topics"), "{e}");
        let e = KafkaSource::builder("127.0.0.1:1")
            .topic_pattern("(")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("topic_pattern"), "{e}");
        let e = KafkaSource::builder("127.0.0.1:1")
            .topic("t")
            .property("enable.auto.commit", "true")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("enable.auto.commit"), "{e}");
        let e = KafkaSource::builder("127.0.0.1:1")
            .topic("t")
            .property("sesion.timeout.ms", "6000")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("sesion.timeout.ms"), "{e}");
        let s = KafkaSource::builder("127.0.0.1:1")
            .topics(["a", "b"])
            .group_id("g")
            .property("session.timeout.ms", "6000")
            .build()
            .unwrap();
        assert_eq!(s.group_id(), Some("g"));
        let g = s.config.group.as_ref().unwrap();
        assert!(!g.enable_auto_commit);
        assert_eq!(g.group.session_timeout, Duration::from_millis(6000));
        assert_eq!(
            s.config.consumer.isolation_level,
            IsolationLevel::ReadCommitted
        );
        assert_eq!(s.config.topics, Topics::Names(vec!["a".into(), "b".into()]));
    }
}
