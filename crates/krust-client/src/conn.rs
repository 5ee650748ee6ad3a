//! One multiplexed connection to one broker.
//!
//! Requests are encoded by the caller, written at once when small or else queued to a writer
//! task (on the process's I/O thread by default: see `io.thread` in [`ClientConfig`]), and
//! matched to responses by correlation id in a reader task, so any number of requests can be in
//! flight on one socket (pipelining), and responses are decoded on the caller's task.
//!
//! Invariants:
//! - **Cancel safety.** A frame is taken whole or not at all (`Writer::send`, synchronous), so
//!   dropping a request future never leaves half a frame on the socket; a `PendingGuard`
//!   removes the correlation id when the future is dropped, and a late response for it is
//!   discarded.
//! - **Timeouts cover the whole exchange**, including a write stalled by a full socket buffer.
//!   A request that times out closes the connection (as the Java client does): its outcome is
//!   unknown and later responses on that socket can no longer be trusted to be timely.
//! - A response whose correlation id matches nothing in flight is a protocol violation: the
//!   connection is closed and every pending request fails.
//! - **Setup order** (all within `socket.connection.setup.timeout.ms`, and a timeout names the
//!   step it stopped in): TCP, TLS (`SSL`/`SASL_SSL`), ApiVersions, then SaslHandshake +
//!   SaslAuthenticate (`SASL_*`). The connection is handed out only once authenticated.
//! - **Re-authentication (KIP-368).** When the broker gives a session lifetime, a task
//!   re-authenticates at 85-95% of it on the same socket. While it runs, new requests wait at a
//!   gate (requests already sent complete normally; responses are matched by correlation id), so
//!   no request reaches the broker between SaslHandshake and the last SaslAuthenticate. A failed
//!   re-authentication closes the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use krust_wire::frame::{
    encode_produce_batches_frame, encode_produce_frame, FramePiece, FrameReader, ProduceBatches,
};
use krust_wire::header::{encode_request, peek_correlation_id, split_response};
use krust_wire::versions::{api_versions_retry, decode_api_versions};
use krust_wire::{decode_response, ApiKey, BrokerVersions, ErrorCode, KafkaRequest};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::{debug, trace, warn};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::security::sasl::SaslSession;
use crate::security::{SaslConfig, SaslMechanism, Security};

mod writer;

use writer::{Outgoing, Writer};

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How to open connections: identity, limits and security. Built once per client.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `client.id` sent with every request.
    pub client_id: String,
    /// Bounds TCP connect, TLS, ApiVersions and SASL together.
    pub setup_timeout: Duration,
    /// The largest response frame accepted.
    pub max_frame: usize,
    /// TLS and SASL, ready to use.
    pub security: Arc<Security>,
    /// Whether large writes go to the process's I/O thread (`io.thread`, see
    /// [`ClientConfig::io_thread`]).
    pub io_thread: bool,
}

impl ConnectOptions {
    /// Plaintext options.
    pub fn new(client_id: &str, setup_timeout: Duration, max_frame: usize) -> Self {
        ConnectOptions {
            client_id: client_id.to_string(),
            setup_timeout,
            max_frame,
            security: Security::plaintext(),
            io_thread: true,
        }
    }

    /// Options from a client config; prepares its security settings (reads TLS files), so
    /// errors in them surface here, naming the property.
    pub fn from_config(config: &ClientConfig) -> Result<Self> {
        Ok(ConnectOptions {
            client_id: config.client_id.clone(),
            setup_timeout: config.connection_setup_timeout,
            max_frame: config.max_response_size,
            security: Security::new(&config.security)?,
            io_thread: config.io_thread,
        })
    }
}

/// Node id of a broker (negative for bootstrap addresses not yet identified).
pub type NodeId = i32;

type Waiter = oneshot::Sender<std::result::Result<Bytes, String>>;

struct Shared {
    pending: Mutex<HashMap<i32, Waiter>>,
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
    shutdown: watch::Sender<bool>,
    /// Held for writing while re-authenticating; requests pass it (shared) to be queued.
    gate: tokio::sync::RwLock<()>,
    /// Added to "connection closed by the broker" while the cause is likely a protocol
    /// mismatch (TLS or SASL expected by the listener); cleared once the connection is proven.
    eof_hint: Mutex<Option<String>>,
    hint_active: AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Shared {
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            shutdown: watch::channel(false).0,
            gate: tokio::sync::RwLock::new(()),
            eof_hint: Mutex::new(None),
            hint_active: AtomicBool::new(false),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self, reason: String) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.close_reason.lock().unwrap() = Some(reason.clone());
        let waiters: Vec<Waiter> = self
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in waiters {
            let _ = w.send(Err(reason.clone()));
        }
        self.shutdown.send_replace(true);
    }

    fn set_hint(&self, hint: Option<String>) {
        self.hint_active.store(hint.is_some(), Ordering::Release);
        *self.eof_hint.lock().unwrap() = hint;
    }

    fn hint(&self) -> String {
        self.eof_hint.lock().unwrap().clone().unwrap_or_default()
    }

    fn reason(&self) -> String {
        self.close_reason
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }
}

/// Removes a correlation id from the pending map when the request future ends for any reason.
struct PendingGuard<'a> {
    shared: &'a Shared,
    correlation_id: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap()
            .remove(&self.correlation_id);
    }
}

/// The request machinery of one connection, shared with its re-authentication task.
struct Core {
    node: NodeId,
    addr: String,
    client_id: String,
    writer: Arc<Writer>,
    shared: Arc<Shared>,
    next_correlation: AtomicI32,
    floor: Mutex<RoundTripFloor>,
}

/// Request plus response bytes below which an exchange measures the network's round trip
/// rather than the time its bytes take.
const SMALL_EXCHANGE: usize = 16 * 1024;

/// How long a round-trip floor stands without a lower sample to confirm it: the floor is the
/// least of this period's and the last period's small exchanges.
const FLOOR_PERIOD: Duration = Duration::from_secs(10);

/// The least round trip of a connection's small exchanges, over the last one or two
/// [`FLOOR_PERIOD`]s (kept, if no small exchange came since, until one does).
#[derive(Debug, Default)]
struct RoundTripFloor {
    current: Option<Duration>,
    previous: Option<Duration>,
    since: Option<Instant>,
}

impl RoundTripFloor {
    fn record(&mut self, took: Duration, now: Instant) {
        match self.since {
            Some(since) if now.saturating_duration_since(since) < FLOOR_PERIOD => {}
            _ => {
                if self.current.is_some() {
                    self.previous = self.current.take();
                }
                self.since = Some(now);
            }
        }
        self.current = Some(self.current.map_or(took, |c| c.min(took)));
    }

    fn floor(&self) -> Option<Duration> {
        self.current.into_iter().chain(self.previous).min()
    }
}

/// A live connection to one broker, after the ApiVersions exchange (and authentication).
pub struct Connection {
    core: Arc<Core>,
    versions: BrokerVersions,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("node", &self.core.node)
            .field("addr", &self.core.addr)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.core.shared.close("connection dropped".into());
    }
}

/// Setup steps, named in timeout errors.
#[derive(Clone, Copy)]
enum Step {
    Tcp,
    Tls,
    ApiVersions,
    Sasl,
}

impl Step {
    fn describe(self, security: &Security) -> String {
        match self {
            Step::Tcp => "in the TCP connect".into(),
            Step::Tls => "in the TLS handshake (is this a TLS listener? a plaintext listener may never answer a TLS ClientHello; then use security.protocol=PLAINTEXT or SASL_PLAINTEXT)".into(),
            Step::ApiVersions if security.protocol().uses_tls() => "waiting for the ApiVersions answer (is this a Kafka listener?)".into(),
            Step::ApiVersions => "waiting for the ApiVersions answer (is this a Kafka listener? if it expects TLS, set security.protocol=SSL or SASL_SSL)".into(),
            Step::Sasl => format!(
                "in SASL authentication ({})",
                security.sasl().map_or("?", |s| s.mechanism().name())
            ),
        }
    }
}

impl Connection {
    /// Connects to `addr` in plaintext, starts the I/O tasks and negotiates API versions. The
    /// whole setup is bounded by `setup_timeout`.
    pub async fn connect(
        node: NodeId,
        addr: &str,
        client_id: &str,
        setup_timeout: Duration,
        max_frame: usize,
    ) -> Result<Connection> {
        Self::connect_with(
            node,
            addr,
            &ConnectOptions::new(client_id, setup_timeout, max_frame),
        )
        .await
    }

    /// Connects to `addr` with `options`: TCP, TLS if the security protocol says so,
    /// ApiVersions, then SASL authentication if configured. The whole setup is bounded by
    /// `options.setup_timeout`; a timeout says which step it stopped in.
    ///
    /// Cancel safety: dropping the future closes the half-made connection.
    pub async fn connect_with(
        node: NodeId,
        addr: &str,
        options: &ConnectOptions,
    ) -> Result<Connection> {
        let transport = |message: String| Error::Transport {
            broker: node,
            addr: addr.to_string(),
            message,
        };
        let security = &options.security;
        let step = Mutex::new(Step::Tcp);
        let set_step = |s: Step| *step.lock().unwrap() = s;
        let setup = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| transport(format!("connect failed: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (rd, wr): (BoxRead, BoxWrite) = if security.protocol().uses_tls() {
                set_step(Step::Tls);
                Self::tls(node, addr, security, stream).await?
            } else {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            };
            set_step(Step::ApiVersions);
            let shared = Arc::new(Shared::new());
            if !security.protocol().uses_tls() {
                shared.set_hint(Some(
                    " (if this is a TLS listener, set security.protocol=SSL or SASL_SSL)".into(),
                ));
            }
            let writer = Writer::start(wr, shared.clone(), options.io_thread);
            tokio::spawn(read_loop(
                rd,
                shared.clone(),
                FrameReader::new(options.max_frame),
            ));
            let mut conn = Connection {
                core: Arc::new(Core {
                    node,
                    addr: addr.to_string(),
                    client_id: options.client_id.clone(),
                    writer,
                    shared,
                    next_correlation: AtomicI32::new(1),
                    floor: Mutex::new(RoundTripFloor::default()),
                }),
                versions: BrokerVersions::default(),
            };
            conn.versions = conn.handshake(options.setup_timeout).await?;
            let shared = &conn.core.shared;
            match security.sasl() {
                None => shared.set_hint(Some(
                    " right after ApiVersions (if the listener requires authentication, set security.protocol=SASL_PLAINTEXT or SASL_SSL and sasl.mechanism)"
                        .into(),
                )),
                Some(sasl) => {
                    set_step(Step::Sasl);
                    shared.set_hint(Some(format!(
                        " during SASL authentication with {} (does the listener offer it?)",
                        sasl.mechanism()
                    )));
                    let lifetime =
                        authenticate(&conn.core, &conn.versions, sasl, options.setup_timeout)
                            .await?;
                    shared.set_hint(None);
                    if let Some(lifetime) = lifetime {
                        tokio::spawn(reauthenticate(
                            conn.core.clone(),
                            conn.versions.clone(),
                            sasl.clone(),
                            options.setup_timeout,
                            lifetime,
                        ));
                    }
                }
            }
            Ok(conn)
        };
        match tokio::time::timeout(options.setup_timeout, setup).await {
            // A setup request times out together with the whole setup: report the step.
            Ok(Err(Error::Timeout { .. })) | Err(_) => {
                let at = *step.lock().unwrap();
                Err(transport(format!(
                    "connection setup timed out after {:?} {}",
                    options.setup_timeout,
                    at.describe(security)
                )))
            }
            Ok(r) => r,
        }
    }

    #[cfg(feature = "tls-core")]
    async fn tls(
        node: NodeId,
        addr: &str,
        security: &Security,
        stream: TcpStream,
    ) -> Result<(BoxRead, BoxWrite)> {
        let connector = security
            .tls()
            .ok_or_else(|| Error::config("security.protocol", "TLS is not configured"))?;
        let (host, _) = crate::config::parse_host_port(addr)
            .map_err(|m| Error::config("bootstrap.servers", m))?;
        let tls = connector
            .connect(&host, stream)
            .await
            .map_err(|message| Error::Tls {
                broker: node,
                addr: addr.to_string(),
                message,
            })?;
        let (rd, wr) = tokio::io::split(tls);
        Ok((Box::new(rd), Box::new(wr)))
    }

    #[cfg(not(feature = "tls-core"))]
    async fn tls(
        _node: NodeId,
        _addr: &str,
        security: &Security,
        _stream: TcpStream,
    ) -> Result<(BoxRead, BoxWrite)> {
        Err(Error::config(
            "security.protocol",
            format!(
                "`{}` needs TLS, which this build of krust lacks: enable the `tls` feature of krust-client (or `tls-rustcrypto` for the pure-Rust provider)",
                security.protocol()
            ),
        ))
    }

    async fn handshake(&self, timeout: Duration) -> Result<BrokerVersions> {
        let mut version = ApiKey::ApiVersions.client_range().1;
        loop {
            let mut req = ApiVersionsRequest::default();
            req.client_software_name = StrBytes::from_static_str("krust");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let body = self.core.round_trip(&req, version, timeout, false).await?;
            let resp: ApiVersionsResponse =
                decode_api_versions(body, version).map_err(|source| Error::Wire {
                    broker: self.core.node,
                    source,
                })?;
            if resp.error_code == ErrorCode::UNSUPPORTED_VERSION.0 {
                match api_versions_retry(&resp, version) {
                    Some(v) => {
                        debug!(
                            broker = self.core.node,
                            from = version,
                            to = v,
                            "ApiVersions downgrade"
                        );
                        version = v;
                        continue;
                    }
                    None => {
                        return Err(Error::broker(
                            ApiKey::ApiVersions,
                            ErrorCode::UNSUPPORTED_VERSION,
                        ))
                    }
                }
            }
            if resp.error_code != 0 {
                return Err(Error::broker(ApiKey::ApiVersions, resp.error_code.into()));
            }
            return Ok(BrokerVersions::from_response(&resp));
        }
    }

    /// The broker's node id (negative for a bootstrap address).
    pub fn node(&self) -> NodeId {
        self.core.node
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.core.addr
    }

    /// The versions the broker announced.
    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// The least round trip of this connection's small exchanges lately (ApiVersions at
    /// connect, small requests): the network's share of a request's time, without its bytes'.
    pub fn round_trip_floor(&self) -> Option<Duration> {
        self.core.floor.lock().unwrap().floor()
    }

    /// Whether the connection can still carry requests.
    pub fn is_alive(&self) -> bool {
        !self.core.shared.is_closed()
    }

    /// Closes the connection; every request in flight fails.
    pub fn close(&self, reason: &str) {
        self.core.shared.close(reason.to_string());
    }

    /// The version negotiated for `api`.
    pub fn version_for(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .negotiate(api)
            .map_err(|source| Error::Unsupported {
                broker: self.core.node,
                source,
            })
    }

    /// Sends `req` at `version` and decodes the response.
    ///
    /// Cancel safety: dropping the future is safe; the request may or may not reach the broker,
    /// and its response, if any, is discarded.
    pub async fn request<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let resp = self.core.request(req, version, timeout, true).await?;
        if self.core.shared.hint_active.load(Ordering::Acquire) {
            // The listener accepted a real request: mismatch hints no longer apply.
            self.core.shared.set_hint(None);
        }
        Ok(resp)
    }

    /// Sends `req` at `version` without waiting for a response (acks=0 Produce). Resolves once
    /// the frame was written to the socket.
    pub async fn send_only<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<()> {
        let core = &self.core;
        let (frame, rest, _) = core.encode(req, version)?;
        let (wtx, wrx) = oneshot::channel();
        let fut = async {
            {
                let _gate = core.shared.gate.read().await;
                core.writer
                    .send(
                        Outgoing {
                            frame,
                            rest,
                            written: Some(wtx),
                        },
                        &core.shared,
                    )
                    .map_err(|_| core.closed_error())?;
            }
            wrx.await.map_err(|_| core.closed_error())
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.close("write timed out");
                Err(Error::Timeout {
                    api: R::API_KEY,
                    broker: core.node,
                    after: timeout,
                })
            }
        }
    }
}

impl Core {
    fn closed_error(&self) -> Error {
        Error::Transport {
            broker: self.node,
            addr: self.addr.clone(),
            message: self.shared.reason(),
        }
    }

    async fn request<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        gated: bool,
    ) -> Result<R::Response> {
        let body = self.round_trip(req, version, timeout, gated).await?;
        decode_response::<R::Response>(body, version).map_err(|source| {
            // Undecodable bytes mean the stream can no longer be trusted.
            self.shared.close("undecodable response".into());
            Error::Wire {
                broker: self.node,
                source,
            }
        })
    }

    /// Encodes a request frame: its first piece, any further pieces, and its correlation id.
    fn encode<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<(Bytes, Vec<FramePiece>, i32)> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let wire_err = |source| Error::Wire {
            broker: self.node,
            source,
        };
        // A Produce request's record batches are written from their own buffers, not copied
        // into the frame (a megabyte per request at the default batch size).
        let any = req as &dyn std::any::Any;
        let produce = if let Some(produce) = any.downcast_ref::<ProduceBatches>() {
            let frame = encode_produce_batches_frame(
                produce,
                version,
                correlation_id,
                Some(&self.client_id),
            );
            Some(frame.map_err(wire_err)?)
        } else if let Some(produce) = any.downcast_ref::<ProduceRequest>() {
            encode_produce_frame(produce, version, correlation_id, Some(&self.client_id))
                .map_err(wire_err)?
        } else {
            None
        };
        if let Some((head, rest)) = produce {
            return Ok((head, rest, correlation_id));
        }
        // Sized up front: a produce request of a megabyte would otherwise grow (and copy) its
        // buffer a dozen times. The header is at most 4 + 2 + 2 + 4 + 2 + client id + 1 bytes.
        let body = req.compute_size(version).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(body + 16 + self.client_id.len());
        encode_request(
            &mut buf,
            req,
            version,
            correlation_id,
            Some(&self.client_id),
        )
        .map_err(wire_err)?;
        Ok((buf.freeze(), Vec::new(), correlation_id))
    }

    /// One request/response exchange. `gated` requests wait while a re-authentication runs;
    /// the authentication exchanges themselves are not gated.
    async fn round_trip<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        gated: bool,
    ) -> Result<Bytes> {
        if self.shared.is_closed() {
            return Err(self.closed_error());
        }
        let (frame, rest, correlation_id) = self.encode(req, version)?;
        let out = Outgoing {
            frame,
            rest,
            written: None,
        };
        let request_bytes = out.len();
        let started = Instant::now();
        let (rtx, rrx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap()
            .insert(correlation_id, rtx);
        let _guard = PendingGuard {
            shared: &self.shared,
            correlation_id,
        };
        trace!(broker = self.node, api = %R::API_KEY, version, correlation_id, "request");
        let exchange = async {
            {
                let _gate = if gated {
                    Some(self.shared.gate.read().await)
                } else {
                    None
                };
                self.writer
                    .send(out, &self.shared)
                    .map_err(|_| self.closed_error())?;
            }
            match rrx.await {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(reason)) => Err(Error::Transport {
                    broker: self.node,
                    addr: self.addr.clone(),
                    message: reason,
                }),
                Err(_) => Err(self.closed_error()),
            }
        };
        let frame = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                warn!(broker = self.node, api = %R::API_KEY, ?timeout, "request timed out; closing connection");
                self.shared
                    .close(format!("{} request timed out", R::API_KEY));
                return Err(Error::Timeout {
                    api: R::API_KEY,
                    broker: self.node,
                    after: timeout,
                });
            }
        };
        if request_bytes + frame.len() <= SMALL_EXCHANGE {
            let now = Instant::now();
            self.floor
                .lock()
                .unwrap()
                .record(now.saturating_duration_since(started), now);
        }
        let (id, body) =
            split_response(frame, R::API_KEY, version).map_err(|source| Error::Wire {
                broker: self.node,
                source,
            })?;
        debug_assert_eq!(id, correlation_id);
        Ok(body)
    }
}

/// A bounded, printable copy of a broker-supplied message, with the password (if the broker
/// echoed it, however unlikely) replaced.
fn broker_text(msg: &str, password: Option<&str>) -> String {
    let mut m: String = msg
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        m = m.replace(p, "[redacted]");
    }
    m
}

/// SaslHandshake + SaslAuthenticate rounds (KIP-152) on `core`. Returns the session lifetime
/// the broker set (KIP-368), if any. Errors are one line and never contain a secret.
async fn authenticate(
    core: &Core,
    versions: &BrokerVersions,
    sasl: &SaslConfig,
    timeout: Duration,
) -> Result<Option<Duration>> {
    let mech = sasl.mechanism();
    let fail = |message: String| Error::Authentication {
        broker: core.node,
        addr: core.addr.clone(),
        message,
    };
    let who = if mech == SaslMechanism::OAuthBearer {
        mech.name().to_string()
    } else {
        format!("{mech} as `{}`", sasl.username())
    };
    let hv = versions.negotiate(ApiKey::SaslHandshake).map_err(|_| {
        fail("the broker does not support SASL (no SaslHandshake in ApiVersions)".into())
    })?;
    if hv < 1 {
        return Err(fail(
            "the broker only has SaslHandshake v0 (Kafka < 1.0); krust needs v1 (KIP-152)".into(),
        ));
    }
    let av = versions
        .negotiate(ApiKey::SaslAuthenticate)
        .map_err(|_| fail("the broker does not support SaslAuthenticate (KIP-152)".into()))?;
    let mut req = SaslHandshakeRequest::default();
    req.mechanism = StrBytes::from_static_str(mech.name());
    let resp: SaslHandshakeResponse = core.request(&req, hv, timeout, false).await?;
    if resp.error_code != 0 {
        let offered: Vec<String> = resp
            .mechanisms
            .iter()
            .take(16)
            .map(|m| broker_text(m, None))
            .collect();
        let offered = if offered.is_empty() {
            "none".to_string()
        } else {
            offered.join(", ")
        };
        let code = ErrorCode(resp.error_code);
        return Err(fail(if code == ErrorCode::UNSUPPORTED_SASL_MECHANISM {
            format!("the broker does not offer SASL mechanism {mech}; it offers: {offered}")
        } else {
            format!("SaslHandshake for {mech} failed: {code} (is this a SASL listener? it offers: {offered})")
        }));
    }
    let (mut session, first) = SaslSession::start(sasl).await.map_err(fail)?;
    let mut out = first;
    loop {
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = Bytes::copy_from_slice(out.expose());
        drop(out);
        let resp: SaslAuthenticateResponse = core.request(&req, av, timeout, false).await?;
        drop(req);
        if resp.error_code != 0 {
            let code = ErrorCode(resp.error_code);
            let reason = match (session.rejection(), resp.error_message.as_deref()) {
                (Some(r), _) => r.to_string(),
                (None, Some(m)) if !m.is_empty() => format!(
                    "{code}: {}",
                    broker_text(m, Some(sasl.password_for_redaction()))
                ),
                _ => code.to_string(),
            };
            let hint = if code == ErrorCode::SASL_AUTHENTICATION_FAILED
                && mech != SaslMechanism::OAuthBearer
            {
                " (wrong user name or password?)"
            } else {
                ""
            };
            return Err(fail(format!("{who}: {reason}{hint}")));
        }
        match session.step(&resp.auth_bytes).await {
            Ok(Some(next)) => out = next,
            Ok(None) => {
                // Capped at a year: a broker's absurd value must not overflow a timer.
                let lifetime = (resp.session_lifetime_ms > 0).then(|| {
                    Duration::from_millis(resp.session_lifetime_ms as u64)
                        .min(Duration::from_secs(365 * 24 * 3600))
                });
                debug!(broker = core.node, mechanism = %mech, ?lifetime, "authenticated");
                return Ok(lifetime);
            }
            Err(e) => return Err(fail(format!("{who}: {e}"))),
        }
    }
}

/// KIP-368: re-authenticates before each session lifetime ends, until the connection closes.
async fn reauthenticate(
    core: Arc<Core>,
    versions: BrokerVersions,
    sasl: SaslConfig,
    timeout: Duration,
    mut lifetime: Duration,
) {
    let mut shutdown = core.shared.shutdown.subscribe();
    loop {
        // 85-95% of the lifetime, randomized so a client's connections spread out.
        let delay = lifetime
            .mul_f64(rand::thread_rng().gen_range(0.85..0.95))
            .max(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|closed| *closed) => return,
        }
        let result = {
            let _gate = tokio::select! {
                g = core.shared.gate.write() => g,
                _ = shutdown.wait_for(|closed| *closed) => return,
            };
            tokio::time::timeout(timeout, authenticate(&core, &versions, &sasl, timeout)).await
        };
        match result {
            Ok(Ok(Some(next))) => {
                debug!(broker = core.node, lifetime = ?next, "re-authenticated");
                lifetime = next;
            }
            Ok(Ok(None)) => {
                debug!(
                    broker = core.node,
                    "re-authenticated; the broker set no new lifetime"
                );
                return;
            }
            Ok(Err(e)) => {
                warn!(broker = core.node, error = %e, "re-authentication failed; closing the connection");
                core.shared.close(format!("re-authentication failed: {e}"));
                return;
            }
            Err(_) => {
                warn!(
                    broker = core.node,
                    "re-authentication timed out; closing the connection"
                );
                core.shared
                    .close(format!("re-authentication timed out after {timeout:?}"));
                return;
            }
        }
    }
}

/// Makes room in `buf` for the rest of the frame it starts with (when its size is known and
/// allowed), so a large response is read in place instead of through repeated regrowth.
fn reserve_for_frame(buf: &mut BytesMut, max_frame: usize) {
    let min_room = 4096;
    let want = if buf.len() >= 4 {
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        match usize::try_from(len) {
            Ok(len) if len <= max_frame => (len + 4).saturating_sub(buf.len()).max(min_room),
            // A bad size: the frame reader reports it; read on in small steps meanwhile.
            _ => min_room,
        }
    } else {
        min_room
    };
    if buf.capacity() - buf.len() < want {
        buf.reserve(want.max(64 * 1024));
    }
}

async fn read_loop(mut rd: BoxRead, shared: Arc<Shared>, frames: FrameReader) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        loop {
            match frames.try_read(&mut buf) {
                Ok(Some(frame)) => {
                    let id = match peek_correlation_id(&frame) {
                        Ok(id) => id,
                        Err(e) => {
                            shared.close(format!("bad response: {e}"));
                            return;
                        }
                    };
                    let waiter = shared.pending.lock().unwrap().remove(&id);
                    match waiter {
                        Some(w) => {
                            let _ = w.send(Ok(frame));
                        }
                        None => {
                            // Either a request whose future was dropped (its guard removed the
                            // entry) or a broker bug. Dropped futures are the common case, so
                            // the frame is discarded; ids are never reused while a connection
                            // lives (2^31 requests), so this cannot misroute.
                            trace!(correlation_id = id, "response for an abandoned request");
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A TLS record (alert 0x15 or handshake 0x16, version 3.x) where a Kafka
                    // frame should be: the listener speaks TLS and we do not.
                    if buf.len() >= 2 && matches!(buf[0], 0x15 | 0x16) && buf[1] == 0x03 {
                        shared.close(
                            "the broker answered with TLS: set security.protocol=SSL or SASL_SSL"
                                .into(),
                        );
                    } else {
                        shared.close(format!("bad frame: {e}"));
                    }
                    return;
                }
            }
        }
        reserve_for_frame(&mut buf, frames.max_frame());
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shutdown.wait_for(|closed| *closed) => return,
        };
        match n {
            // A TLS stream reports a close without close_notify as UnexpectedEof: to the user
            // it is the same event as a plaintext close.
            Ok(0) => {
                if buf.len() >= 2 && matches!(buf[0], 0x15 | 0x16) && buf[1] == 0x03 {
                    shared.close(
                        "the broker answered with TLS and closed: set security.protocol=SSL or SASL_SSL"
                            .into(),
                    );
                } else {
                    shared.close(format!("connection closed by the broker{}", shared.hint()));
                }
                return;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                shared.close(format!("connection closed by the broker{}", shared.hint()));
                return;
            }
            Err(e) => {
                // rustls reports a TLS alert from the broker as a read error; after a TLS 1.3
                // handshake that is how a refused client certificate shows up.
                let hint = if e.to_string().contains("received fatal alert") {
                    " (the broker ended the TLS session: does it require a client certificate, \
                     ssl.certificate.location and ssl.key.location, or one from another CA?)"
                } else {
                    ""
                };
                shared.close(format!("read failed: {e}{hint}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_reserved_for_a_whole_announced_frame_within_the_limit() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(1_000_000i32).to_be_bytes());
        reserve_for_frame(&mut buf, 2_000_000);
        assert!(buf.capacity() >= 1_000_004);
        // A size over the limit (or negative) reserves only a small step.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(i32::MAX).to_be_bytes());
        reserve_for_frame(&mut buf, 2_000_000);
        assert!(buf.capacity() < 1_000_000);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(-5i32).to_be_bytes());
        reserve_for_frame(&mut buf, 2_000_000);
        assert!(buf.capacity() < 1_000_000);
    }

    /// The floor is the least small exchange of this period and the last; an older low one
    /// gives way. After an idle spell the first sample opens a new period, and the period
    /// before the spell still counts.
    #[test]
    fn the_round_trip_floor_keeps_to_the_last_two_periods() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = RoundTripFloor::default();
        assert_eq!(f.floor(), None);
        f.record(ms(5), t0);
        f.record(ms(3), t0 + ms(100));
        assert_eq!(f.floor(), Some(ms(3)));
        // Next period: 8 ms; the 3 ms of the period before still counts.
        f.record(ms(8), t0 + FLOOR_PERIOD + ms(200));
        assert_eq!(f.floor(), Some(ms(3)));
        // A period later the 3 ms is gone.
        f.record(ms(9), t0 + 2 * FLOOR_PERIOD + ms(300));
        assert_eq!(f.floor(), Some(ms(8)));
        // An hour with no samples, then 12 ms: the 9 ms period before the spell still counts,
        // the 8 ms two periods back does not.
        f.record(ms(12), t0 + Duration::from_secs(3600));
        assert_eq!(f.floor(), Some(ms(9)));
    }
}
