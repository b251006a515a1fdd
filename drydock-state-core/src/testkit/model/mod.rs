//! The differential model-based test: random sequences of store operations applied to the
//! in-memory store (the reference) and to the store under test, every step's result and the
//! whole observable state after it compared.
//!
//! The operations cover the typed write API: creation from a `NewTask` (creation times often
//! equal, so that ordering and keyset pagination ties are exercised), `TaskUpdate`s of random
//! field subsets (including a parent changed to an existing task, to a missing one, to the
//! task itself, or cleared), claims with caller-chosen claim ids (fresh, re-sent as they were,
//! or re-sent by another instance), every task write under a guard (none, the task's current
//! claim, an earlier claim of the same task, the current claim with another term, an instance
//! with a NUL), recovery under both policies, termination of a subtree, and listing by
//! claimant and term.
//!
//! What a backend legitimately sets itself is normalised before comparing: `updated`, message
//! `ts`, lease times (dropped); `claimed_at` and `terminated` (only whether they are set);
//! message `sequence` (only its order, checked to increase with every append). Errors are
//! compared by kind, not text. Leases last an hour and nothing sleeps, so every run is
//! deterministic.
//!
//! `PROPTEST_CASES` sets the number of cases (default 32), `MODEL_MAX_OPS` the longest
//! sequence (default 40), `MODEL_STATS=1` prints how often each operation succeeded, found
//! nothing or failed on the reference. Before the random cases, every seed saved in the
//! kit's own `proptest-regressions/model.txt` (shipped with drydock-state-core, so every
//! backend replays them) and in the calling crate's `proptest-regressions/model.txt` is
//! replayed; a new failure is saved, shrunk, in the calling crate's file. A discrepancy found
//! that way also gets a case of its own, such as
//! [`parent_cycles_made_by_update_are_handled_as_the_reference_does`].

mod exec;
mod ops;

use std::any::Any;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use proptest::prop_assert_eq;
use proptest::test_runner::{
    Config as ProptestConfig, FailurePersistence, PersistedSeed, TestCaseError, TestError,
    TestRunner,
};
use serde_json::{json, Value};

use self::exec::*;
use self::ops::*;
use super::support::test_config;
use super::{case_manifest_dir, env_number, reference_store, StoreFactory};
use crate::backend::now;
use crate::model::*;
use crate::store::StateStore;

/// The seeds every backend replays, shipped with the kit.
const KIT_SEEDS: &str = include_str!("../../../proptest-regressions/model.txt");

/// Where new failures are saved, and replayed from: under the calling crate's root.
const OWN_SEEDS: &str = "proptest-regressions/model.txt";

/// Random operation sequences (`PROPTEST_CASES` of them, default 32, each up to
/// `MODEL_MAX_OPS` operations long, default 40) give the same results and leave the same
/// observable state on the store under test as on the reference; the saved regressions are
/// replayed first. A failure is shrunk, saved, and reported with the shortest sequence found.
pub async fn random_operations_agree_with_the_reference(factory: &dyn StoreFactory) {
    let cases = env_number("PROPTEST_CASES", 32);
    let max_ops = env_number("MODEL_MAX_OPS", 40);
    let persistence = Regressions::new(
        case_manifest_dir()
            .map(|dir| PathBuf::from(dir).join(OWN_SEEDS))
            .unwrap_or_else(|| PathBuf::from(OWN_SEEDS)),
    );
    let config = ProptestConfig {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        failure_persistence: Some(Box::new(persistence)),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    };
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        TestRunner::new(config).run(&ops(max_ops), |ops| handle.block_on(run_case(factory, ops)))
    });
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => {
            panic!("{why}\nthe shortest failing sequence: {ops:#?}")
        }
        Err(TestError::Abort(why)) => panic!("the model-based test gave up: {why}"),
    }
}

/// The seeds to replay: the kit's own, then the calling crate's file, where new failures go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Regressions {
    /// The calling crate's file (proptest's own file persistence wants a `&'static str`
    /// path; this one reads and appends the same format itself).
    own: PathBuf,
}

impl Regressions {
    fn new(own: PathBuf) -> Self {
        Self { own }
    }
}

/// The seeds of a regressions file's text: `cc <seed>` lines, `#` starting a comment.
fn seeds_of(text: &str) -> Vec<PersistedSeed> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .filter_map(|line| PersistedSeed::from_str(line).ok())
        .collect()
}

impl FailurePersistence for Regressions {
    fn load_persisted_failures2(&self, source_file: Option<&'static str>) -> Vec<PersistedSeed> {
        let mut seeds = seeds_of(KIT_SEEDS);
        let _ = source_file;
        let own = std::fs::read_to_string(&self.own).unwrap_or_default();
        for seed in seeds_of(&own) {
            if !seeds.contains(&seed) {
                seeds.push(seed);
            }
        }
        seeds
    }

    fn save_persisted_failure2(
        &mut self,
        source_file: Option<&'static str>,
        seed: PersistedSeed,
        shrunken_value: &dyn std::fmt::Debug,
    ) {
        use std::io::Write as _;
        let _ = source_file;
        if let Some(dir) = self.own.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let line = format!("{seed} # shrinks to {shrunken_value:?}\n");
        let saved = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.own)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = saved {
            eprintln!(
                "could not save the failing seed to {}: {e}",
                self.own.display()
            );
        }
    }

    fn box_clone(&self) -> Box<dyn FailurePersistence> {
        Box::new(self.clone())
    }

    fn eq(&self, other: &dyn FailurePersistence) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|other| other.own == self.own)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs `ops` on the reference and on a fresh store of the factory's; the first disagreement
/// fails the case.
async fn run_case(
    factory: &dyn StoreFactory,
    ops: Vec<Op>,
) -> std::result::Result<(), TestCaseError> {
    let config = test_config();
    let reference = reference_store(&config);
    let reference = &*reference;
    let tested = factory.open(config).await;
    let others: [(&str, &dyn StateStore); 1] = [(tested.backend_name(), &*tested)];
    let mut world = World {
        ids: Vec::new(),
        unknown: TaskId(uuid::Uuid::new_v4()),
        base: now(),
        last_term: 1,
        holder: None,
        claims: Vec::new(),
        requests: Vec::new(),
    };
    let mut seen_ref = Seen::default();
    let mut seen: [Seen; 1] = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let resolved = resolve(op, reference, &world, i).await;
        let expected = step(op, &resolved, reference, &world, i, &mut seen_ref).await;
        let expected_state = observed_state(reference, &mut seen_ref).await;
        tally(op, &expected);
        for ((name, store), seen) in others.iter().zip(seen.iter_mut()) {
            let got = step(op, &resolved, *store, &world, i, seen).await;
            prop_assert_eq!(
                &got,
                &expected,
                "step {} {:?}: {} disagrees with the reference",
                i,
                op,
                name
            );
            let state = observed_state(*store, seen).await;
            prop_assert_eq!(
                &state,
                &expected_state,
                "after step {} {:?}: {}'s state disagrees with the reference",
                i,
                op,
                name
            );
        }
        match (op, &resolved, &expected) {
            (
                Op::Create {
                    duplicate_of: None, ..
                },
                _,
                Ok(task),
            ) => world.ids.push(
                serde_json::from_value(task["task_id"].clone()).expect("a created task's id"),
            ),
            (_, Resolved::Claim(request), result) => {
                if request.claim_id.is_some() && !world.requests.contains(request) {
                    world.requests.push(request.clone());
                }
                if let Ok(task @ Value::Object(_)) = result {
                    let id = serde_json::from_value(task["task_id"].clone()).expect("an id");
                    let claim = Claim::new(
                        task["claimed_by"]
                            .as_str()
                            .expect("a claimed task's claimant"),
                        task["claim_term"].as_i64(),
                        task["attempt"].as_i64().expect("a claimed task's attempt"),
                    );
                    if !world.claims.contains(&(id, claim.clone())) {
                        world.claims.push((id, claim));
                    }
                }
            }
            _ => {}
        }
        let lease = reference.current_lease().await.expect("reference lease");
        if let Some(lease) = &lease {
            world.last_term = lease.term;
        }
        world.holder = lease.map(|l| l.instance_id);
    }
    Ok(())
}

/// Counts, per operation, how often the reference succeeded with something, with nothing
/// (`null`, `[]`) and failed; printed with `MODEL_STATS=1` to check the generator reaches
/// every path.
fn tally(op: &Op, result: &Obs) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static TALLY: Mutex<BTreeMap<String, [u32; 3]>> = Mutex::new(BTreeMap::new());
    if std::env::var_os("MODEL_STATS").is_none() {
        return;
    }
    let name = format!("{op:?}")
        .split([' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string();
    let slot = match result {
        Ok(Value::Null) => 1,
        Ok(Value::Array(a)) if a.is_empty() => 1,
        Ok(_) => 0,
        Err(e) => {
            let mut t = TALLY.lock().unwrap();
            t.entry(format!("{name} {e}")).or_default()[2] += 1;
            2
        }
    };
    let mut t = TALLY.lock().unwrap();
    t.entry(name).or_default()[slot] += 1;
    eprintln!("tally (something, nothing, error): {t:?}");
}

/// `update_task` may set a parent below the task itself (core checks only that the parent
/// exists and is not the task): the generator avoids such cycles, so they are tried here on
/// their own. The store must agree with the reference on terminating a task of the cycle
/// (its whole subtree, each once), on listing, subtasks and purging, and must not loop.
pub async fn parent_cycles_made_by_update_are_handled_as_the_reference_does(
    factory: &dyn StoreFactory,
) {
    {
        let config = test_config();
        let within = |what: &'static str, backend: &'static str| {
            move |r: std::result::Result<Obs, tokio::time::error::Elapsed>| {
                r.unwrap_or_else(|_| panic!("{backend}: {what} did not finish in 20 s"))
            }
        };
        let limit = Duration::from_secs(20);
        let mut outcomes = Vec::new();
        for opened in [reference_store(&config), factory.open(config.clone()).await] {
            let store = &*opened;
            let backend = store.backend_name();
            let mut seen = Seen::default();
            let a = store
                .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
                .await
                .unwrap();
            let b = store
                .create_task(&NewTask::new("deploy_node").with_parent(a.task_id))
                .await
                .unwrap();
            store.add_subtask(a.task_id, b.task_id, None).await.unwrap();
            let c = store
                .create_task(&NewTask::new("deploy_node").with_parent(b.task_id))
                .await
                .unwrap();
            store.add_subtask(b.task_id, c.task_id, None).await.unwrap();
            let cycle = TaskUpdate::new().parent(Some(c.task_id));
            let mut steps = Vec::new();
            let updated = tokio::time::timeout(limit, async {
                obs(store.update_task(a.task_id, &cycle, None).await, |t| {
                    json!(t.parent_task_id)
                })
            })
            .await;
            steps.push(within("update", backend)(updated));
            let terminated = tokio::time::timeout(limit, async {
                obs(
                    store.terminate_task(a.task_id, "operator", None).await,
                    |t| json!([t.status, t.terminate]),
                )
            })
            .await;
            steps.push(within("terminate", backend)(terminated));
            let subtasks = tokio::time::timeout(limit, async {
                obs(store.subtasks(a.task_id, SubtaskFilter::All).await, |ts| {
                    json!(ts.iter().map(|t| t.task_id).collect::<Vec<_>>())
                })
            })
            .await;
            steps.push(within("subtasks", backend)(subtasks));
            let purged = tokio::time::timeout(limit, async {
                obs(store.purge(Duration::from_secs(1)).await, |r| json!(r))
            })
            .await;
            steps.push(within("purge", backend)(purged));
            let state = observed_state(store, &mut seen).await;
            // Ids differ between backends: compare with each task's place instead.
            let ids = [a.task_id, b.task_id, c.task_id];
            let place = |v: &Value| -> Value {
                let mut text = v.to_string();
                for (i, id) in ids.iter().enumerate() {
                    text = text.replace(&id.to_string(), &format!("task-{i}"));
                }
                let mut v: Value = serde_json::from_str(&text).unwrap();
                for t in v["tasks"].as_array_mut().into_iter().flatten() {
                    t["created"] = Value::Null;
                }
                v
            };
            let steps: Vec<Obs> = steps
                .into_iter()
                .map(|s| s.map(|v| place(&json!({ "tasks": [], "v": v }))["v"].clone()))
                .collect();
            outcomes.push((backend, steps, place(&state)));
        }
        let (_, expected_steps, expected_state) = outcomes[0].clone();
        for (backend, steps, state) in &outcomes[1..] {
            assert_eq!(
                steps, &expected_steps,
                "{backend} disagrees with the reference"
            );
            assert_eq!(
                state, &expected_state,
                "{backend}'s state disagrees with the reference"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure saved to the calling crate's file is replayed by the next run, once.
    #[test]
    fn a_saved_seed_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut regressions = Regressions::new(dir.path().join("proptest-regressions/model.txt"));
        let seed = PersistedSeed::from_str(&format!("cc {}", "ab".repeat(32))).unwrap();
        regressions.save_persisted_failure2(None, seed.clone(), &"ops");
        let loaded = regressions.load_persisted_failures2(None);
        assert!(loaded.contains(&seed), "{loaded:?}");
        assert_eq!(loaded.iter().filter(|s| **s == seed).count(), 1);
    }
}
