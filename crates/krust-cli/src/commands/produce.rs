//! `krust produce`: one record per stdin line, a summary on stderr, exit status 0 only if every
//! record was acknowledged.

use std::process::ExitCode;

use bytes::Bytes;
use krust_client::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use super::{client_error, properties};
use crate::cli::ProduceArgs;
use crate::error::{one_line, CliError};
use crate::input::{header_pairs, LineRecords};

/// How many failures are shown one by one before only counting.
const SHOWN_FAILURES: u64 = 5;

/// Runs `krust produce`.
pub(crate) async fn run(args: ProduceArgs) -> Result<ExitCode, CliError> {
    let topic = args.topic.clone();
    let mut defaults = vec![
        ("acks", args.acks.as_property().to_string()),
        (
            "compression.type",
            args.compression.as_property().to_string(),
        ),
    ];
    if let Some(on) = args.idempotence() {
        defaults.push(("enable.idempotence", on.to_string()));
    }
    let config = ProducerConfig::from_properties(properties(&args.conn, &defaults))
        .map_err(|e| client_error(e, Some(&topic)))?;
    let producer = Producer::new(config)
        .await
        .map_err(|e| client_error(e, Some(&topic)))?;

    // Stdin is read on a blocking thread; lines arrive here through a bounded channel.
    let (line_tx, mut line_rx) = mpsc::channel(1024);
    let delimiter = args.key_delimiter.clone();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let stdin = std::io::stdin();
        let mut lines = LineRecords::new(stdin.lock(), delimiter);
        for rec in lines.by_ref() {
            if line_tx.blocking_send(rec?).is_err() {
                break;
            }
        }
        Ok(lines.skipped_empty)
    });

    // Deliveries are awaited by a task of their own, so sending never waits for acks.
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<DeliveryFuture>();
    let collector = tokio::spawn(collect(ack_rx));

    let headers = header_pairs(&args.headers);
    let mut sent: u64 = 0;
    let mut refused: u64 = 0;
    let mut first_refusal: Option<String> = None;
    while let Some(line) = line_rx.recv().await {
        let mut rec = ProducerRecord::new(topic.clone()).with_value(line.value);
        if let Some(k) = line.key {
            rec = rec.with_key(k);
        }
        if let Some(p) = args.partition {
            rec = rec.with_partition(p);
        }
        for (name, value) in &headers {
            rec = match value {
                Some(v) => rec.with_header(name.clone(), Bytes::clone(v)),
                None => rec.with_null_header(name.clone()),
            };
        }
        match producer.send(rec).await {
            Ok(fut) => {
                sent += 1;
                let _ = ack_tx.send(fut);
            }
            Err(e) => {
                refused += 1;
                if first_refusal.is_none() {
                    first_refusal = Some(e.to_string());
                }
            }
        }
    }
    drop(ack_tx);
    producer.flush().await;
    let (acked, failures) = collector
        .await
        .map_err(|e| CliError::failed(format!("delivery task failed: {e}")))?;
    producer.close().await;
    let skipped = match reader.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(CliError::failed(format!("cannot read stdin: {e}"))),
        Err(e) => return Err(CliError::failed(format!("stdin reader failed: {e}"))),
    };

    let failed = refused + failures.count;
    let total = sent + refused;
    let mut errors = failures.shown;
    if let Some(r) = first_refusal {
        errors.insert(0, r);
    }
    for e in errors.iter().take(SHOWN_FAILURES as usize) {
        eprintln!("krust: {}", one_line(e));
    }
    let skipped_note = if skipped > 0 {
        format!(" ({skipped} empty line(s) skipped)")
    } else {
        String::new()
    };
    if failed == 0 {
        eprintln!("krust: {acked} record(s) produced to '{topic}', all acknowledged{skipped_note}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "krust: {failed} of {total} record(s) to '{topic}' failed, {acked} acknowledged{skipped_note}"
        );
        Ok(ExitCode::from(1))
    }
}

/// Failures seen while awaiting deliveries.
#[derive(Default)]
struct Failures {
    count: u64,
    shown: Vec<String>,
}

/// Awaits every delivery in arrival order; returns (acknowledged, failures).
async fn collect(mut rx: mpsc::UnboundedReceiver<DeliveryFuture>) -> (u64, Failures) {
    let mut acked = 0;
    let mut failures = Failures::default();
    while let Some(fut) = rx.recv().await {
        match fut.await {
            Ok(_) => acked += 1,
            Err(e) => {
                failures.count += 1;
                if failures.count <= SHOWN_FAILURES {
                    failures.shown.push(e.to_string());
                }
            }
        }
    }
    (acked, failures)
}
