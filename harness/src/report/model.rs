//! What a run produced, in the shape of `report.json` (schema `klp-conform.report.v1`): the
//! result model every reporter renders. Public API: `reports/schema/report.schema.json` describes
//! its JSON form, and a test keeps the two in step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// The kernel did not behave as the case expects (includes oops/panic in the guest).
    Fail,
    /// Not run, with a reason.
    Skip,
    /// The harness could not do its job for this case (no kernel, build failed, VM did not boot).
    Error,
}

/// The failing step: what was expected and what the guest showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `<index>: <description>` of the step, 1-based, e.g. `3: write "0" > …/enabled`.
    pub step: String,
    /// Line of the step in the suite file, when there is one.
    pub line: Option<u64>,
    pub expected: String,
    pub actual: String,
}

/// Timing of one executed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseOutcome {
    /// Stable dot path: `klp_conformance.<suite>.<case>`.
    pub id: String,
    pub suite: String,
    pub case: String,
    pub status: Status,
    /// When the case's guest started booting (RFC 3339, UTC); absent for a case that never
    /// ran (skipped by `requires`, or its kernel could not be prepared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub duration_s: f64,
    pub spec: Vec<String>,
    pub failure: Option<Failure>,
    pub skip_reason: Option<String>,
    /// For `error`: what the harness could not do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The documented contract says otherwise: what the case shows the kernel really does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<String>,
    /// Seconds from starting QEMU until the guest's agent answered: a boot, or a restore of
    /// the saved booted guest (see the run's `guest_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_start_s: Option<f64>,
    /// How the guest got what the case runs: `initramfs` (the reference modules travel in the
    /// image) or `virtiofs` (host directories shared into the restored guest: the kernel's own
    /// selftests, `--suite upstream`). Absent for a case that never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Host seconds the case's virtiofs shares cost: every virtiofsd started, every
    /// vhost-user-fs-pci device hot-added, every tag mounted by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_setup_s: Option<f64>,
    /// Log files of the case, relative to the output directory (`console`, `dmesg`).
    pub logs: BTreeMap<String, String>,
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    /// The snapshots the case took and how they compared with the stored ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<crate::snapshot::SnapshotResult>,
    /// Lines shown with the case whatever its verdict: for a user's module (`--module`), the
    /// kernel-log records that name it (its own callbacks' messages, the livepatch core's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl CaseOutcome {
    pub fn new(suite: &str, case: &str, spec: Vec<String>) -> Self {
        Self {
            id: case_id(suite, case),
            suite: suite.into(),
            case: case.into(),
            status: Status::Pass,
            started_at: None,
            duration_s: 0.0,
            spec,
            failure: None,
            skip_reason: None,
            error: None,
            transport: None,
            share_setup_s: None,
            divergence: None,
            guest_start_s: None,
            logs: BTreeMap::new(),
            steps: Vec::new(),
            snapshots: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn skipped(mut self, why: impl Into<String>) -> Self {
        self.status = Status::Skip;
        self.skip_reason = Some(why.into());
        self
    }

    pub fn errored(mut self, why: impl Into<String>) -> Self {
        self.status = Status::Error;
        self.error = Some(why.into());
        self
    }
}

/// Now, as RFC 3339 in UTC with milliseconds (`2026-11-02T09:14:03.512Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Test ids are dot paths; case names use `-` in YAML and `_` in ids so every CI system
/// (JUnit classnames, KCIDB paths) takes them as one identifier.
pub fn case_id(suite: &str, case: &str) -> String {
    format!("klp_conformance.{}.{}", suite.replace('-', "_"), case.replace('-', "_"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub spec: String,
    pub release: Option<String>,
    pub version: Option<String>,
    /// The kernel's `.config`, copied into the output directory (path relative to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRun {
    pub kernel: KernelInfo,
    /// `kvm` or `tcg`, with why when `auto` chose.
    pub accel: String,
    pub accel_note: Option<String>,
    /// `restore` (every case started from one booted guest saved once) or `boot` (each case
    /// booted its own: `--fresh-boot`, or the saving failed).
    pub guest_start: String,
    /// Where this kernel departs from SPEC.md (written against 6.1), from
    /// `suites/spec/versions.yaml`: what its per-kernel expectations rest on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_notes: Vec<crate::suite::spec::VersionNote>,
    pub cases: Vec<CaseOutcome>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub error: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub runs: Vec<KernelRun>,
    pub summary: Summary,
    /// SPEC assertion ids checked by cases that ran to a verdict, against the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<crate::suite::spec::Coverage>,
}

pub const REPORT_SCHEMA: &str = "klp-conform.report.v1";

impl Report {
    pub fn new(runs: Vec<KernelRun>) -> Self {
        let mut summary = Summary::default();
        for c in runs.iter().flat_map(|r| &r.cases) {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Fail => summary.fail += 1,
                Status::Skip => summary.skip += 1,
                Status::Error => summary.error += 1,
            }
        }
        Self { schema: REPORT_SCHEMA.into(), runs, summary, coverage: None }
    }

    /// The contract: 0 all passed or skipped with a reason, 1 a conformance failure, 2 the
    /// harness could not do its job (which wins: a failure next to an error is not trusted).
    pub fn exit_code(&self) -> i32 {
        if self.summary.error > 0 {
            2
        } else if self.summary.fail > 0 {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dot_paths() {
        assert_eq!(case_id("lifecycle", "remove-while-enabled"), "klp_conformance.lifecycle.remove_while_enabled");
    }

    #[test]
    fn exit_codes() {
        let mk = |s: Status| {
            let mut c = CaseOutcome::new("s", "c", vec![]);
            c.status = s;
            c
        };
        let run = |cases| {
            Report::new(vec![KernelRun {
                kernel: KernelInfo { spec: "debian".into(), release: None, version: None, config: None },
                accel: "tcg".into(),
                accel_note: None,
                guest_start: "boot".into(),
                version_notes: Vec::new(),
                cases,
            }])
        };
        assert_eq!(run(vec![mk(Status::Pass), mk(Status::Skip)]).exit_code(), 0);
        assert_eq!(run(vec![mk(Status::Pass), mk(Status::Fail)]).exit_code(), 1);
        assert_eq!(run(vec![mk(Status::Fail), mk(Status::Error)]).exit_code(), 2);
        let r = run(vec![mk(Status::Pass), mk(Status::Fail), mk(Status::Fail)]);
        assert_eq!(r.summary, Summary { pass: 1, fail: 2, skip: 0, error: 0 });
    }
}
