//! Consumer behaviour that tansu cannot show, against krust-testkit's in-process fake cluster:
//! leader migration between brokers with KIP-320 position validation (and without it where the
//! broker lacks OffsetForLeaderEpoch), OFFSET_OUT_OF_RANGE handled per `auto.offset.reset`, and
//! exact ListOffsets LATEST and by-timestamp answers.

mod consumer_common;

use std::time::Duration;

use consumer_common::*;
use krust_client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartOffset, TopicPartition};
use krust_client::{ClientConfig, Cluster};
use krust_testkit::kafka_protocol::messages::ApiKey as FakeApi;
use krust_testkit::{Action, ClusterConfig, FakeCluster, Intercept};
use krust_wire::record::Compression;
use krust_wire::ErrorCode;

const T: Duration = Duration::from_secs(20);

async fn fake(cfg: ClusterConfig) -> (FakeCluster, Cluster) {
    let fake = FakeCluster::with_config(cfg).await.expect("fake cluster");
    let mut c = ClientConfig::new(&fake.bootstrap());
    c.request_timeout = Duration::from_secs(10);
    c.retry_backoff = Duration::from_millis(10);
    c.retry_backoff_max = Duration::from_millis(100);
    let cluster = Cluster::connect(c)
        .await
        .expect("connect to the fake cluster");
    (fake, cluster)
}

fn config(cluster: &Cluster) -> ConsumerConfig {
    ConsumerConfig {
        client: cluster.config().clone(),
        fetch_max_wait: Duration::from_millis(50),
        ..ConsumerConfig::default()
    }
}

/// Produces records `from..from + n` (timestamps BASE_TS + n) as one uncompressed batch (the
/// fake cluster looks timestamps up inside uncompressed batches only).
async fn produce_n(cluster: &Cluster, topic: &str, from: usize, n: usize) {
    cluster
        .refresh_metadata(&[topic.to_string()])
        .await
        .unwrap();
    let recs: Vec<TestRecord> = (from..from + n)
        .map(|i| TestRecord::new(i, BASE_TS + i as i64))
        .collect();
    produce(cluster, topic, 0, Compression::None, &recs).await;
}

async fn migrate(validate_offered: bool) {
    let mut cfg = ClusterConfig::new().with_brokers(2).with_topic("t", 1, 2);
    if !validate_offered {
        cfg = cfg.without_api(FakeApi::OffsetForLeaderEpoch);
    }
    let (fake, cluster) = fake(cfg).await;
    let tp = TopicPartition::new("t", 0);
    let (first_leader, epoch) = fake.leader("t", 0).unwrap();
    produce_n(&cluster, "t", 0, 30).await;

    let mut consumer = Consumer::with_cluster(cluster.clone(), config(&cluster)).unwrap();
    consumer
        .assign([(tp.clone(), StartOffset::Earliest)])
        .await
        .unwrap();
    let got = poll_n(&mut consumer, 30, T).await;
    assert_eq!(got.last().unwrap().offset, 29);
    assert_eq!(got.last().unwrap().leader_epoch, Some(epoch));

    // Leadership moves; the old leader answers NOT_LEADER_OR_FOLLOWER from now on.
    let other = if first_leader == 0 { 1 } else { 0 };
    let new_epoch = fake.move_leader("t", 0, other).unwrap();
    produce_n(&cluster, "t", 30, 30).await;
    let got = poll_n(&mut consumer, 30, T).await;
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (30..60).collect::<Vec<_>>(),
        "no loss, no duplicates"
    );
    assert_eq!(got[0].leader_epoch, Some(new_epoch));
    assert_eq!(consumer.position(&tp), Some(60));

    let fetches_to_new = fake
        .requests_of(FakeApi::Fetch)
        .into_iter()
        .filter(|r| r.broker == other)
        .count();
    assert!(fetches_to_new > 0, "the cursor moved to the new leader");
    let validations = fake.requests_of(FakeApi::OffsetForLeaderEpoch);
    if validate_offered {
        assert!(
            validations.iter().any(|r| r.broker == other),
            "the position was validated on the new leader"
        );
    } else {
        assert!(
            validations.is_empty(),
            "validation skipped where not offered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_migration_with_offset_for_leader_epoch_validation() {
    migrate(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_migration_without_offset_for_leader_epoch() {
    migrate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_out_of_range_follows_auto_offset_reset() {
    let (_fake, cluster) = fake(ClusterConfig::new().with_topic("t", 1, 1)).await;
    let tp = TopicPartition::new("t", 0);
    produce_n(&cluster, "t", 0, 10).await;

    // earliest: restart at the log start.
    let mut c = Consumer::with_cluster(
        cluster.clone(),
        config(&cluster).with_auto_offset_reset(OffsetReset::Earliest),
    )
    .unwrap();
    c.assign([(tp.clone(), StartOffset::Offset(100))])
        .await
        .unwrap();
    assert_eq!(poll_n(&mut c, 1, T).await[0].offset, 0);
    drop(c);

    // latest: restart at the end; the next record produced is the first seen.
    let mut c = Consumer::with_cluster(
        cluster.clone(),
        config(&cluster).with_auto_offset_reset(OffsetReset::Latest),
    )
    .unwrap();
    c.assign([(tp.clone(), StartOffset::Offset(100))])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while c.position(&tp) != Some(10) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reset to the end"
        );
        c.poll_timeout(Duration::from_millis(20)).await.unwrap();
    }
    produce_n(&cluster, "t", 10, 1).await;
    assert_eq!(poll_n(&mut c, 1, T).await[0].offset, 10);
    drop(c);

    // none: an error naming the partition, then nothing until a seek.
    let mut c = Consumer::with_cluster(
        cluster.clone(),
        config(&cluster).with_auto_offset_reset(OffsetReset::None),
    )
    .unwrap();
    c.assign([(tp.clone(), StartOffset::Offset(100))])
        .await
        .unwrap();
    let err = tokio::time::timeout(T, c.poll())
        .await
        .expect("an error within 20 s")
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OFFSET_OUT_OF_RANGE), "{err}");
    assert!(err.to_string().contains("t-0"), "{err}");
    assert!(err.to_string().contains("100"), "{err}");
    c.seek(&tp, StartOffset::Offset(5)).unwrap();
    assert_eq!(poll_n(&mut c, 1, T).await[0].offset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_timestamp_starts_are_exact() {
    let (_fake, cluster) = fake(ClusterConfig::new().with_topic("t", 1, 1)).await;
    let tp = TopicPartition::new("t", 0);
    // One batch of 20 (the case tansu gets wrong), timestamps BASE_TS + offset.
    produce_n(&cluster, "t", 0, 20).await;
    let mut c = Consumer::with_cluster(cluster.clone(), config(&cluster)).unwrap();

    c.assign([(tp.clone(), StartOffset::Timestamp(BASE_TS + 7))])
        .await
        .unwrap();
    let r = &poll_n(&mut c, 1, T).await[0];
    assert_eq!((r.offset, r.timestamp), (7, BASE_TS + 7));

    let found = c
        .offsets_for_times([(tp.clone(), BASE_TS + 12), (tp.clone(), BASE_TS + 1_000)])
        .await
        .unwrap();
    // The later query replaced the earlier one for the same partition: past the last record.
    assert_eq!(found[&tp], None);
    let found = c
        .offsets_for_times([(tp.clone(), BASE_TS + 12)])
        .await
        .unwrap();
    let o = found[&tp].unwrap();
    assert_eq!((o.offset, o.timestamp), (12, BASE_TS + 12));
    assert_eq!(c.end_offsets([tp.clone()]).await.unwrap()[&tp], 20);

    // A timestamp after every record starts at the end.
    c.assign([(tp.clone(), StartOffset::Timestamp(BASE_TS + 1_000))])
        .await
        .unwrap();
    c.assign([(tp.clone(), StartOffset::Latest)]).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while c.position(&tp) != Some(20) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "latest never resolved"
        );
        c.poll_timeout(Duration::from_millis(20)).await.unwrap();
    }
    produce_n(&cluster, "t", 20, 1).await;
    assert_eq!(poll_n(&mut c, 1, T).await[0].offset, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_is_reported_once() {
    let (fake, cluster) = fake(ClusterConfig::new().with_topic("t", 1, 1)).await;
    let tp = TopicPartition::new("t", 0);
    produce_n(&cluster, "t", 0, 3).await;
    let mut c = Consumer::with_cluster(cluster.clone(), config(&cluster)).unwrap();
    c.assign([(tp.clone(), StartOffset::Earliest)])
        .await
        .unwrap();
    assert_eq!(poll_n(&mut c, 3, T).await.len(), 3);
    assert!(fake.delete_topic("t"));
    let err = tokio::time::timeout(T, c.poll())
        .await
        .expect("an error within 20 s")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
    assert!(err.to_string().contains("t-0"), "{err}");
    // Reported once: nothing else is pending.
    assert!(c.try_poll().unwrap().is_empty());
    // While the partition has no leader, metadata is refreshed with backoff, not in a loop.
    let before = fake.requests_of(FakeApi::Metadata).len();
    assert!(c
        .poll_timeout(Duration::from_millis(500))
        .await
        .unwrap()
        .is_empty());
    let refreshes = fake.requests_of(FakeApi::Metadata).len() - before;
    eprintln!("{refreshes} metadata requests in 500 ms");
    assert!(refreshes <= 30, "{refreshes} metadata requests in 500 ms");
}

/// Writes `values` to t-0 in a transaction of `txn_id` (raw requests: InitProducerId,
/// AddPartitionsToTxn v3, a transactional Produce, EndTxn) that commits or aborts.
async fn transaction(
    fake: &FakeCluster,
    cluster: &Cluster,
    txn_id: &str,
    values: &[&str],
    commit: bool,
) {
    use krust_wire::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use krust_wire::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use krust_wire::kafka_protocol::messages::{
        AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProduceRequest,
        ProducerId, TopicName, TransactionalId,
    };
    use krust_wire::kafka_protocol::protocol::StrBytes;
    use krust_wire::record::BatchBuilder;

    let sb = |s: &str| StrBytes::from_string(s.to_string());
    let coordinator = fake.coordinator(1, txn_id);
    let (_v, init) = cluster
        .send(coordinator, |_v| {
            let mut r = InitProducerIdRequest::default();
            r.transactional_id = Some(TransactionalId(sb(txn_id)));
            r.transaction_timeout_ms = 60_000;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            r
        })
        .await
        .unwrap();
    assert_eq!(init.error_code, 0, "InitProducerId");
    let (pid, epoch) = (init.producer_id, init.producer_epoch);

    let mut add = AddPartitionsToTxnRequest::default();
    add.v3_and_below_transactional_id = TransactionalId(sb(txn_id));
    add.v3_and_below_producer_id = pid;
    add.v3_and_below_producer_epoch = epoch;
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(sb("t"));
    topic.partitions = vec![0];
    add.v3_and_below_topics = vec![topic];
    let conn = cluster.connection(coordinator).await.unwrap();
    let added = conn
        .request(&add, 3, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    );

    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.push(BASE_TS, None, Some(v.as_bytes()), &[]).unwrap();
    }
    let batch = b.finish(pid.0, epoch, 0, true).unwrap();
    let leader = cluster.topic("t").await.unwrap().partitions[0]
        .leader
        .unwrap();
    let (_v, produced) = cluster
        .send(leader, |_v| {
            let mut p = PartitionProduceData::default();
            p.index = 0;
            p.records = Some(batch.clone());
            let mut td = TopicProduceData::default();
            td.name = TopicName(sb("t"));
            td.partition_data = vec![p];
            let mut r = ProduceRequest::default();
            r.transactional_id = Some(TransactionalId(sb(txn_id)));
            r.acks = -1;
            r.timeout_ms = 10_000;
            r.topic_data = vec![td];
            r
        })
        .await
        .unwrap();
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code, 0,
        "Produce"
    );

    let (_v, end) = cluster
        .send(coordinator, |_v| {
            let mut r = EndTxnRequest::default();
            r.transactional_id = TransactionalId(sb(txn_id));
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.committed = commit;
            r
        })
        .await
        .unwrap();
    assert_eq!(end.error_code, 0, "EndTxn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_skips_aborted_transactions() {
    let (fake, cluster) = fake(ClusterConfig::new().with_topic("t", 1, 1)).await;
    let tp = TopicPartition::new("t", 0);
    transaction(&fake, &cluster, "tx-a", &["a1", "a2", "a3"], false).await; // 0..3, marker 3
    transaction(&fake, &cluster, "tx-b", &["b1", "b2"], true).await; // 4..6, marker 6
    transaction(&fake, &cluster, "tx-a", &["a4"], false).await; // 7, marker 8
    produce_n(&cluster, "t", 100, 2).await; // 9, 10

    let values = |records: &[krust_client::ConsumerRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    };

    let mut committed = Consumer::with_cluster(
        cluster.clone(),
        config(&cluster)
            .with_isolation_level(krust_client::consumer::IsolationLevel::ReadCommitted)
            .with_partition_eof(true),
    )
    .unwrap();
    committed
        .assign([(tp.clone(), StartOffset::Earliest)])
        .await
        .unwrap();
    let got = poll_n(&mut committed, 4, T).await;
    let v = values(&got);
    assert_eq!(
        &v[..2],
        ["b1", "b2"],
        "aborted records dropped, committed kept"
    );
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![4, 5, 9, 10]
    );

    let mut uncommitted = Consumer::with_cluster(cluster.clone(), config(&cluster)).unwrap();
    uncommitted
        .assign([(tp.clone(), StartOffset::Earliest)])
        .await
        .unwrap();
    let got = poll_n(&mut uncommitted, 8, T).await;
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 4, 5, 7, 9, 10],
        "read_uncommitted sees aborted records; control records are never delivered"
    );
}

/// Three partitions led by three different brokers: returns, for each partition, its leader.
async fn three_leaders() -> (FakeCluster, Cluster, [i32; 3]) {
    let (fake, cluster) = fake(ClusterConfig::new().with_brokers(3).with_topic("fc", 3, 1)).await;
    let leaders = [0, 1, 2].map(|p| fake.leader("fc", p).expect("leader").0);
    let mut distinct = leaders.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one partition per broker: {leaders:?}");
    (fake, cluster, leaders)
}

/// Regression: with three leaders and the default budgets (64 MiB prefetch, 50 MiB
/// `fetch.max.bytes`), the long-polling fetches of two leaders used to reserve the whole
/// prefetch budget between them (50 MiB + 14 MiB), and the third leader's source, finding the
/// budget exhausted, was never woken while the other two re-planned at once after each
/// response: its partition was looked up (ListOffsets) and then never fetched (`krust consume
/// -e` hung about 1 run in 3 on `krust fake-cluster --brokers 3`).
///
/// Here the third leader's ListOffsets is refused (UNKNOWN_LEADER_EPOCH, retried after a
/// backoff) until the other two leaders have received their fetches, which long-poll empty
/// partitions for 4 s: the third partition must be read well before they answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_leader_is_fetched_while_two_fetches_hold_the_budget() {
    let (fake, cluster, leaders) = three_leaders().await;
    produce_n_to(&cluster, "fc", 2, 10).await;
    let weak = fake.downgrade();
    let (a, b) = (leaders[0], leaders[1]);
    fake.intercept(
        Intercept::api(FakeApi::ListOffsets).on_broker(leaders[2]),
        move |_| {
            let fetched = weak.upgrade().is_some_and(|f| {
                let fetches = f.requests_of(FakeApi::Fetch);
                [a, b]
                    .iter()
                    .all(|n| fetches.iter().any(|r| r.broker == *n))
            });
            (!fetched).then_some(Action::Error(ErrorCode::UNKNOWN_LEADER_EPOCH.0))
        },
    );

    let mut cfg = config(&cluster);
    cfg.fetch_max_wait = Duration::from_secs(4);
    let mut consumer = Consumer::with_cluster(cluster.clone(), cfg).unwrap();
    consumer
        .assign((0..3).map(|p| (TopicPartition::new("fc", p), StartOffset::Earliest)))
        .await
        .unwrap();
    let got = poll_n(&mut consumer, 10, Duration::from_secs(3)).await;
    assert!(got.iter().all(|r| r.partition == 2));
    assert_eq!(got.last().unwrap().offset, 9);
}

/// Produces records `0..n` to `topic`-`partition` as one batch.
async fn produce_n_to(cluster: &Cluster, topic: &str, partition: i32, n: usize) {
    cluster
        .refresh_metadata(&[topic.to_string()])
        .await
        .unwrap();
    let recs: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord::new(i, BASE_TS + i as i64))
        .collect();
    produce(cluster, topic, partition, Compression::None, &recs).await;
}

/// Fetch sizing: a fetch asks for `fetch.max.bytes` or the free prefetch budget, whichever is
/// smaller, and each partition for `max.partition.fetch.bytes`. The request's limit is not
/// capped at `partitions x max.partition.fetch.bytes`: a broker that sizes its answer by the
/// request's limit alone (tansu) then answers with up to the reserved budget (capped, one
/// partition read 1 MiB per round trip from tansu), while the budget still bounds memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_asks_for_the_free_budget_up_to_fetch_max_bytes() {
    use krust_testkit::kafka_protocol::messages::RequestKind;
    for (budget, expected) in [(8usize << 20, 8 << 20), (64 << 20, 52_428_800)] {
        let (fake, cluster) = fake(ClusterConfig::new().with_topic("sz", 1, 1)).await;
        produce_n_to(&cluster, "sz", 0, 5).await;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        fake.intercept(Intercept::api(FakeApi::Fetch), move |req| {
            if let RequestKind::Fetch(f) = &req.body {
                let parts: Vec<i32> = f
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.partition_max_bytes))
                    .collect();
                log.lock().unwrap().push((f.max_bytes, parts));
            }
            None
        });
        let mut cfg = config(&cluster);
        cfg.max_prefetch_bytes = budget;
        let mut consumer = Consumer::with_cluster(cluster.clone(), cfg).unwrap();
        consumer
            .assign([(TopicPartition::new("sz", 0), StartOffset::Earliest)])
            .await
            .unwrap();
        let got = poll_n(&mut consumer, 5, T).await;
        assert_eq!(got.len(), 5);
        let seen = seen.lock().unwrap().clone();
        let (max_bytes, parts) = seen.first().expect("a fetch was sent");
        assert_eq!(*max_bytes, expected, "budget {budget}: {seen:?}");
        assert_eq!(parts, &vec![1_048_576], "budget {budget}: {seen:?}");
    }
}
