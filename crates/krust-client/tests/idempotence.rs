//! The idempotent producer under faults (issue 5): on the fake cluster (scenarios 1 to 6) and
//! against tansu through the fault proxy (scenario 7).
//!
//! Every record carries a sequence field (`<partition>:<k>`, `k` counting per partition from 0),
//! so the log of each partition is checked for duplicates (a `k` twice), reorders (a smaller `k`
//! after a larger one) and loss (a record reported [`Persistence::Persisted`] that is not in the
//! log). Every test also proves its fault happened, from the fake's request log or the proxy's
//! counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use krust_client::producer::{
    DeliveryFuture, Persistence, ProduceErrorKind, Producer, ProducerConfig, ProducerRecord,
};
use krust_testkit::kafka_protocol::messages::ApiKey;
use krust_testkit::{errors, Action, ClusterConfig, FakeCluster, Intercept};

fn config(bootstrap: &str) -> ProducerConfig {
    if std::env::var("KRUST_TEST_TRACE").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    }
    let mut c = ProducerConfig::new(bootstrap);
    c.client.request_timeout = Duration::from_millis(2000);
    c.client.retry_backoff = Duration::from_millis(5);
    c.client.retry_backoff_max = Duration::from_millis(100);
    c.delivery_timeout = Duration::from_secs(60);
    c.linger = Duration::from_millis(2);
    c
}

/// Sends `<p>:<k>` records, `k` per partition, round-robin over partitions.
struct Sender {
    topic: String,
    partitions: i32,
    next: Vec<u64>,
    sent: Vec<(i32, u64, DeliveryFuture)>,
}

impl Sender {
    fn new(topic: &str, partitions: i32) -> Self {
        Sender {
            topic: topic.into(),
            partitions,
            next: vec![0; partitions as usize],
            sent: Vec::new(),
        }
    }

    async fn send_to(&mut self, producer: &Producer, p: i32) {
        let k = self.next[p as usize];
        self.next[p as usize] += 1;
        let f = producer
            .send(
                ProducerRecord::new(self.topic.clone())
                    .with_partition(p)
                    .with_value(format!("{p}:{k}")),
            )
            .await
            .expect("accepted");
        self.sent.push((p, k, f));
    }

    async fn send(&mut self, producer: &Producer, i: u64) {
        self.send_to(producer, (i % self.partitions as u64) as i32)
            .await
    }

    /// Awaits every result: (partition, k) -> persistence.
    async fn results(&mut self) -> BTreeMap<(i32, u64), Persistence> {
        let mut out = BTreeMap::new();
        for (p, k, f) in self.sent.drain(..) {
            let r = f.await;
            if let Err(e) = &r {
                assert!(
                    !matches!(e.kind(), ProduceErrorKind::Fatal(_)),
                    "fatal error: {e}"
                );
            }
            out.insert((p, k), Persistence::of(&r));
        }
        out
    }
}

/// Per-partition `k`s in log order, from `<p>:<k>` values.
fn log_ks(values: impl IntoIterator<Item = Option<bytes::Bytes>>, p: i32) -> Vec<u64> {
    values
        .into_iter()
        .map(|v| {
            let v = String::from_utf8(v.expect("value").to_vec()).unwrap();
            let (pp, k) = v.split_once(':').unwrap();
            assert_eq!(pp.parse::<i32>().unwrap(), p, "record {v} in partition {p}");
            k.parse().unwrap()
        })
        .collect()
}

/// Checks one partition's log against the delivery results: no duplicate, no reorder, every
/// `Persisted` record present, no `NotPersisted` record present. Returns (duplicates,
/// reorders, lost) for the report (all asserted zero).
fn check_partition(p: i32, ks: &[u64], results: &BTreeMap<(i32, u64), Persistence>) -> usize {
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    let mut reorders = 0;
    for w in ks.windows(2) {
        if w[1] <= w[0] {
            reorders += 1;
        }
    }
    for k in ks {
        if !seen.insert(*k) {
            dups += 1;
        }
    }
    let mut lost = 0;
    let mut phantom = 0;
    for ((pp, k), st) in results.range((p, 0)..(p, u64::MAX)) {
        assert_eq!(*pp, p);
        match st {
            Persistence::Persisted if !seen.contains(k) => lost += 1,
            Persistence::NotPersisted if seen.contains(k) => phantom += 1,
            _ => {}
        }
    }
    assert_eq!(
        (dups, reorders, lost, phantom),
        (0, 0, 0, 0),
        "partition {p}: duplicates, reorders, acknowledged records lost, NotPersisted records \
         found in the log"
    );
    ks.len()
}

fn check_fake(
    cluster: &FakeCluster,
    topic: &str,
    partitions: i32,
    results: &BTreeMap<(i32, u64), Persistence>,
) -> usize {
    (0..partitions)
        .map(|p| {
            let ks = log_ks(
                cluster
                    .records(topic, p)
                    .unwrap()
                    .into_iter()
                    .map(|(_, v)| v),
                p,
            );
            check_partition(p, &ks, results)
        })
        .sum()
}

fn count(results: &BTreeMap<(i32, u64), Persistence>, st: Persistence) -> usize {
    results.values().filter(|s| **s == st).count()
}

/// Distinct producer identities (id, epoch) in the Produce request log for `topic`.
fn identities(cluster: &FakeCluster, topic: &str) -> BTreeSet<(i64, i16)> {
    cluster
        .requests_of(ApiKey::Produce)
        .iter()
        .flat_map(|r| r.batches.iter())
        .filter(|b| b.topic == topic)
        .map(|b| (b.producer_id, b.producer_epoch))
        .collect()
}

/// Asserts one producer id, and `epochs` epochs of it (1: no reset).
fn assert_epochs(cluster: &FakeCluster, topic: &str, epochs: usize) {
    let ids = identities(cluster, topic);
    let pids: BTreeSet<i64> = ids.iter().map(|x| x.0).collect();
    assert_eq!(pids.len(), 1, "{ids:?}");
    assert_eq!(ids.len(), epochs, "{ids:?}");
}

fn records_env(default: u64) -> u64 {
    std::env::var("KRUST_IDEMPOTENCE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for fault schedules.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Scenario 1: 8 partitions, 5 in flight, 1 in 20 Produce requests answered by a dropped
/// connection, random RTT 0–200 ms on every Produce, a leader move every 2 s (and every 40
/// Produce requests, so short runs move leaders too). 100,000 records by default
/// (`KRUST_IDEMPOTENCE_RECORDS=1000000` for the full run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_dropped_connections_rtt_and_leader_moves() {
    let n = records_env(100_000);
    let cluster = FakeCluster::start(3).await.unwrap();
    cluster.create_topic("s1", 8, 3).unwrap();
    let closes = Arc::new(AtomicU64::new(0));
    let moves = Arc::new(AtomicU64::new(0));
    let (c2, m2, weak) = (closes.clone(), moves.clone(), cluster.downgrade());
    let mut i = 0u64;
    cluster.intercept(Intercept::api(ApiKey::Produce), move |req| {
        i += 1;
        let r = mix(i);
        let rtt = Duration::from_millis(r % 201);
        if i.is_multiple_of(40) {
            if let Some(c) = weak.upgrade() {
                let p = ((r >> 20) % 8) as i32;
                let (leader, _) = c.leader("s1", p).unwrap();
                c.move_leader("s1", p, (leader + 1) % 3);
                m2.fetch_add(1, Ordering::Relaxed);
            }
        }
        if (r >> 8).is_multiple_of(20) {
            c2.fetch_add(1, Ordering::Relaxed);
            return Some(Action::DelayThen(rtt, Box::new(Action::Close)));
        }
        let _ = req;
        Some(Action::Delay(rtt))
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (c, stop, moves) = (cluster.clone(), stop.clone(), moves.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                k += 1;
                let p = (mix(k) % 8) as i32;
                let (leader, _) = c.leader("s1", p).unwrap();
                c.move_leader("s1", p, (leader + 1) % 3);
                moves.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut cfg = config(&cluster.bootstrap());
    cfg.max_in_flight = 5;
    cfg.batch_size = 4096; // ~200 records a batch: hundreds of requests to fault
    cfg.delivery_timeout = Duration::from_secs(300);
    let producer = Producer::new(cfg).await.unwrap();
    assert!(producer.config().idempotence());
    let started = Instant::now();
    let mut s = Sender::new("s1", 8);
    for i in 0..n {
        s.send(&producer, i).await;
    }
    let results = s.results().await;
    let elapsed = started.elapsed();
    producer.close().await;
    stop.store(true, Ordering::Relaxed);
    mover.abort();
    cluster.clear_hooks();
    let in_log = check_fake(&cluster, "s1", 8, &results);
    let persisted = count(&results, Persistence::Persisted);
    let stats = producer.stats();
    println!(
        "s1: {n} records in {elapsed:?}: {persisted} persisted, {in_log} in the log, {} \
         dropped connections, {} leader moves, {} produce requests, {} retried batches",
        closes.load(Ordering::Relaxed),
        moves.load(Ordering::Relaxed),
        stats.requests_sent,
        stats.retries,
    );
    assert_eq!(persisted as u64, n, "every record Persisted");
    assert_eq!(in_log as u64, n);
    assert!(
        closes.load(Ordering::Relaxed) > 0,
        "connections were dropped"
    );
    assert!(moves.load(Ordering::Relaxed) > 0, "leaders moved");
}

/// Scenario 2: the lost acknowledgement (request applied, response dropped, connection
/// closed), 100 times: the retried batch is answered as a duplicate, never written twice.
#[tokio::test]
async fn s2_lost_acknowledgement_100_times() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s2", 1, 1).unwrap();
    let producer = Producer::new(config(&cluster.bootstrap())).await.unwrap();
    let mut s = Sender::new("s2", 1);
    for _ in 0..100 {
        cluster.drop_response_next(ApiKey::Produce);
        s.send_to(&producer, 0).await;
        let r = s.results().await;
        assert!(r.values().all(|p| *p == Persistence::Persisted), "{r:?}");
    }
    producer.close().await;
    let ks = log_ks(
        cluster
            .records("s2", 0)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v),
        0,
    );
    assert_eq!(
        ks,
        (0..100).collect::<Vec<_>>(),
        "each record once, in order"
    );
    // Proof: every batch was sent twice with the same identity and sequence.
    let log = cluster.requests_of(ApiKey::Produce);
    let mut per_seq: BTreeMap<(i64, i32), usize> = BTreeMap::new();
    for b in log.iter().flat_map(|r| r.batches.iter()) {
        *per_seq.entry((b.producer_id, b.base_sequence)).or_default() += 1;
    }
    assert_eq!(per_seq.len(), 100, "{per_seq:?}");
    assert!(per_seq.values().all(|n| *n == 2), "{per_seq:?}");
    assert_epochs(&cluster, "s2", 1);
}

/// Sends `n` records to one partition with a fault hook installed after `warm` records.
async fn one_partition_run(
    cluster: &FakeCluster,
    topic: &str,
    n: u64,
) -> BTreeMap<(i32, u64), Persistence> {
    let mut cfg = config(&cluster.bootstrap());
    cfg.batch_size = 200; // a few records per batch: many batches in flight
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new(topic, 1);
    for _ in 0..n {
        s.send_to(&producer, 0).await;
    }
    let r = match tokio::time::timeout(Duration::from_secs(20), s.results()).await {
        Ok(r) => r,
        Err(_) => {
            for r in cluster.requests_of(ApiKey::Produce) {
                eprintln!("{:?} {:?}", r.at, r.batches);
            }
            panic!("stuck");
        }
    };
    producer.close().await;
    r
}

/// Scenario 3a: UNKNOWN_PRODUCER_ID at the head of the line (the first Produce): drained, a
/// fresh producer id, re-sent; nothing fails.
#[tokio::test]
async fn s3_unknown_producer_id_at_head_of_line() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s3a", 1, 1).unwrap();
    cluster.fail_next(ApiKey::Produce, errors::UNKNOWN_PRODUCER_ID);
    let r = one_partition_run(&cluster, "s3a", 300).await;
    assert_eq!(count(&r, Persistence::Persisted), 300, "{r:?}");
    assert_eq!(check_fake(&cluster, "s3a", 1, &r), 300);
    assert_epochs(&cluster, "s3a", 2); // reset: epoch bump
    assert_eq!(cluster.requests_of(ApiKey::InitProducerId).len(), 1);
}

/// Scenario 3b: OUT_OF_ORDER_SEQUENCE_NUMBER behind the head of the line: the batch before it
/// fails retriably (not written), the one behind gets OUT_OF_ORDER; both are retried in order
/// under the same identity (no reset), nothing fails.
#[tokio::test]
async fn s3_out_of_order_behind_head_of_line() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s3b", 1, 1).unwrap();
    cluster.set_rtt(0, Duration::from_millis(30));
    let mut i = 0;
    let injected = Arc::new(AtomicU64::new(0));
    let inj = injected.clone();
    cluster.intercept(Intercept::api(ApiKey::Produce), move |_req| {
        i += 1;
        match i {
            // Requests 1 to 5 are the first pipelined burst (5 in flight).
            2 => {
                inj.fetch_add(1, Ordering::Relaxed);
                Some(Action::Error(errors::NOT_ENOUGH_REPLICAS))
            }
            3 => {
                inj.fetch_add(1, Ordering::Relaxed);
                Some(Action::Error(errors::OUT_OF_ORDER_SEQUENCE_NUMBER))
            }
            _ => None,
        }
    });
    let r = one_partition_run(&cluster, "s3b", 300).await;
    assert_eq!(injected.load(Ordering::Relaxed), 2);

    assert_eq!(count(&r, Persistence::Persisted), 300, "{r:?}");
    assert_eq!(check_fake(&cluster, "s3b", 1, &r), 300);
    assert_epochs(&cluster, "s3b", 1); // no reset behind the line
                                       // Proof: the 2nd and 3rd requests' batches were sent again with the same sequences.
    let log = cluster.requests_of(ApiKey::Produce);
    let seq = |i: usize| log[i].batches[0].base_sequence;
    let resent: Vec<i32> = log[5..]
        .iter()
        .map(|r| r.batches[0].base_sequence)
        .collect();
    assert!(
        resent.contains(&seq(1)) && resent.contains(&seq(2)),
        "{resent:?}"
    );
}

/// Scenario 3c: OUT_OF_ORDER_SEQUENCE_NUMBER at the head of the line: reset (fresh id),
/// re-sent, nothing fails.
#[tokio::test]
async fn s3_out_of_order_at_head_of_line() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s3c", 1, 1).unwrap();
    let mut i = 0;
    cluster.intercept(Intercept::api(ApiKey::Produce).once(), move |_req| {
        i += 1;
        (i == 3).then_some(Action::Error(errors::OUT_OF_ORDER_SEQUENCE_NUMBER))
    });
    let r = one_partition_run(&cluster, "s3c", 300).await;
    assert_eq!(count(&r, Persistence::Persisted), 300, "{r:?}");
    assert_eq!(check_fake(&cluster, "s3c", 1, &r), 300);
    assert_epochs(&cluster, "s3c", 2);
}

/// Scenario 3d: the broker really forgets the producer (as after retention) while records flow:
/// UNKNOWN_PRODUCER_ID from the fake's own sequence check, possibly behind other in-flight
/// batches; drained, reset, nothing fails.
#[tokio::test]
async fn s3_broker_forgets_the_producer() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s3d", 1, 1).unwrap();
    cluster.set_rtt(0, Duration::from_millis(10));
    let weak = cluster.downgrade();
    let mut i = 0;
    cluster.intercept(Intercept::api(ApiKey::Produce), move |_req| {
        i += 1;
        if i == 4 {
            let c = weak.upgrade()?;
            let pid = c
                .requests_of(ApiKey::Produce)
                .iter()
                .flat_map(|r| r.batches.iter())
                .map(|b| b.producer_id)
                .next()?;
            c.forget_producer("s3d", 0, pid);
        }
        None
    });
    let r = one_partition_run(&cluster, "s3d", 300).await;
    cluster.clear_hooks();
    assert_eq!(count(&r, Persistence::Persisted), 300, "{r:?}");
    assert_eq!(check_fake(&cluster, "s3d", 1, &r), 300);
    assert_epochs(&cluster, "s3d", 2);
}

/// Scenario 4: sequences start near i32::MAX and wrap to 0 without error or duplicate.
#[tokio::test]
async fn s4_sequence_wraps_at_i32_max() {
    let first = i32::MAX - 40;
    let cluster = FakeCluster::with_config(
        ClusterConfig::new()
            .with_brokers(1)
            .with_first_sequence(first),
    )
    .await
    .unwrap();
    cluster.create_topic("s4", 2, 1).unwrap();
    let mut cfg = config(&cluster.bootstrap());
    cfg.first_sequence = first;
    cfg.batch_size = 200;
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new("s4", 2);
    for i in 0..400 {
        s.send(&producer, i).await;
    }
    let r = s.results().await;
    producer.close().await;
    assert_eq!(count(&r, Persistence::Persisted), 400, "{r:?}");
    assert_eq!(check_fake(&cluster, "s4", 2, &r), 400);
    let seqs: Vec<i32> = cluster
        .requests_of(ApiKey::Produce)
        .iter()
        .flat_map(|r| r.batches.iter())
        .filter(|b| b.partition == 0)
        .map(|b| b.base_sequence)
        .collect();
    assert_eq!(seqs[0], first);
    assert!(seqs.iter().any(|s| *s > i32::MAX - 10), "{seqs:?}");
    assert!(
        seqs.iter().any(|s| (0..100).contains(s)),
        "wrapped: {seqs:?}"
    );
    assert_epochs(&cluster, "s4", 1);
}

/// Scenario 5: the topic disappears from metadata for 10 s while records are produced, then
/// comes back: the partitions keep their sequence state (no reset, same id, contiguous
/// sequences) and nothing is lost (librdkafka 1.9.0's bug).
#[tokio::test]
async fn s5_partition_missing_from_metadata_for_10s() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s5", 2, 1).unwrap();
    let mut cfg = config(&cluster.bootstrap());
    cfg.delivery_timeout = Duration::from_secs(40);
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new("s5", 2);
    for i in 0..100 {
        s.send(&producer, i).await;
    }
    let mut r = s.results().await;
    let before_md = cluster.requests_of(ApiKey::Metadata).len();
    cluster.hide_topic("s5", Some(Duration::from_secs(10)));
    let hidden_at = Instant::now();
    // Records sent while it is hidden wait, retry, and go once it is back.
    for i in 100..200 {
        s.send(&producer, i).await;
    }
    r.extend(s.results().await);
    assert!(
        hidden_at.elapsed() >= Duration::from_secs(9),
        "waited for the topic"
    );
    producer.close().await;
    assert_eq!(count(&r, Persistence::Persisted), 200, "{r:?}");
    assert_eq!(check_fake(&cluster, "s5", 2, &r), 200);
    assert!(
        cluster.requests_of(ApiKey::Metadata).len() > before_md + 1,
        "the client looked the topic up while it was hidden"
    );
    assert_epochs(&cluster, "s5", 1); // state kept, no reset
    for p in 0..2 {
        let mut expect = 0;
        for b in cluster
            .requests_of(ApiKey::Produce)
            .iter()
            .flat_map(|r| r.batches.iter())
            .filter(|b| b.partition == p)
        {
            assert!(b.base_sequence <= expect, "no gap: {b:?}");
            expect = expect.max(b.base_sequence + b.record_count);
        }
        assert_eq!(expect, 100, "partition {p}: contiguous sequences");
    }
}

/// Scenario 6: a stall longer than the delivery timeout (Produce requests held by the broker
/// for 6 s, then applied; the client's request timeout is 1 s and its delivery timeout 3 s).
/// Results are truthful (a `NotPersisted` record is never in the log, `Persisted` always is)
/// and records sent after the stall are never deduplicated away (franz-go #1217's shape).
#[tokio::test]
async fn s6_delivery_timeout_shorter_than_a_stall() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s6", 2, 1).unwrap();
    let mut cfg = config(&cluster.bootstrap());
    cfg.client.request_timeout = Duration::from_millis(1000);
    cfg.delivery_timeout = Duration::from_millis(3000);
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new("s6", 2);
    for i in 0..50 {
        s.send(&producer, i).await;
    }
    let mut r = s.results().await;
    // The stall: every Produce is held 6 s and then applied.
    let held = Arc::new(AtomicU64::new(0));
    let h2 = held.clone();
    let hook = cluster.intercept(Intercept::api(ApiKey::Produce), move |_| {
        h2.fetch_add(1, Ordering::Relaxed);
        Some(Action::Delay(Duration::from_secs(6)))
    });
    for i in 50..150 {
        s.send(&producer, i).await;
    }
    let stalled = s.results().await;
    cluster.remove_hook(hook);
    assert!(held.load(Ordering::Relaxed) > 0, "requests were held");
    assert!(
        stalled.values().all(|p| *p != Persistence::Persisted),
        "nothing acknowledged during the stall"
    );
    let possibly = count(&stalled, Persistence::PossiblyPersisted);
    assert!(
        possibly > 0,
        "requests in flight at expiry are possibly persisted"
    );
    r.extend(stalled);
    // After the stall: later records must all land, none taken for a duplicate.
    for i in 150..250 {
        s.send(&producer, i).await;
    }
    let after = s.results().await;
    assert_eq!(count(&after, Persistence::Persisted), 100, "{after:?}");
    r.extend(after);
    producer.close().await;
    // The held requests are applied (or refused: old epoch) 6 s after they arrived. The producer
    // is closed, so once the fake has finished serving every connection (held requests and
    // whatever was queued behind them included) the log is final.
    tokio::time::timeout(Duration::from_secs(30), cluster.wait_for_no_connections())
        .await
        .expect("the fake finishes the held requests and every connection closes");
    assert!(
        identities(&cluster, "s6").len() >= 2,
        "reset after the expiry"
    );
    check_fake(&cluster, "s6", 2, &r);
    println!(
        "s6: {} persisted, {} possibly persisted, {} not persisted, {} held requests",
        count(&r, Persistence::Persisted),
        count(&r, Persistence::PossiblyPersisted),
        count(&r, Persistence::NotPersisted),
        held.load(Ordering::Relaxed)
    );
}

/// A fatal error (PRODUCER_FENCED) stops the producer: every pending record and every later
/// one fails with a clear error saying so; nothing hangs.
#[tokio::test]
async fn fatal_error_fails_every_pending_record() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("fatal", 2, 1).unwrap();
    cluster.set_rtt(0, Duration::from_millis(20));
    let mut cfg = config(&cluster.bootstrap());
    cfg.batch_size = 200;
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new("fatal", 2);
    s.send(&producer, 0).await;
    assert!(s
        .results()
        .await
        .values()
        .all(|p| *p == Persistence::Persisted));
    cluster.fail_next(ApiKey::Produce, errors::PRODUCER_FENCED);
    let mut futs = Vec::new();
    for i in 0..200 {
        futs.push(
            producer
                .send(
                    ProducerRecord::new("fatal")
                        .with_partition(i % 2)
                        .with_value(format!("{}:x", i % 2)),
                )
                .await
                .unwrap(),
        );
    }
    let mut fatal = 0;
    for f in futs {
        let r = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("no record hangs");
        if let Err(e) = r {
            if matches!(e.kind(), ProduceErrorKind::Fatal(m) if m.contains("PRODUCER_FENCED")) {
                fatal += 1;
            }
        }
    }
    assert!(fatal > 0, "records failed with the fatal error");
    // Later records fail at once, with the same reason.
    let later = producer
        .send(
            ProducerRecord::new("fatal")
                .with_partition(0)
                .with_value("0:y"),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(later.kind(), ProduceErrorKind::Fatal(_)),
        "{later}"
    );
    assert_eq!(later.persistence(), Persistence::NotPersisted);
    assert!(later.to_string().contains("PRODUCER_FENCED"), "{later}");
    tokio::time::timeout(Duration::from_secs(10), producer.close())
        .await
        .expect("close does not hang");
    assert!(
        cluster.requests_of(ApiKey::Produce).len() >= 2,
        "the fenced request was sent"
    );
}

// ---------------------------------------------------------------------------- tansu

use krust_testkit::real_broker as broker;

mod producer_common;
use producer_common::read_partition;

async fn tansu_create_topic(cluster: &krust_client::Cluster, topic: &str, partitions: i32) {
    use krust_testkit::kafka_protocol::messages::create_topics_request::CreatableTopic;
    use krust_testkit::kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use krust_testkit::kafka_protocol::protocol::StrBytes;
    let (_, _, resp) = cluster
        .send_any(|_v| {
            CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)])
        })
        .await
        .expect("CreateTopics");
    for t in resp.topics {
        assert!(
            t.error_code == 0 || t.error_code == 36,
            "create: {}",
            t.error_code
        );
    }
}

/// A tansu process of this test's own, advertising the proxy's address (so the producer's every
/// connection goes through the proxy); killed on drop.
struct OwnTansu(std::process::Child);

impl Drop for OwnTansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu_binary() -> std::path::PathBuf {
    if let Ok(b) = std::env::var("TANSU_BIN") {
        return b.into();
    }
    let cache = std::env::var("KRUST_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/krust")
        });
    let bin = cache.join("tansu/bin/tansu");
    assert!(
        bin.exists(),
        "{} missing: run scripts/broker.sh start once (it installs tansu)",
        bin.display()
    );
    bin
}

/// Scenario 7: tansu through the fault proxy in chaos mode (every connection is reset after
/// 500–1500 ms) for 100,000 records over 4 partitions: 0 duplicates, 0 reorders, 0 acknowledged
/// records lost. Runs when `KRUST_BROKER` is set (the signal that a tansu is installed; this
/// test starts its own on a free port, advertising the proxy); skipped with a notice otherwise,
/// unless `CI=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_tansu_through_the_chaos_proxy() {
    let Some(_broker) = broker() else { return };
    let n = records_env(100_000);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = krust_testkit::FaultProxy::start(upstream).await.unwrap();
    let _tansu = OwnTansu(
        std::process::Command::new(tansu_binary())
            .args(["broker", "--listener-url", &format!("tcp://{upstream}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://{}", proxy.addr()),
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu"),
    );
    let bootstrap = proxy.addr().to_string();
    // Set-up with chaos off (a reset mid-CreateTopics is not what is tested).
    let admin = loop {
        match krust_client::Cluster::connect(krust_client::ClientConfig::new(&bootstrap)).await {
            Ok(c) => break c,
            Err(_) => tokio::task::yield_now().await,
        }
    };
    let topic = "krust-idem-chaos";
    tansu_create_topic(&admin, topic, 4).await;
    proxy.set_chaos(true);
    // Small batches and a little latency: the run lasts several connection lifetimes.
    proxy.set_latency(Duration::from_millis(10));
    let mut cfg = config(&bootstrap);
    cfg.batch_size = 1024;
    cfg.client.request_timeout = Duration::from_secs(5);
    cfg.delivery_timeout = Duration::from_secs(300);
    let producer = Producer::new(cfg).await.unwrap();
    let started = Instant::now();
    let mut s = Sender::new(topic, 4);
    for i in 0..n {
        s.send(&producer, i).await;
    }
    let results = s.results().await;
    let elapsed = started.elapsed();
    producer.close().await;
    proxy.set_chaos(false);
    let stats = proxy.stats();
    let reader = krust_client::Cluster::connect(krust_client::ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    let mut in_log = 0;
    for p in 0..4 {
        let ks = log_ks(
            read_partition(&reader, topic, p)
                .await
                .into_iter()
                .map(|r| r.value),
            p,
        );
        in_log += check_partition(p, &ks, &results);
    }
    let persisted = count(&results, Persistence::Persisted);
    println!(
        "s7: {n} records in {elapsed:?} through the chaos proxy: {persisted} persisted, \
         {in_log} in the log, {} chaos resets, {} connections, {} retried batches",
        stats.chaos_resets,
        stats.connections,
        producer.stats().retries
    );
    assert!(stats.chaos_resets > 0, "the proxy reset connections");
    assert_eq!(persisted as u64, n, "every record Persisted");
    assert_eq!(in_log as u64, n);
}

/// Scenario 3f: the broker loses every producer id (as tansu does when restarted without its
/// producer state): UNKNOWN_PRODUCER_ID at any epoch and sequence. The local epoch bump is
/// refused too, so the partition asks InitProducerId for a fresh id and everything is written
/// under it, in order, before the delivery timeout; nothing fails.
#[tokio::test]
async fn s3_broker_loses_every_producer_id() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("s3f", 1, 1).unwrap();
    let mut cfg = config(&cluster.bootstrap());
    cfg.delivery_timeout = Duration::from_secs(10);
    let producer = Producer::new(cfg).await.unwrap();
    let mut s = Sender::new("s3f", 1);
    for _ in 0..50 {
        s.send_to(&producer, 0).await;
    }
    let mut r = s.results().await;
    assert_eq!(count(&r, Persistence::Persisted), 50, "{r:?}");
    let before = identities(&cluster, "s3f");
    assert_eq!(before.len(), 1, "{before:?}");
    cluster.lose_producer_ids();
    for _ in 0..250 {
        s.send_to(&producer, 0).await;
    }
    let after = tokio::time::timeout(Duration::from_secs(20), s.results())
        .await
        .expect("every result before the delivery timeout");
    r.extend(after);
    producer.close().await;
    assert_eq!(count(&r, Persistence::Persisted), 300, "{r:?}");
    assert_eq!(check_fake(&cluster, "s3f", 1, &r), 300);
    // Proof: the old id was refused (the bump too), then a second id wrote the rest.
    let ids = identities(&cluster, "s3f");
    let pids: BTreeSet<i64> = ids.iter().map(|x| x.0).collect();
    assert_eq!(pids.len(), 2, "{ids:?}");
    let old = before.iter().next().unwrap().0;
    assert!(
        ids.contains(&(old, 1)),
        "a local bump was tried first: {ids:?}"
    );
    assert_eq!(cluster.requests_of(ApiKey::InitProducerId).len(), 2);
}
