#![no_main]
//! `cargo fuzz run -s none sim_switch`: see `ctigate::fuzzing::sim_switch` for what is asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctigate_fuzz::check("sim_switch", data);
});
