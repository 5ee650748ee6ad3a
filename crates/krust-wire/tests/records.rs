//! Record batch round trips: every codec, random records, headers and timestamps; restamping;
//! control batches; record sets with a partial trailing batch.

use bytes::Bytes;
use krust_wire::record::{
    batches, encode_control_batch, restamp, BatchBuilder, Compression, ControlRecord,
    ControlRecordType, DeflatedBatch, Record, RecordHeader, TimestampType,
};
use proptest::prelude::*;

fn build(codec: Compression, base_offset: i64, records: &[Record]) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_base_offset(base_offset);
    for r in records {
        b.push_record(r).unwrap();
    }
    b.finish(-1, -1, -1, false).unwrap()
}

fn decode_all(bytes: Bytes) -> Vec<Record> {
    let mut out = Vec::new();
    for batch in batches(bytes) {
        out.extend(batch.unwrap().inflate().unwrap().into_records().unwrap());
    }
    out
}

fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        -1_000_000_000i64..4_000_000_000_000,
        arb_bytes(),
        arb_bytes(),
        proptest::collection::vec(("[a-zA-Z0-9._-]{0,12}", arb_bytes()), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Record {
            offset: 0,
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| RecordHeader::new(k, v))
                .collect(),
        })
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips_every_codec(
        codec in arb_codec(),
        base in 0i64..1 << 40,
        records in proptest::collection::vec(arb_record(), 1..40),
        pid in -1i64..1000, epoch in -1i16..10, seq in -1i32..1000, txn in any::<bool>(),
    ) {
        let mut b = BatchBuilder::new(codec).with_base_offset(base);
        for r in &records {
            b.push_record(r).unwrap();
        }
        let est = b.estimated_size();
        let bytes = b.finish(pid, epoch, seq, txn).unwrap();
        if codec == Compression::None {
            prop_assert_eq!(bytes.len(), est);
        }
        let mut it = batches(bytes.clone());
        let batch = it.next().unwrap().unwrap();
        prop_assert!(it.next().is_none());
        prop_assert_eq!(it.truncated_tail(), 0);
        let h = *batch.header();
        prop_assert_eq!(h.magic, 2);
        prop_assert_eq!(h.compression, codec);
        prop_assert_eq!(h.base_offset, base);
        prop_assert_eq!(h.record_count as usize, records.len());
        prop_assert_eq!(h.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(h.producer_id, pid);
        prop_assert_eq!(h.producer_epoch, epoch);
        prop_assert_eq!(h.base_sequence, seq);
        prop_assert_eq!(h.is_transactional(), txn);
        prop_assert!(!h.is_control());
        prop_assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        prop_assert_eq!(h.first_timestamp, records[0].timestamp);
        prop_assert_eq!(h.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(h.next_offset(), base + records.len() as i64);
        let got = batch.inflate().unwrap().into_records().unwrap();
        prop_assert_eq!(got.len(), records.len());
        for (i, (g, want)) in got.iter().zip(&records).enumerate() {
            prop_assert_eq!(g.offset, base + i as i64);
            prop_assert_eq!(g.timestamp, want.timestamp);
            prop_assert_eq!(&g.key, &want.key);
            prop_assert_eq!(&g.value, &want.value);
            prop_assert_eq!(&g.headers, &want.headers);
        }
    }

    #[test]
    fn restamp_keeps_records_and_fixes_crc(
        codec in arb_codec(),
        records in proptest::collection::vec(arb_record(), 1..10),
        pid in 0i64..i64::MAX, epoch in 0i16..i16::MAX, seq in 0i32..i32::MAX,
    ) {
        let bytes = build(codec, 0, &records);
        let stamped = restamp(&bytes, pid, epoch, seq).unwrap();
        let batch = DeflatedBatch::decode(stamped).unwrap();
        prop_assert_eq!(batch.header().producer_id, pid);
        prop_assert_eq!(batch.header().producer_epoch, epoch);
        prop_assert_eq!(batch.header().base_sequence, seq);
        prop_assert_eq!(batch.inflate().unwrap().into_records().unwrap().len(), records.len());
    }
}

#[test]
fn several_batches_and_a_partial_tail() {
    let r = |v: &'static str| Record {
        timestamp: 1000,
        value: Some(Bytes::from_static(v.as_bytes())),
        ..Record::default()
    };
    let a = build(Compression::None, 0, &[r("a"), r("b")]);
    let b = build(Compression::Gzip, 2, &[r("c")]);
    let c = build(Compression::Lz4, 3, &[r("d"), r("e")]);
    let mut set = Vec::new();
    set.extend_from_slice(&a);
    set.extend_from_slice(&b);
    let full = set.len();
    set.extend_from_slice(&c[..c.len() - 3]);
    let mut it = batches(Bytes::from(set));
    let got: Vec<_> = it.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].base_offset(), 2);
    assert_eq!(it.truncated_tail(), c.len() - 3);
    assert_eq!(it.position(), full);
    // Fewer than 12 bytes left over is a partial tail too.
    let mut short = a.to_vec();
    short.extend_from_slice(&[0; 5]);
    let mut it = batches(Bytes::from(short));
    assert_eq!(it.by_ref().count(), 1);
    assert_eq!(it.truncated_tail(), 5);
}

#[test]
fn control_batches_carry_their_marker() {
    for kind in [ControlRecordType::Commit, ControlRecordType::Abort] {
        let bytes = encode_control_batch(
            77,
            5,
            9,
            2,
            ControlRecord {
                version: 0,
                kind,
                coordinator_epoch: Some(3),
            },
        )
        .unwrap();
        let batch = DeflatedBatch::decode(bytes).unwrap();
        assert!(batch.is_control());
        assert!(batch.is_transactional());
        let inflated = batch.inflate().unwrap();
        let marker = inflated.control().unwrap();
        assert_eq!(marker.kind, kind);
        assert_eq!(marker.coordinator_epoch, Some(3));
        assert_eq!(inflated.header().producer_id, 9);
    }
}

#[test]
fn log_append_time_overrides_record_timestamps() {
    let mut b = BatchBuilder::new(Compression::Snappy).with_log_append_time(true);
    b.push(10, None, Some(b"x"), &[]).unwrap();
    b.push(30, None, Some(b"y"), &[]).unwrap();
    let bytes = b.finish(-1, -1, -1, false).unwrap();
    let recs = decode_all(bytes);
    assert!(recs.iter().all(|r| r.timestamp == 30));
}

#[test]
fn record_size_bound_covers_the_encoding() {
    let headers = [RecordHeader::new("k", Some(Bytes::from_static(b"v")))];
    let mut b = BatchBuilder::new(Compression::None);
    let before = b.estimated_size();
    b.push(i64::MAX / 2, Some(&[1; 200]), Some(&[2; 3000]), &headers)
        .unwrap();
    let grew = b.estimated_size() - before;
    assert!(
        grew <= BatchBuilder::record_size_upper_bound(Some(&[1; 200]), Some(&[2; 3000]), &headers)
    );
}

#[test]
fn empty_batch_is_an_encode_error() {
    assert!(BatchBuilder::new(Compression::None)
        .finish(-1, -1, -1, false)
        .is_err());
}

// ---- golden fixtures captured from librdkafka (see tests/fixtures/README.md) ----

fn unhex(s: &str) -> Option<Bytes> {
    match s {
        "-" => None,
        "=" => Some(Bytes::new()),
        s => Some(Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )),
    }
}

fn expected_records(text: &str) -> Vec<Record> {
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "{line}");
            let headers = if f[4] == "-" {
                Vec::new()
            } else {
                f[4].split(',')
                    .map(|h| {
                        let (k, v) = h.split_once(':').unwrap();
                        let k = unhex(k).unwrap_or_default();
                        RecordHeader::new(String::from_utf8(k.to_vec()).unwrap(), unhex(v))
                    })
                    .collect()
            };
            Record {
                offset: f[0].parse().unwrap(),
                timestamp: f[1].parse().unwrap(),
                key: unhex(f[2]),
                value: unhex(f[3]),
                headers,
            }
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn librdkafka_fixtures_decode_byte_for_byte() {
    for codec in Compression::ALL {
        let name = codec.name();
        let data = Bytes::from(fixture(&format!("librdkafka-{name}.bin")));
        let want = expected_records(
            &String::from_utf8(fixture(&format!("librdkafka-{name}.expected"))).unwrap(),
        );
        let mut got = Vec::new();
        let mut it = batches(data.clone());
        for batch in it.by_ref() {
            let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(batch.compression(), codec, "{name}");
            assert_eq!(batch.header().magic, 2);
            assert_eq!(batch.header().timestamp_type(), TimestampType::CreateTime);
            got.extend(batch.inflate().unwrap().into_records().unwrap());
        }
        assert_eq!(it.truncated_tail(), 0, "{name}");
        assert_eq!(got, want, "{name}");

        // krust encodes the same records to the same bytes librdkafka wrote (uncompressed
        // record section; the header differs only in fields the broker or producer stamps).
        if codec == Compression::None {
            let batch = batches(data.clone()).next().unwrap().unwrap();
            let mut b = BatchBuilder::new(Compression::None);
            for r in &want {
                b.push_record(r).unwrap();
            }
            let ours = b
                .finish(
                    batch.header().producer_id,
                    batch.header().producer_epoch,
                    batch.header().base_sequence,
                    false,
                )
                .unwrap();
            assert_eq!(ours[61..], batch.as_bytes()[61..], "record section");
            assert_eq!(ours[21..], batch.as_bytes()[21..], "CRC-covered range");
        }
    }
}

/// Writes krust-encoded batches for every codec, with their expected records, into
/// `$KRUST_INTEROP_DIR` (for `scripts/interop/run.sh`, which produces them raw to a broker and
/// reads them back with librdkafka). Does nothing when the variable is unset.
#[test]
fn write_interop_batches() {
    let Some(dir) = std::env::var_os("KRUST_INTEROP_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut recs = Vec::new();
    for i in 0..20i64 {
        recs.push(Record {
            offset: i,
            timestamp: 1_700_000_000_000 + i * 3,
            key: Some(Bytes::from(format!("krust-key-{i}"))),
            value: Some(Bytes::from(format!(
                "krust value {i} {}",
                "abc ".repeat(i as usize)
            ))),
            headers: vec![
                RecordHeader::new("n", Some(Bytes::from(i.to_string()))),
                RecordHeader::new("empty", Some(Bytes::new())),
            ],
        });
    }
    recs.push(Record {
        offset: 20,
        timestamp: 1_700_000_000_100,
        key: None,
        value: Some(Bytes::from_static(b"null key")),
        headers: vec![],
    });
    recs.push(Record {
        offset: 21,
        timestamp: 1_700_000_000_101,
        key: Some(Bytes::from_static(b"tombstone")),
        value: None,
        headers: vec![RecordHeader::new("null", None)],
    });
    let hex = |b: &Option<Bytes>| match b {
        None => "-".to_string(),
        Some(b) if b.is_empty() => "=".to_string(),
        Some(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    };
    let mut expected = String::new();
    for r in &recs {
        let headers = if r.headers.is_empty() {
            "-".to_string()
        } else {
            r.headers
                .iter()
                .map(|h| {
                    format!(
                        "{}:{}",
                        hex(&Some(Bytes::copy_from_slice(h.key.as_bytes()))),
                        hex(&h.value)
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        expected.push_str(&format!(
            "{} {} {} {} {}\n",
            r.offset,
            r.timestamp,
            hex(&r.key),
            hex(&r.value),
            headers
        ));
    }
    for codec in Compression::ALL {
        let bytes = build(codec, 0, &recs);
        assert_eq!(decode_all(bytes.clone()), recs);
        std::fs::write(dir.join(format!("krust-{codec}.bin")), &bytes).unwrap();
        std::fs::write(dir.join(format!("krust-{codec}.expected")), &expected).unwrap();
    }
}

#[test]
fn librdkafka_legacy_fixtures_decode() {
    // Message sets librdkafka wrote for a Kafka 0.9 (magic 0) and 0.10 (magic 1) broker; see
    // scripts/interop/capture_legacy.py. Offsets are as the producer wrote them.
    for magic in [0, 1] {
        for codec in ["none", "gzip", "snappy", "lz4"] {
            let name = format!("librdkafka-legacy-v{magic}-{codec}");
            let data = Bytes::from(fixture(&format!("{name}.bin")));
            let want =
                expected_records(&String::from_utf8(fixture(&format!("{name}.expected"))).unwrap());
            let mut got = Vec::new();
            let mut it = batches(data);
            for batch in it.by_ref() {
                let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(batch.header().magic, magic, "{name}");
                got.extend(batch.inflate().unwrap().into_records().unwrap());
            }
            assert_eq!(it.truncated_tail(), 0, "{name}");
            assert_eq!(got, want, "{name}");
        }
    }
}

/// Decodes every batch of `data`, verifying CRCs or not.
fn decode_checked(data: Bytes, check_crcs: bool) -> Result<Vec<Record>, krust_wire::Error> {
    let mut out = Vec::new();
    for batch in batches(data).check_crcs(check_crcs) {
        out.extend(batch?.inflate()?.into_records()?);
    }
    Ok(out)
}

#[test]
fn check_crcs_false_accepts_a_batch_whose_crc_is_wrong() {
    // A v2 batch (compressed) whose stored CRC-32C is wrong, and legacy messages (plain, and a
    // compressed wrapper) whose stored CRC-32 is wrong: rejected by default, decoded with the
    // check off.
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            offset: i,
            timestamp: 1_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Vec::new(),
        })
        .collect();
    let v2 = build(Compression::Lz4, 0, &records);
    let legacy_none = Bytes::from(fixture("librdkafka-legacy-v1-none.bin"));
    let legacy_gzip = Bytes::from(fixture("librdkafka-legacy-v0-gzip.bin"));
    // Stored CRC: bytes 17..21 of a v2 batch; 12..16 of a legacy message (after offset, size).
    for (name, good, crc_at) in [
        ("v2 lz4", v2, 17),
        ("legacy v1 none", legacy_none, 12),
        ("legacy v0 gzip", legacy_gzip, 12),
    ] {
        let want = decode_checked(good.clone(), true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!want.is_empty(), "{name}");
        let mut bad = good.to_vec();
        bad[crc_at] ^= 0x5a;
        let bad = Bytes::from(bad);
        let err = decode_checked(bad.clone(), true).expect_err(name);
        assert!(
            matches!(err, krust_wire::Error::CorruptBatch { .. }),
            "{name}: {err}"
        );
        assert_eq!(
            decode_checked(bad, false).unwrap_or_else(|e| panic!("{name}: {e}")),
            want,
            "{name}"
        );
    }
}
