//! Size-prefixed frames: every Kafka request and response is a big-endian `i32` length followed
//! by that many bytes.
//!
//! The length is checked against a configured maximum *before* any buffer is reserved for the
//! body, so a corrupt or hostile 4-byte prefix cannot make the reader allocate gigabytes (the
//! bug class of decoders that trust lengths read off the wire).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::record::EncodedBatch;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

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

/// Records fields at least this long are sent as their own slices of a vectored write instead
/// of being copied into the request frame.
pub const PRODUCE_INLINE_MAX: usize = 4096;

/// A Produce request (versions 3 to 12) whose record batches are [`EncodedBatch`]es: what a
/// producer sends. [`encode_produce_batches_frame`] writes each batch from its own buffers,
/// values kept by reference included, so no batch is copied into the request.
#[derive(Debug, Clone, Default)]
pub struct ProduceBatches {
    /// The transactional id, for a transactional producer.
    pub transactional_id: Option<TransactionalId>,
    /// The acknowledgements asked for, as on the wire (0, 1 or -1).
    pub acks: i16,
    /// How long the broker may wait for the acknowledgements, in milliseconds.
    pub timeout_ms: i32,
    /// Each topic's partitions (index and batch), in request order.
    pub topics: Vec<(TopicName, Vec<PartitionBatch>)>,
}

/// A partition's index and its record batch (`None`: a null records field), in a
/// [`ProduceBatches`].
pub type PartitionBatch = (i32, Option<EncodedBatch>);

impl ProduceBatches {
    /// The same request as a [`ProduceRequest`] (batches with values kept by reference are
    /// copied together).
    pub fn to_request(&self) -> ProduceRequest {
        let topic_data = self
            .topics
            .iter()
            .map(|(name, parts)| {
                TopicProduceData::default()
                    .with_name(name.clone())
                    .with_partition_data(
                        parts
                            .iter()
                            .map(|(index, batch)| {
                                PartitionProduceData::default()
                                    .with_index(*index)
                                    .with_records(batch.as_ref().map(EncodedBatch::to_bytes))
                            })
                            .collect(),
                    )
            })
            .collect();
        ProduceRequest::default()
            .with_transactional_id(self.transactional_id.clone())
            .with_acks(self.acks)
            .with_timeout_ms(self.timeout_ms)
            .with_topic_data(topic_data)
    }

    fn from_request(req: &ProduceRequest) -> Self {
        ProduceBatches {
            transactional_id: req.transactional_id.clone(),
            acks: req.acks,
            timeout_ms: req.timeout_ms,
            topics: req
                .topic_data
                .iter()
                .map(|t| {
                    let parts = t
                        .partition_data
                        .iter()
                        .map(|p| (p.index, p.records.clone().map(EncodedBatch::from)))
                        .collect();
                    (t.name.clone(), parts)
                })
                .collect(),
        }
    }
}

/// Encoded as the [`ProduceRequest`] it stands for (a copy; the frame encoder
/// [`encode_produce_batches_frame`] is the way that does not copy).
impl Encodable for ProduceBatches {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        self.to_request().encode(buf, version)
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        self.to_request().compute_size(version)
    }
}

impl HeaderVersion for ProduceBatches {
    fn header_version(version: i16) -> i16 {
        <ProduceRequest as HeaderVersion>::header_version(version)
    }
}

/// One piece of a request frame, for a vectored write.
#[derive(Debug, Clone)]
pub enum FramePiece {
    /// Bytes of the frame itself.
    Bytes(Bytes),
    /// A record batch, written from where its bytes lie.
    Batch(EncodedBatch),
}

impl FramePiece {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            FramePiece::Bytes(b) => b.len(),
            FramePiece::Batch(b) => b.len(),
        }
    }

    /// Whether the piece has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The piece's bytes in order, as non-empty slices.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let (own, batch) = match self {
            FramePiece::Bytes(b) => (Some(&b[..]).filter(|b| !b.is_empty()), None),
            FramePiece::Batch(b) => (None, Some(b.slices())),
        };
        own.into_iter().chain(batch.into_iter().flatten())
    }
}

/// A Produce request frame (length prefix, header v1/v2 and body) as its first piece and the
/// pieces after it, whose concatenation is exactly what [`crate::header::encode_request`]
/// writes: each record batch of at least [`PRODUCE_INLINE_MAX`] bytes is a piece of its own
/// (shared, not copied), so a writer using vectored writes never copies the batches.
///
/// Returns `Ok(None)` for what this encoder does not cover (versions outside 3..=12, unknown
/// tagged fields): the caller then encodes the request whole.
pub fn encode_produce_frame(
    req: &ProduceRequest,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<Option<(Bytes, Vec<FramePiece>)>> {
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
    encode_produce_batches_frame(
        &ProduceBatches::from_request(req),
        version,
        correlation_id,
        client_id,
    )
    .map(Some)
}

/// [`encode_produce_frame`] for a [`ProduceBatches`]: batches of at least
/// [`PRODUCE_INLINE_MAX`] bytes are pieces of their own, with any values they keep by
/// reference. Fails for versions outside 3..=12.
pub fn encode_produce_batches_frame(
    req: &ProduceBatches,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<(Bytes, Vec<FramePiece>)> {
    if !(3..=12).contains(&version) {
        return Err(Error::Encode {
            what: "Produce",
            detail: format!("version {version} is outside 3..=12"),
        });
    }
    let flexible = version >= 9;
    // The first piece, from the length prefix up to the first batch written apart (or the
    // whole frame), kept open to write the length into last.
    let mut head: Option<BytesMut> = None;
    let mut rest: Vec<FramePiece> = Vec::new();
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // the length, written last
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
    put_len(&mut buf, Some(req.topics.len()), flexible, "topic count")?;
    for (name, parts) in &req.topics {
        put_string(&mut buf, Some(&*name.0), flexible, "topic name")?;
        put_len(&mut buf, Some(parts.len()), flexible, "partition count")?;
        for (index, batch) in parts {
            buf.put_i32(*index);
            put_len(
                &mut buf,
                batch.as_ref().map(EncodedBatch::len),
                flexible,
                "records",
            )?;
            if let Some(b) = batch {
                if b.len() >= PRODUCE_INLINE_MAX {
                    let before = buf.split();
                    match head {
                        None => head = Some(before),
                        Some(_) => rest.push(FramePiece::Bytes(before.freeze())),
                    }
                    rest.push(FramePiece::Batch(b.clone()));
                } else {
                    for s in b.slices() {
                        buf.put_slice(s);
                    }
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
    let mut head = match head {
        Some(head) => {
            rest.push(FramePiece::Bytes(buf.freeze()));
            head
        }
        None => buf,
    };
    let size = head.len() - 4 + rest.iter().map(FramePiece::len).sum::<usize>();
    let len = i32::try_from(size).map_err(|_| Error::Encode {
        what: "Produce",
        detail: format!("{size} bytes do not fit a frame"),
    })?;
    head[..4].copy_from_slice(&len.to_be_bytes());
    Ok((head.freeze(), rest))
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
                let (head, rest) = encode_produce_frame(&req, version, 42, Some("krust"))
                    .unwrap()
                    .unwrap();
                assert_eq!(rest.len(), 4, "two big batches are pieces of their own");
                let slices: Vec<&[u8]> = std::iter::once(&head[..])
                    .chain(rest.iter().flat_map(FramePiece::slices))
                    .collect();
                assert!(
                    slices.iter().any(|p| p.as_ptr() == big.as_ptr()),
                    "shared, not copied"
                );
                assert_eq!(slices.concat(), whole.to_vec(), "version {version}");
            }
        }
        let unknown = ProduceRequest::default().with_topic_data(vec![topic("a", vec![])]);
        assert!(encode_produce_frame(&unknown, 13, 1, None)
            .unwrap()
            .is_none());
    }

    /// A `ProduceBatches` whose batch keeps a value by reference: its frame is what the
    /// request it stands for encodes to, with the value written from where it lies.
    #[test]
    fn produce_batches_frame_writes_values_by_reference_in_place() {
        use crate::record::{BatchBuilder, Compression, Unpooled, BY_REFERENCE_MIN};
        use kafka_protocol::protocol::StrBytes;
        let value = Bytes::from(vec![5u8; BY_REFERENCE_MIN + 1_000]);
        let mut b = BatchBuilder::new(Compression::None);
        b.push_shared(1, Some(b"k"), Some(value.clone()), &[])
            .unwrap();
        b.push_shared(2, None, Some(Bytes::from_static(b"small")), &[])
            .unwrap();
        let split = b.finish_encoded(7, 0, 0, false, &mut Unpooled).unwrap();
        assert!(!split.is_contiguous());
        let small = EncodedBatch::from(Bytes::from_static(b"tiny"));
        let req = ProduceBatches {
            transactional_id: Some(TransactionalId(StrBytes::from_static_str("tx"))),
            acks: -1,
            timeout_ms: 5_000,
            topics: vec![
                (
                    TopicName(StrBytes::from_static_str("t")),
                    vec![(0, Some(split)), (1, None)],
                ),
                (
                    TopicName(StrBytes::from_static_str("u")),
                    vec![(3, Some(small))],
                ),
            ],
        };
        for version in 3..=12 {
            let mut whole = BytesMut::new();
            crate::header::encode_request(&mut whole, &req, version, 9, Some("krust")).unwrap();
            let (head, rest) =
                encode_produce_batches_frame(&req, version, 9, Some("krust")).unwrap();
            let slices: Vec<&[u8]> = std::iter::once(&head[..])
                .chain(rest.iter().flat_map(FramePiece::slices))
                .collect();
            assert!(slices.iter().any(|s| s.as_ptr() == value.as_ptr()));
            assert_eq!(slices.concat(), whole.to_vec(), "version {version}");
        }
        assert!(encode_produce_batches_frame(&req, 13, 9, None).is_err());
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
