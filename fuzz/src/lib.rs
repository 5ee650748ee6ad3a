//! The fuzz targets' library: only re-exports [`entry`], so that the targets and
//! `crates/krust-wire/tests/corpus.rs` (which includes `entry.rs` by path, on stable) drive
//! exactly the same code.

pub mod entry;
