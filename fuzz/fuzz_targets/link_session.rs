#![no_main]
//! `cargo fuzz run -s none link_session`: see `ctigate::fuzzing::link_session` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("link_session", data);
});
