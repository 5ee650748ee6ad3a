//! Measures the upper-casing job: records/s at each delivery guarantee (one run, same input),
//! and end-to-end latency (input CreateTime to a read_committed consumer seeing the output)
//! under EXACTLY_ONCE at a 100 ms commit interval.
//!
//! ```text
//! cargo run --release -p krust-stream --example pipe_bench -- 127.0.0.1:19092 [records] [rate]
//! ```
//!
//! Throughput counts from the first record processed to the last (the group join before it is
//! not the job's speed). Latency: a producer writes `rate` records/s for 10 s while the job
//! runs; the job keeps each input's timestamp on its output.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use krust_client::consumer::{IsolationLevel, StartOffset, TopicPartition};
use krust_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord,
};
use krust_stream::{
    DeliveryGuarantee, Job, KafkaSink, KafkaSource, StopPosition, StringSerializer,
    Utf8Deserializer,
};

const PARTITIONS: i32 = 6;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn job(
    b: &str,
    input: &str,
    output: &str,
    group: &str,
    g: DeliveryGuarantee,
    bounded: bool,
) -> Job {
    let mut src = KafkaSource::builder(b)
        .topic(input)
        .group_id(group)
        .deserializer(Utf8Deserializer)
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500")
        .property("fetch.max.wait.ms", "20");
    if bounded {
        src = src.bounded(StopPosition::Latest);
    }
    let mut sink = KafkaSink::builder(b, StringSerializer)
        .topic(output)
        .delivery_guarantee(g)
        .transactional_id_prefix(group)
        .instance_id("bench")
        .property("linger.ms", "5");
    if g == DeliveryGuarantee::ExactlyOnce {
        sink = sink.commit_interval(Duration::from_millis(100));
    }
    src.build()
        .unwrap()
        .pipeline()
        .map(|s: String| s.to_uppercase())
        .sink(sink.build().unwrap())
        .unwrap()
        .handle_signals(false)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let b = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:19092".into());
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rate: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let s = format!("{:x}", now_ms());
    let admin = Admin::connect(ClientConfig::new(&b)).await?;
    let input = format!("bench-in-{s}");
    let mut topics = vec![NewTopic::new(&input, PARTITIONS, 1)];
    for g in ["none", "alo", "eos", "lat-in", "lat-out"] {
        topics.push(NewTopic::new(format!("bench-{g}-{s}"), PARTITIONS, 1));
    }
    admin.create_topics(&topics).await?;

    // Input: n records of ~100 bytes.
    let p = Producer::new(ProducerConfig::new(&b)).await?;
    let pad = "x".repeat(80);
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        acks.push(
            p.send(ProducerRecord::new(&input).with_value(format!("record-{i:09}-{pad}")))
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    println!("input: {n} records of ~100 bytes in {PARTITIONS} partitions");

    for (name, g) in [
        ("NONE", DeliveryGuarantee::None),
        ("AT_LEAST_ONCE", DeliveryGuarantee::AtLeastOnce),
        ("EXACTLY_ONCE", DeliveryGuarantee::ExactlyOnce),
    ] {
        let tag = match g {
            DeliveryGuarantee::None => "none",
            DeliveryGuarantee::AtLeastOnce => "alo",
            _ => "eos",
        };
        let j = job(
            &b,
            &input,
            &format!("bench-{tag}-{s}"),
            &format!("bench-{tag}-{s}"),
            g,
            true,
        );
        let m = j.metrics();
        let run = tokio::spawn(j.run());
        let mut first = None;
        while !run.is_finished() {
            if first.is_none() && m.snapshot().records_in > 0 {
                first = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = Instant::now();
        let summary = run.await??;
        let secs = (end - first.unwrap_or(end)).as_secs_f64();
        println!(
            "{name:>14}: {} records in {secs:.2} s = {:.0} records/s ({} commits, avg commit {:.1} ms)",
            summary.metrics.records_in,
            summary.metrics.records_in as f64 / secs,
            summary.metrics.commits,
            summary.metrics.commit_latency_avg.as_secs_f64() * 1e3
        );
    }

    // Latency under EXACTLY_ONCE, commit interval 100 ms.
    let (lin, lout) = (format!("bench-lat-in-{s}"), format!("bench-lat-out-{s}"));
    let j = job(
        &b,
        &lin,
        &lout,
        &format!("bench-lat-{s}"),
        DeliveryGuarantee::ExactlyOnce,
        false,
    );
    let stop = j.shutdown_handle();
    let metrics = j.metrics();
    let run = tokio::spawn(j.run());
    let mut c = Consumer::connect(
        ConsumerConfig::new(&b)
            .with_isolation_level(IsolationLevel::ReadCommitted)
            .with_fetch_max_wait(Duration::from_millis(20)),
    )
    .await?;
    c.assign(
        (0..PARTITIONS).map(|p| (TopicPartition::new(lout.clone(), p), StartOffset::Earliest)),
    )
    .await?;
    // Wait for the job's first assignment before measuring.
    while metrics.snapshot().rebalances == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = rate * 10;
    let producer = p.clone();
    let lin2 = lin.clone();
    let feeder = tokio::spawn(async move {
        let t0 = Instant::now();
        for i in 0..total {
            let due = t0 + Duration::from_micros(i * 1_000_000 / rate);
            tokio::time::sleep_until(due.into()).await;
            let _ = producer
                .send(
                    ProducerRecord::new(&lin2)
                        .with_value(format!("lat-{i}"))
                        .with_timestamp(now_ms()),
                )
                .await;
        }
    });
    let mut lat = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(40);
    while (lat.len() as u64) < total && Instant::now() < deadline {
        for r in c.poll_timeout(Duration::from_millis(100)).await? {
            lat.push(now_ms() - r.timestamp);
        }
    }
    feeder.await?;
    stop.shutdown();
    run.await??;
    lat.sort();
    let q = |f: f64| lat[((lat.len() as f64 - 1.0) * f) as usize];
    println!(
        "EXACTLY_ONCE end-to-end latency at 100 ms commits, {rate} records/s: {} records, p50 {} ms, p99 {} ms, max {} ms",
        lat.len(),
        q(0.50),
        q(0.99),
        lat.last().copied().unwrap_or(0)
    );
    p.close().await;
    Ok(())
}
