//! krust-wire: the sans-IO bytes layer of krust.
//!
//! - [`frame`]: size-prefixed frames with a maximum size checked before allocation;
//! - [`header`]: request header encoding and response header decoding;
//! - [`api`]: the APIs krust speaks and the versions it supports;
//! - [`responses`]: krust's own bounded decoders for every response it reads;
//! - [`versions`]: version negotiation against a broker's ApiVersions answer;
//! - [`error_code`]: Kafka error codes and the one retry classifier;
//! - [`record`]: record batches (v2 read/write, legacy v0/v1 read), CRC32C, varints;
//! - [`compression`]: gzip, snappy, lz4 and zstd in pure Rust, with bounded decompression;
//! - [`protocol`]: the primitive decoding layer those decoders are written against;
//! - [`hint`]: cache hints for memory about to be written or read.
//!
//! No tokio, no sockets, no C: everything here is a pure function of its input. No `unsafe`
//! either, but in two places: [`record::crc`]'s SIMD checksum, entered once the CPU is known to
//! have its instructions, and [`hint`]'s prefetch instructions.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod compression;
pub mod error;
pub mod error_code;
pub mod features;
pub mod frame;
pub mod group_protocol;
pub mod header;
pub mod hint;
pub mod protocol;
pub mod record;
pub mod responses;
pub mod versions;

pub use api::{ApiKey, KafkaRequest};
pub use error::{Error, Result};
pub use error_code::{classify, ErrorCode, Retry};
pub use kafka_protocol;
pub use responses::{decode_response, DecodeResponse};
pub use versions::BrokerVersions;
