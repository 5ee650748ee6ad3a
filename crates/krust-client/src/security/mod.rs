//! Security: how a connection proves who it is (SASL) and protects the bytes (TLS).
//!
//! - [`SecurityConfig`] is the user's side, set from Kafka's property names
//!   (`security.protocol`, `sasl.*`, `ssl.*`) or in code; it is part of
//!   [`ClientConfig`](crate::ClientConfig).
//! - [`Security`] is the ready form, built once per client: files read, TLS configured. Every
//!   connection uses it in [`Connection::connect_with`](crate::conn::Connection::connect_with):
//!   TCP, then TLS (for `SSL`/`SASL_SSL`), then ApiVersions, then SaslHandshake +
//!   SaslAuthenticate (for `SASL_*`), all within `socket.connection.setup.timeout.ms`.
//! - SASL mechanisms: [`sasl`] (config and exchange), [`scram`], [`plain`], [`oauth`].
//! - [`Secret`] keeps passwords and tokens out of `Debug`, `Display`, logs and errors.
//!
//! ## Properties
//!
//! | property | values | default |
//! |---|---|---|
//! | `security.protocol` | `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` | `PLAINTEXT` |
//! | `sasl.mechanism` (or librdkafka's `sasl.mechanisms`) | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` | none; required with `SASL_*` |
//! | `sasl.username`, `sasl.password` | for PLAIN and SCRAM | none |
//! | `ssl.ca.location` | PEM file of CAs to trust | the built-in Mozilla roots |
//! | `ssl.certificate.location`, `ssl.key.location` | PEM client certificate chain and unencrypted key (mTLS) | none |
//! | `ssl.endpoint.identification.algorithm` | `https` (check the host name), `none` (chain only) | `https` |
//!
//! `ssl.key.password` (encrypted keys) and `GSSAPI` are rejected with a clear error. OAUTHBEARER
//! needs a token provider set in code ([`SecurityConfig::with_token_provider`] or
//! [`SaslConfig::oauthbearer`]); its tokens are refreshed at 80% of their lifetime.
//!
//! ```
//! use krust_client::{ClientConfig, Properties};
//! let config = ClientConfig::from_properties(
//!     Properties::new()
//!         .with("bootstrap.servers", "127.0.0.1:9092")
//!         .with("security.protocol", "SASL_PLAINTEXT")
//!         .with("sasl.mechanism", "SCRAM-SHA-512")
//!         .with("sasl.username", "alice")
//!         .with("sasl.password", "alice-secret"),
//! )?;
//! assert!(!format!("{config:?}").contains("alice-secret"));
//! # Ok::<(), krust_client::Error>(())
//! ```
//!
//! ## TLS, crypto providers and C
//!
//! The default build has no TLS and no C: `cargo tree -e normal,build` shows no `-sys` crate and
//! no `cc`. Two features add TLS (rustls 0.23, certificates checked by webpki):
//!
//! - `tls`: rustls with the **ring** provider. ring compiles C and assembly through `cc`, so a
//!   static musl build needs a C compiler for the musl target: without one, `cargo build
//!   --target x86_64-unknown-linux-musl --features tls` fails in ring's build script (`failed to
//!   find tool "x86_64-linux-musl-gcc"`); with Debian's `musl-tools` installed it builds (or
//!   point `CC_x86_64_unknown_linux_musl` at a cross compiler). ring is the
//!   mature choice: widely deployed, constant-time primitives, maintained by the rustls team.
//! - `tls-rustcrypto`: rustls with **rustls-rustcrypto** (RustCrypto's AES-GCM, ChaCha20-Poly1305,
//!   P-256/P-384, X25519, Ed25519, RSA): pure Rust, no C anywhere, so `--target
//!   x86_64-unknown-linux-musl` builds with nothing but rustup. It is *alpha* (0.0.2-alpha,
//!   not audited; the RSA crate has a known timing side channel, RUSTSEC-2023-0071, relevant to
//!   RSA client keys): acceptable where C is not an option and the threat model allows, otherwise
//!   prefer `tls`. krust's whole TLS test suite passes with both providers.
//!
//! With both features on, ring is used. The trust store is compiled in (webpki-roots, Mozilla's
//! list), so no system certificate files or OpenSSL are read; a private CA is given with
//! `ssl.ca.location`.

pub mod oauth;
pub mod plain;
pub mod sasl;
pub mod scram;
pub mod secret;
pub mod tls;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use oauth::{OAuthBearerToken, OAuthBearerTokenProvider, TokenError};
pub use sasl::{SaslConfig, SaslMechanism};
pub use secret::Secret;
pub use tls::TlsConfig;

use crate::config::Properties;
use crate::error::{Error, Result};

/// `security.protocol`: whether connections use TLS and/or SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (the default).
    #[default]
    Plaintext,
    /// TLS, no SASL (the client may still authenticate with a certificate).
    Ssl,
    /// SASL without TLS: the password of PLAIN crosses the network in the clear.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The name as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections start with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL".into()),
        }
    }
}

/// Whether this build of krust-client can do TLS (the `tls` or `tls-rustcrypto` feature).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls-core");

/// The user's security settings. `Debug` never shows passwords or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityConfig {
    /// `security.protocol`. Default PLAINTEXT.
    pub protocol: SecurityProtocol,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password` (or a token provider set in code).
    /// Required when the protocol is `SASL_*`, rejected otherwise.
    pub sasl: Option<SaslConfig>,
    /// `ssl.*`. Used when the protocol is `SSL`/`SASL_SSL`; setting them with another protocol
    /// is an error (it is almost always a forgotten `security.protocol`).
    pub tls: TlsConfig,
}

impl SecurityConfig {
    /// The property names this config consumes (for `-X` help texts).
    pub const PROPERTIES: &'static [&'static str] = &[
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.endpoint.identification.algorithm",
    ];

    /// Consumes the security properties from `props`. Values of secret properties never appear
    /// in errors.
    pub fn take_from(props: &mut Properties) -> Result<Self> {
        let mut c = SecurityConfig::default();
        if let Some(p) = props.take_parsed("security.protocol", |v| v.parse())? {
            c.protocol = p;
        }
        // librdkafka spells it `sasl.mechanisms`; accept both, but not two different values.
        let m1 = props.take("sasl.mechanism");
        let m2 = props.take("sasl.mechanisms");
        let mechanism = match (m1, m2) {
            (Some(a), Some(b)) if !a.trim().eq_ignore_ascii_case(b.trim()) => {
                return Err(Error::config(
                    "sasl.mechanism",
                    format!("`{a}` conflicts with sasl.mechanisms=`{b}`"),
                ))
            }
            (Some(a), _) | (None, Some(a)) => Some(
                a.parse::<SaslMechanism>()
                    .map_err(|m| Error::config("sasl.mechanism", m))?,
            ),
            (None, None) => None,
        };
        let username = props.take("sasl.username");
        let password = props.take("sasl.password").map(Secret::new);
        match mechanism {
            Some(m) => {
                if m == SaslMechanism::OAuthBearer {
                    if username.is_some() || password.is_some() {
                        return Err(Error::config(
                            "sasl.username",
                            "OAUTHBEARER takes no user name or password; set a token provider in code",
                        ));
                    }
                    // The provider is set in code (SecurityConfig::with_token_provider); a
                    // config without one fails when the client is created.
                    c.sasl = Some(SaslConfig::with_password(m, "", ""));
                } else {
                    c.sasl = Some(SaslConfig::with_password(
                        m,
                        username.unwrap_or_default(),
                        password.unwrap_or_default(),
                    ));
                }
            }
            None => {
                if username.is_some() || password.is_some() {
                    let which = if username.is_some() {
                        "sasl.username"
                    } else {
                        "sasl.password"
                    };
                    return Err(Error::config(
                        which,
                        "set sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) as well",
                    ));
                }
            }
        }
        if let Some(p) = props.take("ssl.ca.location") {
            c.tls.ca_location = Some(p.into());
        }
        if let Some(p) = props.take("ssl.certificate.location") {
            c.tls.certificate_location = Some(p.into());
        }
        if let Some(p) = props.take("ssl.key.location") {
            c.tls.key_location = Some(p.into());
        }
        if props.take("ssl.key.password").is_some() {
            return Err(Error::config(
                "ssl.key.password",
                "encrypted private keys are not supported; give an unencrypted PEM key in ssl.key.location",
            ));
        }
        if let Some(v) = props.take_parsed("ssl.endpoint.identification.algorithm", |v| match v
            .to_ascii_lowercase()
            .as_str()
        {
            "https" => Ok(true),
            "none" | "" => Ok(false),
            _ => Err("expected `https` or `none`".to_string()),
        })? {
            c.tls.verify_hostname = v;
        }
        Ok(c)
    }

    /// Uses SASL/OAUTHBEARER with tokens from `provider` (builder style). Keeps the protocol
    /// if it already uses SASL, else sets `SASL_SSL` when TLS is configured and
    /// `SASL_PLAINTEXT` otherwise.
    pub fn with_token_provider(mut self, provider: impl OAuthBearerTokenProvider) -> Self {
        self.sasl = Some(SaslConfig::oauthbearer(provider));
        self.protocol = match self.protocol {
            SecurityProtocol::Ssl => SecurityProtocol::SaslSsl,
            SecurityProtocol::Plaintext => SecurityProtocol::SaslPlaintext,
            p => p,
        };
        self
    }

    /// Checks the combination without reading files: SASL settings only with a `SASL_*`
    /// protocol and vice versa, `ssl.*` only with TLS, TLS only in a build that has it.
    pub fn validate(&self) -> Result<()> {
        let p = self.protocol;
        if p.uses_tls() && !TLS_AVAILABLE {
            return Err(Error::config(
                "security.protocol",
                format!(
                    "`{p}` needs TLS, which this build of krust lacks: enable the `tls` feature of krust-client (or `tls-rustcrypto` for the pure-Rust provider)"
                ),
            ));
        }
        match (&self.sasl, p.uses_sasl()) {
            (None, true) => {
                return Err(Error::config(
                    "sasl.mechanism",
                    format!(
                        "security.protocol={p} needs sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
                    ),
                ))
            }
            (Some(s), false) => {
                return Err(Error::config(
                    "security.protocol",
                    format!(
                        "sasl.mechanism={} is set but security.protocol is {p}: use SASL_PLAINTEXT or SASL_SSL",
                        s.mechanism()
                    ),
                ))
            }
            (Some(s), true) => {
                // The token provider is checked when the client is created (Security::new):
                // a config read from properties gets it set in code afterwards.
                if s.mechanism() != SaslMechanism::OAuthBearer {
                    s.validate().map_err(|(prop, m)| Error::config(prop, m))?;
                }
            }
            (None, false) => {}
        }
        if !p.uses_tls() && !self.tls.is_default() {
            return Err(Error::config(
                "security.protocol",
                format!(
                    "ssl.* settings are given but security.protocol is {p}: use SSL or SASL_SSL"
                ),
            ));
        }
        self.tls
            .validate()
            .map_err(|(prop, m)| Error::config(prop, m))?;
        Ok(())
    }
}

/// Security settings made ready for connections: validated, TLS files read. Built once per
/// client and shared by its connections.
#[derive(Clone, Default)]
pub struct Security {
    protocol: SecurityProtocol,
    sasl: Option<SaslConfig>,
    #[cfg(feature = "tls-core")]
    tls: Option<tls::TlsConnector>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Security");
        d.field("protocol", &self.protocol)
            .field("sasl", &self.sasl);
        #[cfg(feature = "tls-core")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

impl Security {
    /// Plaintext, no authentication.
    pub fn plaintext() -> Arc<Security> {
        Arc::new(Security::default())
    }

    /// Validates `config` and prepares it (reads the CA, certificate and key files).
    pub fn new(config: &SecurityConfig) -> Result<Arc<Security>> {
        config.validate()?;
        if let Some(s) = &config.sasl {
            s.validate().map_err(|(prop, m)| Error::config(prop, m))?;
        }
        if config.protocol == SecurityProtocol::SaslPlaintext
            && config
                .sasl
                .as_ref()
                .is_some_and(|s| s.mechanism() == SaslMechanism::Plain)
        {
            tracing::warn!(
                "sasl.mechanism=PLAIN over SASL_PLAINTEXT sends the password unencrypted; prefer SASL_SSL"
            );
        }
        #[cfg(feature = "tls-core")]
        let tls = if config.protocol.uses_tls() {
            Some(tls::TlsConnector::new(&config.tls).map_err(|(prop, m)| Error::config(prop, m))?)
        } else {
            None
        };
        Ok(Arc::new(Security {
            protocol: config.protocol,
            sasl: config.sasl.clone().filter(|_| config.protocol.uses_sasl()),
            #[cfg(feature = "tls-core")]
            tls,
        }))
    }

    /// The protocol.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// The SASL settings, when the protocol uses SASL.
    pub fn sasl(&self) -> Option<&SaslConfig> {
        self.sasl.as_ref()
    }

    #[cfg(feature = "tls-core")]
    pub(crate) fn tls(&self) -> Option<&tls::TlsConnector> {
        self.tls.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SecurityConfig> {
        let mut p: Properties = pairs.iter().copied().collect();
        let c = SecurityConfig::take_from(&mut p)?;
        p.finish()?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn properties() {
        let c = parse(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "pw-123"),
        ])
        .unwrap();
        assert_eq!(c.protocol, SecurityProtocol::SaslPlaintext);
        let s = c.sasl.as_ref().unwrap();
        assert_eq!(s.mechanism(), SaslMechanism::ScramSha512);
        assert_eq!(s.username(), "alice");
        assert!(!format!("{c:?}").contains("pw-123"));

        let e = parse(&[("security.protocol", "SASL_PLAINTEXT")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sasl.mechanism"), "{e}");
        let e = parse(&[
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "a"),
            ("sasl.password", "b"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("SASL_PLAINTEXT"), "{e}");
        let e = parse(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "a"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("sasl.password"), "{e}");
        let e = parse(&[("security.protocol", "TLS")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SASL_SSL"), "{e}");
        let e = parse(&[("ssl.ca.location", "/x")]).unwrap_err().to_string();
        assert!(e.contains("use SSL or SASL_SSL"), "{e}");
        let e = parse(&[("ssl.key.password", "secret-key-pw")])
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("secret-key-pw") && e.contains("not supported"),
            "{e}"
        );
        let e = parse(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "GSSAPI"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("GSSAPI"), "{e}");
        // OAUTHBEARER from properties parses; the provider comes in code.
        let c = parse(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
        ]);
        if TLS_AVAILABLE {
            let c = c.unwrap();
            let e = Security::new(&c).unwrap_err().to_string();
            assert!(e.contains("token provider"), "{e}");
            let c = c.with_token_provider(|| async { Ok(OAuthBearerToken::new("t", None)) });
            assert!(Security::new(&c).is_ok());
        }
    }

    #[test]
    fn ssl_without_the_feature_says_how_to_enable_it() {
        let r = parse(&[("security.protocol", "SSL")]);
        if TLS_AVAILABLE {
            assert!(r.is_ok());
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("`tls` feature"), "{e}");
        }
    }

    #[cfg(feature = "tls-core")]
    #[test]
    fn tls_file_errors_name_the_property() {
        let c = parse(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ])
        .unwrap();
        let e = Security::new(&c).unwrap_err().to_string();
        assert!(
            e.contains("ssl.ca.location") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let e = parse(&[
            ("security.protocol", "SSL"),
            ("ssl.certificate.location", "/x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("ssl.key.location"), "{e}");
    }
}
