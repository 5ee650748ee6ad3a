//! Reading v2 record batches (and dispatching legacy message sets to [`super::legacy`]).

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;

use super::layout::*;
use super::varint::{get_varint, get_varlong};
use super::{
    legacy, BatchHeader, ControlRecord, ControlRecordType, Record, RecordHeader, TimestampType,
    BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use crate::compression::{self, Compression, DecompressLimits};
use crate::error::{Error, Result};

/// Smallest possible encoded record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

/// Iterates the batches of a Fetch response's `records` bytes. See [`Batches`].
pub fn batches(records: Bytes) -> Batches {
    Batches {
        buf: records,
        pos: 0,
        done: false,
        truncated_tail: 0,
        check_crcs: true,
    }
}

/// Iterator over the [`DeflatedBatch`]es (v2 batches or legacy messages) in a record set.
///
/// A broker may end a fetch response with a partial batch when it hits a size limit: those
/// bytes are not an error; iteration just stops, and [`truncated_tail`](Batches::truncated_tail)
/// says how many bytes were left over (a consumer that got *only* a partial batch must fetch
/// with a larger size). Each yielded batch's CRC has been verified, unless
/// [`check_crcs(false)`](Batches::check_crcs) said not to. After an error the iterator ends.
#[derive(Debug, Clone)]
pub struct Batches {
    buf: Bytes,
    pos: usize,
    done: bool,
    truncated_tail: usize,
    check_crcs: bool,
}

impl Batches {
    /// Whether each batch's CRC (CRC-32C for v2 batches, CRC-32 for legacy messages, inner
    /// messages of a compressed wrapper included) is verified: Kafka's `check.crcs`, default
    /// true. With `false` a corrupted batch is not detected by its checksum; it is still
    /// decoded only by the bounded decoders, and decompression stays within its limits.
    pub fn check_crcs(mut self, check: bool) -> Batches {
        self.check_crcs = check;
        self
    }

    /// Bytes of a partial batch at the end of the record set, ignored (0 until iteration has
    /// reached the end).
    pub fn truncated_tail(&self) -> usize {
        self.truncated_tail
    }

    /// Byte position of the next batch within the record set.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Batches {
    type Item = Result<DeflatedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.buf.len() - self.pos;
        if rest < LOG_OVERHEAD {
            self.truncated_tail = rest;
            self.done = true;
            return None;
        }
        let at = self.pos;
        let b = &self.buf[at..];
        let length = i32::from_be_bytes([b[LENGTH], b[LENGTH + 1], b[LENGTH + 2], b[LENGTH + 3]]);
        let Ok(length) = usize::try_from(length) else {
            self.done = true;
            return Some(Err(Error::malformed(
                "record batch",
                at + LENGTH,
                format!("negative batch length {length}"),
            )));
        };
        if length > rest - LOG_OVERHEAD {
            self.truncated_tail = rest;
            self.done = true;
            return None;
        }
        let raw = self.buf.slice(at..at + LOG_OVERHEAD + length);
        self.pos += LOG_OVERHEAD + length;
        match DeflatedBatch::parse(raw, at, self.check_crcs) {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A batch in wire form: header fields decoded and CRC verified, records still encoded (and
/// maybe compressed). Cheap to clone (the bytes are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflatedBatch {
    header: BatchHeader,
    raw: Bytes,
    /// Whether CRCs are verified (legacy inner messages are checked when inflating).
    check_crcs: bool,
}

impl DeflatedBatch {
    /// Decodes exactly one batch (or legacy message) from `raw`, verifying its CRC.
    pub fn decode(raw: Bytes) -> Result<DeflatedBatch> {
        if raw.len() < LOG_OVERHEAD {
            return Err(Error::Truncated {
                what: "record batch",
                offset: 0,
                needed: LOG_OVERHEAD,
                remaining: raw.len(),
            });
        }
        let length = i32::from_be_bytes([
            raw[LENGTH],
            raw[LENGTH + 1],
            raw[LENGTH + 2],
            raw[LENGTH + 3],
        ]);
        if usize::try_from(length).ok() != Some(raw.len() - LOG_OVERHEAD) {
            return Err(Error::malformed(
                "record batch",
                LENGTH,
                format!(
                    "length field {length} disagrees with the {} bytes given",
                    raw.len() - LOG_OVERHEAD
                ),
            ));
        }
        DeflatedBatch::parse(raw, 0, true)
    }

    /// `raw` is a whole batch whose length field is known to match; `at` is its position in the
    /// record set, for error messages; `check_crcs` whether its CRC is verified.
    fn parse(raw: Bytes, at: usize, check_crcs: bool) -> Result<DeflatedBatch> {
        if raw.len() <= MAGIC {
            return Err(Error::malformed(
                "record batch",
                at,
                format!("batch of {} bytes has no magic byte", raw.len()),
            ));
        }
        let header = match raw[MAGIC] {
            2 => parse_v2_header(&raw, at, check_crcs)?,
            0 | 1 => legacy::parse_header(&raw, at, check_crcs)?,
            m => {
                return Err(Error::malformed(
                    "record batch",
                    at + MAGIC,
                    format!("unknown magic byte {m}"),
                ))
            }
        };
        Ok(DeflatedBatch {
            header,
            raw,
            check_crcs,
        })
    }

    /// The header fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch as it was on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the batch, returning its wire bytes.
    pub fn into_bytes(self) -> Bytes {
        self.raw
    }

    /// Shorthand for `header().base_offset`.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// Shorthand for `header().last_offset()`.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Shorthand for `header().next_offset()`.
    pub fn next_offset(&self) -> i64 {
        self.header.next_offset()
    }

    /// Shorthand for `header().compression`.
    pub fn compression(&self) -> Compression {
        self.header.compression
    }

    /// Shorthand for `header().is_control()`.
    pub fn is_control(&self) -> bool {
        self.header.is_control()
    }

    /// Shorthand for `header().is_transactional()`.
    pub fn is_transactional(&self) -> bool {
        self.header.is_transactional()
    }

    /// Decompresses (within the default [`DecompressLimits`]) and prepares the records.
    pub fn inflate(&self) -> Result<InflatedBatch> {
        self.inflate_with(&DecompressLimits::default())
    }

    /// Decompresses within `limits` and prepares the records. Records are decoded lazily by
    /// [`InflatedBatch::records`]; a control batch's marker is decoded here.
    pub fn inflate_with(&self, limits: &DecompressLimits) -> Result<InflatedBatch> {
        let h = self.header;
        if h.magic < 2 {
            let records = legacy::inflate(&self.raw, &h, limits, self.check_crcs)?;
            return Ok(InflatedBatch {
                header: h,
                data: Bytes::new(),
                legacy: Some(records),
                control: None,
            });
        }
        let section = self.raw.slice(RECORDS..);
        let data = if h.compression == Compression::None {
            section
        } else {
            Bytes::from(compression::decompress(h.compression, &section, limits)?)
        };
        let count = usize::try_from(h.record_count).unwrap_or(0);
        if count > data.len() / MIN_RECORD_LEN {
            return Err(Error::malformed(
                "record batch",
                RECORD_COUNT,
                format!(
                    "{count} records cannot fit in {} bytes of records",
                    data.len()
                ),
            ));
        }
        let mut out = InflatedBatch {
            header: h,
            data,
            legacy: None,
            control: None,
        };
        if h.is_control() {
            if let Some(first) = out.records().next() {
                out.control = Some(parse_control(&first?)?);
            }
        }
        Ok(out)
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn parse_v2_header(raw: &[u8], at: usize, check_crc: bool) -> Result<BatchHeader> {
    if raw.len() < BATCH_HEADER_LEN {
        return Err(Error::malformed(
            "record batch",
            at,
            format!(
                "v2 batch of {} bytes is shorter than its {BATCH_HEADER_LEN}-byte header",
                raw.len()
            ),
        ));
    }
    let stored = be_i32(raw, CRC) as u32;
    let base_offset = be_i64(raw, BASE_OFFSET);
    if check_crc {
        let computed = super::crc::crc32c(&raw[ATTRIBUTES..]);
        if stored != computed {
            return Err(Error::CorruptBatch {
                base_offset,
                stored,
                computed,
            });
        }
    }
    let attributes = be_i16(raw, ATTRIBUTES);
    let compression = Compression::from_code(attributes & 0x07).map_err(|_| {
        Error::malformed(
            "record batch",
            at + ATTRIBUTES,
            format!("unknown compression codec {}", attributes & 0x07),
        )
    })?;
    let record_count = be_i32(raw, RECORD_COUNT);
    if record_count < 0 {
        return Err(Error::malformed(
            "record batch",
            at + RECORD_COUNT,
            format!("negative record count {record_count}"),
        ));
    }
    Ok(BatchHeader {
        base_offset,
        batch_length: be_i32(raw, LENGTH),
        partition_leader_epoch: be_i32(raw, LEADER_EPOCH),
        magic: 2,
        crc: stored,
        attributes,
        compression,
        last_offset_delta: be_i32(raw, LAST_OFFSET_DELTA),
        first_timestamp: be_i64(raw, FIRST_TIMESTAMP),
        max_timestamp: be_i64(raw, MAX_TIMESTAMP),
        producer_id: be_i64(raw, PRODUCER_ID),
        producer_epoch: be_i16(raw, PRODUCER_EPOCH),
        base_sequence: be_i32(raw, BASE_SEQUENCE),
        record_count,
    })
}

fn parse_control(r: &Record) -> Result<ControlRecord> {
    let key = r.key.as_deref().unwrap_or(&[]);
    if key.len() < 4 {
        return Err(Error::malformed(
            "control record",
            0,
            format!("key of {} bytes, at least 4 expected", key.len()),
        ));
    }
    let version = be_i16(key, 0);
    let kind = ControlRecordType::from_code(be_i16(key, 2));
    let coordinator_epoch = match (kind, r.value.as_deref()) {
        (ControlRecordType::Abort | ControlRecordType::Commit, Some(v)) if v.len() >= 6 => {
            Some(be_i32(v, 2))
        }
        _ => None,
    };
    Ok(ControlRecord {
        version,
        kind,
        coordinator_epoch,
    })
}

/// A batch with its records ready to read: decompressed, and for v2 decoded lazily from the
/// decompressed bytes (every key, value and header value is a slice of them).
#[derive(Debug, Clone)]
pub struct InflatedBatch {
    header: BatchHeader,
    data: Bytes,
    legacy: Option<Vec<Record>>,
    control: Option<ControlRecord>,
}

impl InflatedBatch {
    /// The header fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The transaction marker, for a control batch.
    pub fn control(&self) -> Option<ControlRecord> {
        self.control
    }

    /// The decompressed record bytes (empty for legacy messages).
    pub fn records_bytes(&self) -> &Bytes {
        &self.data
    }

    /// The records, decoded as the iterator advances. A malformed record ends the iteration
    /// with an error.
    pub fn records(&self) -> RecordIter {
        match &self.legacy {
            Some(v) => RecordIter {
                inner: IterInner::Legacy(v.clone().into_iter()),
            },
            None => {
                let h = &self.header;
                let log_append =
                    (h.timestamp_type() == TimestampType::LogAppendTime).then_some(h.max_timestamp);
                RecordIter {
                    inner: IterInner::V2 {
                        data: self.data.clone(),
                        pos: 0,
                        left: usize::try_from(h.record_count).unwrap_or(0),
                        base_offset: h.base_offset,
                        base_timestamp: h.first_timestamp,
                        log_append,
                        done: false,
                    },
                }
            }
        }
    }

    /// All records, or the first error.
    pub fn into_records(self) -> Result<Vec<Record>> {
        if let Some(v) = self.legacy {
            return Ok(v);
        }
        self.records().collect()
    }
}

/// Iterator over the records of an [`InflatedBatch`].
#[derive(Debug, Clone)]
pub struct RecordIter {
    inner: IterInner,
}

#[derive(Debug, Clone)]
enum IterInner {
    V2 {
        data: Bytes,
        pos: usize,
        left: usize,
        base_offset: i64,
        base_timestamp: i64,
        log_append: Option<i64>,
        done: bool,
    },
    Legacy(std::vec::IntoIter<Record>),
}

impl Iterator for RecordIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        match &mut self.inner {
            IterInner::Legacy(it) => it.next().map(Ok),
            IterInner::V2 {
                data,
                pos,
                left,
                base_offset,
                base_timestamp,
                log_append,
                done,
            } => {
                if *done {
                    return None;
                }
                if *left == 0 {
                    *done = true;
                    if *pos != data.len() {
                        return Some(Err(Error::malformed(
                            "record batch",
                            *pos,
                            format!("{} bytes after the last record", data.len() - *pos),
                        )));
                    }
                    return None;
                }
                *left -= 1;
                match decode_record(data, pos, *base_offset, *base_timestamp) {
                    Ok(mut r) => {
                        if let Some(ts) = log_append {
                            r.timestamp = *ts;
                        }
                        Some(Ok(r))
                    }
                    Err(e) => {
                        *done = true;
                        Some(Err(e))
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            IterInner::Legacy(it) => it.size_hint(),
            IterInner::V2 { left, done, .. } => {
                if *done {
                    (0, Some(0))
                } else {
                    (0, Some(*left + 1))
                }
            }
        }
    }
}

fn truncated(what: &'static str, offset: usize, needed: usize, remaining: usize) -> Error {
    Error::Truncated {
        what,
        offset,
        needed,
        remaining,
    }
}

/// A varint-length-prefixed byte field inside `data[..end]`; -1 is null.
#[inline]
fn bytes_field(
    data: &Bytes,
    p: &mut usize,
    end: usize,
    what: &'static str,
) -> Result<Option<Bytes>> {
    let (len, n) = get_varint(&data[*p..end], *p)?;
    *p += n;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len)
        .map_err(|_| Error::malformed(what, *p - n, format!("negative length {len}")))?;
    if len > end - *p {
        return Err(truncated(what, *p, len, end - *p));
    }
    let out = data.slice(*p..*p + len);
    *p += len;
    Ok(Some(out))
}

/// Decodes the record at `data[*pos..]`, advancing `pos` past it.
fn decode_record(
    data: &Bytes,
    pos: &mut usize,
    base_offset: i64,
    base_timestamp: i64,
) -> Result<Record> {
    let start = *pos;
    let (len, n) = get_varint(&data[start..], start)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l >= MIN_RECORD_LEN - 1)
        .ok_or_else(|| Error::malformed("record", start, format!("invalid record length {len}")))?;
    let body = start + n;
    if len > data.len() - body {
        return Err(truncated("record", body, len, data.len() - body));
    }
    let end = body + len;
    let mut p = body + 1; // attributes: unused
    let (ts_delta, n) = get_varlong(&data[p..end], p)?;
    p += n;
    let (offset_delta, n) = get_varint(&data[p..end], p)?;
    p += n;
    let key = bytes_field(data, &mut p, end, "record key")?;
    let value = bytes_field(data, &mut p, end, "record value")?;
    let (count, n) = get_varint(&data[p..end], p)?;
    let count_at = p;
    p += n;
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= (end - p) / 2)
        .ok_or_else(|| {
            Error::malformed(
                "record headers",
                count_at,
                format!("invalid header count {count}"),
            )
        })?;
    let mut headers = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let key_at = p;
        let hkey = bytes_field(data, &mut p, end, "header key")?
            .ok_or_else(|| Error::malformed("header key", key_at, "null header key"))?;
        let hkey = StrBytes::from_utf8(hkey)
            .map_err(|_| Error::malformed("header key", key_at, "invalid UTF-8"))?;
        let hvalue = bytes_field(data, &mut p, end, "header value")?;
        headers.push(RecordHeader {
            key: hkey,
            value: hvalue,
        });
    }
    if p != end {
        return Err(Error::malformed(
            "record",
            start,
            format!(
                "record length {len} disagrees with its fields ({} bytes)",
                p - body
            ),
        ));
    }
    let offset = base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| Error::malformed("record", start, "offset overflows"))?;
    let timestamp = base_timestamp
        .checked_add(ts_delta)
        .ok_or_else(|| Error::malformed("record", start, "timestamp overflows"))?;
    *pos = end;
    Ok(Record {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}
