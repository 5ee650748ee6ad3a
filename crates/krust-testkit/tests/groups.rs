//! The classic group coordinator over the raw protocol.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use krust_testkit::errors as ec;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::raw::RawClient;
use krust_testkit::{ClusterConfig, FakeCluster};

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(5000)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(sb("range"))
        .with_metadata(Bytes::from_static(b"meta"))])
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &'static [u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member))
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb("range")))
        .with_assignments(
            assign
                .iter()
                .map(|(m, a)| {
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(sb(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        )
}

fn hb_req(group: &str, member: &str, generation: i32, instance: Option<&str>) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
}

async fn coordinator(c: &FakeCluster, group: &str) -> RawClient {
    let mut any = client(c, 0).await;
    let r = any
        .send(
            &FindCoordinatorRequest::default()
                .with_key(sb(group))
                .with_key_type(0),
            3,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.node_id.0, c.coordinator(0, group));
    RawClient::connect(format!("{}:{}", r.host.as_str(), r.port).parse().unwrap())
        .await
        .unwrap()
}

/// Joins (through the member-id-required round) and returns (member id, response).
async fn join(cl: &mut RawClient, group: &str) -> (String, JoinGroupResponse) {
    let r = cl
        .send(&join_req(group, "", None, 10_000), 7)
        .await
        .unwrap();
    assert_eq!(r.error_code, ec::MEMBER_ID_REQUIRED);
    let id = r.member_id.to_string();
    let r = cl
        .send(&join_req(group, &id, None, 10_000), 7)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    (id, r)
}

#[tokio::test]
async fn single_member_lifecycle_with_offsets() {
    let c = FakeCluster::start(3).await.unwrap();
    c.create_topic("t", 2, 1).unwrap();
    let mut cl = coordinator(&c, "g").await;
    let (id, r) = join(&mut cl, "g").await;
    assert_eq!((r.generation_id, r.leader.as_str()), (1, id.as_str()));
    assert_eq!(r.members.len(), 1);
    let s = cl
        .send(&sync_req("g", &id, 1, &[(&id, b"A")]), 5)
        .await
        .unwrap();
    assert_eq!((s.error_code, &s.assignment[..]), (0, &b"A"[..]));
    assert_eq!(
        cl.send(&hb_req("g", &id, 1, None), 4)
            .await
            .unwrap()
            .error_code,
        0
    );
    assert_eq!(
        cl.send(&hb_req("g", &id, 0, None), 4)
            .await
            .unwrap()
            .error_code,
        ec::ILLEGAL_GENERATION
    );
    assert_eq!(
        cl.send(&hb_req("g", "who", 1, None), 4)
            .await
            .unwrap()
            .error_code,
        ec::UNKNOWN_MEMBER_ID
    );

    let commit = |gen: i32, member: &str, off: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(sb("g")))
            .with_generation_id_or_member_epoch(gen)
            .with_member_id(sb(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(off)
                            .with_committed_leader_epoch(0),
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(9)
                            .with_committed_offset(off),
                    ]),
            ])
    };
    let r = cl.send(&commit(1, &id, 42), 8).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        r.topics[0].partitions[1].error_code,
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );
    let r = cl.send(&commit(7, &id, 1), 8).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, ec::ILLEGAL_GENERATION);

    // OffsetFetch v7 (single group) and v8 (batched), named and all topics.
    let f7 = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb("g")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(tn("t"))
                .with_partition_indexes(vec![0, 1]),
        ]));
    let r = cl.send(&f7, 7).await.unwrap();
    let parts = &r.topics[0].partitions;
    assert_eq!(
        (parts[0].committed_offset, parts[1].committed_offset),
        (-1, 42)
    );
    let f8 = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb("g")))
            .with_topics(None),
    ]);
    let r = cl.send(&f8, 8).await.unwrap();
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 42);

    let d = cl
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g"))]),
            5,
        )
        .await
        .unwrap();
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(&d.groups[0].members[0].member_assignment[..], b"A");
    let l = cl.send(&ListGroupsRequest::default(), 4).await.unwrap();
    assert_eq!(l.groups[0].group_id.0.as_str(), "g");

    let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb("g"))]);
    assert_eq!(
        cl.send(&del, 2).await.unwrap().results[0].error_code,
        ec::NON_EMPTY_GROUP
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(sb("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(sb(&id))
        ]);
    let r = cl.send(&leave, 4).await.unwrap();
    assert_eq!(r.members[0].error_code, 0);
    let d = cl
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g"))]),
            5,
        )
        .await
        .unwrap();
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(cl.send(&del, 2).await.unwrap().results[0].error_code, 0);

    // Requests to a broker that is not the coordinator.
    let other = (c.coordinator(0, "g") + 1) % 3;
    let mut wrong = client(&c, other).await;
    assert_eq!(
        wrong
            .send(&hb_req("g", &id, 1, None), 4)
            .await
            .unwrap()
            .error_code,
        ec::NOT_COORDINATOR
    );
}

#[tokio::test]
async fn second_member_triggers_rebalance() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut a = client(&c, 0).await;
    let (ida, _) = join(&mut a, "g").await;
    a.send(&sync_req("g", &ida, 1, &[(&ida, b"all")]), 5)
        .await
        .unwrap();

    let mut b = client(&c, 0).await;
    let r = b.send(&join_req("g", "", None, 10_000), 7).await.unwrap();
    let idb = r.member_id.to_string();
    let b_join = tokio::spawn(async move {
        let r = b.send(&join_req("g", &idb, None, 10_000), 7).await.unwrap();
        (b, idb, r)
    });
    // The first member learns about the rebalance from its heartbeat, and rejoins.
    c.wait_for_group("g", |g| g.state == "PreparingRebalance")
        .await;
    assert_eq!(
        a.send(&hb_req("g", &ida, 1, None), 4)
            .await
            .unwrap()
            .error_code,
        ec::REBALANCE_IN_PROGRESS
    );
    let ra = a.send(&join_req("g", &ida, None, 10_000), 7).await.unwrap();
    let (mut b, idb, rb) = b_join.await.unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.as_str(), ida, "the leader is kept");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    let b_sync =
        tokio::spawn(async move { b.send(&sync_req("g", &idb, 2, &[]), 5).await.unwrap() });
    let ida2 = ida.clone();
    let sa = a
        .send(
            &sync_req(
                "g",
                &ida,
                2,
                &[(&ida2, b"p0"), (&rb.member_id.to_string(), b"p1")],
            ),
            5,
        )
        .await
        .unwrap();
    let sb_ = b_sync.await.unwrap();
    assert_eq!(
        (&sa.assignment[..], &sb_.assignment[..]),
        (&b"p0"[..], &b"p1"[..])
    );
}

#[tokio::test]
async fn session_timeout_expires_silent_members() {
    let c = FakeCluster::with_config(
        ClusterConfig::new()
            .with_session_timeout_bounds(Duration::from_millis(50), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut cl = client(&c, 0).await;
    let r = cl.send(&join_req("g", "", None, 100), 3).await.unwrap();
    assert_eq!(r.error_code, 0, "v3 has no member-id-required round");
    let id = r.member_id.to_string();
    cl.send(&sync_req("g", &id, 1, &[(&id, b"x")]), 3)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let r = cl.send(&hb_req("g", &id, 1, None), 3).await.unwrap();
        if r.error_code == ec::UNKNOWN_MEMBER_ID {
            break;
        }
        // Stop heartbeating for longer than the session.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "member never expired"
        );
    }
    let r = cl.send(&join_req("g", "", None, 10), 3).await.unwrap();
    assert_eq!(r.error_code, ec::INVALID_SESSION_TIMEOUT);
}

#[tokio::test]
async fn static_member_restart_fences_the_old_instance() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut cl = client(&c, 0).await;
    let r = cl
        .send(&join_req("g", "", Some("i1"), 10_000), 7)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0, "static members skip the member-id round");
    let old = r.member_id.to_string();
    cl.send(&sync_req("g", &old, 1, &[(&old, b"mine")]), 5)
        .await
        .unwrap();
    // Restart: same instance id, no member id.
    let mut cl2 = client(&c, 0).await;
    let r = cl2
        .send(&join_req("g", "", Some("i1"), 10_000), 7)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(
        cl.send(&hb_req("g", &old, 1, Some("i1")), 4)
            .await
            .unwrap()
            .error_code,
        ec::FENCED_INSTANCE_ID
    );
    let gen = r.generation_id;
    let s = cl2
        .send(&sync_req("g", &new, gen, &[(&new, b"mine")]), 5)
        .await
        .unwrap();
    assert_eq!(&s.assignment[..], b"mine");
    assert_eq!(
        cl2.send(&hb_req("g", &new, gen, Some("i1")), 4)
            .await
            .unwrap()
            .error_code,
        0
    );
}

#[tokio::test]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let c = FakeCluster::start(1).await.unwrap();
    let mut a = client(&c, 0).await;
    let mut b = client(&c, 0).await;
    let short = |member: &str| join_req("g", member, None, 10_000).with_rebalance_timeout_ms(200);
    let ra = a.send(&short(""), 3).await.unwrap();
    let ida = ra.member_id.to_string();
    a.send(&sync_req("g", &ida, 1, &[(&ida, b"x")]), 3)
        .await
        .unwrap();
    // B joins; A never rejoins (it does not heartbeat either): after A's rebalance timeout the
    // join completes with B alone.
    let start = Instant::now();
    let rb = b.send(&short(""), 3).await.unwrap();
    assert_eq!(rb.error_code, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((rb.generation_id, rb.members.len()), (2, 1));
    assert_eq!(rb.leader, rb.member_id);
    let info = c.group("g").unwrap();
    assert_eq!(info.members, vec![rb.member_id.to_string()]);
    assert_eq!(
        a.send(&hb_req("g", &ida, 1, None), 3)
            .await
            .unwrap()
            .error_code,
        ec::UNKNOWN_MEMBER_ID
    );
}

#[tokio::test]
async fn commits_during_rebalance_and_rejoin_between_join_and_sync() {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let mut a = client(&c, 0).await;
    let (ida, r) = join(&mut a, "g").await;
    // Rejoining between join and sync answers with the same generation.
    let again = a.send(&join_req("g", &ida, None, 10_000), 7).await.unwrap();
    assert_eq!(
        (again.error_code, again.generation_id, again.members.len()),
        (0, r.generation_id, 1)
    );
    let commit = |gen: i32, member: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(sb("g")))
            .with_generation_id_or_member_epoch(gen)
            .with_member_id(sb(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5),
                    ]),
            ])
    };
    let code = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(
        code(a.send(&commit(1, &ida), 8).await.unwrap()),
        ec::REBALANCE_IN_PROGRESS
    );
    a.send(&sync_req("g", &ida, 1, &[(&ida, b"x")]), 5)
        .await
        .unwrap();
    // A second member starts a rebalance: A's commits of generation 1 are still accepted.
    let mut b = client(&c, 0).await;
    let rb = b.send(&join_req("g", "", None, 10_000), 7).await.unwrap();
    let idb = rb.member_id.to_string();
    tokio::spawn(async move { b.send(&join_req("g", &idb, None, 10_000), 7).await });
    c.wait_for_group("g", |g| g.state == "PreparingRebalance")
        .await;
    assert_eq!(code(a.send(&commit(1, &ida), 8).await.unwrap()), 0);
}
