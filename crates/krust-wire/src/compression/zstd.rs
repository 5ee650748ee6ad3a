//! zstd: frames written by `rusty_zstd`, read by `ruzstd`.
//!
//! # Why two crates
//!
//! Measured on this project's machine (release build, 20 batches of 1000 Kafka-like JSON
//! records of 100 bytes each, 2.08 MB in all; one core shared with other work, so compare rows
//! rather than absolute values):
//!
//! | crate, level | ratio | encode MB/s | decode MB/s |
//! |---|---|---|---|
//! | `ruzstd` 0.8 `Fastest` (its best implemented level) | 4.68 | 135 | 603 |
//! | `ruzstd` 0.9 `Fastest` (0.9's `Default` panics "not implemented"; needs Rust 1.87) | 4.69 | 111 | 414 |
//! | `rusty_zstd` 0.4.1 level 1 | 5.36 | 635 | 1323 |
//! | `rusty_zstd` 0.4.1 level 3 (Kafka's default `compression.zstd.level`) | 5.74 | 506 | 1235 |
//! | `ruzstd` 0.8 decoding `rusty_zstd` level 3 frames | — | — | 507 |
//!
//! (See also `shared/reference/codecs.md`: on 14 MB of JSON, C libzstd level 3 gives ratio 23,
//! `rusty_zstd` level 3 14.3, `ruzstd` 5.2: ruzstd's encoder is far behind.)
//!
//! - **Encoding** uses `rusty_zstd` at level 3: about 4x faster than `ruzstd` with a ~20% better
//!   ratio here. Its input is the application's own records, never broker bytes, and every
//!   frame it writes is checked by krust's round-trip tests (decoded by `ruzstd`) and by the
//!   librdkafka interop script.
//! - **Decoding** — the path that parses untrusted bytes from brokers — uses `ruzstd`: older,
//!   widely used, fuzzed upstream, with far less `unsafe` (about 40 uses against about 430 in
//!   `rusty_zstd` 0.4.1, a young crate that also carries benchmarking hooks in its public API).
//!   It decodes at ~500 MB/s, faster than a consumer's network. Revisit once `rusty_zstd` has
//!   matured: its decoder is ~2.4x faster.
//!
//! In krust's own bench (`benches/records.rs`: batches of 1000 records, 100-byte JSON-like
//! values; 2 shared cores, so read relative values), a zstd batch encodes at ~270 MiB/s and
//! decodes at ~280 MiB/s of keys and values, ratio 5.1 (gzip level 6: 5.6 but 41 MiB/s to
//! encode; lz4 and snappy: 3.5 at ~600-700 MiB/s both ways).
//!
//! Before `ruzstd` sees a frame, its header is checked here: a window or declared content size
//! beyond the caller's limit is rejected without allocating (ruzstd reserves the window up
//! front, up to 100 MB).

use crate::error::{Error, Result};

const CODEC: &str = "zstd";
const MAGIC: u32 = 0xFD2F_B528;
/// Kafka's default `compression.zstd.level`.
pub const LEVEL: i32 = 3;
/// Windows up to this size are accepted whatever the output limit (encoders at Kafka's levels
/// use at most 8 MiB windows when they stream without knowing the content size).
const MIN_WINDOW_ALLOWED: u64 = 8 << 20;

/// Compresses `input` as one zstd frame at level 3.
pub fn compress(input: &[u8]) -> Result<Vec<u8>> {
    rusty_zstd::compress(input, LEVEL).map_err(|e| Error::compression(CODEC, e.to_string()))
}

/// Decompresses one or more zstd frames (skippable frames are skipped), failing once the output
/// would exceed `limit` bytes.
pub fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut rest = input;
    let mut out: Vec<u8> = Vec::new();
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    if rest.is_empty() {
        return Err(Error::compression(CODEC, "empty input"));
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Error::compression(CODEC, "truncated frame magic"));
        }
        let magic = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if (0x184D_2A50..=0x184D_2A5F).contains(&magic) {
            if rest.len() < 8 {
                return Err(Error::compression(CODEC, "truncated skippable frame"));
            }
            let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            if size > rest.len() - 8 {
                return Err(Error::compression(CODEC, "truncated skippable frame"));
            }
            rest = &rest[8 + size..];
            continue;
        }
        if magic != MAGIC {
            return Err(Error::compression(CODEC, "bad frame magic"));
        }
        check_frame_header(rest, limit.saturating_sub(out.len()), limit)?;
        let before = rest.len();
        let remaining_limit = limit.saturating_sub(out.len());
        let stream = ruzstd::decoding::StreamingDecoder::new_with_decoder(&mut rest, &mut decoder)
            .map_err(|e| Error::compression(CODEC, e.to_string()))?;
        let part = super::read_bounded(CODEC, stream, remaining_limit, before.saturating_mul(4))?;
        if rest.len() == before {
            return Err(Error::compression(CODEC, "frame consumed no input"));
        }
        if !decoder.is_finished() {
            return Err(Error::compression(CODEC, "truncated frame"));
        }
        if out.is_empty() {
            out = part;
        } else {
            out.extend_from_slice(&part);
        }
    }
    Ok(out)
}

/// Rejects a frame whose window or declared content size is beyond what the caller allows,
/// before the decoder reserves memory for it.
fn check_frame_header(frame: &[u8], remaining: usize, limit: usize) -> Result<()> {
    let fhd = *frame
        .get(4)
        .ok_or_else(|| Error::compression(CODEC, "truncated frame header"))?;
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let mut at = 5;
    if !single_segment {
        let wd = *frame
            .get(at)
            .ok_or_else(|| Error::compression(CODEC, "truncated frame header"))?;
        at += 1;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        let window = base + (base >> 3) * u64::from(wd & 7);
        let allowed = (limit as u64).max(MIN_WINDOW_ALLOWED);
        if window > allowed {
            return Err(Error::compression(
                CODEC,
                format!("frame window of {window} bytes exceeds the allowed {allowed}"),
            ));
        }
    }
    at += dict_len;
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => 0,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    if fcs_len > 0 {
        let raw = frame
            .get(at..at + fcs_len)
            .ok_or_else(|| Error::compression(CODEC, "truncated frame header"))?;
        let mut buf = [0u8; 8];
        buf[..fcs_len].copy_from_slice(raw);
        let mut size = u64::from_le_bytes(buf);
        if fcs_len == 2 {
            size += 256;
        }
        if size > remaining as u64 {
            return Err(super::too_large(CODEC, limit));
        }
    }
    Ok(())
}
