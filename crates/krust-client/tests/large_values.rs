//! Large record values sent by reference, end to end through the public producer API on the
//! fake cluster (which verifies the CRC of every batch it is sent, and refuses a bad one with
//! CORRUPT_MESSAGE).
//!
//! An uncompressed batch holding values of at least `BY_REFERENCE_MIN` (4096) bytes is the
//! builder's buffer with those values written in between, from where they lie; smaller values,
//! and every value of a compressed batch, are copied in. The tests cover:
//!
//! - mixed sizes (empty to 300,000 bytes, on both sides of every threshold, with keys and
//!   headers, null values, one value sent twice) read back byte for byte with their offsets:
//!   uncompressed and lz4, one batch per partition; and a stream of many batches;
//! - a batch re-sent after retriable failures (an error, a dropped connection, a lost
//!   acknowledgement): the same bytes on every attempt, stored once;
//! - a batch re-stamped after an epoch bump, and again for a fresh producer id: a valid CRC,
//!   the records unchanged, stored byte for byte;
//! - a batch failing with a non-retriable error (first send, or after a re-stamp): every record
//!   handed back whole, and stored byte for byte when sent again.
//!
//! Each test also proves which path its values took. The test keeps the only handle on each
//! value besides the producer's, and looks at it while the Produce request is at the broker: a
//! value sent by reference is still held by the producer then (its batch waits for the
//! answer); a copied one is not any more.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use krust_client::producer::{
    Compression, DeliveryFuture, Persistence, ProduceErrorKind, Producer, ProducerConfig,
    ProducerRecord,
};
use krust_client::{ClientConfig, Cluster};
use krust_testkit::kafka_protocol::messages::{ApiKey, RequestKind};
use krust_testkit::{errors, Action, FakeCluster, Intercept, Request};
use krust_wire::record::{batches, BatchHeader, Record, BATCH_HEADER_LEN, BY_REFERENCE_MIN};
use krust_wire::ErrorCode;

mod producer_common;
use producer_common::read_partition;

fn config(cluster: &FakeCluster) -> ProducerConfig {
    let mut c = ProducerConfig::new(&cluster.bootstrap());
    c.client.request_timeout = Duration::from_millis(2000);
    c.client.retry_backoff = Duration::from_millis(5);
    c.client.retry_backoff_max = Duration::from_millis(50);
    c.delivery_timeout = Duration::from_secs(20);
    c.linger = Duration::from_millis(2);
    c
}

/// Nothing is sent before [`Producer::flush`] (a linger longer than any test) and a partition's
/// records all fit one batch: one batch per partition, whatever the timing.
fn one_batch_config(cluster: &FakeCluster) -> ProducerConfig {
    let mut c = config(cluster);
    c.linger = Duration::from_secs(10);
    c.batch_size = 1 << 20;
    c
}

/// `len` bytes that depend on their position and on `seed` (a xorshift stream): a value put at
/// another place in the batch, shifted, cut or swapped with another record's does not compare
/// equal.
fn pattern(len: usize, seed: u32) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    let v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    Bytes::from(v)
}

/// Value sizes on both sides of every threshold: inlined at once (below 512 bytes), kept until
/// the batch is finished then copied (512 to 4095), by reference (4096 on).
const SIZES: [usize; 13] = [
    0, 1, 100, 511, 512, 1000, 4095, 4096, 4097, 5000, 16_385, 70_000, 300_000,
];

/// Records for one partition, built so that the test holds exactly one handle on each value
/// the producer gets.
struct Records {
    /// What is sent.
    to_send: Vec<ProducerRecord>,
    /// Deep copies of `to_send` (no memory shared with it), to compare with what comes back.
    expected: Vec<ProducerRecord>,
    /// The test's handle on each distinct non-empty value sent.
    held: Vec<Bytes>,
}

impl Records {
    fn new() -> Self {
        Records {
            to_send: Vec::new(),
            expected: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Adds `record`, its value (if any) shared with `held`.
    fn push(&mut self, record: ProducerRecord) {
        let mut expected = record.clone();
        expected.value = record.value.as_deref().map(Bytes::copy_from_slice);
        if let Some(v) = record.value.as_ref().filter(|v| !v.is_empty()) {
            if !self.held.iter().any(|h| h.as_ptr() == v.as_ptr()) {
                self.held.push(v.clone());
            }
        }
        self.expected.push(expected);
        self.to_send.push(record);
    }

    fn len(&self) -> usize {
        self.expected.len()
    }

    /// Moves the test's handles out (into the hook that looks at them).
    fn take_held(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.held)
    }
}

/// The mixed records of one partition: every size of [`SIZES`] (in reverse order when
/// `reversed`), keys on some, headers (one large, one null) on others, a tombstone, one value
/// sent twice, and a large value with a large key and a large header.
fn mixed(topic: &str, partition: i32, seed: u32, reversed: bool) -> Records {
    let mut out = Records::new();
    let ts = 1_700_000_000_000 + i64::from(seed) * 1000;
    let mut sizes = SIZES.to_vec();
    if reversed {
        sizes.reverse();
    }
    let base = |i: usize| {
        ProducerRecord::new(topic)
            .with_partition(partition)
            .with_timestamp(ts + i as i64)
    };
    for (i, size) in sizes.iter().enumerate() {
        let mut r = base(i).with_value(pattern(*size, seed * 1000 + i as u32));
        if i % 3 == 0 {
            r = r.with_key(format!("key-{partition}-{seed}-{i}"));
        }
        if i % 4 == 1 {
            r = r
                .with_header("trace", pattern(700, seed * 1000 + 500 + i as u32))
                .with_null_header("empty");
        }
        out.push(r);
    }
    let n = sizes.len();
    out.push(base(n).with_key("tombstone"));
    let twice = pattern(8192, seed * 1000 + 900);
    out.push(base(n + 1).with_value(twice.clone()));
    out.push(base(n + 2).with_key("again").with_value(twice));
    out.push(
        base(n + 3)
            .with_key(pattern(5000, seed * 1000 + 901))
            .with_value(pattern(BY_REFERENCE_MIN, seed * 1000 + 902))
            .with_header("big", pattern(6000, seed * 1000 + 903)),
    );
    out
}

/// A snapshot taken when a Produce request reached the broker.
#[derive(Debug)]
struct Attempt {
    /// The record batch of each partition of the hook's topic, as received.
    batches: Vec<(i32, Bytes)>,
    /// For each held value: its length, and whether the producer still held it.
    held_by_producer: Vec<(usize, bool)>,
}

type Attempts = Arc<Mutex<Vec<Attempt>>>;

/// The attempts recorded so far (taken out of the hook's log).
fn taken(attempts: &Attempts) -> Vec<Attempt> {
    std::mem::take(&mut *attempts.lock().unwrap())
}

fn batches_of(req: &Request, topic: &str) -> Vec<(i32, Bytes)> {
    let RequestKind::Produce(p) = &req.body else {
        return Vec::new();
    };
    p.topic_data
        .iter()
        .filter(|t| &*t.name.0 == topic)
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|pd| Some((pd.index, pd.records.clone()?)))
        .collect()
}

/// Installs a hook on every Produce request for `topic`: it records an [`Attempt`] (looking at
/// `held`, which it owns from now on) and then applies `action(n)` to the `n`th (from 1).
fn observe(
    cluster: &FakeCluster,
    topic: &str,
    held: Vec<Bytes>,
    mut action: impl FnMut(usize) -> Option<Action> + Send + 'static,
) -> Attempts {
    let attempts: Attempts = Arc::default();
    let (log, topic) = (attempts.clone(), topic.to_string());
    let mut n = 0;
    cluster.intercept(Intercept::api(ApiKey::Produce), move |req| {
        let batches = batches_of(req, &topic);
        if batches.is_empty() {
            return None;
        }
        n += 1;
        log.lock().unwrap().push(Attempt {
            batches,
            held_by_producer: held.iter().map(|v| (v.len(), !v.is_unique())).collect(),
        });
        action(n)
    });
    attempts
}

/// Asserts that every attempt found the values of at least `BY_REFERENCE_MIN` bytes held by the
/// producer (`by_reference`) or none at all (compressed: all copied).
fn assert_paths(attempts: &[Attempt], by_reference: bool) {
    assert!(!attempts.is_empty());
    for (k, a) in attempts.iter().enumerate() {
        for (len, held) in &a.held_by_producer {
            let want = by_reference && *len >= BY_REFERENCE_MIN;
            assert_eq!(
                *held,
                want,
                "attempt {k}: a value of {len} bytes is {} the producer while its request \
                 is at the broker",
                if *held {
                    "still held by"
                } else {
                    "no longer held by"
                }
            );
        }
    }
    if by_reference {
        assert!(
            attempts[0]
                .held_by_producer
                .iter()
                .any(|(len, _)| *len >= BY_REFERENCE_MIN),
            "a large value was looked at"
        );
    }
}

fn describe(v: &Option<Bytes>) -> String {
    match v {
        None => "null".into(),
        Some(b) => format!("{} bytes", b.len()),
    }
}

/// Asserts `got == want` without printing large values.
fn assert_bytes(got: &Option<Bytes>, want: &Option<Bytes>, what: &str) {
    if got == want {
        return;
    }
    let first_difference = match (got, want) {
        (Some(g), Some(w)) => g.iter().zip(w.iter()).position(|(a, b)| a != b),
        _ => None,
    };
    panic!(
        "{what}: {} read back, {} sent; first differing byte: {first_difference:?}",
        describe(got),
        describe(want)
    );
}

/// Asserts that `got` are the `expected` records, in order, at offsets from `first`: key,
/// value, headers and timestamp.
fn assert_records(got: &[Record], expected: &[ProducerRecord], first: i64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: record count");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let at = format!("{what}, record {i}");
        assert_eq!(g.offset, first + i as i64, "{at}: offset");
        assert_eq!(Some(g.timestamp), e.timestamp, "{at}: timestamp");
        assert_bytes(&g.key, &e.key, &format!("{at}: key"));
        assert_bytes(&g.value, &e.value, &format!("{at}: value"));
        assert_eq!(g.headers.len(), e.headers.len(), "{at}: header count");
        for (j, (gh, eh)) in g.headers.iter().zip(&e.headers).enumerate() {
            assert_eq!(gh.key, eh.key, "{at}: header {j} key");
            assert_bytes(&gh.value, &eh.value, &format!("{at}: header {j} value"));
        }
    }
}

/// Decodes one batch as sent (CRC verified): its header and records.
fn decode(batch: &Bytes) -> (BatchHeader, Vec<Record>) {
    let mut it = batches(batch.clone());
    let b = it
        .next()
        .expect("a batch")
        .expect("a valid batch (CRC included)");
    assert!(it.next().is_none(), "one batch");
    let records = b
        .inflate()
        .expect("inflate")
        .into_records()
        .expect("records");
    (*b.header(), records)
}

/// The (producer id, epoch, base sequence) a batch was sent with.
fn stamp(batch: &Bytes) -> (i64, i16, i32) {
    let (h, _) = decode(batch);
    (h.producer_id, h.producer_epoch, h.base_sequence)
}

/// Sends every record of `records` (in order) and returns their futures.
async fn send_all(producer: &Producer, records: &mut Records) -> Vec<DeliveryFuture> {
    let mut out = Vec::new();
    for r in records.to_send.drain(..) {
        out.push(producer.send(r).await.expect("accepted"));
    }
    out
}

/// Awaits `futures`, asserting each record landed in `partition` at the next offset from
/// `first`.
async fn assert_delivered(futures: Vec<DeliveryFuture>, partition: i32, first: i64) {
    for (i, f) in futures.into_iter().enumerate() {
        let md = f.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(
            (md.partition, md.offset),
            (partition, first + i as i64),
            "record {i}"
        );
    }
}

async fn reader(cluster: &FakeCluster) -> Cluster {
    Cluster::connect(ClientConfig::new(&cluster.bootstrap()))
        .await
        .expect("connect")
}

/// Produces the mixed records of two partitions in one batch each, and reads them back.
async fn mixed_sizes_round_trip(compression: Compression) {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("mixed", 2, 1).unwrap();
    let mut parts = [mixed("mixed", 0, 1, false), mixed("mixed", 1, 2, true)];
    let held: Vec<Bytes> = parts.iter_mut().flat_map(Records::take_held).collect();
    let attempts = observe(&cluster, "mixed", held, |_| None);
    let mut cfg = one_batch_config(&cluster);
    cfg.compression = compression;
    let producer = Producer::new(cfg).await.unwrap();
    assert!(producer.config().idempotence());
    let f0 = send_all(&producer, &mut parts[0]).await;
    let f1 = send_all(&producer, &mut parts[1]).await;
    producer.flush().await;
    assert_delivered(f0, 0, 0).await;
    assert_delivered(f1, 1, 0).await;
    producer.close().await;

    // One request with one batch per partition, each holding all of its records.
    let attempts = taken(&attempts);
    assert_eq!(attempts.len(), 1, "one Produce request");
    let sent = &attempts[0].batches;
    assert_eq!(sent.len(), 2, "a batch per partition");
    for (p, batch) in sent {
        let part = &parts[*p as usize];
        let (h, records) = decode(batch);
        assert_eq!(h.compression, compression);
        assert_eq!(h.record_count as usize, part.len());
        assert_records(&records, &part.expected, 0, &format!("sent to {p}"));
    }
    assert_paths(&attempts, compression == Compression::None);

    // What the broker stored, read back with Fetch (CRC checked again).
    let reader = reader(&cluster).await;
    for (p, part) in parts.iter().enumerate() {
        let got = read_partition(&reader, "mixed", p as i32).await;
        assert_records(&got, &part.expected, 0, &format!("partition {p}"));
    }
}

/// Mixed sizes, uncompressed: the values of at least 4096 bytes go by reference, and every
/// record reads back byte for byte at its offset.
#[tokio::test]
async fn mixed_sizes_round_trip_byte_for_byte_uncompressed() {
    mixed_sizes_round_trip(Compression::None).await;
}

/// The same records with lz4: every value is copied (compressed), and reads back the same.
#[tokio::test]
async fn mixed_sizes_round_trip_byte_for_byte_lz4() {
    mixed_sizes_round_trip(Compression::Lz4).await;
}

/// Produces four rounds of the mixed records to two partitions, as a stream (short linger,
/// five requests in flight), and reads them back. Returns how many batches were sent.
async fn stream_round_trip(topic: &str, backlog_batch_size: Option<usize>) -> usize {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.backlog_batch_size = backlog_batch_size;
    let producer = Producer::new(cfg).await.unwrap();
    let mut expected: [Vec<ProducerRecord>; 2] = Default::default();
    let mut futures: [Vec<DeliveryFuture>; 2] = Default::default();
    for round in 0..4u32 {
        for p in 0..2 {
            let mut r = mixed(topic, p, 10 + round * 2 + p as u32, round % 2 == 1);
            futures[p as usize].extend(send_all(&producer, &mut r).await);
            expected[p as usize].extend(r.expected);
        }
    }
    for (p, f) in futures.into_iter().enumerate() {
        assert_delivered(f, p as i32, 0).await;
    }
    producer.close().await;
    let reader = reader(&cluster).await;
    for (p, want) in expected.iter().enumerate() {
        let got = read_partition(&reader, topic, p as i32).await;
        assert_records(&got, want, 0, &format!("partition {p}"));
    }
    let log = cluster.requests_of(ApiKey::Produce);
    log.iter().map(|r| r.batches.len()).sum()
}

/// A stream of mixed sizes with every batch kept at `batch.size` (16384): a value above it
/// alone in its batch, smaller ones together, many batches per request; each record at its
/// offset, byte for byte.
#[tokio::test]
async fn a_stream_of_mixed_sizes_round_trips_across_many_batches() {
    let batches = stream_round_trip("stream", Some(0)).await;
    // Per partition and round, at least the 16,385, 70,000 and 300,000-byte values alone.
    assert!(batches >= 2 * 4 * 3, "{batches} batches");
}

/// The same stream with backlogged batches growing past `batch.size` (the default): batches
/// holding many large values, byte for byte.
#[tokio::test]
async fn a_stream_of_mixed_sizes_round_trips_in_backlog_sized_batches() {
    stream_round_trip("backlog", None).await;
}

/// One partition's [`mixed`] records (`seed`, `reversed`) on a fresh fake cluster, sent as one
/// batch and flushed, with `action` applied to its Produce attempts (see [`observe`]).
struct OneBatch {
    cluster: FakeCluster,
    records: Records,
    attempts: Attempts,
    producer: Producer,
    futures: Vec<DeliveryFuture>,
}

async fn one_batch(
    topic: &str,
    seed: u32,
    reversed: bool,
    action: impl FnMut(usize) -> Option<Action> + Send + 'static,
) -> OneBatch {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic(topic, 1, 1).unwrap();
    let mut records = mixed(topic, 0, seed, reversed);
    let held = records.take_held();
    let attempts = observe(&cluster, topic, held, action);
    let producer = Producer::new(one_batch_config(&cluster)).await.unwrap();
    let futures = send_all(&producer, &mut records).await;
    producer.flush().await;
    OneBatch {
        cluster,
        records,
        attempts,
        producer,
        futures,
    }
}

/// A batch with values by reference fails three ways before it is acknowledged: refused
/// (NOT_LEADER_OR_FOLLOWER), its connection dropped before the broker read it, then written
/// with its acknowledgement lost. Every attempt sends the same bytes (same identity and
/// sequence, valid CRC, the records unchanged), the last is answered as a duplicate, and the
/// log holds each record once.
#[tokio::test]
async fn a_batch_with_values_by_reference_is_resent_whole_until_acknowledged() {
    let OneBatch {
        cluster,
        records,
        attempts,
        producer,
        futures,
    } = one_batch("retry", 3, false, |n| match n {
        1 => Some(Action::Error(errors::NOT_LEADER_OR_FOLLOWER)),
        2 => Some(Action::Close),
        3 => Some(Action::DropResponse),
        _ => None,
    })
    .await;
    assert_delivered(futures, 0, 0).await;
    let retries = producer.stats().retries;
    producer.close().await;

    let attempts = taken(&attempts);
    assert_eq!(
        attempts.len(),
        4,
        "refused, dropped, unacknowledged, duplicate"
    );
    assert_eq!(retries, 3);
    let first = &attempts[0].batches;
    assert_eq!(first.len(), 1);
    for (k, a) in attempts.iter().enumerate() {
        assert!(a.batches == *first, "attempt {k} sent other bytes");
    }
    let (h, sent) = decode(&first[0].1);
    assert!(h.producer_id >= 0 && h.base_sequence == 0, "{h:?}");
    assert_records(&sent, &records.expected, 0, "sent");
    assert_paths(&attempts, true);
    let got = read_partition(&reader(&cluster).await, "retry", 0).await;
    assert_records(&got, &records.expected, 0, "log");
}

/// Asserts that two sendings of one batch differ at most in their identity fields and CRC: the
/// same length, the same bytes from the record count on (the records, values included).
fn assert_same_records(a: &Bytes, b: &Bytes) {
    assert_eq!(a.len(), b.len());
    assert!(
        a[BATCH_HEADER_LEN..] == b[BATCH_HEADER_LEN..],
        "the records changed when the batch was re-stamped"
    );
}

/// UNKNOWN_PRODUCER_ID at the head of the line: the partition bumps the epoch and the batch,
/// values by reference, is re-stamped (new epoch, new CRC) rather than built again. The
/// re-stamped batch passes the broker's CRC check and is stored byte for byte.
#[tokio::test]
async fn values_by_reference_survive_a_restamp_after_an_epoch_bump() {
    let OneBatch {
        cluster,
        records,
        attempts,
        producer,
        futures,
    } = one_batch("bump", 4, true, |n| {
        (n == 1).then_some(Action::Error(errors::UNKNOWN_PRODUCER_ID))
    })
    .await;
    assert_delivered(futures, 0, 0).await;
    producer.close().await;

    let attempts = taken(&attempts);
    assert_eq!(attempts.len(), 2);
    let (a, b) = (&attempts[0].batches[0].1, &attempts[1].batches[0].1);
    let (pid, epoch, seq) = stamp(a);
    assert_eq!(
        stamp(b),
        (pid, epoch + 1, seq),
        "re-stamped with the next epoch"
    );
    assert_ne!(decode(a).0.crc, decode(b).0.crc, "a new CRC");
    assert_same_records(a, b);
    assert_records(&decode(b).1, &records.expected, 0, "re-stamped");
    assert_eq!(
        cluster.requests_of(ApiKey::InitProducerId).len(),
        1,
        "a local bump"
    );
    assert_paths(&attempts, true);
    let got = read_partition(&reader(&cluster).await, "bump", 0).await;
    assert_records(&got, &records.expected, 0, "log");
}

/// The broker loses every producer id behind a partition's first batch: the next batch (values
/// by reference) is refused under its id, re-stamped with the bumped epoch and refused again,
/// then re-stamped for a fresh producer id and written. Both re-stampings keep the records
/// intact, and the log reads back byte for byte after the first batch.
#[tokio::test]
async fn values_by_reference_survive_two_restamps_for_a_fresh_producer_id() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("fresh", 1, 1).unwrap();
    let producer = Producer::new(one_batch_config(&cluster)).await.unwrap();
    let warm = ProducerRecord::new("fresh")
        .with_partition(0)
        .with_value(pattern(BY_REFERENCE_MIN * 2, 77));
    let f = producer.send(warm.clone()).await.unwrap();
    producer.flush().await;
    assert_eq!(f.await.unwrap().offset, 0);
    cluster.lose_producer_ids();

    let mut records = mixed("fresh", 0, 5, false);
    let held = records.take_held();
    let attempts = observe(&cluster, "fresh", held, |_| None);
    let futures = send_all(&producer, &mut records).await;
    producer.flush().await;
    assert_delivered(futures, 0, 1).await;
    producer.close().await;

    let attempts = taken(&attempts);
    assert_eq!(attempts.len(), 3, "old id, bumped epoch, fresh id");
    let sent: Vec<&Bytes> = attempts.iter().map(|a| &a.batches[0].1).collect();
    let (old, epoch, seq) = stamp(sent[0]);
    assert_eq!(seq, 1, "behind the first batch");
    assert_eq!(stamp(sent[1]), (old, epoch + 1, 0));
    let (fresh, fresh_epoch, fresh_seq) = stamp(sent[2]);
    assert_ne!(fresh, old);
    assert_eq!((fresh_epoch, fresh_seq), (0, 0));
    for s in &sent[1..] {
        assert_same_records(sent[0], s);
        assert_records(&decode(s).1, &records.expected, 0, "re-stamped");
    }
    assert_paths(&attempts, true);
    let got = read_partition(&reader(&cluster).await, "fresh", 0).await;
    assert_eq!(got.len(), 1 + records.len());
    assert_bytes(&got[0].value, &warm.value, "the first record");
    assert_records(&got[1..], &records.expected, 1, "log");
}

/// Sends `handed_back` again with a new producer, and checks they are stored as `expected`.
async fn send_back(
    cluster: &FakeCluster,
    topic: &str,
    handed_back: Vec<ProducerRecord>,
    expected: &[ProducerRecord],
) {
    let producer = Producer::new(one_batch_config(cluster)).await.unwrap();
    let mut futures = Vec::new();
    for r in handed_back {
        futures.push(producer.send(r).await.expect("accepted"));
    }
    producer.flush().await;
    assert_delivered(futures, 0, 0).await;
    producer.close().await;
    let got = read_partition(&reader(cluster).await, topic, 0).await;
    assert_records(&got, expected, 0, "sent again");
}

/// Awaits `futures`, each failing with `code` as not persisted, and returns their records.
async fn handed_back(futures: Vec<DeliveryFuture>, code: ErrorCode) -> Vec<ProducerRecord> {
    let mut out = Vec::new();
    for (i, f) in futures.into_iter().enumerate() {
        let e = f.await.expect_err("the batch fails");
        assert!(
            matches!(e.kind(), ProduceErrorKind::Broker { code: c, .. } if *c == code),
            "record {i}: {e}"
        );
        assert_eq!(e.persistence(), Persistence::NotPersisted, "record {i}");
        assert_eq!(e.partition(), Some(0), "record {i}");
        out.push(e.into_record().expect("the record handed back"));
    }
    out
}

/// Asserts the handed-back records equal what was sent, large values included.
fn assert_handed_back_whole(back: &[ProducerRecord], expected: &[ProducerRecord]) {
    assert_eq!(back.len(), expected.len());
    for (i, (b, e)) in back.iter().zip(expected).enumerate() {
        assert_eq!(
            (&b.topic, b.partition, b.timestamp),
            (&e.topic, e.partition, e.timestamp),
            "record {i}"
        );
        assert_bytes(&b.key, &e.key, &format!("record {i}: key"));
        assert_bytes(&b.value, &e.value, &format!("record {i}: value"));
        assert_eq!(b.headers.len(), e.headers.len(), "record {i}: header count");
        for (j, (bh, eh)) in b.headers.iter().zip(&e.headers).enumerate() {
            assert_eq!(bh.key, eh.key, "record {i}: header {j} key");
            assert_bytes(
                &bh.value,
                &eh.value,
                &format!("record {i}: header {j} value"),
            );
        }
        assert!(b == e, "record {i}: handed back changed");
    }
}

/// Awaits a batch's failure with INVALID_RECORD after its attempts: each record handed back
/// whole (rebuilt from the batch's bytes: key, value, headers, timestamp, partition), nothing
/// written, the values sent by reference on every attempt, and the records stored byte for
/// byte when sent again. Returns the attempts.
async fn fails_and_is_sent_back(b: OneBatch, topic: &str) -> Vec<Attempt> {
    let back = handed_back(b.futures, ErrorCode::INVALID_RECORD).await;
    b.producer.close().await;
    assert_handed_back_whole(&back, &b.records.expected);
    let attempts = taken(&b.attempts);
    assert_paths(&attempts, true);
    assert_eq!(b.cluster.offsets(topic, 0).unwrap().1, 0, "nothing written");
    send_back(&b.cluster, topic, back, &b.records.expected).await;
    attempts
}

/// A batch with values by reference fails with INVALID_RECORD (not retried) on its first send:
/// its records are handed back whole, and stored byte for byte when sent again.
#[tokio::test]
async fn a_failed_batch_hands_its_large_values_back_whole() {
    let b = one_batch("fail", 6, false, |n| {
        (n == 1).then_some(Action::Error(errors::INVALID_RECORD))
    })
    .await;
    let attempts = fails_and_is_sent_back(b, "fail").await;
    assert_eq!(attempts.len(), 1, "not retried");
}

/// The same after a re-stamp: the batch is refused with UNKNOWN_PRODUCER_ID, re-stamped with
/// the next epoch, then fails with INVALID_RECORD; its records are rebuilt from the re-stamped
/// batch and handed back whole.
#[tokio::test]
async fn a_batch_failing_after_a_restamp_hands_its_large_values_back_whole() {
    let b = one_batch("fail2", 7, true, |n| match n {
        1 => Some(Action::Error(errors::UNKNOWN_PRODUCER_ID)),
        2 => Some(Action::Error(errors::INVALID_RECORD)),
        _ => None,
    })
    .await;
    let attempts = fails_and_is_sent_back(b, "fail2").await;
    assert_eq!(attempts.len(), 2);
    let (a, b) = (&attempts[0].batches[0].1, &attempts[1].batches[0].1);
    let (pid, epoch, seq) = stamp(a);
    assert_eq!(stamp(b), (pid, epoch + 1, seq), "failed after a re-stamp");
    assert_same_records(a, b);
}
