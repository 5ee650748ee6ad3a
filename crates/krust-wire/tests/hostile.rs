//! Hostile and corrupt record sets: every one must give an error (or, for a partial trailing
//! batch, be ignored), never a panic or a huge allocation.

use bytes::Bytes;
use krust_wire::compression::{self, Compression, DecompressLimits};
use krust_wire::record::varint::{put_varint, put_varlong};
use krust_wire::record::{batches, BatchBuilder, DeflatedBatch, Record, RecordHeader};
use krust_wire::Error;

fn sample(codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_base_offset(100);
    for i in 0..5 {
        b.push(
            1_700_000_000_000 + i,
            Some(format!("key-{i}").as_bytes()),
            Some(format!("value-{i}-{}", "x".repeat(i as usize * 10)).as_bytes()),
            &[RecordHeader::new("h", Some(Bytes::from_static(b"v")))],
        )
        .unwrap();
    }
    b.finish(7, 1, 0, false).unwrap()
}

/// Decodes everything in a record set; the first error, if any.
fn decode(bytes: Bytes) -> Result<Vec<Record>, Error> {
    let mut out = Vec::new();
    for batch in batches(bytes) {
        out.extend(batch?.inflate()?.into_records()?);
    }
    Ok(out)
}

/// A v2 batch around arbitrary record bytes, with a correct length and CRC.
fn reframe(records: &[u8], count: i32, attributes: i16) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&count.wrapping_sub(1).to_be_bytes());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

fn records_section(codec: Compression) -> Vec<u8> {
    let batch = DeflatedBatch::decode(sample(codec)).unwrap();
    batch.inflate().unwrap().records_bytes().to_vec()
}

#[test]
fn sample_is_valid() {
    for codec in Compression::ALL {
        assert_eq!(decode(sample(codec)).unwrap().len(), 5);
        assert_eq!(
            decode(reframe(&records_section(codec), 5, 0))
                .unwrap()
                .len(),
            5
        );
    }
}

#[test]
fn truncated_at_every_byte() {
    for codec in Compression::ALL {
        let full = sample(codec);
        for n in 0..full.len() {
            let cut = full.slice(..n);
            // As the tail of a fetch it is a partial batch: ignored, not decoded.
            let mut it = batches(cut.clone());
            assert!(it.next().is_none(), "{codec} cut at {n}");
            assert_eq!(it.truncated_tail(), n);
            // As a complete batch it is an error.
            assert!(DeflatedBatch::decode(cut).is_err(), "{codec} cut at {n}");
        }
        // Truncated inside the (decompressed) records, with length and CRC made consistent.
        let section = records_section(codec);
        for n in 0..section.len() {
            let compressed = compression::compress(codec, &section[..n]).unwrap();
            let batch = reframe(&compressed, 5, codec.code());
            assert!(decode(batch).is_err(), "{codec} records cut at {n}");
        }
    }
}

#[test]
fn every_flipped_bit_fails_the_crc() {
    for codec in Compression::ALL {
        let full = sample(codec);
        for byte in 17..full.len() {
            for bit in 0..8 {
                let mut bad = full.to_vec();
                bad[byte] ^= 1 << bit;
                match DeflatedBatch::decode(Bytes::from(bad)) {
                    Err(Error::CorruptBatch { .. }) => {}
                    other => panic!("{codec} byte {byte} bit {bit}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn negative_and_huge_lengths_and_counts() {
    let good = sample(Compression::None).to_vec();
    // Batch length negative, and huge (the latter is a partial tail: never allocated).
    for len in [-1i32, -100, i32::MIN] {
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(decode(Bytes::from(bad)).is_err(), "length {len}");
    }
    let mut huge = good.clone();
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode(Bytes::from(huge.clone())).unwrap().is_empty());
    assert!(DeflatedBatch::decode(Bytes::from(huge)).is_err());
    // A length too small for a header.
    for len in [0i32, 4, 5, 30, 48] {
        let mut bad = good[..12].to_vec();
        bad[8..12].copy_from_slice(&len.to_be_bytes());
        bad.extend(std::iter::repeat_n(2u8, len as usize));
        assert!(decode(Bytes::from(bad)).is_err(), "length {len}");
    }
    // Record counts: negative, too many for the bytes, more than present, fewer than present.
    let section = records_section(Compression::None);
    for count in [-1, i32::MIN, i32::MAX, 1 << 20, 6, 4] {
        assert!(
            decode(reframe(&section, count, 0)).is_err(),
            "count {count}"
        );
    }
    for codec in [Compression::Gzip, Compression::Zstd] {
        let c = compression::compress(codec, &section).unwrap();
        for count in [-1, i32::MAX, 6, 4] {
            assert!(
                decode(reframe(&c, count, codec.code())).is_err(),
                "{codec} count {count}"
            );
        }
    }
}

/// One record body with the given raw fields, prefixed by its length.
fn record(fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, fields.len() as i32);
    out.extend_from_slice(fields);
    out
}

fn fields(key_len: i32, key: &[u8], header_count: i32, tail: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8];
    put_varlong(&mut f, 0);
    put_varint(&mut f, 0);
    put_varint(&mut f, key_len);
    f.extend_from_slice(key);
    put_varint(&mut f, -1); // null value
    put_varint(&mut f, header_count);
    f.extend_from_slice(tail);
    f
}

#[test]
fn hostile_records() {
    let ok = record(&fields(1, b"k", 0, &[]));
    assert_eq!(decode(reframe(&ok, 1, 0)).unwrap().len(), 1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative key length", record(&fields(-2, b"", 0, &[]))),
        ("huge key length", record(&fields(i32::MAX, b"k", 0, &[]))),
        ("key past the record", record(&fields(5, b"k", 0, &[]))),
        ("negative header count", record(&fields(1, b"k", -1, &[]))),
        ("huge header count", record(&fields(1, b"k", i32::MAX, &[]))),
        (
            "header count past the record",
            record(&fields(1, b"k", 3, &[2, 0])),
        ),
        ("null header key", record(&fields(1, b"k", 1, &[1, 0]))),
        (
            "non-UTF-8 header key",
            record(&fields(1, b"k", 1, &[2, 0xff, 1])),
        ),
        (
            "trailing bytes in record",
            record(&fields(1, b"k", 0, &[0, 0])),
        ),
        ("negative record length", {
            let mut r = Vec::new();
            put_varint(&mut r, -5);
            r.extend_from_slice(&fields(1, b"k", 0, &[]));
            r
        }),
        ("record length past the batch", {
            let mut r = Vec::new();
            put_varint(&mut r, 1000);
            r.extend_from_slice(&fields(1, b"k", 0, &[]));
            r
        }),
        ("over-long varint length", {
            let mut r = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
            r.extend_from_slice(&fields(1, b"k", 0, &[]));
            r
        }),
        ("overflowing varint length", {
            let mut r = vec![0xff, 0xff, 0xff, 0xff, 0x7f];
            r.extend_from_slice(&fields(1, b"k", 0, &[]));
            r
        }),
        ("over-long varlong timestamp", {
            let mut f = vec![0u8];
            f.extend_from_slice(&[0x80; 10]);
            f.push(0);
            f.extend_from_slice(&[0, 1, 1, 0]);
            record(&f)
        }),
        ("trailing bytes after the records", {
            let mut r = ok.clone();
            r.extend_from_slice(&[0, 0, 0]);
            r
        }),
        ("timestamp overflow", {
            let mut f = vec![0u8];
            put_varlong(&mut f, i64::MAX);
            f.extend_from_slice(&[0, 1, 1, 0]);
            record(&f)
        }),
    ];
    for (what, records) in cases {
        // Base timestamp i64::MAX - 1 would make the overflow case overflow; 0 makes it fine,
        // so use a batch whose base timestamp is large for that case.
        let mut batch = reframe(&records, 1, 0).to_vec();
        if what == "timestamp overflow" {
            batch[27..35].copy_from_slice(&i64::MAX.to_be_bytes());
            let crc = crc32c::crc32c(&batch[21..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        assert!(decode(Bytes::from(batch)).is_err(), "{what} was accepted");
    }
}

#[test]
fn unknown_magic_and_codec() {
    let mut bad = sample(Compression::None).to_vec();
    bad[16] = 3;
    assert!(decode(Bytes::from(bad)).is_err());
    for codec in 5..8 {
        let section = records_section(Compression::None);
        assert!(
            decode(reframe(&section, 5, codec)).is_err(),
            "codec {codec}"
        );
    }
    // Compressed attribute on bytes that are not compressed.
    let section = records_section(Compression::None);
    for codec in 1..5 {
        assert!(
            decode(reframe(&section, 5, codec)).is_err(),
            "codec {codec}"
        );
    }
}

#[test]
fn decompression_bombs_in_batches() {
    // 16 MiB of 7-byte empty records (each: length 6, attrs, ts, offset, key -1, value -1, 0).
    let one = [12u8, 0, 0, 0, 1, 1, 0];
    let n = (16 << 20) / one.len();
    let mut section = Vec::with_capacity(n * one.len());
    for _ in 0..n {
        section.extend_from_slice(&one);
    }
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bomb = compression::compress(codec, &section).unwrap();
        let batch = reframe(&bomb, n as i32, codec.code());
        let parsed = DeflatedBatch::decode(batch).unwrap();
        let err = parsed
            .inflate_with(&DecompressLimits::with_max_output(1 << 20))
            .unwrap_err();
        assert!(matches!(err, Error::Compression { .. }), "{codec}: {err}");
        // The default limits' ratio guard stops every codec that can reach that ratio.
        let _ = parsed.inflate();
    }
}

// ---- legacy message sets (magic 0 and 1) ----

fn legacy(
    offset: i64,
    magic: i8,
    attributes: i8,
    ts: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut m = Vec::new();
    m.push(magic as u8);
    m.push(attributes as u8);
    if magic == 1 {
        m.extend_from_slice(&ts.to_be_bytes());
    }
    for f in [key, value] {
        match f {
            None => m.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                m.extend_from_slice(&(b.len() as i32).to_be_bytes());
                m.extend_from_slice(b);
            }
        }
    }
    let crc = crc32fast::hash(&m);
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&((m.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&m);
    out
}

#[test]
fn legacy_messages_decode() {
    // Plain v0 and v1 messages.
    let mut set = legacy(5, 0, 0, 0, Some(b"k0"), Some(b"v0"));
    set.extend(legacy(6, 1, 0, 1234, None, Some(b"v1")));
    let recs = decode(Bytes::from(set)).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].offset, recs[0].timestamp), (5, -1));
    assert_eq!(recs[0].key.as_deref(), Some(&b"k0"[..]));
    assert_eq!((recs[1].offset, recs[1].timestamp), (6, 1234));
    assert_eq!(recs[1].key, None);

    // v1 compressed wrappers: inner offsets relative, wrapper offset = last inner offset.
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
        let mut inner = Vec::new();
        for i in 0..3 {
            inner.extend(legacy(
                i,
                1,
                0,
                100 + i,
                Some(b"k"),
                Some(format!("v{i}").as_bytes()),
            ));
        }
        let mut compressed = compression::compress(codec, &inner).unwrap();
        if codec == Compression::Lz4 {
            compression::lz4::break_header_checksum(&mut compressed).unwrap();
        }
        let wrapper = legacy(42, 1, codec.code() as i8, 999, None, Some(&compressed));
        let batch = batches(Bytes::from(wrapper)).next().unwrap().unwrap();
        assert_eq!(batch.header().magic, 1);
        assert_eq!(batch.header().record_count, -1);
        assert_eq!(batch.next_offset(), 43);
        let recs = batch.inflate().unwrap().into_records().unwrap();
        let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![40, 41, 42], "{codec}");
        assert_eq!(recs[2].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(recs[1].timestamp, 101);
        // Log-append time on the wrapper overrides inner timestamps.
        let wrapper = legacy(
            42,
            1,
            codec.code() as i8 | 0x08,
            999,
            None,
            Some(&compressed),
        );
        let recs = decode(Bytes::from(wrapper)).unwrap();
        assert!(recs.iter().all(|r| r.timestamp == 999));
    }

    // v0 compressed wrapper: inner offsets absolute.
    let mut inner = legacy(10, 0, 0, 0, None, Some(b"a"));
    inner.extend(legacy(11, 0, 0, 0, None, Some(b"b")));
    let wrapper = legacy(
        11,
        0,
        1,
        0,
        None,
        Some(&compression::compress(Compression::Gzip, &inner).unwrap()),
    );
    let recs = decode(Bytes::from(wrapper)).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![10, 11]
    );
}

#[test]
fn hostile_legacy_messages() {
    let good = legacy(1, 1, 0, 5, Some(b"key"), Some(b"value"));
    assert!(decode(Bytes::from(good.clone())).is_ok());
    for n in 0..good.len() {
        assert!(DeflatedBatch::decode(Bytes::from(good[..n].to_vec())).is_err());
    }
    for byte in 12..good.len() {
        let mut bad = good.clone();
        bad[byte] ^= 0x10;
        assert!(decode(Bytes::from(bad)).is_err(), "flip at {byte}");
    }
    // Lengths and codecs that do not fit, with the CRC made right.
    let cases = [
        legacy(1, 1, 4, 0, None, Some(b"zstd is not legacy")),
        legacy(1, 1, 1, 0, None, None),
        legacy(1, 1, 1, 0, None, Some(b"not gzip")),
        legacy(
            1,
            1,
            1,
            0,
            None,
            Some(&compression::compress(Compression::Gzip, b"").unwrap()),
        ),
        legacy(
            1,
            1,
            1,
            0,
            None,
            Some(&compression::compress(Compression::Gzip, &[0; 11]).unwrap()),
        ),
        {
            // Nested compression.
            let inner = legacy(0, 1, 1, 0, None, Some(b"x"));
            legacy(
                1,
                1,
                1,
                0,
                None,
                Some(&compression::compress(Compression::Gzip, &inner).unwrap()),
            )
        },
        {
            // Inner message with a negative size.
            let mut inner = legacy(0, 1, 0, 0, None, Some(b"x"));
            inner[8..12].copy_from_slice(&(-3i32).to_be_bytes());
            legacy(
                1,
                1,
                1,
                0,
                None,
                Some(&compression::compress(Compression::Gzip, &inner).unwrap()),
            )
        },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        assert!(decode(Bytes::from(c)).is_err(), "case {i}");
    }
    // Key length fields that lie.
    for len in [-2i32, i32::MAX, 100] {
        let mut m = vec![1u8, 0];
        m.extend_from_slice(&0i64.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32fast::hash(&m);
        let mut out = 0i64.to_be_bytes().to_vec();
        out.extend_from_slice(&((m.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&m);
        assert!(decode(Bytes::from(out)).is_err(), "key length {len}");
    }
}
