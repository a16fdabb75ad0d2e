//! Regression snapshots on a real kernel: a tampered stored value fails its case with the diff
//! and exit 1; `--snapshots accept` restores a clean run; a run reproduces the committed
//! snapshots byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn conformance(snap_dir: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--accel", "tcg", "--suite", "lifecycle", "--snapshot-dir"])
        .arg(snap_dir)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("CI", "1") // check mode leaves no .snap.new behind, as in CI
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The committed snapshots of the lifecycle suite for the default kernel's release.
fn committed_lifecycle_snapshots() -> Vec<PathBuf> {
    let release = klp_conform::kernel::KernelSpec::DebianDefault.release().unwrap();
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace().join("suites/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("lifecycle__") && n.ends_with(&format!("@{release}.snap"))
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no committed lifecycle snapshots for {release}");
    v
}

#[test]
fn tamper_fails_accept_restores_runs_reproduce() {
    let committed = committed_lifecycle_snapshots();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snapshots");
    std::fs::create_dir(&dir).unwrap();
    for f in &committed {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let victim = committed.iter().find(|p| p.to_string_lossy().contains("remove-while-enabled")).unwrap();
    let vpath = dir.join(victim.file_name().unwrap());
    let text = std::fs::read_to_string(&vpath).unwrap();
    assert!(text.contains("klp_ref_cmdline: refcnt 1,"), "{text}");
    std::fs::write(&vpath, text.replace("klp_ref_cmdline: refcnt 1,", "klp_ref_cmdline: refcnt 7,")).unwrap();

    let (code, ktap) = conformance(&dir, &tmp.path().join("out1"), &[]);
    assert_eq!(code, 1, "{ktap}");
    assert!(ktap.contains("not ok 2 remove-while-enabled"), "{ktap}");
    assert!(ktap.contains("-  klp_ref_cmdline: refcnt 7, taint OEK"), "{ktap}");
    assert!(ktap.contains("+  klp_ref_cmdline: refcnt 1, taint OEK"), "{ktap}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out1/report.json")).unwrap()).unwrap();
    let case = &report["runs"][0]["cases"][1];
    assert_eq!(case["status"], "fail");
    assert!(case["failure"]["actual"].as_str().unwrap().contains("+  klp_ref_cmdline: refcnt 1"));
    assert_eq!(case["snapshots"][0]["status"], "changed");

    let (code, ktap) = conformance(&dir, &tmp.path().join("out2"), &["--snapshots", "accept"]);
    assert_eq!(code, 0, "{ktap}");
    let (code, ktap) = conformance(&dir, &tmp.path().join("out3"), &[]);
    assert_eq!(code, 0, "{ktap}");

    // Two runs (the committed one, and the one accepted just now) are byte-identical.
    for f in &committed {
        let ours = std::fs::read(dir.join(f.file_name().unwrap())).unwrap();
        assert_eq!(ours, std::fs::read(f).unwrap(), "{} differs from this run", f.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap.new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_kernel_without_snapshots_reports_new_unless_required() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("none");
    std::fs::create_dir(&empty).unwrap();
    let (code, ktap) = conformance(&empty, &tmp.path().join("out1"), &[]);
    assert_eq!(code, 0, "{ktap}");
    assert!(ktap.contains("snapshot enabled: new, nothing stored yet"), "{ktap}");
    let (code, ktap) = conformance(&empty, &tmp.path().join("out2"), &["--require-snapshots"]);
    assert_eq!(code, 1, "{ktap}");
    assert!(ktap.contains("expected: a stored snapshot enabled for kernel"), "{ktap}");
}
