//! The whole framework in one run on the embedded default database, with the runtime
//! (`drydock_state::runtime`) keeping the lease, recovering orphans and claiming. Two instances
//! contend for the lease; the leader's `deploy_nodes` handler creates a `deploy_node` subtask
//! per node of a `file://` design and waits while other handlers deploy them (messages, build
//! data). Midway the leader stalls and steps down before its lease can lapse; the other takes
//! over with a higher term, recovers the orphans and finishes. Every write carries its task's
//! claim as the guard, so the stalled handler's late completion is refused.
//!
//! `cargo run --example orchestrator`, from any directory; the CLI can inspect the result.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio::sync::Notify;

use drydock_state::runtime::{Event, HandlerResult, Outcome, Runtime, TaskContext};
use drydock_state::{
    BuildData, BuildDataQuery, Config, DesignResolver, Error, NewMessage, NewTask, ResultStatus,
    SubtaskFilter, Task, TaskStatus, TaskUpdate,
};

const GRACE: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(200);

/// Lease events with their time since the start of the run.
type History = Vec<(Duration, String)>;

/// Prints what an instance did, `at` its time since the start of the run.
fn log(at: Duration, id: &str, event: &str) {
    println!("  [{:>5.2}s] {id:<15} {event}", at.as_secs_f64());
}

/// One instance's handler.
struct Orchestrator {
    id: &'static str,
    resolver: DesignResolver,
    started: Instant,
    /// Stall (hang, and `main` pauses the lease renewals) on claiming this many node tasks.
    stall_after: Option<usize>,
    nodes_claimed: AtomicUsize,
    stalled: Notify,
    /// Told when the root task's handler returns its outcome.
    done: Notify,
}

impl Orchestrator {
    fn log(&self, event: &str) {
        log(self.started.elapsed(), self.id, event);
    }

    async fn handle(self: Arc<Self>, ctx: TaskContext) -> HandlerResult {
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
        let n = nodes.len();
        self.log(&format!("claimed deploy_nodes; design has {n} nodes"));
        let planned = ctx.store().subtasks(ctx.id(), SubtaskFilter::All).await?;
        let planned: Vec<String> = planned.iter().map(node_of).collect();
        for node in nodes.iter().filter(|n| !planned.contains(n)) {
            let filter = serde_json::json!({"filter_set_type": "union",
                "filter_set": [{"filter_type": "union", "node_names": [node]}]});
            let sub = NewTask::new("deploy_node").with_status(TaskStatus::Queued);
            let sub = sub.with_node_filter(filter).with_design_ref(&design_ref);
            ctx.create_subtask(&sub).await?;
        }
        let (source, size) = (&document.source, document.bytes.len());
        ctx.info(format!("design {source} resolved ({size} bytes)"))
            .await?;
        // Cancelled while it waits (the lease was lost, say): not done, the next leader goes on.
        let active = || ctx.store().subtasks(ctx.id(), SubtaskFilter::Active);
        while !active().await?.is_empty() {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(Outcome::requeue()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        let subtasks = ctx.store().subtasks(ctx.id(), SubtaskFilter::All).await?;
        let (ok, failed): (Vec<&Task>, Vec<&Task>) =
            (subtasks.iter()).partition(|t| t.result.status == ResultStatus::Success);
        let message = format!("{} of {} nodes deployed", ok.len(), subtasks.len());
        ctx.info(&message).await?;
        let outcome = match failed.is_empty() {
            true => Outcome::success(),
            false => Outcome::partial_success(),
        };
        let outcome = outcome.with_failures(failed.into_iter().map(node_of));
        let outcome = outcome.with_successes(ok.into_iter().map(node_of));
        self.done.notify_one();
        Ok(outcome.with_message(message))
    }

    /// Pretends to deploy one node: messages and build data as a real driver would post them.
    async fn deploy_node(&self, ctx: &TaskContext) -> HandlerResult {
        let node = node_of(ctx.task());
        if self.stall_after == Some(self.nodes_claimed.fetch_add(1, SeqCst) + 1) {
            return self.stall(ctx, &node).await;
        }
        let about = |m: NewMessage| m.with_context("node", &node);
        let info = |text| about(NewMessage::info(format!("{node}: {text}")));
        let mut messages = vec![info("powered on via IPMI"), info("PXE boot, commissioning")];
        if node.ends_with('2') {
            let text = format!("{node}: BMC timed out once; retried");
            messages.push(about(NewMessage::error(text)));
        }
        messages.push(info("deployed"));
        ctx.messages(&messages).await?;
        let record = |generator: &str, format: &str, data: String| BuildData {
            node_name: node.clone(),
            task_id: ctx.id(),
            collected_date: None,
            generator: generator.into(),
            data_format: format.into(),
            data_element: Some(data),
        };
        let lshw = format!("<node id=\"{node}\"><cpu cores=\"32\"/></node>");
        let lldp = format!("{{\"node\":\"{node}\",\"switch\":\"leaf-1\"}}");
        ctx.build_data(&record("lshw", "application/xml", lshw))
            .await?;
        ctx.build_data(&record("lldp", "application/json", lldp))
            .await?;
        self.log(&format!("deployed {node}"));
        Ok(Outcome::success().with_successes([node]))
    }

    /// Hangs until the runtime has stepped down and another instance has taken the task, then
    /// tries to finish it anyway with the claim it had, straight to the store, as a hung
    /// process would on waking: the store's claim guard refuses the write.
    async fn stall(&self, ctx: &TaskContext, node: &str) -> HandlerResult {
        let event = format!("claimed {node} and stalls: it stops renewing the lease");
        self.log(&event);
        self.stalled.notify_one();
        ctx.cancelled().await;
        while ctx.refresh().await?.claim().as_ref() == Some(ctx.claim()) {
            tokio::time::sleep(TICK).await;
        }
        let late = TaskUpdate::new().status(TaskStatus::Complete);
        let late = late.result_status(ResultStatus::Success);
        let write = ctx.store().update_task(ctx.id(), &late, Some(ctx.claim()));
        if let Err(Error::LeaseLost(_)) = write.await {
            let event = format!("wakes; its late write to {node} is refused (its claim has ended)");
            self.log(&event);
            return Ok(Outcome::success());
        }
        eprintln!("the store accepted a write under an ended claim: a fencing bug");
        std::process::exit(1)
    }
}

/// Prints an instance's events until it stops; returns its lease events, for the history.
async fn print_events(started: Instant, id: &'static str, mut events: Receiver<Event>) -> History {
    let mut history = Vec::new();
    let mut lease = |event: String| {
        log(started.elapsed(), id, &event);
        history.push((started.elapsed(), format!("{id} {event}")));
    };
    loop {
        match events.recv().await {
            Ok(Event::Elected {
                term, recovered, ..
            }) => {
                lease(format!("became leader with term {term}"));
                if !recovered.is_empty() {
                    let n = recovered.len();
                    lease(format!("recovered {n} orphaned task(s) from an older term"));
                }
            }
            Ok(Event::Follower { holder, .. }) => {
                let holder = holder.as_deref().unwrap_or("nobody");
                lease(format!("is a follower: {holder} holds the lease"));
            }
            Ok(Event::SteppedDown { term, reason, .. }) => {
                lease(format!("stepped down from term {term}: {reason}"));
            }
            Ok(Event::Released { term, .. }) => lease(format!("released the lease (term {term})")),
            Ok(Event::Abandoned { action, reason, .. }) => {
                let event = format!("left its {action} task to the next leader: {reason}");
                log(started.elapsed(), id, &event);
            }
            Ok(Event::Finished {
                action,
                status: TaskStatus::Complete,
                ..
            }) if action == "deploy_nodes" => log(started.elapsed(), id, "completed deploy_nodes"),
            Ok(Event::Stopped { .. }) | Err(RecvError::Closed) => return history,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
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
    let filter = task.node_filter.as_ref();
    let node = filter.and_then(|f| f["filter_set"][0]["node_names"][0].as_str());
    node.unwrap_or("?").to_string()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::load(None)?;
    config.leader.grace_period = GRACE;
    config.leader.claim_interval = TICK;
    config.leader.poll_interval = TICK / 2;
    let url = config.database.url.clone();
    let url = url.unwrap_or_else(drydock_state::default_database_url);
    let store = drydock_state::open(&url, &config).await?;
    let design = env!("CARGO_MANIFEST_DIR").to_string() + "/tests/fixtures/designs/site.yaml";
    println!("drydock-state orchestrator example");
    let (shown, backend) = (drydock_state::redact_uri(&url), store.backend_name());
    println!("  database: {shown} ({backend})\n  design:   file://{design}\n");
    let root = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    let root = root.with_design_ref(format!("file://{design}"));
    let root = store.create_task(&root).await?.task_id;
    println!("queued deploy_nodes task {root}\n");

    let started = Instant::now();
    let start = |id, stall_after| -> drydock_state::Result<_> {
        let orchestrator = Arc::new(Orchestrator {
            id,
            resolver: drydock_state::design_resolver(&config.design)?,
            started,
            stall_after,
            nodes_claimed: AtomicUsize::new(0),
            stalled: Notify::new(),
            done: Notify::new(),
        });
        let handler = orchestrator.clone();
        // Two at once: the root waits while one node deploys, so at the stall the leader runs
        // just the root and the stalled node, the two orphans the next leader recovers. The
        // shutdown waits for the stalled handler to wake and try its late write.
        let builder = Runtime::builder(store.clone(), id)
            .leader_config(&config.leader)
            .concurrency(2)
            .shutdown_deadline(Duration::from_secs(10));
        let printer = tokio::spawn(print_events(started, id, builder.subscribe()));
        let runtime = builder.start(move |ctx| handler.clone().handle(ctx))?;
        Ok((orchestrator, runtime, printer))
    };
    let (a, a_runtime, a_printer) = start("orchestrator-a", Some(3))?;
    // a starts first and wins the first election.
    while a_runtime.term().is_none() {
        tokio::time::sleep(TICK / 10).await;
    }
    let (b, b_runtime, b_printer) = start("orchestrator-b", None)?;
    let run = async {
        a.stalled.notified().await;
        a_runtime.pause_lease_renewals();
        b.done.notified().await;
    };
    tokio::time::timeout(Duration::from_secs(50), run).await?;
    // The shutdown waits for running handlers, and writes their outcomes.
    b_runtime.shutdown().await;
    a_runtime.shutdown().await;
    let mut history = [a_printer.await?, b_printer.await?].concat();
    history.sort_by_key(|(at, _)| *at);

    let tree = store.task_tree(root, None).await?;
    let tree: Vec<Task> = tree.into_iter().filter_map(|node| node.task).collect();
    println!("\nsummary\n  task tree:");
    for t in &tree {
        let label = match t.parent_task_id {
            None => format!("deploy_nodes {}", &t.task_id.to_string()[..8]),
            Some(_) => format!("└ deploy_node {}", node_of(t)),
        };
        let (d, claimed) = (&t.result.details, t.claimed_by.as_deref().unwrap_or("-"));
        let (status, result) = (t.status.as_str(), t.result.status.as_str());
        let (messages, errors) = (d.message_list.len(), d.error_count);
        let counts = format!("messages {messages}, errors {errors}, claimed by {claimed}");
        println!("    {label:<30} {status:<9} {result:<16} {counts}");
    }
    let latest = BuildDataQuery {
        latest: true,
        ..Default::default()
    };
    let build = store.build_data(&latest).await?;
    let ours = build
        .iter()
        .filter(|b| tree.iter().any(|t| t.task_id == b.task_id));
    let (ours, nodes) = (ours.count(), tree.len() - 1);
    println!("  build data: {ours} latest elements (lshw, lldp) over {nodes} nodes");
    println!("  lease history:");
    for (at, event) in history {
        println!("    {:>5.2}s  {event}", at.as_secs_f64());
    }
    let outcome = match tree.iter().all(|t| t.status == TaskStatus::Complete) {
        true => "every node deployed",
        false => "INCOMPLETE",
    };
    println!("  outcome: {outcome}");
    println!("\nInspect it with the CLI, e.g.: cargo run -p drydock-state-cli -- task get {root}");
    Ok(())
}
