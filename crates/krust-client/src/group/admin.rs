//! Group administration: list, describe (members, assignments, committed offsets and lag),
//! delete, and reset offsets. Plain functions over a [`Cluster`], so the `Admin` client and the
//! CLI can call (or re-export) them.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;
use krust_core::fetch::{IsolationLevel, TopicPartition};
use krust_core::group::offsets::offset_fetch_request;
use krust_core::group::offsets::offset_fetch_results;
use krust_core::group::{GroupMetadata, OffsetAndMetadata};
use krust_wire::group_protocol::{decode_assignment, decode_subscription};
use krust_wire::{ApiKey, ErrorCode};

use super::commit_offsets;
use crate::admin::Admin;
use crate::cluster::Cluster;
use crate::consumer::{list_offsets_each, OffsetSpec};
use crate::coordinator::{self, CoordinatorType};
use crate::error::{Error, Result};

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups; empty for offset-only groups).
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...), when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// Lists the groups of every broker.
pub async fn list_groups(cluster: &Cluster) -> Result<Vec<ListedGroup>> {
    let brokers: Vec<i32> = cluster.metadata().brokers.keys().copied().collect();
    let mut out = BTreeMap::new();
    for b in brokers {
        let (_v, resp) = cluster.send(b, |_v| ListGroupsRequest::default()).await?;
        let code = ErrorCode(resp.error_code);
        if !code.is_ok() {
            return Err(Error::broker_with(
                ApiKey::ListGroups,
                code,
                format!("broker {b}"),
                None,
            ));
        }
        for g in resp.groups {
            out.insert(
                g.group_id.to_string(),
                ListedGroup {
                    group_id: g.group_id.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: Some(g.group_state.to_string()).filter(|s| !s.is_empty()),
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, for static members.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscribed topics (decoded from its metadata, when it is a consumer).
    pub topics: Vec<String>,
    /// Assigned partitions (decoded from its assignment).
    pub assignment: Vec<TopicPartition>,
}

/// A committed offset with the partition's end and the lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Log end offset (high watermark), if it could be read.
    pub end: Option<i64>,
    /// `end - committed` when both are known.
    pub lag: Option<i64>,
    /// The member that owns the partition now, if any.
    pub owner: Option<String>,
    /// Why `end` (and so `lag`) is unknown: the partition's ListOffsets error (a deleted topic,
    /// a missing authorization, no leader within `request.timeout.ms`).
    pub end_error: Option<String>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State (`Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor).
    pub protocol: String,
    /// The coordinator's node id.
    pub coordinator: i32,
    /// Members.
    pub members: Vec<GroupMemberDescription>,
    /// Committed offsets and lag for every partition with a commit or an owner.
    pub offsets: BTreeMap<TopicPartition, PartitionLag>,
}

/// Describes `group`: members with their subscriptions and assignments, committed offsets,
/// end offsets and lag.
pub async fn describe_group(cluster: &Cluster, group: &str) -> Result<GroupDescription> {
    let node = coordinator::find(cluster, CoordinatorType::Group, group).await?;
    let (_v, resp) = cluster
        .send(node, |_v| {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![StrBytes::from_string(group.to_string()).into()];
            r
        })
        .await?;
    let g =
        resp.groups.into_iter().next().ok_or_else(|| {
            Error::Other(format!("DescribeGroups: no answer for group `{group}`"))
        })?;
    let code = ErrorCode(g.error_code);
    if !code.is_ok() {
        return Err(Error::broker_with(
            ApiKey::DescribeGroups,
            code,
            format!("group `{group}`"),
            None,
        ));
    }
    let consumer = g.protocol_type.as_str() == "consumer";
    let mut members = Vec::new();
    let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for m in g.members {
        let (topics, assignment) = if consumer {
            let topics = decode_subscription(m.member_metadata.clone())
                .map(|(_, s)| s.topics.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default();
            let assignment: Vec<TopicPartition> = decode_assignment(m.member_assignment.clone())
                .map(|(_, a)| {
                    a.assigned_partitions
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(move |p| TopicPartition::new(t.topic.as_str(), *p))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (topics, assignment)
        } else {
            (Vec::new(), Vec::new())
        };
        for tp in &assignment {
            owners.insert(tp.clone(), m.member_id.to_string());
        }
        members.push(GroupMemberDescription {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            topics,
            assignment,
        });
    }
    // Every committed offset of the group.
    let (_v, resp) = cluster
        .send(node, |v| offset_fetch_request(group, None, false, v.max(2)))
        .await?;
    let committed = offset_fetch_results(&resp).map_err(|code| {
        Error::broker_with(ApiKey::OffsetFetch, code, format!("group `{group}`"), None)
    })?;
    let mut tps: BTreeSet<TopicPartition> = owners.keys().cloned().collect();
    tps.extend(committed.keys().cloned());
    let mut ends = end_offsets(cluster, &tps).await;
    let offsets = tps
        .into_iter()
        .map(|tp| {
            let c = committed
                .get(&tp)
                .and_then(|r| r.as_ref().ok().cloned().flatten())
                .map(|o| o.offset);
            let (end, end_error) = match ends.remove(&tp) {
                Some(Ok(end)) => (Some(end), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, Some("no ListOffsets answer".to_string())),
            };
            let lag = match (c, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            let owner = owners.get(&tp).cloned();
            (
                tp,
                PartitionLag {
                    committed: c,
                    end,
                    lag,
                    owner,
                    end_error,
                },
            )
        })
        .collect();
    Ok(GroupDescription {
        group_id: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        coordinator: node,
        members,
        offsets,
    })
}

/// The log end offset of each of `tps`, or the error that kept it unknown: one ListOffsets per
/// leader (retriable errors retried within `request.timeout.ms`), each partition with its own
/// end or its own error, so one refused topic does not blank the lag of the others.
async fn end_offsets(
    cluster: &Cluster,
    tps: &BTreeSet<TopicPartition>,
) -> BTreeMap<TopicPartition, std::result::Result<i64, String>> {
    if tps.is_empty() {
        return BTreeMap::new();
    }
    let all: Vec<(TopicPartition, OffsetSpec)> = tps
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    list_offsets_each(cluster, &all, IsolationLevel::ReadUncommitted)
        .await
        .into_iter()
        .map(|(tp, r)| (tp, r.map(|l| l.offset)))
        .collect()
}

/// Deletes groups (they must be empty). Returns each group's result.
pub async fn delete_groups(
    cluster: &Cluster,
    groups: &[&str],
) -> Result<BTreeMap<String, Result<()>>> {
    let mut out = BTreeMap::new();
    for g in groups {
        let r = async {
            let node = coordinator::find(cluster, CoordinatorType::Group, g).await?;
            let (_v, resp) = cluster
                .send(node, |_v| {
                    let mut r = DeleteGroupsRequest::default();
                    r.groups_names = vec![StrBytes::from_string(g.to_string()).into()];
                    r
                })
                .await?;
            for res in resp.results {
                let code = ErrorCode(res.error_code);
                if !code.is_ok() {
                    return Err(Error::broker_with(
                        ApiKey::DeleteGroups,
                        code,
                        format!("group `{g}`"),
                        None,
                    ));
                }
            }
            Ok(())
        }
        .await;
        out.insert(g.to_string(), r);
    }
    Ok(out)
}

/// Where to move a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start of each partition.
    Earliest,
    /// The log end of each partition.
    Latest,
    /// This absolute offset.
    Offset(i64),
    /// The first offset at or after this timestamp (ms since the epoch).
    Timestamp(i64),
}

/// Resets the committed offsets of `group` for `partitions` (the group should have no active
/// members: the coordinator refuses commits outside a generation while members are joined).
/// Returns the offsets committed.
pub async fn reset_offsets(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    to: ResetTo,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let targets: BTreeMap<TopicPartition, i64> = match to {
        ResetTo::Offset(o) => partitions.iter().map(|tp| (tp.clone(), o)).collect(),
        _ => {
            let spec = match to {
                ResetTo::Earliest => OffsetSpec::Earliest,
                ResetTo::Latest => OffsetSpec::Latest,
                ResetTo::Timestamp(t) => OffsetSpec::Timestamp(t),
                ResetTo::Offset(_) => unreachable!(),
            };
            let req: Vec<(TopicPartition, OffsetSpec)> =
                partitions.iter().map(|tp| (tp.clone(), spec)).collect();
            let found = Admin::new(cluster.clone()).list_offsets(&req).await?;
            partitions
                .iter()
                .filter_map(|tp| found.get(tp).map(|l| (tp.clone(), l.offset)))
                .collect()
        }
    };
    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = targets
        .iter()
        .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
        .collect();
    let member = GroupMetadata {
        group_id: group.to_string(),
        generation_id: -1,
        member_id: String::new(),
        instance_id: None,
    };
    commit_offsets(cluster, None, &member, &offsets).await?;
    Ok(targets)
}
