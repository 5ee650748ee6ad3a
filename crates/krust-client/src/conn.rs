//! One multiplexed connection to one broker.
//!
//! Requests are encoded by the caller, queued to a writer task, and matched to responses by
//! correlation id in a reader task, so any number of requests can be in flight on one socket
//! (pipelining), and responses are decoded on the caller's task.
//!
//! Invariants:
//! - **Cancel safety.** A frame is queued whole or not at all (a channel send), so dropping a
//!   request future never leaves half a frame on the socket; a [`PendingGuard`] removes the
//!   correlation id when the future is dropped, and a late response for it is discarded.
//! - **Timeouts cover the whole exchange**, including a write stalled by a full socket buffer.
//!   A request that times out closes the connection (as the Java client does): its outcome is
//!   unknown and later responses on that socket can no longer be trusted to be timely.
//! - A response whose correlation id matches nothing in flight is a protocol violation: the
//!   connection is closed and every pending request fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use krust_wire::frame::FrameReader;
use krust_wire::header::{encode_request, peek_correlation_id, split_response};
use krust_wire::versions::{api_versions_retry, decode_api_versions};
use krust_wire::{decode_response, ApiKey, BrokerVersions, ErrorCode, KafkaRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, trace, warn};

use crate::error::{Error, Result};

/// Node id of a broker (negative for bootstrap addresses not yet identified).
pub type NodeId = i32;

type Waiter = oneshot::Sender<std::result::Result<Bytes, String>>;

struct Outgoing {
    frame: Bytes,
    written: Option<oneshot::Sender<()>>,
}

struct Shared {
    pending: Mutex<HashMap<i32, Waiter>>,
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
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

/// A live connection to one broker, after the ApiVersions exchange.
pub struct Connection {
    node: NodeId,
    addr: String,
    client_id: String,
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    next_correlation: AtomicI32,
    versions: BrokerVersions,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close("connection dropped".into());
    }
}

impl Connection {
    /// Connects to `addr`, starts the I/O tasks and negotiates API versions. The whole setup is
    /// bounded by `setup_timeout`.
    pub async fn connect(
        node: NodeId,
        addr: &str,
        client_id: &str,
        setup_timeout: Duration,
        max_frame: usize,
    ) -> Result<Connection> {
        let transport = |message: String| Error::Transport {
            broker: node,
            addr: addr.to_string(),
            message,
        };
        let setup = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| transport(format!("connect failed: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            let (tx, rx) = mpsc::channel(1024);
            let shared = Arc::new(Shared {
                pending: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                close_reason: Mutex::new(None),
                shutdown: watch::channel(false).0,
            });
            tokio::spawn(write_loop(wr, rx, shared.clone()));
            tokio::spawn(read_loop(rd, shared.clone(), FrameReader::new(max_frame)));
            let mut conn = Connection {
                node,
                addr: addr.to_string(),
                client_id: client_id.to_string(),
                tx,
                shared,
                next_correlation: AtomicI32::new(1),
                versions: BrokerVersions::default(),
            };
            conn.versions = conn.handshake(setup_timeout).await?;
            Ok(conn)
        };
        match tokio::time::timeout(setup_timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(transport(format!(
                "connection setup timed out after {setup_timeout:?} (is this a Kafka listener?)"
            ))),
        }
    }

    async fn handshake(&self, timeout: Duration) -> Result<BrokerVersions> {
        let mut version = ApiKey::ApiVersions.client_range().1;
        loop {
            let mut req = ApiVersionsRequest::default();
            req.client_software_name = StrBytes::from_static_str("krust");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let body = self.round_trip(&req, version, timeout).await?;
            let resp: ApiVersionsResponse =
                decode_api_versions(body, version).map_err(|source| Error::Wire {
                    broker: self.node,
                    source,
                })?;
            if resp.error_code == ErrorCode::UNSUPPORTED_VERSION.0 {
                match api_versions_retry(&resp, version) {
                    Some(v) => {
                        debug!(
                            broker = self.node,
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
        self.node
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The versions the broker announced.
    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// Whether the connection can still carry requests.
    pub fn is_alive(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Closes the connection; every request in flight fails.
    pub fn close(&self, reason: &str) {
        self.shared.close(reason.to_string());
    }

    /// The version negotiated for `api`.
    pub fn version_for(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .negotiate(api)
            .map_err(|source| Error::Unsupported {
                broker: self.node,
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
        let body = self.round_trip(req, version, timeout).await?;
        decode_response::<R::Response>(body, version).map_err(|source| {
            // Undecodable bytes mean the stream can no longer be trusted.
            self.close("undecodable response");
            Error::Wire {
                broker: self.node,
                source,
            }
        })
    }

    /// Sends `req` at `version` without waiting for a response (acks=0 Produce). Resolves once
    /// the frame was written to the socket.
    pub async fn send_only<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<()> {
        let (frame, _) = self.encode(req, version)?;
        let (wtx, wrx) = oneshot::channel();
        let fut = async {
            self.tx
                .send(Outgoing {
                    frame,
                    written: Some(wtx),
                })
                .await
                .map_err(|_| self.closed_error())?;
            wrx.await.map_err(|_| self.closed_error())
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.close("write timed out");
                Err(Error::Timeout {
                    api: R::API_KEY,
                    broker: self.node,
                    after: timeout,
                })
            }
        }
    }

    fn closed_error(&self) -> Error {
        Error::Transport {
            broker: self.node,
            addr: self.addr.clone(),
            message: self.shared.reason(),
        }
    }

    fn encode<R: KafkaRequest>(&self, req: &R, version: i16) -> Result<(Bytes, i32)> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let mut buf = BytesMut::with_capacity(256);
        encode_request(
            &mut buf,
            req,
            version,
            correlation_id,
            Some(&self.client_id),
        )
        .map_err(|source| Error::Wire {
            broker: self.node,
            source,
        })?;
        Ok((buf.freeze(), correlation_id))
    }

    async fn round_trip<R: KafkaRequest>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes> {
        if !self.is_alive() {
            return Err(self.closed_error());
        }
        let (frame, correlation_id) = self.encode(req, version)?;
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
            self.tx
                .send(Outgoing {
                    frame,
                    written: None,
                })
                .await
                .map_err(|_| self.closed_error())?;
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
                self.close(&format!("{} request timed out", R::API_KEY));
                return Err(Error::Timeout {
                    api: R::API_KEY,
                    broker: self.node,
                    after: timeout,
                });
            }
        };
        let (id, body) =
            split_response(frame, R::API_KEY, version).map_err(|source| Error::Wire {
                broker: self.node,
                source,
            })?;
        debug_assert_eq!(id, correlation_id);
        Ok(body)
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>, shared: Arc<Shared>) {
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = shutdown.wait_for(|closed| *closed) => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Coalesce whatever else is queued into one vectored write.
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for m in &batch {
            if let Err(e) = wr.write_all(&m.frame).await {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = result {
            shared.close(format!("write failed: {e}"));
            break;
        }
        for m in batch.drain(..) {
            if let Some(w) = m.written {
                let _ = w.send(());
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(mut rd: OwnedReadHalf, shared: Arc<Shared>, frames: FrameReader) {
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
                    shared.close(format!("bad frame: {e}"));
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shutdown.wait_for(|closed| *closed) => return,
        };
        match n {
            Ok(0) => {
                shared.close("connection closed by the broker".into());
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.close(format!("read failed: {e}"));
                return;
            }
        }
    }
}
