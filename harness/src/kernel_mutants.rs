//! Kernel mutants: `suites mutate --kernel-mutants`. Mutation analysis proper mutates the code
//! under test; here that is the livepatch core, without building kernels. The reference module
//! `klp_mutant` (not a livepatch) redirects one function of the running kernel's livepatch core
//! to a deliberately wrong version through an `FTRACE_OPS_FL_IPMODIFY` `ftrace_ops`. Every
//! selected case runs once with `klp_mutant mutant=none` loaded (its control: the same module
//! present, nothing redirected) and once per mutant, each in its own guest, the module loaded
//! by the runner right after the guest starts and before the case's steps
//! ([`crate::runner::RunConfig::kernel_mutants`]). A case *detects* a mutant when it fails with
//! the mutant while its control passed. A mutant no case detects is a gap of the suites.
//!
//! A mutant whose function this kernel does not have as a traceable symbol of its own (inlined,
//! renamed by the compiler, notrace) fails to load with `klp_mutant: not applicable: …` in the
//! kernel log: the case is skipped with that reason and the mutant reported "not applicable".

use serde::Serialize;

use crate::report::model::{CaseOutcome, Report, Status};
use crate::suite::mutate::split_name;

/// The module the runner loads.
pub const MODULE: &str = "klp_mutant";
/// The mutant id of the control run (the module loaded, nothing redirected).
pub const CONTROL: &str = "none";
/// What a kernel mutant's id is prefixed with in a case name: `<case>@kernel:<id>`.
pub const PREFIX: &str = "kernel:";
/// How the runner's skip reason of a run whose mutant does not apply begins.
pub const SKIP_PREFIX: &str = "kernel mutant not applicable: ";
/// What the module prints when a mutant cannot apply to the running kernel.
pub const NOT_APPLICABLE: &str = "klp_mutant: not applicable: ";

/// One kernel mutant: what `klp_mutant mutant=<id>` redirects, and to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelMutant {
    pub id: &'static str,
    /// The livepatch core function redirected.
    pub target: &'static str,
    pub description: &'static str,
}

/// Every kernel mutant, in the order they run (`reference-kmod/variants/klp_mutant.rs` has the
/// same ids).
pub const ALL: &[KernelMutant] = &[
    KernelMutant {
        id: "enabled_store_noop",
        target: "enabled_store",
        description: "writes to <patch>/enabled are accepted (return count) and do nothing",
    },
    KernelMutant {
        id: "force_store_noop",
        target: "force_store",
        description: "writes to <patch>/force are accepted (return count) and do nothing, also with no transition",
    },
    KernelMutant {
        id: "transition_show_zero",
        target: "transition_show",
        description: "<patch>/transition always reads \"0\"",
    },
    KernelMutant {
        id: "check_stack_always_safe",
        target: "klp_check_stack",
        description: "the stack check says every task's stack is safe (returns 0); where gcc inlined it, \
                      klp_check_and_switch_task (5.16+, its only caller) without the check: every task not yet \
                      switched switches at once",
    },
    KernelMutant {
        id: "switch_task_never",
        target: "klp_try_switch_task",
        description: "no task ever switches to the target state (returns false)",
    },
    KernelMutant {
        id: "send_signals_noop",
        target: "klp_send_signals",
        description: "no fake signals to tasks nor wake-ups of kthreads that hold a transition",
    },
    KernelMutant {
        id: "free_patch_no_module_put",
        target: "klp_free_patch_finish",
        description: "klp_free_patch_finish without its final module_put (kobject_put and the wait for the release \
                      kept); where gcc inlined it, klp_free_patch_work_fn (the disable path's free work) likewise",
    },
];

/// The mutants named by `--kernel-mutant` (all when none), or an error naming the unknown one.
pub fn select(ids: &[String]) -> Result<Vec<KernelMutant>, String> {
    if ids.is_empty() {
        return Ok(ALL.to_vec());
    }
    ids.iter()
        .map(|id| {
            ALL.iter().find(|m| m.id == id).copied().ok_or_else(|| {
                format!(
                    "--kernel-mutant {id}: no such kernel mutant (known: {})",
                    ALL.iter().map(|m| m.id).collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect()
}

/// The mutant id in a case's run name `<case>@kernel:<id>`.
pub fn mutant_of(case_name: &str) -> Option<(&str, &str)> {
    let (case, id) = split_name(case_name)?;
    Some((case, id.strip_prefix(PREFIX)?))
}

/// `<case>@kernel:<id>`.
pub fn run_name(case: &str, id: &str) -> String {
    crate::suite::mutate::mutant_name(case, &format!("{PREFIX}{id}"))
}

/// The kernel mutants on every kernel of a run.
#[derive(Debug, Clone, Serialize)]
pub struct KernelMutants {
    pub kernels: Vec<KernelMutantsOfKernel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelMutantsOfKernel {
    pub spec: String,
    pub release: Option<String>,
    /// Cases judged (their control passed), as `<suite>/<case>`.
    pub cases: Vec<String>,
    /// Cases that say nothing: their control failed or errored, they were skipped on this
    /// kernel, or could not run; with why.
    pub not_judged: Vec<CaseNote>,
    pub mutants: Vec<MutantResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseNote {
    pub case: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MutantResult {
    pub id: String,
    pub target: String,
    pub description: String,
    /// `detected` (some case failed with it), `undetected` (every judged case passed: a gap),
    /// `not_applicable` (the kernel has no traceable function to redirect; `reason` says why),
    /// `error` (no case could judge it).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `<suite>/<case>` that failed with the mutant (their control passed), with the step.
    pub detected_by: Vec<Detection>,
    /// `<suite>/<case>` that passed with the mutant.
    pub passed: Vec<String>,
    pub errors: Vec<CaseNote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub case: String,
    /// The failing step and what it expected.
    pub how: String,
}

/// The kernel-mutant results of a run made with `RunConfig::kernel_mutants`.
pub fn build(report: &Report, mutants: &[KernelMutant]) -> KernelMutants {
    let mut kernels = Vec::new();
    for run in &report.runs {
        let mut k = KernelMutantsOfKernel {
            spec: run.kernel.spec.clone(),
            release: run.kernel.release.clone(),
            cases: Vec::new(),
            not_judged: Vec::new(),
            mutants: Vec::new(),
        };
        let id = |o: &CaseOutcome, case: &str| format!("{}/{case}", o.suite);
        // Controls first: which cases can judge.
        for o in &run.cases {
            match mutant_of(&o.case) {
                None => k.not_judged.push(CaseNote { case: id(o, &o.case), why: outcome_reason(o) }),
                Some((case, CONTROL)) => {
                    if o.status == Status::Pass {
                        k.cases.push(id(o, case));
                    } else {
                        k.not_judged.push(CaseNote {
                            case: id(o, case),
                            why: format!("its control (klp_mutant mutant=none) did not pass: {}", outcome_reason(o)),
                        });
                    }
                }
                Some(_) => {}
            }
        }
        for m in mutants {
            let mut r = MutantResult {
                id: m.id.into(),
                target: m.target.into(),
                description: m.description.into(),
                status: String::new(),
                reason: None,
                detected_by: Vec::new(),
                passed: Vec::new(),
                errors: Vec::new(),
            };
            let mut not_applicable: Option<String> = None;
            for o in &run.cases {
                let Some((case, mid)) = mutant_of(&o.case) else { continue };
                let cid = id(o, case);
                if mid != m.id || !k.cases.contains(&cid) {
                    continue;
                }
                match o.status {
                    Status::Fail => {
                        let how = o.failure.as_ref().map_or_else(String::new, |f| {
                            format!("step {}: expected {}", f.step, first_line(&f.expected))
                        });
                        r.detected_by.push(Detection { case: cid, how });
                    }
                    Status::Pass => r.passed.push(cid),
                    Status::Skip => {
                        not_applicable.get_or_insert_with(|| {
                            let why = o.skip_reason.as_deref().unwrap_or_default();
                            why.strip_prefix(SKIP_PREFIX).unwrap_or(why).to_string()
                        });
                    }
                    Status::Error => r.errors.push(CaseNote { case: cid, why: outcome_reason(o) }),
                }
            }
            r.status = if !r.detected_by.is_empty() {
                "detected"
            } else if !r.passed.is_empty() {
                "undetected"
            } else if let Some(why) = not_applicable {
                r.reason = Some(why);
                "not_applicable"
            } else {
                r.reason = Some(if r.errors.is_empty() {
                    "no case could judge it (no control passed)".into()
                } else {
                    "every case that ran it errored".into()
                });
                "error"
            }
            .into();
            k.mutants.push(r);
        }
        kernels.push(k);
    }
    KernelMutants { kernels }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn outcome_reason(o: &CaseOutcome) -> String {
    match o.status {
        Status::Skip => format!("skipped: {}", o.skip_reason.as_deref().unwrap_or("")),
        Status::Error => format!("error: {}", first_line(o.error.as_deref().unwrap_or(""))),
        Status::Fail => match &o.failure {
            Some(f) => format!("fails at step {}: expected {}", f.step, first_line(&f.expected)),
            None => "fails".into(),
        },
        Status::Pass => "passes".into(),
    }
}

impl KernelMutants {
    /// 0: every applicable mutant detected; 1: one undetected (a gap); 2: errors only.
    pub fn exit_code(&self) -> i32 {
        let all = || self.kernels.iter().flat_map(|k| &k.mutants);
        if all().any(|m| m.status == "undetected") {
            1
        } else if all().any(|m| m.status == "error") {
            crate::cli::EXIT_HARNESS
        } else {
            0
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for k in &self.kernels {
            s += &format!(
                "kernel mutants on {} ({}): {} case(s) judged\n",
                k.spec,
                k.release.as_deref().unwrap_or("not prepared"),
                k.cases.len()
            );
            for m in &k.mutants {
                let head = format!("  {:<26} {:<22}", m.id, m.target);
                match m.status.as_str() {
                    "detected" => {
                        s += &format!("{head} detected by {} of {} case(s)\n", m.detected_by.len(), k.cases.len());
                        for d in &m.detected_by {
                            s += &format!("      {}: {}\n", d.case, d.how);
                        }
                    }
                    "undetected" => {
                        s += &format!(
                            "{head} NOT DETECTED: all {} case(s) that ran it passed ({})\n",
                            m.passed.len(),
                            m.description
                        );
                    }
                    "not_applicable" => {
                        s += &format!("{head} not applicable: {}\n", m.reason.as_deref().unwrap_or(""));
                    }
                    _ => s += &format!("{head} ERROR: {}\n", m.reason.as_deref().unwrap_or("")),
                }
                for e in &m.errors {
                    s += &format!("      error in {}: {}\n", e.case, e.why);
                }
            }
            for n in &k.not_judged {
                s += &format!("  not judged: {}: {}\n", n.case, n.why);
            }
        }
        let all: Vec<&MutantResult> = self.kernels.iter().flat_map(|k| &k.mutants).collect();
        let count = |st: &str| all.iter().filter(|m| m.status == st).count();
        s += &format!(
            "kernel mutants: {} detected, {} undetected, {} not applicable, {} error(s)\n",
            count("detected"),
            count("undetected"),
            count("not_applicable"),
            count("error")
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Failure;

    fn outcome(suite: &str, case: &str, status: Status) -> CaseOutcome {
        let mut o = CaseOutcome::new(suite, case, vec!["L1".into()]);
        o.status = status;
        match status {
            Status::Fail => {
                o.failure = Some(Failure {
                    step: "3: wait for /sys/kernel/livepatch/p/transition = \"1\"".into(),
                    line: Some(12),
                    expected: "\"1\" within 5s\nmore".into(),
                    actual: "\"0\"".into(),
                });
            }
            Status::Skip => o.skip_reason = Some(format!("{SKIP_PREFIX}no symbol klp_check_stack")),
            Status::Error => o.error = Some("the VM did not start\nconsole".into()),
            Status::Pass => {}
        }
        o
    }

    use crate::mutation::tests::report;

    #[test]
    fn names_and_selection() {
        assert_eq!(run_name("held", "transition_show_zero"), "held@kernel:transition_show_zero");
        assert_eq!(mutant_of("held@kernel:none"), Some(("held", "none")));
        assert_eq!(mutant_of("held@9:value"), None, "a case-level mutant is not a kernel mutant");
        assert_eq!(select(&[]).unwrap().len(), ALL.len());
        assert_eq!(select(&["switch_task_never".into()]).unwrap()[0].target, "klp_try_switch_task");
        let e = select(&["nope".into()]).unwrap_err();
        assert!(e.contains("--kernel-mutant nope") && e.contains("transition_show_zero"), "{e}");
    }

    /// Every id the harness knows is one the module knows (and the reverse).
    #[test]
    fn the_module_knows_every_mutant() {
        let src = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference-kmod/variants/klp_mutant.rs"),
        )
        .unwrap();
        for m in ALL {
            assert!(src.contains(&format!("(c\"{}\", c\"{}\",", m.id, m.target)), "{} → {}", m.id, m.target);
        }
        assert_eq!(src.matches("\n        (c\"").count(), ALL.len(), "klp_mutant.rs has a mutant the harness does not");
    }

    #[test]
    fn detection_needs_a_passing_control_and_every_outcome_is_counted() {
        let m = |case: &str, id: &str, st| outcome("transition", &run_name(case, id), st);
        let r = report(vec![
            // a: control passes; detects transition_show_zero, passes switch_task_never.
            m("a", CONTROL, Status::Pass),
            m("a", "transition_show_zero", Status::Fail),
            m("a", "switch_task_never", Status::Pass),
            m("a", "check_stack_always_safe", Status::Skip),
            // b: control fails: its failures say nothing.
            m("b", CONTROL, Status::Fail),
            m("b", "transition_show_zero", Status::Fail),
            m("b", "switch_task_never", Status::Fail),
            m("b", "check_stack_always_safe", Status::Skip),
            // c: skipped on this kernel.
            outcome("transition", "c", Status::Skip),
            // d: control passes, the mutant's guest did not start.
            m("d", CONTROL, Status::Pass),
            m("d", "transition_show_zero", Status::Error),
            m("d", "switch_task_never", Status::Pass),
            m("d", "check_stack_always_safe", Status::Skip),
        ]);
        let picked =
            select(&["transition_show_zero".into(), "switch_task_never".into(), "check_stack_always_safe".into()])
                .unwrap();
        let km = build(&r, &picked);
        let k = &km.kernels[0];
        assert_eq!(k.cases, ["transition/a", "transition/d"]);
        assert_eq!(k.not_judged.len(), 2);
        assert!(k.not_judged[0].why.starts_with("its control (klp_mutant mutant=none) did not pass: fails at step 3"));
        let (show, never, stack) = (&k.mutants[0], &k.mutants[1], &k.mutants[2]);
        assert_eq!(show.status, "detected");
        assert_eq!(show.detected_by.len(), 1, "b's failure does not count: its control failed");
        assert_eq!(show.detected_by[0].case, "transition/a");
        assert_eq!(
            show.detected_by[0].how,
            "step 3: wait for /sys/kernel/livepatch/p/transition = \"1\": expected \"1\" within 5s"
        );
        assert_eq!(show.errors[0].case, "transition/d");
        assert_eq!(never.status, "undetected");
        assert_eq!(never.passed, ["transition/a", "transition/d"]);
        assert_eq!(stack.status, "not_applicable");
        assert!(stack.reason.as_deref().unwrap().contains("no symbol klp_check_stack"));
        assert_eq!(km.exit_code(), 1, "an undetected mutant is a gap");
        let text = km.render();
        assert!(
            text.contains("transition_show_zero       transition_show        detected by 1 of 2 case(s)"),
            "{text}"
        );
        assert!(text.contains("switch_task_never          klp_try_switch_task    NOT DETECTED"), "{text}");
        assert!(text.contains("klp_check_stack        not applicable: no symbol klp_check_stack\n"), "{text}");
        assert!(text.contains("kernel mutants: 1 detected, 1 undetected, 1 not applicable, 0 error(s)"), "{text}");

        // Without the undetected one: every applicable mutant detected → 0.
        let km = build(&r, &select(&["transition_show_zero".into(), "check_stack_always_safe".into()]).unwrap());
        assert_eq!(km.exit_code(), 0);
        let v = serde_json::to_value(&km).unwrap();
        assert_eq!(v["kernels"][0]["mutants"][0]["detected_by"][0]["case"], "transition/a");
        assert_eq!(v["kernels"][0]["mutants"][1]["status"], "not_applicable");
    }
}
