//! Payloads shared by the benches.

use krust_core::backoff::SmallRng;

/// `n` records of a 9-byte key and a 100-byte JSON-like value, the same on every run (fixed
/// seed).
pub fn json_records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = SmallRng::new(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let x = rng.next_u64();
            let value = format!(
                "{{\"id\":{i},\"user\":\"u{:05}\",\"event\":\"{}\",\"amount\":{}.{:02}}}",
                x % 50_000,
                ["click", "view", "purchase", "cart"][(x >> 20) as usize % 4],
                (x >> 8) % 1000,
                (x >> 4) % 100
            );
            let mut value = value.into_bytes();
            value.resize(100, b' ');
            (format!("key-{i:05}").into_bytes(), value)
        })
        .collect()
}
