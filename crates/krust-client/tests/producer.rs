//! Producer against a real broker (tansu), found through `KRUST_BROKER=host:port`.
//!
//! Without `KRUST_BROKER` the tests print a notice and pass, unless `CI=true`, where a missing
//! broker fails them. The tests that stop and restart a broker start their own on a port of
//! their own through `scripts/broker.sh` (they need `KRUST_BROKER` set too, as the signal that
//! brokers may be started here).
//!
//! Records are read back with raw Fetch requests (`Cluster::send`) and decoded with
//! `krust_wire::record`, so these tests do not depend on the consumer.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use krust_client::producer::bench::{run_produce_bench, ProduceBench};
use krust_client::producer::{
    Acks, Compression, DeliveryFuture, Persistence, ProduceErrorKind, Producer, ProducerConfig,
    ProducerRecord, RecordHeader, TrySendReason,
};
use krust_client::{ClientConfig, Cluster};
use krust_wire::record::Record;

use krust_testkit::real_broker as broker;

mod producer_common;
use producer_common::read_partition;

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("krust-producer-{name}-{nanos}")
}

fn config(broker: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(broker);
    c.client.request_timeout = Duration::from_secs(10);
    c.delivery_timeout = Duration::from_secs(30);
    c
}

async fn create_topic(cluster: &Cluster, topic: &str, partitions: i32) {
    // A connection the broker closed (after a restart) fails once; the next call reconnects.
    let mut attempts = 0;
    let resp = loop {
        attempts += 1;
        match cluster
            .send_any(|_v| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)])
            })
            .await
        {
            Ok((_node, _v, resp)) => break resp,
            Err(e) if e.is_retriable() && attempts < 5 => continue,
            Err(e) => panic!("CreateTopics: {e}"),
        }
    };
    for t in resp.topics {
        assert!(
            t.error_code == 0 || t.error_code == 36,
            "create {topic}: error {}",
            t.error_code
        );
    }
    let md = cluster.topic(topic).await.expect("topic metadata");
    assert_eq!(md.partitions.len(), partitions as usize);
}

fn record_for(topic: &str, i: usize) -> ProducerRecord {
    let mut r = ProducerRecord::new(topic)
        .with_key(format!("key-{i}"))
        .with_value(format!("value-{i}-{}", "x".repeat(i % 50)))
        .with_timestamp(1_700_000_000_000 + i as i64);
    if i.is_multiple_of(3) {
        r = r.with_header("h", format!("hv-{i}")).with_null_header("n");
    }
    if i.is_multiple_of(7) {
        r.key = None;
    }
    r
}

fn assert_same(got: &Record, want: &ProducerRecord) {
    assert_eq!(got.key, want.key);
    assert_eq!(got.value, want.value);
    assert_eq!(Some(got.timestamp), want.timestamp);
    let want_headers: Vec<RecordHeader> = want.headers.clone();
    assert_eq!(got.headers, want_headers);
}

#[tokio::test]
async fn every_codec_and_acks_setting_round_trips() {
    let Some(b) = broker() else { return };
    let cluster = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    for compression in Compression::ALL {
        let topic = unique(&format!("codec-{compression}"));
        create_topic(&cluster, &topic, 3).await;
        // One partition per acks setting: partition 0 acks=0, 1 acks=1, 2 acks=all.
        for (partition, acks) in [(0, Acks::None), (1, Acks::Leader), (2, Acks::All)] {
            let mut cfg = config(&b);
            cfg.compression = compression;
            cfg.acks = acks;
            cfg.batch_size = 4096;
            let producer = Producer::new(cfg).await.unwrap();
            let mut sent = Vec::new();
            let mut futs = Vec::new();
            for i in 0..300 {
                let r = record_for(&topic, i).with_partition(partition);
                sent.push(r.clone());
                futs.push(producer.send(r).await.unwrap());
            }
            let mut offsets = Vec::new();
            for f in futs {
                let md = f
                    .await
                    .unwrap_or_else(|e| panic!("{compression} {acks:?}: {e}"));
                assert_eq!(md.partition, partition);
                offsets.push(md.offset);
            }
            if acks == Acks::None {
                assert!(offsets.iter().all(|o| *o == -1));
            } else {
                assert_eq!(
                    offsets,
                    (0..300).collect::<Vec<i64>>(),
                    "{compression} {acks:?}"
                );
            }
            // acks=0 has no acknowledgement to wait for: poll the log (with the producer and its
            // connection still open, so no written request is cut off) until it has them all.
            let mut got = read_partition(&cluster, &topic, partition).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.len() < sent.len() && acks == Acks::None && Instant::now() < deadline {
                got = read_partition(&cluster, &topic, partition).await;
            }
            producer.close().await;
            assert_eq!(got.len(), sent.len(), "{compression} {acks:?}");
            for (i, (g, w)) in got.iter().zip(&sent).enumerate() {
                assert_eq!(g.offset, i as i64);
                assert_same(g, w);
            }
        }
        eprintln!("{compression}: acks 0/1/all ok");
    }
}

/// Java's `toPositive(murmur2(key)) % n` for keys whose murmur2 values come from Kafka's own
/// `UtilsTest.testMurmur2` (computed here from those literal hashes, not from krust's hash).
#[tokio::test]
async fn keyed_records_land_on_the_java_partition() {
    let Some(b) = broker() else { return };
    let cluster = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    let topic = unique("keys");
    let n = 7;
    create_topic(&cluster, &topic, n).await;
    let java: &[(&str, i32)] = &[
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];
    let producer = Producer::new(config(&b)).await.unwrap();
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for round in 0..3 {
        for (key, hash) in java {
            let want = (hash & 0x7fff_ffff) % n;
            let md = producer
                .send(
                    ProducerRecord::new(&topic)
                        .with_key(key.to_string())
                        .with_value(format!("{key}/{round}")),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(md.partition, want, "key {key}");
            expected
                .entry(want)
                .or_default()
                .push(format!("{key}/{round}"));
        }
    }
    producer.close().await;
    for p in 0..n {
        let got: Vec<String> = read_partition(&cluster, &topic, p)
            .await
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(
            got,
            expected.remove(&p).unwrap_or_default(),
            "partition {p}"
        );
    }
}

#[tokio::test]
async fn keyless_records_are_sticky_then_spread() {
    let Some(b) = broker() else { return };
    let cluster = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    let topic = unique("sticky");
    create_topic(&cluster, &topic, 4).await;
    let mut cfg = config(&b);
    cfg.batch_size = 2048;
    let producer = Producer::new(cfg).await.unwrap();
    let mut futs = Vec::new();
    for i in 0..4000 {
        let r = ProducerRecord::new(&topic).with_value(format!("{i:0>90}"));
        futs.push(producer.send(r).await.unwrap());
    }
    let mut per_partition = BTreeMap::new();
    let mut switches = 0;
    let mut last = -1;
    for f in futs {
        let md = f.await.unwrap();
        *per_partition.entry(md.partition).or_insert(0) += 1;
        if md.partition != last {
            switches += 1;
            last = md.partition;
        }
    }
    producer.close().await;
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    // About 20 records of ~100 bytes per 2 KiB: switches are many but far fewer than records.
    assert!(switches > 20 && switches < 1000, "{switches} switches");
}

#[tokio::test]
async fn try_send_hands_the_record_back_when_the_buffer_is_full() {
    let Some(b) = broker() else { return };
    let topic = unique("backpressure");
    let mut cfg = config(&b);
    cfg.buffer_memory = 8 * 1024;
    cfg.batch_size = 1024;
    cfg.linger = Duration::from_secs(2);
    cfg.delivery_timeout = Duration::from_secs(30);
    let producer = Producer::new(cfg).await.unwrap();
    let mut futs = Vec::new();
    let mut refused = None;
    for i in 0..1000 {
        let r = ProducerRecord::new(&topic)
            .with_value(vec![b'a'; 500])
            .with_key(format!("{i}"));
        match producer.try_send(r.clone()) {
            Ok(f) => futs.push(f),
            Err(e) => {
                assert!(e.is_full(), "{e}");
                assert_eq!(e.reason, TrySendReason::BufferFull);
                assert_eq!(e.record.key, r.key, "the same record comes back");
                assert_eq!(e.record.value, r.value);
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("the buffer filled up");
    assert!(
        (10..20).contains(&refused),
        "refused after {refused} records"
    );
    // `send` waits instead; it completes once the buffered records are written.
    let waiting = producer.send(ProducerRecord::new(&topic).with_value(vec![b'b'; 500]));
    producer.flush().await;
    let last = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("send got buffer space after the flush")
        .unwrap();
    for f in futs {
        f.await.unwrap();
    }
    last.await.unwrap();
    assert!(producer
        .try_send(ProducerRecord::new(&topic).with_value("again"))
        .is_ok());
    producer.close().await;
    assert_eq!(producer.stats().buffered_bytes, 0);
}

#[tokio::test]
async fn flush_and_close_complete_every_record() {
    let Some(b) = broker() else { return };
    let topic = unique("flush");
    let mut cfg = config(&b);
    cfg.linger = Duration::from_secs(5);
    let producer = Producer::new(cfg).await.unwrap();
    let mut first: Vec<DeliveryFuture> = Vec::new();
    for i in 0..2000 {
        first.push(producer.send(record_for(&topic, i)).await.unwrap());
    }
    let t = Instant::now();
    producer.flush().await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "flush ignores linger.ms"
    );
    for f in first {
        let r = tokio::task::unconstrained(f)
            .now_or_never()
            .expect("flush completed the record");
        r.unwrap();
    }
    let mut second = Vec::new();
    for i in 0..2000 {
        second.push(producer.send(record_for(&topic, i)).await.unwrap());
    }
    producer.close().await;
    for f in second {
        tokio::task::unconstrained(f)
            .now_or_never()
            .expect("close completed the record")
            .unwrap();
    }
    // After close: refused, record handed back.
    let e = producer
        .send(ProducerRecord::new(&topic).with_value("late"))
        .await
        .unwrap_err();
    assert_eq!(*e.kind(), ProduceErrorKind::Closed);
    assert_eq!(e.into_record().unwrap().value.unwrap(), Bytes::from("late"));
    let e = producer
        .try_send(ProducerRecord::new(&topic).with_value("late"))
        .unwrap_err();
    assert_eq!(e.reason, TrySendReason::Closed);
}

#[tokio::test]
async fn dropping_the_producer_fails_unsent_records() {
    let Some(b) = broker() else { return };
    let topic = unique("drop");
    let mut cfg = config(&b);
    cfg.linger = Duration::from_secs(20);
    cfg.delivery_timeout = Duration::from_secs(60);
    let producer = Producer::new(cfg).await.unwrap();
    let mut futs = Vec::new();
    for i in 0..100 {
        futs.push(producer.send(record_for(&topic, i)).await.unwrap());
    }
    drop(producer);
    for f in futs {
        let r = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("a dropped producer does not leave futures hanging");
        let e = r.unwrap_err();
        assert_eq!(*e.kind(), ProduceErrorKind::Closed);
        assert_eq!(e.persistence(), Persistence::NotPersisted);
        assert!(e.record().is_some());
    }
}

#[tokio::test]
async fn invalid_records_are_refused_with_the_record() {
    let Some(b) = broker() else { return };
    let cluster = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    let topic = unique("invalid");
    create_topic(&cluster, &topic, 2).await;
    let mut cfg = config(&b);
    cfg.max_request_size = 10_000;
    let producer = Producer::new(cfg).await.unwrap();
    let e = producer
        .send(ProducerRecord::new(&topic).with_value(vec![0u8; 20_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ProduceErrorKind::RecordTooLarge {
                limit: "max.request.size",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max.request.size"), "{e}");
    let e = producer
        .send(
            ProducerRecord::new(&topic)
                .with_value("x")
                .with_partition(5),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        *e.kind(),
        ProduceErrorKind::InvalidPartition { partitions: 2 }
    );
    let e = producer
        .send(
            ProducerRecord::new(&topic)
                .with_value("x")
                .with_timestamp(-5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ProduceErrorKind::InvalidRecord(_)),
        "{e}"
    );
    producer.close().await;
}

// ---------------------------------------------------------------------- own broker

fn broker_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/broker.sh")
}

fn broker_ctl(cmd: &str, port: u16) {
    // `status()` with null stdio: the started broker must not hold a pipe we wait on.
    let status = Command::new("bash")
        .arg(broker_script())
        .arg(cmd)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run scripts/broker.sh");
    assert!(status.success(), "scripts/broker.sh {cmd} {port} failed");
}

/// A tansu of the test's own, stopped on drop.
struct OwnBroker(u16);

impl OwnBroker {
    fn start(port: u16) -> OwnBroker {
        broker_ctl("stop", port);
        broker_ctl("start", port);
        OwnBroker(port)
    }
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.0)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(broker_script())
            .arg("stop")
            .arg(self.0.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_timeout_fails_records_when_the_broker_is_gone() {
    let Some(_) = broker() else { return };
    let own = OwnBroker::start(19471);
    let topic = unique("timeout");
    let mut cfg = config(&own.addr());
    cfg.client.request_timeout = Duration::from_millis(1000);
    cfg.delivery_timeout = Duration::from_millis(3000);
    cfg.linger = Duration::from_millis(0);
    let producer = Producer::new(cfg).await.unwrap();
    // The topic exists and works.
    producer
        .send(ProducerRecord::new(&topic).with_value("first"))
        .await
        .unwrap()
        .await
        .unwrap();
    eprintln!("first record written; stopping the broker");
    broker_ctl("stop", own.0);
    let t = Instant::now();
    let mut futs = Vec::new();
    for i in 0..50 {
        futs.push(producer.send(record_for(&topic, i)).await.unwrap());
    }
    eprintln!("50 records sent");
    for f in futs {
        let e = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("delivery.timeout.ms bounds the wait")
            .unwrap_err();
        assert!(
            matches!(e.kind(), ProduceErrorKind::DeliveryTimeout { .. }),
            "{e}"
        );
        assert!(e.record().is_some());
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    producer.close().await;
}

/// tansu is killed and restarted (same port, fresh in-memory storage) while records flow.
/// Every record must end with a result: acknowledged or failed with a reason. Records
/// acknowledged after the restart must be readable at exactly the offsets reported. (Records
/// acknowledged before the restart were in the old broker's memory; with `memory://` storage
/// the restart loses them by design, so they are not checked.)
#[tokio::test]
async fn broker_restart_mid_produce_loses_nothing_silently() {
    let Some(_) = broker() else { return };
    let own = OwnBroker::start(19472);
    let topic = unique("restart");
    let mut cfg = config(&own.addr());
    cfg.client.request_timeout = Duration::from_millis(2000);
    cfg.delivery_timeout = Duration::from_secs(30);
    cfg.linger = Duration::from_millis(2);
    cfg.max_in_flight = 1;
    let admin_cluster = Cluster::connect(ClientConfig::new(&own.addr()))
        .await
        .unwrap();
    create_topic(&admin_cluster, &topic, 1).await;
    let producer = Producer::new(cfg).await.unwrap();
    let total = 3000usize;
    let mut futs = Vec::new();
    for i in 0..total {
        let r = ProducerRecord::new(&topic)
            .with_partition(0)
            .with_value(format!("r{i}"));
        futs.push((i, producer.send(r).await.unwrap()));
        if i == total / 3 {
            // Let some be acknowledged, then restart.
            producer.flush().await;
            broker_ctl("stop", own.0);
            broker_ctl("start", own.0);
            // The restarted broker starts empty (memory storage): create the topic again (if
            // the producer's metadata lookup has not auto-created it already).
            create_topic(&admin_cluster, &topic, 1).await;
        }
    }
    producer.flush().await;
    let mut acked_after = BTreeMap::new();
    let mut acked = 0;
    let mut failed = 0;
    for (i, f) in futs {
        match tokio::task::unconstrained(f)
            .now_or_never()
            .expect("flush completed every record")
        {
            Ok(md) => {
                acked += 1;
                if i > total / 3 {
                    acked_after.insert(md.offset, format!("r{i}"));
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("record {i} failed: {e}");
            }
        }
    }
    producer.close().await;
    eprintln!("restart: {acked} acknowledged, {failed} failed (each reported)");
    assert_eq!(acked + failed, total);
    assert!(
        acked_after.len() > total / 2,
        "records flowed after the restart"
    );
    let cluster = Cluster::connect(ClientConfig::new(&own.addr()))
        .await
        .unwrap();
    let got: BTreeMap<i64, String> = read_partition(&cluster, &topic, 0)
        .await
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    eprintln!(
        "read back {} records, offsets {:?}..{:?}; acknowledged after restart {} ({:?}..{:?})",
        got.len(),
        got.keys().next(),
        got.keys().last(),
        acked_after.len(),
        acked_after.keys().next(),
        acked_after.keys().last()
    );
    for (offset, value) in &acked_after {
        assert_eq!(
            got.get(offset),
            Some(value),
            "acknowledged record at offset {offset}"
        );
    }
}

/// The bench harness the CLI uses, on a small run.
#[tokio::test]
async fn bench_harness_reports_throughput_and_latency() {
    let Some(b) = broker() else { return };
    let producer = Producer::new(config(&b)).await.unwrap();
    let bench = ProduceBench::new(unique("bench"), 20_000, 100);
    let report = run_produce_bench(&producer, &bench, |_| {}).await;
    producer.close().await;
    assert_eq!(report.acked, 20_000, "{report:?}");
    assert_eq!(report.failed, 0);
    assert!(report.records_per_sec > 0.0 && report.mb_per_sec > 0.0);
    assert!(report.latency_p50 <= report.latency_p99);
    assert!(report.latency_p99 <= report.latency_p999);
    assert!(report.latency_p999 <= report.latency_max);
    eprintln!("{report:?}");
}

/// A quick throughput probe: `cargo test --release -p krust-client --test producer --
/// --ignored --nocapture quick_throughput` (set `KRUST_BENCH_RECORDS` for more than 200000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn quick_throughput() {
    let Some(b) = broker() else { return };
    let n: u64 = std::env::var("KRUST_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    for (size, compression) in [
        (100usize, Compression::None),
        (1024, Compression::None),
        (100, Compression::Lz4),
        (100, Compression::Zstd),
    ] {
        let mut cfg = config(&b);
        cfg.batch_size = 256 * 1024;
        cfg.compression = compression;
        let producer = Producer::new(cfg).await.unwrap();
        let bench = ProduceBench::new(unique("throughput"), n, size);
        let r = run_produce_bench(&producer, &bench, |_| {}).await;
        producer.close().await;
        eprintln!(
            "{n} x {size} B {compression}: {:.0} records/s, {:.1} MB/s, latency p50 {:?} p99 {:?} p99.9 {:?} max {:?} ({} failed)",
            r.records_per_sec, r.mb_per_sec, r.latency_p50, r.latency_p99, r.latency_p999, r.latency_max, r.failed
        );
    }
}
