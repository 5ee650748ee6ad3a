//! Differential tests: for every API and every version, random well-formed responses are
//! encoded by `kafka-protocol` (an independent implementation of the schemas) and decoded by
//! krust's bounded decoder; the values must be identical, and `kafka-protocol`'s own decoder
//! must agree too.

use bytes::BytesMut;
use kafka_protocol::messages as m;
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use krust_wire::protocol::RandomSource;
use krust_wire::{decode_response, DecodeResponse};

const SEEDS: u64 = 200;

fn check<R>()
where
    R: DecodeResponse + Message + Encodable + Decodable + PartialEq + std::fmt::Debug,
{
    let api = R::API_KEY;
    for v in R::VERSIONS.min..=R::VERSIONS.max {
        for seed in 0..SEEDS {
            let mut rnd = RandomSource::new(seed * 1000 + v as u64, api.is_flexible(v));
            let value = R::decode_body(&mut rnd, v).expect("random generation");
            let mut buf = BytesMut::new();
            value
                .encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("{api} v{v} seed {seed}: oracle encode: {e}"));
            let bytes = buf.freeze();
            let ours: R = decode_response(bytes.clone(), v)
                .unwrap_or_else(|e| panic!("{api} v{v} seed {seed}: krust decode: {e}"));
            assert_eq!(ours, value, "{api} v{v} seed {seed}: krust differs");
            let theirs = R::decode(&mut bytes.clone(), v).expect("oracle decode");
            assert_eq!(theirs, value, "{api} v{v} seed {seed}: oracle differs");
            // Every strict prefix must fail cleanly, never panic.
            for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                if cut < bytes.len() {
                    assert!(decode_response::<R>(bytes.slice(..cut), v).is_err());
                }
            }
        }
    }
}

macro_rules! differential {
    ($($name:ident: $ty:ty;)*) => {
        $( #[test] fn $name() { check::<$ty>(); } )*
    };
}

differential! {
    metadata: m::MetadataResponse;
    offset_commit: m::OffsetCommitResponse;
    offset_fetch: m::OffsetFetchResponse;
    join_group: m::JoinGroupResponse;
    heartbeat: m::HeartbeatResponse;
    leave_group: m::LeaveGroupResponse;
    sync_group: m::SyncGroupResponse;
    describe_groups: m::DescribeGroupsResponse;
    list_groups: m::ListGroupsResponse;
    init_producer_id: m::InitProducerIdResponse;
    add_partitions_to_txn: m::AddPartitionsToTxnResponse;
    add_offsets_to_txn: m::AddOffsetsToTxnResponse;
    end_txn: m::EndTxnResponse;
    txn_offset_commit: m::TxnOffsetCommitResponse;
    describe_transactions: m::DescribeTransactionsResponse;
    list_transactions: m::ListTransactionsResponse;
    produce: m::ProduceResponse;
    fetch: m::FetchResponse;
    list_offsets: m::ListOffsetsResponse;
    offset_for_leader_epoch: m::OffsetForLeaderEpochResponse;
    api_versions: m::ApiVersionsResponse;
    find_coordinator: m::FindCoordinatorResponse;
    create_topics: m::CreateTopicsResponse;
    delete_topics: m::DeleteTopicsResponse;
    create_partitions: m::CreatePartitionsResponse;
    describe_configs: m::DescribeConfigsResponse;
    delete_records: m::DeleteRecordsResponse;
    sasl_handshake: m::SaslHandshakeResponse;
    sasl_authenticate: m::SaslAuthenticateResponse;
    describe_cluster: m::DescribeClusterResponse;
    delete_groups: m::DeleteGroupsResponse;
}
