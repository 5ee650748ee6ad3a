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

use bytes::Bytes;
use krust_wire::compression::{self, Compression};
use krust_wire::record::{BatchBuilder, RecordHeader};
use krust_wire::ApiKey;
use proptest::prelude::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

const TARGETS: [&str; 8] = [
    "frame_reader",
    "responses",
    "record_batch",
    "codec_gzip",
    "codec_snappy",
    "codec_lz4",
    "codec_zstd",
    "roundtrip",
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
}
