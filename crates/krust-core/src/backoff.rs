//! Retry backoff (KIP-580) and broker throttling (KIP-219), kept apart.
//!
//! - [`BackoffPolicy`]: exponential backoff from `retry.backoff.ms` doubling per attempt up to
//!   `retry.backoff.max.ms`, with ±20% jitter, exactly the Java client's `ExponentialBackoff`
//!   shape (so the jittered value may exceed the maximum by up to 20%, as in Java).
//! - [`Throttle`]: the time a broker asked us to wait (`throttle_time_ms`). Honoured before the next
//!   request to that broker, and never counted as a failure: it does not grow the backoff.
//! - [`SmallRng`]: the small deterministic random source (SplitMix64) used for jitter and random
//!   partition choice, so that tests with a seed replay exactly.
//!
//! No clock here: callers pass `now` in.

use std::time::{Duration, Instant};

/// A small, fast, deterministic random source (SplitMix64). Not cryptographic.
#[derive(Debug, Clone)]
pub struct SmallRng(u64);

impl SmallRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value uniformly in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for partition choice and jitter.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value uniformly in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// A value uniformly in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exponential backoff with jitter (KIP-580).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// First backoff (`retry.backoff.ms`, default 100 ms).
    pub initial: Duration,
    /// Upper bound of the exponential term (`retry.backoff.max.ms`, default 1000 ms).
    pub max: Duration,
    /// Growth per attempt (2 in Kafka).
    pub multiplier: f64,
    /// Relative jitter (0.2 in Kafka: the delay is scaled by a factor in `[0.8, 1.2)`).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_millis(1000))
    }
}

impl BackoffPolicy {
    /// Kafka's policy: doubling from `initial` up to `max`, ±20% jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.2,
        }
    }

    /// The delay before retry number `attempt + 1`, i.e. after `attempt` failures so far minus one
    /// (`attempt` 0 is the first retry). `rng` supplies the jitter.
    ///
    /// If `initial` exceeds `max`, `max` is used without growth (as in Java).
    pub fn delay(&self, attempt: u32, rng: &mut SmallRng) -> Duration {
        if self.initial >= self.max {
            return self.max;
        }
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64();
        let mult = if self.multiplier > 1.0 {
            self.multiplier
        } else {
            2.0
        };
        // Cap the exponent where the term reaches max, so huge attempt counts cannot overflow.
        let exp_max = if initial > 0.0 {
            ((max / initial).ln() / mult.ln()).max(0.0)
        } else {
            0.0
        };
        let exp = f64::from(attempt).min(exp_max);
        let term = initial * mult.powf(exp);
        let factor = if self.jitter > f64::EPSILON {
            let j = self.jitter.min(1.0);
            (1.0 - j) + rng.unit() * 2.0 * j
        } else {
            1.0
        };
        Duration::from_secs_f64((term * factor).max(0.0))
    }
}

/// A backoff in progress: counts consecutive failures, resets on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// No failure yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
            until: None,
        }
    }

    /// Records a failure at `now` and returns the time before which no retry should happen.
    pub fn handle_failure(&mut self, now: Instant, rng: &mut SmallRng) -> Instant {
        let d = self.policy.delay(self.failures, rng);
        self.failures = self.failures.saturating_add(1);
        let until = now + d;
        self.until = Some(until);
        until
    }

    /// Records a success: the next failure starts from the initial backoff again.
    pub fn handle_success(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a retry must still wait at `now`.
    pub fn is_waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When waiting ends, if waiting.
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.until
    }
}

/// Broker throttling (KIP-219): after a response with `throttle_time_ms > 0`, send nothing more to
/// that broker until the time has passed. Independent of [`Backoff`]: a throttled response is a
/// success and never grows a backoff.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    until: Option<Instant>,
}

impl Throttle {
    /// Not throttled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a response received at `now` carrying `throttle_time_ms` (non-positive: none).
    /// A later deadline replaces an earlier one; an earlier one never shortens it.
    pub fn handle_throttle(&mut self, now: Instant, throttle_time_ms: i32) {
        if throttle_time_ms <= 0 {
            return;
        }
        let until = now + Duration::from_millis(throttle_time_ms as u64);
        if self.until.is_none_or(|u| until > u) {
            self.until = Some(until);
        }
    }

    /// Whether requests must still wait at `now`.
    pub fn is_throttled(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When the throttle ends, if one is set (it may already be in the past).
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn range_stays_in_bounds_and_reaches_both_ends() {
        let mut rng = SmallRng::new(7);
        let drawn: std::collections::BTreeSet<u64> = (0..1000).map(|_| rng.range(5, 9)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        assert_eq!(rng.range(3, 3), 3);
        assert_eq!(rng.range(4, 2), 4);
    }

    #[test]
    fn exponential_with_jitter_bounds() {
        let p = BackoffPolicy::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut rng = SmallRng::new(9);
        for _ in 0..1000 {
            let expected = [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0, 1000.0];
            for (attempt, base) in expected.iter().enumerate() {
                let d = ms(p.delay(attempt as u32, &mut rng));
                assert!(
                    d >= base * 0.8 - 1e-6 && d < base * 1.2 + 1e-6,
                    "attempt {attempt}: {d}"
                );
            }
            // Never overflows, whatever the count.
            let d = ms(p.delay(u32::MAX, &mut rng));
            assert!((800.0..1200.0).contains(&d));
        }
    }

    #[test]
    fn jitter_is_spread_both_ways() {
        let p = BackoffPolicy::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut rng = SmallRng::new(1);
        let samples: Vec<f64> = (0..1000).map(|_| ms(p.delay(0, &mut rng))).collect();
        assert!(samples.iter().any(|d| *d < 90.0));
        assert!(samples.iter().any(|d| *d > 110.0));
    }

    #[test]
    fn initial_above_max_uses_max() {
        let p = BackoffPolicy::new(Duration::from_millis(500), Duration::from_millis(200));
        let mut rng = SmallRng::new(1);
        assert_eq!(p.delay(0, &mut rng), Duration::from_millis(200));
        assert_eq!(p.delay(5, &mut rng), Duration::from_millis(200));
    }

    #[test]
    fn no_jitter_is_exact() {
        let mut p = BackoffPolicy::new(Duration::from_millis(10), Duration::from_millis(1000));
        p.jitter = 0.0;
        let mut rng = SmallRng::new(1);
        assert_eq!(ms(p.delay(0, &mut rng)).round(), 10.0);
        assert_eq!(ms(p.delay(3, &mut rng)).round(), 80.0);
        assert_eq!(ms(p.delay(30, &mut rng)).round(), 1000.0);
    }

    #[test]
    fn backoff_grows_and_resets_with_virtual_clock() {
        let mut policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
        policy.jitter = 0.0;
        let mut b = Backoff::new(policy);
        let mut rng = SmallRng::new(0);
        let t0 = Instant::now();
        let u1 = b.handle_failure(t0, &mut rng);
        assert_eq!(u1 - t0, Duration::from_millis(100));
        assert!(b.is_waiting(t0 + Duration::from_millis(99)));
        assert!(!b.is_waiting(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        let u2 = b.handle_failure(t1, &mut rng);
        assert_eq!(u2 - t1, Duration::from_millis(200));
        assert_eq!(b.failures(), 2);
        b.handle_success();
        assert!(!b.is_waiting(t1));
        let u3 = b.handle_failure(t1, &mut rng);
        assert_eq!(u3 - t1, Duration::from_millis(100));
    }

    #[test]
    fn throttle_is_separate_from_backoff() {
        let mut policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
        policy.jitter = 0.0;
        let mut b = Backoff::new(policy);
        let mut t = Throttle::new();
        let t0 = Instant::now();
        // A throttled success: wait honoured, backoff untouched.
        t.handle_throttle(t0, 500);
        b.handle_success();
        assert!(t.is_throttled(t0 + Duration::from_millis(499)));
        assert!(!t.is_throttled(t0 + Duration::from_millis(500)));
        assert_eq!(b.failures(), 0);
        // A shorter throttle later never shortens the wait; zero/negative are ignored.
        t.handle_throttle(t0 + Duration::from_millis(10), 100);
        t.handle_throttle(t0, 0);
        t.handle_throttle(t0, -5);
        assert_eq!(t.poll_deadline(), Some(t0 + Duration::from_millis(500)));
        // After throttling, the first real failure still starts at the initial backoff.
        let mut rng = SmallRng::new(0);
        let u = b.handle_failure(t0, &mut rng);
        assert_eq!(u - t0, Duration::from_millis(100));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = SmallRng::new(5);
        let mut b = SmallRng::new(5);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            b.below(7);
            let u = a.unit();
            b.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(a.below(0), 0);
    }
}
