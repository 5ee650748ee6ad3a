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
    lookup(cluster, requests, isolation, true)
        .await
        .map(|o| o.found)
}

/// One outcome per partition of [`list_offsets_each`]: the offset, or why it is unknown.
pub(crate) type OffsetOutcome = std::result::Result<ListedOffset, String>;

/// Like [`list_offsets`], but every requested partition gets its own outcome: a partition's
/// error (an unknown topic, an authorization failure, a retriable error that outlasted
/// `request.timeout.ms`) is that partition's alone. Still one ListOffsets per leader per round.
pub(crate) async fn list_offsets_each(
    cluster: &Cluster,
    requests: &[(TopicPartition, OffsetSpec)],
    isolation: IsolationLevel,
) -> BTreeMap<TopicPartition, OffsetOutcome> {
    match lookup(cluster, requests, isolation, false).await {
        Ok(o) => o
            .found
            .into_iter()
            .map(|(tp, l)| (tp, Ok(l)))
            .chain(o.failed.into_iter().map(|(tp, e)| (tp, Err(e))))
            .collect(),
        // Not reached without `fail_fast`; kept total rather than trusted.
        Err(e) => requests
            .iter()
            .map(|(tp, _)| (tp.clone(), Err(e.to_string())))
            .collect(),
    }
}

/// What [`lookup`] found: offsets, and (without `fail_fast`) each failed partition's error.
#[derive(Default)]
struct Outcome {
    found: HashMap<TopicPartition, ListedOffset>,
    failed: BTreeMap<TopicPartition, String>,
}

/// The ListOffsets loop: one request per leader per round; retriable errors (no leader, a
/// leader move, a transport failure) are retried after the retry backoff and a metadata
/// refresh until `request.timeout.ms`. With `fail_fast` the first non-retriable error (or the
/// last retriable one at the deadline) is returned; without it, it becomes the partition's
/// entry in [`Outcome::failed`] and the other partitions go on.
async fn lookup(
    cluster: &Cluster,
    requests: &[(TopicPartition, OffsetSpec)],
    isolation: IsolationLevel,
    fail_fast: bool,
) -> Result<Outcome> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut pending: BTreeMap<TopicPartition, OffsetSpec> = requests.iter().cloned().collect();
    let mut out = Outcome::default();
    let mut attempt = 0u32;
    let mut last_error: Option<Error> = None;
    // The latest retriable error of each pending partition (its outcome at the deadline).
    let mut retrying: BTreeMap<TopicPartition, String> = BTreeMap::new();
    // Records a partition's final error (without `fail_fast`): it is no longer asked for.
    macro_rules! give_up {
        ($tp:expr, $text:expr) => {{
            let tp: TopicPartition = $tp;
            pending.remove(&tp);
            retrying.remove(&tp);
            out.failed.insert(tp, $text);
        }};
    }
    // A partition's final error: returned with `fail_fast`, else recorded.
    macro_rules! fail {
        ($tp:expr, $err:expr) => {{
            let err: Error = $err;
            if fail_fast {
                return Err(err);
            }
            give_up!($tp, err.to_string());
        }};
    }
    while !pending.is_empty() {
        // Make sure every topic's metadata is known.
        let mut by_node: BTreeMap<NodeId, Vec<(TopicPartition, StartOffset, i32)>> =
            BTreeMap::new();
        let mut failed: Vec<(TopicPartition, Error)> = Vec::new();
        for (tp, spec) in &pending {
            let t = match cluster.topic(&tp.topic).await {
                Ok(t) => t,
                Err(e) => {
                    failed.push((tp.clone(), e));
                    continue;
                }
            };
            let Some(p) = t.partition(tp.partition) else {
                failed.push((
                    tp.clone(),
                    Error::UnknownPartition {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                    },
                ));
                continue;
            };
            match p.leader {
                Some(node) => by_node.entry(node).or_default().push((
                    tp.clone(),
                    spec.start(),
                    p.leader_epoch,
                )),
                None => {
                    let err = Error::broker_with(
                        ApiKey::ListOffsets,
                        ErrorCode::LEADER_NOT_AVAILABLE,
                        format!("partition {tp}"),
                        None,
                    );
                    retrying.insert(tp.clone(), err.to_string());
                    last_error = Some(err);
                }
            }
        }
        for (tp, err) in failed {
            fail!(tp, err);
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
                    for (tp, _, _) in &lookup.partitions {
                        retrying.insert(tp.clone(), e.to_string());
                    }
                    last_error = Some(e);
                }
                Err(e) => {
                    if fail_fast {
                        return Err(e);
                    }
                    let text = e.to_string();
                    for (tp, _, _) in lookup.partitions {
                        give_up!(tp, text.clone());
                    }
                }
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
                                retrying.remove(&tp);
                                out.found.insert(
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
                                    retrying.insert(tp, err.to_string());
                                    last_error = Some(err);
                                }
                                _ => fail!(tp, err),
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
            let no_answer = |n: usize| {
                format!("ListOffsets: no answer for {n} partition(s) within request.timeout.ms")
            };
            if fail_fast {
                return Err(last_error.unwrap_or_else(|| Error::Other(no_answer(pending.len()))));
            }
            for tp in std::mem::take(&mut pending).into_keys() {
                let err = retrying.remove(&tp).unwrap_or_else(|| no_answer(1));
                out.failed.insert(tp, err);
            }
            break;
        }
        if retry || last_error.is_some() {
            let topics: Vec<String> = pending.keys().map(|tp| tp.topic.to_string()).collect();
            crate::cluster::retry_pause(&cfg, &mut attempt).await;
            let _ = cluster.refresh_metadata(&topics).await;
        }
    }
    Ok(out)
}
