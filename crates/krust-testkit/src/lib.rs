//! krust-testkit: test tools for Kafka clients (krust's own tests, and applications testing
//! their code against a misbehaving cluster).
//!
//! - [`FakeCluster`]: an in-process fake Kafka cluster on loopback (tokio). N brokers, each
//!   with its own listener; topics with partitions, leaders and leader epochs; an in-memory log
//!   per partition; a classic group coordinator; a transaction coordinator. Starts in well under
//!   a millisecond.
//! - Fault hooks ([`FakeCluster::intercept`] and friends): answer a request with an error or a
//!   crafted response, close the connection, hang, delay, or drop the response after applying
//!   the request; plus broker down/up, per-broker RTT, leader and coordinator moves, hidden
//!   topics, lost producer state.
//! - A request log ([`FakeCluster::request_log`]) with each Produce batch's identity.
//! - [`FaultProxy`]: a TCP proxy adding latency, a bandwidth cap, chaos resets, a blackhole or
//!   lost acknowledgements in front of any broker, fake or real.
//! - [`cli::run`]: the cluster as a process (`krust-fake-cluster`, `krust fake-cluster`).
//! - [`raw::RawClient`]: typed requests over one connection, for protocol-level tests.
//!
//! The fake trusts its clients' bytes: it decodes requests with `kafka-protocol`'s generated
//! codecs, which allocate what the wire asks for. It is a test tool; never expose it.
//!
//! # Guide
//!
//! ## Start a cluster
//!
//! ```
//! use krust_testkit::{ClusterConfig, FakeCluster, TxnProtocol};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cluster = FakeCluster::with_config(
//!     ClusterConfig::new()
//!         .with_brokers(3)
//!         .with_topic("orders", 6, 3)          // name, partitions, replication factor
//!         .with_txn_protocol(TxnProtocol::Classic),
//! )
//! .await
//! .unwrap();
//! let bootstrap = cluster.bootstrap(); // "127.0.0.1:port,127.0.0.1:port,127.0.0.1:port"
//! # assert_eq!(bootstrap.split(',').count(), 3);
//! cluster.create_topic("audit", 1, 1).unwrap();
//! # }
//! ```
//!
//! Point the client under test at `bootstrap`. Other settings: a version cap per API
//! ([`ClusterConfig::with_max_version`], to pretend to be an older Kafka), the first sequence
//! number idempotent producers must use ([`ClusterConfig::with_first_sequence`], to test
//! wrap-around), topic auto-creation, the KIP-890 transaction protocol, unsorted aborted lists,
//! lagging transaction markers (CONCURRENT_TRANSACTIONS), partial trailing batches in fetch
//! answers, fetch sessions on or off, group session bounds and the initial rebalance delay.
//!
//! Seed data and offsets without a client with [`FakeCluster::append`] and
//! [`FakeCluster::commit`]; read them back with [`FakeCluster::records`],
//! [`FakeCluster::offsets`] (log start, high watermark, LSO), [`FakeCluster::committed`] and
//! [`FakeCluster::group`].
//!
//! ## Inject faults
//!
//! ```
//! use std::time::Duration;
//! use krust_testkit::kafka_protocol::messages::ApiKey;
//! use krust_testkit::{errors, Action, FakeCluster, Intercept};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cluster = FakeCluster::start(3).await.unwrap();
//! cluster.create_topic("t", 3, 3).unwrap();
//!
//! // Answer the next Produce with an error code (at every level of the response).
//! cluster.fail_next(ApiKey::Produce, errors::NOT_LEADER_OR_FOLLOWER);
//! // The next three FindCoordinator requests fail.
//! cluster.fail_next_n(ApiKey::FindCoordinator, errors::COORDINATOR_NOT_AVAILABLE, 3);
//! // An error stack: (error, delay) pairs for the next EndTxn requests; 0 lets one through.
//! cluster.push_errors(
//!     ApiKey::EndTxn,
//!     [(errors::COORDINATOR_LOAD_IN_PROGRESS, Duration::ZERO), (0, Duration::from_millis(200))],
//! );
//! // Close the connection on the next Fetch; never answer the next Metadata; hold the next
//! // EndTxn for two seconds while other connections proceed; apply the next Produce but
//! // drop its acknowledgement and close.
//! cluster.close_next(ApiKey::Fetch);
//! cluster.hang_next(ApiKey::Metadata);
//! cluster.delay_next(ApiKey::EndTxn, Duration::from_secs(2));
//! cluster.drop_response_next(ApiKey::Produce);
//!
//! // Any rule as a closure: fail every third Produce sent to broker 1, for good.
//! let mut n = 0;
//! let hook = cluster.intercept(Intercept::api(ApiKey::Produce).on_broker(1), move |req| {
//!     n += 1;
//!     (n % 3 == 0).then_some(Action::Error(errors::NOT_ENOUGH_REPLICAS))
//! });
//! cluster.remove_hook(hook);
//!
//! // A hook may drive the cluster through a weak handle: move the leader when the first
//! // Produce arrives, and let the request fail as it would on the old leader.
//! let weak = cluster.downgrade();
//! cluster.intercept(Intercept::api(ApiKey::Produce).once(), move |req| {
//!     weak.upgrade()?.move_leader("t", 0, (req.broker + 1) % 3);
//!     Some(Action::Error(errors::NOT_LEADER_OR_FOLLOWER))
//! });
//!
//! // Cluster-level faults.
//! cluster.broker_down(2);                       // drop its connections, refuse new ones
//! cluster.broker_up(2);
//! cluster.set_rtt(0, Duration::from_millis(50)); // responses of broker 0 arrive 50 ms later
//! cluster.set_throttle(1, Duration::from_millis(100)); // throttle_time_ms, connection muted
//! let epoch = cluster.move_leader("t", 0, 1);   // bumps the leader epoch
//! cluster.move_coordinator(0, "my-group", 2);   // group coordinator (key type 1: txn id)
//! cluster.hide_topic("t", Some(Duration::from_secs(10))); // unknown for 10 s
//! # assert!(epoch.is_some());
//! # cluster.clear_hooks();
//! # }
//! ```
//!
//! ## Read the request log
//!
//! ```
//! use krust_testkit::kafka_protocol::messages::{ApiKey, MetadataRequest};
//! use krust_testkit::{errors, raw::RawClient, FakeCluster};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cluster = FakeCluster::start(1).await.unwrap();
//! cluster.fail_next(ApiKey::Metadata, errors::UNKNOWN_TOPIC_OR_PARTITION);
//! let mut client = RawClient::connect(cluster.broker_addr(0)).await.unwrap();
//! let req = MetadataRequest::default().with_topics(None);
//! let _first = client.send(&req, 12).await.unwrap(); // the injected error
//! let second = client.send(&req, 12).await.unwrap();
//! assert_eq!(second.brokers.len(), 1);
//!
//! // Wait (without sleeping) until requests arrive, then assert on them.
//! cluster.wait_for_requests(ApiKey::Metadata, 2).await;
//! let log = cluster.requests_of(ApiKey::Metadata);
//! assert_eq!(log.len(), 2);
//! assert_eq!((log[0].broker, log[0].version), (0, 12));
//! // For Produce, `log[i].batches` lists (topic, partition, producer id, epoch, base sequence,
//! // record count) of every batch, to assert on what a producer sent.
//! # }
//! ```
//!
//! ## Put a fault proxy in front of a broker
//!
//! ```
//! use std::time::Duration;
//! use krust_testkit::{FakeCluster, FaultProxy};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cluster = FakeCluster::start(1).await.unwrap();
//! let proxy = FaultProxy::start(cluster.broker_addr(0)).await.unwrap();
//! // Clients follow advertised addresses: make the broker advertise the proxy.
//! cluster.set_advertised(0, "127.0.0.1", proxy.addr().port());
//! proxy.set_latency(Duration::from_millis(20));
//! proxy.set_chaos(true);          // reset each connection after 500–1500 ms
//! proxy.drop_next_responses(1);   // a lost acknowledgement
//! assert_eq!(proxy.stats().dropped_responses, 0);
//! # }
//! ```
//!
//! ## As a process
//!
//! `cargo run -p krust-testkit --bin krust-fake-cluster -- --brokers 3 --topic t:6:3` prints the
//! bootstrap address as its first line and runs until SIGTERM/SIGINT (see [`cli`]).
//!
//! ## Conformance with librdkafka
//!
//! `conformance/librdkafka_conformance.py` runs librdkafka (PyPI `confluent-kafka`) against the
//! `krust-fake-cluster` binary: plain, idempotent and compressed produce, transactions with
//! commit, abort and fencing, read_committed, an exactly-once copy with
//! `send_offsets_to_transaction`, static membership, and groups of three with
//! cooperative-sticky and range (including a member leaving mid-way). The
//! `librdkafka_conformance` test runs it twice (plain, then with lagging markers and partial
//! batches) when `KRUST_PYTHON` names a python with `confluent_kafka`:
//! `KRUST_PYTHON=$(bash scripts/python-env.sh) cargo test -p krust-testkit --test librdkafka_conformance`.
//!
//! # What the fake models, and what it does not
//!
//! Produce checks the leader, the CRC of each batch, `max.message.bytes`, one batch per
//! partition, and idempotence (Kafka's 5-batch window: a duplicate of one of the last five
//! batches is answered with its original offset; older ones get DUPLICATE_SEQUENCE_NUMBER, gaps
//! OUT_OF_ORDER_SEQUENCE_NUMBER, a stale epoch INVALID_PRODUCER_EPOCH, unknown producer state
//! UNKNOWN_PRODUCER_ID). Topics with `message.timestamp.type=LogAppendTime` get broker
//! timestamps. Fetch long-polls, honours byte limits (whole batches, at least one; optionally a
//! partial trailing batch), read_committed with the LSO and the aborted list, and answers
//! OFFSET_OUT_OF_RANGE and leader-epoch fencing; fetch sessions (KIP-227) are granted and
//! answered incrementally. ListOffsets by timestamp looks at every record (compressed batches
//! are inflated with `krust_wire::record`).
//!
//! Every append is immediately "replicated": the high watermark is the log end. A down broker
//! leaves the ISR (acks=all then needs `min.insync.replicas` live replicas); leaders and
//! coordinators move off a down broker only with [`ClusterConfig::with_leader_failover`].
//!
//! Not modelled: SASL/TLS, KIP-848 consumer groups, Fetch v13+ (topic ids), quotas (only the
//! throttle they cause: [`FakeCluster::set_throttle`]), persistence (data lives in memory).
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
pub mod null_broker;
pub mod proxy;
pub mod raw;
pub mod real_broker;
pub mod seed;
mod state;
mod txn;

pub use cluster::{FakeCluster, WeakCluster};
pub use group::GroupInfo;
pub use hooks::{Action, HookId, Intercept, LoggedRequest, ProducedBatch, Request};
pub use kafka_protocol;
pub use null_broker::{NullBroker, NullBrokerConfig, NullBrokerStats};
pub use proxy::{FaultProxy, ProxyStats};
pub use real_broker::real_broker;
pub use seed::test_seed;
pub use state::{ClusterConfig, TxnProtocol};

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<crate::FakeCluster>();
        send_sync::<crate::WeakCluster>();
        send_sync::<crate::FaultProxy>();
        send_sync::<crate::LoggedRequest>();
    }
}
