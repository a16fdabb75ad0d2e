//! `reports/schema/report.schema.json` against what the model really serialises, with the
//! `jsonschema` crate (draft 2020-12, formats checked). The schema and the model must not
//! drift: report.json written from the sample (every field filled somewhere) and from a
//! minimal report validates; every field the model writes is in the schema; every field the
//! schema lists is written by the sample (so the schema names no field the model lost).
//! `conformance_e2e` validates a real run's report.json against the same schema.

mod validators;

use std::collections::BTreeSet;

use klp_conform::report::{json, sample};
use klp_conform::report::{CaseOutcome, KernelInfo, KernelRun, Report, Status};
use serde_json::Value;
use validators::*;

/// report.json as the writer writes it.
fn written(r: &Report) -> Value {
    serde_json::from_str(&json::render(r)).unwrap()
}

/// A run whose kernel never resolved, a case that never ran, nothing optional filled.
fn minimal() -> Report {
    let mut c = CaseOutcome::new("loading", "not-a-livepatch", vec![]);
    c.status = Status::Error;
    c.error = Some("kernel 6.1: apt-get download failed".into());
    Report::new(vec![KernelRun {
        kernel: KernelInfo { spec: "6.1".into(), release: None, version: None, config: None },
        accel: "auto".into(),
        accel_note: None,
        guest_start: "boot".into(),
        version_notes: Vec::new(),
        cases: vec![c],
    }])
}

#[test]
fn written_reports_match_the_schema() {
    assert_report_valid(&written(&sample::report()));
    assert_report_valid(&written(&minimal()));
    assert_report_valid(&written(&Report::new(Vec::new())));
}

#[test]
fn the_schema_refuses_what_the_model_cannot_write() {
    let v = report_validator();
    let good = written(&sample::report());
    let mut extra = good.clone();
    extra["runs"][0]["cases"][0]["retries"] = 2.into();
    assert!(!v.is_valid(&extra), "an unknown field must fail");
    let mut status = good.clone();
    status["runs"][0]["cases"][0]["status"] = "flaky".into();
    assert!(!v.is_valid(&status));
    let mut fail_without_failure = good.clone();
    fail_without_failure["runs"][0]["cases"][1]["failure"] = Value::Null;
    assert!(!v.is_valid(&fail_without_failure), "a fail carries its failing step");
    let mut time = good;
    time["runs"][0]["cases"][0]["started_at"] = "yesterday".into();
    assert!(!v.is_valid(&time), "formats are checked");
}

/// `#/$defs/<name>` of a `$ref`.
fn ref_name(node: &Value) -> Option<&str> {
    node.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// Walk an instance alongside the schema: every object key must be a declared property
/// (open maps, `additionalProperties: {..}`, excepted); records `(definition, property)` for
/// every property seen.
fn walk(instance: &Value, node: &Value, defs: &Value, def: &str, path: &str, seen: &mut BTreeSet<(String, String)>) {
    if let Some(name) = ref_name(node) {
        return walk(instance, &defs[name], defs, name, path, seen);
    }
    if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
        if instance.is_object() {
            let branch = branches.iter().find(|b| ref_name(b).is_some() || b.get("properties").is_some()).unwrap();
            return walk(instance, branch, defs, def, path, seen);
        }
        return;
    }
    match instance {
        Value::Object(map) => {
            let Some(props) = node.get("properties").and_then(Value::as_object) else {
                assert!(
                    node.get("additionalProperties").is_some_and(Value::is_object),
                    "{path}: an object the schema does not describe"
                );
                return;
            };
            for (key, value) in map {
                let sub = props.get(key).unwrap_or_else(|| {
                    panic!(
                        "{path}.{key}: the model writes it, reports/schema/report.schema.json ({def}) does not list it"
                    )
                });
                seen.insert((def.to_string(), key.clone()));
                walk(value, sub, defs, def, &format!("{path}.{key}"), seen);
            }
        }
        Value::Array(items) => {
            if let Some(item) = node.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item, defs, def, &format!("{path}[{i}]"), seen);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn schema_and_model_list_the_same_fields() {
    let schema = report_schema();
    let defs = &schema["$defs"];
    let mut seen = BTreeSet::new();
    for r in [sample::report(), minimal()] {
        walk(&written(&r), &schema, defs, "report", "$", &mut seen);
    }
    // Every property the schema declares was written by the model.
    let mut declared = BTreeSet::new();
    for (key, _) in schema["properties"].as_object().unwrap() {
        declared.insert(("report".to_string(), key.clone()));
    }
    for (name, def) in defs.as_object().unwrap() {
        for (key, _) in def.get("properties").and_then(Value::as_object).into_iter().flatten() {
            declared.insert((name.clone(), key.clone()));
        }
    }
    let stale: Vec<_> = declared.difference(&seen).collect();
    assert!(stale.is_empty(), "the schema lists fields the model never writes (or the sample leaves empty): {stale:?}");
}
