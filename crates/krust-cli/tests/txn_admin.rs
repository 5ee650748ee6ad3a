//! Resolving transactions left open: `krust_client::admin::{abort_transactions, abort_lingering,
//! complete_transaction}` and `krust txn list|describe|abort|complete`, on krust-testkit's
//! in-process fake cluster (which has ListTransactions / DescribeTransactions and real fencing)
//! and on the real broker (`KRUST_BROKER`; tansu has neither listing API, and closes the
//! connection of a fenced EndTxn instead of answering PRODUCER_FENCED).
//!
//! Transactions are opened here with raw InitProducerId / AddPartitionsToTxn requests, which
//! is exactly the state a producer that died mid-transaction leaves on the coordinator.

mod common;

use common::{assert_one_line_failure, consume_sorted, ok, run, suffix};
use krust_client::admin::{
    abort_lingering, abort_transactions, complete_transaction, describe_transactions,
};
use krust_client::{ClientConfig, Cluster};
use krust_testkit::{ClusterConfig, FakeCluster};
use krust_wire::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use krust_wire::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, FindCoordinatorRequest, InitProducerIdRequest, TopicName,
    TransactionalId,
};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::ErrorCode;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn connect(bootstrap: &str) -> Cluster {
    Cluster::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect")
}

async fn coordinator(cluster: &Cluster, id: &str) -> i32 {
    let (_, v, resp) = cluster
        .send_any(|v| {
            let mut r = FindCoordinatorRequest::default();
            if v >= 4 {
                r.coordinator_keys = vec![sb(id)];
            } else {
                r.key = sb(id);
            }
            r.key_type = 1;
            r
        })
        .await
        .unwrap();
    if v >= 4 {
        resp.coordinators[0].node_id.0
    } else {
        resp.node_id.0
    }
}

/// Initialises `id` and, when `partitions` is not empty, adds them of `topic` to a
/// transaction (which is then Ongoing). Returns the producer id and epoch.
async fn open(cluster: &Cluster, id: &str, topic: &str, partitions: &[i32]) -> (i64, i16) {
    let node = coordinator(cluster, id).await;
    let (_, init) = cluster
        .send(node, |_| {
            let mut r = InitProducerIdRequest::default();
            r.transactional_id = Some(TransactionalId(sb(id)));
            r.transaction_timeout_ms = 60_000;
            r.producer_id = (-1).into();
            r.producer_epoch = -1;
            r
        })
        .await
        .unwrap();
    assert_eq!(init.error_code, 0, "init {id}");
    if !partitions.is_empty() {
        // Version 3 at most: 4+ is the batched broker-to-broker form (KIP-890).
        let conn = cluster.connection(node).await.unwrap();
        let v = conn
            .version_for(krust_wire::ApiKey::AddPartitionsToTxn)
            .unwrap()
            .min(3);
        let mut r = AddPartitionsToTxnRequest::default();
        let mut t = AddPartitionsToTxnTopic::default();
        t.name = TopicName(sb(topic));
        t.partitions = partitions.to_vec();
        r.v3_and_below_transactional_id = TransactionalId(sb(id));
        r.v3_and_below_producer_id = init.producer_id;
        r.v3_and_below_producer_epoch = init.producer_epoch;
        r.v3_and_below_topics = vec![t];
        let add = conn
            .request(&r, v, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        for t in add.results_by_topic_v3_and_below {
            for p in t.results_by_partition {
                assert_eq!(p.partition_error_code, 0, "add partitions {id}");
            }
        }
    }
    (init.producer_id.0, init.producer_epoch)
}

async fn state(cluster: &Cluster, id: &str) -> (String, i16) {
    let d = describe_transactions(cluster, &[id]).await.unwrap();
    (d[0].state.clone(), d[0].producer_epoch)
}

async fn fake(brokers: usize) -> FakeCluster {
    let f = FakeCluster::with_config(ClusterConfig::new().with_brokers(brokers))
        .await
        .unwrap();
    f.create_topic("t", 2, 1).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_by_id_and_by_prefix_on_fake_cluster() {
    let f = fake(3).await;
    let cluster = connect(&f.bootstrap()).await;
    let (pid1, e1) = open(&cluster, "app-1", "t", &[0, 1]).await;
    open(&cluster, "app-2", "t", &[]).await;
    open(&cluster, "other-1", "t", &[0]).await;

    // By prefix: only the Ongoing one with the prefix.
    let aborted = abort_lingering(&cluster, "app-").await.unwrap();
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert_eq!(aborted[0].transactional_id, "app-1");
    assert_eq!(aborted[0].previous_state.as_deref(), Some("Ongoing"));
    assert_eq!(aborted[0].producer_id, pid1);
    assert!(aborted[0].producer_epoch > e1, "{aborted:?}");
    // Re-initialised: nothing open, a newer epoch (the coordinator wrote abort markers).
    assert_eq!(
        state(&cluster, "app-1").await,
        ("Empty".to_string(), aborted[0].producer_epoch)
    );
    assert_eq!(state(&cluster, "app-2").await.0, "Empty");
    assert_eq!(state(&cluster, "other-1").await.0, "Ongoing");

    // The dead producer of app-1 is fenced: finishing its transaction now fails, naming why.
    let err = complete_transaction(&cluster, "app-1", pid1, e1, true)
        .await
        .unwrap_err();
    let code = err.code();
    assert!(
        code == Some(ErrorCode::PRODUCER_FENCED) || code == Some(ErrorCode::INVALID_PRODUCER_EPOCH),
        "{err}"
    );
    assert!(err.to_string().contains("newer producer epoch"), "{err}");

    // By id, no listing needed.
    let aborted = abort_transactions(&cluster, &["other-1"]).await.unwrap();
    assert_eq!(aborted[0].previous_state, None);
    assert_eq!(
        state(&cluster, "other-1").await,
        ("Empty".to_string(), aborted[0].producer_epoch)
    );

    // An empty prefix would fence every transactional application: refused.
    let err = abort_lingering(&cluster, "").await.unwrap_err();
    assert!(err.to_string().contains("non-empty"), "{err}");
    let err = abort_transactions(&cluster, &[""]).await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_commits_or_aborts_with_the_recorded_identity_on_fake_cluster() {
    let f = fake(2).await;
    let cluster = connect(&f.bootstrap()).await;

    let (pid, epoch) = open(&cluster, "resume-c", "t", &[0, 1]).await;
    complete_transaction(&cluster, "resume-c", pid, epoch, true)
        .await
        .unwrap();
    assert_eq!(state(&cluster, "resume-c").await.0, "CompleteCommit");
    // Asking the same outcome again is safe (a retry after a lost answer).
    complete_transaction(&cluster, "resume-c", pid, epoch, true)
        .await
        .unwrap();
    // The other outcome is refused: nothing is open.
    let err = complete_transaction(&cluster, "resume-c", pid, epoch, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::INVALID_TXN_STATE), "{err}");
    assert!(
        err.to_string().contains("no open transaction to abort"),
        "{err}"
    );

    let (pid, epoch) = open(&cluster, "resume-a", "t", &[1]).await;
    complete_transaction(&cluster, "resume-a", pid, epoch, false)
        .await
        .unwrap();
    assert_eq!(state(&cluster, "resume-a").await.0, "CompleteAbort");

    // A producer id the coordinator does not hold for that id.
    let err = complete_transaction(&cluster, "resume-a", pid + 1000, epoch, true)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::INVALID_PRODUCER_ID_MAPPING),
        "{err}"
    );
    // Bad input is an error, not a request.
    let err = complete_transaction(&cluster, "resume-a", -1, 0, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(">= 0"), "{err}");

    // The coordinator moved between the crash and the resume: followed.
    let (pid, epoch) = open(&cluster, "resume-m", "t", &[0]).await;
    let now = f.coordinator(1, "resume-m");
    let other = if now == 0 { 1 } else { 0 };
    f.move_coordinator(1, "resume-m", other);
    complete_transaction(&cluster, "resume-m", pid, epoch, true)
        .await
        .unwrap();
    assert_eq!(state(&cluster, "resume-m").await.0, "CompleteCommit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_txn_commands_on_fake_cluster() {
    let f = fake(1).await;
    let b = f.bootstrap();
    let cluster = connect(&b).await;
    let (pid, epoch) = open(&cluster, "cli-1", "t", &[0, 1]).await;
    open(&cluster, "cli-2", "t", &[0]).await;
    open(&cluster, "zz-1", "t", &[]).await;

    let b2 = b.clone();
    let out = tokio::task::spawn_blocking(move || {
        let list = ok(
            &run(&["txn", "list", "-b", &b2, "--prefix", "cli-"]),
            "txn list",
        );
        let ongoing = ok(
            &run(&["txn", "list", "-b", &b2, "--state", "Empty"]),
            "txn list --state",
        );
        let describe = ok(
            &run(&["txn", "describe", "-b", &b2, "cli-1"]),
            "txn describe",
        );
        let missing = run(&["txn", "describe", "-b", &b2, "nope"]);
        (list, ongoing, describe, missing)
    })
    .await
    .unwrap();
    let (list, ongoing, describe, missing) = out;
    let ids: Vec<&str> = list
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(ids, ["cli-1", "cli-2"], "{list}");
    assert!(list.lines().all(|l| l.contains("\tOngoing\t")), "{list}");
    assert_eq!(
        ongoing
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect::<Vec<_>>(),
        ["zz-1"]
    );
    assert!(describe.contains("state: Ongoing"), "{describe}");
    assert!(describe.contains("partitions: t-0, t-1"), "{describe}");
    assert!(
        describe.contains(&format!("producer id: {pid}")),
        "{describe}"
    );
    let err = assert_one_line_failure(&missing, 1);
    assert!(
        err.contains("unknown transactional id") && err.contains("nope"),
        "{err}"
    );

    let b2 = b.clone();
    let (complete, again, abort, fenced) = tokio::task::spawn_blocking(move || {
        let pid_s = pid.to_string();
        let epoch_s = epoch.to_string();
        let complete = txn_complete(&b2, "cli-1", &pid_s, &epoch_s, "--commit");
        let again = txn_complete(&b2, "cli-1", &pid_s, &epoch_s, "--abort");
        let abort = run(&["txn", "abort", "-b", &b2, "--prefix", "cli-"]);
        let fenced = txn_complete(&b2, "cli-2", &pid_s, "0", "--commit");
        (complete, again, abort, fenced)
    })
    .await
    .unwrap();
    ok(&complete, "txn complete --commit");
    assert!(common::stderr(&complete).contains("committed"));
    assert_eq!(state(&cluster, "cli-1").await.0, "CompleteCommit");
    let err = assert_one_line_failure(&again, 1);
    assert!(err.contains("INVALID_TXN_STATE"), "{err}");
    // Only cli-2 was still Ongoing.
    let aborted = ok(&abort, "txn abort --prefix");
    assert_eq!(aborted.lines().count(), 1, "{aborted}");
    assert!(aborted.starts_with("cli-2\tOngoing\t"), "{aborted}");
    assert_eq!(state(&cluster, "cli-2").await.0, "Empty");
    // cli-2's producer id is not cli-1's: the coordinator says so.
    let err = assert_one_line_failure(&fenced, 1);
    assert!(err.contains("INVALID_PRODUCER_ID_MAPPING"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_by_prefix_needs_list_transactions() {
    use krust_testkit::kafka_protocol::messages::ApiKey as FakeApi;
    let f = FakeCluster::with_config(
        ClusterConfig::new()
            .without_api(FakeApi::ListTransactions)
            .without_api(FakeApi::DescribeTransactions),
    )
    .await
    .unwrap();
    f.create_topic("t", 1, 1).unwrap();
    let b = f.bootstrap();
    let cluster = connect(&b).await;
    open(&cluster, "np-1", "t", &[0]).await;
    let out = tokio::task::spawn_blocking(move || {
        (
            run(&["txn", "abort", "-b", &b, "--prefix", "np-"]),
            run(&["txn", "abort", "-b", &b, "np-1"]),
        )
    })
    .await
    .unwrap();
    let err = assert_one_line_failure(&out.0, 1);
    assert!(
        err.contains("ListTransactions") && err.contains("naming their transactional ids"),
        "{err}"
    );
    let aborted = ok(&out.1, "txn abort by id");
    assert!(aborted.starts_with("np-1\t-\t"), "{aborted}");
}

/// The real broker: explicit ids and the resume work; the listing APIs are missing on tansu
/// (a clear error), and a fenced EndTxn gets its connection closed there (the error says the
/// outcome is unknown) where Kafka answers PRODUCER_FENCED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_on_real_broker() {
    let Some(b) = common::broker() else {
        return;
    };
    let s = suffix();
    let topic = format!("txn-admin-{s}");
    let admin = create_topic(&b, &topic).await;
    let cluster = connect(&b).await;

    let id = format!("resume-{s}");
    let (pid, epoch) = open(&cluster, &id, &topic, &[0, 1]).await;
    complete_transaction(&cluster, &id, pid, epoch, true)
        .await
        .expect("commit with the recorded identity");

    let id2 = format!("abort-{s}");
    let (pid2, epoch2) = open(&cluster, &id2, &topic, &[0]).await;
    let aborted = abort_transactions(&cluster, &[&id2]).await.unwrap();
    assert_eq!(aborted[0].producer_id, pid2);
    assert!(aborted[0].producer_epoch > epoch2, "{aborted:?}");
    // The old identity is fenced: Kafka says PRODUCER_FENCED, tansu closes the connection.
    let err = complete_transaction(&cluster, &id2, pid2, epoch2, true)
        .await
        .unwrap_err();
    let m = err.to_string();
    eprintln!("fenced EndTxn on the real broker: {m}");
    let fenced = matches!(
        err.code(),
        Some(ErrorCode::PRODUCER_FENCED) | Some(ErrorCode::INVALID_PRODUCER_EPOCH)
    );
    assert!(fenced || m.contains("outcome is unknown"), "{m}");

    match abort_lingering(&cluster, &format!("abort-{s}")).await {
        Ok(v) => assert!(v.is_empty(), "nothing is Ongoing any more: {v:?}"),
        Err(e) => assert!(e.to_string().contains("ListTransactions"), "{e}"),
    }
    admin.delete_topics(&[topic.as_str()]).await.ok();
}

/// A transactional producer that wrote `n` records in a transaction, flushed them, recorded its
/// identity and then stopped talking (as a crashed process does: no commit, no abort).
async fn prepared(bootstrap: &str, topic: &str, id: &str, n: usize) -> (i64, i16) {
    use krust_client::{Producer, ProducerConfig, ProducerRecord};
    let producer = Producer::new(ProducerConfig::new(bootstrap).with_transactional_id(id))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().await.unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        let rec = ProducerRecord::new(topic)
            .with_partition((i % 2) as i32)
            .with_value(format!("prepared-{i}"));
        acks.push(producer.send(rec).await.unwrap());
    }
    producer.flush().await;
    for a in acks {
        a.await.expect("record of the prepared transaction written");
    }
    let identity = producer.producer_id_and_epoch().expect("identity");
    // The process "dies" here: the producer never ends its transaction.
    std::mem::forget(producer);
    identity
}

/// Creates `topic` (2 partitions) on the broker at `b`; returns the admin client.
async fn create_topic(b: &str, topic: &str) -> krust_client::admin::Admin {
    let admin = krust_client::admin::Admin::connect(ClientConfig::new(b))
        .await
        .unwrap();
    admin
        .create_topics(&[krust_client::admin::NewTopic::new(topic, 2, 1)])
        .await
        .unwrap();
    admin
}

/// `krust txn complete` of transactional id `id` with the recorded producer id and epoch;
/// `outcome` is `--commit` or `--abort`.
fn txn_complete(b: &str, id: &str, pid: &str, epoch: &str, outcome: &str) -> std::process::Output {
    run(&[
        "txn",
        "complete",
        "-b",
        b,
        id,
        "--producer-id",
        pid,
        "--epoch",
        epoch,
        outcome,
    ])
}

fn read_committed(b: &str, topic: &str) -> Vec<String> {
    consume_sorted(b, topic, "read_committed")
}

async fn resume_after_crash(b: &str, topic: &str, s: &str, exact_abort: bool) {
    let n = 20;
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..n).map(|i| format!("prepared-{i}")).collect();
        v.sort();
        v
    };
    // Commit: the records appear to read_committed only after `krust txn complete --commit`.
    let id = format!("resume-commit-{s}");
    let (pid, epoch) = prepared(b, topic, &id, n).await;
    let (b2, t2) = (b.to_string(), topic.to_string());
    let (before, done, after) = tokio::task::spawn_blocking(move || {
        let before = read_committed(&b2, &t2);
        let done = txn_complete(&b2, &id, &pid.to_string(), &epoch.to_string(), "--commit");
        (before, done, read_committed(&b2, &t2))
    })
    .await
    .unwrap();
    assert!(before.is_empty(), "visible before the commit: {before:?}");
    ok(&done, "txn complete --commit");
    assert_eq!(after, want);

    // Abort: nothing of it is committed (exactly invisible where the broker filters).
    let id = format!("resume-abort-{s}");
    let (pid, epoch) = prepared(b, topic, &id, n).await;
    let (b2, t2) = (b.to_string(), topic.to_string());
    let (done, after) = tokio::task::spawn_blocking(move || {
        let done = txn_complete(&b2, &id, &pid.to_string(), &epoch.to_string(), "--abort");
        (done, read_committed(&b2, &t2))
    })
    .await
    .unwrap();
    ok(&done, "txn complete --abort");
    if exact_abort {
        assert_eq!(after, want, "only the committed transaction is visible");
    } else {
        // tansu returns aborted records to read_committed (no aborted list in Fetch).
        assert_eq!(after.len(), 2 * n, "{after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_a_crashed_producers_transaction_on_fake_cluster() {
    let f = fake(1).await;
    resume_after_crash(&f.bootstrap(), "t", "fake", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_a_crashed_producers_transaction_on_real_broker() {
    let Some(b) = common::broker() else {
        return;
    };
    let s = suffix();
    let topic = format!("txn-resume-{s}");
    let admin = create_topic(&b, &topic).await;
    resume_after_crash(&b, &topic, &s, false).await;
    admin.delete_topics(&[topic.as_str()]).await.ok();
}
