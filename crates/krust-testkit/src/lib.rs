//! krust-testkit: test tools for Kafka clients.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod batch;
pub mod cli;
mod cluster;
pub mod errors;
mod group;
mod handlers;
pub mod hooks;
mod log;
pub mod proxy;
pub mod raw;
mod state;
mod txn;

pub use cluster::FakeCluster;
pub use group::GroupInfo;
pub use hooks::{Action, HookId, Intercept, LoggedRequest, ProducedBatch, Request};
pub use kafka_protocol;
pub use proxy::{FaultProxy, ProxyStats};
pub use state::{ClusterConfig, TxnProtocol};
