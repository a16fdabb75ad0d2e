//! A kernel developer's own tree, the README's workflow for real: Debian's linux-source-6.1
//! (the pinned 6.1's package version), `kernel config` with images/kernel-config.fragment onto
//! tinyconfig, `make bzImage modules`, the lifecycle suite with `--kernel <tree>`, and its
//! snapshots diffed against the pinned 6.1's.
//!
//! The build alone takes 7+ minutes on two cores, so the test is ignored by default and runs
//! under `cargo xtask test --slow` (which CI runs when time allows).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use klp_conform::kernel::{apt::AptRoot, default_cache_dir, Pins};
use klp_conform::progress::Progress;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (code, out, err) = run(cmd);
    assert_eq!(code, Some(0), "{shown} failed:\n{out}\n{err}");
    out
}

/// Debian's linux-source-6.1 .deb of the pinned 6.1's version: from `<cache>/src-dl` when it
/// is there, else fetched into it with klp-conform's own apt lists.
fn linux_source_deb(cache: &Path, suite: &str, version: &str) -> PathBuf {
    let dl = cache.join("src-dl");
    std::fs::create_dir_all(&dl).unwrap();
    let deb = dl.join(format!("linux-source-6.1_{version}_all.deb"));
    if !deb.is_file() {
        let apt = AptRoot::new(cache, suite).unwrap();
        apt.ensure(false, &Progress::quiet()).unwrap();
        apt.download(&dl, &[format!("linux-source-6.1={version}")]).unwrap();
    }
    assert!(deb.is_file(), "apt-get download gave no {}", deb.display());
    deb
}

#[test]
#[ignore = "slow: builds a kernel from Debian's linux-source-6.1; run with `cargo xtask test --slow`"]
fn minimal_config_from_debian_source_runs_lifecycle_and_diffs_against_the_pinned_6_1() {
    let ws = workspace();
    let cache = default_cache_dir();
    let pins = Pins::load_workspace(&ws).unwrap();
    let pin = pins.get("6.1").expect("6.1 is pinned").clone();
    let deb = linux_source_deb(&cache, &pin.suite, &pin.version);

    let scratch = tempfile::Builder::new().prefix("klp-tree-e2e-").tempdir().unwrap();
    let t = Instant::now();
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(scratch.path().join("deb")));
    ok(Command::new("tar")
        .arg("-xf")
        .arg(scratch.path().join("deb/usr/src/linux-source-6.1.tar.xz"))
        .arg("-C")
        .arg(scratch.path()));
    let tree = scratch.path().join("linux-source-6.1");
    eprintln!("unpacked in {:.0} s", t.elapsed().as_secs_f64());

    // Configure: the fragment onto tinyconfig, checked.
    let out = ok(Command::new(env!("CARGO_BIN_EXE_klp-conform")).args(["kernel", "config"]).arg(&tree));
    assert!(out.contains("the result has everything klp-conform checks before a run"), "{out}");
    eprintln!("{}", out.lines().filter(|l| !l.starts_with("  CONFIG_")).collect::<Vec<_>>().join("\n"));

    // Build.
    let t = Instant::now();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()).to_string();
    ok(Command::new("make").arg("-C").arg(&tree).args(["-j", &jobs, "bzImage", "modules"]));
    eprintln!("built bzImage and modules in {:.0} s", t.elapsed().as_secs_f64());

    // Run, storing the tree's snapshots beside the pinned 6.1's.
    let snaps = scratch.path().join("snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let pinned_suffix = format!("@{}.snap", pin.abi);
    for e in std::fs::read_dir(ws.join("suites/snapshots")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(&pinned_suffix) {
            std::fs::copy(e.path(), snaps.join(e.file_name())).unwrap();
        }
    }
    let results = scratch.path().join("out");
    let t = Instant::now();
    let (code, ktap, err) = run(Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .arg("conformance")
        .arg("--kernel")
        .arg(&tree)
        .args(["--suite", "lifecycle", "--snapshots", "accept", "--snapshot-dir"])
        .arg(&snaps)
        .arg("--out")
        .arg(&results));
    eprintln!("lifecycle in {:.0} s:\n{ktap}", t.elapsed().as_secs_f64());
    assert_eq!(code, Some(0), "{ktap}\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap()).unwrap();
    let run0 = &report["runs"][0];
    let release = run0["kernel"]["release"].as_str().unwrap().to_string();
    let upstream = pin.version.split('-').next().unwrap();
    assert_eq!(release, upstream, "the tree's release is its source's version: {run0}");
    let cases = run0["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        assert_eq!(c["status"], "pass", "{c}");
    }
    let tree_snaps: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!("@{release}+tree.snap")))
        .collect();
    assert!(!tree_snaps.is_empty(), "no snapshots stored under {release}+tree");

    // Compare with the pinned 6.1: what the tree's behaviour differs in, case by case.
    let (code, diff, err) = run(Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["snapshots", "diff", "--kernel", "6.1", "--kernel"])
        .arg(&tree)
        .arg("--snapshot-dir")
        .arg(&snaps));
    eprintln!("{diff}");
    assert!(matches!(code, Some(0 | 1)), "{diff}\n{err}");
    let head = format!("snapshots of {} (-) against {release}+tree (+)", pin.abi);
    assert!(diff.starts_with(&head), "{diff}");
}
