//! krust-client: the tokio driver of krust.
//!
//! - [`Producer`]: batching, compression, partitioning, retries, backpressure;
//! - [`Consumer`]: assign mode with bounded prefetch, and consumer groups through
//!   [`Consumer::subscribe`] (see [`group`]);
//! - [`Admin`]: topics, partitions, configs, offsets, records, groups, transactions;
//! - [`Cluster`]: connections (one multiplexed, pipelined connection per broker and [`Lane`]),
//!   version negotiation, the metadata cache, bootstrap and re-bootstrap;
//! - [`ClientConfig`] and [`Properties`]: typed configuration, also built from Kafka property
//!   names; [`security`] for SASL and TLS;
//! - [`Error`]: one error type with context and predicates.
#![warn(missing_docs)]

pub mod admin;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod consumer;
pub(crate) mod coordinator;
pub mod error;
pub mod group;
pub mod producer;
pub mod security;

pub use admin::{Admin, NewTopic};
pub use cluster::{
    BrokerAddress, Cluster, ClusterMetadata, Lane, NodeId, PartitionMetadata, TopicMetadata,
};
pub use config::{ClientConfig, Properties};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord};
pub use error::{Error, Result, TxnClass};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use security::{SaslConfig, SaslMechanism, Secret, SecurityConfig, SecurityProtocol};
