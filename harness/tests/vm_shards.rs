//! Shards end to end, on the default kernel under the host's accelerator: the lifecycle suite
//! run as nextest tests of klp-conform-suites in two partitions (`--partition count:1/2` and
//! `count:2/2`, each its own `cargo nextest run`, as two CI jobs would), merged with
//! `klp-conform report merge`, gives the verdicts of one `klp-conform conformance --suite
//! lifecycle` run. Prints how long each part took.

mod validators;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// (release, case id, status, divergence) of every case.
fn verdicts(r: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut v = BTreeSet::new();
    for run in r["runs"].as_array().unwrap() {
        let release = run["kernel"]["release"].as_str().unwrap_or("-").to_string();
        for c in run["cases"].as_array().unwrap() {
            v.insert((
                release.clone(),
                c["id"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
                c["divergence"].as_str().unwrap_or("").into(),
            ));
        }
    }
    v
}

fn count_reports(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_reports(&p)
            } else {
                usize::from(e.file_name() == "report.json")
            }
        })
        .sum()
}

#[test]
fn two_nextest_partitions_merged_give_the_verdicts_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut timings = Vec::new();
    let mut shards = Vec::new();
    for k in 1..=2 {
        let dir = tmp.path().join(format!("shard-{k}"));
        let t = Instant::now();
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&ws)
            .args(["nextest", "run", "-p", "klp-conform-suites", "--profile", "default", "--no-fail-fast"])
            .args(["--partition", &format!("count:{k}/2"), "-j", "4"])
            .args(["-E", "binary_id(klp-conform-suites::conformance) and test(/::lifecycle::/)"])
            .env("KLP_CONFORM_RESULTS", &dir)
            .env_remove("KLP_CONFORM_KERNELS");
        // This test runs under nextest itself: the inner run must not take the outer one's
        // settings (profile, run id, test group).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().contains("NEXTEST") {
                cmd.env_remove(key);
            }
        }
        let o = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.code().is_some_and(|c| c <= 100), "cargo nextest (shard {k}/2) did not run:\n{text}");
        let n = count_reports(&dir);
        assert!(n >= 1, "shard {k}/2 left no report.json in {}:\n{text}", dir.display());
        timings.push(format!("shard {k}/2: {n} case(s) in {:.1} s", t.elapsed().as_secs_f64()));
        shards.push(dir);
    }

    let merged = tmp.path().join("merged");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["report", "merge"])
        .args(&shards)
        .args(["--suite", "lifecycle", "--out"])
        .arg(&merged)
        .output()
        .unwrap();
    let merge_stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let merge_code = o.status.code();
    timings.push(format!("merge: {:.1} s", t.elapsed().as_secs_f64()));
    assert!(!merge_stderr.contains("missing"), "both partitions together cover the suite: {merge_stderr}");

    let single = tmp.path().join("single");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--suite", "lifecycle", "--out"])
        .arg(&single)
        .output()
        .unwrap();
    let single_stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    timings.push(format!("one run of the suite: {:.1} s", t.elapsed().as_secs_f64()));

    let (m, s) = (read_json(&merged.join("report.json")), read_json(&single.join("report.json")));
    validators::assert_report_valid(&m);
    assert_eq!(verdicts(&m), verdicts(&s), "merge:\n{merge_stderr}\nsingle run:\n{single_stderr}");
    assert_eq!(m["summary"], s["summary"]);
    assert_eq!(merge_code, o.status.code(), "the merge exits as the single run did");
    assert_eq!(m["runs"][0]["cases"].as_array().unwrap().len(), s["runs"][0]["cases"].as_array().unwrap().len());
    eprintln!("{}; total {:.1} s", timings.join("; "), started.elapsed().as_secs_f64());
}
