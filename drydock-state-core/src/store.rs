//! The store traits every backend implements, and the guarantee of each method.
//!
//! A backend is one value implementing all six; [`StateStore`] names the combination and
//! applications hold it as `Arc<dyn StateStore>`. The conformance kit
//! ([`crate::testkit`], feature `testkit`) checks every guarantee stated here.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::*;

/// Tasks: the orchestrator's queue and history.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task and returns it as stored. Fails with `AlreadyExists` if the id exists,
    /// `NotFound` if its parent does not, `InvalidInput` if [`NewTask::validate`] refuses it.
    async fn create_task(&self, task: &NewTask) -> Result<Task>;

    /// Reads a task with its result messages assembled in sequence order and
    /// `result.details.errorCount` set. `Ok(None)` if there is no such task.
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>>;

    /// Writes the fields `update` sets (see [`TaskUpdate`]), sets `updated` to now and returns
    /// the stored task. Refused, with nothing written:
    /// * `NotFound` for an unknown task, or a parent that does not exist;
    /// * with a `guard`, `LeaseLost` unless the task carries exactly that claim and, when the
    ///   guard has a term, its instance holds the live lease with that term, checked in the
    ///   same statement or transaction as the write;
    /// * `Conflict` when the task is terminal (a finished task takes no write, guarded or
    ///   not) or the update moves it into `running` or `terminating`
    ///   ([`TaskUpdate::check_transition`]).
    ///
    /// A move back to `requested` or `queued` ends the task's claim.
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task>;

    /// Moves a task to `status`: [`TaskStore::update_task`] with only the status set, under
    /// the same rules.
    async fn set_status(
        &self,
        id: TaskId,
        status: TaskStatus,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        self.update_task(id, &TaskUpdate::new().status(status), guard)
            .await
    }

    /// Tasks matching `filter`, ordered by `(created, task_id)`, with their messages assembled.
    /// Costs a constant number of queries whatever the page size.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>>;

    /// How many tasks match `filter`: as many as [`TaskStore::list_tasks`] returns for it
    /// without its [`TaskFilter::limit`], which is ignored here; every other condition holds,
    /// the keyset [`TaskFilter::after`] included. One count, no task read (SQL backends run one
    /// `SELECT count(*)`), so it is cheap enough to sample, e.g. as a gauge of queued tasks.
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64>;

    /// Creates `task` as a subtask of `parent` and appends its id to `parent`'s
    /// `subtask_id_list` (an id already listed is not listed twice), in one transaction or
    /// statement: both are written or neither is. The child is stored with `parent_task_id`
    /// set to `parent` and returned as stored. Refused, with nothing written (no child, the
    /// parent's list unchanged):
    /// * `InvalidInput` as [`TaskStore::create_task`] refuses a task
    ///   ([`NewTask::validate`]), or when `task.parent_task_id` names another task than
    ///   `parent` ([`NewTask::subtask_of`]; unset is fine);
    /// * `NotFound` (entity task) if `parent` does not exist;
    /// * with a `guard`, `LeaseLost` unless the parent carries exactly that claim and, when
    ///   the guard has a term, its instance holds the live lease with that term, checked in
    ///   the same statement or transaction as the write (see [`TaskStore::update_task`]);
    /// * `Conflict` if the parent is terminal, terminating or marked for termination (as
    ///   [`TaskStore::add_subtask`]);
    /// * `AlreadyExists` if a task with the child's id exists.
    ///
    /// When several apply, the first in this order is reported.
    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task>;

    /// Appends `child` to `parent`'s `subtask_id_list`, atomically: concurrent appends are all
    /// kept, and appending an id already present is a no-op. `NotFound` if `parent` does not
    /// exist; `Conflict` if it is terminal, terminating or marked for termination (no new work
    /// under a task being stopped); with a `guard`, `LeaseLost` unless the parent carries that
    /// claim (see [`TaskStore::update_task`]).
    async fn add_subtask(&self, parent: TaskId, child: TaskId, guard: Option<&Claim>)
        -> Result<()>;

    /// The task `root` and its subtasks down `depth` levels below it (`None`: all), found by
    /// following each task's `subtask_id_list` in order, breadth first: the root at depth 0,
    /// then its listed subtasks, then theirs. Each id comes once, the first time it is reached
    /// (a list naming an id twice, or a cycle, does not repeat it); an id listed but not stored
    /// comes with `task: None` and is not followed. Empty when `root` does not exist. Tasks
    /// come with their messages assembled, in a constant number of statements whatever the
    /// tree's size (a recursive query, not one per task).
    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>>;

    /// The tasks listed in `parent`'s `subtask_id_list`, in that order, restricted by `which`,
    /// with messages assembled. `NotFound` if `parent` does not exist.
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>>;

    /// Atomically moves the oldest queued task (by `created`, then id) whose action is allowed
    /// to `running`, records the claim (instance, term, claim id, time) and raises its
    /// `attempt` by one, and returns it. No task is ever handed to two claimers. `Ok(None)`
    /// when nothing matching is queued. With a term, fails with `LeaseLost` unless
    /// `instance_id` holds the live lease with that term.
    ///
    /// A queued task marked for termination is never handed out: it becomes `terminated`
    /// instead (Drydock's orchestrator skipped such tasks the same way).
    ///
    /// With a claim id, a request re-sent after an error is answered with the task already
    /// claimed under that id (if the first one took effect), not with another task; a claim
    /// id carried by a task another instance claimed is a `Conflict`.
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>>;

    /// After a change of leader: every `running` or `terminating` task claimed under a term
    /// lower than `current_term` is recovered, with a result message saying who held it. A
    /// running task is requeued (or, if marked for termination, terminated) or failed, by
    /// `policy`; a terminating task becomes `terminated` whatever the policy. Either way the
    /// claim ends, so no write guarded by it is accepted again. Tasks claimed without a term
    /// are not touched. Returns the ids recovered, oldest first; running it again recovers
    /// nothing more.
    async fn recover_orphans(&self, current_term: i64, policy: OrphanPolicy)
        -> Result<Vec<TaskId>>;

    /// Marks a task and its whole subtree (by parent link) for termination, as Drydock's
    /// orchestrator did: each gets `terminate`, `terminated` and `terminated_by`; a
    /// `requested` or `queued` one becomes `terminated`, a `running` one `terminating` (its
    /// worker winds down and finishes it). A finished task only records the request. Returns
    /// the task `id` as stored; `NotFound` for an unknown id; with a `guard`, `LeaseLost`
    /// unless the task `id` carries that claim.
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task>;

    /// Deletes every task tree whose root was created more than `older_than` ago (the store's
    /// clock), with all its subtasks and messages, in batches that never lock a table for long.
    /// Younger trees are untouched, and so is every tree with a task that is running or
    /// terminating (live work); requested and queued leftovers go with their trees. The
    /// report counts what was deleted. `InvalidInput` for a zero retention.
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport>;

    /// Waits until a task may have been queued, or `max_wait` has passed, whichever is first.
    /// A claimer with nothing to do calls this between [`TaskStore::claim_next`] attempts.
    /// Backends that can be told of new work (PostgreSQL `LISTEN`, the in-memory store) return
    /// as soon as it is queued; the default simply sleeps `max_wait`, the poll that is every
    /// backend's safety net. A wake-up is a hint, never a promise that a claim will succeed.
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        tokio::time::sleep(max_wait).await;
        Ok(())
    }

    /// [`TaskStore::claim_next`] for up to `n` tasks at once, atomically: the `n` oldest
    /// queued tasks (by `created`, then id) whose action is allowed (fewer if fewer are
    /// queued, none when none are) move to `running`, each with the claim recorded and its
    /// `attempt` raised by one, and come back oldest first. No task is ever handed to two
    /// claimers, whether they claim one or many. With a term, fails with `LeaseLost` and
    /// claims nothing unless `instance_id` holds the live lease with that term, checked in the
    /// same statement or transaction as the claim. Queued tasks marked for termination are
    /// terminated instead of handed out, as `claim_next` does.
    ///
    /// `InvalidInput` (field `claim.n`) for `n` of zero or above [`MAX_CLAIM_BATCH`].
    ///
    /// Claim ids are unique per task, so with a claim id the `i`-th task of the batch (from
    /// 0, oldest first) records [`batch_claim_id`]`(claim_id, i)`
    /// ([`ClaimRequest::batch_claim_ids`]). A request re-sent with the same claim id is
    /// answered with the tasks already claimed under those ids (if the first one took
    /// effect), oldest first, and claims nothing more; one of them claimed by another
    /// instance is a `Conflict`.
    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>>;

    /// Many [`TaskStore::update_task`]s in one call (in one transaction where the backend
    /// allows it), in the order given, each checked with its own guard under `update_task`'s
    /// rules. The outcomes are per task, one for each update in order: a refused update
    /// (`NotFound`, `LeaseLost`, `Conflict`, `InvalidInput`) writes nothing for its task and
    /// does not stop the others, which are written. The outer error is only for a failure of
    /// the store itself (then which updates were written is not known, as for a single
    /// `update_task` that fails so). An empty slice is an empty answer.
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>>;

    /// Creates `parent` and its `subtasks` in one transaction, all or nothing, and returns
    /// them as stored, parent first: each subtask's `parent_task_id` is the parent (a subtask
    /// may leave it unset), and the parent's `subtask_id_list` lists the subtasks in the
    /// order given. Refused, with nothing stored, as [`TaskStore::create_task`] refuses any
    /// of them (`AlreadyExists` for an id stored already, `NotFound` for an unknown parent of
    /// the parent, `InvalidInput`), and `InvalidInput` for what [`tree_subtasks`] refuses (an
    /// id twice in the tree, a subtask naming another parent, more than
    /// [`MAX_TREE_SUBTASKS`] subtasks).
    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>>;
}

/// Result messages, kept in the order they were appended.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends one message to a task; returns it as stored, with its sequence number and the
    /// store's timestamp. The text is kept whole whatever its length. `NotFound` for an
    /// unknown task; with a `guard` (a claimant reporting on the task it runs), `LeaseLost`
    /// unless the task carries that claim (see [`TaskStore::update_task`]). Messages are
    /// accepted on a finished task: they are its history.
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage>;

    /// Appends many messages to a task in one operation, all or none, in the order given,
    /// under the rules of [`MessageStore::append_message`].
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>>;

    /// A task's messages in sequence order (empty for a task with none or an unknown task).
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>>;
}

/// Build history of nodes, kept across redeploys.
#[async_trait]
pub trait BuildStore: Send + Sync {
    /// Records one build-data element; a `None` collected date becomes the store's now.
    /// With a `guard`, `LeaseLost` unless the element's task carries that claim (see
    /// [`crate::TaskStore::update_task`]); without one, the task need not exist (build history
    /// outlives purged tasks).
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()>;

    /// The build data of any of `tasks`, newest first, in one statement (for task views). Of
    /// equal collected dates, ordered by task id, then the later recorded first.
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>>;

    /// Build data matching `query` (node AND task when both are given), newest first. With
    /// `latest`, one row per node and generator: the newest. With [`Verbosity::Brief`] the
    /// element is not read and is `None`.
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>>;
}

/// The leader lease: of several orchestrator instances, at most one holds it at any time.
///
/// The lease is judged by the store's clock (the database's, for SQL backends), never the
/// caller's. It lasts for the grace period the store was opened with. Every change of holder
/// raises the term.
#[async_trait]
pub trait InstanceLock: Send + Sync {
    /// Takes the lease if it is free, lapsed, or already ours (then it is renewed with the
    /// same term). A new holder gets `term` one higher than any before.
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome>;

    /// Extends the lease if `instance_id` holds it and it has not lapsed; otherwise reports
    /// `Denied` with the current holder, if any, and takes nothing.
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome>;

    /// Gives the lease up if `instance_id` holds it, so another can claim it at once. Returns
    /// whether it was held. The term is kept, so the next holder's is still higher.
    async fn release_lease(&self, instance_id: &str) -> Result<bool>;

    /// The live lease, if any instance holds one.
    async fn current_lease(&self) -> Result<Option<Lease>>;
}

/// Boot actions: what nodes run on first boot and what they report (Drydock's `boot_action`
/// and `boot_action_status` tables). Ids, keys and names are kept byte for byte.
#[async_trait]
pub trait BootActionStore: Send + Sync {
    /// Sets a node's boot-action context, replacing the one it had. `NotFound` if the task
    /// does not exist.
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()>;

    /// A node's boot-action context, if it has one.
    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>>;

    /// Records a boot action. `Conflict` if its id exists, `NotFound` if its task does not.
    async fn add_boot_action(&self, action: &BootAction) -> Result<()>;

    /// Sets a boot action's status, as a node reports it, and returns the action as stored.
    /// In the same transaction it appends to the action's task a result message saying so
    /// ([`BootAction::status_message`]) and then the node's `details`, in order (when the
    /// task has been purged meanwhile, the status is still recorded, without messages).
    /// `NotFound` for an unknown id (Drydock silently said yes); `Conflict` when the stored
    /// status is final (`success`, `failure`; Drydock's API answered 409), and nothing is
    /// written.
    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction>;

    /// A node's boot actions keyed by action name; of several with one name (a redeployed
    /// node), the newest id.
    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>>;

    /// One boot action by id.
    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>>;
}

/// Importing rows as they are, keys and times included: how a site's history moves in (from
/// Drydock, see [`crate::adopt`]).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Writes `batch` ([`ImportBatch::validate`] refuses a malformed one) in one transaction,
    /// all or nothing, each row exactly as given: ids, statuses, claims (a task can arrive
    /// `running` with a claim, which [`TaskStore::recover_orphans`] then treats as any
    /// other), attempts, message sequence numbers and timestamps.
    ///
    /// A row already stored is not written again and counts as present, so importing the same
    /// batch twice writes nothing the second time:
    /// * a task by its id, a boot-action context by its node, a boot action by its id (the
    ///   stored row wins; it is not compared);
    /// * a message by its sequence number: `Conflict` (entity `Message`) when the stored
    ///   message of that number belongs to another task;
    /// * build data, which has no key, by its whole content counted with multiplicity: the
    ///   n-th of several identical elements in the batch is present when the store holds at
    ///   least n such elements.
    ///
    /// `NotFound` when a task's parent or a message's task is neither in the batch nor stored.
    /// Afterwards the next appended message is numbered above every imported one. With
    /// [`ImportMode::DryRun`] the same work is done and rolled back.
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome>;
}

/// A complete backend: all six stores in one value.
#[async_trait]
pub trait StateStore:
    TaskStore + MessageStore + BuildStore + InstanceLock + BootActionStore + ImportStore
{
    /// The backend's name (`postgres`, `sqlite`, `memory`), for logs and summaries.
    fn backend_name(&self) -> &'static str;

    /// The store's clock (the database's `now()` for SQL backends): a round trip that proves
    /// the store answers, as Drydock's health check did with `get_now`. `Unavailable` when it
    /// cannot be reached.
    async fn ping(&self) -> Result<DateTime<Utc>>;
}
