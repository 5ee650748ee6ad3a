//! `krust bench produce|consume`: throughput and latency, in the shape of Kafka's perf-test
//! tools (records/s, MB/s, latency percentiles, a progress line every few seconds).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use krust_client::consumer::{StartOffset, TopicPartition};
use krust_client::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use krust_client::{Admin, NewTopic};
use krust_wire::ErrorCode;
use tokio::sync::mpsc;

use super::{client_error, properties, topic_consumer};
use crate::cli::{BenchCommand, BenchConsumeArgs, BenchProduceArgs};
use crate::error::{one_line, CliError};
use crate::stats::{pace, payload, summary_line, Latencies, Window};

/// Runs a `bench` subcommand.
pub(crate) async fn run(cmd: BenchCommand) -> Result<ExitCode, CliError> {
    match cmd {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Consume(args) => consume(args).await,
    }
}

/// What the delivery collector reports at the end.
struct Outcome {
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    latencies: Latencies,
}

async fn produce(args: BenchProduceArgs) -> Result<ExitCode, CliError> {
    if !args.idempotence_cost {
        produce_run(&args, args.idempotence(), None).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // The cost of idempotence: both with acks=all, in one invocation, in the order
    // idempotent, plain, plain, idempotent (a broker whose log grows, or warms up, favours
    // neither side), averaged.
    let i1 = produce_run(&args, Some(true), Some("all")).await?;
    let p1 = produce_run(&args, Some(false), Some("all")).await?;
    let p2 = produce_run(&args, Some(false), Some("all")).await?;
    let i2 = produce_run(&args, Some(true), Some("all")).await?;
    let (with, without) = ((i1 + i2) / 2.0, (p1 + p2) / 2.0);
    println!(
        "idempotence cost: {with:.0} records/s idempotent, {without:.0} records/s not \
         (acks=all both): {:.1}% {}",
        ((without - with) / without * 100.0).abs(),
        if with <= without { "slower" } else { "faster" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One produce benchmark; returns acknowledged records per second.
async fn produce_run(
    args: &BenchProduceArgs,
    idempotence: Option<bool>,
    acks: Option<&str>,
) -> Result<f64, CliError> {
    let topic = args.topic.clone();
    let acks = acks
        .map(str::to_string)
        .unwrap_or_else(|| args.acks.as_property().to_string());
    let mut defaults = vec![
        ("acks", acks.clone()),
        (
            "compression.type",
            args.compression.as_property().to_string(),
        ),
        ("linger.ms", args.linger_ms.to_string()),
    ];
    if let Some(on) = idempotence {
        defaults.push(("enable.idempotence", on.to_string()));
    }
    let config = ProducerConfig::from_properties(properties(&args.conn, &defaults))
        .map_err(|e| client_error(e, Some(&topic)))?;
    let idempotent = config.idempotence();
    let producer = Producer::new(config)
        .await
        .map_err(|e| client_error(e, Some(&topic)))?;
    let admin = Admin::new(producer.cluster().clone());
    match admin.create_topics(&[NewTopic::new(&topic, 1, 1)]).await {
        Ok(()) => eprintln!("krust: created topic '{topic}' (1 partition)"),
        Err(e) if e.code() == Some(ErrorCode::TOPIC_ALREADY_EXISTS) => {}
        Err(e) => return Err(client_error(e, Some(&topic))),
    }

    let value = Bytes::from(payload(args.record_size, 0x6b72_7573));
    let record_bytes = args.record_size as u64;
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
    let progress = Duration::from_secs(args.progress_secs.max(1));
    let collector = tokio::spawn(collect(rx, args.records, record_bytes, progress));

    eprintln!(
        "krust: producing {} records of {} bytes to '{topic}' (acks {}, idempotent {}, compression {}, linger.ms {}{})",
        args.records,
        args.record_size,
        acks,
        idempotent,
        args.compression,
        args.linger_ms,
        if args.throughput > 0 {
            format!(", {} records/s", args.throughput)
        } else {
            String::new()
        }
    );
    let start = Instant::now();
    let mut refused = 0u64;
    let mut first_refusal = None;
    for i in 0..args.records {
        if let Some(wait) = pace(i, args.throughput, start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let rec = ProducerRecord::new(topic.clone()).with_value(value.clone());
        let sent_at = Instant::now();
        match producer.send(rec).await {
            Ok(fut) => {
                let _ = tx.send((sent_at, fut));
            }
            Err(e) => {
                refused += 1;
                first_refusal.get_or_insert_with(|| e.to_string());
            }
        }
    }
    drop(tx);
    producer.flush().await;
    let mut outcome = collector
        .await
        .map_err(|e| CliError::failed(format!("delivery task failed: {e}")))?;
    let elapsed = start.elapsed();
    producer.close().await;

    let rate = outcome.acked as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{}",
        summary_line(
            if idempotent {
                "produce (idempotent)"
            } else {
                "produce"
            },
            outcome.acked,
            outcome.acked * record_bytes,
            elapsed,
            outcome.latencies.summary(),
        )
    );
    let failed = outcome.failed + refused;
    if failed > 0 {
        let why = first_refusal.or(outcome.first_error).unwrap_or_default();
        return Err(CliError::failed(format!(
            "{failed} of {} records failed: {}",
            args.records,
            one_line(&why)
        )));
    }
    Ok(rate)
}

/// Awaits deliveries as they complete (in any order), measuring send-to-ack latency, and
/// prints a progress line every `progress`.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Instant, DeliveryFuture)>,
    expected: u64,
    record_bytes: u64,
    progress: Duration,
) -> Outcome {
    let mut pending = FuturesUnordered::new();
    let mut out = Outcome {
        acked: 0,
        failed: 0,
        first_error: None,
        latencies: Latencies::with_capacity(expected.min(10_000_000) as usize),
    };
    let mut window = Window::default();
    let mut window_start = Instant::now();
    let mut ticker = tokio::time::interval(progress);
    ticker.tick().await; // the first tick is immediate
    let mut open = true;
    loop {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some((at, fut)) => pending.push(async move { (at, fut.await) }),
                None => open = false,
            },
            Some((at, result)) = pending.next(), if !pending.is_empty() => {
                let latency = at.elapsed();
                match result {
                    Ok(_) => {
                        out.acked += 1;
                        out.latencies.record(latency);
                        window.add(record_bytes, Some(latency));
                    }
                    Err(e) => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            _ = ticker.tick() => {
                eprintln!("krust: {}", window.line(window_start.elapsed()));
                window_start = Instant::now();
            }
            else => break,
        }
        if !open && pending.is_empty() {
            break;
        }
    }
    out
}

async fn consume(args: BenchConsumeArgs) -> Result<ExitCode, CliError> {
    let topic = args.topic.as_str();
    let defaults = [
        ("allow.auto.create.topics", "false".to_string()),
        ("enable.partition.eof", "true".to_string()),
    ];
    let (mut consumer, meta) = topic_consumer(&args.conn, topic, &defaults).await?;
    let tps: Vec<TopicPartition> = (0..meta.partitions.len() as i32)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer
        .assign(tps.iter().map(|tp| (tp.clone(), StartOffset::Earliest)))
        .await
        .map_err(|e| client_error(e, Some(topic)))?;

    let idle = Duration::from_secs(args.idle_secs.max(1));
    let progress = Duration::from_secs(args.progress_secs.max(1));
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut window = Window::default();
    let mut polls = Latencies::default();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_record = Instant::now();
    loop {
        if args.records.is_some_and(|n| records >= n) {
            break;
        }
        if args.records.is_none() && tps.iter().all(|tp| consumer.is_at_end(tp)) {
            break;
        }
        if last_record.elapsed() >= idle {
            eprintln!("krust: no record for {}s; stopping", idle.as_secs());
            break;
        }
        let asked = Instant::now();
        let batch = consumer
            .poll_timeout(Duration::from_millis(500))
            .await
            .map_err(|e| client_error(e, Some(topic)))?;
        let _ = consumer.take_partition_eofs();
        if !batch.is_empty() {
            polls.record(asked.elapsed());
            last_record = Instant::now();
        }
        for r in &batch {
            let size = (r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())) as u64;
            records += 1;
            bytes += size;
            window.add(size, None);
        }
        if last_progress.elapsed() >= progress {
            eprintln!("krust: {}", window.line(last_progress.elapsed()));
            last_progress = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    consumer.cluster().close();
    println!(
        "{} (latency = wait per poll that returned records)",
        summary_line("consume", records, bytes, elapsed, polls.summary())
    );
    Ok(ExitCode::SUCCESS)
}
