//! Seeds for randomised tests: taken from an environment variable when set (to replay a run),
//! otherwise from the clock, and printed either way so a failing run can be replayed.

/// The seed named by the environment variable `var` if it holds a number, else one taken from
/// the clock. Prints `var=seed` to stderr, the line to paste before the test command to replay
/// the run. Never 0.
pub fn test_seed(var: &str) -> u64 {
    let seed = seed_from(std::env::var(var).ok().as_deref());
    eprintln!("{var}={seed}");
    seed
}

/// `value` parsed as a seed, else a seed from the clock; never 0.
fn seed_from(value: Option<&str>) -> u64 {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
        })
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_seed_replays_and_clock_seed_is_nonzero() {
        assert_eq!(seed_from(Some("12345")), 12345);
        assert_eq!(seed_from(Some(" 77\n")), 77);
        assert_eq!(seed_from(Some("0")), 1);
        assert_ne!(seed_from(Some("not a number")), 0);
        assert_ne!(seed_from(None), 0);
        // An unset variable falls back to the clock too.
        assert_ne!(test_seed("KRUST_TESTKIT_SEED_NEVER_SET"), 0);
    }
}
