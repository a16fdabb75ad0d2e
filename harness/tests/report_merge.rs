//! `klp-conform report merge` on crafted shards: the sample report (two kernels, every status)
//! cut into shards the way nextest leaves them (one report.json per case, with its logs and the
//! kernel's config) or the way machines would (by kernel). The merge gives back the whole
//! report, valid against its schema, JUnit's and KCIDB's; a case reported twice with different
//! results refuses the merge, naming the case; a missing shard is reported and its cases become
//! errors.

mod validators;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use klp_conform::report::{json, sample, KernelRun, Report, Status};
use serde_json::Value;
use validators::*;

/// Write `report` as a shard in `dir`, with every file it refers to.
fn write_shard(dir: &Path, report: &Report) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("report.json"), json::render(report)).unwrap();
    for run in &report.runs {
        let files = run.kernel.config.iter().chain(run.cases.iter().flat_map(|c| c.logs.values()));
        for rel in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{rel} from {}\n", dir.display())).unwrap();
        }
    }
}

/// The sample with each kernel's config kept, as a run keeps it.
fn sample_report() -> Report {
    let mut r = sample::report();
    for run in &mut r.runs {
        run.kernel.config = run.kernel.release.as_ref().map(|rel| format!("kernels/{rel}/config"));
    }
    r
}

/// One shard per case, laid out as the nextest harness does (`<kernel>/<suite>/<case>/`),
/// the cases dealt to `parts` partition directories in turn; returns those directories.
fn per_case_shards(root: &Path, report: &Report, parts: usize) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (1..=parts).map(|i| root.join(format!("part-{i}"))).collect();
    let mut n = 0;
    for run in &report.runs {
        for c in &run.cases {
            let one = Report::new(vec![KernelRun { cases: vec![c.clone()], ..run.clone() }]);
            write_shard(&dirs[n % parts].join(&run.kernel.spec).join(&c.suite).join(&c.case), &one);
            n += 1;
        }
    }
    dirs
}

fn merge(args: &[&Path], extra: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["report", "merge"])
        .args(args)
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// (release, case id, status) of every case.
fn verdicts(r: &Value) -> BTreeSet<(String, String, String)> {
    let mut v = BTreeSet::new();
    for run in r["runs"].as_array().unwrap() {
        let release = run["kernel"]["release"].as_str().unwrap_or("-").to_string();
        for c in run["cases"].as_array().unwrap() {
            v.insert((release.clone(), c["id"].as_str().unwrap().into(), c["status"].as_str().unwrap().into()));
        }
    }
    v
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn kcidb_test_ids(doc: &Value) -> BTreeSet<String> {
    doc["tests"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn per_case_shards_merge_into_the_whole_report() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = sample_report();
    let parts = per_case_shards(tmp.path(), &whole, 2);
    let out = tmp.path().join("merged");
    let o = merge(&[&parts[0], &parts[1]], &["--no-expect"], &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // The sample has a harness error: the merged exit code is the whole run's.
    assert_eq!(o.status.code(), Some(whole.exit_code()), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("KTAP version 1\n"), "{stdout}");

    let merged = read_json(&out.join("report.json"));
    assert_report_valid(&merged);
    let expected: Value = serde_json::from_str(&json::render(&whole)).unwrap();
    assert_eq!(verdicts(&merged), verdicts(&expected));
    assert_eq!(merged["summary"], expected["summary"]);
    // Cases keep the suites' order within each kernel (lifecycle before loading, file order).
    for (m, e) in merged["runs"].as_array().unwrap().iter().zip(expected["runs"].as_array().unwrap()) {
        let ids = |r: &Value| r["cases"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
        let (mut a, mut b) = (ids(m), ids(e));
        a.sort_by_key(|v| v.to_string());
        b.sort_by_key(|v| v.to_string());
        assert_eq!(a, b);
    }
    // Every log and config the merged report names is in the merged directory.
    for run in merged["runs"].as_array().unwrap() {
        if let Some(cfg) = run["kernel"]["config"].as_str() {
            assert!(out.join(cfg).is_file(), "{cfg}");
        }
        for c in run["cases"].as_array().unwrap() {
            for rel in c["logs"].as_object().unwrap().values() {
                assert!(out.join(rel.as_str().unwrap()).is_file(), "{rel}");
            }
        }
    }
    // The other formats pass their validators, and KCIDB's ids are those of an unsharded run.
    assert_junit_valid(&out.join("junit.xml"));
    kcidb_validate(&out.join("kcidb.json")).unwrap();
    let base = klp_conform::report::kcidb::file_url_base(&out).unwrap();
    let unsharded: Value = serde_json::from_str(&klp_conform::report::kcidb::render_string(&whole, &base)).unwrap();
    assert_eq!(kcidb_test_ids(&read_json(&out.join("kcidb.json"))), kcidb_test_ids(&unsharded));
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("<html"));
}

#[test]
fn a_case_reported_twice_with_different_results_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = sample_report();
    let parts = per_case_shards(tmp.path(), &whole, 2);
    // A third shard (another machine) reports a passed case as failed.
    let mut other = whole.clone();
    other.runs.truncate(1);
    let run = &mut other.runs[0];
    let i = run.cases.iter().position(|c| c.status == Status::Pass).expect("the sample has a pass");
    let (suite, case) = (run.cases[i].suite.clone(), run.cases[i].case.clone());
    let failing = whole.runs.iter().flat_map(|r| &r.cases).find(|c| c.status == Status::Fail).unwrap();
    run.cases[i].status = Status::Fail;
    run.cases[i].failure = failing.failure.clone();
    let other = Report::new(other.runs);
    write_shard(&tmp.path().join("machine-b"), &other);

    let out = tmp.path().join("merged");
    let o = merge(&[&parts[0], &parts[1], &tmp.path().join("machine-b")], &["--no-expect"], &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{suite}/{case}")) && stderr.contains("reported twice"), "{stderr}");
    assert!(stderr.contains("machine-b"), "the conflicting file is named: {stderr}");
    assert!(!out.join("report.json").exists(), "nothing is written when the shards disagree");

    // The same result twice (a shard given twice) is merged once.
    let o = merge(&[&parts[0], &parts[1], &parts[1]], &["--no-expect"], &out);
    assert_eq!(o.status.code(), Some(whole.exit_code()), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_json(&out.join("report.json"))["summary"], serde_json::to_value(&whole.summary).unwrap());
}

#[test]
fn a_missing_shard_is_reported_and_its_cases_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut whole = sample_report();
    // Only the sample's cases that the real suites define are expected (`--case`).
    for run in &mut whole.runs {
        run.cases.retain(|c| c.suite == "lifecycle" || c.case == "not-a-livepatch");
    }
    let whole = Report::new(whole.runs);
    // Two machines, one per kernel; the second (6.12) never reported, and the first lost a case.
    let mut k61 = whole.clone();
    k61.runs.truncate(1);
    let lost = k61.runs[0].cases.remove(0);
    write_shard(&tmp.path().join("machine-a"), &Report::new(k61.runs));
    let out = tmp.path().join("merged");
    let case_args = ["--case", "lifecycle/*", "--case", "loading/not-a-livepatch"];
    let mut extra: Vec<&str> = case_args.to_vec();
    extra.extend(["--kernel", "6.1", "--kernel", "6.12"]);
    let o = merge(&[&tmp.path().join("machine-a")], &extra, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "an incomplete run is not a green one: {stderr}");
    let release = whole.runs[0].kernel.release.clone().unwrap();
    assert!(stderr.contains(&format!("missing {release}: {}/{}", lost.suite, lost.case)), "{stderr}");
    // The sample has no `enabled-writes`: missing on 6.1 too. 6.12: every expected case.
    assert!(stderr.contains(&format!("missing {release}: lifecycle/enabled-writes")), "{stderr}");
    assert!(stderr.contains("missing 6.12: loading/not-a-livepatch"), "{stderr}");
    assert!(stderr.contains("missing 6.12: lifecycle/remove-while-enabled"), "{stderr}");

    let merged = read_json(&out.join("report.json"));
    assert_report_valid(&merged);
    let runs = merged["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let lost_case = runs[0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == lost.id.as_str())
        .expect("the lost case is in the report");
    assert_eq!(lost_case["status"], "error");
    assert!(lost_case["error"].as_str().unwrap().contains("no shard reported"), "{lost_case}");
    assert_eq!(runs[1]["kernel"]["spec"], "6.12");
    assert_eq!(runs[1]["cases"].as_array().unwrap().len(), 5, "4 lifecycle cases and loading/not-a-livepatch");
    assert_junit_valid(&out.join("junit.xml"));
    kcidb_validate(&out.join("kcidb.json")).unwrap();
}

#[test]
fn bad_inputs_are_errors_not_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp.path().join("merged");
    let o = merge(&[&empty], &[], &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no report.json"), "{}", String::from_utf8_lossy(&o.stderr));
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("report.json"), "{\"schema\": \"something.else\"}").unwrap();
    let o = merge(&[&bad], &[], &out);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not a klp-conform report") && stderr.contains("bad/report.json"), "{stderr}");
    assert!(!out.exists());
}
