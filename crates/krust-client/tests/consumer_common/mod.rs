//! Helpers shared by the consumer and admin integration tests: the real broker from
//! `KRUST_BROKER`, unique topic names, and a raw Produce (built with krust-wire's batch encoder)
//! so these tests do not depend on the producer.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_client::admin::{Admin, NewTopic};
use krust_client::consumer::{Consumer, ConsumerRecord};
use krust_client::{ClientConfig, Cluster};
use krust_wire::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use krust_wire::kafka_protocol::messages::{ProduceRequest, TopicName};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::record::{BatchBuilder, Compression, RecordHeader};
use krust_wire::ErrorCode;

/// The broker for tests that need one (the project-wide rule in krust-testkit).
#[allow(unused_imports)] // not every test binary sharing this module needs a broker
pub use krust_testkit::real_broker as broker;

/// A topic name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic with `partitions` partitions and waits until its leaders are known.
pub async fn create_topic(cluster: &Cluster, name: &str, partitions: i32) {
    Admin::new(cluster.clone())
        .create_topics(&[NewTopic::new(name, partitions, 1)])
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = cluster.topic(name).await.expect("topic metadata");
        if t.partitions.len() == partitions as usize
            && t.partitions.iter().all(|p| p.leader.is_some())
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} never got leaders");
        cluster.refresh_metadata(&[name.to_string()]).await.unwrap();
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    pub timestamp: i64,
}

impl TestRecord {
    pub fn new(i: usize, ts: i64) -> Self {
        TestRecord {
            key: if i % 7 == 3 {
                None
            } else {
                Some(Bytes::from(format!("key-{i}")))
            },
            value: match i % 11 {
                5 => None,
                6 => Some(Bytes::new()),
                _ => Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50)))),
            },
            headers: (0..(i % 3))
                .map(|h| {
                    RecordHeader::new(
                        format!("h{h}"),
                        if h == 1 {
                            None
                        } else {
                            Some(Bytes::from(format!("hv{i}.{h}")))
                        },
                    )
                })
                .collect(),
            timestamp: ts,
        }
    }

    /// Whether `r` carries exactly this record's data.
    pub fn assert_matches(&self, r: &ConsumerRecord) {
        assert_eq!(
            r.key, self.key,
            "key at {}-{}@{}",
            r.topic, r.partition, r.offset
        );
        assert_eq!(r.value, self.value, "value at {}@{}", r.partition, r.offset);
        assert_eq!(
            r.headers, self.headers,
            "headers at {}@{}",
            r.partition, r.offset
        );
        assert_eq!(
            r.timestamp, self.timestamp,
            "timestamp at {}@{}",
            r.partition, r.offset
        );
    }
}

/// Produces `records` as one batch with `codec` (acks=all); returns the base offset.
pub async fn produce(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    codec: Compression,
    records: &[TestRecord],
) -> i64 {
    let mut b = BatchBuilder::new(codec);
    for r in records {
        b.push(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )
        .unwrap();
    }
    let batch = b.finish(-1, -1, -1, false).unwrap();
    let leader = cluster
        .topic(topic)
        .await
        .unwrap()
        .partition(partition)
        .unwrap()
        .leader
        .expect("leader");
    let (_v, resp) = cluster
        .send(leader, |_v| {
            let mut p = PartitionProduceData::default();
            p.index = partition;
            p.records = Some(batch.clone());
            let mut t = TopicProduceData::default();
            t.name = TopicName(StrBytes::from_string(topic.to_string()));
            t.partition_data = vec![p];
            let mut req = ProduceRequest::default();
            req.acks = -1;
            req.timeout_ms = 10_000;
            req.topic_data = vec![t];
            req
        })
        .await
        .expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        ErrorCode(p.error_code),
        ErrorCode::NONE,
        "produce to {topic}-{partition}"
    );
    p.base_offset
}

/// A client config for the test broker.
pub fn client_config(broker: &str) -> ClientConfig {
    let mut c = ClientConfig::new(broker);
    c.request_timeout = Duration::from_secs(15);
    c
}

/// Polls until `n` records arrived (or fails after `within`).
pub async fn poll_n(consumer: &mut Consumer, n: usize, within: Duration) -> Vec<ConsumerRecord> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        let got = tokio::time::timeout_at(deadline, consumer.poll())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records within {within:?}", out.len()))
            .expect("poll");
        out.extend(got);
    }
    out
}

/// A fixed base timestamp, so records carry known CreateTime values.
pub const BASE_TS: i64 = 1_700_000_000_000;
