//! Configuration shared by every client ([`ClientConfig`]) and the property parser that lets
//! users bring their Kafka configs as they are ([`Properties`]).
//!
//! Each config type consumes the properties it knows from a [`Properties`] bag; whatever is
//! left at the end is an error that names the property. Nothing is ignored silently: a typo in
//! `linger.ms` must not turn into a default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::security::SecurityConfig;

/// A bag of `name = value` properties, consumed by the config types' `from_properties`.
///
/// `Debug` shows the values of secret properties (passwords, keys, JAAS configs) as
/// `[redacted]`; see [`Properties::is_secret`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    map: BTreeMap<String, String>,
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.map {
            if Properties::is_secret(k) {
                m.entry(k, &"[redacted]");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl Properties {
    /// An empty bag.
    pub fn new() -> Self {
        Properties::default()
    }

    /// Adds or replaces a property (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// Adds or replaces a property.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.map.insert(name.into(), value.into());
    }

    /// Parses `name=value` pairs (as given to `-X` on the command line).
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut props = Properties::new();
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::config(pair, "expected `name=value`".to_string()))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(Error::config(pair, "empty property name"));
            }
            props.set(k, v.trim());
        }
        Ok(props)
    }

    /// Whether the value of property `name` is a secret that must never be shown
    /// (`sasl.password`, `ssl.key.password`, `sasl.jaas.config`, `ssl.key.pem`, and any name
    /// containing `password`, `secret` or `token`).
    pub fn is_secret(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        n.contains("password")
            || n.contains("secret")
            || n.contains("token")
            || n.contains("jaas")
            || n == "ssl.key.pem"
    }

    /// Whether the bag has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Removes and returns a raw value.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.map.remove(name)
    }

    /// Removes and parses a value with `parse`, naming the property in the error (and the
    /// value, unless the property is a secret).
    pub fn take_parsed<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(v) => parse(v.trim()).map(Some).map_err(|m| {
                if Properties::is_secret(name) {
                    Error::config(name, m)
                } else {
                    Error::config(name, format!("`{v}`: {m}"))
                }
            }),
        }
    }

    /// Removes and parses an integer.
    pub fn take_int<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        self.take_parsed(name, |v| {
            v.parse::<T>().map_err(|_| "not a valid number".into())
        })
    }

    /// Removes and parses a duration in milliseconds.
    pub fn take_ms(&mut self, name: &str) -> Result<Option<Duration>> {
        self.take_parsed(name, |v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| "not a non-negative number of milliseconds".into())
        })
    }

    /// Removes and parses a boolean (`true`/`false`).
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
        self.take_parsed(name, |v| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected `true` or `false`".into()),
        })
    }

    /// Fails, naming them, if any property was not consumed.
    pub fn finish(self) -> Result<()> {
        if let Some((k, _)) = self.map.into_iter().next() {
            return Err(Error::config(k, "unknown property"));
        }
        Ok(())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Properties::new();
        for (k, v) in iter {
            p.set(k, v);
        }
        p
    }
}

/// Settings every client (producer, consumer, admin) shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` addresses to discover the cluster from. Required.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent with every request, shows up in broker logs and quotas.
    /// Default `krust`.
    pub client_id: String,
    /// `request.timeout.ms`: how long to wait for a response, including the time to write the
    /// request. A timed-out request closes its connection (its outcome is unknown). Default
    /// 30 000 ms.
    #[serde(with = "ms")]
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: TCP connect, the TLS handshake, the ApiVersions
    /// exchange and SASL authentication together; a timeout names the step it stopped in.
    /// Default 10 000 ms.
    #[serde(with = "ms")]
    pub connection_setup_timeout: Duration,
    /// `metadata.max.age.ms`: metadata is refreshed at least this often. Default 300 000 ms.
    #[serde(with = "ms")]
    pub metadata_max_age: Duration,
    /// `retry.backoff.ms`: first backoff after a retriable error. Default 100 ms.
    #[serde(with = "ms")]
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the exponential backoff's ceiling (KIP-580). Default 1 000 ms.
    #[serde(with = "ms")]
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`: first wait before reconnecting to a broker. Default 50 ms.
    #[serde(with = "ms")]
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: ceiling for reconnect backoff. Default 1 000 ms.
    #[serde(with = "ms")]
    pub reconnect_backoff_max: Duration,
    /// `allow.auto.create.topics`: whether a Metadata request may create a missing topic
    /// (when the broker allows it). Default true.
    pub allow_auto_create_topics: bool,
    /// `max.response.size` (krust): the largest frame accepted from a broker; checked before
    /// any allocation. Default 100 MiB.
    pub max_response_size: usize,
    /// `io.thread` (krust): whether connections hand their large writes (frames over 64 KiB,
    /// such as a producer's full requests) to one dedicated thread of the process,
    /// `krust-io`, so the kernel's work of sending them runs beside the task that builds the
    /// next request. Small frames are written at once by the task that sends them either way,
    /// and responses are read on the caller's runtime. Off: everything runs on the caller's
    /// runtime (no thread is started). Default true.
    pub io_thread: bool,
    /// `security.protocol`, `sasl.*`, `ssl.*`: TLS and authentication (see
    /// [`SecurityConfig`]). Default PLAINTEXT. Not serialized: it holds secrets and, for
    /// OAUTHBEARER, code.
    #[serde(skip)]
    pub security: SecurityConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: Vec::new(),
            client_id: "krust".into(),
            request_timeout: Duration::from_millis(30_000),
            connection_setup_timeout: Duration::from_millis(10_000),
            metadata_max_age: Duration::from_millis(300_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1_000),
            allow_auto_create_topics: true,
            max_response_size: krust_wire::frame::DEFAULT_MAX_FRAME,
            io_thread: true,
            security: SecurityConfig::default(),
        }
    }
}

impl ClientConfig {
    /// A config for the given bootstrap servers (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: split_servers(bootstrap_servers),
            ..ClientConfig::default()
        }
    }

    /// Builds a config from properties; unknown properties are an error.
    pub fn from_properties(mut props: Properties) -> Result<Self> {
        let c = Self::take_from(&mut props)?;
        props.finish()?;
        Ok(c)
    }

    /// Consumes the client properties from `props`, leaving the others (for the producer's or
    /// consumer's own config to consume).
    pub fn take_from(props: &mut Properties) -> Result<Self> {
        let mut c = ClientConfig::default();
        if let Some(s) = props.take("bootstrap.servers") {
            c.bootstrap_servers = split_servers(&s);
        }
        if let Some(id) = props.take("client.id") {
            c.client_id = id;
        }
        macro_rules! ms {
            ($name:literal, $field:ident) => {
                if let Some(v) = props.take_ms($name)? {
                    c.$field = v;
                }
            };
        }
        ms!("request.timeout.ms", request_timeout);
        ms!(
            "socket.connection.setup.timeout.ms",
            connection_setup_timeout
        );
        ms!("metadata.max.age.ms", metadata_max_age);
        ms!("retry.backoff.ms", retry_backoff);
        ms!("retry.backoff.max.ms", retry_backoff_max);
        ms!("reconnect.backoff.ms", reconnect_backoff);
        ms!("reconnect.backoff.max.ms", reconnect_backoff_max);
        if let Some(v) = props.take_bool("allow.auto.create.topics")? {
            c.allow_auto_create_topics = v;
        }
        if let Some(v) = props.take_int::<usize>("max.response.size")? {
            c.max_response_size = v;
        }
        if let Some(v) = props.take_bool("io.thread")? {
            c.io_thread = v;
        }
        c.security = SecurityConfig::take_from(props)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::config("bootstrap.servers", "no servers given"));
        }
        for s in &self.bootstrap_servers {
            parse_host_port(s).map_err(|m| Error::config("bootstrap.servers", m))?;
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config("request.timeout.ms", "must be positive"));
        }
        if self.retry_backoff > self.retry_backoff_max {
            return Err(Error::config(
                "retry.backoff.ms",
                "must not exceed retry.backoff.max.ms",
            ));
        }
        if self.max_response_size < 1024 {
            return Err(Error::config("max.response.size", "must be at least 1024"));
        }
        self.security.validate()?;
        Ok(())
    }
}

fn split_servers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Drops a listener-name prefix such as `PLAINTEXT://` or `SASL_SSL://` from an address.
pub fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map_or(s, |(_, rest)| rest)
}

/// Splits `host:port` (IPv6 as `[addr]:port`), with a clear message when it is not one.
pub fn parse_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let s = strip_scheme(s);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{s}` has an invalid port"))?;
    Ok((host.to_string(), port))
}

/// serde helper: a `Duration` as integer milliseconds.
pub mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Deserializes from milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnectOptions;

    #[test]
    fn from_properties_reads_known_and_rejects_unknown() {
        let props = Properties::new()
            .with("bootstrap.servers", "127.0.0.1:9092, 127.0.0.1:9093")
            .with("client.id", "me")
            .with("request.timeout.ms", "5000");
        let c = ClientConfig::from_properties(props).unwrap();
        assert_eq!(c.bootstrap_servers.len(), 2);
        assert_eq!(c.client_id, "me");
        assert_eq!(c.request_timeout, Duration::from_millis(5000));

        let bad = Properties::new()
            .with("bootstrap.servers", "127.0.0.1:9092")
            .with("lingr.ms", "5");
        let e = ClientConfig::from_properties(bad).unwrap_err().to_string();
        assert!(e.contains("lingr.ms") && e.contains("unknown"), "{e}");

        let bad = Properties::new()
            .with("bootstrap.servers", "127.0.0.1:9092")
            .with("request.timeout.ms", "soon");
        let e = ClientConfig::from_properties(bad).unwrap_err().to_string();
        assert!(
            e.contains("request.timeout.ms") && e.contains("soon"),
            "{e}"
        );

        let e =
            ClientConfig::from_properties(Properties::new().with("bootstrap.servers", "nohost"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("not host:port"), "{e}");
        assert!(Properties::parse_pairs(["a=b", "c"]).is_err());
    }

    #[test]
    fn io_thread_is_on_by_default_and_can_be_turned_off() {
        let base = || Properties::new().with("bootstrap.servers", "127.0.0.1:9092");
        assert!(ClientConfig::from_properties(base()).unwrap().io_thread);
        let c = ClientConfig::from_properties(base().with("io.thread", "false")).unwrap();
        assert!(!c.io_thread);
        assert!(!ConnectOptions::from_config(&c).unwrap().io_thread);
        let e = ClientConfig::from_properties(base().with("io.thread", "sometimes"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("io.thread") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn serde_round_trip() {
        let mut c = ClientConfig::new("127.0.0.1:9092");
        c.request_timeout = Duration::from_millis(1234);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"request_timeout\":1234"), "{json}");
        let back: ClientConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
