//! The raw-log transaction audit shared by the exactly-once tests (`pipe`, `txn_copier`): every
//! partition of a topic read with raw Fetch requests (read_uncommitted, from offset 0 to the
//! high watermark), each transactional record filed under the outcome its producer's next
//! control marker in that partition gives it (what a broker's aborted-transaction index tells
//! a read_committed consumer), so exactly-once can be checked even on a broker whose Fetch
//! never lists aborted transactions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use krust_client::Cluster;
use krust_wire::record::{batches, ControlRecordType};

/// A topic's log, sorted into transactions by the control markers in it.
#[derive(Debug, Default)]
pub struct TxnLog {
    /// Values of committed transactional records.
    pub committed: Vec<String>,
    /// Values of aborted transactional records.
    pub aborted: Vec<String>,
    /// Values of transactional records with no marker yet.
    pub open: Vec<String>,
    /// Values of non-transactional records.
    pub plain: Vec<String>,
    /// Per committed data batch: (partition, producer epoch, base offset).
    pub committed_batches: Vec<(i32, i16, i64)>,
}

/// A producer's transactional records waiting for their marker: values and batches.
type Pending = (Vec<String>, Vec<(i32, i16, i64)>);

/// Reads every batch of every partition of `topic` (read_uncommitted, raw Fetch from offset 0
/// to the high watermark) and files each transactional record under the outcome its
/// producer's next marker in that partition gives it.
pub async fn txn_log(cluster: &Cluster, topic: &str) -> TxnLog {
    let mut out = TxnLog::default();
    let md = cluster.topic(topic).await.expect("metadata");
    for pm in &md.partitions {
        let partition = pm.partition;
        let leader = pm.leader.expect("leader");
        let mut offset = 0i64;
        // Per producer id: the values and batches waiting for a marker.
        let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
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
                break;
            };
            assert_eq!(p.error_code, 0, "fetch error");
            let hw = p.high_watermark;
            for batch in batches(p.records.clone().unwrap_or_default()) {
                let batch = batch.expect("batch");
                if batch.next_offset() <= offset {
                    continue;
                }
                let inflated = batch.inflate().expect("inflate");
                let h = *inflated.header();
                if batch.is_control() {
                    let kind = inflated.control().map(|c| c.kind);
                    let (values, bs) = pending.remove(&h.producer_id).unwrap_or_default();
                    match kind {
                        Some(ControlRecordType::Commit) => {
                            out.committed.extend(values);
                            out.committed_batches.extend(bs);
                        }
                        Some(ControlRecordType::Abort) => out.aborted.extend(values),
                        other => panic!("unexpected control record {other:?}"),
                    }
                } else {
                    let values: Vec<String> = inflated
                        .into_records()
                        .expect("records")
                        .into_iter()
                        .filter(|r| r.offset >= offset)
                        .map(|r| {
                            String::from_utf8(r.value.unwrap_or_default().to_vec())
                                .expect("UTF-8 value")
                        })
                        .collect();
                    if h.is_transactional() {
                        let e = pending.entry(h.producer_id).or_default();
                        e.0.extend(values);
                        e.1.push((partition, h.producer_epoch, h.base_offset));
                    } else {
                        out.plain.extend(values);
                    }
                }
                offset = offset.max(batch.next_offset());
            }
            if offset >= hw {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fetch did not reach the high watermark"
            );
        }
        for (_, (values, _)) in pending {
            out.open.extend(values);
        }
    }
    out
}
