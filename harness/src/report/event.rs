//! What a run tells its reporters, and the reporters: the runner emits typed [`Event`]s through
//! one callback (as nextest's runner does) and never formats anything itself; KTAP on stdout,
//! the progress lines on stderr and the result files are [`Reporter`]s the CLI chooses.
//!
//! Order: `RunStarted`; per kernel `KernelPrepared`; then for every case in suite/case order
//! `SuiteStarted` (first case of a suite), `CaseFinished`, `SuiteFinished` (last case); per
//! kernel `KernelFinished`; `RunFinished` last. `CaseStarted`, `StepFinished` and
//! `SnapshotCompared` come as they happen, from cases running in parallel guests: they are for
//! people watching, and a reporter must not rely on their order across cases.

use std::io::Write;
use std::path::PathBuf;

use super::ktap::KtapWriter;
use super::model::{CaseOutcome, KernelInfo, KernelRun, Report, StepTiming};
use crate::progress::Progress;
use crate::snapshot::{SnapshotResult, SnapshotStatus};
use crate::suite::spec::VersionNote;

/// Which case an event is about.
#[derive(Debug, Clone, Copy)]
pub struct CaseRef<'a> {
    /// Index of the kernel in the run (`--kernel` order).
    pub kernel: usize,
    pub kernel_spec: &'a str,
    pub suite: &'a str,
    pub case: &'a str,
}

#[derive(Debug)]
pub enum Event<'a> {
    RunStarted {
        /// (kernel, suite) pairs: the top-level tests of KTAP.
        suites_per_kernel: usize,
        kernels: usize,
    },
    KernelPrepared {
        kernel: usize,
        info: &'a KernelInfo,
        /// Why its artefacts could not be prepared (every case of it is then an error).
        error: Option<&'a str>,
        version_notes: &'a [VersionNote],
    },
    SuiteStarted {
        kernel: usize,
        info: &'a KernelInfo,
        suite: &'a str,
        cases: usize,
    },
    CaseStarted {
        case: CaseRef<'a>,
        /// Every case that has a guest right now, this one included.
        running: &'a [CaseRef<'a>],
    },
    StepFinished {
        case: CaseRef<'a>,
        step: &'a StepTiming,
    },
    SnapshotCompared {
        case: CaseRef<'a>,
        snapshot: &'a SnapshotResult,
    },
    CaseFinished {
        kernel: usize,
        outcome: &'a CaseOutcome,
    },
    SuiteFinished {
        kernel: usize,
        suite: &'a str,
    },
    KernelFinished {
        run: &'a KernelRun,
    },
    /// The report is complete (summary, coverage).
    RunFinished {
        report: &'a Report,
    },
}

/// A consumer of events. An error stops the run (exit 2): a reporter that cannot write its
/// output is a harness failure.
pub trait Reporter {
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReporterError>;
}

#[derive(Debug, thiserror::Error)]
#[error("writing {what}")]
pub struct ReporterError {
    pub what: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// KTAP v1 on a writer (stdout in the CLI): the contract CI parses.
pub struct KtapReporter<W: Write> {
    writer: Option<KtapWriter<W>>,
    out: Option<W>,
}

impl<W: Write> KtapReporter<W> {
    pub fn new(out: W) -> Self {
        Self { writer: None, out: Some(out) }
    }
}

impl<W: Write> Reporter for KtapReporter<W> {
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReporterError> {
        let err = |source| ReporterError { what: "KTAP (stdout)".into(), source };
        match event {
            Event::RunStarted { suites_per_kernel, kernels } => {
                let out = self.out.take().expect("RunStarted comes once");
                self.writer = Some(KtapWriter::new(out, suites_per_kernel * kernels).map_err(err)?);
                Ok(())
            }
            _ => {
                let Some(w) = self.writer.as_mut() else { return Ok(()) };
                match event {
                    Event::KernelPrepared { info, version_notes, .. } if !version_notes.is_empty() => {
                        w.diagnostic(&version_notes_line(info, version_notes)).map_err(err)
                    }
                    Event::SuiteStarted { info, suite, cases, .. } => {
                        let label = format!("{} ({})", info.release.as_deref().unwrap_or("unresolved"), info.spec);
                        w.begin_suite(suite, &label, *cases).map_err(err)
                    }
                    Event::CaseFinished { outcome, .. } => w.case(outcome).map_err(err),
                    Event::SuiteFinished { .. } => w.end_suite().map_err(err),
                    Event::RunFinished { report } => match &report.coverage {
                        Some(c) => w.diagnostic(&coverage_line(c)).map_err(err),
                        None => Ok(()),
                    },
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The lines people watch on stderr: which cases run now, each verdict, the totals.
pub struct ProgressReporter {
    progress: Progress,
    /// More than one guest at a time: say which are running.
    parallel: bool,
    /// New and changed snapshots were left as `.snap.new` files for review.
    pending_snapshots: bool,
}

impl ProgressReporter {
    pub fn new(progress: &Progress, parallel: bool, pending_snapshots: bool) -> Self {
        Self { progress: progress.clone(), parallel, pending_snapshots }
    }
}

impl Reporter for ProgressReporter {
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReporterError> {
        let p = &self.progress;
        match event {
            Event::KernelPrepared { info, version_notes, error, .. } => {
                if let Some(e) = error {
                    p.note(format!("error: kernel {}: {e}", info.spec));
                } else if !version_notes.is_empty() {
                    p.note(version_notes_line(info, version_notes));
                }
            }
            Event::CaseStarted { running, .. } if self.parallel => {
                let names: Vec<String> = running.iter().map(|c| label(c, running)).collect();
                p.note(format!("running {}: {}", names.len(), names.join(", ")));
            }
            Event::CaseFinished { outcome, .. } => {
                let why = match outcome.status {
                    super::model::Status::Skip => format!(": {}", outcome.skip_reason.as_deref().unwrap_or("")),
                    super::model::Status::Error => format!(": {}", first_line(outcome.error.as_deref().unwrap_or(""))),
                    _ => String::new(),
                };
                p.note(format!(
                    "{} › {}: {:?} ({:.1}s){why}",
                    outcome.suite, outcome.case, outcome.status, outcome.duration_s
                ));
            }
            Event::RunFinished { report } => {
                if let Some(c) = &report.coverage {
                    p.note(coverage_line(c));
                }
                snapshot_line(report, self.pending_snapshots, p);
                let s = &report.summary;
                p.note(format!("done: {} passed, {} failed, {} skipped, {} errors", s.pass, s.fail, s.skip, s.error));
            }
            _ => {}
        }
        Ok(())
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `suite › case`, with the kernel when the running cases are from several kernels.
fn label(c: &CaseRef<'_>, all: &[CaseRef<'_>]) -> String {
    if all.iter().any(|o| o.kernel != c.kernel) {
        format!("{} › {} [{}]", c.suite, c.case, c.kernel_spec)
    } else {
        format!("{} › {}", c.suite, c.case)
    }
}

fn version_notes_line(info: &KernelInfo, notes: &[VersionNote]) -> String {
    let ids: Vec<&str> = notes.iter().map(|n| n.id.as_str()).collect();
    format!(
        "kernel {} ({}) departs from SPEC.md (6.1) in {}: see suites/spec/versions.yaml",
        info.release.as_deref().unwrap_or("?"),
        info.spec,
        ids.join(" ")
    )
}

fn coverage_line(c: &crate::suite::spec::Coverage) -> String {
    let missing = if c.missing.is_empty() { "none".to_string() } else { c.missing.join(" ") };
    format!(
        "SPEC coverage: {}/{} assertions checked by cases that ran; not covered: {missing}",
        c.covered.len(),
        c.total
    )
}

/// One line on what the run's snapshots did, and what to do about new or changed ones.
fn snapshot_line(report: &Report, pending: bool, p: &Progress) {
    let all: Vec<&SnapshotResult> = report.runs.iter().flat_map(|r| &r.cases).flat_map(|c| &c.snapshots).collect();
    if all.is_empty() {
        return;
    }
    let count = |st: SnapshotStatus| all.iter().filter(|r| r.status == st).count();
    let (matched, new, changed, accepted) = (
        count(SnapshotStatus::Matched),
        count(SnapshotStatus::New),
        count(SnapshotStatus::Changed),
        count(SnapshotStatus::Accepted),
    );
    let mut line = format!("snapshots: {matched} matched, {new} new, {changed} changed, {accepted} accepted");
    if new + changed > 0 {
        line.push_str(if pending {
            "; review the .snap.new files with `cargo insta review`, or store them all with --snapshots accept"
        } else {
            "; store them with --snapshots accept"
        });
    }
    p.note(line);
}

/// The result files (report.json, junit.xml, kcidb.json, report.html), written once the
/// report is complete, each atomically.
pub struct FilesReporter {
    out: PathBuf,
    files: super::ResultFiles,
    progress: Progress,
}

impl FilesReporter {
    pub fn new(out: PathBuf, files: super::ResultFiles, progress: &Progress) -> Self {
        Self { out, files, progress: progress.clone() }
    }
}

impl Reporter for FilesReporter {
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReporterError> {
        if let Event::RunFinished { report } = event {
            super::write_all(report, &self.out, &self.files)
                .map_err(|e| ReporterError { what: e.path, source: e.source })?;
            self.progress.note(format!("results in {}", self.out.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ktap_follows_the_events() {
        let info =
            KernelInfo { spec: "6.1".into(), release: Some("6.1.0-57-amd64".into()), version: None, config: None };
        let mut out = Vec::new();
        {
            let mut r = KtapReporter::new(&mut out);
            let mut c = CaseOutcome::new("lifecycle", "remove-while-enabled", vec!["RM1".into()]);
            c.status = super::super::model::Status::Pass;
            for e in [
                Event::RunStarted { suites_per_kernel: 1, kernels: 1 },
                Event::KernelPrepared { kernel: 0, info: &info, error: None, version_notes: &[] },
                Event::SuiteStarted { kernel: 0, info: &info, suite: "lifecycle", cases: 1 },
                Event::CaseFinished { kernel: 0, outcome: &c },
                Event::SuiteFinished { kernel: 0, suite: "lifecycle" },
            ] {
                r.report(&e).unwrap();
            }
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("KTAP version 1\n1..1\n"), "{text}");
        assert!(text.contains("    ok 1 remove-while-enabled\n"), "{text}");
        assert!(text.ends_with("ok 1 lifecycle\n"), "{text}");
    }
}
