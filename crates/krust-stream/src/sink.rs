//! [`KafkaSink`]: where a job writes (a fixed topic or a topic per record), how values are
//! encoded, which key, headers and partition each output gets, and the delivery guarantee.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use krust_client::consumer::RecordHeader;
use krust_client::producer::{Partitioner, ProducerConfig};
use krust_client::Properties;

use crate::codec::Serializer;
use crate::error::StreamError;
use crate::record::Record;

/// What a job promises about its outputs when it crashes or is rebalanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryGuarantee {
    /// Fire and forget with the producer's defaults; input offsets are committed periodically
    /// whether or not the outputs were acknowledged: outputs can be lost or duplicated.
    #[default]
    None,
    /// Input offsets are committed only after every output derived from them is acknowledged:
    /// nothing is lost; a crash or rebalance can write some outputs twice.
    AtLeastOnce,
    /// Each commit interval is one Kafka transaction holding the outputs and the input offsets
    /// (KIP-447, with the group's metadata): readers with `isolation.level=read_committed` see
    /// every output exactly once. Needs a consumer group, a transactional id prefix and an
    /// instance id that is stable across restarts of one instance.
    ExactlyOnce,
}

impl std::str::FromStr for DeliveryGuarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "none" => Ok(DeliveryGuarantee::None),
            "at-least-once" => Ok(DeliveryGuarantee::AtLeastOnce),
            "exactly-once" => Ok(DeliveryGuarantee::ExactlyOnce),
            other => Err(format!(
                "unknown delivery guarantee `{other}` (none, at-least-once, exactly-once)"
            )),
        }
    }
}

type TopicFn<T> = Arc<dyn Fn(&Record<T>) -> String + Send + Sync>;
type KeyFn<T> = Arc<dyn Fn(&Record<T>) -> Option<Bytes> + Send + Sync>;
type HeadersFn<T> = Arc<dyn Fn(&Record<T>) -> Vec<RecordHeader> + Send + Sync>;
type PartitionFn<T> = Arc<dyn Fn(&Record<T>) -> Option<i32> + Send + Sync>;

/// Where outputs go.
pub(crate) enum TopicSelector<T> {
    Fixed(Arc<str>),
    PerRecord(TopicFn<T>),
}

/// A configured sink for `T` values.
pub struct KafkaSink<T> {
    pub(crate) producer: ProducerConfig,
    pub(crate) topic: TopicSelector<T>,
    pub(crate) serializer: Arc<dyn Serializer<T>>,
    pub(crate) key: Option<KeyFn<T>>,
    pub(crate) headers: Option<HeadersFn<T>>,
    pub(crate) partition: Option<PartitionFn<T>>,
    pub(crate) guarantee: DeliveryGuarantee,
    pub(crate) transactional_id_prefix: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) transaction_timeout: Option<Duration>,
    pub(crate) commit_interval: Option<Duration>,
    pub(crate) abort_lingering: bool,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("guarantee", &self.guarantee)
            .field("transactional_id_prefix", &self.transactional_id_prefix)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

impl<T: Send + 'static> KafkaSink<T> {
    /// A builder writing to the cluster at `bootstrap_servers` with `serializer`.
    pub fn builder(bootstrap_servers: &str, serializer: impl Serializer<T>) -> KafkaSinkBuilder<T> {
        let mut props = Properties::new();
        props.set("bootstrap.servers", bootstrap_servers);
        KafkaSinkBuilder {
            props,
            topic: None,
            serializer: Arc::new(serializer),
            key: None,
            headers: None,
            partition: None,
            partitioner: None,
            guarantee: DeliveryGuarantee::None,
            transactional_id_prefix: None,
            instance_id: None,
            transaction_timeout: None,
            commit_interval: None,
            abort_lingering: false,
        }
    }

    /// The delivery guarantee.
    pub fn guarantee(&self) -> DeliveryGuarantee {
        self.guarantee
    }
}

/// Builds a [`KafkaSink`]; nothing connects until the job runs.
pub struct KafkaSinkBuilder<T> {
    props: Properties,
    topic: Option<TopicSelector<T>>,
    serializer: Arc<dyn Serializer<T>>,
    key: Option<KeyFn<T>>,
    headers: Option<HeadersFn<T>>,
    partition: Option<PartitionFn<T>>,
    partitioner: Option<Arc<dyn Partitioner>>,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: Option<String>,
    instance_id: Option<String>,
    transaction_timeout: Option<Duration>,
    commit_interval: Option<Duration>,
    abort_lingering: bool,
}

impl<T> std::fmt::Debug for KafkaSinkBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkBuilder")
            .field("guarantee", &self.guarantee)
            .finish()
    }
}

impl<T: Send + 'static> KafkaSinkBuilder<T> {
    /// Writes every output to `topic`.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(TopicSelector::Fixed(Arc::from(topic.into())));
        self
    }

    /// Chooses the topic of each output.
    pub fn topic_selector(
        mut self,
        f: impl Fn(&Record<T>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.topic = Some(TopicSelector::PerRecord(Arc::new(f)));
        self
    }

    /// Computes each output's key (default: the record's key, which is the input's unless an
    /// operator changed it).
    pub fn key(mut self, f: impl Fn(&Record<T>) -> Option<Bytes> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// Computes each output's headers (default: the record's headers).
    pub fn headers(
        mut self,
        f: impl Fn(&Record<T>) -> Vec<RecordHeader> + Send + Sync + 'static,
    ) -> Self {
        self.headers = Some(Arc::new(f));
        self
    }

    /// Chooses each output's partition (`None`: the partitioner decides).
    pub fn partition(
        mut self,
        f: impl Fn(&Record<T>) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partition = Some(Arc::new(f));
        self
    }

    /// The producer's partitioner (default: murmur2 of the key, uniform sticky without one).
    pub fn partitioner(mut self, p: Arc<dyn Partitioner>) -> Self {
        self.partitioner = Some(p);
        self
    }

    /// The delivery guarantee (default NONE).
    pub fn delivery_guarantee(mut self, g: DeliveryGuarantee) -> Self {
        self.guarantee = g;
        self
    }

    /// The transactional id prefix (EXACTLY_ONCE; required there). Unique per application on
    /// a cluster: the transactional id is `<prefix>-<instance id>`.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(prefix.into());
        self
    }

    /// This instance's id, stable across its restarts and unique among the job's instances
    /// (EXACTLY_ONCE): a restarted instance takes the same transactional id, which fences its
    /// predecessor and aborts the transaction it left open. Defaults to the source's
    /// `group.instance.id` when set.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// `transaction.timeout.ms` (EXACTLY_ONCE; default 60 s). Must exceed the commit interval
    /// plus the group's session timeout (checked when the job is built).
    pub fn transaction_timeout(mut self, t: Duration) -> Self {
        self.transaction_timeout = Some(t);
        self
    }

    /// How often the job commits: one transaction per interval under EXACTLY_ONCE (default
    /// 100 ms), an acknowledged-then-commit round under AT_LEAST_ONCE (default 1 s), a plain
    /// offset commit under NONE (default 5 s). Output visibility under EXACTLY_ONCE lags by
    /// up to this much.
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.commit_interval = Some(every);
        self
    }

    /// EXACTLY_ONCE: at start, also abort every open transaction whose transactional id
    /// starts with `<prefix>-` (ListTransactions, then a fencing InitProducerId per id), not
    /// only this instance's own (which starting always fences and aborts). For the transactions
    /// of instances that will not come back (after scaling down, or a changed instance id),
    /// which would otherwise hold read_committed readers back until the broker's transaction
    /// timeout. Only when no other instance of the job is running: it fences them too, and
    /// they stop. Needs a broker with ListTransactions (Kafka 3.0+). Default off.
    pub fn abort_lingering_transactions(mut self, on: bool) -> Self {
        self.abort_lingering = on;
        self
    }

    /// Sets a producer property by its Kafka name (`linger.ms`, `compression.type`,
    /// `acks`, `security.protocol`, ...). Unknown names fail [`build`](Self::build).
    /// `transactional.id` and `transaction.timeout.ms` are set through the builder.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.props.set(name, value);
        self
    }

    /// Builds the sink, checking its own settings (those that depend on the source are checked
    /// by [`Pipeline::sink`](crate::Pipeline::sink)).
    pub fn build(self) -> Result<KafkaSink<T>, StreamError> {
        let topic = self.topic.ok_or_else(|| {
            StreamError::config("topic", "give a topic or a topic selector to write to")
        })?;
        if let TopicSelector::Fixed(t) = &topic {
            if t.is_empty() {
                return Err(StreamError::config("topic", "must not be empty"));
            }
        }
        for p in ["transactional.id", "transaction.timeout.ms"] {
            if self.props.contains(p) {
                return Err(StreamError::config(
                    p,
                    "set through the sink builder (transactional_id_prefix, instance_id, \
                     transaction_timeout)",
                ));
            }
        }
        let mut producer = ProducerConfig::from_properties(self.props)?;
        producer.partitioner = self.partitioner;
        if self.guarantee == DeliveryGuarantee::ExactlyOnce {
            match &self.transactional_id_prefix {
                None => {
                    return Err(StreamError::config(
                        "transactional_id_prefix",
                        "EXACTLY_ONCE needs a transactional id prefix, unique to this \
                         application on the cluster",
                    ))
                }
                Some(p) if p.is_empty() => {
                    return Err(StreamError::config(
                        "transactional_id_prefix",
                        "must not be empty",
                    ))
                }
                _ => {}
            }
            if producer.enable_idempotence == Some(false) {
                return Err(StreamError::config(
                    "enable.idempotence",
                    "EXACTLY_ONCE needs the idempotent producer",
                ));
            }
        }
        if self.guarantee == DeliveryGuarantee::AtLeastOnce
            && producer.acks != krust_client::producer::Acks::All
        {
            tracing::warn!(
                "AT_LEAST_ONCE with acks other than all: an acknowledged output can still be \
                 lost if its leader fails"
            );
        }
        if self.commit_interval.is_some_and(|d| d.is_zero()) {
            return Err(StreamError::config("commit_interval", "must be positive"));
        }
        Ok(KafkaSink {
            producer,
            topic,
            serializer: self.serializer,
            key: self.key,
            headers: self.headers,
            partition: self.partition,
            guarantee: self.guarantee,
            transactional_id_prefix: self.transactional_id_prefix,
            instance_id: self.instance_id,
            transaction_timeout: self.transaction_timeout,
            commit_interval: self.commit_interval,
            abort_lingering: self.abort_lingering,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::StringSerializer;

    #[test]
    fn build_checks() {
        let e = KafkaSink::<String>::builder("127.0.0.1:1", StringSerializer)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("`topic`"), "{e}");
        let e = KafkaSink::<String>::builder("127.0.0.1:1", StringSerializer)
            .topic("out")
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("transactional_id_prefix"), "{e}");
        let e = KafkaSink::<String>::builder("127.0.0.1:1", StringSerializer)
            .topic("out")
            .property("transactional.id", "x")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("transactional.id"), "{e}");
        let e = KafkaSink::<String>::builder("127.0.0.1:1", StringSerializer)
            .topic("out")
            .property("lingr.ms", "1")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("lingr.ms"), "{e}");
        assert_eq!(
            "exactly_once".parse::<DeliveryGuarantee>().unwrap(),
            DeliveryGuarantee::ExactlyOnce
        );
        assert!("twice".parse::<DeliveryGuarantee>().is_err());
    }
}
