//! Fetch sessions (KIP-227): creation, incremental requests and answers, forgotten partitions,
//! epoch checks, eviction.

mod common;

use common::*;
use krust_testkit::errors as ec;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::{ClusterConfig, FakeCluster};

fn part(p: i32, offset: i64) -> fetch_request::FetchPartition {
    fetch_request::FetchPartition::default()
        .with_partition(p)
        .with_fetch_offset(offset)
        .with_current_leader_epoch(-1)
        .with_log_start_offset(-1)
        .with_partition_max_bytes(1 << 20)
}

fn req(
    id: i32,
    epoch: i32,
    parts: Vec<fetch_request::FetchPartition>,
    forget: Vec<i32>,
) -> FetchRequest {
    let mut r = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch);
    if !parts.is_empty() {
        r.topics = vec![fetch_request::FetchTopic::default()
            .with_topic(tn("t"))
            .with_partitions(parts)];
    }
    if !forget.is_empty() {
        r.forgotten_topics_data = vec![fetch_request::ForgottenTopic::default()
            .with_topic(tn("t"))
            .with_partitions(forget)];
    }
    r
}

fn partitions(r: &FetchResponse) -> Vec<i32> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect()
}

#[tokio::test]
async fn incremental_fetches_carry_only_what_changed() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 2, 1).unwrap();
    let mut cl = client(&c, 0).await;
    produce(&mut cl, "t", 0, batch(&[b"a"])).await;

    let r = cl
        .send(&req(0, 0, vec![part(0, 0), part(1, 0)], vec![]), 11)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0, "a session was granted");
    assert_eq!(partitions(&r), vec![0, 1], "the first answer is full");

    // Position of p0 moved to 1; nothing new anywhere: an empty incremental answer... except
    // that p0's request changed nothing on the broker side, so nothing is sent.
    let r = cl
        .send(&req(id, 1, vec![part(0, 1)], vec![]), 11)
        .await
        .unwrap();
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(partitions(&r).is_empty(), "{:?}", partitions(&r));

    // New data on p1 (which the client did not mention): only p1 comes back.
    produce(&mut cl, "t", 1, batch(&[b"b"])).await;
    let r = cl.send(&req(id, 2, vec![], vec![]), 11).await.unwrap();
    assert_eq!(partitions(&r), vec![1]);
    assert_eq!(
        values(&r.responses[0].partitions[0]),
        vec![(0, b"b".to_vec())]
    );

    // Forget p1; new data on p0 and p1: only p0 comes back.
    produce(&mut cl, "t", 0, batch(&[b"c"])).await;
    produce(&mut cl, "t", 1, batch(&[b"d"])).await;
    let r = cl.send(&req(id, 3, vec![], vec![1]), 11).await.unwrap();
    assert_eq!(partitions(&r), vec![0]);
    assert_eq!(
        values(&r.responses[0].partitions[0]),
        vec![(1, b"c".to_vec())]
    );

    // A wrong epoch, then an evicted session.
    let r = cl.send(&req(id, 9, vec![], vec![]), 11).await.unwrap();
    assert_eq!(r.error_code, ec::INVALID_FETCH_SESSION_EPOCH);
    c.evict_fetch_sessions();
    let r = cl.send(&req(id, 4, vec![], vec![]), 11).await.unwrap();
    assert_eq!(r.error_code, ec::FETCH_SESSION_ID_NOT_FOUND);
    // Closing (epoch -1) is a sessionless full fetch.
    let r = cl
        .send(&req(id, -1, vec![part(0, 0)], vec![]), 11)
        .await
        .unwrap();
    assert_eq!((r.error_code, r.session_id), (0, 0));
}

#[tokio::test]
async fn sessions_can_be_declined() {
    let c = FakeCluster::with_config(ClusterConfig::new().with_fetch_sessions(false))
        .await
        .unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut cl = client(&c, 0).await;
    let r = cl
        .send(&req(0, 0, vec![part(0, 0)], vec![]), 11)
        .await
        .unwrap();
    assert_eq!((r.error_code, r.session_id), (0, 0));
}
