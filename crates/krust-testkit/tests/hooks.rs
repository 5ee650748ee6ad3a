//! Fault hooks, broker controls and the request log: each test shows the fault happened (log
//! or state) and what the client saw.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use krust_testkit::errors as ec;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::raw::{RawClient, RawError};
use krust_testkit::{Action, FakeCluster, Intercept};

async fn setup() -> FakeCluster {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    c
}

#[tokio::test]
async fn fail_next_answers_with_the_error_once() {
    let c = setup().await;
    c.fail_next(ApiKey::Produce, ec::NOT_LEADER_OR_FOLLOWER);
    let mut cl = client(&c, 0).await;
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"a"])).await,
        (ec::NOT_LEADER_OR_FOLLOWER, -1)
    );
    assert_eq!(produce(&mut cl, "t", 0, batch(&[b"a"])).await, (0, 0));
    assert_eq!(c.requests_of(ApiKey::Produce).len(), 2);
    assert_eq!(
        c.offsets("t", 0).unwrap().1,
        1,
        "the failed request was not applied"
    );
}

#[tokio::test]
async fn fail_next_n_and_error_responses_for_group_apis() {
    let c = setup().await;
    c.fail_next_n(ApiKey::FindCoordinator, ec::COORDINATOR_NOT_AVAILABLE, 2);
    let mut cl = client(&c, 0).await;
    let req = FindCoordinatorRequest::default().with_key(sb("g"));
    for _ in 0..2 {
        assert_eq!(
            cl.send(&req, 3).await.unwrap().error_code,
            ec::COORDINATOR_NOT_AVAILABLE
        );
    }
    assert_eq!(cl.send(&req, 3).await.unwrap().error_code, 0);
    c.fail_next(ApiKey::FindCoordinator, ec::NOT_COORDINATOR);
    let r = cl
        .send(
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("g")]),
            4,
        )
        .await
        .unwrap();
    assert_eq!(r.coordinators[0].error_code, ec::NOT_COORDINATOR);
}

#[tokio::test]
async fn crafted_response_and_observer_hooks() {
    let c = setup().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    c.intercept(Intercept::all(), move |_| {
        s2.fetch_add(1, Ordering::SeqCst);
        None
    });
    c.intercept(Intercept::api(ApiKey::ListGroups).once(), |req| {
        assert_eq!(req.version, 4);
        let mut r = ListGroupsResponse::default();
        r.groups.push(
            list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(sb("crafted")))
                .with_group_state(sb("Stable")),
        );
        Some(Action::Respond(Box::new(ResponseKind::ListGroups(r))))
    });
    let mut cl = client(&c, 0).await;
    let r = cl.send(&ListGroupsRequest::default(), 4).await.unwrap();
    assert_eq!(r.groups[0].group_id.0.as_str(), "crafted");
    let r = cl.send(&ListGroupsRequest::default(), 4).await.unwrap();
    assert!(r.groups.is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn close_next_drops_the_connection_without_applying() {
    let c = setup().await;
    c.close_next(ApiKey::Produce);
    let mut cl = client(&c, 0).await;
    cl.send_only(&produce_req("t", 0, batch(&[b"a"]), -1), 9)
        .await
        .unwrap();
    assert!(matches!(
        cl.recv::<ProduceRequest>(9).await,
        Err(RawError::Io(_))
    ));
    assert_eq!(c.offsets("t", 0).unwrap().1, 0);
    let mut cl = client(&c, 0).await;
    assert_eq!(produce(&mut cl, "t", 0, batch(&[b"a"])).await, (0, 0));
}

#[tokio::test]
async fn drop_response_applies_then_closes() {
    let c = setup().await;
    c.drop_response_next(ApiKey::Produce);
    let mut cl = client(&c, 0).await;
    cl.send_only(&produce_req("t", 0, batch(&[b"a"]), -1), 9)
        .await
        .unwrap();
    assert!(matches!(
        cl.recv::<ProduceRequest>(9).await,
        Err(RawError::Io(_))
    ));
    assert_eq!(
        c.offsets("t", 0).unwrap().1,
        1,
        "written although never acknowledged"
    );
}

#[tokio::test]
async fn hang_never_answers_while_other_connections_proceed() {
    let c = setup().await;
    c.hang_next(ApiKey::Metadata);
    let mut hung = client(&c, 0).await;
    hung.send_only(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    c.wait_for_requests(ApiKey::Metadata, 1).await;
    let mut other = client(&c, 0).await;
    let r = other
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    assert_eq!(r.topics.len(), 1);
    let waited =
        tokio::time::timeout(Duration::from_millis(200), hung.recv::<MetadataRequest>(9)).await;
    assert!(waited.is_err(), "the hung request was answered");
}

#[tokio::test]
async fn delay_holds_one_request_while_others_proceed() {
    let c = setup().await;
    c.delay_next(ApiKey::Produce, Duration::from_millis(500));
    let mut slow = client(&c, 0).await;
    let start = Instant::now();
    let t = tokio::spawn(async move { produce(&mut slow, "t", 0, batch(&[b"slow"])).await });
    c.wait_for_requests(ApiKey::Produce, 1).await;
    let mut fast = client(&c, 0).await;
    assert_eq!(produce(&mut fast, "t", 0, batch(&[b"fast"])).await, (0, 0));
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(
        t.await.unwrap(),
        (0, 1),
        "the delayed produce landed after the other"
    );
    assert!(start.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn per_broker_hooks_only_match_their_broker() {
    let c = FakeCluster::start(2).await.unwrap();
    c.intercept(Intercept::api(ApiKey::Metadata).on_broker(1), |_| {
        Some(Action::Error(ec::UNKNOWN_TOPIC_OR_PARTITION))
    });
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(tn("x"))),
    ]));
    c.create_topic("x", 1, 1).unwrap();
    let mut b0 = client(&c, 0).await;
    let mut b1 = client(&c, 1).await;
    assert_eq!(b0.send(&req, 9).await.unwrap().topics[0].error_code, 0);
    assert_eq!(
        b1.send(&req, 9).await.unwrap().topics[0].error_code,
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );
    let log = c.requests_of(ApiKey::Metadata);
    assert_eq!(log.iter().map(|r| r.broker).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(log[0].client_id.as_deref(), Some("krust-testkit-raw"));
}

#[tokio::test]
async fn broker_down_refuses_and_drops_then_comes_back() {
    let c = FakeCluster::start(2).await.unwrap();
    let mut cl = client(&c, 1).await;
    c.broker_down(1);
    let r = cl
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await;
    assert!(r.is_err(), "existing connection dropped");
    assert!(
        RawClient::connect(c.broker_addr(1)).await.is_err(),
        "new connections refused"
    );
    let mut b0 = client(&c, 0).await;
    assert!(b0
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .is_ok());
    c.broker_up(1);
    let start = Instant::now();
    let mut cl = loop {
        // The listener rebinds asynchronously.
        match RawClient::connect(c.broker_addr(1)).await {
            Ok(cl) => break cl,
            Err(_) if start.elapsed() < Duration::from_secs(5) => tokio::task::yield_now().await,
            Err(e) => panic!("broker never came back: {e}"),
        }
    };
    assert!(cl
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .is_ok());
}

#[tokio::test]
async fn rtt_delays_responses_but_keeps_them_pipelined() {
    let c = setup().await;
    c.set_rtt(0, Duration::from_millis(100));
    let mut cl = client(&c, 0).await;
    let start = Instant::now();
    for _ in 0..10 {
        cl.send_only(&MetadataRequest::default().with_topics(None), 9)
            .await
            .unwrap();
    }
    for _ in 0..10 {
        cl.recv::<MetadataRequest>(9).await.unwrap();
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        took < Duration::from_millis(700),
        "pipelined, not serialized: {took:?}"
    );
}

#[tokio::test]
async fn coordinator_moves_answer_not_coordinator() {
    let c = FakeCluster::start(2).await.unwrap();
    c.move_coordinator(0, "g", 1);
    let mut cl = client(&c, 0).await;
    let r = cl
        .send(&FindCoordinatorRequest::default().with_key(sb("g")), 3)
        .await
        .unwrap();
    assert_eq!(r.node_id.0, 1);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(sb("g")))
        .with_member_id(sb("m"));
    assert_eq!(
        cl.send(&hb, 4).await.unwrap().error_code,
        ec::NOT_COORDINATOR
    );
    c.broker_down(1);
    let r = cl
        .send(&FindCoordinatorRequest::default().with_key(sb("g")), 3)
        .await
        .unwrap();
    assert_eq!(r.error_code, ec::COORDINATOR_NOT_AVAILABLE);
}

#[tokio::test]
async fn hidden_topic_reappears_after_its_time() {
    let c = setup().await;
    c.hide_topic("t", Some(Duration::from_millis(100)));
    let mut cl = client(&c, 0).await;
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"a"])).await.0,
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );
    let start = Instant::now();
    loop {
        if produce(&mut cl, "t", 0, batch(&[b"a"])).await.0 == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn acks_all_needs_min_insync_replicas_up() {
    let c = FakeCluster::start(3).await.unwrap();
    let mut admin = client(&c, 0).await;
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(tn("isr"))
            .with_num_partitions(1)
            .with_replication_factor(3)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(sb("min.insync.replicas"))
                .with_value(Some(sb("2")))]),
    ]);
    assert_eq!(
        admin.send(&create, 5).await.unwrap().topics[0].error_code,
        0
    );
    let (leader, _) = c.leader("isr", 0).unwrap();
    let others: Vec<i32> = (0..3).filter(|b| *b != leader).collect();
    let mut cl = client(&c, leader).await;
    c.broker_down(others[0]);
    assert_eq!(produce(&mut cl, "isr", 0, batch(&[b"a"])).await.0, 0);
    c.broker_down(others[1]);
    assert_eq!(
        produce(&mut cl, "isr", 0, batch(&[b"b"])).await.0,
        ec::NOT_ENOUGH_REPLICAS
    );
    let r = cl
        .send(&produce_req("isr", 0, batch(&[b"c"]), 1), 9)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "acks=1 still works"
    );
    let md = cl
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    assert_eq!(md.topics[0].partitions[0].isr_nodes, vec![BrokerId(leader)]);
    c.broker_up(others[1]);
    assert_eq!(produce(&mut cl, "isr", 0, batch(&[b"d"])).await.0, 0);
}

#[tokio::test]
async fn hooks_can_drive_the_cluster_and_install_hooks() {
    let c = FakeCluster::start(2).await.unwrap();
    c.create_topic("t", 1, 2).unwrap();
    let (leader, epoch) = c.leader("t", 0).unwrap();
    // On the first Produce: move the leader away, and fail the request with the error a
    // client would then see; then install an observer from inside the hook.
    let weak = c.downgrade();
    c.intercept(Intercept::api(ApiKey::Produce).once(), move |req| {
        let c = weak.upgrade()?;
        c.move_leader("t", 0, 1 - req.broker);
        c.intercept(Intercept::api(ApiKey::Metadata), |_| None);
        Some(Action::Error(ec::NOT_LEADER_OR_FOLLOWER))
    });
    let mut cl = client(&c, leader).await;
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"a"])).await.0,
        ec::NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(c.leader("t", 0), Some((1 - leader, epoch + 1)));
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"a"])).await.0,
        ec::NOT_LEADER_OR_FOLLOWER
    );
    let mut new_leader = client(&c, 1 - leader).await;
    assert_eq!(
        produce(&mut new_leader, "t", 0, batch(&[b"a"])).await,
        (0, 0)
    );
    // The weak handle does not keep the cluster alive.
    let weak = c.downgrade();
    drop(c);
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn throttle_is_reported_and_mutes_the_connection() {
    let c = setup().await;
    c.set_throttle(0, Duration::from_millis(300));
    let mut cl = client(&c, 0).await;
    let start = Instant::now();
    let r = cl
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    assert_eq!(r.throttle_time_ms, 300);
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "the response itself is not delayed"
    );
    let r = cl
        .send(&produce_req("t", 0, batch(&[b"a"]), -1), 9)
        .await
        .unwrap();
    assert_eq!(r.throttle_time_ms, 300);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "the next request waited"
    );
    c.set_throttle(0, Duration::ZERO);
}

#[tokio::test]
async fn leader_failover_moves_leaders_and_coordinators_off_a_down_broker() {
    let c = FakeCluster::with_config(
        krust_testkit::ClusterConfig::new()
            .with_brokers(3)
            .with_leader_failover(true),
    )
    .await
    .unwrap();
    c.create_topic("r3", 3, 3).unwrap();
    c.create_topic("r1", 3, 1).unwrap();
    let (l0, e0) = c.leader("r3", 0).unwrap();
    let coord = c.coordinator(0, "g");
    c.broker_down(l0);
    let (l1, e1) = c.leader("r3", 0).unwrap();
    assert!(l1 != l0 && l1 >= 0 && e1 == e0 + 1);
    let lonely = (0..3).find(|p| c.leader("r1", *p).unwrap().0 == -1);
    let lonely = lonely.expect("the single-replica partition on the down broker is offline");
    if coord == l0 {
        assert_ne!(c.coordinator(0, "g"), l0);
    }
    let up = (l0 + 1) % 3;
    let mut cl = client(&c, up).await;
    let md = cl
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    let r1 = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "r1")
        .unwrap();
    assert_eq!(
        r1.partitions[lonely as usize].error_code,
        ec::LEADER_NOT_AVAILABLE
    );
    c.broker_up(l0);
    assert_eq!(
        c.leader("r1", lonely).unwrap().0,
        l0,
        "back with its broker"
    );
}

#[tokio::test]
async fn error_stacks_apply_in_order_then_go_away() {
    let c = setup().await;
    c.push_errors(
        ApiKey::Produce,
        [
            (ec::NOT_ENOUGH_REPLICAS, Duration::ZERO),
            (0, Duration::from_millis(50)),
            (ec::REQUEST_TIMED_OUT, Duration::from_millis(50)),
        ],
    );
    let mut cl = client(&c, 0).await;
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"a"])).await.0,
        ec::NOT_ENOUGH_REPLICAS
    );
    let start = Instant::now();
    assert_eq!(produce(&mut cl, "t", 0, batch(&[b"b"])).await, (0, 0));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"c"])).await.0,
        ec::REQUEST_TIMED_OUT
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(produce(&mut cl, "t", 0, batch(&[b"d"])).await, (0, 1));
    assert_eq!(c.requests_of(ApiKey::Produce).len(), 4);
}
