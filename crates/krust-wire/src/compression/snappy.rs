//! snappy, through `snap`'s raw block codec, plus the xerial framing Java clients use.
//!
//! Java's producer wraps snappy blocks in the framing of xerial's `SnappyOutputStream`: an
//! 8-byte magic (`\x82SNAPPY\0`), two big-endian `i32`s (version, minimum compatible version),
//! then chunks of a big-endian `i32` length followed by one raw snappy block. librdkafka writes a
//! single raw block. krust decodes both (the magic tells them apart) and writes the xerial form,
//! which every client reads.

use crate::error::{Error, Result};

const CODEC: &str = "snappy";

/// The xerial stream magic.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version and compatible version.
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial chunk (Java's default block size).
const XERIAL_BLOCK: usize = 32 * 1024;

/// Compresses `input` in xerial framing (32 KiB chunks), as Java clients do.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    compress_append(input, &mut out)?;
    Ok(out)
}

/// [`compress`] onto the end of `out`.
pub fn compress_append(input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.reserve(XERIAL_HEADER_LEN + input.len() / 2 + 64);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK)];
    for chunk in input.chunks(XERIAL_BLOCK) {
        let n = enc
            .compress(chunk, &mut block)
            .map_err(|e| Error::compression(CODEC, e.to_string()))?;
        let len = i32::try_from(n).map_err(|_| Error::compression(CODEC, "chunk too large"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block[..n]);
    }
    Ok(())
}

/// Compresses `input` as one raw snappy block (librdkafka's form).
pub fn compress_raw(input: &[u8]) -> Result<Vec<u8>> {
    snap::raw::Encoder::new()
        .compress_vec(input)
        .map_err(|e| Error::compression(CODEC, e.to_string()))
}

/// Decompresses raw or xerial-framed snappy, failing once the output would exceed `limit`.
///
/// A raw block states its decompressed length up front, so the bound is checked before any
/// buffer is reserved.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    if input.len() >= XERIAL_MAGIC.len() && input[..XERIAL_MAGIC.len()] == XERIAL_MAGIC {
        decompress_xerial(input, limit)
    } else {
        let mut out = Vec::new();
        decompress_block(input, limit, &mut out)?;
        Ok(out)
    }
}

/// Appends the decompression of one raw block to `out`, keeping `out` within `limit` bytes.
fn decompress_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<()> {
    let n =
        snap::raw::decompress_len(block).map_err(|e| Error::compression(CODEC, e.to_string()))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(super::too_large(CODEC, limit));
    }
    let start = out.len();
    out.resize(start + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| Error::compression(CODEC, e.to_string()))?;
    out.truncate(start + written);
    Ok(())
}

fn decompress_xerial(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    if input.len() < XERIAL_HEADER_LEN {
        return Err(Error::compression(CODEC, "truncated xerial header"));
    }
    let mut rest = &input[XERIAL_HEADER_LEN..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Error::compression(CODEC, "truncated xerial chunk length"));
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = usize::try_from(len).map_err(|_| {
            Error::compression(CODEC, format!("negative xerial chunk length {len}"))
        })?;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(Error::compression(
                CODEC,
                format!("xerial chunk of {len} bytes with {} remaining", rest.len()),
            ));
        }
        decompress_block(&rest[..len], limit, &mut out)?;
        rest = &rest[len..];
    }
    Ok(out)
}
