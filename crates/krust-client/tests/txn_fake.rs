//! The transactional producer against krust-testkit's fake cluster (its transaction
//! coordinator, classic and KIP-890): commit and abort round trips read back by a
//! `read_committed` consumer, coordinator and leader failures mid-transaction, a delayed
//! EndTxn, fencing, offsets in transactions (KIP-447), the no-abort-after-unknown-commit rule
//! and a seeded randomized run with connections cut.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use krust_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, StartOffset};
use krust_client::producer::{ProduceErrorKind, Producer, ProducerConfig, ProducerRecord};
use krust_client::ClientConfig;
use krust_testkit::kafka_protocol::messages::ApiKey as FakeApi;
use krust_testkit::{ClusterConfig, FakeCluster, TxnProtocol};

const T: Duration = Duration::from_secs(20);

async fn fake(cfg: ClusterConfig) -> FakeCluster {
    FakeCluster::with_config(cfg).await.expect("fake cluster")
}

fn client(fake: &FakeCluster) -> ClientConfig {
    let mut c = ClientConfig::new(&fake.bootstrap());
    c.request_timeout = Duration::from_secs(3);
    c.retry_backoff = Duration::from_millis(10);
    c.retry_backoff_max = Duration::from_millis(100);
    c.reconnect_backoff = Duration::from_millis(10);
    c.reconnect_backoff_max = Duration::from_millis(100);
    c
}

fn pconfig(fake: &FakeCluster, id: &str) -> ProducerConfig {
    let mut c = ProducerConfig {
        client: client(fake),
        linger: Duration::from_millis(2),
        ..ProducerConfig::default()
    };
    c.delivery_timeout = Duration::from_secs(10);
    c.with_transactional_id(id)
        .with_transaction_timeout(Duration::from_secs(20))
}

async fn producer(fake: &FakeCluster, id: &str) -> Producer {
    let p = Producer::new(pconfig(fake, id)).await.expect("producer");
    tokio::time::timeout(T, p.init_transactions())
        .await
        .expect("init in time")
        .expect("init_transactions");
    p
}

fn rec(topic: &str, partition: i32, value: String) -> ProducerRecord {
    ProducerRecord::new(topic)
        .with_partition(partition)
        .with_value(value)
}

/// Sends `values` round-robin over `partitions` of `topic` inside the open transaction and
/// waits for every delivery.
async fn send_all(p: &Producer, topic: &str, partitions: i32, values: &[String]) {
    let mut futs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let f = p
            .send(rec(topic, i as i32 % partitions, v.clone()))
            .await
            .expect("accepted");
        futs.push(f);
    }
    for f in futs {
        tokio::time::timeout(T, f)
            .await
            .expect("delivered in time")
            .expect("delivered");
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Waits until no transaction holds `topic`'s partitions open (LSO == high watermark).
async fn wait_stable(fake: &FakeCluster, topic: &str, partitions: i32) {
    let deadline = Instant::now() + T;
    loop {
        let stable = (0..partitions).all(|p| {
            let (_, hw, lso) = fake.offsets(topic, p).expect("partition");
            hw == lso
        });
        if stable {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: LSO never reached the HW"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything a `read_committed` consumer reads from `topic`, per partition, once no
/// transaction is open.
async fn read_committed(fake: &FakeCluster, topic: &str, partitions: i32) -> Vec<Vec<String>> {
    wait_stable(fake, topic, partitions).await;
    let cfg = ConsumerConfig {
        client: client(fake),
        fetch_max_wait: Duration::from_millis(20),
        ..ConsumerConfig::default()
    }
    .with_isolation_level(IsolationLevel::ReadCommitted)
    .with_partition_eof(true);
    let mut c = Consumer::connect(cfg).await.expect("consumer");
    let ends: Vec<i64> = (0..partitions)
        .map(|p| fake.offsets(topic, p).unwrap().2)
        .collect();
    c.assign((0..partitions).map(|p| {
        (
            krust_client::consumer::TopicPartition::new(topic, p),
            StartOffset::Earliest,
        )
    }))
    .await
    .expect("assign");
    let mut out = vec![Vec::new(); partitions as usize];
    let mut done = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + T;
    while done.len() < partitions as usize {
        let got = tokio::time::timeout_at(deadline, c.poll())
            .await
            .expect("read back in time")
            .expect("poll");
        for r in got {
            out[r.partition as usize]
                .push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into());
        }
        for tp in c.take_partition_eofs() {
            let _ = ends;
            done.insert(tp.partition);
        }
    }
    drop(c);
    out
}

/// Every data value in the log (aborted ones included), over all partitions.
fn raw_values(fake: &FakeCluster, topic: &str, partitions: i32) -> BTreeSet<String> {
    (0..partitions)
        .flat_map(|p| fake.records(topic, p).unwrap())
        .filter_map(|(_, v)| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// Each transaction (named by its value prefix) is either wholly visible or not at all, and
/// no value is visible twice. Returns the visible prefixes.
fn whole_transactions(
    read: &[Vec<String>],
    sent: &BTreeMap<String, Vec<String>>,
) -> BTreeSet<String> {
    let all: Vec<&String> = read.iter().flatten().collect();
    let set: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "a record is visible twice");
    let mut visible = BTreeSet::new();
    for (prefix, vals) in sent {
        let seen = vals.iter().filter(|v| set.contains(v)).count();
        assert!(
            seen == 0 || seen == vals.len(),
            "transaction {prefix} is torn: {seen} of {} records visible",
            vals.len()
        );
        if seen > 0 {
            visible.insert(prefix.clone());
        }
    }
    let known: usize = visible.iter().map(|p| sent[p].len()).sum();
    assert_eq!(known, all.len(), "visible records that no transaction sent");
    visible
}

async fn round_trip(protocol: TxnProtocol) {
    let fake = fake(
        ClusterConfig::new()
            .with_brokers(2)
            .with_topic("t", 2, 2)
            .with_txn_protocol(protocol),
    )
    .await;
    let p = producer(&fake, "rt").await;
    let (pid, epoch0) = p.producer_id_and_epoch().expect("identity after init");
    assert!(pid >= 0 && epoch0 >= 0);
    assert_eq!(p.transactional_id(), Some("rt"));

    // Outside a transaction a send is a usage error, and so is a commit.
    let e = p.send(rec("t", 0, "x".into())).await.unwrap_err();
    assert!(
        matches!(e.kind(), ProduceErrorKind::Transaction(m) if m.contains("begin_transaction")),
        "{e}"
    );
    let e = p.commit_transaction().await.unwrap_err();
    assert!(e.is_txn_usage(), "{e}");

    let mut sent = BTreeMap::new();
    for (k, commit) in [(1, true), (2, false), (3, true), (4, false), (5, true)] {
        let prefix = format!("txn{k}");
        let vals = values(&prefix, 10);
        p.begin_transaction().await.expect("begin");
        send_all(&p, "t", 2, &vals).await;
        if commit {
            p.commit_transaction().await.expect("commit");
        } else {
            p.abort_transaction().await.expect("abort");
        }
        sent.insert(prefix, vals);
    }
    let (pid2, epoch) = p.producer_id_and_epoch().unwrap();
    assert_eq!(pid2, pid);
    if protocol == TxnProtocol::Kip890 {
        assert!(
            epoch >= epoch0 + 5,
            "KIP-890 bumps the epoch per transaction: {epoch}"
        );
    } else {
        assert_eq!(epoch, epoch0, "classic keeps the epoch when nothing failed");
    }
    let read = read_committed(&fake, "t", 2).await;
    assert!(
        read.iter().all(|p| !p.is_empty()),
        "both partitions written"
    );
    let visible = whole_transactions(&read, &sent);
    assert_eq!(
        visible,
        ["txn1", "txn3", "txn5"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // The aborted records did reach the log: the consumer filtered them.
    let raw = raw_values(&fake, "t", 2);
    assert!(sent["txn2"].iter().all(|v| raw.contains(v)));
    // Offsets in order per partition: txn1 before txn3 before txn5.
    for part in &read {
        let prefixes: Vec<&str> = part.iter().map(|v| v.split('-').next().unwrap()).collect();
        let mut sorted = prefixes.clone();
        sorted.sort();
        assert_eq!(prefixes, sorted);
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_round_trip_classic() {
    round_trip(TxnProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_round_trip_kip890() {
    round_trip(TxnProtocol::Kip890).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_partitions_precedes_produce_and_is_batched() {
    let fake = fake(ClusterConfig::new().with_topic("t", 4, 1)).await;
    let p = producer(&fake, "order").await;
    fake.clear_request_log();
    p.begin_transaction().await.unwrap();
    let mut futs = Vec::new();
    for i in 0..40 {
        futs.push(p.send(rec("t", i % 4, format!("v{i}"))).await.unwrap());
    }
    for f in futs {
        f.await.unwrap();
    }
    p.commit_transaction().await.unwrap();
    let log = fake.request_log();
    let first_produce = log
        .iter()
        .position(|r| r.api_key == FakeApi::Produce)
        .expect("a produce");
    let adds: Vec<_> = log
        .iter()
        .enumerate()
        .filter(|(_, r)| r.api_key == FakeApi::AddPartitionsToTxn)
        .collect();
    assert!(
        !adds.is_empty() && adds[0].0 < first_produce,
        "add before produce"
    );
    assert!(
        adds.len() <= 2,
        "AddPartitionsToTxn is batched: {} requests",
        adds.len()
    );
    let end = log
        .iter()
        .position(|r| r.api_key == FakeApi::EndTxn)
        .unwrap();
    let last_produce = log
        .iter()
        .rposition(|r| r.api_key == FakeApi::Produce)
        .unwrap();
    assert!(end > last_produce, "EndTxn after every produce");
    p.close().await;
}
