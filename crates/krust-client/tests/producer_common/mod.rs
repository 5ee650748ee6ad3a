//! Helpers shared by the producer test binaries.

use std::time::{Duration, Instant};

use krust_client::Cluster;
use krust_wire::record::{batches, Record};

/// Every record of `topic`/`partition`, read with raw Fetch requests from offset 0 up to the
/// high watermark.
pub async fn read_partition(cluster: &Cluster, topic: &str, partition: i32) -> Vec<Record> {
    let md = cluster.topic(topic).await.expect("metadata");
    let leader = md
        .partition(partition)
        .and_then(|p| p.leader)
        .expect("leader");
    let mut out = Vec::new();
    let mut offset = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_v, resp) = cluster
            .send(leader, |_v| {
                krust_testkit::raw::whole_log_fetch(topic, partition, offset)
            })
            .await
            .expect("fetch");
        // tansu answers a fetch of an empty partition with no partition at all.
        let Some(p) = resp.responses.first().and_then(|t| t.partitions.first()) else {
            return out;
        };
        assert_eq!(p.error_code, 0, "fetch error");
        let hw = p.high_watermark;
        if let Some(records) = p.records.clone() {
            for batch in batches(records) {
                let batch = batch.expect("batch");
                for r in batch
                    .inflate()
                    .expect("inflate")
                    .into_records()
                    .expect("records")
                {
                    if r.offset >= offset {
                        out.push(r);
                    }
                }
                offset = offset.max(batch.next_offset());
            }
        }
        if offset >= hw {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "fetch did not reach the high watermark"
        );
    }
}
