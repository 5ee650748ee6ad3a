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
/// The first output buffer of a decompression never exceeds this (see [`super::read_bounded`]).
const FIRST_OUTPUT: usize = 1 << 20;
/// A thread's compression output buffer is kept for its next batch up to this size (larger
/// ones, for unusually large batches, are freed after use).
const KEEP_OUTPUT: usize = 2 << 20;

thread_local! {
    static DEFLATE: RefCell<Option<Deflate>> = const { RefCell::new(None) };
    /// The thread's compression output buffer: zeroed once as it grows, then reused, so a batch
    /// costs a copy of its compressed bytes instead of a fresh zeroed `compress_bound` buffer.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn deflate_error(e: zlib_rs::DeflateError) -> Error {
    Error::compression(CODEC, e.as_str().to_string())
}

/// Compresses `input` as one gzip member at level 6, the level Kafka's Java client and
/// librdkafka use by default.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    compress_append(input, &mut out)?;
    Ok(out)
}

/// [`compress`] onto the end of `out`.
pub fn compress_append(input: &[u8], dest: &mut Vec<u8>) -> Result<()> {
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
        let result = OUTPUT.with(|out| {
            let mut fresh = Vec::new();
            let mut guard = out.try_borrow_mut().ok();
            let out = guard.as_deref_mut().unwrap_or(&mut fresh);
            let result =
                compress_into(deflate, input, out).map(|n| dest.extend_from_slice(&out[..n]));
            if out.len() > KEEP_OUTPUT {
                *out = Vec::new();
            }
            result
        });
        if result.is_err() {
            // Never reuse a state that failed part-way.
            *slot = None;
        }
        result
    })
}

/// Compresses `input` into the front of `out` (grown as needed, never shrunk), returning how
/// many bytes were written.
fn compress_into(deflate: &mut Deflate, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
    // zlib's bound for one call with Finish, plus the gzip wrapper: normally one call ends it.
    let bound = zlib_rs::compress_bound(input.len()) + GZIP_OVERHEAD;
    if out.len() < bound {
        out.resize(bound, 0);
    }
    loop {
        let read = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
        let written = usize::try_from(deflate.total_out()).unwrap_or(usize::MAX);
        let rest = input.get(read..).unwrap_or_default();
        let status = deflate
            .compress(rest, &mut out[written..], DeflateFlush::Finish)
            .map_err(deflate_error)?;
        let written = usize::try_from(deflate.total_out()).unwrap_or(usize::MAX);
        if status == Status::StreamEnd {
            return Ok(written);
        }
        // Out of room (not expected within the bound): grow and go on.
        let grow = out.len().max(64);
        out.resize(out.len() + grow, 0);
    }
}

/// Decompresses gzip data (several concatenated members are accepted, as the gzip format
/// allows), failing once the output would exceed `limit` bytes.
///
/// The output is read through `read_bounded`: it starts at most 1 MiB and memory stays
/// within about twice `limit`, whatever the input claims.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let hint = input.len().saturating_mul(4).clamp(64, FIRST_OUTPUT);
    super::read_bounded(CODEC, Members::new(input), limit, hint)
}

/// The decompressed bytes of concatenated gzip members, as a reader.
struct Members<'a> {
    input: &'a [u8],
    consumed: usize,
    inflate: Inflate,
    done: bool,
}

impl<'a> Members<'a> {
    fn new(input: &'a [u8]) -> Self {
        Members {
            input,
            consumed: 0,
            // A fresh state per member: it is small (the 32 KiB window is allocated on first
            // use), and `Inflate::reset` can only return to a zlib (not gzip) wrapper.
            inflate: Inflate::new(true, GZIP_WINDOW_BITS),
            done: false,
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl std::io::Read for Members<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            let before_in = self.inflate.total_in();
            let before_out = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(&self.input[self.consumed..], buf, InflateFlush::NoFlush)
                .map_err(|e| invalid(format!("invalid gzip data: {}", e.as_str())))?;
            let read = progress(self.inflate.total_in(), before_in);
            let wrote = progress(self.inflate.total_out(), before_out);
            self.consumed += read;
            match status {
                Status::StreamEnd if self.consumed == self.input.len() => self.done = true,
                // Another member follows: a new state reads its header.
                Status::StreamEnd => self.inflate = Inflate::new(true, GZIP_WINDOW_BITS),
                Status::Ok | Status::BufError => {
                    if wrote == 0 && (self.consumed == self.input.len() || read == 0) {
                        return Err(invalid(
                            "truncated gzip data (the stream ends before its trailer)".into(),
                        ));
                    }
                }
            }
            if wrote > 0 {
                return Ok(wrote);
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
    fn the_reused_output_buffer_hands_back_only_this_batch() {
        // A large batch (beyond the kept size), then smaller ones: each result is exactly its
        // own stream, nothing left over from the buffer's earlier, longer contents.
        let big = text(3 << 20);
        let small = text(2_000);
        for input in [&big, &small, &text(40_000), &small] {
            let packed = compress(input).unwrap();
            assert_eq!(&decompress(&packed, input.len()).unwrap(), input);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, input);
        }
    }

    #[test]
    fn concatenated_members_decode_to_their_concatenation() {
        let (a, b) = (text(5_000), text(70_000));
        let mut both = compress(&a).unwrap();
        both.extend_from_slice(&compress(&b).unwrap());
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(decompress(&both, want.len()).unwrap(), want);
        let err = decompress(&both, want.len() - 1).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
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
