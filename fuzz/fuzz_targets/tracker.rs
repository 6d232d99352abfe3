#![no_main]
//! `cargo fuzz run -s none tracker`: see `ctigate::fuzzing::tracker` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("tracker", data);
});
