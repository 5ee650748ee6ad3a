//! Record batch (magic v2) headers as the fake broker sees them.
//!
//! The fake stores batches exactly as producers sent them, only rewriting the two fields the
//! broker owns (base offset and partition leader epoch, both outside the CRC). Validation (CRC,
//! lengths), decompression and control batches come from `krust_wire::record`; this module
//! splits a produce payload into batches, reads the header fields the broker acts on, and
//! offers small helpers to build and read uncompressed batches in tests.

use bytes::{BufMut, Bytes, BytesMut};
use krust_wire::record::{encode_control_batch, ControlRecord, ControlRecordType, DeflatedBatch};

/// Size of the v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Attribute bit: timestamps are the broker's log-append time.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch holds a control record (a transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Shorter than its header or its declared length.
    Truncated,
    /// Not magic 2.
    BadMagic(i8),
    /// The CRC-32C does not match.
    BadCrc,
    /// A field is out of range (negative count, ...).
    Invalid(&'static str),
}

/// The header fields of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (as sent; the broker overwrites it).
    pub base_offset: i64,
    /// Attributes (compression in bits 0..3, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch is a control batch.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
    /// Sequence of the last record, wrapping past `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.record_count) - 1;
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Splits a produce payload into its batches, validating each header and CRC.
pub fn split_batches(data: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let batch_len = i32_at(rest, 8);
        if batch_len < (HEADER_LEN - 12) as i32 {
            return Err(BatchError::Invalid("batch length"));
        }
        let total = 12 + batch_len as usize;
        if rest.len() < total {
            return Err(BatchError::Truncated);
        }
        let bytes = data.slice(at..at + total);
        out.push((parse_header(&bytes)?, bytes));
        at += total;
    }
    if out.is_empty() {
        return Err(BatchError::Invalid("no batch"));
    }
    Ok(out)
}

/// Parses and validates one complete batch (header fields, lengths and CRC, the latter checked
/// by `krust_wire::record::DeflatedBatch`).
pub fn parse_header(b: &Bytes) -> Result<BatchHeader, BatchError> {
    if b.len() < HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let magic = b[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    if DeflatedBatch::decode(b.clone()).is_err() {
        let crc = u32::from_be_bytes(b[17..21].try_into().expect("4 bytes"));
        return Err(if crc32c::crc32c(&b[21..]) != crc {
            BatchError::BadCrc
        } else {
            BatchError::Invalid("batch rejected by the record decoder")
        });
    }
    let h = BatchHeader {
        base_offset: i64_at(b, 0),
        attributes: i16_at(b, 21),
        last_offset_delta: i32_at(b, 23),
        base_timestamp: i64_at(b, 27),
        max_timestamp: i64_at(b, 35),
        producer_id: i64_at(b, 43),
        producer_epoch: i16_at(b, 51),
        base_sequence: i32_at(b, 53),
        record_count: i32_at(b, 57),
    };
    if h.record_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchError::Invalid("negative record count or offset delta"));
    }
    Ok(h)
}

/// Rewrites the broker-owned fields (base offset, partition leader epoch) of a stored batch.
/// Both lie before the CRC'd region, so the CRC stays valid.
pub fn restamp(batch: &Bytes, base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    b.freeze()
}

/// Turns a batch into a LogAppendTime batch stamped `now_ms` (attribute bit 3, max timestamp),
/// recomputing the CRC, as a broker does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &Bytes, now_ms: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    let attrs = i16::from_be_bytes([b[21], b[22]]) | ATTR_LOG_APPEND_TIME;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    b[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn read_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// `(offset delta, timestamp)` of each record of a batch (decompressing it if needed); `None`
/// for malformed records (callers then fall back to the batch-level timestamps).
pub fn record_timestamps(batch: &Bytes, h: &BatchHeader) -> Option<Vec<(i32, i64)>> {
    if h.attributes & ATTR_LOG_APPEND_TIME != 0 {
        return Some(
            (0..=h.last_offset_delta)
                .map(|d| (d, h.max_timestamp))
                .collect(),
        );
    }
    if h.compression() != 0 {
        let inflated = DeflatedBatch::decode(batch.clone()).ok()?.inflate().ok()?;
        let base = inflated.header().base_offset;
        return inflated
            .records()
            .map(|r| r.ok().map(|r| ((r.offset - base) as i32, r.timestamp)))
            .collect();
    }
    let mut out = Vec::with_capacity(h.record_count.clamp(0, 100_000) as usize);
    let mut at = HEADER_LEN;
    while at < batch.len() {
        let len = read_varint(batch, &mut at)?;
        let start = at;
        let _attributes = batch.get(at)?;
        at += 1;
        let ts_delta = read_varint(batch, &mut at)?;
        let off_delta = read_varint(batch, &mut at)?;
        out.push((off_delta as i32, h.base_timestamp.wrapping_add(ts_delta)));
        at = start.checked_add(usize::try_from(len).ok()?)?;
    }
    Some(out)
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Builds a control batch holding one transaction marker (`commit` or abort) for a producer.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    let marker = ControlRecord {
        version: 0,
        kind: if commit {
            ControlRecordType::Commit
        } else {
            ControlRecordType::Abort
        },
        coordinator_epoch: Some(coordinator_epoch),
    };
    encode_control_batch(0, timestamp, producer_id, producer_epoch, marker)
        .expect("a one-record control batch always encodes")
}

/// Builds an uncompressed data batch of `values` (no keys, no headers); used by the raw test
/// client and by examples. `producer_id` -1 makes a non-idempotent batch.
pub fn data_batch(
    values: &[&[u8]],
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
) -> Bytes {
    let mut records = BytesMut::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = BytesMut::new();
        r.put_u8(0);
        put_varint(&mut r, 0);
        put_varint(&mut r, i as i64);
        put_varint(&mut r, -1); // null key
        put_varint(&mut r, v.len() as i64);
        r.put_slice(v);
        put_varint(&mut r, 0);
        put_varint(&mut records, r.len() as i64);
        records.put_slice(&r);
    }
    let mut body = BytesMut::new();
    body.put_i16(if transactional { ATTR_TRANSACTIONAL } else { 0 });
    body.put_i32(values.len() as i32 - 1);
    body.put_i64(timestamp);
    body.put_i64(timestamp);
    body.put_i64(producer_id);
    body.put_i16(producer_epoch);
    body.put_i32(base_sequence);
    body.put_i32(values.len() as i32);
    body.put_slice(&records);
    let mut out = BytesMut::with_capacity(21 + body.len());
    out.put_i64(0);
    out.put_i32((body.len() + 9) as i32);
    out.put_i32(-1);
    out.put_i8(2);
    out.put_u32(crc32c::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

/// One record read back by [`read_values`]: its offset and value.
pub type ReadRecord = (i64, Option<Bytes>);

/// Reads `(offset, value)` of every data record in a fetch payload (any codec), skipping
/// control batches. Meant for tests over the raw protocol.
pub fn read_values(data: &Bytes) -> Result<Vec<ReadRecord>, BatchError> {
    let mut out = Vec::new();
    if data.is_empty() {
        return Ok(out);
    }
    for (h, b) in split_batches(data)? {
        if h.is_control() {
            continue;
        }
        let inflated = DeflatedBatch::decode(b)
            .and_then(|d| d.inflate())
            .map_err(|_| BatchError::Invalid("cannot inflate batch"))?;
        for r in inflated.records() {
            let r = r.map_err(|_| BatchError::Invalid("bad record"))?;
            out.push((r.offset, r.value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_batch_round_trips() {
        let b = data_batch(&[b"a", b"bc"], 1000, 7, 1, 5, true);
        let hs = split_batches(&b).unwrap();
        assert_eq!(hs.len(), 1);
        let h = hs[0].0;
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 1, 5)
        );
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_sequence(), 6);
        assert!(h.is_transactional());
        let re = restamp(&b, 42, 3);
        assert_eq!(parse_header(&re).unwrap().base_offset, 42);
        let vals = read_values(&re).unwrap();
        assert_eq!(vals[1], (43, Some(Bytes::from_static(b"bc"))));
        assert_eq!(
            record_timestamps(&b, &h).unwrap(),
            vec![(0, 1000), (1, 1000)]
        );
    }

    #[test]
    fn control_batch_is_valid_and_crc_checked() {
        let b = control_batch(9, 2, true, 0, 5);
        let (h, _) = split_batches(&b).unwrap()[0].clone();
        assert!(h.is_control() && h.is_transactional());
        let mut bad = BytesMut::from(&b[..]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            split_batches(&bad.freeze()).unwrap_err(),
            BatchError::BadCrc
        );
    }

    #[test]
    fn sequence_wraps() {
        let h = BatchHeader {
            base_offset: 0,
            attributes: 0,
            last_offset_delta: 2,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            record_count: 3,
        };
        assert_eq!(h.last_sequence(), 0);
    }
}
