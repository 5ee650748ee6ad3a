//! krust-stream jobs against the real broker (`KRUST_BROKER`, tansu in this project): a bounded
//! job ends with the exact count, invalid JSON reaches the dead-letter topic with its error,
//! and a killed exactly-once instance's open transaction holds read_committed readers back
//! until its restart aborts it.
//!
//! tansu writes transaction markers and keeps the last stable offset, but never lists aborted
//! transactions in Fetch: a read_committed consumer there waits behind an open transaction
//! (tested) yet also receives aborted records once the transaction is over. These tests only
//! assert what holds on it; exact filtering is covered on the fake cluster (`fake.rs`) and by
//! the raw-log audit of the `krust pipe` tests.

mod common;

use std::time::Duration;

use common::*;
use krust_client::consumer::IsolationLevel;
use krust_client::{Admin, ClientConfig, NewTopic};
use krust_stream::{
    DeliveryGuarantee, ErrorPolicy, JsonDeserializer, JsonSerializer, KafkaSink, KafkaSource,
    StopPosition, StopReason,
};

async fn topics(b: &str, names: &[&str], partitions: i32) {
    let admin = Admin::connect(ClientConfig::new(b)).await.unwrap();
    let t: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(*n, partitions, 1))
        .collect();
    admin.create_topics(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_exactly_once_job_ends_with_the_exact_count() {
    init_log();
    let Some(b) = krust_testkit::real_broker() else {
        return;
    };
    let s = suffix();
    let (input, output) = (format!("st-in-{s}"), format!("st-out-{s}"));
    topics(&b, &[&input, &output], 3).await;
    let values = inputs(5_000);
    produce(&b, &input, &values).await;
    let job = upper_job(
        &b,
        &input,
        &output,
        &format!("st-{s}"),
        DeliveryGuarantee::ExactlyOnce,
        "i1",
        true,
        Duration::from_millis(100),
    );
    let summary = run_within(job, Duration::from_secs(40), "bounded job").await;
    assert_eq!(summary.reason, StopReason::BoundedEnd);
    assert_eq!(summary.metrics.records_in, 5_000);
    assert_eq!(summary.metrics.aborts, 0);
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    // No abort happened, so even tansu's unfiltered read_committed is exact here.
    assert_committed_exactly(&b, &output, &want, Duration::from_secs(20), "").await;
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_goes_to_the_dead_letter_topic_with_its_error() {
    init_log();
    let Some(b) = krust_testkit::real_broker() else {
        return;
    };
    let s = suffix();
    let (input, output, dlq) = (
        format!("sj-in-{s}"),
        format!("sj-out-{s}"),
        format!("sj-dlq-{s}"),
    );
    topics(&b, &[&input, &output, &dlq], 2).await;
    let mut values: Vec<String> = (0..30)
        .map(|i| format!("{{\"sensor\":\"s{i}\",\"celsius\":{}.5}}", i - 10))
        .collect();
    values.insert(7, "not json at all".into());
    values.insert(19, "{\"sensor\": 3".into());
    produce(&b, &input, &values).await;
    let src = with_group_props(
        KafkaSource::builder(&b)
            .topic(&input)
            .group_id(format!("sj-{s}"))
            .deserializer(JsonDeserializer::<Reading>::new())
            .bounded(StopPosition::Latest)
            .on_error(ErrorPolicy::DeadLetter(dlq.clone())),
    );
    let sink = KafkaSink::builder(&b, JsonSerializer)
        .topic(&output)
        .delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
        .build()
        .unwrap();
    let job = src
        .build()
        .unwrap()
        .pipeline()
        .filter(|r: &Reading| r.celsius > 0.0)
        .sink(sink)
        .unwrap()
        .handle_signals(false);
    let summary = run_within(job, Duration::from_secs(40), "dead-letter job").await;
    assert_eq!(summary.metrics.dead_lettered, 2);
    assert_eq!(summary.metrics.records_out, 20);
    let dead = read_all(
        &b,
        &dlq,
        IsolationLevel::ReadCommitted,
        2,
        Duration::from_secs(20),
    )
    .await;
    let mut bodies: Vec<String> = dead
        .iter()
        .map(|(v, _)| String::from_utf8(v.clone().unwrap().to_vec()).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec!["not json at all".to_string(), "{\"sensor\": 3".to_string()]
    );
    for (_, headers) in &dead {
        let err = headers
            .iter()
            .find(|(k, _)| k == "krust.error")
            .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
            .expect("krust.error header");
        assert!(err.contains("invalid JSON"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_holds_readers_back_until_its_restart_aborts() {
    init_log();
    let Some(b) = krust_testkit::real_broker() else {
        return;
    };
    let s = suffix();
    let (input, output, group) = (
        format!("sk-in-{s}"),
        format!("sk-out-{s}"),
        format!("sk-{s}"),
    );
    topics(&b, &[&input, &output], 2).await;
    let values = inputs(400);
    produce(&b, &input, &values).await;
    // A long commit interval: the first run's transaction is still open when it is killed.
    let job = upper_job(
        &b,
        &input,
        &output,
        &group,
        DeliveryGuarantee::ExactlyOnce,
        "k",
        false,
        Duration::from_secs(20),
    );
    let metrics = job.metrics();
    let run = tokio::spawn(job.run());
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "no progress",
        || metrics.snapshot().records_out >= 400,
    )
    .await;
    // Let the producer's batches reach the broker, then kill (no abort, no leave).
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.abort();
    let _ = run.await;
    let stuck = read_values(
        &b,
        &output,
        IsolationLevel::ReadCommitted,
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        stuck.is_empty(),
        "read_committed must wait behind the open transaction, saw {}",
        stuck.len()
    );
    let raw = read_values(
        &b,
        &output,
        IsolationLevel::ReadUncommitted,
        400,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        raw.len(),
        400,
        "the open transaction's records are in the log"
    );
    // The restart fences the old producer id and aborts its transaction; the job then redoes
    // the work in new transactions.
    let job = upper_job(
        &b,
        &input,
        &output,
        &group,
        DeliveryGuarantee::ExactlyOnce,
        "k",
        true,
        Duration::from_millis(100),
    );
    let summary = run_within(job, Duration::from_secs(40), "restarted job").await;
    assert_eq!(summary.metrics.records_in, 400);
    // read_committed is no longer stuck. tansu does not filter the aborted first attempt, so
    // it returns both attempts: every value twice (a broker listing aborted transactions
    // returns each once; see fake.rs).
    let got = read_values(
        &b,
        &output,
        IsolationLevel::ReadCommitted,
        800,
        Duration::from_secs(20),
    )
    .await;
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    let (missing, dups, unexpected) = compare(&want, &got);
    assert_eq!((missing, unexpected), (0, 0));
    assert_eq!(dups, 400, "tansu returns the aborted attempt too");
}
