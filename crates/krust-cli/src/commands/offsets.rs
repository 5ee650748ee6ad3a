//! `krust offsets TOPIC`: the earliest and latest offset of every partition.
//!
//! Earliest and latest come from ListOffsets. The latest is then checked against the high
//! watermark a Fetch reports, which is exact on every broker (tansu's ListOffsets LATEST is
//! not: it can lag by a batch), and the larger of the two is printed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use krust_client::admin::OffsetSpec;
use krust_client::consumer::{StartOffset, TopicPartition};
use krust_client::Admin;

use super::{client_error, topic_consumer};
use crate::cli::OffsetsArgs;
use crate::error::CliError;

/// Runs `krust offsets`.
pub(crate) async fn run(args: OffsetsArgs) -> Result<ExitCode, CliError> {
    let topic = args.topic.as_str();
    let defaults = [
        ("allow.auto.create.topics", "false".to_string()),
        // Only the watermarks are wanted: fetch as little as possible.
        ("max.partition.fetch.bytes", "1024".to_string()),
    ];
    let (mut consumer, meta) = topic_consumer(&args.conn, topic, &defaults).await?;
    let tps: Vec<TopicPartition> = (0..meta.partitions.len() as i32)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let admin = Admin::new(consumer.cluster().clone());
    // One lookup per spec: the request map is keyed by partition.
    let earliest = admin
        .list_offsets(
            &tps.iter()
                .map(|tp| (tp.clone(), OffsetSpec::Earliest))
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| client_error(e, Some(topic)))?;
    let latest = admin
        .list_offsets(
            &tps.iter()
                .map(|tp| (tp.clone(), OffsetSpec::Latest))
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| client_error(e, Some(topic)))?;

    // Fetch-reported high watermarks, for a second opinion on "latest".
    consumer
        .assign(tps.iter().map(|tp| {
            let from = earliest.get(tp).map_or(0, |o| o.offset.max(0));
            (tp.clone(), StartOffset::Offset(from))
        }))
        .await
        .map_err(|e| client_error(e, Some(topic)))?;
    let mut hw: HashMap<TopicPartition, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hw.len() < tps.len() && Instant::now() < deadline {
        let _ = consumer.poll_timeout(Duration::from_millis(200)).await;
        for tp in &tps {
            if let Some(w) = consumer.watermarks(tp) {
                hw.insert(tp.clone(), w.high_watermark);
            }
        }
    }

    println!("partition\tearliest\tlatest");
    for tp in &tps {
        let lo = earliest.get(tp).map_or(-1, |o| o.offset);
        let listed = latest.get(tp).map_or(-1, |o| o.offset);
        let hi = hw.get(tp).copied().unwrap_or(listed).max(listed);
        println!("{}\t{lo}\t{hi}", tp.partition);
    }
    consumer.cluster().close();
    Ok(ExitCode::SUCCESS)
}
