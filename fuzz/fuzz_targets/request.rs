#![no_main]
//! `cargo fuzz run -s none request`: see `ctigate::fuzzing::request_line` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("request", data);
});
