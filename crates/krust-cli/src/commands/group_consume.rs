//! `krust consume -G GROUP`: consume as a member of a consumer group (kcat's `-G`). The group
//! assigns the partitions; reading starts at the group's committed offsets (or at `-o
//! beginning|end` where nothing is committed), and consumed offsets are committed as the group
//! settings say (`enable.auto.commit`, on by default: periodically and when leaving). The
//! member leaves the group cleanly on `-c COUNT`, on `-e` once every assigned partition is at
//! its end, and on SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::FutureExt;
use krust_client::consumer::TopicPartition;
use krust_client::group::{GroupConsumer, OffsetAndMetadata, Subscription};
use krust_client::{Cluster, Consumer, ConsumerConfig};

use super::consume::{broken_pipe_or, render};
use super::{client_error, properties, topic_names};
use crate::args::StartAt;
use crate::cli::ConsumeArgs;
use crate::error::CliError;

/// Runs `krust consume -G GROUP`.
pub(crate) async fn run(args: ConsumeArgs) -> Result<ExitCode, CliError> {
    let group = args.group.clone().unwrap_or_default();
    if group.is_empty() {
        return Err(CliError::Usage("-G needs a non-empty group id".into()));
    }
    if !args.partitions.is_empty() {
        return Err(CliError::Usage(
            "-p cannot be used with -G: the group assigns the partitions".into(),
        ));
    }
    let reset = match args.start {
        StartAt::Beginning => "earliest",
        StartAt::End => "latest",
        _ => {
            return Err(CliError::Usage(
                "with -G, -o must be beginning or end (where a partition without a committed \
                 offset starts)"
                    .into(),
            ))
        }
    };
    let subscription = subscription(&args.topics)?;
    let format = args.format.clone().unwrap_or_default();
    let mut defaults = vec![
        ("allow.auto.create.topics", "false".to_string()),
        ("enable.partition.eof", args.exit_at_end.to_string()),
        ("auto.offset.reset", reset.to_string()),
    ];
    if let Some(level) = args.isolation {
        defaults.push(("isolation.level", level.as_property().to_string()));
    }
    let mut props = properties(&args.conn, &defaults);
    props.set("group.id", group.clone());
    // The group settings (group.id, session.timeout.ms, enable.auto.commit, ...) land in
    // `config.group`, which `Consumer::subscribe` uses.
    let config = ConsumerConfig::from_properties(props).map_err(|e| client_error(e, None))?;
    let cluster = Cluster::connect(config.client.clone())
        .await
        .map_err(|e| client_error(e, None))?;
    if let Subscription::Topics(topics) = &subscription {
        let known = topic_names(&cluster, true).await?;
        if let Some(missing) = topics.iter().find(|t| !known.contains(t)) {
            return Err(CliError::UnknownTopic(missing.clone()));
        }
    }
    let mut consumer = Consumer::with_cluster(cluster.clone(), config)
        .and_then(|c| c.subscribe(subscription))
        .map_err(|e| client_error(e, None))?;

    let result = consume_loop(&mut consumer, &args, &format).await;
    // Leave the group whatever happened (commits consumed offsets with auto-commit).
    consumer.close().await;
    cluster.close();
    let (printed, partitions) = match result {
        Ok(Outcome::Done {
            printed,
            partitions,
        }) => (printed, partitions),
        Ok(Outcome::ReaderGone) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e),
    };
    if args.exit_at_end {
        eprintln!("krust: {printed} record(s) from {partitions} partition(s) in group '{group}'");
    }
    Ok(ExitCode::SUCCESS)
}

/// The subscription from the `-t` values: one regex (a value starting with `^`) or topics.
fn subscription(topics: &[String]) -> Result<Subscription, CliError> {
    let patterns: Vec<&String> = topics.iter().filter(|t| t.starts_with('^')).collect();
    match patterns.as_slice() {
        [] => Ok(Subscription::topics(topics.iter().cloned())),
        [p] if topics.len() == 1 => Subscription::pattern(p).map_err(|e| {
            // The regex crate's message ends with its reason ("error: unclosed group").
            let why = match &e {
                krust_client::Error::Config { message, .. } => message
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string(),
                other => other.to_string(),
            };
            CliError::Usage(format!("bad topic regex '{p}': {why}"))
        }),
        _ => Err(CliError::Usage(
            "a topic regex (-t '^...') must be the only -t".into(),
        )),
    }
}

enum Outcome {
    Done { printed: u64, partitions: usize },
    ReaderGone,
}

async fn consume_loop(
    consumer: &mut GroupConsumer,
    args: &ConsumeArgs,
    format: &crate::format::Format,
) -> Result<Outcome, CliError> {
    let mut stop = super::stop_signals();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::with_capacity(4096);
    let mut printed: u64 = 0;
    let limit = args.count;
    let mut seen: std::collections::BTreeSet<TopicPartition> = Default::default();
    loop {
        if limit.is_some_and(|l| printed >= l) {
            break;
        }
        if args.exit_at_end && all_at_end(consumer) {
            break;
        }
        let polled = tokio::select! {
            r = consumer.poll_timeout(Duration::from_millis(200)) => r,
            _ = &mut stop => break,
        };
        let records = polled
            .map_err(|e| client_error(e, None))?
            .unwrap_or_default();
        for (i, r) in records.iter().enumerate() {
            if limit.is_some_and(|l| printed >= l) {
                // -c reached inside a batch: the group was told the whole batch was consumed;
                // what was not printed is left for the next reader.
                unconsume(consumer, &records[i..]);
                break;
            }
            seen.insert(TopicPartition::new(r.topic.clone(), r.partition));
            buf.clear();
            render(format, r, &mut buf);
            if let Err(e) = out.write_all(&buf) {
                return broken_pipe_or(e).map(|_| Outcome::ReaderGone);
            }
            printed += 1;
        }
        if let Err(e) = out.flush() {
            return broken_pipe_or(e).map(|_| Outcome::ReaderGone);
        }
    }
    if let Err(e) = out.flush() {
        return broken_pipe_or(e).map(|_| Outcome::ReaderGone);
    }
    seen.extend(consumer.member().assignment());
    Ok(Outcome::Done {
        printed,
        partitions: seen.len(),
    })
}

/// Tells the group that `unprinted` records were not consumed: each partition's consumed
/// position goes back to its first unprinted record (so auto-commit commits only what was
/// printed).
fn unconsume(consumer: &mut GroupConsumer, unprinted: &[krust_client::ConsumerRecord]) {
    let mut first: std::collections::BTreeMap<TopicPartition, (i64, Option<i32>)> =
        Default::default();
    for r in unprinted {
        first
            .entry(TopicPartition::new(r.topic.clone(), r.partition))
            .or_insert((r.offset, r.leader_epoch));
    }
    for (tp, (offset, leader_epoch)) in first {
        consumer.member().consumed(
            tp,
            OffsetAndMetadata {
                offset,
                leader_epoch,
                metadata: None,
            },
        );
    }
}

/// After the first rebalance: whether every partition the member owns has been read to its
/// end (an empty assignment counts as done).
fn all_at_end(consumer: &mut GroupConsumer) -> bool {
    if consumer
        .member()
        .wait_rebalances(1)
        .now_or_never()
        .is_none()
    {
        return false;
    }
    let owned = consumer.member().assignment();
    let c = consumer.consumer();
    let _ = c.take_partition_eofs();
    owned.iter().all(|tp| c.is_at_end(tp))
}
