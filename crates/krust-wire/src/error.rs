//! The crate's error type. Every decoding failure says what was being read and where, so a
//! corrupt or hostile frame produces a message a person can act on, never a panic.

use std::borrow::Cow;

/// Result alias for krust-wire.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong turning bytes into values or values into bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes remained than the field needs.
    #[error("truncated {what} at byte {offset}: needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset within the frame or batch.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that remained.
        remaining: usize,
    },
    /// The bytes are present but do not form a valid value.
    #[error("malformed {what} at byte {offset}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Offset within the frame or batch.
        offset: usize,
        /// Why it is invalid.
        detail: Cow<'static, str>,
    },
    /// A frame announced a size over the configured maximum (checked before allocating).
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced size.
        size: i64,
        /// Configured maximum.
        max: usize,
    },
    /// No version of an API is supported by both sides.
    #[error("no common version for {api}: client supports {client_min}..={client_max}, broker supports {broker_min}..={broker_max}")]
    NoCommonVersion {
        /// The API's name.
        api: &'static str,
        /// Lowest version krust speaks.
        client_min: i16,
        /// Highest version krust speaks.
        client_max: i16,
        /// Lowest version the broker speaks.
        broker_min: i16,
        /// Highest version the broker speaks.
        broker_max: i16,
    },
    /// The broker does not offer an API at all.
    #[error("the broker does not support {api} (API key {key})")]
    UnsupportedApi {
        /// The API's name.
        api: &'static str,
        /// Its key.
        key: i16,
    },
    /// A version outside what krust's decoder for this API handles.
    #[error("{api} version {version} is not supported by krust's decoder")]
    UnsupportedVersion {
        /// The API's name.
        api: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A record batch failed its CRC32C check.
    #[error("record batch at offset {base_offset}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CorruptBatch {
        /// Base offset of the batch.
        base_offset: i64,
        /// CRC stored in the batch.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Compression or decompression failed, or a decompressed size crossed its bound.
    #[error("{codec}: {detail}")]
    Compression {
        /// The codec.
        codec: &'static str,
        /// What went wrong.
        detail: Cow<'static, str>,
    },
    /// Encoding a request failed (a value not representable in the chosen version).
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl Error {
    /// A [`Error::Malformed`] with a detail message.
    pub fn malformed(
        what: &'static str,
        offset: usize,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Malformed {
            what,
            offset,
            detail: detail.into(),
        }
    }

    /// A [`Error::Compression`] error.
    pub fn compression(codec: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Compression {
            codec,
            detail: detail.into(),
        }
    }

    /// Whether the error comes from bytes that could not be decoded (as opposed to a
    /// negotiation or configuration problem).
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            Error::Truncated { .. }
                | Error::Malformed { .. }
                | Error::CorruptBatch { .. }
                | Error::Compression { .. }
        )
    }
}
