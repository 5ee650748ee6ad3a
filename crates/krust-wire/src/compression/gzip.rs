//! gzip, through `zlib-rs` (a pure-Rust port of zlib-ng) used directly, without a C ABI layer.
//!
//! The compressor keeps its state per thread and resets it between calls: a deflate state is a
//! few hundred KiB of tables (window, hash chains, pending buffer), and allocating and zeroing
//! it for every batch costs a good part of compressing a small batch. One compressor is kept
//! per thread that compressed with gzip.
//!
//! Level: 6, zlib's `Z_DEFAULT_COMPRESSION`, which is what Kafka's Java client (level -1) and
//! librdkafka (`compression.level` -1) use by default. zlib-rs runs zlib-ng's level-6
//! strategy. Measured on 1000-record batch bodies (`benches/codecs.rs`): JSON-like values
//! compress to 20 002 bytes where C zlib 1.2.13 at level 6 gives 19 510 (2.5% larger) and
//! miniz_oxide 19 388; 100-byte `x` values to 4 136 bytes (zlib 4 144, miniz_oxide 4 138).

use std::cell::RefCell;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status};

use crate::error::{Error, Result};

const CODEC: &str = "gzip";
/// The deflate level: zlib's default, the peers' default.
const LEVEL: i32 = 6;
/// zlib's window bits for a 32 KiB window with a gzip wrapper (15 + 16).
const GZIP_WINDOW_BITS: u8 = 15 + 16;
/// The gzip member header (10 bytes) and trailer (8 bytes) around the deflate stream.
const GZIP_OVERHEAD: usize = 18;
/// The first output buffer of a decompression never exceeds this; it then doubles.
const FIRST_OUTPUT: usize = 1 << 20;

thread_local! {
    static DEFLATE: RefCell<Option<Deflate>> = const { RefCell::new(None) };
}

fn deflate_error(e: zlib_rs::DeflateError) -> Error {
    Error::compression(CODEC, e.as_str().to_string())
}

fn inflate_error(e: zlib_rs::InflateError) -> Error {
    Error::compression(CODEC, format!("invalid gzip data: {}", e.as_str()))
}

/// Compresses `input` as one gzip member at level 6, the level Kafka's Java client and
/// librdkafka use by default.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    DEFLATE.with(|cell| {
        // A re-entrant call (impossible today) would get a fresh state instead of a panic.
        let mut fresh = None;
        let mut guard = cell.try_borrow_mut().ok();
        let slot = guard.as_deref_mut().unwrap_or(&mut fresh);
        let deflate = slot.get_or_insert_with(|| {
            Deflate::new_with_config(DeflateConfig {
                window_bits: i32::from(GZIP_WINDOW_BITS),
                ..DeflateConfig::new(LEVEL)
            })
        });
        deflate.reset();
        let result = compress_with(deflate, input);
        if result.is_err() {
            // Never reuse a state that failed part-way.
            *slot = None;
        }
        result
    })
}

fn compress_with(deflate: &mut Deflate, input: &[u8]) -> Result<Vec<u8>> {
    // zlib's bound for one call with Finish, plus the gzip wrapper: normally one call ends it.
    let mut out = vec![0u8; zlib_rs::compress_bound(input.len()) + GZIP_OVERHEAD];
    loop {
        let read = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
        let written = usize::try_from(deflate.total_out()).unwrap_or(usize::MAX);
        let rest = input.get(read..).unwrap_or_default();
        let status = deflate
            .compress(rest, &mut out[written..], DeflateFlush::Finish)
            .map_err(deflate_error)?;
        let written = usize::try_from(deflate.total_out()).unwrap_or(usize::MAX);
        if status == Status::StreamEnd {
            out.truncate(written);
            return Ok(out);
        }
        // Out of room (not expected within the bound): grow and go on.
        let grow = out.len().max(64);
        out.resize(out.len() + grow, 0);
    }
}

/// Decompresses gzip data (several concatenated members are accepted, as the gzip format
/// allows), failing once the output would exceed `limit` bytes.
///
/// The output buffer grows by doubling from at most 1 MiB and never past `limit + 1` bytes,
/// whatever the input claims.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    // A fresh state per call: it is small (the 32 KiB window is allocated on first use), and
    // `Inflate::reset` can only return to a zlib (not gzip) wrapper.
    let mut inflate = Inflate::new(true, GZIP_WINDOW_BITS);
    decompress_with(&mut inflate, input, limit)
}

fn decompress_with(inflate: &mut Inflate, input: &[u8], limit: usize) -> Result<Vec<u8>> {
    // The largest output buffer: one byte past the limit tells "exceeds" from "exactly fits".
    let cap = limit.saturating_add(1);
    let first = input
        .len()
        .saturating_mul(4)
        .clamp(64, FIRST_OUTPUT)
        .min(cap);
    let mut out = vec![0u8; first];
    let mut filled = 0;
    let mut consumed = 0;
    loop {
        let before_in = inflate.total_in();
        let before_out = inflate.total_out();
        let status = inflate
            .decompress(
                &input[consumed..],
                &mut out[filled..],
                InflateFlush::NoFlush,
            )
            .map_err(inflate_error)?;
        let (read, wrote) = (
            progress(inflate.total_in(), before_in),
            progress(inflate.total_out(), before_out),
        );
        consumed += read;
        filled += wrote;
        if filled > limit {
            return Err(super::too_large(CODEC, limit));
        }
        match status {
            Status::StreamEnd if consumed == input.len() => {
                out.truncate(filled);
                return Ok(out);
            }
            // Another member follows: a new state reads its header.
            Status::StreamEnd => *inflate = Inflate::new(true, GZIP_WINDOW_BITS),
            Status::Ok | Status::BufError => {
                if filled == out.len() {
                    // Output full: grow towards `cap` (reaching it full is the error above).
                    let len = out.len().saturating_mul(2).min(cap);
                    out.resize(len, 0);
                } else if consumed == input.len() || read + wrote == 0 {
                    return Err(Error::compression(
                        CODEC,
                        "truncated gzip data (the stream ends before its trailer)",
                    ));
                }
            }
        }
    }
}

fn progress(after: u64, before: u64) -> usize {
    usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn text(n: usize) -> Vec<u8> {
        let mut x: u32 = 7;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 7 == 0 {
                    b' '
                } else {
                    b"etaoinshrdlu"[(x >> 16) as usize % 12]
                }
            })
            .collect()
    }

    #[test]
    fn another_implementation_reads_what_krust_writes_and_the_reverse() {
        for n in [0, 1, 100, 70_000, 300_000] {
            let input = text(n);
            let ours = compress(&input).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&ours[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "miniz_oxide reads krust's gzip ({n} bytes)");

            let mut theirs = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            theirs.write_all(&input).unwrap();
            let theirs = theirs.finish().unwrap();
            assert_eq!(decompress(&theirs, n).unwrap(), input, "{n} bytes");
        }
    }

    #[test]
    fn the_reused_compressor_starts_clean_each_time() {
        let a = text(50_000);
        let b = text(3_000);
        let first = compress(&a).unwrap();
        let _ = compress(&b).unwrap();
        assert_eq!(compress(&a).unwrap(), first, "same input, same output");
        assert_eq!(decompress(&first, a.len()).unwrap(), a);
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted_and_one_byte_over_is_not() {
        let input = text(10_000);
        let packed = compress(&input).unwrap();
        assert_eq!(decompress(&packed, input.len()).unwrap(), input);
        let err = decompress(&packed, input.len() - 1).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn truncated_corrupt_and_empty_inputs_are_errors() {
        let packed = compress(&text(10_000)).unwrap();
        for cut in [0, 1, 10, packed.len() / 2, packed.len() - 1] {
            assert!(decompress(&packed[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        let mut bad = packed.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let crc = bad.len() - 8;
        let mut bad_crc = packed.clone();
        bad_crc[crc] ^= 1;
        for input in [bad, bad_crc, b"not gzip at all".to_vec()] {
            assert!(decompress(&input, 1 << 20).is_err());
        }
        // Trailing garbage after a complete member is not a second member.
        let mut trailing = packed;
        trailing.extend_from_slice(b"junk");
        assert!(decompress(&trailing, 1 << 20).is_err());
    }
}
