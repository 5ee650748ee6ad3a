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
//! - A reset gives the partition a fresh producer identity from InitProducerId (for a
//!   non-transactional producer every InitProducerId answers a new id with epoch 0: the same
//!   fresh sequence space KIP-360's epoch bump gives, and every broker supports it). Sequence
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
