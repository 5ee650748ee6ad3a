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
//! The window also keeps the count and bytes of its connection's requests in flight, so the
//! producer has one record of them; with `adaptive` off it only counts, and allows the
//! maximum.
//!
//! No clock here: callers pass `now` in.

use std::time::{Duration, Instant};

/// The smallest window: the request being served and one waiting behind it.
pub const MIN_WINDOW: usize = 2;

/// Bytes in flight below which the window holds nothing back (about a core's second-level
/// cache).
pub const FREE_BYTES: usize = 1 << 20;

/// A request handed off, as [`InFlightWindow::sent`] counted it; give it back to
/// [`InFlightWindow::answered`], [`InFlightWindow::failed`] or [`InFlightWindow::written`]
/// when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    at: Instant,
    bytes: usize,
}

/// The in-flight window of one broker connection (see the module documentation).
#[derive(Debug, Clone)]
pub struct InFlightWindow {
    max: usize,
    /// Whether the limit follows the answers (else it stays at `max`).
    adaptive: bool,
    limit: usize,
    /// Requests in flight, and their bytes.
    requests: usize,
    bytes: usize,
    /// When the last answer came.
    last_answer: Option<Instant>,
    /// Mean gap between paced answers, nanoseconds (moving average).
    gap: Option<f64>,
    /// The connection's round-trip floor.
    round_trip: Option<Duration>,
}

impl InFlightWindow {
    /// A window of at most `max` requests (at least one), sized from the answers when
    /// `adaptive`, else always `max`.
    pub fn new(max: usize, adaptive: bool) -> Self {
        let max = max.max(1);
        InFlightWindow {
            max,
            adaptive,
            limit: max,
            requests: 0,
            bytes: 0,
            last_answer: None,
            gap: None,
            round_trip: None,
        }
    }

    /// Requests allowed in flight.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests in flight.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Whether one more request may go now.
    pub fn allows(&self) -> bool {
        self.requests < self.max && (self.requests < self.limit || self.bytes < FREE_BYTES)
    }

    /// The connection's round-trip floor, as it knows it now.
    pub fn set_round_trip(&mut self, round_trip: Option<Duration>) {
        if round_trip.is_some() && round_trip != self.round_trip {
            self.round_trip = round_trip;
            self.recompute();
        }
    }

    /// A request of `bytes` is handed off now.
    pub fn sent(&mut self, bytes: usize, now: Instant) -> Sent {
        self.requests += 1;
        self.bytes += bytes;
        Sent { at: now, bytes }
    }

    /// The answer to `sent` came now.
    pub fn answered(&mut self, sent: Sent, now: Instant) {
        self.end(sent);
        if let Some(prev) = self.last_answer.filter(|prev| sent.at < *prev) {
            // It waited for the answer ahead of it: the gap is the pace.
            let g = now.saturating_duration_since(prev).as_nanos() as f64;
            self.gap = Some(self.gap.map_or(g, |m| m + (g - m) / 8.0));
        }
        self.last_answer = Some(self.last_answer.map_or(now, |t| t.max(now)));
        self.recompute();
    }

    /// `sent` ended without an answer (the connection failed): the next answer's gap says
    /// nothing about the pace.
    pub fn failed(&mut self, sent: Sent) {
        self.end(sent);
        self.last_answer = None;
    }

    /// `sent` needed no answer (acks=0) and is written.
    pub fn written(&mut self, sent: Sent) {
        self.end(sent);
    }

    fn end(&mut self, sent: Sent) {
        self.requests = self.requests.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(sent.bytes);
    }

    fn recompute(&mut self) {
        let (true, Some(round_trip), Some(gap)) = (self.adaptive, self.round_trip, self.gap) else {
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

    const MB: usize = 1 << 20;

    /// Drives an adaptive window against a broker that serves one request at a time, taking
    /// `service` per request, `rtt` away (the connection's floor); the client has a 1 MiB
    /// request ready every 10 µs and hands it off when the window allows. Returns the window at
    /// the end and the requests answered in `span`.
    fn run(
        max: usize,
        service: Duration,
        rtt: Duration,
        span: Duration,
    ) -> (InFlightWindow, usize) {
        let ready_every = Duration::from_micros(10);
        let start = Instant::now();
        let mut w = InFlightWindow::new(max, true);
        w.set_round_trip(Some(rtt));
        // Requests in flight: (mark, answer time).
        let mut flight: std::collections::VecDeque<(Sent, Instant)> = Default::default();
        let mut broker_free = start;
        let mut next_ready = start;
        let mut now = start;
        let mut answered = 0;
        while now < start + span {
            while next_ready <= now && w.allows() {
                let sent = w.sent(MB, now);
                let begins = (now + rtt / 2).max(broker_free);
                broker_free = begins + service;
                flight.push_back((sent, broker_free + rtt / 2));
                next_ready = now + ready_every;
            }
            assert_eq!(w.requests(), flight.len());
            match flight.front().map(|(_, at)| *at) {
                Some(at) if at <= next_ready.max(now) || !w.allows() => {
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

    /// The window against brokers near and far: (max, service, round trip, span) -> the window
    /// it settles at and the least answers the broker gives meanwhile (kept busy, or as busy as
    /// the window lets it be).
    #[test]
    fn the_window_covers_the_round_trip_and_no_more() {
        let (us, ms, s) = (
            Duration::from_micros,
            Duration::from_millis,
            Duration::from_secs,
        );
        let cases = [
            // Close by: two in flight, and the broker serves 1/300 µs.
            (5, us(300), us(60), s(1), 2, 1_000_000 / 300 * 97 / 100),
            // Far: the whole window; five in flight, each 10 + 2 ms: about 416 a second.
            (5, ms(2), ms(10), s(2), 5, 800),
            // In between: 1 + ceil(3 / 2) = 3, and the broker stays busy.
            (5, ms(2), ms(3), s(2), 3, 970),
            // Far, with a larger maximum: 1 + ceil(10 / 2) = 6.
            (10, ms(2), ms(10), s(2), 6, 900),
        ];
        for (max, service, rtt, span, limit, least) in cases {
            let (w, answered) = run(max, service, rtt, span);
            assert_eq!(w.limit(), limit, "{service:?} per request, {rtt:?} away");
            assert!(
                answered >= least,
                "{answered} answers, {service:?}, {rtt:?}"
            );
        }
    }

    /// A window held small opens when the round trip grows: the gaps grow with it. Small
    /// requests are not held back.
    #[test]
    fn the_window_follows_a_round_trip_that_grows() {
        let start = Instant::now();
        let mut w = InFlightWindow::new(5, true);
        w.set_round_trip(Some(Duration::from_micros(50)));
        let service = Duration::from_micros(300);
        let mut t = start;
        for _ in 0..20 {
            // Handed off before the answer ahead of it came.
            let a = w.sent(MB, t - Duration::from_micros(10));
            t += service;
            w.answered(a, t);
        }
        assert_eq!(w.limit(), 2);
        assert_eq!(w.requests(), 0);
        let a = w.sent(MB, t);
        assert!(w.allows());
        let b = w.sent(MB, t);
        assert!(!w.allows(), "two of a megabyte in flight");
        w.written(b);
        w.written(a);
        let small: Vec<Sent> = (0..4).map(|_| w.sent(1000, t)).collect();
        assert!(
            w.allows(),
            "four small requests are below the bytes held back"
        );
        let _ = w.sent(1000, t);
        assert!(!w.allows(), "never past the maximum");
        for s in small {
            w.written(s);
        }
        w.set_round_trip(Some(Duration::from_millis(20)));
        assert_eq!(w.limit(), 5);
    }

    /// Gaps after an idle spell or a failure do not count; without a round trip or answers, or
    /// not adaptive, the window is the maximum; a maximum of one stays one.
    #[test]
    fn idle_gaps_and_missing_estimates() {
        let now = Instant::now();
        assert_eq!(InFlightWindow::new(5, true).limit(), 5);

        let mut w = InFlightWindow::new(5, true);
        w.set_round_trip(Some(Duration::from_micros(100)));
        let a = w.sent(MB, now);
        w.answered(a, now + Duration::from_micros(400));
        assert_eq!(w.limit(), 5, "one answer: no pace yet");
        // Sent after that answer, an hour later: its gap is idle time, not pace.
        let later = now + Duration::from_secs(3600);
        let b = w.sent(MB, later);
        w.answered(b, later + Duration::from_micros(400));
        assert_eq!(w.limit(), 5);
        // Paced answers.
        let c = w.sent(MB, later + Duration::from_micros(300));
        w.answered(c, later + Duration::from_micros(800));
        assert_eq!(w.limit(), 2);
        // A failure forgets the last answer: the next gap is not taken.
        let d = w.sent(MB, later + Duration::from_micros(850));
        w.failed(d);
        let e = w.sent(MB, later + Duration::from_micros(900));
        w.answered(e, later + Duration::from_secs(5));
        assert_eq!(w.limit(), 2);
        assert_eq!(w.requests(), 0);

        // The same answers without `adaptive`: the maximum.
        let mut fixed = InFlightWindow::new(5, false);
        fixed.set_round_trip(Some(Duration::from_micros(100)));
        for (sent_at, answered_at) in [(0, 400), (300, 800)] {
            let s = fixed.sent(MB, now + Duration::from_micros(sent_at));
            fixed.answered(s, now + Duration::from_micros(answered_at));
        }
        assert_eq!(fixed.limit(), 5);

        let mut one = InFlightWindow::new(1, true);
        one.set_round_trip(Some(Duration::from_millis(5)));
        let s = one.sent(100, now);
        assert!(!one.allows());
        one.answered(s, now + Duration::from_micros(50));
        assert!(one.allows());
        assert_eq!(InFlightWindow::new(0, true).limit(), 1);
    }
}
