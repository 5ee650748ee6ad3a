//! The idempotent producer's state (KIP-98, KIP-360), sans-IO.
//!
//! Two halves:
//!
//! - **Per partition**, the [`Accumulator`](crate::accumulator::Accumulator) keeps what is in
//!   flight, in order, with each batch's sequence numbers fixed at its first send and kept across
//!   retries, whether a batch's outcome is unknown (*possibly persisted*), and whether the
//!   partition needs a sequence reset. [`classify_produce`] turns a Produce partition error into
//!   what the accumulator must do with it.
//! - **Per producer**, [`IdempotenceState`] owns the producer identity: when to ask for one
//!   (InitProducerId), the backoff between attempts, which partitions wait for a fresh identity
//!   after a reset, and the fatal state that stops the producer.
//!
//! # The rules, and the bug each one prevents
//!
//! - DUPLICATE_SEQUENCE_NUMBER is success: the broker already has the batch (a retry after a
//!   lost acknowledgement). Failing it would report a written record as lost.
//! - OUT_OF_ORDER_SEQUENCE_NUMBER behind an earlier unacknowledged batch is a consequence of
//!   the earlier batch's failure: wait for every in-flight batch and retry in order. At the head
//!   of the line it means the broker lost the sequence state: reset.
//! - UNKNOWN_PRODUCER_ID / INVALID_PRODUCER_EPOCH: reset the partition only once nothing is in
//!   flight for it (after draining); a reset with batches in flight would let an old-identity
//!   batch land after new-identity ones (reorder) or be re-sent under the new one (duplicate).
//! - A reset bumps the partition's producer epoch (KIP-360; an idempotent producer's bump needs
//!   no request: the broker accepts a newer epoch starting at sequence 0). The new epoch also
//!   fences the old one: a late request of the old epoch (a retry held by a slow broker) is
//!   refused instead of being written after newer records. At `i16::MAX` the partition gets a
//!   fresh producer id from InitProducerId ([`IdempotenceState::request_fresh`]). Sequence
//!   numbers are never reused under one identity, so a later record can never be taken for a
//!   duplicate of an earlier one and silently dropped (franz-go #1217, librdkafka 1.9.0).
//! - A batch whose outcome is unknown (timeout, connection lost in flight,
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND) is retried with the same identity and sequence, never
//!   failed before `delivery.timeout.ms`; at a reset it is reported possibly persisted rather than
//!   re-sent under the new identity (which would duplicate it if the first attempt was written).
//! - Fatal errors (fencing, authorization, a broker without idempotence) stop the producer:
//!   every pending record fails with the reason, and nothing waits forever.

use std::time::Instant;

use krust_wire::ErrorCode;

use crate::accumulator::ProducerIdentity;
use crate::backoff::{BackoffPolicy, SmallRng};

/// A Produce error that concerns the partition's sequence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SequenceFault {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    OutOfOrder,
    /// UNKNOWN_PRODUCER_ID (59): the broker forgot the producer (retention, lost state).
    UnknownProducer,
    /// INVALID_PRODUCER_EPOCH (47): an older epoch than the broker knows.
    InvalidEpoch,
}

/// What an idempotent producer does with a Produce partition error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProduceVerdict {
    /// Written (error 0, or DUPLICATE_SEQUENCE_NUMBER: written by an earlier attempt).
    Persisted {
        /// The broker answered DUPLICATE_SEQUENCE_NUMBER (the offset is then unknown: -1).
        duplicate: bool,
    },
    /// A sequence fault: [`Accumulator::handle_sequence_error`](crate::accumulator::Accumulator::handle_sequence_error).
    Sequence(SequenceFault),
    /// The producer cannot go on (fencing, authorization): stop it.
    Fatal,
    /// Any other error: the ordinary retry classification applies.
    Other,
}

/// Classifies a Produce partition error for an idempotent producer.
pub fn classify_produce(code: ErrorCode) -> ProduceVerdict {
    match code {
        ErrorCode::NONE => ProduceVerdict::Persisted { duplicate: false },
        ErrorCode::DUPLICATE_SEQUENCE_NUMBER => ProduceVerdict::Persisted { duplicate: true },
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER => {
            ProduceVerdict::Sequence(SequenceFault::OutOfOrder)
        }
        ErrorCode::UNKNOWN_PRODUCER_ID => ProduceVerdict::Sequence(SequenceFault::UnknownProducer),
        ErrorCode::INVALID_PRODUCER_EPOCH => ProduceVerdict::Sequence(SequenceFault::InvalidEpoch),
        // Another producer took the id over (or the broker says so for a stale epoch, as tansu
        // does); nothing this producer sends can succeed any more.
        ErrorCode::PRODUCER_FENCED
        | ErrorCode::CLUSTER_AUTHORIZATION_FAILED
        | ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        | ErrorCode::INVALID_PRODUCER_ID_MAPPING => ProduceVerdict::Fatal,
        _ => ProduceVerdict::Other,
    }
}

/// The identity a partition takes at a sequence reset (KIP-360): the same producer id with the
/// next epoch. `None` when there is none (no identity, or the epoch is at `i16::MAX`): then a
/// fresh id from InitProducerId is needed ([`IdempotenceState::request_fresh`]).
pub fn bumped(id: ProducerIdentity) -> Option<ProducerIdentity> {
    (id.is_some() && id.epoch >= 0 && id.epoch < i16::MAX).then(|| ProducerIdentity {
        producer_id: id.producer_id,
        epoch: id.epoch + 1,
    })
}

/// Where the producer identity stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityState {
    /// None yet; an InitProducerId request is due at the given time.
    Wanted {
        /// When the next attempt may start.
        not_before: Instant,
    },
    /// An InitProducerId request is outstanding.
    Requesting,
    /// The current identity.
    Ready(ProducerIdentity),
    /// The producer cannot go on; the reason.
    Fatal(String),
}

/// The producer-wide half of idempotence: the identity and InitProducerId requests.
///
/// Drive it with [`IdempotenceState::poll_request`] (start an InitProducerId now?),
/// [`IdempotenceState::handle_identity`] / [`IdempotenceState::handle_error`] (its outcome) and
/// [`IdempotenceState::request_fresh`] (a partition needs a new identity after a reset).
#[derive(Debug)]
pub struct IdempotenceState {
    state: IdentityState,
    /// Partitions (or the producer's first identity) wait for the next answer.
    fresh_wanted: bool,
    attempts: u32,
    backoff: BackoffPolicy,
    rng: SmallRng,
    first_sequence: i32,
}

/// What the driver does with an InitProducerId failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitFailure {
    /// Worth retrying after a backoff (transport, coordinator loading, ...).
    Retriable,
    /// Not: the producer becomes fatal.
    Fatal,
}

impl IdempotenceState {
    /// A producer without an identity yet, wanting one at once. `first_sequence` is the sequence
    /// number of each partition's first batch under a new identity (Kafka: 0; other values only
    /// for wrap-around tests against a broker configured the same way).
    pub fn new(backoff: BackoffPolicy, seed: u64, first_sequence: i32, now: Instant) -> Self {
        IdempotenceState {
            state: IdentityState::Wanted { not_before: now },
            fresh_wanted: true,
            attempts: 0,
            backoff,
            rng: SmallRng::new(seed),
            first_sequence,
        }
    }

    /// The state.
    pub fn state(&self) -> &IdentityState {
        &self.state
    }

    /// The current identity, if any.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        match self.state {
            IdentityState::Ready(id) => Some(id),
            _ => None,
        }
    }

    /// The first sequence number under a new identity.
    pub fn first_sequence(&self) -> i32 {
        self.first_sequence
    }

    /// The fatal reason, if the producer is stopped.
    pub fn fatal(&self) -> Option<&str> {
        match &self.state {
            IdentityState::Fatal(r) => Some(r),
            _ => None,
        }
    }

    /// A partition was drained for a reset and needs a fresh identity: ask for one (unless a
    /// request is already out; its answer serves).
    pub fn request_fresh(&mut self, now: Instant) {
        if matches!(self.state, IdentityState::Fatal(_)) {
            return;
        }
        self.fresh_wanted = true;
        if let IdentityState::Ready(_) = self.state {
            self.state = IdentityState::Wanted { not_before: now };
        }
    }

    /// Whether an InitProducerId request should start now; if so the state becomes
    /// `Requesting`. Otherwise, when to ask again (`None`: nothing to do).
    pub fn poll_request(&mut self, now: Instant) -> Result<(), Option<Instant>> {
        match self.state {
            IdentityState::Wanted { not_before } if self.fresh_wanted => {
                if now >= not_before {
                    self.state = IdentityState::Requesting;
                    self.fresh_wanted = false;
                    self.attempts += 1;
                    Ok(())
                } else {
                    Err(Some(not_before))
                }
            }
            _ => Err(None),
        }
    }

    /// InitProducerId answered an identity at `now`. Returns it, with the first sequence, for
    /// the partitions waiting on it. A reset asked for while the request was out gets another
    /// request (its partition may have been drained after this one left; fresh is always safe).
    pub fn handle_identity(
        &mut self,
        producer_id: i64,
        epoch: i16,
        now: Instant,
    ) -> (ProducerIdentity, i32) {
        let id = ProducerIdentity { producer_id, epoch };
        if !matches!(self.state, IdentityState::Fatal(_)) {
            self.attempts = 0;
            self.state = if self.fresh_wanted {
                IdentityState::Wanted { not_before: now }
            } else {
                IdentityState::Ready(id)
            };
        }
        (id, self.first_sequence)
    }

    /// InitProducerId failed at `now`.
    pub fn handle_error(&mut self, failure: InitFailure, reason: String, now: Instant) {
        if matches!(self.state, IdentityState::Fatal(_)) {
            return;
        }
        match failure {
            InitFailure::Fatal => self.state = IdentityState::Fatal(reason),
            InitFailure::Retriable => {
                let delay = self
                    .backoff
                    .delay(self.attempts.saturating_sub(1), &mut self.rng);
                self.fresh_wanted = true;
                self.state = IdentityState::Wanted {
                    not_before: now + delay,
                };
            }
        }
    }

    /// Stops the producer for good (for example PRODUCER_FENCED on a Produce).
    pub fn set_fatal(&mut self, reason: String) {
        if !matches!(self.state, IdentityState::Fatal(_)) {
            self.state = IdentityState::Fatal(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::time::Duration;

    use bytes::{BufMut, BytesMut};
    use krust_wire::record::EncodedBatch;

    use crate::accumulator::{
        Accumulator, AccumulatorConfig, BatchId, Failure, FailureOutcome, ProducerBatch,
        TopicPartition,
    };

    fn backoff() -> BackoffPolicy {
        let mut b = BackoffPolicy::new(Duration::from_millis(10), Duration::from_millis(100));
        b.jitter = 0.0;
        b
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify_produce(ErrorCode::DUPLICATE_SEQUENCE_NUMBER),
            ProduceVerdict::Persisted { duplicate: true }
        );
        assert_eq!(
            classify_produce(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER),
            ProduceVerdict::Sequence(SequenceFault::OutOfOrder)
        );
        assert_eq!(
            classify_produce(ErrorCode::UNKNOWN_PRODUCER_ID),
            ProduceVerdict::Sequence(SequenceFault::UnknownProducer)
        );
        assert_eq!(
            classify_produce(ErrorCode::INVALID_PRODUCER_EPOCH),
            ProduceVerdict::Sequence(SequenceFault::InvalidEpoch)
        );
        assert_eq!(
            classify_produce(ErrorCode::PRODUCER_FENCED),
            ProduceVerdict::Fatal
        );
        assert_eq!(
            classify_produce(ErrorCode::NOT_LEADER_OR_FOLLOWER),
            ProduceVerdict::Other
        );
        let id = ProducerIdentity {
            producer_id: 7,
            epoch: 3,
        };
        assert_eq!(bumped(id).unwrap().epoch, 4);
        assert_eq!(
            bumped(ProducerIdentity {
                producer_id: 7,
                epoch: i16::MAX
            }),
            None
        );
        assert_eq!(bumped(ProducerIdentity::NONE), None);
    }

    /// The identity machine on a virtual clock: asks at once, backs off after retriable
    /// failures, serves a fresh identity on request, stops for good on a fatal error.
    #[test]
    fn identity_requests_back_off_and_fatal_sticks() {
        let t0 = Instant::now();
        let mut m = IdempotenceState::new(backoff(), 1, 0, t0);
        assert_eq!(m.poll_request(t0), Ok(()));
        assert_eq!(m.state(), &IdentityState::Requesting);
        assert_eq!(m.poll_request(t0), Err(None), "one request at a time");
        m.handle_error(
            InitFailure::Retriable,
            "COORDINATOR_NOT_AVAILABLE".into(),
            t0,
        );
        let Err(Some(at)) = m.poll_request(t0) else {
            panic!("backoff")
        };
        assert_eq!(at, t0 + Duration::from_millis(10));
        assert_eq!(m.poll_request(at), Ok(()));
        m.handle_error(InitFailure::Retriable, "again".into(), at);
        assert_eq!(
            m.poll_request(at),
            Err(Some(at + Duration::from_millis(20))),
            "the backoff grows"
        );
        let t1 = at + Duration::from_millis(20);
        assert_eq!(m.poll_request(t1), Ok(()));
        let (id, first) = m.handle_identity(42, 0, t1);
        assert_eq!((id.producer_id, id.epoch, first), (42, 0, 0));
        assert_eq!(m.identity(), Some(id));
        assert_eq!(m.poll_request(t1), Err(None));
        // A reset past i16::MAX epochs asks for a fresh id.
        m.request_fresh(t1);
        assert_eq!(m.poll_request(t1), Ok(()));
        // Asked again while the request is out: the answer is followed by another request.
        m.request_fresh(t1);
        m.handle_identity(43, 0, t1);
        assert_eq!(m.poll_request(t1), Ok(()));
        m.handle_identity(44, 0, t1);
        assert_eq!(m.identity().unwrap().producer_id, 44);
        m.set_fatal("PRODUCER_FENCED".into());
        m.request_fresh(t1);
        m.handle_identity(45, 0, t1);
        m.handle_error(InitFailure::Retriable, "x".into(), t1);
        assert_eq!(m.fatal(), Some("PRODUCER_FENCED"));
        assert_eq!(m.poll_request(t1), Err(None));
        let mut m = IdempotenceState::new(backoff(), 1, 0, t0);
        assert_eq!(m.poll_request(t0), Ok(()));
        m.handle_error(
            InitFailure::Fatal,
            "CLUSTER_AUTHORIZATION_FAILED".into(),
            t0,
        );
        assert!(m.fatal().is_some());
    }

    fn idem_acc() -> Accumulator<u32> {
        let cfg = AccumulatorConfig {
            batch_size: 100,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(30),
            max_in_flight_per_partition: 5,
            retries: u32::MAX,
            backoff: backoff(),
            idempotent: true,
        };
        Accumulator::new(cfg, 7)
    }

    const PID: ProducerIdentity = ProducerIdentity {
        producer_id: 9,
        epoch: 0,
    };

    /// OUT_OF_ORDER at the head of the line with four batches behind it: nothing is sent until
    /// all are back, then the partition takes the next epoch, sequences restart at 0 and the
    /// same batches go again, in order.
    #[test]
    fn out_of_order_at_head_drains_then_bumps_the_epoch() {
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        let mut a = idem_acc();
        a.set_leader(&tp, Some(1), 0);
        for r in 0..50 {
            a.append(&tp, r, 10, t0);
        }
        assert!(
            a.drain(1, t0, usize::MAX, enc).is_empty(),
            "no identity yet"
        );
        a.set_default_producer(PID, 0);
        let now = t0 + Duration::from_millis(10);
        let mut sent = Vec::new();
        for _ in 0..5 {
            sent.extend(a.drain(1, now, usize::MAX, enc));
        }
        assert_eq!(sent.len(), 5);
        assert!(a.drain(1, now, usize::MAX, enc).is_empty(), "5 in flight");
        let out = a.handle_sequence_error(&tp, sent[0].id, SequenceFault::OutOfOrder, now);
        assert!(matches!(out, FailureOutcome::Retrying { .. }));
        assert!(
            a.partitions_awaiting_reset().is_empty(),
            "4 still in flight"
        );
        assert!(a.drain(1, now, usize::MAX, enc).is_empty());
        for d in &sent[1..] {
            a.handle_sequence_error(&tp, d.id, SequenceFault::OutOfOrder, now);
        }
        assert_eq!(a.partitions_awaiting_reset(), vec![tp.clone()]);
        let next = bumped(PID).unwrap();
        assert!(a.reset_partition(&tp, next, 0).unwrap().is_empty());
        let later = now + Duration::from_secs(1);
        assert!(!a.poll_ready(later).nodes.is_empty());
        let again = a.drain(1, later, usize::MAX, enc);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, sent[0].id, "the same batch first");
        let (pid, epoch, seq, recs) = decode(&again[0].data);
        assert_eq!((pid, epoch, seq), (9, 1, 0));
        assert_eq!(recs, decode(&sent[0].data).3);
    }

    /// A possibly persisted batch is not re-sent under a new epoch: it is handed back.
    #[test]
    fn reset_hands_back_possibly_persisted_batches() {
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        let mut a = idem_acc();
        a.set_leader(&tp, Some(1), 0);
        a.set_default_producer(PID, 0);
        for r in 0..20 {
            a.append(&tp, r, 10, t0);
        }
        let now = t0 + Duration::from_millis(10);
        let d1 = a.drain(1, now, usize::MAX, enc).remove(0);
        let d2 = a.drain(1, now, usize::MAX, enc).remove(0);
        let unknown = Failure {
            retriable: true,
            outcome_unknown: true,
        };
        a.handle_failure(&tp, d1.id, unknown, now);
        a.handle_sequence_error(&tp, d2.id, SequenceFault::UnknownProducer, now);
        let back = a.reset_partition(&tp, bumped(PID).unwrap(), 0).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].id(), d1.id);
        assert!(back[0].is_possibly_persisted());
        let later = now + Duration::from_secs(1);
        let r = a.drain(1, later, usize::MAX, enc).remove(0);
        assert_eq!(r.id, d2.id);
        assert_eq!(decode(&r.data).2, 0, "re-sequenced from 0 under epoch 1");
    }

    /// Expiry of a batch that already has a sequence resets the partition; a never-sent one
    /// does not.
    #[test]
    fn expiry_of_a_sequenced_batch_resets() {
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        let mut a = idem_acc();
        a.set_leader(&tp, Some(1), 0);
        a.set_default_producer(PID, 0);
        a.append(&tp, 1, 10, t0);
        let d = a
            .drain(1, t0 + Duration::from_millis(5), usize::MAX, enc)
            .remove(0);
        a.handle_failure(
            &tp,
            d.id,
            Failure {
                retriable: true,
                outcome_unknown: false,
            },
            t0,
        );
        a.append(&tp, 2, 10, t0 + Duration::from_secs(20));
        let expired = a.expire(t0 + Duration::from_secs(31));
        assert_eq!(expired.len(), 1);
        assert_eq!(a.partitions_awaiting_reset(), vec![tp.clone()]);
        a.reset_partition(&tp, bumped(PID).unwrap(), 0).unwrap();
        assert!(a.partitions_awaiting_reset().is_empty());
        let r = a
            .drain(1, t0 + Duration::from_secs(32), usize::MAX, enc)
            .remove(0);
        assert_eq!(decode(&r.data), (9, 1, 0, vec![2]));
    }

    // ------------------------------------------------------------------ simulation

    /// A producer's last five batches: (first sequence, last sequence, base offset).
    type Recent = VecDeque<(i32, i32, usize)>;

    /// A model broker partition with Kafka's idempotence checks (5-batch window, epochs).
    #[derive(Default)]
    struct ModelLog {
        records: Vec<u32>,
        /// producer id -> (epoch, recent (first seq, last seq, base offset))
        producers: BTreeMap<i64, (i16, Recent)>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Appended,
        Duplicate,
        Error(ErrorCode),
    }

    fn decode(data: &EncodedBatch) -> (i64, i16, i32, Vec<u32>) {
        let data = &data.to_bytes();
        let pid = i64::from_be_bytes(data[0..8].try_into().unwrap());
        let epoch = i16::from_be_bytes(data[8..10].try_into().unwrap());
        let seq = i32::from_be_bytes(data[10..14].try_into().unwrap());
        let recs = data[14..]
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        (pid, epoch, seq, recs)
    }

    fn enc(b: &ProducerBatch<u32>) -> EncodedBatch {
        let mut v = BytesMut::new();
        v.put_i64(b.producer().producer_id);
        v.put_i16(b.producer().epoch);
        v.put_i32(b.base_sequence());
        for r in b.records() {
            v.put_u32(*r);
        }
        v.freeze().into()
    }

    impl ModelLog {
        fn apply(&mut self, data: &EncodedBatch) -> Answer {
            let (pid, epoch, seq, recs) = decode(data);
            let last = crate::accumulator::increment_sequence(seq, recs.len() as i32 - 1);
            let entry = self.producers.get(&pid);
            let fresh = match entry {
                None if seq != 0 => return Answer::Error(ErrorCode::UNKNOWN_PRODUCER_ID),
                None => true,
                Some((e, _)) if epoch < *e => {
                    return Answer::Error(ErrorCode::INVALID_PRODUCER_EPOCH)
                }
                Some((e, _)) if epoch > *e => {
                    if seq != 0 {
                        return Answer::Error(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
                    }
                    true
                }
                Some((_, recent)) if recent.is_empty() => {
                    if seq != 0 {
                        return Answer::Error(ErrorCode::UNKNOWN_PRODUCER_ID);
                    }
                    true
                }
                Some((_, recent)) => {
                    if recent.iter().any(|(f, l, _)| *f == seq && *l == last) {
                        return Answer::Duplicate;
                    }
                    let newest = recent.back().unwrap();
                    if seq != crate::accumulator::increment_sequence(newest.1, 1) {
                        let oldest = recent.front().unwrap();
                        return Answer::Error(if seq < oldest.0 {
                            ErrorCode::DUPLICATE_SEQUENCE_NUMBER
                        } else {
                            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                        });
                    }
                    false
                }
            };
            let e = self
                .producers
                .entry(pid)
                .or_insert((epoch, VecDeque::new()));
            if fresh {
                *e = (epoch, VecDeque::new());
            }
            e.1.push_back((seq, last, self.records.len()));
            if e.1.len() > 5 {
                e.1.pop_front();
            }
            self.records.extend(recs);
            Answer::Appended
        }

        /// Retention: forget the producer's sequences (its epoch fence is kept).
        fn forget(&mut self) {
            for (_, recent) in self.producers.values_mut() {
                recent.clear();
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Status {
        Persisted,
        NotPersisted,
        PossiblyPersisted,
    }

    struct Req {
        tp: TopicPartition,
        id: BatchId,
        data: EncodedBatch,
        sent: Instant,
    }

    /// What the broker answered, or which error it was told to inject.
    struct Resp {
        tp: TopicPartition,
        id: BatchId,
        answer: Answer,
        sent: Instant,
    }

    /// One seeded run: a producer (accumulator + the reset rule the driver applies) against a
    /// model broker over per-node FIFO connections, with random appends, time, broker
    /// processing, injected errors (retriable, non-retriable, written-but-failed), lost
    /// connections (requests in the socket may still be applied later: zombies), request
    /// timeouts, leader moves, lost producer state, delivery expiry. Checks: every record
    /// completes once; the log has no duplicate and keeps append order per partition; every
    /// `Persisted` record is in the log; no `NotPersisted` record ever gets there.
    fn run(seed: u64) {
        let mut rng = SmallRng::new(seed);
        let parts = 1 + rng.below(3) as i32;
        let nodes = 2;
        let mut cfg = AccumulatorConfig {
            batch_size: 40 + rng.below(60) as usize,
            linger: Duration::from_millis(rng.below(5)),
            delivery_timeout: Duration::from_millis(2_000 + rng.below(4_000)),
            max_in_flight_per_partition: 1 + rng.below(5) as usize,
            retries: u32::MAX,
            backoff: backoff(),
            idempotent: true,
        };
        if rng.below(4) == 0 {
            cfg.retries = rng.below(4) as u32;
        }
        let request_timeout = Duration::from_millis(300 + rng.below(500));
        let mut acc: Accumulator<u32> = Accumulator::new(cfg, seed);
        let t0 = Instant::now();
        let mut now = t0;
        let tp = |p: i32| TopicPartition::new("t", p);
        let mut leader: Vec<i32> = (0..parts).map(|p| p % nodes).collect();
        let mut epoch = 0;
        for p in 0..parts {
            acc.set_leader(&tp(p), Some(leader[p as usize]), 0);
        }
        acc.set_default_producer(
            ProducerIdentity {
                producer_id: 1,
                epoch: 0,
            },
            0,
        );
        let mut logs: Vec<ModelLog> = (0..parts).map(|_| ModelLog::default()).collect();
        let mut to_broker: Vec<VecDeque<Req>> = (0..nodes).map(|_| VecDeque::new()).collect();
        let mut to_client: Vec<VecDeque<Resp>> = (0..nodes).map(|_| VecDeque::new()).collect();
        let mut zombies: Vec<Req> = Vec::new();
        let mut next_rec = 0u32;
        let mut appended: Vec<Vec<u32>> = vec![Vec::new(); parts as usize];
        let mut status: BTreeMap<u32, Status> = BTreeMap::new();
        let complete = |b: ProducerBatch<u32>, st: Status, status: &mut BTreeMap<u32, Status>| {
            let st = if st == Status::NotPersisted && b.is_possibly_persisted() {
                Status::PossiblyPersisted
            } else {
                st
            };
            for r in b.into_records() {
                assert!(
                    status.insert(r, st).is_none(),
                    "seed {seed}: record {r} twice"
                );
            }
        };
        let steps = 300 + rng.below(300);
        let mut step = 0;
        loop {
            step += 1;
            let winding_down = step > steps;
            if winding_down && acc.is_empty() {
                break;
            }
            assert!(step < steps + 20_000, "seed {seed}: stuck");
            // The driver's reset rule: drained partitions take the next epoch.
            for t in acc.partitions_awaiting_reset() {
                let cur = acc.partition(&t).unwrap().producer();
                let next = bumped(cur).expect("epochs last");
                for b in acc.reset_partition(&t, next, 0).expect("drained") {
                    complete(b, Status::PossiblyPersisted, &mut status);
                }
            }
            let action = if winding_down {
                // Let everything finish: no new faults, only time, sends, answers, expiry.
                [3, 4, 5, 7, 12, 19][rng.below(6) as usize]
            } else {
                rng.below(20)
            };
            match action {
                0..=2 => {
                    let p = rng.below(parts as u64) as i32;
                    acc.append(&tp(p), next_rec, 10, now);
                    appended[p as usize].push(next_rec);
                    next_rec += 1;
                }
                3 => now += Duration::from_millis(rng.below(150)),
                4 => {
                    // Drain what is ready onto the connections.
                    for node in acc.poll_ready(now).nodes {
                        for d in acc.drain(node, now, usize::MAX, enc) {
                            to_broker[node as usize].push_back(Req {
                                tp: d.tp,
                                id: d.id,
                                data: d.data,
                                sent: now,
                            });
                        }
                    }
                }
                5 | 6 => {
                    // A broker processes the head of a connection.
                    let n = rng.below(nodes as u64) as usize;
                    if let Some(r) = to_broker[n].pop_front() {
                        let p = r.tp.partition as usize;
                        let answer = if leader[p] != n as i32 {
                            Answer::Error(ErrorCode::NOT_LEADER_OR_FOLLOWER)
                        } else if !winding_down && rng.below(15) == 0 {
                            // Written, then replication failed: the outcome is unknown.
                            logs[p].apply(&r.data);
                            Answer::Error(ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                        } else {
                            logs[p].apply(&r.data)
                        };
                        to_client[n].push_back(Resp {
                            tp: r.tp,
                            id: r.id,
                            answer,
                            sent: r.sent,
                        });
                    }
                }
                7 | 8 => {
                    // The client reads the head response of a connection.
                    let n = rng.below(nodes as u64) as usize;
                    if let Some(r) = to_client[n].pop_front() {
                        let answer = match r.answer {
                            // Injected broker errors on the way back (not written).
                            Answer::Appended | Answer::Duplicate => r.answer,
                            e => e,
                        };
                        handle(&mut acc, &r.tp, r.id, answer, now, &mut |b, st| {
                            complete(b, st, &mut status)
                        });
                    }
                }
                9 => {
                    // A connection dies: requests in its socket may still be applied later;
                    // every in-flight request's outcome is unknown.
                    let n = rng.below(nodes as u64) as usize;
                    disconnect(
                        &mut acc,
                        n,
                        &mut to_broker,
                        &mut to_client,
                        &mut zombies,
                        &mut rng,
                        now,
                        &mut |b, st| complete(b, st, &mut status),
                    );
                }
                10 => {
                    // A zombie request reaches the broker.
                    if !zombies.is_empty() {
                        let i = rng.below(zombies.len() as u64) as usize;
                        let z = zombies.swap_remove(i);
                        let p = z.tp.partition as usize;
                        logs[p].apply(&z.data);
                    }
                }
                11 => {
                    // Leader move.
                    let p = rng.below(parts as u64) as usize;
                    leader[p] = (leader[p] + 1) % nodes;
                    epoch += 1;
                    acc.set_leader(&tp(p as i32), Some(leader[p]), epoch);
                }
                12 => {
                    for b in acc.expire(now) {
                        complete(b, Status::NotPersisted, &mut status);
                    }
                }
                13 => {
                    // An injected retriable or non-retriable error, not written.
                    let n = rng.below(nodes as u64) as usize;
                    if let Some(r) = to_broker[n].pop_front() {
                        let code = match rng.below(4) {
                            0 => ErrorCode::NOT_ENOUGH_REPLICAS,
                            1 => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                            2 => ErrorCode::UNKNOWN_PRODUCER_ID,
                            _ => ErrorCode::MESSAGE_TOO_LARGE,
                        };
                        to_client[n].push_back(Resp {
                            tp: r.tp,
                            id: r.id,
                            answer: Answer::Error(code),
                            sent: r.sent,
                        });
                    }
                }
                14 => {
                    // The broker loses a partition's producer state (retention), only when
                    // nothing of it is anywhere in flight (otherwise even Kafka duplicates).
                    let p = rng.below(parts as u64) as i32;
                    let busy = acc.partition(&tp(p)).is_some_and(|b| b.batch_count() > 0)
                        || zombies.iter().any(|z| z.tp.partition == p)
                        || to_broker.iter().flatten().any(|r| r.tp.partition == p);
                    if !busy {
                        logs[p as usize].forget();
                    }
                }
                _ => {
                    // Request timeouts: the client gives up on the oldest request of a
                    // connection and closes it (invariant 6).
                    let n = rng.below(nodes as u64) as usize;
                    let oldest = to_broker[n]
                        .front()
                        .map(|r| r.sent)
                        .into_iter()
                        .chain(to_client[n].front().map(|r| r.sent))
                        .min();
                    if oldest.is_some_and(|t| now >= t + request_timeout) {
                        disconnect(
                            &mut acc,
                            n,
                            &mut to_broker,
                            &mut to_client,
                            &mut zombies,
                            &mut rng,
                            now,
                            &mut |b, st| complete(b, st, &mut status),
                        );
                    }
                }
            }
        }
        // Zombies that never arrived may still arrive: apply them all now.
        for z in zombies.drain(..) {
            logs[z.tp.partition as usize].apply(&z.data);
        }
        assert_eq!(
            status.len() as u32,
            next_rec,
            "seed {seed}: every record completes"
        );
        for p in 0..parts as usize {
            let log = &logs[p].records;
            let set: BTreeSet<u32> = log.iter().copied().collect();
            assert_eq!(
                set.len(),
                log.len(),
                "seed {seed}: duplicate in partition {p}: {log:?}"
            );
            let pos: BTreeMap<u32, usize> = appended[p]
                .iter()
                .enumerate()
                .map(|(i, r)| (*r, i))
                .collect();
            for w in log.windows(2) {
                assert!(
                    pos[&w[0]] < pos[&w[1]],
                    "seed {seed}: reorder in {p}: {log:?}"
                );
            }
            for r in &appended[p] {
                match status[r] {
                    Status::Persisted => {
                        assert!(set.contains(r), "seed {seed}: acknowledged {r} lost")
                    }
                    Status::NotPersisted => {
                        assert!(!set.contains(r), "seed {seed}: NotPersisted {r} in the log")
                    }
                    Status::PossiblyPersisted => {}
                }
            }
        }
    }

    /// The driver's response handling for one batch.
    fn handle(
        acc: &mut Accumulator<u32>,
        tp: &TopicPartition,
        id: BatchId,
        answer: Answer,
        now: Instant,
        complete: &mut dyn FnMut(ProducerBatch<u32>, Status),
    ) {
        let code = match answer {
            Answer::Appended => ErrorCode::NONE,
            Answer::Duplicate => ErrorCode::DUPLICATE_SEQUENCE_NUMBER,
            Answer::Error(c) => c,
        };
        let outcome = match classify_produce(code) {
            ProduceVerdict::Persisted { .. } => {
                if let Some(b) = acc.handle_success(tp, id) {
                    complete(b, Status::Persisted);
                }
                return;
            }
            ProduceVerdict::Sequence(f) => acc.handle_sequence_error(tp, id, f, now),
            ProduceVerdict::Fatal => unreachable!(),
            ProduceVerdict::Other => {
                let retriable = code != ErrorCode::MESSAGE_TOO_LARGE;
                let unknown = code == ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND;
                acc.handle_failure(
                    tp,
                    id,
                    Failure {
                        retriable,
                        outcome_unknown: unknown,
                    },
                    now,
                )
            }
        };
        if let FailureOutcome::Failed(b) = outcome {
            complete(b, Status::NotPersisted);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn disconnect(
        acc: &mut Accumulator<u32>,
        n: usize,
        to_broker: &mut [VecDeque<Req>],
        to_client: &mut [VecDeque<Resp>],
        zombies: &mut Vec<Req>,
        rng: &mut SmallRng,
        now: Instant,
        complete: &mut dyn FnMut(ProducerBatch<u32>, Status),
    ) {
        let mut lost: Vec<(TopicPartition, BatchId)> = Vec::new();
        for r in to_broker[n].drain(..) {
            lost.push((r.tp.clone(), r.id));
            if rng.below(2) == 0 {
                zombies.push(r);
            }
        }
        for r in to_client[n].drain(..) {
            lost.push((r.tp, r.id));
        }
        // Failures are reported in request order (the connection's order).
        lost.sort_by_key(|(_, id)| *id);
        for (tp, id) in lost {
            let out = acc.handle_failure(
                &tp,
                id,
                Failure {
                    retriable: true,
                    outcome_unknown: true,
                },
                now,
            );
            if let FailureOutcome::Failed(b) = out {
                complete(b, Status::NotPersisted);
            }
        }
    }

    /// ≥10,000 seeds of random interleavings: no duplicate, no reorder, no acknowledged loss,
    /// no `NotPersisted` record in the log. `KRUST_IDEMPOTENCE_SEEDS` runs more.
    #[test]
    fn seeded_simulation_never_duplicates_reorders_or_loses() {
        let seeds: u64 = std::env::var("KRUST_IDEMPOTENCE_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        for seed in 0..seeds {
            run(seed);
        }
    }
}
