//! The transaction coordinator over the raw protocol: markers, LSO, aborted lists, fencing,
//! timeouts, TxnOffsetCommit with RequireStable, and the KIP-890 mode.

mod common;

use std::time::{Duration, Instant};

use common::*;
use krust_testkit::errors as ec;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::raw::RawClient;
use krust_testkit::{ClusterConfig, FakeCluster, TxnProtocol};

async fn coordinator(c: &FakeCluster, txn: &str) -> RawClient {
    client(c, c.coordinator(1, txn)).await
}

fn add_parts(
    txn: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    parts: &[i32],
) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(sb(txn)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(tn(topic))
                .with_partitions(parts.to_vec()),
        ])
}

fn end(txn: &str, pid: i64, epoch: i16, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(sb(txn)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

#[allow(clippy::too_many_arguments)]
async fn txn_produce(
    cl: &mut RawClient,
    txn: &str,
    topic: &str,
    p: i32,
    vals: &[&[u8]],
    pid: i64,
    epoch: i16,
    seq: i32,
) -> (i16, i64) {
    let r = cl
        .send(
            &txn_produce_req(txn, topic, p, txn_batch(vals, pid, epoch, seq)),
            9,
        )
        .await
        .unwrap();
    let x = &r.responses[0].partition_responses[0];
    (x.error_code, x.base_offset)
}

#[tokio::test]
async fn commit_and_abort_write_markers_lso_and_aborted_list() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = coordinator(&c, "tx").await;
    let (e, pid, epoch) = init_pid(&mut cl, Some("tx")).await;
    assert_eq!((e, epoch), (0, 0));
    // Not added to the transaction yet.
    assert_eq!(
        txn_produce(&mut cl, "tx", "t", 0, &[b"early"], pid, 0, 0)
            .await
            .0,
        ec::INVALID_TXN_STATE
    );
    let r = cl
        .send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(
        txn_produce(&mut cl, "tx", "t", 0, &[b"a1", b"a2"], pid, 0, 0).await,
        (0, 0)
    );
    assert_eq!(
        c.offsets("t", 0),
        Some((0, 2, 0)),
        "LSO held at the open transaction"
    );
    assert!(
        values(&fetch(&mut cl, "t", 0, 0, 1).await).is_empty(),
        "read_committed sees nothing yet"
    );
    assert_eq!(
        cl.send(&end("tx", pid, 0, false), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    assert_eq!(c.offsets("t", 0), Some((0, 3, 3)), "abort marker at 2");

    cl.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    assert_eq!(
        txn_produce(&mut cl, "tx", "t", 0, &[b"c1"], pid, 0, 2).await,
        (0, 3)
    );
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    // A retried EndTxn of the same outcome succeeds; the other outcome is an invalid state.
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    assert_eq!(
        cl.send(&end("tx", pid, 0, false), 3)
            .await
            .unwrap()
            .error_code,
        ec::INVALID_TXN_STATE
    );

    let p = fetch(&mut cl, "t", 0, 0, 1).await;
    assert_eq!(p.last_stable_offset, 5);
    let aborted = p.aborted_transactions.clone().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (pid, 0)
    );
    // The raw data still holds the aborted records; the client filters them with the list.
    assert_eq!(values(&p).len(), 3);
    // Fetching past the aborted range returns no aborted entries.
    let p = fetch(&mut cl, "t", 0, 3, 1).await;
    assert!(p.aborted_transactions.as_ref().unwrap().is_empty());
    assert_eq!(values(&p), vec![(3, b"c1".to_vec())]);
}

#[tokio::test]
async fn second_init_fences_and_aborts_the_open_transaction() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut old = coordinator(&c, "tx").await;
    let (_, pid, _) = init_pid(&mut old, Some("tx")).await;
    old.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    txn_produce(&mut old, "tx", "t", 0, &[b"zombie"], pid, 0, 0).await;
    let mut new = coordinator(&c, "tx").await;
    let (e, pid2, epoch2) = init_pid(&mut new, Some("tx")).await;
    assert_eq!((e, pid2, epoch2), (0, pid, 1));
    assert_eq!(
        txn_produce(&mut old, "tx", "t", 0, &[b"late"], pid, 0, 1)
            .await
            .0,
        ec::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        old.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        ec::PRODUCER_FENCED
    );
    assert_eq!(
        old.send(&end("tx", pid, 0, true), 1)
            .await
            .unwrap()
            .error_code,
        ec::INVALID_PRODUCER_EPOCH
    );
    let p = fetch(&mut new, "t", 0, 0, 1).await;
    assert_eq!(
        p.aborted_transactions.unwrap().len(),
        1,
        "the zombie's transaction was aborted"
    );
    assert_eq!(p.last_stable_offset, 2);
}

/// InitProducerId carrying `pid`/`epoch` (KIP-360; -1/-1 for a new producer) at v4.
async fn reinit(cl: &mut RawClient, txn: Option<&str>, pid: i64, epoch: i16) -> (i16, i64, i16) {
    let r = cl
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(txn.map(|t| TransactionalId(sb(t))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            4,
        )
        .await
        .unwrap();
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

#[tokio::test]
async fn retried_epoch_bump_gets_the_same_answer_instead_of_a_fence() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = coordinator(&c, "tx").await;
    let (e, pid, epoch) = init_pid(&mut cl, Some("tx")).await;
    assert_eq!((e, epoch), (0, 0));
    // A bump, then its retry (the producer lost the first answer): the same id and epoch,
    // nothing bumped twice.
    assert_eq!(reinit(&mut cl, Some("tx"), pid, 0).await, (0, pid, 1));
    assert_eq!(reinit(&mut cl, Some("tx"), pid, 0).await, (0, pid, 1));
    assert_eq!(reinit(&mut cl, Some("tx"), pid, 0).await, (0, pid, 1));
    // The producer goes on with epoch 1.
    let r = cl
        .send(&add_parts("tx", pid, 1, "t", &[0]), 3)
        .await
        .unwrap();
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    // Once it runs a transaction under epoch 1, the old epoch is a zombie: fenced.
    assert_eq!(
        reinit(&mut cl, Some("tx"), pid, 0).await.0,
        ec::PRODUCER_FENCED
    );
    assert_eq!(
        cl.send(&end("tx", pid, 1, false), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    // Wait for the abort markers: a re-init answers CONCURRENT_TRANSACTIONS until then.
    let bumped = loop {
        let r = reinit(&mut cl, Some("tx"), pid, 1).await;
        if r.0 != ec::CONCURRENT_TRANSACTIONS {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(bumped, (0, pid, 2));
    // An epoch older than the last bump's is fenced, the last bump's retry is not.
    assert_eq!(
        reinit(&mut cl, Some("tx"), pid, 0).await.0,
        ec::PRODUCER_FENCED
    );
    assert_eq!(reinit(&mut cl, Some("tx"), pid, 1).await, (0, pid, 2));
    // A new instance (no id and epoch) takes over: the old instance's retry is fenced now.
    let (e, pid2, epoch) = init_pid(&mut cl, Some("tx")).await;
    assert_eq!((e, pid2, epoch), (0, pid, 3));
    assert_eq!(
        reinit(&mut cl, Some("tx"), pid, 1).await.0,
        ec::PRODUCER_FENCED
    );
    assert_eq!(
        reinit(&mut cl, Some("tx"), pid, 2).await.0,
        ec::PRODUCER_FENCED
    );
}

#[tokio::test]
async fn retried_idempotent_epoch_bump_gets_the_same_answer() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut cl = client(&c, 0).await;
    let (e, pid, epoch) = init_pid(&mut cl, None).await;
    assert_eq!((e, epoch), (0, 0));
    assert_eq!(reinit(&mut cl, None, pid, 0).await, (0, pid, 1));
    assert_eq!(reinit(&mut cl, None, pid, 0).await, (0, pid, 1));
    assert_eq!(reinit(&mut cl, None, pid, 1).await, (0, pid, 2));
    assert_eq!(
        reinit(&mut cl, None, pid, 0).await.0,
        ec::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        reinit(&mut cl, None, pid, 7).await.0,
        ec::INVALID_PRODUCER_EPOCH
    );
}

#[tokio::test]
async fn transaction_timeout_aborts_and_fences() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = coordinator(&c, "tx").await;
    let r = cl
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(sb("tx"))))
                .with_transaction_timeout_ms(50)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            3,
        )
        .await
        .unwrap();
    let pid = r.producer_id.0;
    cl.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    txn_produce(&mut cl, "tx", "t", 0, &[b"slow"], pid, 0, 0).await;
    let start = Instant::now();
    while c.offsets("t", 0).unwrap().2 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timeout never fired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        ec::PRODUCER_FENCED
    );
    let r = cl
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(sb("tx"))))
                .with_transaction_timeout_ms(0)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            3,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, ec::INVALID_TRANSACTION_TIMEOUT);
}

#[tokio::test]
async fn txn_offset_commit_is_unstable_until_the_commit() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("in", 1, 1).unwrap();
    c.create_topic("out", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    cl.send(&add_parts("tx", pid, 0, "out", &[0]), 3)
        .await
        .unwrap();
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(sb("tx")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_group_id(GroupId(sb("g")));
    assert_eq!(cl.send(&add, 3).await.unwrap().error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(sb("tx")))
        .with_group_id(GroupId(sb("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(tn("in"))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(17),
                ]),
        ]);
    assert_eq!(
        cl.send(&commit, 3).await.unwrap().topics[0].partitions[0].error_code,
        0
    );
    let fetch_offsets = |stable: bool| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(sb("g")))
            .with_require_stable(stable)
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(tn("in"))
                    .with_partition_indexes(vec![0]),
            ]))
    };
    let r = cl.send(&fetch_offsets(true), 7).await.unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ec::UNSTABLE_OFFSET_COMMIT
    );
    let r = cl.send(&fetch_offsets(false), 7).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].committed_offset, -1);
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    let r = cl.send(&fetch_offsets(true), 7).await.unwrap();
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].committed_offset
        ),
        (0, 17)
    );
}

#[tokio::test]
async fn kip890_bumps_the_epoch_per_transaction_and_fences_late_requests() {
    let c = FakeCluster::with_config(ClusterConfig::new().with_txn_protocol(TxnProtocol::Kip890))
        .await
        .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    // Produce v12 adds the partition implicitly.
    let r = cl
        .send(
            &txn_produce_req("tx", "t", 0, txn_batch(&[b"k1"], pid, 0, 0)),
            12,
        )
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let r = cl.send(&end("tx", pid, 0, true), 5).await.unwrap();
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, 1)
    );
    // A retry of that EndTxn (old epoch) succeeds; the next transaction uses epoch 1 from seq 0.
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 5)
            .await
            .unwrap()
            .error_code,
        0
    );
    let r = cl
        .send(
            &txn_produce_req("tx", "t", 0, txn_batch(&[b"k2"], pid, 1, 0)),
            12,
        )
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // A delayed produce of transaction k (epoch 0) cannot join transaction k+1.
    let r = cl
        .send(
            &txn_produce_req("tx", "t", 0, txn_batch(&[b"late"], pid, 0, 1)),
            12,
        )
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ec::INVALID_PRODUCER_EPOCH
    );
    // A delayed abort of transaction k is fenced instead of ending k+1.
    assert_eq!(
        cl.send(&end("tx", pid, 0, false), 5)
            .await
            .unwrap()
            .error_code,
        ec::PRODUCER_FENCED
    );
    let r = cl.send(&end("tx", pid, 1, true), 5).await.unwrap();
    assert_eq!((r.error_code, r.producer_epoch), (0, 2));
    let p = fetch(&mut cl, "t", 0, 0, 1).await;
    assert_eq!(values(&p), vec![(0, b"k1".to_vec()), (2, b"k2".to_vec())]);
}

#[tokio::test]
async fn unsorted_aborted_lists_when_configured() {
    let c = FakeCluster::with_config(ClusterConfig::new().with_unsorted_aborted_list(true))
        .await
        .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    for seq in 0..2 {
        cl.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
            .await
            .unwrap();
        txn_produce(&mut cl, "tx", "t", 0, &[b"x"], pid, 0, seq).await;
        cl.send(&end("tx", pid, 0, false), 3).await.unwrap();
    }
    let p = fetch(&mut cl, "t", 0, 0, 1).await;
    let firsts: Vec<i64> = p
        .aborted_transactions
        .unwrap()
        .iter()
        .map(|a| a.first_offset)
        .collect();
    assert_eq!(firsts, vec![2, 0]);
}

#[tokio::test]
async fn list_and_describe_transactions_and_describe_cluster() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 2, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    cl.send(&add_parts("tx", pid, 0, "t", &[0, 1]), 3)
        .await
        .unwrap();
    let r = cl
        .send(&ListTransactionsRequest::default(), 1)
        .await
        .unwrap();
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    let r = cl
        .send(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(sb("tx")), TransactionalId(sb("no"))]),
            0,
        )
        .await
        .unwrap();
    let t = &r.transaction_states[0];
    assert_eq!(
        (t.producer_id.0, t.topics[0].partitions.clone()),
        (pid, vec![0, 1])
    );
    assert_eq!(
        r.transaction_states[1].error_code,
        ec::TRANSACTIONAL_ID_NOT_FOUND
    );
    let r = cl
        .send(&DescribeClusterRequest::default(), 1)
        .await
        .unwrap();
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.cluster_id.as_str(), "krust-fake-cluster");
}

#[tokio::test]
async fn delayed_markers_answer_concurrent_transactions_until_written() {
    let c = FakeCluster::with_config(
        ClusterConfig::new().with_txn_marker_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    cl.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    txn_produce(&mut cl, "tx", "t", 0, &[b"x"], pid, 0, 0).await;
    assert_eq!(
        cl.send(&end("tx", pid, 0, true), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    assert_eq!(c.offsets("t", 0).unwrap().2, 0, "LSO waits for the marker");
    let r = cl
        .send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        ec::CONCURRENT_TRANSACTIONS
    );
    let start = Instant::now();
    loop {
        let r = cl
            .send(&add_parts("tx", pid, 0, "t", &[0]), 3)
            .await
            .unwrap();
        let code = r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
        if code == 0 {
            break;
        }
        assert_eq!(code, ec::CONCURRENT_TRANSACTIONS);
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        c.offsets("t", 0),
        Some((0, 2, 2)),
        "the commit marker was written"
    );
}

#[tokio::test]
async fn list_offsets_latest_is_the_lso_under_read_committed() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    produce(&mut cl, "t", 0, batch(&[b"plain"])).await;
    let (_, pid, _) = init_pid(&mut cl, Some("tx")).await;
    cl.send(&add_parts("tx", pid, 0, "t", &[0]), 3)
        .await
        .unwrap();
    txn_produce(&mut cl, "tx", "t", 0, &[b"open"], pid, 0, 0).await;
    let latest = |isolation: i8| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(tn("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(-1),
                ])])
    };
    let r = cl.send(&latest(0), 5).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 2);
    let r = cl.send(&latest(1), 5).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 1);
}
