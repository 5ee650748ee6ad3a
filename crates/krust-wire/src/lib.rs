//! krust-wire: the sans-IO bytes layer of krust.
//!


//! - [`api`]: the APIs krust speaks and version negotiation;
//! - [`responses`]: krust's own bounded decoders for every response it reads;

//! - [`protocol`]: the primitive decoding layer those decoders are written against.
//!
//! No tokio, no sockets, no C: everything here is a pure function of its input.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod protocol;
pub mod responses;

pub use api::{ApiKey, KafkaRequest};
pub use error::{Error, Result};
pub use kafka_protocol;
pub use responses::{decode_response, DecodeResponse};
