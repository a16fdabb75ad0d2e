//! A realistic report built from the model types, every field filled somewhere: what the
//! reporters' tests render and the external validators (xmllint, kcidb-io, Chromium, the
//! JSON Schema) check. Struct literals, never `..Default::default()`: a field added to the model
//! does not compile here until the fixture (and so the schema test) says what it holds.

use std::collections::BTreeMap;

use crate::report::model::{CaseOutcome, Failure, KernelInfo, KernelRun, Report, Status, StepTiming};
use crate::snapshot::{SnapshotResult, SnapshotStatus};
use crate::suite::spec::{Coverage, VersionNote};

/// A snapshot diff as the store writes it (stored → this run).
pub const SNAPSHOT_DIFF: &str =
    "--- stored\n+++ this run\n@@ -3 +3 @@\n-  enabled = 1\n+  enabled = 0\n   transition = 0\n";

fn logs(release: &str, suite: &str, case: &str) -> BTreeMap<String, String> {
    ["console", "dmesg"].iter().map(|l| (l.to_string(), format!("logs/{release}/{suite}/{case}/{l}.log"))).collect()
}

fn steps(names: &[(&str, f64)]) -> Vec<StepTiming> {
    names.iter().map(|(s, d)| StepTiming { step: s.to_string(), duration_s: *d }).collect()
}

#[allow(clippy::too_many_arguments)]
fn case(
    release: &str,
    suite: &str,
    case: &str,
    status: Status,
    started_at: Option<&str>,
    spec: &[&str],
    failure: Option<Failure>,
    skip_reason: Option<&str>,
    error: Option<&str>,
    divergence: Option<&str>,
    step_list: Vec<StepTiming>,
    snapshots: Vec<SnapshotResult>,
) -> CaseOutcome {
    let ran = started_at.is_some();
    CaseOutcome {
        id: crate::report::model::case_id(suite, case),
        suite: suite.into(),
        case: case.into(),
        status,
        started_at: started_at.map(String::from),
        duration_s: if ran { 1.5 + step_list.iter().map(|s| s.duration_s).sum::<f64>() } else { 0.0 },
        spec: spec.iter().map(|s| s.to_string()).collect(),
        failure,
        skip_reason: skip_reason.map(String::from),
        error: error.map(String::from),
        divergence: divergence.map(String::from),
        guest_start_s: ran.then_some(0.21),
        transport: ran.then(|| "initramfs".to_string()),
        share_setup_s: None,
        logs: if ran { logs(release, suite, case) } else { BTreeMap::new() },
        notes: if ran && case == "load-enable-disable-remove" {
            vec![format!("[    1.234567] livepatch: enabling patch '{case}'")]
        } else {
            Vec::new()
        },
        steps: step_list,
        snapshots,
    }
}

fn snapshot(suite: &str, case: &str, name: &str, release: &str, status: SnapshotStatus) -> SnapshotResult {
    SnapshotResult {
        name: name.into(),
        file: format!("suites/snapshots/{suite}__{case}__{name}@{release}.snap"),
        status,
        diff: (status == SnapshotStatus::Changed).then(|| SNAPSHOT_DIFF.to_string()),
    }
}

/// Two kernels (6.1 and 6.12), two suites, every status, a failed step, a changed snapshot,
/// a divergence, version notes, SPEC coverage; texts with markup and a `</script>` in them.
pub fn report() -> Report {
    let k61 = "6.1.0-57-amd64";
    let k612 = "6.12.95+deb12-amd64";
    let lifecycle_steps = || {
        steps(&[
            ("1: load klp_ref_cmdline", 0.41),
            ("2: wait …/klp_ref_cmdline/transition = \"0\"", 1.02),
            ("3: snapshot enabled", 0.12),
            ("4: write \"0\" > …/klp_ref_cmdline/enabled", 0.05),
            ("5: wait …/klp_ref_cmdline absent", 1.31),
            ("6: unload klp_ref_cmdline", 0.08),
        ])
    };
    let run = |release: &str, version: &str, notes: Vec<VersionNote>, fail_snapshot: bool| {
        let hour = if fail_snapshot { 10 } else { 9 };
        let t = |s: u32| Some(format!("2026-11-02T{hour:02}:{:02}:{:02}Z", s / 60, s % 60));
        let cases = vec![
            case(
                release,
                "lifecycle",
                "load-enable-disable-remove",
                if fail_snapshot { Status::Fail } else { Status::Pass },
                t(5).as_deref(),
                &["L1", "L2", "D3"],
                fail_snapshot.then(|| Failure {
                    step: "3: snapshot enabled".into(),
                    line: Some(17),
                    expected: "the stored snapshot suites/snapshots/lifecycle__load-enable-disable-remove__enabled@6.12.95+deb12-amd64.snap".into(),
                    actual: SNAPSHOT_DIFF.into(),
                }),
                None,
                None,
                None,
                lifecycle_steps(),
                vec![snapshot(
                    "lifecycle",
                    "load-enable-disable-remove",
                    "enabled",
                    release,
                    if fail_snapshot { SnapshotStatus::Changed } else { SnapshotStatus::Matched },
                )],
            ),
            case(
                release,
                "lifecycle",
                "remove-while-enabled",
                Status::Fail,
                t(12).as_deref(),
                &["RM1"],
                Some(Failure {
                    step: "3: unload klp_ref_cmdline".into(),
                    line: Some(40),
                    expected: "failure with EAGAIN".into(),
                    actual: "success </script><script>alert(1)</script> & <b>not bold</b>".into(),
                }),
                None,
                None,
                None,
                steps(&[("1: load klp_ref_cmdline", 0.4), ("2: wait …/transition = \"0\"", 1.1), ("3: unload klp_ref_cmdline", 0.02)]),
                Vec::new(),
            ),
            case(
                release,
                "lifecycle",
                "force-without-transition",
                Status::Pass,
                t(20).as_deref(),
                &["F1", "F5"],
                None,
                None,
                None,
                Some("writing 1 to force when no transition is in progress is EINVAL, not a no-op"),
                steps(&[("1: load klp_ref_cmdline", 0.38), ("2: write \"1\" > …/force", 0.01)]),
                vec![snapshot(
                    "lifecycle",
                    "force-without-transition",
                    "forced",
                    release,
                    if fail_snapshot { SnapshotStatus::Accepted } else { SnapshotStatus::New },
                )],
            ),
            case(
                release,
                "loading",
                "stack-order",
                Status::Skip,
                None,
                &["S1"],
                None,
                Some(if fail_snapshot { "needs kernel >= 6.14 (has 6.12)" } else { "needs kernel >= 6.14 (has 6.1)" }),
                None,
                None,
                Vec::new(),
                Vec::new(),
            ),
            case(
                release,
                "loading",
                "not-a-livepatch",
                Status::Error,
                t(31).as_deref(),
                &["L3"],
                None,
                None,
                Some("the VM did not boot: agent did not answer within 60s\nconsole tail:\n[    1.234] Kernel panic - not syncing: \u{1b}[1mVFS\u{1b}[0m"),
                None,
                Vec::new(),
                Vec::new(),
            ),
        ];
        KernelRun {
            kernel: KernelInfo {
                spec: if fail_snapshot { "6.12".into() } else { "6.1".into() },
                release: Some(release.into()),
                version: Some(version.into()),
                config: Some(format!("kernels/{release}/config")),
            },
            accel: "tcg".into(),
            accel_note: Some("auto: /dev/kvm is not usable here (open: No such file or directory)".into()),
            guest_start: "restore".into(),
            version_notes: notes,
            cases,
        }
    };
    let notes = vec![
        VersionNote {
            id: "AR7".into(),
            kernels: ">= 6.11".into(),
            change: "`<p>/replace` (0444) shows whether the patch is an atomic-replace patch: 0 or 1.".into(),
            source: "kernel/livepatch/core.c: replace_show".into(),
        },
        VersionNote {
            id: "T3".into(),
            kernels: ">= 6.4, < 6.16".into(),
            change: "A task in transition also switches itself whenever it calls cond_resched().".into(),
            source: "kernel/sched/core.c: klp_cond_resched".into(),
        },
    ];
    let mut r =
        Report::new(vec![run(k61, "6.1.192-3", Vec::new(), false), run(k612, "6.12.95-1~bpo12+1", notes, true)]);
    // One case as the kernel's own selftests run: over virtiofs, with what its shares cost.
    if let Some(c) = r.runs.first_mut().and_then(|run| run.cases.iter_mut().find(|c| c.started_at.is_some())) {
        c.transport = Some("virtiofs".into());
        c.share_setup_s = Some(0.26);
    }
    r.coverage = Some(Coverage {
        total: 9,
        covered: ["L1", "L2", "D3", "RM1", "F1", "F5"].iter().map(|s| s.to_string()).collect(),
        missing: vec!["L3".into(), "S1".into(), "AR7".into()],
    });
    r
}
