//! Fuzz target `duration_config`: see `drydock_state_fuzz::duration_config` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drydock_state_fuzz::duration_config(data));
