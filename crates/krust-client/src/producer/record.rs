//! What goes in ([`ProducerRecord`]), what comes out ([`RecordMetadata`], [`ProduceError`],
//! [`TrySendError`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use krust_wire::record::{BatchBuilder, RecordHeader};
use krust_wire::ErrorCode;

/// A record to produce. Build it with [`ProducerRecord::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic to write to (shared: cloning a record or its [`RecordMetadata`] does not copy the
    /// name).
    pub topic: Arc<str>,
    /// Explicit partition; `None` lets the partitioner choose (murmur2 on the key, or uniform
    /// sticky for keyless records).
    pub partition: Option<i32>,
    /// Key (`None`: null key).
    pub key: Option<Bytes>,
    /// Value (`None`: null value, a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order (keys may repeat).
    pub headers: Vec<RecordHeader>,
    /// Create time in milliseconds since the Unix epoch; `None`: the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value, headers or timestamp yet. `topic` is a `&str`,
    /// `String` or `Arc<str>` (see [`IntoTopic`]: sending to the same topic again does not
    /// allocate).
    pub fn new(topic: impl IntoTopic) -> Self {
        ProducerRecord {
            topic: topic.into_topic(),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Adds a header with a value.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers
            .push(RecordHeader::new(key, Some(value.into())));
        self
    }

    /// Adds a header with a null value.
    pub fn with_null_header(mut self, key: impl Into<String>) -> Self {
        self.headers.push(RecordHeader::new(key, None));
        self
    }

    /// Sets the create timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Upper bound of the record's encoded size in a batch (what `buffer.memory`, `batch.size`
    /// and `max.request.size` count).
    pub fn encoded_size(&self) -> usize {
        BatchBuilder::record_size_upper_bound(
            self.key.as_deref(),
            self.value.as_deref(),
            &self.headers,
        )
    }
}

/// A topic name as a record holds it: a shared `Arc<str>`. Implemented for `&str`, `&&str`,
/// `String`, `&String`, `Cow<str>`, `Arc<str>` and `&Arc<str>`.
///
/// A `&str` or `String` is first looked up among the last few names this thread turned into a
/// topic, so a loop sending to one topic (or a handful) shares one allocation instead of making
/// one per record; an `Arc<str>` (for example a consumed record's topic) is taken as it is.
pub trait IntoTopic {
    /// The shared name.
    fn into_topic(self) -> Arc<str>;
}

/// Names remembered per thread by [`IntoTopic`].
const RECENT_TOPICS: usize = 4;

thread_local! {
    /// The last names turned into topics on this thread, and the slot the next new one takes.
    static RECENT: RefCell<([Option<Arc<str>>; RECENT_TOPICS], usize)> =
        const { RefCell::new(([None, None, None, None], 0)) };
}

/// `name` as a shared topic name, from this thread's recent names when it is one of them.
fn shared_topic(name: &str) -> Arc<str> {
    RECENT
        .try_with(|recent| {
            let mut recent = recent.borrow_mut();
            let (names, next) = &mut *recent;
            if let Some(hit) = names.iter().flatten().find(|n| ***n == *name) {
                return hit.clone();
            }
            let fresh: Arc<str> = Arc::from(name);
            names[*next] = Some(fresh.clone());
            *next = (*next + 1) % RECENT_TOPICS;
            fresh
        })
        // During thread teardown the cache is gone: allocate.
        .unwrap_or_else(|_| Arc::from(name))
}

impl IntoTopic for &str {
    fn into_topic(self) -> Arc<str> {
        shared_topic(self)
    }
}

impl IntoTopic for &&str {
    fn into_topic(self) -> Arc<str> {
        shared_topic(self)
    }
}

impl IntoTopic for std::borrow::Cow<'_, str> {
    fn into_topic(self) -> Arc<str> {
        shared_topic(&self)
    }
}

impl IntoTopic for &String {
    fn into_topic(self) -> Arc<str> {
        shared_topic(self)
    }
}

impl IntoTopic for String {
    fn into_topic(self) -> Arc<str> {
        shared_topic(&self)
    }
}

impl IntoTopic for Arc<str> {
    fn into_topic(self) -> Arc<str> {
        self
    }
}

impl IntoTopic for &Arc<str> {
    fn into_topic(self) -> Arc<str> {
        self.clone()
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset; -1 with `acks=0` (the broker does not say).
    pub offset: i64,
    /// Its timestamp: the create time sent, or the broker's log-append time if the topic uses
    /// it.
    pub timestamp: i64,
}

/// Whether a record is in the log: librdkafka's `rd_kafka_msg_status_t`. A delivery result
/// gives it with [`Persistence::of`]: `Ok` is always [`Persistence::Persisted`]; a
/// [`ProduceError`] says `NotPersisted` or `PossiblyPersisted`, so the application knows what it
/// may send again without creating a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// Acknowledged by the broker (with idempotence, DUPLICATE_SEQUENCE_NUMBER counts: an
    /// earlier attempt was written). Never carried by a [`ProduceError`].
    Persisted,
    /// It was never written: safe to send again without creating a duplicate.
    NotPersisted,
    /// A request carrying it got no answer (timeout, connection lost, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND): it may be in the log. Sending it again may duplicate it.
    PossiblyPersisted,
}

impl Persistence {
    /// The persistence of a delivery result.
    pub fn of(result: &Result<RecordMetadata, ProduceError>) -> Persistence {
        match result {
            Ok(_) => Persistence::Persisted,
            Err(e) => e.persistence(),
        }
    }
}

/// Why a record failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProduceErrorKind {
    /// The broker answered with an error code that is not retried, or retries ran out.
    Broker {
        /// The code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// `delivery.timeout.ms` passed before the record could be acknowledged; `last_error` is
    /// the last failure seen, if any.
    DeliveryTimeout {
        /// The last failure, as text.
        last_error: Option<String>,
    },
    /// The transport failed and retries ran out.
    Transport(String),
    /// The record (with batch overhead) exceeds `max.request.size` or `buffer.memory`.
    RecordTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
        /// The property that sets the limit.
        limit: &'static str,
    },
    /// The record's partition does not exist.
    InvalidPartition {
        /// Partitions the topic has.
        partitions: i32,
    },
    /// The record itself is invalid (for example a negative timestamp).
    InvalidRecord(String),
    /// The topic's metadata could not be loaded (unknown topic, authorization, ...).
    Metadata(String),
    /// The producer was closed or dropped before the record was sent.
    Closed,
    /// The idempotent producer hit a fatal error (fencing, authorization, a broker without
    /// idempotence support) and stopped: every pending and later record fails with it.
    Fatal(String),
    /// Idempotence: the partition's sequence state was reset (the broker lost the producer, or
    /// an earlier batch failed) while this record's outcome was unknown. It is not re-sent (that
    /// could write it twice); it is [`Persistence::PossiblyPersisted`].
    SequenceReset(String),
    /// Transactional producer: the record is not part of a committed transaction. Sent outside
    /// a transaction (a usage error), still queued when the transaction was aborted, or its
    /// transaction failed (abortable: the application aborts and may send it again in a new
    /// transaction). A record in an aborted transaction is never visible to `read_committed`
    /// consumers, whatever its persistence says about the log.
    Transaction(String),
}

impl fmt::Display for ProduceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProduceErrorKind::Broker { code, message } => {
                write!(f, "broker error {code}")?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            ProduceErrorKind::DeliveryTimeout { last_error } => {
                write!(f, "delivery.timeout.ms expired")?;
                if let Some(e) = last_error {
                    write!(f, " (last error: {e})")?;
                }
                Ok(())
            }
            ProduceErrorKind::Transport(m) => write!(f, "transport failure: {m}"),
            ProduceErrorKind::RecordTooLarge { size, max, limit } => {
                write!(f, "record of {size} bytes exceeds {limit} ({max})")
            }
            ProduceErrorKind::InvalidPartition { partitions } => {
                write!(f, "invalid partition (the topic has {partitions})")
            }
            ProduceErrorKind::InvalidRecord(m) => write!(f, "invalid record: {m}"),
            ProduceErrorKind::Metadata(m) => write!(f, "metadata: {m}"),
            ProduceErrorKind::Closed => write!(f, "producer closed before the record was sent"),
            ProduceErrorKind::Fatal(m) => write!(f, "producer stopped by a fatal error: {m}"),
            ProduceErrorKind::SequenceReset(m) => write!(
                f,
                "sequence reset while the outcome was unknown (not re-sent, to avoid a \
                 duplicate): {m}"
            ),
            ProduceErrorKind::Transaction(m) => write!(f, "transaction: {m}"),
        }
    }
}

/// A record that could not be produced: why, whether it may be in the log anyway, and the record
/// itself ([`ProduceError::into_record`]) so the application can retry or park it.
#[derive(Debug, Clone)]
pub struct ProduceError {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: Option<i32>,
    pub(crate) kind: ProduceErrorKind,
    pub(crate) persistence: Persistence,
    pub(crate) record: Option<Box<ProducerRecord>>,
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "produce to `{}`", self.topic)?;
        if let Some(p) = self.partition {
            write!(f, " partition {p}")?;
        }
        write!(f, " failed: {}", self.kind)?;
        if self.persistence == Persistence::PossiblyPersisted {
            write!(f, " (the record may have been written)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProduceError {}

impl ProduceError {
    pub(crate) fn new(
        record: ProducerRecord,
        partition: Option<i32>,
        kind: ProduceErrorKind,
        persistence: Persistence,
    ) -> Self {
        ProduceError {
            topic: record.topic.clone(),
            partition,
            kind,
            persistence,
            record: Some(Box::new(record)),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The partition, if one was chosen.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }
    /// Why it failed.
    pub fn kind(&self) -> &ProduceErrorKind {
        &self.kind
    }
    /// Whether the record may be in the log anyway.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }
    /// Shorthand for `persistence() == PossiblyPersisted`.
    pub fn is_possibly_persisted(&self) -> bool {
        self.persistence == Persistence::PossiblyPersisted
    }
    /// Whether sending the record again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match &self.kind {
            ProduceErrorKind::Broker { code, .. } => code.is_retriable(),
            ProduceErrorKind::DeliveryTimeout { .. } | ProduceErrorKind::Transport(_) => true,
            _ => false,
        }
    }
    /// The broker's error code, if the broker refused the record.
    pub fn code(&self) -> Option<ErrorCode> {
        match &self.kind {
            ProduceErrorKind::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
    /// The record, handed back.
    pub fn record(&self) -> Option<&ProducerRecord> {
        self.record.as_deref()
    }
    /// Takes the record back.
    pub fn into_record(self) -> Option<ProducerRecord> {
        self.record.map(|b| *b)
    }
}

/// Why [`try_send`](super::Producer::try_send) refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrySendReason {
    /// `buffer.memory` is in use: try again after some records complete.
    BufferFull,
    /// The producer was closed.
    Closed,
    /// The record can never be sent as it is.
    Invalid(ProduceErrorKind),
}

/// A record refused by [`try_send`](super::Producer::try_send), handed back.
#[derive(Debug, Clone)]
pub struct TrySendError {
    /// The record, unchanged.
    pub record: ProducerRecord,
    /// Why.
    pub reason: TrySendReason,
}

impl TrySendError {
    /// Whether the buffer was full (the record can be offered again later).
    pub fn is_full(&self) -> bool {
        self.reason == TrySendReason::BufferFull
    }
    /// Takes the record back.
    pub fn into_inner(self) -> ProducerRecord {
        self.record
    }
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            TrySendReason::BufferFull => write!(f, "producer buffer full (buffer.memory)"),
            TrySendReason::Closed => write!(f, "producer closed"),
            TrySendReason::Invalid(k) => write!(f, "record for `{}`: {k}", self.record.topic),
        }
    }
}

impl std::error::Error for TrySendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_named_again_shares_its_name_and_other_names_stay_apart() {
        let a = ProducerRecord::new("orders").topic;
        let b = ProducerRecord::new(String::from("orders")).topic;
        assert!(Arc::ptr_eq(&a, &b), "the second record reuses the name");
        let c = ProducerRecord::new("orders-eu").topic;
        assert_eq!(&*c, "orders-eu");
        assert!(!Arc::ptr_eq(&a, &c));
        // More names than the cache holds: each still gets its own name right.
        let names: Vec<String> = (0..RECENT_TOPICS * 2).map(|i| format!("t{i}")).collect();
        for n in &names {
            assert_eq!(&*ProducerRecord::new(n).topic, n.as_str());
        }
        for name in ["a", "b"].iter() {
            assert_eq!(&*ProducerRecord::new(name).topic, *name);
        }
        assert_eq!(
            &*ProducerRecord::new(std::borrow::Cow::from("c")).topic,
            "c"
        );
        // An Arc is taken as it is.
        let own: Arc<str> = Arc::from("mine");
        assert!(Arc::ptr_eq(&ProducerRecord::new(&own).topic, &own));
        assert!(Arc::ptr_eq(&ProducerRecord::new(own.clone()).topic, &own));
    }
}
