//! Running one generated operation on a store: the arguments resolved once against the
//! reference, each store's result and state normalised for comparison.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::sample::Index;
use serde_json::{json, Value};

use super::ops::*;
use crate::error::Result;
use crate::model::*;
use crate::store::StateStore;
use crate::testkit::support::{kind, snapshot};

/// What the generator's indices resolve against: the ids created so far (as the reference saw
/// them), one id that never exists, the reference's latest lease term, every claim handed out
/// and every claim request that carried a claim id.
pub(super) struct World {
    pub(super) ids: Vec<TaskId>,
    pub(super) unknown: TaskId,
    pub(super) base: DateTime<Utc>,
    pub(super) last_term: i64,
    pub(super) holder: Option<String>,
    pub(super) claims: Vec<(TaskId, Claim)>,
    pub(super) requests: Vec<ClaimRequest>,
}

impl World {
    /// A created id, or now and then (one chance in `8 * len + 1`) the id that never exists.
    fn task(&self, i: &Index) -> TaskId {
        let len = self.ids.len();
        let n = i.index(8 * len + 1);
        if n == 8 * len {
            self.unknown
        } else {
            self.ids[n % len]
        }
    }

    fn days_ago(&self, days: u8) -> DateTime<Utc> {
        self.base - chrono::Duration::days(days as i64)
    }

    fn term(&self, t: Term) -> Option<i64> {
        match t {
            Term::None => None,
            Term::Current | Term::Holder => Some(self.last_term),
            Term::Stale => Some(self.last_term - 1),
            Term::Future => Some(self.last_term + 1),
        }
    }
}

/// What one backend produced for one step, normalised.
pub(super) type Obs = std::result::Result<Value, &'static str>;

/// Per-backend bookkeeping: the highest message sequence seen, to check appends keep order.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) max_sequence: i64,
}

pub(super) fn norm_messages(messages: &[ResultMessage], seen: &mut Seen, fresh: bool) -> Value {
    let mut last = i64::MIN;
    let mut out = Vec::new();
    for m in messages {
        assert!(
            m.sequence > last,
            "messages out of sequence order: {messages:?}"
        );
        last = m.sequence;
        if fresh {
            assert!(
                m.sequence > seen.max_sequence,
                "an appended message got sequence {} after {} was handed out",
                m.sequence,
                seen.max_sequence
            );
            seen.max_sequence = m.sequence;
        }
        out.push(json!({
            "task_id": m.task_id, "message": m.message, "error": m.error,
            "context_type": m.context_type, "context": m.context, "extra": m.extra,
        }));
    }
    Value::Array(out)
}

pub(super) fn norm_task(t: &Task, seen: &mut Seen) -> Value {
    let mut v = serde_json::to_value(t).expect("a task serializes");
    v["updated"] = Value::Null;
    v["claimed_at"] = json!(t.claimed_at.is_some());
    v["terminated"] = json!(t.terminated.is_some());
    v["result"]["details"]["messageList"] =
        norm_messages(&t.result.details.message_list, seen, false);
    v
}

pub(super) fn norm_tasks(ts: &[Task], seen: &mut Seen) -> Value {
    Value::Array(ts.iter().map(|t| norm_task(t, seen)).collect())
}

pub(super) fn norm_lease(l: &Lease) -> Value {
    json!({"instance_id": l.instance_id, "term": l.term})
}

pub(super) fn norm_outcome(o: &LeaseOutcome) -> Value {
    match o {
        LeaseOutcome::Held(l) => json!({"held": norm_lease(l)}),
        LeaseOutcome::Denied(l) => json!({"denied": l.as_ref().map(norm_lease)}),
    }
}

pub(super) fn obs<T>(r: Result<T>, f: impl FnOnce(T) -> Value) -> Obs {
    r.map(f).map_err(|e| kind(&e))
}

pub(super) async fn apply(
    op: &Op,
    store: &dyn StateStore,
    world: &World,
    step: usize,
    seen: &mut Seen,
    guard: Option<&Claim>,
) -> Obs {
    match op {
        Op::Create { .. } => unreachable!("tasks are built once for every backend"),
        Op::Get { task } => obs(store.get_task(world.task(task)).await, |t| {
            t.map_or(Value::Null, |t| norm_task(&t, seen))
        }),
        Op::SetStatus { task, status, .. } => obs(
            store.set_status(world.task(task), *status, guard).await,
            |t| norm_task(&t, seen),
        ),
        Op::Update { .. } => unreachable!("updates are built from the reference's task"),
        Op::AddSubtask { parent, child, .. } => obs(
            store
                .add_subtask(world.task(parent), world.task(child), guard)
                .await,
            |()| Value::Null,
        ),
        Op::AppendMessage {
            task, error, text, ..
        } => {
            let message = NewMessage {
                error: *error,
                ..NewMessage::info(text.clone()).with_context("node", "n1")
            };
            obs(
                store
                    .append_message(world.task(task), &message, guard)
                    .await,
                |m| norm_messages(&[m], seen, true),
            )
        }
        Op::AppendMessages {
            task,
            count,
            with_nul,
            ..
        } => {
            let mut batch: Vec<NewMessage> = (0..*count)
                .map(|i| NewMessage::info(format!("batch message {i} of step {step}")))
                .collect();
            if *with_nul {
                batch.push(NewMessage::error("a NUL \0 inside"));
            }
            obs(
                store.append_messages(world.task(task), &batch, guard).await,
                |ms| norm_messages(&ms, seen, true),
            )
        }
        Op::Claim { .. } => unreachable!("claim requests are built once for every backend"),
        Op::ClaimLease { instance } => {
            obs(store.claim_lease(pick(instance, INSTANCES)).await, |o| {
                norm_outcome(&o)
            })
        }
        Op::RenewLease { instance } => {
            obs(store.renew_lease(pick(instance, INSTANCES)).await, |o| {
                norm_outcome(&o)
            })
        }
        Op::ReleaseLease { instance } => {
            obs(store.release_lease(pick(instance, INSTANCES)).await, |b| {
                json!(b)
            })
        }
        Op::Takeover { instance } => {
            let released = match &world.holder {
                Some(holder) => match store.release_lease(holder).await {
                    Ok(b) => json!(b),
                    Err(e) => return Err(kind(&e)),
                },
                None => Value::Null,
            };
            obs(store.claim_lease(pick(instance, INSTANCES)).await, |o| {
                json!([released, norm_outcome(&o)])
            })
        }
        Op::Recover { offset, fail } => {
            let policy = if *fail {
                OrphanPolicy::Fail
            } else {
                OrphanPolicy::Requeue
            };
            obs(
                store
                    .recover_orphans(world.last_term + offset, policy)
                    .await,
                |ids| json!(ids),
            )
        }
        Op::Terminate { task, by, .. } => obs(
            store
                .terminate_task(world.task(task), pick(by, TERMINATORS), guard)
                .await,
            |t| norm_task(&t, seen),
        ),
        Op::RecordBuild {
            node,
            task,
            generator,
            days_ago,
            ..
        } => {
            // A distinct date per step: the order of equal dates is not part of the contract.
            let collected = world.days_ago(*days_ago) + chrono::Duration::seconds(step as i64 + 1);
            let data = BuildData {
                node_name: pick(node, NODES).to_string(),
                task_id: world.task(task),
                collected_date: Some(collected),
                generator: pick(generator, GENERATORS).to_string(),
                data_format: "application/json".into(),
                data_element: Some(format!("{{\"step\": {step}, \"quote\": \"'\"}}")),
            };
            obs(store.record_build_data(&data, guard).await, |()| {
                Value::Null
            })
        }
        Op::QueryBuild {
            node,
            task,
            latest,
            brief,
        } => {
            let query = BuildDataQuery {
                node_name: node.as_ref().map(|n| pick(n, NODES).to_string()),
                task_id: task.as_ref().map(|t| world.task(t)),
                latest: *latest,
                verbosity: if *brief {
                    Verbosity::Brief
                } else {
                    Verbosity::Full
                },
            };
            obs(store.build_data(&query).await, |rows| json!(rows))
        }
        Op::List { .. } => unreachable!("list filters are built from the reference's tasks"),
        Op::Subtasks { parent, which } => {
            let which = [
                SubtaskFilter::All,
                SubtaskFilter::Active,
                SubtaskFilter::Complete,
            ][*which as usize % 3];
            obs(store.subtasks(world.task(parent), which).await, |ts| {
                norm_tasks(&ts, seen)
            })
        }
        Op::Purge { retention } => {
            let older_than = match retention {
                Retention::Huge => Duration::from_secs(100 * 365 * 86_400),
                Retention::DaysAndAHalf(days) => {
                    Duration::from_secs(*days as u64 * 86_400 + 12 * 3600)
                }
                Retention::Zero => Duration::ZERO,
            };
            obs(store.purge(older_than).await, |r| json!(r))
        }
    }
}

/// The task an `Op::Create` makes at `step`.
pub(super) fn new_task(world: &World, step: usize, op: &Op) -> NewTask {
    let Op::Create {
        action,
        status,
        parent,
        age_days,
        tie,
        duplicate_of,
    } = op
    else {
        unreachable!("only a create makes a new task")
    };
    let (status, age_days, tie) = (*status, *age_days, *tie);
    let mut task = NewTask::new(pick(action, ACTIONS)).with_status(status);
    if let Some(d) = duplicate_of {
        task.task_id = world.task(d);
    } else {
        // Ids a v7 from the case's own clock would make: unique, and never the unknown one.
        task.task_id = TaskId(uuid::Uuid::new_v4());
    }
    task.parent_task_id = parent.as_ref().map(|p| world.task(p));
    // Distinct creation instants in a known order (the step's milliseconds after the age), or
    // the age's instant itself, shared by every tied task of that age.
    task.created = if tie {
        world.days_ago(age_days)
    } else {
        world.days_ago(age_days) + chrono::Duration::milliseconds(step as i64)
    };
    task.created_by = Some("model'test".into());
    task.design_ref = Some("file:///etc/drydock/site%20'a'.yaml".into());
    task.node_filter =
        Some(json!({"filter_set_type": "union", "filter_set": [{"node_names": ["n1"]}]}));
    task
}

/// Builds the backend-independent argument of an update or a list from the reference store.
pub(super) async fn resolve(
    op: &Op,
    reference: &dyn StateStore,
    world: &World,
    step: usize,
) -> Resolved {
    match op {
        Op::Update {
            task,
            fields,
            guard: g,
        } => {
            let id = world.task(task);
            let guard = resolve_guard(g, id, reference, world).await;
            let update = resolve_update(id, fields, reference, world).await;
            Resolved::Update(id, update, guard)
        }
        Op::SetStatus { task, guard, .. }
        | Op::AppendMessage { task, guard, .. }
        | Op::AppendMessages { task, guard, .. }
        | Op::Terminate { task, guard, .. }
        | Op::RecordBuild { task, guard, .. } => {
            Resolved::Plain(resolve_guard(guard, world.task(task), reference, world).await)
        }
        Op::AddSubtask { parent, guard, .. } => {
            Resolved::Plain(resolve_guard(guard, world.task(parent), reference, world).await)
        }
        Op::Claim {
            actions,
            instance,
            term,
            claim_id,
        } => {
            let mut request = ClaimRequest::new(match (term, &world.holder) {
                (Term::Holder, Some(holder)) => holder.clone(),
                _ => pick(instance, INSTANCES).to_string(),
            })
            .actions(actions.iter().map(|a| pick(a, ACTIONS)));
            request.term = world.term(*term);
            match claim_id {
                ClaimId::None => {}
                ClaimId::Resend { which, same } if !world.requests.is_empty() => {
                    let earlier = &world.requests[which.index(world.requests.len())];
                    if *same {
                        request = earlier.clone();
                    } else {
                        request.claim_id = earlier.claim_id;
                    }
                }
                ClaimId::Fresh | ClaimId::Resend { .. } => {
                    request.claim_id = Some(uuid::Uuid::new_v4());
                }
            }
            Resolved::Claim(request)
        }
        Op::List {
            status,
            action,
            parent,
            created_after_days,
            created_before_days,
            limit,
            after,
            claimed_by,
            claim_term,
        } => {
            let after = match after {
                None => None,
                Some(i) => {
                    let id = world.task(i);
                    let created = match reference.get_task(id).await.expect("reference get") {
                        Some(t) => t.created,
                        None => world.base,
                    };
                    Some((created, id))
                }
            };
            Resolved::List(TaskFilter {
                status: *status,
                action: action.as_ref().map(|a| pick(a, ACTIONS).to_string()),
                parent: parent.as_ref().map(|p| world.task(p)),
                created_after: created_after_days
                    .map(|d| world.days_ago(d) - chrono::Duration::hours(12)),
                // Exactly the creation instant of a task of that age made at step `d`, if any:
                // the bound is exclusive on every backend.
                created_before: created_before_days
                    .map(|d| world.days_ago(d) + chrono::Duration::milliseconds(d as i64)),
                after,
                claimed_by: claimed_by.as_ref().map(|i| pick(i, INSTANCES).to_string()),
                claim_term: claim_term.and_then(|t| world.term(t)),
                limit: limit.map(u32::from),
            })
        }
        Op::Create { .. } => Resolved::Create(new_task(world, step, op)),
        _ => Resolved::Plain(None),
    }
}

/// The guard `choice` names for a write to task `id`, from the reference's view of it.
pub(super) async fn resolve_guard(
    choice: &Guard,
    id: TaskId,
    reference: &dyn StateStore,
    world: &World,
) -> Option<Claim> {
    let stored = reference.get_task(id).await.expect("reference get");
    let exists = stored.is_some();
    let current = stored.and_then(|t| t.claim());
    let made_up = || Claim::new(INSTANCES[0], None, 1);
    match choice {
        Guard::None => None,
        // The right guard for the task: its claim, or none when it carries none.
        Guard::Current => current,
        Guard::Past(i) => {
            let own: Vec<&Claim> = world
                .claims
                .iter()
                .filter(|(task, _)| *task == id)
                .map(|(_, c)| c)
                .collect();
            let from: Vec<&Claim> = if own.is_empty() {
                world.claims.iter().map(|(_, c)| c).collect()
            } else {
                own
            };
            match from.len() {
                0 => Some(current.unwrap_or_else(made_up)),
                n => Some(from[i.index(n)].clone()),
            }
        }
        Guard::OtherTerm => {
            let mut claim = current.unwrap_or_else(made_up);
            claim.term = Some(claim.term.map_or(world.last_term, |t| t + 1));
            Some(claim)
        }
        // Which of two faults a backend reports first (a missing task, a guard no task can
        // carry) is not part of the contract: a bad guard only on a task that exists.
        Guard::Nul if !exists => Some(made_up()),
        Guard::Nul => Some(Claim::new("orch\0a", None, 1)),
    }
}

/// Whether `ancestor` is `id` or one of its ancestors by parent link, in the reference.
pub(super) async fn is_ancestor(
    reference: &dyn StateStore,
    ancestor: TaskId,
    mut id: TaskId,
) -> bool {
    // Parent links made through this test never form a cycle, so the walk ends.
    loop {
        if id == ancestor {
            return true;
        }
        match reference.get_task(id).await.expect("reference get") {
            Some(Task {
                parent_task_id: Some(parent),
                ..
            }) => id = parent,
            _ => return false,
        }
    }
}

/// The update `fields` names for task `id`.
pub(super) async fn resolve_update(
    id: TaskId,
    fields: &Fields,
    reference: &dyn StateStore,
    world: &World,
) -> TaskUpdate {
    let mut u = TaskUpdate::new();
    if let Some(status) = fields.status {
        u = u.status(status);
    }
    if let Some(result) = fields.result {
        u = u.result_status(result);
    }
    if let Some(message) = &fields.message {
        u = u.result_message(message.clone());
    }
    if fields.nul {
        u = u.result_message(Some("a NUL \0 inside"));
    }
    if let Some(reason) = &fields.reason {
        u = u.result_reason(reason.clone());
    }
    if let Some(retry) = fields.retry {
        u = u.retry(retry);
    }
    if let Some(successes) = &fields.successes {
        u = u.successes(successes.iter().map(|i| pick(i, NODES)));
    }
    if let Some(links) = fields.links {
        u = u.links((0..links).map(|i| Link {
            rel: format!("detail_logs_{i}"),
            href: format!("https://logs.example/{i}?q='%"),
        }));
    }
    match fields.node_filter {
        Some(true) => {
            u = u.node_filter(Some(
                json!({"filter_set_type": "intersection", "filter_set": [{"node_names": ["n2", "%'"]}]}),
            ))
        }
        Some(false) => u = u.node_filter(None),
        None => {}
    }
    match fields.design_ref {
        Some(0) => u = u.design_ref(None::<String>),
        Some(1) => u = u.design_ref(Some("https://designs.example/site%20'b'.yaml")),
        Some(_) => u = u.design_ref(Some("relative/site.yaml")),
        None => {}
    }
    match &fields.parent {
        None => {}
        Some(Parent::Clear) => u = u.parent(None),
        Some(Parent::Missing) => u = u.parent(Some(world.unknown)),
        Some(Parent::Itself) => u = u.parent(Some(id)),
        Some(Parent::Existing(i)) => {
            let parent = world.task(i);
            // A parent under the task itself would make a cycle: leave the parent alone then
            // (`parent_cycles_made_by_update_are_handled_alike` covers cycles on their own).
            if parent == world.unknown || !is_ancestor(reference, id, parent).await {
                u = u.parent(Some(parent));
            }
        }
    }
    u
}

pub(super) enum Resolved {
    /// The op itself, with the guard of its write (if it writes a task).
    Plain(Option<Claim>),
    Create(NewTask),
    Update(TaskId, TaskUpdate, Option<Claim>),
    List(TaskFilter),
    Claim(ClaimRequest),
}

pub(super) async fn step(
    op: &Op,
    resolved: &Resolved,
    store: &dyn StateStore,
    world: &World,
    step: usize,
    seen: &mut Seen,
) -> Obs {
    match resolved {
        Resolved::Plain(guard) => apply(op, store, world, step, seen, guard.as_ref()).await,
        Resolved::Create(t) => obs(store.create_task(t).await, |t| norm_task(&t, seen)),
        Resolved::Update(id, update, guard) => {
            obs(store.update_task(*id, update, guard.as_ref()).await, |t| {
                norm_task(&t, seen)
            })
        }
        Resolved::List(f) => {
            // The same filter counted: every condition but the limit.
            let counted = obs(store.count_tasks(f).await, |n| json!(n));
            obs(
                store.list_tasks(f).await,
                |ts| json!({"tasks": norm_tasks(&ts, seen), "count": format!("{counted:?}")}),
            )
        }
        Resolved::Claim(request) => obs(store.claim_next(request).await, |t| {
            t.map_or(Value::Null, |t| norm_task(&t, seen))
        }),
    }
}

pub(super) async fn observed_state(store: &dyn StateStore, seen: &mut Seen) -> Value {
    let s = snapshot(store).await;
    json!({
        "tasks": norm_tasks(&s.tasks, seen),
        "build_data": s.build_data,
        "lease": s.lease.as_ref().map(norm_lease),
    })
}
