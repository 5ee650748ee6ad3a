//! Size-prefixed frames: every Kafka request and response is a big-endian `i32` length followed
//! by that many bytes.
//!
//! The length is checked against a configured maximum *before* any buffer is reserved for the
//! body, so a corrupt or hostile 4-byte prefix cannot make the reader allocate gigabytes (the
//! bug class of decoders that trust lengths read off the wire).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::Encodable;

/// Default maximum frame size: 100 MiB, above Kafka's default `socket.request.max.bytes`
/// (100 MiB) and any sensible `fetch.max.bytes`.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

/// Incremental frame reader over a growing buffer (as filled from a socket).
#[derive(Debug, Clone)]
pub struct FrameReader {
    max: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameReader {
    /// A reader that rejects frames larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameReader { max }
    }

    /// The maximum frame size.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Splits one complete frame body off the front of `buf`, if one is there.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case, when the length prefix is
    /// already known, `buf` is reserved up to the frame's size (never beyond `max`), so the
    /// caller's next read fills it without repeated growth. A negative length or one over
    /// `max` is an error and the connection must be closed.
    pub fn try_read(&self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 || size as usize > self.max {
            return Err(Error::FrameTooLarge {
                size: i64::from(size),
                max: self.max,
            });
        }
        let size = size as usize;
        if buf.len() < 4 + size {
            buf.reserve(4 + size - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Reads every complete frame from a byte slice (a capture, a fuzz input). Trailing bytes
    /// that do not form a full frame are an error.
    pub fn read_all(&self, mut data: &[u8]) -> Result<Vec<Bytes>> {
        let mut frames = Vec::new();
        while !data.is_empty() {
            if data.len() < 4 {
                return Err(Error::Truncated {
                    what: "frame length",
                    offset: 0,
                    needed: 4,
                    remaining: data.len(),
                });
            }
            let size = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            if size < 0 || size as usize > self.max {
                return Err(Error::FrameTooLarge {
                    size: i64::from(size),
                    max: self.max,
                });
            }
            let size = size as usize;
            if data.len() - 4 < size {
                return Err(Error::Truncated {
                    what: "frame body",
                    offset: 4,
                    needed: size,
                    remaining: data.len() - 4,
                });
            }
            frames.push(Bytes::copy_from_slice(&data[4..4 + size]));
            data = &data[4 + size..];
        }
        Ok(frames)
    }
}

/// Appends a frame (length prefix and body) to `out`.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) -> Result<()> {
    let len = i32::try_from(body.len()).map_err(|_| Error::Encode {
        what: "frame",
        detail: format!("{} bytes do not fit a frame", body.len()),
    })?;
    out.reserve(4 + body.len());
    out.put_i32(len);
    out.put_slice(body);
    Ok(())
}

/// Records fields at least this long are sent as their own slice of a vectored write instead of
/// being copied into the request frame.
pub const PRODUCE_INLINE_MAX: usize = 4096;

/// A Produce request frame (length prefix, header v1/v2 and body) as a list of pieces whose
/// concatenation is exactly what [`crate::header::encode_request`] writes: each record batch
/// of at least [`PRODUCE_INLINE_MAX`] bytes is its own piece (the `Bytes` shared, not copied),
/// so a writer using vectored writes never copies the batches.
///
/// Returns `Ok(None)` for what this encoder does not cover (versions outside 3..=12, unknown
/// tagged fields): the caller then encodes the request whole.
pub fn encode_produce_frame(
    req: &ProduceRequest,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<Option<Vec<Bytes>>> {
    if !(3..=12).contains(&version)
        || !req.unknown_tagged_fields.is_empty()
        || req.topic_data.iter().any(|t| {
            !t.unknown_tagged_fields.is_empty()
                || t.partition_data
                    .iter()
                    .any(|p| !p.unknown_tagged_fields.is_empty())
        })
    {
        return Ok(None);
    }
    let flexible = version >= 9;
    let client_len = client_id.map_or(0, str::len);
    let body = req.compute_size(version).map_err(|e| Error::Encode {
        what: "Produce",
        detail: format!("version {version}: {e}"),
    })?;
    let size = 2 + 2 + 4 + 2 + client_len + usize::from(flexible) + body;
    let len = i32::try_from(size).map_err(|_| Error::Encode {
        what: "Produce",
        detail: format!("{size} bytes do not fit a frame"),
    })?;
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(len);
    buf.put_i16(0); // Produce
    buf.put_i16(version);
    buf.put_i32(correlation_id);
    put_string(&mut buf, client_id, false, "client id")?;
    if flexible {
        buf.put_u8(0); // no tagged fields in the header
    }
    put_string(
        &mut buf,
        req.transactional_id.as_ref().map(|t| &*t.0),
        flexible,
        "transactional id",
    )?;
    buf.put_i16(req.acks);
    buf.put_i32(req.timeout_ms);
    put_len(
        &mut buf,
        Some(req.topic_data.len()),
        flexible,
        "topic count",
    )?;
    for t in &req.topic_data {
        put_string(&mut buf, Some(&*t.name.0), flexible, "topic name")?;
        put_len(
            &mut buf,
            Some(t.partition_data.len()),
            flexible,
            "partition count",
        )?;
        for p in &t.partition_data {
            buf.put_i32(p.index);
            let records = p.records.as_ref();
            put_len(&mut buf, records.map(Bytes::len), flexible, "records")?;
            if let Some(r) = records {
                if r.len() >= PRODUCE_INLINE_MAX {
                    pieces.push(buf.split().freeze());
                    pieces.push(r.clone());
                } else {
                    buf.put_slice(r);
                }
            }
            if flexible {
                buf.put_u8(0);
            }
        }
        if flexible {
            buf.put_u8(0);
        }
    }
    if flexible {
        buf.put_u8(0);
    }
    pieces.push(buf.freeze());
    let total: usize = pieces.iter().map(Bytes::len).sum();
    if total != 4 + size {
        return Err(Error::Encode {
            what: "Produce",
            detail: format!("{total} bytes written for a frame of {}", 4 + size),
        });
    }
    Ok(Some(pieces))
}

/// A (compact when `flexible`) nullable string.
pub(crate) fn put_string(
    out: &mut BytesMut,
    s: Option<&str>,
    flexible: bool,
    what: &'static str,
) -> Result<()> {
    let len = s.map(str::len);
    if flexible {
        put_len(out, len, true, what)?;
    } else {
        let n = match len {
            None => -1,
            Some(n) => i16::try_from(n).map_err(|_| Error::Encode {
                what,
                detail: format!("{n} bytes: longer than 32767"),
            })?,
        };
        out.put_i16(n);
    }
    if let Some(s) = s {
        out.put_slice(s.as_bytes());
    }
    Ok(())
}

/// A nullable length: an unsigned varint of length + 1 (0 for null) when `flexible`, else an
/// `i32` (-1 for null).
fn put_len(
    out: &mut BytesMut,
    len: Option<usize>,
    flexible: bool,
    what: &'static str,
) -> Result<()> {
    let too_long = |n: usize| Error::Encode {
        what,
        detail: format!("{n} is too long"),
    };
    if flexible {
        let mut v = match len {
            None => 0u32,
            Some(n) => u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or_else(|| too_long(n))?,
        };
        while v >= 0x80 {
            out.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    } else {
        let n = match len {
            None => -1,
            Some(n) => i32::try_from(n).map_err(|_| too_long(n))?,
        };
        out.put_i32(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_frame_pieces_equal_the_whole_encoding() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{TopicName, TransactionalId};
        use kafka_protocol::protocol::StrBytes;
        let big = Bytes::from(
            (0..PRODUCE_INLINE_MAX + 77)
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let small = Bytes::from_static(b"small batch");
        let part = |index, records| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(records)
        };
        let topic = |name: &str, parts| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_partition_data(parts)
        };
        for txn in [
            None,
            Some(TransactionalId(StrBytes::from_static_str("tx-1"))),
        ] {
            let req = ProduceRequest::default()
                .with_transactional_id(txn)
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    topic(
                        "a",
                        vec![part(0, Some(big.clone())), part(1, Some(small.clone()))],
                    ),
                    topic("bb", vec![part(7, None), part(2, Some(big.clone()))]),
                ]);
            for version in 3..=12 {
                let mut whole = BytesMut::new();
                crate::header::encode_request(&mut whole, &req, version, 42, Some("krust"))
                    .unwrap();
                let pieces = encode_produce_frame(&req, version, 42, Some("krust"))
                    .unwrap()
                    .unwrap();
                assert_eq!(pieces.len(), 5, "two big batches are pieces of their own");
                assert!(
                    pieces.iter().any(|p| p.as_ptr() == big.as_ptr()),
                    "shared, not copied"
                );
                assert_eq!(pieces.concat(), whole.to_vec(), "version {version}");
            }
        }
        let unknown = ProduceRequest::default().with_topic_data(vec![topic("a", vec![])]);
        assert!(encode_produce_frame(&unknown, 13, 1, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn splits_frames_across_partial_reads() {
        let mut wire = BytesMut::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, b"world!").unwrap();
        let all = wire.freeze();
        let r = FrameReader::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(f) = r.try_read(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversized_and_negative_lengths_before_allocating() {
        let r = FrameReader::new(1024);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            r.try_read(&mut buf),
            Err(Error::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() < 1024, "no reservation for a rejected frame");
        let mut neg = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(r.try_read(&mut neg).is_err());
        assert!(r.read_all(&[0, 0, 0, 9, 1]).is_err());
        assert!(r.read_all(&[0, 0]).is_err());
    }
}
