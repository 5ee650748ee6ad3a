//! The client side of SCRAM (RFC 5802, with the SHA-256 and SHA-512 hashes of RFC 7677), as a
//! sans-IO state machine: it turns server messages into client messages and never touches a
//! socket or a clock.
//!
//! The exchange, as Kafka carries it in SaslAuthenticate requests:
//!
//! 1. client-first: `n,,n=<user>,r=<client nonce>`
//! 2. server-first: `r=<client nonce + server nonce>,s=<salt>,i=<iterations>`
//! 3. client-final: `c=biws,r=<nonce>,p=<proof>`; the proof shows the client knows the salted
//!    password without sending it
//! 4. server-final: `v=<server signature>`; the client checks it, which shows the *server* knows
//!    the password too. A server that cannot prove it (a wrong signature, an `e=` error, no
//!    signature at all) is rejected even if the Kafka-level answer said success.
//!
//! PBKDF2 is slow on purpose, so computing the salted password is a separate step
//! ([`salted_password`]) that the caller runs off the async executor.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::secret::Secret;

/// The fewest PBKDF2 iterations accepted from a server (RFC 7677 and Kafka both use 4096 as the
/// floor). Fewer would make a captured exchange cheap to brute-force.
pub const MIN_ITERATIONS: u32 = 4096;

/// The most PBKDF2 iterations accepted from a server. Kafka caps stored credentials at 16384;
/// the bound keeps a hostile server from making the client compute for minutes.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (RFC 5802). Only for the RFC's test vector; Kafka has no SCRAM-SHA-1.
    #[cfg(test)]
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

macro_rules! with_hash {
    ($h:expr, $D:ident => $body:expr) => {
        match $h {
            #[cfg(test)]
            ScramHash::Sha1 => {
                type $D = sha1::Sha1;
                $body
            }
            ScramHash::Sha256 => {
                type $D = Sha256;
                $body
            }
            ScramHash::Sha512 => {
                type $D = Sha512;
                $body
            }
        }
    };
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        with_hash!(self, D => {
            let mut m = <Hmac<D> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        })
    }

    /// Constant-time check that `HMAC(key, data) == expected`.
    fn hmac_verify(self, key: &[u8], data: &[u8], expected: &[u8]) -> bool {
        with_hash!(self, D => {
            let mut m = <Hmac<D> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.verify_slice(expected).is_ok()
        })
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        with_hash!(self, D => D::digest(data).to_vec())
    }

    fn output_len(self) -> usize {
        with_hash!(self, D => <D as Digest>::output_size())
    }
}

/// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2 with HMAC over the mechanism's hash.
/// Slow by design (thousands of HMACs): run it with `spawn_blocking` in async code.
pub fn salted_password(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; hash.output_len()];
    with_hash!(hash, D => pbkdf2::pbkdf2_hmac::<D>(password.as_bytes(), salt, iterations, &mut out));
    out
}

/// What the server's first message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The combined nonce (client nonce followed by the server's part).
    pub nonce: String,
    /// The salt, decoded.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

#[derive(Debug)]
enum State {
    Initial,
    SentFirst,
    GotServerFirst {
        server_first: String,
        first: ServerFirst,
    },
    SentFinal {
        auth_message: String,
        server_key: Secret<Vec<u8>>,
    },
    Done,
}

/// The client side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: Secret<String>,
    client_nonce: String,
    client_first_bare: String,
    state: State,
}

/// Escapes a user name as RFC 5802's `saslname` (`=` and `,` are special).
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Splits `a=x,b=y` into attributes, in order.
fn attributes(msg: &str) -> Result<Vec<(char, &str)>, String> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(format!("malformed SCRAM attribute `{}`", printable(part))),
            }
        })
        .collect()
}

/// Describes an RFC 5802 `e=` server error, naming the likely cause for the common ones.
fn server_error(e: &str) -> String {
    let e = printable(e);
    match e.as_str() {
        "invalid-proof" => "the broker rejected the password (invalid-proof)".into(),
        "unknown-user" => "the broker does not know this user (unknown-user)".into(),
        _ => format!("the server refused: {e}"),
    }
}

/// A server-provided string made safe to put into an error message (bounded, printable).
fn printable(s: &str) -> String {
    s.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl ScramClient {
    /// A client for `username`/`password` with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: Secret<String>) -> Self {
        let mut raw = [0u8; 24];
        rand::Rng::fill(&mut rand::thread_rng(), &mut raw[..]);
        Self::with_nonce(hash, username, password, &B64.encode(raw))
    }

    /// A client with a given nonce (for test vectors). The nonce must be printable ASCII
    /// without `,`.
    pub fn with_nonce(
        hash: ScramHash,
        username: &str,
        password: Secret<String>,
        nonce: &str,
    ) -> Self {
        ScramClient {
            hash,
            username: saslname(username),
            password,
            client_nonce: nonce.to_string(),
            client_first_bare: String::new(),
            state: State::Initial,
        }
    }

    /// The client-first message (`n,,n=<user>,r=<nonce>`).
    pub fn client_first(&mut self) -> Vec<u8> {
        self.client_first_bare = format!("n={},r={}", self.username, self.client_nonce);
        self.state = State::SentFirst;
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Reads the server-first message and checks it: the nonce must extend ours, the salt must
    /// be base64, the iteration count within [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<ServerFirst, String> {
        if !matches!(self.state, State::SentFirst) {
            return Err("SCRAM server-first message out of order".into());
        }
        let text =
            std::str::from_utf8(msg).map_err(|_| "SCRAM server-first message is not UTF-8")?;
        let attrs = attributes(text)?;
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(server_error(e));
        }
        if attrs.first().map(|(k, _)| *k) == Some('m') {
            return Err("the server requires a SCRAM extension this client does not know".into());
        }
        let get = |key: char| {
            attrs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("SCRAM server-first message has no `{key}=`"))
        };
        let nonce = get('r')?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() <= self.client_nonce.len() {
            return Err("SCRAM server nonce does not extend the client nonce".into());
        }
        let salt = B64
            .decode(get('s')?)
            .map_err(|_| "SCRAM salt is not valid base64")?;
        let iterations: u32 = get('i')?
            .parse()
            .map_err(|_| "SCRAM iteration count is not a number")?;
        if iterations < MIN_ITERATIONS {
            return Err(format!(
                "the server asks for {iterations} PBKDF2 iterations, fewer than the minimum {MIN_ITERATIONS}"
            ));
        }
        if iterations > MAX_ITERATIONS {
            return Err(format!(
                "the server asks for {iterations} PBKDF2 iterations, more than the maximum {MAX_ITERATIONS}"
            ));
        }
        let first = ServerFirst {
            nonce: nonce.to_string(),
            salt,
            iterations,
        };
        self.state = State::GotServerFirst {
            server_first: text.to_string(),
            first: first.clone(),
        };
        Ok(first)
    }

    /// The password, for computing [`salted_password`] off the executor.
    pub fn password(&self) -> &Secret<String> {
        &self.password
    }

    /// The client-final message, given the salted password computed for the server-first
    /// message (see [`salted_password`]).
    pub fn client_final(&mut self, salted: &[u8]) -> Result<Vec<u8>, String> {
        let State::GotServerFirst {
            server_first,
            first,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err("SCRAM client-final requested out of order".into());
        };
        let h = self.hash;
        let without_proof = format!("c=biws,r={}", first.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let client_key = h.hmac(salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = Secret::new(h.hmac(salted, b"Server Key"));
        self.state = State::SentFinal {
            auth_message,
            server_key,
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Convenience for synchronous callers (tests): reads server-first, computes the salted
    /// password here and returns the client-final message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let first = self.handle_server_first(server_first)?;
        let salted = salted_password(
            self.hash,
            self.password.expose(),
            &first.salt,
            first.iterations,
        );
        self.client_final(&salted)
    }

    /// Checks the server-final message: it must carry the signature only a server that knows
    /// the password can compute.
    pub fn handle_server_final(&mut self, msg: &[u8]) -> Result<(), String> {
        let State::SentFinal {
            auth_message,
            server_key,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err("SCRAM server-final message out of order".into());
        };
        let text =
            std::str::from_utf8(msg).map_err(|_| "SCRAM server-final message is not UTF-8")?;
        let attrs = attributes(text)?;
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(server_error(e));
        }
        let Some((_, v)) = attrs.iter().find(|(k, _)| *k == 'v') else {
            return Err(
                "the server sent no signature: it did not prove it knows the password".into(),
            );
        };
        let signature = B64
            .decode(v)
            .map_err(|_| "SCRAM server signature is not valid base64")?;
        if !self
            .hash
            .hmac_verify(server_key.expose(), auth_message.as_bytes(), &signature)
        {
            return Err(
                "the server's signature is wrong: it does not know the password (possible impostor)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether the exchange finished (successfully or not).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5 (SCRAM-SHA-1): user `user`, password `pencil`.
    #[test]
    fn rfc5802_sha1_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            Secret::from("pencil"),
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .respond(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.handle_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
    }

    /// RFC 7677 section 3 (SCRAM-SHA-256): user `user`, password `pencil`.
    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha256,
            "user",
            Secret::from("pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .respond(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    fn after_final() -> ScramClient {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha256,
            "user",
            Secret::from("pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        c.client_first();
        c.respond(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
        c
    }

    #[test]
    fn malicious_server_signature_is_rejected() {
        // The RFC 7677 signature with its first character changed.
        let e = after_final()
            .handle_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(e.contains("does not know the password"), "{e}");
        // A signature of the right length made up by a server without the password.
        let fake = B64.encode([0u8; 32]);
        let e = after_final()
            .handle_server_final(format!("v={fake}").as_bytes())
            .unwrap_err();
        assert!(e.contains("does not know the password"), "{e}");
        // No signature at all, or an error instead of one.
        let e = after_final().handle_server_final(b"").unwrap_err();
        assert!(e.contains("malformed") || e.contains("no signature"), "{e}");
        let e = after_final()
            .handle_server_final(b"e=unknown-user")
            .unwrap_err();
        assert!(e.contains("unknown-user"), "{e}");
        let e = after_final().handle_server_final(b"v=!!!").unwrap_err();
        assert!(e.contains("base64"), "{e}");
    }

    #[test]
    fn hostile_server_first_messages_are_rejected() {
        let first = |msg: &[u8]| {
            let mut c = ScramClient::with_nonce(ScramHash::Sha256, "u", Secret::from("p"), "abc");
            c.client_first();
            c.handle_server_first(msg).unwrap_err()
        };
        assert!(first(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096").contains("nonce"));
        assert!(first(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096").contains("nonce"));
        assert!(first(b"r=abcd,s=QSXCR+Q6sek8bf92,i=1").contains("fewer"));
        assert!(first(b"r=abcd,s=QSXCR+Q6sek8bf92,i=4000000000").contains("more"));
        assert!(first(b"r=abcd,s=%%%,i=4096").contains("base64"));
        assert!(first(b"r=abcd,i=4096").contains("s="));
        assert!(first(b"m=ext,r=abcd,s=QSXCR+Q6sek8bf92,i=4096").contains("extension"));
        assert!(first(b"e=other-error").contains("other-error"));
        assert!(first(b"garbage").contains("malformed"));
        assert!(first(&[0xff, 0xfe]).contains("UTF-8"));
    }

    /// Random bytes, and valid messages broken at random, through both parsers: every answer
    /// is an error or (for a mutated server-first that is still well formed) a checked one;
    /// nothing panics. Seed: `KRUST_SCRAM_SEED`.
    #[test]
    fn garbage_server_messages_are_errors_not_panics() {
        use krust_core::backoff::SmallRng;
        let mut rng = SmallRng::new(krust_testkit::test_seed("KRUST_SCRAM_SEED"));
        const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
        let valid_first: &[u8] =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let valid_final: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let alphabet = b"rsievm=,%+/0123456789abcXYZ\x00\xff\xc3\xa9";
        let client = || {
            let mut c =
                ScramClient::with_nonce(ScramHash::Sha256, "user", Secret::from("pencil"), NONCE);
            c.client_first();
            c
        };
        // The RFC 7677 exchange's real key: the genuine server-final is accepted with it, so a
        // refusal below is the broken signature's doing.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(ScramHash::Sha256, "pencil", &salt, 4096);
        {
            let mut c = client();
            c.handle_server_first(valid_first).unwrap();
            c.client_final(&salted).unwrap();
            c.handle_server_final(valid_final)
                .expect("the genuine server-final");
        }
        for round in 0..2_000 {
            // Garbage: random bytes, or random attribute-like text.
            let len = rng.below(120) as usize;
            let garbage: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| rng.next_u64() as u8).collect()
            } else {
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect()
            };
            // A valid message cut short, or with one byte changed.
            let mut mutated = valid_first.to_vec();
            if rng.below(2) == 0 {
                mutated.truncate(rng.below(mutated.len() as u64) as usize);
            } else {
                let at = rng.below(mutated.len() as u64) as usize;
                mutated[at] = alphabet[rng.below(alphabet.len() as u64) as usize];
            }
            for msg in [&garbage, &mutated] {
                match client().handle_server_first(msg) {
                    Err(e) => assert!(!e.is_empty()),
                    Ok(first) => {
                        assert!(msg == &mutated, "random bytes accepted: {msg:?}");
                        assert!(first.nonce.starts_with(NONCE) && first.nonce.len() > NONCE.len());
                        assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&first.iterations));
                    }
                }
            }
            // After a genuine server-first, a server-final of garbage or a broken signature
            // is always refused.
            let mut broken = valid_final.to_vec();
            let at = rng.range(2, broken.len() as u64) as usize;
            broken[at] = if broken[at] == b'A' { b'B' } else { b'A' };
            for msg in [&garbage, &broken] {
                let mut c = client();
                c.handle_server_first(valid_first).unwrap();
                c.client_final(&salted).unwrap();
                let e = c.handle_server_final(msg).unwrap_err();
                assert!(!e.is_empty());
                assert!(c.is_done());
            }
        }
    }

    #[test]
    fn user_names_are_escaped_and_password_not_debugged() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha512, "a=b,c", Secret::from("sekrit-pw"), "n1");
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n1");
        assert!(!format!("{c:?}").contains("sekrit-pw"));
    }
}
