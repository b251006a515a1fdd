//! W7: build data recorded, and the latest of each generator read back per node.

use std::sync::Arc;
use std::time::Instant;

use drydock_state::{BuildData, BuildDataQuery, StateStore, TaskId, Verbosity};
use serde_json::json;

use crate::baseline::Baselines;
use crate::measure::rate;
use crate::report::Figure;
use crate::BenchResult;

/// Drydock's Python state manager, from issue 5: 216 latest-build-data calls a second.
const DRYDOCK_W7_LATEST: f64 = 216.0;

/// W7: elements recorded per second, and latest-per-node calls per second with and without
/// the elements.
pub struct W7 {
    record: f64,
    latest: f64,
    latest_brief: f64,
    generators: usize,
}

pub async fn w7_build_data(store: &Arc<dyn StateStore>, s: usize) -> BenchResult<W7> {
    eprintln!("W7 build data...");
    let (nodes, generators) = (100 / s.min(10), 10);
    let elements: Vec<String> = (0..nodes * generators)
        .map(|i| build_element(i as u64))
        .collect();
    let task = TaskId::new();
    let started = Instant::now();
    for (i, element) in elements.iter().enumerate() {
        let data = BuildData {
            node_name: format!("node{:03}", i % nodes),
            task_id: task,
            collected_date: None,
            generator: format!("gen{}", i / nodes),
            data_format: "text/plain".into(),
            data_element: Some(element.clone()),
        };
        store.record_build_data(&data, None).await?;
    }
    let w7_record = rate(nodes * generators, started.elapsed());
    let started = Instant::now();
    for node in 0..nodes {
        let rows = store
            .build_data(&BuildDataQuery {
                node_name: Some(format!("node{node:03}")),
                latest: true,
                ..Default::default()
            })
            .await?;
        assert_eq!(rows.len(), generators);
        assert!(rows
            .iter()
            .all(|r| r.data_element.as_ref().map(String::len) == Some(64 * 1024)));
    }
    let w7_latest = rate(nodes, started.elapsed());
    // The same lookups without the elements: what the index costs, apart from reading (and
    // decompressing) 640 KiB of TOASTed text per call.
    let started = Instant::now();
    for node in 0..nodes {
        let rows = store
            .build_data(&BuildDataQuery {
                node_name: Some(format!("node{node:03}")),
                latest: true,
                verbosity: Verbosity::Brief,
                ..Default::default()
            })
            .await?;
        assert_eq!(rows.len(), generators);
    }
    let w7_latest_brief = rate(nodes, started.elapsed());
    Ok(W7 {
        record: w7_record,
        latest: w7_latest,
        latest_brief: w7_latest_brief,
        generators,
    })
}

impl W7 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        vec![
            Figure::rate(
                "W7_record",
                self.record,
                "elements/s",
                "insert_c1",
                base.insert_c1,
            ),
            Figure::rate(
                "W7_latest",
                self.latest,
                "calls/s",
                "select_c1",
                base.select_c1,
            )
            .with("rows_per_call", json!(self.generators))
            .with("brief_calls_per_s", json!(self.latest_brief.round()))
            .target(">= 5 x 216 calls/s", |f| f.value >= 5.0 * DRYDOCK_W7_LATEST),
        ]
    }
}

/// A 64 KiB build-data element that looks like what `lshw` reports: structured text with
/// varying serials and sizes, so it compresses about as well as the real thing (a run of one
/// repeated letter would make PostgreSQL's TOAST compression, and so the read, unrealistically
/// cheap).
fn build_element(seed: u64) -> String {
    const SIZE: usize = 64 * 1024;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::with_capacity(SIZE + 256);
    let mut i = 0;
    while out.len() < SIZE {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "<node id=\"disk:{i}\" claimed=\"true\" class=\"disk\"><product>MZ7L{:04X}</product><serial>{:016x}</serial><size units=\"bytes\">{}</size></node>",
            next() % 0xFFFF,
            next(),
            next() % 4_000_000_000_000
        );
        i += 1;
    }
    out.truncate(SIZE);
    out
}
