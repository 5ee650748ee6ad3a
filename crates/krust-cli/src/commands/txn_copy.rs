//! `krust txn copy`: copies a topic to another exactly once (consume-transform-produce, the
//! shape of Kafka's transactional copier).
//!
//! The copier is a consumer-group member on the input topic (read_committed, no auto-commit)
//! and a transactional producer. For each batch of up to `--batch` polled records it begins a
//! transaction, produces the records to the output topic, adds the next input offsets to the
//! transaction with the group's metadata (KIP-447: a member of an older generation is refused)
//! and commits. The output and the input progress therefore commit together or not at all.
//!
//! - An abortable error (a rebalance that made the group metadata stale, a failed produce):
//!   the transaction is aborted and the consumer rewinds to the group's committed offsets, so
//!   the batch is copied again by whoever owns its partitions now.
//! - A fatal error (fenced by a newer copier with the same transactional id, authorisation):
//!   the copier stops with status 1 and commits nothing more.
//! - A commit whose outcome stays unknown: status 1; the next copier with the same
//!   transactional id re-initialises, which settles it.
//! - A restart with the same transactional id fences the previous instance and aborts what it
//!   left open (`init_transactions`), then resumes from the committed input offsets.
//!
//! SIGINT or SIGTERM stop it between transactions (status 0).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use krust_client::consumer::{ConsumerRecord, TopicPartition};
use krust_client::group::{
    ConsumerGroupMetadata as GroupMetadata, GroupConsumer, OffsetAndMetadata, Subscription,
};
use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
use krust_client::{Cluster, Consumer, ConsumerConfig, Properties};

use super::{client_error, ensure_topic, properties};
use crate::args::Property;
use crate::cli::TxnCopyArgs;
use crate::error::CliError;

/// How long one poll waits before the loop looks at the stop and idle conditions.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// Attempts at a commit whose outcome is unknown before giving up (status 1).
const COMMIT_TRIES: u32 = 5;

/// Counters printed at the end.
#[derive(Debug, Default)]
struct Progress {
    records: u64,
    transactions: u64,
    aborted: u64,
}

fn with(mut props: Properties, extra: &[Property]) -> Properties {
    for p in extra {
        props.set(p.name.clone(), p.value.clone());
    }
    props
}

/// Runs `krust txn copy`.
pub(crate) async fn run(args: TxnCopyArgs) -> Result<ExitCode, CliError> {
    if args.from == args.to {
        return Err(CliError::Usage(
            "--from and --to must be different topics".into(),
        ));
    }
    if args.group.is_empty() || args.transactional_id.is_empty() {
        return Err(CliError::Usage(
            "-G and --transactional-id need non-empty values".into(),
        ));
    }
    let consumer_defaults = [
        ("allow.auto.create.topics", "false".to_string()),
        ("isolation.level", "read_committed".to_string()),
        ("enable.auto.commit", "false".to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        ("group.id", args.group.clone()),
        // One poll is one transaction (at most --batch records).
        ("max.poll.records", args.batch.to_string()),
    ];
    let cprops = with(
        properties(&args.conn, &consumer_defaults),
        &args.consumer_properties,
    );
    let cconfig = ConsumerConfig::from_properties(cprops).map_err(|e| client_error(e, None))?;
    let producer_defaults = [("transactional.id", args.transactional_id.clone())];
    let pprops = with(
        properties(&args.conn, &producer_defaults),
        &args.producer_properties,
    );
    let pconfig = ProducerConfig::from_properties(pprops).map_err(|e| client_error(e, None))?;

    // Registered now, so that a signal during start-up also ends the copier cleanly.
    let mut stop = super::stop_signals();
    let setup = tokio::select! {
        r = setup(&args, cconfig, pconfig) => r?,
        _ = &mut stop => {
            eprintln!("krust: stopped before copying");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let (cluster, producer, mut consumer) = setup;
    eprintln!(
        "krust: copying '{}' to '{}' (group '{}', transactional id '{}'); SIGINT or SIGTERM stops",
        args.from, args.to, args.group, args.transactional_id
    );

    let mut progress = Progress::default();
    let result = copy_loop(&mut consumer, &producer, &args, &mut progress, &mut stop).await;
    consumer.close().await;
    producer.close().await;
    cluster.close();
    eprintln!(
        "krust: copied {} record(s) from '{}' to '{}' in {} committed transaction(s), {} aborted",
        progress.records, args.from, args.to, progress.transactions, progress.aborted
    );
    result.map(|()| ExitCode::SUCCESS)
}

/// Connects, checks the topics, initialises the transactional producer (fencing an earlier
/// copier with the same transactional id) and joins the group.
async fn setup(
    args: &TxnCopyArgs,
    cconfig: ConsumerConfig,
    pconfig: ProducerConfig,
) -> Result<(Cluster, Producer, GroupConsumer), CliError> {
    let cluster = Cluster::connect(cconfig.client.clone())
        .await
        .map_err(|e| client_error(e, None))?;
    ensure_topic(&cluster, &args.from).await?;
    ensure_topic(&cluster, &args.to).await?;

    let producer = Producer::new(pconfig)
        .await
        .map_err(|e| client_error(e, Some(&args.to)))?;
    // Fences an earlier copier with this transactional id and aborts what it left open, before
    // this one reads any committed offset.
    producer
        .init_transactions()
        .await
        .map_err(|e| CliError::failed(format!("init_transactions: {e}")))?;
    tracing::info!(txn = %args.transactional_id, "copier initialised");

    let consumer = Consumer::with_cluster(cluster.clone(), cconfig)
        .and_then(|c| c.subscribe(Subscription::topics([args.from.clone()])))
        .map_err(|e| client_error(e, None))?;
    Ok((cluster, producer, consumer))
}

async fn copy_loop(
    consumer: &mut GroupConsumer,
    producer: &Producer,
    args: &TxnCopyArgs,
    progress: &mut Progress,
    stop: &mut Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<(), CliError> {
    let mut last_input = Instant::now();
    let idle_limit = args.idle_exit_secs.map(Duration::from_secs);
    loop {
        // The group membership the records belong to. It changes only when a poll applies a
        // new assignment (never in the background), so offsets sent with it are rejected if
        // these partitions have moved on; a change during the poll means a rebalance was
        // handled there: read again from the committed offsets.
        let before = consumer.group_metadata();
        let polled = tokio::select! {
            r = consumer.poll_timeout(POLL_WAIT) => r,
            _ = &mut *stop => return Ok(()),
        };
        let records = polled
            .map_err(|e| CliError::failed(format!("consumer: {e}")))?
            .unwrap_or_default();
        if records.is_empty() {
            if idle_limit.is_some_and(|l| last_input.elapsed() >= l) {
                return Ok(());
            }
            continue;
        }
        last_input = Instant::now();
        let group = consumer.group_metadata();
        if group != before {
            // The membership changed during the poll: read again from the committed offsets
            // under the new one.
            tracing::debug!(
                ?before,
                ?group,
                "membership changed during the poll; rewinding"
            );
            rewind(consumer).await?;
            continue;
        }
        for chunk in records.chunks(args.batch as usize) {
            match copy_one(producer, chunk, &group, args).await {
                Ok(()) => {
                    progress.records += chunk.len() as u64;
                    progress.transactions += 1;
                }
                Err(e) if e.is_fatal() || e.is_commit_outcome_unknown() => {
                    return Err(CliError::failed(format!("copier stopped: {e}")));
                }
                Err(e) => {
                    tracing::info!(error = %e, "aborting the transaction; rewinding to the committed offsets");
                    if let Err(abort) = producer.abort_transaction().await {
                        return Err(CliError::failed(format!(
                            "copier stopped: {e}; abort_transaction: {abort}"
                        )));
                    }
                    progress.aborted += 1;
                    rewind(consumer).await?;
                    // The rest of this poll is read again from the committed offsets.
                    break;
                }
            }
        }
    }
}

/// One transaction: the records of `chunk` to the output and the next input offsets.
async fn copy_one(
    producer: &Producer,
    chunk: &[ConsumerRecord],
    group: &GroupMetadata,
    args: &TxnCopyArgs,
) -> krust_client::Result<()> {
    producer.begin_transaction().await?;
    let mut deliveries = Vec::with_capacity(chunk.len());
    let mut next: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    for r in chunk {
        let delivery = producer
            .send(transform(r, &args.to))
            .await
            .map_err(|e| krust_client::Error::Other(e.to_string()))?;
        deliveries.push(delivery);
        next.insert(
            TopicPartition::new(r.topic.clone(), r.partition),
            OffsetAndMetadata {
                offset: r.offset + 1,
                leader_epoch: r.leader_epoch,
                metadata: None,
            },
        );
    }
    if args.hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;
    }
    producer.send_offsets_to_transaction(next, group).await?;
    let mut tries = 0;
    loop {
        match producer.commit_transaction().await {
            Ok(()) => break,
            Err(e) if e.is_commit_outcome_unknown() && tries + 1 < COMMIT_TRIES => {
                tracing::warn!(error = %e, "commit outcome unknown; committing again");
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
    // A committed transaction holds every record it was given; a failed delivery here would
    // be a producer bug, and the copier must not go on past it.
    for d in deliveries {
        if let Err(e) = d.await {
            return Err(krust_client::Error::Other(format!(
                "a record of a committed transaction reports failure: {e}"
            )));
        }
    }
    Ok(())
}

/// The output record: the input's key, value, headers and timestamp, partitioned by key.
fn transform(r: &ConsumerRecord, to: &str) -> ProducerRecord {
    let mut out = ProducerRecord::new(to.to_string());
    if let Some(k) = &r.key {
        out = out.with_key(Bytes::clone(k));
    }
    if let Some(v) = &r.value {
        out = out.with_value(Bytes::clone(v));
    }
    if r.timestamp >= 0 {
        out = out.with_timestamp(r.timestamp);
    }
    for h in &r.headers {
        out = match &h.value {
            Some(v) => out.with_header(h.key.to_string(), Bytes::clone(v)),
            None => out.with_null_header(h.key.to_string()),
        };
    }
    out
}

/// Moves every owned partition back to the group's committed offset (the earliest offset
/// where nothing is committed), dropping what was fetched beyond it. Retries a retriable
/// failure to read the offsets a few times.
async fn rewind(consumer: &mut GroupConsumer) -> Result<(), CliError> {
    consumer
        .rewind_to_committed()
        .await
        .map_err(|e| CliError::failed(format!("cannot rewind to the committed offsets: {e}")))
}
