//! Zig-zag varints (protobuf style) as record batches v2 use them, with overflow checks.

use crate::error::{Error, Result};

/// Appends `v` as a zig-zag varint (at most 5 bytes).
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint64(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends `v` as a zig-zag varlong (at most 10 bytes).
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_uvarint64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encoded length of `v` as a zig-zag varint.
#[inline]
pub fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

/// Encoded length of `v` as a zig-zag varlong.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

#[inline]
#[allow(clippy::manual_div_ceil)] // measured: cheaper than `div_ceil` here (see below)
fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    // `bits` is 1..=64: no overflow, and a division by a constant is a multiply (where
    // `div_ceil` adds a remainder test).
    (bits + 6) / 7
}

/// Zig-zag of an `i32`, as the unsigned value a varint carries.
#[inline(always)]
pub(crate) fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

/// Zig-zag of an `i64`, as the unsigned value a varlong carries.
#[inline(always)]
pub(crate) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Size of [`Staged`]'s array: a power of two, so indices masked with `STAGE - 1` need no
/// bounds check, and room for a [`CHUNK`]-byte copy from anywhere a record's fields start.
const STAGE: usize = 64;

/// Staged bytes are appended in fixed chunks of this size (then the vector is truncated to
/// what was staged): a fixed-size copy compiles to two moves, where a short copy of variable
/// length is a call to `memcpy`.
const CHUNK: usize = 32;

/// Room kept in front of the staged bytes for a length prefix (a varint of at most 5 bytes).
const PREFIX_ROOM: usize = 5;

/// A few varints staged on the stack and appended to a vector in one copy: a record's small
/// leading fields, with its length prefix written in front once the length is known.
///
/// The caller keeps the positions (in locals, so they live in registers): fields are staged
/// from [`Staged::FIRST`] on, at most `CHUNK - FIRST` bytes (a record stages at most
/// 1 + 10 + 5 + 5 + 5 bytes), and the prefix goes in the room in front.
pub(crate) struct Staged {
    buf: [u8; STAGE],
}

impl Staged {
    /// Where the first field goes (after the prefix room).
    pub(crate) const FIRST: usize = PREFIX_ROOM;

    /// Nothing staged (all zero).
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Staged { buf: [0; STAGE] }
    }

    /// Stages one byte at `at`; returns the position after it.
    #[inline(always)]
    pub(crate) fn put_u8(&mut self, at: usize, b: u8) -> usize {
        debug_assert!(at < CHUNK);
        self.buf[at & (STAGE - 1)] = b;
        at + 1
    }

    /// Stages an unsigned varint (the zig-zag value of a varint or varlong) at `at`; returns
    /// the position after it.
    #[inline(always)]
    pub(crate) fn put_uvarint(&mut self, at: usize, z: u64) -> usize {
        if z < 0x80 {
            self.put_u8(at, z as u8)
        } else if z < 0x4000 {
            self.put_u8(at, z as u8 | 0x80);
            self.put_u8(at + 1, (z >> 7) as u8)
        } else {
            put_long_uvarint(&mut self.buf, at, z)
        }
    }

    /// Stages an unsigned varint below 2^14 (one or two bytes) at `at`; returns the position
    /// after it.
    #[inline(always)]
    pub(crate) fn put_short(&mut self, at: usize, z: u64) -> usize {
        debug_assert!(z < 1 << 14);
        if z < 0x80 {
            self.put_u8(at, z as u8)
        } else {
            self.put_u8(at, z as u8 | 0x80);
            self.put_u8(at + 1, (z >> 7) as u8)
        }
    }

    /// Writes `v` as a zig-zag varint right before [`Staged::FIRST`]; returns where it starts.
    #[inline(always)]
    pub(crate) fn prefix_varint(&mut self, v: i32) -> usize {
        let z = zigzag32(v);
        if z < 0x80 {
            self.buf[PREFIX_ROOM - 1] = z as u8;
            PREFIX_ROOM - 1
        } else if z < 0x4000 {
            self.buf[PREFIX_ROOM - 2] = z as u8 | 0x80;
            self.buf[PREFIX_ROOM - 1] = (z >> 7) as u8;
            PREFIX_ROOM - 2
        } else {
            prefix_long(&mut self.buf, z)
        }
    }

    /// Appends the staged bytes `from..to` to `out`.
    #[inline(always)]
    pub(crate) fn append(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        append_range(&self.buf, from, to, out);
    }
}

/// Appends `buf[from..to]` (at most [`CHUNK`] bytes, `from + CHUNK <= STAGE`).
#[inline(always)]
fn append_range(buf: &[u8; STAGE], from: usize, to: usize, out: &mut Vec<u8>) {
    let len = out.len();
    if out.capacity() - len >= CHUNK {
        let from = from & (STAGE - CHUNK - 1);
        out.extend_from_slice(&buf[from..from + CHUNK]);
        out.truncate(len + (to - from));
    } else {
        out.extend_from_slice(&buf[from..to]);
    }
}

#[inline(never)]
fn put_long_uvarint(buf: &mut [u8; STAGE], mut end: usize, mut z: u64) -> usize {
    while z >= 0x80 {
        buf[end & (STAGE - 1)] = z as u8 | 0x80;
        end += 1;
        z >>= 7;
    }
    buf[end & (STAGE - 1)] = z as u8;
    end + 1
}

/// Writes `z` right-aligned in the prefix room; returns where it starts.
#[inline(never)]
fn prefix_long(buf: &mut [u8; STAGE], mut z: u64) -> usize {
    let start = PREFIX_ROOM - uvarint_len(z);
    for b in &mut buf[start..PREFIX_ROOM] {
        *b = if z >= 0x80 { z as u8 | 0x80 } else { z as u8 };
        z >>= 7;
    }
    start
}

/// Reads an unsigned varint of at most `max_bytes` bytes holding at most `bits` bits from the
/// front of `buf`; returns the value and the bytes used.
fn get_uvarint(buf: &[u8], max_bytes: usize, bits: u32, at: usize) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(i) else {
            return Err(Error::Truncated {
                what: "varint",
                offset: at + i,
                needed: 1,
                remaining: 0,
            });
        };
        let shift = 7 * i as u32;
        let chunk = u64::from(b & 0x7f);
        if i == max_bytes - 1 {
            // The last byte may only carry the bits that remain.
            let left = bits - shift;
            if b & 0x80 != 0 || chunk >> left != 0 {
                return Err(Error::malformed(
                    "varint",
                    at,
                    format!("varint overflows {bits} bits"),
                ));
            }
        }
        value |= chunk << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(Error::malformed("varint", at, "varint too long"))
}

/// A varint of one or two bytes at the front of `buf` (14 bits fit any width), or `None` for
/// a longer one or too few bytes (then the general decoder decides).
#[inline]
fn short_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let b0 = *buf.first()?;
    if b0 < 0x80 {
        return Some((u64::from(b0), 1));
    }
    let b1 = *buf.get(1)?;
    if b1 < 0x80 {
        return Some((u64::from(b0 & 0x7f) | (u64::from(b1) << 7), 2));
    }
    None
}

/// Reads a zig-zag varint (`i32`) from the front of `buf`: the value and the bytes used.
/// `at` is the position of `buf[0]`, for error messages.
#[inline]
pub fn get_varint(buf: &[u8], at: usize) -> Result<(i32, usize)> {
    // One or two bytes: every length and delta below 8 KiB (the common case in a batch).
    if let Some((u, n)) = short_uvarint(buf) {
        let u = u as u32;
        return Ok((((u >> 1) as i32) ^ -((u & 1) as i32), n));
    }
    let (u, n) = get_uvarint(buf, 5, 32, at)?;
    let u = u as u32;
    Ok((((u >> 1) as i32) ^ -((u & 1) as i32), n))
}

/// Reads a zig-zag varlong (`i64`) from the front of `buf`: the value and the bytes used.
#[inline]
pub fn get_varlong(buf: &[u8], at: usize) -> Result<(i64, usize)> {
    if let Some((u, n)) = short_uvarint(buf) {
        return Ok((((u >> 1) as i64) ^ -((u & 1) as i64), n));
    }
    let (u, n) = get_uvarint(buf, 10, 64, at)?;
    Ok((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_encoding_at_every_width() {
        let mut values = vec![0u64, u64::MAX];
        for k in 1..64 {
            values.extend([(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
        }
        for z in values {
            let mut b = Vec::new();
            put_uvarint64(&mut b, z);
            assert_eq!(uvarint_len(z), b.len(), "{z:#x}");
        }
    }

    #[test]
    fn round_trips_edges() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            -8192,
            8192,
            -8193,
            i32::MAX,
            i32::MIN,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(get_varint(&b, 0).unwrap(), (v, b.len()));
        }
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            -8192,
            8192,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v));
            assert_eq!(get_varlong(&b, 0).unwrap(), (v, b.len()));
        }
    }

    #[test]
    fn the_short_path_agrees_with_the_general_decoder_on_every_two_byte_input() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for buf in [&[b0][..], &[b0, b1][..], &[b0, b1, 0x01][..]] {
                    let general = get_uvarint(buf, 5, 32, 0).map(|(u, n)| {
                        let u = u as u32;
                        (((u >> 1) as i32) ^ -((u & 1) as i32), n)
                    });
                    assert_eq!(get_varint(buf, 0).ok(), general.ok(), "{buf:?}");
                    let general = get_uvarint(buf, 10, 64, 0)
                        .map(|(u, n)| (((u >> 1) as i64) ^ -((u & 1) as i64), n));
                    assert_eq!(get_varlong(buf, 0).ok(), general.ok(), "{buf:?}");
                }
            }
        }
    }

    #[test]
    fn rejects_overlong_and_overflowing() {
        assert!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0).is_err());
        assert!(get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 0).is_err());
        assert!(get_varint(&[0x80], 0).is_err());
        assert!(get_varlong(&[0xff; 10], 0).is_err());
        assert!(get_varlong(
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            0
        )
        .is_err());
        assert!(get_varlong(
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            0
        )
        .is_ok());
    }

    #[test]
    fn staged_fields_append_the_same_bytes_with_or_without_spare_capacity() {
        for z in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut st = Staged::new();
            let mid = st.put_uvarint(Staged::FIRST, z);
            let end = st.put_u8(mid, 0xab);
            let end = st.put_uvarint(end, z >> 3);
            let start = st.prefix_varint(-3);
            let mut expected = Vec::new();
            put_varint(&mut expected, -3);
            put_uvarint64(&mut expected, z);
            expected.push(0xab);
            put_uvarint64(&mut expected, z >> 3);
            for spare in [0, 1, 31, 32, 100] {
                let mut out = Vec::with_capacity(3 + spare);
                out.extend_from_slice(b"abc");
                out.shrink_to(3 + spare);
                st.append(start, mid, &mut out);
                st.append(mid, end, &mut out);
                assert_eq!(&out[..3], b"abc");
                assert_eq!(&out[3..], &expected[..], "z {z}, spare {spare}");
            }
        }
    }
}
