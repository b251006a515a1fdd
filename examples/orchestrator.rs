//! The whole framework in one run, on the embedded default database (no server needed).
//!
//! Two orchestrator instances contend for the leader lease. A `deploy_nodes` task whose design
//! is a `file://` site design is queued; the leader claims it, resolves the design, creates one
//! subtask per node, posts result messages and build data per node. Midway the leader stalls
//! (stops renewing, as a hung process would); after the grace period the other instance takes
//! over with a higher term, recovers what was orphaned, and finishes the job. Every write a
//! worker makes to a task it runs (messages, subtasks, build data, completion) carries its
//! claim as the guard, so when the stalled instance wakes, its late completion is refused.
//! Then it prints the task tree, message and error counts, and the lease history.
//!
//! Run it with `cargo run --example orchestrator`; it works from any directory. The database is
//! the one the `drydock-state` command uses by default, so the CLI can inspect it afterwards.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use std::time::{Duration, Instant};

use drydock_state::{
    BuildData, BuildDataQuery, Claim, ClaimRequest, Config, DesignResolver, Error, NewMessage,
    NewTask, OrphanPolicy, ResultStatus, StateStore, SubtaskFilter, Task, TaskId, TaskStatus,
    TaskUpdate,
};

const GRACE: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(200);
const ACTIONS: [&str; 2] = ["deploy_nodes", "deploy_node"];

/// The lease history, shared by both instances for the summary.
type History = Arc<Mutex<Vec<(Duration, String)>>>;

struct Orchestrator {
    id: &'static str,
    store: Arc<dyn StateStore>,
    resolver: DesignResolver,
    history: History,
    started: Instant,
    /// Stall (stop working and renewing) after claiming this many node subtasks.
    stall_after: Option<usize>,
}

impl Orchestrator {
    fn log(&self, event: String) {
        println!(
            "  [{:>5.2}s] {:<15} {event}",
            self.started.elapsed().as_secs_f64(),
            self.id
        );
    }

    /// Logs an event of the lease's life and keeps it for the summary.
    fn lease_event(&self, event: String) {
        self.log(event.clone());
        self.history
            .lock()
            .unwrap()
            .push((self.started.elapsed(), format!("{} {event}", self.id)));
    }

    /// Runs until the root task is finished (or this instance stalls).
    async fn run(self, root: TaskId) -> drydock_state::Result<()> {
        let (mut term, mut nodes_claimed, mut denied_logged) = (None, 0, false);
        loop {
            let root_task = self
                .store
                .get_task(root)
                .await?
                .expect("the root task exists");
            if root_task.status.is_terminal() {
                return Ok(());
            }
            let Some(lease) = self.store.claim_lease(self.id).await?.held().cloned() else {
                if !denied_logged {
                    self.lease_event("is a follower: another instance holds the lease".into());
                    denied_logged = true;
                }
                tokio::time::sleep(TICK).await;
                continue;
            };
            if term != Some(lease.term) {
                term = Some(lease.term);
                self.lease_event(format!("became leader with term {}", lease.term));
                let recovered = self
                    .store
                    .recover_orphans(lease.term, OrphanPolicy::Requeue)
                    .await?;
                if !recovered.is_empty() {
                    self.lease_event(format!(
                        "recovered {} orphaned task(s) from an older term",
                        recovered.len()
                    ));
                }
            }
            let request = ClaimRequest::new(self.id)
                .actions(ACTIONS)
                .fenced(lease.term);
            if let Some(task) = self.store.claim_next(&request).await? {
                if task.action == "deploy_node" {
                    nodes_claimed += 1;
                    if self.stall_after == Some(nodes_claimed) {
                        self.lease_event(format!(
                            "claimed {} and stalls: it stops renewing the lease",
                            node_of(&task)
                        ));
                        return self.wake_late(&task).await;
                    }
                    self.deploy_node(&task).await?;
                } else {
                    self.plan(&task).await?;
                }
                continue;
            }
            self.finish_if_done(&root_task).await?;
            tokio::time::sleep(TICK).await;
        }
    }

    /// After stalling: waits until the task it held has been taken from it, then tries to
    /// finish it anyway, as a hung process would on waking; the claim guard refuses the write.
    async fn wake_late(&self, task: &Task) -> drydock_state::Result<()> {
        let guard = claim_of(task);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let now = self.store.get_task(task.task_id).await?;
            if now.and_then(|t| t.claim()).as_ref() != Some(&guard) {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        let late = TaskUpdate::new()
            .status(TaskStatus::Complete)
            .result_status(ResultStatus::Success);
        match self
            .store
            .update_task(task.task_id, &late, Some(&guard))
            .await
        {
            Err(Error::LeaseLost(_)) => {
                self.lease_event(format!(
                    "wakes; its late write to {} is refused (its claim has ended)",
                    node_of(task)
                ));
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => panic!("a late write with an ended claim was accepted"),
        }
    }

    /// Resolves the design and creates one queued subtask per node (skipping nodes that a
    /// previous leader already planned).
    async fn plan(&self, task: &Task) -> drydock_state::Result<()> {
        let design_ref = task
            .design_ref
            .as_deref()
            .expect("deploy_nodes carries a design");
        let document = drydock_state::fetch_design(&self.resolver, design_ref).await?;
        let guard = claim_of(task);
        let nodes = baremetal_nodes(&document.bytes);
        self.log(format!(
            "claimed deploy_nodes; design has {} nodes",
            nodes.len()
        ));
        let planned: Vec<String> = self
            .store
            .subtasks(task.task_id, SubtaskFilter::All)
            .await?
            .iter()
            .map(node_of)
            .collect();
        for node in nodes.into_iter().filter(|n| !planned.contains(n)) {
            let mut sub = NewTask::new("deploy_node")
                .with_parent(task.task_id)
                .with_status(TaskStatus::Queued)
                .with_node_filter(
                    serde_json::json!({"filter_set_type": "union", "filter_set": [{"filter_type": "union", "node_names": [node]}]}),
                );
            sub.design_ref = task.design_ref.clone();
            let sub = self.store.create_task(&sub).await?;
            self.store
                .add_subtask(task.task_id, sub.task_id, Some(&guard))
                .await?;
        }
        let message = NewMessage::info(format!(
            "design {} resolved ({} bytes)",
            document.source,
            document.bytes.len()
        ));
        self.store
            .append_message(task.task_id, &message, Some(&guard))
            .await?;
        Ok(())
    }

    /// Pretends to deploy one node: messages and build data as a real driver would post them.
    async fn deploy_node(&self, task: &Task) -> drydock_state::Result<()> {
        let node = node_of(task);
        let guard = claim_of(task);
        let mut messages = vec![
            NewMessage::info(format!("{node}: powered on via IPMI")).with_context("node", &node),
            NewMessage::info(format!("{node}: PXE boot, commissioning"))
                .with_context("node", &node),
        ];
        if node.ends_with('2') {
            messages.push(
                NewMessage::error(format!("{node}: BMC timed out once; retried"))
                    .with_context("node", &node),
            );
        }
        messages.push(NewMessage::info(format!("{node}: deployed")).with_context("node", &node));
        self.store
            .append_messages(task.task_id, &messages, Some(&guard))
            .await?;
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
            let element = BuildData {
                node_name: node.clone(),
                task_id: task.task_id,
                collected_date: None,
                generator: generator.into(),
                data_format: format.into(),
                data_element: Some(data),
            };
            self.store.record_build_data(&element, Some(&guard)).await?;
        }
        let done = TaskUpdate::new()
            .status(TaskStatus::Complete)
            .result_status(ResultStatus::Success)
            .successes([node.as_str()]);
        self.store
            .update_task(task.task_id, &done, Some(&guard))
            .await?;
        self.log(format!("deployed {node}"));
        Ok(())
    }

    /// Completes the root task once every subtask has finished, if this instance holds it.
    async fn finish_if_done(&self, root: &Task) -> drydock_state::Result<()> {
        if root.status != TaskStatus::Running || root.claimed_by.as_deref() != Some(self.id) {
            return Ok(());
        }
        let subtasks = self
            .store
            .subtasks(root.task_id, SubtaskFilter::All)
            .await?;
        if subtasks.is_empty() || subtasks.iter().any(|t| !t.status.is_terminal()) {
            return Ok(());
        }
        let guard = claim_of(root);
        let done = TaskUpdate::new()
            .status(TaskStatus::Complete)
            .result_status(ResultStatus::Success)
            .successes(subtasks.iter().map(node_of))
            .result_message(Some(format!("{} nodes deployed", subtasks.len())));
        self.store
            .update_task(root.task_id, &done, Some(&guard))
            .await?;
        // A finished task keeps its claim as the record of who ran it: its history may
        // still be written under it.
        self.store
            .append_message(
                root.task_id,
                &NewMessage::info("all nodes deployed"),
                Some(&guard),
            )
            .await?;
        self.log("completed deploy_nodes".into());
        self.store.release_lease(self.id).await?;
        self.lease_event("released the lease".into());
        Ok(())
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

/// The claim a task handed out by `claim_next` carries: the guard of every write its worker
/// makes.
fn claim_of(task: &Task) -> Claim {
    task.claim().expect("a claimed task carries its claim")
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
    println!(
        "  database: {} ({})",
        drydock_state::redact_uri(&url),
        store.backend_name()
    );
    println!("  design:   file://{design}\n");

    let root = NewTask::new("deploy_nodes")
        .with_status(TaskStatus::Queued)
        .with_design_ref(format!("file://{design}"));
    let root = store.create_task(&root).await?;
    println!("queued deploy_nodes task {}\n", root.task_id);

    let history: History = Arc::default();
    let started = Instant::now();
    let make = |id, stall_after| -> drydock_state::Result<Orchestrator> {
        Ok(Orchestrator {
            id,
            store: store.clone(),
            resolver: drydock_state::design_resolver(&config.design)?,
            history: history.clone(),
            started,
            stall_after,
        })
    };
    let a = make("orchestrator-a", Some(3))?;
    let b = make("orchestrator-b", None)?;
    // a starts first, so it wins the first election.
    let a = tokio::spawn(a.run(root.task_id));
    tokio::time::sleep(TICK / 2).await;
    let b = tokio::spawn(b.run(root.task_id));
    let both = async { (a.await, b.await) };
    let (a, b) = tokio::time::timeout(Duration::from_secs(50), both).await?;
    a??;
    b??;

    print_summary(&*store, root.task_id, &history).await?;
    println!(
        "\nInspect it with the CLI, e.g.: cargo run -p drydock-state-cli -- task get {}",
        root.task_id
    );
    Ok(())
}

async fn print_summary(
    store: &dyn StateStore,
    root: TaskId,
    history: &History,
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
            task_id: None,
            latest: true,
            ..Default::default()
        })
        .await?;
    let ours = build
        .iter()
        .filter(|b| subtasks.iter().any(|s| s.task_id == b.task_id))
        .count();
    println!(
        "  build data: {ours} latest elements (lshw, lldp) over {} nodes",
        subtasks.len()
    );
    println!("  lease history:");
    for (at, event) in history.lock().unwrap().iter() {
        println!("    {:>5.2}s  {event}", at.as_secs_f64());
    }
    let all_done = root.status == TaskStatus::Complete
        && subtasks.iter().all(|s| s.status == TaskStatus::Complete);
    println!(
        "  outcome: {}",
        if all_done {
            "every node deployed"
        } else {
            "INCOMPLETE"
        }
    );
    Ok(())
}
