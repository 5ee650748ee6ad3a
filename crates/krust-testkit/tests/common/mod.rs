#![allow(dead_code)]
//! Helpers shared by the integration tests: raw requests against the fake.

use bytes::Bytes;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::kafka_protocol::protocol::StrBytes;
use krust_testkit::raw::RawClient;
use krust_testkit::FakeCluster;

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
pub fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

pub async fn client(c: &FakeCluster, broker: i32) -> RawClient {
    RawClient::connect(c.broker_addr(broker)).await.unwrap()
}

/// A client connected to the leader of `topic`/`partition`.
pub async fn leader_client(c: &FakeCluster, topic: &str, partition: i32) -> RawClient {
    let (leader, _) = c.leader(topic, partition).unwrap();
    client(c, leader).await
}

pub fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(tn(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])])
}

pub fn txn_produce_req(txn: &str, topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    produce_req(topic, partition, records, -1).with_transactional_id(Some(TransactionalId(sb(txn))))
}

/// Produces and returns (error code, base offset).
pub async fn produce(
    cl: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let r = cl
        .send(&produce_req(topic, partition, records, -1), 9)
        .await
        .unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub fn batch(values: &[&[u8]]) -> Bytes {
    krust_testkit::batch::data_batch(values, 1_000, -1, -1, -1, false)
}

pub fn idem_batch(values: &[&[u8]], pid: i64, epoch: i16, seq: i32) -> Bytes {
    krust_testkit::batch::data_batch(values, 1_000, pid, epoch, seq, false)
}

pub fn txn_batch(values: &[&[u8]], pid: i64, epoch: i16, seq: i32) -> Bytes {
    krust_testkit::batch::data_batch(values, 1_000, pid, epoch, seq, true)
}

pub fn fetch_req(topic: &str, partition: i32, offset: i64, isolation: i8) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tn(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(10 << 20)])])
}

/// Fetches and returns the partition data.
pub async fn fetch(
    cl: &mut RawClient,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation: i8,
) -> fetch_response::PartitionData {
    let r = cl
        .send(&fetch_req(topic, partition, offset, isolation), 11)
        .await
        .unwrap();
    r.responses[0].partitions[0].clone()
}

/// Values of the data records in a fetch answer.
pub fn values(p: &fetch_response::PartitionData) -> Vec<(i64, Vec<u8>)> {
    krust_testkit::batch::read_values(p.records.as_ref().unwrap())
        .unwrap()
        .into_iter()
        .map(|(o, v)| (o, v.map(|b| b.to_vec()).unwrap_or_default()))
        .collect()
}

/// InitProducerId; returns (error, pid, epoch).
pub async fn init_pid(cl: &mut RawClient, txn: Option<&str>) -> (i16, i64, i16) {
    let r = cl
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(txn.map(|t| TransactionalId(sb(t))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .unwrap();
    (r.error_code, r.producer_id.0, r.producer_epoch)
}
