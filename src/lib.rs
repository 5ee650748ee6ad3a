//! krust: a Kafka client written directly on the Kafka wire protocol, in Rust only.
//!
//! The common types are at the root; the layers are re-exported whole:
//! - [`wire`]: sans-IO bytes (frames, envelopes, version negotiation, record batches, codecs);
//! - [`core`]: sans-IO client logic (partitioners, accumulators, backoff, fetch positions,
//!   group membership and assignors, the transaction state machine);
//! - [`client`]: the tokio driver with the public `Producer`, `Consumer` and `Admin`;
//! - [`stream`]: source -> operators -> sink jobs with NONE, AT_LEAST_ONCE or EXACTLY_ONCE
//!   delivery (krust-stream).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use krust::{Producer, ProducerConfig, ProducerRecord};
//!
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("events").with_key("k").with_value("hello"))
//!     .await?;
//! let meta = delivery.await?;
//! println!("written at {}/{}", meta.partition, meta.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use krust_client as client;
pub use krust_core as core;
pub use krust_stream as stream;
pub use krust_wire as wire;

pub use krust_client::{
    Admin, ClientConfig, Cluster, Consumer, ConsumerConfig, ConsumerRecord, Error, Producer,
    ProducerConfig, ProducerRecord, Properties, RecordMetadata, Result,
};
