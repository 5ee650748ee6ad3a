#![no_main]
use krust_wire::compression::Compression;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| krust_wire_fuzz::entry::codec(Compression::Zstd, data));
