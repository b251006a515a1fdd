//! The worker loop: claims while the lease keeper says this instance leads, runs handlers,
//! enforces the per-key limit, watches for termination requests, and shuts down gracefully.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::context::{Cancel, CancelReason, TaskContext};
use super::event::Event;
use super::lease::Leadership;
use super::metrics::*;
use super::Shared;
use crate::error::{Error, Result};
use crate::model::{
    Claim, ClaimRequest, ResultStatus, Task, TaskFilter, TaskId, TaskStatus, TaskUpdate,
    MAX_CLAIM_BATCH,
};

/// A task claimed under a leadership, not yet finished.
struct Claimed {
    task: Task,
    claim: Claim,
    term: i64,
    key: Option<String>,
    claimed_at: Instant,
    leadership: Cancel,
}

struct Running {
    claimed: Arc<Claimed>,
    cancel: Cancel,
}

struct Worker {
    shared: Arc<Shared>,
    handlers: JoinSet<()>,
    running: HashMap<Id, Running>,
    busy: HashSet<String>,
    waiting: VecDeque<Claimed>,
}

pub(crate) async fn work(
    shared: Arc<Shared>,
    mut leadership: watch::Receiver<Leadership>,
    shutdown: CancellationToken,
) {
    let s = shared.settings.clone();
    let mut w = Worker {
        shared: shared.clone(),
        handlers: JoinSet::new(),
        running: HashMap::new(),
        busy: HashSet::new(),
        waiting: VecDeque::new(),
    };
    let mut checks = interval(s.poll_interval);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Nothing matching was queued at the last claim: wait for a wake-up before the next.
    let mut idle = false;
    let mut retry_at: Option<Instant> = None;
    loop {
        let current = leadership.borrow_and_update().clone();
        w.drop_ended();
        let leader = match current {
            Leadership::Leader { term, cancel } if !cancel.token().is_cancelled() => {
                Some((term, cancel))
            }
            _ => None,
        };
        // Free handlers, and room to hold as many tasks waiting for their keys.
        let free = (s.concurrency - w.running.len().min(s.concurrency))
            .min(s.concurrency - w.waiting.len().min(s.concurrency));
        let may_claim = leader.is_some() && free > 0 && retry_at.is_none();
        if may_claim && !idle {
            let (term, cancel) = leader.clone().expect("checked");
            match w.claim(term, free).await {
                Ok(tasks) if !tasks.is_empty() => {
                    for task in tasks {
                        w.dispatch(task, term, cancel.clone());
                    }
                    continue;
                }
                Ok(_) => idle = true,
                Err(e) => {
                    shared.store_error("claiming a task", e.to_string());
                    retry_at = Some(Instant::now() + s.poll_interval.min(s.claim_interval));
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
                idle = false;
            }
            Some(done) = w.handlers.join_next_with_id(), if !w.handlers.is_empty() => {
                w.finished(done.map_or_else(|e| e.id(), |(id, ())| id));
            }
            woken = shared.store.wait_for_queued(s.poll_interval), if may_claim && idle => {
                if let Err(e) = woken {
                    shared.store_error("waiting for queued tasks", e.to_string());
                }
                idle = false;
            }
            _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
            }
            _ = checks.tick(), if leader.is_some() => {
                let (term, _) = leader.clone().expect("checked");
                w.check_terminations(term).await;
                w.sample_queue().await;
            }
        }
    }
    w.shut_down().await;
}

impl Worker {
    /// Claims up to `n` tasks (one with `claim_next`, more with one `claim_batch`) with the
    /// term and a new claim id; an error that may have lost the reply is retried with the same
    /// id and size, which returns the tasks the first attempt claimed, if any.
    async fn claim(&self, term: i64, n: usize) -> Result<Vec<Task>> {
        let request = ClaimRequest::new(&self.shared.instance)
            .actions(self.shared.settings.actions.iter().cloned())
            .fenced(term)
            .with_claim_id(Uuid::new_v4());
        let n = n.min(MAX_CLAIM_BATCH);
        let mut tries = 0;
        loop {
            let claimed = if n == 1 {
                self.shared
                    .store
                    .claim_next(&request)
                    .await
                    .map(|t| t.into_iter().collect())
            } else {
                self.shared.store.claim_batch(&request, n).await
            };
            match claimed {
                Err(e) if e.is_retryable() && tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a claimed task now, or queues it behind the running task of its key.
    fn dispatch(&mut self, task: Task, term: i64, leadership: Cancel) {
        let Some(claim) = task.claim() else {
            // Every backend returns the claim it made; one that does not is a backend bug.
            self.shared.store_error(
                "claiming a task",
                format!("task {} came back without its claim", task.task_id),
            );
            return;
        };
        self.shared.metrics.count(TASKS_CLAIMED, 1);
        let key = self.shared.key.as_ref().and_then(|key| key(&task));
        let claimed = Claimed {
            task,
            claim,
            term,
            key,
            claimed_at: Instant::now(),
            leadership,
        };
        self.waiting.push_back(claimed);
        self.start_ready();
    }

    /// Starts waiting tasks, oldest claim first, while a handler is free, skipping those whose
    /// key is busy.
    fn start_ready(&mut self) {
        while self.running.len() < self.shared.settings.concurrency {
            let Some(i) = self
                .waiting
                .iter()
                .position(|c| c.key.as_ref().is_none_or(|k| !self.busy.contains(k)))
            else {
                return;
            };
            let next = self.waiting.remove(i).expect("the position exists");
            self.spawn(next);
        }
    }

    fn spawn(&mut self, claimed: Claimed) {
        if let Some(k) = &claimed.key {
            self.busy.insert(k.clone());
        }
        let cancel = claimed.leadership.child();
        let claimed = Arc::new(claimed);
        let abort = self
            .handlers
            .spawn(run(self.shared.clone(), claimed.clone(), cancel.clone()));
        self.running.insert(abort.id(), Running { claimed, cancel });
        self.shared
            .metrics
            .set(TASKS_RUNNING, self.running.len() as f64);
    }

    /// A handler's task ended: its place and its key are free for the tasks waiting.
    fn finished(&mut self, id: Id) {
        let Some(done) = self.running.remove(&id) else {
            return;
        };
        if let Some(key) = &done.claimed.key {
            self.busy.remove(key);
        }
        self.start_ready();
        self.shared
            .metrics
            .set(TASKS_RUNNING, self.running.len() as f64);
    }

    /// Tasks waiting for their key under a leadership that has ended are left to the next
    /// leader, which recovers them.
    fn drop_ended(&mut self) {
        let (ended, live): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|c| c.leadership.token().is_cancelled());
        self.waiting = live.into();
        for c in ended {
            abandoned(&self.shared, &c, "the lease was lost before it started");
        }
    }

    /// Cancels the handlers of tasks marked for termination, and finishes waiting ones.
    async fn check_terminations(&mut self, term: i64) {
        if self.running.is_empty() && self.waiting.is_empty() {
            return;
        }
        let filter = TaskFilter {
            status: Some(TaskStatus::Terminating),
            claimed_by: Some(self.shared.instance.clone()),
            claim_term: Some(term),
            ..Default::default()
        };
        let marked: HashSet<TaskId> = match self.shared.store.list_tasks(&filter).await {
            Ok(tasks) => tasks.into_iter().map(|t| t.task_id).collect(),
            Err(e) => {
                self.shared
                    .store_error("checking termination requests", e.to_string());
                return;
            }
        };
        for r in self.running.values() {
            if marked.contains(&r.claimed.task.task_id) {
                r.cancel.cancel(CancelReason::Terminate);
            }
        }
        let (stop, keep): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|c| marked.contains(&c.task.task_id));
        self.waiting = keep.into();
        for c in stop {
            let update = TaskUpdate::new().status(TaskStatus::Terminated);
            finish(&self.shared, &c, &update, std::time::Duration::ZERO).await;
        }
    }

    /// Sets the queued-tasks gauge.
    async fn sample_queue(&self) {
        let actions = &self.shared.settings.actions;
        let filter = TaskFilter {
            status: Some(TaskStatus::Queued),
            action: (actions.len() == 1).then(|| actions[0].clone()),
            ..Default::default()
        };
        match self.shared.store.count_tasks(&filter).await {
            Ok(n) => self.shared.metrics.set(TASKS_QUEUED, n as f64),
            Err(e) => self
                .shared
                .store_error("counting queued tasks", e.to_string()),
        }
    }

    /// Stops claiming, requeues what has not started, waits for running handlers up to the
    /// deadline, then cancels them and requeues their tasks.
    async fn shut_down(mut self) {
        for c in std::mem::take(&mut self.waiting) {
            requeue(&self.shared, &c, "the runtime shut down before it started").await;
        }
        let deadline = Instant::now() + self.shared.settings.shutdown_deadline;
        while !self.handlers.is_empty() {
            tokio::select! {
                Some(done) = self.handlers.join_next_with_id() => {
                    self.finished(done.map_or_else(|e| e.id(), |(id, ())| id));
                }
                _ = sleep_until(deadline) => break,
            }
        }
        for r in self.running.values() {
            r.cancel.cancel(CancelReason::Shutdown);
        }
        self.handlers.abort_all();
        while self.handlers.join_next().await.is_some() {}
        for (_, r) in std::mem::take(&mut self.running) {
            requeue(
                &self.shared,
                &r.claimed,
                "the shutdown deadline passed while it ran",
            )
            .await;
        }
        self.shared.metrics.set(TASKS_RUNNING, 0.0);
    }
}

/// Aborts the handler when the task running it is aborted (shutdown deadline).
struct AbortOnDrop(tokio::task::JoinHandle<super::HandlerResult>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one handler and writes its outcome, guarded by the task's claim.
async fn run(shared: Arc<Shared>, c: Arc<Claimed>, cancel: Cancel) {
    let span = tracing::info_span!(
        "task",
        instance = %shared.instance,
        task_id = %c.task.task_id,
        action = %c.task.action,
        attempt = c.claim.attempt,
        term = c.term,
    );
    async {
        let ctx = TaskContext::new(
            c.task.clone(),
            c.claim.clone(),
            c.term,
            shared.store.clone(),
            cancel.clone(),
            c.leadership.clone(),
        );
        let started = Instant::now();
        shared
            .metrics
            .seconds(CLAIM_TO_START, started - c.claimed_at);
        shared.emit(Event::Started {
            instance: shared.instance.clone(),
            task_id: c.task.task_id,
            action: c.task.action.clone(),
            attempt: c.claim.attempt,
            term: c.term,
        });
        let mut handle = AbortOnDrop(tokio::spawn(
            shared.handler.call(ctx.clone()).in_current_span(),
        ));
        let deadline = shared.settings.shutdown_deadline;
        let lost = async {
            c.leadership.token().cancelled().await;
            tokio::time::sleep(deadline).await;
        };
        let result = tokio::select! {
            result = &mut handle.0 => result,
            _ = lost => {
                // Dropping the handle aborts the handler: it holds no place in a later term.
                return abandoned(
                    &shared,
                    &c,
                    "the lease was lost and the handler did not stop within the shutdown deadline",
                );
            }
        };
        let ran = started.elapsed();
        shared.metrics.seconds(HANDLER_DURATION, ran);
        if c.leadership.reason() == Some(CancelReason::LeaseLost) {
            return abandoned(&shared, &c, "the lease was lost while it ran");
        }
        let update = if ctx.cancel_handle().reason() == Some(CancelReason::Terminate) {
            TaskUpdate::new().status(TaskStatus::Terminated)
        } else {
            match result {
                Ok(Ok(outcome)) => outcome.update(),
                Ok(Err(e)) => match e.downcast_ref::<Error>() {
                    Some(lost @ Error::LeaseLost(_)) => {
                        return abandoned(&shared, &c, &lost.to_string());
                    }
                    _ => super::Outcome::failure(format!("the handler failed: {e}")).update(),
                },
                Err(e) if e.is_panic() => super::Outcome::failure("the handler panicked").update(),
                Err(_) => return abandoned(&shared, &c, "the handler was cancelled"),
            }
        };
        finish(&shared, &c, &update, ran).await;
    }
    .instrument(span)
    .await
}

/// Writes the finishing update, guarded; a refusal leaves the task to whoever holds it now.
async fn finish(shared: &Shared, c: &Claimed, update: &TaskUpdate, ran: std::time::Duration) {
    if c.leadership.reason() == Some(CancelReason::LeaseLost) {
        return abandoned(
            shared,
            c,
            "the lease was lost before its result was written",
        );
    }
    match shared
        .store
        .update_task(c.task.task_id, update, Some(&c.claim))
        .await
    {
        Ok(task) => {
            let metric = match (task.status, task.result.status) {
                (TaskStatus::Terminated, _) => TASKS_TERMINATED,
                (TaskStatus::Queued, _) => TASKS_REQUEUED,
                (_, ResultStatus::Failure) => TASKS_FAILED,
                _ => TASKS_COMPLETED,
            };
            shared.metrics.count(metric, 1);
            tracing::info!(status = %task.status, result = %task.result.status, "finished");
            shared.emit(Event::Finished {
                instance: shared.instance.clone(),
                task_id: task.task_id,
                action: task.action.clone(),
                attempt: c.claim.attempt,
                status: task.status,
                result: task.result.status,
                seconds: ran.as_secs_f64(),
            });
        }
        Err(e) => abandoned(shared, c, &format!("its result was refused: {e}")),
    }
}

/// Sends a task that did not finish back to the queue (shutdown), guarded.
async fn requeue(shared: &Shared, c: &Claimed, why: &str) {
    let update = TaskUpdate::new().status(TaskStatus::Queued);
    match shared
        .store
        .update_task(c.task.task_id, &update, Some(&c.claim))
        .await
    {
        Ok(_) => abandoned(shared, c, &format!("{why}; requeued")),
        Err(e) => abandoned(shared, c, &format!("{why}; the requeue was refused: {e}")),
    }
}

fn abandoned(shared: &Shared, c: &Claimed, reason: &str) {
    shared.metrics.count(TASKS_ABANDONED, 1);
    tracing::warn!(task_id = %c.task.task_id, reason, "abandoned");
    shared.emit(Event::Abandoned {
        instance: shared.instance.clone(),
        task_id: c.task.task_id,
        action: c.task.action.clone(),
        attempt: c.claim.attempt,
        reason: reason.to_string(),
    });
}
