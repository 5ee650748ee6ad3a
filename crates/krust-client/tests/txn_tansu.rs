//! The transactional producer against the real broker (`KRUST_BROKER`, tansu in
//! `scripts/test.sh`): commit and abort over two partitions read back with `read_committed`,
//! fencing by a second producer with the same transactional.id, and
//! `send_offsets_to_transaction` with a group.
//!
//! Tansu's Fetch never returns `aborted_transactions`, so a `read_committed` consumer cannot
//! filter aborted records there (the fake cluster's tests cover the filtering); these tests
//! assert what tansu does: committed transactions are whole and in order, the LSO holds
//! readers back while a transaction is open, and aborted records are in the log followed by
//! an abort marker.

mod consumer_common;
mod txn_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use consumer_common::{broker, client_config, create_topic, unique};
use krust_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, StartOffset};
use krust_client::producer::{
    GroupMetadata, OffsetAndMetadata, ProduceErrorKind, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};
use krust_client::Cluster;
use txn_common::{init, send_all, values};

const T: Duration = Duration::from_secs(30);

fn pconfig(broker: &str, id: &str) -> ProducerConfig {
    let c = ProducerConfig {
        client: client_config(broker),
        linger: Duration::from_millis(2),
        ..ProducerConfig::default()
    };
    c.with_transactional_id(id)
        .with_transaction_timeout(Duration::from_secs(30))
}

async fn producer(broker: &str, id: &str) -> Producer {
    init(Producer::new(pconfig(broker, id)).await.expect("producer")).await
}

/// Reads `topic` from the start until `n` records arrived (or `T` passed), per partition.
async fn read(
    broker: &str,
    topic: &str,
    partitions: i32,
    level: IsolationLevel,
    n: usize,
    within: Duration,
) -> Vec<Vec<String>> {
    let cfg = ConsumerConfig {
        client: client_config(broker),
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
    .with_isolation_level(level);
    let mut c = Consumer::connect(cfg).await.expect("consumer");
    c.assign((0..partitions).map(|p| {
        (
            krust_client::consumer::TopicPartition::new(topic, p),
            StartOffset::Earliest,
        )
    }))
    .await
    .expect("assign");
    let mut out = vec![Vec::new(); partitions as usize];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + within;
    while got < n {
        let Ok(batch) = tokio::time::timeout_at(deadline, c.poll()).await else {
            break;
        };
        for r in batch.expect("poll") {
            out[r.partition as usize]
                .push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into());
            got += 1;
        }
    }
    out
}

/// Committed transactions are whole (all or none of their values visible), each value once,
/// in order per partition. Returns the prefixes seen.
fn whole(read: &[Vec<String>], sent: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let all: Vec<&String> = read.iter().flatten().collect();
    let set: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "a record is visible twice");
    let mut seen = BTreeSet::new();
    for (prefix, vals) in sent {
        let n = vals.iter().filter(|v| set.contains(v)).count();
        assert!(
            n == 0 || n == vals.len(),
            "{prefix}: {n} of {} visible",
            vals.len()
        );
        if n > 0 {
            seen.insert(prefix.clone());
        }
    }
    for part in read {
        let idx: Vec<usize> = part
            .iter()
            .map(|v| {
                sent.keys()
                    .position(|k| v.starts_with(&format!("{k}-")))
                    .expect("a known value")
            })
            .collect();
        let mut sorted = idx.clone();
        sorted.sort();
        assert_eq!(idx, sorted, "transactions out of order in a partition");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort() {
    let Some(broker) = broker() else { return };
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let topic = unique("txn-rt");
    create_topic(&cluster, &topic, 2).await;
    let id = unique("txn-rt-id");
    let p = producer(&broker, &id).await;
    assert!(p
        .producer_id_and_epoch()
        .is_some_and(|(pid, e)| pid >= 0 && e >= 0));

    let mut sent = BTreeMap::new();
    // "a" (committed), "b" (aborted), "c" (committed); names sort in send order.
    for (prefix, commit) in [("a", true), ("b", false), ("c", true)] {
        let vals = values(prefix, 10);
        p.begin_transaction().await.unwrap();
        send_all(&p, &topic, 2, &vals).await;
        if prefix == "a" {
            // While "a" is open, read_committed sees nothing of it (the LSO holds).
            // (An absence: bounded by a short wait, as nothing can be awaited.)
            let early = read(
                &broker,
                &topic,
                2,
                IsolationLevel::ReadCommitted,
                1,
                Duration::from_secs(1),
            )
            .await;
            assert!(early.iter().all(|p| p.is_empty()), "{early:?}");
        }
        if commit {
            p.commit_transaction().await.unwrap();
        } else {
            p.abort_transaction().await.unwrap();
        }
        sent.insert(prefix.to_string(), vals);
    }
    // Every record is in the log (read_uncommitted): the aborted ones reached the broker.
    let raw = read(&broker, &topic, 2, IsolationLevel::ReadUncommitted, 30, T).await;
    assert_eq!(raw.iter().map(Vec::len).sum::<usize>(), 30);
    let committed = read(&broker, &topic, 2, IsolationLevel::ReadCommitted, 30, T).await;
    let seen = whole(&committed, &sent);
    assert!(seen.contains("a") && seen.contains("c"), "{seen:?}");
    if seen.contains("b") {
        // Tansu's Fetch carries no aborted_transactions: the aborted transaction cannot be
        // filtered (a broker limitation, see /work/shared/broker/NOTES.md).
        eprintln!("tansu: aborted records visible to read_committed (no aborted_transactions)");
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_producer_fences_the_first() {
    let Some(broker) = broker() else { return };
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let topic = unique("txn-fence");
    create_topic(&cluster, &topic, 2).await;
    let id = unique("txn-fence-id");
    let old = producer(&broker, &id).await;
    old.begin_transaction().await.unwrap();
    send_all(&old, &topic, 2, &values("old", 4)).await;

    let new = producer(&broker, &id).await;
    // The old producer's next record is refused (tansu: PRODUCER_FENCED on Produce); the
    // producer is then unusable and its commit fails with a fatal fenced error.
    let late = old
        .send(
            ProducerRecord::new(&topic)
                .with_partition(0)
                .with_value("late"),
        )
        .await
        .expect("accepted")
        .await
        .expect_err("a fenced producer's record fails");
    assert!(
        matches!(
            late.kind(),
            ProduceErrorKind::Broker { .. } | ProduceErrorKind::Fatal(_)
        ),
        "{late}"
    );
    let e = old.commit_transaction().await.unwrap_err();
    assert!(e.is_fatal() && e.is_fenced(), "{e}");
    assert!(old.begin_transaction().await.unwrap_err().is_fatal());

    new.begin_transaction().await.unwrap();
    let vals = values("new", 6);
    send_all(&new, &topic, 2, &vals).await;
    new.commit_transaction().await.unwrap();
    // The 4 aborted records of the old producer may be visible on tansu (see the module
    // docs): read until the 6 new ones are there, 10 records at most.
    let mut got = read(&broker, &topic, 2, IsolationLevel::ReadCommitted, 6, T).await;
    if !vals.iter().all(|v| got.iter().flatten().any(|g| g == v)) {
        got = read(&broker, &topic, 2, IsolationLevel::ReadCommitted, 10, T).await;
    }
    let got: BTreeSet<&String> = got.iter().flatten().collect();
    assert!(
        vals.iter().all(|v| got.contains(v)),
        "the new producer's records"
    );
    assert!(
        !got.iter().any(|v| v.as_str() == "late"),
        "the fenced record"
    );
    old.close().await;
    new.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_offsets_with_a_group() {
    let Some(broker) = broker() else { return };
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let input = unique("txn-in");
    let output = unique("txn-out");
    create_topic(&cluster, &input, 1).await;
    create_topic(&cluster, &output, 1).await;
    let group_id = unique("txn-group");
    let group = GroupMetadata {
        group_id: group_id.clone(),
        generation_id: -1,
        member_id: String::new(),
        instance_id: None,
    };
    let tp = TopicPartition::new(input.as_str(), 0);
    let committed = || async {
        krust_client::group::fetch_committed(&cluster, &group_id, std::slice::from_ref(&tp), false)
            .await
            .expect("offset fetch")
            .get(&tp)
            .cloned()
            .flatten()
            .map(|o| o.offset)
    };
    let p = producer(&broker, &unique("txn-off-id")).await;
    let offsets = |o: i64| BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(o))]);

    p.begin_transaction().await.unwrap();
    send_all(&p, &output, 1, &values("x", 3)).await;
    p.send_offsets_to_transaction(offsets(3), &group)
        .await
        .unwrap();
    p.abort_transaction().await.unwrap();
    assert_eq!(committed().await, None, "aborted: no offset");

    p.begin_transaction().await.unwrap();
    send_all(&p, &output, 1, &values("y", 3)).await;
    p.send_offsets_to_transaction(offsets(7), &group)
        .await
        .unwrap();
    p.commit_transaction().await.unwrap();
    assert_eq!(committed().await, Some(7), "committed with the transaction");
    p.close().await;
}
