//! The project-wide rule for tests that need a real broker.
//!
//! Such a test finds the broker through `KRUST_BROKER=host:port` (`scripts/test.sh` starts tansu
//! and sets it). Without it the test is skipped with a notice on stderr, except under
//! `CI=true` (or `CI=1`), where a missing broker is a failure: real-broker tests are never
//! skipped silently in CI.

/// Whether this run is a CI run (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// The broker address from `KRUST_BROKER`, or `None` (after printing a notice) when it is not
/// set outside CI.
///
/// # Panics
/// Under CI, when `KRUST_BROKER` is not set.
pub fn real_broker() -> Option<String> {
    match std::env::var("KRUST_BROKER") {
        Ok(b) if !b.trim().is_empty() => Some(b.trim().to_string()),
        _ => {
            assert!(
                !in_ci(),
                "KRUST_BROKER is not set, and CI=true forbids skipping real-broker tests \
                 (bash scripts/test.sh starts a broker and sets it)"
            );
            eprintln!("skipped: KRUST_BROKER is not set (bash scripts/test.sh sets it)");
            None
        }
    }
}
