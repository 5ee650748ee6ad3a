//! How many Produce requests to keep in flight to one broker.
//!
//! `max.in.flight.requests.per.connection` caps the requests a producer has unanswered on one
//! connection. A Kafka broker reads a connection's next request only once it has answered the
//! current one, so past the request being served and one queued behind it (there the moment the
//! broker is ready), a request in flight only helps to cover the network's round trip. Requests
//! sent beyond that wait in socket buffers instead of in the producer, each holding its bytes (a
//! megabyte at a large `batch.size`) out of the cache: against a broker on the same host, two in
//! flight instead of five ran 8-16 % faster at 1 MB batches, and cost both the client and the
//! broker less CPU per record.
//!
//! [`InFlightWindow`] allows `1 + ceil(round trip / time per request)` requests, between
//! [`MIN_WINDOW`] and the configured maximum:
//!
//! - the **round trip** is the connection's floor: the least time a small exchange took
//!   (ApiVersions at connect, small Produce requests), measured by the connection, so the time
//!   of the network and not of the bytes;
//! - the **time per request** is the mean gap between answers whose requests were handed off
//!   before the answer ahead of them came (gaps after an idle spell say nothing of the pace).
//!
//! A broker close by gets two; a distant one as many as keep it busy (when the window limits
//! the pace, the gaps grow and the window with them, up to the maximum). With no round trip
//! known yet, or no answers, the window is the maximum.
//!
//! The floor comes from small exchanges only: a connection that only ever carries large
//! requests keeps the floor of its ApiVersions exchange, so a round trip that grows later (a
//! path rerouted far away) is not seen, and the window can stay smaller than the link needs,
//! though never below two.
//!
//! The window holds back only requests that would put [`FREE_BYTES`] or more in flight: small
//! requests cost the cache nothing, and after a stall of the broker, several of them in flight
//! drain the producer's backlog sooner (two in flight for small requests lengthened the p99 of
//! the latency benchmark on tansu).
//!
//! No clock here: callers pass `now` in.

use std::time::{Duration, Instant};

/// The smallest window: the request being served and one waiting behind it.
pub const MIN_WINDOW: usize = 2;

/// Bytes in flight below which the window holds nothing back (about a core's second-level
/// cache).
pub const FREE_BYTES: usize = 1 << 20;

/// A request handed off, as [`InFlightWindow::sent`] marked it; give it back to
/// [`InFlightWindow::answered`] with its answer.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    at: Instant,
}

/// The in-flight window of one broker connection (see the module documentation).
#[derive(Debug, Clone)]
pub struct InFlightWindow {
    max: usize,
    limit: usize,
    /// When the last answer came.
    last_answer: Option<Instant>,
    /// Mean gap between paced answers, nanoseconds (moving average).
    gap: Option<f64>,
    /// The connection's round-trip floor.
    round_trip: Option<Duration>,
}

impl InFlightWindow {
    /// A window of at most `max` requests (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        InFlightWindow {
            max,
            limit: max,
            last_answer: None,
            gap: None,
            round_trip: None,
        }
    }

    /// Requests allowed in flight.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether one more request may go with `in_flight` requests of `bytes_in_flight` bytes
    /// unanswered.
    pub fn allows(&self, in_flight: usize, bytes_in_flight: usize) -> bool {
        in_flight < self.max && (in_flight < self.limit || bytes_in_flight < FREE_BYTES)
    }

    /// The connection's round-trip floor, as it knows it now.
    pub fn set_round_trip(&mut self, round_trip: Option<Duration>) {
        if round_trip.is_some() && round_trip != self.round_trip {
            self.round_trip = round_trip;
            self.recompute();
        }
    }

    /// A request is handed off now.
    pub fn sent(&self, now: Instant) -> Sent {
        Sent { at: now }
    }

    /// The answer to `sent` came now.
    pub fn answered(&mut self, sent: Sent, now: Instant) {
        if let Some(prev) = self.last_answer.filter(|prev| sent.at < *prev) {
            // It waited for the answer ahead of it: the gap is the pace.
            let g = now.saturating_duration_since(prev).as_nanos() as f64;
            self.gap = Some(self.gap.map_or(g, |m| m + (g - m) / 8.0));
        }
        self.last_answer = Some(self.last_answer.map_or(now, |t| t.max(now)));
        self.recompute();
    }

    /// A request ended without an answer (the connection failed): the next answer's gap says
    /// nothing about the pace.
    pub fn failed(&mut self) {
        self.last_answer = None;
    }

    fn recompute(&mut self) {
        let (Some(round_trip), Some(gap)) = (self.round_trip, self.gap) else {
            return;
        };
        let behind = (round_trip.as_nanos() as f64 / gap.max(1.0)).ceil();
        let behind = behind.min(self.max as f64) as usize;
        self.limit = (1 + behind).clamp(MIN_WINDOW.min(self.max), self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a window against a broker that serves one request at a time, taking `service` per
    /// request, `rtt` away (the connection's floor); the client has a request ready every
    /// `ready_every` and hands it off when the window allows. Returns the window at the end and
    /// the requests answered in `span`.
    fn run(
        max: usize,
        service: Duration,
        rtt: Duration,
        ready_every: Duration,
        span: Duration,
    ) -> (InFlightWindow, usize) {
        let start = Instant::now();
        let mut w = InFlightWindow::new(max);
        w.set_round_trip(Some(rtt));
        // Requests in flight: (mark, answer time).
        let mut flight: std::collections::VecDeque<(Sent, Instant)> = Default::default();
        let mut broker_free = start;
        let mut next_ready = start;
        let mut now = start;
        let mut answered = 0;
        while now < start + span {
            while next_ready <= now && w.allows(flight.len(), FREE_BYTES) {
                let sent = w.sent(now);
                let begins = (now + rtt / 2).max(broker_free);
                broker_free = begins + service;
                flight.push_back((sent, broker_free + rtt / 2));
                next_ready = now + ready_every;
            }
            match flight.front().map(|(_, at)| *at) {
                Some(at) if at <= next_ready.max(now) || !w.allows(flight.len(), FREE_BYTES) => {
                    now = now.max(at);
                    let (sent, _) = flight.pop_front().expect("front");
                    w.answered(sent, now);
                    answered += 1;
                }
                _ => now = next_ready.max(now),
            }
        }
        (w, answered)
    }

    /// A broker close by (round trip far below its time per request): two in flight, and the
    /// broker kept busy.
    #[test]
    fn a_broker_close_by_gets_two_in_flight() {
        let (w, answered) = run(
            5,
            Duration::from_micros(300),
            Duration::from_micros(60),
            Duration::from_micros(10),
            Duration::from_secs(1),
        );
        assert_eq!(w.limit(), 2);
        let per_second = 1_000_000 / 300;
        assert!(
            answered >= per_second * 97 / 100,
            "{answered} answers, the broker serves {per_second} a second"
        );
    }

    /// A distant broker (round trip several times its time per request): the window opens up
    /// to the maximum; in between, to what covers the round trip.
    #[test]
    fn a_distant_broker_gets_the_whole_window() {
        let (w, answered) = run(
            5,
            Duration::from_millis(2),
            Duration::from_millis(10),
            Duration::from_micros(10),
            Duration::from_secs(2),
        );
        assert_eq!(w.limit(), 5);
        // Five in flight, each 10 + 2 ms: about 416 a second.
        assert!(answered >= 800, "{answered}");
        // 3 ms round trip, 2 ms per request: 1 + ceil(3 / 2) = 3, and the broker stays busy.
        let (w, answered) = run(
            5,
            Duration::from_millis(2),
            Duration::from_millis(3),
            Duration::from_micros(10),
            Duration::from_secs(2),
        );
        assert_eq!(w.limit(), 3);
        assert!(answered >= 970, "{answered}");
        // With a maximum of ten, the same distant broker gets six (1 + ceil(10 / 2)).
        let (w, _) = run(
            10,
            Duration::from_millis(2),
            Duration::from_millis(10),
            Duration::from_micros(10),
            Duration::from_secs(2),
        );
        assert_eq!(w.limit(), 6);
    }

    /// A window held small opens when the round trip grows: the gaps grow with it.
    #[test]
    fn the_window_follows_a_round_trip_that_grows() {
        let start = Instant::now();
        let mut w = InFlightWindow::new(5);
        w.set_round_trip(Some(Duration::from_micros(50)));
        let service = Duration::from_micros(300);
        let mut t = start;
        for _ in 0..20 {
            // Handed off before the answer ahead of it came.
            let a = w.sent(t - Duration::from_micros(10));
            t += service;
            w.answered(a, t);
        }
        assert_eq!(w.limit(), 2);
        assert!(w.allows(1, FREE_BYTES));
        assert!(!w.allows(2, FREE_BYTES));
        // Small requests are not held back.
        assert!(w.allows(4, FREE_BYTES - 1));
        w.set_round_trip(Some(Duration::from_millis(20)));
        assert_eq!(w.limit(), 5);
    }

    /// Gaps after an idle spell do not count; without a round trip or answers the window is the
    /// maximum; a maximum of one stays one.
    #[test]
    fn idle_gaps_and_missing_estimates() {
        let now = Instant::now();
        let w = InFlightWindow::new(5);
        assert_eq!(w.limit(), 5);
        assert!(w.allows(4, FREE_BYTES));
        assert!(!w.allows(5, FREE_BYTES));

        let mut w = InFlightWindow::new(5);
        w.set_round_trip(Some(Duration::from_micros(100)));
        let a = w.sent(now);
        w.answered(a, now + Duration::from_micros(400));
        assert_eq!(w.limit(), 5, "one answer: no pace yet");
        // Sent after that answer, an hour later: its gap is idle time, not pace.
        let later = now + Duration::from_secs(3600);
        let b = w.sent(later);
        w.answered(b, later + Duration::from_micros(400));
        assert_eq!(w.limit(), 5);
        // Paced answers.
        let c = w.sent(later + Duration::from_micros(300));
        w.answered(c, later + Duration::from_micros(800));
        assert_eq!(w.limit(), 2);
        // A failure forgets the last answer: the next gap is not taken.
        w.failed();
        let d = w.sent(later + Duration::from_micros(900));
        w.answered(d, later + Duration::from_secs(5));
        assert_eq!(w.limit(), 2);

        let mut one = InFlightWindow::new(1);
        one.set_round_trip(Some(Duration::from_millis(5)));
        let s = one.sent(now);
        one.answered(s, now + Duration::from_micros(50));
        assert!(!one.allows(1, FREE_BYTES));
        assert!(!one.allows(1, 0), "never past the maximum");
        assert!(one.allows(0, FREE_BYTES));
        assert_eq!(InFlightWindow::new(0).limit(), 1);
    }
}
