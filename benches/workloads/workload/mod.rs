//! The workloads, by family, each measured by one function that returns what it measured;
//! its `figures` method sets the figures beside the baselines measured at the end of the run.

pub mod build_data;
pub mod claim;
pub mod design;
pub mod lease;
pub mod scale;
pub mod tasks;
