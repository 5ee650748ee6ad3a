//! Legacy message sets (magic 0 and 1), read only.
//!
//! ```text
//! offset: i64, message_size: i32,
//! crc: u32 (CRC32/IEEE of magic..end), magic: i8, attributes: i8,
//! [timestamp: i64, magic 1 only], key: bytes (i32 length, -1 null), value: bytes
//! ```
//!
//! A compressed message (attributes bits 0-2 non-zero) is a *wrapper* whose value is a
//! compressed message set of inner messages. Under magic 1 the inner offsets are relative and
//! the wrapper carries the offset of the last inner message; under magic 0 they are absolute.

use bytes::Bytes;

use super::{BatchHeader, Record, ATTR_LOG_APPEND_TIME, LOG_OVERHEAD};
use crate::compression::{self, Compression, DecompressLimits};
use crate::error::{Error, Result};

/// crc, magic, attributes, key length, value length.
const MIN_V0: usize = 4 + 1 + 1 + 4 + 4;

/// One decoded legacy message (the part after offset and size).
struct Message {
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decodes the message in `buf[start..end]` (after its offset and size fields), checking its CRC
/// when `check_crc`.
fn parse_message(
    buf: &Bytes,
    start: usize,
    end: usize,
    at: usize,
    check_crc: bool,
) -> Result<Message> {
    let m = &buf[start..end];
    if m.len() < MIN_V0 {
        return Err(Error::malformed(
            "legacy message",
            at,
            format!("message of {} bytes is too short", m.len()),
        ));
    }
    if check_crc {
        let stored = i32_at(m, 0) as u32;
        let computed = crc32fast::hash(&m[4..]);
        if stored != computed {
            return Err(Error::CorruptBatch {
                base_offset: -1,
                stored,
                computed,
            });
        }
    }
    let magic = m[4] as i8;
    let attributes = m[5] as i8;
    let mut p = 6;
    let timestamp = match magic {
        0 => -1,
        1 => {
            if m.len() < MIN_V0 + 8 {
                return Err(Error::malformed(
                    "legacy message",
                    at,
                    format!("v1 message of {} bytes is too short", m.len()),
                ));
            }
            p += 8;
            i64_at(m, 6)
        }
        other => {
            return Err(Error::malformed(
                "legacy message",
                at + 4,
                format!("magic {other} inside a legacy message set"),
            ))
        }
    };
    let key = bytes_field(buf, start, &mut p, end, at, "legacy message key")?;
    let value = bytes_field(buf, start, &mut p, end, at, "legacy message value")?;
    if start + p != end {
        return Err(Error::malformed(
            "legacy message",
            at,
            format!("{} bytes after the value", end - start - p),
        ));
    }
    Ok(Message {
        magic,
        attributes,
        timestamp,
        key,
        value,
    })
}

/// An i32-length-prefixed byte field at `buf[start + *p..end]`.
fn bytes_field(
    buf: &Bytes,
    start: usize,
    p: &mut usize,
    end: usize,
    at: usize,
    what: &'static str,
) -> Result<Option<Bytes>> {
    let here = start + *p;
    if end - here < 4 {
        return Err(Error::Truncated {
            what,
            offset: at + *p,
            needed: 4,
            remaining: end - here,
        });
    }
    let len = i32_at(buf, here);
    *p += 4;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len)
        .map_err(|_| Error::malformed(what, at + *p - 4, format!("negative length {len}")))?;
    let from = here + 4;
    if len > end - from {
        return Err(Error::Truncated {
            what,
            offset: at + *p,
            needed: len,
            remaining: end - from,
        });
    }
    *p += len;
    Ok(Some(buf.slice(from..from + len)))
}

fn codec_of(attributes: i8, at: usize) -> Result<Compression> {
    match attributes & 0x07 {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Gzip),
        2 => Ok(Compression::Snappy),
        3 => Ok(Compression::Lz4),
        c => Err(Error::malformed(
            "legacy message",
            at + 5,
            format!("compression codec {c} is not valid in a legacy message"),
        )),
    }
}

/// Decodes the header equivalent of a legacy message (`raw` is offset, size and message).
pub(super) fn parse_header(raw: &Bytes, at: usize, check_crc: bool) -> Result<BatchHeader> {
    let msg = parse_message(raw, LOG_OVERHEAD, raw.len(), at + LOG_OVERHEAD, check_crc)?;
    let compression = codec_of(msg.attributes, at + LOG_OVERHEAD)?;
    Ok(BatchHeader {
        base_offset: i64_at(raw, 0),
        batch_length: i32_at(raw, 8),
        partition_leader_epoch: -1,
        magic: msg.magic,
        crc: i32_at(raw, LOG_OVERHEAD) as u32,
        attributes: i16::from(msg.attributes as u8),
        compression,
        last_offset_delta: 0,
        first_timestamp: msg.timestamp,
        max_timestamp: msg.timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: if compression == Compression::None {
            1
        } else {
            -1
        },
    })
}

/// The records of a legacy message: itself, or the inner messages of a compressed wrapper.
pub(super) fn inflate(
    raw: &Bytes,
    h: &BatchHeader,
    limits: &DecompressLimits,
    check_crc: bool,
) -> Result<Vec<Record>> {
    let msg = parse_message(raw, LOG_OVERHEAD, raw.len(), LOG_OVERHEAD, check_crc)?;
    if h.compression == Compression::None {
        return Ok(vec![Record {
            offset: h.base_offset,
            timestamp: msg.timestamp,
            key: msg.key,
            value: msg.value,
            headers: Vec::new(),
        }]);
    }
    let value = msg.value.ok_or_else(|| {
        Error::malformed(
            "legacy message",
            LOG_OVERHEAD,
            "compressed wrapper with a null value",
        )
    })?;
    let inner = Bytes::from(compression::decompress(h.compression, &value, limits)?);
    let log_append = msg.magic >= 1 && i16::from(msg.attributes as u8) & ATTR_LOG_APPEND_TIME != 0;
    let mut out: Vec<(i64, Message)> = Vec::new();
    let mut pos = 0;
    while pos < inner.len() {
        if inner.len() - pos < LOG_OVERHEAD {
            return Err(Error::Truncated {
                what: "inner legacy message",
                offset: pos,
                needed: LOG_OVERHEAD,
                remaining: inner.len() - pos,
            });
        }
        let offset = i64_at(&inner, pos);
        let size = i32_at(&inner, pos + 8);
        let size = usize::try_from(size).map_err(|_| {
            Error::malformed(
                "inner legacy message",
                pos + 8,
                format!("negative size {size}"),
            )
        })?;
        let start = pos + LOG_OVERHEAD;
        if size > inner.len() - start {
            return Err(Error::Truncated {
                what: "inner legacy message",
                offset: start,
                needed: size,
                remaining: inner.len() - start,
            });
        }
        let m = parse_message(&inner, start, start + size, start, check_crc)?;
        if m.attributes & 0x07 != 0 {
            return Err(Error::malformed(
                "inner legacy message",
                start,
                "nested compression",
            ));
        }
        out.push((offset, m));
        pos = start + size;
    }
    let Some(&(last_inner, _)) = out.last() else {
        return Err(Error::malformed(
            "legacy message",
            LOG_OVERHEAD,
            "compressed wrapper with no inner messages",
        ));
    };
    let mut records = Vec::with_capacity(out.len());
    for (inner_offset, m) in out {
        let offset = if msg.magic >= 1 {
            h.base_offset
                .checked_sub(last_inner)
                .and_then(|b| b.checked_add(inner_offset))
                .ok_or_else(|| {
                    Error::malformed("inner legacy message", 0, "relative offset overflows")
                })?
        } else {
            inner_offset
        };
        let timestamp = if log_append {
            msg.timestamp
        } else if m.magic >= 1 {
            m.timestamp
        } else {
            -1
        };
        records.push(Record {
            offset,
            timestamp,
            key: m.key,
            value: m.value,
            headers: Vec::new(),
        });
    }
    Ok(records)
}
