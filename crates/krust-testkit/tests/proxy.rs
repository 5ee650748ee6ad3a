//! FaultProxy in front of the fake cluster: each fault is visible in the proxy's counters and
//! in what the client sees.

mod common;

use std::time::{Duration, Instant};

use common::*;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::raw::{RawClient, RawError};
use krust_testkit::{FakeCluster, FaultProxy};

async fn proxied() -> (FakeCluster, FaultProxy) {
    let c = FakeCluster::start(1).await.unwrap();
    c.create_topic("t", 1, 1).unwrap();
    let p = FaultProxy::start(c.broker_addr(0)).await.unwrap();
    c.set_advertised(0, "127.0.0.1", p.addr().port());
    (c, p)
}

fn md() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

#[tokio::test]
async fn forwards_and_counts_and_brokers_advertise_the_proxy() {
    let (_c, p) = proxied().await;
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    let r = cl.send(&md(), 9).await.unwrap();
    assert_eq!(r.brokers[0].port, i32::from(p.addr().port()));
    assert_eq!(
        produce(&mut cl, "t", 0, batch(&[b"via proxy"])).await,
        (0, 0)
    );
    let p2 = fetch(&mut cl, "t", 0, 0, 0).await;
    assert_eq!(values(&p2), vec![(0, b"via proxy".to_vec())]);
    let s = p.stats();
    assert_eq!(s.connections, 1);
    assert!(s.bytes_up > 0 && s.bytes_down > 0);
}

#[tokio::test]
async fn latency_delays_each_response() {
    let (_c, p) = proxied().await;
    p.set_latency(Duration::from_millis(100));
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    let start = Instant::now();
    cl.send(&md(), 9).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "both directions delayed"
    );
    assert!(p.stats().delayed >= 2);
}

#[tokio::test]
async fn bandwidth_cap_slows_large_transfers() {
    let (_c, p) = proxied().await;
    p.set_bandwidth(Some(100_000));
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    let big = vec![7u8; 50_000];
    let start = Instant::now();
    assert_eq!(produce(&mut cl, "t", 0, batch(&[&big])).await.0, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert!(p.stats().throttled > 0);
}

#[tokio::test]
async fn chaos_resets_connections_after_a_random_lifetime() {
    let (_c, p) = proxied().await;
    p.set_chaos_range(Some((
        Duration::from_millis(50),
        Duration::from_millis(100),
    )));
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    cl.send(&md(), 9).await.unwrap();
    let start = Instant::now();
    let err = loop {
        match cl.send(&md(), 9).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => break e,
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never reset");
    };
    assert!(matches!(err, RawError::Io(_)));
    assert_eq!(p.stats().chaos_resets, 1);
    // The default range is 500–1500 ms.
    p.set_chaos(true);
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    let start = Instant::now();
    while cl.send(&md(), 9).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lived = start.elapsed();
    assert!(
        lived >= Duration::from_millis(450) && lived < Duration::from_millis(2500),
        "{lived:?}"
    );
    assert_eq!(p.stats().chaos_resets, 2);
}

#[tokio::test]
async fn blackhole_forwards_nothing_until_lifted() {
    let (c, p) = proxied().await;
    p.set_blackhole(true);
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    cl.send_only(&md(), 9).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(200), cl.recv::<MetadataRequest>(9)).await;
    assert!(r.is_err(), "a blackholed request was answered");
    assert!(p.stats().blackholed_bytes > 0);
    assert!(c.request_log().is_empty(), "nothing reached the broker");
    p.set_blackhole(false);
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    assert!(cl.send(&md(), 9).await.is_ok());
}

#[tokio::test]
async fn lost_acknowledgement_applies_the_request_but_drops_its_answer() {
    let (c, p) = proxied().await;
    p.drop_next_responses(1);
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    cl.send_only(&produce_req("t", 0, batch(&[b"acked?"]), -1), 9)
        .await
        .unwrap();
    assert!(matches!(
        cl.recv::<ProduceRequest>(9).await,
        Err(RawError::Io(_))
    ));
    assert_eq!(c.offsets("t", 0).unwrap().1, 1, "the broker wrote it");
    assert_eq!(p.stats().dropped_responses, 1);
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    assert_eq!(produce(&mut cl, "t", 0, batch(&[b"next"])).await, (0, 1));
}

#[tokio::test]
async fn reset_all_drops_open_connections() {
    let (_c, p) = proxied().await;
    let mut cl = RawClient::connect(p.addr()).await.unwrap();
    cl.send(&md(), 9).await.unwrap();
    p.reset_all();
    let start = Instant::now();
    while cl.send(&md(), 9).await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::task::yield_now().await;
    }
    assert_eq!(p.stats().resets, 1);
}
