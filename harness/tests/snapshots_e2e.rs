//! Regression snapshots on a real kernel, with a small suite of its own so the test does not
//! depend on which kernel release the committed snapshots are for: a kernel without snapshots
//! reports them as new (a failure only with --require-snapshots); `accept` stores them; a
//! tampered value fails its case with the diff and exit 1; `accept` restores a clean run; and
//! two runs produce byte-identical snapshots.

use std::path::Path;
use std::process::{Command, Stdio};

const SUITE: &str = r#"version: 1
suite: snaptest
cases:
  - name: enable-disable
    spec: [L7, D1]
    steps:
      - load: klp_ref_cmdline
      - wait: {path: /sys/kernel/livepatch/klp_ref_cmdline/transition, equals: "0", timeout_s: 60}
      - snapshot: enabled
      - write: {path: /sys/kernel/livepatch/klp_ref_cmdline/enabled, value: "0"}
      - wait: {absent: /sys/kernel/livepatch/klp_ref_cmdline, timeout_s: 60}
      - wait: {path: /sys/module/klp_ref_cmdline/refcnt, equals: "0", timeout_s: 30}
      - snapshot: disabled
  - name: refused
    spec: [SY2]
    steps:
      - load: {module: klp_ref_nosym, expect_errno: EINVAL}
      - snapshot: refused
"#;

fn conformance(suite: &Path, snap_dir: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--accel", "tcg", "--suite"])
        .arg(suite)
        .arg("--snapshot-dir")
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

fn snaps(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn new_accept_tamper_restore_reproduce() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("snaptest.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    std::fs::create_dir(&first).unwrap();

    // No snapshots yet: new, not a failure, unless they are required.
    let (code, ktap) = conformance(&suite, &first, &tmp.path().join("o1"), &[]);
    assert_eq!(code, 0, "{ktap}");
    assert!(ktap.contains("# enable-disable: snapshot enabled: new, nothing stored yet"), "{ktap}");
    let (code, ktap) = conformance(&suite, &first, &tmp.path().join("o2"), &["--require-snapshots"]);
    assert_eq!(code, 1, "{ktap}");
    assert!(ktap.contains("expected: a stored snapshot enabled for kernel"), "{ktap}");
    assert!(snaps(&first).is_empty(), "check mode in CI writes nothing");

    // Accept stores them.
    let (code, ktap) = conformance(&suite, &first, &tmp.path().join("o3"), &["--snapshots", "accept"]);
    assert_eq!(code, 0, "{ktap}");
    let stored = snaps(&first);
    assert_eq!(stored.len(), 3, "{stored:?}");
    let enabled = String::from_utf8(stored.iter().find(|(n, _)| n.contains("__enabled@")).unwrap().1.clone()).unwrap();
    assert!(enabled.contains("-rw-r--r-- klp_ref_cmdline/enabled = 1"), "{enabled}");
    assert!(enabled.contains("klp_ref_cmdline: refcnt 1, taint OEK"), "{enabled}");

    // A tampered value fails the case with the diff, in KTAP and report.json.
    std::fs::create_dir(&second).unwrap();
    for (name, bytes) in &stored {
        let text = String::from_utf8(bytes.clone()).unwrap();
        std::fs::write(second.join(name), text.replace("refcnt 1, taint OEK", "refcnt 7, taint OEK")).unwrap();
    }
    let out = tmp.path().join("o4");
    let (code, ktap) = conformance(&suite, &second, &out, &[]);
    assert_eq!(code, 1, "{ktap}");
    assert!(ktap.contains("not ok 1 enable-disable"), "{ktap}");
    assert!(ktap.contains("-  klp_ref_cmdline: refcnt 7, taint OEK"), "{ktap}");
    assert!(ktap.contains("+  klp_ref_cmdline: refcnt 1, taint OEK"), "{ktap}");
    // The untampered case passes: a line that is `ok 2 refused` itself, not `not ok 2 refused`.
    assert!(ktap.lines().any(|l| l.trim_start().starts_with("ok 2 refused")), "{ktap}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let case = &report["runs"][0]["cases"][0];
    assert_eq!(case["status"], "fail");
    assert_eq!(case["snapshots"][0]["status"], "changed");
    assert!(case["failure"]["actual"].as_str().unwrap().contains("+  klp_ref_cmdline: refcnt 1"));

    // Accept restores a clean run, byte-identical to the first: two runs, same bytes.
    let (code, ktap) = conformance(&suite, &second, &tmp.path().join("o5"), &["--snapshots", "accept"]);
    assert_eq!(code, 0, "{ktap}");
    let (code, ktap) = conformance(&suite, &second, &tmp.path().join("o6"), &[]);
    assert_eq!(code, 0, "{ktap}");
    assert_eq!(snaps(&second), stored);
}
