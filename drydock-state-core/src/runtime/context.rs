//! What a handler is given ([`TaskContext`]) and what it returns ([`Outcome`]).

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::model::{
    BuildData, Claim, NewMessage, NewTask, ResultMessage, ResultStatus, Task, TaskId, TaskStatus,
    TaskUpdate,
};
use crate::store::StateStore;

/// Why a handler's cancellation token fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// The task was marked for termination (`terminating`): wind down; the runtime finishes
    /// it as `terminated` when the handler returns.
    Terminate,
    /// The runtime stopped acting as leader (its lease was taken, or a renewal could not be
    /// confirmed in time). Every write through the context is refused from now on; the next
    /// leader recovers the task.
    LeaseLost,
    /// The runtime is shutting down and the shutdown deadline has passed; the task goes back
    /// to the queue.
    Shutdown,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Terminate => "the task was marked for termination",
            CancelReason::LeaseLost => "the lease was lost",
            CancelReason::Shutdown => "the runtime is shutting down",
        })
    }
}

/// A cancellation that remembers why: the first reason given wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cancel {
    token: CancellationToken,
    reason: Arc<OnceLock<CancelReason>>,
}

impl Cancel {
    pub(crate) fn child(&self) -> Cancel {
        Cancel {
            token: self.token.child_token(),
            reason: Arc::default(),
        }
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// What the runtime gives a handler: the claimed task, its claim, and writes that all carry
/// the claim as their guard. A write is refused with [`Error::LeaseLost`] when the claim has
/// ended (the store checks it in the write's own transaction) and, without asking the store,
/// once the runtime has stopped acting as leader: a deposed instance makes no write, even one
/// the store would still accept because the lease has not yet lapsed by its clock.
///
/// Cloning is cheap; clones share the task's cancellation.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    task: Task,
    claim: Claim,
    term: i64,
    store: Arc<dyn StateStore>,
    /// The task's own cancellation (a child of the leadership's).
    cancel: Cancel,
    /// The leadership's: fired with `LeaseLost` or `Shutdown` for every task of the term.
    leadership: Cancel,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_id", &self.inner.task.task_id)
            .field("action", &self.inner.task.action)
            .field("claim", &self.inner.claim)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    pub(crate) fn new(
        task: Task,
        claim: Claim,
        term: i64,
        store: Arc<dyn StateStore>,
        cancel: Cancel,
        leadership: Cancel,
    ) -> Self {
        TaskContext {
            inner: Arc::new(Inner {
                task,
                claim,
                term,
                store,
                cancel,
                leadership,
            }),
        }
    }

    /// The task as claimed.
    pub fn task(&self) -> &Task {
        &self.inner.task
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.inner.task.task_id
    }

    /// The claim every write of this context carries.
    pub fn claim(&self) -> &Claim {
        &self.inner.claim
    }

    /// The lease term the task was claimed under.
    pub fn term(&self) -> i64 {
        self.inner.term
    }

    /// The task's attempt: 1 on its first claim, one more on each.
    pub fn attempt(&self) -> i64 {
        self.inner.claim.attempt
    }

    /// The store, for reads. Make writes about this task through the context, which guards
    /// them.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// A token that fires when the handler should stop: the task was marked for termination,
    /// the lease was lost, or the shutdown deadline passed ([`TaskContext::cancel_reason`]).
    pub fn cancellation(&self) -> CancellationToken {
        self.inner.cancel.token().clone()
    }

    /// Waits until the handler should stop (see [`TaskContext::cancellation`]).
    pub async fn cancelled(&self) {
        self.inner.cancel.token().cancelled().await
    }

    /// Whether the handler should stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.token().is_cancelled()
    }

    /// Why the handler should stop; `None` while it need not.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        if !self.is_cancelled() {
            return None;
        }
        self.inner
            .leadership
            .reason()
            .or_else(|| self.inner.cancel.reason())
    }

    /// Refuses any write once the runtime has stopped acting as leader.
    fn check(&self) -> Result<()> {
        match self.inner.leadership.reason() {
            Some(CancelReason::LeaseLost) => Err(Error::LeaseLost(format!(
                "instance {} stepped down from term {}; its write to task {} is refused",
                self.inner.claim.instance_id,
                self.inner.term,
                self.id()
            ))),
            _ => Ok(()),
        }
    }

    /// Appends a message to the task.
    pub async fn message(&self, message: &NewMessage) -> Result<ResultMessage> {
        self.check()?;
        self.inner
            .store
            .append_message(self.id(), message, Some(&self.inner.claim))
            .await
    }

    /// Appends an informational message.
    pub async fn info(&self, text: impl Into<String>) -> Result<ResultMessage> {
        self.message(&NewMessage::info(text)).await
    }

    /// Appends an error message (it counts in the task's `errorCount`).
    pub async fn error(&self, text: impl Into<String>) -> Result<ResultMessage> {
        self.message(&NewMessage::error(text)).await
    }

    /// Appends several messages, all or none, in order.
    pub async fn messages(&self, messages: &[NewMessage]) -> Result<Vec<ResultMessage>> {
        self.check()?;
        self.inner
            .store
            .append_messages(self.id(), messages, Some(&self.inner.claim))
            .await
    }

    /// Records build data collected by this task. `InvalidInput` when `data.task_id` is not
    /// this task.
    pub async fn build_data(&self, data: &BuildData) -> Result<()> {
        if data.task_id != self.id() {
            return Err(Error::invalid(
                "build_data.task_id",
                format!(
                    "is {}, but the context is task {}'s",
                    data.task_id,
                    self.id()
                ),
            ));
        }
        self.check()?;
        self.inner
            .store
            .record_build_data(data, Some(&self.inner.claim))
            .await
    }

    /// Creates a subtask of this task and lists it in the task's `subtask_id_list`, both in one
    /// write ([`crate::TaskStore::create_subtask`]).
    pub async fn create_subtask(&self, task: &NewTask) -> Result<Task> {
        self.check()?;
        self.inner
            .store
            .create_subtask(self.id(), task, Some(&self.inner.claim))
            .await
    }

    /// Writes fields of the task (its result so far, links, ...). The runtime writes the
    /// final status from the handler's [`Outcome`]; a handler that sets a final status itself
    /// finds the runtime's write refused as a conflict, reported as an abandoned task.
    pub async fn update(&self, update: &TaskUpdate) -> Result<Task> {
        self.check()?;
        self.inner
            .store
            .update_task(self.id(), update, Some(&self.inner.claim))
            .await
    }

    /// The task as stored now (`NotFound` if it was purged).
    pub async fn refresh(&self) -> Result<Task> {
        self.inner
            .store
            .get_task(self.id())
            .await?
            .ok_or_else(|| Error::not_found(crate::Entity::Task, self.id()))
    }

    pub(crate) fn cancel_handle(&self) -> &Cancel {
        &self.inner.cancel
    }
}

/// How a handler's work went: what the runtime writes to the task, guarded by its claim, when
/// the handler returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    requeue: bool,
    status: ResultStatus,
    message: Option<String>,
    reason: Option<String>,
    successes: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    fn complete(status: ResultStatus) -> Self {
        Outcome {
            requeue: false,
            status,
            message: None,
            reason: None,
            successes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Completed, everything succeeded.
    pub fn success() -> Self {
        Self::complete(ResultStatus::Success)
    }

    /// Completed, some targets succeeded and some failed.
    pub fn partial_success() -> Self {
        Self::complete(ResultStatus::PartialSuccess)
    }

    /// Completed, nothing succeeded, for `reason` (the task's `result.reason`).
    pub fn failure(reason: impl Into<String>) -> Self {
        Outcome {
            reason: Some(reason.into()),
            ..Self::complete(ResultStatus::Failure)
        }
    }

    /// Not done: back to the queue, to be claimed again (with a higher attempt).
    pub fn requeue() -> Self {
        Outcome {
            requeue: true,
            ..Self::complete(ResultStatus::Incomplete)
        }
    }

    /// Sets the task's `result.message` (builder style).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the targets that succeeded (builder style).
    pub fn with_successes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, t: I) -> Self {
        self.successes = t.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the targets that failed (builder style).
    pub fn with_failures<I: IntoIterator<Item = S>, S: Into<String>>(mut self, t: I) -> Self {
        self.failures = t.into_iter().map(Into::into).collect();
        self
    }

    /// The result status it writes (`incomplete` for a requeue).
    pub fn result_status(&self) -> ResultStatus {
        self.status
    }

    /// Whether it sends the task back to the queue.
    pub fn is_requeue(&self) -> bool {
        self.requeue
    }

    /// The update the runtime writes.
    pub(crate) fn update(&self) -> TaskUpdate {
        if self.requeue {
            return TaskUpdate::new().status(TaskStatus::Queued);
        }
        let mut update = TaskUpdate::new()
            .status(TaskStatus::Complete)
            .result_status(self.status);
        if self.message.is_some() {
            update = update.result_message(self.message.clone());
        }
        if self.reason.is_some() {
            update = update.result_reason(self.reason.clone());
        }
        if !self.successes.is_empty() {
            update = update.successes(self.successes.clone());
        }
        if !self.failures.is_empty() {
            update = update.failures(self.failures.clone());
        }
        update
    }
}
