//! Consumer throughput against a real broker: an ignored test, run by hand with
//!
//! ```text
//! KRUST_BROKER=127.0.0.1:19492 KRUST_BENCH_RECORDS=1000000 KRUST_BENCH_SIZE=100 \
//!   cargo test --release -p krust-client --test consumer_throughput -- --ignored --nocapture
//! ```
//!
//! Produces the records raw (batches of 1000, uncompressed unless `KRUST_BENCH_CODEC` names a
//! codec) over `KRUST_BENCH_PARTITIONS` partitions (default 1), then reads them all with the
//! consumer and prints records/s and MB/s of the consuming phase.

mod consumer_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use consumer_common::*;
use krust_client::consumer::{Consumer, ConsumerConfig, StartOffset, TopicPartition};
use krust_client::Cluster;
use krust_wire::record::Compression;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run by hand with --ignored"]
async fn consume_throughput() {
    let Some(broker) = broker() else { return };
    let total = env_or("KRUST_BENCH_RECORDS", 200_000);
    let size = env_or("KRUST_BENCH_SIZE", 100);
    let partitions = env_or("KRUST_BENCH_PARTITIONS", 1) as i32;
    let codec = std::env::var("KRUST_BENCH_CODEC")
        .ok()
        .and_then(|c| Compression::from_name(&c))
        .unwrap_or(Compression::None);
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let topic = unique("krust-bench-consume");
    create_topic(&cluster, &topic, partitions).await;

    let value = Bytes::from(vec![b'v'; size]);
    let per_batch = 1000;
    let started = Instant::now();
    let mut produced = 0;
    let mut p = 0;
    while produced < total {
        let n = per_batch.min(total - produced);
        let recs: Vec<TestRecord> = (0..n)
            .map(|_| TestRecord {
                key: None,
                value: Some(value.clone()),
                headers: vec![],
                timestamp: BASE_TS,
            })
            .collect();
        produce(&cluster, &topic, p, codec, &recs).await;
        produced += n;
        p = (p + 1) % partitions;
    }
    eprintln!(
        "produced {total} x {size} B ({}) in {:.2?}",
        codec.name(),
        started.elapsed()
    );

    let config = ConsumerConfig {
        client: client_config(&broker),
        fetch_max_wait: Duration::from_millis(100),
        max_poll_records: 10_000,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::with_cluster(cluster, config).unwrap();
    let started = Instant::now();
    consumer
        .assign((0..partitions).map(|p| {
            (
                TopicPartition::new(topic.as_str(), p),
                StartOffset::Earliest,
            )
        }))
        .await
        .unwrap();
    let mut n = 0usize;
    let mut bytes = 0usize;
    let mut peak = 0usize;
    while n < total {
        let got = tokio::time::timeout(Duration::from_secs(60), consumer.poll())
            .await
            .expect("records keep coming")
            .unwrap();
        n += got.len();
        peak = peak.max(consumer.prefetch_stats().buffered_bytes);
        bytes += got
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "consumed {n} records ({:.1} MB of values) in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        n as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    let s = consumer.prefetch_stats();
    eprintln!(
        "fetches: {}, budget waits: {}, peak buffered after a poll: {:.1} MiB (budget {:.1} MiB)",
        s.sources.fetches,
        s.sources.budget_waits,
        peak as f64 / 1048576.0,
        s.max_prefetch_bytes as f64 / 1048576.0
    );
}
