//! Text rendering of tasks, messages, build data and boot actions for `--output text`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use drydock_state::{
    BootAction, BootActionContext, BuildData, Error, Result, Task, TaskViewOptions,
};
use serde_json::Value;

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

/// A node's boot-action context, one field per line.
pub fn boot_action_context(c: &BootActionContext) -> String {
    format!(
        "node:   {}\ntask:   {}\nkey:    {}\n",
        c.node_name, c.task_id, c.identity_key
    )
}

/// One boot action, one field per line.
pub fn boot_action_detail(a: &BootAction) -> String {
    format!(
        "boot action: {}\nname:        {}\nnode:        {}\nstatus:      {}\ntask:        {}\nkey:         {}\n",
        a.action_id, a.action_name, a.node_name, a.action_status, a.task_id, a.identity_key
    )
}

/// One line per boot action of a node, by name: id, name, status, task.
pub fn boot_action_table(actions: &BTreeMap<String, BootAction>) -> String {
    let width = actions
        .keys()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26}  {:<width$}  {:<10}  TASK",
        "ACTION ID", "NAME", "STATUS"
    );
    for (name, a) in actions {
        let _ = writeln!(
            out,
            "{:<26}  {name:<width$}  {:<10}  {}",
            a.action_id, a.action_status, a.task_id
        );
    }
    out
}

/// A task view ([`drydock_state::task_view`]) as text. With `layers` 0, the task as
/// [`task_detail`] shows it; otherwise its tree, one task per line, indented by layer (an id
/// listed but not stored says so), each shown task's build data under it. Then, when asked
/// for, the build data of the task (layers 0) and the subtask errors with their error messages.
pub fn task_view(view: &Value, options: &TaskViewOptions) -> Result<String> {
    let mut out = String::new();
    if options.layers == 0 {
        let task: Task = serde_json::from_value(view.clone()).map_err(|e| Error::Backend {
            message: format!("cannot read the task view: {e}"),
            source: None,
        })?;
        out.push_str(&task_detail(&task));
        if options.build_data {
            let rows = view_build_data(view);
            let _ = writeln!(out, "build data: {}", rows.len());
            for row in rows {
                let _ = writeln!(out, "  {row}");
            }
        }
    } else {
        let root = str_of(view, "init_task_id");
        let depth = match options.layers {
            -1 => "all layers".to_string(),
            1 => "1 layer".to_string(),
            n => format!("{n} layers"),
        };
        let _ = writeln!(out, "task tree of {root} ({depth}):");
        let mut seen = HashSet::new();
        tree_lines(view, root, 1, options, &mut seen, &mut out);
    }
    if let Some(Value::Object(errors)) = view.get("subtask_errors") {
        let _ = writeln!(out, "subtask errors: {}", errors.len());
        for (id, result) in errors {
            let details = &result["details"];
            let _ = writeln!(
                out,
                "  {id}  result {}  {}",
                str_of(result, "status"),
                errors_phrase(details["errorCount"].as_u64().unwrap_or(0))
            );
            for m in details["messageList"].as_array().into_iter().flatten() {
                if m["error"] == Value::Bool(true) {
                    let _ = writeln!(
                        out,
                        "      ERROR [{}:{}] {}",
                        str_of(m, "context_type"),
                        str_of(m, "context"),
                        str_of(m, "message")
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The line of task `id` at `layer` and those of its subtasks in the view, depth first, each
/// id once.
fn tree_lines<'a>(
    view: &'a Value,
    id: &'a str,
    layer: usize,
    options: &TaskViewOptions,
    seen: &mut HashSet<&'a str>,
    out: &mut String,
) {
    let Some(task) = view.get(id) else {
        return; // beyond the layers shown
    };
    if !seen.insert(id) {
        return;
    }
    let indent = "  ".repeat(layer);
    if task.is_null() {
        let _ = writeln!(out, "{indent}{id}  (listed, but no such task is stored)");
        return;
    }
    let errors = task["result"]["details"]["errorCount"]
        .as_u64()
        .unwrap_or(0);
    let _ = write!(
        out,
        "{indent}{id}  {:<11}  result {:<15}  {}",
        str_of(task, "status"),
        str_of(&task["result"], "status"),
        str_of(task, "action")
    );
    if errors > 0 {
        let _ = write!(out, "  ({})", errors_phrase(errors));
    }
    out.push('\n');
    if options.build_data {
        for row in view_build_data(task) {
            let _ = writeln!(out, "{indent}    build data: {row}");
        }
    }
    for child in task["subtask_id_list"].as_array().into_iter().flatten() {
        if let Some(child) = child.as_str() {
            tree_lines(view, child, layer + 1, options, seen, out);
        }
    }
}

/// The `build_data` of a task in a view, one line each, as [`build_data`] shows a row.
fn view_build_data(task: &Value) -> Vec<String> {
    task["build_data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let size = b["data_element"]
                .as_str()
                .map_or("-".into(), |d| format!("{} bytes", d.len()));
            format!(
                "{}  {}  {}  {}  {size}",
                str_of(b, "node_name"),
                str_of(b, "generator"),
                str_of(b, "data_format"),
                b["collected_date"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// `1 error`, `2 errors`.
fn errors_phrase(n: u64) -> String {
    if n == 1 {
        "1 error".into()
    } else {
        format!("{n} errors")
    }
}

/// The string at `key`, or `-`.
fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// The report of `adopt`: where from and to, the time zone, then a line per Drydock table
/// with what was done to its rows and why.
pub fn adopt_report(report: &drydock_state::adopt::AdoptReport, from: &str, into: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {from} (alembic {}) into {into}{}",
        if report.dry_run {
            "dry run: would adopt"
        } else {
            "adopted"
        },
        report.revision,
        if report.dry_run {
            "; nothing was written"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "task and message times read in {}, {}; build data in UTC",
        report.time_zone, report.time_zone_origin
    );
    let _ = writeln!(
        out,
        "\n{:<20} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "TABLE", "READ", "WRITTEN", "PRESENT", "CHANGES", "SKIPPED"
    );
    for table in &report.tables {
        let changed: u64 = table.transformed.values().sum();
        let skipped: u64 = table.skipped.values().sum();
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>8}",
            table.table, table.read, table.written, table.present, changed, skipped
        );
    }
    for table in &report.tables {
        let lines = table
            .transformed
            .iter()
            .map(|(why, n)| ("changed", why, n))
            .chain(table.skipped.iter().map(|(why, n)| ("skipped", why, n)))
            .chain(table.noted.iter().map(|(why, n)| ("noted", why, n)));
        let mut first = true;
        for (what, why, n) in lines {
            if first {
                let _ = writeln!(out, "\n{}:", table.table);
                first = false;
            }
            let _ = writeln!(out, "  {what:<8} {n:>6}  {why}");
        }
    }
    out
}

/// One line of `worker` output for a runtime event.
pub fn worker_event(event: &drydock_state::runtime::Event) -> String {
    use drydock_state::runtime::Event;
    match event {
        Event::Elected {
            instance,
            term,
            recovered,
        } => match recovered.as_slice() {
            [] => format!("{instance}: leader with term {term}"),
            ids => format!(
                "{instance}: leader with term {term}; recovered {} task(s) of older terms: {}",
                ids.len(),
                ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        },
        Event::Follower {
            instance,
            holder: Some(holder),
            term,
        } => format!(
            "{instance}: follower; the lease is held by {holder}{}",
            term.map(|t| format!(" with term {t}")).unwrap_or_default()
        ),
        Event::Follower { instance, .. } => {
            format!("{instance}: follower; the lease could not be taken")
        }
        Event::SteppedDown {
            instance,
            term,
            reason,
        } => format!("{instance}: stepped down from term {term}: {reason}"),
        Event::Released { instance, term } => {
            format!("{instance}: released the lease (term {term})")
        }
        Event::Started {
            instance,
            task_id,
            action,
            attempt,
            term,
        } => format!("{instance}: started {action} {task_id} (attempt {attempt}, term {term})"),
        Event::Finished {
            instance,
            task_id,
            action,
            attempt,
            status,
            result,
            seconds,
        } => format!(
            "{instance}: finished {action} {task_id} (attempt {attempt}): {status} {result} in {seconds:.2} s"
        ),
        Event::Abandoned {
            instance,
            task_id,
            action,
            attempt,
            reason,
        } => format!("{instance}: left {action} {task_id} (attempt {attempt}): {reason}"),
        Event::StoreError {
            instance,
            during,
            message,
        } => format!("{instance}: store error while {during}: {message}"),
        Event::Stopped { instance } => format!("{instance}: stopped"),
        other => format!("{other:?}"),
    }
}
