//! Helpers shared by the producer test binaries.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
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
                FetchRequest::default()
                    .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                    .with_max_wait_ms(100)
                    .with_min_bytes(1)
                    .with_max_bytes(64 << 20)
                    .with_session_id(0)
                    .with_session_epoch(-1)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_current_leader_epoch(-1)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(32 << 20)])])
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
