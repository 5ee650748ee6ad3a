//! Numbers for `krust bench`: latency samples with percentiles, throughput, and the progress
//! and summary lines.

use std::time::Duration;

/// Latency samples in microseconds. Kept exactly (4 bytes per sample: 4 MB for a million
/// records), so percentiles are exact rather than bucketed.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples_us: Vec<u32>,
    sorted: bool,
}

/// Percentile summary of [`Latencies`], in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Mean.
    pub avg_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Latencies {
    /// An empty set, with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Latencies {
            samples_us: Vec::with_capacity(n),
            sorted: true,
        }
    }

    /// Adds one sample (saturating at about 71 minutes).
    pub fn record(&mut self, d: Duration) {
        self.samples_us
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Number of samples so far.
    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    /// True when no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.samples_us.is_empty()
    }

    /// Mean of the samples so far, in ms (0 when empty).
    pub fn mean_ms(&self) -> f64 {
        if self.samples_us.is_empty() {
            return 0.0;
        }
        let sum: u64 = self.samples_us.iter().map(|&s| u64::from(s)).sum();
        sum as f64 / self.samples_us.len() as f64 / 1000.0
    }

    /// Percentiles over every sample; `None` when empty.
    pub fn summary(&mut self) -> Option<LatencySummary> {
        if self.samples_us.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples_us.sort_unstable();
            self.sorted = true;
        }
        let s = &self.samples_us;
        // Nearest-rank percentile: the smallest sample with at least q of the samples <= it.
        let at = |q: f64| {
            let rank = (q * s.len() as f64).ceil() as usize;
            f64::from(s[rank.clamp(1, s.len()) - 1]) / 1000.0
        };
        Some(LatencySummary {
            count: s.len(),
            avg_ms: self.mean_ms(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: f64::from(s[s.len() - 1]) / 1000.0,
        })
    }
}

/// Records/s and MB/s (10^6 bytes) for `records` records of `bytes` total over `elapsed`.
pub fn rates(records: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    (records as f64 / secs, bytes as f64 / secs / 1e6)
}

/// The one-line summary printed at the end of a bench run.
pub fn summary_line(
    what: &str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Option<LatencySummary>,
) -> String {
    let (rps, mbps) = rates(records, bytes, elapsed);
    let mut line = format!(
        "{what}: {records} records in {:.2} s: {rps:.0} records/s, {mbps:.2} MB/s",
        elapsed.as_secs_f64()
    );
    if let Some(l) = latency {
        line.push_str(&format!(
            "; latency ms: avg {:.2}, p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
            l.avg_ms, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        ));
    }
    line
}

/// How long to wait before sending record number `sent` (0-based) so that the rate stays at
/// `per_sec` records per second since the start; `None` when no wait is needed or there is no
/// limit (`per_sec == 0`).
pub fn pace(sent: u64, per_sec: u64, elapsed: Duration) -> Option<Duration> {
    if per_sec == 0 {
        return None;
    }
    let due = Duration::from_secs_f64(sent as f64 / per_sec as f64);
    due.checked_sub(elapsed).filter(|d| !d.is_zero())
}

/// Counts for one progress interval of a bench run.
#[derive(Debug, Default, Clone)]
pub struct Window {
    records: u64,
    bytes: u64,
    latency_sum_us: u128,
    latency_max_us: u128,
    latency_count: u64,
}

impl Window {
    /// Counts a record of `bytes` bytes, with its latency if it has one.
    pub fn add(&mut self, bytes: u64, latency: Option<Duration>) {
        self.records += 1;
        self.bytes += bytes;
        if let Some(l) = latency {
            let us = l.as_micros();
            self.latency_sum_us += us;
            self.latency_max_us = self.latency_max_us.max(us);
            self.latency_count += 1;
        }
    }

    /// The progress line for this window (`elapsed` long), and a reset for the next one.
    pub fn line(&mut self, elapsed: Duration) -> String {
        let (rps, mbps) = rates(self.records, self.bytes, elapsed);
        let mut line = format!(
            "{} records, {rps:.0} records/s ({mbps:.2} MB/s)",
            self.records
        );
        if self.latency_count > 0 {
            let avg = self.latency_sum_us as f64 / self.latency_count as f64 / 1000.0;
            let max = self.latency_max_us as f64 / 1000.0;
            line.push_str(&format!(", latency avg {avg:.2} ms, max {max:.2} ms"));
        }
        *self = Window::default();
        line
    }
}

/// A value of `size` bytes of pseudo-random upper-case letters (the shape Kafka's perf tools
/// send: compressible about as well as text).
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            // xorshift64: fast, deterministic, good enough for test data.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_thousand() {
        let mut l = Latencies::with_capacity(1000);
        for ms in (1..=1000).rev() {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ms, 500.0);
        assert_eq!(s.p99_ms, 990.0);
        assert_eq!(s.p999_ms, 999.0);
        assert_eq!(s.max_ms, 1000.0);
        assert!((s.avg_ms - 500.5).abs() < 1e-9);
    }

    #[test]
    fn single_and_empty() {
        let mut l = Latencies::default();
        assert!(l.summary().is_none());
        l.record(Duration::from_micros(1500));
        let s = l.summary().unwrap();
        assert_eq!((s.p50_ms, s.p999_ms, s.max_ms), (1.5, 1.5, 1.5));
    }

    #[test]
    fn pacing() {
        assert_eq!(pace(10, 0, Duration::ZERO), None);
        // 100/s: record 50 is due at 0.5 s.
        assert_eq!(
            pace(50, 100, Duration::from_millis(200)),
            Some(Duration::from_millis(300))
        );
        assert_eq!(pace(50, 100, Duration::from_millis(600)), None);
        assert_eq!(pace(0, 100, Duration::ZERO), None);
    }

    #[test]
    fn windows_reset() {
        let mut w = Window::default();
        w.add(1000, Some(Duration::from_millis(2)));
        w.add(1000, Some(Duration::from_millis(4)));
        let line = w.line(Duration::from_secs(1));
        assert!(line.starts_with("2 records, 2 records/s"), "{line}");
        assert!(line.contains("avg 3.00 ms, max 4.00 ms"), "{line}");
        assert!(w.line(Duration::from_secs(1)).starts_with("0 records"));
    }

    #[test]
    fn payloads() {
        let p = payload(100, 7);
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(u8::is_ascii_uppercase));
        assert_eq!(p, payload(100, 7));
        assert_ne!(p, payload(100, 8));
    }

    #[test]
    fn rates_and_line() {
        let (rps, mbps) = rates(1000, 2_000_000, Duration::from_secs(2));
        assert_eq!((rps, mbps), (500.0, 1.0));
        let line = summary_line("produce", 1000, 2_000_000, Duration::from_secs(2), None);
        assert!(line.contains("500 records/s"), "{line}");
        assert!(line.contains("1.00 MB/s"), "{line}");
    }
}
