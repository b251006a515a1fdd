//! Fuzz target `task_json`: see `drydock_state_fuzz::task_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drydock_state_fuzz::task_json(data));
