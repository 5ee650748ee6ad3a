//! `krust pipe`: a krust-stream job from the command line. Reads `--from` as a member of
//! group `-G`, applies `--map` to each value, writes `--to` with the chosen delivery guarantee,
//! and stops at the end of the input with `--bounded`, or on SIGINT/SIGTERM (gracefully: the
//! open transaction is committed, acknowledged offsets are committed, the group is left).
//! Prints a one-line summary on stderr at the end.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use krust_stream::{
    BytesDeserializer, BytesSerializer, DeliveryGuarantee, ErrorPolicy, Job, KafkaSink,
    KafkaSource, KafkaSourceBuilder, StartPosition, StopPosition, StopReason, StreamError,
    Utf8Deserializer,
};

use super::{client_error, ensure_topic};
use crate::cli::PipeArgs;
use crate::error::CliError;

/// Runs `krust pipe`.
pub(crate) async fn run(args: PipeArgs) -> Result<ExitCode, CliError> {
    let job = build(&args)?;
    // The input must exist (a typo must not auto-create a topic and wait forever).
    let cluster = super::connect_cluster(&args.conn).await?;
    let checked = ensure_topic(&cluster, &args.from).await;
    cluster.close();
    checked?;
    let metrics = job.metrics();
    let progress = (args.progress_secs > 0).then(|| {
        let m = metrics.clone();
        let every = Duration::from_secs(args.progress_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let s = m.snapshot();
                eprintln!(
                    "krust: pipe: in={} out={} errors={} commits={} lag={}",
                    s.records_in,
                    s.records_out,
                    s.errors,
                    s.commits,
                    s.lag.values().sum::<i64>()
                );
            }
        })
    });
    let result = job.run().await;
    if let Some(p) = progress {
        p.abort();
    }
    match result {
        Ok(summary) => {
            let s = &summary.metrics;
            let reason = match summary.reason {
                StopReason::BoundedEnd => "bounded-end",
                StopReason::Signal => "signal",
                StopReason::Shutdown => "shutdown",
            };
            eprintln!(
                "krust: pipe: reason={reason} in={} out={} errors={} skipped={} dead_lettered={} \
                 commits={} aborts={} commit_ms_avg={:.1} commit_ms_max={:.1}",
                s.records_in,
                s.records_out,
                s.errors,
                s.skipped,
                s.dead_lettered,
                s.commits,
                s.aborts,
                s.commit_latency_avg.as_secs_f64() * 1e3,
                s.commit_latency_max.as_secs_f64() * 1e3,
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(stream_error(e)),
    }
}

fn stream_error(e: StreamError) -> CliError {
    match e {
        StreamError::Config { setting, message } => {
            CliError::Usage(format!("invalid setting '{setting}': {message}"))
        }
        StreamError::Client(c) => client_error(c, None),
        other => CliError::failed(other.to_string()),
    }
}

fn apply_props<D: krust_stream::Deserializer>(
    mut b: KafkaSourceBuilder<D>,
    args: &PipeArgs,
) -> KafkaSourceBuilder<D> {
    for p in args.conn.properties.iter().chain(&args.consumer_properties) {
        b = b.property(p.name.clone(), p.value.clone());
    }
    b
}

/// Builds the job from the flags (every flag error is a usage error naming the flag).
fn build(args: &PipeArgs) -> Result<Job, CliError> {
    let guarantee: DeliveryGuarantee = args
        .guarantee
        .parse()
        .map_err(|e: String| CliError::Usage(format!("--guarantee: {e}")))?;
    if args.group.is_empty() {
        return Err(CliError::Usage("-G needs a non-empty group id".into()));
    }
    if args.from == args.to {
        return Err(CliError::Usage(
            "--from and --to must differ (the job would read its own output)".into(),
        ));
    }
    let fallback = match args.start.as_str() {
        "earliest" | "beginning" => StartPosition::Earliest,
        "latest" | "end" => StartPosition::Latest,
        other => {
            return Err(CliError::Usage(format!(
                "--start: '{other}' is not earliest or latest"
            )))
        }
    };
    let policy = match args.on_error.as_str() {
        "fail" => ErrorPolicy::Fail,
        "skip" => ErrorPolicy::Skip,
        other => match other.strip_prefix("dead-letter:") {
            Some(t) if !t.is_empty() => ErrorPolicy::DeadLetter(t.to_string()),
            _ => {
                return Err(CliError::Usage(format!(
                    "--on-error: '{other}' is not fail, skip or dead-letter:TOPIC"
                )))
            }
        },
    };
    let brokers = args.conn.brokers.0.as_str();
    let mut source = KafkaSource::builder(brokers)
        .topic(args.from.clone())
        .group_id(args.group.clone())
        .start(StartPosition::committed_or(fallback))
        .on_error(policy);
    if args.bounded {
        source = source.bounded(StopPosition::Latest);
    }
    let source = apply_props(source, args);
    let mut sink = KafkaSink::builder(brokers, BytesSerializer)
        .topic(args.to.clone())
        .delivery_guarantee(guarantee);
    for p in args.conn.properties.iter().chain(&args.producer_properties) {
        sink = sink.property(p.name.clone(), p.value.clone());
    }
    if let Some(ms) = args.commit_interval_ms {
        if ms == 0 {
            return Err(CliError::Usage(
                "--commit-interval-ms must be positive".into(),
            ));
        }
        sink = sink.commit_interval(Duration::from_millis(ms));
    }
    if guarantee == DeliveryGuarantee::ExactlyOnce {
        let instance = args.instance_id.clone().ok_or_else(|| {
            CliError::Usage(
                "--guarantee exactly-once needs --instance-id ID: stable across restarts of \
                 this instance, different for every instance of the job"
                    .into(),
            )
        })?;
        sink = sink.instance_id(instance).transactional_id_prefix(
            args.transactional_id_prefix
                .clone()
                .unwrap_or_else(|| format!("krust-pipe-{}", args.group)),
        );
        if let Some(ms) = args.transaction_timeout_ms {
            sink = sink.transaction_timeout(Duration::from_millis(ms));
        }
    }
    let sink = sink.build().map_err(stream_error)?;
    let map: fn(String) -> String = match args.map.as_str() {
        "upper" => |s| s.to_uppercase(),
        "lower" => |s| s.to_lowercase(),
        "identity" => {
            let source = source
                .deserializer(BytesDeserializer)
                .build()
                .map_err(stream_error)?;
            return source.pipeline().sink(sink).map_err(stream_error);
        }
        other => {
            return Err(CliError::Usage(format!(
                "--map: '{other}' is not upper, lower or identity"
            )))
        }
    };
    let source = source
        .deserializer(Utf8Deserializer)
        .build()
        .map_err(stream_error)?;
    let pipeline = source.pipeline();
    let pipeline = match args.max_rate {
        None => pipeline.map(map),
        Some(0) => return Err(CliError::Usage("--max-rate must be positive".into())),
        Some(rate) => {
            // One slot every 1/rate s, handed out in input order (order is kept).
            let every = Duration::from_nanos(1_000_000_000 / rate);
            let next = Arc::new(Mutex::new(tokio::time::Instant::now()));
            pipeline.map_async(1, move |s: String| {
                let at = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let now = tokio::time::Instant::now();
                    if *n < now {
                        *n = now;
                    }
                    let at = *n;
                    *n += every;
                    at
                };
                async move {
                    tokio::time::sleep_until(at).await;
                    map(s)
                }
            })
        }
    };
    pipeline.map(Bytes::from).sink(sink).map_err(stream_error)
}
