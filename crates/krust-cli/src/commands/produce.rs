//! `krust produce`: one record per stdin line, a summary on stderr, exit status 0 only if every
//! record was acknowledged.

use std::process::ExitCode;

use bytes::Bytes;
use krust_client::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use super::{client_error, properties};
use crate::cli::ProduceArgs;
use crate::error::{one_line, CliError};
use crate::input::{header_pairs, InputRecord, LineRecords};

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
    if let Some(id) = &args.transactional_id {
        if id.is_empty() {
            return Err(CliError::Usage(
                "--transactional-id needs a non-empty id".into(),
            ));
        }
        defaults.push(("transactional.id", id.clone()));
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
    if args.transactional_id.is_some() {
        drop(ack_tx);
        let _ = collector.await;
        let result = transactions(&producer, &args, &headers, &mut line_rx).await;
        producer.close().await;
        drop(line_rx);
        let skipped = match reader.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(CliError::failed(format!("cannot read stdin: {e}"))),
            Err(e) => return Err(CliError::failed(format!("stdin reader failed: {e}"))),
        };
        let t = result?;
        let skipped_note = if skipped > 0 {
            format!(" ({skipped} empty line(s) skipped)")
        } else {
            String::new()
        };
        eprintln!(
            "krust: {} record(s) to '{topic}' in {} transaction(s): {} committed ({} record(s)), \
             {} aborted ({} record(s)){}{skipped_note}",
            t.committed_records + t.aborted_records + t.failed_records,
            t.committed + t.aborted + t.failed,
            t.committed,
            t.committed_records,
            t.aborted,
            t.aborted_records,
            if t.failed > 0 {
                format!(", {} failed ({} record(s))", t.failed, t.failed_records)
            } else {
                String::new()
            }
        );
        if let Some(e) = t.first_failure {
            eprintln!("krust: {}", one_line(&e));
        }
        return Ok(if t.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let mut sent: u64 = 0;
    let mut refused: u64 = 0;
    let mut first_refusal: Option<String> = None;
    while let Some(line) = line_rx.recv().await {
        let rec = record(&topic, args.partition, line, &headers);
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

/// The record for one input line.
fn record(
    topic: &str,
    partition: Option<i32>,
    line: InputRecord,
    headers: &[(String, Option<Bytes>)],
) -> ProducerRecord {
    let mut rec = ProducerRecord::new(topic.to_string()).with_value(line.value);
    if let Some(k) = line.key {
        rec = rec.with_key(k);
    }
    if let Some(p) = partition {
        rec = rec.with_partition(p);
    }
    for (name, value) in headers {
        rec = match value {
            Some(v) => rec.with_header(name.clone(), Bytes::clone(v)),
            None => rec.with_null_header(name.clone()),
        };
    }
    rec
}

/// What `--transactional-id` did.
#[derive(Default)]
struct TxnTally {
    committed: u64,
    committed_records: u64,
    aborted: u64,
    aborted_records: u64,
    failed: u64,
    failed_records: u64,
    first_failure: Option<String>,
}

/// Sends the lines in transactions of `--txn-size` records, aborting every `--abort-every`-th
/// (numbered from 1). A transaction whose commit fails with an abortable error is aborted and
/// counted as failed; a fatal error ends the command.
async fn transactions(
    producer: &Producer,
    args: &ProduceArgs,
    headers: &[(String, Option<Bytes>)],
    lines: &mut mpsc::Receiver<InputRecord>,
) -> Result<TxnTally, CliError> {
    let fatal = |what: &str, e: krust_client::Error| CliError::failed(format!("{what}: {e}"));
    producer
        .init_transactions()
        .await
        .map_err(|e| fatal("init_transactions", e))?;
    let mut tally = TxnTally::default();
    let mut number: u64 = 0;
    let mut open: u64 = 0;
    let mut doomed = false;
    loop {
        let line = lines.recv().await;
        let eof = line.is_none();
        if let Some(line) = line {
            if open == 0 {
                producer
                    .begin_transaction()
                    .await
                    .map_err(|e| fatal("begin_transaction", e))?;
                number += 1;
            }
            let rec = record(&args.topic, args.partition, line, headers);
            open += 1;
            // Delivery is settled by the commit or the abort. A record refused here dooms the
            // transaction: it is aborted at its end (and a fatal producer fails that abort).
            if let Err(e) = producer.send(rec).await {
                doomed = true;
                tally.first_failure.get_or_insert_with(|| e.to_string());
            }
            if open < args.txn_size {
                continue;
            }
        }
        if open > 0 {
            let abort = args.abort_every > 0 && number.is_multiple_of(args.abort_every);
            if doomed {
                producer
                    .abort_transaction()
                    .await
                    .map_err(|e| fatal("abort_transaction", e))?;
                tally.failed += 1;
                tally.failed_records += open;
            } else if abort {
                // Written first, so that readers have aborted records to skip.
                producer.flush().await;
                producer
                    .abort_transaction()
                    .await
                    .map_err(|e| fatal("abort_transaction", e))?;
                tally.aborted += 1;
                tally.aborted_records += open;
            } else {
                match producer.commit_transaction().await {
                    Ok(()) => {
                        tally.committed += 1;
                        tally.committed_records += open;
                    }
                    Err(e) if e.is_abortable() => {
                        tally.first_failure.get_or_insert_with(|| e.to_string());
                        producer
                            .abort_transaction()
                            .await
                            .map_err(|e| fatal("abort_transaction", e))?;
                        tally.failed += 1;
                        tally.failed_records += open;
                    }
                    Err(e) => return Err(fatal("commit_transaction", e)),
                }
            }
            open = 0;
            doomed = false;
        }
        if eof {
            break;
        }
    }
    Ok(tally)
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
