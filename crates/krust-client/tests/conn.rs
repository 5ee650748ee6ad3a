//! Connection-layer behaviour against a scripted in-test broker: pipelining with out-of-order
//! responses, cancel safety, timeouts that cover stalled requests, hostile frames, and the
//! ApiVersions downgrade.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};
use krust_client::cluster::Lane;
use krust_client::conn::Connection;
use krust_client::{ClientConfig, Cluster, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted broker does with a Metadata request (correlation id, index of request).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answer every request at once.
    Normal,
    /// Hold requests and answer them in reverse order once `n` have arrived.
    Reverse(usize),
    /// Never answer Metadata.
    Stall,
    /// Answer Metadata with a frame that claims 2 GiB.
    Huge,
    /// Reject ApiVersions v3 with UNSUPPORTED_VERSION (v0 body), accept v2.
    OldBroker,
}

struct Req {
    key: i16,
    version: i16,
    correlation: i32,
}

async fn read_request(s: &mut TcpStream) -> Option<Req> {
    let n = s.read_i32().await.ok()? as usize;
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).await.ok()?;
    let mut b = Bytes::from(b);
    Some(Req {
        key: b.get_i16(),
        version: b.get_i16(),
        correlation: b.get_i32(),
    })
}

fn frame(correlation: i32, flexible_header: bool, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i32(correlation);
    if flexible_header {
        b.put_u8(0);
    }
    body(&mut b);
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

fn api_versions(error: i16, keys: &[(i16, i16, i16)]) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error;
    for &(k, lo, hi) in keys {
        let mut v = ApiVersion::default();
        v.api_key = k;
        v.min_version = lo;
        v.max_version = hi;
        r.api_keys.push(v);
    }
    r
}

fn metadata(port: u16, marker: i32) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = 1.into();
    b.host = StrBytes::from_static_str("127.0.0.1");
    b.port = port as i32;
    r.brokers.push(b);
    r.controller_id = marker.into();
    r
}

/// Starts a scripted broker; returns its port and a counter of accepted connections.
async fn scripted(mode: Mode) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Some(req) = read_request(&mut s).await {
                    let out = match req.key {
                        18 => {
                            let (resp, v) = if mode == Mode::OldBroker && req.version > 2 {
                                (api_versions(35, &[(18, 0, 2)]), 0)
                            } else if mode == Mode::OldBroker {
                                (api_versions(0, &[(18, 0, 2), (3, 0, 12)]), req.version)
                            } else {
                                (api_versions(0, &[(18, 0, 3), (3, 0, 12)]), req.version)
                            };
                            frame(req.correlation, false, |b| resp.encode(b, v).unwrap())
                        }
                        3 => {
                            let flexible = req.version >= 9;
                            let resp = metadata(port, req.correlation);
                            match mode {
                                Mode::Stall => continue,
                                Mode::Huge => {
                                    let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xf0]).await;
                                    continue;
                                }
                                Mode::Reverse(n) => {
                                    held.push(frame(req.correlation, flexible, |b| {
                                        resp.encode(b, req.version).unwrap()
                                    }));
                                    if held.len() == n {
                                        for f in held.drain(..).rev() {
                                            s.write_all(&f).await.unwrap();
                                        }
                                    }
                                    continue;
                                }
                                _ => frame(req.correlation, flexible, |b| {
                                    resp.encode(b, req.version).unwrap()
                                }),
                            }
                        }
                        _ => return,
                    };
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, conns)
}

async fn connect(port: u16) -> Connection {
    Connection::connect(
        1,
        &format!("127.0.0.1:{port}"),
        "test",
        Duration::from_secs(5),
        1 << 20,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_matched_by_correlation_id() {
    let (port, _) = scripted(Mode::Reverse(20)).await;
    let conn = Arc::new(connect(port).await);
    let v = conn.version_for(krust_wire::ApiKey::Metadata).unwrap();
    assert_eq!(v, 12);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = conn.clone();
        tasks.push(tokio::spawn(async move {
            c.request(&MetadataRequest::default(), v, Duration::from_secs(5))
                .await
                .unwrap()
        }));
    }
    let mut markers = Vec::new();
    for t in tasks {
        // The scripted broker echoes each request's correlation id as controller id.
        markers.push(t.await.unwrap().controller_id.0);
    }
    markers.sort();
    markers.dedup();
    assert_eq!(markers.len(), 20, "every request got its own response");
}

#[tokio::test]
async fn a_dropped_request_does_not_poison_the_connection() {
    let (port, _) = scripted(Mode::Reverse(2)).await;
    let conn = connect(port).await;
    let req = MetadataRequest::default();
    // Start one request and abandon it before its response can arrive (the broker holds it
    // until a second request comes).
    let first = conn.request(&req, 1, Duration::from_secs(5));
    assert!(tokio::time::timeout(Duration::from_millis(50), first)
        .await
        .is_err());
    // The second request's answer must be its own, not the abandoned one's.
    let second = conn.request(&req, 1, Duration::from_secs(5)).await.unwrap();
    assert!(conn.is_alive());
    let third = conn.request(&req, 1, Duration::from_secs(1));
    // With Reverse(2), the third is held until a fourth arrives; it must time out cleanly.
    assert!(matches!(third.await, Err(Error::Timeout { .. })));
    assert_ne!(second.controller_id.0, 0);
}

#[tokio::test]
async fn a_stalled_request_times_out_closes_the_connection_and_the_cluster_reconnects() {
    let (port, conns) = scripted(Mode::Stall).await;
    let conn = connect(port).await;
    let started = std::time::Instant::now();
    let r = conn
        .request(&MetadataRequest::default(), 1, Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!conn.is_alive(), "a timed-out connection is closed");
    // Later requests on it fail at once instead of hanging.
    let r = conn
        .request(&MetadataRequest::default(), 1, Duration::from_secs(5))
        .await;
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hostile_frame_size_fails_the_connection_without_allocating() {
    let (port, _) = scripted(Mode::Huge).await;
    let conn = connect(port).await;
    let r = conn
        .request(&MetadataRequest::default(), 1, Duration::from_secs(5))
        .await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("exceeds the maximum"), "{e}");
    assert!(!conn.is_alive());
}

#[tokio::test]
async fn api_versions_downgrades_for_an_old_broker() {
    let (port, _) = scripted(Mode::OldBroker).await;
    let conn = connect(port).await;
    assert_eq!(
        conn.versions().range(krust_wire::ApiKey::ApiVersions),
        Some((0, 2))
    );
    assert_eq!(conn.version_for(krust_wire::ApiKey::Metadata).unwrap(), 12);
}

#[tokio::test]
async fn cluster_bootstraps_and_reports_unreachable_servers_clearly() {
    let (port, _) = scripted(Mode::Normal).await;
    let cluster = Cluster::connect(ClientConfig::new(&format!("127.0.0.1:{port}")))
        .await
        .unwrap();
    let md = cluster.metadata();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[&1].port, port as i32);

    // A port nothing listens on.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap().port();
    drop(free);
    let mut cfg = ClientConfig::new(&format!("127.0.0.1:{dead}"));
    cfg.connection_setup_timeout = Duration::from_millis(500);
    let e = Cluster::connect(cfg).await.unwrap_err();
    assert!(matches!(e, Error::Bootstrap { .. }), "{e}");
    assert!(e.to_string().contains(&dead.to_string()), "{e}");
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out_at_setup() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let r = Connection::connect(
        1,
        &format!("127.0.0.1:{port}"),
        "t",
        Duration::from_millis(300),
        1 << 20,
    )
    .await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_lane_is_its_own_connection() {
    let (port, conns) = scripted(Mode::Normal).await;
    let cluster = Cluster::connect(ClientConfig::new(&format!("127.0.0.1:{port}")))
        .await
        .unwrap();
    let bootstrap_conns = conns.load(Ordering::SeqCst);
    let t = Duration::from_secs(5);
    cluster
        .send_timeout(1, t, |_| MetadataRequest::default())
        .await
        .unwrap();
    cluster
        .send_on(1, Lane::Group, t, |_| MetadataRequest::default())
        .await
        .unwrap();
    cluster
        .send_on(1, Lane::Group, t, |_| MetadataRequest::default())
        .await
        .unwrap();
    // One connection for the default lane of node 1, one for its group lane; the group lane
    // is reused.
    assert_eq!(conns.load(Ordering::SeqCst), bootstrap_conns + 2);
    let a = cluster.connection(1).await.unwrap();
    let b = cluster.connection_on(1, Lane::Group).await.unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
}

#[tokio::test]
async fn member_lanes_are_separate_and_released() {
    let (port, conns) = scripted(Mode::Normal).await;
    let cluster = Cluster::connect(ClientConfig::new(&format!("127.0.0.1:{port}")))
        .await
        .unwrap();
    let before = conns.load(Ordering::SeqCst);
    let (a, b) = (Lane::new_member(), Lane::new_member());
    assert_ne!(a, b);
    let ca = cluster.connection_on(1, a).await.unwrap();
    let cb = cluster.connection_on(1, b).await.unwrap();
    // Two members sharing the cluster: two connections, neither the group lane's.
    assert!(!Arc::ptr_eq(&ca, &cb));
    assert_eq!(conns.load(Ordering::SeqCst), before + 2);
    cluster.release_lane(a);
    assert!(!ca.is_alive(), "a released lane's connection is closed");
    assert!(cb.is_alive(), "other lanes are untouched");
    // Used again, the released lane connects afresh.
    let again = cluster.connection_on(1, a).await.unwrap();
    assert!(again.is_alive() && !Arc::ptr_eq(&again, &ca));
    assert_eq!(conns.load(Ordering::SeqCst), before + 3);
}
