#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod drydock;
pub mod http;
pub mod mysql;
pub mod postgres;
pub mod sql;
