#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| krust_wire_fuzz::scram::scram(data));
