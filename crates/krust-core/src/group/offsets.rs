//! Offset bookkeeping for a group member: what to commit, when auto-commit is due, and how to
//! read OffsetCommit and OffsetFetch answers.
//!
//! [`OffsetBook`] remembers, per owned partition, the position the application has consumed up
//! to and the last offset committed. Auto-commit ([`OffsetBook::poll_auto_commit`]) commits the
//! positions that moved since the last commit, every `auto.commit.interval.ms`. Commits carry
//! the generation and member id (KIP-447 fencing): a commit from a member that lost its
//! partitions fails with ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID instead of moving offsets the
//! new owner relies on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use krust_wire::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use krust_wire::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use krust_wire::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::ErrorCode;

use super::GroupMetadata;
use crate::fetch::TopicPartition;

/// An offset to commit (or a committed one): the next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetAndMetadata {
    /// The next offset the group should read.
    pub offset: i64,
    /// The leader epoch of the last record consumed, if known (KIP-320).
    pub leader_epoch: Option<i32>,
    /// Free-form metadata stored with the offset.
    pub metadata: Option<String>,
}

impl OffsetAndMetadata {
    /// An offset with no epoch and no metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            leader_epoch: None,
            metadata: None,
        }
    }
}

/// Per-partition positions and commits of one member, and the auto-commit timer.
#[derive(Debug, Clone)]
pub struct OffsetBook {
    consumed: BTreeMap<TopicPartition, OffsetAndMetadata>,
    committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
    auto_commit: Option<Duration>,
    next_auto: Option<Instant>,
}

impl OffsetBook {
    /// A book; `auto_commit` is `auto.commit.interval.ms` when `enable.auto.commit` is true.
    pub fn new(auto_commit: Option<Duration>) -> Self {
        OffsetBook {
            consumed: BTreeMap::new(),
            committed: BTreeMap::new(),
            auto_commit,
            next_auto: None,
        }
    }

    /// The application consumed `tp` up to (not including) `next.offset`.
    pub fn handle_consumed(&mut self, tp: TopicPartition, next: OffsetAndMetadata, now: Instant) {
        self.consumed.insert(tp, next);
        if self.next_auto.is_none() {
            self.next_auto = self.auto_commit.map(|d| now + d);
        }
    }

    /// Forget partitions no longer owned (revoked after their final commit, or lost).
    pub fn remove(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.consumed.remove(tp);
            self.committed.remove(tp);
        }
    }

    /// Record a successful commit.
    pub fn handle_committed(&mut self, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) {
        for (tp, o) in offsets {
            self.committed.insert(tp.clone(), o.clone());
        }
    }

    /// The last offset this member committed (or learned by OffsetFetch) for `tp`.
    pub fn committed(&self, tp: &TopicPartition) -> Option<&OffsetAndMetadata> {
        self.committed.get(tp)
    }

    /// Positions consumed but not committed yet, restricted to `filter` when given.
    pub fn uncommitted(
        &self,
        filter: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.consumed
            .iter()
            .filter(|(tp, _)| filter.is_none_or(|f| f.contains(tp)))
            .filter(|(tp, o)| self.committed.get(*tp).is_none_or(|c| c.offset != o.offset))
            .map(|(tp, o)| (tp.clone(), o.clone()))
            .collect()
    }

    /// When auto-commit is next due.
    pub fn next_auto_commit(&self) -> Option<Instant> {
        self.next_auto
    }

    /// The offsets to auto-commit now, if the interval passed and something moved. The timer
    /// restarts either way.
    pub fn poll_auto_commit(
        &mut self,
        now: Instant,
    ) -> Option<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        let interval = self.auto_commit?;
        let due = self.next_auto?;
        if now < due {
            return None;
        }
        self.next_auto = Some(now + interval);
        let out = self.uncommitted(None);
        (!out.is_empty()).then_some(out)
    }
}

/// What a commit's failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitAction {
    /// Committed.
    Done,
    /// The coordinator moved: find it and retry.
    RefreshCoordinator,
    /// Transient: retry after a backoff.
    Retry,
    /// The membership is stale (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS,
    /// FENCED_INSTANCE_ID): the commit cannot succeed for these partitions; the member must
    /// rejoin. (Java's CommitFailedException.)
    Fenced,
    /// Permanent failure (authorization, metadata too large, ...).
    Fail,
}

/// How to react to an OffsetCommit error code.
pub fn commit_action(code: ErrorCode) -> CommitAction {
    match code {
        ErrorCode::NONE => CommitAction::Done,
        ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
            CommitAction::RefreshCoordinator
        }
        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
        | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        | ErrorCode::REQUEST_TIMED_OUT => CommitAction::Retry,
        ErrorCode::ILLEGAL_GENERATION
        | ErrorCode::UNKNOWN_MEMBER_ID
        | ErrorCode::REBALANCE_IN_PROGRESS
        | ErrorCode::FENCED_INSTANCE_ID => CommitAction::Fenced,
        c if c.is_retriable() => CommitAction::Retry,
        _ => CommitAction::Fail,
    }
}

/// An OffsetCommit request at `version`. `member` is `None` for a commit outside a group
/// generation (assign-mode consumers, admin resets: generation -1, empty member id).
pub fn offset_commit_request(
    group_id: &str,
    member: Option<&GroupMetadata>,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    version: i16,
) -> OffsetCommitRequest {
    let mut r = OffsetCommitRequest::default();
    r.group_id = StrBytes::from_string(group_id.to_string()).into();
    match member {
        Some(m) if m.generation_id >= 0 => {
            r.generation_id_or_member_epoch = m.generation_id;
            r.member_id = StrBytes::from_string(m.member_id.clone());
            if version >= 7 {
                r.group_instance_id = m.instance_id.clone().map(StrBytes::from_string);
            }
        }
        _ => {
            r.generation_id_or_member_epoch = -1;
        }
    }
    if (2..=4).contains(&version) {
        r.retention_time_ms = -1;
    }
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, o) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = o.offset;
        if version >= 6 {
            p.committed_leader_epoch = o.leader_epoch.unwrap_or(-1);
        }
        p.committed_metadata = Some(StrBytes::from_string(
            o.metadata.clone().unwrap_or_default(),
        ));
        by_topic.entry(&tp.topic).or_default().push(p);
    }
    r.topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut x = OffsetCommitRequestTopic::default();
            x.name = StrBytes::from_string(t.to_string()).into();
            x.partitions = ps;
            x
        })
        .collect();
    r
}

/// The per-partition error codes of an OffsetCommit response.
pub fn offset_commit_results(resp: &OffsetCommitResponse) -> BTreeMap<TopicPartition, ErrorCode> {
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            out.insert(
                TopicPartition::new(t.name.as_str(), p.partition_index),
                ErrorCode(p.error_code),
            );
        }
    }
    out
}

/// An OffsetFetch request for `partitions` (all the group's partitions when `None`) at
/// `version`; `require_stable` (v7+, KIP-447) makes the broker answer UNSTABLE_OFFSET_COMMIT
/// while a transaction that commits offsets for a partition is open.
pub fn offset_fetch_request(
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
    require_stable: bool,
    version: i16,
) -> OffsetFetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    if let Some(ps) = partitions {
        for tp in ps {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
    }
    let mut r = OffsetFetchRequest::default();
    if version >= 7 {
        r.require_stable = require_stable;
    }
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = StrBytes::from_string(group_id.to_string()).into();
        g.topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    let mut x = OffsetFetchRequestTopics::default();
                    x.name = StrBytes::from_string(t.to_string()).into();
                    x.partition_indexes = ps.clone();
                    x
                })
                .collect()
        });
        r.groups = vec![g];
    } else {
        r.group_id = StrBytes::from_string(group_id.to_string()).into();
        r.topics = Some(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    let mut x = OffsetFetchRequestTopic::default();
                    x.name = StrBytes::from_string(t.to_string()).into();
                    x.partition_indexes = ps.clone();
                    x
                })
                .collect(),
        );
        if partitions.is_none() && version >= 2 {
            r.topics = None;
        }
    }
    r
}

/// The committed offsets of an OffsetFetch response (either shape): per partition `Ok(None)`
/// when nothing is committed, or the partition's error. A group-level error is returned as
/// `Err`.
#[allow(clippy::type_complexity)]
pub fn offset_fetch_results(
    resp: &OffsetFetchResponse,
) -> Result<BTreeMap<TopicPartition, Result<Option<OffsetAndMetadata>, ErrorCode>>, ErrorCode> {
    let mut out = BTreeMap::new();
    fn one(
        offset: i64,
        epoch: i32,
        metadata: &Option<StrBytes>,
        code: i16,
    ) -> Result<Option<OffsetAndMetadata>, ErrorCode> {
        let code = ErrorCode(code);
        if !code.is_ok() {
            return Err(code);
        }
        if offset < 0 {
            return Ok(None);
        }
        Ok(Some(OffsetAndMetadata {
            offset,
            leader_epoch: (epoch >= 0).then_some(epoch),
            metadata: metadata
                .as_ref()
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty()),
        }))
    }
    if let Some(g) = resp.groups.first() {
        if g.error_code != 0 {
            return Err(ErrorCode(g.error_code));
        }
        for t in &g.topics {
            for p in &t.partitions {
                out.insert(
                    TopicPartition::new(t.name.as_str(), p.partition_index),
                    one(
                        p.committed_offset,
                        p.committed_leader_epoch,
                        &p.metadata,
                        p.error_code,
                    ),
                );
            }
        }
        return Ok(out);
    }
    if resp.error_code != 0 {
        return Err(ErrorCode(resp.error_code));
    }
    for t in &resp.topics {
        for p in &t.partitions {
            out.insert(
                TopicPartition::new(t.name.as_str(), p.partition_index),
                one(
                    p.committed_offset,
                    p.committed_leader_epoch,
                    &p.metadata,
                    p.error_code,
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_commit_commits_what_moved_on_the_interval() {
        let t0 = Instant::now();
        let mut b = OffsetBook::new(Some(Duration::from_secs(5)));
        assert!(b.poll_auto_commit(t0).is_none());
        let tp = TopicPartition::new("t", 0);
        b.handle_consumed(tp.clone(), OffsetAndMetadata::new(10), t0);
        assert!(b.poll_auto_commit(t0 + Duration::from_secs(4)).is_none());
        let c = b.poll_auto_commit(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(c[&tp].offset, 10);
        b.handle_committed(&c);
        assert!(b.poll_auto_commit(t0 + Duration::from_secs(10)).is_none());
        b.handle_consumed(tp.clone(), OffsetAndMetadata::new(12), t0);
        assert_eq!(
            b.poll_auto_commit(t0 + Duration::from_secs(15)).unwrap()[&tp].offset,
            12
        );
        b.remove(std::slice::from_ref(&tp));
        assert!(b.uncommitted(None).is_empty());
    }

    #[test]
    fn commit_actions() {
        assert_eq!(commit_action(ErrorCode::NONE), CommitAction::Done);
        assert_eq!(
            commit_action(ErrorCode::ILLEGAL_GENERATION),
            CommitAction::Fenced
        );
        assert_eq!(
            commit_action(ErrorCode::NOT_COORDINATOR),
            CommitAction::RefreshCoordinator
        );
        assert_eq!(
            commit_action(ErrorCode::OFFSET_METADATA_TOO_LARGE),
            CommitAction::Fail
        );
    }

    #[test]
    fn commit_request_at_each_version_encodes() {
        use krust_wire::kafka_protocol::protocol::Encodable;
        let mut offsets = BTreeMap::new();
        offsets.insert(
            TopicPartition::new("t", 1),
            OffsetAndMetadata {
                offset: 5,
                leader_epoch: Some(2),
                metadata: Some("m".into()),
            },
        );
        let m = GroupMetadata {
            group_id: "g".into(),
            generation_id: 3,
            member_id: "m1".into(),
            instance_id: Some("i".into()),
        };
        for v in 2..=9 {
            let r = offset_commit_request("g", Some(&m), &offsets, v);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, v).unwrap();
        }
        for v in 1..=9 {
            let tps = [TopicPartition::new("t", 1)];
            for r in [
                offset_fetch_request("g", Some(&tps), true, v),
                offset_fetch_request("g", None, true, v.max(2)),
            ] {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, v.max(2)).unwrap();
            }
        }
    }
}
