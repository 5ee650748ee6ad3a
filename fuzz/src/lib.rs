//! The fuzz targets' library: re-exports [`entry`], so that the targets and
//! `crates/krust-wire/tests/corpus.rs` (which includes `entry.rs` by path, on stable) drive
//! exactly the same code, and [`scram`], the one entry point that needs `krust-client`.

pub mod entry;
pub mod scram;
