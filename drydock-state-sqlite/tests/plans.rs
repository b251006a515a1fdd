//! Query plans of the statements that must not slow down as the history grows
//! (docs/PERFORMANCE.md, "SQLite, 10,000 → 100,000"): each statement, as the backend runs it,
//! is put through `EXPLAIN QUERY PLAN` on a freshly migrated file (no `ANALYZE`, as a store in
//! use has none) and must search the index its filter names, not scan the table nor sort the
//! history in a temporary B-tree.

use drydock_state_core::Config;
use drydock_state_sqlite::plan_checked as q;
use drydock_state_sqlite::SqliteStore;

const PREFIX: &str = "EXPLAIN QUERY PLAN ";

/// `a` then `b` in one array of `N` bytes, their total length, at compile time.
const fn join<const N: usize>(a: &[u8], b: &[u8]) -> [u8; N] {
    assert!(a.len() + b.len() == N, "N is the total length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[a.len() + j] = b[j];
        j += 1;
    }
    out
}

/// `EXPLAIN QUERY PLAN` of the statement constant `$sql`, joined at compile time (`concat!`
/// takes literals, not constants): a `&'static str`, as the statement is.
macro_rules! explain {
    ($sql:path) => {{
        const LEN: usize = PREFIX.len() + $sql.len();
        const JOINED: [u8; LEN] = join(PREFIX.as_bytes(), $sql.as_bytes());
        const TEXT: &str = match std::str::from_utf8(&JOINED) {
            Ok(text) => text,
            Err(_) => panic!("a statement is UTF-8"),
        };
        TEXT
    }};
}

async fn migrated(dir: &tempfile::TempDir) -> SqliteStore {
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// The `detail` column of the plan `explain` gives (its parameters unbound, as NULL: the
/// plan does not depend on them without `ANALYZE`).
async fn plan(store: &SqliteStore, explain: &'static str) -> Vec<String> {
    drydock_state_testsupport::sql::query_as::<sqlx::Sqlite, (i64, i64, i64, String)>(explain)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect()
}

/// `plan` of the statement `what` has a step containing each of `wants` and none containing
/// any of `refuses`.
fn check(what: &str, plan: &[String], wants: &[&str], refuses: &[&str]) {
    for want in wants {
        assert!(
            plan.iter().any(|step| step.contains(want)),
            "{what} should plan with `{want}`; its plan is {plan:#?}"
        );
    }
    for refuse in refuses {
        assert!(
            !plan.iter().any(|step| step.contains(refuse)),
            "{what} should not plan with `{refuse}`; its plan is {plan:#?}"
        );
    }
}

/// S4: `build_data` of one node (latest or not, with or without a task) searches the node
/// index for that node, and of one task the task index, instead of scanning every row. (The
/// temporary B-trees left sort the node's or the task's rows only.)
#[tokio::test]
async fn build_data_of_a_node_or_a_task_searches_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = migrated(&dir).await;
    const NODE: &str =
        "SEARCH drydock_build_data USING INDEX drydock_build_data_node (node_name=?)";
    const TASK: &str = "SEARCH drydock_build_data USING INDEX drydock_build_data_task (task_id=?)";
    const SCAN: &str = "SCAN drydock_build_data";
    let cases: [(&str, &'static str, &[&str], &[&str]); 6] = [
        (
            "BUILD_DATA_LATEST_BY_NODE",
            explain!(q::BUILD_DATA_LATEST_BY_NODE),
            &[NODE],
            &[SCAN],
        ),
        (
            "BUILD_DATA_BY_NODE",
            explain!(q::BUILD_DATA_BY_NODE),
            &[NODE],
            &[SCAN],
        ),
        (
            "BUILD_DATA_LATEST_BY_TASK",
            explain!(q::BUILD_DATA_LATEST_BY_TASK),
            &[TASK],
            &[SCAN],
        ),
        (
            "BUILD_DATA_BY_TASK",
            explain!(q::BUILD_DATA_BY_TASK),
            &[TASK],
            &[SCAN],
        ),
        // Every node's: the whole table is the answer, read once.
        (
            "BUILD_DATA_LATEST_ALL",
            explain!(q::BUILD_DATA_LATEST_ALL),
            &[SCAN],
            &[],
        ),
        ("BUILD_DATA_ALL", explain!(q::BUILD_DATA_ALL), &[SCAN], &[]),
    ];
    for (name, explain, wants, refuses) in cases {
        check(name, &plan(&store, explain).await, wants, refuses);
    }
}

/// S3: a page of `list_tasks` starts its walk of the creation index at the keyset, in order,
/// instead of at the oldest task; `count_tasks` (the same filter, its keyset optional)
/// counts in one pass over the table, without a sort.
#[tokio::test]
async fn a_list_page_starts_at_its_keyset() {
    let dir = tempfile::tempdir().unwrap();
    let store = migrated(&dir).await;
    check(
        "LIST_TASKS",
        &plan(&store, explain!(q::LIST_TASKS)).await,
        &["SEARCH drydock_tasks USING INDEX drydock_tasks_created (created>?)"],
        &["SCAN drydock_tasks", "USE TEMP B-TREE"],
    );
    check(
        "COUNT_TASKS",
        &plan(&store, explain!(q::COUNT_TASKS)).await,
        &["SCAN drydock_tasks"],
        &["USE TEMP B-TREE"],
    );
}

/// S5: a purge batch's roots come from the creation index, from the keyset to the cutoff, in
/// order, not from every root of the history sorted; the re-check under the write lock looks
/// the batch's roots up by id.
#[tokio::test]
async fn purge_roots_walk_the_creation_index_without_a_sort() {
    let dir = tempfile::tempdir().unwrap();
    let store = migrated(&dir).await;
    check(
        "PURGE_ROOTS",
        &plan(&store, explain!(q::PURGE_ROOTS)).await,
        &["SEARCH drydock_tasks USING INDEX drydock_tasks_created (created>? AND created<?)"],
        &[
            "SCAN drydock_tasks",
            "USE TEMP B-TREE",
            "drydock_tasks_parent",
        ],
    );
    check(
        "PURGE_ROOTS_RECHECK",
        &plan(&store, explain!(q::PURGE_ROOTS_RECHECK)).await,
        &["SEARCH drydock_tasks USING INDEX sqlite_autoindex_drydock_tasks_1 (task_id=?)"],
        &["SCAN drydock_tasks", "drydock_tasks_parent"],
    );
    // Each tree's statuses: the tree walked down the parent index, then its tasks looked up
    // by id; not every task of the history scanned against the tree (as SQLite 3.46 planned
    // a plain `JOIN` there, once per tree purged).
    check(
        "PURGE_TREE",
        &plan(&store, explain!(q::PURGE_TREE)).await,
        &[
            "SEARCH child USING INDEX drydock_tasks_parent (parent_task_id=?)",
            "SEARCH t USING INDEX sqlite_autoindex_drydock_tasks_1 (task_id=?)",
        ],
        &[
            "BLOOM FILTER ON tree",
            "AUTOMATIC COVERING INDEX",
            "SCAN drydock_tasks",
        ],
    );
}
