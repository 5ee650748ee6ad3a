//! [`ProducerConfig`]: the producer's settings, typed, with Kafka's property names.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use krust_core::partitioner::Partitioner;
use krust_wire::record::Compression;
use serde::{Deserialize, Serialize};

use crate::config::{ms, ClientConfig, Properties};
use crate::error::{Error, Result};

/// How many acknowledgements the leader waits for before answering a Produce request (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// `acks=0`: no response at all. Records complete once written to the socket, with offset
    /// -1; nothing is retried after that, and errors on the broker are never seen.
    None,
    /// `acks=1`: the leader wrote the records to its log.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has them. The default (as in Kafka 3.0+).
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `all` or `-1`.
    pub fn parse(s: &str) -> std::result::Result<Acks, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err("expected 0, 1, all or -1".into()),
        }
    }
}

/// The producer's settings. Every field names its Kafka property and default.
///
/// Build it with [`ProducerConfig::new`] and set fields, or from Kafka properties with
/// [`ProducerConfig::from_properties`]. Client-wide settings (`bootstrap.servers`, `client.id`,
/// `request.timeout.ms`, `retry.backoff.ms`, `retry.backoff.max.ms`, ...) live in
/// [`ProducerConfig::client`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerConfig {
    /// Connection and metadata settings shared with every client. `request.timeout.ms` there is
    /// also how long a Produce request may take (and the broker's ack wait), and
    /// `retry.backoff.ms`/`retry.backoff.max.ms` drive the producer's retry backoff.
    pub client: ClientConfig,
    /// `acks`: 0, 1 or all. Default all.
    pub acks: Acks,
    /// `linger.ms`: how long a batch that is not full waits for more records before it is sent.
    /// Default 5 ms (Kafka 4.0's default). A full batch (`batch.size`) goes at once.
    ///
    /// `0` sends a partial batch as soon as the broker has answered the request before it
    /// (see [`max_in_flight_partial`](Self::max_in_flight_partial)): the lowest median latency,
    /// at one request per round trip, so the broker does per-request work at that pace. On a
    /// broker short of CPU that work makes the tail: at 50,000 records/s on tansu sharing two
    /// cores, `linger.ms=0` gave p50 0.5-0.6 ms and p99.9 11.5-20.5 ms with tansu busy 55-60 %
    /// of a core, and 1 ms gave p50 1.4-1.5 ms, p99 2.5-3.4 ms and p99.9 about 5 ms with tansu
    /// busy 14 % (`benches/RESULTS.md`).
    #[serde(with = "ms")]
    pub linger: Duration,
    /// `batch.size`: target size in bytes of a batch per partition (uncompressed estimate).
    /// Also how many bytes a keyless topic's sticky partition gets before the partitioner moves
    /// on (KIP-794). Default 16384. A larger record gets a batch of its own.
    ///
    /// While a partition is not backlogged a batch closes at `batch.size`, as in Kafka's Java
    /// client. While it is backlogged (all `max.in.flight.requests.per.connection` of its
    /// batches are in flight, or a closed batch waits ahead of the open one), the open batch
    /// keeps taking records up to [`backlog_batch_size`](Self::backlog_batch_size) bytes
    /// (by default `min(max.request.size, 1000000)`), so the next free slot carries everything
    /// that waited (librdkafka's shape) and a backlog drains in a few requests instead of
    /// being capped at `max.in.flight x batch.size` per round trip. A `batch.size` set below
    /// its default is kept as a hard cap. Ordering, sequence numbers, `buffer.memory` and
    /// `delivery.timeout.ms` are unchanged.
    pub batch_size: usize,
    /// krust only (no Kafka property): how large a backlogged partition's batch may grow (see
    /// [`batch_size`](Self::batch_size)). `None` (the default): `min(max.request.size,
    /// 1000000)` while `batch.size` is at least its default 16384, and no growth for a smaller
    /// `batch.size`. `Some(n)`: up to `n` bytes (at most `max.request.size`); `Some(0)`, or
    /// any `n` not above `batch.size`, keeps every batch at `batch.size` (Java's rule).
    pub backlog_batch_size: Option<usize>,
    /// `buffer.memory`: bytes of records held by the producer (waiting and in flight) before
    /// [`send`](super::Producer::send) waits and [`try_send`](super::Producer::try_send) hands the
    /// record back. Default 33554432 (32 MiB). A record counts its encoded size plus 256 bytes
    /// for the producer's bookkeeping of it, so the producer's memory stays within this bound
    /// (plus a constant) for small records too.
    pub buffer_memory: usize,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd, applied per batch. Default none.
    #[serde(with = "compression_name")]
    pub compression: Compression,
    /// `delivery.timeout.ms`: upper bound from `send` to the record's result, retries included.
    /// Must be at least `linger.ms + request.timeout.ms`. Default 120000.
    #[serde(with = "ms")]
    pub delivery_timeout: Duration,
    /// `retries`: how often a failed batch is retried (within `delivery.timeout.ms`, which is
    /// usually the limit that matters). Default 2147483647.
    pub retries: u32,
    /// `max.in.flight.requests.per.connection`: Produce requests outstanding per broker, and
    /// batches in flight per partition. With more than 1 a retried batch can land after a later
    /// one (as in Kafka without idempotence). Default 5.
    ///
    /// A request whose batches are all partial may use fewer slots: see
    /// [`max_in_flight_partial`](Self::max_in_flight_partial).
    pub max_in_flight: usize,
    /// krust only (no Kafka property): the most Produce requests that may be unanswered at one
    /// broker, the new one included, when a request whose batches are all *partial* (open and
    /// below `batch.size`) is sent. Default 1: such a request waits until the broker has
    /// answered every earlier one, and its batches keep taking records meanwhile. A request
    /// that carries a complete batch (closed, full, or a retry) still goes at once, up to
    /// [`max_in_flight`](Self::max_in_flight). A value of `max_in_flight` or more sends
    /// partial batches as soon as any slot is free (the Java client's rule).
    ///
    /// A broker answers one connection's requests one at a time (Kafka mutes the connection
    /// while it handles a request), so a small request sent behind another only waits in line,
    /// and each one costs the broker its per-request work. With `linger.ms=0` at 50,000
    /// records/s on tansu, sending whenever a slot was free kept 3-5 small requests queued at
    /// the broker; waiting for the answer (what librdkafka does in practice) cut the median
    /// latency 1.8x, with the p99 no better under heavy CPU load (`benches/RESULTS.md`). A
    /// larger value can help on a link whose round trip is much longer than the broker's time
    /// per request.
    pub max_in_flight_partial: usize,
    /// krust only (no Kafka property): size each broker's window of Produce requests in flight
    /// from its answers, between 2 and [`max_in_flight`](Self::max_in_flight), instead of always
    /// allowing `max_in_flight`. Default true.
    ///
    /// The window is one request being served plus enough behind it to cover the round trip:
    /// `1 + ceil(round trip / the broker's time per request)`. The round trip is the least
    /// time the connection's small exchanges took (ApiVersions at connect, small requests),
    /// and the time per request the mean gap between answers to requests that were already
    /// waiting behind the one before. A broker close by gets 2, a distant one the whole
    /// `max_in_flight`. The window holds a request back only while 1 MiB or more is in
    /// flight: small requests cost nothing to keep in flight and help drain a backlog after a
    /// stall. Requests beyond the window would only wait at the broker, each
    /// holding its bytes out of the cache: against a broker on the same host, two in flight
    /// instead of five ran 8-16 % faster at 1 MB batches, on tansu and on the null broker
    /// (`benches/RESULTS.md`). `false` keeps the Java client's rule.
    pub adaptive_in_flight: bool,
    /// `partitioner.ignore.keys`: spread keyed records like keyless ones (uniform sticky)
    /// instead of hashing the key. Default false.
    pub partitioner_ignore_keys: bool,
    /// `max.request.size`: the largest Produce request (and so the largest record). Default
    /// 1048576.
    pub max_request_size: usize,
    /// `enable.idempotence`: per-partition sequence numbers so that retries never duplicate or
    /// reorder records (KIP-98), with InitProducerId, sequence resets (KIP-360) and delivery
    /// results that say whether a failed record may be in the log. `None` (the default) means
    /// on, unless `acks` is 0 or 1, which turns it off (as in the Java client). `Some(true)`
    /// requires `acks=all` (anything else is a configuration error), at most 5
    /// `max.in.flight.requests.per.connection` and `retries` > 0. `Some(false)`: off.
    /// [`ProducerConfig::idempotence`] gives the effective value.
    pub enable_idempotence: Option<bool>,
    /// Testing only (no Kafka property): the sequence number of each partition's first batch
    /// under a new producer identity. Kafka brokers expect 0, the default; a fake broker
    /// configured to expect another value (near `i32::MAX`) tests wrap-around.
    #[serde(skip)]
    pub first_sequence: i32,
    /// A custom partitioner (`partitioner.class` in Java); `None` uses the built-in one
    /// (murmur2 on keys, uniform sticky otherwise). Not serialized.
    #[serde(skip)]
    pub partitioner: Option<Arc<dyn Partitioner>>,
    /// `transactional.id`: makes the producer transactional (implies idempotence; an explicit
    /// `enable.idempotence=false` is an error). Records may then only be sent inside a
    /// transaction (`begin_transaction` .. `commit_transaction` / `abort_transaction`), after
    /// `init_transactions`. Default none.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: how long the coordinator lets a transaction stay open before
    /// it aborts it (and fences this producer). Must be at least `delivery.timeout.ms` (a
    /// record must not be retried after its transaction was aborted). Default 60000. For a
    /// transactional producer whose `delivery.timeout.ms` was left at its default (120000),
    /// `delivery.timeout.ms` becomes `transaction.timeout.ms`.
    #[serde(with = "ms")]
    pub transaction_timeout: Duration,
}

/// The default `delivery.timeout.ms`.
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_millis(120_000);

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("client", &self.client)
            .field("acks", &self.acks)
            .field("linger", &self.linger)
            .field("batch_size", &self.batch_size)
            .field("backlog_batch_size", &self.backlog_batch_size)
            .field("buffer_memory", &self.buffer_memory)
            .field("compression", &self.compression)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("retries", &self.retries)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_partial", &self.max_in_flight_partial)
            .field("adaptive_in_flight", &self.adaptive_in_flight)
            .field("partitioner_ignore_keys", &self.partitioner_ignore_keys)
            .field("max_request_size", &self.max_request_size)
            .field("enable_idempotence", &self.enable_idempotence)
            .field("first_sequence", &self.first_sequence)
            .field("partitioner", &self.partitioner)
            .field("transactional_id", &self.transactional_id)
            .field("transaction_timeout", &self.transaction_timeout)
            .finish()
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: DEFAULT_BATCH_SIZE,
            backlog_batch_size: None,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            delivery_timeout: Duration::from_millis(120_000),
            retries: i32::MAX as u32,
            max_in_flight: 5,
            max_in_flight_partial: 1,
            adaptive_in_flight: true,
            partitioner_ignore_keys: false,
            max_request_size: 1024 * 1024,
            enable_idempotence: None,
            first_sequence: 0,
            partitioner: None,
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
        }
    }
}

/// `batch.size`'s default.
const DEFAULT_BATCH_SIZE: usize = 16384;

/// Upper bound of the automatic backlog batch size: below a broker's default
/// `message.max.bytes` (1048588) with room for the size estimate's slack.
const BACKLOG_BATCH_SIZE_MAX: usize = 1_000_000;

impl ProducerConfig {
    /// The effective cap of a backlogged partition's batch (estimated bytes; see
    /// [`backlog_batch_size`](Self::backlog_batch_size)). Never below `batch.size`; equal to it
    /// means batches never grow.
    pub fn effective_backlog_batch_size(&self) -> usize {
        let cap = match self.backlog_batch_size {
            Some(n) => n.min(self.max_request_size),
            None if self.batch_size >= DEFAULT_BATCH_SIZE => {
                self.max_request_size.min(BACKLOG_BATCH_SIZE_MAX)
            }
            None => self.batch_size,
        };
        cap.max(self.batch_size)
    }

    /// Defaults, with the given bootstrap servers (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerConfig {
            client: ClientConfig::new(bootstrap_servers),
            ..ProducerConfig::default()
        }
    }

    /// Makes the producer transactional with `id` (`transactional.id`). Lowers a default
    /// `delivery.timeout.ms` to `transaction.timeout.ms` (see
    /// [`ProducerConfig::transaction_timeout`]).
    pub fn with_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self.fit_delivery_timeout();
        self
    }

    /// Sets `transaction.timeout.ms`. Lowers a default `delivery.timeout.ms` to it for a
    /// transactional producer.
    pub fn with_transaction_timeout(mut self, timeout: Duration) -> Self {
        // A delivery timeout that followed the transaction timeout keeps following it.
        let followed =
            self.transactional_id.is_some() && self.delivery_timeout == self.transaction_timeout;
        self.transaction_timeout = timeout;
        if followed {
            self.delivery_timeout = timeout.min(DEFAULT_DELIVERY_TIMEOUT);
        }
        self.fit_delivery_timeout();
        self
    }

    /// Whether `transactional.id` is set.
    pub fn is_transactional(&self) -> bool {
        self.transactional_id.is_some()
    }

    fn fit_delivery_timeout(&mut self) {
        if self.transactional_id.is_some()
            && self.delivery_timeout == DEFAULT_DELIVERY_TIMEOUT
            && self.transaction_timeout < self.delivery_timeout
        {
            self.delivery_timeout = self.transaction_timeout;
        }
    }

    /// Builds a config from Kafka property names (client properties included). An unknown
    /// property, or a value that does not parse, is an error naming the property.
    pub fn from_properties(mut props: Properties) -> Result<Self> {
        let client = ClientConfig::take_from(&mut props)?;
        let mut c = ProducerConfig {
            client,
            ..ProducerConfig::default()
        };
        if let Some(a) = props.take_parsed("acks", Acks::parse)? {
            c.acks = a;
        }
        if let Some(v) = props.take_ms("linger.ms")? {
            c.linger = v;
        }
        if let Some(v) = props.take_int::<usize>("batch.size")? {
            c.batch_size = v;
        }
        if let Some(v) = props.take_int::<usize>("buffer.memory")? {
            c.buffer_memory = v;
        }
        if let Some(v) = props.take_parsed("compression.type", |s| {
            Compression::from_name(s)
                .ok_or_else(|| "expected none, gzip, snappy, lz4 or zstd".into())
        })? {
            c.compression = v;
        }
        if let Some(v) = props.take_ms("delivery.timeout.ms")? {
            c.delivery_timeout = v;
        }
        if let Some(v) = props.take_parsed("retries", |s| {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n.min(i64::from(i32::MAX)) as u32)
                .ok_or_else(|| "not a non-negative number".into())
        })? {
            c.retries = v;
        }
        if let Some(v) = props.take_int::<usize>("max.in.flight.requests.per.connection")? {
            c.max_in_flight = v;
        }
        if let Some(v) = props.take_bool("partitioner.ignore.keys")? {
            c.partitioner_ignore_keys = v;
        }
        if let Some(v) = props.take_int::<usize>("max.request.size")? {
            c.max_request_size = v;
        }
        if let Some(v) = props.take_bool("enable.idempotence")? {
            c.enable_idempotence = Some(v);
        }
        if let Some(v) = props.take_ms("transaction.timeout.ms")? {
            c.transaction_timeout = v;
        }
        if let Some(v) = props.take_parsed("transactional.id", |s| {
            if s.is_empty() {
                Err("must not be empty".into())
            } else {
                Ok(s.to_string())
            }
        })? {
            c.transactional_id = Some(v);
        }
        c.fit_delivery_timeout();
        props.finish()?;
        c.validate()?;
        Ok(c)
    }

    /// Whether the producer is idempotent: `enable.idempotence` if set; otherwise on unless a
    /// setting conflicts with it (`acks` 0 or 1, `retries=0`, more than 5 in flight), as in
    /// the Java client.
    pub fn idempotence(&self) -> bool {
        if self.transactional_id.is_some() {
            return self.enable_idempotence != Some(false);
        }
        self.enable_idempotence
            .unwrap_or(self.acks == Acks::All && self.retries > 0 && self.max_in_flight <= 5)
    }

    /// Checks the values are usable together.
    pub fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return Err(Error::config("transactional.id", "must not be empty"));
            }
            if self.enable_idempotence == Some(false) {
                return Err(Error::config(
                    "enable.idempotence",
                    "must not be false with transactional.id (a transactional producer is \
                     idempotent); remove enable.idempotence=false or transactional.id",
                ));
            }
            if self.acks != Acks::All {
                return Err(Error::config(
                    "acks",
                    "must be all with transactional.id (a transactional producer is idempotent)",
                ));
            }
            if self.retries == 0 {
                return Err(Error::config(
                    "retries",
                    "must be > 0 with transactional.id (a transactional producer is idempotent)",
                ));
            }
            if self.max_in_flight > 5 {
                return Err(Error::config(
                    "max.in.flight.requests.per.connection",
                    "must be at most 5 with transactional.id",
                ));
            }
            krust_core::txn::validate_timeouts(self.transaction_timeout, self.delivery_timeout)
                .map_err(|e| Error::config("transaction.timeout.ms", e.to_string()))?;
        }
        if self.enable_idempotence == Some(true) {
            if self.acks != Acks::All {
                return Err(Error::config(
                    "enable.idempotence",
                    "requires acks=all; set acks=all or enable.idempotence=false",
                ));
            }
            if self.retries == 0 {
                return Err(Error::config(
                    "enable.idempotence",
                    "requires retries > 0; set retries or enable.idempotence=false",
                ));
            }
            if self.max_in_flight > 5 {
                return Err(Error::config(
                    "max.in.flight.requests.per.connection",
                    "must be at most 5 with enable.idempotence (the broker keeps 5 batches per \
                 producer); lower it or set enable.idempotence=false",
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch.size", "must be positive"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::config(
                "max.in.flight.requests.per.connection",
                "must be at least 1",
            ));
        }
        if self.max_request_size < 128 {
            return Err(Error::config("max.request.size", "must be at least 128"));
        }
        if self.buffer_memory < self.batch_size.min(self.max_request_size) {
            return Err(Error::config(
                "buffer.memory",
                "must hold at least one batch (batch.size)",
            ));
        }
        if self.delivery_timeout < self.linger + self.client.request_timeout {
            if self.transactional_id.is_some() && self.delivery_timeout == self.transaction_timeout
            {
                // The delivery timeout followed the transaction timeout: name what was set.
                return Err(Error::config(
                    "transaction.timeout.ms",
                    format!(
                        "is below linger.ms + request.timeout.ms ({} ms), and the delivery \
                         timeout follows it: raise transaction.timeout.ms or lower \
                         request.timeout.ms",
                        (self.linger + self.client.request_timeout).as_millis()
                    ),
                ));
            }
            return Err(Error::config(
                "delivery.timeout.ms",
                format!(
                    "must be at least linger.ms + request.timeout.ms ({} ms)",
                    (self.linger + self.client.request_timeout).as_millis()
                ),
            ));
        }
        Ok(())
    }
}

mod compression_name {
    use krust_wire::record::Compression;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Compression, D::Error> {
        let s = String::deserialize(d)?;
        Compression::from_name(&s)
            .ok_or_else(|| D::Error::custom(format!("unknown compression.type `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Properties {
        Properties::new().with("bootstrap.servers", "127.0.0.1:9092")
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = ProducerConfig::from_properties(base()).unwrap();
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.buffer_memory, 32 << 20);
        assert_eq!(c.delivery_timeout, Duration::from_secs(120));
        assert_eq!(c.max_in_flight, 5);
        assert_eq!(c.max_request_size, 1 << 20);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.enable_idempotence, None);
        assert!(c.idempotence(), "on by default");
        // acks=0/1 without an explicit setting turns it off; explicit true conflicts.
        for acks in ["0", "1"] {
            let c = ProducerConfig::from_properties(base().with("acks", acks)).unwrap();
            assert!(!c.idempotence());
            let e = ProducerConfig::from_properties(
                base().with("acks", acks).with("enable.idempotence", "true"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("enable.idempotence") && e.contains("acks=all"),
                "{e}"
            );
        }
        let c =
            ProducerConfig::from_properties(base().with("enable.idempotence", "false")).unwrap();
        assert!(!c.idempotence());
        let c = ProducerConfig::from_properties(base().with("enable.idempotence", "true")).unwrap();
        assert!(c.idempotence());
        let e = ProducerConfig::from_properties(
            base()
                .with("enable.idempotence", "true")
                .with("max.in.flight.requests.per.connection", "6"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at most 5 with enable.idempotence"), "{e}");
    }

    #[test]
    fn reads_kafka_properties() {
        let p = base()
            .with("acks", "1")
            .with("linger.ms", "20")
            .with("batch.size", "65536")
            .with("buffer.memory", "1000000")
            .with("compression.type", "zstd")
            .with("delivery.timeout.ms", "60000")
            .with("request.timeout.ms", "10000")
            .with("retries", "3")
            .with("retry.backoff.ms", "50")
            .with("retry.backoff.max.ms", "500")
            .with("max.in.flight.requests.per.connection", "1")
            .with("partitioner.ignore.keys", "true")
            .with("max.request.size", "2000000")
            .with("enable.idempotence", "false")
            .with("client.id", "me");
        let c = ProducerConfig::from_properties(p).unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.batch_size, 65536);
        assert_eq!(c.buffer_memory, 1_000_000);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.delivery_timeout, Duration::from_secs(60));
        assert_eq!(c.client.request_timeout, Duration::from_secs(10));
        assert_eq!(c.retries, 3);
        assert_eq!(c.client.retry_backoff, Duration::from_millis(50));
        assert_eq!(c.max_in_flight, 1);
        assert!(c.partitioner_ignore_keys);
        assert_eq!(c.max_request_size, 2_000_000);
        assert_eq!(c.client.client_id, "me");
        for (v, want) in [("0", Acks::None), ("all", Acks::All), ("-1", Acks::All)] {
            let c = ProducerConfig::from_properties(base().with("acks", v)).unwrap();
            assert_eq!(c.acks, want);
        }
    }

    #[test]
    fn errors_name_the_property() {
        for (k, v, needle) in [
            ("lingr.ms", "5", "unknown property"),
            ("acks", "2", "expected 0, 1, all"),
            ("compression.type", "brotli", "expected none"),
            ("batch.size", "big", "not a valid number"),
            ("enable.idempotence", "yes", "expected `true` or `false`"),
            (
                "delivery.timeout.ms",
                "1000",
                "linger.ms + request.timeout.ms",
            ),
            ("max.in.flight.requests.per.connection", "0", "at least 1"),
            ("retries", "-1", "non-negative"),
        ] {
            let e = ProducerConfig::from_properties(base().with(k, v))
                .unwrap_err()
                .to_string();
            assert!(e.contains(k) && e.contains(needle), "{k}={v}: {e}");
        }
    }

    #[test]
    fn transactional_properties() {
        let c = ProducerConfig::from_properties(base().with("transactional.id", "tx-1")).unwrap();
        assert_eq!(c.transactional_id.as_deref(), Some("tx-1"));
        assert_eq!(c.transaction_timeout, Duration::from_secs(60));
        // The default delivery timeout follows the transaction timeout.
        assert_eq!(c.delivery_timeout, Duration::from_secs(60));
        assert!(c.idempotence());
        let c = ProducerConfig::from_properties(
            base()
                .with("transactional.id", "tx-1")
                .with("transaction.timeout.ms", "90000"),
        )
        .unwrap();
        assert_eq!(c.transaction_timeout, Duration::from_secs(90));
        assert_eq!(c.delivery_timeout, Duration::from_secs(90));
        for (k, v, needle) in [
            (
                "enable.idempotence",
                "false",
                "transactional producer is idempotent",
            ),
            ("acks", "1", "must be all"),
            (
                "delivery.timeout.ms",
                "100000",
                "must be <= transaction.timeout.ms",
            ),
            ("transaction.timeout.ms", "0", "at least 1"),
        ] {
            let e =
                ProducerConfig::from_properties(base().with("transactional.id", "t").with(k, v))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
        let e = ProducerConfig::from_properties(base().with("transactional.id", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("transactional.id") && e.contains("empty"), "{e}");
        let c = ProducerConfig::new("127.0.0.1:9092")
            .with_transaction_timeout(Duration::from_secs(45))
            .with_transactional_id("b");
        assert_eq!(c.delivery_timeout, Duration::from_secs(45));
        c.validate().unwrap();
        // Either order of the builder calls gives the same result.
        let c = ProducerConfig::new("127.0.0.1:9092")
            .with_transactional_id("b")
            .with_transaction_timeout(Duration::from_secs(45));
        assert_eq!(c.delivery_timeout, Duration::from_secs(45));
        c.validate().unwrap();
        // An explicit delivery timeout is kept (and checked).
        let mut c = ProducerConfig::new("127.0.0.1:9092");
        c.delivery_timeout = Duration::from_secs(50);
        let c = c
            .with_transactional_id("b")
            .with_transaction_timeout(Duration::from_secs(45));
        assert_eq!(c.delivery_timeout, Duration::from_secs(50));
        assert!(c.validate().unwrap_err().to_string().contains("must be <="));
    }
    #[test]
    fn a_short_transaction_timeout_names_itself_when_the_delivery_timeout_follows_it() {
        let c = ProducerConfig::new("127.0.0.1:9092")
            .with_transactional_id("t")
            .with_transaction_timeout(Duration::from_secs(3));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("transaction.timeout.ms"), "{e}");
        assert!(e.contains("request.timeout.ms"), "{e}");
        let mut ok = c.clone();
        ok.client.request_timeout = Duration::from_secs(1);
        ok.validate().unwrap();
    }

    #[test]
    fn serde_round_trip() {
        let mut c = ProducerConfig::new("127.0.0.1:9092");
        c.compression = Compression::Lz4;
        c.acks = Acks::Leader;
        c.linger = Duration::from_millis(7);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"compression\":\"lz4\""), "{json}");
        assert!(json.contains("\"acks\":\"leader\""), "{json}");
        let back: ProducerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.compression, Compression::Lz4);
        assert_eq!(back.acks, Acks::Leader);
        assert_eq!(back.linger, Duration::from_millis(7));
        assert_eq!(back.client, c.client);
    }

    #[test]
    fn backlog_batch_size_is_automatic_at_the_default_batch_size_only() {
        let mut c = ProducerConfig::new("127.0.0.1:9092");
        assert_eq!(c.backlog_batch_size, None);
        assert_eq!(c.effective_backlog_batch_size(), 1_000_000);
        c.max_request_size = 200_000;
        assert_eq!(c.effective_backlog_batch_size(), 200_000);
        c.batch_size = 300_000;
        assert_eq!(c.effective_backlog_batch_size(), 300_000);
        // A batch.size below its default is a hard cap.
        c.batch_size = 4096;
        assert_eq!(c.effective_backlog_batch_size(), 4096);
        c.backlog_batch_size = Some(65_536);
        assert_eq!(c.effective_backlog_batch_size(), 65_536);
        c.backlog_batch_size = Some(10_000_000);
        assert_eq!(c.effective_backlog_batch_size(), 200_000);
        c.batch_size = 16384;
        c.backlog_batch_size = Some(0);
        assert_eq!(c.effective_backlog_batch_size(), 16384);
    }
}
