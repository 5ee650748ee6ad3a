//! Error responses for [`Action::Error`](crate::Action::Error): the given code at every level
//! of the response the request asked about.

use kafka_protocol::messages::*;

use super::sb;

/// Builds a response to `req` carrying `code` everywhere; `None` for APIs without one.
pub(crate) fn error_response(req: &RequestKind, version: i16, code: i16) -> Option<ResponseKind> {
    use RequestKind as R;
    use ResponseKind as W;
    Some(match req {
        R::Produce(r) => {
            let mut resp = ProduceResponse::default();
            for t in &r.topic_data {
                let mut tr = produce_response::TopicProduceResponse::default()
                    .with_name(t.name.clone());
                for p in &t.partition_data {
                    let mut pr = produce_response::PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1);
                    if version >= 5 {
                        pr.log_start_offset = -1;
                    }
                    tr.partition_responses.push(pr);
                }
                resp.responses.push(tr);
            }
            W::Produce(resp)
        }
        R::Fetch(r) => {
            let mut resp = FetchResponse::default();
            for t in &r.topics {
                let mut tr =
                    fetch_response::FetchableTopicResponse::default().with_topic(t.topic.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        fetch_response::PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_error_code(code)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Default::default())),
                    );
                }
                resp.responses.push(tr);
            }
            W::Fetch(resp)
        }
        R::ListOffsets(r) => {
            let mut resp = ListOffsetsResponse::default();
            for t in &r.topics {
                let mut tr =
                    list_offsets_response::ListOffsetsTopicResponse::default().with_name(t.name.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                            .with_offset(-1)
                            .with_timestamp(-1),
                    );
                }
                resp.topics.push(tr);
            }
            W::ListOffsets(resp)
        }
        R::Metadata(r) => {
            let mut resp = MetadataResponse::default();
            for t in r.topics.iter().flatten() {
                resp.topics.push(
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_error_code(code),
                );
            }
            W::Metadata(resp)
        }
        R::OffsetForLeaderEpoch(r) => {
            let mut resp = OffsetForLeaderEpochResponse::default();
            for t in &r.topics {
                let mut tr = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        offset_for_leader_epoch_response::EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    );
                }
                resp.topics.push(tr);
            }
            W::OffsetForLeaderEpoch(resp)
        }
        R::ApiVersions(_) => W::ApiVersions(ApiVersionsResponse::default().with_error_code(code)),
        R::FindCoordinator(r) => {
            let mut resp = FindCoordinatorResponse::default();
            if version >= 4 {
                resp.coordinators = r
                    .coordinator_keys
                    .iter()
                    .map(|k| {
                        find_coordinator_response::Coordinator::default()
                            .with_key(k.clone())
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(code)
                    })
                    .collect();
            } else {
                resp.error_code = code;
                resp.node_id = BrokerId(-1);
                resp.port = -1;
            }
            W::FindCoordinator(resp)
        }
        R::JoinGroup(r) => W::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(r.member_id.clone()),
        ),
        R::SyncGroup(_) => W::SyncGroup(SyncGroupResponse::default().with_error_code(code)),
        R::Heartbeat(_) => W::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
        R::LeaveGroup(_) => W::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)),
        R::OffsetCommit(r) => {
            let mut resp = OffsetCommitResponse::default();
            for t in &r.topics {
                let mut tr = offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code),
                    );
                }
                resp.topics.push(tr);
            }
            W::OffsetCommit(resp)
        }
        R::OffsetFetch(r) => {
            let mut resp = OffsetFetchResponse::default();
            if version >= 8 {
                resp.groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        offset_fetch_response::OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(code)
                    })
                    .collect();
            } else if version >= 2 {
                resp.error_code = code;
            }
            W::OffsetFetch(resp)
        }
        R::DescribeGroups(r) => W::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| {
                        describe_groups_response::DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        R::ListGroups(_) => W::ListGroups(ListGroupsResponse::default().with_error_code(code)),
        R::DeleteGroups(r) => W::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .iter()
                    .map(|g| {
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        R::InitProducerId(_) => W::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        R::AddPartitionsToTxn(r) => {
            let mut resp = AddPartitionsToTxnResponse::default();
            let topics = |ts: &Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic>| {
                ts.iter()
                    .map(|t| {
                        add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                            .with_name(t.name.clone())
                            .with_results_by_partition(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                            .with_partition_index(*p)
                                            .with_partition_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect::<Vec<_>>()
            };
            if version >= 4 {
                resp.error_code = code;
            } else {
                resp.results_by_topic_v3_and_below = topics(&r.v3_and_below_topics);
            }
            W::AddPartitionsToTxn(resp)
        }
        R::AddOffsetsToTxn(_) => {
            W::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        R::EndTxn(_) => {
            let mut resp = EndTxnResponse::default().with_error_code(code);
            if version >= 5 {
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
            }
            W::EndTxn(resp)
        }
        R::TxnOffsetCommit(r) => {
            let mut resp = TxnOffsetCommitResponse::default();
            for t in &r.topics {
                let mut tr = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code),
                    );
                }
                resp.topics.push(tr);
            }
            W::TxnOffsetCommit(resp)
        }
        R::CreateTopics(r) => W::CreateTopics(
            CreateTopicsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        let mut x = create_topics_response::CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code);
                        if version >= 5 {
                            x.num_partitions = -1;
                            x.replication_factor = -1;
                        }
                        x
                    })
                    .collect(),
            ),
        ),
        R::DeleteTopics(r) => W::DeleteTopics(
            DeleteTopicsResponse::default().with_responses(
                r.topic_names
                    .iter()
                    .map(|n| {
                        delete_topics_response::DeletableTopicResult::default()
                            .with_name(Some(n.clone()))
                            .with_error_code(code)
                    })
                    .chain(r.topics.iter().map(|t| {
                        delete_topics_response::DeletableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_error_code(code)
                    }))
                    .collect(),
            ),
        ),
        R::CreatePartitions(r) => W::CreatePartitions(
            CreatePartitionsResponse::default().with_results(
                r.topics
                    .iter()
                    .map(|t| {
                        create_partitions_response::CreatePartitionsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code)
                            .with_error_message(Some(sb("injected")))
                    })
                    .collect(),
            ),
        ),
        R::DeleteRecords(r) => W::DeleteRecords(
            DeleteRecordsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        delete_records_response::DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        delete_records_response::DeleteRecordsPartitionResult::default()
                                            .with_partition_index(p.partition_index)
                                            .with_low_watermark(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        R::DescribeConfigs(r) => W::DescribeConfigs(
            DescribeConfigsResponse::default().with_results(
                r.resources
                    .iter()
                    .map(|x| {
                        describe_configs_response::DescribeConfigsResult::default()
                            .with_resource_type(x.resource_type)
                            .with_resource_name(x.resource_name.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        R::DescribeCluster(_) => {
            W::DescribeCluster(DescribeClusterResponse::default().with_error_code(code))
        }
        R::ListTransactions(_) => {
            W::ListTransactions(ListTransactionsResponse::default().with_error_code(code))
        }
        R::DescribeTransactions(r) => W::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(
                r.transactional_ids
                    .iter()
                    .map(|t| {
                        describe_transactions_response::TransactionState::default()
                            .with_transactional_id(t.clone())
                            .with_error_code(code)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1)
                            .with_transaction_start_time_ms(-1)
                    })
                    .collect(),
            ),
        ),
        _ => return None,
    })
}
