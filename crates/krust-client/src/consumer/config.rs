//! [`ConsumerConfig`]: the consumer's typed settings, also built from Kafka property names.

use std::time::Duration;

use krust_core::fetch::{FetchConfig, IsolationLevel, OffsetReset};
use serde::{Deserialize, Serialize};

use crate::config::{ms, ClientConfig, Properties};
use crate::error::{Error, Result};
use crate::group::GroupSettings;

/// Settings of a [`Consumer`](super::Consumer).
///
/// Every field names its Kafka property and its default. Build one with
/// [`ConsumerConfig::new`] and the `with_*` setters, with [`ConsumerConfig::from_properties`]
/// from a Kafka-style property list, or deserialize one (serde; missing fields take their
/// defaults, durations are integer milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Connection settings shared with the other clients (`bootstrap.servers`, `client.id`,
    /// `request.timeout.ms`, ...).
    pub client: ClientConfig,
    /// The consumer-group settings, present when `group.id` is set: `group.id`,
    /// `group.instance.id`, `session.timeout.ms`, `heartbeat.interval.ms`,
    /// `max.poll.interval.ms`, `partition.assignment.strategy`, `enable.auto.commit`,
    /// `auto.commit.interval.ms`, `client.rack`, `krust.revoke.timeout.ms`,
    /// `krust.require.stable.offsets` (see [`GroupSettings`]). Used by
    /// [`Consumer::subscribe`](super::Consumer::subscribe); assign mode ignores it. Default none.
    pub group: Option<GroupSettings>,
    /// `auto.offset.reset`: where to restart when the position is out of range on the broker:
    /// `earliest`, `latest` or `none` (report an error and stop the partition until a seek).
    /// Default `latest`.
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes`: the broker holds a fetch until this many bytes are available or
    /// `fetch.max.wait.ms` passes. Default 1.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: the most bytes one fetch may return (across its partitions; the
    /// first batch is returned whole even if larger). Clamped to what remains of the prefetch
    /// budget. Default 52 428 800 (50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most bytes one fetch returns per partition (again,
    /// the first batch comes whole). Default 1 048 576 (1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch waiting for
    /// `fetch.min.bytes`. Default 500 ms.
    #[serde(with = "ms")]
    pub fetch_max_wait: Duration,
    /// `isolation.level`: `read_uncommitted` (everything up to the high watermark) or
    /// `read_committed` (stop at the last stable offset, drop aborted transactions). Default
    /// `read_uncommitted`.
    pub isolation_level: IsolationLevel,
    /// `max.poll.records`: the most records one `poll` returns. Default 500.
    pub max_poll_records: usize,
    /// `check.crcs`: whether each fetched batch's CRC (CRC-32C; CRC-32 for legacy messages) is
    /// verified before it is decompressed, as in Java. Default true; `false` skips the check (a
    /// corrupted batch is then not caught by its checksum, though it is still decoded only by
    /// the bounded decoders, within the decompression limits).
    pub check_crcs: bool,
    /// `krust.prefetch.max.bytes` (or librdkafka's `queued.max.messages.kbytes`, in KiB): the
    /// most bytes fetched ahead of the application, counting data buffered and fetches in
    /// flight. When reached, fetching stops until `poll` drains data: a slow application applies
    /// backpressure instead of growing memory. Fetched batches stay compressed until polled (one
    /// batch per partition is inflated at a time), so this bounds memory whatever the
    /// compression ratio. Default 67 108 864 (64 MiB).
    pub max_prefetch_bytes: usize,
    /// `enable.partition.eof` (librdkafka's name): when true, `poll` also returns (possibly with
    /// no records) when a partition reaches its end, and
    /// [`Consumer::take_partition_eofs`](super::Consumer::take_partition_eofs) lists it.
    /// Default false.
    pub enable_partition_eof: bool,
    /// `krust.validate.positions`: validate positions with OffsetForLeaderEpoch after a leader
    /// change (KIP-320) when the broker offers that API. Default true.
    pub validate_positions: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group: None,
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            fetch_max_wait: Duration::from_millis(500),
            isolation_level: IsolationLevel::ReadUncommitted,
            max_poll_records: 500,
            check_crcs: true,
            max_prefetch_bytes: 64 << 20,
            enable_partition_eof: false,
            validate_positions: true,
        }
    }
}

impl ConsumerConfig {
    /// A config for the given bootstrap servers (comma-separated `host:port`), defaults
    /// elsewhere.
    pub fn new(bootstrap_servers: &str) -> Self {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap_servers),
            ..ConsumerConfig::default()
        }
    }

    /// Sets `auto.offset.reset`.
    pub fn with_auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Sets `isolation.level`.
    pub fn with_isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// Sets `max.poll.records`.
    pub fn with_max_poll_records(mut self, n: usize) -> Self {
        self.max_poll_records = n;
        self
    }

    /// Sets the prefetch budget in bytes.
    pub fn with_max_prefetch_bytes(mut self, n: usize) -> Self {
        self.max_prefetch_bytes = n;
        self
    }

    /// Sets `fetch.max.wait.ms`.
    pub fn with_fetch_max_wait(mut self, d: Duration) -> Self {
        self.fetch_max_wait = d;
        self
    }

    /// Sets `max.partition.fetch.bytes`.
    pub fn with_max_partition_fetch_bytes(mut self, n: i32) -> Self {
        self.max_partition_fetch_bytes = n;
        self
    }

    /// Sets `fetch.max.bytes`.
    pub fn with_fetch_max_bytes(mut self, n: i32) -> Self {
        self.fetch_max_bytes = n;
        self
    }

    /// Sets the consumer-group settings ([`ConsumerConfig::group`]).
    pub fn with_group(mut self, group: GroupSettings) -> Self {
        self.group = Some(group);
        self
    }

    /// The `group.id`, if the consumer has group settings.
    pub fn group_id(&self) -> Option<&str> {
        self.group.as_ref().map(|g| g.group.group_id.as_str())
    }

    /// Sets `enable.partition.eof`.
    pub fn with_partition_eof(mut self, yes: bool) -> Self {
        self.enable_partition_eof = yes;
        self
    }

    /// Builds a config from Kafka properties (client properties included). An unknown property
    /// or an invalid value is an error naming it.
    pub fn from_properties(mut props: Properties) -> Result<Self> {
        let client = ClientConfig::take_from(&mut props)?;
        let mut c = ConsumerConfig {
            client,
            ..ConsumerConfig::default()
        };
        c.group = GroupSettings::take_optional(&mut props)?;
        if let Some(g) = c.group.as_mut() {
            g.group.retry_backoff = c.client.retry_backoff;
            g.group.retry_backoff_max = c.client.retry_backoff_max;
        }
        if let Some(r) = props.take_parsed("auto.offset.reset", parse_reset)? {
            c.auto_offset_reset = r;
        }
        if let Some(v) = props.take_int("fetch.min.bytes")? {
            c.fetch_min_bytes = v;
        }
        if let Some(v) = props.take_int("fetch.max.bytes")? {
            c.fetch_max_bytes = v;
        }
        if let Some(v) = props.take_int("max.partition.fetch.bytes")? {
            c.max_partition_fetch_bytes = v;
        }
        if let Some(v) = props.take_ms("fetch.max.wait.ms")? {
            c.fetch_max_wait = v;
        }
        if let Some(v) = props.take_parsed("isolation.level", parse_isolation)? {
            c.isolation_level = v;
        }
        if let Some(v) = props.take_int("max.poll.records")? {
            c.max_poll_records = v;
        }
        if let Some(v) = props.take_bool("check.crcs")? {
            c.check_crcs = v;
        }
        if let Some(v) = props.take_int::<usize>("queued.max.messages.kbytes")? {
            c.max_prefetch_bytes = v.saturating_mul(1024);
        }
        if let Some(v) = props.take_int("krust.prefetch.max.bytes")? {
            c.max_prefetch_bytes = v;
        }
        if let Some(v) = props.take_bool("enable.partition.eof")? {
            c.enable_partition_eof = v;
        }
        if let Some(v) = props.take_bool("krust.validate.positions")? {
            c.validate_positions = v;
        }
        props.finish()?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the values are usable, naming the first bad property.
    pub fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if let Some(g) = &self.group {
            g.validate()?;
        }
        if self.fetch_min_bytes < 0 {
            return Err(Error::config("fetch.min.bytes", "must not be negative"));
        }
        if self.fetch_max_bytes <= 0 {
            return Err(Error::config("fetch.max.bytes", "must be positive"));
        }
        if self.max_partition_fetch_bytes <= 0 {
            return Err(Error::config(
                "max.partition.fetch.bytes",
                "must be positive",
            ));
        }
        if self.fetch_max_wait > Duration::from_millis(i32::MAX as u64) {
            return Err(Error::config("fetch.max.wait.ms", "too large"));
        }
        if self.max_poll_records == 0 {
            return Err(Error::config("max.poll.records", "must be at least 1"));
        }
        if self.max_prefetch_bytes == 0 {
            return Err(Error::config(
                "krust.prefetch.max.bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The fetch state machine's settings.
    pub fn fetch_config(&self) -> FetchConfig {
        FetchConfig {
            min_bytes: self.fetch_min_bytes,
            max_bytes: self.fetch_max_bytes,
            partition_max_bytes: self.max_partition_fetch_bytes,
            max_wait: self.fetch_max_wait,
            isolation: self.isolation_level,
            offset_reset: self.auto_offset_reset,
            max_prefetch_bytes: self.max_prefetch_bytes,
            retry_backoff: self.client.retry_backoff,
            validate_positions: self.validate_positions,
            check_crcs: self.check_crcs,
        }
    }
}

fn parse_reset(v: &str) -> std::result::Result<OffsetReset, String> {
    match v.to_ascii_lowercase().as_str() {
        "earliest" | "smallest" | "beginning" => Ok(OffsetReset::Earliest),
        "latest" | "largest" | "end" => Ok(OffsetReset::Latest),
        "none" | "error" => Ok(OffsetReset::None),
        _ => Err("expected `earliest`, `latest` or `none`".into()),
    }
}

fn parse_isolation(v: &str) -> std::result::Result<IsolationLevel, String> {
    match v.to_ascii_lowercase().as_str() {
        "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
        "read_committed" => Ok(IsolationLevel::ReadCommitted),
        _ => Err("expected `read_uncommitted` or `read_committed`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Properties {
        Properties::new().with("bootstrap.servers", "127.0.0.1:9092")
    }

    #[test]
    fn from_properties_reads_kafka_names() {
        let c = ConsumerConfig::from_properties(
            base()
                .with("group.id", "g")
                .with("auto.offset.reset", "earliest")
                .with("fetch.min.bytes", "10")
                .with("fetch.max.bytes", "1000000")
                .with("max.partition.fetch.bytes", "2000")
                .with("fetch.max.wait.ms", "100")
                .with("isolation.level", "read_committed")
                .with("max.poll.records", "7")
                .with("check.crcs", "false")
                .with("queued.max.messages.kbytes", "16")
                .with("enable.partition.eof", "true")
                .with("client.id", "c1"),
        )
        .unwrap();
        assert_eq!(c.group_id(), Some("g"));
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.fetch_min_bytes, 10);
        assert_eq!(c.fetch_max_bytes, 1_000_000);
        assert_eq!(c.max_partition_fetch_bytes, 2000);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(100));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.max_poll_records, 7);
        assert!(!c.check_crcs);
        assert_eq!(c.max_prefetch_bytes, 16 * 1024);
        assert!(c.enable_partition_eof);
        assert_eq!(c.client.client_id, "c1");
        let none =
            ConsumerConfig::from_properties(base().with("auto.offset.reset", "none")).unwrap();
        assert_eq!(none.auto_offset_reset, OffsetReset::None);
    }

    #[test]
    fn group_properties_port_as_they_are() {
        let c = ConsumerConfig::from_properties(
            base()
                .with("group.id", "orders")
                .with("group.instance.id", "host-1")
                .with("session.timeout.ms", "6000")
                .with("heartbeat.interval.ms", "500")
                .with("max.poll.interval.ms", "60000")
                .with("partition.assignment.strategy", "cooperative-sticky")
                .with("enable.auto.commit", "false")
                .with("auto.commit.interval.ms", "1000")
                .with("client.rack", "r1")
                .with("retry.backoff.ms", "50")
                .with("auto.offset.reset", "earliest"),
        )
        .unwrap();
        let g = c.group.as_ref().expect("group settings");
        assert_eq!(g.group.group_id, "orders");
        assert_eq!(g.group.instance_id.as_deref(), Some("host-1"));
        assert_eq!(g.group.session_timeout, Duration::from_millis(6000));
        assert_eq!(g.group.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(g.group.rebalance_timeout, Duration::from_millis(60_000));
        assert_eq!(
            g.group.max_poll_interval,
            Some(Duration::from_millis(60_000))
        );
        assert_eq!(g.group.assignors.len(), 1);
        assert_eq!(g.group.assignors[0].name(), "cooperative-sticky");
        assert!(!g.enable_auto_commit);
        assert_eq!(g.auto_commit_interval, Duration::from_millis(1000));
        assert_eq!(g.group.rack.as_deref(), Some("r1"));
        assert_eq!(g.group.retry_backoff, Duration::from_millis(50));
        // Group properties without a group: checked, then ignored (assign mode).
        let c =
            ConsumerConfig::from_properties(base().with("enable.auto.commit", "false")).unwrap();
        assert!(c.group.is_none());
        // Still named when wrong.
        let e = ConsumerConfig::from_properties(
            base()
                .with("group.id", "g")
                .with("session.timeout.ms", "6000")
                .with("heartbeat.interval.ms", "6000"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("heartbeat.interval.ms"), "{e}");
        let e = ConsumerConfig::from_properties(
            base()
                .with("group.id", "g")
                .with("partition.assignment.strategy", "fair"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("partition.assignment.strategy"), "{e}");
        let e = ConsumerConfig::from_properties(
            base()
                .with("group.id", "g")
                .with("session.timeout.msec", "1"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("session.timeout.msec") && e.contains("unknown"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_invalid_properties_are_named() {
        let e = ConsumerConfig::from_properties(base().with("fetch.mn.bytes", "1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fetch.mn.bytes") && e.contains("unknown"), "{e}");
        let e = ConsumerConfig::from_properties(base().with("auto.offset.reset", "oldest"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auto.offset.reset") && e.contains("oldest"),
            "{e}"
        );
        let e = ConsumerConfig::from_properties(base().with("isolation.level", "dirty"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("isolation.level"), "{e}");
        let e = ConsumerConfig::from_properties(base().with("max.poll.records", "0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max.poll.records"), "{e}");
        let e = ConsumerConfig::from_properties(Properties::new().with("group.id", "g"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap.servers"), "{e}");
    }

    #[test]
    fn serde_round_trip_with_defaults() {
        let c = ConsumerConfig::new("127.0.0.1:9092")
            .with_auto_offset_reset(OffsetReset::Earliest)
            .with_fetch_max_wait(Duration::from_millis(250));
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains("\"auto_offset_reset\":\"earliest\""),
            "{json}"
        );
        assert!(json.contains("\"fetch_max_wait\":250"), "{json}");
        let back: ConsumerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: ConsumerConfig =
            serde_json::from_str(r#"{"isolation_level":"read_committed"}"#).unwrap();
        assert_eq!(partial.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(partial.max_poll_records, 500);
        assert!(partial.group.is_none());
        let grouped = ConsumerConfig::new("127.0.0.1:9092")
            .with_group(GroupSettings::new("g").with_instance_id("i"));
        let json = serde_json::to_string(&grouped).unwrap();
        let back: ConsumerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, grouped);
        assert_eq!(back.group_id(), Some("g"));
    }
}
