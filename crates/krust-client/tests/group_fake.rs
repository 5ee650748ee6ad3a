//! Consumer groups against krust-testkit's fake cluster: exclusive ownership with three members,
//! cooperative-sticky moving only what it must, static membership restarts, the group
//! consumer reading every record, and recovery from coordinator faults.

mod group_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group_common::*;
use krust_client::consumer::ConsumerConfig;
use krust_client::group::{GroupSettings, Subscription};
use krust_client::{ClientConfig, Cluster, Consumer, Properties};
use krust_testkit::kafka_protocol::messages::ApiKey as FakeApi;
use krust_testkit::{ClusterConfig, FakeCluster};

async fn fake(brokers: usize, partitions: i32) -> (FakeCluster, Cluster) {
    let cfg = ClusterConfig::new()
        .with_brokers(brokers)
        .with_topic("t", partitions, 1);
    let fake = FakeCluster::with_config(cfg).await.expect("fake cluster");
    let mut c = ClientConfig::new(&fake.bootstrap());
    c.request_timeout = Duration::from_millis(2_000);
    c.retry_backoff = Duration::from_millis(20);
    c.retry_backoff_max = Duration::from_millis(200);
    let cluster = Cluster::connect(c).await.expect("connect");
    (fake, cluster)
}

fn settings(group: &str, assignor: &str) -> GroupSettings {
    let mut s = GroupSettings::new(group).with_timeouts(
        Duration::from_millis(6_000),
        Duration::from_millis(200),
        Duration::from_millis(6_000),
    );
    s.group.assignors = vec![krust_core::group::builtin(assignor).unwrap()];
    s.group.revoke_timeout = Duration::from_millis(3_000);
    // Event-only member applications never poll records: no max.poll.interval.ms.
    s.group.max_poll_interval = None;
    s.topic_refresh = Duration::from_millis(1_000);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_three_members_move_only_what_they_must() {
    let (_fake, cluster) = fake(1, 12).await;
    let world = World::new(12);
    let t0 = Instant::now();
    let a = world.spawn(
        0,
        &cluster,
        settings("coop", "cooperative-sticky"),
        Subscription::topics(["t"]),
    );
    let b = world.spawn(
        1,
        &cluster,
        settings("coop", "cooperative-sticky"),
        Subscription::topics(["t"]),
    );
    world
        .wait(|w| w.complete_with(&[0, 1]) && w.balanced(&[0, 1]))
        .await;
    let first = t0.elapsed();
    let before = world.snapshot();
    // A third member joins: only the partitions it gets move.
    let t1 = Instant::now();
    let c = world.spawn(
        2,
        &cluster,
        settings("coop", "cooperative-sticky"),
        Subscription::topics(["t"]),
    );
    world
        .wait(|w| w.complete_with(&[0, 1, 2]) && w.balanced(&[0, 1, 2]))
        .await;
    let settle = t1.elapsed();
    let after = world.snapshot();
    for m in [0, 1] {
        let kept: BTreeSet<_> = before[&m].intersection(&after[&m]).cloned().collect();
        let revoked = world.revoked(m);
        assert!(
            revoked.is_disjoint(&kept),
            "member {m} stopped kept partitions: revoked {revoked:?}, kept {kept:?}"
        );
        assert_eq!(kept.len(), 4, "member {m} keeps 4 of its 6");
    }
    // The second member leaves: the others only gain.
    world.clear_revoked();
    b.member.close().await;
    world
        .wait(|w| w.complete_with(&[0, 2]) && w.balanced(&[0, 2]))
        .await;
    assert!(world.revoked(0).is_empty() && world.revoked(2).is_empty());
    eprintln!(
        "fake cluster, cooperative-sticky: first assignment after {first:?}, settle after a join {settle:?}"
    );
    a.member.close().await;
    c.member.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_range_three_members_are_exclusive() {
    let (_fake, cluster) = fake(1, 12).await;
    let world = World::new(12);
    let ms: Vec<_> = (0..3)
        .map(|i| {
            world.spawn(
                i,
                &cluster,
                settings("range", "range"),
                Subscription::topics(["t"]),
            )
        })
        .collect();
    world
        .wait(|w| w.complete_with(&[0, 1, 2]) && w.balanced(&[0, 1, 2]))
        .await;
    ms[0].member.close().await;
    world
        .wait(|w| w.complete_with(&[1, 2]) && w.balanced(&[1, 2]))
        .await;
    for m in &ms[1..] {
        m.member.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_partitions_without_a_rebalance() {
    let (fake, cluster) = fake(1, 12).await;
    let world = World::new(12);
    let a = world.spawn(
        0,
        &cluster,
        settings("static", "range").with_instance_id("s0"),
        Subscription::topics(["t"]),
    );
    let b = world.spawn(
        1,
        &cluster,
        settings("static", "range").with_instance_id("s1"),
        Subscription::topics(["t"]),
    );
    world
        .wait(|w| w.complete_with(&[0, 1]) && w.balanced(&[0, 1]))
        .await;
    let generation = fake.group("static").unwrap().generation;
    let before = world.snapshot();
    world.clear_revoked();
    // The follower restarts. (A restarted static *leader* gets KIP-814 `skip_assignment` and
    // krust-core then rebalances once on purpose, because it cannot tell whether partitions
    // were added while it was away: that case is not KIP-345-silent by design.)
    let leader = fake.group("static").unwrap().leader.unwrap();
    let (stay, go, stay_app, go_app) = if leader.starts_with("s0") {
        (0, 1, a, b)
    } else {
        (1, 0, b, a)
    };
    let go_id = format!("s{go}");
    let stay_rebalances = world.assigned_events(stay);
    // The follower goes away without LeaveGroup (static) and comes back as member 2.
    go_app.member.close().await;
    let c = world.spawn(
        2,
        &cluster,
        settings("static", "range").with_instance_id(go_id),
        Subscription::topics(["t"]),
    );
    world.wait(|w| w.complete_with(&[stay, 2])).await;
    let after = world.snapshot();
    assert_eq!(after[&2], before[&go], "same partitions back");
    assert_eq!(
        fake.group("static").unwrap().generation,
        generation,
        "no new generation"
    );
    assert_eq!(
        world.assigned_events(stay),
        stay_rebalances,
        "member {stay} saw no rebalance"
    );
    assert!(world.revoked(stay).is_empty());
    stay_app.member.close().await;
    c.member.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_consumer_reads_every_record_and_commits() {
    let (fake, cluster) = fake(1, 12).await;
    for p in 0..12 {
        let values: Vec<Vec<u8>> = (0..50).map(|i| format!("{p}-{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        fake.append(
            "t",
            p,
            krust_testkit::batch::data_batch(&refs, 1, -1, 0, 0, false),
        )
        .unwrap();
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let t0 = Instant::now();
    let first = std::sync::Arc::new(std::sync::Mutex::new(None::<Duration>));
    let mut tasks = Vec::new();
    let done = Arc::new(tokio::sync::Barrier::new(3));
    for i in 0..3 {
        // A Kafka-style property list, group settings included, used as it is.
        let config = ConsumerConfig::from_properties(
            Properties::new()
                .with("bootstrap.servers", fake.bootstrap())
                .with("request.timeout.ms", "2000")
                .with("retry.backoff.ms", "20")
                .with("group.id", "readers")
                .with("partition.assignment.strategy", "cooperative-sticky")
                .with("session.timeout.ms", "6000")
                .with("heartbeat.interval.ms", "200")
                .with("max.poll.interval.ms", "6000")
                .with("enable.auto.commit", "true")
                .with("auto.commit.interval.ms", "200")
                .with("krust.revoke.timeout.ms", "3000")
                .with("auto.offset.reset", "earliest")
                .with("fetch.max.wait.ms", "50"),
        )
        .unwrap();
        let consumer = Consumer::with_cluster(cluster.clone(), config).unwrap();
        let mut gc = consumer.subscribe(Subscription::topics(["t"])).unwrap();
        let seen = seen.clone();
        let first = first.clone();
        let fake = fake.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            // Every member polls (and auto-commits) until the group's commits cover every
            // record: reading everything is not enough, as the group may still be settling
            // its first assignments then and a commit during a rebalance is refused (Kafka
            // refuses it too); the new owner of a partition commits it after reading it.
            loop {
                if let Some(recs) = gc.poll_timeout(Duration::from_millis(100)).await.unwrap() {
                    first.lock().unwrap().get_or_insert(t0.elapsed());
                    let mut s = seen.lock().unwrap();
                    for r in recs {
                        let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                        *s.entry(v).or_default() += 1;
                    }
                }
                let all_committed = (0..12).all(|p| fake.committed("readers", "t", p) == Some(50));
                if (seen.lock().unwrap().len() == 600 && all_committed) || Instant::now() > deadline
                {
                    break;
                }
                let _ = i;
            }
            // None leaves before all are done: a member leaving starts a rebalance.
            done.wait().await;
            gc.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 600, "every record read");
    let dups: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "fake cluster: first record after {:?}; duplicates {dups}",
        first.lock().unwrap().unwrap()
    );
    for p in 0..12 {
        assert_eq!(
            fake.committed("readers", "t", p),
            Some(50),
            "partition {p} committed"
        );
    }
}

/// Injects `fault` once the group is stable and checks that the group comes back complete.
async fn recovers(name: &str, fault: impl FnOnce(&FakeCluster, &str)) {
    let (fake, cluster) = fake(3, 12).await;
    let world = World::new(12);
    let group = format!("faults-{name}");
    let a = world.spawn(
        0,
        &cluster,
        settings(&group, "cooperative-sticky"),
        Subscription::topics(["t"]),
    );
    let b = world.spawn(
        1,
        &cluster,
        settings(&group, "cooperative-sticky"),
        Subscription::topics(["t"]),
    );
    world
        .wait(|w| w.complete_with(&[0, 1]) && w.balanced(&[0, 1]))
        .await;
    let hb = fake.requests_of(FakeApi::Heartbeat).len();
    fault(&fake, &group);
    // Recovered: heartbeats flow again and the partitions are split between both members.
    let t = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(40),
        fake.wait_for_requests(FakeApi::Heartbeat, hb + 7),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{name}: no heartbeats after the fault; {:?}",
            world.snapshot()
        )
    });
    world
        .wait(|w| w.complete_with(&[0, 1]) && w.balanced(&[0, 1]))
        .await;
    eprintln!("fault {name}: recovered after {:?}", t.elapsed());
    a.member.close().await;
    b.member.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_coordinator_faults() {
    recovers("rebalance-in-progress", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 27);
    })
    .await;
    recovers("unknown-member", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 25);
    })
    .await;
    recovers("illegal-generation", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 22);
    })
    .await;
    recovers("not-coordinator", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 16);
    })
    .await;
    recovers("coordinator-moves", |f, g| {
        let now = f.coordinator(0, g);
        f.move_coordinator(0, g, (now + 1) % 3);
    })
    .await;
    recovers("heartbeat-times-out", |f, _| {
        f.hang_next(FakeApi::Heartbeat);
    })
    .await;
    recovers("sync-rebalance-in-progress", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 27);
        f.fail_next(FakeApi::SyncGroup, 27);
    })
    .await;
    recovers("join-not-coordinator", |f, _| {
        f.fail_next(FakeApi::Heartbeat, 27);
        f.fail_next(FakeApi::JoinGroup, 16);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_subscription_picks_up_new_topics() {
    let cfg = ClusterConfig::new()
        .with_brokers(1)
        .with_topic("ra", 2, 1)
        .with_topic("rb", 2, 1)
        .with_topic("other", 2, 1);
    let fake = FakeCluster::with_config(cfg).await.expect("fake cluster");
    let mut c = ClientConfig::new(&fake.bootstrap());
    c.request_timeout = Duration::from_millis(2_000);
    let cluster = Cluster::connect(c).await.unwrap();
    let world = World::new(4);
    let a = world.spawn(
        0,
        &cluster,
        settings("rx", "range"),
        Subscription::pattern("r.*").unwrap(),
    );
    world.wait(|w| w.complete_with(&[0])).await;
    assert!(world.snapshot()[&0]
        .iter()
        .all(|tp| tp.topic.starts_with('r')));
    fake.create_topic("rc", 2, 1).unwrap();
    let world6 = world.clone();
    world6
        .wait(|w| w.owners.keys().filter(|tp| &*tp.topic == "rc").count() == 2)
        .await;
    a.member.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_helpers_list_describe_reset_delete() {
    use krust_client::group::admin::{
        delete_groups, describe_group, list_groups, reset_offsets, ResetTo,
    };
    use krust_core::fetch::TopicPartition;
    let (fake, cluster) = fake(1, 4).await;
    for p in 0..4 {
        fake.append(
            "t",
            p,
            krust_testkit::batch::data_batch(&[b"a", b"b", b"c"], 1, -1, 0, 0, false),
        )
        .unwrap();
    }
    let world = World::new(4);
    let a = world.spawn(
        0,
        &cluster,
        settings("adm", "range"),
        Subscription::topics(["t"]),
    );
    world.wait(|w| w.complete_with(&[0])).await;
    let mut offsets = BTreeMap::new();
    offsets.insert(
        TopicPartition::new("t", 0),
        krust_core::group::OffsetAndMetadata {
            offset: 1,
            leader_epoch: None,
            metadata: Some("meta".into()),
        },
    );
    a.member.commit(offsets).await.unwrap();
    let c = a
        .member
        .committed(&[TopicPartition::new("t", 0)])
        .await
        .unwrap();
    assert_eq!(
        c[&TopicPartition::new("t", 0)]
            .as_ref()
            .unwrap()
            .metadata
            .as_deref(),
        Some("meta")
    );
    let groups = list_groups(&cluster).await.unwrap();
    assert!(groups
        .iter()
        .any(|g| g.group_id == "adm" && g.protocol_type == "consumer"));
    let d = describe_group(&cluster, "adm").await.unwrap();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].assignment.len(), 4);
    assert_eq!(d.members[0].topics, vec!["t".to_string()]);
    let lag = &d.offsets[&TopicPartition::new("t", 0)];
    assert_eq!(
        (lag.committed, lag.end, lag.lag),
        (Some(1), Some(3), Some(2))
    );
    a.member.close().await;
    let tps: Vec<_> = (0..4).map(|p| TopicPartition::new("t", p)).collect();
    let done = reset_offsets(&cluster, "adm", &tps, ResetTo::Earliest)
        .await
        .unwrap();
    assert_eq!(done.len(), 4);
    assert_eq!(fake.committed("adm", "t", 0), Some(0));
    let r = delete_groups(&cluster, &["adm"]).await.unwrap();
    assert!(r["adm"].is_ok(), "{r:?}");
    assert!(list_groups(&cluster)
        .await
        .unwrap()
        .iter()
        .all(|g| g.group_id != "adm"));
}

/// describe_group: a partition whose end offset cannot be read (the broker refuses
/// ListOffsets for topic `secret`, led by its own broker) gets its own error and no lag,
/// instead of failing or blanking the lag of every other partition; the end offsets are asked
/// with one ListOffsets per leader, not one per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_group_reports_end_offset_errors_per_partition() {
    use krust_client::group::admin::{describe_group, reset_offsets, ResetTo};
    use krust_core::fetch::TopicPartition;
    use krust_testkit::kafka_protocol::messages::RequestKind;
    use krust_testkit::{Action, Intercept};
    let (fake, cluster) = fake(2, 2).await;
    fake.create_topic("secret", 1, 1).unwrap();
    fake.move_leader("t", 0, 0).unwrap();
    fake.move_leader("t", 1, 0).unwrap();
    fake.move_leader("secret", 0, 1).unwrap();
    cluster
        .refresh_metadata(&["t".to_string(), "secret".to_string()])
        .await
        .unwrap();
    let tps = [
        TopicPartition::new("t", 0),
        TopicPartition::new("t", 1),
        TopicPartition::new("secret", 0),
    ];
    for tp in &tps {
        fake.append(
            &tp.topic,
            tp.partition,
            krust_testkit::batch::data_batch(&[b"a", b"b", b"c"], 1, -1, 0, 0, false),
        )
        .unwrap();
    }
    reset_offsets(&cluster, "lagged", &tps, ResetTo::Offset(1))
        .await
        .unwrap();
    let refused = krust_wire::ErrorCode::TOPIC_AUTHORIZATION_FAILED;
    // (broker, partitions asked) of every ListOffsets request.
    let asked = Arc::new(Mutex::new(Vec::<(i32, usize)>::new()));
    let asked2 = asked.clone();
    let hook = fake.intercept(Intercept::api(FakeApi::ListOffsets), move |r| {
        let RequestKind::ListOffsets(req) = &r.body else {
            return None;
        };
        let n = req.topics.iter().map(|t| t.partitions.len()).sum();
        asked2.lock().unwrap().push((r.broker, n));
        req.topics
            .iter()
            .any(|t| t.name.0.as_str() == "secret")
            .then_some(Action::Error(refused.0))
    });
    let d = describe_group(&cluster, "lagged").await.unwrap();
    fake.remove_hook(hook);
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, [(0, 2), (1, 1)], "one request per leader, each once");
    for tp in &tps[..2] {
        let l = &d.offsets[tp];
        assert_eq!(
            (l.committed, l.end, l.lag, l.end_error.as_deref()),
            (Some(1), Some(3), Some(2), None),
            "{tp}"
        );
    }
    let s = &d.offsets[&tps[2]];
    assert_eq!((s.committed, s.end, s.lag), (Some(1), None, None));
    let e = s.end_error.as_deref().expect("the partition's error");
    assert!(e.contains("TOPIC_AUTHORIZATION_FAILED"), "{e}");
}

/// A FindCoordinator answer naming a broker that is not in the cluster metadata (not even after
/// a refresh) is retried like COORDINATOR_NOT_AVAILABLE: once the answer is right the member
/// gets its partitions (were it taken as a usable node, the member would retry its JoinGroup
/// against a broker it cannot reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_missing_from_the_metadata_is_looked_up_again() {
    use krust_testkit::kafka_protocol::messages::find_coordinator_response::Coordinator;
    use krust_testkit::kafka_protocol::messages::{
        BrokerId, FindCoordinatorResponse, RequestKind, ResponseKind,
    };
    use krust_testkit::kafka_protocol::protocol::StrBytes;
    use krust_testkit::{Action, Intercept};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (fake, cluster) = fake(1, 2).await;
    let wrong = Arc::new(AtomicUsize::new(0));
    let wrong2 = wrong.clone();
    let hook = fake.intercept(Intercept::api(FakeApi::FindCoordinator), move |r| {
        let RequestKind::FindCoordinator(req) = &r.body else {
            return None;
        };
        if wrong2.fetch_add(1, Ordering::SeqCst) >= 3 {
            return None;
        }
        let host = StrBytes::from_static_str("127.0.0.1");
        let mut resp = FindCoordinatorResponse::default();
        if r.version >= 4 {
            resp.coordinators = req
                .coordinator_keys
                .iter()
                .map(|k| {
                    let mut c = Coordinator::default();
                    c.key = k.clone();
                    c.node_id = BrokerId(99);
                    c.host = host.clone();
                    c.port = 1;
                    c
                })
                .collect();
        } else {
            resp.node_id = BrokerId(99);
            resp.host = host;
            resp.port = 1;
        }
        Some(Action::Respond(Box::new(ResponseKind::FindCoordinator(
            resp,
        ))))
    });
    let world = World::new(2);
    let a = world.spawn(
        0,
        &cluster,
        settings("missing", "range"),
        Subscription::topics(["t"]),
    );
    world.wait(|w| w.complete_with(&[0])).await;
    assert!(
        wrong.load(Ordering::SeqCst) > 3,
        "the unknown coordinator was named, then looked up again"
    );
    fake.remove_hook(hook);
    a.member.close().await;
}

/// A group consumer on a fake cluster whose topic `t` has 2 partitions of 20 records, with
/// offset 10 committed for `group` on both; `request.timeout.ms` is short so that an
/// OffsetFetch error outlasts one `fetch_committed` call.
async fn late_offsets_setup(group: &str) -> (FakeCluster, krust_client::group::GroupConsumer) {
    let (fake, _) = fake(1, 2).await;
    for p in 0..2 {
        let values: Vec<Vec<u8>> = (0..20).map(|i| format!("{p}-{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        fake.append(
            "t",
            p,
            krust_testkit::batch::data_batch(&refs, 1, -1, 0, 0, false),
        )
        .unwrap();
        fake.commit(group, "t", p, 10);
    }
    let config = ConsumerConfig::from_properties(
        Properties::new()
            .with("bootstrap.servers", fake.bootstrap())
            .with("request.timeout.ms", "400")
            .with("retry.backoff.ms", "20")
            .with("retry.backoff.max.ms", "100")
            .with("group.id", group)
            .with("session.timeout.ms", "6000")
            .with("heartbeat.interval.ms", "200")
            .with("max.poll.interval.ms", "6000")
            .with("enable.auto.commit", "false")
            .with("auto.offset.reset", "earliest")
            .with("fetch.max.wait.ms", "50"),
    )
    .unwrap();
    let consumer = Consumer::connect(config).await.unwrap();
    let gc = consumer.subscribe(Subscription::topics(["t"])).unwrap();
    (fake, gc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_answered_late_are_waited_for_not_replaced_by_the_reset_policy() {
    let (fake, mut gc) = late_offsets_setup("late").await;
    // UNSTABLE_OFFSET_COMMIT (a transaction holding offsets is open) for longer than one
    // request timeout: the member must keep asking, not start from auto.offset.reset.
    fake.fail_next_n(
        FakeApi::OffsetFetch,
        krust_wire::ErrorCode::UNSTABLE_OFFSET_COMMIT.0,
        25,
    );
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 20 && Instant::now() < deadline {
        if let Some(recs) = gc.poll_timeout(Duration::from_millis(100)).await.unwrap() {
            for r in recs {
                assert!(
                    r.offset >= 10,
                    "partition {} read from offset {}: the committed offset 10 was ignored",
                    r.partition,
                    r.offset
                );
                seen.insert((r.partition, r.offset));
            }
        }
    }
    assert_eq!(seen.len(), 20, "offsets 10..20 of both partitions read");
    assert!(
        fake.requests_of(FakeApi::OffsetFetch).len() > 25,
        "the failed OffsetFetch answers were retried"
    );
    gc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retriable_committed_offsets_error_fails_the_consumer_instead_of_resetting() {
    let (fake, mut gc) = late_offsets_setup("denied").await;
    // GROUP_AUTHORIZATION_FAILED on every OffsetFetch.
    fake.fail_next_n(
        FakeApi::OffsetFetch,
        krust_wire::ErrorCode::GROUP_AUTHORIZATION_FAILED.0,
        1_000,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        assert!(Instant::now() < deadline, "the consumer never failed");
        match gc.poll_timeout(Duration::from_millis(100)).await {
            Ok(Some(recs)) => panic!(
                "read {} records without knowing the committed offsets",
                recs.len()
            ),
            Ok(None) => continue,
            Err(e) => break e,
        }
    };
    let msg = err.to_string();
    assert!(msg.contains("committed offsets"), "{msg}");
}

/// Polls `gc` until `n` records arrived (or 20 s passed); returns (partition, offset) pairs.
async fn poll_n(gc: &mut krust_client::group::GroupConsumer, n: usize) -> BTreeSet<(i32, i64)> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < n && Instant::now() < deadline {
        if let Some(recs) = gc.poll_timeout(Duration::from_millis(100)).await.unwrap() {
            seen.extend(recs.iter().map(|r| (r.partition, r.offset)));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_to_committed_reads_again_from_the_committed_offsets() {
    let (fake, mut gc) = late_offsets_setup("rewind").await;
    let all: BTreeSet<(i32, i64)> = (0..2).flat_map(|p| (10..20).map(move |o| (p, o))).collect();
    assert_eq!(
        poll_n(&mut gc, 20).await,
        all,
        "offsets 10..20 of both partitions"
    );
    // Everything read; nothing new committed: a rewind reads it all again.
    gc.rewind_to_committed().await.unwrap();
    assert_eq!(
        poll_n(&mut gc, 20).await,
        all,
        "read again after the rewind"
    );
    // The group's offsets move (as a transaction committing them would): the rewind follows.
    fake.commit("rewind", "t", 0, 15);
    fake.commit("rewind", "t", 1, 20);
    gc.rewind_to_committed().await.unwrap();
    let again = poll_n(&mut gc, 5).await;
    let expected: BTreeSet<(i32, i64)> = (15..20).map(|o| (0, o)).collect();
    assert_eq!(again, expected);
    gc.close().await;
}
