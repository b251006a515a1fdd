//! Every Deckhand fixture the project ships must be documents a real Deckhand (airshipit/deckhand
//! 08728d3) accepts on `PUT /api/v1.0/buckets/{bucket}/documents`. The rules checked are those of
//! Deckhand's `deckhand/Base/v1`, `metadata/Document/v1`, `metadata/Control/v1` and
//! `deckhand/LayeringPolicy/v1` schemas and of its layering: a stand-in that serves a fixture
//! Deckhand would refuse proves nothing about Deckhand.
//!
//! A Deckhand fixture is any `*.yaml` under the workspace's `tests/fixtures` or this crate's
//! `tests/fixtures` whose name contains `deckhand` or whose first document has a top-level
//! `schema:` (Deckhand's format; Drydock's own has `apiVersion:`/`kind:`).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value;

/// Deckhand's control documents, which carry `metadata.schema: metadata/Control/v1`.
const CONTROL_SCHEMAS: &[&str] = &[
    "deckhand/LayeringPolicy/v1",
    "deckhand/ValidationPolicy/v1",
    "deckhand/DataSchema/v1",
];

/// `metadata` keys `metadata/Document/v1` allows (its `additionalProperties: false`).
const DOCUMENT_METADATA_KEYS: &[&str] = &[
    "schema",
    "name",
    "labels",
    "replacement",
    "layeringDefinition",
    "substitutions",
    "storagePolicy",
];

/// `layeringDefinition` keys Deckhand allows.
const LAYERING_KEYS: &[&str] = &["layer", "abstract", "parentSelector", "actions"];

/// Deckhand's pattern for a document schema, `^[A-Za-z]+/[A-Za-z]+/v\d+$`.
fn is_schema_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    matches!(parts.as_slice(), [a, b, v]
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic())
        && !b.is_empty() && b.chars().all(|c| c.is_ascii_alphabetic())
        && v.len() > 1 && v.starts_with('v') && v[1..].chars().all(|c| c.is_ascii_digit()))
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The reasons Deckhand would refuse this set of documents (one PUT), empty when it accepts
/// them.
fn refusals(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut documents = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => documents.push(value),
            Err(e) => problems.push(format!("document {i}: not YAML: {e}")),
        }
    }
    if documents.is_empty() {
        problems.push("no documents".into());
    }

    let policies: Vec<&Value> = documents
        .iter()
        .filter(|d| str_at(d, "schema") == Some("deckhand/LayeringPolicy/v1"))
        .collect();
    let layer_order: BTreeSet<&str> = match policies.as_slice() {
        [policy] => {
            let order = policy
                .get("data")
                .and_then(|d| d.get("layerOrder"))
                .and_then(Value::as_sequence);
            match order {
                Some(order) if !order.is_empty() && order.iter().all(Value::is_string) => {
                    order.iter().filter_map(Value::as_str).collect()
                }
                _ => {
                    problems.push(
                        "the LayeringPolicy's data.layerOrder is not a list of layer names".into(),
                    );
                    BTreeSet::new()
                }
            }
        }
        [] => {
            problems.push("no deckhand/LayeringPolicy/v1 document".into());
            BTreeSet::new()
        }
        _ => {
            problems.push("more than one LayeringPolicy".into());
            BTreeSet::new()
        }
    };

    let mut seen = HashSet::new();
    for (i, document) in documents.iter().enumerate() {
        let name = document
            .get("metadata")
            .and_then(|m| str_at(m, "name"))
            .unwrap_or("?");
        let at = format!("document {i} ({name})");
        let Some(top) = document.as_mapping() else {
            problems.push(format!("{at}: not a mapping"));
            continue;
        };
        for key in top.keys() {
            if !matches!(key.as_str(), Some("schema" | "metadata" | "data")) {
                problems.push(format!("{at}: unexpected top-level key {key:?}"));
            }
        }
        if !top.contains_key("data") {
            problems.push(format!("{at}: no data"));
        }
        let schema = str_at(document, "schema").unwrap_or_default();
        if !is_schema_name(schema) {
            problems.push(format!("{at}: schema {schema:?} is not kind/Name/vN"));
        }
        let Some(metadata) = document.get("metadata").and_then(Value::as_mapping) else {
            problems.push(format!("{at}: no metadata"));
            continue;
        };
        let metadata_value = document.get("metadata").unwrap();
        if name == "?" || name.is_empty() {
            problems.push(format!("{at}: no metadata.name"));
        }
        if !seen.insert((schema.to_owned(), name.to_owned())) {
            problems.push(format!("{at}: a second [{schema}] {name}"));
        }
        match str_at(metadata_value, "schema") {
            Some("metadata/Control/v1") => {
                if !CONTROL_SCHEMAS.contains(&schema) {
                    problems.push(format!("{at}: {schema} is not a control document"));
                }
            }
            Some("metadata/Document/v1") => {
                if CONTROL_SCHEMAS.contains(&schema) {
                    problems.push(format!(
                        "{at}: {schema} must have metadata.schema metadata/Control/v1"
                    ));
                }
                for key in metadata.keys() {
                    if !key
                        .as_str()
                        .is_some_and(|k| DOCUMENT_METADATA_KEYS.contains(&k))
                    {
                        problems.push(format!("{at}: unexpected metadata key {key:?}"));
                    }
                }
                if !matches!(
                    str_at(metadata_value, "storagePolicy"),
                    Some("cleartext" | "encrypted")
                ) {
                    problems.push(format!(
                        "{at}: metadata.storagePolicy is not cleartext or encrypted"
                    ));
                }
                if let Some(labels) = metadata_value.get("labels") {
                    if !labels.is_mapping() {
                        problems.push(format!("{at}: metadata.labels is not a mapping"));
                    }
                }
                match metadata_value
                    .get("layeringDefinition")
                    .and_then(Value::as_mapping)
                {
                    None => problems.push(format!("{at}: no metadata.layeringDefinition")),
                    Some(layering) => {
                        for key in layering.keys() {
                            if !key.as_str().is_some_and(|k| LAYERING_KEYS.contains(&k)) {
                                problems.push(format!(
                                    "{at}: unexpected layeringDefinition key {key:?}"
                                ));
                            }
                        }
                        let layering = metadata_value.get("layeringDefinition").unwrap();
                        match str_at(layering, "layer") {
                            Some(layer) if layer_order.contains(layer) => {}
                            Some(layer) if !layer_order.is_empty() => problems.push(format!(
                                "{at}: layer {layer:?} is not in the layerOrder {layer_order:?}"
                            )),
                            Some(_) => {}
                            None => problems.push(format!("{at}: no layeringDefinition.layer")),
                        }
                        // A rendered fixture holds only concrete documents.
                        if layering.get("abstract").and_then(Value::as_bool) != Some(false) {
                            problems
                                .push(format!("{at}: layeringDefinition.abstract is not false"));
                        }
                        if layering.get("parentSelector").is_some()
                            != layering.get("actions").is_some()
                        {
                            problems.push(format!("{at}: parentSelector and actions go together"));
                        }
                    }
                }
            }
            other => problems.push(format!(
                "{at}: metadata.schema {other:?} is neither metadata/Document/v1 nor \
                 metadata/Control/v1"
            )),
        }
    }
    problems
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn is_deckhand_fixture(path: &Path, text: &str) -> bool {
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("deckhand"));
    let first = serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| Value::deserialize(d).ok())
        .find(|v| !v.is_null());
    named || first.is_some_and(|v| v.get("schema").is_some() && v.get("metadata").is_some())
}

/// The Deckhand fixtures the project ships.
fn deckhand_fixtures() -> Vec<PathBuf> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&crate_dir.join("../tests/fixtures"), &mut files);
    yaml_files(&crate_dir.join("tests/fixtures"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| is_deckhand_fixture(p, &std::fs::read_to_string(p).unwrap()))
        .collect()
}

#[test]
fn every_deckhand_fixture_is_accepted_by_deckhand() {
    let fixtures = deckhand_fixtures();
    assert!(
        fixtures
            .iter()
            .any(|p| p.ends_with("designs/deckhand_site.yaml")),
        "the fixtures were not found: {fixtures:?}"
    );
    let mut failures = Vec::new();
    for path in &fixtures {
        let problems = refusals(&std::fs::read_to_string(path).unwrap());
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", path.display(), problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "Deckhand would refuse:\n{}",
        failures.join("\n")
    );
}

/// The checker itself refuses what Deckhand refuses (so the test above can fail).
#[test]
fn the_checker_refuses_what_deckhand_refuses() {
    const POLICY: &str = "---
schema: deckhand/LayeringPolicy/v1
metadata: {schema: metadata/Control/v1, name: layering-policy}
data: {layerOrder: [global, site]}
";
    const GOOD: &str = "---
schema: drydock/Region/v1
metadata:
  schema: metadata/Document/v1
  name: r1
  storagePolicy: cleartext
  layeringDefinition: {abstract: false, layer: site}
data: {}
";
    assert_eq!(refusals(&format!("{POLICY}{GOOD}")), Vec::<String>::new());
    let refused = |text: String, why: &str| {
        let problems = refusals(&text);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{why:?} not among {problems:?} for\n{text}"
        );
    };
    refused(GOOD.into(), "no deckhand/LayeringPolicy/v1");
    refused(
        format!("{POLICY}{POLICY}{GOOD}"),
        "more than one LayeringPolicy",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("  layeringDefinition: {abstract: false, layer: site}\n", "")
        ),
        "no metadata.layeringDefinition",
    );
    refused(
        format!("{POLICY}{}", GOOD.replace("layer: site", "layer: region")),
        "is not in the layerOrder",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("abstract: false", "abstract: true")
        ),
        "abstract is not false",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("  storagePolicy: cleartext\n", "")
        ),
        "storagePolicy",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("metadata/Document/v1", "metadata/Document")
        ),
        "metadata.schema",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("  name: r1\n", "  name: r1\n  region: x\n")
        ),
        "unexpected metadata key",
    );
    refused(
        format!("{POLICY}{GOOD}{GOOD}"),
        "a second [drydock/Region/v1] r1",
    );
    refused(
        format!(
            "{POLICY}{}",
            GOOD.replace("drydock/Region/v1", "drydock/Region")
        ),
        "is not kind/Name/vN",
    );
    refused(
        format!("{POLICY}{}", GOOD.replace("data: {}\n", "")),
        "no data",
    );
    refused(
        POLICY.replace("metadata/Control/v1", "metadata/Document/v1"),
        "must have metadata.schema metadata/Control/v1",
    );
    // Drydock's own document format, as the old fixtures had it, is refused outright.
    refused(
        "---\napiVersion: drydock/v1\nkind: Region\nmetadata: {name: r1}\nspec: {}\n".into(),
        "unexpected top-level key",
    );
}
