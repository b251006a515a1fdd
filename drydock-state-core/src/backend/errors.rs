//! Error constructors shared by every backend, so that one failure reads the same whatever
//! stores the data.

use std::fmt;

use crate::error::Error;

/// A task is created with an id already taken.
pub fn task_exists(id: impl fmt::Display) -> Error {
    Error::Conflict(format!("task {id} already exists"))
}

/// A boot action is added with an id already taken.
pub fn boot_action_exists(id: impl fmt::Display) -> Error {
    Error::Conflict(format!("boot action {id} already exists"))
}

/// A purge retention too long to subtract from the current time (the store's or the
/// database's).
pub fn retention_too_large() -> Error {
    Error::invalid("purge.older_than", "is too large")
}
