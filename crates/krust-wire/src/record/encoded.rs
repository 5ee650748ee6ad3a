//! A finished record batch as it goes on the wire: one buffer, or one buffer with the large
//! values of its records kept by reference.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::layout::*;
use crate::error::Result;

/// Values kept out of a batch's buffer, each with the index in the buffer it goes before, in
/// order.
pub(crate) type LeftOut = Vec<(usize, Bytes)>;

/// The bytes of one finished v2 record batch.
///
/// A batch built from values the producer holds as [`Bytes`]
/// ([`BatchBuilder::push_shared`](super::BatchBuilder::push_shared), then
/// [`BatchBuilder::finish_encoded`](super::BatchBuilder::finish_encoded)) is kept *split*: one
/// buffer with everything but those values, and the values themselves, by reference. Its
/// [`slices`](EncodedBatch::slices), written in order (a vectored write), are the batch; the
/// values are never copied into it. Any other batch is one buffer.
///
/// Cloning costs one reference count, whatever the batch holds.
///
/// ```
/// use bytes::Bytes;
/// use krust_wire::record::{batches, BatchBuilder, Compression, EncodedBatch, Unpooled};
/// let value = Bytes::from(vec![7u8; 4096]);
/// let mut b = BatchBuilder::new(Compression::None);
/// b.push_shared(1_700_000_000_000, Some(b"key"), Some(value.clone()), &[])?;
/// let batch: EncodedBatch = b.finish_encoded(-1, -1, -1, false, &mut Unpooled)?;
/// // The value is one of the slices, not a copy.
/// assert!(batch.slices().any(|s| s.as_ptr() == value.as_ptr()));
/// let read = batches(batch.to_bytes()).next().unwrap()?;
/// let rec = read.inflate()?.into_records()?.remove(0);
/// assert_eq!(rec.value, Some(value));
/// # Ok::<(), krust_wire::Error>(())
/// ```
#[derive(Clone)]
pub struct EncodedBatch {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Whole(Bytes),
    Split(Arc<Split>),
}

/// A batch whose values are kept by reference.
struct Split {
    /// The batch without the values: header, record framing, keys, headers.
    inline: Bytes,
    /// Each value and where it goes in `inline` (before the byte at that index), in order.
    values: LeftOut,
    /// Length of the whole batch.
    len: usize,
}

impl EncodedBatch {
    /// A batch made of `inline` with each value inserted before the byte of `inline` at its
    /// index. The indices must be non-decreasing and within `inline` (the builder's own).
    pub(crate) fn split(inline: Bytes, values: LeftOut) -> Self {
        if values.is_empty() {
            return EncodedBatch::from(inline);
        }
        debug_assert!(values.windows(2).all(|w| w[0].0 <= w[1].0));
        debug_assert!(values.last().is_some_and(|(at, _)| *at <= inline.len()));
        let len = inline.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>();
        EncodedBatch {
            repr: Repr::Split(Arc::new(Split {
                inline,
                values,
                len,
            })),
        }
    }

    /// Length of the batch in bytes.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Whole(b) => b.len(),
            Repr::Split(s) => s.len,
        }
    }

    /// Whether the batch has no bytes at all (never the case for a built batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the batch is one buffer (no value kept by reference).
    pub fn is_contiguous(&self) -> bool {
        matches!(self.repr, Repr::Whole(_))
    }

    /// The batch's bytes in order, as non-empty slices: what a vectored write sends.
    pub fn slices(&self) -> Slices<'_> {
        let (inline, values): (&[u8], &[(usize, Bytes)]) = match &self.repr {
            Repr::Whole(b) => (b, &[]),
            Repr::Split(s) => (&s.inline, &s.values),
        };
        Slices {
            inline,
            values,
            from: 0,
            next: 0,
            value_due: false,
        }
    }

    /// The batch as one buffer: shared when it is one already, else copied together.
    pub fn to_bytes(&self) -> Bytes {
        match &self.repr {
            Repr::Whole(b) => b.clone(),
            Repr::Split(s) => {
                let mut out = Vec::with_capacity(s.len);
                for piece in self.slices() {
                    out.extend_from_slice(piece);
                }
                Bytes::from(out)
            }
        }
    }

    /// The batch with a new producer id, epoch and base sequence, and so a new CRC. Copies the
    /// batch's own buffer (a split batch's values are shared, not copied); records are not
    /// re-encoded.
    pub fn restamp(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Result<EncodedBatch> {
        match &self.repr {
            Repr::Whole(b) => {
                super::restamp(b, producer_id, producer_epoch, base_sequence).map(Self::from)
            }
            Repr::Split(s) => {
                let mut inline = s.inline.to_vec();
                let producer = (producer_id, producer_epoch, base_sequence);
                super::encode::stamp_producer(&mut inline, s.len, producer)?;
                let crc = checksum_split(&inline, &s.values);
                inline[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
                Ok(EncodedBatch::split(Bytes::from(inline), s.values.clone()))
            }
        }
    }
}

impl From<Bytes> for EncodedBatch {
    fn from(bytes: Bytes) -> Self {
        EncodedBatch {
            repr: Repr::Whole(bytes),
        }
    }
}

impl fmt::Debug for EncodedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_reference = match &self.repr {
            Repr::Whole(_) => 0,
            Repr::Split(s) => s.values.len(),
        };
        f.debug_struct("EncodedBatch")
            .field("len", &self.len())
            .field("values_by_reference", &by_reference)
            .finish()
    }
}

/// The slices of an [`EncodedBatch`], in order.
#[derive(Debug, Clone)]
pub struct Slices<'a> {
    inline: &'a [u8],
    values: &'a [(usize, Bytes)],
    /// Start of the next stretch of `inline`.
    from: usize,
    /// Index of the next value.
    next: usize,
    /// Whether value `next` comes before any more of `inline`.
    value_due: bool,
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.value_due {
                self.value_due = false;
                let v = &self.values[self.next].1;
                self.next += 1;
                if !v.is_empty() {
                    return Some(v);
                }
            } else if let Some((at, _)) = self.values.get(self.next) {
                let stretch = &self.inline[self.from..*at];
                self.from = *at;
                self.value_due = true;
                if !stretch.is_empty() {
                    return Some(stretch);
                }
            } else if self.from < self.inline.len() {
                let rest = &self.inline[self.from..];
                self.from = self.inline.len();
                return Some(rest);
            } else {
                return None;
            }
        }
    }
}

/// The CRC-32C of a split batch from [`ATTRIBUTES`] on: `inline` (header written) with each
/// value inserted at its place. Reads every byte once, where it lies.
pub(crate) fn checksum_split(inline: &[u8], values: &[(usize, Bytes)]) -> u32 {
    let mut crc = 0;
    let mut from = ATTRIBUTES;
    for (at, value) in values {
        crc = super::crc::crc32c_append(crc, &inline[from..*at]);
        crc = super::crc::crc32c_append(crc, value);
        from = *at;
    }
    super::crc::crc32c_append(crc, &inline[from..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        batches, BatchBuilder, Compression, RecordHeader, Unpooled, BY_REFERENCE_MIN,
    };

    fn value(len: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<_>>(),
        )
    }

    /// The same records pushed by reference into a split batch and copied into a whole one.
    fn both(records: &[(Option<&[u8]>, Option<Bytes>)]) -> (EncodedBatch, Bytes) {
        let mut split = BatchBuilder::new(Compression::None);
        let mut whole = BatchBuilder::new(Compression::None);
        let headers = [RecordHeader::new("h", Some(Bytes::from_static(b"v")))];
        for (i, (key, v)) in records.iter().enumerate() {
            let ts = 1_000 + i as i64;
            split.push_shared(ts, *key, v.clone(), &headers).unwrap();
            whole.push(ts, *key, v.as_deref(), &headers).unwrap();
        }
        (
            split
                .finish_encoded(77, 3, 1_000, true, &mut Unpooled)
                .unwrap(),
            whole.finish(77, 3, 1_000, true).unwrap(),
        )
    }

    #[test]
    fn a_split_batch_is_the_whole_batch_in_slices() {
        let big = value(BY_REFERENCE_MIN + 900, 1);
        let records: Vec<(Option<&[u8]>, Option<Bytes>)> = vec![
            (Some(b"k1"), Some(big.clone())),
            (None, Some(value(10, 2))),
            (Some(b""), Some(value(BY_REFERENCE_MIN - 1, 3))),
            (None, Some(value(BY_REFERENCE_MIN, 4))),
            (None, Some(value(600, 5))),
            (None, None),
            (None, Some(Bytes::new())),
            (Some(b"k6"), Some(big.clone())),
        ];
        let (split, whole) = both(&records);
        assert!(!split.is_contiguous());
        assert_eq!(split.len(), whole.len());
        let slices: Vec<&[u8]> = split.slices().collect();
        assert!(slices.iter().all(|s| !s.is_empty()));
        assert_eq!(slices.concat(), whole.to_vec());
        assert_eq!(split.to_bytes(), whole);
        // The values of at least `BY_REFERENCE_MIN` bytes are the caller's memory, not
        // copies; smaller ones were copied in.
        let by_reference = |v: &Bytes| slices.iter().filter(|s| s.as_ptr() == v.as_ptr()).count();
        assert_eq!(by_reference(&big), 2);
        for (_, v) in &records {
            let v = v.as_ref().filter(|v| !v.is_empty()).unwrap_or(&big);
            assert_eq!(
                by_reference(v) > 0,
                v.len() >= BY_REFERENCE_MIN,
                "{} bytes",
                v.len()
            );
        }
        // And it reads back (CRC checked on the way).
        let batch = batches(split.to_bytes()).next().unwrap().unwrap();
        let read = batch.inflate().unwrap().into_records().unwrap();
        assert_eq!(read.len(), records.len());
        assert_eq!(read[0].value.as_ref(), Some(&big));
    }

    #[test]
    fn a_split_batch_restamps_like_a_whole_one() {
        let records: Vec<(Option<&[u8]>, Option<Bytes>)> = (0..40)
            .map(|i| (None, Some(value(BY_REFERENCE_MIN - 200 + i * 13, i as u8))))
            .collect();
        let (split, whole) = both(&records);
        let re = split.restamp(9_000, 4, 123).unwrap();
        assert!(!re.is_contiguous(), "the values stay shared");
        let expected = crate::record::restamp(&whole, 9_000, 4, 123).unwrap();
        assert_eq!(re.to_bytes(), expected);
        let again = EncodedBatch::from(whole).restamp(9_000, 4, 123).unwrap();
        assert_eq!(again.to_bytes(), expected);
        // The original is unchanged.
        let read = batches(split.to_bytes()).next().unwrap().unwrap();
        assert_eq!(read.header().producer_id, 77);
    }

    #[test]
    fn a_split_batch_with_a_bad_header_is_refused_by_restamp() {
        let inline = Bytes::from(vec![0u8; 70]);
        let bad = EncodedBatch::split(inline, vec![(65, value(600, 0))]);
        assert!(bad.restamp(1, 1, 1).is_err());
        let short = EncodedBatch::split(Bytes::from(vec![2u8; 20]), vec![(10, value(5, 0))]);
        assert!(short.restamp(1, 1, 1).is_err());
    }

    #[test]
    fn a_whole_batch_is_one_slice_and_shared() {
        let b = Bytes::from_static(b"0123456789");
        let e = EncodedBatch::from(b.clone());
        assert!(e.is_contiguous());
        assert_eq!(e.slices().collect::<Vec<_>>(), vec![&b[..]]);
        assert_eq!(e.to_bytes().as_ptr(), b.as_ptr());
        assert_eq!(EncodedBatch::from(Bytes::new()).slices().count(), 0);
    }
}
