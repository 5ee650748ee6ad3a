//! Unit tests of the membership machine on a virtual clock, and the seeded group simulation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use krust_wire::group_protocol::{decode_subscription, encode_assignment};
use krust_wire::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AT;
use krust_wire::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use krust_wire::kafka_protocol::messages::{
    ConsumerProtocolAssignment, JoinGroupResponse, SyncGroupResponse,
};
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::ErrorCode;

use super::requests::{HeartbeatReq, JoinReq, SyncReq};
use super::*;
use crate::fetch::TopicPartition;

const MS: Duration = Duration::from_millis(1);

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn cfg(assignor: &str) -> GroupConfig {
    let mut c = GroupConfig::new("g");
    c.session_timeout = MS * 6000;
    c.rebalance_timeout = MS * 6000;
    c.max_poll_interval = Some(MS * 6000);
    c.heartbeat_interval = MS * 500;
    c.assignors = vec![builtin(assignor).unwrap()];
    c
}

fn topics(t: &[&str]) -> BTreeSet<String> {
    t.iter().map(|s| s.to_string()).collect()
}

fn assignment(tps: &[(&str, i32)]) -> bytes::Bytes {
    let mut by: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by.entry(t).or_default().push(*p);
    }
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by
        .into_iter()
        .map(|(t, ps)| {
            let mut x = AT::default();
            x.topic = sb(t).into();
            x.partitions = ps;
            x
        })
        .collect();
    encode_assignment(&a, 0).unwrap()
}

/// Drives a member through FindCoordinator to its first JoinGroup request.
fn to_join(m: &mut Membership, now: Instant) -> JoinReq {
    match m.poll_request(now) {
        Some(GroupRequest::FindCoordinator { key }) => assert_eq!(key, "g"),
        other => panic!("expected FindCoordinator, got {other:?}"),
    }
    m.handle_find_coordinator(Ok(1), now);
    match m.poll_request(now) {
        Some(GroupRequest::Join(j)) => j,
        other => panic!("expected Join, got {other:?}"),
    }
}

fn join_ok(member: &str, leader: &str, generation: i32, protocol: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.member_id = sb(member);
    r.leader = sb(leader);
    r.generation_id = generation;
    r.protocol_name = Some(sb(protocol));
    r
}

fn sync_ok(tps: &[(&str, i32)]) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.assignment = assignment(tps);
    r
}

fn expect_sync(m: &mut Membership, now: Instant) -> SyncReq {
    match m.poll_request(now) {
        Some(GroupRequest::Sync(s)) => s,
        other => panic!("expected Sync, got {other:?}"),
    }
}

fn expect_heartbeat(m: &mut Membership, now: Instant) -> HeartbeatReq {
    match m.poll_request(now) {
        Some(GroupRequest::Heartbeat(h)) => h,
        other => panic!("expected Heartbeat, got {other:?}"),
    }
}

/// A follower joined in generation 1 with `tps`.
fn stable_follower(assignor: &str, tps: &[(&str, i32)], t0: Instant) -> Membership {
    let mut m = Membership::new(cfg(assignor), t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    m.handle_join(&j, join_ok("me", "other", 1, assignor), t0);
    let s = expect_sync(&mut m, t0);
    assert!(s.assignments.is_empty());
    m.handle_sync(&s, sync_ok(tps), t0);
    assert!(matches!(m.poll_event(), Some(GroupEvent::Assigned { .. })));
    assert!(m.is_stable());
    m
}

#[test]
fn member_id_required_round_then_join() {
    let t0 = Instant::now();
    let mut m = Membership::new(cfg("range"), t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    assert_eq!(j.member_id, "");
    let (_, sub) = decode_subscription(j.protocols[0].1.clone()).unwrap();
    assert_eq!(sub.topics, vec![sb("t")]);
    let mut r = JoinGroupResponse::default();
    r.error_code = ErrorCode::MEMBER_ID_REQUIRED.0;
    r.member_id = sb("m-1");
    m.handle_join(&j, r, t0);
    let Some(GroupRequest::Join(j2)) = m.poll_request(t0) else {
        panic!()
    };
    assert_eq!(j2.member_id, "m-1");
}

#[test]
fn leader_assigns_after_metadata_and_heartbeats_on_interval() {
    let t0 = Instant::now();
    let mut m = Membership::new(cfg("range"), t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    let mut r = join_ok("a", "a", 1, "range");
    for (id, meta) in [
        ("a", j.protocols[0].1.clone()),
        ("b", j.protocols[0].1.clone()),
    ] {
        let mut x = JoinGroupResponseMember::default();
        x.member_id = sb(id);
        x.metadata = meta;
        r.members.push(x);
    }
    m.handle_join(&j, r, t0);
    let Some(GroupRequest::Metadata { topics: t }) = m.poll_request(t0) else {
        panic!()
    };
    assert_eq!(t, vec!["t".to_string()]);
    m.handle_metadata(&BTreeMap::from([("t".to_string(), 4)]), t0);
    let s = expect_sync(&mut m, t0);
    assert_eq!(s.assignments.len(), 2);
    m.handle_sync(&s, sync_ok(&[("t", 0), ("t", 1)]), t0);
    match m.poll_event() {
        Some(GroupEvent::Assigned {
            partitions,
            metadata,
        }) => {
            assert_eq!(partitions.len(), 2);
            assert_eq!(metadata.generation_id, 1);
            assert_eq!(metadata.member_id, "a");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        m.poll_request(t0).is_none(),
        "no heartbeat before the interval"
    );
    assert_eq!(m.next_timeout(t0), Some(t0 + MS * 500));
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    assert_eq!(h.generation, 1);
    m.handle_heartbeat(&h, ErrorCode::NONE, t0 + MS * 510);
    assert!(m.poll_request(t0 + MS * 600).is_none());
}

#[test]
fn eager_rebalance_revokes_everything_before_joining() {
    let t0 = Instant::now();
    let mut m = stable_follower("range", &[("t", 0), ("t", 1)], t0);
    let t1 = t0 + MS * 500;
    let h = expect_heartbeat(&mut m, t1);
    m.handle_heartbeat(&h, ErrorCode::REBALANCE_IN_PROGRESS, t1);
    assert!(m.poll_request(t1).is_none(), "waits for the revocation");
    match m.poll_event() {
        Some(GroupEvent::Revoke { partitions }) => assert_eq!(partitions.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        m.owned().len(),
        2,
        "still owned until the application is done"
    );
    m.handle_revoke_done(t1 + MS * 10);
    assert!(m.owned().is_empty());
    let Some(GroupRequest::Join(j)) = m.poll_request(t1 + MS * 10) else {
        panic!()
    };
    assert_eq!(j.member_id, "me");
    let (_, sub) = decode_subscription(j.protocols[0].1.clone()).unwrap();
    assert!(
        sub.owned_partitions.is_empty(),
        "eager members report nothing"
    );
}

#[test]
fn revocation_wait_is_bounded() {
    let t0 = Instant::now();
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::REBALANCE_IN_PROGRESS, t0 + MS * 500);
    assert!(m.poll_request(t0 + MS * 500).is_none());
    let deadline = t0 + MS * 500 + m.config().revoke_timeout;
    assert!(m.next_timeout(t0 + MS * 500).unwrap() <= deadline);
    m.handle_app_poll(deadline);
    m.handle_timeout(deadline);
    assert!(m.owned().is_empty());
    assert!(matches!(
        m.poll_request(deadline),
        Some(GroupRequest::Join(_))
    ));
}

#[test]
fn cooperative_keeps_partitions_while_joining_and_revokes_only_what_moves() {
    let t0 = Instant::now();
    let mut m = stable_follower("cooperative-sticky", &[("t", 0), ("t", 1), ("t", 2)], t0);
    let t1 = t0 + MS * 500;
    let h = expect_heartbeat(&mut m, t1);
    m.handle_heartbeat(&h, ErrorCode::REBALANCE_IN_PROGRESS, t1);
    let Some(GroupRequest::Join(j)) = m.poll_request(t1) else {
        panic!()
    };
    assert!(m.poll_event().is_none(), "nothing revoked before joining");
    let (_, sub) = decode_subscription(j.protocols[0].1.clone()).unwrap();
    assert_eq!(sub.owned_partitions[0].partitions, vec![0, 1, 2]);
    assert_eq!(sub.generation_id, 1);
    m.handle_join(&j, join_ok("me", "other", 2, "cooperative-sticky"), t1);
    let s = expect_sync(&mut m, t1);
    m.handle_sync(&s, sync_ok(&[("t", 0), ("t", 1)]), t1);
    match m.poll_event() {
        Some(GroupEvent::Assigned { partitions, .. }) => assert!(partitions.is_empty()),
        other => panic!("{other:?}"),
    }
    match m.poll_event() {
        Some(GroupEvent::Revoke { partitions }) => {
            assert_eq!(partitions, vec![TopicPartition::new("t", 2)])
        }
        other => panic!("{other:?}"),
    }
    // Heartbeats go on during the revocation; kept partitions never stop.
    let h = expect_heartbeat(&mut m, t1 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::NONE, t1 + MS * 500);
    m.handle_revoke_done(t1 + MS * 600);
    assert_eq!(m.owned().len(), 2);
    // The follow-up rebalance.
    let Some(GroupRequest::Join(j)) = m.poll_request(t1 + MS * 600) else {
        panic!()
    };
    let (_, sub) = decode_subscription(j.protocols[0].1.clone()).unwrap();
    assert_eq!(sub.owned_partitions[0].partitions, vec![0, 1]);
}

#[test]
fn error_mapping_on_heartbeat() {
    let t0 = Instant::now();
    // UNKNOWN_MEMBER_ID: partitions lost, member id reset, rejoin.
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::UNKNOWN_MEMBER_ID, t0 + MS * 500);
    assert!(matches!(m.poll_event(), Some(GroupEvent::Lost { .. })));
    let Some(GroupRequest::Join(j)) = m.poll_request(t0 + MS * 500) else {
        panic!()
    };
    assert_eq!(j.member_id, "");
    // ILLEGAL_GENERATION: lost, member id kept.
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::ILLEGAL_GENERATION, t0 + MS * 500);
    assert!(matches!(m.poll_event(), Some(GroupEvent::Lost { .. })));
    let Some(GroupRequest::Join(j)) = m.poll_request(t0 + MS * 500) else {
        panic!()
    };
    assert_eq!(j.member_id, "me");
    // NOT_COORDINATOR: find the coordinator again, keep the partitions.
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::NOT_COORDINATOR, t0 + MS * 500);
    assert_eq!(m.owned().len(), 1);
    let later = t0 + MS * 1000;
    assert!(matches!(
        m.poll_request(later),
        Some(GroupRequest::FindCoordinator { .. })
    ));
    m.handle_find_coordinator(Ok(2), later);
    let h = expect_heartbeat(&mut m, later);
    assert_eq!(h.coordinator, 2);
    // FENCED_INSTANCE_ID: fatal.
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let h = expect_heartbeat(&mut m, t0 + MS * 500);
    m.handle_heartbeat(&h, ErrorCode::FENCED_INSTANCE_ID, t0 + MS * 500);
    assert!(matches!(m.poll_event(), Some(GroupEvent::Lost { .. })));
    assert!(matches!(m.poll_event(), Some(GroupEvent::Fatal(_))));
    assert!(m.is_done());
    assert!(m.poll_request(t0 + MS * 1000).is_none());
}

/// Failed coordinator lookups back off exponentially (`retry.backoff.ms` doubling to
/// `retry.backoff.max.ms`, ±20% jitter), nothing is sent while waiting, and a success starts
/// the next failure from the initial backoff again.
#[test]
fn retry_backoff_grows_with_jitter_and_resets() {
    let mut c = cfg("range");
    c.retry_backoff = MS * 100;
    c.retry_backoff_max = MS * 1000;
    let mut m = Membership::new(c, Instant::now());
    m.seed_jitter(7);
    m.subscribe(topics(&["a"]), Instant::now());
    let mut now = Instant::now();
    let find = |m: &mut Membership, now: Instant| match m.poll_request(now) {
        Some(GroupRequest::FindCoordinator { key }) => assert_eq!(key, "g"),
        other => panic!("expected FindCoordinator, got {other:?}"),
    };
    let mut delays = Vec::new();
    for base in [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0] {
        find(&mut m, now);
        m.handle_find_coordinator(Err(ErrorCode::COORDINATOR_NOT_AVAILABLE), now);
        let wake = m.next_timeout(now).expect("a backoff deadline");
        let d = (wake - now).as_secs_f64() * 1000.0;
        assert!(
            d >= base * 0.8 - 1e-6 && d < base * 1.2 + 1e-6,
            "{d} ms for {base}"
        );
        assert!(
            m.poll_request(wake - MS).is_none(),
            "sent during the backoff"
        );
        delays.push(d);
        now = wake;
    }
    // Jitter: the capped delays are not all exactly the maximum.
    assert!(delays[4..].iter().any(|d| (d - 1000.0).abs() > 1e-3));
    // Success resets: the next failure waits about the initial backoff.
    find(&mut m, now);
    m.handle_find_coordinator(Ok(1), now);
    m.handle_coordinator_moved(now);
    let d = (m.next_timeout(now).unwrap() - now).as_secs_f64() * 1000.0;
    assert!((80.0..120.0).contains(&d), "{d} ms after a success");
}

#[test]
fn lease_expires_without_successful_heartbeats() {
    let t0 = Instant::now();
    let mut m = stable_follower("range", &[("t", 0)], t0);
    // Heartbeats keep failing at the transport level.
    let mut now = t0 + MS * 500;
    while now < t0 + MS * 5900 {
        if let Some(r) = m.poll_request(now) {
            m.handle_request_failed(&r, RequestFailure::Transport, now);
        }
        m.handle_timeout(now);
        now += MS * 100;
    }
    assert_eq!(m.owned().len(), 1, "still within the lease");
    m.handle_timeout(t0 + MS * 6000);
    assert!(m.owned().is_empty());
    assert!(matches!(m.poll_event(), Some(GroupEvent::Lost { .. })));
}

#[test]
fn max_poll_interval_leaves_and_next_poll_rejoins() {
    let t0 = Instant::now();
    let mut m = stable_follower("range", &[("t", 0)], t0);
    let mut now = t0;
    // Heartbeats succeed but the application never polls.
    while now < t0 + MS * 6000 {
        now += MS * 500;
        if let Some(GroupRequest::Heartbeat(h)) = m.poll_request(now) {
            m.handle_heartbeat(&h, ErrorCode::NONE, now);
        }
        m.handle_timeout(now);
    }
    assert!(matches!(m.poll_event(), Some(GroupEvent::Lost { .. })));
    assert!(matches!(m.poll_request(now), Some(GroupRequest::Leave(l)) if l.member_id == "me"));
    assert!(m.poll_request(now).is_none());
    m.handle_app_poll(now);
    assert!(matches!(m.poll_request(now), Some(GroupRequest::Join(j)) if j.member_id.is_empty()));
}

#[test]
fn close_revokes_then_leaves_dynamic_but_not_static() {
    let t0 = Instant::now();
    let mut m = stable_follower("range", &[("t", 0)], t0);
    m.close(t0);
    assert!(matches!(m.poll_event(), Some(GroupEvent::Revoke { .. })));
    assert!(m.poll_request(t0).is_none());
    m.handle_revoke_done(t0);
    assert!(matches!(m.poll_request(t0), Some(GroupRequest::Leave(_))));
    assert!(m.is_done());

    let mut c = cfg("range");
    c.instance_id = Some("i1".into());
    let mut m = Membership::new(c, t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    assert_eq!(j.instance_id.as_deref(), Some("i1"));
    m.handle_join(&j, join_ok("me", "x", 1, "range"), t0);
    let s = expect_sync(&mut m, t0);
    m.handle_sync(&s, sync_ok(&[("t", 0)]), t0);
    m.close(t0);
    m.handle_revoke_done(t0);
    assert!(
        m.poll_request(t0).is_none(),
        "static members do not send LeaveGroup"
    );
    assert!(m.is_done());
}

#[test]
fn sync_errors_rejoin() {
    let t0 = Instant::now();
    for code in [
        ErrorCode::REBALANCE_IN_PROGRESS,
        ErrorCode::ILLEGAL_GENERATION,
        ErrorCode::UNKNOWN_MEMBER_ID,
        ErrorCode::NOT_COORDINATOR,
    ] {
        let mut m = Membership::new(cfg("range"), t0);
        m.subscribe(topics(&["t"]), t0);
        let j = to_join(&mut m, t0);
        m.handle_join(&j, join_ok("me", "x", 1, "range"), t0);
        let s = expect_sync(&mut m, t0);
        let mut r = SyncGroupResponse::default();
        r.error_code = code.0;
        m.handle_sync(&s, r, t0);
        let later = t0 + MS * 2000;
        let mut saw_join = false;
        for _ in 0..3 {
            match m.poll_request(later) {
                Some(GroupRequest::FindCoordinator { .. }) => {
                    m.handle_find_coordinator(Ok(1), later)
                }
                Some(GroupRequest::Join(_)) => {
                    saw_join = true;
                    break;
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(saw_join, "{code}");
    }
}

#[test]
fn leader_rejoins_when_partition_counts_change() {
    let t0 = Instant::now();
    let mut m = Membership::new(cfg("range"), t0);
    m.handle_metadata(&BTreeMap::from([("t".to_string(), 2)]), t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    let mut r = join_ok("a", "a", 1, "range");
    let mut x = JoinGroupResponseMember::default();
    x.member_id = sb("a");
    x.metadata = j.protocols[0].1.clone();
    r.members.push(x);
    m.handle_join(&j, r, t0);
    let s = expect_sync(&mut m, t0);
    m.handle_sync(&s, sync_ok(&[("t", 0), ("t", 1)]), t0);
    assert!(m.is_stable());
    m.handle_metadata(&BTreeMap::from([("t".to_string(), 2)]), t0);
    assert!(m.is_stable());
    m.handle_metadata(&BTreeMap::from([("t".to_string(), 3)]), t0);
    assert!(!m.is_stable());
}

#[test]
fn custom_assignor_is_used_and_checked() {
    #[derive(Debug)]
    struct AllToFirst;
    impl Assignor for AllToFirst {
        fn name(&self) -> &str {
            "all-to-first"
        }
        fn assign(
            &self,
            partitions: &BTreeMap<String, i32>,
            members: &[MemberSubscription],
        ) -> Assignment {
            let mut out = Assignment::new();
            let first = members.iter().map(|m| m.member_id.clone()).min().unwrap();
            for (t, n) in partitions {
                for p in 0..*n {
                    out.entry(first.clone())
                        .or_default()
                        .push(TopicPartition::new(t.as_str(), p));
                }
            }
            out
        }
    }
    let t0 = Instant::now();
    let mut c = cfg("range");
    c.assignors = vec![Arc::new(AllToFirst)];
    let mut m = Membership::new(c, t0);
    m.handle_metadata(&BTreeMap::from([("t".to_string(), 3)]), t0);
    m.subscribe(topics(&["t"]), t0);
    let j = to_join(&mut m, t0);
    assert_eq!(j.protocols[0].0, "all-to-first");
    let mut r = join_ok("a", "a", 1, "all-to-first");
    let mut x = JoinGroupResponseMember::default();
    x.member_id = sb("a");
    x.metadata = j.protocols[0].1.clone();
    r.members.push(x);
    m.handle_join(&j, r, t0);
    let s = expect_sync(&mut m, t0);
    let a = &s.assignments[0];
    let (_, asg) = krust_wire::group_protocol::decode_assignment(a.1.clone()).unwrap();
    assert_eq!(asg.assigned_partitions[0].partitions, vec![0, 1, 2]);
}

#[test]
fn simulation_5000_seeds() {
    let seeds: u64 = std::env::var("KRUST_GROUP_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let start = std::time::Instant::now();
    let mut events = 0;
    let first: u64 = std::env::var("KRUST_GROUP_SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..first + seeds {
        let t = std::time::Instant::now();
        events += super::sim::run(seed);
        if std::env::var("KRUST_GROUP_SIM_TRACE").is_ok() {
            eprintln!("seed {seed}: {:?} ({events} events so far)", t.elapsed());
        }
    }
    eprintln!(
        "group simulation: {seeds} seeds, {events} events in {:?}",
        start.elapsed()
    );
}
