//! The metrics a runtime emits, through the [`metrics`] facade: install any recorder (the
//! `drydock-state worker` command serves them in Prometheus text format with
//! `--metrics-addr`). Every metric carries the label `instance`.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `drydock_tasks_claimed_total` | counter | tasks claimed |
//! | `drydock_tasks_completed_total` | counter | tasks completed with `success` or `partial_success` |
//! | `drydock_tasks_failed_total` | counter | tasks completed with `failure` (an outcome, a handler error or a panic) |
//! | `drydock_tasks_terminated_total` | counter | tasks finished as `terminated` at their termination request |
//! | `drydock_tasks_requeued_total` | counter | tasks a handler sent back to the queue |
//! | `drydock_tasks_abandoned_total` | counter | claimed tasks left to the next leader (lease lost, shutdown deadline, refused write) |
//! | `drydock_tasks_recovered_total` | counter | orphans of older terms recovered on taking the lease |
//! | `drydock_term_changes_total` | counter | terms this instance took |
//! | `drydock_handler_duration_seconds` | histogram | how long each handler ran |
//! | `drydock_claim_to_start_seconds` | histogram | from a task's claim to its handler's start (waits for a busy key included) |
//! | `drydock_lease_held` | gauge | 1 while this instance acts as leader, else 0 |
//! | `drydock_tasks_running` | gauge | handlers running now |
//! | `drydock_tasks_queued` | gauge | queued tasks of the runtime's actions, sampled every poll interval while leader |

use metrics::{counter, gauge, histogram};
use std::time::Duration;

/// Counter: tasks claimed.
pub const TASKS_CLAIMED: &str = "drydock_tasks_claimed_total";
/// Counter: tasks completed with `success` or `partial_success`.
pub const TASKS_COMPLETED: &str = "drydock_tasks_completed_total";
/// Counter: tasks completed with `failure`.
pub const TASKS_FAILED: &str = "drydock_tasks_failed_total";
/// Counter: tasks finished as `terminated`.
pub const TASKS_TERMINATED: &str = "drydock_tasks_terminated_total";
/// Counter: tasks a handler sent back to the queue.
pub const TASKS_REQUEUED: &str = "drydock_tasks_requeued_total";
/// Counter: claimed tasks left to the next leader.
pub const TASKS_ABANDONED: &str = "drydock_tasks_abandoned_total";
/// Counter: orphans recovered on taking the lease.
pub const TASKS_RECOVERED: &str = "drydock_tasks_recovered_total";
/// Counter: terms taken.
pub const TERM_CHANGES: &str = "drydock_term_changes_total";
/// Histogram: handler run time, seconds.
pub const HANDLER_DURATION: &str = "drydock_handler_duration_seconds";
/// Histogram: claim to handler start, seconds.
pub const CLAIM_TO_START: &str = "drydock_claim_to_start_seconds";
/// Gauge: 1 while leader.
pub const LEASE_HELD: &str = "drydock_lease_held";
/// Gauge: handlers running.
pub const TASKS_RUNNING: &str = "drydock_tasks_running";
/// Gauge: queued tasks, sampled.
pub const TASKS_QUEUED: &str = "drydock_tasks_queued";

/// The runtime's handle on its metrics, labelled with its instance.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    instance: String,
}

impl Metrics {
    pub(crate) fn new(instance: &str) -> Self {
        Metrics {
            instance: instance.to_string(),
        }
    }

    pub(crate) fn count(&self, name: &'static str, n: u64) {
        counter!(name, "instance" => self.instance.clone()).increment(n);
    }

    pub(crate) fn seconds(&self, name: &'static str, d: Duration) {
        histogram!(name, "instance" => self.instance.clone()).record(d.as_secs_f64());
    }

    pub(crate) fn set(&self, name: &'static str, value: f64) {
        gauge!(name, "instance" => self.instance.clone()).set(value);
    }
}
