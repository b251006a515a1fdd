//! W1 to W4: creating tasks, appending messages, reading a task, listing tasks.

use std::sync::Arc;
use std::time::Instant;

use drydock_state::{NewMessage, StateStore, TaskFilter, TaskStatus};
use serde_json::json;

use crate::baseline::Baselines;
use crate::measure::{count_statements, create_many, rate};
use crate::report::Figure;
use crate::BenchResult;

/// Drydock's Python state manager, from issue 5: listing 2,000 tasks took 3.3 s.
const DRYDOCK_W4_SECS: f64 = 3.3;

/// W1: tasks created per second, one call each.
pub struct W1 {
    rate: f64,
}

pub async fn w1_create(store: &Arc<dyn StateStore>, s: usize) -> W1 {
    eprintln!("W1 create...");
    let n = 2000 / s;
    let started = Instant::now();
    create_many(store, n, "bench_w1", TaskStatus::Requested).await;
    W1 {
        rate: rate(n, started.elapsed()),
    }
}

impl W1 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        vec![Figure::rate(
            "W1_create",
            self.rate,
            "tasks/s",
            "insert_c1",
            base.insert_c1,
        )
        .target(">= 0.8 x insert_c1", |f| f.at_least(0.8))]
    }
}

/// W2: messages appended per second, one a call and then a task's worth a call.
pub struct W2 {
    rate: f64,
    batch_rate: f64,
    calls: usize,
    per_call: usize,
}

pub async fn w2_append(store: &Arc<dyn StateStore>, s: usize) -> BenchResult<W2> {
    eprintln!("W2 append...");
    let tasks = create_many(store, 200 / s.min(2), "bench_w2", TaskStatus::Requested).await;
    let n = 20_000 / s;
    let per = n / tasks.len();
    let started = Instant::now();
    for t in &tasks {
        for j in 0..per {
            store
                .append_message(*t, &NewMessage::info(format!("message {j}")), None)
                .await?;
        }
    }
    let w2 = rate(per * tasks.len(), started.elapsed());
    let batch: Vec<NewMessage> = (0..per)
        .map(|j| NewMessage::info(format!("batched {j}")))
        .collect();
    let started = Instant::now();
    for t in &tasks {
        store.append_messages(*t, &batch, None).await?;
    }
    let w2_batch = rate(per * tasks.len(), started.elapsed());
    Ok(W2 {
        rate: w2,
        batch_rate: w2_batch,
        calls: tasks.len(),
        per_call: per,
    })
}

impl W2 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        let per = self.per_call;
        vec![
            Figure::rate(
                "W2_append",
                self.rate,
                "msgs/s",
                "insert_c1",
                base.insert_c1,
            )
            .target(">= 0.8 x insert_c1", |f| f.at_least(0.8)),
            Figure::rate(
                "W2_append_batch",
                self.batch_rate,
                "msgs/s",
                "copy",
                base.copy,
            )
            .with("calls", json!(self.calls))
            .with("msgs_per_call", json!(per))
            // Each call is one transaction: if it cost no more than one raw single-row
            // INSERT's commit, this is as fast as it could go.
            .with(
                "one_commit_per_call_bound",
                json!(base.insert_c1.map(|r| (r * per as f64).round())),
            )
            .target(">= 100,000 msgs/s", |f| f.value >= 100_000.0),
        ]
    }
}

/// W3: tasks read per second, each with its 50 messages.
pub struct W3 {
    rate: f64,
}

pub async fn w3_get(store: &Arc<dyn StateStore>, s: usize) -> BenchResult<W3> {
    eprintln!("W3 get...");
    let tasks = create_many(store, 200 / s.min(2), "bench_w3", TaskStatus::Requested).await;
    let fifty: Vec<NewMessage> = (0..50).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &fifty, None).await?;
    }
    let started = Instant::now();
    for t in &tasks {
        let got = store.get_task(*t).await?.expect("task");
        assert_eq!(got.result.details.message_list.len(), 50);
    }
    Ok(W3 {
        rate: rate(tasks.len(), started.elapsed()),
    })
}

impl W3 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        vec![
            Figure::rate("W3_get", self.rate, "tasks/s", "select_c1", base.select_c1)
                .target(">= 0.5 x select_c1", |f| f.at_least(0.5)),
        ]
    }
}

/// W4: the seconds one call takes to list 2,000 tasks with 10 messages each, and the
/// statements it costs.
pub struct W4 {
    secs: f64,
    statements: u64,
}

pub async fn w4_list(store: &Arc<dyn StateStore>, s: usize) -> BenchResult<W4> {
    eprintln!("W4 list...");
    let n = 2000 / s;
    let tasks = create_many(store, n, "bench_w4", TaskStatus::Complete).await;
    let ten: Vec<NewMessage> = (0..10).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &ten, None).await?;
    }
    let filter = TaskFilter {
        action: Some("bench_w4".into()),
        ..Default::default()
    };
    // Timed and counted in separate calls: while statements are counted, sqlx formats every
    // statement's text for its log event, which costs more than some statements do.
    // One call lists the whole 2,000; the best of three, like the baselines' best of two,
    // so that one scheduling hiccup on a shared machine does not stand for the call.
    let mut w4 = f64::MAX;
    let mut listed = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        listed = store.list_tasks(&filter).await?;
        w4 = w4.min(started.elapsed().as_secs_f64());
    }
    let (recount, statements) = count_statements(store.list_tasks(&filter)).await;
    assert_eq!(recount?.len(), listed.len());
    assert_eq!(listed.len(), n);
    assert!(listed
        .iter()
        .all(|t| t.result.details.message_list.len() == 10));
    Ok(W4 {
        secs: w4,
        statements,
    })
}

impl W4 {
    pub fn figures(&self, _: &Baselines) -> Vec<Figure> {
        let statements = self.statements;
        vec![
            Figure::seconds("W4_list", self.secs, "drydock_3.3s", DRYDOCK_W4_SECS)
                .with("statements", json!(statements))
                .target("<= 3 statements, <= 3.3 s / 50", |f| {
                    statements <= 3 && f.value <= DRYDOCK_W4_SECS / 50.0
                }),
        ]
    }
}
