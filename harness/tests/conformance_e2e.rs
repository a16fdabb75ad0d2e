//! The whole path on a real kernel: fetch it, build the Rust livepatch module for it, boot it
//! under QEMU, run a suite through the agent, and check the contract: KTAP on stdout,
//! report.json, per-case logs, exit codes, and no QEMU left behind; the real run's junit.xml,
//! kcidb.json, report.html and report.json each pass their format's validator.

mod validators;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn klp_conform() -> Command {
    Command::new(env!("CARGO_BIN_EXE_klp-conform"))
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// Every live process: (pid, comm, ppid).
fn processes() -> Vec<(u32, String, u32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat[stat.find('(').unwrap() + 1..close].to_string();
        let mut rest = stat[close + 2..].split(' ');
        let state = rest.next().unwrap_or("");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" {
            v.push((pid, comm, ppid));
        }
    }
    v
}

/// Pids of live QEMU processes whose parent is `parent`.
fn qemu_children(parent: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(_, c, pp)| *pp == parent && c.starts_with("qemu-system"))
        .map(|(p, ..)| p)
        .collect()
}

/// Pids of live virtiofsd processes below `parent` (the daemon forks into its sandbox).
fn virtiofsd_descendants(parent: u32) -> Vec<u32> {
    let procs = processes();
    let mut below = vec![parent];
    let mut i = 0;
    while i < below.len() {
        let p = below[i];
        below.extend(procs.iter().filter(|(_, _, pp)| *pp == p).map(|(pid, ..)| *pid));
        i += 1;
    }
    procs.iter().filter(|(pid, c, _)| below.contains(pid) && c.starts_with("virtiofsd")).map(|(p, ..)| *p).collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[test]
fn lifecycle_suite_passes_on_the_default_kernel() {
    let out = tempfile::tempdir().unwrap();
    let o = klp_conform()
        .args(["conformance", "--suite", "lifecycle", "--accel", "auto", "--out"])
        .arg(out.path())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}");

    // stdout is KTAP v1 and nothing else.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(&lines[..2], &["KTAP version 1", "1..1"]);
    assert_eq!(*lines.iter().rev().find(|l| !l.starts_with('#')).unwrap(), "ok 1 lifecycle");
    assert!(lines.last().unwrap().starts_with("# SPEC coverage: "), "{stdout}");
    for l in &lines {
        let t = l.trim_start();
        assert!(
            t.starts_with("KTAP version 1")
                || t.starts_with("1..")
                || t.starts_with("ok ")
                || t.starts_with("not ok ")
                || t.starts_with('#'),
            "not a KTAP line: {l:?}"
        );
    }

    let r = report(out.path());
    assert_eq!(r["schema"], "klp-conform.report.v1");
    let run = &r["runs"][0];
    assert!(run["kernel"]["release"].as_str().unwrap().starts_with("6.1."));
    // `auto` is KVM where a KVM guest comes up, TCG elsewhere; either way it says why.
    assert!(run["accel"] == "tcg" || run["accel"] == "kvm", "{run:#}");
    assert!(run["accel_note"].as_str().is_some_and(|n| !n.is_empty()));
    let cases = run["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["load-enable-disable-remove", "remove-while-enabled", "force-without-transition", "enabled-writes"]
    );
    for c in cases {
        assert_eq!(c["status"], "pass", "{c:#}");
        assert!(c["id"].as_str().unwrap().starts_with("klp_conformance.lifecycle."));
        assert!(!c["spec"].as_array().unwrap().is_empty());
        for log in ["console", "dmesg"] {
            let rel = c["logs"][log].as_str().unwrap_or_else(|| panic!("no {log} log: {c:#}"));
            assert!(out.path().join(rel).is_file(), "{rel}");
        }
    }
    // The kernel log of the first case shows the real livepatch life cycle.
    let dmesg = std::fs::read_to_string(out.path().join(cases[0]["logs"]["dmesg"].as_str().unwrap())).unwrap();
    for line in [
        "livepatch: enabling patch 'klp_ref_cmdline'",
        "livepatch: 'klp_ref_cmdline': starting patching transition",
        "livepatch: 'klp_ref_cmdline': patching complete",
        "livepatch: 'klp_ref_cmdline': starting unpatching transition",
        "livepatch: 'klp_ref_cmdline': unpatching complete",
    ] {
        assert!(dmesg.contains(line), "missing {line:?} in dmesg:\n{dmesg}");
    }
    assert_eq!(r["summary"], serde_json::json!({"pass": 4, "fail": 0, "skip": 0, "error": 0}));
    assert!(cases.iter().all(|c| c["started_at"].is_string()), "every case that ran has a start time");
    assert!(out.path().join(run["kernel"]["config"].as_str().unwrap()).is_file(), "the kernel's config is kept");
    check_result_files(out.path(), 4);
}

#[test]
fn the_kernels_own_selftests_pass_on_the_default_kernel_over_virtiofs() {
    // issue 11: every test-*.sh of 6.1's tools/testing/selftests/livepatch, unmodified, its
    // test modules built for the kernel, each script in a restored guest with virtiofs shares.
    let out = tempfile::tempdir().unwrap();
    let o = klp_conform()
        .args(["conformance", "--suite", "upstream", "--accel", "tcg", "--out"])
        .arg(out.path())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}");
    assert!(stdout.contains("    ok 13 test-livepatch.basic-function-patching\n"), "{stdout}");
    let r = report(out.path());
    let run = &r["runs"][0];
    assert_eq!(run["guest_start"], "restore");
    let cases = run["cases"].as_array().unwrap();
    let per_script = |script: &str| cases.iter().filter(|c| c["case"].as_str().unwrap().starts_with(script)).count();
    let counts: Vec<usize> =
        ["test-callbacks.", "test-ftrace.", "test-livepatch.", "test-shadow-vars.", "test-state.", "test-sysfs."]
            .iter()
            .map(|s| per_script(s))
            .collect();
    assert_eq!(counts, [11, 1, 3, 1, 4, 2], "the 22 tests of 6.1's six scripts");
    for c in cases {
        assert_eq!(c["status"], "pass", "{c:#}");
        assert!(c["id"].as_str().unwrap().starts_with("klp_conformance.upstream.test_"), "{c:#}");
        assert!(c["spec"].as_array().unwrap().is_empty(), "upstream tests cite no SPEC ids");
        assert_eq!(c["transport"], "virtiofs");
        assert!(c["share_setup_s"].as_f64().unwrap() > 0.0);
        for log in ["console", "dmesg", "output"] {
            assert!(out.path().join(c["logs"][log].as_str().unwrap()).is_file(), "{log}: {c:#}");
        }
    }
    // The script's own output went through the writable results share too.
    let shared = out
        .path()
        .join("logs")
        .join(run["kernel"]["release"].as_str().unwrap())
        .join("upstream/test-sysfs/results/test-sysfs.log");
    let text = std::fs::read_to_string(&shared).unwrap();
    assert!(text.contains("TEST: sysfs test ... ok"), "{text}");
    assert_eq!(r["summary"], serde_json::json!({"pass": 22, "fail": 0, "skip": 0, "error": 0}));
    check_result_files(out.path(), 22);
}

/// Every result file of a real run, through its format's validator.
fn check_result_files(out: &Path, cases: usize) -> (String, serde_json::Value) {
    validators::assert_report_valid(&report(out));
    validators::assert_junit_valid(&out.join("junit.xml"));
    let ok = validators::kcidb_validate(&out.join("kcidb.json")).unwrap_or_else(|e| panic!("kcidb-io: {e}"));
    assert!(ok.contains(&format!("{cases} tests")), "{ok}");
    let (dom, log) = validators::chromium_dump_dom(&validators::file_url(&out.join("report.html")));
    assert!(validators::console_messages(&log).is_empty(), "{:#?}", validators::console_messages(&log));
    assert!(dom.contains("data-status=\"rendered\""), "{dom}");
    assert_eq!(dom.matches("class=\"case-row\"").count(), cases);
    let kcidb = serde_json::from_str(&std::fs::read_to_string(out.join("kcidb.json")).unwrap()).unwrap();
    (dom, kcidb)
}

#[test]
fn a_wrong_expectation_is_a_conformance_failure() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("wrong.yaml");
    std::fs::write(
        &suite,
        "version: 1\nsuite: wrong\ncases:\n  - name: enabled-is-not-zero\n    spec: [L8]\n    steps:\n      - load: klp_ref_cmdline\n      - read: {path: /sys/kernel/livepatch/klp_ref_cmdline/enabled, equals: \"0\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = klp_conform()
        .args(["conformance", "--accel", "tcg", "--suite"])
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("not ok 1 enabled-is-not-zero"), "{stdout}");
    assert!(stdout.contains("# enabled-is-not-zero: expected: \"0\""), "{stdout}");
    let r = report(&out);
    let c = &r["runs"][0]["cases"][0];
    assert_eq!(c["status"], "fail");
    assert_eq!(c["failure"]["step"], "2: read /sys/kernel/livepatch/klp_ref_cmdline/enabled");
    assert_eq!(c["failure"]["line"], 8);
    assert_eq!(c["failure"]["expected"], "\"0\"");
    assert_eq!(c["failure"]["actual"], "\"1\"");
    let (dom, kcidb) = check_result_files(&out, 1);
    assert!(dom.contains("Failed at step 2: read /sys/kernel/livepatch/klp_ref_cmdline/enabled (line 8)"), "{dom}");
    assert_eq!(kcidb["tests"][0]["status"], "FAIL");
    assert_eq!(kcidb["tests"][0]["path"], "livepatch.wrong.enabled_is_not_zero");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure message=\"step 2: read /sys/kernel/livepatch/klp_ref_cmdline/enabled (line 8): expected &quot;0&quot;\""), "{junit}");
}

#[test]
fn restored_guests_give_the_verdicts_and_snapshots_of_fresh_boots() {
    // The whole `enabling` suite twice: every case booting its own guest (storing the
    // snapshots it saw), then every case starting from the one saved booted guest, in parallel
    // (checking against those snapshots, none may be missing).
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let run = |out: &str, args: &[&str]| {
        let out = dir.path().join(out);
        let o = klp_conform()
            .args(["conformance", "--accel", "tcg", "--suite", "enabling", "--snapshot-dir"])
            .arg(&snaps)
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        report(&out)
    };
    let fresh = run("fresh", &["--fresh-boot", "--jobs", "1", "--snapshots", "accept"]);
    let restored = run("restored", &["--jobs", "3", "--snapshots", "check", "--require-snapshots"]);
    assert_eq!(fresh["runs"][0]["guest_start"], "boot");
    assert_eq!(restored["runs"][0]["guest_start"], "restore");
    let verdicts = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["runs"][0]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["case"].as_str().unwrap().to_string(), c["status"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(verdicts(&fresh), verdicts(&restored));
    let statuses: Vec<&str> = restored["runs"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["snapshots"].as_array().cloned().unwrap_or_default())
        .map(|s| if s["status"] == "matched" { "matched" } else { "other" })
        .collect();
    assert!(statuses.len() >= 10 && statuses.iter().all(|s| *s == "matched"), "{statuses:?}");
}

#[test]
fn ctrl_c_leaves_no_qemu_behind() {
    interrupted_run_leaves_no_qemu_behind(libc::SIGINT);
}

#[test]
fn sigterm_leaves_no_qemu_behind() {
    // What CI runners and `timeout` send.
    interrupted_run_leaves_no_qemu_behind(libc::SIGTERM);
}

#[test]
fn ctrl_c_leaves_no_virtiofsd_behind() {
    // The kernel's own selftests run with virtiofs shares hot-added to restored guests: the
    // daemons (and their sandboxed children) die with the harness like QEMU.
    let out = tempfile::tempdir().unwrap();
    let mut child = klp_conform()
        .args(["conformance", "--accel", "tcg", "--jobs", "3", "--suite", "upstream", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    let (daemons, qemu) = loop {
        let d = virtiofsd_descendants(pid);
        if d.len() >= 4 {
            break (d, qemu_children(pid));
        }
        assert!(Instant::now() < deadline, "no virtiofsd started");
        assert!(child.try_wait().unwrap().is_none(), "harness exited before sharing anything");
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: sending a signal to our own child, as a terminal's Ctrl-C would.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let gone_by = Instant::now() + Duration::from_secs(5);
    for p in daemons.into_iter().chain(qemu) {
        while alive(p) {
            assert!(Instant::now() < gone_by, "process {p} (virtiofsd or QEMU) outlived the harness");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn interrupted_run_leaves_no_qemu_behind(signal: libc::c_int) {
    // Several guests at once, restored from a saved one: the signal while they run.
    let out = tempfile::tempdir().unwrap();
    let mut child = klp_conform()
        .args(["conformance", "--accel", "tcg", "--jobs", "3", "--suite", "transition", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    let qemu = loop {
        let q = qemu_children(pid);
        if q.len() >= 2 {
            break q;
        }
        assert!(Instant::now() < deadline, "no QEMU started");
        assert!(child.try_wait().unwrap().is_none(), "harness exited before booting a VM");
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: sending a signal to our own child, as a terminal's Ctrl-C or a CI timeout would.
    unsafe { libc::kill(pid as i32, signal) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the harness handles the signal and says so: {status:?}");
    assert!(!out.path().join("report.json").exists(), "no partial report");
    let gone_by = Instant::now() + Duration::from_secs(5);
    for q in qemu {
        while Path::new(&format!("/proc/{q}")).exists()
            && !std::fs::read_to_string(format!("/proc/{q}/stat")).unwrap_or_default().contains(") Z ")
        {
            assert!(Instant::now() < gone_by, "QEMU {q} outlived the harness");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
