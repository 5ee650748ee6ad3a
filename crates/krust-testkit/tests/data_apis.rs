//! ApiVersions, Metadata, Produce, Fetch, ListOffsets, OffsetForLeaderEpoch and the admin APIs.

mod common;

use std::time::Duration;

use common::*;
use krust_testkit::errors as ec;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::{ClusterConfig, FakeCluster};

#[tokio::test]
async fn api_versions_respects_caps_and_answers_unknown_versions() {
    let c = FakeCluster::with_config(
        ClusterConfig::new()
            .with_max_version(ApiKey::Produce, 7)
            .without_api(ApiKey::DeleteRecords),
    )
    .await
    .unwrap();
    let mut cl = client(&c, 0).await;
    let r = cl.send(&ApiVersionsRequest::default(), 3).await.unwrap();
    assert_eq!(r.error_code, 0);
    let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 7));
    assert!(!r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::DeleteRecords as i16));
    // A version above the served range is answered in v0 with UNSUPPORTED_VERSION.
    let c = FakeCluster::with_config(ClusterConfig::new().with_max_version(ApiKey::ApiVersions, 2))
        .await
        .unwrap();
    let mut cl = client(&c, 0).await;
    cl.send_only(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();
    let (_, r) = cl.recv::<ApiVersionsRequest>(0).await.unwrap();
    assert_eq!(r.error_code, ec::UNSUPPORTED_VERSION);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 2));
}

#[tokio::test]
async fn metadata_lists_brokers_leaders_and_hides_topics() {
    let c = FakeCluster::start(3).await.unwrap();
    c.create_topic("t", 6, 3).unwrap();
    let mut cl = client(&c, 1).await;
    let r = cl
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await
        .unwrap();
    assert_eq!(r.brokers.len(), 3);
    assert_eq!(r.brokers[2].port, i32::from(c.broker_addr(2).port()));
    let t = &r.topics[0];
    assert_eq!(t.partitions.len(), 6);
    let leaders: std::collections::BTreeSet<i32> =
        t.partitions.iter().map(|p| p.leader_id.0).collect();
    assert_eq!(leaders.len(), 3, "leaders spread over brokers");
    assert!(!t.topic_id.is_nil());

    c.set_advertised(0, "127.0.0.1", 1);
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(tn("t"))),
        metadata_request::MetadataRequestTopic::default().with_name(Some(tn("nope"))),
    ]));
    let r = cl.send(&req, 9).await.unwrap();
    assert_eq!(r.brokers[0].port, 1);
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[1].error_code, ec::UNKNOWN_TOPIC_OR_PARTITION);

    c.hide_topic("t", None);
    let r = cl.send(&req, 9).await.unwrap();
    assert_eq!(r.topics[0].error_code, ec::UNKNOWN_TOPIC_OR_PARTITION);
    c.unhide_topic("t");
    let r = cl.send(&req, 9).await.unwrap();
    assert_eq!(r.topics[0].error_code, 0);
}

#[tokio::test]
async fn auto_create_topics_when_enabled() {
    let c = FakeCluster::with_config(
        ClusterConfig::new()
            .with_auto_create_topics(true)
            .with_default_partitions(3),
    )
    .await
    .unwrap();
    let mut cl = client(&c, 0).await;
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(tn("auto")))]));
    let r = cl.send(&req, 9).await.unwrap();
    assert_eq!(r.topics[0].partitions.len(), 3);
}

#[tokio::test]
async fn produce_then_fetch_reads_back_with_offsets() {
    let c = FakeCluster::start(3).await.unwrap();
    c.create_topic("t", 3, 1).unwrap();
    let mut cl = leader_client(&c, "t", 1).await;
    assert_eq!(produce(&mut cl, "t", 1, batch(&[b"a", b"b"])).await, (0, 0));
    assert_eq!(produce(&mut cl, "t", 1, batch(&[b"c"])).await, (0, 2));
    let p = fetch(&mut cl, "t", 1, 0, 0).await;
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 3);
    assert_eq!(
        values(&p),
        vec![(0, b"a".to_vec()), (1, b"b".to_vec()), (2, b"c".to_vec())]
    );
    // From the middle of a batch: the whole batch comes back (Kafka's behaviour).
    let p = fetch(&mut cl, "t", 1, 1, 0).await;
    assert_eq!(values(&p)[0].0, 0);
    assert_eq!(fetch(&mut cl, "t", 1, 3, 0).await.records.unwrap().len(), 0);
    assert_eq!(
        fetch(&mut cl, "t", 1, 4, 0).await.error_code,
        ec::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(c.offsets("t", 1), Some((0, 3, 3)));
    // Not the leader.
    let (leader, _) = c.leader("t", 1).unwrap();
    let mut other = client(&c, (leader + 1) % 3).await;
    assert_eq!(
        produce(&mut other, "t", 1, batch(&[b"x"])).await.0,
        ec::NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        fetch(&mut other, "t", 1, 0, 0).await.error_code,
        ec::NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        produce(&mut cl, "nope", 0, batch(&[b"x"])).await.0,
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[tokio::test]
async fn produce_rejects_corrupt_batches() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let good = batch(&[b"hello"]);
    let mut bad = good.to_vec();
    let n = bad.len();
    bad[n - 2] ^= 0xff;
    assert_eq!(
        produce(&mut cl, "t", 0, bad.into()).await.0,
        ec::CORRUPT_MESSAGE
    );
    assert_eq!(
        produce(&mut cl, "t", 0, good.slice(..30)).await.0,
        ec::CORRUPT_MESSAGE
    );
    assert_eq!(c.offsets("t", 0), Some((0, 0, 0)));
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_keeps_order() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    cl.send_only(&produce_req("t", 0, batch(&[b"a"]), 0), 9)
        .await
        .unwrap();
    let r = cl
        .send(&produce_req("t", 0, batch(&[b"b"]), 1), 9)
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 1);
}

#[tokio::test]
async fn idempotent_window_duplicates_and_errors() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (e, pid, epoch) = init_pid(&mut cl, None).await;
    assert_eq!((e, epoch), (0, 0));
    for i in 0..6 {
        let (code, off) = produce(&mut cl, "t", 0, idem_batch(&[b"x", b"y"], pid, 0, i * 2)).await;
        assert_eq!((code, off), (0, i64::from(i) * 2));
    }
    // A retry of one of the last five batches: success with the original offset.
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"x", b"y"], pid, 0, 4)).await,
        (0, 4)
    );
    // Older than the window.
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"x", b"y"], pid, 0, 0))
            .await
            .0,
        ec::DUPLICATE_SEQUENCE_NUMBER
    );
    // A gap.
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"x"], pid, 0, 15))
            .await
            .0,
        ec::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        c.offsets("t", 0).unwrap().1,
        12,
        "nothing appended by rejected batches"
    );
    // KIP-360 epoch bump, then the old epoch is fenced.
    let r = cl
        .send(
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0),
            4,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, 1)
    );
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"z"], pid, 1, 0)).await,
        (0, 12)
    );
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"z"], pid, 0, 12))
            .await
            .0,
        ec::INVALID_PRODUCER_EPOCH
    );
    // Lost producer state.
    c.forget_producer("t", 0, pid);
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"z"], pid, 1, 1))
            .await
            .0,
        ec::UNKNOWN_PRODUCER_ID
    );
    // The request log saw every batch's identity.
    let log = c.requests_of(ApiKey::Produce);
    let b = &log.last().unwrap().batches[0];
    assert_eq!(
        (
            b.producer_id,
            b.producer_epoch,
            b.base_sequence,
            b.record_count
        ),
        (pid, 1, 1, 1)
    );
}

#[tokio::test]
async fn sequence_wrap_around_with_configured_first_sequence() {
    let c = FakeCluster::with_config(ClusterConfig::new().with_first_sequence(i32::MAX - 2))
        .await
        .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let (_, pid, _) = init_pid(&mut cl, None).await;
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"a"], pid, 0, 0))
            .await
            .0,
        ec::UNKNOWN_PRODUCER_ID
    );
    assert_eq!(
        produce(
            &mut cl,
            "t",
            0,
            idem_batch(&[b"a", b"b", b"c", b"d"], pid, 0, i32::MAX - 2)
        )
        .await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut cl, "t", 0, idem_batch(&[b"e"], pid, 0, 1)).await,
        (0, 4)
    );
}

#[tokio::test]
async fn fetch_long_poll_is_woken_by_produce() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut consumer = client(&c, 0).await;
    let req = fetch_req("t", 0, 0, 0)
        .with_max_wait_ms(10_000)
        .with_min_bytes(1);
    let start = std::time::Instant::now();
    let poll = tokio::spawn(async move { consumer.send(&req, 11).await.unwrap() });
    c.wait_for_requests(ApiKey::Fetch, 1).await;
    let mut producer = client(&c, 0).await;
    produce(&mut producer, "t", 0, batch(&[b"wake"])).await;
    let r = poll.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        values(&r.responses[0].partitions[0]),
        vec![(0, b"wake".to_vec())]
    );
    // And max_wait elapses without data.
    let mut cl = client(&c, 0).await;
    let req = fetch_req("t", 0, 1, 0)
        .with_max_wait_ms(50)
        .with_min_bytes(1);
    let r = cl.send(&req, 11).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].records.as_ref().unwrap().len(),
        0
    );
}

#[tokio::test]
async fn fetch_respects_byte_limits() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    for _ in 0..10 {
        produce(&mut cl, "t", 0, batch(&[&[0u8; 1000]])).await;
    }
    let mut req = fetch_req("t", 0, 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = 2500;
    let r = cl.send(&req, 11).await.unwrap();
    assert_eq!(values(&r.responses[0].partitions[0]).len(), 2);
    // A first batch larger than the limit still comes back whole (KIP-74).
    req.topics[0].partitions[0].partition_max_bytes = 10;
    let r = cl.send(&req, 11).await.unwrap();
    assert_eq!(values(&r.responses[0].partitions[0]).len(), 1);
    let req = fetch_req("t", 0, 0, 0).with_max_bytes(3500);
    let r = cl.send(&req, 11).await.unwrap();
    assert_eq!(values(&r.responses[0].partitions[0]).len(), 3);
}

fn list_req(topic: &str, ts: i64, isolation: i8) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(tn(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(ts),
            ])])
}

#[tokio::test]
async fn list_offsets_earliest_latest_by_time_and_max() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    for (i, ts) in [100i64, 300, 200].iter().enumerate() {
        let b = krust_testkit::batch::data_batch(&[b"v"], *ts, -1, -1, -1, false);
        assert_eq!(produce(&mut cl, "t", 0, b).await, (0, i as i64));
    }
    let get = |r: ListOffsetsResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(
        get(cl.send(&list_req("t", -2, 0), 7).await.unwrap()),
        (0, 0, -1)
    );
    assert_eq!(
        get(cl.send(&list_req("t", -1, 0), 7).await.unwrap()),
        (0, 3, -1)
    );
    assert_eq!(
        get(cl.send(&list_req("t", 150, 0), 7).await.unwrap()),
        (0, 1, 300)
    );
    assert_eq!(
        get(cl.send(&list_req("t", 301, 0), 7).await.unwrap()),
        (0, -1, -1)
    );
    assert_eq!(
        get(cl.send(&list_req("t", -3, 0), 7).await.unwrap()),
        (0, 1, 300)
    );
}

#[tokio::test]
async fn leader_moves_bump_epochs_and_offset_for_leader_epoch() {
    let c = FakeCluster::start(2).await.unwrap();
    c.create_topic("t", 1, 2).unwrap();
    let (l0, e0) = c.leader("t", 0).unwrap();
    let mut cl = client(&c, l0).await;
    produce(&mut cl, "t", 0, batch(&[b"a", b"b"])).await;
    let other = 1 - l0;
    assert_eq!(c.move_leader("t", 0, other), Some(e0 + 1));
    let mut cl2 = client(&c, other).await;
    produce(&mut cl2, "t", 0, batch(&[b"c"])).await;
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"x"])).await.0,
        ec::NOT_LEADER_OR_FOLLOWER
    );
    let req = |epoch: i32, current: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ])
    };
    let r = cl2.send(&req(e0, e0 + 1), 4).await.unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, e0, 2));
    let r = cl2.send(&req(e0 + 1, -1), 4).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].end_offset, 3);
    let r = cl2.send(&req(e0, e0), 4).await.unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ec::FENCED_LEADER_EPOCH
    );
    let mut f = fetch_req("t", 0, 0, 0);
    f.topics[0].partitions[0].current_leader_epoch = e0 + 5;
    let r = cl2.send(&f, 11).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        ec::UNKNOWN_LEADER_EPOCH
    );
}

#[tokio::test]
async fn admin_create_delete_grow_delete_records_and_configs() {
    let c = FakeCluster::start(3).await.unwrap();
    let mut cl = client(&c, 0).await;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(tn("a"))
                .with_num_partitions(2)
                .with_replication_factor(3)
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(sb("retention.ms"))
                    .with_value(Some(sb("1000")))]),
            create_topics_request::CreatableTopic::default()
                .with_name(tn("b"))
                .with_num_partitions(1)
                .with_replication_factor(4),
            create_topics_request::CreatableTopic::default()
                .with_name(tn("bad name!"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
    let r = cl.send(&create, 7).await.unwrap();
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].num_partitions, 2);
    assert_eq!(r.topics[1].error_code, ec::INVALID_REPLICATION_FACTOR);
    assert_eq!(r.topics[2].error_code, ec::INVALID_TOPIC_EXCEPTION);
    let r = cl.send(&create, 7).await.unwrap();
    assert_eq!(r.topics[0].error_code, ec::TOPIC_ALREADY_EXISTS);

    let grow = |n: i32| {
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(tn("a"))
                .with_count(n),
        ])
    };
    assert_eq!(cl.send(&grow(4), 3).await.unwrap().results[0].error_code, 0);
    assert_eq!(
        cl.send(&grow(3), 3).await.unwrap().results[0].error_code,
        ec::INVALID_PARTITIONS
    );
    assert!(c.leader("a", 3).is_some());

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(sb("a"))
            .with_configuration_keys(None),
    ]);
    let r = cl.send(&describe, 4).await.unwrap();
    let ret = r.results[0]
        .configs
        .iter()
        .find(|x| x.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(ret.value.as_deref(), Some("1000"));
    assert_eq!(ret.config_source, 1);

    // DeleteRecords moves the log start; fetching below it is out of range.
    let mut lc = leader_client(&c, "a", 0).await;
    produce(&mut lc, "a", 0, batch(&[b"1", b"2"])).await;
    produce(&mut lc, "a", 0, batch(&[b"3"])).await;
    let del = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(tn("a"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(2),
            ]),
    ]);
    let r = lc.send(&del, 2).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].low_watermark, 2);
    assert_eq!(
        fetch(&mut lc, "a", 0, 0, 0).await.error_code,
        ec::OFFSET_OUT_OF_RANGE
    );
    let p = fetch(&mut lc, "a", 0, 2, 0).await;
    assert_eq!(
        (p.log_start_offset, values(&p)),
        (2, vec![(2, b"3".to_vec())])
    );
    let r = lc.send(&list_req("a", -2, 0), 7).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 2);

    let del = DeleteTopicsRequest::default().with_topic_names(vec![tn("a"), tn("zz")]);
    let r = cl.send(&del, 5).await.unwrap();
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(r.responses[1].error_code, ec::UNKNOWN_TOPIC_OR_PARTITION);
    assert!(c.leader("a", 0).is_none());
}

#[tokio::test]
async fn compressed_batches_are_stored_served_and_searched_by_time() {
    use krust_wire::record::{BatchBuilder, Compression};
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut b = BatchBuilder::new(codec);
        for (i, ts) in [10i64, 20, 30].iter().enumerate() {
            let v = format!("{codec:?}-{i}");
            b.push(*ts, None, Some(v.as_bytes()), &[]).unwrap();
        }
        let batch = b.finish(-1, -1, -1, false).unwrap();
        assert_eq!(produce(&mut cl, "t", 0, batch).await.0, 0, "{codec:?}");
    }
    let p = fetch(&mut cl, "t", 0, 0, 0).await;
    let vals = values(&p);
    assert_eq!(vals.len(), 12);
    assert_eq!(vals[11], (11, b"Zstd-2".to_vec()));
    assert_eq!(c.records("t", 0).unwrap().len(), 12);
    let r = cl.send(&list_req("t", 15, 0), 7).await.unwrap();
    let x = &r.topics[0].partitions[0];
    assert_eq!(
        (x.offset, x.timestamp),
        (1, 20),
        "searched inside the compressed batch"
    );
}

#[tokio::test]
async fn partial_trailing_batches_when_configured() {
    let c = FakeCluster::with_config(ClusterConfig::new().with_partial_trailing_batches(true))
        .await
        .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    for _ in 0..3 {
        produce(&mut cl, "t", 0, batch(&[&[1u8; 100]])).await;
    }
    let one = c.records("t", 0).unwrap().len();
    assert_eq!(one, 3);
    let all = fetch(&mut cl, "t", 0, 0, 0).await.records.unwrap().len();
    let limit = (all / 3) * 2 + 50;
    let mut req = fetch_req("t", 0, 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = limit as i32;
    let r = cl.send(&req, 11).await.unwrap();
    let data = r.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(data.len(), limit, "two whole batches and a partial third");
    let batches = krust_wire::record::batches(data);
    let n = batches.count();
    assert_eq!(n, 2, "the partial batch is not a batch");
}

#[tokio::test]
async fn produce_limits_size_and_batch_count() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut cl = client(&c, 0).await;
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(tn("small"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(sb("max.message.bytes"))
                .with_value(Some(sb("1000")))]),
    ]);
    cl.send(&create, 5).await.unwrap();
    assert_eq!(
        produce(&mut cl, "small", 0, batch(&[&[0u8; 2000]])).await.0,
        ec::MESSAGE_TOO_LARGE
    );
    let mut two = batch(&[b"a"]).to_vec();
    two.extend_from_slice(&batch(&[b"b"]));
    assert_eq!(
        produce(&mut cl, "small", 0, two.into()).await.0,
        ec::INVALID_RECORD
    );
    let r = cl
        .send(&produce_req("small", 0, batch(&[b"a"]), 2), 9)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ec::INVALID_REQUIRED_ACKS
    );
    assert_eq!(c.offsets("small", 0), Some((0, 0, 0)));
}

#[tokio::test]
async fn seeding_data_and_committed_offsets_without_a_client() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    assert_eq!(c.append("t", 0, batch(&[b"a", b"b"])), Ok(0));
    assert_eq!(c.append("t", 0, batch(&[b"c"])), Ok(2));
    assert_eq!(
        c.append("nope", 0, batch(&[b"c"])),
        Err(ec::UNKNOWN_TOPIC_OR_PARTITION)
    );
    let mut cl = client(&c, 0).await;
    assert_eq!(
        values(&fetch(&mut cl, "t", 0, 2, 0).await),
        vec![(2, b"c".to_vec())]
    );
    c.commit("g", "t", 0, 2);
    assert_eq!(c.committed("g", "t", 0), Some(2));
    let r = cl
        .send(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(sb("g")))
                .with_topics(None),
            7,
        )
        .await
        .unwrap();
    assert_eq!(r.topics[0].partitions[0].committed_offset, 2);
}

#[tokio::test]
async fn log_append_time_topics_stamp_batches() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut cl = client(&c, 0).await;
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(tn("lat"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(sb("message.timestamp.type"))
                .with_value(Some(sb("LogAppendTime")))]),
    ]);
    cl.send(&create, 5).await.unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let r = cl
        .send(&produce_req("lat", 0, batch(&[b"a", b"b"]), -1), 9)
        .await
        .unwrap();
    let append_time = r.responses[0].partition_responses[0].log_append_time_ms;
    assert!(append_time >= before, "{append_time} < {before}");
    let p = fetch(&mut cl, "lat", 0, 0, 0).await;
    let data = p.records.unwrap();
    let inflated = krust_wire::record::DeflatedBatch::decode(data)
        .unwrap()
        .inflate()
        .unwrap();
    for rec in inflated.records() {
        assert_eq!(
            rec.unwrap().timestamp,
            append_time,
            "records carry the append time"
        );
    }
    let r = cl.send(&list_req("lat", before, 0), 7).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].timestamp, append_time);
}
