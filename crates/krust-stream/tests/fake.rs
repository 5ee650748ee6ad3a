//! krust-stream jobs against krust-testkit's fake cluster (which filters aborted transactional
//! data exactly, unlike tansu): bounded jobs end with the exact count at each guarantee, bad
//! records follow the error policy, an aborted transaction is replayed, and a killed exactly-once
//! instance's open transaction is aborted by its restart.

mod common;

use std::time::Duration;

use common::*;
use krust_client::consumer::IsolationLevel;
use krust_stream::{
    DeliveryGuarantee, ErrorPolicy, Job, JsonDeserializer, JsonSerializer, KafkaSink, KafkaSource,
    StopPosition, StopReason, StreamError,
};
use krust_testkit::kafka_protocol::messages::ApiKey;
use krust_testkit::{errors, ClusterConfig, FakeCluster};

async fn fake(partitions: i32) -> FakeCluster {
    init_log();
    let f = FakeCluster::with_config(ClusterConfig::new().with_topic("in", partitions, 1))
        .await
        .unwrap();
    for t in ["out-none", "out-alo", "out-eos", "out", "dlq"] {
        f.create_topic(t, partitions, 1).unwrap();
    }
    f
}

/// The upper-casing job from "in" to "out", exactly once.
fn eos_job(b: &str, group: &str, instance: &str, bounded: bool, interval: Duration) -> Job {
    upper_job(
        b,
        "in",
        "out",
        group,
        DeliveryGuarantee::ExactlyOnce,
        instance,
        bounded,
        interval,
    )
}

/// Records written to `topic` (partitions `0..partitions`): the sum of the high watermarks.
fn written(f: &FakeCluster, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| f.offsets(topic, p).unwrap().1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_job_ends_with_the_exact_count_at_each_guarantee() {
    let f = fake(3).await;
    let b = f.bootstrap();
    let input = inputs(3_000);
    produce(&b, "in", &input).await;
    let want: Vec<String> = input.iter().map(|s| s.to_uppercase()).collect();
    for (g, out) in [
        (DeliveryGuarantee::None, "out-none"),
        (DeliveryGuarantee::AtLeastOnce, "out-alo"),
        (DeliveryGuarantee::ExactlyOnce, "out-eos"),
    ] {
        let group = format!("g-{out}");
        let job = upper_job(
            &b,
            "in",
            out,
            &group,
            g,
            "i1",
            true,
            Duration::from_millis(50),
        );
        let summary = run_within(job, Duration::from_secs(30), "bounded job").await;
        assert_eq!(summary.reason, StopReason::BoundedEnd, "{g:?}");
        assert_eq!(summary.metrics.records_in, 3_000, "{g:?}");
        assert_eq!(summary.metrics.records_out, 3_000, "{g:?}");
        assert_committed_exactly(&b, out, &want, Duration::from_secs(10), &format!("{g:?}")).await;
        // The committed offsets are the stop offsets (the ends at start).
        assert_group_at_end(&f, &group, "in", 3, &format!("{g:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_after_the_stop_are_left_for_the_next_run() {
    let f = fake(2).await;
    let b = f.bootstrap();
    let first = inputs(200);
    produce(&b, "in", &first).await;
    let mut stops = std::collections::BTreeMap::new();
    for p in 0..2 {
        let (_, hw, _) = f.offsets("in", p).unwrap();
        stops.insert(krust_stream::TopicPartition::new("in", p), hw);
    }
    // More input arrives before the job starts: an explicit stop leaves it alone.
    let later: Vec<String> = (0..50).map(|i| format!("later-{i}")).collect();
    produce(&b, "in", &later).await;
    let src = with_group_props(
        KafkaSource::builder(&b)
            .topic("in")
            .group_id("g-stop")
            .deserializer(krust_stream::Utf8Deserializer)
            .bounded(StopPosition::Offsets(stops.clone())),
    );
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
        .build()
        .unwrap();
    let job = src
        .build()
        .unwrap()
        .pipeline()
        .sink(sink)
        .unwrap()
        .handle_signals(false);
    let s = run_within(job, Duration::from_secs(30), "bounded job").await;
    assert_eq!(s.metrics.records_in, 200);
    for (tp, stop) in &stops {
        assert_eq!(f.committed("g-stop", "in", tp.partition), Some(*stop));
    }
    assert_committed_exactly(&b, "out", &first, Duration::from_secs(10), "").await;
}

#[derive(serde::Deserialize)]
struct Order {
    id: u32,
    qty: u32,
    price_cents: u64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Priced {
    id: u32,
    total_cents: u64,
}

fn json_inputs() -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut bad = Vec::new();
    for i in 0..40u32 {
        if i % 10 == 3 {
            let b = format!("{{\"id\": {i}, oops");
            bad.push(b.clone());
            all.push(b);
        } else {
            all.push(format!(
                "{{\"id\":{i},\"qty\":{},\"price_cents\":250}}",
                i % 4
            ));
        }
    }
    (all, bad)
}

fn json_job(b: &str, group: &str, policy: ErrorPolicy) -> krust_stream::Job {
    let src = with_group_props(
        KafkaSource::builder(b)
            .topic("in")
            .group_id(group)
            .deserializer(JsonDeserializer::<Order>::new())
            .bounded(StopPosition::Latest)
            .on_error(policy),
    );
    let sink = KafkaSink::builder(b, JsonSerializer)
        .topic("out")
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix(group)
        .instance_id("only")
        .transaction_timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    src.build()
        .unwrap()
        .pipeline()
        .filter(|o: &Order| o.qty > 0)
        .map(|o| Priced {
            id: o.id,
            total_cents: u64::from(o.qty) * o.price_cents,
        })
        .sink(sink)
        .unwrap()
        .handle_signals(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_follows_the_error_policy() {
    let f = fake(2).await;
    let b = f.bootstrap();
    let (all, bad) = json_inputs();
    produce(&b, "in", &all).await;
    let valid_kept = all.len() - bad.len() - (0..40).filter(|i| i % 10 != 3 && i % 4 == 0).count();

    // Dead letter: the bad records land there whole, with the error in their headers.
    let s = json_job(&b, "g-dlq", ErrorPolicy::DeadLetter("dlq".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(s.metrics.dead_lettered, bad.len() as u64);
    assert_eq!(s.metrics.errors, bad.len() as u64);
    let dead = read_all(
        &b,
        "dlq",
        IsolationLevel::ReadCommitted,
        bad.len(),
        Duration::from_secs(10),
    )
    .await;
    let mut dead_values: Vec<String> = dead
        .iter()
        .map(|(v, _)| String::from_utf8(v.clone().unwrap().to_vec()).unwrap())
        .collect();
    dead_values.sort();
    let mut want_bad = bad.clone();
    want_bad.sort();
    assert_eq!(dead_values, want_bad);
    for (_, headers) in &dead {
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
                .unwrap_or_else(|| panic!("header {k} missing: {headers:?}"))
        };
        assert!(
            h("krust.error").contains("invalid JSON"),
            "{}",
            h("krust.error")
        );
        assert_eq!(h("krust.error.stage"), "deserialize");
        assert_eq!(h("krust.source.topic"), "in");
        h("krust.source.offset").parse::<i64>().unwrap();
    }
    let out = read_values(
        &b,
        "out",
        IsolationLevel::ReadCommitted,
        valid_kept,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.len(), valid_kept);
    let priced: Priced = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(priced.total_cents % 250, 0);

    // Skip: counted, nothing else written.
    let s = json_job(&b, "g-skip", ErrorPolicy::Skip)
        .run()
        .await
        .unwrap();
    assert_eq!(s.metrics.skipped, bad.len() as u64);
    assert_eq!(s.metrics.records_out, valid_kept as u64);

    // Fail: the job stops, naming the record; its transaction is aborted.
    let e = json_job(&b, "g-fail", ErrorPolicy::Fail)
        .run()
        .await
        .unwrap_err();
    match &e {
        StreamError::Record { topic, error, .. } => {
            assert_eq!(topic, "in");
            assert_eq!(error.stage, "deserialize");
        }
        other => panic!("expected a record error, got {other}"),
    }
    assert!(e.to_string().contains("invalid JSON"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_is_aborted_and_replayed_exactly_once() {
    let f = fake(3).await;
    let b = f.bootstrap();
    let input = inputs(2_000);
    produce(&b, "in", &input).await;
    // The first two offset commits inside a transaction are refused as from a stale
    // generation: the producer makes the transaction abortable, the job aborts and replays.
    f.fail_next_n(ApiKey::TxnOffsetCommit, errors::ILLEGAL_GENERATION, 2);
    let job = eos_job(&b, "g-replay", "r1", true, Duration::from_millis(20));
    let s = run_within(job, Duration::from_secs(30), "replaying job").await;
    assert!(s.metrics.aborts >= 1, "{:?}", s.metrics);
    assert!(
        s.metrics.records_in > 2_000,
        "replayed records count again: {:?}",
        s.metrics
    );
    let want: Vec<String> = input.iter().map(|s| s.to_uppercase()).collect();
    assert_committed_exactly(&b, "out", &want, Duration::from_secs(10), "").await;
    // The aborted attempts are in the log (read_uncommitted sees them).
    let raw = read_values(
        &b,
        "out",
        IsolationLevel::ReadUncommitted,
        want.len(),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        raw.len() > want.len(),
        "aborted records are in the log: {}",
        raw.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_open_transaction_is_aborted_when_it_restarts() {
    let f = fake(2).await;
    let b = f.bootstrap();
    let input = inputs(500);
    produce(&b, "in", &input).await;
    // A long commit interval keeps the first run's transaction open.
    let job = eos_job(&b, "g-linger", "k1", false, Duration::from_secs(20));
    let metrics = job.metrics();
    let run = tokio::spawn(job.run());
    let every = Duration::from_millis(20);
    wait_until(
        Duration::from_secs(20),
        every,
        "first run made no progress",
        || metrics.snapshot().records_out >= 500,
    )
    .await;
    // Wait until the outputs are in the log, then "kill" the instance (no abort, no leave).
    wait_until(
        Duration::from_secs(10),
        every,
        "outputs never reached the log",
        || written(&f, "out", 2) >= 500,
    )
    .await;
    run.abort();
    let _ = run.await;
    // The open transaction holds the last stable offset back: read_committed sees nothing.
    for p in 0..2 {
        let (_, hw, lso) = f.offsets("out", p).unwrap();
        assert!(
            lso < hw,
            "partition {p}: LSO {lso} must be held back below HW {hw}"
        );
    }
    let stuck = read_values(
        &b,
        "out",
        IsolationLevel::ReadCommitted,
        1,
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        stuck.is_empty(),
        "read_committed saw {} records behind an open transaction",
        stuck.len()
    );
    // The restart (same instance id) fences the old producer, which aborts its transaction; the
    // job then processes everything again and commits.
    let job = eos_job(&b, "g-linger", "k1", true, Duration::from_millis(50));
    let s = run_within(job, Duration::from_secs(40), "restarted job").await;
    assert_eq!(s.metrics.records_in, 500);
    assert_nothing_open(&f, "out", 2, "nothing left open");
    let want: Vec<String> = input.iter().map(|s| s.to_uppercase()).collect();
    assert_committed_exactly(&b, "out", &want, Duration::from_secs(10), "").await;
}

#[test]
fn exactly_once_settings_are_checked_when_the_job_is_built() {
    let source = || {
        KafkaSource::builder("127.0.0.1:1")
            .topic("in")
            .group_id("g")
            .property("session.timeout.ms", "10000")
            .deserializer(krust_stream::Utf8Deserializer)
            .build()
            .unwrap()
    };
    let sink = |timeout_ms: u64, instance: Option<&str>| {
        let mut s = KafkaSink::builder("127.0.0.1:1", krust_stream::StringSerializer)
            .topic("out")
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .transactional_id_prefix("p")
            .commit_interval(Duration::from_secs(2))
            .property("request.timeout.ms", "5000")
            .transaction_timeout(Duration::from_millis(timeout_ms));
        if let Some(i) = instance {
            s = s.instance_id(i);
        }
        s.build().unwrap()
    };
    let e = source()
        .pipeline()
        .sink(sink(11_000, Some("a")))
        .unwrap_err();
    let msg = e.to_string();
    assert!(e.is_config(), "{msg}");
    assert!(
        msg.contains("transaction_timeout")
            && msg.contains("11000 ms")
            && msg.contains("2000 ms")
            && msg.contains("10000 ms"),
        "{msg}"
    );
    let e = source().pipeline().sink(sink(60_000, None)).unwrap_err();
    assert!(e.to_string().contains("instance_id"), "{e}");
    assert!(source().pipeline().sink(sink(12_001, Some("a"))).is_ok());
    let no_group = KafkaSource::builder("127.0.0.1:1")
        .topic("in")
        .deserializer(krust_stream::Utf8Deserializer)
        .build()
        .unwrap();
    let e = no_group
        .pipeline()
        .sink(sink(60_000, Some("a")))
        .unwrap_err();
    assert!(e.to_string().contains("group_id"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_instance_s_transaction_is_aborted_by_abort_lingering() {
    let f = fake(2).await;
    let b = f.bootstrap();
    let input = inputs(300);
    produce(&b, "in", &input).await;
    // Instance "gone" processes everything in one transaction, which stays open: it is killed
    // and never comes back.
    let job = eos_job(&b, "g-gone", "gone", false, Duration::from_secs(20));
    let metrics = job.metrics();
    let run = tokio::spawn(job.run());
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        "no progress",
        || metrics.snapshot().records_out >= 300 && written(&f, "out", 2) >= 300,
    )
    .await;
    run.abort();
    let _ = run.await;
    // A single new instance with another id, told to clean up after departed ones.
    let src = with_group_props(
        KafkaSource::builder(&b)
            .topic("in")
            .group_id("g-gone")
            .deserializer(krust_stream::Utf8Deserializer)
            .bounded(StopPosition::Latest),
    );
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix("g-gone-txn")
        .instance_id("solo")
        .transaction_timeout(Duration::from_secs(40))
        .abort_lingering_transactions(true)
        .build()
        .unwrap();
    let job = src
        .build()
        .unwrap()
        .pipeline()
        .map(|s: String| s.to_uppercase())
        .sink(sink)
        .unwrap()
        .handle_signals(false);
    let s = run_within(job, Duration::from_secs(40), "cleaning job").await;
    assert_eq!(s.metrics.records_in, 300);
    assert_nothing_open(&f, "out", 2, "the departed instance's transaction is gone");
    let want: Vec<String> = input.iter().map(|s| s.to_uppercase()).collect();
    assert_committed_exactly(&b, "out", &want, Duration::from_secs(10), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_handle_stops_gracefully_with_everything_committed() {
    let f = fake(3).await;
    let b = f.bootstrap();
    let input = inputs(1_000);
    produce(&b, "in", &input).await;
    let job = upper_job(
        &b,
        "in",
        "out",
        "g-stop-handle",
        DeliveryGuarantee::AtLeastOnce,
        "s",
        false,
        Duration::from_secs(30),
    );
    let (metrics, stop) = (job.metrics(), job.shutdown_handle());
    let run = tokio::spawn(job.run());
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(10),
        "no progress",
        || metrics.snapshot().records_out >= 1_000,
    )
    .await;
    // Nothing is committed yet (30 s interval): the graceful stop commits it.
    assert_eq!(metrics.snapshot().commits, 0);
    stop.shutdown();
    let s = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s.reason, StopReason::Shutdown);
    assert!(s.metrics.commits >= 1);
    assert_group_at_end(&f, "g-stop-handle", "in", 3, "");
    // The member left the group.
    f.wait_for_group("g-stop-handle", |g| g.members.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_map_keeps_partition_order_in_a_job() {
    let f = fake(1).await;
    let b = f.bootstrap();
    let input: Vec<String> = (0..300).map(|i| format!("{i}")).collect();
    produce(&b, "in", &input).await;
    let src = with_group_props(
        KafkaSource::builder(&b)
            .topic("in")
            .group_id("g-async")
            .deserializer(krust_stream::Utf8Deserializer)
            .bounded(StopPosition::Latest),
    );
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .partition(|_| Some(0))
        .delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
        .build()
        .unwrap();
    let job = src
        .build()
        .unwrap()
        .pipeline()
        .map_async(16, |s: String| async move {
            // Later records finish earlier.
            let n: u64 = s.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(20 - n % 20)).await;
            format!("done-{n}")
        })
        .sink(sink)
        .unwrap()
        .handle_signals(false);
    let s = run_within(job, Duration::from_secs(30), "async map job").await;
    assert_eq!(s.metrics.records_out, 300);
    let got = read_values(
        &b,
        "out",
        IsolationLevel::ReadCommitted,
        300,
        Duration::from_secs(10),
    )
    .await;
    let want: Vec<String> = (0..300).map(|i| format!("done-{i}")).collect();
    assert_eq!(got, want, "output in input order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_without_a_group_read_only_those() {
    let f = fake(3).await;
    let b = f.bootstrap();
    produce(&b, "in", &inputs(600)).await;
    let (_, hw1, _) = f.offsets("in", 1).unwrap();
    let want: Vec<String> = f
        .records("in", 1)
        .unwrap()
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(want.len() as i64, hw1);
    let src = KafkaSource::builder(&b)
        .partitions([("in", 1)])
        .deserializer(krust_stream::Utf8Deserializer)
        .bounded(StopPosition::Latest)
        .build()
        .unwrap();
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .build()
        .unwrap();
    let job = src.pipeline().sink(sink).unwrap().handle_signals(false);
    let s = run_within(job, Duration::from_secs(20), "bounded job").await;
    assert_eq!(s.reason, StopReason::BoundedEnd);
    assert_eq!(s.metrics.records_in, hw1 as u64);
    assert_committed_exactly(&b, "out", &want, Duration::from_secs(10), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_source_discovers_new_topics() {
    let f = fake(1).await;
    let b = f.bootstrap();
    f.create_topic("rx-a", 2, 1).unwrap();
    produce(&b, "rx-a", &inputs(100)).await;
    let src = KafkaSource::builder(&b)
        .topic_pattern("rx-.*")
        .partition_discovery(Some(Duration::from_millis(200)))
        .deserializer(krust_stream::Utf8Deserializer)
        .build()
        .unwrap();
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .build()
        .unwrap();
    let job = src.pipeline().sink(sink).unwrap().handle_signals(false);
    let (metrics, stop) = (job.metrics(), job.shutdown_handle());
    let run = tokio::spawn(job.run());
    let wait_for = |n: u64| {
        let m = metrics.clone();
        async move {
            wait_until(
                Duration::from_secs(20),
                Duration::from_millis(10),
                &format!("stuck below {n} records in"),
                || m.snapshot().records_in >= n,
            )
            .await
        }
    };
    wait_for(100).await;
    // A new matching topic appears: found by the next discovery, read from its start.
    f.create_topic("rx-b", 3, 1).unwrap();
    produce(&b, "rx-b", &inputs(50)).await;
    wait_for(150).await;
    stop.shutdown();
    let s = run.await.unwrap().unwrap();
    assert_eq!(s.metrics.records_in, 150);
    assert_eq!(
        s.metrics.lag.len(),
        5,
        "lag of every partition: {:?}",
        s.metrics.lag
    );
    assert!(
        s.metrics.lag.values().all(|l| *l == 0),
        "{:?}",
        s.metrics.lag
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_job_over_transactional_input_ends_past_the_last_marker() {
    let f = fake(2).await;
    let b = f.bootstrap();
    // Input written in transactions: each partition ends with a commit marker, and one
    // transaction is aborted (its records are skipped under read_committed).
    let p = krust_client::Producer::new(
        krust_client::ProducerConfig::new(&b).with_transactional_id("input-writer"),
    )
    .await
    .unwrap();
    p.init_transactions().await.unwrap();
    let values = inputs(200);
    for (i, chunk) in values.chunks(50).enumerate() {
        p.begin_transaction().await.unwrap();
        for (j, v) in chunk.iter().enumerate() {
            drop(
                p.send(
                    krust_client::ProducerRecord::new("in")
                        .with_key(format!("{i}-{j}"))
                        .with_value(v.clone()),
                )
                .await
                .unwrap(),
            );
        }
        if i == 1 {
            p.abort_transaction().await.unwrap();
        } else {
            p.commit_transaction().await.unwrap();
        }
    }
    p.close().await;
    let committed_inputs: Vec<String> = values
        .chunks(50)
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, c)| c.iter().cloned())
        .collect();
    let job = eos_job(&b, "g-txn-input", "t", true, Duration::from_millis(50));
    let s = run_within(
        job,
        Duration::from_secs(30),
        "the bounded job ends although the last offsets are markers",
    )
    .await;
    assert_eq!(s.metrics.records_in, 150);
    assert_group_at_end(&f, "g-txn-input", "in", 2, "");
    let want: Vec<String> = committed_inputs.iter().map(|s| s.to_uppercase()).collect();
    assert_committed_exactly(&b, "out", &want, Duration::from_secs(10), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_at_timestamps() {
    let f = fake(2).await;
    let b = f.bootstrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    produce(&b, "in", &inputs(100)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let from = now();
    let middle: Vec<String> = (0..60).map(|i| format!("middle-{i}")).collect();
    produce(&b, "in", &middle).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let until = now();
    produce(&b, "in", &inputs(40)).await;
    let src = KafkaSource::builder(&b)
        .topic("in")
        .start(krust_stream::StartPosition::Timestamp(from))
        .bounded(StopPosition::Timestamp(until))
        .deserializer(krust_stream::Utf8Deserializer)
        .build()
        .unwrap();
    let sink = KafkaSink::builder(&b, krust_stream::StringSerializer)
        .topic("out")
        .build()
        .unwrap();
    let job = src.pipeline().sink(sink).unwrap().handle_signals(false);
    let s = run_within(job, Duration::from_secs(20), "bounded job").await;
    assert_eq!(s.reason, StopReason::BoundedEnd);
    assert_eq!(s.metrics.records_in, 60);
    assert_committed_exactly(&b, "out", &middle, Duration::from_secs(10), "").await;
}
