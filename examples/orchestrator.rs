//! The whole framework in one run, on the embedded default database (no server needed), with
//! the orchestrator runtime (`drydock_state::runtime`) doing the lease, recovery and claims.
//!
//! Two orchestrator instances contend for the leader lease. A `deploy_nodes` task whose design
//! is a `file://` site design is queued; the leader's handler resolves the design, creates one
//! `deploy_node` subtask per node, and waits for them while other handlers deploy the nodes
//! (messages and build data per node). Midway the leader stalls (it stops renewing, as a hung
//! process would) and steps down before its lease can lapse; the other instance then takes over
//! with a higher term, recovers what was orphaned, and finishes the job. Every write a handler
//! makes carries its task's claim as the guard, so when the stalled handler wakes, its late
//! completion is refused. Then it prints the task tree, message and error counts, build data
//! and the lease history.
//!
//! Run it with `cargo run --example orchestrator`; it works from any directory. The database is
//! the one the `drydock-state` command uses by default, so the CLI can inspect it afterwards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{broadcast, Notify};

use drydock_state::runtime::{Event, HandlerResult, Outcome, Runtime, TaskContext};
use drydock_state::{
    BuildData, BuildDataQuery, Config, DesignResolver, Error, NewMessage, NewTask, ResultStatus,
    StateStore, SubtaskFilter, Task, TaskId, TaskStatus, TaskUpdate,
};

const GRACE: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(200);

/// The run's clock and lease history, shared by both instances.
struct Log {
    started: Instant,
    history: Mutex<Vec<(Duration, String)>>,
}

impl Log {
    fn line(&self, id: &str, event: &str) {
        let at = self.started.elapsed().as_secs_f64();
        println!("  [{at:>5.2}s] {id:<15} {event}");
    }

    /// Logs an event of the lease's life and keeps it for the summary.
    fn lease(&self, id: &str, event: String) {
        self.line(id, &event);
        let at = self.started.elapsed();
        self.history
            .lock()
            .unwrap()
            .push((at, format!("{id} {event}")));
    }
}

/// One instance's handler.
struct Orchestrator {
    id: &'static str,
    resolver: DesignResolver,
    log: Arc<Log>,
    /// Stall (stop renewing the lease, hang) on claiming this many node subtasks.
    stall_after: Option<usize>,
    nodes_claimed: AtomicUsize,
    /// Told when the handler stalls, so that `main` pauses the instance's lease renewals.
    stalled: Notify,
    late_write_refused: AtomicBool,
}

impl Orchestrator {
    async fn handle(&self, ctx: TaskContext) -> HandlerResult {
        match ctx.task().action.as_str() {
            "deploy_nodes" => self.deploy_nodes(&ctx).await,
            _ => self.deploy_node(&ctx).await,
        }
    }

    /// Resolves the design, creates one queued subtask per node (skipping nodes a previous
    /// leader already planned), and waits until every subtask has finished.
    async fn deploy_nodes(&self, ctx: &TaskContext) -> HandlerResult {
        let design_ref = ctx.task().design_ref.clone().ok_or("no design")?;
        let document = drydock_state::fetch_design(&self.resolver, &design_ref).await?;
        let nodes = baremetal_nodes(&document.bytes);
        let log = format!("claimed deploy_nodes; design has {} nodes", nodes.len());
        self.log.line(self.id, &log);
        let subtasks = ctx.store().subtasks(ctx.id(), SubtaskFilter::All).await?;
        let planned: Vec<String> = subtasks.iter().map(node_of).collect();
        for node in nodes.iter().filter(|n| !planned.contains(n)) {
            let filter = serde_json::json!({"filter_set_type": "union",
                "filter_set": [{"filter_type": "union", "node_names": [node]}]});
            let mut sub = NewTask::new("deploy_node")
                .with_status(TaskStatus::Queued)
                .with_node_filter(filter);
            sub.design_ref = Some(design_ref.clone());
            ctx.create_subtask(&sub).await?;
        }
        let (source, size) = (&document.source, document.bytes.len());
        ctx.info(format!("design {source} resolved ({size} bytes)"))
            .await?;
        loop {
            let subtasks = ctx.store().subtasks(ctx.id(), SubtaskFilter::All).await?;
            if subtasks.iter().all(|t| t.status.is_terminal()) {
                let (ok, failed): (Vec<&Task>, Vec<&Task>) = subtasks
                    .iter()
                    .partition(|t| t.result.status == ResultStatus::Success);
                ctx.info(format!("{} of {} nodes deployed", ok.len(), subtasks.len()))
                    .await?;
                let outcome = match failed.is_empty() {
                    true => Outcome::success(),
                    false => {
                        Outcome::partial_success().with_failures(failed.into_iter().map(node_of))
                    }
                };
                let message = format!("{} nodes deployed", ok.len());
                return Ok(outcome
                    .with_successes(ok.into_iter().map(node_of))
                    .with_message(message));
            }
            // Cancelled (the lease was lost, say): not done; whoever runs it next goes on.
            tokio::select! {
                _ = ctx.cancelled() => return Ok(Outcome::requeue()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Pretends to deploy one node: messages and build data as a real driver would post them.
    async fn deploy_node(&self, ctx: &TaskContext) -> HandlerResult {
        let node = node_of(ctx.task());
        if self.stall_after == Some(self.nodes_claimed.fetch_add(1, Ordering::SeqCst) + 1) {
            return self.stall(ctx, &node).await;
        }
        let mut messages = vec![
            NewMessage::info(format!("{node}: powered on via IPMI")),
            NewMessage::info(format!("{node}: PXE boot, commissioning")),
        ];
        if node.ends_with('2') {
            messages.push(NewMessage::error(format!(
                "{node}: BMC timed out once; retried"
            )));
        }
        messages.push(NewMessage::info(format!("{node}: deployed")));
        let messages: Vec<_> = messages
            .into_iter()
            .map(|m| m.with_context("node", &node))
            .collect();
        ctx.messages(&messages).await?;
        for (generator, format, data) in [
            (
                "lshw",
                "application/xml",
                format!("<node id=\"{node}\"><cpu cores=\"32\"/></node>"),
            ),
            (
                "lldp",
                "application/json",
                format!("{{\"node\":\"{node}\",\"switch\":\"leaf-1\"}}"),
            ),
        ] {
            ctx.build_data(&BuildData {
                node_name: node.clone(),
                task_id: ctx.id(),
                collected_date: None,
                generator: generator.into(),
                data_format: format.into(),
                data_element: Some(data),
            })
            .await?;
        }
        self.log.line(self.id, &format!("deployed {node}"));
        Ok(Outcome::success().with_successes([node]))
    }

    /// Hangs until the runtime has stepped down and another instance has taken the task, then
    /// tries to finish it anyway with the claim it had, straight to the store, as a hung
    /// process would on waking: the store's claim guard refuses the write.
    async fn stall(&self, ctx: &TaskContext, node: &str) -> HandlerResult {
        let event = format!("claimed {node} and stalls: it stops renewing the lease");
        self.log.lease(self.id, event);
        self.stalled.notify_one();
        ctx.cancelled().await;
        while ctx.refresh().await?.claim().as_ref() == Some(ctx.claim()) {
            tokio::time::sleep(TICK).await;
        }
        let late = TaskUpdate::new()
            .status(TaskStatus::Complete)
            .result_status(ResultStatus::Success);
        let event = match ctx
            .store()
            .update_task(ctx.id(), &late, Some(ctx.claim()))
            .await
        {
            Err(Error::LeaseLost(_)) => {
                self.late_write_refused.store(true, Ordering::SeqCst);
                format!("wakes; its late write to {node} is refused (its claim has ended)")
            }
            other => format!("wakes; its late write to {node} was NOT refused: {other:?}"),
        };
        self.log.lease(self.id, event);
        Ok(Outcome::success())
    }
}

/// Prints an instance's lease events (and its root task's completion) until it stops.
async fn print_events(log: Arc<Log>, id: &'static str, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(Event::Elected {
                term, recovered, ..
            }) => {
                log.lease(id, format!("became leader with term {term}"));
                if !recovered.is_empty() {
                    let n = recovered.len();
                    log.lease(
                        id,
                        format!("recovered {n} orphaned task(s) from an older term"),
                    );
                }
            }
            Ok(Event::Follower { holder, term, .. }) => {
                let holder = holder.map_or("nobody".into(), |h| format!("{h} (term {term:?})"));
                log.lease(id, format!("is a follower: the lease is held by {holder}"));
            }
            Ok(Event::SteppedDown { term, reason, .. }) => {
                log.lease(id, format!("stepped down from term {term}: {reason}"));
            }
            Ok(Event::Released { term, .. }) => {
                log.lease(id, format!("released the lease (term {term})"));
            }
            Ok(Event::Abandoned { action, reason, .. }) => {
                log.line(
                    id,
                    &format!("left its {action} task to the next leader: {reason}"),
                );
            }
            Ok(Event::Finished {
                action,
                status: TaskStatus::Complete,
                result,
                ..
            }) if action == "deploy_nodes" => {
                log.line(id, &format!("completed deploy_nodes ({result})"));
            }
            Ok(Event::Stopped { .. }) | Err(broadcast::error::RecvError::Closed) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}

/// The names of the `BaremetalNode` documents of a multi-document YAML site design.
fn baremetal_nodes(yaml: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(yaml);
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|doc: &serde_yaml::Value| doc["kind"].as_str() == Some("BaremetalNode"))
        .filter_map(|doc| doc["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The node a `deploy_node` subtask acts on, from its node filter.
fn node_of(task: &Task) -> String {
    task.node_filter
        .as_ref()
        .and_then(|f| f["filter_set"][0]["node_names"][0].as_str())
        .unwrap_or("?")
        .to_string()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::load(None)?;
    config.leader.grace_period = GRACE;
    config.leader.claim_interval = TICK;
    config.leader.poll_interval = TICK / 2;
    let url = config
        .database
        .url
        .clone()
        .unwrap_or_else(drydock_state::default_database_url);
    let store = drydock_state::open(&url, &config).await?;
    let design = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/designs/site.yaml"
    );
    println!("drydock-state orchestrator example");
    let backend = store.backend_name();
    println!(
        "  database: {} ({backend})",
        drydock_state::redact_uri(&url)
    );
    println!("  design:   file://{design}\n");

    let root = NewTask::new("deploy_nodes")
        .with_status(TaskStatus::Queued)
        .with_design_ref(format!("file://{design}"));
    let root = store.create_task(&root).await?.task_id;
    println!("queued deploy_nodes task {root}\n");

    let log = Arc::new(Log {
        started: Instant::now(),
        history: Mutex::default(),
    });
    let start = |id, stall_after| -> drydock_state::Result<_> {
        let orchestrator = Arc::new(Orchestrator {
            id,
            resolver: drydock_state::design_resolver(&config.design)?,
            log: log.clone(),
            stall_after,
            nodes_claimed: AtomicUsize::new(0),
            stalled: Notify::new(),
            late_write_refused: AtomicBool::new(false),
        });
        let handler = orchestrator.clone();
        // Two at once: the root waits while one node deploys, so at the stall the leader runs
        // exactly the root and the stalled node, the orphans the next leader recovers.
        let builder = Runtime::builder(store.clone(), id)
            .leader_config(&config.leader)
            .concurrency(2)
            // Lets the stalled handler wake and try its late write before the instance stops.
            .shutdown_deadline(Duration::from_secs(10));
        let printer = tokio::spawn(print_events(log.clone(), id, builder.subscribe()));
        let elected = builder.subscribe();
        let runtime = builder.start(move |ctx| {
            let handler = handler.clone();
            async move { handler.handle(ctx).await }
        })?;
        Ok((orchestrator, runtime, printer, elected))
    };
    let (a, a_runtime, a_printer, mut a_elected) = start("orchestrator-a", Some(3))?;
    // a starts first and wins the first election.
    while !matches!(a_elected.recv().await?, Event::Elected { .. }) {}
    let (_b, b_runtime, b_printer, _) = start("orchestrator-b", None)?;

    let run = async {
        a.stalled.notified().await;
        a_runtime.pause_lease_renewals();
        while !store
            .get_task(root)
            .await?
            .is_some_and(|t| t.status.is_terminal())
        {
            tokio::time::sleep(TICK).await;
        }
        Ok::<(), drydock_state::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(50), run).await??;
    b_runtime.shutdown().await;
    a_runtime.shutdown().await;
    let _ = (a_printer.await, b_printer.await);

    let refused = a.late_write_refused.load(Ordering::SeqCst);
    print_summary(&*store, root, &log, refused).await?;
    println!("\nInspect it with the CLI, e.g.: cargo run -p drydock-state-cli -- task get {root}");
    Ok(())
}

async fn print_summary(
    store: &dyn StateStore,
    root: TaskId,
    log: &Log,
    late_write_refused: bool,
) -> drydock_state::Result<()> {
    let root = store.get_task(root).await?.expect("root exists");
    let subtasks = store.subtasks(root.task_id, SubtaskFilter::All).await?;
    println!("\nsummary");
    println!("  task tree:");
    let line = |t: &Task, label: String| {
        let d = &t.result.details;
        println!(
            "    {label:<30} {:<9} {:<16} messages {}, errors {}, claimed by {}",
            t.status.as_str(),
            t.result.status.as_str(),
            d.message_list.len(),
            d.error_count,
            t.claimed_by.as_deref().unwrap_or("-"),
        );
    };
    line(
        &root,
        format!("deploy_nodes {}", &root.task_id.to_string()[..8]),
    );
    for sub in &subtasks {
        line(sub, format!("└ deploy_node {}", node_of(sub)));
    }
    let build = store
        .build_data(&BuildDataQuery {
            latest: true,
            ..Default::default()
        })
        .await?;
    let ours = build
        .iter()
        .filter(|b| subtasks.iter().any(|s| s.task_id == b.task_id))
        .count();
    let nodes = subtasks.len();
    println!("  build data: {ours} latest elements (lshw, lldp) over {nodes} nodes");
    println!("  lease history:");
    for (at, event) in log.history.lock().unwrap().iter() {
        println!("    {:>5.2}s  {event}", at.as_secs_f64());
    }
    let all_done = root.status == TaskStatus::Complete
        && subtasks.iter().all(|s| s.status == TaskStatus::Complete);
    let outcome = match (all_done, late_write_refused) {
        (true, true) => "every node deployed",
        (false, _) => "INCOMPLETE",
        (true, false) => "every node deployed, but the late write was NOT refused",
    };
    println!("  outcome: {outcome}");
    Ok(())
}
