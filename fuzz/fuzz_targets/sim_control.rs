#![no_main]
//! `cargo fuzz run -s none sim_control`: see `ctigate::fuzzing::sim_control` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("sim_control", data);
});
