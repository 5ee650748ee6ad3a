//! A fault-injecting TCP proxy for one upstream address (a fake broker or a real one).
//!
//! Faults, each switchable at run time and each counted in [`ProxyStats`] so a test can prove
//! it happened:
//! - **latency**: every chunk towards the broker and every response frame towards the client is
//!   held for a fixed time (pipelining is kept: it is a delay, not a serialization);
//! - **bandwidth cap**: bytes per second in each direction;
//! - **chaos**: every new connection is reset (RST) after a random 500–1500 ms of life (the
//!   range is configurable), as franz-go's chaos dialer does;
//! - **blackhole**: connections stay open but nothing is forwarded either way;
//! - **lost acknowledgement**: forward the request, then drop the next response frame and close
//!   the connection, so the request took effect but the client never learns it;
//! - **reset all**: drop every open connection now.
//!
//! Kafka clients connect to the addresses brokers advertise, so put one proxy in front of each
//! broker and make the broker advertise the proxy (for the fake:
//! [`FakeCluster::set_advertised`](crate::FakeCluster::set_advertised)).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Counters of what the proxy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Upstream connections that could not be made (the client was closed).
    pub upstream_failures: u64,
    /// Bytes forwarded client → upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: u64,
    /// Chunks or frames held back by the latency setting.
    pub delayed: u64,
    /// Times a write waited for the bandwidth cap.
    pub throttled: u64,
    /// Connections reset by chaos mode.
    pub chaos_resets: u64,
    /// Bytes swallowed by the blackhole (either direction).
    pub blackholed_bytes: u64,
    /// Responses dropped by the lost-acknowledgement fault (each closed its connection).
    pub dropped_responses: u64,
    /// Connections dropped by [`FaultProxy::reset_all`].
    pub resets: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    upstream_failures: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    delayed: AtomicU64,
    throttled: AtomicU64,
    chaos_resets: AtomicU64,
    blackholed_bytes: AtomicU64,
    dropped_responses: AtomicU64,
    resets: AtomicU64,
}

#[derive(Debug, Clone)]
struct Faults {
    latency: Duration,
    bandwidth: Option<u64>,
    chaos: Option<(Duration, Duration)>,
    blackhole: bool,
    drop_responses: u64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    counters: Counters,
    reset: watch::Sender<u64>,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A TCP proxy in front of one upstream address. Dropping it stops accepting and closes every
/// connection.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.reset.send_modify(|v| *v += 1);
    }
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral loopback port forwarding to `upstream`, with no faults.
    /// Cancel safe.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults {
                latency: Duration::ZERO,
                bandwidth: None,
                chaos: None,
                blackhole: false,
                drop_responses: 0,
            }),
            counters: Counters::default(),
            reset: watch::channel(0).0,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(s.clone(), client));
            }
        });
        Ok(FaultProxy { shared, addr, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream address.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Holds every chunk and response by `d` (zero to disable).
    pub fn set_latency(&self, d: Duration) {
        self.update(|f| f.latency = d);
    }

    /// Caps each direction of each connection at `bytes_per_sec` (`None` to disable).
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.update(|f| f.bandwidth = bytes_per_sec.filter(|b| *b > 0));
    }

    /// Chaos mode: each new connection is reset after a random 500–1500 ms.
    pub fn set_chaos(&self, on: bool) {
        self.set_chaos_range(
            on.then_some((Duration::from_millis(500), Duration::from_millis(1500))),
        );
    }

    /// Chaos mode with a custom lifetime range (`None` to disable).
    pub fn set_chaos_range(&self, range: Option<(Duration, Duration)>) {
        self.update(|f| f.chaos = range);
    }

    /// Blackhole: forward nothing in either direction (connections stay open).
    pub fn set_blackhole(&self, on: bool) {
        self.update(|f| f.blackhole = on);
    }

    /// Lost acknowledgements: for the next `n` responses, forward the request but drop the
    /// response and close the connection.
    pub fn drop_next_responses(&self, n: u64) {
        self.update(|f| f.drop_responses = n);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.update(|f| {
            f.latency = Duration::ZERO;
            f.bandwidth = None;
            f.chaos = None;
            f.blackhole = false;
            f.drop_responses = 0;
        });
    }

    /// Drops every open connection now (new ones are accepted).
    pub fn reset_all(&self) {
        self.shared.reset.send_modify(|v| *v += 1);
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: g(&c.connections),
            upstream_failures: g(&c.upstream_failures),
            bytes_up: g(&c.bytes_up),
            bytes_down: g(&c.bytes_down),
            delayed: g(&c.delayed),
            throttled: g(&c.throttled),
            chaos_resets: g(&c.chaos_resets),
            blackholed_bytes: g(&c.blackholed_bytes),
            dropped_responses: g(&c.dropped_responses),
            resets: g(&c.resets),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Writes queued chunks at their due time, respecting the bandwidth cap.
async fn writer(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    mut w: OwnedWriteHalf,
    down: bool,
) {
    while let Some((due, chunk)) = rx.recv().await {
        if due > Instant::now() {
            add(&shared.counters.delayed, 1);
            tokio::time::sleep_until(due.into()).await;
        }
        if let Some(bw) = shared.faults().bandwidth {
            add(&shared.counters.throttled, 1);
            let secs = chunk.len() as f64 / bw as f64;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
        if w.write_all(&chunk).await.is_err() {
            return;
        }
        let c = &shared.counters;
        add(
            if down { &c.bytes_down } else { &c.bytes_up },
            chunk.len() as u64,
        );
    }
    let _ = w.shutdown().await;
}

/// Client → upstream: raw chunks.
async fn pump_up(
    shared: Arc<Shared>,
    mut r: OwnedReadHalf,
    tx: mpsc::UnboundedSender<(Instant, Bytes)>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let f = shared.faults();
                if f.blackhole {
                    add(&shared.counters.blackholed_bytes, n as u64);
                    continue;
                }
                if tx
                    .send((Instant::now() + f.latency, buf.split().freeze()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Upstream → client: whole response frames (so one response can be dropped). Returns whether
/// it stopped to drop a response.
async fn pump_down(
    shared: Arc<Shared>,
    mut r: OwnedReadHalf,
    tx: mpsc::UnboundedSender<(Instant, Bytes)>,
) -> bool {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while buf.len() >= 4 {
            let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len < 0 {
                return false;
            }
            let total = 4 + len as usize;
            if buf.len() < total {
                break;
            }
            let frame = buf.split_to(total).freeze();
            let f = shared.faults();
            if f.blackhole {
                add(&shared.counters.blackholed_bytes, frame.len() as u64);
                continue;
            }
            if f.drop_responses > 0 {
                {
                    let mut g = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
                    g.drop_responses = g.drop_responses.saturating_sub(1);
                }
                add(&shared.counters.dropped_responses, 1);
                return true;
            }
            if tx.send((Instant::now() + f.latency, frame)).is_err() {
                return false;
            }
        }
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

async fn serve(shared: Arc<Shared>, client: TcpStream) {
    add(&shared.counters.connections, 1);
    let mut reset = shared.reset.subscribe();
    reset.borrow_and_update();
    let upstream = match TcpStream::connect(shared.upstream).await {
        Ok(u) => u,
        Err(_) => {
            add(&shared.counters.upstream_failures, 1);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let chaos = shared.faults().chaos.map(|(lo, hi)| {
        let ms = rand::thread_rng()
            .gen_range(lo.as_millis() as u64..=hi.as_millis().max(lo.as_millis()) as u64);
        Duration::from_millis(ms)
    });
    if chaos.is_some() {
        // Closing with linger 0 sends RST: the client sees a reset, not an orderly close. (The
        // deprecation warns about blocking drops, which only a non-zero linger causes.)
        #[allow(deprecated)]
        let _ = (
            client.set_linger(Some(Duration::ZERO)),
            upstream.set_linger(Some(Duration::ZERO)),
        );
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let mut tasks = vec![
        tokio::spawn(writer(shared.clone(), up_rx, uw, false)),
        tokio::spawn(writer(shared.clone(), down_rx, cw, true)),
    ];
    let up = pump_up(shared.clone(), cr, up_tx);
    let down = pump_down(shared.clone(), ur, down_tx);
    let life = async {
        match chaos {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = up => {
            // The client closed: let queued bytes drain to the broker.
            let t = tasks.remove(0);
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        dropped = down => {
            if !dropped {
                // The broker closed: let queued responses drain to the client.
                let t = tasks.remove(1);
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        }
        _ = life => { add(&shared.counters.chaos_resets, 1); }
        _ = reset.changed() => { add(&shared.counters.resets, 1); }
    }
    for t in tasks {
        t.abort();
    }
}
