//! `junit.xml`: JUnit XML as Jenkins and GitLab read it, written with `quick-junit` (nextest's
//! model and serialiser) and checked in tests against the Jenkins JUnit schema
//! (`jenkins-junit.xsd`) with `xmllint`.
//!
//! Shape: one `<testsuite>` per kernel × suite, named `<suite>@<release>`, whose properties
//! say which kernel it was (spec, release, package version, config, accelerator) and where
//! that kernel departs from the SPEC (its version notes); one `<testcase>` per case:
//!
//! * `classname` `klp_conformance.<suite>`, `name` the case (`_` for `-`): together, the
//!   case's id;
//! * `time` its duration;
//! * a fail is a `<failure>` whose message is the failing step with what it expected, and whose
//!   text adds what the guest showed and the diffs of the snapshots that differed;
//! * a skip is a `<skipped>` with its reason as text (the schema gives `skipped` no
//!   attributes);
//! * a harness error is an `<error>`, never a failure;
//! * `<system-out>` carries the SPEC ids, the divergence from the documented contract, the
//!   snapshots' states and the log paths (relative to the output directory).
//!
//! The schema allows no `<properties>` inside a `<testcase>`, so per-case facts go to
//! `<system-out>`.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite};

use crate::report::model::{CaseOutcome, KernelRun, Report, Status};
use crate::snapshot::SnapshotStatus;

/// `junit.xml` for `report`.
pub fn render(report: &Report) -> String {
    let mut j = JReport::new("klp-conform");
    let mut total = 0.0;
    for run in &report.runs {
        for (suite, cases) in by_suite(run) {
            let s = test_suite(run, suite, &cases);
            total += cases.iter().map(|c| c.duration_s).sum::<f64>();
            j.add_test_suite(s);
        }
    }
    j.set_time(seconds(total));
    let xml = j.to_string().expect("serialising to a String cannot fail");
    fit_jenkins_schema(xml)
}

/// The run's cases grouped by suite, in report order.
fn by_suite(run: &KernelRun) -> Vec<(&str, Vec<&CaseOutcome>)> {
    let mut v: Vec<(&str, Vec<&CaseOutcome>)> = Vec::new();
    for c in &run.cases {
        match v.iter_mut().find(|(s, _)| *s == c.suite) {
            Some((_, cases)) => cases.push(c),
            None => v.push((&c.suite, vec![c])),
        }
    }
    v
}

/// The label of a kernel in suite names: its release, or the spec when it never resolved.
pub(crate) fn kernel_label(run: &KernelRun) -> &str {
    run.kernel.release.as_deref().unwrap_or(&run.kernel.spec)
}

fn test_suite(run: &KernelRun, suite: &str, cases: &[&CaseOutcome]) -> TestSuite {
    let mut s = TestSuite::new(format!("{suite}@{}", kernel_label(run)));
    let k = &run.kernel;
    s.add_property(Property::new("kernel.spec", &k.spec));
    for (name, value) in [("kernel.release", &k.release), ("kernel.version", &k.version), ("kernel.config", &k.config)]
    {
        if let Some(v) = value {
            s.add_property(Property::new(name, v));
        }
    }
    s.add_property(Property::new("accel", &run.accel));
    if let Some(n) = &run.accel_note {
        s.add_property(Property::new("accel.note", n));
    }
    for n in &run.version_notes {
        s.add_property(Property::new(
            format!("version_note.{}", n.id),
            format!("{}: {} ({})", n.kernels, n.change, n.source),
        ));
    }
    if let Some(first) = cases.iter().filter_map(|c| c.started_at.as_deref()).min() {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(first) {
            s.set_timestamp(t);
        }
    }
    s.set_time(seconds(cases.iter().map(|c| c.duration_s).sum()));
    for c in cases {
        s.add_test_case(test_case(c));
    }
    s
}

fn test_case(c: &CaseOutcome) -> TestCase {
    let status = match c.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Fail => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_type("conformance");
            let (message, text) = failure_text(c);
            st.set_message(message).set_description(text);
            st
        }
        Status::Skip => {
            let mut st = TestCaseStatus::skipped();
            st.set_description(c.skip_reason.as_deref().unwrap_or("no reason given"));
            st
        }
        Status::Error => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            let e = c.error.as_deref().unwrap_or("the harness could not run the case");
            st.set_type("harness").set_message(e.lines().next().unwrap_or(e)).set_description(e);
            st
        }
    };
    let (classname, name) = c.id.rsplit_once('.').unwrap_or(("klp_conformance", &c.id));
    let mut t = TestCase::new(name, status);
    t.set_classname(classname).set_time(seconds(c.duration_s));
    t.set_system_out(system_out(c));
    t
}

/// The failure's one-line message and its full text.
fn failure_text(c: &CaseOutcome) -> (String, String) {
    let Some(f) = &c.failure else {
        return ("failed".into(), "failed (no step recorded)".into());
    };
    let at = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
    let expected_line = f.expected.lines().next().unwrap_or("");
    let message = format!("step {}{at}: expected {expected_line}", f.step);
    let mut text = format!("step {}{at}\nexpected:\n{}\nactual:\n{}\n", f.step, f.expected, f.actual);
    for s in &c.snapshots {
        if let (SnapshotStatus::Changed, Some(diff)) = (s.status, &s.diff) {
            // The diff of the snapshot that failed the case is already the step's `actual`.
            if !f.actual.contains(diff.trim()) {
                text.push_str(&format!("\nsnapshot {} differs from {}:\n{diff}\n", s.name, s.file));
            }
        }
    }
    (message, text)
}

fn system_out(c: &CaseOutcome) -> String {
    let mut out = format!("id: {}\nspec: {}\n", c.id, c.spec.join(" "));
    if let Some(d) = &c.divergence {
        out.push_str(&format!("divergence from the documented contract: {d}\n"));
    }
    for s in &c.snapshots {
        let state = match s.status {
            SnapshotStatus::Matched => "matched",
            SnapshotStatus::New => "new, nothing stored yet",
            SnapshotStatus::Changed => "changed",
            SnapshotStatus::Accepted => "stored",
        };
        out.push_str(&format!("snapshot {}: {state} ({})\n", s.name, s.file));
    }
    for st in &c.steps {
        out.push_str(&format!("step {} ({:.3}s)\n", st.step, st.duration_s));
    }
    for n in &c.notes {
        out.push_str(&format!("note {}\n", n.trim_end()));
    }
    for (name, path) in &c.logs {
        out.push_str(&format!("log {name}: {path}\n"));
    }
    out
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// quick-junit always writes a `skipped` count on the root `<testsuites>`, an attribute the
/// Jenkins schema does not declare there (it has one on each `<testsuite>`, which stays). The
/// root tag is the first one after the declaration and quick-junit writes its attributes
/// itself, so the attribute is removed from that tag alone.
fn fit_jenkins_schema(xml: String) -> String {
    let Some(start) = xml.find("<testsuites") else { return xml };
    let end = start + xml[start..].find('>').unwrap_or(0);
    let root = &xml[start..end];
    let Some(at) = root.find(" skipped=\"") else { return xml };
    let value_end = root[at + 10..].find('"').map(|i| at + 10 + i + 1).unwrap_or(root.len());
    format!("{}{}{}", &xml[..start + at], &root[value_end..], &xml[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_loses_only_its_skipped_count() {
        let x = "<?xml version=\"1.0\"?>\n<testsuites name=\"k\" tests=\"3\" skipped=\"1\" failures=\"0\" errors=\"0\">\n<testsuite name=\"s\" tests=\"3\" skipped=\"1\"/>\n</testsuites>\n";
        assert_eq!(
            fit_jenkins_schema(x.into()),
            "<?xml version=\"1.0\"?>\n<testsuites name=\"k\" tests=\"3\" failures=\"0\" errors=\"0\">\n<testsuite name=\"s\" tests=\"3\" skipped=\"1\"/>\n</testsuites>\n"
        );
    }

    #[test]
    fn sample_report_shape() {
        let xml = render(&super::super::sample::report());
        insta::assert_snapshot!(xml);
    }
}
