#![no_main]
//! `cargo fuzz run -s none hot_event`: see `ctigate_fuzz::check_hot_event` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ctigate_fuzz::check_hot_event(data));
