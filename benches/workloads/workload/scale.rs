//! The scale workloads (issue 15), behind `--scale N[,N...]`: a history of N tasks filled
//! with raw SQL, then the latencies of the hot paths on top of it, a purge of its oldest
//! tenth, and the table and index sizes before and after many claims.
//!
//! The history: N/10 trees of ten tasks (a root `deploy_nodes` with nine `deploy_node`
//! subtasks, `parent_task_id` set and listed in the root's `subtask_id_list`), every task
//! complete with ten result messages, the trees one second apart and ending an hour ago, and
//! 100 of the roots with 50 messages; and build data for N/10 nodes (5 generators × 2
//! collections, 200-byte elements). Task ids are derived from the task's index `i`
//! (`{hash(i):08x}-0000-4000-8000-{i:012x}`, the first group a multiplicative hash so ids are
//! spread over the key space as random ids are), so the bench knows every id and creation
//! time without reading them back. The fill is one `INSERT … SELECT` per chunk, over
//! `generate_series` on PostgreSQL and a recursive CTE on SQLite, then `ANALYZE` (what
//! autovacuum would have done for a history that grew over time).
//!
//! Measured at each scale, each as p50 and p99: S1 claim + complete of 1,000 tasks queued on
//! top of the history (one claimer), S2 `get_task` of a task with 50 messages, S3 a 100-task
//! `list_tasks` page (keyset, 100 samples) between 50 % and 95 % into the history, S4 `build_data` latest
//! (full) of one node; S5 `purge` of the oldest 10 % of the trees (task rows/s) with one
//! claimer claiming and completing meanwhile (its p99 against S1's). At the largest scale, S6:
//! the tables' and indexes' bytes before and after `claims` claims (8 claimers, the queue
//! refilled 1,000 at a time), autovacuum at its defaults.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use drydock_state::{
    BackendRegistry, BuildDataQuery, ClaimRequest, Config, StateStore, TaskFilter, TaskId,
    TaskStatus, Verbosity,
};
use drydock_state_testsupport::sql;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::report::Figure;
use crate::scratch::{self, Raw};
use crate::BenchResult;

/// Tasks per tree, and messages per task.
const TREE: u64 = 10;
const MESSAGES: i32 = 10;
/// Roots given 50 messages, for S2.
const BIG_TASKS: u64 = 100;
/// Microseconds between two trees' roots.
const SPACING: i64 = 1_000_000;
/// Tasks per fill statement (a multiple of `TREE`).
const CHUNK: u64 = 100_000;
/// Tasks queued on top of the history for S1, and per refill of S5 and S6.
const QUEUED: i64 = 1_000;

// ---- PostgreSQL -------------------------------------------------------------------------

/// The id of task index `$x` (an SQL expression), as [`task_id`] computes it.
macro_rules! pg_id {
    ($x:literal) => {
        concat!(
            "(lpad(to_hex(((",
            $x,
            ") * 2654435761) % 4294967296), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(",
            $x,
            "), 12, '0'))::uuid"
        )
    };
}

/// Tasks `$1 .. $2` of the history, `$3` the first root's creation (µs since the epoch), `$4`
/// the spacing of roots (µs).
const PG_FILL_TASKS: &str = concat!(
    "INSERT INTO drydock_state.tasks
    (task_id, parent_task_id, subtask_id_list, action, status, result_status,
     created, created_by, updated)
SELECT ",
    pg_id!("i"),
    ",
       CASE WHEN i % 10 = 0 THEN NULL ELSE ",
    pg_id!("i - i % 10"),
    " END,
       CASE WHEN i % 10 = 0
            THEN ARRAY(SELECT ",
    pg_id!("i + k"),
    " FROM generate_series(1, 9) AS k ORDER BY k)
            ELSE '{}'::uuid[] END,
       CASE WHEN i % 10 = 0 THEN 'deploy_nodes' ELSE 'deploy_node' END,
       'complete', 'success',
       timestamptz 'epoch' + ($3::bigint + (i / 10) * $4::bigint + i % 10) * interval '1 microsecond',
       'bench',
       timestamptz 'epoch' + ($3::bigint + (i / 10) * $4::bigint + i % 10 + 500000)
           * interval '1 microsecond'
FROM generate_series($1::bigint, $2::bigint - 1) AS i"
);

/// Messages `$5 ..= $6` of tasks `$1 .. $2` (`$3`, `$4` as above).
const PG_FILL_MESSAGES: &str = concat!(
    "INSERT INTO drydock_state.result_message (task_id, message, error, context_type, context, ts)
SELECT ",
    pg_id!("i"),
    ", 'step ' || m || ' of task ' || i, false, 'task', 'bench',
       timestamptz 'epoch' + ($3::bigint + (i / 10) * $4::bigint + i % 10 + m * 1000)
           * interval '1 microsecond'
FROM generate_series($1::bigint, $2::bigint - 1) AS i, generate_series($5::int, $6::int) AS m"
);

/// Messages 11 ..= 50 of the roots of trees `j * $1`, j < 100 (`$2`, `$3` as `$3`, `$4` above).
const PG_FILL_BIG: &str = concat!(
    "INSERT INTO drydock_state.result_message (task_id, message, error, context_type, context, ts)
SELECT ",
    pg_id!("x.i"),
    ", 'step ' || m || ' of task ' || x.i, false, 'task', 'bench',
       timestamptz 'epoch' + ($2::bigint + (x.i / 10) * $3::bigint + m * 1000)
           * interval '1 microsecond'
FROM generate_series(0, 99) AS j
CROSS JOIN LATERAL (SELECT j * $1::bigint * 10 AS i) AS x
CROSS JOIN generate_series(11, 50) AS m
ORDER BY x.i, m"
);

/// Build data of nodes `$1 .. $2`: 5 generators × 2 collections each (`$3`, `$4` as above).
const PG_FILL_BUILD_DATA: &str = concat!(
    "INSERT INTO drydock_state.build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
SELECT 'node-' || n, ",
    pg_id!("n * 10"),
    ",
       timestamptz 'epoch' + ($3::bigint + n * $4::bigint + v * 1000 + g) * interval '1 microsecond',
       'gen-' || g, 'text/plain', repeat('0', 200)
FROM generate_series($1::bigint, $2::bigint - 1) AS n, generate_series(0, 4) AS g,
     generate_series(0, 1) AS v"
);

/// `$2` tasks of action `$1` queued now.
const PG_QUEUE: &str = "INSERT INTO drydock_state.tasks
    (task_id, action, status, result_status, created, created_by)
SELECT gen_random_uuid(), $1, 'queued', 'incomplete', clock_timestamp(), 'bench'
FROM generate_series(1, $2::bigint)";

const PG_ANALYZE: &str =
    "ANALYZE drydock_state.tasks, drydock_state.result_message, drydock_state.build_data";

/// Each table of the store's schema: its bytes (TOAST included) and its indexes' bytes.
const PG_SIZES: &str = "SELECT c.relname::text, pg_table_size(c.oid), pg_indexes_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'drydock_state' AND c.relkind = 'r'
ORDER BY 1";

/// How autovacuum has treated the tasks table.
const PG_VACUUM_STATS: &str = "SELECT n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count
FROM pg_stat_user_tables WHERE schemaname = 'drydock_state' AND relname = 'tasks'";

// ---- SQLite -----------------------------------------------------------------------------

/// The id of task index `$x` (an SQL expression), as [`task_id`] computes it.
macro_rules! sqlite_id {
    ($x:literal) => {
        concat!(
            "printf('%08x-0000-4000-8000-%012x', ((",
            $x,
            ") * 2654435761) % 4294967296, (",
            $x,
            "))"
        )
    };
}

/// As [`PG_FILL_TASKS`], with `?1` .. `?4`.
const SQLITE_FILL_TASKS: &str = concat!(
    "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?2),
     ks(k) AS (VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9))
INSERT INTO drydock_tasks
    (task_id, parent_task_id, subtask_id_list, action, status, result_status,
     created, created_by, updated)
SELECT ",
    sqlite_id!("i"),
    ",
       CASE WHEN i % 10 = 0 THEN NULL ELSE ",
    sqlite_id!("i - i % 10"),
    " END,
       CASE WHEN i % 10 = 0 THEN (SELECT json_group_array(",
    sqlite_id!("i + k"),
    ") FROM ks) ELSE '[]' END,
       CASE WHEN i % 10 = 0 THEN 'deploy_nodes' ELSE 'deploy_node' END,
       'complete', 'success',
       ?3 + (i / 10) * ?4 + i % 10, 'bench', ?3 + (i / 10) * ?4 + i % 10 + 500000
FROM s"
);

/// As [`PG_FILL_MESSAGES`], with `?1` .. `?6`.
const SQLITE_FILL_MESSAGES: &str = concat!(
    "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?2),
     ms(m) AS (SELECT ?5 UNION ALL SELECT m + 1 FROM ms WHERE m < ?6)
INSERT INTO drydock_result_messages (task_id, message, error, context_type, context, ts)
SELECT ",
    sqlite_id!("i"),
    ", 'step ' || m || ' of task ' || i, 0, 'task', 'bench', ?3 + (i / 10) * ?4 + i % 10 + m * 1000
FROM s CROSS JOIN ms"
);

/// As [`PG_FILL_BIG`], with `?1` .. `?3`.
const SQLITE_FILL_BIG: &str = concat!(
    "WITH RECURSIVE js(i) AS (SELECT 0 UNION ALL SELECT i + ?1 * 10 FROM js WHERE i < 99 * ?1 * 10),
     ms(m) AS (SELECT 11 UNION ALL SELECT m + 1 FROM ms WHERE m < 50)
INSERT INTO drydock_result_messages (task_id, message, error, context_type, context, ts)
SELECT ",
    sqlite_id!("i"),
    ", 'step ' || m || ' of task ' || i, 0, 'task', 'bench', ?2 + (i / 10) * ?3 + m * 1000
FROM js CROSS JOIN ms"
);

/// As [`PG_FILL_BUILD_DATA`], with `?1` .. `?4`.
const SQLITE_FILL_BUILD_DATA: &str = concat!(
    "WITH RECURSIVE s(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < ?2),
     gs(g) AS (VALUES (0), (1), (2), (3), (4)),
     vs(v) AS (VALUES (0), (1))
INSERT INTO drydock_build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
SELECT 'node-' || n, ",
    sqlite_id!("n * 10"),
    ", ?3 + n * ?4 + v * 1000 + g, 'gen-' || g, 'text/plain', hex(zeroblob(100))
FROM s CROSS JOIN gs CROSS JOIN vs"
);

/// `?2` tasks of action `?1` queued at `?3` µs and after, with random v4 ids.
const SQLITE_QUEUE: &str =
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?2)
INSERT INTO drydock_tasks (task_id, action, status, result_status, created, created_by)
SELECT lower(printf('%s-%s-4%s-%x%s-%s', hex(randomblob(4)), hex(randomblob(2)),
                    substr(hex(randomblob(2)), 2), 8 + abs(random()) % 4,
                    substr(hex(randomblob(2)), 2), hex(randomblob(6)))),
       ?1, 'queued', 'incomplete', ?3 + i, 'bench'
FROM s";

/// The bytes of pages in use (tables and indexes; the free list left out).
const SQLITE_BYTES: &str = "SELECT (p.page_count - f.freelist_count) * s.page_size
FROM pragma_page_count AS p, pragma_freelist_count AS f, pragma_page_size AS s";

/// Bytes by table and index, where SQLite is built with the `dbstat` table.
const SQLITE_DBSTAT: &str = "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY name";

// ---- the history's geometry ---------------------------------------------------------------

/// The id the fill gives task index `i`.
fn task_id(i: u64) -> TaskId {
    let text = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        (i * 2_654_435_761) % 4_294_967_296,
        i
    );
    TaskId(Uuid::parse_str(&text).expect("a well-formed id"))
}

/// Where the history lies: `trees` trees, the first root created at `base` µs.
#[derive(Clone, Copy)]
struct History {
    tasks: u64,
    trees: u64,
    base: i64,
}

impl History {
    fn new(tasks: u64) -> Self {
        let trees = tasks / TREE;
        let end = Utc::now().timestamp_micros() - 3_600_000_000;
        History {
            tasks: trees * TREE,
            trees,
            base: end - trees as i64 * SPACING,
        }
    }

    /// The creation time of task index `i`, µs.
    fn created(&self, i: u64) -> i64 {
        self.base + (i / TREE) as i64 * SPACING + (i % TREE) as i64
    }

    /// Trees `j * big_step`, j < 100, have roots with 50 messages.
    fn big_step(&self) -> u64 {
        (self.trees / BIG_TASKS).max(1)
    }
}

/// A small deterministic generator for picking samples.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn fill(raw: &Raw, h: History) -> BenchResult<()> {
    let mut lo = 0;
    while lo < h.tasks {
        let hi = (lo + CHUNK).min(h.tasks);
        let (lo_i, hi_i) = (lo as i64, hi as i64);
        match raw {
            Raw::Pg(p) => {
                sql::query(PG_FILL_TASKS)
                    .bind(lo_i)
                    .bind(hi_i)
                    .bind(h.base)
                    .bind(SPACING)
                    .execute(p)
                    .await?;
                sql::query(PG_FILL_MESSAGES)
                    .bind(lo_i)
                    .bind(hi_i)
                    .bind(h.base)
                    .bind(SPACING)
                    .bind(1i32)
                    .bind(MESSAGES)
                    .execute(p)
                    .await?;
                // Build data: one node per tree.
                sql::query(PG_FILL_BUILD_DATA)
                    .bind(lo_i / TREE as i64)
                    .bind(hi_i / TREE as i64)
                    .bind(h.base)
                    .bind(SPACING)
                    .execute(p)
                    .await?;
            }
            Raw::Sqlite(p) => {
                let mut tx = p.begin().await?;
                sql::query(SQLITE_FILL_TASKS)
                    .bind(lo_i)
                    .bind(hi_i)
                    .bind(h.base)
                    .bind(SPACING)
                    .execute(&mut *tx)
                    .await?;
                sql::query(SQLITE_FILL_MESSAGES)
                    .bind(lo_i)
                    .bind(hi_i)
                    .bind(h.base)
                    .bind(SPACING)
                    .bind(1i32)
                    .bind(MESSAGES)
                    .execute(&mut *tx)
                    .await?;
                sql::query(SQLITE_FILL_BUILD_DATA)
                    .bind(lo_i / TREE as i64)
                    .bind(hi_i / TREE as i64)
                    .bind(h.base)
                    .bind(SPACING)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Raw::None => return Err("--scale needs PostgreSQL or SQLite".into()),
        }
        lo = hi;
    }
    let step = h.big_step() as i64;
    match raw {
        Raw::Pg(p) => {
            sql::query(PG_FILL_BIG)
                .bind(step)
                .bind(h.base)
                .bind(SPACING)
                .execute(p)
                .await?;
            sql::query(PG_ANALYZE).execute(p).await?;
        }
        Raw::Sqlite(p) => {
            sql::query(SQLITE_FILL_BIG)
                .bind(step)
                .bind(h.base)
                .bind(SPACING)
                .execute(p)
                .await?;
        }
        Raw::None => {}
    }
    Ok(())
}

/// Queues `n` tasks of `action`, created now, with raw SQL.
async fn queue(raw: &Raw, action: &str, n: i64) -> BenchResult<()> {
    match raw {
        Raw::Pg(p) => {
            sql::query(PG_QUEUE).bind(action).bind(n).execute(p).await?;
        }
        Raw::Sqlite(p) => {
            sql::query(SQLITE_QUEUE)
                .bind(action)
                .bind(n)
                .bind(Utc::now().timestamp_micros())
                .execute(p)
                .await?;
        }
        Raw::None => {}
    }
    Ok(())
}

/// The bytes of the tables and their indexes, with the breakdown (and, on PostgreSQL, what
/// autovacuum did to the tasks table).
async fn sizes(raw: &Raw) -> BenchResult<(u64, Value)> {
    match raw {
        Raw::Pg(p) => {
            let rows: Vec<(String, i64, i64)> = sql::query_as(PG_SIZES).fetch_all(p).await?;
            let total: i64 = rows.iter().map(|(_, t, i)| t + i).sum();
            let by: serde_json::Map<String, Value> = rows
                .iter()
                .map(|(n, t, i)| (n.clone(), json!({ "table": t, "indexes": i })))
                .collect();
            let stats: Option<(i64, i64, i64, i64)> =
                sql::query_as(PG_VACUUM_STATS).fetch_optional(p).await?;
            let stats = stats.map(|(live, dead, av, aa)| {
                json!({ "n_live_tup": live, "n_dead_tup": dead,
                        "autovacuum_count": av, "autoanalyze_count": aa })
            });
            Ok((
                total as u64,
                json!({ "by_table": by, "tasks_vacuum": stats }),
            ))
        }
        Raw::Sqlite(p) => {
            let total: i64 = sql::query_scalar(SQLITE_BYTES).fetch_one(p).await?;
            let by: Option<Vec<(String, i64)>> =
                sql::query_as(SQLITE_DBSTAT).fetch_all(p).await.ok();
            let by: Value = by.map_or(Value::Null, |rows| {
                Value::Object(rows.into_iter().map(|(n, b)| (n, json!(b))).collect())
            });
            Ok((total as u64, json!({ "by_object": by })))
        }
        Raw::None => Ok((0, Value::Null)),
    }
}

// ---- the measurements -------------------------------------------------------------------

/// What one scale measured; latencies in seconds, sorted.
struct AtScale {
    scale: u64,
    fill_s: f64,
    s1: Vec<f64>,
    s2: Vec<f64>,
    s3: Vec<f64>,
    s4: Vec<f64>,
    purged_tasks: u64,
    purge_s: f64,
    during_purge: Vec<f64>,
    s6: Option<S6>,
}

struct S6 {
    claims: u64,
    elapsed_s: f64,
    before: (u64, Value),
    after: (u64, Value),
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// One claim and the completion under it, timed; `None` when nothing is queued.
async fn claim_one(
    store: &Arc<dyn StateStore>,
    request: &ClaimRequest,
) -> BenchResult<Option<f64>> {
    let at = Instant::now();
    let Some(t) = store.claim_next(request).await? else {
        return Ok(None);
    };
    let guard = t.claim().ok_or("a claimed task carries its claim")?;
    store
        .set_status(t.task_id, TaskStatus::Complete, Some(&guard))
        .await?;
    Ok(Some(at.elapsed().as_secs_f64()))
}

/// Reads back a filled tree and a big task through the store, so the fill is known to be
/// what the store writes.
async fn verify(store: &Arc<dyn StateStore>, h: History) -> BenchResult<()> {
    // Not a multiple of big_step: a root with its ten messages.
    let i = (h.trees / 2 + 1) * TREE;
    let root = store
        .get_task(task_id(i))
        .await?
        .ok_or("a filled root is not found")?;
    let ok = root.subtask_id_list.len() == 9
        && root.subtask_id_list[0] == task_id(i + 1)
        && root.result.details.message_list.len() == MESSAGES as usize
        && root.status == TaskStatus::Complete
        && root.created.timestamp_micros() == h.created(i);
    let child = store
        .get_task(task_id(i + 3))
        .await?
        .ok_or("a filled subtask is not found")?;
    let big = store
        .get_task(task_id(h.big_step() * TREE))
        .await?
        .ok_or("a big task is not found")?;
    if !ok
        || child.parent_task_id != Some(root.task_id)
        || big.result.details.message_list.len() != 50
    {
        return Err(format!(
            "the filled history does not read back as filled: root {} subtasks {:?} \
             messages {} created {} (filled {}); child's parent {:?}; big task messages {}",
            root.task_id,
            root.subtask_id_list.first(),
            root.result.details.message_list.len(),
            root.created.timestamp_micros(),
            h.created(i),
            child.parent_task_id,
            big.result.details.message_list.len()
        )
        .into());
    }
    Ok(())
}

async fn at_scale(
    n: u64,
    claims: Option<u64>,
    url: &str,
    config: &Config,
    registry: &BackendRegistry,
) -> BenchResult<AtScale> {
    let scratch = scratch::prepare(url, config).await?;
    let store = registry.open(&scratch.store_url, config).await?;
    let h = History::new(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n);

    eprintln!("scale {n}: filling {} tasks...", h.tasks);
    let started = Instant::now();
    fill(&scratch.raw, h).await?;
    let fill_s = started.elapsed().as_secs_f64();
    eprintln!("scale {n}: filled in {fill_s:.1} s");
    verify(&store, h).await?;

    eprintln!("scale {n}: S1 claim...");
    queue(&scratch.raw, "bench_s1", QUEUED).await?;
    let request = ClaimRequest::new("bench-s1").actions(["bench_s1"]);
    let mut s1 = Vec::new();
    while let Some(t) = claim_one(&store, &request).await? {
        s1.push(t);
    }
    if s1.len() != QUEUED as usize {
        return Err(format!("S1 claimed {} of {QUEUED}", s1.len()).into());
    }

    eprintln!("scale {n}: S2 get, S3 list page, S4 latest...");
    let mut s2 = Vec::new();
    for r in 0..300 {
        let id = task_id((r % BIG_TASKS) * h.big_step() * TREE);
        let at = Instant::now();
        let t = store.get_task(id).await?.ok_or("S2 task missing")?;
        s2.push(at.elapsed().as_secs_f64());
        if t.result.details.message_list.len() != 50 {
            return Err("S2 task without its 50 messages".into());
        }
    }
    let mut s3 = Vec::new();
    for _ in 0..100 {
        let i = h.tasks / 2 + rng.below(h.tasks * 45 / 100);
        let created = chrono::DateTime::from_timestamp_micros(h.created(i)).ok_or("time")?;
        let filter = TaskFilter {
            after: Some((created, task_id(i))),
            limit: Some(100),
            ..TaskFilter::default()
        };
        let at = Instant::now();
        let page = store.list_tasks(&filter).await?;
        s3.push(at.elapsed().as_secs_f64());
        if page.len() != 100 {
            return Err(format!("S3 page of {} tasks", page.len()).into());
        }
    }
    let mut s4 = Vec::new();
    for _ in 0..300 {
        let node = format!("node-{}", rng.below(h.trees));
        let query = BuildDataQuery {
            node_name: Some(node),
            latest: true,
            verbosity: Verbosity::Full,
            ..BuildDataQuery::default()
        };
        let at = Instant::now();
        let rows = store.build_data(&query).await?;
        s4.push(at.elapsed().as_secs_f64());
        if rows.len() != 5 {
            return Err(format!("S4 latest of {} rows", rows.len()).into());
        }
    }

    eprintln!("scale {n}: S5 purge with a claimer...");
    queue(&scratch.raw, "bench_s5", QUEUED).await?;
    let cutoff = h.base + (h.trees / 10) as i64 * SPACING - SPACING / 2;
    let purging = Arc::new(AtomicBool::new(true));
    let claimer = {
        let (store, purging) = (store.clone(), purging.clone());
        let raw = match &scratch.raw {
            Raw::Pg(p) => Raw::Pg(p.clone()),
            Raw::Sqlite(p) => Raw::Sqlite(p.clone()),
            Raw::None => Raw::None,
        };
        tokio::spawn(async move {
            let request = ClaimRequest::new("bench-s5").actions(["bench_s5"]);
            let mut during = Vec::new();
            while purging.load(Ordering::SeqCst) {
                let claimed = claim_one(&store, &request)
                    .await
                    .map_err(|e| e.to_string())?;
                match claimed {
                    Some(t) => during.push(t),
                    None => {
                        let refilled = queue(&raw, "bench_s5", QUEUED).await;
                        refilled.map_err(|e| e.to_string())?
                    }
                }
            }
            Ok::<_, String>(during)
        })
    };
    // Let the claimer start before the purge does.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let older_than = Duration::from_micros((Utc::now().timestamp_micros() - cutoff) as u64);
    let at = Instant::now();
    let report = store.purge(older_than).await?;
    let purge_s = at.elapsed().as_secs_f64();
    purging.store(false, Ordering::SeqCst);
    let during_purge = claimer.await??;
    if report.tasks != h.trees / 10 * TREE {
        return Err(format!(
            "S5 purged {} tasks, not {}",
            report.tasks,
            h.trees / 10 * TREE
        )
        .into());
    }

    let s6 = match claims {
        None => None,
        Some(claims) => {
            eprintln!("scale {n}: S6 {claims} claims...");
            let before = sizes(&scratch.raw).await?;
            let at = Instant::now();
            let mut done = 0;
            while done < claims {
                let batch = QUEUED.min((claims - done) as i64);
                queue(&scratch.raw, "bench_s6", batch).await?;
                let mut handles = Vec::new();
                for w in 0..8 {
                    let store = store.clone();
                    handles.push(tokio::spawn(async move {
                        let request =
                            ClaimRequest::new(format!("bench-s6-{w}")).actions(["bench_s6"]);
                        let mut mine = 0u64;
                        loop {
                            let claimed = claim_one(&store, &request)
                                .await
                                .map_err(|e| e.to_string())?;
                            if claimed.is_none() {
                                break;
                            }
                            mine += 1;
                        }
                        Ok::<_, String>(mine)
                    }));
                }
                for handle in handles {
                    done += handle.await??;
                }
            }
            let elapsed_s = at.elapsed().as_secs_f64();
            let after = sizes(&scratch.raw).await?;
            Some(S6 {
                claims: done,
                elapsed_s,
                before,
                after,
            })
        }
    };

    drop(store);
    scratch.remove().await;
    Ok(AtScale {
        scale: n,
        fill_s,
        s1: sorted(s1),
        s2: sorted(s2),
        s3: sorted(s3),
        s4: sorted(s4),
        purged_tasks: report.tasks,
        purge_s,
        during_purge: sorted(during_purge),
        s6,
    })
}

/// Runs every scale of `scales` (ascending), S6 at the largest with `claims` claims, and
/// returns the figures and what the run was.
pub async fn run(
    scales: &[u64],
    claims: u64,
    url: &str,
    config: &Config,
    registry: &BackendRegistry,
) -> BenchResult<(Vec<Figure>, Value)> {
    let mut scales = scales.to_vec();
    scales.sort_unstable();
    scales.dedup();
    let largest = *scales.last().ok_or("--scale needs at least one size")?;
    let mut results = Vec::new();
    for &n in &scales {
        if n < BIG_TASKS * TREE * 10 {
            return Err(format!("--scale {n}: at least {}", BIG_TASKS * TREE * 10).into());
        }
        let s6 = (n == largest).then_some(claims);
        results.push(at_scale(n, s6, url, config, registry).await?);
    }
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    Ok((figures(&results, backend), runs(&results)))
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The latency figures of one workload: the value at the largest scale, the growth from the
/// smallest, and the value at each scale.
fn latency_figures(
    results: &[AtScale],
    p50_name: &'static str,
    p99_name: &'static str,
    of: impl Fn(&AtScale) -> &Vec<f64>,
) -> Vec<Figure> {
    let mut out = Vec::new();
    for (name, p) in [(p50_name, 0.5), (p99_name, 0.99)] {
        let by: serde_json::Map<String, Value> = results
            .iter()
            .map(|r| (r.scale.to_string(), json!(round6(pct(of(r), p)))))
            .collect();
        let (first, last) = (&results[0], &results[results.len() - 1]);
        let growth = pct(of(last), p) / pct(of(first), p);
        let mut f = Figure::rate(name, pct(of(last), p), "s", "-", None)
            .with("growth", json!((growth * 100.0).round() / 100.0))
            .with("by_scale", Value::Object(by))
            .with("samples", json!(of(last).len()));
        if p == 0.5 {
            f = f.target("growth <= 1.5 (10,000 -> 1,000,000)", |_| growth <= 1.5);
        }
        out.push(f);
    }
    out
}

fn figures(results: &[AtScale], backend: &'static str) -> Vec<Figure> {
    let mut out = Vec::new();
    out.extend(latency_figures(
        results,
        "S1_claim_p50",
        "S1_claim_p99",
        |r| &r.s1,
    ));
    out.extend(latency_figures(results, "S2_get_p50", "S2_get_p99", |r| {
        &r.s2
    }));
    out.extend(latency_figures(
        results,
        "S3_list_page_p50",
        "S3_list_page_p99",
        |r| &r.s3,
    ));
    out.extend(latency_figures(
        results,
        "S4_latest_p50",
        "S4_latest_p99",
        |r| &r.s4,
    ));
    let (first, last) = (&results[0], &results[results.len() - 1]);
    let purge_rate = |r: &AtScale| r.purged_tasks as f64 / r.purge_s;
    let by: serde_json::Map<String, Value> = results
        .iter()
        .map(|r| (r.scale.to_string(), json!(purge_rate(r).round())))
        .collect();
    out.push(
        Figure::rate("S5_purge", purge_rate(last), "tasks/s", "-", None)
            .with("tasks", json!(last.purged_tasks))
            .with("seconds", json!(round6(last.purge_s)))
            .with(
                "growth",
                json!((purge_rate(last) / purge_rate(first) * 100.0).round() / 100.0),
            )
            .with("by_scale", Value::Object(by))
            .target(">= 50,000 tasks/s (PostgreSQL)", |f| {
                backend != "postgres" || f.value >= 50_000.0
            }),
    );
    let ratio = |r: &AtScale| pct(&r.during_purge, 0.99) / pct(&r.s1, 0.99);
    let by: serde_json::Map<String, Value> = results
        .iter()
        .map(|r| {
            (
                r.scale.to_string(),
                json!((ratio(r) * 100.0).round() / 100.0),
            )
        })
        .collect();
    out.push(
        Figure::rate(
            "S5_claim_p99_during_purge_ratio",
            ratio(last),
            "x",
            "-",
            None,
        )
        .with("p99_during_s", json!(round6(pct(&last.during_purge, 0.99))))
        .with("p99_idle_s", json!(round6(pct(&last.s1, 0.99))))
        .with("claims_during", json!(last.during_purge.len()))
        .with("by_scale", Value::Object(by))
        .target("<= 3", |f| f.value <= 3.0),
    );
    if let Some(s6) = &last.s6 {
        out.push(
            Figure::rate(
                "S6_bytes_after_claims",
                s6.after.0 as f64,
                "bytes",
                "-",
                None,
            )
            .with("before", json!(s6.before.0))
            .with(
                "growth",
                json!((s6.after.0 as f64 / s6.before.0 as f64 * 1000.0).round() / 1000.0),
            )
            .with("claims", json!(s6.claims))
            .with("claims_s", json!((s6.elapsed_s * 10.0).round() / 10.0))
            .with("scale", json!(last.scale))
            .with("detail_before", s6.before.1.clone())
            .with("detail_after", s6.after.1.clone()),
        );
    }
    out
}

/// What each scale's run was: its size and how long the fill took.
fn runs(results: &[AtScale]) -> Value {
    let by: BTreeMap<String, Value> = results
        .iter()
        .map(|r| {
            (
                r.scale.to_string(),
                json!({ "fill_s": (r.fill_s * 10.0).round() / 10.0 }),
            )
        })
        .collect();
    json!(by)
}
