//! Helpers for krust-stream's tests: seeding input, reading output back (read_committed or
//! not), and the upper-casing job.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_client::consumer::{IsolationLevel, StartOffset, TopicPartition};
use krust_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use krust_stream::{
    DeliveryGuarantee, Deserializer, Job, JobSummary, KafkaSink, KafkaSource, KafkaSourceBuilder,
    StopPosition, StringSerializer, Utf8Deserializer,
};
use krust_testkit::FakeCluster;

/// Fast group timings (tansu and the fake alike).
pub const GROUP_PROPS: [(&str, &str); 3] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("max.poll.interval.ms", "6000"),
];

/// `source` with the fast group timings of [`GROUP_PROPS`].
pub fn with_group_props<D: Deserializer>(
    mut source: KafkaSourceBuilder<D>,
) -> KafkaSourceBuilder<D> {
    for (k, v) in GROUP_PROPS {
        source = source.property(k, v);
    }
    source
}

/// Runs `job` to its end, which must come within `limit` (`what` names the run on timeout).
pub async fn run_within(job: Job, limit: Duration, what: &str) -> JobSummary {
    tokio::time::timeout(limit, job.run())
        .await
        .unwrap_or_else(|_| panic!("{what}: the job did not end within {limit:?}"))
        .unwrap()
}

/// Polls `done` every `every` until it holds; panics with `what` after `limit`.
pub async fn wait_until(
    limit: Duration,
    every: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what}");
        tokio::time::sleep(every).await;
    }
}

/// Reads `topic` read_committed (up to `want.len()` values or `limit`) and asserts it holds
/// exactly `want`, each value once (`ctx` is added to the failure message).
pub async fn assert_committed_exactly(
    bootstrap: &str,
    topic: &str,
    want: &[String],
    limit: Duration,
    ctx: &str,
) {
    let got = read_values(
        bootstrap,
        topic,
        IsolationLevel::ReadCommitted,
        want.len(),
        limit,
    )
    .await;
    assert_eq!(compare(want, &got), (0, 0, 0), "{ctx}");
}

/// Asserts that `group`'s committed offsets on `topic` (partitions `0..partitions`) are the
/// partitions' high watermarks.
pub fn assert_group_at_end(f: &FakeCluster, group: &str, topic: &str, partitions: i32, ctx: &str) {
    for p in 0..partitions {
        let (_, hw, _) = f.offsets(topic, p).unwrap();
        assert_eq!(
            f.committed(group, topic, p),
            Some(hw),
            "{ctx} partition {p}"
        );
    }
}

/// Asserts that no transaction is left open in `topic` (partitions `0..partitions`): each
/// partition's last stable offset is its high watermark.
pub fn assert_nothing_open(f: &FakeCluster, topic: &str, partitions: i32, ctx: &str) {
    for p in 0..partitions {
        let (_, hw, lso) = f.offsets(topic, p).unwrap();
        assert_eq!(lso, hw, "partition {p}: {ctx}");
    }
}

/// Logs to stderr when `KRUST_TEST_LOG` holds a tracing filter (e.g. `krust_stream=debug`).
pub fn init_log() {
    if let Ok(f) = std::env::var("KRUST_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

pub fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Writes `values` to `topic` (keyed by index, so they spread over the partitions).
pub async fn produce(bootstrap: &str, topic: &str, values: &[String]) {
    let p = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut acks = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let r = ProducerRecord::new(topic)
            .with_key(i.to_string())
            .with_value(v.clone());
        acks.push(p.send(r).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    p.close().await;
}

/// `n` distinct lower-case values.
pub fn inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("value-{i:06}-x")).collect()
}

/// Every record of `topic` (all partitions), read until `want` values or until every
/// partition is at its end and `settle` passed without more.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    isolation: IsolationLevel,
    want: usize,
    limit: Duration,
) -> Vec<(Option<Bytes>, Vec<(String, Bytes)>)> {
    let mut c = Consumer::connect(
        ConsumerConfig::new(bootstrap)
            .with_isolation_level(isolation)
            .with_fetch_max_wait(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let meta = c.cluster().topic(topic).await.unwrap();
    let tps: Vec<TopicPartition> = meta
        .partitions
        .iter()
        .map(|p| TopicPartition::new(topic.to_string(), p.partition))
        .collect();
    c.assign(tps.iter().map(|tp| (tp.clone(), StartOffset::Earliest)))
        .await
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        let recs = c.poll_timeout(Duration::from_millis(200)).await.unwrap();
        if recs.is_empty() {
            let at_end = tps.iter().all(|tp| c.is_at_end(tp));
            if out.len() >= want && at_end && idle_since.elapsed() > Duration::from_millis(300) {
                break;
            }
        } else {
            idle_since = Instant::now();
        }
        for r in recs {
            let headers = r
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.clone().unwrap_or_default()))
                .collect();
            out.push((r.value, headers));
        }
    }
    out
}

/// The values of `read_all` as strings.
pub async fn read_values(
    bootstrap: &str,
    topic: &str,
    isolation: IsolationLevel,
    want: usize,
    limit: Duration,
) -> Vec<String> {
    read_all(bootstrap, topic, isolation, want, limit)
        .await
        .into_iter()
        .map(|(v, _)| String::from_utf8(v.unwrap_or_default().to_vec()).unwrap())
        .collect()
}

/// Multiset comparison: (missing, duplicated, unexpected) of `got` against `want`.
pub fn compare(want: &[String], got: &[String]) -> (usize, usize, usize) {
    let mut w: BTreeMap<&str, i64> = BTreeMap::new();
    for v in want {
        *w.entry(v).or_default() += 1;
    }
    let mut g: BTreeMap<&str, i64> = BTreeMap::new();
    for v in got {
        *g.entry(v).or_default() += 1;
    }
    let mut missing = 0;
    let mut dup = 0;
    let mut unexpected = 0;
    for (k, n) in &w {
        let have = g.get(k).copied().unwrap_or(0);
        if have < *n {
            missing += (*n - have) as usize;
        } else {
            dup += (have - *n) as usize;
        }
    }
    for (k, n) in &g {
        if !w.contains_key(k) {
            unexpected += *n as usize;
        }
    }
    (missing, dup, unexpected)
}

/// The upper-casing job from `input` to `output`.
#[allow(clippy::too_many_arguments)]
pub fn upper_job(
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
    guarantee: DeliveryGuarantee,
    instance: &str,
    bounded: bool,
    commit_interval: Duration,
) -> Job {
    let mut b = with_group_props(
        KafkaSource::builder(bootstrap)
            .topic(input)
            .group_id(group)
            .deserializer(Utf8Deserializer),
    );
    if bounded {
        b = b.bounded(StopPosition::Latest);
    }
    let source = b.build().unwrap();
    let sink = KafkaSink::builder(bootstrap, StringSerializer)
        .topic(output)
        .delivery_guarantee(guarantee)
        .transactional_id_prefix(format!("{group}-txn"))
        .instance_id(instance)
        .transaction_timeout(Duration::from_secs(40))
        .commit_interval(commit_interval)
        .build()
        .unwrap();
    source
        .pipeline()
        .map(|s: String| s.to_uppercase())
        .sink(sink)
        .unwrap()
        .handle_signals(false)
}
