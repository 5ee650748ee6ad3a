//! A cheap wall clock in milliseconds for record timestamps.
//!
//! [`now_ms`] returns exactly what `SystemTime::now()` in milliseconds since the Unix epoch
//! returns, but reads the system clock only about once per millisecond per thread, and otherwise
//! answers from a per-thread cache checked with one `rdtsc`. A thread calling it back to back
//! reads the clock a few times per millisecond, plus at every call in the last [`SLACK_NS`] of
//! each millisecond: about 360 reads per million calls at 9 ns a call.
//!
//! # How
//!
//! Each thread keeps its last system-clock reading (the millisecond, `ms`), the TSC value taken
//! right before that reading (`tsc`), and `window`: the number of TSC ticks that the rest of that
//! millisecond lasts at least. While `rdtsc - tsc < window` the millisecond cannot have changed,
//! so `ms` is returned; otherwise the clock is read again and the cache refreshed. A TSC value
//! below the cached one (a wrapping difference) reads the clock too.
//!
//! `window` comes from a *lower bound* of the TSC rate (ticks per nanosecond of the system
//! clock): measured once per process against the monotonic clock ([`Instant`], so that a
//! wall-clock step cannot fake it) over at least [`CALIBRATION_NS`], taking the smallest tick
//! count the pair of readings allows, then lowered by [`RATE_MARGIN_PCT`] % (this covers NTP
//! slewing, at most 0.05 %, with room to spare). Until the rate is known, and whenever the TSC is
//! not trusted, every call reads the system clock: correct, only not faster.
//!
//! The window also gives up [`SLACK_NS`] before the end of the millisecond. The hot-path `rdtsc`
//! is not fenced (a fence costs about as much as the cache saves), so the processor may execute
//! it a little before the instructions that precede the call; the slack, orders of magnitude
//! longer than that reordering, keeps the answer correct for any clock reading that happened
//! before the call.
//!
//! # Where the TSC is used
//!
//! Only on x86_64, when the processor reports an invariant TSC (CPUID 0x8000_0007, EDX bit 8) and
//! the kernel's clocksource is `tsc` (`/sys/devices/system/clocksource/clocksource0/
//! current_clocksource`, read once per process; unreadable means no). Then the system clock is
//! itself the TSC scaled by the kernel, so the two advance together. Everywhere else: plain
//! `SystemTime`.
//!
//! # Limits
//!
//! - A wall-clock step (NTP step, `settimeofday`) is seen at the next system-clock read, at most
//!   about one millisecond later; until then the cached millisecond is returned.
//! - The clocksource is checked once: if the kernel later abandons the TSC (it found it unstable),
//!   the cache keeps trusting it. The margin tolerates a rate error of a few per cent.
//! - A time before the Unix epoch gives 0, as `SystemTime` arithmetic clamped at 0 does.
//! - A process that forbids `rdtsc` to itself (`prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`) would get a
//!   SIGSEGV on the first cached read; such sandboxes are not supported.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The shortest calibration: the TSC rate is measured over at least this many nanoseconds.
const CALIBRATION_NS: u64 = 1_000_000;

/// The measured (lower-bound) TSC rate is lowered by this many per cent before it is used.
const RATE_MARGIN_PCT: u64 = 2;

/// The cache gives up this many nanoseconds before the end of a millisecond (see the module docs).
const SLACK_NS: u64 = 2_000;

/// Fractional bits of the fixed-point TSC rate (ticks per nanosecond).
const RATE_FRAC_BITS: u32 = 32;

/// The slowest plausible TSC, 0.2 GHz, in fixed-point ticks per nanosecond.
const RATE_MIN: u64 = (1 << RATE_FRAC_BITS) / 5;

/// The fastest plausible TSC, 20 GHz, in fixed-point ticks per nanosecond.
const RATE_MAX: u64 = 20 << RATE_FRAC_BITS;

/// Milliseconds since the Unix epoch, now: what `SystemTime::now()` gives, read cheaply.
///
/// The result is at least the millisecond of any system-clock reading made before the call and
/// at most that of any reading made after it; within a thread it never goes back unless the
/// system clock does. A wall-clock step shows up at most about a millisecond late. See the
/// module docs for how and where.
#[inline]
pub(crate) fn now_ms() -> i64 {
    now_ms_using(true)
}

/// [`now_ms`], with the TSC cache (`use_tsc`, where the machine allows it) or without it (every
/// call reads the system clock).
#[inline]
fn now_ms_using(use_tsc: bool) -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        tsc::now_ms(use_tsc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = use_tsc;
        read_system().0
    }
}

/// One system-clock reading: the millisecond since the epoch, and the nanoseconds already past
/// within it (`None` before the epoch, where the millisecond is clamped to 0).
fn read_system() -> (i64, Option<u64>) {
    #[cfg(test)]
    tests::count_read();
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Some(u64::from(d.subsec_nanos() % 1_000_000)),
        ),
        Err(_) => (0, None),
    }
}

/// The TSC is trusted when it is invariant and the kernel's clocksource is `tsc`.
fn tsc_trusted(invariant: bool, clocksource: Option<&str>) -> bool {
    invariant && clocksource.map(str::trim) == Some("tsc")
}

/// One TSC reading bracketed by its neighbours, paired with a monotonic-clock reading.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// TSC read before `at`.
    before: u64,
    /// The monotonic clock.
    at: Instant,
    /// TSC read after `at`.
    after: u64,
    /// The wall clock, right after: a suspend between two samples advances it (and, on some
    /// machines, the TSC) but not the monotonic clock; see [`calibration_agrees`].
    wall: SystemTime,
}

/// Whether the wall clock advanced as the monotonic clock did between two calibration samples
/// (within 0.1 % and 100 µs): otherwise the machine was suspended (a TSC that keeps counting
/// through a suspend would look faster than it is) or the wall clock was stepped, and the
/// calibration starts again.
fn calibration_agrees(
    mono_ns: u64,
    wall: Result<std::time::Duration, std::time::SystemTimeError>,
) -> bool {
    let Ok(wall) = wall else {
        return false;
    };
    let wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
    wall_ns.abs_diff(mono_ns) <= mono_ns / 1000 + 100_000
}

/// What two samples say about the TSC rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Estimate {
    /// Too close together: wait for a later sample.
    Wait,
    /// The readings were too loose (the thread was interrupted): start again from the later one.
    Restart,
    /// The usable lower bound of the rate, fixed point with [`RATE_FRAC_BITS`] fractional bits.
    Rate(u64),
    /// No plausible TSC rate (outside 0.2-20 GHz, or the TSC went back): do not use the TSC.
    Nonsense,
}

/// The TSC rate from a start and an end sample `elapsed_ns` apart on the monotonic clock.
///
/// The ticks counted are only those certainly between the two monotonic readings
/// (`end.before - start.after`), so the rate is a lower bound; it is then lowered by
/// [`RATE_MARGIN_PCT`] %.
fn estimate(start: (u64, u64), end: (u64, u64), elapsed_ns: u64) -> Estimate {
    let ((s_before, s_after), (e_before, e_after)) = (start, end);
    if s_after < s_before || e_after < e_before {
        return Estimate::Nonsense;
    }
    if elapsed_ns < CALIBRATION_NS {
        return Estimate::Wait;
    }
    if e_before <= s_after {
        // A millisecond later the TSC has not advanced.
        return Estimate::Nonsense;
    }
    let ticks = e_before - s_after;
    let loose = (s_after - s_before).saturating_add(e_after - e_before);
    if loose.saturating_mul(1000) > ticks {
        return Estimate::Restart;
    }
    let rate = (u128::from(ticks) << RATE_FRAC_BITS) / u128::from(elapsed_ns);
    match u64::try_from(rate) {
        Ok(rate) if (RATE_MIN..=RATE_MAX).contains(&rate) => {
            Estimate::Rate(rate / 100 * (100 - RATE_MARGIN_PCT))
        }
        _ => Estimate::Nonsense,
    }
}

/// The ticks during which the millisecond read `past_ns` into it certainly has not ended, at the
/// lower-bound `rate`, less the slack.
fn window_ticks(rate: u64, past_ns: u64) -> u64 {
    let remaining = 1_000_000u64
        .saturating_sub(past_ns)
        .saturating_sub(SLACK_NS);
    let ticks = (u128::from(remaining) * u128::from(rate)) >> RATE_FRAC_BITS;
    u64::try_from(ticks).unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    use super::{estimate, read_system, tsc_trusted, window_ticks, Estimate, Sample};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;
    use std::time::SystemTime;

    /// Per thread: the last system-clock millisecond, the TSC right before it, the window.
    #[derive(Clone, Copy)]
    struct Cache {
        tsc: u64,
        window: u64,
        ms: i64,
    }

    thread_local! {
        static CACHE: Cell<Cache> = const { Cell::new(Cache { tsc: 0, window: 0, ms: 0 }) };
    }

    /// The rate in use (lower bound, fixed point); 0 while unknown, [`RATE_OFF`] if rejected.
    static RATE: AtomicU64 = AtomicU64::new(0);
    /// [`RATE`] when the calibration found no plausible rate: the TSC is not used.
    const RATE_OFF: u64 = u64::MAX;
    /// The calibration's start sample.
    static CALIBRATION: Mutex<Option<Sample>> = Mutex::new(None);
    /// Whether this machine's TSC may be used (decided once per process).
    static TRUSTED: OnceLock<bool> = OnceLock::new();

    /// The TSC, unfenced: the hot path (see `SLACK_NS`).
    #[inline(always)]
    fn rdtsc() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 processor and only reads a counter.
        unsafe { std::arch::x86_64::_rdtsc() }
    }

    /// The TSC, fenced on both sides: it is read after every earlier instruction and before any
    /// later one (so before a clock reading that follows it).
    fn rdtsc_fenced() -> u64 {
        use std::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: LFENCE (SSE2, part of x86_64) and RDTSC exist on every x86_64 processor; they
        // only order execution and read a counter.
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }

    /// See [`super::now_ms`].
    #[inline(always)]
    pub(super) fn now_ms(use_tsc: bool) -> i64 {
        let c = CACHE.get();
        // No window (the TSC not trusted, or not calibrated yet): no TSC read at all.
        if c.window != 0 && rdtsc().wrapping_sub(c.tsc) < c.window {
            return c.ms;
        }
        refresh(use_tsc)
    }

    /// Reads the system clock and refreshes this thread's cache.
    #[cold]
    #[inline(never)]
    fn refresh(use_tsc: bool) -> i64 {
        let rate = if use_tsc { rate() } else { 0 };
        if rate == 0 {
            // Plain `SystemTime` (and the window stays 0, so the next call reads it too).
            let (ms, _) = read_system();
            CACHE.set(Cache {
                tsc: 0,
                window: 0,
                ms,
            });
            return ms;
        }
        let tsc = rdtsc_fenced();
        let (ms, past_ns) = read_system();
        let window = match past_ns {
            Some(past) if rate != 0 => window_ticks(rate, past),
            _ => 0,
        };
        CACHE.set(Cache { tsc, window, ms });
        ms
    }

    /// Whether the TSC may be used on this machine.
    pub(super) fn trusted() -> bool {
        *TRUSTED.get_or_init(|| {
            let leaf = 0x8000_0007;
            let invariant = std::arch::x86_64::__cpuid(0x8000_0000).eax >= leaf
                && std::arch::x86_64::__cpuid(leaf).edx & (1 << 8) != 0;
            let source = std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .ok();
            let trusted = tsc_trusted(invariant, source.as_deref());
            tracing::debug!(
                invariant,
                clocksource = source.as_deref().map(str::trim),
                trusted,
                "record timestamp clock"
            );
            trusted
        })
    }

    /// The TSC rate to use; 0 when the TSC is not used (yet).
    fn rate() -> u64 {
        match RATE.load(Ordering::Relaxed) {
            RATE_OFF => 0,
            0 if trusted() => calibrate(),
            rate => rate,
        }
    }

    /// Takes a calibration sample; returns the rate once two samples far enough apart exist.
    /// Never blocks: a thread that finds another one calibrating goes on without the TSC.
    fn calibrate() -> u64 {
        let Ok(mut start) = CALIBRATION.try_lock() else {
            return 0;
        };
        let before = rdtsc_fenced();
        let at = Instant::now();
        let after = rdtsc_fenced();
        let wall = SystemTime::now();
        let now = Sample {
            before,
            at,
            after,
            wall,
        };
        let Some(first) = *start else {
            *start = Some(now);
            return 0;
        };
        let elapsed = u64::try_from(now.at.duration_since(first.at).as_nanos()).unwrap_or(0);
        if !super::calibration_agrees(elapsed, now.wall.duration_since(first.wall)) {
            *start = Some(now);
            return 0;
        }
        match estimate(
            (first.before, first.after),
            (now.before, now.after),
            elapsed,
        ) {
            Estimate::Wait => 0,
            Estimate::Restart => {
                *start = Some(now);
                0
            }
            Estimate::Rate(rate) => {
                RATE.store(rate, Ordering::Relaxed);
                tracing::debug!(
                    mhz = ((rate >> (super::RATE_FRAC_BITS - 10)) * 1000) >> 10,
                    "record timestamp clock: TSC rate (lower bound)"
                );
                rate
            }
            Estimate::Nonsense => {
                RATE.store(RATE_OFF, Ordering::Relaxed);
                tracing::debug!("record timestamp clock: implausible TSC rate, not used");
                0
            }
        }
    }

    /// The rate in use (0: none yet or none), for tests.
    #[cfg(test)]
    pub(super) fn rate_in_use() -> u64 {
        match RATE.load(Ordering::Relaxed) {
            RATE_OFF => 0,
            rate => rate,
        }
    }
}

#[cfg(test)]
mod tests {

    /// A calibration spanning a suspend (the wall clock ran on, the monotonic clock did not)
    /// or a wall-clock step starts again; ordinary drift within 0.1 % does not.
    #[test]
    fn calibration_needs_the_wall_clock_to_agree_with_the_monotonic_one() {
        use std::time::Duration;
        let ms = |n: u64| Ok(Duration::from_millis(n));
        assert!(calibration_agrees(2_000_000, ms(2)));
        assert!(calibration_agrees(
            2_000_000,
            Ok(Duration::from_nanos(2_050_000))
        ));
        assert!(calibration_agrees(
            1_000_000_000,
            Ok(Duration::from_nanos(1_000_900_000))
        ));
        assert!(
            !calibration_agrees(2_000_000, ms(3_600_000)),
            "an hour asleep"
        );
        assert!(!calibration_agrees(
            1_000_000_000,
            Ok(Duration::from_nanos(1_002_000_000))
        ));
        assert!(!calibration_agrees(2_000_000, ms(0)), "stepped back");
        let back =
            std::time::UNIX_EPOCH.duration_since(std::time::UNIX_EPOCH + Duration::from_secs(1));
        assert!(
            !calibration_agrees(2_000_000, back),
            "the wall clock went backwards"
        );
    }
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        static READS: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts a system-clock read by the clock (per thread, so parallel tests do not mix).
    pub(super) fn count_read() {
        READS.set(READS.get() + 1);
    }

    fn reads() -> u64 {
        READS.get()
    }

    /// The reference: `SystemTime` in milliseconds, read independently of the clock.
    fn sys_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// Whether this machine uses the TSC cache.
    fn tsc_used() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            tsc::trusted()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Calls `f` (the clock under test) bracketed by reference readings, `n` times, with
    /// `spin(i)` between calls; panics at the first call outside its bracket.
    fn bracket(n: u64, use_tsc: bool, spin: impl Fn(u64) -> Duration) {
        for i in 0..n {
            let before = sys_ms();
            let got = now_ms_using(use_tsc);
            let after = sys_ms();
            assert!(
                before <= got && got <= after,
                "call {i}: {before} <= {got} <= {after} does not hold"
            );
            let pause = spin(i);
            if !pause.is_zero() {
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
        }
    }

    #[test]
    fn clock_every_call_is_bracketed_by_system_clock_readings() {
        bracket(200_000, true, |_| Duration::ZERO);
    }

    #[test]
    fn clock_calls_with_pauses_over_30_ms_are_bracketed() {
        let start = Instant::now();
        let mut i = 0;
        // At least 30 ms and 600 calls (about 1200 fit in 30 ms when the thread is not
        // preempted), with pauses of 0-49 µs varied so that calls land all over each millisecond.
        while start.elapsed() < Duration::from_millis(30) || i < 600 {
            bracket(1, true, |_| Duration::from_micros((i * 7919) % 50));
            i += 1;
        }
    }

    #[test]
    fn clock_threads_each_get_bracketed_readings() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    bracket(50_000, true, move |i| Duration::from_micros((i + t) % 3))
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a clock thread failed");
        }
    }

    #[test]
    fn clock_never_goes_back_within_a_thread() {
        let start = Instant::now();
        let mut last = now_ms();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(20) {
            let now = now_ms();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
            calls += 1;
        }
        assert!(calls > 1000);
    }

    #[test]
    fn clock_reads_the_system_clock_about_once_per_millisecond() {
        // At least 5 ms of calls once the rate is known (the first calls calibrate it).
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(3) {
            now_ms();
        }
        let (reads_before, begin) = (reads(), Instant::now());
        let mut calls = 0u64;
        while begin.elapsed() < Duration::from_millis(10) || calls < 100_000 {
            std::hint::black_box(now_ms());
            calls += 1;
        }
        let reads = reads() - reads_before;
        let ms = begin.elapsed().as_millis() as u64 + 1;
        if tsc_used() {
            #[cfg(target_arch = "x86_64")]
            assert_ne!(tsc::rate_in_use(), 0, "the TSC rate was never measured");
            // A few reads per millisecond boundary plus those in the slack before it.
            assert!(
                reads <= ms * 200,
                "{reads} system-clock reads for {calls} calls over {ms} ms"
            );
            assert!(reads < calls / 10, "{reads} reads for {calls} calls");
        } else {
            assert_eq!(reads, calls, "without the TSC every call reads the clock");
        }
    }

    #[test]
    fn clock_fallback_reads_every_time_and_is_bracketed() {
        let reads_before = reads();
        bracket(20_000, false, |i| Duration::from_micros(i % 2));
        assert_eq!(reads() - reads_before, 20_000);
    }

    #[test]
    fn clock_trusts_the_tsc_only_when_invariant_under_the_tsc_clocksource() {
        assert!(tsc_trusted(true, Some("tsc\n")));
        assert!(!tsc_trusted(false, Some("tsc\n")));
        assert!(!tsc_trusted(true, Some("kvm-clock\n")));
        assert!(!tsc_trusted(true, Some("hpet")));
        assert!(!tsc_trusted(true, None));
    }

    #[test]
    fn clock_rate_estimate_rejects_nonsense_and_bounds_from_below() {
        let ms = 1_000_000;
        // 3 GHz over 10 ms: a lower bound, lowered by the margin.
        let ticks = 30_000_000;
        let Estimate::Rate(rate) = estimate((100, 150), (100 + ticks, 100 + ticks + 40), 10 * ms)
        else {
            panic!("a 3 GHz TSC was not accepted");
        };
        let exact = 3u64 << RATE_FRAC_BITS;
        assert!(rate < exact * (100 - RATE_MARGIN_PCT) / 100 + (1 << 20));
        assert!(rate > exact * 97 / 100);
        // Too short to tell.
        assert_eq!(
            estimate((0, 10), (3_000_000, 3_000_010), ms - 1),
            Estimate::Wait
        );
        // Loose readings (the thread was preempted between them): start again.
        assert_eq!(
            estimate((0, 10_000), (3_010_000, 3_010_010), ms),
            Estimate::Restart
        );
        // Out of the plausible range: 0.1 GHz and 25 GHz.
        assert_eq!(estimate((0, 1), (100_001, 100_002), ms), Estimate::Nonsense);
        assert_eq!(
            estimate((0, 1), (25_000_001, 25_000_002), ms),
            Estimate::Nonsense
        );
        // The TSC went back, or a sample is inside out.
        assert_eq!(
            estimate((5_000_000, 5_000_001), (10, 11), ms),
            Estimate::Nonsense
        );
        assert_eq!(
            estimate((10, 5), (3_000_000, 3_000_001), ms),
            Estimate::Nonsense
        );
        // The bounds themselves are accepted.
        assert!(matches!(
            estimate((0, 0), (200_000, 200_000), ms),
            Estimate::Rate(_)
        ));
        assert!(matches!(
            estimate((0, 0), (20_000_000, 20_000_000), ms),
            Estimate::Rate(_)
        ));
    }

    #[test]
    fn clock_window_ends_before_the_millisecond_does() {
        let rate = 3u64 << RATE_FRAC_BITS; // 3 ticks per ns
                                           // Read at the start of a millisecond: the whole millisecond but the slack.
        assert_eq!(window_ticks(rate, 0), 3 * (1_000_000 - SLACK_NS));
        // Read 400 µs in.
        assert_eq!(window_ticks(rate, 400_000), 3 * (600_000 - SLACK_NS));
        // Read inside the slack: no window at all.
        assert_eq!(window_ticks(rate, 1_000_000 - SLACK_NS), 0);
        assert_eq!(window_ticks(rate, 999_999), 0);
        assert_eq!(window_ticks(0, 0), 0);
    }

    /// Prints the cost per call and the system-clock reads per million calls; run with
    /// `cargo test --release -p krust-client --lib clock_measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, meaningful only in a release build; prints numbers"]
    fn clock_measure() {
        let n = 20_000_000u64;
        for _ in 0..3 {
            let start = Instant::now();
            let mut sum = 0i64;
            for _ in 0..n {
                sum = sum.wrapping_add(sys_ms());
            }
            std::hint::black_box(sum);
            let sys = start.elapsed().as_nanos() as f64 / n as f64;
            let (reads_before, start) = (reads(), Instant::now());
            let mut sum = 0i64;
            for _ in 0..n {
                sum = sum.wrapping_add(now_ms());
            }
            std::hint::black_box(sum);
            let fast = start.elapsed().as_nanos() as f64 / n as f64;
            let per_million = (reads() - reads_before) as f64 * 1e6 / n as f64;
            println!(
                "SystemTime ms: {sys:.2} ns/call; clock::now_ms: {fast:.2} ns/call, \
                 {per_million:.0} system-clock reads per 1,000,000 calls (tsc used: {})",
                tsc_used()
            );
        }
    }
}
