//! `suites mutate`: the mutation score of the suites on a real kernel. Every selected case runs
//! once unmutated (its baseline) and once per mutant ([`crate::suite::mutate`]), each in its
//! own guest through the ordinary runner; a mutant is *killed* when its verdict is fail,
//! *survives* when it passes, and an error (a harness problem) is reported apart and counts as
//! neither. Mutants marked `equivalent_mutants` in the suite are not run and are listed with
//! their reason.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::model::{CaseOutcome, Report, Status};
use crate::suite::mutate::{self, ORIGINAL};
use crate::suite::{KernelVersion, Suite};

/// A case's name and the outcomes of its baseline and mutants.
type CaseOutcomes<'a> = (String, Vec<&'a CaseOutcome>);

pub const SCHEMA: &str = "klp-conform.mutate.v1";

#[derive(Debug, Clone, Serialize)]
pub struct MutationReport {
    pub schema: String,
    /// Case mutants (empty in a `--kernel-mutants` run).
    pub kernels: Vec<KernelMutation>,
    pub score: Score,
    /// Kernel mutants (`--kernel-mutants`): per kernel and mutant, the cases that detected it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_mutants: Option<crate::kernel_mutants::KernelMutants>,
    /// `--sample`: the share of the mutants this run judged (absent: all of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<mutate::Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelMutation {
    pub spec: String,
    pub release: Option<String>,
    pub suites: Vec<SuiteMutation>,
    pub score: Score,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteMutation {
    pub suite: String,
    pub cases: Vec<CaseMutation>,
    pub score: Score,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseMutation {
    pub case: String,
    /// `mutated`; `skip` (the case does not run on this kernel); `error` (it could not be
    /// planned or run, or its baseline did not pass: its mutants say nothing).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mutants the case has, equivalent ones included.
    pub mutants: usize,
    pub killed: usize,
    pub survived: Vec<Mutant>,
    /// Killed, but only when run again after surviving (`--reruns`): what the case checks
    /// there depends on timing. Counted in `killed`.
    pub killed_on_rerun: Vec<Mutant>,
    pub equivalent: Vec<Mutant>,
    pub errors: Vec<Mutant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mutant {
    pub id: String,
    /// What the mutant changes (survivors, errors) or why it is equivalent.
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Score {
    pub mutants: usize,
    pub killed: usize,
    pub survived: usize,
    pub equivalent: usize,
    pub errors: usize,
    /// killed / (killed + survived); absent when nothing was judged.
    pub score: Option<f64>,
}

impl Score {
    fn add(&mut self, o: &Score) {
        self.mutants += o.mutants;
        self.killed += o.killed;
        self.survived += o.survived;
        self.equivalent += o.equivalent;
        self.errors += o.errors;
        self.finish();
    }

    fn finish(&mut self) {
        let judged = self.killed + self.survived;
        self.score = (judged > 0).then(|| self.killed as f64 / judged as f64);
    }

    fn of(c: &CaseMutation) -> Score {
        let mut s = Score {
            mutants: c.mutants,
            killed: c.killed,
            survived: c.survived.len(),
            equivalent: c.equivalent.len(),
            errors: c.errors.len() + usize::from(c.status == "error"),
            score: None,
        };
        s.finish();
        s
    }

    fn render(&self) -> String {
        let pct = self.score.map_or("-".to_string(), |s| format!("{:.1}%", s * 100.0));
        format!(
            "{pct} ({} killed, {} survived, {} equivalent, {} error(s) of {} mutants)",
            self.killed, self.survived, self.equivalent, self.errors, self.mutants
        )
    }
}

/// The mutation report of a run made with `RunConfig::mutate`; `suites` are the selected
/// suites as loaded (to describe the mutants of each case as planned for each kernel).
pub fn build(report: &Report, suites: &[Suite], sample: Option<mutate::Sample>) -> MutationReport {
    let mut kernels = Vec::new();
    let mut total = Score::default();
    for run in &report.runs {
        let version = run.kernel.version.as_deref().and_then(KernelVersion::parse);
        let mut ksuites = Vec::new();
        let mut kscore = Score::default();
        // Outcomes by suite, then case, in report order.
        let mut by_suite: Vec<(String, Vec<CaseOutcomes>)> = Vec::new();
        for o in &run.cases {
            let (case, _) = mutate::split_name(&o.case).unwrap_or((&o.case, ""));
            if by_suite.last().is_none_or(|(s, _)| *s != o.suite) {
                by_suite.push((o.suite.clone(), Vec::new()));
            }
            let cases = &mut by_suite.last_mut().expect("pushed").1;
            if cases.last().is_none_or(|(c, _)| c != case) {
                cases.push((case.to_string(), Vec::new()));
            }
            cases.last_mut().expect("pushed").1.push(o);
        }
        for (suite_name, cases) in by_suite {
            let suite = suites.iter().find(|s| s.name() == suite_name);
            let mut sscore = Score::default();
            let mut out = Vec::new();
            for (case_name, outcomes) in cases {
                let case = suite.and_then(|s| s.cases.iter().find(|c| c.name() == case_name));
                let planned = case.zip(version).and_then(|(c, v)| c.planned_for(v).ok());
                let c = judge_case(&suite_name, &case_name, case, planned.as_ref(), &outcomes, sample);
                sscore.add(&Score::of(&c));
                out.push(c);
            }
            kscore.add(&sscore);
            ksuites.push(SuiteMutation { suite: suite_name, cases: out, score: sscore });
        }
        total.add(&kscore);
        kernels.push(KernelMutation {
            spec: run.kernel.spec.clone(),
            release: run.kernel.release.clone(),
            suites: ksuites,
            score: kscore,
        });
    }
    MutationReport { schema: SCHEMA.into(), kernels, score: total, kernel_mutants: None, sample }
}

fn judge_case(
    suite: &str,
    name: &str,
    case: Option<&crate::suite::Case>,
    planned: Option<&crate::suite::Case>,
    outcomes: &[&CaseOutcome],
    sample: Option<mutate::Sample>,
) -> CaseMutation {
    let mut all = planned.map(mutate::mutants).unwrap_or_default();
    // Under `--sample`, the case's mutants are those in the sample, equivalent ones included.
    all.retain(|m| sample.is_none_or(|s| s.keeps(suite, name, &m.id)));
    let describe = |id: &str| all.iter().find(|m| m.id == id).map_or_else(|| id.to_string(), |m| m.description.clone());
    let mut c = CaseMutation {
        case: name.to_string(),
        status: "mutated".into(),
        reason: None,
        mutants: all.len(),
        killed: 0,
        survived: Vec::new(),
        killed_on_rerun: Vec::new(),
        equivalent: case
            .map(|c| &c.equivalent_mutants)
            .into_iter()
            .flatten()
            .filter(|e| all.iter().any(|m| m.id == e.id.value))
            .map(|e| Mutant { id: e.id.value.clone(), description: e.why.trim().to_string(), error: None })
            .collect(),
        errors: Vec::new(),
    };
    // A case that did not run as mutants: skipped, or an error before any guest.
    if let [o] = outcomes {
        if mutate::split_name(&o.case).is_none() {
            c.mutants = 0;
            c.equivalent.clear();
            match o.status {
                Status::Skip => {
                    c.status = "skip".into();
                    c.reason = o.skip_reason.clone();
                }
                _ => {
                    c.status = "error".into();
                    c.reason = o.error.clone().or_else(|| Some(format!("{:?}", o.status)));
                }
            }
            return c;
        }
    }
    let baseline = outcomes.iter().find(|o| mutate::split_name(&o.case).is_some_and(|(_, id)| id == ORIGINAL));
    match baseline {
        Some(b) if b.status == Status::Pass => {}
        other => {
            c.status = "error".into();
            c.reason = Some(match other {
                Some(b) => match (&b.failure, &b.error) {
                    (Some(f), _) => format!(
                        "the case itself fails (step {}: expected {}, got {}), so its mutants say nothing",
                        f.step, f.expected, f.actual
                    ),
                    (_, Some(e)) => format!("the case itself could not run: {e}"),
                    _ => format!("the case itself is {:?}", b.status),
                },
                None => "the case's baseline did not run".into(),
            });
            return c;
        }
    }
    for o in outcomes {
        let Some((_, id)) = mutate::split_name(&o.case) else { continue };
        if id == ORIGINAL {
            continue;
        }
        let m = || Mutant { id: id.to_string(), description: describe(id), error: None };
        match o.status {
            Status::Fail => c.killed += 1,
            Status::Pass => c.survived.push(m()),
            _ => c.errors.push(Mutant {
                error: o.error.clone().or_else(|| o.skip_reason.clone()).or_else(|| Some(format!("{:?}", o.status))),
                ..m()
            }),
        }
    }
    c
}

impl MutationReport {
    /// The JSON of a `--kernel-mutants` run: no case mutants, the `kernel_mutants` section.
    pub fn of_kernel_mutants(km: crate::kernel_mutants::KernelMutants) -> Self {
        MutationReport {
            schema: SCHEMA.into(),
            kernels: Vec::new(),
            score: Score::default(),
            kernel_mutants: Some(km),
            sample: None,
        }
    }

    /// 0: no mutant that is not marked equivalent survived and nothing errored; 1: one
    /// survived; 2: errors only (mutants or baselines that could not be judged).
    pub fn exit_code(&self) -> i32 {
        if self.score.survived > 0 {
            1
        } else if self.score.errors > 0 {
            crate::cli::EXIT_HARNESS
        } else {
            0
        }
    }

    /// `<suite>/<case>@<id>` of every surviving mutant (for a rerun).
    pub fn survivor_names(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for k in &self.kernels {
            for s in &k.suites {
                for c in &s.cases {
                    for m in &c.survived {
                        out.insert(format!("{}/{}", s.suite, mutate::mutant_name(&c.case, &m.id)));
                    }
                }
            }
        }
        out
    }

    /// Take in a rerun of survivors: a mutant that failed there (with its case's baseline
    /// passing in the same run) moves from survived to killed.
    pub fn killed_on_rerun(&mut self, rerun: &Report, round: usize) {
        for run in &rerun.runs {
            let Some(k) = self.kernels.iter_mut().find(|k| k.spec == run.kernel.spec) else { continue };
            let baseline_ok = |suite: &str, case: &str| {
                run.cases.iter().any(|o| {
                    o.suite == suite && o.case == mutate::mutant_name(case, ORIGINAL) && o.status == Status::Pass
                })
            };
            for o in run.cases.iter().filter(|o| o.status == Status::Fail) {
                let Some((case, id)) = mutate::split_name(&o.case) else { continue };
                if id == ORIGINAL || !baseline_ok(&o.suite, case) {
                    continue;
                }
                let Some(s) = k.suites.iter_mut().find(|s| s.suite == o.suite) else { continue };
                let Some(c) = s.cases.iter_mut().find(|c| c.case == case) else { continue };
                if let Some(i) = c.survived.iter().position(|m| m.id == id) {
                    let mut m = c.survived.remove(i);
                    m.description = format!("{} (killed on rerun {round})", m.description);
                    c.killed += 1;
                    c.killed_on_rerun.push(m);
                }
            }
        }
        // Scores again, from the cases up.
        let mut total = Score::default();
        for k in &mut self.kernels {
            let mut ks = Score::default();
            for s in &mut k.suites {
                let mut ss = Score::default();
                for c in &s.cases {
                    ss.add(&Score::of(c));
                }
                s.score = ss;
                ks.add(&ss);
            }
            k.score = ks;
            total.add(&ks);
        }
        self.score = total;
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for k in &self.kernels {
            s += &format!("kernel {} ({})\n", k.spec, k.release.as_deref().unwrap_or("not prepared"));
            for su in &k.suites {
                s += &format!("  suite {}: {}\n", su.suite, su.score.render());
                for c in &su.cases {
                    match c.status.as_str() {
                        "mutated" => {
                            s += &format!(
                                "    {:<48} {:>3} killed {:>3} survived {:>3} equivalent{}\n",
                                c.case,
                                c.killed,
                                c.survived.len(),
                                c.equivalent.len(),
                                if c.errors.is_empty() {
                                    String::new()
                                } else {
                                    format!(" {:>3} error", c.errors.len())
                                }
                            );
                        }
                        st => {
                            s += &format!("    {:<48} {st}: {}\n", c.case, c.reason.as_deref().unwrap_or(""));
                        }
                    }
                    for m in &c.survived {
                        s += &format!("      SURVIVED {}: {}\n", m.id, m.description);
                    }
                    for m in &c.killed_on_rerun {
                        s += &format!("      killed only on a rerun {}: {}\n", m.id, m.description);
                    }
                    for m in &c.errors {
                        s += &format!(
                            "      ERROR    {}: {}: {}\n",
                            m.id,
                            m.description,
                            m.error.as_deref().unwrap_or("")
                        );
                    }
                    for m in &c.equivalent {
                        s += &format!("      equivalent {}: {}\n", m.id, m.description);
                    }
                }
            }
            s += &format!("  kernel {}: {}\n", k.spec, k.score.render());
        }
        if let Some(sm) = self.sample {
            s += &format!(
                "sample: about 1 in {} mutants, seed {} (`--sample {} --sample-seed {}` runs the same ones)\n",
                sm.every, sm.seed, sm.every, sm.seed
            );
        }
        s += &format!("overall: {}\n", self.score.render());
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the mutation report serialises") + "\n"
    }

    /// Survivors per case id (`<suite>/<case>`), for tests.
    pub fn survivors(&self) -> BTreeMap<String, Vec<String>> {
        let mut m = BTreeMap::new();
        for k in &self.kernels {
            for s in &k.suites {
                for c in &s.cases {
                    m.insert(format!("{}/{}", s.suite, c.case), c.survived.iter().map(|x| x.id.clone()).collect());
                }
            }
        }
        m
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::{Failure, KernelInfo, KernelRun};

    fn outcome(case: &str, status: Status) -> CaseOutcome {
        let mut o = CaseOutcome::new("s", case, vec!["L1".into()]);
        o.status = status;
        if status == Status::Fail {
            o.failure = Some(Failure { step: "1: x".into(), line: None, expected: "a".into(), actual: "b".into() });
        }
        o
    }

    /// A one-kernel report of `cases` (6.1, restored guests): the fixture of this module's and
    /// `kernel_mutants`' tests.
    pub(crate) fn report(cases: Vec<CaseOutcome>) -> Report {
        Report::new(vec![KernelRun {
            kernel: KernelInfo {
                spec: "6.1".into(),
                release: Some("6.1.0-57-amd64".into()),
                version: Some("6.1.192".into()),
                config: None,
            },
            accel: "tcg".into(),
            accel_note: None,
            guest_start: "restore".into(),
            version_notes: Vec::new(),
            cases,
        }])
    }

    #[test]
    fn killed_survived_equivalent_errors_and_reruns_are_counted() {
        let text = "version: 1\nsuite: s\ncases:\n  - name: c\n    spec: [L1]\n    equivalent_mutants: [{id: '9:negate', why: same}]\n    steps:\n      - load: m\n      - read: {path: /a, equals: '1'}\n  - name: d\n    spec: [L1]\n    steps:\n      - load: m\n";
        let suite = crate::suite::parse_suite(std::path::Path::new("s.yaml"), text).unwrap();
        let first = report(vec![
            outcome("c@original", Status::Pass),
            outcome("c@8:errno", Status::Fail),
            outcome("c@9:value", Status::Pass),
            outcome("d@original", Status::Fail),
            outcome("d@13:errno", Status::Fail),
        ]);
        let mut m = build(&first, std::slice::from_ref(&suite), None);
        let s = &m.kernels[0].suites[0];
        let (c, d) = (&s.cases[0], &s.cases[1]);
        assert_eq!((c.mutants, c.killed, c.survived.len(), c.equivalent.len()), (3, 1, 1, 1));
        assert_eq!(c.survived[0].id, "9:value");
        assert_eq!(d.status, "error", "a failing baseline says nothing about the mutants");
        assert_eq!((m.score.killed, m.score.survived, m.score.errors), (1, 1, 1));
        assert_eq!(m.exit_code(), 1);
        assert_eq!(m.survivor_names().into_iter().collect::<Vec<_>>(), ["s/c@9:value"]);

        m.killed_on_rerun(&report(vec![outcome("c@original", Status::Pass), outcome("c@9:value", Status::Fail)]), 1);
        let c = &m.kernels[0].suites[0].cases[0];
        assert_eq!((c.killed, c.survived.len(), c.killed_on_rerun.len()), (2, 0, 1));
        assert_eq!((m.score.killed, m.score.survived, m.score.score), (2, 0, Some(1.0)));
        assert!(m.render().contains("killed only on a rerun 9:value"), "{}", m.render());
        assert_eq!(m.exit_code(), 2, "no survivor, but d's baseline could not be judged");
    }

    #[test]
    fn a_sampled_run_counts_only_the_sampled_mutants() {
        let text = "version: 1\nsuite: s\ncases:\n  - name: c\n    spec: [L1]\n    equivalent_mutants: [{id: '9:negate', why: same}]\n    steps:\n      - load: m\n      - read: {path: /a, equals: '1'}\n";
        let suite = crate::suite::parse_suite(std::path::Path::new("s.yaml"), text).unwrap();
        let ids = ["8:errno", "9:value", "9:negate"];
        // A seed that keeps 9:value but not 8:errno (one in two, so one exists among the first few).
        let sample = (0..64)
            .map(|seed| mutate::Sample { every: 2, seed })
            .find(|s| s.keeps("s", "c", "9:value") && !s.keeps("s", "c", "8:errno"))
            .expect("a seed splitting the two");
        let kept = ids.iter().filter(|id| sample.keeps("s", "c", id)).count();
        let run = report(vec![outcome("c@original", Status::Pass), outcome("c@9:value", Status::Fail)]);
        let m = build(&run, std::slice::from_ref(&suite), Some(sample));
        let c = &m.kernels[0].suites[0].cases[0];
        assert_eq!((c.mutants, c.killed, c.survived.len()), (kept, 1, 0));
        assert!(m.render().contains(&format!("--sample 2 --sample-seed {}", sample.seed)), "{}", m.render());
        assert!(m.to_json().contains("\"sample\""));
    }
}
