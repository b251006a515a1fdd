//! `worker`: the orchestrator runtime running a shell command for each claimed task.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{value_parser, Args};

use super::{parse, Policy};

/// `worker --instance ID --action A... --exec CMD [--concurrency N] [--metrics-addr ADDR]`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// This worker's instance id: the lease holder and every claim's name. Each worker of a
    /// site needs its own.
    #[arg(long, value_name = "ID")]
    pub instance: String,
    /// Claim tasks with these actions (one or more).
    #[arg(long, value_name = "A", num_args = 1.., required = true)]
    pub action: Vec<String>,
    /// The command run (by `sh -c`) for each claimed task, with the task's JSON on stdin and
    /// DRYDOCK_TASK_ID, DRYDOCK_ACTION, DRYDOCK_ATTEMPT in its environment. Each stdout line
    /// becomes an info message of the task, each stderr line an error message; exit 0
    /// completes the task with success, any other exit with failure.
    #[arg(long, value_name = "CMD")]
    pub exec: String,
    /// How many commands run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Serve the worker's metrics in Prometheus text format at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// What becomes of a running task an older term left (recovered on taking the lease).
    #[arg(long, value_enum, default_value_t = Policy::Requeue)]
    pub recovery: Policy,
    /// After SIGTERM to a command (its task marked for termination, the lease lost, or the
    /// shutdown deadline), how long before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::retention)]
    pub kill_grace: Duration,
    /// On SIGTERM or SIGINT, how long running commands may go on before they are stopped
    /// and their tasks requeued; then the lease is released.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse::retention)]
    pub shutdown_deadline: Duration,
}
