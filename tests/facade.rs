//! End-to-end through the `krust` facade: produce keyed records with headers, read them back in
//! order, on the in-process fake cluster (always) and on the real broker (when `KRUST_BROKER` is
//! set; under `CI=true` it must be).

use std::collections::BTreeMap;
use std::time::Duration;

use krust::client::consumer::{StartOffset, TopicPartition};
use krust::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use krust_testkit::{ClusterConfig, FakeCluster};

const RECORDS: usize = 2_000;

async fn round_trip(bootstrap: &str, topic: &str) {
    let producer = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let rec = ProducerRecord::new(topic)
            .with_key(format!("key-{}", i % 7))
            .with_value(format!("value-{i}"))
            .with_header("seq", i.to_string());
        deliveries.push(producer.send(rec).await.expect("send"));
    }
    let mut acked = BTreeMap::new();
    for d in deliveries {
        let m = d.await.expect("delivery");
        *acked.entry(m.partition).or_insert(0usize) += 1;
    }
    producer.close().await;

    let mut consumer = Consumer::connect(ConsumerConfig::new(bootstrap))
        .await
        .expect("consumer");
    let parts: Vec<_> = acked
        .keys()
        .map(|p| (TopicPartition::new(topic, *p), StartOffset::Earliest))
        .collect();
    consumer.assign(parts).await.expect("assign");
    let mut seen: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut total = 0;
    while total < RECORDS {
        let batch = tokio::time::timeout(Duration::from_secs(30), consumer.poll())
            .await
            .expect("records arrive")
            .expect("poll");
        for r in batch {
            let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
            let seq: usize = value.strip_prefix("value-").unwrap().parse().unwrap();
            let header = &r.headers[0];
            assert_eq!(header.key.as_str(), "seq");
            assert_eq!(header.value.as_deref(), Some(seq.to_string().as_bytes()));
            assert_eq!(
                r.key.as_deref(),
                Some(format!("key-{}", seq % 7).as_bytes()),
                "key kept"
            );
            seen.entry(r.partition).or_default().push(seq);
            total += 1;
        }
    }
    for (p, seqs) in &seen {
        assert_eq!(
            seqs.len(),
            acked[p],
            "partition {p}: every acknowledged record"
        );
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: send order kept"
        );
    }
}

#[tokio::test]
async fn facade_round_trip_on_the_fake_cluster() {
    let fake = FakeCluster::with_config(
        ClusterConfig::new()
            .with_brokers(3)
            .with_topic("facade", 4, 3),
    )
    .await
    .expect("fake cluster");
    round_trip(&fake.bootstrap(), "facade").await;
}

#[tokio::test]
async fn facade_round_trip_on_the_real_broker() {
    let Some(addr) = krust_testkit::real_broker() else {
        return;
    };
    let topic = format!("facade-{}", std::process::id());
    krust::Admin::connect(krust::ClientConfig::new(&addr))
        .await
        .expect("admin")
        .create_topics(&[krust::client::NewTopic::new(&topic, 3, 1)])
        .await
        .expect("create topic");
    round_trip(&addr, &topic).await;
}
