//! SASL/OAUTHBEARER (RFC 7628, KIP-255): the client presents a bearer token obtained by a
//! user-supplied [`OAuthBearerTokenProvider`].
//!
//! krust does not talk to an identity provider itself: the application's provider does (client
//! credentials flow, a file refreshed by a sidecar, a cloud SDK, ...). The token is cached and
//! shared by every connection of a client; the provider is called again once 80% of the token's
//! lifetime has passed (or when it has no expiry, for every authentication), so a connection
//! that re-authenticates (KIP-368) before the broker's session ends presents a fresh token.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use super::secret::Secret;

/// The error a token provider may return.
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// A bearer token and what the broker needs with it.
#[derive(Clone)]
pub struct OAuthBearerToken {
    /// The token itself (typically a JWT). Never logged.
    pub value: Secret<String>,
    /// When the token stops being valid, if known. The token is refreshed at 80% of its
    /// lifetime; `None` means it is fetched again for every authentication.
    pub expires_at: Option<SystemTime>,
    /// SASL extensions (`key=value` pairs sent with the token, KIP-342), e.g. `logicalCluster`
    /// for some managed services. Keys are letters only; `auth` is reserved.
    pub extensions: BTreeMap<String, String>,
}

impl OAuthBearerToken {
    /// A token valid until `expires_at` (when known), without extensions.
    pub fn new(value: impl Into<String>, expires_at: Option<SystemTime>) -> Self {
        OAuthBearerToken {
            value: Secret::new(value.into()),
            expires_at,
            extensions: BTreeMap::new(),
        }
    }

    /// Adds a SASL extension (builder style).
    pub fn with_extension(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }
}

impl fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerToken")
            .field("value", &self.value)
            .field("expires_at", &self.expires_at)
            .field("extensions", &self.extensions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Supplies OAUTHBEARER tokens. Implemented for any `Fn() -> impl Future<Output =
/// Result<OAuthBearerToken, TokenError>>`, so an async closure works:
///
/// ```
/// use krust_client::security::{OAuthBearerToken, OAuthBearerTokenProvider, SaslConfig};
/// let sasl = SaslConfig::oauthbearer(|| async {
///     // ask the identity provider here
///     Ok(OAuthBearerToken::new("eyJ...", None))
/// });
/// ```
pub trait OAuthBearerTokenProvider: Send + Sync + 'static {
    /// Fetches a token. Called when there is none yet and again before the cached one
    /// expires. Must not return an expired token.
    fn token(&self) -> BoxFuture<'_, Result<OAuthBearerToken, TokenError>>;
}

impl<F, Fut> OAuthBearerTokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<OAuthBearerToken, TokenError>> + Send + 'static,
{
    fn token(&self) -> BoxFuture<'_, Result<OAuthBearerToken, TokenError>> {
        Box::pin(self())
    }
}

struct Cached {
    token: OAuthBearerToken,
    refresh_at: Option<SystemTime>,
}

/// A provider plus the token it last gave, shared by every connection of a client.
#[derive(Clone)]
pub struct TokenSource {
    provider: Arc<dyn OAuthBearerTokenProvider>,
    cached: Arc<tokio::sync::Mutex<Option<Cached>>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource { provider: <user supplied> }")
    }
}

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cached, &other.cached)
    }
}

impl Eq for TokenSource {}

impl TokenSource {
    /// Wraps a provider.
    pub fn new(provider: Arc<dyn OAuthBearerTokenProvider>) -> Self {
        TokenSource {
            provider,
            cached: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The current token, asking the provider for a new one when there is none, when 80% of
    /// the cached one's lifetime has passed, or when it has no expiry. Concurrent callers wait
    /// for one provider call.
    pub async fn current(&self) -> Result<OAuthBearerToken, String> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref() {
            if c.refresh_at.is_some_and(|at| now < at) {
                return Ok(c.token.clone());
            }
        }
        let token = self
            .provider
            .token()
            .await
            .map_err(|e| format!("the OAUTHBEARER token provider failed: {e}"))?;
        validate(&token)?;
        let refresh_at = token.expires_at.map(|exp| {
            let life = exp.duration_since(now).unwrap_or(Duration::ZERO);
            now + life.mul_f64(0.8)
        });
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }
}

fn validate(token: &OAuthBearerToken) -> Result<(), String> {
    let v = token.value.expose();
    if v.is_empty() {
        return Err("the OAUTHBEARER token provider returned an empty token".into());
    }
    // RFC 6750 b64token characters; anything else would break the message framing.
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c));
    if !ok {
        return Err(
            "the OAUTHBEARER token contains characters not allowed in a bearer token".into(),
        );
    }
    if token.expires_at.is_some_and(|exp| exp <= SystemTime::now()) {
        return Err("the OAUTHBEARER token provider returned an expired token".into());
    }
    for (k, val) in &token.extensions {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphabetic()) || k == "auth" {
            return Err(format!(
                "OAUTHBEARER extension key `{k}` is invalid (letters only, not `auth`)"
            ));
        }
        if !val
            .chars()
            .all(|c| matches!(c, ' '..='~' | '\t' | '\r' | '\n'))
        {
            return Err(format!(
                "OAUTHBEARER extension `{k}` has a value with characters not allowed"
            ));
        }
    }
    Ok(())
}

/// The client's initial OAUTHBEARER message (RFC 7628 section 3.1, with KIP-342 extensions):
/// `n,,\x01auth=Bearer <token>\x01[key=value\x01]*\x01`.
pub fn initial_response(token: &OAuthBearerToken) -> Secret<Vec<u8>> {
    let mut msg = String::from("n,,\x01auth=Bearer ");
    msg.push_str(token.value.expose());
    msg.push('\x01');
    for (k, v) in &token.extensions {
        msg.push_str(k);
        msg.push('=');
        msg.push_str(v);
        msg.push('\x01');
    }
    msg.push('\x01');
    let out = Secret::new(msg.as_bytes().to_vec());
    zeroize::Zeroize::zeroize(&mut msg);
    out
}

/// The message a client sends after a server error challenge (RFC 7628 section 3.2.3): a lone
/// `\x01`, after which the server fails the exchange.
pub const ERROR_ACK: &[u8] = b"\x01";

/// Describes a server error challenge (a JSON object such as `{"status":"invalid_token"}`) in
/// one line, without trusting its size or contents.
pub fn describe_server_error(challenge: &[u8]) -> String {
    let text = String::from_utf8_lossy(challenge);
    let status = text
        .split("\"status\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_string);
    match status {
        Some(s) => format!(
            "the broker rejected the token (status `{}`)",
            s.chars()
                .take(64)
                .filter(|c| !c.is_control())
                .collect::<String>()
        ),
        None => "the broker rejected the token".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn message_layout_and_validation() {
        let t =
            OAuthBearerToken::new("abc.def.ghi", None).with_extension("logicalCluster", "lkc-1");
        let m = initial_response(&t);
        assert_eq!(
            m.expose().as_slice(),
            b"n,,\x01auth=Bearer abc.def.ghi\x01logicalCluster=lkc-1\x01\x01"
        );
        assert!(!format!("{t:?}").contains("abc.def.ghi"));
        assert!(validate(&OAuthBearerToken::new("", None)).is_err());
        assert!(validate(&OAuthBearerToken::new("a b", None)).is_err());
        assert!(validate(&OAuthBearerToken::new("a", None).with_extension("auth", "x")).is_err());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(validate(&OAuthBearerToken::new("a", Some(past))).is_err());
        assert_eq!(
            describe_server_error(br#"{"status":"invalid_token","scope":"x"}"#),
            "the broker rejected the token (status `invalid_token`)"
        );
        assert_eq!(
            describe_server_error(b"\xff"),
            "the broker rejected the token"
        );
    }

    #[tokio::test]
    async fn cached_until_80_percent_of_lifetime() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let src = TokenSource::new(Arc::new(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(OAuthBearerToken::new(
                    format!("tok{n}"),
                    Some(SystemTime::now() + Duration::from_millis(500)),
                ))
            }
        }));
        assert_eq!(src.current().await.unwrap().value.expose(), "tok0");
        assert_eq!(src.current().await.unwrap().value.expose(), "tok0");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(src.current().await.unwrap().value.expose(), "tok1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
