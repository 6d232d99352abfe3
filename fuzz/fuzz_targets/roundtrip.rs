#![no_main]
//! `cargo fuzz run -s none roundtrip`: see `ctigate_fuzz::check_roundtrip` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ctigate_fuzz::check_roundtrip(data));
