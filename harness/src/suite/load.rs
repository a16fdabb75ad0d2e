//! Reading suite files: serde does the typing, [`validate`] the rules serde cannot express;
//! every error names file:line:column and what was expected.

use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::model::{Case, KmsgStep, Requires, Step, Suite, WaitStep};

/// A suite file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: cannot read suite file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}{}", path.display(), snippet_suffix(snippet))]
    Invalid { path: PathBuf, line: u64, column: u64, message: String, snippet: String },
    #[error("unknown suite `{name}`; available: {}", available.join(", "))]
    UnknownSuite { name: String, available: Vec<String> },
}

fn snippet_suffix(s: &str) -> String {
    crate::yaml::Located::snippet_suffix(s)
}

/// Load and validate one suite file.
pub fn load_suite(path: &Path) -> Result<Suite, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read { path: path.into(), source })?;
    parse_suite(path, &text)
}

/// Parse and validate suite text; `path` is only used in messages.
pub fn parse_suite(path: &Path, text: &str) -> Result<Suite, SuiteError> {
    let suite: Suite = serde_saphyr::from_str(text).map_err(|e| from_yaml_error(path, &e))?;
    if let Some((loc, message)) = validate(&suite).into_iter().next() {
        return Err(located(path, text, loc, message));
    }
    Ok(suite)
}

/// Every problem of one suite file, each with its location: what `suites check` reports. A
/// YAML or type error ends the reading of the file (it is the only one reported for it); the
/// rest are all found. `modules`, when given, are the reference modules that exist.
pub fn check_suite_file(path: &Path, modules: Option<&[String]>) -> Vec<SuiteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(source) => return vec![SuiteError::Read { path: path.into(), source }],
    };
    let suite: Suite = match serde_saphyr::from_str(&text) {
        Ok(s) => s,
        Err(e) => return vec![from_yaml_error(path, &e)],
    };
    let mut problems: Vec<Invalid> = validate(&suite);
    if let Some(known) = modules {
        for case in &suite.cases {
            for step in &case.steps {
                if let Some(m) = step.value.module().filter(|m| !known.iter().any(|k| k == m)) {
                    problems.push((
                        step.referenced,
                        format!("unknown reference module `{m}`; there are: {}", known.join(", ")),
                    ));
                }
            }
        }
    }
    problems.sort_by_key(|(loc, _)| (loc.line(), loc.column()));
    problems.into_iter().map(|(loc, message)| located(path, &text, loc, message)).collect()
}

fn from_yaml_error(path: &Path, e: &serde_saphyr::Error) -> SuiteError {
    let l = crate::yaml::Located::from_saphyr(path, e);
    SuiteError::Invalid { path: path.into(), line: l.line, column: l.column, message: l.message, snippet: l.snippet }
}

fn located(path: &Path, text: &str, loc: Location, message: String) -> SuiteError {
    let l = crate::yaml::Located::at(text, loc, message);
    SuiteError::Invalid { path: path.into(), line: l.line, column: l.column, message: l.message, snippet: l.snippet }
}

type Invalid = (Location, String);

fn check(ok: bool, loc: Location, msg: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((loc, msg()))
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A SPEC.md id: one to three capital letters and a number (`L1`, `RM2`, `AR6`).
fn is_spec_id(s: &str) -> bool {
    let letters = s.chars().take_while(|c| c.is_ascii_uppercase()).count();
    (1..=3).contains(&letters) && s.len() > letters && s[letters..].chars().all(|c| c.is_ascii_digit())
}

/// Every problem of a suite serde could read, in file order (a step reports its first).
fn validate(suite: &Suite) -> Vec<Invalid> {
    let mut out = Vec::new();
    out.extend(
        check(suite.version.value == 1, suite.version.referenced, || {
            format!("unsupported suite format version {}, expected 1", suite.version.value)
        })
        .err(),
    );
    out.extend(
        check(is_ident(&suite.suite.value), suite.suite.referenced, || {
            format!("suite name `{}` must be lowercase letters, digits, `-` or `_`", suite.suite.value)
        })
        .err(),
    );
    let mut seen = std::collections::BTreeSet::new();
    for case in &suite.cases {
        out.extend(validate_case(case));
        out.extend(
            check(seen.insert(case.name()), case.name.referenced, || format!("duplicate case name `{}`", case.name()))
                .err(),
        );
    }
    out
}

fn validate_case(case: &Case) -> Vec<Invalid> {
    let at = case.name.referenced;
    let mut out: Vec<Invalid> = Vec::new();
    out.extend(
        check(is_ident(case.name()), at, || {
            format!("case name `{}` must be lowercase letters, digits, `-` or `_`", case.name())
        })
        .err(),
    );
    out.extend(
        check(!case.spec.is_empty(), at, || {
            format!("case `{}` cites no SPEC ids; expected e.g. `spec: [L1, D1]`", case.name())
        })
        .err(),
    );
    for id in &case.spec {
        out.extend(
            check(is_spec_id(&id.value), id.referenced, || {
                format!("`{}` is not a SPEC.md assertion id; expected letters and a number, e.g. D3", id.value)
            })
            .err(),
        );
    }
    out.extend(check(!case.steps.is_empty(), at, || format!("case `{}` has no steps", case.name())).err());
    for step in &case.steps {
        out.extend(validate_step(step).err());
    }
    if let Some(r) = &case.requires {
        out.extend(validate_requires(r).err());
    }
    out.extend(validate_order(case).err());
    for id in super::mutate::unknown_equivalent_ids(case) {
        out.push((
            id.referenced,
            format!(
                "equivalent_mutants: case `{}` has no mutant `{}` (ids are `<step line>:<operator>[:<index>]`, as `suites mutate` prints them)",
                case.name(),
                id.value
            ),
        ));
    }
    out
}

fn validate_errno(e: &Option<super::model::ErrnoName>, at: Location) -> Result<(), Invalid> {
    for name in e.iter().flat_map(|e| e.values()).flatten() {
        check(klp_protocol::errno_by_name(name).is_some(), at, || {
            format!("unknown errno `{name}`; expected a name such as EINVAL, EBUSY, ENOENT, EAGAIN")
        })?;
    }
    Ok(())
}

fn validate_step(step: &Spanned<Step>) -> Result<(), Invalid> {
    let at = step.referenced;
    if let Some(overlap) = step.value.per_kernel_values().into_iter().flatten().next() {
        return Err((at, overlap));
    }
    if let Some(r) = step.value.kernels() {
        super::per_kernel::VersionRange::parse(r).map_err(|e| (at, format!("kernels: {e}")))?;
    }
    match &step.value {
        Step::Load(m) | Step::Unload(m) => {
            check(!m.module.is_empty(), at, || "empty module name".into())?;
            validate_errno(&m.expect_errno, at)
        }
        Step::Write(w) => validate_errno(&w.expect_errno, at),
        Step::Read(r) => {
            validate_errno(&r.expect_errno, at)?;
            let checks = [&r.equals, &r.not_equals, &r.contains].iter().filter(|c| c.is_some()).count();
            if r.expect_errno.is_some() {
                check(checks == 0, at, || "a read that expects an errno cannot also check the content".into())
            } else {
                check(checks > 0, at, || "a read needs `equals`, `not_equals`, `contains` or `expect_errno`".into())
            }
        }
        Step::Wait(w) => {
            let forms = [w.path.is_some(), w.absent.is_some(), w.exists.is_some(), w.kmsg.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            check(forms == 1, at, || {
                "a wait needs exactly one of `path` (with `equals`), `absent`, `exists` or `kmsg`".into()
            })?;
            check(w.since.is_none() || w.kmsg.is_some(), at, || "`since` goes with `kmsg`".into())?;
            if let Some(k) = &w.kmsg {
                validate_pattern(k, at)?;
            }
            check(w.path.is_none() || w.equals.is_some(), at, || "`wait: {path: …}` needs `equals`".into())?;
            check(w.equals.is_none() || w.path.is_some(), at, || "`equals` goes with `path`".into())?;
            check(w.timeout_s.is_none_or(|t| t > 0.0 && t <= 3600.0), at, || {
                "`timeout_s` must be between 0 and 3600 seconds".into()
            })
        }
        Step::ExpectExists(_) | Step::ExpectAbsent(_) | Step::Tree(_) | Step::Mark(_) | Step::StartReader(_) => Ok(()),
        Step::Snapshot(name) => check(is_ident(name), at, || {
            format!("snapshot name `{name}` must be lowercase letters, digits, `-` or `_`")
        }),
        Step::Stays(s) => {
            check(s.for_s > 0.0 && s.for_s <= 600.0, at, || "`for_s` must be between 0 and 600 seconds".into())
        }
        Step::Kmsg(k) => {
            let lists = || k.contains.values().into_iter().chain(k.absent.values());
            let any = lists().any(|l| !l.is_empty()) || !k.count.is_empty() || !k.min_count.is_empty();
            check(any, at, || "a kmsg step needs `contains`, `absent`, `count` or `min_count`".into())?;
            for p in lists().flatten().chain(k.count.keys()).chain(k.min_count.keys()) {
                validate_pattern(p, at)?;
            }
            Ok(())
        }
        Step::Taint(t) => {
            check(!t.set.is_empty() || !t.clear.is_empty(), at, || "a taint step needs `set` or `clear`".into())?;
            for l in t.set.iter().chain(&t.clear) {
                check(klp_protocol::taint::taint_bit(l).is_some(), at, || {
                    format!("`{l}` is not a taint flag letter; expected one of {}", klp_protocol::taint::TAINT_FLAGS)
                })?;
            }
            Ok(())
        }
        Step::PatchState(p) => check(p.equals.is_some() != p.none.is_some(), at, || {
            "a patch_state step needs exactly one of `equals` and `none`".into()
        }),
        Step::Reader(r) => {
            validate_errno(&r.expect_errno, at)?;
            let checks =
                [r.equals.is_some(), r.contains.is_some(), r.expect_errno.is_some()].iter().filter(|b| **b).count();
            check(checks >= 1, at, || "a reader step needs `equals`, `contains` or `expect_errno`".into())?;
            check(r.expect_errno.is_none() || checks == 1, at, || "`expect_errno` excludes content checks".into())
        }
    }
}

fn validate_pattern(p: &str, at: Location) -> Result<(), Invalid> {
    match p.strip_prefix("re:") {
        Some(re) => regex::Regex::new(re).map(|_| ()).map_err(|e| (at, format!("bad regex in `{p}`: {e}"))),
        None => Ok(()),
    }
}

/// Marks must be set before a `kmsg: {since: …}` uses them, and reader tags started before
/// their result is checked.
fn validate_order(case: &Case) -> Result<(), Invalid> {
    let mut marks = std::collections::BTreeSet::new();
    let mut readers = std::collections::BTreeSet::new();
    let mut snapshots = std::collections::BTreeSet::new();
    for step in &case.steps {
        match &step.value {
            Step::Snapshot(n) => {
                check(snapshots.insert(n.clone()), step.referenced, || {
                    format!("snapshot `{n}` is taken twice in this case")
                })?;
            }
            Step::Mark(m) => {
                marks.insert(m.clone());
            }
            Step::StartReader(r) => {
                check(readers.insert(r.tag.clone()), step.referenced, || {
                    format!("reader `{}` is started twice", r.tag)
                })?;
            }
            Step::Kmsg(KmsgStep { since: Some(m), .. }) | Step::Wait(WaitStep { since: Some(m), .. }) => {
                check(marks.contains(&m.value), m.referenced, || format!("no `mark: {}` before this step", m.value))?;
            }
            Step::Reader(r) => {
                check(readers.contains(&r.tag), step.referenced, || {
                    format!("no `start_reader` with tag `{}` before this step", r.tag)
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_requires(r: &Requires) -> Result<(), Invalid> {
    for v in [&r.min_kernel, &r.max_kernel].into_iter().flatten() {
        check(crate::suite::KernelVersion::parse(&v.value).is_some(), v.referenced, || {
            format!("`{}` is not a kernel version; expected e.g. 6.1 or 6.11.3", v.value)
        })?;
    }
    Ok(())
}

/// Check that every module the suite loads is one that was built; else a located error.
pub fn check_modules(path: &Path, text: &str, suite: &Suite, built: &[String]) -> Result<(), SuiteError> {
    for case in &suite.cases {
        for step in &case.steps {
            if let Some(m) = step.value.module() {
                if !built.iter().any(|b| b == m) {
                    return Err(located(
                        path,
                        text,
                        step.referenced,
                        format!("unknown reference module `{m}`; built: {}", built.join(", ")),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Turn `--suite NAME|PATH` arguments into suite files; no arguments means every suite in `dir`.
pub fn resolve_suite_args(args: &[String], dir: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    let available = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    if args.is_empty() {
        return Ok(available().into_iter().map(|n| dir.join(format!("{n}.yaml"))).collect());
    }
    args.iter()
        .map(|a| {
            let p = Path::new(a);
            if a.contains('/') || a.ends_with(".yaml") || a.ends_with(".yml") {
                // A path: a missing file is reported by `load_suite` with the path.
                Ok(p.to_path_buf())
            } else if dir.join(format!("{a}.yaml")).is_file() {
                Ok(dir.join(format!("{a}.yaml")))
            } else {
                Err(SuiteError::UnknownSuite { name: a.clone(), available: available() })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = r#"version: 1
suite: demo
cases:
  - name: one
    spec: [L1, RM2]
    steps:
      - load: klp_ref_cmdline
      - load: {module: klp_ref_cmdline, expect_errno: EEXIST}
      - read: {path: /proc/cmdline, contains: "patched"}
      - write: {path: /sys/kernel/livepatch/klp_ref_cmdline/enabled, value: "0"}
      - wait: {absent: /sys/kernel/livepatch/klp_ref_cmdline, timeout_s: 5}
      - unload: {module: klp_ref_cmdline}
      - expect_absent: /sys/module/klp_ref_cmdline
"#;

    #[test]
    fn good_suite_parses() {
        let s = parse_suite(Path::new("demo.yaml"), GOOD).unwrap();
        assert_eq!(s.name(), "demo");
        assert_eq!(s.cases[0].spec_ids(), vec!["L1", "RM2"]);
        assert_eq!(s.cases[0].steps.len(), 7);
        assert_eq!(s.modules(), vec!["klp_ref_cmdline"]);
        match &s.cases[0].steps[1].value {
            Step::Load(m) => assert_eq!(m.expect_errno.as_ref().unwrap().any().as_deref(), Some("EEXIST")),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.cases[0].steps[2].referenced.line(), 9);
    }

    #[rstest]
    #[case::unknown_key("      - write: {path: /a, value: '1', extra: 2}\n", 8, "unknown field `extra`")]
    #[case::wrong_type("      - wait: {absent: /a, timeout_s: [1]}\n", 8, "timeout_s")]
    #[case::unknown_step("      - lod: m\n", 8, "unknown variant `lod`")]
    #[case::unknown_errno("      - unload: {module: m, expect_errno: EWHAT}\n", 8, "unknown errno `EWHAT`")]
    #[case::two_wait_forms("      - wait: {absent: /a, exists: /b}\n", 8, "exactly one of")]
    #[case::read_without_check("      - read: {path: /a}\n", 8, "a read needs")]
    #[case::module_map_unknown_key("      - load: {module: m, param: x}\n", 8, "unknown field `param`")]
    fn bad_steps_are_located(#[case] step: &str, #[case] line: u64, #[case] what: &str) {
        let text = format!(
            "version: 1\nsuite: demo\ncases:\n  - name: one\n    spec: [L1]\n    steps:\n      - load: m\n{step}"
        );
        let err = parse_suite(Path::new("suites/demo.yaml"), &text).unwrap_err();
        let shown = err.to_string();
        match &err {
            SuiteError::Invalid { line: l, column, message, .. } => {
                assert_eq!(*l, line, "{shown}");
                assert!(*column > 0, "{shown}");
                assert!(message.contains(what) || shown.contains(what), "{shown}");
            }
            other => panic!("{other:?}"),
        }
        assert!(shown.starts_with(&format!("suites/demo.yaml:{line}:")), "{shown}");
    }

    #[rstest]
    #[case::bad_version("version: 2\nsuite: d\ncases: []\n", 1, "version 2")]
    #[case::bad_spec_id(
        "version: 1\nsuite: d\ncases:\n  - name: a\n    spec: [l1]\n    steps: [{load: m}]\n",
        5,
        "not a SPEC"
    )]
    #[case::no_spec(
        "version: 1\nsuite: d\ncases:\n  - name: a\n    spec: []\n    steps: [{load: m}]\n",
        4,
        "cites no SPEC"
    )]
    #[case::dup_case(
        "version: 1\nsuite: d\ncases:\n  - name: a\n    spec: [L1]\n    steps: [{load: m}]\n  - name: a\n    spec: [L1]\n    steps: [{load: m}]\n",
        7,
        "duplicate case"
    )]
    #[case::top_unknown("version: 1\nsuite: d\ncase: []\n", 3, "unknown field `case`")]
    fn bad_files_are_located(#[case] text: &str, #[case] line: u64, #[case] what: &str) {
        let err = parse_suite(Path::new("x.yaml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("x.yaml:{line}:")), "{shown}");
        assert!(shown.contains(what), "{shown}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_suite(Path::new("/nonexistent/suite.yaml")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/suite.yaml: cannot read"), "{err}");
    }

    #[test]
    fn unknown_module_is_located() {
        let p = Path::new("demo.yaml");
        let s = parse_suite(p, GOOD).unwrap();
        let err = check_modules(p, GOOD, &s, &["other".into()]).unwrap_err().to_string();
        assert!(err.starts_with("demo.yaml:7:"), "{err}");
        assert!(check_modules(p, GOOD, &s, &["klp_ref_cmdline".into()]).is_ok());
    }

    #[test]
    fn suite_args_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "").unwrap();
        let all = resolve_suite_args(&[], dir.path()).unwrap();
        assert_eq!(all, vec![dir.path().join("a.yaml"), dir.path().join("b.yaml")]);
        assert_eq!(resolve_suite_args(&["b".into()], dir.path()).unwrap(), vec![dir.path().join("b.yaml")]);
        let e = resolve_suite_args(&["c".into()], dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown suite `c`") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn spec_ids() {
        for ok in ["L1", "RM2", "AR6", "SH5"] {
            assert!(is_spec_id(ok), "{ok}");
        }
        for bad in ["l1", "L", "1", "LLLL1", "L1a"] {
            assert!(!is_spec_id(bad), "{bad}");
        }
    }
}
