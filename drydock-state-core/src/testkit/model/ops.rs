//! The operations the model-based test generates, and their strategies.

use proptest::prelude::*;
use proptest::sample::Index;

use crate::model::{ResultStatus, TaskStatus};

pub(super) const ACTIONS: &[&str] = &[
    "deploy_nodes",
    "prepare_site",
    "x';DROP_TABLE_tasks;--",
    "%",
];
pub(super) const INSTANCES: &[&str] = &["orch-a", "orch-b", "orch-c"];
pub(super) const NODES: &[&str] = &["node-1", "node-2", "%'"];
pub(super) const GENERATORS: &[&str] = &["lshw", "lldp", "provisioner"];
pub(super) const TERMINATORS: &[&str] = &["operator", "'; DELETE FROM tasks; --"];

/// The name `i` picks from `from`.
pub(super) fn pick(i: &Index, from: &'static [&'static str]) -> &'static str {
    from[i.index(from.len())]
}

/// A fencing term relative to the reference's latest term.
#[derive(Clone, Copy, Debug)]
pub(super) enum Term {
    None,
    /// The reference's lease holder, with its term (the claimer's instance is ignored).
    Holder,
    Current,
    Stale,
    Future,
}

/// Which guard a task write carries, resolved against the reference's task.
#[derive(Clone, Debug)]
pub(super) enum Guard {
    /// An unguarded write.
    None,
    /// The claim the task carries now (a made-up one when it carries none).
    Current,
    /// A claim the task carried earlier in the case (any task's when it never had one): a
    /// late write after a recovery, a requeue or a second claim (ABA).
    Past(Index),
    /// The current claim with another term (a term where it had none).
    OtherTerm,
    /// An instance id with a NUL byte, which no backend can match.
    Nul,
}

/// The claim id a claim request carries.
#[derive(Clone, Debug)]
pub(super) enum ClaimId {
    None,
    /// A new one.
    Fresh,
    /// The id of an earlier request with an id: `same` re-sends that request exactly (as after
    /// a lost reply), otherwise only its id, with this op's instance, actions and term.
    Resend {
        which: Index,
        same: bool,
    },
}

/// The parent an update sets.
#[derive(Clone, Debug)]
pub(super) enum Parent {
    Clear,
    /// A created task, unless that would make a cycle (then the parent is left alone).
    Existing(Index),
    /// A task that does not exist.
    Missing,
    /// The task itself.
    Itself,
}

/// The fields an update sets; `None` leaves a field alone.
#[derive(Clone, Debug)]
pub(super) struct Fields {
    pub(super) status: Option<TaskStatus>,
    pub(super) result: Option<ResultStatus>,
    pub(super) message: Option<Option<String>>,
    pub(super) reason: Option<Option<String>>,
    /// `-1` is refused.
    pub(super) retry: Option<i32>,
    pub(super) successes: Option<Vec<Index>>,
    pub(super) links: Option<u8>,
    /// `Some(true)` sets a filter, `Some(false)` clears it.
    pub(super) node_filter: Option<bool>,
    /// `Some(0)` clears, `Some(1)` sets a valid URI, `Some(2)` a relative path (refused).
    pub(super) design_ref: Option<u8>,
    pub(super) parent: Option<Parent>,
    /// Puts a NUL byte in the result message (refused).
    pub(super) nul: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Retention {
    /// Older than everything ever created here.
    Huge,
    /// `days` days and 12 hours: between two creation ages, never on one.
    DaysAndAHalf(u8),
    Zero,
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Create {
        action: Index,
        status: TaskStatus,
        parent: Option<Index>,
        age_days: u8,
        /// Created exactly at the age's instant, as every other tied task of that age: ties
        /// in `(created, task_id)` order.
        tie: bool,
        duplicate_of: Option<Index>,
    },
    Get {
        task: Index,
    },
    SetStatus {
        task: Index,
        status: TaskStatus,
        guard: Guard,
    },
    Update {
        task: Index,
        fields: Box<Fields>,
        guard: Guard,
    },
    AddSubtask {
        parent: Index,
        child: Index,
        guard: Guard,
    },
    AppendMessage {
        task: Index,
        error: bool,
        text: String,
        guard: Guard,
    },
    AppendMessages {
        task: Index,
        count: u8,
        with_nul: bool,
        guard: Guard,
    },
    Claim {
        actions: Vec<Index>,
        instance: Index,
        term: Term,
        claim_id: ClaimId,
    },
    ClaimLease {
        instance: Index,
    },
    RenewLease {
        instance: Index,
    },
    ReleaseLease {
        instance: Index,
    },
    /// A change of leader in one step, as a lapse would make it (leases here last an hour):
    /// the holder releases the lease and `instance` claims it.
    Takeover {
        instance: Index,
    },
    Recover {
        offset: i64,
        fail: bool,
    },
    Terminate {
        task: Index,
        by: Index,
        guard: Guard,
    },
    RecordBuild {
        node: Index,
        task: Index,
        generator: Index,
        days_ago: u8,
        guard: Guard,
    },
    QueryBuild {
        node: Option<Index>,
        task: Option<Index>,
        latest: bool,
        brief: bool,
    },
    List {
        status: Option<TaskStatus>,
        action: Option<Index>,
        parent: Option<Index>,
        created_after_days: Option<u8>,
        created_before_days: Option<u8>,
        limit: Option<u8>,
        after: Option<Index>,
        claimed_by: Option<Index>,
        claim_term: Option<Term>,
    },
    Subtasks {
        parent: Index,
        which: u8,
    },
    Purge {
        retention: Retention,
    },
}

pub(super) fn status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        2 => Just(TaskStatus::Queued),
        3 => prop::sample::select(TaskStatus::ALL.to_vec()),
    ]
}

/// A first status: mostly one a task may be created in, now and then one only a claim gives.
pub(super) fn first_status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        6 => Just(TaskStatus::Queued),
        2 => Just(TaskStatus::Requested),
        1 => Just(TaskStatus::Complete),
        1 => Just(TaskStatus::Terminated),
        1 => prop::sample::select(vec![TaskStatus::Running, TaskStatus::Terminating]),
    ]
}

pub(super) fn text() -> impl Strategy<Value = String> {
    "[a-z'%_;\\\\ é🚀-]{0,24}"
}

pub(super) fn term() -> impl Strategy<Value = Term> {
    prop_oneof![
        3 => Just(Term::None),
        5 => Just(Term::Holder),
        1 => Just(Term::Current),
        1 => Just(Term::Stale),
        1 => Just(Term::Future)
    ]
}

pub(super) fn guard() -> impl Strategy<Value = Guard> {
    prop_oneof![
        4 => Just(Guard::None),
        4 => Just(Guard::Current),
        3 => any::<Index>().prop_map(Guard::Past),
        1 => Just(Guard::OtherTerm),
        1 => Just(Guard::Nul),
    ]
}

pub(super) fn claim_id() -> impl Strategy<Value = ClaimId> {
    prop_oneof![
        3 => Just(ClaimId::None),
        3 => Just(ClaimId::Fresh),
        2 => (any::<Index>(), prop::bool::weighted(0.7)).prop_map(|(which, same)| ClaimId::Resend { which, same }),
    ]
}

pub(super) fn parent() -> impl Strategy<Value = Parent> {
    prop_oneof![
        1 => Just(Parent::Clear),
        4 => any::<Index>().prop_map(Parent::Existing),
        1 => Just(Parent::Missing),
        1 => Just(Parent::Itself),
    ]
}

pub(super) fn fields() -> impl Strategy<Value = Fields> {
    let o = |p| prop::option::weighted(p, any::<bool>());
    (
        (
            prop::option::weighted(0.6, status()),
            prop::option::weighted(0.5, prop::sample::select(ResultStatus::ALL.to_vec())),
            prop::option::weighted(0.4, prop::option::of(text())),
            prop::option::weighted(0.2, prop::option::of(text())),
            prop::option::weighted(0.3, prop_oneof![8 => 0i32..5, 1 => Just(-1)]),
            prop::option::weighted(0.3, prop::collection::vec(any::<Index>(), 0..3)),
        ),
        (
            prop::option::weighted(0.2, 0u8..3),
            o(0.2),
            prop::option::weighted(0.2, prop_oneof![3 => 0u8..2, 1 => Just(2u8)]),
            prop::option::weighted(0.3, parent()),
            prop::bool::weighted(0.03),
        ),
    )
        .prop_map(
            |(
                (status, result, message, reason, retry, successes),
                (links, node_filter, design_ref, parent, nul),
            )| Fields {
                status,
                result,
                message,
                reason,
                retry,
                successes,
                links,
                node_filter,
                design_ref,
                parent,
                nul,
            },
        )
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<Index>(), first_status(), prop::option::weighted(0.4, any::<Index>()), prop_oneof![3 => Just(0u8), 2 => 1u8..40], prop::bool::weighted(0.4), prop::option::weighted(0.1, any::<Index>()))
            .prop_map(|(action, status, parent, age_days, tie, duplicate_of)| Op::Create { action, status, parent, age_days, tie, duplicate_of }),
        1 => any::<Index>().prop_map(|task| Op::Get { task }),
        4 => (any::<Index>(), status(), guard()).prop_map(|(task, status, guard)| Op::SetStatus { task, status, guard }),
        4 => (any::<Index>(), fields(), guard())
            .prop_map(|(task, fields, guard)| Op::Update { task, fields: Box::new(fields), guard }),
        3 => (any::<Index>(), any::<Index>(), guard()).prop_map(|(parent, child, guard)| Op::AddSubtask { parent, child, guard }),
        3 => (any::<Index>(), any::<bool>(), text(), guard()).prop_map(|(task, error, text, guard)| Op::AppendMessage { task, error, text, guard }),
        2 => (any::<Index>(), 0u8..4, prop::bool::weighted(0.2), guard()).prop_map(|(task, count, with_nul, guard)| Op::AppendMessages { task, count, with_nul, guard }),
        8 => (prop::collection::vec(any::<Index>(), 0..3), any::<Index>(), term(), claim_id()).prop_map(|(actions, instance, term, claim_id)| Op::Claim { actions, instance, term, claim_id }),
        3 => any::<Index>().prop_map(|instance| Op::ClaimLease { instance }),
        1 => any::<Index>().prop_map(|instance| Op::RenewLease { instance }),
        1 => any::<Index>().prop_map(|instance| Op::ReleaseLease { instance }),
        2 => any::<Index>().prop_map(|instance| Op::Takeover { instance }),
        3 => (prop_oneof![1 => Just(-1i64), 4 => Just(0i64), 1 => Just(1i64)], any::<bool>()).prop_map(|(offset, fail)| Op::Recover { offset, fail }),
        2 => (any::<Index>(), any::<Index>(), guard()).prop_map(|(task, by, guard)| Op::Terminate { task, by, guard }),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 0u8..30, guard()).prop_map(|(node, task, generator, days_ago, guard)| Op::RecordBuild { node, task, generator, days_ago, guard }),
        1 => (prop::option::of(any::<Index>()), prop::option::of(any::<Index>()), any::<bool>(), any::<bool>())
            .prop_map(|(node, task, latest, brief)| Op::QueryBuild { node, task, latest, brief }),
        2 => (prop::option::weighted(0.3, status()), prop::option::weighted(0.3, any::<Index>()), prop::option::weighted(0.3, any::<Index>()), prop::option::weighted(0.3, 0u8..40), prop::option::weighted(0.2, 0u8..40), prop::option::weighted(0.3, 0u8..5), prop::option::weighted(0.3, any::<Index>()), prop::option::weighted(0.2, any::<Index>()), prop::option::weighted(0.2, term()))
            .prop_map(|(status, action, parent, created_after_days, created_before_days, limit, after, claimed_by, claim_term)| Op::List { status, action, parent, created_after_days, created_before_days, limit, after, claimed_by, claim_term }),
        2 => (any::<Index>(), 0u8..3).prop_map(|(parent, which)| Op::Subtasks { parent, which }),
        1 => prop_oneof![Just(Retention::Huge), (0u8..40).prop_map(Retention::DaysAndAHalf), Just(Retention::Zero)]
            .prop_map(|retention| Op::Purge { retention }),
    ]
}

/// A case: a few queued tasks and a leader first (so that most ops find something to act
/// on), then up to `max` random ops.
pub(super) fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    let queued = (any::<Index>(), prop::bool::weighted(0.5)).prop_map(|(action, tie)| Op::Create {
        action,
        status: TaskStatus::Queued,
        parent: None,
        age_days: 0,
        tie,
        duplicate_of: None,
    });
    (
        prop::collection::vec(queued, 0..=3),
        prop::option::weighted(0.8, any::<Index>()),
        prop::collection::vec(op(), 1..=max.max(1)),
    )
        .prop_map(|(mut first, leader, rest)| {
            first.extend(leader.map(|instance| Op::ClaimLease { instance }));
            first.extend(rest);
            first
        })
}
