//! ListOffsets against partition leaders, with leader-change retries: earliest, latest and
//! by-timestamp offsets for the consumer (`beginning_offsets`, `end_offsets`,
//! `offsets_for_times`) and for [`Admin::list_offsets`](crate::admin::Admin::list_offsets).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::future::join_all;
use krust_core::fetch::{IsolationLevel, OffsetLookup, StartOffset, TopicPartition};
use krust_wire::{classify, ApiKey, ErrorCode, Retry};

use crate::cluster::{Cluster, NodeId};
use crate::error::{Error, Result};

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListedOffset {
    /// The offset; -1 when looking up a timestamp later than every record.
    pub offset: i64,
    /// The timestamp of the record at `offset` (by-timestamp lookups), or -1.
    pub timestamp: i64,
    /// The leader epoch of that record, if the broker sent it.
    pub leader_epoch: Option<i32>,
}

/// What to look up for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark; the last stable offset under read_committed).
    Latest,
    /// The first offset whose timestamp is at or after these milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn start(self) -> StartOffset {
        match self {
            OffsetSpec::Earliest => StartOffset::Earliest,
            OffsetSpec::Latest => StartOffset::Latest,
            OffsetSpec::Timestamp(t) => StartOffset::Timestamp(t),
        }
    }
}

/// Looks up offsets for every requested partition, retrying leader moves and transport errors
/// until `request.timeout.ms` has passed. Fails with the first non-retriable partition error,
/// naming the partition.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    requests: &[(TopicPartition, OffsetSpec)],
    isolation: IsolationLevel,
) -> Result<HashMap<TopicPartition, ListedOffset>> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut pending: BTreeMap<TopicPartition, OffsetSpec> = requests.iter().cloned().collect();
    let mut out = HashMap::new();
    let mut attempt = 0u32;
    let mut last_error: Option<Error> = None;
    while !pending.is_empty() {
        // Make sure every topic's metadata is known.
        let mut by_node: BTreeMap<NodeId, Vec<(TopicPartition, StartOffset, i32)>> =
            BTreeMap::new();
        for (tp, spec) in &pending {
            let t = cluster.topic(&tp.topic).await?;
            let p = t
                .partition(tp.partition)
                .ok_or_else(|| Error::UnknownPartition {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                })?;
            match p.leader {
                Some(node) => by_node.entry(node).or_default().push((
                    tp.clone(),
                    spec.start(),
                    p.leader_epoch,
                )),
                None => {
                    last_error = Some(Error::broker_with(
                        ApiKey::ListOffsets,
                        ErrorCode::LEADER_NOT_AVAILABLE,
                        format!("partition {tp}"),
                        None,
                    ))
                }
            }
        }
        let sends = by_node.into_iter().map(|(node, partitions)| {
            let lookup = OffsetLookup {
                node,
                token: 0,
                partitions,
            };
            async move {
                let res = cluster.send(node, |_v| lookup.to_request(isolation)).await;
                (lookup, res)
            }
        });
        let mut retry = false;
        for (lookup, res) in join_all(sends).await {
            match res {
                Err(e) if e.is_retriable() => {
                    retry = true;
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
                Ok((_v, resp)) => {
                    cluster.note_throttle(lookup.node, resp.throttle_time_ms);
                    for t in resp.topics {
                        for p in t.partitions {
                            let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                            if !pending.contains_key(&tp) {
                                continue;
                            }
                            let code = ErrorCode(p.error_code);
                            if code.is_ok() {
                                pending.remove(&tp);
                                out.insert(
                                    tp,
                                    ListedOffset {
                                        offset: p.offset,
                                        timestamp: p.timestamp,
                                        leader_epoch: (p.leader_epoch >= 0)
                                            .then_some(p.leader_epoch),
                                    },
                                );
                                continue;
                            }
                            let err = Error::broker_with(
                                ApiKey::ListOffsets,
                                code,
                                format!("partition {tp} on broker {}", lookup.node),
                                None,
                            );
                            match classify(ApiKey::ListOffsets, code) {
                                Retry::RefreshMetadata | Retry::Backoff => {
                                    retry = true;
                                    last_error = Some(err);
                                }
                                _ => return Err(err),
                            }
                        }
                    }
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(last_error.unwrap_or_else(|| {
                Error::Other(format!(
                    "ListOffsets: no answer for {} partition(s) within request.timeout.ms",
                    pending.len()
                ))
            }));
        }
        if retry || last_error.is_some() {
            let topics: Vec<String> = pending.keys().map(|tp| tp.topic.to_string()).collect();
            crate::cluster::retry_pause(&cfg, &mut attempt).await;
            let _ = cluster.refresh_metadata(&topics).await;
        }
    }
    Ok(out)
}
