//! Entry points for krust-wire's fuzz targets.
//!
//! Shared, file for file, by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and by
//! `crates/krust-wire/tests/corpus.rs`, which replays every corpus and regression input through
//! these functions in an ordinary `cargo test`. Every function must return normally for any
//! input: a panic is a finding. Decompression is capped at [`MAX_OUTPUT`] so that memory per
//! input stays bounded (libFuzzer runs with `-malloc_limit_mb=256`).

use bytes::{Bytes, BytesMut};
use krust_wire::compression::{self, Compression, DecompressLimits};
use krust_wire::frame::FrameReader;
use krust_wire::record::{batches, BatchBuilder, DeflatedBatch, RecordHeader};
use krust_wire::ApiKey;

/// Decompressed bytes allowed per batch or codec call.
pub const MAX_OUTPUT: usize = 4 << 20;

fn limits() -> DecompressLimits {
    DecompressLimits::with_max_output(MAX_OUTPUT)
}

/// The frame reader, whole (`read_all`) and incrementally (`try_read` over chunks).
pub fn frame_reader(data: &[u8]) {
    let reader = FrameReader::new(1 << 20);
    let _ = reader.read_all(data);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(7) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.try_read(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Response decoders: byte 0 is the API key, byte 1 the version, the rest the body (after the
/// response header). Unknown API keys are ignored.
pub fn responses(data: &[u8]) {
    let [key, version, body @ ..] = data else {
        return;
    };
    let Some(api) = ApiKey::from_key(i16::from(*key)) else {
        return;
    };
    let _ =
        krust_wire::responses::decode_any(api, i16::from(*version), Bytes::copy_from_slice(body));
}

/// The record batch decoder: split a record set, inflate every batch, decode every record.
///
/// Byte 0 picks a mode, the rest is the record set. With an even mode byte the CRC of every
/// batch (CRC32C for v2, CRC32 for legacy messages) is recomputed first, so that mutations reach
/// the header, decompression and record decoding instead of stopping at the checksum; with an
/// odd one the bytes are decoded as they are.
pub fn record_batch(data: &[u8]) {
    let Some((&mode, set)) = data.split_first() else {
        return;
    };
    let mut set = set.to_vec();
    if mode & 1 == 0 {
        fix_crcs(&mut set);
    }
    let bytes = Bytes::from(set);
    for batch in batches(bytes.clone()) {
        let Ok(batch) = batch else { break };
        let h = batch.header();
        let _ = (
            h.next_offset(),
            h.timestamp_type(),
            h.is_control(),
            h.size(),
        );
        if let Ok(inflated) = batch.inflate_with(&limits()) {
            let _ = inflated.control();
            for record in inflated.records() {
                if record.is_err() {
                    break;
                }
            }
        }
    }
    let _ = DeflatedBatch::decode(bytes);
}

/// Rewrites the checksum of every complete batch or legacy message in a record set.
pub fn fix_crcs(set: &mut [u8]) {
    let mut pos = 0;
    while set.len() - pos >= 17 {
        let b = &set[pos..];
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        if len > b.len() - 12 {
            return;
        }
        let end = pos + 12 + len;
        match set[pos + 16] {
            2 if len >= 9 => {
                let crc = crc32c::crc32c(&set[pos + 21..end]);
                set[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
            }
            0 | 1 if len >= 4 => {
                let crc = crc32fast::hash(&set[pos + 16..end]);
                set[pos + 12..pos + 16].copy_from_slice(&crc.to_be_bytes());
            }
            _ => {}
        }
        pos = end;
    }
}

/// One codec's decompressor.
pub fn codec(codec: Compression, data: &[u8]) {
    let _ = compression::decompress(codec, data, &limits());
}

/// Encoders: byte 0 picks a codec; the rest is compressed and must decompress to itself, and
/// is also cut into records of a batch that must decode to the same records.
pub fn roundtrip(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let codec = Compression::ALL[usize::from(sel) % Compression::ALL.len()];
    let packed = compression::compress(codec, rest).expect("compress");
    let unpacked = compression::decompress(codec, &packed, &limits()).expect("decompress");
    assert_eq!(unpacked, rest, "{codec} round trip");

    let mut b = BatchBuilder::new(codec).with_base_offset(i64::from(sel));
    let parts: Vec<&[u8]> = rest.chunks(usize::from(sel % 16) + 1).collect();
    for (i, part) in parts.iter().enumerate() {
        let headers = [RecordHeader::new("h", Some(Bytes::copy_from_slice(part)))];
        let key = (i % 2 == 0).then_some(*part);
        b.push(i as i64 * 1000 - 5, key, Some(part), &headers)
            .expect("push");
    }
    if parts.is_empty() {
        return;
    }
    let batch = b.finish(1, 2, 3, sel & 1 == 0).expect("finish");
    let decoded = DeflatedBatch::decode(batch)
        .expect("decode")
        .inflate_with(&limits())
        .expect("inflate")
        .into_records()
        .expect("records");
    assert_eq!(decoded.len(), parts.len());
    for (i, (r, part)) in decoded.iter().zip(&parts).enumerate() {
        assert_eq!(r.value.as_deref(), Some(*part));
        assert_eq!(r.offset, i64::from(sel) + i as i64);
        assert_eq!(r.timestamp, i as i64 * 1000 - 5);
    }
}
