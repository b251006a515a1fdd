//! Configuration: defaults, then a TOML file, then `DRYDOCK_`-prefixed environment variables
//! (`__` separates levels: `DRYDOCK_DATABASE__POOL_SIZE=20`).
//!
//! Durations are written as a number of seconds or a human string (`30s`, `5m`, `1h 30m`),
//! and none may exceed [`MAX_DURATION`] (`36500d`, 100 years).
//! A bad value is an [`Error::Config`](crate::Error::Config) naming the key and where it came
//! from; the value is never echoed, so a misplaced password cannot leak through an error
//! message.
//!
//! The module is split by concern: [`Config`] and its sections with their loading and checks,
//! [`duration`] for parsing and bounding durations, and redaction
//! ([`Config::to_redacted_json`]).

pub mod duration;
mod loading;
mod redaction;

pub use duration::{parse_duration, MAX_DURATION};
pub use loading::{
    check_schema_name, Config, DatabaseConfig, DesignConfig, LeaderConfig, DEFAULT_SCHEMA,
    ENV_PREFIX,
};
