//! gzip, through `flate2`'s pure-Rust backend (miniz_oxide).

use std::io::Write;

use crate::error::{Error, Result};

const CODEC: &str = "gzip";

/// Compresses `input` as one gzip member at level 6, the level Kafka's Java client and
/// librdkafka use by default.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(input.len() / 2 + 64),
        flate2::Compression::new(6),
    );
    enc.write_all(input)
        .and_then(|()| enc.finish())
        .map_err(|e| Error::compression(CODEC, e.to_string()))
}

/// Decompresses gzip data (several concatenated members are accepted, as the gzip format
/// allows), failing once the output would exceed `limit` bytes.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    super::read_bounded(
        CODEC,
        flate2::read::MultiGzDecoder::new(input),
        limit,
        input.len().saturating_mul(4),
    )
}
