//! Interop with librdkafka (PyPI `confluent-kafka`), a client nobody here wrote:
//!
//! - records produced by librdkafka with every codec and with headers are read back intact by
//!   the krust consumer (`interop/librdkafka_produce.py`);
//! - records produced by the krust `Producer` with every codec are read back intact by
//!   librdkafka (`interop/librdkafka_consume.py`).
//!
//! Needs `KRUST_BROKER` and `KRUST_PYTHON` (a python with `confluent_kafka`, see
//! `scripts/python-env.sh`). Without them the tests are skipped with a notice, except under
//! `CI=true`, where a missing one is a failure.

mod consumer_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use consumer_common::*;
use krust_client::consumer::{Consumer, ConsumerConfig, StartOffset, TopicPartition};
use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
use krust_client::Cluster;
use krust_wire::record::{Compression, RecordHeader};
use serde_json::Value;

fn python() -> Option<String> {
    match std::env::var("KRUST_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "KRUST_PYTHON is not set, and under CI=true the librdkafka interop is required"
                );
            }
            eprintln!("NOTICE: KRUST_PYTHON not set; skipping the librdkafka interop test");
            None
        }
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Runs a script with a wall-clock bound and returns its JSON output.
fn run_script(python: &str, name: &str, args: &[&str]) -> Value {
    let out = Command::new("timeout")
        .arg("120")
        .arg(python)
        .arg(script(name))
        .args(args)
        .output()
        .expect("run the interop script");
    assert!(
        out.status.success(),
        "{name} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn unhex(v: &Value) -> Option<Bytes> {
    let s = v.as_str()?;
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>();
    Some(Bytes::from(bytes))
}

fn hex(b: &Option<Bytes>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// A record in the scripts' JSON form, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<RecordHeader>,
}

fn parse(v: &Value) -> Vec<Seen> {
    v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| Seen {
            partition: r["partition"].as_i64().unwrap() as i32,
            offset: r["offset"].as_i64().unwrap(),
            timestamp: r["timestamp"].as_i64().unwrap(),
            key: unhex(&r["key"]),
            value: unhex(&r["value"]),
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| RecordHeader::new(h[0].as_str().unwrap(), unhex(&h[1])))
                .collect(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krust_reads_what_librdkafka_produced_with_every_codec_and_headers() {
    let Some(python) = python() else { return };
    let Some(broker) = broker() else { return };
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let topic = unique("krust-interop-rdk-to-krust");
    create_topic(&cluster, &topic, 5).await;
    let per_codec = 300;
    let produced = run_script(
        &python,
        "librdkafka_produce.py",
        &[&broker, &topic, &per_codec.to_string()],
    );
    eprintln!("librdkafka {}", produced["librdkafka"]);
    let mut expected: BTreeMap<(i32, i64), Seen> = parse(&produced)
        .into_iter()
        .map(|s| ((s.partition, s.offset), s))
        .collect();
    assert_eq!(expected.len(), 5 * per_codec);

    let mut config = ConsumerConfig::new(&broker).with_fetch_max_wait(Duration::from_millis(100));
    config.client = client_config(&broker);
    let mut consumer = Consumer::with_cluster(cluster, config).unwrap();
    consumer
        .assign((0..5).map(|p| {
            (
                TopicPartition::new(topic.as_str(), p),
                StartOffset::Earliest,
            )
        }))
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 5 * per_codec, Duration::from_secs(60)).await;
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &records {
        let prev = last.insert(r.partition, r.offset);
        assert!(
            prev.is_none_or(|p| p < r.offset),
            "order in partition {}",
            r.partition
        );
        let want = expected
            .remove(&(r.partition, r.offset))
            .unwrap_or_else(|| panic!("unexpected record {}@{}", r.partition, r.offset));
        let got = Seen {
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        };
        assert_eq!(got, want, "record {}@{}", r.partition, r.offset);
    }
    assert!(expected.is_empty(), "{} records not read", expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_what_the_krust_producer_wrote_with_every_codec() {
    let Some(python) = python() else { return };
    let Some(broker) = broker() else { return };
    let cluster = Cluster::connect(client_config(&broker)).await.unwrap();
    let topic = unique("krust-interop-krust-to-rdk");
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    create_topic(&cluster, &topic, codecs.len() as i32).await;
    let mut expected: BTreeMap<(i32, i64), Value> = BTreeMap::new();
    let mut i = 0;
    for (p, codec) in codecs.iter().enumerate() {
        // One krust Producer per codec, as a user would configure `compression.type`.
        let mut config = ProducerConfig::new(&broker);
        config.client = client_config(&broker);
        config.compression = *codec;
        let producer = Producer::with_cluster(cluster.clone(), config).unwrap();
        let mut deliveries = Vec::new();
        for _ in 0..150 {
            i += 1;
            let r = TestRecord::new(i, BASE_TS + i as i64);
            let mut rec = ProducerRecord::new(topic.as_str())
                .with_partition(p as i32)
                .with_timestamp(r.timestamp);
            rec.key = r.key.clone();
            rec.value = r.value.clone();
            rec.headers = r.headers.clone();
            deliveries.push((r, producer.send(rec).await.expect("send")));
        }
        producer.flush().await;
        for (r, d) in deliveries {
            let md = d.await.expect("delivered");
            assert_eq!(md.partition, p as i32);
            let headers: Vec<Value> = r
                .headers
                .iter()
                .map(|h| serde_json::json!([h.key.as_str(), hex(&h.value)]))
                .collect();
            expected.insert(
                (md.partition, md.offset),
                serde_json::json!({
                    "timestamp": r.timestamp,
                    "key": hex(&r.key),
                    "value": hex(&r.value),
                    "headers": headers,
                }),
            );
        }
        producer.close().await;
    }
    let total = expected.len();
    let read = run_script(
        &python,
        "librdkafka_consume.py",
        &[
            &broker,
            &topic,
            &codecs.len().to_string(),
            &total.to_string(),
        ],
    );
    for r in read["records"].as_array().unwrap() {
        let key = (
            r["partition"].as_i64().unwrap() as i32,
            r["offset"].as_i64().unwrap(),
        );
        let want = expected
            .remove(&key)
            .unwrap_or_else(|| panic!("librdkafka read an unexpected record {key:?}"));
        for field in ["timestamp", "key", "value", "headers"] {
            assert_eq!(r[field], want[field], "{field} of record {key:?}");
        }
    }
    assert!(
        expected.is_empty(),
        "{} records not read by librdkafka",
        expected.len()
    );
}
