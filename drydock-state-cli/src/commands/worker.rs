//! `worker`: the orchestrator runtime (`drydock_state::runtime`) with a shell command as the
//! handler of every claimed task.
//!
//! The command runs in a process group of its own, so that stopping it (its task marked for
//! termination, the lease lost, the shutdown deadline) reaches whatever it started: SIGTERM to
//! the group, then SIGKILL after `--kill-grace`. When the command exits, what it left running
//! in its group is killed. Its output becomes the task's messages line by line, in the order
//! the lines arrive; a line that is not UTF-8 is kept with replacement characters.

use std::io::Write;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use drydock_state::runtime::{Event, HandlerResult, Outcome, Runtime, TaskContext};
use drydock_state::{Config, Error, NewMessage, Result};
use metrics_exporter_prometheus::PrometheusBuilder;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{sleep_until, Instant};

use super::database_url;
use crate::args::{Output, WorkerArgs};
use crate::output::{redact, text, Outcome as Printed};

/// Runs until SIGTERM or SIGINT, printing the runtime's events as they happen.
pub async fn run(args: WorkerArgs, config: &Config, format: Output) -> Result<Printed> {
    if let Some(addr) = args.metrics_addr {
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| {
                Error::invalid(
                    "--metrics-addr",
                    format!("cannot serve metrics at {addr}: {e}"),
                )
            })?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let store = super::open(config).await?;
    let backend = store.backend_name();
    let command = Arc::new(Command {
        exec: args.exec,
        kill_grace: args.kill_grace,
    });
    let builder = Runtime::builder(store, args.instance.clone())
        .leader_config(&config.leader)
        .actions(args.action.iter().cloned())
        .concurrency(usize::from(args.concurrency))
        .recovery(args.recovery.into())
        .shutdown_deadline(args.shutdown_deadline);
    let events = builder.subscribe();
    let handle = builder.start(move |ctx: TaskContext| {
        let command = command.clone();
        async move { command.run(ctx).await }
    })?;
    print_line(
        format,
        &serde_json::json!({
            "event": "worker",
            "instance": args.instance,
            "backend": backend,
            "database": database_url(config),
            "actions": args.action,
            "concurrency": args.concurrency,
            "metrics": args.metrics_addr.map(|a| format!("http://{a}/metrics")),
        }),
        &format!(
            "worker {} on {backend} at {}: actions {}, concurrency {}{}",
            args.instance,
            database_url(config),
            args.action.join(", "),
            args.concurrency,
            args.metrics_addr
                .map(|a| format!(", metrics at http://{a}/metrics"))
                .unwrap_or_default()
        ),
    );
    let printer = tokio::spawn(print_events(events, format));
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    print_line(
        format,
        &serde_json::json!({"event": "signal", "instance": args.instance, "signal": signal}),
        &format!("{signal}: shutting down"),
    );
    handle.shutdown().await;
    let _ = printer.await;
    Ok(Printed::nothing())
}

fn signal_error(e: std::io::Error) -> Error {
    Error::invalid("signals", format!("cannot handle SIGTERM and SIGINT: {e}"))
}

/// Prints every event until the runtime has stopped.
async fn print_events(mut events: broadcast::Receiver<Event>, format: Output) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let json = serde_json::to_value(&event).unwrap_or_default();
                print_line(format, &json, &text::worker_event(&event));
                if matches!(event, Event::Stopped { .. }) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => print_line(
                format,
                &serde_json::json!({"event": "lagged", "missed": n}),
                &format!("({n} events not shown: output too slow)"),
            ),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One line, stamped with the time, redacted like every output.
fn print_line(format: Output, json: &serde_json::Value, line: &str) {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut stdout = std::io::stdout().lock();
    let _ = match format {
        Output::Json => {
            let mut json = json.clone();
            json["at"] = at.into();
            redact::redact_json(&mut json);
            writeln!(stdout, "{json}")
        }
        Output::Text => writeln!(stdout, "{at} {}", redact::redact_text(line)),
    };
}

/// The shell command run for each task.
struct Command {
    exec: String,
    kill_grace: Duration,
}

/// Kills the command's process group when the handler is dropped (the runtime aborts a
/// handler at the shutdown deadline).
struct Group(Option<Pid>);

impl Group {
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0 {
            // ESRCH: the group has ended already.
            let _ = killpg(pid, signal);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

impl Command {
    async fn run(&self, ctx: TaskContext) -> HandlerResult {
        let task = serde_json::to_vec(ctx.task())?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.exec)
            .env("DRYDOCK_TASK_ID", ctx.id().to_string())
            .env("DRYDOCK_ACTION", &ctx.task().action)
            .env("DRYDOCK_ATTEMPT", ctx.attempt().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
        let group = Group(child.id().map(|id| Pid::from_raw(id as i32)));
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block the worker.
            tokio::spawn(async move {
                let _ = stdin.write_all(&task).await;
            });
        }
        let (lines, mut received) = mpsc::channel(64);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, lines.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, lines, true));
        }
        let mut status: Option<ExitStatus> = None;
        let mut output_done = false;
        let mut refused: Option<Error> = None;
        let mut stopped = false;
        let mut kill_at: Option<Instant> = None;
        while status.is_none() || !output_done {
            tokio::select! {
                line = received.recv(), if !output_done => match line {
                    Some(message) => {
                        if refused.is_some() {
                            continue;
                        }
                        if let Err(e) = ctx.message(&message).await {
                            // Nothing more is written for this task: stop the command.
                            refused = Some(e);
                            group.signal(Signal::SIGTERM);
                            kill_at.get_or_insert(Instant::now() + self.kill_grace);
                        }
                    }
                    None => output_done = true,
                },
                exited = child.wait(), if status.is_none() => {
                    status = Some(exited.map_err(|e| format!("cannot wait for the command: {e}"))?);
                    // What it left behind in its group goes with it (and closes its pipes).
                    group.signal(Signal::SIGKILL);
                }
                _ = ctx.cancelled(), if !stopped => {
                    stopped = true;
                    group.signal(Signal::SIGTERM);
                    kill_at.get_or_insert(Instant::now() + self.kill_grace);
                }
                _ = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() && status.is_none() => {
                    group.signal(Signal::SIGKILL);
                    kill_at = None;
                }
            }
        }
        if let Some(e) = refused {
            return Err(e.into());
        }
        let status = status.expect("the loop ends when the command has exited");
        Ok(if stopped {
            let why = ctx
                .cancel_reason()
                .map_or_else(|| "it was cancelled".to_string(), |r| r.to_string());
            Outcome::failure(format!(
                "the command was stopped: {why} ({})",
                describe(status)
            ))
        } else if status.success() {
            Outcome::success()
        } else {
            Outcome::failure(format!("the command {}", describe(status)))
        })
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!(
            "was killed by signal {signal} ({})",
            Signal::try_from(signal).map_or("unknown", |s| s.as_str())
        ),
        _ => status.to_string(),
    }
}

/// Sends each line of `stream` as a message: an error message for stderr.
async fn read_lines(stream: impl AsyncRead + Unpin, lines: mpsc::Sender<NewMessage>, error: bool) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                let message = if error {
                    NewMessage::error(text)
                } else {
                    NewMessage::info(text)
                };
                if lines.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}
