//! lz4 in the LZ4 frame format Kafka uses, through `lz4_flex`.
//!
//! Kafka clients before 0.10 (KAFKA-3160) computed the frame descriptor's header checksum over
//! the magic number as well as the descriptor; such frames still sit in old topics (magic 0
//! messages). The decoder accepts either checksum, rewriting the broken one before handing the
//! frame to `lz4_flex`, and rejects any other value.

use std::borrow::Cow;
use std::hash::Hasher;
use std::io::Write;

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use crate::error::{Error, Result};

const CODEC: &str = "lz4";
const MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const FLG_DICT_ID: u8 = 0x01;
const FLG_CONTENT_SIZE: u8 = 0x08;

/// Compresses `input` as one LZ4 frame: 64 KiB independent blocks, no checksums (the batch
/// CRC32C covers the bytes), like Kafka's Java client.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    compress_append(input, &mut out)?;
    Ok(out)
}

/// [`compress`] onto the end of `out` (the frame encoder writes into `out` itself).
pub fn compress_append(input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent);
    let mut dest = std::mem::take(out);
    dest.reserve(input.len() / 2 + 64);
    let mut enc = FrameEncoder::with_frame_info(info, dest);
    enc.write_all(input)
        .map_err(|e| Error::compression(CODEC, e.to_string()))?;
    *out = enc
        .finish()
        .map_err(|e| Error::compression(CODEC, e.to_string()))?;
    Ok(())
}

/// Decompresses an LZ4 frame (correct or old-Kafka header checksum), failing once the output
/// would exceed `limit` bytes.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let fixed = fix_header_checksum(input)?;
    super::read_bounded(
        CODEC,
        FrameDecoder::new(&fixed[..]),
        limit,
        input.len().saturating_mul(3),
    )
}

fn xxh32_byte(data: &[u8]) -> u8 {
    let mut h = twox_hash::XxHash32::with_seed(0);
    h.write(data);
    // The header checksum is the second byte of the 32-bit hash.
    (h.finish() >> 8) as u8
}

/// Returns the frame with a correct header checksum, or an error if the checksum is neither
/// the correct one nor the one old Kafka clients computed.
fn fix_header_checksum(input: &[u8]) -> Result<Cow<'_, [u8]>> {
    if input.len() < 7 || input[..4] != MAGIC {
        return Err(Error::compression(CODEC, "not an LZ4 frame (bad magic)"));
    }
    let flg = input[4];
    let mut hc_at = 6;
    if flg & FLG_CONTENT_SIZE != 0 {
        hc_at += 8;
    }
    if flg & FLG_DICT_ID != 0 {
        hc_at += 4;
    }
    if input.len() <= hc_at {
        return Err(Error::compression(CODEC, "truncated LZ4 frame descriptor"));
    }
    let stored = input[hc_at];
    if stored == xxh32_byte(&input[4..hc_at]) {
        return Ok(Cow::Borrowed(input));
    }
    if stored == xxh32_byte(&input[..hc_at]) {
        let mut owned = input.to_vec();
        owned[hc_at] = xxh32_byte(&input[4..hc_at]);
        return Ok(Cow::Owned(owned));
    }
    Err(Error::compression(
        CODEC,
        "LZ4 frame header checksum mismatch",
    ))
}

/// Rewrites a frame's header checksum the way Kafka clients before 0.10 computed it (over the
/// magic number too). For tests of the decoder's compatibility path.
pub fn break_header_checksum(frame: &mut [u8]) -> Result<()> {
    if frame.len() < 7 || frame[..4] != MAGIC {
        return Err(Error::compression(CODEC, "not an LZ4 frame (bad magic)"));
    }
    let flg = frame[4];
    let mut hc_at = 6;
    if flg & FLG_CONTENT_SIZE != 0 {
        hc_at += 8;
    }
    if flg & FLG_DICT_ID != 0 {
        hc_at += 4;
    }
    if frame.len() <= hc_at {
        return Err(Error::compression(CODEC, "truncated LZ4 frame descriptor"));
    }
    frame[hc_at] = xxh32_byte(&frame[..hc_at]);
    Ok(())
}
