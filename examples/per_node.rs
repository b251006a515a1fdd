//! The runtime's per-node limit (`RuntimeBuilder::exclusive_by`): twelve `deploy_node` tasks
//! over three nodes, one runtime running up to four handlers at once, at most one per node.
//!
//! Each handler logs its start and end and sleeps a little. A timeline then shows tasks of
//! different nodes overlapping and the tasks of one node one after another, and a last line
//! checks it from the recorded times. A task claimed while its node is busy waits, claimed, and
//! holds one of the four places meanwhile, so with most tasks on one node the others idle at
//! times. It runs on the in-memory store (`memory://`), so nothing is left behind. Run it with
//! `cargo run --example per_node`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drydock_state::runtime::{Event, Outcome, Runtime, TaskContext};
use drydock_state::{Config, NewTask, Task, TaskStatus};

/// The nodes of the queued tasks, in queue order: `node-a` has most of them.
const QUEUE: [&str; 12] = ["a", "b", "a", "c", "a", "b", "a", "c", "a", "b", "a", "a"];
/// One column of the timeline.
const COLUMN: Duration = Duration::from_millis(25);

/// When each task ran: its letter, node, start and end since the start of the run.
type Spans = Arc<Mutex<Vec<(char, String, Duration, Duration)>>>;

fn node_of(task: &Task) -> Option<String> {
    let node = task.node_filter.as_ref()?["node_names"][0].as_str()?;
    Some(node.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default();
    let store = drydock_state::open("memory://", &config).await?;
    let mut letters = HashMap::new();
    for (i, node) in QUEUE.iter().enumerate() {
        let filter = serde_json::json!({"node_names": [format!("node-{node}")]});
        let task = NewTask::new("deploy_node").with_status(TaskStatus::Queued);
        let task = store.create_task(&task.with_node_filter(filter)).await?;
        letters.insert(task.task_id, (b'A' + i as u8) as char);
    }
    println!(
        "per-node limit: {} deploy_node tasks over 3 nodes, concurrency 4\n",
        QUEUE.len()
    );

    let (started, spans, letters) = (Instant::now(), Spans::default(), Arc::new(letters));
    let handler = {
        let spans = spans.clone();
        move |ctx: TaskContext| {
            let (spans, letters) = (spans.clone(), letters.clone());
            async move {
                let (letter, node) = (letters[&ctx.id()], node_of(ctx.task()).unwrap_or_default());
                let start = started.elapsed();
                println!("  [{:>5.3}s] start {letter} on {node}", start.as_secs_f64());
                // 100, 150 or 200 ms of pretend work.
                let work = Duration::from_millis(100 + 50 * (letter as u64 % 3));
                tokio::time::sleep(work).await;
                let end = started.elapsed();
                println!("  [{:>5.3}s] end   {letter} on {node}", end.as_secs_f64());
                spans.lock().unwrap().push((letter, node, start, end));
                Ok(Outcome::success())
            }
        }
    };
    let builder = Runtime::builder(store.clone(), "orchestrator-a")
        .leader_config(&config.leader)
        .actions(["deploy_node"])
        .concurrency(4)
        .exclusive_by(node_of);
    let mut events = builder.subscribe();
    let runtime = builder.start(handler)?;
    let mut finished = 0;
    let all_finished = async {
        while finished < QUEUE.len() {
            if let Event::Finished {
                status: TaskStatus::Complete,
                ..
            } = events.recv().await?
            {
                finished += 1;
            }
        }
        Ok::<_, tokio::sync::broadcast::error::RecvError>(())
    };
    tokio::time::timeout(Duration::from_secs(30), all_finished).await??;
    runtime.shutdown().await;

    // One row per node; each column shows the task running at its middle ('!' for two).
    let spans = spans.lock().unwrap();
    let end = spans.iter().map(|s| s.3).max().unwrap_or_default();
    let columns = (end.as_millis() / COLUMN.as_millis()) as u32 + 1;
    println!("\ntimeline (one column = {} ms):", COLUMN.as_millis());
    let mut nodes: Vec<&String> = spans.iter().map(|s| &s.1).collect();
    nodes.sort();
    nodes.dedup();
    for node in &nodes {
        let row: String = (0..columns)
            .map(|i| {
                let at = COLUMN * i + COLUMN / 2;
                let running = spans
                    .iter()
                    .filter(|s| &s.1 == *node && s.2 <= at && at < s.3);
                match running.map(|s| s.0).collect::<Vec<_>>()[..] {
                    [] => '.',
                    [letter] => letter,
                    _ => '!',
                }
            })
            .collect();
        println!("  {node:<7} {row}");
    }

    // The check, from the recorded times: how many ran at once, on one node and in all.
    let at_once = |on: Option<&String>| {
        let of = |s: &&(char, String, Duration, Duration)| on.is_none_or(|n| &s.1 == n);
        let starts = spans.iter().filter(of).map(|s| s.2);
        let running_at = |t| {
            spans
                .iter()
                .filter(of)
                .filter(|s| s.2 <= t && t < s.3)
                .count()
        };
        starts.map(running_at).max().unwrap_or(0)
    };
    let per_node = nodes.iter().map(|n| at_once(Some(n))).max().unwrap_or(0);
    let overall = at_once(None);
    let ok = per_node == 1 && overall > 1 && spans.len() == QUEUE.len();
    println!(
        "\ncheck: {} ({} of {} tasks complete; at most {per_node} at once on one node, \
         {overall} at once over all nodes)",
        if ok { "ok" } else { "FAILED" },
        spans.len(),
        QUEUE.len()
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
