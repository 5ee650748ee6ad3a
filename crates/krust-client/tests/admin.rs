//! Admin against a real broker (`KRUST_BROKER=host:port`; tansu in CI).
//!
//! Not exercised against tansu: DeleteRecords (its broker task panics) and CreatePartitions
//! (not offered; the call must fail cleanly, which is checked).

mod consumer_common;

use consumer_common::*;
use krust_client::admin::{Admin, ConfigResource, NewTopic, OffsetSpec};
use krust_client::consumer::TopicPartition;
use krust_client::Error;
use krust_wire::record::Compression;
use krust_wire::ErrorCode;

async fn admin() -> Option<Admin> {
    let broker = broker()?;
    Some(
        Admin::connect(client_config(&broker))
            .await
            .expect("connect"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_and_delete_topics() {
    let Some(admin) = admin().await else {
        return;
    };
    let name = unique("krust-admin-topic");
    let other = unique("krust-admin-topic");
    admin
        .create_topics(&[
            NewTopic::new(&name, 3, 1).with_config("retention.ms", "3600000"),
            NewTopic::new(&other, 1, 1),
        ])
        .await
        .unwrap();

    let listed = admin.list_topics().await.unwrap();
    assert!(
        listed.contains(&name) && listed.contains(&other),
        "{listed:?}"
    );

    let described = admin.describe_topics(&[&name, &other]).await.unwrap();
    assert_eq!(described[0].name, name);
    assert_eq!(described[0].partitions.len(), 3);
    assert!(described[0].partitions.iter().all(|p| p.leader.is_some()));
    assert_eq!(described[1].partitions.len(), 1);

    let configs = admin
        .describe_configs(&[ConfigResource::Topic(name.clone())])
        .await
        .unwrap();
    assert_eq!(configs[0].resource, ConfigResource::Topic(name.clone()));
    assert_eq!(
        configs[0].get("retention.ms"),
        Some("3600000"),
        "{configs:?}"
    );

    // Creating it again fails, naming the topic.
    let err = admin
        .create_topics(&[NewTopic::new(&name, 3, 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TOPIC_ALREADY_EXISTS), "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    admin.delete_topics(&[&name, &other]).await.unwrap();
    match admin.describe_topics(&[&name]).await {
        Err(Error::UnknownTopic(t)) => assert_eq!(t, name),
        other => panic!("expected an unknown topic, got {other:?}"),
    }
    let listed = admin.list_topics().await.unwrap();
    assert!(!listed.contains(&name), "{listed:?}");

    // Deleting an unknown topic fails, naming it.
    let err = admin.delete_topics(&[&name]).await.unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_and_list_offsets() {
    let Some(admin) = admin().await else {
        return;
    };
    let cluster = admin.describe_cluster().await.unwrap();
    assert!(!cluster.brokers.is_empty());
    assert!(cluster.controller.is_some(), "{cluster:?}");
    let b = &cluster.brokers[0];
    assert!(b.port > 0 && !b.host.is_empty());

    let topic = unique("krust-admin-offsets");
    create_topic(admin.cluster(), &topic, 2).await;
    // Single-record batches: the shape for which tansu's LATEST is right.
    for i in 0..4 {
        produce(
            admin.cluster(),
            &topic,
            0,
            Compression::None,
            &[TestRecord::new(i, BASE_TS + i as i64)],
        )
        .await;
    }
    let p0 = TopicPartition::new(topic.as_str(), 0);
    let p1 = TopicPartition::new(topic.as_str(), 1);
    let offsets = admin
        .list_offsets(&[
            (p0.clone(), OffsetSpec::Earliest),
            (p1.clone(), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(offsets[&p0].offset, 0);
    assert_eq!(offsets[&p1].offset, 0, "empty partition");
    let latest = admin
        .list_offsets(&[(p0.clone(), OffsetSpec::Latest)])
        .await
        .unwrap();
    assert_eq!(latest[&p0].offset, 4);
    // By timestamp: loose on tansu (broker write time, batch granularity).
    let by_time = admin
        .list_offsets(&[(p0.clone(), OffsetSpec::Timestamp(0))])
        .await
        .unwrap();
    assert_eq!(by_time[&p0].offset, 0);

    let err = admin
        .list_offsets(&[(TopicPartition::new(topic.as_str(), 7), OffsetSpec::Earliest)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains('7'), "{err}");
    admin.delete_topics(&[&topic]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_fails_cleanly_where_unsupported() {
    let Some(admin) = admin().await else {
        return;
    };
    let topic = unique("krust-admin-partitions");
    admin
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    match admin.create_partitions(&topic, 3).await {
        Ok(()) => {
            // A broker that offers CreatePartitions (Kafka): the topic grew.
            let t = admin.describe_topics(&[&topic]).await.unwrap();
            assert_eq!(t[0].partitions.len(), 3);
        }
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains("CreatePartitions"), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    let err = admin
        .describe_configs(&[ConfigResource::Topic(unique("krust-admin-missing"))])
        .await;
    if let Err(e) = err {
        assert!(e.to_string().contains("krust-admin-missing"), "{e}");
    }
    admin.delete_topics(&[&topic]).await.unwrap();
}
