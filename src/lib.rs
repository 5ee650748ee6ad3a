//! krust: a Kafka client written directly on the Kafka wire protocol, in Rust only.
//!
//! This facade re-exports the layers:
//! - [`wire`]: sans-IO bytes (frames, envelopes, version negotiation, record batches, codecs);
//! - [`core`]: sans-IO client logic (partitioners, accumulators, backoff);
//! - [`client`]: the tokio driver with the public `Producer`, `Consumer` and `Admin`.
#![warn(missing_docs)]

pub use krust_client as client;
pub use krust_core as core;
pub use krust_wire as wire;
