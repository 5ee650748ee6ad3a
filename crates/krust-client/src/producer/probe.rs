//! Latency probe (measurement aid, off unless `KRUST_LAT_PROBE` is set in the environment).
//!
//! When on, the driver records for every acknowledged record when it reached the driver,
//! when its batch was drained into a Produce request (and how many requests were then in
//! flight to that broker), when the driver handled the answer, and when it resolved the
//! record's delivery. Rows are kept in completion order (for one partition: record order), as
//! nanoseconds since [`base`]. Costs one `Mutex` push per record while on; nothing while off.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// One acknowledged record's stage times, ns since [`base`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    /// The driver took the record from its command queue.
    pub driver: u64,
    /// Its batch was drained into a Produce request.
    pub drained: u64,
    /// The Produce request's future was first polled (encode and hand-off to the writer).
    pub polled: u64,
    /// The driver handled the answer.
    pub answered: u64,
    /// Its delivery was resolved.
    pub resolved: u64,
    /// Produce requests in flight to the broker when its request was started (itself not
    /// counted).
    pub depth: u32,
    /// Records in its request.
    pub request_records: u32,
}

/// Per-request facts the driver carries from the drain to the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestProbe {
    pub drained: Instant,
    pub polled: Instant,
    pub answered: Instant,
    pub depth: u32,
    pub records: u32,
}

fn on_cell() -> &'static bool {
    static ON: OnceLock<bool> = OnceLock::new();
    ON.get_or_init(|| std::env::var_os("KRUST_LAT_PROBE").is_some())
}

/// Whether the probe records (`KRUST_LAT_PROBE` set).
pub fn enabled() -> bool {
    *on_cell()
}

/// The instant the row times count from.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `t` as ns since [`base`].
pub fn ns(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_nanos() as u64
}

fn rows() -> &'static Mutex<Vec<Row>> {
    static ROWS: OnceLock<Mutex<Vec<Row>>> = OnceLock::new();
    ROWS.get_or_init(|| Mutex::new(Vec::new()))
}

pub(crate) fn record(driver: Instant, req: &RequestProbe, resolved: Instant) {
    rows().lock().unwrap_or_else(|e| e.into_inner()).push(Row {
        driver: ns(driver),
        drained: ns(req.drained),
        polled: ns(req.polled),
        answered: ns(req.answered),
        resolved: ns(resolved),
        depth: req.depth,
        request_records: req.records,
    });
}

/// Takes the rows recorded so far.
pub fn take() -> Vec<Row> {
    std::mem::take(&mut *rows().lock().unwrap_or_else(|e| e.into_inner()))
}
