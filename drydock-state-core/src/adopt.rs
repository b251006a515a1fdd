//! Adopting a Drydock site: its database's rows as Drydock wrote them ([`DrydockSource`], read
//! by `drydock_state_postgres::adopt`), turned into an [`ImportBatch`] by [`plan`], with a
//! per-table [`AdoptReport`] of what was read, written, transformed and skipped, and why.
//!
//! What Drydock wrote, and what becomes of it (its `statemgmt/state.py` and `objects/task.py`):
//! * ids are 16-byte `bytea`: read as UUIDs (a boot action's id is a ULID, kept as its bytes);
//!   a row whose own id is not 16 bytes is skipped;
//! * `subtask_id_list` may name an id twice (kept once, in order), name a task that is gone or
//!   belongs to another parent (dropped), or miss a child whose `parent_task_id` names the
//!   task (appended, oldest first); a listed child without a parent link gets one;
//! * a subtask whose parent is gone (Drydock's one-level retention leaves them) becomes a root;
//! * `request_context` and message `extra` were JSON strings holding JSON (`json.dumps` into a
//!   `json` column): decoded once more; JSON `null` is none; `result_links` is `{rel: [href]}`;
//!   NULL lists are empty, a NULL `terminate` is false, a NULL `retry` is 0;
//! * a queued task with `terminate` set becomes `terminated` (Drydock's loop skipped it);
//!   `running` and `terminating` tasks carry a legacy claim, instance [`LEGACY_CLAIMANT`] at
//!   term 0, so the first leader's [`crate::TaskStore::recover_orphans`] requeues or fails
//!   them;
//! * message texts Drydock cut at 127 characters cannot be restored: they are kept as stored,
//!   and counted in the report;
//! * `active_instance` is not carried over: it has no term, and Drydock must be stopped.
//!
//! Times arrive already in UTC: the reader converts Drydock's naive timestamps with the time
//! zone they were written in (see [`DrydockSource::time_zone`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::*;

/// The claimant of a task Drydock was running when it was stopped: a claim at term 0, below
/// every term a drydock-state leader holds, so the first one recovers it.
pub const LEGACY_CLAIMANT: &str = "drydock (adopted)";

/// The Drydock alembic revision [`plan`] is written for: the head of Drydock's migrations.
pub const DRYDOCK_REVISION: &str = "4713e7ebca9";

/// A row of Drydock's `tasks` table, as stored (times converted to UTC).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct DrydockTask {
    pub task_id: Vec<u8>,
    pub parent_task_id: Option<Vec<u8>>,
    pub subtask_id_list: Option<Vec<Option<Vec<u8>>>>,
    pub result_status: Option<String>,
    pub result_message: Option<String>,
    pub result_reason: Option<String>,
    pub result_error_count: Option<i32>,
    pub result_successes: Option<Vec<Option<String>>>,
    pub result_failures: Option<Vec<Option<String>>>,
    pub result_links: Option<Value>,
    pub retry: Option<i32>,
    pub status: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub updated: Option<DateTime<Utc>>,
    pub design_ref: Option<String>,
    pub request_context: Option<Value>,
    pub node_filter: Option<Value>,
    pub action: Option<String>,
    pub terminated: Option<DateTime<Utc>>,
    pub terminated_by: Option<String>,
    pub terminate: Option<bool>,
}

/// A row of Drydock's `result_message` table.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct DrydockMessage {
    pub sequence: i64,
    pub task_id: Option<Vec<u8>>,
    pub message: Option<String>,
    pub error: Option<bool>,
    pub context: Option<String>,
    pub context_type: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub extra: Option<Value>,
}

/// A row of Drydock's `build_data` table (it has no key).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct DrydockBuildData {
    pub node_name: Option<String>,
    pub task_id: Option<Vec<u8>>,
    pub collected_date: Option<DateTime<Utc>>,
    pub generator: Option<String>,
    pub data_format: Option<String>,
    pub data_element: Option<String>,
}

/// A row of Drydock's `boot_action` table: a node's context.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct DrydockBootContext {
    pub node_name: String,
    pub task_id: Option<Vec<u8>>,
    pub identity_key: Option<Vec<u8>>,
}

/// A row of Drydock's `boot_action_status` table.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct DrydockBootAction {
    pub node_name: Option<String>,
    pub action_id: Vec<u8>,
    pub action_name: Option<String>,
    pub task_id: Option<Vec<u8>>,
    pub identity_key: Option<Vec<u8>>,
    pub action_status: Option<String>,
}

/// Everything read from a Drydock database, in one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrydockSource {
    /// `tasks`, in `(created, task_id)` order.
    pub tasks: Vec<DrydockTask>,
    /// `result_message`, in `sequence` order.
    pub messages: Vec<DrydockMessage>,
    /// `build_data`, in collection order (`collected_date`, then as stored).
    pub build_data: Vec<DrydockBuildData>,
    /// `boot_action`.
    pub boot_contexts: Vec<DrydockBootContext>,
    /// `boot_action_status`.
    pub boot_actions: Vec<DrydockBootAction>,
    /// Rows in `active_instance` (not carried over).
    pub active_instances: u64,
    /// The zone Drydock's sessions wrote task and message times in, e.g. `UTC` or
    /// `America/New_York`; build data's dates were written in UTC whatever it is.
    pub time_zone: String,
    /// Where [`DrydockSource::time_zone`] came from (the server's setting for the role and
    /// database, its configuration file, or the operator's `--time-zone`).
    pub time_zone_origin: String,
    /// The database's alembic revision.
    pub revision: String,
}

/// What happened to one Drydock table's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// The Drydock table.
    pub table: String,
    /// Rows read.
    pub read: u64,
    /// Rows written (in a dry run: that would be).
    pub written: u64,
    /// Rows already in the store, not written again.
    pub present: u64,
    /// Rows changed on the way, by what was done; a row can count under several.
    pub transformed: BTreeMap<String, u64>,
    /// Rows not carried over, by why.
    pub skipped: BTreeMap<String, u64>,
    /// Facts about the rows worth knowing that changed nothing.
    pub noted: BTreeMap<String, u64>,
}

impl TableReport {
    fn new(table: &str, read: usize) -> Self {
        TableReport {
            table: table.into(),
            read: read as u64,
            ..Default::default()
        }
    }

    fn transformed(&mut self, why: &str) {
        *self.transformed.entry(why.into()).or_default() += 1;
    }

    fn skipped(&mut self, why: &str) {
        *self.skipped.entry(why.into()).or_default() += 1;
    }

    fn noted(&mut self, what: &str) {
        *self.noted.entry(what.into()).or_default() += 1;
    }

    fn record(&mut self, count: ImportCount) {
        self.written = count.written;
        self.present = count.present;
    }

    /// Rows that reached the store's import (written or present).
    pub fn carried(&self) -> u64 {
        self.written + self.present
    }
}

/// The report of an adoption, table by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    /// The Drydock database's alembic revision.
    pub revision: String,
    /// The zone naive task and message times were read in, and where it came from.
    pub time_zone: String,
    /// Where the zone came from.
    pub time_zone_origin: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// One entry per Drydock table.
    pub tables: Vec<TableReport>,
}

impl AdoptReport {
    /// Fills in what the store's import wrote and found present.
    pub fn record(&mut self, outcome: &ImportOutcome, mode: ImportMode) {
        self.dry_run = mode == ImportMode::DryRun;
        let counts = [
            ("tasks", outcome.tasks),
            ("result_message", outcome.messages),
            ("build_data", outcome.build_data),
            ("boot_action", outcome.boot_contexts),
            ("boot_action_status", outcome.boot_actions),
        ];
        for (table, count) in counts {
            if let Some(t) = self.tables.iter_mut().find(|t| t.table == table) {
                t.record(count);
            }
        }
    }

    /// The report of one table.
    pub fn table(&self, table: &str) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.table == table)
    }
}

fn uuid_of(bytes: &[u8]) -> Option<TaskId> {
    Uuid::from_slice(bytes).ok().map(TaskId)
}

/// JSON as Drydock left it: a string holding JSON (written through `json.dumps` into a `json`
/// column) is decoded once more; JSON `null` is none. The flag says a string was decoded.
fn json_once(value: Option<&Value>) -> (Option<Value>, bool) {
    match value {
        None | Some(Value::Null) => (None, false),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Null) => (None, true),
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => (Some(inner), true),
            _ => (Some(Value::String(text.clone())), false),
        },
        Some(other) => (Some(other.clone()), false),
    }
}

fn texts(list: &Option<Vec<Option<String>>>) -> Vec<String> {
    list.iter().flatten().flatten().cloned().collect()
}

/// Turns what was read from Drydock into the rows to import, and a report that already says
/// what was read, transformed and skipped (the store's import fills in written and present,
/// [`AdoptReport::record`]).
pub fn plan(source: &DrydockSource) -> (ImportBatch, AdoptReport) {
    let mut report = AdoptReport {
        revision: source.revision.clone(),
        time_zone: source.time_zone.clone(),
        time_zone_origin: source.time_zone_origin.clone(),
        dry_run: false,
        tables: Vec::new(),
    };
    let (tasks, tasks_report) = plan_tasks(&source.tasks);
    let ids: HashSet<TaskId> = tasks.iter().map(|t| t.task_id).collect();
    let (messages, messages_report) = plan_messages(&source.messages, &tasks, &ids);
    let (build_data, build_report) = plan_build_data(&source.build_data);
    let (boot_contexts, contexts_report) = plan_boot_contexts(&source.boot_contexts);
    let (boot_actions, actions_report) = plan_boot_actions(&source.boot_actions);
    let mut instances = TableReport::new("active_instance", source.active_instances as usize);
    for _ in 0..source.active_instances {
        instances.skipped("not carried over: it has no term (stop Drydock before adopting)");
    }
    report.tables = vec![
        tasks_report,
        messages_report,
        build_report,
        contexts_report,
        actions_report,
        instances,
    ];
    let batch = ImportBatch {
        tasks,
        messages,
        build_data,
        boot_contexts,
        boot_actions,
    };
    (batch, report)
}

fn plan_tasks(rows: &[DrydockTask]) -> (Vec<Task>, TableReport) {
    let mut report = TableReport::new("tasks", rows.len());
    let mut tasks: Vec<Task> = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(id) = uuid_of(&row.task_id) else {
            report.skipped("task_id is not 16 bytes");
            continue;
        };
        let status = match row.status.as_deref().map(str::parse::<TaskStatus>) {
            Some(Ok(status)) => status,
            None => {
                report.transformed("status NULL read as requested");
                TaskStatus::Requested
            }
            Some(Err(_)) => {
                report.skipped("status is not one Drydock defines");
                continue;
            }
        };
        let action = match row.action.as_deref() {
            Some(action) if !action.is_empty() => action.to_string(),
            _ => {
                report.transformed("action NULL read as noop (Drydock's default)");
                "noop".to_string()
            }
        };
        let created = match row.created.or(row.updated) {
            Some(created) => {
                if row.created.is_none() {
                    report.transformed("created NULL: the updated time is used");
                }
                created
            }
            None => {
                report.skipped("neither created nor updated is set");
                continue;
            }
        };
        let mut task = NewTask::new(action).to_task();
        task.task_id = id;
        task.status = status;
        task.created = created;
        task.created_by = row.created_by.clone();
        task.updated = row.updated;
        task.design_ref = row.design_ref.clone();
        task.terminated = row.terminated;
        task.terminated_by = row.terminated_by.clone();
        task.retry = row.retry.unwrap_or_else(|| {
            report.transformed("retry NULL read as 0");
            0
        });
        task.terminate = row.terminate.unwrap_or_else(|| {
            report.transformed("terminate NULL read as false");
            false
        });
        task.parent_task_id = row.parent_task_id.as_deref().and_then(uuid_of);
        if row.parent_task_id.is_some() && task.parent_task_id.is_none() {
            report.transformed("parent_task_id is not 16 bytes: kept as a root");
        }
        task.result.status = match row.result_status.as_deref().map(str::parse::<ResultStatus>) {
            Some(Ok(status)) => status,
            None => {
                report.transformed("result_status NULL read as incomplete");
                ResultStatus::Incomplete
            }
            Some(Err(_)) => {
                report.transformed("result_status unknown: read as incomplete");
                ResultStatus::Incomplete
            }
        };
        task.result.message = row.result_message.clone();
        task.result.reason = row.result_reason.clone();
        task.result.successes = texts(&row.result_successes);
        task.result.failures = texts(&row.result_failures);
        let (links, links_twice) = json_once(row.result_links.as_ref());
        if links_twice {
            report.transformed("result_links was JSON inside a JSON string: decoded");
        }
        task.result.links = match links {
            None => Vec::new(),
            Some(links) => match super::model::drydock_json::links(links) {
                Ok(links) => links,
                Err(_) => {
                    report.transformed("result_links not {rel: [href]}: dropped");
                    Vec::new()
                }
            },
        };
        let (context, context_twice) = json_once(row.request_context.as_ref());
        if context_twice {
            report.transformed("request_context was JSON inside a JSON string: decoded");
        }
        if matches!(row.request_context, Some(Value::Null)) {
            report.transformed("request_context JSON null read as none");
        }
        task.request_context = context;
        let (filter, filter_twice) = json_once(row.node_filter.as_ref());
        if filter_twice {
            report.transformed("node_filter was JSON inside a JSON string: decoded");
        }
        if matches!(row.node_filter, Some(Value::Null)) {
            report.transformed("node_filter JSON null read as none");
        }
        task.node_filter = filter;
        match status {
            TaskStatus::Queued if task.terminate => {
                task.status = TaskStatus::Terminated;
                report.transformed("queued but marked for termination: terminated");
                if task.terminated.is_none() {
                    // Drydock's terminate_task stamps it; a terminated task here has one.
                    task.terminated = Some(task.updated.unwrap_or(task.created));
                    report.transformed("terminated NULL: the updated (or created) time is used");
                }
            }
            TaskStatus::Running | TaskStatus::Terminating => {
                task.claimed_by = Some(LEGACY_CLAIMANT.to_string());
                task.claim_term = Some(0);
                task.claimed_at = Some(task.updated.unwrap_or(task.created));
                task.attempt = 1;
                report.transformed(
                    "running or terminating: a legacy claim at term 0, for the first leader to recover",
                );
            }
            _ => {}
        }
        tasks.push(task);
    }
    // The listed subtasks, per task, as Drydock wrote them (ids that are 16 bytes).
    let listed: HashMap<TaskId, Vec<TaskId>> = rows
        .iter()
        .filter_map(|row| {
            let id = uuid_of(&row.task_id)?;
            let list = row
                .subtask_id_list
                .iter()
                .flatten()
                .flatten()
                .filter_map(|b| uuid_of(b))
                .collect();
            Some((id, list))
        })
        .collect();
    link_trees(&mut tasks, &listed, &mut report);
    (order_parents_first(tasks, &mut report), report)
}

/// Makes parent links and subtask lists agree: dedupes each list, drops ids that are gone or
/// belong to another parent, links a listed child that has no parent, appends children the
/// list misses, and turns subtasks whose parent is gone into roots.
fn link_trees(tasks: &mut [Task], listed: &HashMap<TaskId, Vec<TaskId>>, report: &mut TableReport) {
    let index: HashMap<TaskId, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id, i))
        .collect();
    for task in tasks.iter_mut() {
        if let Some(parent) = task.parent_task_id {
            if !index.contains_key(&parent) {
                task.parent_task_id = None;
                report.transformed("subtask whose parent is gone: kept as a root");
            }
        }
    }
    // A listed child without a parent link is given one (the first list naming it wins).
    for task in 0..tasks.len() {
        let id = tasks[task].task_id;
        for child in listed.get(&id).into_iter().flatten() {
            if let Some(&c) = index.get(child) {
                if c != task
                    && tasks[c].parent_task_id.is_none()
                    && !is_ancestor(tasks, &index, tasks[c].task_id, id)
                {
                    tasks[c].parent_task_id = Some(id);
                    report.transformed("parent link set from the parent's subtask list");
                }
            }
        }
    }
    let parent_of: HashMap<TaskId, TaskId> = tasks
        .iter()
        .filter_map(|t| Some((t.task_id, t.parent_task_id?)))
        .collect();
    let mut children: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
    for task in tasks.iter() {
        if let Some(parent) = task.parent_task_id {
            children.entry(parent).or_default().push(task.task_id);
        }
    }
    for task in tasks.iter_mut() {
        let mut list = Vec::new();
        let mut seen = HashSet::new();
        let mut duplicated = false;
        for child in listed.get(&task.task_id).into_iter().flatten() {
            if !seen.insert(*child) {
                duplicated = true;
                continue;
            }
            if parent_of.get(child) == Some(&task.task_id) {
                list.push(*child);
            } else if index.contains_key(child) {
                report.transformed("listed subtask belongs to another parent: dropped");
            } else {
                report.transformed("listed subtask not in the source: dropped");
            }
        }
        if duplicated {
            report.transformed("subtask_id_list named an id twice: kept once, in order");
        }
        for child in children.get(&task.task_id).into_iter().flatten() {
            if seen.insert(*child) {
                list.push(*child);
                report.transformed("child missing from its parent's subtask_id_list: appended");
            }
        }
        task.subtask_id_list = list;
    }
}

/// Whether `ancestor` is `task` or one of its ancestors by parent link.
fn is_ancestor(
    tasks: &[Task],
    index: &HashMap<TaskId, usize>,
    ancestor: TaskId,
    task: TaskId,
) -> bool {
    let mut at = Some(task);
    let mut steps = 0;
    while let Some(id) = at {
        if id == ancestor {
            return true;
        }
        steps += 1;
        if steps > tasks.len() {
            return false;
        }
        at = index.get(&id).and_then(|&i| tasks[i].parent_task_id);
    }
    false
}

/// Parents before children, otherwise in the order read; a parent link that forms a cycle is
/// cleared (the task becomes a root).
fn order_parents_first(tasks: Vec<Task>, report: &mut TableReport) -> Vec<Task> {
    let mut placed: HashSet<TaskId> = HashSet::with_capacity(tasks.len());
    let mut out: Vec<Task> = Vec::with_capacity(tasks.len());
    let mut pending = tasks;
    loop {
        let before = pending.len();
        let mut waiting = Vec::new();
        for task in pending {
            match task.parent_task_id {
                Some(parent) if !placed.contains(&parent) => waiting.push(task),
                _ => {
                    placed.insert(task.task_id);
                    out.push(task);
                }
            }
        }
        if waiting.is_empty() {
            return out;
        }
        if waiting.len() == before {
            // Only cycles are left: break the first one and go on.
            let mut first = waiting.remove(0);
            first.parent_task_id = None;
            report.transformed("parent links formed a cycle: kept as a root");
            placed.insert(first.task_id);
            out.push(first);
        }
        pending = waiting;
    }
}

fn plan_messages(
    rows: &[DrydockMessage],
    tasks: &[Task],
    ids: &HashSet<TaskId>,
) -> (Vec<ResultMessage>, TableReport) {
    let mut report = TableReport::new("result_message", rows.len());
    let created: HashMap<TaskId, DateTime<Utc>> =
        tasks.iter().map(|t| (t.task_id, t.created)).collect();
    let mut out = Vec::with_capacity(rows.len());
    let mut sorted: Vec<&DrydockMessage> = rows.iter().collect();
    sorted.sort_by_key(|m| m.sequence);
    for row in sorted {
        if row.sequence <= 0 {
            report.skipped("sequence is not positive");
            continue;
        }
        let Some(task_id) = row.task_id.as_deref().and_then(uuid_of) else {
            report.skipped("task_id is NULL or not 16 bytes");
            continue;
        };
        if !ids.contains(&task_id) {
            report.skipped("its task is not in the source (or was skipped)");
            continue;
        }
        let text = row.message.clone().unwrap_or_else(|| {
            report.transformed("message NULL read as empty");
            String::new()
        });
        if text.chars().count() == 127 {
            report.noted("127 characters long: possibly cut by Drydock, kept as stored");
        }
        let ts = match row.ts {
            Some(ts) => ts,
            None => {
                report.transformed("ts NULL: its task's creation time is used");
                created[&task_id]
            }
        };
        let (extra, twice) = json_once(row.extra.as_ref());
        if twice {
            report.transformed("extra was JSON inside a JSON string: decoded");
        }
        out.push(ResultMessage {
            sequence: row.sequence,
            task_id,
            message: text,
            error: row.error.unwrap_or_else(|| {
                report.transformed("error NULL read as false");
                false
            }),
            context_type: row.context_type.clone().unwrap_or_default(),
            context: row.context.clone().unwrap_or_default(),
            ts,
            extra,
        });
    }
    (out, report)
}

fn plan_build_data(rows: &[DrydockBuildData]) -> (Vec<BuildData>, TableReport) {
    let mut report = TableReport::new("build_data", rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(task_id) = row.task_id.as_deref().and_then(uuid_of) else {
            report.skipped("task_id is NULL or not 16 bytes");
            continue;
        };
        let Some(collected_date) = row.collected_date else {
            report.skipped("collected_date is NULL");
            continue;
        };
        let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (Some(node_name), Some(generator), Some(data_format)) = (
            present(&row.node_name),
            present(&row.generator),
            present(&row.data_format),
        ) else {
            report.skipped("node_name, generator or data_format is empty");
            continue;
        };
        let data_element = row.data_element.clone().unwrap_or_else(|| {
            report.transformed("data_element NULL read as empty");
            String::new()
        });
        out.push(BuildData {
            node_name,
            task_id,
            collected_date: Some(collected_date),
            generator,
            data_format,
            data_element: Some(data_element),
        });
    }
    (out, report)
}

/// A boot-action row's task and key, or `None` (counted as skipped, with why).
fn task_and_key(
    task_id: Option<&[u8]>,
    identity_key: Option<&[u8]>,
    report: &mut TableReport,
) -> Option<(TaskId, IdentityKey)> {
    let Some(task_id) = task_id.and_then(uuid_of) else {
        report.skipped("task_id is NULL or not 16 bytes");
        return None;
    };
    let Some(identity_key) = identity_key.and_then(|k| IdentityKey::from_slice(k).ok()) else {
        report.skipped("identity_key is NULL or not 32 bytes");
        return None;
    };
    Some((task_id, identity_key))
}

fn plan_boot_contexts(rows: &[DrydockBootContext]) -> (Vec<BootActionContext>, TableReport) {
    let mut report = TableReport::new("boot_action", rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some((task_id, identity_key)) = task_and_key(
            row.task_id.as_deref(),
            row.identity_key.as_deref(),
            &mut report,
        ) else {
            continue;
        };
        let context = BootActionContext {
            node_name: row.node_name.clone(),
            task_id,
            identity_key,
        };
        if context.validate().is_err() {
            report.skipped("node_name is empty or too long");
            continue;
        }
        out.push(context);
    }
    (out, report)
}

fn plan_boot_actions(rows: &[DrydockBootAction]) -> (Vec<BootAction>, TableReport) {
    let mut report = TableReport::new("boot_action_status", rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(action_id) = BootActionId::from_slice(&row.action_id) else {
            report.skipped("action_id is not 16 bytes");
            continue;
        };
        let Some((task_id, identity_key)) = task_and_key(
            row.task_id.as_deref(),
            row.identity_key.as_deref(),
            &mut report,
        ) else {
            continue;
        };
        let action_status = match row
            .action_status
            .as_deref()
            .map(str::parse::<BootActionStatus>)
        {
            Some(Ok(status)) => status,
            None => {
                report.transformed("action_status NULL read as incomplete");
                BootActionStatus::Incomplete
            }
            Some(Err(_)) => {
                report.skipped("action_status is not one Drydock defines");
                continue;
            }
        };
        let action = BootAction {
            action_id,
            node_name: row.node_name.clone().unwrap_or_default(),
            action_name: row.action_name.clone().unwrap_or_default(),
            task_id,
            identity_key,
            action_status,
        };
        if action.validate().is_err() {
            report.skipped("node_name or action_name is empty or too long");
            continue;
        }
        out.push(action);
    }
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(n: u8) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[15] = n;
        b
    }

    fn tid(n: u8) -> TaskId {
        uuid_of(&id(n)).unwrap()
    }

    fn at(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2024-03-01T12:{minute:02}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn task(n: u8, parent: Option<u8>, list: &[u8], status: &str) -> DrydockTask {
        DrydockTask {
            task_id: id(n),
            parent_task_id: parent.map(id),
            subtask_id_list: Some(list.iter().map(|c| Some(id(*c))).collect()),
            status: Some(status.into()),
            action: Some("deploy_nodes".into()),
            created: Some(at(n as u32)),
            terminate: Some(false),
            retry: Some(0),
            result_status: Some("incomplete".into()),
            ..Default::default()
        }
    }

    fn planned(tasks: Vec<DrydockTask>) -> (Vec<Task>, TableReport) {
        let (batch, report) = plan(&DrydockSource {
            tasks,
            ..Default::default()
        });
        (batch.tasks, report.table("tasks").unwrap().clone())
    }

    fn get(tasks: &[Task], n: u8) -> &Task {
        tasks.iter().find(|t| t.task_id == tid(n)).unwrap()
    }

    #[test]
    fn subtask_lists_and_parent_links_are_made_to_agree() {
        // 1 lists 2 twice, 9 (not stored) and 5 (whose parent is 4); 3 names 1 as parent but
        // is not listed; 6 is listed by 4 and has no parent link; 7's parent is gone.
        let (tasks, report) = planned(vec![
            task(1, None, &[2, 9, 2, 5], "complete"),
            task(2, Some(1), &[], "complete"),
            task(3, Some(1), &[], "complete"),
            task(4, None, &[6], "complete"),
            task(5, Some(4), &[], "complete"),
            task(6, None, &[], "complete"),
            task(7, Some(8), &[], "complete"),
        ]);
        assert_eq!(get(&tasks, 1).subtask_id_list, vec![tid(2), tid(3)]);
        // 6 as listed, then 5, which names 4 as parent but was not listed.
        assert_eq!(get(&tasks, 4).subtask_id_list, vec![tid(6), tid(5)]);
        assert_eq!(get(&tasks, 6).parent_task_id, Some(tid(4)));
        assert_eq!(get(&tasks, 7).parent_task_id, None);
        let t = &report.transformed;
        assert_eq!(
            t["subtask_id_list named an id twice: kept once, in order"],
            1
        );
        assert_eq!(t["listed subtask not in the source: dropped"], 1);
        assert_eq!(t["listed subtask belongs to another parent: dropped"], 1);
        assert_eq!(
            t["child missing from its parent's subtask_id_list: appended"], 2,
            "3 under 1, 5 under 4"
        );
        assert_eq!(t["parent link set from the parent's subtask list"], 1);
        assert_eq!(t["subtask whose parent is gone: kept as a root"], 1);
    }

    #[test]
    fn parents_come_first_and_a_cycle_is_broken() {
        // 2 was created before its parent 5; 3 and 4 are each other's parent.
        let (tasks, report) = planned(vec![
            task(2, Some(5), &[], "complete"),
            task(3, Some(4), &[], "complete"),
            task(4, Some(3), &[], "complete"),
            task(5, None, &[2], "complete"),
        ]);
        let pos = |n| tasks.iter().position(|t| t.task_id == tid(n)).unwrap();
        assert!(pos(5) < pos(2));
        let roots = [3, 4]
            .iter()
            .filter(|n| get(&tasks, **n).parent_task_id.is_none())
            .count();
        assert_eq!(roots, 1, "exactly one link of the cycle is cleared");
        assert_eq!(
            report.transformed["parent links formed a cycle: kept as a root"],
            1
        );
        let batch = ImportBatch {
            tasks,
            ..Default::default()
        };
        batch.validate().expect("parents first");
    }

    #[test]
    fn drydock_states_become_ours() {
        let mut marked = task(1, None, &[], "queued");
        marked.terminate = Some(true);
        let mut running = task(2, None, &[], "running");
        running.updated = Some(at(30));
        let mut null_terminate = task(3, None, &[], "requested");
        null_terminate.terminate = None;
        let (tasks, report) = planned(vec![
            marked,
            running,
            null_terminate,
            task(4, None, &[], "terminating"),
            task(5, None, &[], "bogus"),
        ]);
        assert_eq!(get(&tasks, 1).status, TaskStatus::Terminated);
        let r = get(&tasks, 2);
        assert_eq!(r.status, TaskStatus::Running);
        assert_eq!(r.claimed_by.as_deref(), Some(LEGACY_CLAIMANT));
        assert_eq!(r.claim_term, Some(0));
        assert_eq!(r.claimed_at, Some(at(30)));
        assert_eq!(r.attempt, 1);
        assert_eq!(get(&tasks, 4).claim_term, Some(0));
        assert!(!get(&tasks, 3).terminate);
        assert_eq!(tasks.len(), 4);
        assert_eq!(report.skipped["status is not one Drydock defines"], 1);
        assert_eq!(report.transformed["terminate NULL read as false"], 1);
    }

    #[test]
    fn json_written_twice_null_and_links_are_read_as_drydock_meant() {
        let mut t = task(1, None, &[], "complete");
        t.request_context = Some(json!("{\"user\": \"shipyard\", \"request_id\": \"r\"}"));
        t.node_filter = Some(Value::Null);
        t.result_links = Some(json!({"detail_logs": ["http://a", "http://b"]}));
        t.result_successes = None;
        t.result_failures = Some(vec![Some("n2".into()), None]);
        let (tasks, report) = planned(vec![t]);
        let t = &tasks[0];
        assert_eq!(
            t.request_context,
            Some(json!({"user": "shipyard", "request_id": "r"}))
        );
        assert_eq!(t.node_filter, None);
        assert_eq!(
            t.result
                .links
                .iter()
                .map(|l| l.href.as_str())
                .collect::<Vec<_>>(),
            ["http://a", "http://b"]
        );
        assert!(t.result.successes.is_empty());
        assert_eq!(t.result.failures, ["n2"]);
        assert_eq!(
            report.transformed["request_context was JSON inside a JSON string: decoded"],
            1
        );
        assert_eq!(report.transformed["node_filter JSON null read as none"], 1);
    }

    #[test]
    fn messages_keep_their_order_and_times_and_lose_only_what_has_no_task() {
        let message = |sequence: i64, task: Option<Vec<u8>>, text: &str| DrydockMessage {
            sequence,
            task_id: task,
            message: Some(text.into()),
            error: Some(sequence % 2 == 0),
            context: Some("n1".into()),
            context_type: Some("node".into()),
            ts: Some(at(sequence as u32)),
            extra: Some(json!("{}")),
        };
        let cut = "x".repeat(127);
        let (batch, report) = plan(&DrydockSource {
            tasks: vec![task(1, None, &[], "complete")],
            messages: vec![
                message(7, Some(id(1)), "later"),
                message(3, Some(id(1)), &cut),
                message(5, Some(id(9)), "of a task that is gone"),
                message(6, None, "of no task"),
            ],
            ..Default::default()
        });
        let seqs: Vec<i64> = batch.messages.iter().map(|m| m.sequence).collect();
        assert_eq!(seqs, [3, 7]);
        assert_eq!(batch.messages[0].message, cut, "kept as stored");
        assert_eq!(batch.messages[0].ts, at(3));
        assert_eq!(batch.messages[0].extra, Some(json!({})));
        let r = report.table("result_message").unwrap();
        assert_eq!(r.read, 4);
        assert_eq!(
            r.skipped["its task is not in the source (or was skipped)"],
            1
        );
        assert_eq!(r.skipped["task_id is NULL or not 16 bytes"], 1);
        assert_eq!(
            r.noted["127 characters long: possibly cut by Drydock, kept as stored"],
            1
        );
        assert_eq!(
            r.transformed["extra was JSON inside a JSON string: decoded"],
            2
        );
    }

    #[test]
    fn build_data_and_boot_actions_keep_their_bytes() {
        let data = DrydockBuildData {
            node_name: Some("n1".into()),
            task_id: Some(id(1)),
            collected_date: Some(at(1)),
            generator: Some("lshw".into()),
            data_format: Some("text/plain".into()),
            data_element: Some("<xml/>".into()),
        };
        let ulid: Vec<u8> = (1..=16).collect();
        let key: Vec<u8> = (0..32).collect();
        let (batch, report) = plan(&DrydockSource {
            build_data: vec![
                data.clone(),
                data.clone(),
                DrydockBuildData {
                    collected_date: None,
                    ..data.clone()
                },
            ],
            boot_contexts: vec![DrydockBootContext {
                node_name: "n1".into(),
                task_id: Some(id(1)),
                identity_key: Some(key.clone()),
            }],
            boot_actions: vec![
                DrydockBootAction {
                    node_name: Some("n1".into()),
                    action_id: ulid.clone(),
                    action_name: Some("promjoin".into()),
                    task_id: Some(id(1)),
                    identity_key: Some(key.clone()),
                    action_status: Some("success".into()),
                },
                DrydockBootAction {
                    action_id: vec![1, 2, 3],
                    ..Default::default()
                },
            ],
            active_instances: 1,
            ..Default::default()
        });
        assert_eq!(batch.build_data.len(), 2, "identical rows are both kept");
        assert_eq!(
            report.table("build_data").unwrap().skipped["collected_date is NULL"],
            1
        );
        assert_eq!(batch.boot_contexts[0].identity_key.0.to_vec(), key);
        assert_eq!(batch.boot_actions.len(), 1);
        assert_eq!(batch.boot_actions[0].action_id.0.to_vec(), ulid);
        assert_eq!(
            batch.boot_actions[0].action_status,
            BootActionStatus::Success
        );
        assert_eq!(
            report
                .table("active_instance")
                .unwrap()
                .skipped
                .values()
                .sum::<u64>(),
            1
        );
    }

    fn at_secs(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_queued_task_marked_for_termination_is_terminated_with_a_time() {
        let row = |id: u8, terminated: Option<DateTime<Utc>>| DrydockTask {
            task_id: vec![id; 16],
            status: Some("queued".into()),
            action: Some("noop".into()),
            created: Some(at_secs(100)),
            updated: Some(at_secs(200)),
            terminated,
            terminate: Some(true),
            ..Default::default()
        };
        let source = DrydockSource {
            tasks: vec![row(1, None), row(2, Some(at_secs(150)))],
            ..Default::default()
        };
        let (batch, report) = plan(&source);
        assert!(batch
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Terminated));
        assert_eq!(batch.tasks[0].terminated, Some(at_secs(200)));
        assert_eq!(batch.tasks[1].terminated, Some(at_secs(150)));
        let tasks = report.table("tasks").unwrap();
        assert_eq!(
            tasks.transformed["terminated NULL: the updated (or created) time is used"],
            1
        );
        assert_eq!(
            tasks.transformed["queued but marked for termination: terminated"],
            2
        );
    }
}
