//! Replays every fuzz corpus and regression input (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the fuzz targets' own entry points on stable, so a
//! past finding is caught by every `cargo test`; plus random-bytes property tests over the same
//! entry points, and checks that the real broker responses in the `responses` corpus decode.
//!
//! `cargo test -p krust-wire --test corpus -- --ignored write_seed_corpus` regenerates the
//! synthetic seeds (batches per codec, legacy messages, compressed samples, frames).

#[path = "../../../fuzz/src/entry.rs"]
#[allow(dead_code)]
mod entry;

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use krust_wire::compression::{self, Compression};
use krust_wire::group_protocol::{
    encode_assignment, encode_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, StickyUserData, MAX_VERSION,
};
use krust_wire::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use krust_wire::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use krust_wire::kafka_protocol::protocol::StrBytes;
use krust_wire::protocol::RandomSource;
use krust_wire::record::{
    encode_control_batch, BatchBuilder, ControlRecord, ControlRecordType, RecordHeader,
};
use krust_wire::{ApiKey, DecodeResponse};
use proptest::prelude::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

const TARGETS: [&str; 11] = [
    "frame_reader",
    "responses",
    "record_batch",
    "codec_gzip",
    "codec_snappy",
    "codec_lz4",
    "codec_zstd",
    "roundtrip",
    "group_protocol",
    "group_assign",
    "fetch",
];

fn run(target: &str, data: &[u8]) {
    match target {
        "frame_reader" => entry::frame_reader(data),
        "responses" => entry::responses(data),
        "record_batch" => entry::record_batch(data),
        "codec_gzip" => entry::codec(Compression::Gzip, data),
        "codec_snappy" => entry::codec(Compression::Snappy, data),
        "codec_lz4" => entry::codec(Compression::Lz4, data),
        "codec_zstd" => entry::codec(Compression::Zstd, data),
        "roundtrip" => entry::roundtrip(data),
        "group_protocol" => entry::group_protocol(data),
        "group_assign" => entry::group_assign(data),
        "fetch" => entry::fetch(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn replay_corpora_and_regressions() {
    let mut total = 0;
    for target in TARGETS {
        for kind in ["corpus", "regressions"] {
            for path in files(&fuzz_dir().join(kind).join(target)) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(target, &data));
                assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
                total += 1;
            }
        }
    }
    assert!(total > 0, "no corpus found under {}", fuzz_dir().display());
}

#[test]
fn real_broker_responses_decode() {
    // Seeds captured from a broker with scripts/interop/capture_responses.py: byte 0 API key,
    // byte 1 version, then the body. The decoders must accept what a broker really sends.
    let mut checked = 0;
    for path in files(&fuzz_dir().join("corpus/responses")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains("-v") {
            continue; // a fuzzer-found input, not a capture
        }
        let data = std::fs::read(&path).unwrap();
        let api = ApiKey::from_key(i16::from(data[0])).unwrap();
        let version = i16::from(data[1]);
        let (min, max) = api.client_range();
        if version < min || version > max {
            continue;
        }
        krust_wire::responses::decode_any(api, version, Bytes::copy_from_slice(&data[2..]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        checked += 1;
    }
    assert!(checked > 10, "only {checked} captured responses");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(
        target in proptest::sample::select(TARGETS.to_vec()),
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        run(target, &data);
    }

    #[test]
    fn random_bytes_behind_valid_prefixes(
        api in proptest::sample::select(ApiKey::ALL.to_vec()),
        version in 0u8..18,
        magic in 0u8..3,
        codec in 0u8..5,
        data in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // Responses: a real API key and version, random body.
        let mut r = vec![api.key() as u8, version];
        r.extend_from_slice(&data);
        entry::responses(&r);
        // Batches: a plausible prefix (length, magic, attributes) so the random bytes reach
        // the CRC check and, through a forged CRC, the record decoder.
        // Mode byte 1: decode as is (the CRC is forged here).
        let mut b = vec![1u8];
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((data.len() + 49) as i32).to_be_bytes());
        b.extend_from_slice(&[0xff; 4]);
        b.push(magic);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&i16::from(codec).to_be_bytes());
        b.extend_from_slice(&[0; 36]);
        b.extend_from_slice(&data);
        if b.len() >= 62 {
            let crc = crc32c::crc32c(&b[22..]);
            b[18..22].copy_from_slice(&crc.to_be_bytes());
        }
        entry::record_batch(&b);
        // Mode byte 0: the entry point fixes the CRC itself.
        b[0] = 0;
        b[18..22].copy_from_slice(&[0; 4]);
        entry::record_batch(&b);
    }
}

/// What the seed writers call: target, file name (after `seed-`), contents.
type SeedWriter = dyn Fn(&str, &str, &[u8]);

/// Writes the synthetic seed inputs into `fuzz/corpus/<target>/seed-*`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        // record_batch inputs start with a mode byte (0: fix up CRCs first).
        let data = if target == "record_batch" {
            [&[0u8][..], data].concat()
        } else {
            data.to_vec()
        };
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    let text: Vec<u8> = (0..3000u32)
        .map(|i| b"kafka record batch "[(i % 19) as usize])
        .collect();
    for codec in Compression::ALL {
        let mut b = BatchBuilder::new(codec).with_base_offset(10);
        for i in 0..4u8 {
            b.push(
                1_700_000_000_000 + i64::from(i),
                Some(&[b'k', i]),
                Some(&text[..100 * usize::from(i + 1)]),
                &[RecordHeader::new("h", Some(Bytes::from_static(b"v")))],
            )
            .unwrap();
        }
        let batch = b.finish(5, 1, 0, codec == Compression::Gzip).unwrap();
        write("record_batch", &format!("krust-{codec}"), &batch);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/librdkafka-{codec}.bin"));
        write(
            "record_batch",
            &format!("librdkafka-{codec}"),
            &std::fs::read(fixture).unwrap(),
        );
        if codec != Compression::None {
            let c = compression::compress(codec, &text).unwrap();
            write(&format!("codec_{codec}"), "text", &c);
            write(
                &format!("codec_{codec}"),
                "empty",
                &compression::compress(codec, b"").unwrap(),
            );
        }
        write(
            "roundtrip",
            &format!("{codec}"),
            &[&[codec.code() as u8][..], &text[..200]].concat(),
        );
    }
    let raw = compression::snappy::compress_raw(&text).unwrap();
    write("codec_snappy", "raw", &raw);
    let mut old_lz4 = compression::compress(Compression::Lz4, &text).unwrap();
    compression::lz4::break_header_checksum(&mut old_lz4).unwrap();
    write("codec_lz4", "old-kafka-checksum", &old_lz4);
    // Legacy messages: v0 plain, v1 plain, v1 gzip wrapper.
    let legacy = |offset: i64, magic: u8, attributes: u8, value: &[u8]| {
        let mut m = vec![magic, attributes];
        if magic == 1 {
            m.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        }
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.extend_from_slice(&(value.len() as i32).to_be_bytes());
        m.extend_from_slice(value);
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&((m.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        out.extend_from_slice(&m);
        out
    };
    let mut set = legacy(0, 0, 0, b"v0 message");
    set.extend(legacy(1, 1, 0, b"v1 message"));
    write("record_batch", "legacy-plain", &set);
    let mut inner = legacy(0, 1, 0, b"a");
    inner.extend(legacy(1, 1, 0, b"b"));
    for (codec, attr) in [
        (Compression::Gzip, 1u8),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
    ] {
        let wrapped = compression::compress(codec, &inner).unwrap();
        write(
            "record_batch",
            &format!("legacy-{codec}"),
            &legacy(7, 1, attr, &wrapped),
        );
    }
    let mut frames = Vec::new();
    for body in [&b""[..], b"hello", &text[..300]] {
        frames.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frames.extend_from_slice(body);
    }
    write("frame_reader", "three", &frames);
    write_group_seeds(&write);
    write_fetch_seeds(&write);
    write_response_seeds(&write);
}

/// One random well-formed response per API and version krust decodes (the broker captures cover
/// few APIs): `seed-random-<key>-<version>`.
fn write_response_seeds(write: &SeedWriter) {
    fn one<R: DecodeResponse + Encodable>(write: &SeedWriter) {
        let api = R::API_KEY;
        let (min, max) = api.client_range();
        for v in min..=max {
            let mut rnd = RandomSource::new(
                u64::from(api.key() as u16) * 100 + v as u64,
                api.is_flexible(v),
            );
            let value = R::decode_body(&mut rnd, v).unwrap();
            let mut buf = BytesMut::new();
            value.encode(&mut buf, v).unwrap();
            let data = [&[api.key() as u8, v as u8][..], &buf].concat();
            write("responses", &format!("random-{}-{v}", api.key()), &data);
        }
    }
    use kafka_protocol::messages as m;
    let all: [fn(&SeedWriter); 31] = [
        one::<m::ProduceResponse>,
        one::<m::FetchResponse>,
        one::<m::ListOffsetsResponse>,
        one::<m::MetadataResponse>,
        one::<m::OffsetCommitResponse>,
        one::<m::OffsetFetchResponse>,
        one::<m::FindCoordinatorResponse>,
        one::<m::JoinGroupResponse>,
        one::<m::HeartbeatResponse>,
        one::<m::LeaveGroupResponse>,
        one::<m::SyncGroupResponse>,
        one::<m::DescribeGroupsResponse>,
        one::<m::ListGroupsResponse>,
        one::<m::SaslHandshakeResponse>,
        one::<m::ApiVersionsResponse>,
        one::<m::CreateTopicsResponse>,
        one::<m::DeleteTopicsResponse>,
        one::<m::DeleteRecordsResponse>,
        one::<m::InitProducerIdResponse>,
        one::<m::OffsetForLeaderEpochResponse>,
        one::<m::AddPartitionsToTxnResponse>,
        one::<m::AddOffsetsToTxnResponse>,
        one::<m::EndTxnResponse>,
        one::<m::TxnOffsetCommitResponse>,
        one::<m::DescribeConfigsResponse>,
        one::<m::SaslAuthenticateResponse>,
        one::<m::CreatePartitionsResponse>,
        one::<m::DeleteGroupsResponse>,
        one::<m::DescribeClusterResponse>,
        one::<m::DescribeTransactionsResponse>,
        one::<m::ListTransactionsResponse>,
    ];
    assert_eq!(all.len(), ApiKey::ALL.len(), "a response type per API");
    for f in all {
        f(write);
    }
}

/// Seeds of `group_protocol` (byte 0 picks the decoder) and `group_assign` (members'
/// metadata, each `[len][flags][metadata]`).
fn write_group_seeds(write: &SeedWriter) {
    let subscription = |version: i16, topics: &[&str], owned: &[(&str, &[i32])]| {
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = topics
            .iter()
            .map(|t| StrBytes::from_string(t.to_string()))
            .collect();
        s.user_data = Some(Bytes::from_static(b"ud"));
        s.owned_partitions = owned
            .iter()
            .map(|(t, ps)| {
                let mut o = OwnedTopic::default();
                o.topic = StrBytes::from_string(t.to_string()).into();
                o.partitions = ps.to_vec();
                o
            })
            .collect();
        if version >= 2 {
            s.generation_id = 4;
        }
        if version >= 3 {
            s.rack_id = Some(StrBytes::from_static_str("rack-1"));
        }
        encode_subscription(&s, version).unwrap()
    };
    for version in 0..=MAX_VERSION {
        let owned: &[(&str, &[i32])] = if version == 0 { &[] } else { &[("a", &[0, 1])] };
        let s = subscription(version, &["a", "b"], owned);
        write(
            "group_protocol",
            &format!("subscription-v{version}"),
            &[&[0u8][..], &s].concat(),
        );
        let mut a = ConsumerProtocolAssignment::default();
        let mut t = AssignedTopic::default();
        t.topic = StrBytes::from_static_str("a").into();
        t.partitions = vec![0, 2];
        a.assigned_partitions = vec![t];
        a.user_data = (version > 0).then(|| Bytes::from_static(b"ud"));
        let a = encode_assignment(&a, version).unwrap();
        write(
            "group_protocol",
            &format!("assignment-v{version}"),
            &[&[1u8][..], &a].concat(),
        );
    }
    // A newer version than krust knows: read as v3, trailing bytes ignored.
    let mut newer = subscription(3, &["a"], &[("a", &[0])]).to_vec();
    newer[..2].copy_from_slice(&4i16.to_be_bytes());
    newer.extend_from_slice(b"future");
    write(
        "group_protocol",
        "subscription-v4",
        &[&[0u8][..], &newer].concat(),
    );
    write("group_protocol", "assignment-empty", &[1]);
    let sticky = StickyUserData {
        previous: vec![("a".into(), vec![0, 1]), ("c".into(), vec![3])],
        generation: Some(9),
    }
    .encode();
    write("group_protocol", "sticky", &[&[2u8][..], &sticky].concat());
    write(
        "group_protocol",
        "sticky-v0",
        &[&[2u8][..], &sticky[..sticky.len() - 4]].concat(),
    );

    // group_assign: topic partition counts derive from the names (with salt 3: a 2, b 3, c 4).
    let mut eager_sticky = ConsumerProtocolSubscription::default();
    eager_sticky.topics = vec![
        StrBytes::from_static_str("a"),
        StrBytes::from_static_str("c"),
    ];
    eager_sticky.user_data = Some(sticky);
    let members = [
        (
            0u8,
            subscription(3, &["a", "b"], &[("a", &[0, 1]), ("b", &[2])]),
        ),
        (
            1,
            subscription(2, &["a", "b", "c"], &[("b", &[2]), ("c", &[0])]),
        ),
        (3, subscription(1, &["c"], &[("c", &[0, 1, 9])])),
        (0, encode_subscription(&eager_sticky, 0).unwrap()),
    ];
    let mut input = vec![1u8, 3];
    for (flags, m) in &members {
        input.push(m.len() as u8);
        input.push(*flags);
        input.extend_from_slice(m);
    }
    write("group_assign", "four-members", &input);
}

/// Seeds of `fetch`: `[flags][start][lso][aborted count][pid, first offset]*`, then a record set
/// (flags bit 1: read_committed; CRCs are fixed up by the entry point).
fn write_fetch_seeds(write: &SeedWriter) {
    let batch = |base: i64, n: i64, codec: Compression, pid: i64, txn: bool| {
        let mut b = BatchBuilder::new(codec).with_base_offset(base);
        for i in 0..n {
            let o = base + i;
            b.push(1_000 + o, None, Some(format!("v{o}").as_bytes()), &[])
                .unwrap();
        }
        let (epoch, seq) = if pid >= 0 { (0, base as i32) } else { (-1, -1) };
        b.finish(pid, epoch, seq, txn).unwrap()
    };
    let marker = |offset: i64, pid: i64, kind: ControlRecordType| {
        let m = ControlRecord {
            version: 0,
            kind,
            coordinator_epoch: Some(0),
        };
        encode_control_batch(offset, 1_000 + offset, pid, 0, m).unwrap()
    };
    // Producer 7 aborts offsets 0-2 (marker at 3), producer 8 commits 4-6 (marker at 7), then
    // producer 7 writes an open transaction at 8-9 (past the LSO of 8).
    let log = [
        batch(0, 3, Compression::None, 7, true),
        marker(3, 7, ControlRecordType::Abort),
        batch(4, 3, Compression::Lz4, 8, true),
        marker(7, 8, ControlRecordType::Commit),
        batch(8, 2, Compression::Zstd, 7, true),
    ]
    .concat();
    write(
        "fetch",
        "read-committed",
        &[&[2u8, 1, 8, 1, 7, 0][..], &log].concat(),
    );
    write(
        "fetch",
        "read-uncommitted",
        &[&[4u8, 0, 255, 0][..], &log].concat(),
    );
    let plain = [
        batch(10, 4, Compression::Gzip, -1, false),
        batch(14, 2, Compression::Snappy, -1, false),
    ]
    .concat();
    write("fetch", "plain", &[&[0u8, 12, 255, 0][..], &plain].concat());
}

#[test]
fn fetch_poll_counts_records_moved_before_a_corrupt_batch() {
    // Found by the `fetch` target: when a corrupt batch stopped `Fetcher::poll_records` midway,
    // the records it had already moved were left out of its count, so a poll over several
    // partitions could hand out more than `max.poll.records`. The entry point asserts the count.
    let mut good = BatchBuilder::new(Compression::None);
    let mut bad = BatchBuilder::new(Compression::None).with_base_offset(3);
    for i in 0..3u8 {
        good.push(1_000, None, Some(&[i]), &[]).unwrap();
        bad.push(1_000, None, Some(&[i]), &[]).unwrap();
    }
    let good = good.finish(-1, -1, -1, false).unwrap();
    let mut bad = bad.finish(-1, -1, -1, false).unwrap().to_vec();
    // Announce a fourth record that is not there (the entry point fixes the CRC).
    bad[57..61].copy_from_slice(&4i32.to_be_bytes());
    // Flags 7 << 2: eight records per poll, CRCs fixed up; start 0, no LSO, no aborted list.
    let input = [&[7u8 << 2, 0, 255, 0][..], &good, &bad].concat();
    entry::fetch(&input);
}

#[test]
fn fetch_delivers_strictly_increasing_offsets_from_overlapping_batches() {
    // Found by the `fetch` target: a fetch whose batches overlap (offsets 0-2, then 1-3) gave
    // offsets 1 and 2 twice in one poll. Records at or below one already delivered are skipped.
    let batch = |base: i64| {
        let mut b = BatchBuilder::new(Compression::None).with_base_offset(base);
        for i in 0..3u8 {
            b.push(1_000, None, Some(&[i]), &[]).unwrap();
        }
        b.finish(-1, -1, -1, false).unwrap()
    };
    let input = [&[7u8 << 2, 0, 255, 0][..], &batch(0), &batch(1)].concat();
    entry::fetch(&input);
}
