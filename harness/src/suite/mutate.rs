//! Mutants of a case: wrong variants derived from the case's own expectations. A case that
//! still passes with a wrong expectation does not observe what it claims to; run on a real
//! kernel, every mutant must be killed (the mutated case fails), or be marked equivalent in
//! the suite with the reason (`equivalent_mutants: [{id: <id>, why: …}]`).
//!
//! Mutants run without the case's `snapshot` steps: a kernel with no stored snapshots checks
//! none, so a case must kill its mutants with its own expectations.
//!
//! One operator per kind of expectation, chosen so that a correct, sharp case kills it:
//!
//! | id | mutation |
//! |---|---|
//! | `value` | an expected value (read, wait, stays, reader) replaced by a near miss (`0`→`1`, `Y`→`N`, text + `~`) |
//! | `negate` | `equals X` → `not_equals X` |
//! | `errno` | an expected errno replaced by another; success expected → EINVAL expected; an errno expected → success |
//! | `kmsg-missing` | one `contains` pattern replaced by one no kernel prints |
//! | `kmsg-order` | two neighbouring `contains` patterns swapped |
//! | `kmsg-absent` | an `absent` pattern required instead (`contains`) |
//! | `kmsg-count` | an exact count off by one |
//! | `tree-line` | one line of an expected listing dropped |
//! | `taint` | a flag that must be set must be clear instead |
//! | `patch-state` | the expected patch_state changed |
//! | `exists` | `expect_exists` ↔ `expect_absent` |
//! | `no-wait` | a wait step dropped (the case must depend on what it waits for) |
//!
//! Mutant ids are stable across runs: `<step line>:<operator>[:<index>]`.

use super::model::{Case, PerKernel, Step};

/// One wrong variant of a case.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// `<line of the step>:<operator>[:<index>]`, what an `equivalent:` entry names.
    pub id: String,
    /// What was changed, for the report.
    pub description: String,
    /// The case with the change (planned cases in, planned cases out).
    pub case: Case,
}

/// The name a mutant runs under: `<case>@<id>` (case names have no `@`).
pub fn mutant_name(case: &str, id: &str) -> String {
    format!("{case}@{id}")
}

/// The id of the unmutated case run first as the baseline of its mutants.
pub const ORIGINAL: &str = "original";

/// A fixed share of the mutants (`suites mutate --sample N`): about one in `every`, chosen by
/// a hash of the seed and the mutant's `<suite>/<case>@<id>`. One seed always picks the same
/// mutants, whatever else changed in the suites; CI takes the day as the seed, so that the whole
/// set is covered over the days. Not `rand`: the choice must be the same on every host and
/// toolchain, and FNV-1a is enough to spread names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    pub every: u64,
    pub seed: u64,
}

impl Sample {
    /// Whether mutant `id` of `suite`/`case` is in the sample (every baseline is).
    pub fn keeps(&self, suite: &str, case: &str, id: &str) -> bool {
        if id == ORIGINAL || self.every <= 1 {
            return true;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let seed = self.seed.to_le_bytes();
        let name = format!("{suite}/{case}@{id}");
        for b in seed.iter().chain(name.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // FNV's low bits are weak (the lowest is a parity of the input's): mix before `%`.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h.is_multiple_of(self.every)
    }
}

/// `(case, mutant id)` of a name made by [`mutant_name`].
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('@')
}

/// What a mutation run executes for one planned case: the case itself (named
/// `<case>@original`, its baseline) and every mutant not marked equivalent, each named by
/// [`mutant_name`], all without `snapshot` steps.
pub fn expand(case: &Case) -> Vec<Case> {
    let strip = |c: &Case, id: &str| {
        let mut c = c.clone();
        c.steps.retain(|s| !matches!(s.value, Step::Snapshot(_)));
        c.name.value = mutant_name(case.name(), id);
        c
    };
    let equivalent: Vec<&str> = case.equivalent_mutants.iter().map(|e| e.id.value.as_str()).collect();
    let mut out = vec![strip(case, ORIGINAL)];
    out.extend(mutants(case).iter().filter(|m| !equivalent.contains(&m.id.as_str())).map(|m| strip(&m.case, &m.id)));
    out
}

/// Ids of `equivalent_mutants` that name no mutant of the (unplanned) case on any kernel
/// line from 4.0 to 7.30 (what the case's per-kernel expectations can plan to).
pub fn unknown_equivalent_ids(case: &Case) -> Vec<&serde_saphyr::Spanned<String>> {
    if case.equivalent_mutants.is_empty() {
        return Vec::new();
    }
    let mut known = std::collections::BTreeSet::new();
    for major in 4..=7 {
        for minor in 0..=30 {
            if let Ok(planned) = case.planned_for(super::KernelVersion(major, minor, 0)) {
                known.extend(mutants(&planned).into_iter().map(|m| m.id));
            }
        }
    }
    case.equivalent_mutants.iter().map(|e| &e.id).filter(|id| !known.contains(&id.value)).collect()
}

/// A near miss of an expected value: a number off by one, a flag flipped, text changed.
pub fn near_miss(v: &str) -> String {
    if let Ok(n) = v.parse::<i64>() {
        return (if n == 0 { 1 } else { n + 1 }).to_string();
    }
    match v {
        "Y" => "N".into(),
        "N" => "Y".into(),
        "" => "~".into(),
        _ => format!("{v}~"),
    }
}

/// Another errno than `e`, one livepatch really returns.
fn other_errno(e: &str) -> &'static str {
    match e {
        "EINVAL" => "EBUSY",
        _ => "EINVAL",
    }
}

/// The errno a load, unload or write step expects (`None`: success).
fn expected_errno(step: &Step) -> Option<String> {
    match step {
        Step::Load(m) | Step::Unload(m) => m.expect_errno.as_ref().and_then(|e| e.planned().clone()),
        Step::Write(w) => w.expect_errno.as_ref().and_then(|e| e.planned().clone()),
        _ => None,
    }
}

fn set_errno(step: &mut Step, e: Option<String>) {
    let v = Some(PerKernel::Same(e));
    match step {
        Step::Load(m) | Step::Unload(m) => m.expect_errno = v,
        Step::Write(w) => w.expect_errno = v,
        _ => {}
    }
}

/// Every mutant of a planned case, in step order.
pub fn mutants(case: &Case) -> Vec<Mutant> {
    let mut out = Vec::new();
    for (i, step) in case.steps.iter().enumerate() {
        let line = step.referenced.line();
        let label = format!("step {} ({})", i + 1, step.value.describe());
        let mut push =
            |op: &str, idx: Option<usize>, what: String, edit: &dyn Fn(&mut Vec<serde_saphyr::Spanned<Step>>)| {
                let mut c = case.clone();
                edit(&mut c.steps);
                let id = match idx {
                    Some(n) => format!("{line}:{op}:{n}"),
                    None => format!("{line}:{op}"),
                };
                out.push(Mutant { id, description: format!("{label}: {what}"), case: c });
            };
        let same = |s: &str| PerKernel::Same(s.to_string());
        match &step.value {
            Step::Read(r) if r.expect_errno.is_none() => {
                if let Some(want) = r.equals.as_ref().map(|e| e.planned().clone()) {
                    let miss = near_miss(&want);
                    push("value", None, format!("equals {want:?} → {miss:?}"), &|s| {
                        if let Step::Read(r) = &mut s[i].value {
                            r.equals = Some(same(&miss));
                        }
                    });
                    push("negate", None, format!("equals {want:?} → not_equals {want:?}"), &|s| {
                        if let Step::Read(r) = &mut s[i].value {
                            r.not_equals = r.equals.take();
                        }
                    });
                }
                if let Some(want) = r.contains.as_ref().map(|e| e.planned().clone()) {
                    let miss = format!("{want}~");
                    push("value", Some(1), format!("contains {want:?} → {miss:?}"), &|s| {
                        if let Step::Read(r) = &mut s[i].value {
                            r.contains = Some(same(&miss));
                        }
                    });
                }
            }
            Step::Read(r) => {
                let e = r.expect_errno.as_ref().and_then(|e| e.planned().clone()).unwrap_or_default();
                let other = other_errno(&e);
                push("errno", None, format!("read fails with {e} → {other}"), &|s| {
                    if let Step::Read(r) = &mut s[i].value {
                        r.expect_errno = Some(PerKernel::Same(Some(other.to_string())));
                    }
                });
            }
            Step::Reader(r) => {
                if let Some(want) = r.equals.as_ref().map(|e| e.planned().clone()) {
                    let miss = near_miss(&want);
                    push("value", None, format!("reader equals {want:?} → {miss:?}"), &|s| {
                        if let Step::Reader(r) = &mut s[i].value {
                            r.equals = Some(same(&miss));
                        }
                    });
                }
            }
            Step::Wait(w) => {
                if let Some(want) = w.equals.as_ref().map(|e| e.planned().clone()) {
                    let miss = near_miss(&want);
                    push("value", None, format!("wait for {want:?} → {miss:?} (5 s)"), &|s| {
                        if let Step::Wait(w) = &mut s[i].value {
                            w.equals = Some(same(&miss));
                            // A wrong wait only has to time out; the case need not sit for
                            // its full timeout.
                            w.timeout_s = Some(w.timeout_s.unwrap_or(30.0).min(5.0));
                        }
                    });
                }
                push("no-wait", None, "dropped".into(), &|s| {
                    s.remove(i);
                });
            }
            Step::Stays(st) => {
                let want = st.equals.planned().clone();
                let miss = near_miss(&want);
                push("value", None, format!("stays {want:?} → {miss:?}"), &|s| {
                    if let Step::Stays(st) = &mut s[i].value {
                        st.equals = same(&miss);
                    }
                });
            }
            Step::Load(_) | Step::Unload(_) | Step::Write(_) => {
                let e = expected_errno(&step.value);
                let (what, to) = match &e {
                    None => ("success → fails with EINVAL".to_string(), Some("EINVAL".to_string())),
                    Some(e) if e == "EAGAIN" || e == "EBUSY" || e == "EINVAL" || e == "ENOENT" => {
                        (format!("fails with {e} → succeeds"), None)
                    }
                    Some(e) => (format!("fails with {e} → {}", other_errno(e)), Some(other_errno(e).to_string())),
                };
                push("errno", None, what, &|s| set_errno(&mut s[i].value, to.clone()));
            }
            Step::Kmsg(k) => {
                let contains = k.contains.planned();
                for (n, p) in contains.iter().enumerate() {
                    push("kmsg-missing", Some(n), format!("contains {p:?} → a line no kernel prints"), &|s| {
                        if let Step::Kmsg(k) = &mut s[i].value {
                            let mut v = k.contains.planned().clone();
                            v[n] = "klp-conform mutant: no such kernel message".into();
                            k.contains = PerKernel::Same(v);
                        }
                    });
                }
                for n in 1..contains.len() {
                    if contains[n] == contains[n - 1] {
                        continue;
                    }
                    push(
                        "kmsg-order",
                        Some(n),
                        format!("contains {:?} and {:?} swapped", contains[n - 1], contains[n]),
                        &|s| {
                            if let Step::Kmsg(k) = &mut s[i].value {
                                let mut v = k.contains.planned().clone();
                                v.swap(n - 1, n);
                                k.contains = PerKernel::Same(v);
                            }
                        },
                    );
                }
                for (n, p) in k.absent.planned().iter().enumerate() {
                    push("kmsg-absent", Some(n), format!("absent {p:?} required instead"), &|s| {
                        if let Step::Kmsg(k) = &mut s[i].value {
                            let mut a = k.absent.planned().clone();
                            let p = a.remove(n);
                            k.absent = PerKernel::Same(a);
                            k.contains = PerKernel::Same(vec![p]);
                            k.count.clear();
                            k.min_count.clear();
                        }
                    });
                }
                for (n, (p, c)) in k.count.iter().enumerate() {
                    let (p, c) = (p.clone(), *c);
                    push("kmsg-count", Some(n), format!("count of {p:?} {c} → {}", c + 1), &|s| {
                        if let Step::Kmsg(k) = &mut s[i].value {
                            k.count.insert(p.clone(), c + 1);
                        }
                    });
                }
            }
            Step::Tree(t) => {
                let lines: Vec<String> =
                    t.equals.planned().lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect();
                for n in 0..lines.len() {
                    let dropped = lines[n].trim().to_string();
                    let text: String =
                        lines.iter().enumerate().filter(|(j, _)| *j != n).map(|(_, l)| format!("{l}\n")).collect();
                    push("tree-line", Some(n), format!("listing without {dropped:?}"), &|s| {
                        if let Step::Tree(t) = &mut s[i].value {
                            t.equals = PerKernel::Same(text.clone());
                        }
                    });
                }
                if lines.is_empty() {
                    push("tree-line", Some(0), "empty listing → one unexpected entry".into(), &|s| {
                        if let Step::Tree(t) = &mut s[i].value {
                            t.equals = PerKernel::Same("drwxr-xr-x klp-conform-mutant/\n".into());
                        }
                    });
                }
            }
            Step::Taint(t) => {
                for (n, flag) in t.set.iter().enumerate() {
                    let flag = flag.clone();
                    push("taint", Some(n), format!("taint {flag} set → clear"), &|s| {
                        if let Step::Taint(t) = &mut s[i].value {
                            t.set.retain(|f| *f != flag);
                            t.clear.push(flag.clone());
                        }
                    });
                }
            }
            Step::PatchState(p) => {
                if let Some(v) = p.equals {
                    let miss = if v == 1 { 0 } else { v + 1 };
                    push("patch-state", None, format!("patch_state {v} → {miss}"), &|s| {
                        if let Step::PatchState(p) = &mut s[i].value {
                            p.equals = Some(miss);
                        }
                    });
                }
            }
            Step::ExpectExists(p) => {
                let p = p.clone();
                push("exists", None, format!("{p} expected absent"), &|s| s[i].value = Step::ExpectAbsent(p.clone()));
            }
            Step::ExpectAbsent(p) => {
                let p = p.clone();
                push("exists", None, format!("{p} expected to exist"), &|s| s[i].value = Step::ExpectExists(p.clone()));
            }
            Step::Mark(_) | Step::StartReader(_) | Step::Snapshot(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(steps: &str) -> Case {
        let text = format!("version: 1\nsuite: s\ncases:\n  - name: c\n    spec: [L1]\n    steps:\n{steps}");
        let suite = crate::suite::parse_suite(std::path::Path::new("s.yaml"), &text).unwrap();
        suite.cases.into_iter().next().unwrap()
    }

    #[test]
    fn a_sample_is_a_stable_share_that_rotates_with_the_seed() {
        let names: Vec<String> = (0..2000).map(|i| format!("{i}:value")).collect();
        let pick = |seed| -> Vec<&String> {
            let s = Sample { every: 10, seed };
            names.iter().filter(|id| s.keeps("suite", "case", id)).collect()
        };
        let day1 = pick(1);
        assert_eq!(day1, pick(1), "one seed, one sample");
        assert!((150..=250).contains(&day1.len()), "about one in ten: {}", day1.len());
        assert_ne!(day1, pick(2), "another seed, another sample");
        assert!(Sample { every: 10, seed: 1 }.keeps("suite", "case", ORIGINAL), "baselines always run");
        assert!(names.iter().all(|id| Sample { every: 1, seed: 7 }.keeps("s", "c", id)));
    }

    #[test]
    fn near_misses() {
        assert_eq!(near_miss("0"), "1");
        assert_eq!(near_miss("1"), "2");
        assert_eq!(near_miss("-1"), "0");
        assert_eq!(near_miss("Y"), "N");
        assert_eq!(near_miss("klp: patched"), "klp: patched~");
    }

    #[test]
    fn every_expectation_gets_its_mutants_with_stable_ids() {
        let c = case(
            "      - load: m\n\
             \x20     - read: {path: /a, equals: '1'}\n\
             \x20     - wait: {path: /b, equals: '0', timeout_s: 60}\n\
             \x20     - kmsg: {contains: [x, y], absent: [z], count: {x: 1}}\n\
             \x20     - unload: {module: m, expect_errno: EAGAIN}\n\
             \x20     - expect_absent: /c\n\
             \x20     - mark: m1\n",
        );
        let ms = mutants(&c);
        let ids: Vec<&str> = ms.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "7:errno",
                "8:value",
                "8:negate",
                "9:value",
                "9:no-wait",
                "10:kmsg-missing:0",
                "10:kmsg-missing:1",
                "10:kmsg-order:1",
                "10:kmsg-absent:0",
                "10:kmsg-count:0",
                "11:errno",
                "12:exists",
            ]
        );
        // The mutated case differs from the original exactly where the id says.
        let wait = ms.iter().find(|m| m.id == "9:value").unwrap();
        match &wait.case.steps[2].value {
            Step::Wait(w) => {
                assert_eq!(w.equals.as_ref().unwrap().planned(), "1");
                assert_eq!(w.timeout_s, Some(5.0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ms.iter().find(|m| m.id == "9:no-wait").unwrap().case.steps.len(), c.steps.len() - 1);
        let unload = ms.iter().find(|m| m.id == "11:errno").unwrap();
        assert!(unload.description.contains("fails with EAGAIN → succeeds"), "{}", unload.description);
        match &c.steps[0].value {
            Step::Load(m) => assert!(m.expect_errno.is_none(), "the original is untouched"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expand_runs_the_baseline_and_the_non_equivalent_mutants_without_snapshots() {
        let text = "version: 1\nsuite: s\ncases:\n  - name: c\n    spec: [L1]\n    equivalent_mutants: [{id: '9:negate', why: w}]\n    steps:\n      - load: m\n      - read: {path: /a, equals: '1'}\n      - snapshot: s1\n";
        let suite = crate::suite::parse_suite(std::path::Path::new("s.yaml"), text).unwrap();
        let c = &suite.cases[0];
        let names: Vec<String> = expand(c).iter().map(|m| m.name().to_string()).collect();
        assert_eq!(names, ["c@original", "c@8:errno", "c@9:value"]);
        assert!(expand(c).iter().all(|m| m.steps.iter().all(|s| !matches!(s.value, Step::Snapshot(_)))));
        assert_eq!(split_name("c@9:value"), Some(("c", "9:value")));
        assert!(unknown_equivalent_ids(c).is_empty());
    }
}
