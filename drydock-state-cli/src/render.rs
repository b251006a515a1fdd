//! Text rendering of tasks, messages and build data for `--output text`.

use std::fmt::Write;

use drydock_state::{BuildData, Task};

/// One line per task: id, status, result, action, created.
pub fn task_table(tasks: &[Task]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<11}  {:<15}  {:<20}  CREATED",
        "TASK", "STATUS", "RESULT", "ACTION"
    );
    for t in tasks {
        let _ = writeln!(
            out,
            "{:<36}  {:<11}  {:<15}  {:<20}  {}",
            t.task_id,
            t.status,
            t.result.status,
            t.action,
            t.created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    out
}

/// A task's fields followed by its messages.
pub fn task_detail(t: &Task) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "task:       {}", t.task_id);
    let _ = writeln!(out, "action:     {}", t.action);
    let _ = writeln!(out, "status:     {}", t.status);
    let _ = writeln!(out, "result:     {}", t.result.status);
    if let Some(parent) = t.parent_task_id {
        let _ = writeln!(out, "parent:     {parent}");
    }
    if let Some(design) = &t.design_ref {
        let _ = writeln!(out, "design:     {}", drydock_state::redact_uri(design));
    }
    let _ = writeln!(out, "created:    {}", t.created);
    if let Some(by) = &t.claimed_by {
        let _ = writeln!(
            out,
            "claimed by: {by} (term {}, attempt {})",
            t.claim_term.map_or("-".into(), |t| t.to_string()),
            t.attempt
        );
    }
    if !t.subtask_id_list.is_empty() {
        let _ = writeln!(out, "subtasks:   {}", t.subtask_id_list.len());
    }
    let details = &t.result.details;
    let _ = writeln!(
        out,
        "messages:   {} ({} errors)",
        details.message_list.len(),
        details.error_count
    );
    for m in &details.message_list {
        let marker = if m.error { "ERROR" } else { "info " };
        let _ = writeln!(
            out,
            "  {:>6} {marker} [{}:{}] {}",
            m.sequence, m.context_type, m.context, m.message
        );
    }
    out
}

/// One line per build-data element.
pub fn build_data(rows: &[BuildData]) -> String {
    let mut out = String::new();
    for b in rows {
        let size = b
            .data_element
            .as_ref()
            .map_or("-".into(), |d| format!("{} bytes", d.len()));
        let collected = b.collected_date.map_or("-".into(), |d| d.to_string());
        let _ = writeln!(
            out,
            "{}  {}  {}  {}  {}  {}",
            b.node_name, b.generator, b.data_format, b.task_id, collected, size
        );
    }
    out
}
