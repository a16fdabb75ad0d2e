//! `report merge`: one report out of the `report.json` files of shards — nextest partitions
//! (`cargo nextest run -p klp-conform-suites --partition count:K/N`, one `report.json` per case),
//! several machines each running some kernels or suites, or whole runs. Cases are matched by
//! their stable id (kernel release + `klp_conformance.<suite>.<case>`), the same in every shard:
//!
//! * a case reported by two shards with the same result is kept once; with different results
//!   (status, or the step that failed) the merge is refused, naming the case and both files;
//! * a case the suites define for a kernel that no shard reported (a shard that never ran, or
//!   died before writing) is reported, and becomes an `error` case of the merged report, so
//!   the exit code says the run is incomplete.
//!
//! The merged directory is laid out like one run's: the logs and kernel configs the reports
//! refer to are copied to the same relative paths, so every link in the merged files works.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::model::{CaseOutcome, KernelInfo, KernelRun, Report, Status, REPORT_SCHEMA};

/// One shard's `report.json`; its relative paths are relative to the file's directory.
#[derive(Debug, Clone)]
pub struct Shard {
    pub path: PathBuf,
    pub report: Report,
}

impl Shard {
    pub fn load(path: &Path) -> Result<Self, MergeError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MergeError::Read { path: path.to_path_buf(), source })?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| MergeError::Parse { path: path.to_path_buf(), why: e.to_string() })?;
        if report.schema != REPORT_SCHEMA {
            return Err(MergeError::Parse {
                path: path.to_path_buf(),
                why: format!("schema {:?}, expected {REPORT_SCHEMA:?}", report.schema),
            });
        }
        Ok(Self { path: path.to_path_buf(), report })
    }

    fn dir(&self) -> &Path {
        self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a klp-conform report: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("{0}: no report.json in it")]
    NoReports(PathBuf),
    #[error(transparent)]
    Conflict(Box<Conflict>),
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One case, two shards, two results.
#[derive(Debug, thiserror::Error)]
#[error(
    "case {suite}/{case} on {kernel} is reported twice with different results: {first_result} in {first}, \
     {second_result} in {second}"
)]
pub struct Conflict {
    pub kernel: String,
    pub suite: String,
    pub case: String,
    pub first: PathBuf,
    pub first_result: String,
    pub second: PathBuf,
    pub second_result: String,
}

/// Every `report.json` of the inputs: an input is a `report.json` itself, or a directory
/// searched recursively (a nextest results tree holds one per case). Each directory input
/// must hold at least one.
pub fn find_reports(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, MergeError> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), MergeError> {
        let entries = std::fs::read_dir(dir).map_err(|source| MergeError::Read { path: dir.to_path_buf(), source })?;
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                // What a run writes besides its reports: never a shard of its own.
                if !matches!(e.file_name().to_str(), Some("logs" | "images" | "kernels")) {
                    walk(&path, found)?;
                }
            } else if e.file_name() == "report.json" {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    for input in inputs {
        if input.is_file() {
            found.push(input.clone());
            continue;
        }
        let before = found.len();
        walk(input, &mut found)?;
        if found.len() == before {
            return Err(MergeError::NoReports(input.clone()));
        }
    }
    Ok(found)
}

/// A case the suites define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCase {
    pub suite: String,
    pub case: String,
    pub spec: Vec<String>,
}

/// What the shards together must cover: every case of the selected suites on each kernel.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Kernels that must be there (a `--kernel` spec such as `6.1`, or a release); the kernels
    /// the shards report are always checked too.
    pub kernels: Vec<String>,
    /// In suite file order.
    pub cases: Vec<ExpectedCase>,
}

impl Expected {
    /// The cases of these suite files whose `<suite>/<case>` matches one of `patterns` (every
    /// case when there are none).
    pub fn from_suites(files: &[PathBuf], patterns: &[String]) -> Result<Self, String> {
        let mut set = globset::GlobSetBuilder::new();
        for p in patterns {
            set.add(globset::Glob::new(p).map_err(|e| format!("--case {p}: {e}"))?);
        }
        let set = set.build().map_err(|e| e.to_string())?;
        let mut cases = Vec::new();
        for f in files {
            let suite = crate::suite::load_suite(f).map_err(|e| e.to_string())?;
            for c in &suite.cases {
                if patterns.is_empty() || set.is_match(format!("{}/{}", suite.name(), c.name())) {
                    cases.push(ExpectedCase { suite: suite.name().into(), case: c.name().into(), spec: c.spec_ids() });
                }
            }
        }
        Ok(Self { kernels: Vec::new(), cases })
    }
}

/// The merged report and what the merge found on the way.
#[derive(Debug)]
pub struct Merged {
    pub report: Report,
    /// `<release or spec>: <suite>/<case>` of every expected case no shard reported.
    pub missing: Vec<String>,
    /// Cases reported more than once with the same result (kept once).
    pub duplicates: usize,
    /// Files the merged report refers to: (where the shard has it, path relative to the
    /// merged directory).
    pub files: Vec<(PathBuf, String)>,
}

struct KernelEntry {
    run: KernelRun,
    /// By case id: the outcome and the shard it came from.
    cases: BTreeMap<String, (CaseOutcome, usize)>,
}

/// What makes two reports of one case the same result.
fn result_of(c: &CaseOutcome) -> String {
    match (&c.failure, c.status) {
        (Some(f), Status::Fail) => format!("fail at step {}", f.step),
        (_, s) => format!("{s:?}").to_lowercase(),
    }
}

/// Merge shards (in the order given: the first report of a kernel gives its accelerator and
/// notes). `expected: None` checks nothing for completeness.
pub fn merge(shards: &[Shard], expected: Option<&Expected>) -> Result<Merged, MergeError> {
    let mut kernels: Vec<KernelEntry> = Vec::new();
    let mut duplicates = 0;
    let mut config_from: BTreeMap<usize, usize> = BTreeMap::new();
    for (si, shard) in shards.iter().enumerate() {
        for run in &shard.report.runs {
            let key = run.kernel.release.clone().unwrap_or_else(|| run.kernel.spec.clone());
            let k = match kernels.iter().position(|e| kernel_key(&e.run.kernel) == key) {
                Some(k) => k,
                None => {
                    kernels.push(KernelEntry {
                        run: KernelRun { cases: Vec::new(), ..run.clone() },
                        cases: BTreeMap::new(),
                    });
                    kernels.len() - 1
                }
            };
            let entry = &mut kernels[k];
            if run.kernel.config.is_some() && !config_from.contains_key(&k) {
                entry.run.kernel.config = run.kernel.config.clone();
                config_from.insert(k, si);
            }
            for c in &run.cases {
                match entry.cases.get(&c.id) {
                    None => {
                        entry.cases.insert(c.id.clone(), (c.clone(), si));
                    }
                    Some((first, fi)) if result_of(first) != result_of(c) => {
                        return Err(MergeError::Conflict(Box::new(Conflict {
                            kernel: key,
                            suite: c.suite.clone(),
                            case: c.case.clone(),
                            first: shards[*fi].path.clone(),
                            first_result: result_of(first),
                            second: shard.path.clone(),
                            second_result: result_of(c),
                        })));
                    }
                    Some(_) => duplicates += 1,
                }
            }
        }
    }

    let mut missing = Vec::new();
    let order: BTreeMap<String, usize> = expected
        .map(|e| e.cases.iter().enumerate().map(|(i, c)| (super::model::case_id(&c.suite, &c.case), i)).collect())
        .unwrap_or_default();
    if let Some(exp) = expected {
        for k in &exp.kernels {
            if !kernels.iter().any(|e| e.run.kernel.spec == *k || e.run.kernel.release.as_deref() == Some(k)) {
                kernels.push(KernelEntry {
                    run: KernelRun {
                        kernel: KernelInfo { spec: k.clone(), release: None, version: None, config: None },
                        accel: "auto".into(),
                        accel_note: None,
                        guest_start: "boot".into(),
                        version_notes: Vec::new(),
                        cases: Vec::new(),
                    },
                    cases: BTreeMap::new(),
                });
            }
        }
        for e in &mut kernels {
            let label = kernel_key(&e.run.kernel);
            for c in &exp.cases {
                let id = super::model::case_id(&c.suite, &c.case);
                if let std::collections::btree_map::Entry::Vacant(slot) = e.cases.entry(id) {
                    missing.push(format!("{label}: {}/{}", c.suite, c.case));
                    let outcome = CaseOutcome::new(&c.suite, &c.case, c.spec.clone()).errored(
                        "no shard reported this case: a shard is missing, or it stopped before writing its report",
                    );
                    slot.insert((outcome, usize::MAX));
                }
            }
        }
    }

    let mut files = Vec::new();
    let mut runs = Vec::new();
    for (k, e) in kernels.into_iter().enumerate() {
        let mut run = e.run;
        if let (Some(rel), Some(&si)) = (&run.kernel.config, config_from.get(&k)) {
            files.push((shards[si].dir().join(rel), rel.clone()));
        }
        let mut cases: Vec<(CaseOutcome, usize)> = e.cases.into_values().collect();
        cases.sort_by(|(a, _), (b, _)| {
            let rank = |c: &CaseOutcome| order.get(&c.id).copied().unwrap_or(usize::MAX);
            (rank(a), &a.suite, &a.case).cmp(&(rank(b), &b.suite, &b.case))
        });
        for (c, si) in &cases {
            if let Some(shard) = shards.get(*si) {
                files.extend(c.logs.values().map(|rel| (shard.dir().join(rel), rel.clone())));
            }
        }
        run.cases = cases.into_iter().map(|(c, _)| c).collect();
        runs.push(run);
    }
    Ok(Merged { report: Report::new(runs), missing, duplicates, files })
}

fn kernel_key(k: &KernelInfo) -> String {
    k.release.clone().unwrap_or_else(|| k.spec.clone())
}

/// Copy the files the merged report refers to into `out`, at the same relative paths. A path
/// that is not plainly relative (absolute, or with `..`) is not followed; a file a shard does
/// not have is left out (the report still names it).
pub fn copy_files(files: &[(PathBuf, String)], out: &Path) -> Result<usize, MergeError> {
    let mut copied = 0;
    for (from, rel) in files {
        let rel_path = Path::new(rel);
        if !rel_path.components().all(|c| matches!(c, Component::Normal(_))) || !from.is_file() {
            continue;
        }
        let to = out.join(rel_path);
        let same = match (from.canonicalize(), to.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            continue;
        }
        let err = |source| MergeError::Copy { from: from.clone(), to: to.clone(), source };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let data = std::fs::read(from).map_err(err)?;
        crate::fsutil::write_atomic(&to, &data).map_err(err)?;
        copied += 1;
    }
    Ok(copied)
}

/// The merged report as KTAP (the same shape as a run's: one top-level test per kernel ×
/// suite, cases as subtests).
pub fn write_ktap(report: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let groups: Vec<(&KernelRun, Vec<&[CaseOutcome]>)> =
        report.runs.iter().map(|r| (r, r.cases.chunk_by(|a, b| a.suite == b.suite).collect::<Vec<_>>())).collect();
    let total = groups.iter().map(|(_, g)| g.len()).sum();
    let mut w = super::ktap::KtapWriter::new(out, total)?;
    for (run, suites) in groups {
        let label = format!("{} ({})", run.kernel.release.as_deref().unwrap_or("unresolved"), run.kernel.spec);
        for cases in suites {
            w.begin_suite(&cases[0].suite, &label, cases.len())?;
            for c in cases {
                w.case(c)?;
            }
            w.end_suite()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(suite: &str, name: &str, status: Status) -> CaseOutcome {
        let mut c = CaseOutcome::new(suite, name, vec!["L1".into()]);
        c.status = status;
        if status == Status::Fail {
            c.failure = Some(super::super::model::Failure {
                step: "2: read /proc/cmdline".into(),
                line: Some(7),
                expected: "a".into(),
                actual: "b".into(),
            });
        }
        c
    }

    fn shard(path: &str, release: &str, cases: Vec<CaseOutcome>) -> Shard {
        Shard {
            path: PathBuf::from(path).join("report.json"),
            report: Report::new(vec![KernelRun {
                kernel: KernelInfo { spec: "6.1".into(), release: Some(release.into()), version: None, config: None },
                accel: "tcg".into(),
                accel_note: None,
                guest_start: "restore".into(),
                version_notes: Vec::new(),
                cases,
            }]),
        }
    }

    #[test]
    fn same_result_twice_is_kept_once_and_order_follows_the_suites() {
        let a = shard("a", "6.1.0-57-amd64", vec![case("s", "two", Status::Pass), case("s", "one", Status::Skip)]);
        let b = shard("b", "6.1.0-57-amd64", vec![case("s", "two", Status::Pass)]);
        let exp = Expected {
            kernels: vec![],
            cases: ["one", "two"]
                .iter()
                .map(|c| ExpectedCase { suite: "s".into(), case: (*c).into(), spec: vec![] })
                .collect(),
        };
        let m = merge(&[a, b], Some(&exp)).unwrap();
        assert_eq!(m.duplicates, 1);
        assert!(m.missing.is_empty());
        let names: Vec<_> = m.report.runs[0].cases.iter().map(|c| c.case.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(m.report.exit_code(), 0);
    }

    #[test]
    fn a_different_failing_step_is_a_conflict() {
        let a = shard("a", "r", vec![case("s", "c", Status::Fail)]);
        let mut other = case("s", "c", Status::Fail);
        other.failure.as_mut().unwrap().step = "3: unload x".into();
        let b = shard("b", "r", vec![other]);
        let e = merge(&[a, b], None).unwrap_err().to_string();
        assert!(e.contains("s/c on r") && e.contains("step 2") && e.contains("step 3"), "{e}");
    }

    #[test]
    fn the_same_case_on_two_kernels_is_two_cases() {
        let a = shard("a", "6.1.0-57-amd64", vec![case("s", "c", Status::Pass)]);
        let b = shard("b", "6.12.95+deb12-amd64", vec![case("s", "c", Status::Fail)]);
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.report.runs.len(), 2);
        assert_eq!(m.report.exit_code(), 1);
    }

    #[test]
    fn an_expected_kernel_no_shard_ran_is_missing_whole() {
        let a = shard("a", "6.1.0-57-amd64", vec![case("s", "c", Status::Pass)]);
        let exp = Expected {
            kernels: vec!["6.1".into(), "6.12".into()],
            cases: vec![ExpectedCase { suite: "s".into(), case: "c".into(), spec: vec![] }],
        };
        let m = merge(&[a], Some(&exp)).unwrap();
        assert_eq!(m.missing, ["6.12: s/c"]);
        assert_eq!(m.report.runs[1].cases[0].status, Status::Error);
        assert_eq!(m.report.exit_code(), 2);
    }

    #[test]
    fn unsafe_paths_are_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("x.log");
        std::fs::write(&src, "x").unwrap();
        let out = dir.path().join("out");
        let n =
            copy_files(&[(src.clone(), "../escape.log".into()), (src, "logs/k/s/c/console.log".into())], &out).unwrap();
        assert_eq!(n, 1);
        assert!(out.join("logs/k/s/c/console.log").is_file());
        assert!(!dir.path().join("escape.log").exists());
    }
}
