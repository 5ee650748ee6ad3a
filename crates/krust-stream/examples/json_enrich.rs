//! A JSON enrich/filter job with serde types, at least once: orders in, priced orders out;
//! orders with no quantity are dropped, unknown products and invalid JSON go to a dead-letter
//! topic with the error in the record headers.
//!
//! ```text
//! cargo run -p krust-stream --example json_enrich -- 127.0.0.1:19092 orders priced orders-dlq
//! ```
//!
//! Input: `{"order_id": 7, "product": "tea", "qty": 3}`; output:
//! `{"order_id":7,"product":"tea","qty":3,"unit_cents":250,"total_cents":750}`, keyed by product.

use std::collections::HashMap;

use krust_stream::{
    DeliveryGuarantee, ErrorPolicy, JsonDeserializer, JsonSerializer, KafkaSink, KafkaSource,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Order {
    order_id: u64,
    product: String,
    qty: u32,
}

#[derive(Debug, Serialize)]
struct Priced {
    order_id: u64,
    product: String,
    qty: u32,
    unit_cents: u64,
    total_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRUST_LOG")
                .unwrap_or_else(|_| "krust_stream=info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (bootstrap, input, output, dlq) = (
        arg(0, "127.0.0.1:19092"),
        arg(1, "orders"),
        arg(2, "priced"),
        arg(3, "orders-dlq"),
    );
    // Reference data: a real job would load it at start (it is read-only, so stateless is
    // fine).
    let prices: HashMap<&'static str, u64> = [("tea", 250), ("coffee", 320), ("cake", 410)].into();

    let source = KafkaSource::builder(&bootstrap)
        .topic(&input)
        .group_id("json-enrich")
        .deserializer(JsonDeserializer::<Order>::new())
        .on_error(ErrorPolicy::DeadLetter(dlq))
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500")
        .build()?;
    let sink = KafkaSink::builder(&bootstrap, JsonSerializer)
        .topic(&output)
        .delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
        .build()?;
    let job = source
        .pipeline()
        .filter(|o: &Order| o.qty > 0)
        .try_map(move |o: Order| match prices.get(o.product.as_str()) {
            Some(unit) => Ok(Priced {
                total_cents: unit * u64::from(o.qty),
                unit_cents: *unit,
                order_id: o.order_id,
                product: o.product,
                qty: o.qty,
            }),
            None => Err(format!("unknown product `{}`", o.product)),
        })
        .key_by(|p: &Priced| Some(p.product.clone()))
        .sink(sink)?
        .name("json-enrich");
    let s = job.run().await?;
    println!(
        "stopped: {} in, {} out, {} dead-lettered",
        s.metrics.records_in, s.metrics.records_out, s.metrics.dead_lettered
    );
    Ok(())
}
