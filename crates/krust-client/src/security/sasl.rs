//! SASL configuration ([`SaslConfig`], [`SaslMechanism`]) and the per-exchange client state
//! machine ([`SaslSession`]) that the connection drives over SaslHandshake + SaslAuthenticate
//! (KIP-152).
//!
//! The session is transport-free: the connection sends what [`SaslSession::start`] and
//! [`SaslSession::step`] return as SaslAuthenticate `auth_bytes` and feeds the broker's bytes
//! back. A session ends when `step` returns `Ok(None)`; only then did *both* sides prove
//! themselves (for SCRAM, the broker's signature was checked).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::oauth::{self, OAuthBearerTokenProvider, TokenSource};
use super::plain;
use super::scram::{self, ScramClient, ScramHash};
use super::secret::Secret;

/// A SASL mechanism krust speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN`: user name and password in the clear (use with TLS).
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677): challenge-response; the password never crosses the wire and
    /// the broker proves it knows it too.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628): a bearer token from a user-supplied provider.
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            "OAUTHBEARER" => Ok(SaslMechanism::OAuthBearer),
            "GSSAPI" => Err("GSSAPI (Kerberos) is not supported by krust; supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER".into()),
            other => Err(format!(
                "unknown SASL mechanism `{other}`; supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"
            )),
        }
    }
}

/// How a client authenticates with SASL: the mechanism and its credentials.
///
/// `Debug` shows the mechanism and user name only; the password and tokens are [`Secret`]s.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    mechanism: SaslMechanism,
    username: String,
    password: Secret<String>,
    oauth: Option<TokenSource>,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SaslConfig");
        d.field("mechanism", &self.mechanism);
        if self.mechanism == SaslMechanism::OAuthBearer {
            d.field(
                "token_provider",
                &self.oauth.as_ref().map(|_| "<user supplied>"),
            );
        } else {
            d.field("username", &self.username)
                .field("password", &self.password);
        }
        d.finish()
    }
}

impl SaslConfig {
    /// SASL/PLAIN with a user name and password.
    pub fn plain(username: impl Into<String>, password: impl Into<Secret<String>>) -> Self {
        Self::with_password(SaslMechanism::Plain, username, password)
    }

    /// SASL/SCRAM-SHA-256 with a user name and password.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<Secret<String>>) -> Self {
        Self::with_password(SaslMechanism::ScramSha256, username, password)
    }

    /// SASL/SCRAM-SHA-512 with a user name and password.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<Secret<String>>) -> Self {
        Self::with_password(SaslMechanism::ScramSha512, username, password)
    }

    /// A password mechanism chosen at run time. For `OAUTHBEARER` use
    /// [`SaslConfig::oauthbearer`]: a config made here without a provider fails to connect.
    pub fn with_password(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<Secret<String>>,
    ) -> Self {
        SaslConfig {
            mechanism,
            username: username.into(),
            password: password.into(),
            oauth: None,
        }
    }

    /// SASL/OAUTHBEARER with tokens from `provider` (cached, refreshed before they expire).
    pub fn oauthbearer(provider: impl OAuthBearerTokenProvider) -> Self {
        Self::oauthbearer_arc(Arc::new(provider))
    }

    /// As [`SaslConfig::oauthbearer`], from a shared provider.
    pub fn oauthbearer_arc(provider: Arc<dyn OAuthBearerTokenProvider>) -> Self {
        SaslConfig {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: Secret::default(),
            oauth: Some(TokenSource::new(provider)),
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// The user name (empty for OAUTHBEARER).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password, only to scrub it from broker-supplied text before showing that text.
    pub(crate) fn password_for_redaction(&self) -> &str {
        self.password.expose()
    }

    /// Checks that the credentials the mechanism needs are present (the `property` names in
    /// errors are the Kafka ones).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.mechanism {
            SaslMechanism::OAuthBearer => {
                if self.oauth.is_none() {
                    return Err((
                        "sasl.mechanism",
                        "OAUTHBEARER needs a token provider, set in code with SaslConfig::oauthbearer"
                            .into(),
                    ));
                }
            }
            _ => {
                if self.username.is_empty() {
                    return Err((
                        "sasl.username",
                        format!("{} needs a user name", self.mechanism),
                    ));
                }
                if self.password.is_empty() {
                    return Err((
                        "sasl.password",
                        format!("{} needs a password", self.mechanism),
                    ));
                }
            }
        }
        Ok(())
    }
}

enum Stage {
    Plain,
    Scram(Box<ScramClient>),
    OAuth { rejected: Option<String> },
}

/// One SASL exchange on one connection (a fresh one for every re-authentication).
pub struct SaslSession {
    mechanism: SaslMechanism,
    stage: Stage,
    steps: u32,
}

impl fmt::Debug for SaslSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSession")
            .field("mechanism", &self.mechanism)
            .field("steps", &self.steps)
            .finish()
    }
}

/// The most broker challenges an exchange may take; more means a confused or hostile broker.
const MAX_STEPS: u32 = 8;

impl SaslSession {
    /// Starts an exchange: returns the session and the first client message (for OAUTHBEARER
    /// this may call the token provider).
    pub async fn start(config: &SaslConfig) -> Result<(SaslSession, Secret<Vec<u8>>), String> {
        let (stage, first) = match config.mechanism {
            SaslMechanism::Plain => (
                Stage::Plain,
                plain::initial_response(&config.username, &config.password)?,
            ),
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if config.mechanism == SaslMechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                let mut c = ScramClient::new(hash, &config.username, config.password.clone());
                let first = c.client_first();
                (Stage::Scram(Box::new(c)), Secret::new(first))
            }
            SaslMechanism::OAuthBearer => {
                let source = config.oauth.as_ref().ok_or(
                    "OAUTHBEARER needs a token provider (SaslConfig::oauthbearer)".to_string(),
                )?;
                let token = source.current().await?;
                (
                    Stage::OAuth { rejected: None },
                    oauth::initial_response(&token),
                )
            }
        };
        Ok((
            SaslSession {
                mechanism: config.mechanism,
                stage,
                steps: 0,
            },
            first,
        ))
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// Feeds the broker's answer (the `auth_bytes` of a successful SaslAuthenticate response);
    /// returns the next client message, or `None` when the exchange is complete and the broker
    /// proved itself. An `Err` is the one-line reason authentication failed.
    pub async fn step(&mut self, server: &[u8]) -> Result<Option<Secret<Vec<u8>>>, String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "the broker sent more than {MAX_STEPS} {} challenges",
                self.mechanism
            ));
        }
        match &mut self.stage {
            Stage::Plain => {
                if server.is_empty() {
                    Ok(None)
                } else {
                    Err("the broker sent an unexpected PLAIN challenge".into())
                }
            }
            Stage::Scram(c) => {
                if c.is_done() {
                    return Err("the broker sent a message after SCRAM finished".into());
                }
                if matches!(self.steps, 1) {
                    let first = c.handle_server_first(server)?;
                    let hash = if self.mechanism == SaslMechanism::ScramSha256 {
                        ScramHash::Sha256
                    } else {
                        ScramHash::Sha512
                    };
                    let password = c.password().clone();
                    // PBKDF2 takes milliseconds to seconds: keep it off the async workers.
                    let salted = tokio::task::spawn_blocking(move || {
                        Secret::new(scram::salted_password(
                            hash,
                            password.expose(),
                            &first.salt,
                            first.iterations,
                        ))
                    })
                    .await
                    .map_err(|_| "SCRAM key derivation was cancelled".to_string())?;
                    Ok(Some(Secret::new(c.client_final(salted.expose())?)))
                } else {
                    c.handle_server_final(server)?;
                    Ok(None)
                }
            }
            Stage::OAuth { rejected } => {
                if let Some(reason) = rejected.take() {
                    // The broker should have failed the exchange after our acknowledgement.
                    return Err(reason);
                }
                if server.is_empty() {
                    Ok(None)
                } else {
                    *rejected = Some(oauth::describe_server_error(server));
                    Ok(Some(Secret::new(oauth::ERROR_ACK.to_vec())))
                }
            }
        }
    }

    /// For OAUTHBEARER: the broker's reason for rejecting the token, when it sent one before
    /// failing the exchange.
    pub fn rejection(&self) -> Option<&str> {
        match &self.stage {
            Stage::OAuth { rejected } => rejected.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names() {
        for m in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ] {
            assert_eq!(m.name().parse::<SaslMechanism>().unwrap(), m);
        }
        assert_eq!(
            "scram-sha-256".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::ScramSha256
        );
        let e = "GSSAPI".parse::<SaslMechanism>().unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = "FOO".parse::<SaslMechanism>().unwrap_err();
        assert!(e.contains("FOO") && e.contains("SCRAM-SHA-512"), "{e}");
    }

    #[test]
    fn debug_hides_password() {
        let c = SaslConfig::scram_sha512("alice", "pw-in-debug");
        let d = format!("{c:?}");
        assert!(d.contains("alice") && !d.contains("pw-in-debug"), "{d}");
        assert!(SaslConfig::plain("", "x").validate().is_err());
        assert!(SaslConfig::plain("a", "").validate().is_err());
        assert!(
            SaslConfig::with_password(SaslMechanism::OAuthBearer, "a", "b")
                .validate()
                .is_err()
        );
    }

    #[tokio::test]
    async fn plain_session() {
        let (mut s, first) = SaslSession::start(&SaslConfig::plain("u", "p"))
            .await
            .unwrap();
        assert_eq!(first.expose().as_slice(), b"\0u\0p");
        assert!(s.step(b"").await.unwrap().is_none());
    }
}
