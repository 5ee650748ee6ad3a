//! krust-core (under construction).

pub mod accumulator;
pub mod backoff;
pub mod fetch;
pub mod group;
pub mod idempotence;
pub mod partitioner;
pub mod txn;
pub mod window;
