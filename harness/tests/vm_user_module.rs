//! Bring your own livepatch module, for real: the kernel's own `samples/livepatch/livepatch-sample.c`
//! (and `livepatch-callbacks-demo.c`, for its callbacks' messages and its objects of modules not
//! loaded) and `lib/livepatch/test_klp_livepatch.c`, from Debian's linux-source package of the
//! pinned default kernel's version (fetched once into the cache by `kernel::source`, as
//! `--suite upstream` does), built with that kernel's kbuild (`kmod::external`), run the generic
//! contract suite with `conformance --module`, and a user suite with `--module-suite` loads the
//! sample by name; the snapshots are stored on the first run and matched on the second; the
//! same module with its vermagic patched to another release is refused before boot, exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use klp_conform::kernel::{self, default_cache_dir, KernelSpec, Pins};
use klp_conform::kmod::external;
use klp_conform::progress::Progress;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(args: &[&str], extra: &[&Path]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(args)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running klp-conform: {e}"));
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

const USER_SUITE: &str = r#"version: 1
suite: sample-extra
description: A user's own case for the kernel's livepatch sample.
cases:
  - name: cmdline-is-patched
    spec: [L1]
    steps:
      - load: livepatch_sample
      - wait: {path: /sys/kernel/livepatch/livepatch_sample/transition, equals: "0", timeout_s: 60}
      - read: {path: /proc/cmdline, equals: "this has been live patched"}
      - snapshot: patched
"#;

#[test]
fn livepatch_sample_from_debian_source_passes_the_generic_suite_and_a_wrong_vermagic_is_refused() {
    let ws = workspace();
    let cache = default_cache_dir();
    let pins = Pins::load_workspace(&ws).unwrap();
    let pin = pins.default_pin().clone();
    let progress = Progress::quiet();
    let k = kernel::resolve(&KernelSpec::Pinned(pin.clone()), &cache, &progress).unwrap();

    let t = Instant::now();
    // The kernel's source as `--suite upstream` fetches it (once, into the cache).
    let src = klp_conform::kernel::source::ensure(&k, &cache, &progress).unwrap();
    let files: Vec<PathBuf> = [
        "samples/livepatch/livepatch-sample.c",
        "lib/livepatch/test_klp_livepatch.c",
        "samples/livepatch/livepatch-callbacks-demo.c",
    ]
    .iter()
    .map(|f| src.tree.join(f))
    .collect();
    // In the cache: a toolchain root (a kernel the host cannot build for) sees only the cache.
    let build_dir = tempfile::Builder::new().prefix(".klp-vm-user-module-").tempdir_in(&cache).unwrap();
    let build = build_dir.path().join("build");
    let tmp = tempfile::tempdir().unwrap();
    let (kos, built_with) = external::build_external_modules(&k, &cache, &build, &files, &progress).unwrap();
    let (ko, selftest, callbacks) = (kos[0].clone(), kos[1].clone(), kos[2].clone());
    eprintln!(
        "livepatch-sample.ko, test_klp_livepatch.ko and livepatch-callbacks-demo.ko of {} for {} with {built_with} in {:.1} s",
        src.origin,
        k.release,
        t.elapsed().as_secs_f64()
    );
    // What the harness reads of them before boot: one vmlinux object patching cmdline_proc_show.
    for f in &kos[..2] {
        let info = klp_conform::usermod::ko::read_ko(f).unwrap();
        assert!(info.livepatch, "{}", f.display());
        let klp_conform::usermod::Declared::Read { objects, replace } = &info.declared else {
            panic!("{}: {:?}", f.display(), info.declared)
        };
        assert!(!replace);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].sysfs_name(), "vmlinux");
        let funcs: Vec<String> = objects[0].funcs.iter().map(|f| f.sysfs_name()).collect();
        assert_eq!(funcs, ["cmdline_proc_show,1"]);
    }
    // Three objects, two of them modules that are not loaded, and callbacks (code pointers in
    // the objects) that must not be taken for function arrays.
    let info = klp_conform::usermod::ko::read_ko(&callbacks).unwrap();
    let klp_conform::usermod::Declared::Read { objects, .. } = &info.declared else { panic!("{:?}", info.declared) };
    let layout: Vec<(String, Vec<String>)> = objects
        .iter()
        .map(|o| (o.sysfs_name().to_string(), o.funcs.iter().map(|f| f.sysfs_name()).collect()))
        .collect();
    assert_eq!(
        layout,
        [
            ("vmlinux".to_string(), vec![]),
            ("livepatch_callbacks_mod".into(), vec![]),
            ("livepatch_callbacks_busymod".into(), vec!["busymod_work_func,1".to_string()])
        ]
    );

    let suite = tmp.path().join("sample-extra.yaml");
    std::fs::write(&suite, USER_SUITE).unwrap();
    let snaps = tmp.path().join("snaps");
    let out = tmp.path().join("out");
    let args = |n: &str| {
        vec![
            "conformance".to_string(),
            "--module".into(),
            ko.display().to_string(),
            "--module".into(),
            selftest.display().to_string(),
            "--module".into(),
            callbacks.display().to_string(),
            "--module-suite".into(),
            suite.display().to_string(),
            "--module-snapshot-dir".into(),
            snaps.display().to_string(),
            "--out".into(),
            out.join(n).display().to_string(),
        ]
    };
    let first = args("1");
    let (code, ktap, err) = run(&first.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    eprintln!("{ktap}");
    assert_eq!(code, Some(0), "{ktap}\n{err}");
    assert!(ktap.contains("    ok 1 livepatch_sample\n"), "{ktap}");
    assert!(ktap.contains("    ok 2 test_klp_livepatch\n"), "{ktap}");
    assert!(ktap.contains("    ok 3 livepatch_callbacks_demo\n"), "{ktap}");
    // The module's own callbacks' messages are shown with its case.
    for cb in ["pre_patch_callback: vmlinux", "post_patch_callback: vmlinux", "post_unpatch_callback: vmlinux"] {
        assert!(
            ktap.lines().any(|l| l.starts_with("    # livepatch_callbacks_demo: [") && l.ends_with(cb)),
            "{cb}: {ktap}"
        );
    }
    assert!(ktap.contains("    ok 1 cmdline-is-patched\n"), "{ktap}");
    // The kernel's messages about the module are shown with its case.
    assert!(
        ktap.contains("# livepatch_sample: [") && ktap.contains("livepatch: 'livepatch_sample': unpatching complete"),
        "{ktap}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("1/report.json")).unwrap()).unwrap();
    let cases = report["runs"][0]["cases"].as_array().unwrap();
    let generic = cases.iter().find(|c| c["id"] == "klp_conformance.module.livepatch_sample").unwrap();
    assert_eq!(generic["status"], "pass", "{generic}");
    assert!(generic["steps"].as_array().unwrap().len() >= 20, "{generic}");
    assert!(generic["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("enabling patch 'livepatch_sample'")));
    assert!(out.join("1").join(generic["logs"]["module_kmsg"].as_str().unwrap()).is_file());

    // Stored per kernel release below <dir>/<name>-<sha256 prefix>/, never in suites/snapshots.
    let sets: Vec<PathBuf> = std::fs::read_dir(&snaps).unwrap().flatten().map(|e| e.path()).collect();
    let module_set = sets
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("livepatch_sample-"))
        .unwrap_or_else(|| panic!("no livepatch_sample-<hash> in {sets:?}"));
    for point in ["enabled", "disabled", "removed"] {
        let f = module_set.join(format!("module__livepatch_sample__{point}@{}.snap", k.release));
        assert!(f.is_file(), "{} missing", f.display());
    }
    let enabled =
        std::fs::read_to_string(module_set.join(format!("module__livepatch_sample__enabled@{}.snap", k.release)))
            .unwrap();
    assert!(enabled.contains("drwxr-xr-x livepatch_sample/vmlinux/cmdline_proc_show,1/"), "{enabled}");
    assert!(
        sets.iter().any(|p| p.file_name().unwrap().to_string_lossy().starts_with("suite-sample-extra-")),
        "{sets:?}"
    );
    let stray: Vec<_> = std::fs::read_dir(ws.join("suites/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("livepatch_sample"))
        .collect();
    assert!(stray.is_empty(), "user snapshots in suites/snapshots: {stray:?}");

    // The second run compares with what the first stored.
    let second = args("2");
    let (code, ktap, err) = run(&second.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(code, Some(0), "{ktap}\n{err}");
    assert!(err.contains("snapshots: 10 matched, 0 new, 0 changed, 0 accepted"), "{err}");

    // The same module for another release: refused before anything boots.
    let mut data = std::fs::read(&ko).unwrap();
    let from = format!("vermagic={}", k.release);
    let to: String = format!("vermagic={}", k.release.replacen(|c: char| c.is_ascii_digit(), "9", 1));
    assert_eq!(from.len(), to.len());
    let at = data.windows(from.len()).position(|w| w == from.as_bytes()).expect("vermagic in .modinfo");
    data[at..at + to.len()].copy_from_slice(to.as_bytes());
    let bad = tmp.path().join("livepatch-sample-other.ko");
    std::fs::write(&bad, &data).unwrap();
    let t = Instant::now();
    let (code, ktap, err) = run(&["conformance", "--module"], &[&bad]);
    assert_eq!(code, Some(2), "{ktap}\n{err}");
    assert!(err.contains(&format!("error: {}: vermagic `{}", bad.display(), &to["vermagic=".len()..])), "{err}");
    assert!(err.contains(&format!("does not match kernel {}'s `{} ", k.release, k.release)), "{err}");
    assert!(!err.contains("booted") && !err.contains("accelerator:"), "{err}");
    assert!(ktap.is_empty(), "{ktap}");
    eprintln!("refused in {:.1} s:\n{err}", t.elapsed().as_secs_f64());
}
