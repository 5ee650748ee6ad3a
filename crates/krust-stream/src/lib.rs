//! krust-stream: a thin, typed layer over krust-client that runs
//! source -> operators -> sink jobs with NONE, AT_LEAST_ONCE or EXACTLY_ONCE delivery.
//!
//! It is not an engine: Kafka carries the state (committed offsets, transactions) and the
//! scale-out (more processes in one consumer group = more parallelism; a partition is processed
//! by one instance at a time). Operators are stateless functions of one record.
//!
//! - [`KafkaSource`]: topics, a regex or explicit partitions; a consumer group; start positions
//!   (committed with a fallback, earliest, latest, timestamp, explicit); bounded mode with stop
//!   offsets; partition discovery; deserializers (bytes, UTF-8, JSON via serde, custom); a
//!   per-record [`ErrorPolicy`] (fail, skip and count, dead-letter topic).
//! - [`Pipeline`]: `map`, `filter`, `filter_map`, `flat_map`, `inspect`, `try_map`, `key_by`,
//!   `map_async` (bounded concurrency, order kept).
//! - [`KafkaSink`]: a topic or a topic per record, serializers, key/headers/partition per
//!   record, a partitioner, the [`DeliveryGuarantee`].
//! - [`Job`]: `run().await` until a bounded source ends, SIGINT/SIGTERM or a
//!   [`ShutdownHandle`]; [`Metrics`] readable while it runs and emitted as tracing events.
//!
//! ```no_run
//! use krust_stream::{DeliveryGuarantee, KafkaSink, KafkaSource, StringSerializer, Utf8Deserializer};
//!
//! # async fn run() -> Result<(), krust_stream::StreamError> {
//! let source = KafkaSource::builder("127.0.0.1:9092")
//!     .topic("words")
//!     .group_id("uppercase")
//!     .deserializer(Utf8Deserializer)
//!     .build()?;
//! let sink = KafkaSink::builder("127.0.0.1:9092", StringSerializer)
//!     .topic("WORDS")
//!     .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
//!     .transactional_id_prefix("uppercase")
//!     .instance_id("worker-1")
//!     .build()?;
//! let job = source.pipeline().map(|s: String| s.to_uppercase()).sink(sink)?;
//! let summary = job.run().await?;
//! println!("{} records in", summary.metrics.records_in);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod codec;
mod error;
mod job;
mod metrics;
mod pipeline;
mod record;
mod sink;
mod source;
mod txn;

pub use codec::{
    BytesDeserializer, BytesSerializer, Deserializer, FnDeserializer, FnSerializer,
    JsonDeserializer, JsonSerializer, Serializer, StringSerializer, Utf8Deserializer,
};
pub use error::{RecordError, Result, StreamError};
pub use job::{Job, JobSummary, ShutdownHandle, StopReason};
pub use metrics::{Metrics, MetricsSnapshot};
pub use pipeline::Pipeline;
pub use record::{Origin, Record};
pub use sink::{DeliveryGuarantee, KafkaSink, KafkaSinkBuilder};
pub use source::{
    ErrorPolicy, KafkaSource, KafkaSourceBuilder, StartPosition, StopPosition, Topics,
};

/// Re-exported from krust-client for building sources and reading records.
pub use krust_client::consumer::TopicPartition;
