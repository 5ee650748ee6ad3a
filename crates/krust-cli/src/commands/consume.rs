//! `krust consume`: print records of a topic with a kcat format, optionally stopping at the end
//! of every partition (`-e`) or after a count (`-c`).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use krust_client::consumer::{ConsumerRecord, StartOffset, TopicPartition};
use krust_client::Consumer;

use super::{client_error, topic_consumer};
use crate::args::StartAt;
use crate::cli::ConsumeArgs;
use crate::error::CliError;
use crate::format::{Format, RecordView};

/// Runs `krust consume`.
pub(crate) async fn run(args: ConsumeArgs) -> Result<ExitCode, CliError> {
    if args.group.is_some() {
        return super::group_consume::run(args).await;
    }
    let [topic] = args.topics.as_slice() else {
        return Err(CliError::Usage(
            "several -t topics need a group (-G GROUP)".into(),
        ));
    };
    let topic = topic.as_str();
    let format = args.format.clone().unwrap_or_default();
    let mut defaults = vec![
        ("allow.auto.create.topics", "false".to_string()),
        ("enable.partition.eof", args.exit_at_end.to_string()),
    ];
    if let Some(level) = args.isolation {
        defaults.push(("isolation.level", level.as_property().to_string()));
    }
    let (mut consumer, meta) = topic_consumer(&args.conn, topic, &defaults).await?;
    let count = meta.partitions.len() as i32;
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        (0..count).collect()
    } else {
        for p in &args.partitions {
            if *p < 0 || *p >= count {
                return Err(CliError::failed(format!(
                    "topic '{topic}' has no partition {p} (it has {count})"
                )));
            }
        }
        args.partitions.clone()
    };
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(topic, *p))
        .collect();
    let starts = start_offsets(&consumer, &tps, args.start).await?;
    consumer
        .assign(tps.iter().cloned().zip(starts))
        .await
        .map_err(|e| client_error(e, Some(topic)))?;

    let mut remaining: BTreeSet<TopicPartition> = tps.iter().cloned().collect();
    let mut printed: u64 = 0;
    let limit = args.count;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::with_capacity(4096);
    'outer: loop {
        if limit.is_some_and(|l| printed >= l) {
            break;
        }
        if args.exit_at_end {
            for tp in consumer.take_partition_eofs() {
                remaining.remove(&tp);
            }
            remaining.retain(|tp| !consumer.is_at_end(tp));
            if remaining.is_empty() {
                break;
            }
        }
        let records = consumer
            .poll()
            .await
            .map_err(|e| client_error(e, Some(topic)))?;
        for r in &records {
            buf.clear();
            render(&format, r, &mut buf);
            if let Err(e) = out.write_all(&buf) {
                return broken_pipe_or(e);
            }
            printed += 1;
            if limit.is_some_and(|l| printed >= l) {
                break 'outer;
            }
        }
        if let Err(e) = out.flush() {
            return broken_pipe_or(e);
        }
    }
    if let Err(e) = out.flush() {
        return broken_pipe_or(e);
    }
    drop(out);
    if args.exit_at_end {
        eprintln!(
            "krust: {printed} record(s) from {} partition(s) of '{topic}'",
            tps.len()
        );
    }
    consumer.cluster().close();
    Ok(ExitCode::SUCCESS)
}

/// A reader that went away (`| head`) ends the command quietly; other write errors fail it.
pub(crate) fn broken_pipe_or(e: std::io::Error) -> Result<ExitCode, CliError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::failed(format!("cannot write to stdout: {e}")))
    }
}

/// Where each partition starts, from `-o`.
async fn start_offsets(
    consumer: &Consumer,
    tps: &[TopicPartition],
    start: StartAt,
) -> Result<Vec<StartOffset>, CliError> {
    let one = match start {
        StartAt::Beginning => StartOffset::Earliest,
        StartAt::End => StartOffset::Latest,
        StartAt::Offset(o) => StartOffset::Offset(o),
        StartAt::Timestamp(t) => StartOffset::Timestamp(t),
        StartAt::FromEnd(n) => {
            let begin = consumer
                .beginning_offsets(tps.iter().cloned())
                .await
                .map_err(|e| client_error(e, None))?;
            let end = consumer
                .end_offsets(tps.iter().cloned())
                .await
                .map_err(|e| client_error(e, None))?;
            return Ok(tps
                .iter()
                .map(|tp| {
                    let lo = begin.get(tp).copied().unwrap_or(0);
                    let hi = end.get(tp).copied().unwrap_or(lo);
                    StartOffset::Offset(hi.saturating_sub(n).max(lo))
                })
                .collect());
        }
    };
    Ok(vec![one; tps.len()])
}

/// Renders one record with `format` into `out`.
pub(crate) fn render(format: &Format, r: &ConsumerRecord, out: &mut Vec<u8>) {
    let headers: Vec<(&str, Option<&[u8]>)> = r
        .headers
        .iter()
        .map(|h| (&*h.key, h.value.as_deref()))
        .collect();
    let view = RecordView {
        topic: &r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: Some(r.timestamp).filter(|t| *t >= 0),
        key: r.key.as_deref(),
        value: r.value.as_deref(),
        headers: &headers,
    };
    format.render(&view, out);
}
