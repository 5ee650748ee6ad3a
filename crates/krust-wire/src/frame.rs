//! Size-prefixed frames: every Kafka request and response is a big-endian `i32` length followed
//! by that many bytes.
//!
//! The length is checked against a configured maximum *before* any buffer is reserved for the
//! body, so a corrupt or hostile 4-byte prefix cannot make the reader allocate gigabytes (the
//! bug class of decoders that trust lengths read off the wire).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// Default maximum frame size: 100 MiB, above Kafka's default `socket.request.max.bytes`
/// (100 MiB) and any sensible `fetch.max.bytes`.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

/// Incremental frame reader over a growing buffer (as filled from a socket).
#[derive(Debug, Clone)]
pub struct FrameReader {
    max: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameReader {
    /// A reader that rejects frames larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameReader { max }
    }

    /// The maximum frame size.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Splits one complete frame body off the front of `buf`, if one is there.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case, when the length prefix is
    /// already known, `buf` is reserved up to the frame's size (never beyond `max`), so the
    /// caller's next read fills it without repeated growth. A negative length or one over
    /// `max` is an error and the connection must be closed.
    pub fn try_read(&self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 || size as usize > self.max {
            return Err(Error::FrameTooLarge {
                size: i64::from(size),
                max: self.max,
            });
        }
        let size = size as usize;
        if buf.len() < 4 + size {
            buf.reserve(4 + size - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Reads every complete frame from a byte slice (a capture, a fuzz input). Trailing bytes
    /// that do not form a full frame are an error.
    pub fn read_all(&self, mut data: &[u8]) -> Result<Vec<Bytes>> {
        let mut frames = Vec::new();
        while !data.is_empty() {
            if data.len() < 4 {
                return Err(Error::Truncated {
                    what: "frame length",
                    offset: 0,
                    needed: 4,
                    remaining: data.len(),
                });
            }
            let size = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            if size < 0 || size as usize > self.max {
                return Err(Error::FrameTooLarge {
                    size: i64::from(size),
                    max: self.max,
                });
            }
            let size = size as usize;
            if data.len() - 4 < size {
                return Err(Error::Truncated {
                    what: "frame body",
                    offset: 4,
                    needed: size,
                    remaining: data.len() - 4,
                });
            }
            frames.push(Bytes::copy_from_slice(&data[4..4 + size]));
            data = &data[4 + size..];
        }
        Ok(frames)
    }
}

/// Appends a frame (length prefix and body) to `out`.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) -> Result<()> {
    let len = i32::try_from(body.len()).map_err(|_| Error::Encode {
        what: "frame",
        detail: format!("{} bytes do not fit a frame", body.len()),
    })?;
    out.reserve(4 + body.len());
    out.put_i32(len);
    out.put_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_across_partial_reads() {
        let mut wire = BytesMut::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, b"world!").unwrap();
        let all = wire.freeze();
        let r = FrameReader::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(f) = r.try_read(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversized_and_negative_lengths_before_allocating() {
        let r = FrameReader::new(1024);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            r.try_read(&mut buf),
            Err(Error::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() < 1024, "no reservation for a rejected frame");
        let mut neg = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(r.try_read(&mut neg).is_err());
        assert!(r.read_all(&[0, 0, 0, 9, 1]).is_err());
        assert!(r.read_all(&[0, 0]).is_err());
    }
}
