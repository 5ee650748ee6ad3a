//! Primitive protocol decoding: the [`Source`] trait that krust's response decoders are written
//! against, the bounded [`ByteSource`], and the [`RandomSource`] used to generate test messages.

mod random;
mod source;

pub use random::RandomSource;
pub use source::{tagged_fields_if_flexible, unknown_tagged_fields, ByteSource, Source};
