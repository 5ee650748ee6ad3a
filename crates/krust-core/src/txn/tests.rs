//! Unit tests of the transaction machine on a virtual clock.
//!
//! Scenario table (T3 / T4 of the reliability matrix; librdkafka's 0105-transactions_mock has
//! 31 scenarios):
//!
//! | #  | API / area            | Scenario                                                        | Class      |
//! |----|-----------------------|-----------------------------------------------------------------|------------|
//! | 1  | init                  | FindCoordinator + InitProducerId, happy path                    | -          |
//! | 2  | FindCoordinator       | COORDINATOR_NOT_AVAILABLE ×3 then success                       | retriable  |
//! | 3  | FindCoordinator       | TRANSACTIONAL_ID_AUTHORIZATION_FAILED                           | fatal      |
//! | 4  | FindCoordinator(group)| GROUP_AUTHORIZATION_FAILED during send_offsets                  | abortable  |
//! | 5  | InitProducerId        | CONCURRENT_TRANSACTIONS: short fixed backoff                    | retriable  |
//! | 6  | InitProducerId        | NOT_COORDINATOR: coordinator looked up again                    | retriable  |
//! | 7  | InitProducerId        | COORDINATOR_LOAD_IN_PROGRESS ×3                                 | retriable  |
//! | 8  | InitProducerId        | PRODUCER_FENCED: fatal, sticky, is_fenced                       | fatal      |
//! | 9  | InitProducerId        | INVALID_TRANSACTION_TIMEOUT                                     | fatal      |
//! | 10 | InitProducerId        | TRANSACTIONAL_ID_AUTHORIZATION_FAILED, is_auth                  | fatal      |
//! | 11 | AddPartitionsToTxn    | batched: partitions recorded while one is in flight go together | -          |
//! | 12 | AddPartitionsToTxn    | not sendable before the add is answered                         | -          |
//! | 13 | AddPartitionsToTxn    | CONCURRENT_TRANSACTIONS                                         | retriable  |
//! | 14 | AddPartitionsToTxn    | NOT_COORDINATOR                                                 | retriable  |
//! | 15 | AddPartitionsToTxn    | TOPIC_AUTHORIZATION_FAILED + OPERATION_NOT_ATTEMPTED            | abortable  |
//! | 16 | AddPartitionsToTxn    | PRODUCER_FENCED                                                 | fatal      |
//! | 17 | AddPartitionsToTxn    | INVALID_TXN_STATE                                               | fatal      |
//! | 18 | AddPartitionsToTxn    | UNKNOWN_PRODUCER_ID: abort then epoch bump (KIP-360)            | abortable  |
//! | 19 | AddPartitionsToTxn    | UNKNOWN_TOPIC_OR_PARTITION ×3, only failed partitions resent    | retriable  |
//! | 20 | AddOffsets+TxnOffset  | happy path, KIP-447 group metadata in the request               | -          |
//! | 21 | AddOffsetsToTxn       | GROUP_AUTHORIZATION_FAILED                                      | abortable  |
//! | 22 | AddOffsetsToTxn       | CONCURRENT_TRANSACTIONS                                         | retriable  |
//! | 23 | TxnOffsetCommit       | ILLEGAL_GENERATION (zombie consumer)                            | abortable  |
//! | 24 | TxnOffsetCommit       | UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID                           | abortable  |
//! | 25 | TxnOffsetCommit       | NOT_COORDINATOR: group coordinator looked up again              | retriable  |
//! | 26 | TxnOffsetCommit       | partial COORDINATOR_LOAD_IN_PROGRESS: only failed offsets resent| retriable  |
//! | 27 | TxnOffsetCommit       | PRODUCER_FENCED                                                 | fatal      |
//! | 28 | EndTxn                | commit waits for incomplete batches (flush first)               | -          |
//! | 29 | EndTxn                | CONCURRENT_TRANSACTIONS                                         | retriable  |
//! | 30 | EndTxn                | NOT_COORDINATOR: retried on the new coordinator                 | retriable  |
//! | 31 | EndTxn                | PRODUCER_FENCED                                                 | fatal      |
//! | 32 | EndTxn                | INVALID_TXN_STATE                                               | fatal      |
//! | 33 | EndTxn                | timeout: outcome unknown, abort refused, commit retried         | (T4)       |
//! | 34 | EndTxn                | disconnect: abort refused, re-init allowed, late answer ignored | (T4)       |
//! | 35 | EndTxn(abort)         | UNKNOWN_PRODUCER_ID: epoch bump instead                         | abortable  |
//! | 36 | Produce               | timeout: abortable, no retry in place, epoch bumped (KAFKA-18579)| abortable |
//! | 37 | Produce               | PRODUCER_FENCED                                                 | fatal      |
//! | 38 | Produce               | TOPIC_AUTHORIZATION_FAILED: abortable without bump              | abortable  |
//! | 39 | commit                | empty transaction: no EndTxn                                    | -          |
//! | 40 | KIP-890               | implicit add, direct TxnOffsetCommit, epoch from EndTxn v5      | -          |
//! | 41 | KIP-890               | produce timeout: abort's EndTxn bumps, no InitProducerId        | abortable  |
//! | 42 | KIP-890               | negotiate: v2 only with feature ≥ 2, EndTxn v5 and Produce v12  | -          |
//! | 43 | config                | transaction.timeout.ms vs delivery.timeout.ms                   | -          |
//! | 44 | usage                 | begin twice, commit/abort outside a transaction                 | usage      |
//! | 45 | responses             | an answer to a forgotten request id is ignored                  | -          |
//! | 46 | abort                 | abort while AddPartitionsToTxn in flight waits for it           | -          |
//! | 47 | classify              | every fenced/auth code is fatal for every API                   | fatal      |
//! | 48 | abort                 | after AddOffsetsToTxn only: EndTxn(abort) still sent            | -          |
//! | 49 | abort                 | abort while AddOffsetsToTxn in flight waits for it              | -          |
//! | 50 | Produce               | a late failure report outside a transaction: ignored unless fatal| -          |

use std::time::{Duration, Instant};

use krust_wire::ErrorCode as E;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

struct H {
    m: TransactionManager,
    now: Instant,
}

impl H {
    fn new(protocol: TxnProtocol) -> H {
        let mut cfg = TxnConfig::new("tx");
        cfg.retry_backoff = BackoffPolicy::new(10 * MS, 100 * MS);
        let mut m = TransactionManager::new(cfg, 7);
        m.set_protocol(protocol);
        H {
            m,
            now: Instant::now(),
        }
    }

    /// Initialised, coordinator 1, pid 1000 epoch 0.
    fn ready(protocol: TxnProtocol) -> H {
        let mut h = H::new(protocol);
        h.m.init(h.now).unwrap();
        let r = h.req();
        assert!(matches!(
            r.body,
            TxnRequestBody::FindCoordinator {
                kind: CoordinatorKind::Transaction,
                ..
            }
        ));
        h.resp(&r, find(1));
        let r = h.req();
        assert!(matches!(
            r.body,
            TxnRequestBody::InitProducerId {
                producer_id: -1,
                ..
            }
        ));
        h.resp(&r, init_ok(1000, 0));
        assert_eq!(
            h.ev(),
            Some(TxnEvent::Initialized {
                producer_id: 1000,
                producer_epoch: 0
            })
        );
        assert_eq!(h.m.state(), TxnState::Ready);
        h
    }

    /// Ready, in a transaction with partitions 0 and 1 added.
    fn in_txn(protocol: TxnProtocol) -> H {
        let mut h = H::ready(protocol);
        h.m.begin().unwrap();
        if protocol == TxnProtocol::Classic {
            assert!(!h.m.record_partition(&tp(0)).unwrap());
            assert!(!h.m.record_partition(&tp(1)).unwrap());
            let r = h.req();
            h.resp(&r, adds(&[(0, E::NONE), (1, E::NONE)]));
            assert_eq!(h.ev(), Some(TxnEvent::PartitionsAdded(vec![tp(0), tp(1)])));
        } else {
            assert!(h.m.record_partition(&tp(0)).unwrap());
            assert!(h.m.record_partition(&tp(1)).unwrap());
        }
        h
    }

    /// The next request, advancing the clock through any backoff (at most 10 s).
    fn req(&mut self) -> TxnRequest {
        for _ in 0..10_000 {
            if let Some(r) = self.m.poll_request(self.now, false) {
                return r;
            }
            self.now += MS;
        }
        panic!("no request: {}", self.m.debug_summary());
    }

    fn req_now(&mut self) -> Option<TxnRequest> {
        self.m.poll_request(self.now, false)
    }

    fn resp(&mut self, r: &TxnRequest, resp: TxnResponse) {
        self.m.handle_response(r.id, resp, self.now);
    }

    fn ev(&mut self) -> Option<TxnEvent> {
        self.m.poll_event()
    }

    fn failed(&mut self) -> TxnError {
        loop {
            match self.ev() {
                Some(TxnEvent::Failed(e)) => return e,
                Some(_) => continue,
                None => panic!("no failure: {}", self.m.debug_summary()),
            }
        }
    }
}

fn find(node: i32) -> TxnResponse {
    TxnResponse::FindCoordinator {
        error: E::NONE,
        node_id: node,
    }
}
fn find_err(e: E) -> TxnResponse {
    TxnResponse::FindCoordinator {
        error: e,
        node_id: -1,
    }
}
fn init_ok(pid: i64, epoch: i16) -> TxnResponse {
    TxnResponse::InitProducerId {
        error: E::NONE,
        producer_id: pid,
        producer_epoch: epoch,
    }
}
fn init_err(e: E) -> TxnResponse {
    TxnResponse::InitProducerId {
        error: e,
        producer_id: -1,
        producer_epoch: -1,
    }
}
fn adds(r: &[(i32, E)]) -> TxnResponse {
    TxnResponse::AddPartitionsToTxn {
        results: r.iter().map(|(p, e)| (tp(*p), *e)).collect(),
    }
}
fn add_offsets(e: E) -> TxnResponse {
    TxnResponse::AddOffsetsToTxn { error: e }
}
fn offsets_resp(r: &[(i32, E)]) -> TxnResponse {
    TxnResponse::TxnOffsetCommit {
        results: r.iter().map(|(p, e)| (tp(*p), *e)).collect(),
    }
}
fn end(e: E) -> TxnResponse {
    TxnResponse::EndTxn {
        error: e,
        producer_id: -1,
        producer_epoch: -1,
    }
}
fn group() -> GroupMetadata {
    GroupMetadata {
        group_id: "g".into(),
        generation_id: 7,
        member_id: "m-1".into(),
        instance_id: Some("i-1".into()),
    }
}
fn offs(ps: &[i32]) -> Vec<TxnOffset> {
    ps.iter()
        .map(|p| TxnOffset {
            partition: tp(*p),
            offset: 42,
            leader_epoch: Some(3),
            metadata: None,
        })
        .collect()
}
fn api(r: &TxnRequest) -> TxnApi {
    r.body.api()
}

// 1
#[test]
fn init_happy_path() {
    let h = H::ready(TxnProtocol::Classic);
    assert_eq!(h.m.producer_id_and_epoch(), (1000, 0));
}

// 2
#[test]
fn find_coordinator_not_available_is_retried() {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    for _ in 0..3 {
        let r = h.req();
        assert_eq!(api(&r), TxnApi::FindCoordinator);
        h.resp(&r, find_err(E::COORDINATOR_NOT_AVAILABLE));
        assert!(h.req_now().is_none(), "backoff before the retry");
    }
    let r = h.req();
    h.resp(&r, find(2));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::TxnCoordinator(2));
    assert_eq!(h.ev(), None);
}

// 3
#[test]
fn find_coordinator_auth_failure_is_fatal() {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    let r = h.req();
    h.resp(&r, find_err(E::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    let e = h.failed();
    assert!(e.is_fatal() && e.is_auth());
    assert_eq!(h.m.state(), TxnState::FatalError);
    assert!(h.req_now().is_none());
}

// 4
#[test]
fn group_coordinator_auth_failure_is_abortable() {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::FindCoordinator {
            kind: CoordinatorKind::Group,
            ..
        }
    ));
    h.resp(&r, find_err(E::GROUP_AUTHORIZATION_FAILED));
    assert!(h.failed().is_abortable());
    assert_eq!(h.m.state(), TxnState::AbortableError);
    h.m.abort(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: false, .. }
    ));
}

// 5
#[test]
fn init_concurrent_transactions_short_backoff() {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    let r = h.req();
    h.resp(&r, find(1));
    let r = h.req();
    h.resp(&r, init_err(E::CONCURRENT_TRANSACTIONS));
    let t0 = h.now;
    let r = h.req();
    assert_eq!(api(&r), TxnApi::InitProducerId);
    assert_eq!(
        h.now - t0,
        20 * MS,
        "CONCURRENT_TRANSACTIONS waits exactly the short backoff"
    );
    h.resp(&r, init_ok(5, 0));
    assert!(matches!(h.ev(), Some(TxnEvent::Initialized { .. })));
}

// 6
#[test]
fn init_not_coordinator_rediscovers() {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    let r = h.req();
    h.resp(&r, find(1));
    let r = h.req();
    h.resp(&r, init_err(E::NOT_COORDINATOR));
    let r = h.req();
    assert_eq!(api(&r), TxnApi::FindCoordinator);
    h.resp(&r, find(3));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::TxnCoordinator(3));
}

// 7
#[test]
fn init_load_in_progress_burst() {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    let r = h.req();
    h.resp(&r, find(1));
    for _ in 0..3 {
        let r = h.req();
        assert_eq!(api(&r), TxnApi::InitProducerId);
        h.resp(&r, init_err(E::COORDINATOR_LOAD_IN_PROGRESS));
    }
    let r = h.req();
    h.resp(&r, init_ok(9, 1));
    assert_eq!(h.m.state(), TxnState::Ready);
}

fn init_fails_with(code: E) -> TxnError {
    let mut h = H::new(TxnProtocol::Classic);
    h.m.init(h.now).unwrap();
    let r = h.req();
    h.resp(&r, find(1));
    let r = h.req();
    h.resp(&r, init_err(code));
    let e = h.failed();
    assert_eq!(h.m.state(), TxnState::FatalError);
    // Sticky: every call returns the same error.
    assert_eq!(h.m.begin().unwrap_err(), e);
    assert_eq!(h.m.abort(h.now).unwrap_err(), e);
    e
}

// 8
#[test]
fn init_fenced_is_fatal_and_sticky() {
    let e = init_fails_with(E::PRODUCER_FENCED);
    assert!(e.is_fenced());
}

// 9
#[test]
fn init_invalid_transaction_timeout_is_fatal() {
    let e = init_fails_with(E::INVALID_TRANSACTION_TIMEOUT);
    assert!(e.is_fatal() && !e.is_fenced());
}

// 10
#[test]
fn init_auth_failure_is_fatal() {
    assert!(init_fails_with(E::TRANSACTIONAL_ID_AUTHORIZATION_FAILED).is_auth());
}

// 11
#[test]
fn add_partitions_are_batched() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    let r1 = h.req();
    // Recorded while the first add is in flight: all in the next request.
    for p in 1..4 {
        assert!(!h.m.record_partition(&tp(p)).unwrap());
    }
    assert!(
        !h.m.record_partition(&tp(0)).unwrap(),
        "in flight, not yet added"
    );
    assert!(h.req_now().is_none(), "one request at a time");
    h.resp(&r1, adds(&[(0, E::NONE)]));
    let r2 = h.req();
    match &r2.body {
        TxnRequestBody::AddPartitionsToTxn { partitions, .. } => {
            assert_eq!(partitions, &vec![tp(1), tp(2), tp(3)])
        }
        b => panic!("{b:?}"),
    }
}

// 12
#[test]
fn partition_not_sendable_before_add_answer() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    assert!(!h.m.record_partition(&tp(0)).unwrap());
    assert!(!h.m.is_partition_added(&tp(0)));
    let r = h.req();
    assert!(!h.m.is_partition_added(&tp(0)));
    h.resp(&r, adds(&[(0, E::NONE)]));
    assert!(h.m.is_partition_added(&tp(0)));
    assert!(h.m.record_partition(&tp(0)).unwrap());
}

fn add_then(code: E) -> (H, TxnRequest) {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    let r = h.req();
    h.resp(&r, adds(&[(0, code)]));
    let r2 = h.req();
    (h, r2)
}

// 13
#[test]
fn add_partitions_concurrent_transactions() {
    let (_, r) = add_then(E::CONCURRENT_TRANSACTIONS);
    assert_eq!(api(&r), TxnApi::AddPartitionsToTxn);
}

// 14
#[test]
fn add_partitions_not_coordinator() {
    let (mut h, r) = add_then(E::NOT_COORDINATOR);
    assert_eq!(api(&r), TxnApi::FindCoordinator);
    h.resp(&r, find(4));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::TxnCoordinator(4));
    assert_eq!(api(&r), TxnApi::AddPartitionsToTxn);
}

// 15
#[test]
fn add_partitions_topic_auth_is_abortable() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    h.m.record_partition(&tp(1)).unwrap();
    let r = h.req();
    h.resp(
        &r,
        adds(&[
            (0, E::TOPIC_AUTHORIZATION_FAILED),
            (1, E::OPERATION_NOT_ATTEMPTED),
        ]),
    );
    let e = h.failed();
    assert!(e.is_abortable() && e.is_auth());
    assert!(h.m.record_partition(&tp(2)).unwrap_err().is_abortable());
    assert!(h.m.commit(h.now).unwrap_err().is_abortable());
    h.m.abort(h.now).unwrap();
    // Nothing was added: no EndTxn needed.
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
    assert_eq!(h.m.state(), TxnState::Ready);
}

fn add_fails_fatal(code: E) {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    let r = h.req();
    h.resp(&r, adds(&[(0, code)]));
    assert!(h.failed().is_fatal());
    assert_eq!(h.m.state(), TxnState::FatalError);
}

// 16
#[test]
fn add_partitions_fenced_is_fatal() {
    add_fails_fatal(E::PRODUCER_FENCED);
}

// 17
#[test]
fn add_partitions_invalid_txn_state_is_fatal() {
    add_fails_fatal(E::INVALID_TXN_STATE);
}

// 18
#[test]
fn add_partitions_unknown_producer_id_bumps_after_abort() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    let r = h.req();
    h.resp(&r, adds(&[(0, E::UNKNOWN_PRODUCER_ID)]));
    assert!(h.failed().is_abortable());
    h.m.abort(h.now).unwrap();
    let r = h.req();
    match r.body {
        TxnRequestBody::InitProducerId {
            producer_id,
            producer_epoch,
            ..
        } => {
            assert_eq!(
                (producer_id, producer_epoch),
                (1000, 0),
                "KIP-360 bump of the current epoch"
            )
        }
        b => panic!("{b:?}"),
    }
    h.resp(&r, init_ok(1000, 1));
    assert_eq!(
        h.ev(),
        Some(TxnEvent::EpochBumped {
            producer_id: 1000,
            producer_epoch: 1
        })
    );
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
    assert_eq!(h.m.state(), TxnState::Ready);
}

// 19
#[test]
fn add_partitions_unknown_topic_burst_resends_only_failed() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    h.m.record_partition(&tp(1)).unwrap();
    let r = h.req();
    h.resp(
        &r,
        adds(&[(0, E::NONE), (1, E::UNKNOWN_TOPIC_OR_PARTITION)]),
    );
    assert_eq!(h.ev(), Some(TxnEvent::PartitionsAdded(vec![tp(0)])));
    for _ in 0..2 {
        let r = h.req();
        match &r.body {
            TxnRequestBody::AddPartitionsToTxn { partitions, .. } => {
                assert_eq!(partitions, &vec![tp(1)])
            }
            b => panic!("{b:?}"),
        }
        h.resp(&r, adds(&[(1, E::UNKNOWN_TOPIC_OR_PARTITION)]));
    }
    let r = h.req();
    h.resp(&r, adds(&[(1, E::NONE)]));
    assert_eq!(h.ev(), Some(TxnEvent::PartitionsAdded(vec![tp(1)])));
}

// 20
#[test]
fn send_offsets_happy_path_with_group_metadata() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.send_offsets(offs(&[0, 1]), group()).unwrap();
    let r = h.req();
    assert!(matches!(&r.body, TxnRequestBody::AddOffsetsToTxn { group_id, .. } if group_id == "g"));
    h.resp(&r, add_offsets(E::NONE));
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::FindCoordinator {
            kind: CoordinatorKind::Group,
            ..
        }
    ));
    h.resp(&r, find(5));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::GroupCoordinator(5));
    match &r.body {
        TxnRequestBody::TxnOffsetCommit {
            group: g,
            offsets,
            producer_id,
            ..
        } => {
            assert_eq!(g, &group());
            assert_eq!(offsets.len(), 2);
            assert_eq!(*producer_id, 1000);
        }
        b => panic!("{b:?}"),
    }
    h.resp(&r, offsets_resp(&[(0, E::NONE), (1, E::NONE)]));
    assert_eq!(h.ev(), Some(TxnEvent::OffsetsCommitted));
    h.m.commit(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: true, .. }
    ));
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
}

// 21
#[test]
fn add_offsets_group_auth_is_abortable() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, add_offsets(E::GROUP_AUTHORIZATION_FAILED));
    assert!(h.failed().is_abortable());
}

// 22
#[test]
fn add_offsets_concurrent_transactions() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, add_offsets(E::CONCURRENT_TRANSACTIONS));
    assert!(h.req_now().is_none());
    let r = h.req();
    assert_eq!(api(&r), TxnApi::AddOffsetsToTxn);
}

fn offset_commit_then(code: E) -> (H, TxnRequest) {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, find(5));
    let r = h.req();
    assert_eq!(api(&r), TxnApi::TxnOffsetCommit);
    h.resp(&r, offsets_resp(&[(0, code)]));
    let r2 = h.m.poll_request(h.now + Duration::from_secs(5), false);
    (h, r2.unwrap_or_else(|| panic!("no request")))
}

// 23
#[test]
fn txn_offset_commit_illegal_generation_is_abortable() {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, find(5));
    let r = h.req();
    h.resp(&r, offsets_resp(&[(0, E::ILLEGAL_GENERATION)]));
    assert!(h.failed().is_abortable());
    assert_eq!(h.m.state(), TxnState::AbortableError);
}

// 24
#[test]
fn txn_offset_commit_unknown_member_and_fenced_instance_are_abortable() {
    for code in [E::UNKNOWN_MEMBER_ID, E::FENCED_INSTANCE_ID] {
        let mut h = H::in_txn(TxnProtocol::V2);
        h.m.send_offsets(offs(&[0]), group()).unwrap();
        let r = h.req();
        h.resp(&r, find(5));
        let r = h.req();
        h.resp(&r, offsets_resp(&[(0, code)]));
        assert!(h.failed().is_abortable(), "{code}");
    }
}

// 25
#[test]
fn txn_offset_commit_not_coordinator_finds_group_coordinator() {
    let (mut h, r) = offset_commit_then(E::NOT_COORDINATOR);
    assert!(matches!(
        r.body,
        TxnRequestBody::FindCoordinator {
            kind: CoordinatorKind::Group,
            ..
        }
    ));
    h.now += Duration::from_secs(5);
    h.resp(&r, find(6));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::GroupCoordinator(6));
}

// 26
#[test]
fn txn_offset_commit_partial_retry() {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.send_offsets(offs(&[0, 1]), group()).unwrap();
    let r = h.req();
    h.resp(&r, find(5));
    let r = h.req();
    h.resp(
        &r,
        offsets_resp(&[(0, E::NONE), (1, E::COORDINATOR_LOAD_IN_PROGRESS)]),
    );
    let r = h.req();
    match &r.body {
        TxnRequestBody::TxnOffsetCommit { offsets, .. } => {
            assert_eq!(offsets.len(), 1);
            assert_eq!(offsets[0].partition, tp(1));
        }
        b => panic!("{b:?}"),
    }
    h.resp(&r, offsets_resp(&[(1, E::NONE)]));
    assert_eq!(h.ev(), Some(TxnEvent::OffsetsCommitted));
}

// 27
#[test]
fn txn_offset_commit_fenced_is_fatal() {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, find(5));
    let r = h.req();
    h.resp(&r, offsets_resp(&[(0, E::PRODUCER_FENCED)]));
    assert!(h.failed().is_fenced());
}

// 28
#[test]
fn end_txn_waits_for_incomplete_batches() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.commit(h.now).unwrap();
    assert!(h.m.poll_request(h.now, true).is_none());
    let r = h.m.poll_request(h.now, false).unwrap();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: true, .. }
    ));
}

fn end_then(code: E) -> (H, Option<TxnRequest>) {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.commit(h.now).unwrap();
    let r = h.req();
    h.resp(&r, end(code));
    let r2 = h.m.poll_request(h.now + Duration::from_secs(5), false);
    (h, r2)
}

// 29
#[test]
fn end_txn_concurrent_transactions() {
    let (_, r) = end_then(E::CONCURRENT_TRANSACTIONS);
    assert!(matches!(
        r.unwrap().body,
        TxnRequestBody::EndTxn { commit: true, .. }
    ));
}

// 30
#[test]
fn end_txn_not_coordinator() {
    let (mut h, r) = end_then(E::NOT_COORDINATOR);
    let r = r.unwrap();
    assert_eq!(api(&r), TxnApi::FindCoordinator);
    h.now += Duration::from_secs(5);
    h.resp(&r, find(2));
    let r = h.req();
    assert_eq!(r.target, TxnTarget::TxnCoordinator(2));
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
}

// 31
#[test]
fn end_txn_fenced_is_fatal() {
    let (mut h, r) = end_then(E::PRODUCER_FENCED);
    assert!(r.is_none());
    assert!(h.failed().is_fenced());
}

// 32
#[test]
fn end_txn_invalid_txn_state_is_fatal() {
    let (mut h, _) = end_then(E::INVALID_TXN_STATE);
    assert!(h.failed().is_fatal());
}

// 33
#[test]
fn commit_timeout_refuses_abort_and_retries_commit() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.commit(h.now).unwrap();
    let r = h.req();
    h.m.handle_failure(r.id, TransportFailure::Timeout, h.now);
    assert_eq!(h.ev(), Some(TxnEvent::CommitOutcomeUnknown));
    assert!(h.m.is_commit_outcome_unknown());
    let e = h.m.abort(h.now).unwrap_err();
    assert_eq!(e.class, TxnErrorClass::Usage);
    assert_eq!(
        h.m.state(),
        TxnState::Committing,
        "a refused abort changes nothing"
    );
    h.m.commit(h.now).unwrap(); // retrying commit is legal
    let r = h.req();
    assert_eq!(api(&r), TxnApi::FindCoordinator);
    h.resp(&r, find(1));
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: true, .. }
    ));
    assert!(
        h.m.abort(h.now).is_err(),
        "still refused while the retry is in flight"
    );
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
    assert!(!h.m.is_commit_outcome_unknown());
}

// 34
#[test]
fn commit_disconnect_allows_reinit_and_ignores_late_answer() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.commit(h.now).unwrap();
    let r = h.req();
    h.m.handle_failure(r.id, TransportFailure::Disconnected, h.now);
    assert!(h.m.abort(h.now).is_err());
    // The retry is in flight when the application gives up and re-initialises.
    let f = h.req();
    h.m.init(h.now).unwrap();
    assert_eq!(h.m.state(), TxnState::Initializing);
    h.resp(&f, find(1)); // the answer of a forgotten request: ignored
    let r = h.req();
    assert_eq!(api(&r), TxnApi::FindCoordinator);
    h.resp(&r, find(1));
    let r = h.req();
    assert!(
        matches!(
            r.body,
            TxnRequestBody::InitProducerId {
                producer_id: -1,
                producer_epoch: -1,
                ..
            }
        ),
        "a plain init: fences every older epoch"
    );
    h.resp(&r, init_ok(1000, 1));
    assert!(matches!(h.ev(), Some(TxnEvent::CommitOutcomeUnknown)));
    assert_eq!(
        h.ev(),
        Some(TxnEvent::Initialized {
            producer_id: 1000,
            producer_epoch: 1
        })
    );
    assert_eq!(h.m.state(), TxnState::Ready);
}

// 35
#[test]
fn end_txn_abort_unknown_producer_id_bumps() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.abort(h.now).unwrap();
    let r = h.req();
    h.resp(&r, end(E::UNKNOWN_PRODUCER_ID));
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::InitProducerId {
            producer_id: 1000,
            ..
        }
    ));
    h.resp(&r, init_ok(1000, 1));
    assert!(matches!(h.ev(), Some(TxnEvent::EpochBumped { .. })));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
}

// 36
#[test]
fn produce_timeout_is_abortable_and_bumps_epoch() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Timeout);
    let e = h.failed();
    assert_eq!(e.class, TxnErrorClass::Abortable { bump_epoch: true });
    assert!(h.m.commit(h.now).is_err());
    assert!(
        h.m.record_partition(&tp(0)).is_err(),
        "nothing re-sent in place"
    );
    h.m.abort(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn {
            commit: false,
            producer_epoch: 0,
            ..
        }
    ));
    h.resp(&r, end(E::NONE));
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::InitProducerId {
            producer_id: 1000,
            producer_epoch: 0,
            ..
        }
    ));
    h.resp(&r, init_ok(1000, 1));
    assert_eq!(
        h.ev(),
        Some(TxnEvent::EpochBumped {
            producer_id: 1000,
            producer_epoch: 1
        })
    );
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
    h.m.begin().unwrap();
    assert_eq!(h.m.producer_id_and_epoch(), (1000, 1));
}

// 37
#[test]
fn produce_fenced_is_fatal() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Error(E::PRODUCER_FENCED));
    assert!(h.failed().is_fenced());
    assert!(h.m.abort(h.now).unwrap_err().is_fenced());
}

// 38
#[test]
fn produce_topic_auth_is_abortable_without_bump() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Error(E::TOPIC_AUTHORIZATION_FAILED));
    assert_eq!(
        h.failed().class,
        TxnErrorClass::Abortable { bump_epoch: false }
    );
    h.m.abort(h.now).unwrap();
    let r = h.req();
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
    assert_eq!(h.m.producer_id_and_epoch(), (1000, 0));
}

// 38b
#[test]
fn a_sequence_gap_makes_the_abort_bump() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Error(E::TOPIC_AUTHORIZATION_FAILED));
    let _ = h.failed();
    // The refused batch had a sequence number: the driver asks for a bump.
    h.m.require_epoch_bump();
    h.m.abort(h.now).unwrap();
    let r = h.req();
    h.resp(&r, end(E::NONE));
    let r = h.req();
    assert!(
        matches!(
            r.body,
            TxnRequestBody::InitProducerId {
                producer_id: 1000,
                producer_epoch: 0,
                ..
            }
        ),
        "{r:?}"
    );
    // Outside a transaction it does nothing.
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.require_epoch_bump();
    h.m.begin().unwrap();
    h.m.commit(h.now).unwrap();
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
}

// 39
#[test]
fn empty_transaction_sends_no_end_txn() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.commit(h.now).unwrap();
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
    assert!(h.req_now().is_none());
}

// 40
#[test]
fn kip890_implicit_add_and_epoch_bump() {
    let mut h = H::in_txn(TxnProtocol::V2);
    assert_eq!(
        h.ev(),
        None,
        "no PartitionsAdded: Produce v12 adds implicitly"
    );
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    assert!(
        matches!(
            r.body,
            TxnRequestBody::FindCoordinator {
                kind: CoordinatorKind::Group,
                ..
            }
        ),
        "no AddOffsetsToTxn"
    );
    h.resp(&r, find(5));
    let r = h.req();
    h.resp(&r, offsets_resp(&[(0, E::NONE)]));
    assert_eq!(h.ev(), Some(TxnEvent::OffsetsCommitted));
    h.m.commit(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn {
            producer_epoch: 0,
            ..
        }
    ));
    h.resp(
        &r,
        TxnResponse::EndTxn {
            error: E::NONE,
            producer_id: 1000,
            producer_epoch: 1,
        },
    );
    assert_eq!(
        h.ev(),
        Some(TxnEvent::EpochBumped {
            producer_id: 1000,
            producer_epoch: 1
        })
    );
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    h.m.commit(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn {
            producer_epoch: 1,
            ..
        }
    ));
    // Epoch exhaustion: the coordinator hands out a new producer id.
    h.resp(
        &r,
        TxnResponse::EndTxn {
            error: E::NONE,
            producer_id: 2000,
            producer_epoch: 0,
        },
    );
    assert_eq!(h.m.producer_id_and_epoch(), (2000, 0));
}

// 41
#[test]
fn kip890_produce_timeout_abort_bumps_without_init() {
    let mut h = H::in_txn(TxnProtocol::V2);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Timeout);
    h.failed();
    h.m.abort(h.now).unwrap();
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: false, .. }
    ));
    h.resp(
        &r,
        TxnResponse::EndTxn {
            error: E::NONE,
            producer_id: 1000,
            producer_epoch: 1,
        },
    );
    assert!(matches!(
        h.ev(),
        Some(TxnEvent::EpochBumped {
            producer_epoch: 1,
            ..
        })
    ));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
    assert!(h.req_now().is_none(), "no InitProducerId");
}

// 42
#[test]
fn kip890_negotiation() {
    use TxnProtocol::*;
    assert_eq!(TxnProtocol::negotiate(Some(2), Some(5), Some(12)), V2);
    assert_eq!(TxnProtocol::negotiate(Some(1), Some(5), Some(12)), Classic);
    assert_eq!(TxnProtocol::negotiate(None, Some(5), Some(12)), Classic);
    assert_eq!(TxnProtocol::negotiate(Some(2), Some(4), Some(12)), Classic);
    assert_eq!(TxnProtocol::negotiate(Some(2), Some(5), Some(11)), Classic);
}

// 43
#[test]
fn timeout_validation() {
    let s = Duration::from_secs;
    assert!(validate_timeouts(s(60), s(60)).is_ok());
    assert!(validate_timeouts(s(60), s(30)).is_ok());
    let e = validate_timeouts(s(60), s(120)).unwrap_err();
    assert!(
        e.to_string().contains("delivery.timeout.ms = 120000"),
        "{e}"
    );
    assert!(validate_timeouts(Duration::ZERO, Duration::ZERO).is_err());
    assert!(validate_timeouts(s(10_000_000), s(1)).is_err());
}

// 44
#[test]
fn usage_errors_change_nothing() {
    let mut h = H::ready(TxnProtocol::Classic);
    assert_eq!(h.m.commit(h.now).unwrap_err().class, TxnErrorClass::Usage);
    assert_eq!(h.m.abort(h.now).unwrap_err().class, TxnErrorClass::Usage);
    assert!(h.m.record_partition(&tp(0)).is_err());
    h.m.begin().unwrap();
    assert_eq!(h.m.begin().unwrap_err().class, TxnErrorClass::Usage);
    assert_eq!(h.m.init(h.now).unwrap_err().class, TxnErrorClass::Usage);
    assert_eq!(h.m.state(), TxnState::InTransaction);
}

// 45
#[test]
fn stale_response_ignored() {
    let mut h = H::in_txn(TxnProtocol::Classic);
    h.m.commit(h.now).unwrap();
    let r = h.req();
    h.m.handle_response(r.id + 100, end(E::PRODUCER_FENCED), h.now);
    assert_eq!(h.m.state(), TxnState::Committing);
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: true }));
    h.resp(&r, end(E::PRODUCER_FENCED)); // duplicate: ignored
    assert_eq!(h.m.state(), TxnState::Ready);
}

// 46
#[test]
fn abort_waits_for_inflight_add() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.record_partition(&tp(0)).unwrap();
    let r = h.req();
    h.m.abort(h.now).unwrap();
    assert!(h.req_now().is_none());
    h.resp(&r, adds(&[(0, E::NONE)]));
    assert_eq!(h.ev(), None, "no PartitionsAdded while aborting");
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: false, .. }
    ));
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
}

// 47
#[test]
fn fenced_and_auth_codes_are_fatal_everywhere() {
    let apis = [
        TxnApi::FindCoordinator,
        TxnApi::InitProducerId,
        TxnApi::AddPartitionsToTxn,
        TxnApi::AddOffsetsToTxn,
        TxnApi::TxnOffsetCommit,
        TxnApi::EndTxn,
        TxnApi::Produce,
    ];
    for api in apis {
        for code in [
            E::PRODUCER_FENCED,
            E::INVALID_PRODUCER_EPOCH,
            E::TRANSACTION_COORDINATOR_FENCED,
            E::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            E::CLUSTER_AUTHORIZATION_FAILED,
        ] {
            assert_eq!(classify(api, code), TxnErrorClass::Fatal, "{api:?} {code}");
        }
        assert_eq!(
            classify(api, E::CONCURRENT_TRANSACTIONS),
            TxnErrorClass::Retriable(RetryKind::ConcurrentTransactions)
        );
    }
}

// 48
#[test]
fn abort_after_add_offsets_only_sends_end_txn() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.resp(&r, add_offsets(E::NONE));
    let r = h.req();
    h.resp(&r, find(5));
    let r = h.req();
    h.resp(&r, offsets_resp(&[(0, E::ILLEGAL_GENERATION)]));
    assert!(h.failed().is_abortable());
    h.m.abort(h.now).unwrap();
    let r = h.req();
    assert!(
        matches!(r.body, TxnRequestBody::EndTxn { commit: false, .. }),
        "the coordinator holds the offsets: it must hear the abort"
    );
}

// 49
#[test]
fn abort_while_add_offsets_in_flight_waits_for_it() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.begin().unwrap();
    h.m.send_offsets(offs(&[0]), group()).unwrap();
    let r = h.req();
    h.m.abort(h.now).unwrap();
    assert_eq!(h.ev(), None);
    h.resp(&r, add_offsets(E::NONE));
    let r = h.req();
    assert!(matches!(
        r.body,
        TxnRequestBody::EndTxn { commit: false, .. }
    ));
    h.resp(&r, end(E::NONE));
    assert_eq!(h.ev(), Some(TxnEvent::Completed { committed: false }));
}

// 50
#[test]
fn late_produce_failure_outside_a_transaction_is_ignored_unless_fatal() {
    let mut h = H::ready(TxnProtocol::Classic);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Timeout);
    assert_eq!(h.ev(), None);
    assert_eq!(h.m.state(), TxnState::Ready);
    h.m.handle_produce_failure(&tp(0), ProduceFailure::Error(E::PRODUCER_FENCED));
    assert!(h.failed().is_fenced());
}
