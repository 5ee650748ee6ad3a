//! SASL against a scripted in-test broker (see `security_common`): SCRAM-SHA-256/512 success,
//! wrong password, unknown user, wrong mechanism, an impostor broker, PLAIN, OAUTHBEARER with
//! token refresh, KIP-368 re-authentication while requests flow, setup timeouts that name the
//! step, and protocol-mismatch hints. (Secrets in logs: `security_secrets.rs`.)

mod security_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kafka_protocol::messages::MetadataRequest;
use krust_client::conn::{ConnectOptions, Connection};
use krust_client::security::{OAuthBearerToken, Security};
use krust_client::{
    ClientConfig, Cluster, Error, Properties, SaslConfig, SecurityConfig, SecurityProtocol,
};
use security_common::{standard, start, ServerConfig, QUICK};

fn options(sasl: Option<SaslConfig>, setup: Duration) -> ConnectOptions {
    let mut sec = SecurityConfig::default();
    if let Some(s) = sasl {
        sec.protocol = SecurityProtocol::SaslPlaintext;
        sec.sasl = Some(s);
    }
    ConnectOptions {
        client_id: "security-test".into(),
        setup_timeout: setup,
        max_frame: 1 << 20,
        security: Security::new(&sec).unwrap(),
        io_thread: true,
    }
}

async fn connect(addr: &str, sasl: SaslConfig) -> Result<Connection, Error> {
    Connection::connect_with(-1, addr, &options(Some(sasl), Duration::from_secs(5))).await
}

async fn metadata(c: &Connection) -> Result<(), Error> {
    let v = c.version_for(krust_wire::ApiKey::Metadata)?;
    c.request(&MetadataRequest::default(), v, Duration::from_secs(5))
        .await
        .map(|_| ())
}

fn props(addr: &str, pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::new().with("bootstrap.servers", addr);
    for (k, v) in pairs {
        p.set(*k, *v);
    }
    p
}

#[tokio::test]
async fn scram_sha256_and_sha512_succeed() {
    let srv = start(standard()).await;
    let c = connect(&srv.addr, SaslConfig::scram_sha256("alice", "alice-secret"))
        .await
        .unwrap();
    metadata(&c).await.unwrap();
    let c = connect(&srv.addr, SaslConfig::scram_sha512("bob", "bob-secret"))
        .await
        .unwrap();
    metadata(&c).await.unwrap();
    assert_eq!(srv.stats.authentications.load(Ordering::SeqCst), 2);

    // The same through properties and the Cluster, as an application would.
    let cfg = ClientConfig::from_properties(props(
        &srv.addr,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "bob"),
            ("sasl.password", "bob-secret"),
        ],
    ))
    .unwrap();
    let cluster = Cluster::connect(cfg).await.unwrap();
    assert_eq!(cluster.metadata().brokers.len(), 1);
    cluster.refresh_metadata(&[]).await.unwrap();
    cluster.close();
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_quickly_with_an_auth_error() {
    let srv = start(standard()).await;
    for sasl in [
        SaslConfig::scram_sha256("alice", "not-alices-password"),
        SaslConfig::scram_sha512("bob", "not-bobs-password"),
        SaslConfig::scram_sha256("mallory", "whatever-pw"),
        SaslConfig::plain("carol", "not-carols-password"),
    ] {
        let t = Instant::now();
        let e = connect(&srv.addr, sasl.clone()).await.unwrap_err();
        assert!(t.elapsed() < QUICK, "took {:?}", t.elapsed());
        assert!(e.is_auth() && !e.is_retriable(), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("SASL_AUTHENTICATION_FAILED")
                && msg.contains("wrong user name or password"),
            "{msg}"
        );
        assert!(msg.contains(sasl.mechanism().name()), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(!msg.contains("password-") && !msg.contains("not-"), "{msg}");
    }
    // Through the Cluster the error is the authentication error itself, not a generic
    // "could not reach any bootstrap server".
    let cfg = ClientConfig::from_properties(props(
        &srv.addr,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "wrong-pw-123"),
        ],
    ))
    .unwrap();
    let e = Cluster::connect(cfg).await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(!e.to_string().contains("wrong-pw-123"));
}

#[tokio::test]
async fn unsupported_mechanism_lists_what_the_broker_offers() {
    let mut cfg = standard();
    cfg.mechanisms = vec!["SCRAM-SHA-512", "OAUTHBEARER"];
    let srv = start(cfg).await;
    let e = connect(&srv.addr, SaslConfig::scram_sha256("alice", "alice-secret"))
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(
            "does not offer SASL mechanism SCRAM-SHA-256; it offers: SCRAM-SHA-512, OAUTHBEARER"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn a_broker_that_cannot_prove_it_knows_the_password_is_rejected() {
    // The impostor accepts any proof but cannot compute the server signature.
    let mut cfg = standard();
    cfg.impostor = true;
    let srv = start(cfg).await;
    let e = connect(&srv.addr, SaslConfig::scram_sha256("alice", "alice-secret"))
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert!(e.to_string().contains("does not know the password"), "{e}");
    assert_eq!(srv.stats.metadata.load(Ordering::SeqCst), 0);

    // A broker that reports success at the Kafka level but `e=unknown-user` in SCRAM (what
    // the tansu wheel does for every user) is not trusted either.
    let mut cfg = standard();
    cfg.error_with_success_code = true;
    let srv = start(cfg).await;
    let e = connect(&srv.addr, SaslConfig::scram_sha256("nobody", "pw"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown-user"), "{e}");
}

#[tokio::test]
async fn plain_succeeds() {
    let srv = start(standard()).await;
    let c = connect(&srv.addr, SaslConfig::plain("carol", "carol-secret"))
        .await
        .unwrap();
    metadata(&c).await.unwrap();
}

#[tokio::test]
async fn oauthbearer_success_rejection_and_refresh_on_reauthentication() {
    let mut cfg = standard();
    cfg.tokens = [
        "tok-0", "tok-1", "tok-2", "tok-3", "tok-4", "tok-5", "tok-6", "tok-7",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    cfg.session_lifetime_ms = 400;
    let srv = start(cfg).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    // Each token lives 300 ms, so every re-authentication (at 85-95% of 400 ms) needs a new
    // one from the provider.
    let sasl = SaslConfig::oauthbearer(move || {
        let n = c2.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok(OAuthBearerToken::new(
                format!("tok-{n}"),
                Some(SystemTime::now() + Duration::from_millis(300)),
            ))
        }
    });
    let c = connect(&srv.addr, sasl).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(1300);
    while Instant::now() < deadline {
        metadata(&c).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = srv.stats.tokens_seen.lock().unwrap().clone();
    assert!(
        seen.len() >= 3,
        "re-authenticated with fresh tokens: {seen:?}"
    );
    assert_eq!(seen[0], "tok-0");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
    assert_eq!(srv.stats.connections.load(Ordering::SeqCst), 1);
    assert_eq!(srv.stats.refused.load(Ordering::SeqCst), 0);
    assert!(c.is_alive());

    // A token the broker rejects: the broker's status is reported, the token is not.
    let srv = start(standard()).await;
    let e = connect(
        &srv.addr,
        SaslConfig::oauthbearer(|| async { Ok(OAuthBearerToken::new("bad-token-xyz", None)) }),
    )
    .await
    .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert!(e.to_string().contains("invalid_token"), "{e}");
    assert!(!e.to_string().contains("bad-token-xyz"), "{e}");

    // A provider that fails.
    let e = connect(
        &srv.addr,
        SaslConfig::oauthbearer(|| async { Err("identity provider unreachable".into()) }),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("identity provider unreachable"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_reauthentication_keeps_the_connection_while_requests_flow() {
    let mut cfg = standard();
    cfg.session_lifetime_ms = 300;
    let srv = start(cfg).await;
    let c = Arc::new(
        connect(&srv.addr, SaslConfig::scram_sha512("bob", "bob-secret"))
            .await
            .unwrap(),
    );
    // Four tasks keep requests in flight the whole time; the broker closes the connection if
    // one arrives between a re-authentication's SaslHandshake and its last SaslAuthenticate.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_millis(1500);
            let mut n = 0;
            while Instant::now() < deadline {
                metadata(&c).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let auths = srv.stats.authentications.load(Ordering::SeqCst);
    // The first authentication plus at least two re-authentications (PBKDF2 is slow in a
    // debug build, so not every 300 ms window fits one).
    assert!(auths >= 3, "authentications: {auths}");
    assert_eq!(srv.stats.connections.load(Ordering::SeqCst), 1);
    assert_eq!(srv.stats.refused.load(Ordering::SeqCst), 0);
    assert!(total > 20, "requests: {total}");
    assert!(c.is_alive());
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out_naming_the_step() {
    let srv = start(ServerConfig {
        mute: true,
        ..standard()
    })
    .await;
    let t = Instant::now();
    let e = Connection::connect_with(
        -1,
        &srv.addr,
        &options(
            Some(SaslConfig::scram_sha256("alice", "alice-secret")),
            Duration::from_millis(600),
        ),
    )
    .await
    .unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("timed out after 600ms") && msg.contains("ApiVersions"),
        "{msg}"
    );
    assert!(msg.contains("security.protocol=SSL"), "hint at TLS: {msg}");

    let srv = start(ServerConfig {
        mute_after_api_versions: true,
        ..standard()
    })
    .await;
    let e = Connection::connect_with(
        -1,
        &srv.addr,
        &options(
            Some(SaslConfig::scram_sha256("alice", "alice-secret")),
            Duration::from_millis(600),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("in SASL authentication (SCRAM-SHA-256)"),
        "{e}"
    );
}

#[tokio::test]
async fn plaintext_client_against_a_sasl_listener_gets_a_hint() {
    let srv = start(standard()).await;
    let mut cfg = ClientConfig::new(&srv.addr);
    cfg.connection_setup_timeout = Duration::from_secs(2);
    let t = Instant::now();
    let e = Cluster::connect(cfg).await.unwrap_err();
    assert!(t.elapsed() < QUICK);
    let msg = e.to_string();
    assert!(
        msg.contains("connection closed by the broker") && msg.contains("SASL_PLAINTEXT"),
        "{msg}"
    );
    // And SASL against a listener without SASL.
    let srv = start(ServerConfig::default()).await;
    let e = connect(&srv.addr, SaslConfig::scram_sha256("alice", "alice-secret"))
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert!(e.to_string().contains("is this a SASL listener?"), "{e}");
}

/// The `scram` fuzz target's entry point (`fuzz/src/scram.rs`, included by path as
/// `crates/krust-wire/tests/corpus.rs` does for the others), on stable.
#[path = "../../../fuzz/src/scram.rs"]
mod scram_fuzz;

/// Replays the `scram` fuzz corpus and regressions: no input may panic or break the entry
/// point's checks.
#[test]
fn scram_fuzz_corpus_replays() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut total = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join("scram")) else {
            continue;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| scram_fuzz::scram(&data));
            assert!(outcome.is_ok(), "{} panicked", path.display());
            total += 1;
        }
    }
    assert!(total >= 3, "the scram seed corpus is missing");
}
