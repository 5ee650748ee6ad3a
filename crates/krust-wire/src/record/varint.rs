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
pub fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

/// Encoded length of `v` as a zig-zag varlong.
pub fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
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
}
