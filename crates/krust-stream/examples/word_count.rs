//! Word count, and what a stateless layer can and cannot do about it.
//!
//! krust-stream keeps no state between records: every operator sees one record. So this job
//! does the part that *is* stateless, exactly once: it splits each line into words and emits
//! one record per word, keyed by the word, with the count of that word *within the line* as the
//! value. Keying by word sends every occurrence of a word to one partition of the output
//! topic, which is what any aggregation downstream needs.
//!
//! What it cannot do: keep a running total per word. That needs state that survives restarts
//! and moves with its partition when the group rebalances (Kafka Streams keeps a local store
//! plus a changelog topic, and restores it on the new owner; Flink checkpoints it). Doing it
//! here with a `HashMap` inside `map` would be wrong in three ways: the counts vanish on
//! restart, a rebalance leaves a word's count on the instance that no longer owns it, and under
//! EXACTLY_ONCE an aborted and replayed transaction would count its records twice in the map
//! (the map is not part of the transaction). Ways to get totals from this output: a consumer
//! that sums per key into a database in the same transaction as its offsets, or a stateful
//! stream processor downstream.
//!
//! ```text
//! cargo run -p krust-stream --example word_count -- 127.0.0.1:19092 lines word-counts worker-1
//! ```

use std::collections::BTreeMap;

use krust_stream::{DeliveryGuarantee, KafkaSink, KafkaSource, StringSerializer, Utf8Deserializer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (bootstrap, input, output, instance) = (
        arg(0, "127.0.0.1:19092"),
        arg(1, "lines"),
        arg(2, "word-counts"),
        arg(3, "worker-1"),
    );
    let source = KafkaSource::builder(&bootstrap)
        .topic(&input)
        .group_id("word-count")
        .deserializer(Utf8Deserializer)
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500")
        .build()?;
    let sink = KafkaSink::builder(&bootstrap, StringSerializer)
        .topic(&output)
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix("word-count")
        .instance_id(instance)
        .build()?;
    let job = source
        .pipeline()
        // Per line: word -> occurrences in this line (a stateless, per-record count).
        .flat_map(|line: String| {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for w in line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                *counts.entry(w.to_lowercase()).or_default() += 1;
            }
            counts.into_iter().collect::<Vec<_>>()
        })
        .key_by(|(word, _): &(String, u64)| Some(word.clone()))
        .map(|(_, n)| n.to_string())
        .sink(sink)?
        .name("word-count");
    let s = job.run().await?;
    println!(
        "stopped: {} lines in, {} word records out",
        s.metrics.records_in, s.metrics.records_out
    );
    Ok(())
}
