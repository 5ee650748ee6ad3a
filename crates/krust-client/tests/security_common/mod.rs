//! A scripted in-test broker that speaks enough Kafka for authentication tests: ApiVersions,
//! SaslHandshake, SaslAuthenticate (with a real SCRAM server side computed here, PLAIN and
//! OAUTHBEARER), and Metadata once authenticated. Like Kafka, it closes the connection when any
//! other request arrives before authentication. It works over any byte stream, so the TLS tests
//! run it behind a rustls acceptor.
//!
//! The SCRAM server side is written independently of the client code in `krust_client` (it
//! uses the RustCrypto crates directly), so a client bug cannot hide behind a matching server
//! bug; the RFC vectors in the unit tests pin both to the specification.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, MetadataResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Error code SASL_AUTHENTICATION_FAILED.
pub const AUTH_FAILED: i16 = 58;
/// Error code UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_MECHANISM: i16 = 33;

/// Stored SCRAM credentials, as a Kafka broker keeps them: never the password itself.
#[derive(Clone)]
pub struct ScramCredential {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn hmac_of(sha512: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha512 {
        let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

fn hash_of(sha512: bool, data: &[u8]) -> Vec<u8> {
    if sha512 {
        Sha512::digest(data).to_vec()
    } else {
        Sha256::digest(data).to_vec()
    }
}

impl ScramCredential {
    /// Derives the stored credential for `password` (what `kafka-configs --alter
    /// --add-config SCRAM-SHA-256=[password=...]` stores).
    pub fn new(sha512: bool, password: &str, iterations: u32) -> Self {
        let salt: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        let mut salted = vec![0u8; if sha512 { 64 } else { 32 }];
        if sha512 {
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut salted);
        } else {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        }
        let client_key = hmac_of(sha512, &salted, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: hash_of(sha512, &client_key),
            server_key: hmac_of(sha512, &salted, b"Server Key"),
        }
    }
}

/// How the scripted broker behaves.
#[derive(Clone, Default)]
pub struct ServerConfig {
    /// Mechanisms offered in SaslHandshake. Empty: a non-SASL listener (SaslHandshake answers
    /// ILLEGAL_SASL_STATE and anything goes without authentication).
    pub mechanisms: Vec<&'static str>,
    /// SCRAM-SHA-256 users.
    pub scram256: BTreeMap<String, ScramCredential>,
    /// SCRAM-SHA-512 users.
    pub scram512: BTreeMap<String, ScramCredential>,
    /// PLAIN users and passwords.
    pub plain: BTreeMap<String, String>,
    /// OAUTHBEARER tokens accepted.
    pub tokens: BTreeSet<String>,
    /// session_lifetime_ms sent on success (KIP-368); 0 = none.
    pub session_lifetime_ms: i64,
    /// An impostor: accepts any SCRAM proof and answers with a signature it made up (it does
    /// not know the password).
    pub impostor: bool,
    /// Like the tansu broker with an unknown user: `e=unknown-user` in the SCRAM final message
    /// with error code 0.
    pub error_with_success_code: bool,
    /// Never answer anything (accept and read only).
    pub mute: bool,
    /// Answer ApiVersions, then never answer again.
    pub mute_after_api_versions: bool,
}

/// What the scripted broker saw.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Successful authentications (including re-authentications).
    pub authentications: AtomicUsize,
    /// Metadata requests answered.
    pub metadata: AtomicUsize,
    /// Requests refused because the connection was not (or no longer) authenticated.
    pub refused: AtomicUsize,
    /// OAUTHBEARER tokens presented, in order.
    pub tokens_seen: Mutex<Vec<String>>,
    /// Authentications per connection index.
    pub auth_per_connection: Mutex<BTreeMap<usize, usize>>,
}

/// A running scripted broker.
pub struct Server {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The port.
    pub port: u16,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Wraps accepted TCP streams (e.g. in TLS) before the Kafka protocol runs on them.
pub type Wrap = Arc<
    dyn Fn(
            tokio::net::TcpStream,
        ) -> futures::future::BoxFuture<'static, Option<Box<dyn AsyncReadWrite>>>
        + Send
        + Sync,
>;

/// A byte stream both ways.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// Starts a plaintext scripted broker.
pub async fn start(config: ServerConfig) -> Server {
    start_wrapped(config, None).await
}

/// Starts a scripted broker whose connections are first passed through `wrap`.
pub async fn start_wrapped(config: ServerConfig, wrap: Option<Wrap>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let config = Arc::new(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let index = st.connections.fetch_add(1, Ordering::SeqCst);
            let (config, st, wrap) = (config.clone(), st.clone(), wrap.clone());
            tokio::spawn(async move {
                let stream: Box<dyn AsyncReadWrite> = match wrap {
                    Some(w) => match w(tcp).await {
                        Some(s) => s,
                        None => return,
                    },
                    None => Box::new(tcp),
                };
                serve(stream, &config, &st, index, port).await;
            });
        }
    });
    Server {
        addr: format!("127.0.0.1:{port}"),
        port,
        stats,
    }
}

enum Sasl {
    None,
    Scram { sha512: bool, step: ScramStep },
    Plain,
    OAuth { failed: bool },
}

enum ScramStep {
    First,
    Final {
        cred: Option<ScramCredential>,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
}

async fn read_frame(s: &mut Box<dyn AsyncReadWrite>) -> Option<Bytes> {
    let n = s.read_i32().await.ok()?;
    if !(0..=1 << 20).contains(&n) {
        return None;
    }
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b).await.ok()?;
    Some(Bytes::from(b))
}

fn respond<R: Encodable>(api: ApiKey, version: i16, correlation: i32, body: &R) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation;
    h.encode(&mut b, api.response_header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

fn auth_response(
    error: i16,
    message: Option<&str>,
    bytes: &[u8],
    lifetime: i64,
) -> SaslAuthenticateResponse {
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = error;
    r.error_message = message.map(|m| StrBytes::from_string(m.to_string()));
    r.auth_bytes = Bytes::copy_from_slice(bytes);
    r.session_lifetime_ms = lifetime;
    r
}

async fn serve(
    mut s: Box<dyn AsyncReadWrite>,
    config: &ServerConfig,
    stats: &Stats,
    index: usize,
    port: u16,
) {
    let sasl_listener = !config.mechanisms.is_empty();
    let mut authenticated = !sasl_listener;
    let mut sasl = Sasl::None;
    let mut answered_api_versions = false;
    while let Some(mut frame) = read_frame(&mut s).await {
        if config.mute || (config.mute_after_api_versions && answered_api_versions) {
            continue;
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let Ok(api) = ApiKey::try_from(key) else {
            return;
        };
        let header =
            RequestHeader::decode(&mut frame, api.request_header_version(version)).unwrap();
        let corr = header.correlation_id;
        let out = match api {
            ApiKey::ApiVersions => {
                answered_api_versions = true;
                let mut r = ApiVersionsResponse::default();
                for (k, lo, hi) in [(18, 0, 3), (17, 0, 1), (36, 0, 2), (3, 0, 12)] {
                    let mut v = ApiVersion::default();
                    v.api_key = k;
                    v.min_version = lo;
                    v.max_version = hi;
                    r.api_keys.push(v);
                }
                respond(api, version, corr, &r)
            }
            ApiKey::SaslHandshake => {
                let req = SaslHandshakeRequest::decode(&mut frame, version).unwrap();
                let mut r = SaslHandshakeResponse::default();
                r.mechanisms = config
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m))
                    .collect();
                let m = req.mechanism.to_string();
                if !sasl_listener {
                    r.error_code = 34; // ILLEGAL_SASL_STATE
                } else if config.mechanisms.contains(&m.as_str()) {
                    // A new handshake starts a (re-)authentication: until it completes, only
                    // SASL requests are served.
                    authenticated = false;
                    sasl = match m.as_str() {
                        "SCRAM-SHA-256" => Sasl::Scram {
                            sha512: false,
                            step: ScramStep::First,
                        },
                        "SCRAM-SHA-512" => Sasl::Scram {
                            sha512: true,
                            step: ScramStep::First,
                        },
                        "PLAIN" => Sasl::Plain,
                        _ => Sasl::OAuth { failed: false },
                    };
                } else {
                    r.error_code = UNSUPPORTED_MECHANISM;
                }
                respond(api, version, corr, &r)
            }
            ApiKey::SaslAuthenticate => {
                let req = SaslAuthenticateRequest::decode(&mut frame, version).unwrap();
                let (resp, ok) = authenticate_step(&mut sasl, &req.auth_bytes, config, stats);
                if ok {
                    authenticated = true;
                    stats.authentications.fetch_add(1, Ordering::SeqCst);
                    *stats
                        .auth_per_connection
                        .lock()
                        .unwrap()
                        .entry(index)
                        .or_default() += 1;
                }
                respond(api, version, corr, &resp)
            }
            ApiKey::Metadata if authenticated => {
                stats.metadata.fetch_add(1, Ordering::SeqCst);
                let mut r = MetadataResponse::default();
                let mut b = MetadataResponseBroker::default();
                b.node_id = 1.into();
                b.host = StrBytes::from_static_str("127.0.0.1");
                b.port = port as i32;
                r.brokers.push(b);
                r.controller_id = 1.into();
                respond(api, version, corr, &r)
            }
            _ => {
                // Kafka closes a connection that sends anything else before authenticating.
                stats.refused.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// One SaslAuthenticate step; returns the response and whether authentication completed.
fn authenticate_step(
    sasl: &mut Sasl,
    msg: &[u8],
    config: &ServerConfig,
    stats: &Stats,
) -> (SaslAuthenticateResponse, bool) {
    let life = config.session_lifetime_ms;
    let fail = |why: &str| (auth_response(AUTH_FAILED, Some(why), b"", 0), false);
    match sasl {
        Sasl::None => (auth_response(34, Some("no handshake"), b"", 0), false),
        Sasl::Plain => {
            let parts: Vec<&[u8]> = msg.split(|b| *b == 0).collect();
            if parts.len() == 3
                && config
                    .plain
                    .get(&*String::from_utf8_lossy(parts[1]))
                    .is_some_and(|p| p.as_bytes() == parts[2])
            {
                (auth_response(0, None, b"", life), true)
            } else {
                fail("Authentication failed: Invalid username or password")
            }
        }
        Sasl::OAuth { failed } => {
            if *failed {
                return fail("Authentication failed: the token is not valid");
            }
            let text = String::from_utf8_lossy(msg).to_string();
            let token = text
                .split('\x01')
                .find_map(|p| p.strip_prefix("auth=Bearer "))
                .unwrap_or("")
                .to_string();
            stats.tokens_seen.lock().unwrap().push(token.clone());
            if config.tokens.contains(&token) {
                (auth_response(0, None, b"", life), true)
            } else {
                *failed = true;
                (
                    auth_response(0, None, br#"{"status":"invalid_token"}"#, 0),
                    false,
                )
            }
        }
        Sasl::Scram { sha512, step } => {
            let sha512 = *sha512;
            let text = String::from_utf8_lossy(msg).to_string();
            match std::mem::replace(step, ScramStep::First) {
                ScramStep::First => {
                    let Some(bare) = text.strip_prefix("n,,") else {
                        return fail("bad gs2 header");
                    };
                    let mut user = None;
                    let mut cnonce = None;
                    for a in bare.split(',') {
                        if let Some(u) = a.strip_prefix("n=") {
                            user = Some(u.replace("=2C", ",").replace("=3D", "="));
                        } else if let Some(r) = a.strip_prefix("r=") {
                            cnonce = Some(r.to_string());
                        }
                    }
                    let (Some(user), Some(cnonce)) = (user, cnonce) else {
                        return fail("bad client-first");
                    };
                    let users = if sha512 {
                        &config.scram512
                    } else {
                        &config.scram256
                    };
                    let cred = users.get(&user).cloned();
                    let (salt, iterations) = match (
                        &cred,
                        config.impostor || config.error_with_success_code,
                    ) {
                        (Some(c), _) => (c.salt.clone(), c.iterations),
                        // An impostor or tansu-like server makes up a salt for anyone.
                        (None, true) => (vec![7u8; 16], 4096),
                        (None, false) => {
                            let mech = if sha512 {
                                "SCRAM-SHA-512"
                            } else {
                                "SCRAM-SHA-256"
                            };
                            return fail(&format!(
                                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}"
                            ));
                        }
                    };
                    let nonce = format!("{cnonce}{}", B64.encode(rand::random::<[u8; 18]>()));
                    let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
                    *step = ScramStep::Final {
                        cred,
                        client_first_bare: bare.to_string(),
                        server_first: server_first.clone(),
                        nonce,
                    };
                    (auth_response(0, None, server_first.as_bytes(), life), false)
                }
                ScramStep::Final {
                    cred,
                    client_first_bare,
                    server_first,
                    nonce,
                } => {
                    let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
                        return fail("bad client-final");
                    };
                    if without_proof != format!("c=biws,r={nonce}") {
                        return fail("bad channel binding or nonce");
                    }
                    let auth_message =
                        format!("{client_first_bare},{server_first},{without_proof}");
                    if config.error_with_success_code && cred.is_none() {
                        return (
                            auth_response(0, Some("NONE"), b"e=unknown-user", life),
                            true,
                        );
                    }
                    if config.impostor {
                        let made_up = B64.encode(hash_of(sha512, auth_message.as_bytes()));
                        return (
                            auth_response(0, None, format!("v={made_up}").as_bytes(), life),
                            true,
                        );
                    }
                    let cred = cred.expect("unknown users fail at the first step");
                    let Ok(proof) = B64.decode(proof) else {
                        return fail("bad proof");
                    };
                    let signature = hmac_of(sha512, &cred.stored_key, auth_message.as_bytes());
                    let client_key: Vec<u8> =
                        proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                    if proof.len() != signature.len()
                        || hash_of(sha512, &client_key) != cred.stored_key
                    {
                        let mech = if sha512 {
                            "SCRAM-SHA-512"
                        } else {
                            "SCRAM-SHA-256"
                        };
                        return fail(&format!(
                            "Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}"
                        ));
                    }
                    let server_signature =
                        hmac_of(sha512, &cred.server_key, auth_message.as_bytes());
                    let fin = format!("v={}", B64.encode(server_signature));
                    (auth_response(0, None, fin.as_bytes(), life), true)
                }
            }
        }
    }
}

/// A ServerConfig with SCRAM users `alice`/`alice-secret` (SHA-256) and `bob`/`bob-secret`
/// (SHA-512), PLAIN user `carol`/`carol-secret` and OAUTHBEARER token `good-token`.
pub fn standard() -> ServerConfig {
    let mut c = ServerConfig {
        mechanisms: vec!["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"],
        ..ServerConfig::default()
    };
    c.scram256.insert(
        "alice".into(),
        ScramCredential::new(false, "alice-secret", 4096),
    );
    c.scram512
        .insert("bob".into(), ScramCredential::new(true, "bob-secret", 4096));
    c.plain.insert("carol".into(), "carol-secret".into());
    c.tokens.insert("good-token".into());
    c
}

/// A generous bound for "fails quickly" assertions on a shared 2-core machine.
pub const QUICK: Duration = Duration::from_secs(5);

/// Reads a big-endian i16 (helper for hand-rolled frames).
pub fn be_i16(b: &mut Bytes) -> i16 {
    b.get_i16()
}
