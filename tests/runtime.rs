//! The orchestrator runtime (`drydock_state::runtime`) on SQLite and PostgreSQL: two runtimes
//! on one database, a stalled leader replaced, graceful handover, the per-key limit, and
//! termination requests.
//!
//! Every scenario runs on a SQLite file and on a PostgreSQL database of its own, each runtime
//! with its own connection pool on the same database, as two processes would be.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{open_fresh, Backend, Opened};
use drydock_state::runtime::{CancelReason, Event, Outcome, Runtime, RuntimeHandle, TaskContext};
use drydock_state::*;
use tokio::sync::broadcast;
use tokio::time::{timeout, Instant};

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A lease of `grace`, claimed every `claim` and polled every `poll`.
fn config(grace: Duration, claim: Duration, poll: Duration) -> Config {
    let mut config = common::test_config();
    config.leader.grace_period = grace;
    config.leader.claim_interval = claim;
    config.leader.poll_interval = poll;
    config.database.pool_size = 4;
    config
}

/// A second store on the same database, with its own pool.
async fn open_again(opened: &Opened, config: &Config) -> Arc<dyn StateStore> {
    drydock_state::open(&opened.url, config).await.unwrap()
}

/// Waits for the first event `pick` accepts.
async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Ok(event)) => {
                if let Some(t) = pick(&event) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("waiting for {what}: the runtime's events ended: {e}"),
            Err(_) => panic!("waiting for {what}: nothing in 30 s"),
        }
    }
}

fn elected(event: &Event) -> Option<(i64, Vec<TaskId>)> {
    match event {
        Event::Elected {
            term, recovered, ..
        } => Some((*term, recovered.clone())),
        _ => None,
    }
}

async fn queue(store: &dyn StateStore, action: &str, node: Option<&str>) -> TaskId {
    let mut task = NewTask::new(action).with_status(TaskStatus::Queued);
    if let Some(node) = node {
        task = task.with_node_filter(serde_json::json!({"node_names": [node]}));
    }
    store.create_task(&task).await.unwrap().task_id
}

fn node_of(task: &Task) -> Option<String> {
    task.node_filter.as_ref()?["node_names"][0]
        .as_str()
        .map(str::to_string)
}

/// What the stalled leader's handler saw after it was cancelled.
#[derive(Debug, Default)]
struct Late {
    reason: Option<CancelReason>,
    /// A write right after stepping down, while the store would still take it.
    right_after: Option<Result<ResultMessage>>,
    through_context: Option<Result<ResultMessage>>,
    through_store: Option<Result<ResultMessage>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_steps_down_before_its_lease_lapses_and_is_replaced() {
    for backend in BACKENDS {
        stalled_leader(backend).await;
    }
}

async fn stalled_leader(backend: Backend) {
    let config = config(
        Duration::from_secs(3),
        Duration::from_millis(250),
        Duration::from_millis(100),
    );
    let opened = open_fresh(backend, &config).await;
    let store_a = opened.store.clone();
    let store_b = open_again(&opened, &config).await;
    let task = queue(&*store_a, "deploy_node", Some("n1")).await;

    let late = Arc::new(Mutex::new(Late::default()));
    let a = {
        let late = late.clone();
        let store = store_a.clone();
        Runtime::builder(store_a.clone(), "a")
            .leader_config(&config.leader)
            .lease_margin(Duration::from_secs(1))
            .start(move |ctx: TaskContext| {
                let (late, store) = (late.clone(), store.clone());
                async move {
                    ctx.info("a started").await?;
                    ctx.cancelled().await;
                    let right_after = ctx.info("a after stepping down").await;
                    {
                        let mut late = late.lock().unwrap();
                        late.reason = ctx.cancel_reason();
                        late.right_after = Some(right_after);
                    }
                    // Wake only once the task is someone else's, as a hung process would.
                    while ctx.refresh().await?.claimed_by.as_deref() == Some("a") {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let through_context = ctx.info("late from a").await;
                    let through_store = store
                        .append_message(
                            ctx.id(),
                            &NewMessage::info("late from a"),
                            Some(ctx.claim()),
                        )
                        .await;
                    let mut late = late.lock().unwrap();
                    late.through_context = Some(through_context);
                    late.through_store = Some(through_store);
                    Ok(Outcome::success())
                }
            })
            .unwrap()
    };
    let mut a_events = a.subscribe();
    let (term_a, _) = wait_for(&mut a_events, "a's election", elected).await;
    wait_for(&mut a_events, "a's handler", |e| {
        matches!(e, Event::Started { task_id, .. } if *task_id == task).then_some(())
    })
    .await;

    let b = Runtime::builder(store_b.clone(), "b")
        .leader_config(&config.leader)
        .lease_margin(Duration::from_secs(1))
        .start(|ctx: TaskContext| async move {
            ctx.info("done by b").await?;
            Ok(Outcome::success().with_message("deployed"))
        })
        .unwrap();
    let mut b_events = b.subscribe();
    wait_for(&mut b_events, "b to follow", |e| {
        matches!(e, Event::Follower { holder: Some(h), .. } if h == "a").then_some(())
    })
    .await;

    a.pause_lease_renewals();
    wait_for(&mut a_events, "a to step down", |e| {
        matches!(e, Event::SteppedDown { term, .. } if *term == term_a).then_some(())
    })
    .await;
    // a stepped down while the store still counts the lease as a's: it never acted on a
    // lease that might have passed to another.
    let now = store_b.ping().await.unwrap();
    let lease = store_b.current_lease().await.unwrap();
    let lease =
        lease.unwrap_or_else(|| panic!("{backend:?}: a stepped down after its lease lapsed"));
    assert_eq!(
        (lease.instance_id.as_str(), lease.term),
        ("a", term_a),
        "{backend:?}"
    );
    assert!(lease.expires_at > now, "{backend:?}: {lease:?} at {now}");

    let (term_b, recovered) = wait_for(&mut b_events, "b's election", elected).await;
    assert_eq!(term_b, term_a + 1, "{backend:?}");
    assert_eq!(
        recovered,
        vec![task],
        "{backend:?}: b recovers a's task first"
    );
    let finished = wait_for(&mut b_events, "b to finish the task", |e| match e {
        Event::Finished {
            task_id,
            attempt,
            status,
            result,
            ..
        } if *task_id == task => Some((*attempt, *status, *result)),
        _ => None,
    })
    .await;
    assert_eq!(
        finished,
        (2, TaskStatus::Complete, ResultStatus::Success),
        "{backend:?}"
    );
    let abandoned = wait_for(&mut a_events, "a to leave its task", |e| match e {
        Event::Abandoned {
            task_id, reason, ..
        } if *task_id == task => Some(reason.clone()),
        Event::Finished { task_id, .. } if *task_id == task => {
            panic!("{backend:?}: the deposed leader finished the task: {e:?}")
        }
        _ => None,
    })
    .await;
    assert!(
        abandoned.contains("lease was lost"),
        "{backend:?}: {abandoned}"
    );

    {
        let late = late.lock().unwrap();
        assert_eq!(late.reason, Some(CancelReason::LeaseLost), "{backend:?}");
        let refused =
            |r: &Option<Result<ResultMessage>>| matches!(r, Some(Err(Error::LeaseLost(_))));
        assert!(
            refused(&late.right_after),
            "{backend:?}: {:?}",
            late.right_after
        );
        assert!(
            refused(&late.through_context),
            "{backend:?}: {:?}",
            late.through_context
        );
        assert!(
            refused(&late.through_store),
            "{backend:?}: {:?}",
            late.through_store
        );
    }
    let stored = store_b.get_task(task).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Complete, "{backend:?}");
    assert_eq!(stored.claimed_by.as_deref(), Some("b"), "{backend:?}");
    assert_eq!(stored.attempt, 2, "{backend:?}");
    assert_eq!(
        stored.result.message.as_deref(),
        Some("deployed"),
        "{backend:?}"
    );
    let texts: Vec<_> = stored
        .result
        .details
        .message_list
        .iter()
        .map(|m| m.message.as_str())
        .collect();
    assert!(
        texts.contains(&"a started") && texts.contains(&"done by b"),
        "{backend:?}: {texts:?}"
    );
    assert!(!texts.contains(&"late from a"), "{backend:?}: {texts:?}");
    assert!(
        !texts.contains(&"a after stepping down"),
        "{backend:?}: {texts:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_or_requeues_its_tasks_and_hands_over_within_one_claim_interval(
) {
    for backend in BACKENDS {
        handover(backend).await;
    }
}

async fn handover(backend: Backend) {
    // A long lease: without the release, b would wait 30 s for it to lapse.
    let claim = Duration::from_millis(500);
    let config = config(Duration::from_secs(30), claim, Duration::from_millis(100));
    let opened = open_fresh(backend, &config).await;
    let store_b = open_again(&opened, &config).await;
    let quick = queue(&*opened.store, "quick", None).await;
    let stuck = queue(&*opened.store, "stuck", None).await;

    let handler = |ctx: TaskContext| async move {
        if ctx.task().action == "stuck" && ctx.term() == 1 {
            // Ignores its cancellation: the shutdown deadline must end it.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Outcome::success())
    };
    let a = Runtime::builder(opened.store.clone(), "a")
        .leader_config(&config.leader)
        .concurrency(2)
        .shutdown_deadline(Duration::from_secs(1))
        .start(handler)
        .unwrap();
    let mut a_events = a.subscribe();
    wait_for(&mut a_events, "a's election", elected).await;
    let mut started = 0;
    wait_for(&mut a_events, "both tasks to start", |e| {
        started += matches!(e, Event::Started { .. }) as usize;
        (started == 2).then_some(())
    })
    .await;
    let b = Runtime::builder(store_b.clone(), "b")
        .leader_config(&config.leader)
        .start(handler)
        .unwrap();
    let mut b_events = b.subscribe();
    wait_for(&mut b_events, "b to follow", |e| {
        matches!(e, Event::Follower { holder: Some(h), .. } if h == "a").then_some(())
    })
    .await;

    let mut watch = a.subscribe();
    a.shutdown().await;
    let released = Instant::now();
    let mut a_saw = Vec::new();
    while let Ok(event) = watch.try_recv() {
        a_saw.push(event);
    }
    assert!(
        a_saw.iter().any(|e| matches!(e, Event::Finished { task_id, status: TaskStatus::Complete, .. } if *task_id == quick)),
        "{backend:?}: the running quick task finished before the shutdown returned: {a_saw:?}"
    );
    assert!(
        a_saw.iter().any(|e| matches!(e, Event::Abandoned { task_id, reason, .. } if *task_id == stuck && reason.contains("requeued"))),
        "{backend:?}: the stuck task was requeued at the deadline: {a_saw:?}"
    );
    assert!(
        a_saw
            .iter()
            .any(|e| matches!(e, Event::Released { term: 1, .. })),
        "{backend:?}: {a_saw:?}"
    );
    let (term_b, recovered) = wait_for(&mut b_events, "b's election", elected).await;
    let waited = released.elapsed();
    assert!(
        waited <= claim + Duration::from_millis(250),
        "{backend:?}: b took the lease {waited:?} after a released it (claim interval {claim:?})"
    );
    assert_eq!(term_b, 2, "{backend:?}");
    assert!(
        recovered.is_empty(),
        "{backend:?}: a left nothing running: {recovered:?}"
    );
    wait_for(&mut b_events, "b to run the requeued task", |e| {
        matches!(e, Event::Finished { task_id, status: TaskStatus::Complete, attempt: 2, .. } if *task_id == stuck).then_some(())
    })
    .await;
    b.shutdown().await;
    let stuck = store_b.get_task(stuck).await.unwrap().unwrap();
    assert_eq!(
        (stuck.status, stuck.claimed_by.as_deref(), stuck.attempt),
        (TaskStatus::Complete, Some("b"), 2),
        "{backend:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_handler_runs_per_key_among_8() {
    for backend in BACKENDS {
        per_key(backend).await;
    }
}

async fn per_key(backend: Backend) {
    let config = config(
        Duration::from_secs(30),
        Duration::from_millis(500),
        Duration::from_millis(100),
    );
    let opened = open_fresh(backend, &config).await;
    let (nodes, per_node) = (5, 8);
    let mut tasks = Vec::new();
    for i in 0..nodes * per_node {
        let node = format!("n{}", i % nodes);
        tasks.push((
            queue(&*opened.store, "deploy_node", Some(&node)).await,
            node,
        ));
    }
    #[derive(Default)]
    struct Seen {
        active: HashMap<String, usize>,
        most_per_key: usize,
        most_at_once: usize,
        order: HashMap<String, Vec<TaskId>>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = {
        let seen = seen.clone();
        move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                let node = node_of(ctx.task()).unwrap();
                {
                    let mut s = seen.lock().unwrap();
                    *s.active.entry(node.clone()).or_default() += 1;
                    let at_once: usize = s.active.values().sum();
                    s.most_at_once = s.most_at_once.max(at_once);
                    s.most_per_key = s.most_per_key.max(s.active[&node]);
                    s.order.entry(node.clone()).or_default().push(ctx.id());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                *seen.lock().unwrap().active.get_mut(&node).unwrap() -= 1;
                Ok(Outcome::success())
            }
        }
    };
    let rt = Runtime::builder(opened.store.clone(), "a")
        .leader_config(&config.leader)
        .concurrency(8)
        .exclusive_by(node_of)
        .start(handler)
        .unwrap();
    let mut events = rt.subscribe();
    let mut done = 0;
    wait_for(&mut events, "every task to finish", |e| {
        done += matches!(
            e,
            Event::Finished {
                status: TaskStatus::Complete,
                ..
            }
        ) as usize;
        (done == tasks.len()).then_some(())
    })
    .await;
    rt.shutdown().await;
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.most_per_key, 1,
        "{backend:?}: two handlers ran on one node at once"
    );
    assert!(
        seen.most_at_once > 1,
        "{backend:?}: handlers of different nodes never overlapped ({})",
        seen.most_at_once
    );
    // Each node's tasks ran in the order they were queued (claimed oldest first).
    for node in (0..nodes).map(|i| format!("n{i}")) {
        let queued: Vec<TaskId> = tasks
            .iter()
            .filter(|(_, n)| *n == node)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(seen.order[&node], queued, "{backend:?}: {node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_cancels_a_handler_and_errors_and_panics_fail_tasks() {
    for backend in BACKENDS {
        endings(backend).await;
    }
}

async fn endings(backend: Backend) {
    let config = config(
        Duration::from_secs(30),
        Duration::from_millis(500),
        Duration::from_millis(100),
    );
    let opened = open_fresh(backend, &config).await;
    let store = opened.store.clone();
    let stop = queue(&*store, "wait", None).await;
    let failing = queue(&*store, "fail", None).await;
    let panicking = queue(&*store, "panic", None).await;
    let requeued = queue(&*store, "requeue", None).await;
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let rt = {
        let reasons = reasons.clone();
        Runtime::builder(store.clone(), "a")
            .leader_config(&config.leader)
            .concurrency(4)
            .start(move |ctx: TaskContext| {
                let reasons = reasons.clone();
                async move {
                    match ctx.task().action.as_str() {
                        "wait" => {
                            ctx.cancelled().await;
                            reasons.lock().unwrap().push(ctx.cancel_reason());
                            Ok(Outcome::success())
                        }
                        "fail" => Err(Error::invalid("node", "no such node n9").into()),
                        "panic" => panic!("the handler's own bug"),
                        _ if ctx.attempt() == 1 => Ok(Outcome::requeue()),
                        _ => Ok(Outcome::partial_success().with_failures(["n2"])),
                    }
                }
            })
            .unwrap()
    };
    let mut events = rt.subscribe();
    wait_for(&mut events, "the waiting handler", |e| {
        matches!(e, Event::Started { task_id, .. } if *task_id == stop).then_some(())
    })
    .await;
    store.terminate_task(stop, "operator", None).await.unwrap();
    let mut finished = HashMap::new();
    wait_for(&mut events, "every task to finish", |e| {
        if let Event::Finished {
            task_id,
            status,
            result,
            attempt,
            ..
        } = e
        {
            finished.insert(*task_id, (*status, *result, *attempt));
        }
        (finished.len() == 4 && finished[&requeued].0 == TaskStatus::Complete).then_some(())
    })
    .await;
    rt.shutdown().await;
    assert_eq!(
        *reasons.lock().unwrap(),
        vec![Some(CancelReason::Terminate)],
        "{backend:?}"
    );
    assert_eq!(finished[&stop].0, TaskStatus::Terminated, "{backend:?}");
    assert_eq!(
        finished[&failing],
        (TaskStatus::Complete, ResultStatus::Failure, 1),
        "{backend:?}"
    );
    assert_eq!(
        finished[&panicking],
        (TaskStatus::Complete, ResultStatus::Failure, 1),
        "{backend:?}"
    );
    assert_eq!(
        finished[&requeued],
        (TaskStatus::Complete, ResultStatus::PartialSuccess, 2),
        "{backend:?}"
    );
    let failing = store.get_task(failing).await.unwrap().unwrap();
    let reason = failing.result.reason.unwrap_or_default();
    assert!(reason.contains("no such node n9"), "{backend:?}: {reason}");
    let panicking = store.get_task(panicking).await.unwrap().unwrap();
    assert_eq!(
        panicking.result.reason.as_deref(),
        Some("the handler panicked"),
        "{backend:?}"
    );
}

#[tokio::test]
async fn intervals_that_cannot_keep_the_lease_are_refused() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(&Config::default()));
    let leader = LeaderConfig {
        grace_period: Duration::from_secs(10),
        claim_interval: Duration::from_secs(9),
        ..Default::default()
    };
    let e = Runtime::builder(store.clone(), "a")
        .leader_config(&leader)
        .start(|_ctx: TaskContext| async { Ok(Outcome::success()) })
        .unwrap_err();
    assert!(
        e.to_string().contains("claim interval must be shorter"),
        "{e}"
    );
    let e = Runtime::builder(store.clone(), "a")
        .concurrency(0)
        .start(|_ctx: TaskContext| async { Ok(Outcome::success()) })
        .unwrap_err();
    assert!(e.to_string().contains("runtime.concurrency"), "{e}");
    let e = Runtime::builder(store, "a\0b")
        .start(|_ctx: TaskContext| async { Ok(Outcome::success()) })
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

#[allow(dead_code)]
fn _handles_are_send(h: RuntimeHandle) -> impl Send {
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_a_lost_lease_is_aborted_after_the_shutdown_deadline() {
    for backend in BACKENDS {
        let config = config(
            Duration::from_secs(2),
            Duration::from_millis(200),
            Duration::from_millis(100),
        );
        let opened = open_fresh(backend, &config).await;
        let task = queue(&*opened.store, "hang", None).await;
        let dropped = Arc::new(Mutex::new(false));
        struct OnDrop(Arc<Mutex<bool>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = true;
            }
        }
        let rt = {
            let dropped = dropped.clone();
            Runtime::builder(opened.store.clone(), "a")
                .leader_config(&config.leader)
                .shutdown_deadline(Duration::from_millis(300))
                .start(move |_ctx: TaskContext| {
                    let guard = OnDrop(dropped.clone());
                    async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                        Ok(Outcome::success())
                    }
                })
                .unwrap()
        };
        let mut events = rt.subscribe();
        wait_for(&mut events, "the handler", |e| {
            matches!(e, Event::Started { .. }).then_some(())
        })
        .await;
        rt.pause_lease_renewals();
        let reason = wait_for(&mut events, "the handler to be left", |e| match e {
            Event::Abandoned {
                task_id, reason, ..
            } if *task_id == task => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(
            reason.contains("did not stop within the shutdown deadline"),
            "{backend:?}: {reason}"
        );
        // The handler's future was dropped: it holds nothing into a later term.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !*dropped.lock().unwrap() {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: the handler was not aborted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rt.resume_lease_renewals();
        rt.shutdown().await;
    }
}
