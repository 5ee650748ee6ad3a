//! A produce benchmark on the public [`Producer`] API, for `krust bench produce` and similar
//! tools: the familiar perf-test shape (records, record size, optional throughput target),
//! reporting records/s, MB/s and send-to-acknowledgement latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{DeliveryFuture, Producer, ProducerRecord};

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceBench {
    /// Topic to write to (created by the broker on first use if it allows that).
    pub topic: String,
    /// Number of records.
    pub records: u64,
    /// Value size in bytes (values are filled with a fixed byte; keys are none).
    pub record_size: usize,
    /// Records per second to aim for; `None`: as fast as possible.
    pub throughput: Option<u64>,
    /// How often to call the progress callback.
    pub progress_interval: Duration,
}

impl ProduceBench {
    /// `records` records of `record_size` bytes to `topic`, unthrottled, progress every 5 s.
    pub fn new(topic: impl Into<String>, records: u64, record_size: usize) -> Self {
        ProduceBench {
            topic: topic.into(),
            records,
            record_size,
            throughput: None,
            progress_interval: Duration::from_secs(5),
        }
    }
}

/// Progress of a running benchmark.
#[derive(Debug, Clone, Copy)]
pub struct BenchProgress {
    /// Records handed to `send` so far.
    pub sent: u64,
    /// Records acknowledged so far.
    pub acked: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// The result of a benchmark.
#[derive(Debug, Clone)]
pub struct ProduceBenchReport {
    /// Records acknowledged.
    pub acked: u64,
    /// Records failed (the first error is in `first_error`).
    pub failed: u64,
    /// The first failure, as text.
    pub first_error: Option<String>,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Acknowledged records per second.
    pub records_per_sec: f64,
    /// Acknowledged value megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Send-to-acknowledgement latency percentiles: p50, p99, p99.9 and max.
    pub latency_p50: Duration,
    /// See `latency_p50`.
    pub latency_p99: Duration,
    /// See `latency_p50`.
    pub latency_p999: Duration,
    /// See `latency_p50`.
    pub latency_max: Duration,
}

/// Runs `bench` on `producer` (its configuration decides acks, compression, linger, ...),
/// calling `progress` about every `progress_interval`. Flushes at the end; does not close the
/// producer.
pub async fn run_produce_bench(
    producer: &Producer,
    bench: &ProduceBench,
    mut progress: impl FnMut(BenchProgress),
) -> ProduceBenchReport {
    let value = Bytes::from(vec![b'x'; bench.record_size]);
    let start = Instant::now();
    // A collector task awaits delivery futures concurrently and records latencies.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acked2 = acked.clone();
    let collector = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut latencies: Vec<u32> = Vec::new();
        let mut failed = 0u64;
        let mut first_error = None;
        let mut open = true;
        let mut last_ack = Instant::now();
        loop {
            tokio::select! {
                item = rx.recv(), if open => match item {
                    Some((t, f)) => pending.push(async move { (t, f.await) }),
                    None => open = false,
                },
                Some((t, r)) = pending.next(), if !pending.is_empty() => {
                    last_ack = Instant::now();
                    match r {
                        Ok(_) => {
                            latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            acked2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                else => break,
            }
        }
        (latencies, failed, first_error, last_ack)
    });
    let mut next_progress = start + bench.progress_interval;
    let mut send_error = None;
    let mut send_failed = 0u64;
    for i in 0..bench.records {
        if let Some(rate) = bench.throughput.filter(|r| *r > 0) {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let t = Instant::now();
        match producer
            .send(ProducerRecord::new(bench.topic.clone()).with_value(value.clone()))
            .await
        {
            Ok(f) => {
                let _ = tx.send((t, f));
            }
            Err(e) => {
                send_failed += 1;
                send_error.get_or_insert_with(|| e.to_string());
            }
        }
        if t >= next_progress {
            next_progress = t + bench.progress_interval;
            progress(BenchProgress {
                sent: i + 1,
                acked: acked.load(std::sync::atomic::Ordering::Relaxed),
                elapsed: start.elapsed(),
            });
        }
    }
    drop(tx);
    producer.flush().await;
    let (mut latencies, failed, first_error, last_ack) = collector
        .await
        .unwrap_or_else(|_| (Vec::new(), 0, None, Instant::now()));
    let elapsed = last_ack.max(start) - start;
    latencies.sort_unstable();
    let pct = |p: f64| -> Duration {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        Duration::from_micros(u64::from(latencies[i]))
    };
    let n = latencies.len() as u64;
    let secs = elapsed.as_secs_f64().max(1e-9);
    ProduceBenchReport {
        acked: n,
        failed: failed + send_failed,
        first_error: send_error.or(first_error),
        elapsed,
        records_per_sec: n as f64 / secs,
        mb_per_sec: (n as f64 * bench.record_size as f64) / secs / 1e6,
        latency_p50: pct(0.50),
        latency_p99: pct(0.99),
        latency_p999: pct(0.999),
        latency_max: latencies
            .last()
            .map_or(Duration::ZERO, |m| Duration::from_micros(u64::from(*m))),
    }
}
