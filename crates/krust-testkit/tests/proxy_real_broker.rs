//! FaultProxy in front of a real broker (`KRUST_BROKER=host:port`, e.g. tansu started by
//! `scripts/broker.sh`). Skipped when no broker is configured, except under CI, where that is a
//! failure.

mod common;

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use common::*;
use krust_testkit::kafka_protocol::messages::*;
use krust_testkit::raw::{RawClient, RawError};
use krust_testkit::FaultProxy;

fn broker() -> Option<std::net::SocketAddr> {
    let b = krust_testkit::real_broker()?;
    Some(
        b.to_socket_addrs()
            .expect("KRUST_BROKER resolves")
            .next()
            .expect("an address"),
    )
}

#[tokio::test]
async fn proxy_faults_against_a_real_broker() {
    let Some(addr) = broker() else { return };
    let proxy = FaultProxy::start(addr).await.unwrap();
    let topic = format!("krust-proxy-{}", std::process::id());
    let mut cl = RawClient::connect(proxy.addr()).await.unwrap();
    let r = cl.send(&ApiVersionsRequest::default(), 3).await.unwrap();
    assert_eq!(r.error_code, 0);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(tn(&topic))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let r = cl.send(&create, 5).await.unwrap();
    assert!(
        matches!(r.topics[0].error_code, 0 | 36),
        "{:?}",
        r.topics[0]
    );

    // Latency, both ways.
    proxy.set_latency(Duration::from_millis(50));
    let start = Instant::now();
    cl.send(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    proxy.set_latency(Duration::ZERO);

    // Lost acknowledgement: the broker writes the record, the client never hears of it.
    let (code, first) = produce(&mut cl, &topic, 0, batch(&[b"acked"])).await;
    assert_eq!(code, 0);
    proxy.drop_next_responses(1);
    cl.send_only(&produce_req(&topic, 0, batch(&[b"lost ack"]), -1), 9)
        .await
        .unwrap();
    assert!(matches!(
        cl.recv::<ProduceRequest>(9).await,
        Err(RawError::Io(_))
    ));
    assert_eq!(proxy.stats().dropped_responses, 1);
    let mut cl = RawClient::connect(proxy.addr()).await.unwrap();
    // Tansu's ListOffsets LATEST is unreliable; read the record back instead.
    // (tansu answers a fetch with max_wait 0 and min_bytes 0 with no partitions at all.)
    let req = fetch_req(&topic, 0, first, 0)
        .with_max_wait_ms(1000)
        .with_min_bytes(1);
    let r = cl.send(&req, 11).await.unwrap();
    let vals = values(&r.responses[0].partitions[0]);
    assert!(
        vals.iter()
            .any(|(o, v)| *o == first + 1 && v == b"lost ack"),
        "the broker wrote the unacknowledged record: {vals:?}"
    );

    // Blackhole: nothing comes back.
    proxy.set_blackhole(true);
    cl.send_only(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(300), cl.recv::<MetadataRequest>(9)).await;
    assert!(r.is_err());
    assert!(proxy.stats().blackholed_bytes > 0);
}
