//! The seed's job, exactly once: read `words`, upper-case each value, write `WORDS`.
//!
//! ```text
//! cargo run -p krust-stream --example uppercase -- 127.0.0.1:19092 words WORDS uppercase worker-1
//! ```
//!
//! Arguments (all optional): bootstrap servers, input topic, output topic, group id, instance id.
//! Start it again with another instance id (same group) to share the partitions; restart an
//! instance with its own id after a crash and its open transaction is aborted. Add `--bounded`
//! last to stop at the input's end. Stops gracefully on Ctrl-C.

use std::time::Duration;

use krust_stream::{
    DeliveryGuarantee, KafkaSink, KafkaSource, StopPosition, StringSerializer, Utf8Deserializer,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRUST_LOG")
                .unwrap_or_else(|_| "krust_stream=info".into()),
        )
        .init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bounded = args.last().is_some_and(|a| a == "--bounded");
    if bounded {
        args.pop();
    }
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (bootstrap, input, output) = (arg(0, "127.0.0.1:19092"), arg(1, "words"), arg(2, "WORDS"));
    let (group, instance) = (arg(3, "uppercase"), arg(4, "worker-1"));

    let mut source = KafkaSource::builder(&bootstrap)
        .topic(&input)
        .group_id(&group)
        .deserializer(Utf8Deserializer)
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500");
    if bounded {
        source = source.bounded(StopPosition::Latest);
    }
    let sink = KafkaSink::builder(&bootstrap, StringSerializer)
        .topic(&output)
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix(format!("{group}-uppercase"))
        .instance_id(instance)
        .commit_interval(Duration::from_millis(100))
        .build()?;
    let job = source
        .build()?
        .pipeline()
        .map(|s: String| s.to_uppercase())
        .sink(sink)?
        .name("uppercase");
    let summary = job.run().await?;
    println!(
        "stopped ({:?}): {} in, {} out, {} transactions committed, {} aborted",
        summary.reason,
        summary.metrics.records_in,
        summary.metrics.records_out,
        summary.metrics.commits,
        summary.metrics.aborts
    );
    Ok(())
}
