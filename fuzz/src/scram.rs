//! The SCRAM client's parsing of what a SASL server sends (`krust_client::security::scram`):
//! server-first and server-final messages. Kept out of `entry.rs` because it needs
//! `krust-client`, which `crates/krust-wire/tests/corpus.rs` (including `entry.rs` on stable)
//! cannot depend on; on stable, `crates/krust-client/tests/security.rs` replays this target's
//! corpus through this file, and the garbage-input unit test in `scram.rs` covers random input.

use krust_client::security::scram::{ScramClient, ScramHash, MAX_ITERATIONS, MIN_ITERATIONS};
use krust_client::security::Secret;

/// The client nonce every fuzzed exchange starts with.
const CLIENT_NONCE: &str = "fuzz-client-nonce";

/// Layout: `[flags]`, then the server-first message, then (after the first 0x00 byte, if any)
/// the server-final message. Flags: bit 0 SCRAM-SHA-512 (clear: SHA-256).
///
/// Neither parser may panic. An accepted server-first must extend the client nonce and ask for
/// an iteration count within bounds, and the client-final message must then be produced (from
/// a fixed salted password: PBKDF2 itself is not what is fuzzed, and would make each input
/// cost up to a million iterations). A server-final is checked only after that; random bytes
/// can never carry the right signature, so it must be rejected.
pub fn scram(data: &[u8]) {
    let [flags, rest @ ..] = data else {
        return;
    };
    let hash = if flags & 1 == 0 {
        ScramHash::Sha256
    } else {
        ScramHash::Sha512
    };
    let (first, last) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut client = ScramClient::with_nonce(hash, "user", Secret::from("pencil"), CLIENT_NONCE);
    client.client_first();
    let Ok(sf) = client.handle_server_first(first) else {
        return;
    };
    assert!(
        sf.nonce.starts_with(CLIENT_NONCE) && sf.nonce.len() > CLIENT_NONCE.len(),
        "accepted a nonce that does not extend ours"
    );
    assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&sf.iterations));
    let salted = [0x5a_u8; 64];
    let client_final = client
        .client_final(&salted)
        .expect("client-final after an accepted server-first");
    let expected = format!("c=biws,r={},p=", sf.nonce);
    assert!(client_final.starts_with(expected.as_bytes()));
    if let Some(last) = last {
        assert!(
            client.handle_server_final(last).is_err(),
            "accepted a server signature made without the password"
        );
        assert!(client.is_done());
    }
}
