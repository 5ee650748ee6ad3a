//! The [`Source`] abstraction that every krust response decoder is written against, and
//! [`ByteSource`], the bounded, zero-copy reader over a frame's bytes.
//!
//! A decoder is written once, generically over `Source`. Fed a [`ByteSource`] it decodes broker
//! bytes with every count and length checked against what remains; fed a
//! [`RandomSource`](super::RandomSource) it produces a random value that is well formed for the
//! given version, which the differential tests encode with `kafka-protocol` and decode again.
//!
//! Allocation rule (the bug this prevents: an 8-byte frame claiming 54 million topics making a
//! decoder call `Vec::with_capacity(54_000_000)` and abort the process): a count read from the
//! wire is never trusted for allocation. Arrays reject a count larger than the bytes that remain
//! (every element occupies at least one byte on the wire, except in the degenerate case
//! handled below) and grow by pushing, so memory stays proportional to bytes actually consumed.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::error::{Error, Result};

/// A supply of primitive protocol values, in wire order.
///
/// `flexible` selects the KIP-482 encodings (compact strings/arrays/bytes, tagged fields); it is
/// fixed for a whole message, as in the protocol.
pub trait Source: Sized {
    /// Whether the message being decoded uses the flexible (KIP-482) encodings.
    fn flexible(&self) -> bool;
    /// A boolean (one byte, non-zero is true).
    fn bool(&mut self) -> Result<bool>;
    /// A signed 8-bit integer.
    fn i8(&mut self) -> Result<i8>;
    /// A signed 16-bit big-endian integer.
    fn i16(&mut self) -> Result<i16>;
    /// An unsigned 16-bit big-endian integer.
    fn u16(&mut self) -> Result<u16>;
    /// A signed 32-bit big-endian integer.
    fn i32(&mut self) -> Result<i32>;
    /// An unsigned 32-bit big-endian integer.
    fn u32(&mut self) -> Result<u32>;
    /// A signed 64-bit big-endian integer.
    fn i64(&mut self) -> Result<i64>;
    /// A 64-bit IEEE float.
    fn f64(&mut self) -> Result<f64>;
    /// A 16-byte UUID.
    fn uuid(&mut self) -> Result<Uuid>;
    /// A non-null string (compact when flexible). A null on the wire is an error.
    fn string(&mut self) -> Result<StrBytes>;
    /// A nullable string (compact when flexible).
    fn nullable_string(&mut self) -> Result<Option<StrBytes>>;
    /// A non-null byte string (compact when flexible), zero-copy.
    fn bytes(&mut self) -> Result<Bytes>;
    /// A nullable byte string (compact when flexible), zero-copy. Also used for record sets.
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>>;
    /// A non-null array whose elements `f` decodes.
    fn array<T>(&mut self, f: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>>;
    /// A nullable array whose elements `f` decodes.
    fn nullable_array<T>(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Option<Vec<T>>>;
    /// The tagged-field section of a flexible struct. `known` lists the tags the caller
    /// understands; for each known tag present, `f(self, tag)` decodes its value from a source
    /// limited to the field's bytes. Unknown tags are kept, as raw bytes, in the returned map
    /// (they must be preserved, not rejected: a newer broker may send them).
    fn tagged_fields(
        &mut self,
        known: &[u32],
        f: impl FnMut(&mut Self, u32) -> Result<()>,
    ) -> Result<BTreeMap<i32, Bytes>>;
}

/// Reads the tagged-field section only when the message is flexible; a no-op otherwise.
pub fn tagged_fields_if_flexible<S: Source>(
    src: &mut S,
    known: &[u32],
    f: impl FnMut(&mut S, u32) -> Result<()>,
) -> Result<BTreeMap<i32, Bytes>> {
    if src.flexible() {
        src.tagged_fields(known, f)
    } else {
        Ok(BTreeMap::new())
    }
}

/// Reads a flexible struct's tagged fields when none is known to the decoder.
pub fn unknown_tagged_fields<S: Source>(src: &mut S) -> Result<BTreeMap<i32, Bytes>> {
    tagged_fields_if_flexible(src, &[], |_, _| Ok(()))
}

/// The bounded, zero-copy reader over a response body.
///
/// Every read checks the remaining length first; strings and byte fields are `Bytes` slices of
/// the frame (no copy); arrays never pre-allocate from a wire count.
#[derive(Debug, Clone)]
pub struct ByteSource {
    buf: Bytes,
    pos: usize,
    flexible: bool,
    /// Position of `buf[0]` within the whole frame, for error messages.
    base: usize,
}

/// Upper bound on the initial capacity of a decoded array; further growth is driven by
/// elements actually decoded.
const MAX_PREALLOC: usize = 16;

impl ByteSource {
    /// A reader over `buf` for a message that is (or is not) flexible.
    pub fn new(buf: Bytes, flexible: bool) -> Self {
        ByteSource {
            buf,
            pos: 0,
            flexible,
            base: 0,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the next byte within the frame.
    pub fn position(&self) -> usize {
        self.base + self.pos
    }

    /// Fails unless every byte was consumed (trailing garbage means the decoder and the broker
    /// disagree about the layout, which must not pass silently).
    pub fn finish(&self, what: &'static str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::malformed(
                what,
                self.position(),
                format!("{} trailing bytes", self.remaining()),
            ));
        }
        Ok(())
    }

    fn need(&self, n: usize, what: &'static str) -> Result<()> {
        if self.remaining() < n {
            return Err(Error::Truncated {
                what,
                offset: self.position(),
                needed: n,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes> {
        self.need(n, what)?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn array_fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        self.need(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// An unsigned LEB128 varint of at most 5 bytes (a u32).
    pub fn uvarint(&mut self) -> Result<u32> {
        let start = self.position();
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.array_fixed::<1>("varint")?[0];
            if i == 4 && b > 0x0f {
                return Err(Error::malformed(
                    "varint",
                    start,
                    "unsigned varint overflows 32 bits",
                ));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::malformed(
            "varint",
            start,
            "unsigned varint longer than 5 bytes",
        ))
    }

    /// Length of a string/bytes field: `None` for null. Compact lengths are N+1 (0 = null).
    fn length(&mut self, what: &'static str, wide: bool) -> Result<Option<usize>> {
        let at = self.position();
        if self.flexible {
            let n = self.uvarint()?;
            if n == 0 {
                Ok(None)
            } else {
                Ok(Some(n as usize - 1))
            }
        } else {
            let n = if wide {
                i32::from_be_bytes(self.array_fixed::<4>(what)?)
            } else {
                i32::from(i16::from_be_bytes(self.array_fixed::<2>(what)?))
            };
            match n {
                -1 => Ok(None),
                n if n < 0 => Err(Error::malformed(what, at, format!("negative length {n}"))),
                n => Ok(Some(n as usize)),
            }
        }
    }

    fn count(&mut self) -> Result<Option<usize>> {
        let at = self.position();
        let n = if self.flexible {
            match self.uvarint()? {
                0 => None,
                n => Some(n as usize - 1),
            }
        } else {
            match i32::from_be_bytes(self.array_fixed::<4>("array length")?) {
                -1 => None,
                n if n < 0 => {
                    return Err(Error::malformed("array", at, format!("negative count {n}")))
                }
                n => Some(n as usize),
            }
        };
        if let Some(n) = n {
            // Every element takes at least one byte on the wire in any layout krust decodes.
            if n > self.remaining() {
                return Err(Error::malformed(
                    "array",
                    at,
                    format!(
                        "count {n} exceeds the {} bytes that remain",
                        self.remaining()
                    ),
                ));
            }
        }
        Ok(n)
    }

    fn elements<T>(
        &mut self,
        n: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            let before = self.pos;
            out.push(f(self)?);
            if self.pos == before {
                // A zero-width element could repeat `n` times for free; with the count bounded by
                // the remaining bytes this is still bounded, but no real layout does it.
                return Err(Error::malformed(
                    "array",
                    self.position(),
                    "array element occupied no bytes",
                ));
            }
        }
        Ok(out)
    }
}

impl Source for ByteSource {
    fn flexible(&self) -> bool {
        self.flexible
    }
    fn bool(&mut self) -> Result<bool> {
        Ok(self.array_fixed::<1>("bool")?[0] != 0)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array_fixed::<1>("int8")?))
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array_fixed::<2>("int16")?))
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array_fixed::<2>("uint16")?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array_fixed::<4>("int32")?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array_fixed::<4>("uint32")?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array_fixed::<8>("int64")?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array_fixed::<8>("float64")?))
    }
    fn uuid(&mut self) -> Result<Uuid> {
        Ok(Uuid::from_bytes(self.array_fixed::<16>("uuid")?))
    }
    fn string(&mut self) -> Result<StrBytes> {
        let at = self.position();
        self.nullable_string()?
            .ok_or_else(|| Error::malformed("string", at, "null where a string is required"))
    }
    fn nullable_string(&mut self) -> Result<Option<StrBytes>> {
        let at = self.position();
        match self.length("string", false)? {
            None => Ok(None),
            Some(n) => {
                let raw = self.take(n, "string")?;
                StrBytes::from_utf8(raw)
                    .map(Some)
                    .map_err(|_| Error::malformed("string", at, "invalid UTF-8"))
            }
        }
    }
    fn bytes(&mut self) -> Result<Bytes> {
        let at = self.position();
        self.nullable_bytes()?
            .ok_or_else(|| Error::malformed("bytes", at, "null where bytes are required"))
    }
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>> {
        match self.length("bytes", true)? {
            None => Ok(None),
            Some(n) => self.take(n, "bytes").map(Some),
        }
    }
    fn array<T>(&mut self, f: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let at = self.position();
        match self.count()? {
            None => Err(Error::malformed(
                "array",
                at,
                "null where an array is required",
            )),
            Some(n) => self.elements(n, f),
        }
    }
    fn nullable_array<T>(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        match self.count()? {
            None => Ok(None),
            Some(n) => self.elements(n, f).map(Some),
        }
    }
    fn tagged_fields(
        &mut self,
        known: &[u32],
        mut f: impl FnMut(&mut Self, u32) -> Result<()>,
    ) -> Result<BTreeMap<i32, Bytes>> {
        let at = self.position();
        let n = self.uvarint()? as usize;
        if n > self.remaining() {
            return Err(Error::malformed(
                "tagged fields",
                at,
                format!("{n} tagged fields in {} bytes", self.remaining()),
            ));
        }
        let mut unknown = BTreeMap::new();
        let mut last: Option<u32> = None;
        for _ in 0..n {
            let tag_at = self.position();
            let tag = self.uvarint()?;
            if last.is_some_and(|l| tag <= l) {
                return Err(Error::malformed(
                    "tagged fields",
                    tag_at,
                    "tags not in strictly increasing order",
                ));
            }
            last = Some(tag);
            let size = self.uvarint()? as usize;
            let field_base = self.position();
            let raw = self.take(size, "tagged field")?;
            if known.contains(&tag) {
                let mut sub = ByteSource {
                    buf: raw,
                    pos: 0,
                    flexible: self.flexible,
                    base: field_base,
                };
                f(&mut sub, tag)?;
                sub.finish("tagged field")?;
            } else {
                unknown.insert(tag as i32, raw);
            }
        }
        Ok(unknown)
    }
}
