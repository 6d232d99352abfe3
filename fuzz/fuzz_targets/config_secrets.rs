#![no_main]
//! `cargo fuzz run -s none config_secrets`: see `ctigate::fuzzing::config_secrets`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("config_secrets", data);
});
