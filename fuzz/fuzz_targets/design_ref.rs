//! Fuzz target `design_ref`: see `drydock_state_fuzz::design_ref` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drydock_state_fuzz::design_ref(data));
