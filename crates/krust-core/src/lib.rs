//! krust-core (under construction).

pub mod accumulator;
pub mod backoff;
pub mod fetch;
pub mod partitioner;
pub mod group;
