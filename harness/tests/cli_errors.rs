//! Bad input never crashes and never half-writes: a bad suite file is a located error and
//! exit code 2, before any kernel is fetched or VM booted.

use std::path::Path;
use std::process::Command;

fn conformance(suite: &Path, out: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--suite"])
        .arg(suite)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

const HEAD: &str =
    "version: 1\nsuite: bad\ncases:\n  - name: one\n    spec: [L1]\n    steps:\n      - load: klp_ref_cmdline\n";

#[test]
fn unknown_key_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, format!("{HEAD}      - write: {{path: /x, value: '1', expect: EINVAL}}\n")).unwrap();
    let (code, stdout, stderr) = conformance(&f, &dir.path().join("out"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:8:39: unknown field `expect`", f.display())), "{stderr}");
    assert!(stdout.is_empty(), "no KTAP for a run that never started: {stdout}");
    assert!(!dir.path().join("out/report.json").exists());
}

#[test]
fn wrongly_typed_step_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, format!("{HEAD}      - wait: {{absent: /x, timeout_s: soon}}\n")).unwrap();
    let (code, _, stderr) = conformance(&f, &dir.path().join("out"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:8:", f.display())), "{stderr}");
    assert!(stderr.contains("timeout_s") || stderr.contains("invalid"), "{stderr}");
}

/// A broken guest recipe (`images/guest.yaml` of the workspace) stops the run the same way.
#[test]
fn bad_guest_recipe_is_located() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("images")).unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/guest.yaml");
    let text = std::fs::read_to_string(real).unwrap().replace("  cpus: 2\n", "  cpus: 2\n  disk_gb: 4\n");
    let recipe = ws.path().join("images/guest.yaml");
    std::fs::write(&recipe, &text).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/kernels.yaml"),
        ws.path().join("images/kernels.yaml"),
    )
    .unwrap();
    let line = text.lines().position(|l| l.contains("disk_gb")).unwrap() + 1;
    let suite = ws.path().join("ok.yaml");
    std::fs::write(&suite, HEAD).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--workspace"])
        .arg(ws.path())
        .arg("--suite")
        .arg(&suite)
        .arg("--out")
        .arg(ws.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:{line}:3: unknown field `disk_gb`", recipe.display())), "{stderr}");
    assert!(o.stdout.is_empty());
    assert!(!ws.path().join("out/report.json").exists());
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nope.yaml");
    let (code, _, stderr) = conformance(&f, &dir.path().join("out"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}: cannot read suite file", f.display())), "{stderr}");
}

#[test]
fn unknown_suite_name_lists_the_real_ones() {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--suite", "no-such-suite"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown suite `no-such-suite`") && stderr.contains("lifecycle"), "{stderr}");
}

#[test]
fn bad_kernel_spec_is_exit_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--kernel", "debian:", "--suite", "lifecycle"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad kernel spec"), "{stderr}");
}

fn snapshots_diff(dir: &Path, a: &str, b: &str) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["snapshots", "diff", "--snapshot-dir"])
        .arg(dir)
        .args(["--kernel", a, "--kernel", b])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn snapshots_diff_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let snap = |rel: &str, body: &str| {
        std::fs::write(
            dir.path().join(format!("lifecycle__c__enabled@{rel}.snap")),
            format!("---\nsource: suites/lifecycle.yaml\nexpression: lifecycle / c / enabled\n---\n{body}"),
        )
        .unwrap()
    };
    snap("6.1.0-1-amd64", "enabled = 1\n");
    snap("6.1.0-2-amd64", "enabled = 1\n");
    snap("6.1.0-3-amd64", "enabled = 0\n");
    let (code, out, err) = snapshots_diff(dir.path(), "debian:6.1.0-1-amd64", "debian:6.1.0-2-amd64");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no difference: all 1 snapshots are identical"), "{out}");
    let (code, out, _) = snapshots_diff(dir.path(), "debian:6.1.0-1-amd64", "debian:6.1.0-3-amd64");
    assert_eq!(code, 1);
    assert!(out.contains("lifecycle / c:\n  changed enabled:") && out.contains("+enabled = 0"), "{out}");
    let (code, _, err) = snapshots_diff(dir.path(), "debian:6.1.0-1-amd64", "debian:6.1.0-9-amd64");
    assert_eq!(code, 2);
    assert!(err.contains("no snapshots for kernel 6.1.0-9-amd64"), "{err}");
    // A build tree of the very same release is compared by its own snapshots, never by the
    // package's.
    let tree = fake_tree(|c| c);
    std::fs::write(tree.path().join("include/config/kernel.release"), "6.1.0-1-amd64\n").unwrap();
    let (code, _, err) = snapshots_diff(dir.path(), "debian:6.1.0-1-amd64", tree.path().to_str().unwrap());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no snapshots for kernel 6.1.0-1-amd64+tree"), "{err}");
    snap("6.1.0-1-amd64+tree", "enabled = 0\n");
    let (code, out, err) = snapshots_diff(dir.path(), "debian:6.1.0-1-amd64", tree.path().to_str().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with("snapshots of 6.1.0-1-amd64 (-) against 6.1.0-1-amd64+tree (+)"), "{out}");
    assert!(out.contains("+enabled = 0"), "{out}");
}

#[test]
fn suites_check_reports_every_problem_of_every_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(
        &a,
        "version: 1\nsuite: a\ncases:\n  - name: one\n    spec: [L1]\n    steps:\n      - load: klp_ref_nope\n      - read: {path: /x}\n  - name: Two\n    spec: [x1]\n    steps:\n      - load: klp_ref_cmdline\n",
    )
    .unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(&b, "version: 1\nsuite: b\ncases:\n  - name: x\n    spec: [L1]\n    steps:\n      - lod: m\n")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform")).args(["suites", "check"]).arg(&a).arg(&b).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for want in [
        format!("{}:7:9: unknown reference module `klp_ref_nope`", a.display()),
        format!("{}:8:9: a read needs", a.display()),
        format!("{}:9:11: case name `Two`", a.display()),
        format!("{}:10:12: `x1` is not a SPEC.md assertion id", a.display()),
        format!("{}:7:9: unknown variant `lod`", b.display()),
        "5 problem(s) in 2 of 2 suite file(s)".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    // The committed suites are clean.
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform")).args(["suites", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn case_globs_select_and_a_glob_that_selects_nothing_is_an_error() {
    let list = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
            .args(["conformance", "--list"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // --list resolves the pinned default kernel but neither builds nor boots anything.
    let (code, out, err) = list(&["--case", "lifecycle/*", "--case", "enabling/replace-*"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("  run   lifecycle/load-enable-disable-remove\n"), "{out}");
    assert!(out.contains("  skip  enabling/replace-attribute: needs kernel >= 6.11"), "{out}");
    assert!(out.contains("  run   enabling/replace-attribute-absent\n"), "{out}");
    assert!(!out.contains("transition/"), "{out}");
    assert!(out.contains("  6 cases: 5 run, 1 skip, 0 error"), "{out}");
    assert!(!err.contains("kmod:") && !err.contains("booted guest"), "nothing is built or booted: {err}");
    let (code, out, err) = list(&["--case", "lifecycle/*", "--case", "nope/*"]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("--case nope/* matches no case"), "{err}");
}

/// A kernel build tree as `--kernel <tree>` resolves it (release, bzImage, .config) — nothing
/// in it can be built or booted, so the test also shows that the refusal comes first. Its
/// config is the fragment a developer merges, with what Kconfig derives from it, and `edit`.
fn fake_tree(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let fragment =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/kernel-config.fragment"))
            .unwrap();
    let derived = "CONFIG_X86_64=y\nCONFIG_HAVE_RELIABLE_STACKTRACE=y\nCONFIG_DYNAMIC_FTRACE_WITH_ARGS=y\n\
                   CONFIG_COMPAT_BINFMT_ELF=y\n";
    std::fs::write(d.path().join(".config"), edit(format!("{fragment}{derived}"))).unwrap();
    std::fs::create_dir_all(d.path().join("include/config")).unwrap();
    std::fs::write(d.path().join("include/config/kernel.release"), "6.1.192\n").unwrap();
    std::fs::create_dir_all(d.path().join("arch/x86/boot")).unwrap();
    std::fs::write(d.path().join("arch/x86/boot/bzImage"), b"not a kernel").unwrap();
    d
}

fn tree_run(tree: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .arg("conformance")
        .arg("--kernel")
        .arg(tree)
        .args(args)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// A tree without reliable stack traces (tinyconfig's UNWINDER_GUESS) and without the agent
/// channel's driver is refused before anything is built or booted: exit 2, one message naming
/// every option to set.
#[test]
fn a_tree_without_what_the_harness_needs_is_refused_before_boot_naming_the_options() {
    let tree = fake_tree(|c| {
        c.replace("CONFIG_UNWINDER_ORC=y", "CONFIG_UNWINDER_GUESS=y")
            .replace("CONFIG_HAVE_RELIABLE_STACKTRACE=y\n", "")
            .replace("CONFIG_VIRTIO_CONSOLE=y", "# CONFIG_VIRTIO_CONSOLE is not set")
    });
    let out = tree.path().join("out");
    let (code, _, err) = tree_run(tree.path(), &["--suite", "lifecycle", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernel 6.1.192 cannot be tested: its config lacks what klp-conform needs"), "{err}");
    assert!(err.contains("CONFIG_UNWINDER_ORC=y, not CONFIG_UNWINDER_GUESS=y"), "{err}");
    assert!(err.contains("CONFIG_VIRTIO_CONSOLE=y (or m)") && err.contains("images/guest.yaml"), "{err}");
    assert_eq!(err.matches("not CONFIG_UNWINDER_GUESS").count(), 1, "the list is said once, not per case: {err}");
    for never in ["building the guest agent", "reference modules ready", "kmod:", "accelerator:"] {
        assert!(!err.contains(never), "nothing may be built or booted ({never}): {err}");
    }
    // Every case reports it as its error.
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("CONFIG_UNWINDER_ORC=y, not CONFIG_UNWINDER_GUESS=y"), "{report}");
}

/// The same tree with the fragment's options as they are: `--list` (which builds and boots
/// nothing) plans every case; without MODULE_SIG and DYNAMIC_DEBUG the cases that need them
/// are skips naming the option, never errors.
#[test]
fn a_tree_with_the_fragment_passes_and_case_options_are_skips() {
    let tree = fake_tree(|c| c);
    let (code, out, err) = tree_run(tree.path(), &["--list", "--suite", "lifecycle", "--suite", "loading"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("  error "), "{out}");
    assert!(!out.contains("  skip  loading/"), "{out}");
    let tree = fake_tree(|c| {
        c.replace("CONFIG_MODULE_SIG=y", "# CONFIG_MODULE_SIG is not set").replace("CONFIG_COMPAT_BINFMT_ELF=y\n", "")
    });
    let (code, out, err) = tree_run(tree.path(), &["--list", "--suite", "loading"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("  error "), "{out}");
    assert!(out.contains("  skip  loading/ambiguous-symbol: needs CONFIG_COMPAT_BINFMT_ELF=y or m"), "{out}");
    assert!(out.contains("needs CONFIG_MODULE_SIG=y, which kernel 6.1.192 lacks"), "{out}");
}

/// Preparation failing (here: a tree that passes the config check but holds no kbuild, so the
/// reference modules cannot be built) makes every case of that kernel an ERROR carrying the
/// reason, on the KTAP line and in report.json, and the run exit 2; no guest is booted.
#[test]
fn a_kernel_whose_preparation_fails_errors_every_case_and_exits_2() {
    let tree = fake_tree(|c| c);
    let out = tree.path().join("out");
    let (code, ktap, err) = tree_run(tree.path(), &["--suite", "lifecycle", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{ktap}\n{err}");
    assert!(!err.contains("accelerator:") && !err.contains("booted guest saved"), "nothing booted: {err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let cases = report["runs"][0]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "every lifecycle case is reported");
    for c in cases {
        assert_eq!(c["status"], "error", "{c}");
        let e = c["error"].as_str().unwrap();
        assert!(e.starts_with("building the reference modules for 6.1.192: "), "{e}");
        let name = c["case"].as_str().unwrap();
        let line = ktap.lines().find(|l| l.trim_start().starts_with("not ok") && l.contains(name)).unwrap();
        assert!(line.contains(" # ERROR building the reference modules for 6.1.192: "), "{line}");
    }
    assert_eq!(report["summary"]["error"], 4, "{}", report["summary"]);
}
