//! No secret reaches logs, `Debug` output or error messages: a `tracing` subscriber writing to
//! a buffer captures everything krust logs (at TRACE) while clients authenticate, fail to
//! authenticate and re-authenticate against the scripted broker, and the test greps the capture
//! and every formatted config and error for the password and the token.
//!
//! A test binary of its own, so the process-wide subscriber sees only this test.

mod security_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use krust_client::conn::{ConnectOptions, Connection};
use krust_client::security::{OAuthBearerToken, Security};
use krust_client::{
    ClientConfig, Cluster, Error, Properties, SaslConfig, SecurityConfig, SecurityProtocol,
};
use security_common::{standard, start};

fn props(addr: &str, pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::new().with("bootstrap.servers", addr);
    for (k, v) in pairs {
        p.set(*k, *v);
    }
    p
}

async fn connect(addr: &str, sasl: SaslConfig) -> Result<Connection, Error> {
    let sec = SecurityConfig {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl: Some(sasl),
        ..SecurityConfig::default()
    };
    let options = ConnectOptions {
        client_id: "secrets-test".into(),
        setup_timeout: Duration::from_secs(5),
        max_frame: 1 << 20,
        security: Security::new(&sec).unwrap(),
        io_thread: true,
    };
    Connection::connect_with(-1, addr, &options).await
}

/// Writes everything the `tracing` subscriber formats into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_logs_debug_or_errors() {
    const PW: &str = "Pa55-w0rd-never-shown";
    const TOKEN: &str = "tok3n-never-shown";
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // A current-thread runtime: every task runs on this thread, under the subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shown = String::new();
    rt.block_on(async {
        let mut cfg = standard();
        cfg.scram256.insert(
            "dave".into(),
            security_common::ScramCredential::new(false, PW, 4096),
        );
        cfg.plain.insert("dave".into(), PW.into());
        cfg.session_lifetime_ms = 200;
        let srv = start(cfg).await;
        let p = props(
            &srv.addr,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", "dave"),
                ("sasl.password", PW),
            ],
        );
        shown += &format!("{p:?}\n");
        let cfg = ClientConfig::from_properties(p).unwrap();
        shown += &format!("{cfg:?}\n{cfg:#?}\n{:?}\n", cfg.security);
        // Success, including re-authentications.
        let cluster = Cluster::connect(cfg.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.refresh_metadata(&[]).await.unwrap();
        shown += &format!("{cluster:?}\n");
        cluster.close();
        // Failures with the secret as the wrong password, for every password mechanism.
        for sasl in [
            SaslConfig::scram_sha256("alice", PW),
            SaslConfig::scram_sha512("bob", PW),
            SaslConfig::plain("carol", PW),
            SaslConfig::scram_sha256("dave", format!("{PW}x")),
            SaslConfig::plain("dave", format!("x{PW}")),
        ] {
            shown += &format!("{sasl:?}\n");
            let e = connect(&srv.addr, sasl).await.unwrap_err();
            shown += &format!("{e}\n{e:?}\n");
        }
        // OAUTHBEARER: accepted and rejected tokens.
        let sasl = SaslConfig::oauthbearer(|| async {
            Ok(OAuthBearerToken::new(TOKEN, None).with_extension("traceId", "abc"))
        });
        shown += &format!("{sasl:?}\n");
        let e = connect(&srv.addr, sasl).await.unwrap_err();
        shown += &format!("{e}\n{e:?}\n");
        // Property errors around secret values.
        let bad = props(&srv.addr, &[("sasl.password", PW)]);
        let e = ClientConfig::from_properties(bad).unwrap_err();
        shown += &format!("{e}\n{e:?}\n");
        let bad = props(
            &srv.addr,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "dave"),
                ("sasl.password", PW),
                ("ssl.key.password", PW),
            ],
        );
        let e = ClientConfig::from_properties(bad).unwrap_err();
        shown += &format!("{e}\n{e:?}\n");
    });
    drop(rt);
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(
        logs.contains("authenticated") && logs.contains("re-authenticated"),
        "the capture works: {logs}"
    );
    for (what, text) in [("logs", &logs), ("Debug/Display output", &shown)] {
        assert!(!text.contains(PW), "password in {what}:\n{text}");
        assert!(!text.contains(TOKEN), "token in {what}:\n{text}");
    }
    assert!(shown.contains("[redacted]"), "{shown}");
}
