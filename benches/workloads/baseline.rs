//! Baselines: what the database does with single statements issued directly through sqlx.

use std::sync::Arc;
use std::time::Instant;

use drydock_state_testsupport::sql;

use crate::scratch::Raw;

#[derive(Default, Clone, Copy)]
/// Rows per second of each raw statement (`None` without a raw connection).
pub struct Baselines {
    pub insert_c1: Option<f64>,
    pub insert_c8: Option<f64>,
    pub update_c1: Option<f64>,
    pub update_c8: Option<f64>,
    pub select_c1: Option<f64>,
    pub copy: Option<f64>,
}

impl Baselines {
    /// Each baseline with the name the table and the JSON give it.
    pub fn named(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("insert_c1", self.insert_c1),
            ("insert_c8", self.insert_c8),
            ("update_c1", self.update_c1),
            ("update_c8", self.update_c8),
            ("select_c1", self.select_c1),
            ("copy", self.copy),
        ]
    }

    /// The faster of two measurements of each: the ratios are then the harder ones to meet.
    pub fn best(self, other: Baselines) -> Baselines {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Baselines {
            insert_c1: max(self.insert_c1, other.insert_c1),
            insert_c8: max(self.insert_c8, other.insert_c8),
            update_c1: max(self.update_c1, other.update_c1),
            update_c8: max(self.update_c8, other.update_c8),
            select_c1: max(self.select_c1, other.select_c1),
            copy: max(self.copy, other.copy),
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Insert,
    Update,
    Select,
}

async fn raw_statement(raw: &Raw, op: Op, id: i64) {
    match raw {
        Raw::Pg(pool) => match op {
            Op::Insert => sql::query("INSERT INTO raw_bench (id, v) VALUES ($1, $2)")
                .bind(id)
                .bind("payload")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Update => sql::query("UPDATE raw_bench SET v = $2 WHERE id = $1")
                .bind(id)
                .bind("updated")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Select => sql::query("SELECT v FROM raw_bench WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map(|_| ()),
        },
        Raw::Sqlite(pool) => match op {
            Op::Insert => sql::query("INSERT INTO raw_bench (id, v) VALUES (?1, ?2)")
                .bind(id)
                .bind("payload")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Update => sql::query("UPDATE raw_bench SET v = ?2 WHERE id = ?1")
                .bind(id)
                .bind("updated")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Select => sql::query("SELECT v FROM raw_bench WHERE id = ?1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map(|_| ()),
        },
        Raw::None => Ok(()),
    }
    .expect("raw statement");
}

/// Rows per second of `op` over `ids`, issued by `concurrency` workers sharing the pool.
async fn raw_ops(raw: &Arc<Raw>, op: Op, ids: Vec<i64>, concurrency: usize) -> Option<f64> {
    if matches!(**raw, Raw::None) {
        return None;
    }
    let total = ids.len();
    let chunks: Vec<Vec<i64>> = ids
        .chunks(total.div_ceil(concurrency))
        .map(<[i64]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut handles = Vec::new();
    for chunk in chunks {
        let raw = raw.clone();
        handles.push(tokio::spawn(async move {
            for id in chunk {
                raw_statement(&raw, op, id).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("raw worker");
    }
    Some(total as f64 / started.elapsed().as_secs_f64())
}

async fn raw_copy(raw: &Raw, first: i64, n: i64) -> Option<f64> {
    let started = Instant::now();
    match raw {
        Raw::Pg(pool) => {
            let mut conn = pool.acquire().await.ok()?;
            let mut copy = sql::copy_in_raw(&mut conn, "COPY raw_bench (id, v) FROM STDIN")
                .await
                .ok()?;
            let mut buf = String::new();
            for id in first..first + n {
                buf.push_str(&id.to_string());
                buf.push_str("\tpayload\n");
            }
            copy.send(buf.into_bytes()).await.ok()?;
            copy.finish().await.ok()?;
        }
        Raw::Sqlite(pool) => {
            // SQLite has no COPY: the bulk baseline is one transaction of prepared inserts.
            let mut tx = pool.begin().await.ok()?;
            for id in first..first + n {
                sql::query("INSERT INTO raw_bench (id, v) VALUES (?1, 'payload')")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .ok()?;
            }
            tx.commit().await.ok()?;
        }
        Raw::None => return None,
    }
    Some(n as f64 / started.elapsed().as_secs_f64())
}

/// One round of baselines over `n` rows, in a key range of its own (`round`).
pub async fn baselines(raw: &Arc<Raw>, n: usize, round: i64) -> Baselines {
    let base = round * 100_000_000;
    let ids = |from: i64| (base + from..base + from + n as i64).collect::<Vec<_>>();
    let mut b = Baselines {
        insert_c1: raw_ops(raw, Op::Insert, ids(0), 1).await,
        insert_c8: raw_ops(raw, Op::Insert, ids(1_000_000), 8).await,
        ..Default::default()
    };
    b.update_c1 = raw_ops(raw, Op::Update, ids(0), 1).await;
    b.update_c8 = raw_ops(raw, Op::Update, ids(1_000_000), 8).await;
    b.select_c1 = raw_ops(raw, Op::Select, ids(0), 1).await;
    b.copy = raw_copy(raw, base + 10_000_000, 20_000).await;
    b
}
