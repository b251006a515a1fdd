//! The oracles the fuzz targets run, shared with drydock-state-core's regression test
//! (`drydock-state-core/tests/fuzz_regressions.rs`), which replays saved inputs through them.

#[path = "../../drydock-state-core/tests/fuzz_oracles/mod.rs"]
mod oracles;

pub use oracles::*;
