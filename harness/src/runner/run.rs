//! A whole run: for each kernel, prepare the artefacts once (kernel, agent, modules,
//! initramfs, accelerator), then give every case a freshly booted guest — a forced patch pins
//! its module for the rest of a boot (SPEC F5), so no case may inherit another's state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::exec::{run_case_with, SnapshotContext};
use super::guest::VmGuest;
use super::schedule;
use crate::image::GuestRecipe;
use crate::kernel::{self, Kernel, KernelSpec};
use crate::progress::Progress;
use crate::report::event::{CaseRef, Event, Reporter, ReporterError};
use crate::report::model::*;
use crate::snapshot::SnapshotSettings;
use crate::suite::{self, Suite};
use crate::vm::{self, Accel, Vm, VmConfig};
use crate::{image, kmod};

pub struct RunConfig {
    pub kernels: Vec<KernelSpec>,
    pub suites: Vec<PathBuf>,
    pub out: PathBuf,
    pub accel: Accel,
    /// Downloads and builds that outlive a run (kernels, `core`, modules, accel probe).
    pub cache: PathBuf,
    /// The klp-conform checkout: `reference-kmod/` and the agent crate are built from it.
    pub workspace: PathBuf,
    /// Regression snapshots: where they are stored and what to do on a difference.
    pub snapshots: SnapshotSettings,
    /// Cases run in this many guests at once.
    pub jobs: usize,
    /// Every case boots its own guest instead of starting from a saved booted one.
    pub fresh_boot: bool,
    /// Keep the initramfs and the saved booted guest in the cache (`<cache>/boot/<release>/`),
    /// named by what they are made of, for later runs and concurrent processes to start from
    /// (the nextest harness runs one case per process). Otherwise they live in `out` and the
    /// saved guest is deleted at the end of the run.
    pub shared_guest: bool,
    /// Where the JUnit and KCIDB files go (`report.json` and `report.html` go to `out`).
    pub reports: crate::report::ResultFiles,
    /// Only the cases whose `<suite>/<case>` matches one of these globs (none: every case).
    pub cases: Vec<String>,
    /// Mutation testing (`suites mutate`): every case that runs is replaced by its baseline
    /// and its mutants ([`suite::mutate::expand`]), each its own case `<case>@<id>` with its
    /// own guest; skipped and unplannable cases keep their name.
    pub mutate: bool,
    /// With `mutate`: only these mutants (`<suite>/<case>@<id>`), with their cases' baselines.
    pub mutants_only: Option<std::collections::BTreeSet<String>>,
    /// With `mutate`: only this share of the mutants (`--sample`); a case none of whose
    /// mutants is in it does not run at all.
    pub mutant_sample: Option<suite::mutate::Sample>,
    /// Users' own modules (`--module`), checked: carried into the guest beside the reference
    /// modules and loadable by name.
    pub user_modules: Vec<crate::usermod::UserModule>,
    /// Where the snapshots of some cases go instead of [`RunConfig::snapshots`]: keyed by
    /// `<suite>/<case>` or by `<suite>` (users' modules keep theirs out of `suites/snapshots`).
    pub snapshot_overrides: std::collections::BTreeMap<String, SnapshotSettings>,
    /// Also run the kernel's own livepatch selftests (`--suite upstream`, [`crate::upstream`]):
    /// one restored guest per script, over virtiofs, each test a case.
    pub upstream: bool,
    /// Kernel mutants (`suites mutate --kernel-mutants`, [`crate::kernel_mutants`]): when not
    /// empty, every case that runs is replaced by its control `<case>@kernel:none` and one run
    /// `<case>@kernel:<id>` per mutant id here, each in its own guest, where the runner loads
    /// `klp_mutant mutant=<id>` right after the guest starts and before the case's steps (a load
    /// that fails skips the run with the module's reason). Snapshot steps are left out.
    pub kernel_mutants: Vec<String>,
}

impl RunConfig {
    /// The snapshot settings of one case.
    pub fn snapshot_settings(&self, suite: &str, case: &str) -> &SnapshotSettings {
        let base = case.split('@').next().unwrap_or(case);
        self.snapshot_overrides
            .get(&format!("{suite}/{base}"))
            .or_else(|| self.snapshot_overrides.get(suite))
            .unwrap_or(&self.snapshots)
    }
}

/// Errors that stop a run before any case can be judged (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Suite(#[from] suite::SuiteError),
    #[error(transparent)]
    Recipe(#[from] image::RecipeError),
    #[error("{0}")]
    Selection(String),
    /// A full disk or an unwritable place in the cache or the output directory, met while
    /// preparing a kernel: the run stops there.
    #[error("{0}; the run stopped here (the cache keeps only whole entries: the next run goes on from them)")]
    Storage(String),
    #[error("writing results: {}", crate::fsutil::describe_io_error(.source, .path, None))]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<ReporterError> for RunError {
    fn from(e: ReporterError) -> Self {
        RunError::Output { path: e.what, source: e.source }
    }
}

struct LoadedSuite {
    path: PathBuf,
    text: String,
    suite: Suite,
    /// The kernel's own selftests: cases come from each kernel's source, not from a file.
    upstream: bool,
}

/// The stand-in suite of `--suite upstream` (its cases are each kernel's selftests).
fn upstream_suite() -> LoadedSuite {
    let text = format!("version: 1\nsuite: {}\ncases: []\n", crate::upstream::SUITE);
    let suite: Suite = serde_saphyr::from_str(&text).expect("a fixed, valid suite");
    LoadedSuite { path: PathBuf::from(crate::upstream::SUITE), text, suite, upstream: true }
}

/// Everything a kernel's cases share.
struct Prepared {
    kernel: Kernel,
    /// What QEMU boots: the uncompressed vmlinux when it could be extracted, else the bzImage.
    boot_kernel: PathBuf,
    initramfs: PathBuf,
    /// What the guest is made of (`images/guest.yaml`).
    guest: GuestRecipe,
    accel: Accel,
    accel_note: Option<String>,
    /// The booted guest every case starts from, unless `--fresh-boot` (or saving failed).
    saved: Option<vm::SavedState>,
    /// Names of the users' own modules (`--module`) in the initramfs.
    user_modules: Vec<String>,
    /// The kernel's selftests, built and assembled, when `--suite upstream` (or why not).
    upstream: Option<Result<crate::upstream::Artefacts, String>>,
}

/// Run every suite on every kernel, telling `reporters` what happens (see
/// [`crate::report::event`]); progress on long preparation work goes to `progress`. Returns the
/// report (its `exit_code()` is the process's).
pub fn run(cfg: &RunConfig, reporters: &mut [&mut dyn Reporter], progress: &Progress) -> Result<Report, RunError> {
    // Parse everything first: a bad suite file is reported before any download or boot.
    let suites = load_selected(cfg)?;
    // So is a bad guest recipe.
    let guest = GuestRecipe::from_workspace(&cfg.workspace)?;
    std::fs::create_dir_all(&cfg.out).map_err(|source| RunError::Output { path: cfg.out.clone(), source })?;
    crate::report::check_writable(&cfg.out, &cfg.reports)?;

    // The scheduler's callbacks all report, one after the other on this thread.
    let reporters = std::cell::RefCell::new(reporters);
    let emit = |e: &Event<'_>| -> Result<(), RunError> {
        for r in reporters.borrow_mut().iter_mut() {
            r.report(e)?;
        }
        Ok(())
    };
    emit(&Event::RunStarted { suites_per_kernel: suites.len(), kernels: cfg.kernels.len() })?;
    let notes = match suite::spec::VersionNotes::load(&cfg.workspace.join("suites/spec/versions.yaml")) {
        Ok(n) => n,
        Err(e) => {
            progress.note(format!("no version notes: {e}"));
            suite::spec::VersionNotes::default()
        }
    };
    // Every kernel's artefacts first (downloads and builds are the CPU's, not the guests'),
    // then every case of every kernel through one pool of guests.
    // What each kernel lacks is said for all of them before anything is built or booted.
    let checked: Vec<Result<Kernel, String>> =
        cfg.kernels.iter().map(|spec| precheck(spec, cfg, &guest, &suites, progress)).collect();
    let mut prepared: Vec<PreparedKernel> = Vec::new();
    for ((k, spec), checked) in cfg.kernels.iter().enumerate().zip(checked) {
        // A cache or output directory that cannot take what the run writes stops the run:
        // every later kernel and case would fail the same way.
        let p = checked.and_then(|kernel| prepare(kernel, cfg, &guest, &suites, progress));
        if let Err(e) = &p {
            if crate::fsutil::names_storage_failure(e) {
                return Err(RunError::Storage(e.clone()));
            }
        }
        let info = KernelInfo {
            spec: spec.to_string(),
            release: p.as_ref().ok().map(|p| p.kernel.release.clone()),
            version: p.as_ref().ok().map(|p| p.kernel.version.clone()),
            config: p.as_ref().ok().and_then(|p| crate::report::keep_kernel_config(&cfg.out, &p.kernel, progress)),
        };
        let version_notes = match p.as_ref().ok().and_then(|p| suite::kernel_version(&p.kernel)) {
            Some(v) => notes.applying_to(v),
            None => Vec::new(),
        };
        emit(&Event::KernelPrepared {
            kernel: k,
            info: &info,
            error: p.as_ref().err().map(String::as_str),
            version_notes: &version_notes,
        })?;
        prepared.push(PreparedKernel { info, prepared: p, version_notes });
    }
    let items = plan_items(cfg, &suites, &prepared);
    let case_ref = |w| case_ref(w, &prepared, &suites);
    let mut cases: Vec<Vec<CaseOutcome>> = vec![Vec::new(); prepared.len()];
    // Live events cannot stop the scheduler at once: their first error is kept and ends the
    // run at the next delivery.
    let reporter_error: std::cell::RefCell<Option<RunError>> = std::cell::RefCell::new(None);
    let emit_live = |e: &Event<'_>| {
        let mut err = reporter_error.borrow_mut();
        if err.is_none() {
            *err = emit(e).err();
        }
    };
    let result = schedule::run_in_order(
        &items,
        cfg.jobs,
        |w| w.exclusive,
        |_, w, live: &dyn Fn(Live)| match &w.todo {
            Todo::Done(outcome) => vec![outcome.clone()],
            Todo::Script { script, bases, selected } => {
                let p = prepared[w.kernel].prepared.as_ref().expect("only prepared kernels run cases");
                let outs = run_script(p, script, bases.clone(), &cfg.out);
                outs.into_iter().zip(selected).filter(|(_, keep)| **keep).map(|(o, _)| o).collect()
            }
            Todo::Run { case, base, preload } => {
                let p = prepared[w.kernel].prepared.as_ref().expect("only prepared kernels run cases");
                let snap = SnapshotContext {
                    settings: cfg.snapshot_settings(suites[w.suite].suite.name(), case.name()),
                    source: relative_to(&suites[w.suite].path, &cfg.workspace),
                    suite: suites[w.suite].suite.name().to_string(),
                    release: kernel::snapshot_key(&cfg.kernels[w.kernel], &p.kernel.release),
                };
                vec![run_one(p, &suites[w.suite].suite, case, base.clone(), preload.as_deref(), &cfg.out, &snap, live)]
            }
        },
        |i, running| {
            if items[i].runs() {
                let running: Vec<CaseRef> =
                    running.iter().filter(|&&j| items[j].runs()).map(|&j| case_ref(&items[j])).collect();
                emit_live(&Event::CaseStarted { case: case_ref(&items[i]), running: &running });
            }
        },
        |i, live| match live {
            Live::Step(step) => emit_live(&Event::StepFinished { case: case_ref(&items[i]), step: &step }),
            Live::Snapshot(s) => emit_live(&Event::SnapshotCompared { case: case_ref(&items[i]), snapshot: &s }),
        },
        |i, outcomes: Vec<CaseOutcome>| {
            if let Some(e) = reporter_error.borrow_mut().take() {
                return Err(e);
            }
            let w = &items[i];
            let info = &prepared[w.kernel].info;
            let suite = suites[w.suite].suite.name();
            if w.first_of_suite {
                let cases: usize =
                    items.iter().filter(|x| x.kernel == w.kernel && x.suite == w.suite).map(|x| x.outcomes).sum();
                emit(&Event::SuiteStarted { kernel: w.kernel, info, suite, cases })?;
            }
            for outcome in outcomes {
                emit(&Event::CaseFinished { kernel: w.kernel, outcome: &outcome })?;
                cases[w.kernel].push(outcome);
            }
            if w.last_of_suite {
                emit(&Event::SuiteFinished { kernel: w.kernel, suite })?;
            }
            Ok::<(), RunError>(())
        },
    );
    result?;
    if let Some(e) = reporter_error.into_inner() {
        return Err(e);
    }
    let mut runs = Vec::new();
    for (pk, cases) in prepared.into_iter().zip(cases) {
        let (accel, accel_note, restored) = match &pk.prepared {
            Ok(p) => (p.accel.to_string(), p.accel_note.clone(), p.saved.is_some()),
            Err(_) => (cfg.accel.to_string(), None, false),
        };
        if let Ok(Prepared { saved: Some(s), .. }) = &pk.prepared {
            // 80-odd MB per kernel: not a result, only what the cases started from (a shared
            // one stays in the cache for the next process).
            if !cfg.shared_guest {
                let _ = std::fs::remove_file(&s.state);
            }
        }
        let guest_start = if restored { "restore" } else { "boot" }.to_string();
        let run = KernelRun { kernel: pk.info, accel, accel_note, guest_start, version_notes: pk.version_notes, cases };
        emit(&Event::KernelFinished { run: &run })?;
        runs.push(run);
    }
    let mut report = Report::new(runs);
    report.coverage = coverage(&report, &cfg.workspace, progress);
    emit(&Event::RunFinished { report: &report })?;
    Ok(report)
}

fn case_ref<'a>(w: &'a WorkItem, prepared: &'a [PreparedKernel], suites: &'a [LoadedSuite]) -> CaseRef<'a> {
    CaseRef {
        kernel: w.kernel,
        kernel_spec: &prepared[w.kernel].info.spec,
        suite: suites[w.suite].suite.name(),
        case: &w.case_name,
    }
}

/// Every suite file of the run, parsed, with only the cases `--case` selects.
fn load_selected(cfg: &RunConfig) -> Result<Vec<LoadedSuite>, RunError> {
    let suites = cfg
        .suites
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).map_err(|source| suite::SuiteError::Read { path: p.clone(), source })?;
            let suite = suite::parse_suite(p, &text)?;
            Ok(LoadedSuite { path: p.clone(), text, suite, upstream: false })
        })
        .collect::<Result<Vec<_>, suite::SuiteError>>()?;
    let mut suites = select_cases(suites, &cfg.cases, cfg.upstream)?;
    if cfg.upstream {
        suites.push(upstream_suite());
    }
    Ok(suites)
}

/// Keep the cases `--case` selects (`<suite>/<case>` globs), and the suites that still have
/// one. A pattern that selects nothing is an error: a typo must not look like a green run.
fn select_cases(
    mut suites: Vec<LoadedSuite>,
    patterns: &[String],
    upstream: bool,
) -> Result<Vec<LoadedSuite>, RunError> {
    if patterns.is_empty() {
        return Ok(suites);
    }
    let mut matchers = Vec::new();
    for p in patterns {
        let glob =
            globset::Glob::new(p).map_err(|e| RunError::Selection(format!("--case {p}: {e}")))?.compile_matcher();
        // The upstream cases are known once each kernel's source is there (see plan_items).
        let upstream_pattern = upstream && p.starts_with(&format!("{}/", crate::upstream::SUITE));
        matchers.push((p, glob, upstream_pattern));
    }
    for ls in &mut suites {
        let name = ls.suite.name().to_string();
        ls.suite.cases.retain(|c| {
            let id = format!("{name}/{}", c.name());
            let mut keep = false;
            for (_, m, used) in matchers.iter_mut() {
                if m.is_match(&id) {
                    *used = true;
                    keep = true;
                }
            }
            keep
        });
    }
    if let Some((p, _, _)) = matchers.iter().find(|(_, _, used)| !used) {
        return Err(RunError::Selection(format!(
            "--case {p} matches no case; cases are named <suite>/<case>, e.g. transition/held-by-kthread or 'force/*'"
        )));
    }
    suites.retain(|ls| !ls.suite.cases.is_empty());
    Ok(suites)
}

/// A kernel with its artefacts (or why it has none) and what the report says of it.
struct PreparedKernel {
    info: KernelInfo,
    prepared: Result<Prepared, String>,
    version_notes: Vec<suite::spec::VersionNote>,
}

/// What a running case reports before it is done.
enum Live {
    Step(StepTiming),
    Snapshot(crate::snapshot::SnapshotResult),
}

/// `--list`: what a run would do on each kernel, case by case, with the reasons of skips and
/// of errors known up front, without building or booting anything (kernels are resolved,
/// which may fetch them, to read their version and config).
pub fn list(cfg: &RunConfig, out: &mut dyn std::io::Write, progress: &Progress) -> Result<(), RunError> {
    let suites = load_selected(cfg)?;
    let guest = GuestRecipe::from_workspace(&cfg.workspace)?;
    let w = |out: &mut dyn std::io::Write, line: String| {
        writeln!(out, "{line}").map_err(|source| RunError::Output { path: "stdout".into(), source })
    };
    for spec in &cfg.kernels {
        let kernel = match kernel::resolve(spec, &cfg.cache, progress) {
            Ok(k) => k,
            Err(e) => {
                w(out, format!("kernel {spec}: cannot be resolved: {}", chain(&e)))?;
                continue;
            }
        };
        w(out, format!("kernel {spec} → {} ({})", kernel.release, kernel.version))?;
        let prereq = kernel::config::KConfig::load(&kernel.config)
            .ok()
            .and_then(|c| kernel::prereq::harness_message(&kernel.release, &c, &guest));
        let (mut run, mut skip, mut error) = (0, 0, 0);
        for ls in &suites {
            if ls.upstream {
                let (r, e) = list_upstream(&kernel, cfg, prereq.as_deref(), out)?;
                run += r;
                error += e;
            }
            for case in &ls.suite.cases {
                let id = format!("{}/{}", ls.suite.name(), case.name());
                let line = if let Some(msg) = &prereq {
                    error += 1;
                    format!("  error {id}: {}", msg.lines().next().unwrap_or(""))
                } else if let Some(why) = suite::case_skip_reason(case, &kernel) {
                    skip += 1;
                    format!("  skip  {id}: {why}")
                } else if let Err(why) = plan(&ls.path, case, &kernel) {
                    error += 1;
                    format!("  error {id}: {why}")
                } else {
                    run += 1;
                    match &case.exclusive {
                        Some(why) => format!("  run   {id} (alone: {why})"),
                        None => format!("  run   {id}"),
                    }
                };
                w(out, line)?;
            }
        }
        w(out, format!("  {} cases: {run} run, {skip} skip, {error} error", run + skip + error))?;
    }
    Ok(())
}

/// `--list` of the kernel's own selftests: their tests when the kernel's source is at hand,
/// else what will be fetched. Returns (run, error) counts.
fn list_upstream(
    kernel: &Kernel,
    cfg: &RunConfig,
    prereq: Option<&str>,
    out: &mut dyn std::io::Write,
) -> Result<(usize, usize), RunError> {
    let mut w =
        |line: String| writeln!(out, "{line}").map_err(|source| RunError::Output { path: "stdout".into(), source });
    let suite = crate::upstream::SUITE;
    let scripts = crate::kernel::source::cached(kernel, &cfg.cache)
        .map(|src| crate::upstream::discover(&src.selftests()).map(|s| (src, s)));
    match scripts {
        None => {
            w(format!(
                "  run   {suite}/*: the kernel's own livepatch selftests, from its source (fetched at run time)"
            ))?;
            Ok((1, 0))
        }
        Some(Err(e)) => {
            w(format!("  error {suite}/*: {e}"))?;
            Ok((0, 1))
        }
        Some(Ok((src, scripts))) => {
            let globs: Vec<globset::GlobMatcher> =
                cfg.cases.iter().filter_map(|p| globset::Glob::new(p).ok()).map(|g| g.compile_matcher()).collect();
            let (mut run, mut error) = (0, 0);
            for s in &scripts {
                for t in &s.tests {
                    let id = format!("{suite}/{}", s.case_name(t));
                    if !globs.is_empty() && !globs.iter().any(|g| g.is_match(&id)) {
                        continue;
                    }
                    match prereq {
                        Some(msg) => {
                            error += 1;
                            w(format!("  error {id}: {}", msg.lines().next().unwrap_or("")))?;
                        }
                        None => {
                            run += 1;
                            w(format!("  run   {id} ({}, in {})", s.file, src.origin))?;
                        }
                    }
                }
            }
            Ok((run, error))
        }
    }
}

/// What to do for one case on one kernel, decided before any guest boots.
enum Todo {
    /// Its outcome is already known: skipped by `requires`, or an error (kernel not prepared,
    /// no expectation for this kernel).
    Done(CaseOutcome),
    /// Boot a guest and run the case planned for this kernel.
    Run { case: Box<suite::Case>, base: CaseOutcome, preload: Option<String> },
    /// One of the kernel's own selftest scripts in one guest: an outcome per test (`bases`,
    /// in the script's order; `selected` says which of them `--case` keeps).
    Script { script: crate::upstream::Script, bases: Vec<CaseOutcome>, selected: Vec<bool> },
}

struct WorkItem {
    kernel: usize,
    suite: usize,
    case_name: String,
    first_of_suite: bool,
    last_of_suite: bool,
    /// Runs with no other guest beside it (the case says why).
    exclusive: bool,
    todo: Todo,
    /// How many case outcomes it delivers (a selftest script: one per selected test).
    outcomes: usize,
}

impl WorkItem {
    fn runs(&self) -> bool {
        matches!(self.todo, Todo::Run { .. } | Todo::Script { .. })
    }
}

/// Every case of every suite on every kernel, in report order.
fn plan_items(cfg: &RunConfig, suites: &[LoadedSuite], prepared: &[PreparedKernel]) -> Vec<WorkItem> {
    let mut items = Vec::new();
    for (k, pk) in prepared.iter().enumerate() {
        let prep = &pk.prepared;
        for (s, ls) in suites.iter().enumerate() {
            let first = items.len();
            if ls.upstream {
                items.extend(plan_upstream(cfg, k, s, prep));
            }
            for case in &ls.suite.cases {
                let base = CaseOutcome::new(ls.suite.name(), case.name(), case.spec_ids());
                let item = |case_name: &str, todo| WorkItem {
                    kernel: k,
                    suite: s,
                    case_name: case_name.to_string(),
                    first_of_suite: false,
                    last_of_suite: false,
                    exclusive: case.exclusive.is_some() && cfg.jobs > 1,
                    todo,
                    outcomes: 1,
                };
                let todo = match prep {
                    Err(e) => Todo::Done(base.errored(e.clone())),
                    Ok(p) => match suite::case_skip_reason(case, &p.kernel) {
                        Some(why) => Todo::Done(base.skipped(why)),
                        None => match plan(&ls.path, case, &p.kernel) {
                            Err(why) => Todo::Done(base.errored(why)),
                            Ok(planned) if !cfg.kernel_mutants.is_empty() => {
                                let mut ids = vec![crate::kernel_mutants::CONTROL];
                                ids.extend(cfg.kernel_mutants.iter().map(String::as_str));
                                for id in ids {
                                    let mut c = planned.clone();
                                    c.steps.retain(|s| !matches!(s.value, suite::Step::Snapshot(_)));
                                    c.name.value = crate::kernel_mutants::run_name(case.name(), id);
                                    let mut base = CaseOutcome::new(ls.suite.name(), c.name(), c.spec_ids());
                                    base.divergence = c.divergence_text();
                                    let preload = Some(format!("mutant={id}"));
                                    items.push(item(c.name(), Todo::Run { case: Box::new(c.clone()), base, preload }));
                                }
                                continue;
                            }
                            Ok(planned) if cfg.mutate => {
                                // The baseline always; a mutant if it is in the sample and, on
                                // a rerun, among the survivors.
                                let suite_name = ls.suite.name();
                                let wanted = |m: &suite::Case| {
                                    let Some((case, id)) = suite::mutate::split_name(m.name()) else {
                                        return false;
                                    };
                                    id == suite::mutate::ORIGINAL
                                        || (cfg.mutant_sample.is_none_or(|s| s.keeps(suite_name, case, id))
                                            && cfg.mutants_only.as_ref().is_none_or(|only| {
                                                only.contains(&format!("{suite_name}/{}", m.name()))
                                            }))
                                };
                                let runs: Vec<suite::Case> =
                                    suite::mutate::expand(&planned).into_iter().filter(|m| wanted(m)).collect();
                                // A baseline alone says nothing: no guest for a case left without mutants.
                                if runs.len() < 2 && (cfg.mutant_sample.is_some() || cfg.mutants_only.is_some()) {
                                    continue;
                                }
                                for m in runs {
                                    let mut base = CaseOutcome::new(suite_name, m.name(), m.spec_ids());
                                    base.divergence = m.divergence_text();
                                    let name = m.name().to_string();
                                    items.push(item(&name, Todo::Run { case: Box::new(m), base, preload: None }));
                                }
                                continue;
                            }
                            Ok(planned) => {
                                let mut base = base;
                                base.divergence = planned.divergence_text();
                                Todo::Run { case: Box::new(planned), base, preload: None }
                            }
                        },
                    },
                };
                items.push(item(case.name(), todo));
            }
            if let Some(f) = items.get_mut(first) {
                f.first_of_suite = true;
            }
            if items.len() > first {
                items.last_mut().expect("not empty").last_of_suite = true;
            }
        }
    }
    items
}

/// The work items of the kernel's own selftests on one kernel: one per script (with a case per
/// test that `--case` selects), or one error case when the kernel or its selftests could not be
/// prepared.
fn plan_upstream(cfg: &RunConfig, k: usize, s: usize, prep: &Result<Prepared, String>) -> Vec<WorkItem> {
    let suite = crate::upstream::SUITE;
    let item = |case_name: String, todo: Todo, outcomes: usize| WorkItem {
        kernel: k,
        suite: s,
        case_name,
        first_of_suite: false,
        last_of_suite: false,
        exclusive: false,
        todo,
        outcomes,
    };
    let artefacts = match prep {
        Err(e) => Err(e.clone()),
        Ok(p) => match &p.upstream {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => Err(e.clone()),
            None => Err("the selftests were not prepared".to_string()),
        },
    };
    let a = match artefacts {
        Ok(a) => a,
        Err(e) => {
            let out = CaseOutcome::new(suite, "selftests", Vec::new()).errored(e);
            return vec![item("selftests".into(), Todo::Done(out), 1)];
        }
    };
    let globs: Vec<globset::GlobMatcher> =
        cfg.cases.iter().filter_map(|p| globset::Glob::new(p).ok()).map(|g| g.compile_matcher()).collect();
    let mut items = Vec::new();
    for script in &a.scripts {
        let bases: Vec<CaseOutcome> =
            script.tests.iter().map(|t| CaseOutcome::new(suite, &script.case_name(t), Vec::new())).collect();
        let selected: Vec<bool> = bases
            .iter()
            .map(|b| globs.is_empty() || globs.iter().any(|g| g.is_match(format!("{suite}/{}", b.case))))
            .collect();
        let n = selected.iter().filter(|x| **x).count();
        if n > 0 {
            items.push(item(script.name.clone(), Todo::Script { script: script.clone(), bases, selected }, n));
        }
    }
    items
}

/// The case with its per-kernel expectations resolved for `kernel`; an error (before any
/// guest boots) when a step has none for it.
fn plan(suite_path: &Path, case: &suite::Case, kernel: &Kernel) -> Result<suite::Case, String> {
    let v = suite::kernel_version(kernel).ok_or_else(|| {
        format!("cannot tell the version of kernel {} to pick per-kernel expectations", kernel.release)
    })?;
    case.planned_for(v).map_err(|(at, why)| format!("{}:{}:{}: {why}", suite_path.display(), at.line(), at.column()))
}

/// SPEC ids checked by cases that ran to a verdict, against `suites/spec/ids.yaml`.
pub fn coverage(report: &Report, workspace: &Path, progress: &Progress) -> Option<suite::spec::Coverage> {
    let spec = match suite::spec::SpecIds::load(&workspace.join("suites/spec/ids.yaml")) {
        Ok(s) => s,
        Err(e) => {
            progress.note(format!("no SPEC coverage: {e}"));
            return None;
        }
    };
    let checked = report
        .runs
        .iter()
        .flat_map(|r| &r.cases)
        .filter(|c| matches!(c.status, Status::Pass | Status::Fail))
        .flat_map(|c| c.spec.iter().map(String::as_str));
    Some(suite::spec::Coverage::compute(&spec, checked))
}

/// The kernel, resolved, and its config checked against what the harness and the guest
/// recipe need (an error naming everything missing at once: every case of this kernel reports
/// it, exit 2) and what the cases need (said once here; those cases skip naming the option).
/// Nothing is built or booted yet.
fn precheck(
    spec: &KernelSpec,
    cfg: &RunConfig,
    guest: &GuestRecipe,
    suites: &[LoadedSuite],
    progress: &Progress,
) -> Result<Kernel, String> {
    let t = Instant::now();
    let kernel = kernel::resolve(spec, &cfg.cache, progress).map_err(|e| format!("kernel {spec}: {}", chain(&e)))?;
    let config = kernel::prereq::KernelConfig::load(&kernel.config)
        .map_err(|e| format!("kernel {}: reading its config {}: {e}", kernel.release, kernel.config.display()))?;
    if let Some(msg) = kernel::prereq::harness_message(&kernel.release, &config, guest) {
        return Err(msg);
    }
    for a in kernel::prereq::advice(&config, guest) {
        progress.note(format!("kernel {}: consider {}: {}", kernel.release, a.set, a.why));
    }
    let cases = suites.iter().flat_map(|ls| ls.suite.cases.iter().map(move |c| (ls.suite.name(), c)));
    if let Some(msg) = suite::config_gaps_message(&kernel.release, &suite::config_gaps(cases, &kernel)) {
        progress.note(msg);
    }
    progress.note(format!("kernel {} ready ({:.1}s)", kernel.release, t.elapsed().as_secs_f64()));
    Ok(kernel)
}

/// Agent, modules, initramfs and accelerator for one checked kernel; an error string is what
/// every case of this kernel reports as its `error`.
fn prepare(
    kernel: Kernel,
    cfg: &RunConfig,
    guest: &GuestRecipe,
    suites: &[LoadedSuite],
    progress: &Progress,
) -> Result<Prepared, String> {
    let t = Instant::now();
    let modules = kmod::build_all(&kernel, &cfg.workspace.join("reference-kmod"), &cfg.cache, progress)
        .map_err(|e| format!("building the reference modules for {}: {}", kernel.release, chain(&e)))?;
    progress.note(format!("{} reference modules ready ({:.1}s)", modules.modules.len(), t.elapsed().as_secs_f64()));
    let mut built: Vec<String> = modules.modules.keys().cloned().collect();
    built.extend(cfg.user_modules.iter().map(|m| m.name().to_string()));
    for ls in suites {
        suite::check_modules(&ls.path, &ls.text, &ls.suite, &built).map_err(|e| e.to_string())?;
    }

    let t = Instant::now();
    let agent = image::agent_binary(&cfg.workspace, progress)
        .map_err(|e| format!("building the guest agent: {}", chain(&e)))?;
    let mut ko: Vec<PathBuf> = modules.modules.values().cloned().collect();
    ko.extend(cfg.user_modules.iter().map(|m| m.path.clone()));
    let boot_modules = image::guest_modules(&kernel, guest)
        .map_err(|e| format!("the guest's own modules ({}): {}", guest.source.display(), chain(&e)))?;
    let image = image::Initramfs::new(&agent)
        .modules(&ko)
        .boot_modules(&boot_modules)
        .to_bytes()
        .map_err(|e| format!("making the initramfs: {}", chain(&e)))?;
    let shared = cfg.shared_guest.then(|| SharedGuest::new(&cfg.cache, &kernel.release, &image));
    let initramfs = match &shared {
        Some(s) => s.initramfs.clone(),
        None => cfg.out.join("images").join(format!("{}.cpio", kernel.release)),
    };
    // Content-named when shared: rewritten only when the file there does not hold these bytes
    // (a damaged disk, a truncated copy), which comparing ~10 MB tells at once.
    if shared.is_none() || std::fs::read(&initramfs).ok().as_deref() != Some(&image[..]) {
        crate::fsutil::write_atomic(&initramfs, &image)
            .map_err(|e| format!("writing the initramfs {}: {e}", initramfs.display()))?;
    }
    // The uncompressed vmlinux boots ~2 s faster under TCG than the bzImage (PVH entry).
    let (boot_kernel, how) = image::boot_image(&kernel, &cfg.cache, progress)
        .map_err(|e| format!("preparing the boot image: {}", chain(&e)))?;
    progress.note(format!("agent, initramfs and boot image ready: {how} ({:.1}s)", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let probe_dir = cfg.out.join("logs").join(&kernel.release).join("accel-probe");
    let probe = VmConfig { accel: Accel::Kvm, ..VmConfig::new(&boot_kernel, &initramfs, &probe_dir, guest) };
    let (accel, note) = vm::probe_accel(cfg.accel, &probe, &cfg.cache, progress)
        .map_err(|e| format!("choosing an accelerator: {}", chain(&e)))?;
    progress.note(format!("accelerator: {accel} ({:.1}s)", t.elapsed().as_secs_f64()));
    let saved = if cfg.fresh_boot {
        None
    } else {
        let t = Instant::now();
        let base = VmConfig {
            accel,
            ..VmConfig::new(
                &boot_kernel,
                &initramfs,
                &cfg.out.join("logs").join(&kernel.release).join("saved-guest"),
                guest,
            )
        };
        let saved = match &shared {
            Some(s) => s.saved_guest(&base, &boot_kernel, guest, accel, progress),
            None => save_booted_guest(&base, &cfg.out.join("images").join(format!("{}.vmstate", kernel.release)))
                .map(|s| (s, false)),
        };
        match saved {
            Ok((s, reused)) => {
                let how = if reused { "saved booted guest found in the cache" } else { "booted guest saved" };
                progress.note(format!(
                    "{how}; cases start from it: {} ({:.1}s)",
                    s.state.display(),
                    t.elapsed().as_secs_f64()
                ));
                Some(s)
            }
            Err(e) => {
                progress.note(format!("could not save a booted guest, every case boots its own: {e}"));
                None
            }
        }
    };
    let user_modules = cfg.user_modules.iter().map(|m| m.name().to_string()).collect();
    let upstream = suites.iter().any(|s| s.upstream).then(|| {
        let t = Instant::now();
        let a = crate::upstream::prepare(&kernel, &cfg.cache, progress)
            .map_err(|e| format!("the kernel's own livepatch selftests: {e}"));
        match &a {
            Ok(a) => progress.note(format!(
                "upstream: {} scripts, {} tests of {}; test modules built with {} ({:.1}s)",
                a.scripts.len(),
                a.scripts.iter().map(|s| s.tests.len()).sum::<usize>(),
                a.source.origin,
                a.built_with,
                t.elapsed().as_secs_f64()
            )),
            Err(e) => progress.note(format!("upstream: {e}")),
        }
        a
    });
    Ok(Prepared {
        kernel,
        boot_kernel,
        initramfs,
        guest: guest.clone(),
        accel,
        accel_note: Some(note),
        saved,
        user_modules,
        upstream,
    })
}

/// The initramfs and the saved booted guest of a kernel kept in the cache
/// (`<cache>/boot/<release>/`) for every run and process that would make the same ones: the
/// initramfs is named by the hash of its bytes, the saved guest by that and everything else the
/// restoring QEMU must agree with (boot image, guest recipe, accelerator, QEMU binary). The first
/// process saves it under a lock; the others wait for it and restore from it. Entries are
/// written whole (a rename) and never changed, so a reader never sees half of one.
struct SharedGuest {
    dir: PathBuf,
    image_hash: String,
    initramfs: PathBuf,
}

impl SharedGuest {
    fn new(cache: &Path, release: &str, image: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let dir = cache.join("boot").join(release);
        let image_hash = format!("{:x}", Sha256::digest(image));
        let initramfs = dir.join(format!("initramfs-{}.cpio", &image_hash[..16]));
        Self { dir, image_hash, initramfs }
    }

    fn saved_guest(
        &self,
        base: &VmConfig,
        boot_kernel: &Path,
        guest: &GuestRecipe,
        accel: Accel,
        progress: &Progress,
    ) -> Result<(vm::SavedState, bool), String> {
        use sha2::{Digest, Sha256};
        let identity = |p: &Path| match std::fs::metadata(p) {
            Ok(m) => format!("{} {} {:?}", p.display(), m.len(), m.modified().ok()),
            Err(_) => p.display().to_string(),
        };
        let qemu = crate::tools::find_tool("qemu-system-x86_64").map(|q| identity(&q)).unwrap_or_default();
        let key = format!("{}\n{}\n{guest:?}\n{accel}\n{qemu}\n", self.image_hash, identity(boot_kernel));
        let key = format!("{:x}", Sha256::digest(key.as_bytes()));
        let state = self.dir.join(format!("guest-{}.vmstate", &key[..16]));
        let lock = self.dir.join(format!("guest-{}.lock", &key[..16]));
        let _lock = crate::fsutil::FileLock::acquire(&lock).map_err(|e| format!("locking {}: {e}", lock.display()))?;
        let console = state.with_extension("console.log");
        // Verified like every cache entry: a truncated or unrecorded state is saved again.
        let entry = crate::cache::saved_guest(&state);
        if entry.verify_for_use(progress) && console.is_file() {
            return Ok((vm::SavedState { state, console }, true));
        }
        let saved = save_booted_guest(base, &state)?;
        let made_from = serde_json::json!({ "key": key, "initramfs": self.initramfs, "boot_kernel": boot_kernel });
        if let Err(e) = entry.record(made_from) {
            progress.note(format!(
                "cache: could not record {}: {}",
                state.display(),
                crate::fsutil::describe_io_error(&e, entry.record_path(), None)
            ));
        }
        Ok((saved, false))
    }
}

/// Boot a guest once and save it, agent ready, for every case to start from.
fn save_booted_guest(cfg: &VmConfig, state: &Path) -> Result<vm::SavedState, String> {
    let vm = Vm::boot(cfg).map_err(|e| format!("the VM did not boot: {}", chain(&e)))?;
    vm.save_state(state).map_err(|e| chain(&e))
}

/// The guest's whole kernel log (None when the agent cannot be asked any more), and whether it
/// was written to `path`, timestamped as dmesg prints it.
fn keep_kernel_log(vm: &mut Vm, path: &Path) -> Option<(Vec<klp_protocol::KmsgRecord>, bool)> {
    let records = vm.agent().read_kmsg(0).ok()?;
    let text: String = records
        .iter()
        .map(|r| format!("[{:>5}.{:06}] {}\n", r.ts_us / 1_000_000, r.ts_us % 1_000_000, r.text))
        .collect();
    let written = crate::fsutil::write_atomic(path, text.as_bytes()).is_ok();
    Some((records, written))
}

/// A guest for one case (or script), its console and logs in `workdir`: restored from the
/// kernel's saved booted guest, or booted when there is none.
fn start_guest(p: &Prepared, workdir: &Path) -> Result<Vm, vm::VmError> {
    let cfg = VmConfig { accel: p.accel, ..VmConfig::new(&p.boot_kernel, &p.initramfs, workdir, &p.guest) };
    match &p.saved {
        Some(state) => Vm::restore(&cfg, state),
        None => Vm::boot(&cfg),
    }
}

/// Boot a guest, (load the kernel mutant module with `preload` as its parameters,) run the
/// case's steps, keep console and kernel log, power off.
#[allow(clippy::too_many_arguments)]
fn run_one(
    p: &Prepared,
    suite: &Suite,
    case: &suite::Case,
    mut out: CaseOutcome,
    preload: Option<&str>,
    out_dir: &Path,
    snapshots: &SnapshotContext,
    live: &dyn Fn(Live),
) -> CaseOutcome {
    let started = Instant::now();
    out.started_at = Some(now_rfc3339());
    let rel = PathBuf::from("logs").join(&p.kernel.release).join(suite.name()).join(case.name());
    let workdir = out_dir.join(&rel);
    let _ = std::fs::remove_dir_all(&workdir);
    if let Err(e) = std::fs::create_dir_all(&workdir) {
        return out.errored(format!("creating {}: {e}", workdir.display()));
    }
    out.logs.insert("console".into(), rel.join("console.log").display().to_string());
    let mut vm = match start_guest(p, &workdir) {
        Ok(vm) => vm,
        Err(e) => {
            out.duration_s = started.elapsed().as_secs_f64();
            return out.errored(format!("the VM did not start: {}", chain(&e)));
        }
    };
    out.guest_start_s = Some(vm.boot_time().as_secs_f64());
    if let Some(after) = injected_agent_exit(suite.name(), case.name()) {
        if let Err(e) = vm.agent().inject_exit(after) {
            return out.errored(format!("injecting the agent's exit: {e}"));
        }
    }
    out.transport = Some("initramfs".into());
    if let Some(params) = preload {
        let t = Instant::now();
        let loaded = load_kernel_mutant(&mut vm, params);
        out.steps.push(StepTiming {
            step: format!("0: load {} {params} (kernel mutant, before the case)", crate::kernel_mutants::MODULE),
            duration_s: t.elapsed().as_secs_f64(),
        });
        if let Err(e) = loaded {
            vm.quit();
            out.duration_s = started.elapsed().as_secs_f64();
            return match e {
                PreloadError::NotApplicable(why) => out.skipped(format!("{}{why}", crate::kernel_mutants::SKIP_PREFIX)),
                PreloadError::Failed(why) => out.errored(why),
            };
        }
    }
    let result = run_case_with(case, &mut VmGuest::new(&mut vm), Some(snapshots), &mut |step, snaps| {
        live(Live::Step(step.clone()));
        for s in snaps {
            live(Live::Snapshot(s.clone()));
        }
    });

    // The kernel log is part of the evidence whatever the verdict (once the channel is lost
    // the agent is not asked again: this fails at once).
    if let Some((records, written)) = keep_kernel_log(&mut vm, &workdir.join("dmesg.log")) {
        if written {
            out.logs.insert("dmesg".into(), rel.join("dmesg.log").display().to_string());
        }
        // A user's module: what the kernel log says of it, shown with the case.
        let names: Vec<String> = case.modules().into_iter().filter(|m| p.user_modules.contains(m)).collect();
        if !names.is_empty() {
            out.notes = crate::usermod::module_kmsg(&records, &names);
            let text: String = out.notes.iter().map(|l| format!("{l}\n")).collect();
            if crate::fsutil::write_atomic(&workdir.join("module-kmsg.log"), text.as_bytes()).is_ok() {
                out.logs.insert("module_kmsg".into(), rel.join("module-kmsg.log").display().to_string());
            }
        }
    }
    // Nothing in the guest needs an orderly power-off (no disk): QEMU is told to quit.
    vm.quit();

    out.steps.extend(result.steps);
    out.snapshots = result.snapshots;
    out.duration_s = started.elapsed().as_secs_f64();
    if let Some(err) = result.harness_error {
        return out.errored(err);
    }
    if let Some(f) = result.failure {
        out.status = Status::Fail;
        out.failure = Some(f);
    }
    out
}

enum PreloadError {
    /// The module refused the mutant for this kernel, with its reason.
    NotApplicable(String),
    Failed(String),
}

/// `insmod klp_mutant.ko <params>` in the case's guest; a refusal is explained by the module's
/// `klp_mutant:` lines in the kernel log.
fn load_kernel_mutant(vm: &mut Vm, params: &str) -> Result<(), PreloadError> {
    let module = crate::kernel_mutants::MODULE;
    let path = image::guest_module_path(module);
    let agent = vm.agent();
    let errno = match agent.load_module(&path, params) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(errno)) => errno,
        Err(e) => return Err(PreloadError::Failed(format!("loading {module} {params}: {}", e.summary()))),
    };
    let said: Vec<String> = agent
        .read_kmsg(0)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.text)
        .filter(|t| t.starts_with(&format!("{module}:")))
        .collect();
    let why: Vec<&str> = said.iter().filter_map(|l| l.strip_prefix(crate::kernel_mutants::NOT_APPLICABLE)).collect();
    match why.is_empty() {
        false => Err(PreloadError::NotApplicable(why.join("; "))),
        true => Err(PreloadError::Failed(format!(
            "loading {module} {params} failed with {} ({}); kernel log: {}",
            errno.name,
            errno.message,
            if said.is_empty() { "nothing from the module".to_string() } else { said.join(" | ") }
        ))),
    }
}

/// The harness's own fault-injection tests kill the agent in the middle of a case:
/// `KLP_CONFORM_FAULT_AGENT_EXIT=<suite>/<case>[@<ms>]` makes the agent of that case exit
/// `<ms>` (default 1500) after the guest is up. Not a user feature; README "When things break".
fn injected_agent_exit(suite: &str, case: &str) -> Option<std::time::Duration> {
    let v = std::env::var(FAULT_AGENT_EXIT).ok()?;
    let (which, ms) = v.split_once('@').unwrap_or((&v, "1500"));
    (which == format!("{suite}/{case}")).then(|| std::time::Duration::from_millis(ms.parse().unwrap_or(1500)))
}

pub const FAULT_AGENT_EXIT: &str = "KLP_CONFORM_FAULT_AGENT_EXIT";

/// One of the kernel's own selftest scripts in a restored guest: shares hot-added, the root
/// assembled, `bash ./test-x.sh` run; an outcome per test of the script, in its order.
fn run_script(
    p: &Prepared,
    script: &crate::upstream::Script,
    mut bases: Vec<CaseOutcome>,
    out_dir: &Path,
) -> Vec<CaseOutcome> {
    use crate::upstream::{self, TestVerdict};
    let started = Instant::now();
    let started_at = now_rfc3339();
    let a = p.upstream.as_ref().and_then(|u| u.as_ref().ok()).expect("planned only with artefacts");
    let rel = PathBuf::from("logs").join(&p.kernel.release).join(upstream::SUITE).join(&script.name);
    let workdir = out_dir.join(&rel);
    let results = workdir.join("results");
    let _ = std::fs::remove_dir_all(&workdir);
    let all_errored = |bases: Vec<CaseOutcome>, why: String| -> Vec<CaseOutcome> {
        bases.into_iter().map(|b| b.errored(why.clone())).collect()
    };
    if let Err(e) = std::fs::create_dir_all(&results) {
        return all_errored(bases, format!("creating {}: {e}", results.display()));
    }
    for b in &mut bases {
        b.started_at = Some(started_at.clone());
        b.transport = Some("virtiofs".into());
        b.logs.insert("console".into(), rel.join("console.log").display().to_string());
    }
    let mut vm = match start_guest(p, &workdir) {
        Ok(vm) => vm,
        Err(e) => return all_errored(bases, format!("the VM did not start: {}", chain(&e))),
    };
    let guest_start = vm.boot_time().as_secs_f64();
    let steps = upstream::guest_root(Path::new("/"), &a.modules, &a.selftests, &results);
    let shares = match upstream::make_guest_root(&mut vm, &steps) {
        Ok(t) => t,
        Err(e) => {
            vm.quit();
            return all_errored(bases, format!("sharing the selftests into the guest: {}", chain(&e)));
        }
    };
    let exec = vm.agent().exec(
        &upstream::script_command(script),
        Some(upstream::GUEST_ROOT),
        upstream::GUEST_SELFTESTS,
        &upstream::script_env(a.kdir.as_deref()),
        upstream::SCRIPT_TIMEOUT,
    );
    // The kernel log is part of the evidence whatever the verdict.
    if let Some((_, true)) = keep_kernel_log(&mut vm, &workdir.join("dmesg.log")) {
        for b in &mut bases {
            b.logs.insert("dmesg".into(), rel.join("dmesg.log").display().to_string());
        }
    }
    let console = vm.console_text();
    vm.quit();
    let duration = started.elapsed().as_secs_f64();
    let (r, lost) = match exec {
        Ok(r) => (r, None),
        Err(e) => {
            // The agent never answered: what the script printed until then reached the host
            // through the results share (tee), so the tests it finished keep their verdicts.
            let gone = super::guest::GuestError::from_agent(&e);
            let judged = super::exec::judge_lost_guest(&gone, &console);
            let log = std::fs::read_to_string(results.join(format!("{}.log", script.name))).unwrap_or_default();
            let r = klp_protocol::ExecResult {
                code: None,
                signal: None,
                timed_out: false,
                stdout: log.lines().map(|l| klp_protocol::OutputLine { ms: 0, text: l.to_string() }).collect(),
                stderr: String::new(),
                elapsed_ms: 0,
            };
            (r, Some(judged))
        }
    };
    let mut text = String::new();
    for l in &r.stdout {
        text.push_str(&format!("[{:>8.3}] {}\n", l.ms as f64 / 1000.0, l.text));
    }
    if !r.stderr.is_empty() {
        text.push_str("--- stderr ---\n");
        text.push_str(&r.stderr);
    }
    let kept = crate::fsutil::write_atomic(&workdir.join("output.log"), text.as_bytes()).is_ok();
    if kept {
        for b in &mut bases {
            b.logs.insert("output".into(), rel.join("output.log").display().to_string());
        }
    }
    let mut verdicts = upstream::judge(script, &r);
    if let Some(judged) = lost {
        upstream::guest_lost(script, &mut verdicts, judged.map(|(_, actual)| actual));
    }
    let n = bases.len().max(1) as f64;
    bases
        .into_iter()
        .zip(verdicts)
        .map(|(mut b, v)| {
            b.guest_start_s = Some(guest_start);
            b.share_setup_s = Some(shares.total_s());
            b.duration_s = duration / n;
            b.steps = vec![
                StepTiming { step: "shares: virtiofsd start".into(), duration_s: shares.daemon_s },
                StepTiming { step: "shares: hot-add vhost-user-fs-pci".into(), duration_s: shares.hotadd_s },
                StepTiming { step: "shares: mount in the guest".into(), duration_s: shares.mount_s },
            ];
            match v {
                TestVerdict::Pass { seconds } => {
                    b.duration_s = seconds;
                    b.steps.push(StepTiming { step: format!("{}: the test", script.file), duration_s: seconds });
                    b
                }
                TestVerdict::Fail { diff, seconds } => {
                    b.duration_s = seconds;
                    b.status = Status::Fail;
                    b.failure = Some(Failure {
                        step: format!("{}: check_result", script.file),
                        line: None,
                        expected: "the kernel log of the test equals the script's expectation".into(),
                        actual: diff,
                    });
                    b
                }
                TestVerdict::Skip(why) => b.skipped(why),
                TestVerdict::Error(why) | TestVerdict::NotRun(why) => b.errored(why),
            }
        })
        .collect()
}

/// An error and its causes on one line, for report fields.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// [`chain`] for concrete error types.
pub fn chain_error<E: std::error::Error>(e: &E) -> String {
    chain(e)
}

/// `path` relative to `base` when it is below it (suite files in snapshot headers).
fn relative_to(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (p, b) = (abs(path), abs(base));
    p.strip_prefix(&b).unwrap_or(&p).display().to_string()
}
