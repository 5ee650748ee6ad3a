//! Request handlers, one module per API (group and transaction APIs live with their
//! coordinators in [`crate::group`] and [`crate::txn`]).

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Ctx;

pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod describe_cluster;
pub(crate) mod errors;
pub(crate) mod fetch;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;

/// A `StrBytes` from a `&str`.
pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A `TopicName` from a `&str`.
pub(crate) fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// Handles a request; `None` means no response is sent (Produce with acks=0).
pub(crate) async fn dispatch(ctx: &Ctx<'_>, body: RequestKind) -> Option<ResponseKind> {
    use RequestKind as R;
    use ResponseKind as W;
    Some(match body {
        R::ApiVersions(r) => W::ApiVersions(api_versions::handle(ctx, r)),
        R::Metadata(r) => W::Metadata(metadata::handle(ctx, r)),
        R::Produce(r) => return produce::handle(ctx, r).map(W::Produce),
        R::Fetch(r) => W::Fetch(fetch::handle(ctx, r).await),
        R::ListOffsets(r) => W::ListOffsets(list_offsets::handle(ctx, r)),
        R::OffsetForLeaderEpoch(r) => {
            W::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r))
        }
        R::CreateTopics(r) => W::CreateTopics(admin::create_topics(ctx, r)),
        R::DeleteTopics(r) => W::DeleteTopics(admin::delete_topics(ctx, r)),
        R::CreatePartitions(r) => W::CreatePartitions(admin::create_partitions(ctx, r)),
        R::DeleteRecords(r) => W::DeleteRecords(admin::delete_records(ctx, r)),
        R::DescribeConfigs(r) => W::DescribeConfigs(admin::describe_configs(ctx, r)),
        R::FindCoordinator(r) => W::FindCoordinator(crate::group::find_coordinator(ctx, r)),
        R::JoinGroup(r) => W::JoinGroup(crate::group::join_group(ctx, r).await),
        R::SyncGroup(r) => W::SyncGroup(crate::group::sync_group(ctx, r).await),
        R::Heartbeat(r) => W::Heartbeat(crate::group::heartbeat(ctx, r)),
        R::LeaveGroup(r) => W::LeaveGroup(crate::group::leave_group(ctx, r)),
        R::OffsetCommit(r) => W::OffsetCommit(crate::group::offset_commit(ctx, r)),
        R::OffsetFetch(r) => W::OffsetFetch(crate::group::offset_fetch(ctx, r)),
        R::DescribeGroups(r) => W::DescribeGroups(crate::group::describe_groups(ctx, r)),
        R::ListGroups(r) => W::ListGroups(crate::group::list_groups(ctx, r)),
        R::DeleteGroups(r) => W::DeleteGroups(crate::group::delete_groups(ctx, r)),
        R::InitProducerId(r) => W::InitProducerId(crate::txn::init_producer_id(ctx, r)),
        R::AddPartitionsToTxn(r) => W::AddPartitionsToTxn(crate::txn::add_partitions(ctx, r)),
        R::AddOffsetsToTxn(r) => W::AddOffsetsToTxn(crate::txn::add_offsets(ctx, r)),
        R::TxnOffsetCommit(r) => W::TxnOffsetCommit(crate::txn::txn_offset_commit(ctx, r)),
        R::EndTxn(r) => W::EndTxn(crate::txn::end_txn(ctx, r)),
        R::DescribeCluster(r) => W::DescribeCluster(describe_cluster::handle(ctx, r)),
        R::ListTransactions(r) => W::ListTransactions(crate::txn::list_transactions(ctx, r)),
        R::DescribeTransactions(r) => {
            W::DescribeTransactions(crate::txn::describe_transactions(ctx, r))
        }
        other => {
            tracing::warn!(?other, "no handler");
            return None;
        }
    })
}
