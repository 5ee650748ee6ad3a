//! Helpers shared by the transactional producer's test binaries (`txn_fake`, `txn_tansu`).
//! Time limits are the including test's `T`.
#![allow(dead_code)]

use krust_client::producer::{Producer, ProducerRecord};

use super::T;

/// Runs `init_transactions` on `p` (within `T`) and returns it.
pub async fn init(p: Producer) -> Producer {
    tokio::time::timeout(T, p.init_transactions())
        .await
        .expect("init in time")
        .expect("init_transactions");
    p
}

/// `n` distinct values `{prefix}-{i}`.
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends `vals` to `topic`, round-robin over partitions `0..partitions`, and waits (each
/// within `T`) until every one is delivered.
pub async fn send_all(p: &Producer, topic: &str, partitions: i32, vals: &[String]) {
    let mut futs = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        let r = ProducerRecord::new(topic)
            .with_partition(i as i32 % partitions)
            .with_value(v.clone());
        futs.push(p.send(r).await.expect("accepted"));
    }
    for f in futs {
        tokio::time::timeout(T, f)
            .await
            .expect("delivered in time")
            .expect("delivered");
    }
}
