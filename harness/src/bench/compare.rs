//! `--baseline`: a `bench latency` run against stored `bench.json` files, per kernel × clock ×
//! state. Never across clock kinds (instructions and host TSC ticks are different units).
//!
//! What is compared is each state's *overhead*: for every state but the baseline, the median
//! of its paired per-round differences against `unpatched` with their 95 % interval; for
//! `unpatched` itself, its per-call cost over the untraced twin with the range of its round
//! medians as the interval. A state **regressed** when its overhead grew by more than the
//! threshold (both the relative and the absolute part) *and* the new interval lies wholly above
//! the baseline's; it **improved** in the mirror case; anything else is within noise.

use super::latency::{BenchReport, Clock, KernelResult, State, StateResult};

/// How much an overhead may grow before it is a regression: more than `pct` % of the
/// baseline's overhead *and* more than `abs` units of the clock (instructions/call under
/// icount).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub pct: f64,
    pub abs: f64,
}

impl Default for Threshold {
    /// 2 % and 2 units: under icount a run is bit-identical to the last one on the same
    /// kernel and QEMU, so any change is a change of the code path; 2 instructions absorb a
    /// moved NOP or a reordered spill in a rebuilt kernel, 2 % what that is on the list path
    /// (~260 instructions: 5).
    fn default() -> Self {
        Self { pct: 2.0, abs: 2.0 }
    }
}

impl Threshold {
    /// The growth allowed on an overhead of `base`.
    pub fn limit(&self, base: f64) -> f64 {
        (self.pct / 100.0 * base.abs()).max(self.abs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Regressed,
    Improved,
    /// Changed by less than the threshold, or the intervals overlap.
    Within,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Regressed => "REGRESSED",
            Self::Improved => "improved",
            Self::Within => "within",
        }
    }
}

/// A state's overhead and its interval.
pub fn overhead(s: &StateResult) -> (f64, [f64; 2]) {
    match &s.vs_unpatched {
        Some(e) => (e.median, e.ci95),
        None => {
            let lo = s.round_medians.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.round_medians.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() && hi.is_finite() {
                (s.median, [lo.min(s.median), hi.max(s.median)])
            } else {
                (s.median, [s.median, s.median])
            }
        }
    }
}

/// The verdict on one overhead, baseline → this run.
pub fn judge(base: (f64, [f64; 2]), new: (f64, [f64; 2]), t: Threshold) -> Verdict {
    let delta = new.0 - base.0;
    let limit = t.limit(base.0);
    if delta > limit && new.1[0] > base.1[1] {
        Verdict::Regressed
    } else if -delta > limit && new.1[1] < base.1[0] {
        Verdict::Improved
    } else {
        Verdict::Within
    }
}

/// One kernel × state.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub spec: String,
    pub release: String,
    pub state: State,
    pub base: (f64, [f64; 2]),
    pub new: (f64, [f64; 2]),
    pub verdict: Verdict,
}

/// The comparison of a run with its baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub clock: Clock,
    pub unit: String,
    pub threshold: Threshold,
    pub rows: Vec<Row>,
    /// What could not be compared (a kernel or a state without a baseline, differing
    /// environments).
    pub notes: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.verdict == Verdict::Regressed).count()
    }

    /// The rows that changed at all, then a summary line.
    pub fn render(&self) -> String {
        let t = self.threshold;
        let mut out = format!(
            "against the baseline, clock {} ({}); regression: grew > {}% and > {} with the intervals apart\n",
            self.clock, self.unit, t.pct, t.abs
        );
        let changed: Vec<&Row> =
            self.rows.iter().filter(|r| r.new.0 != r.base.0 || r.verdict != Verdict::Within).collect();
        if !changed.is_empty() {
            out.push_str(&format!(
                "{:<10} {:<15} {:>24} {:>24} {:>9} {:>8}  verdict\n",
                "kernel", "state", "baseline [95% CI]", "this run [95% CI]", "change", "%"
            ));
        }
        for r in &changed {
            let pct = if r.base.0.abs() > 1e-9 {
                format!("{:+.1}%", (r.new.0 - r.base.0) / r.base.0.abs() * 100.0)
            } else {
                "-".into()
            };
            let v = |x: (f64, [f64; 2])| format!("{:.1} [{:.1},{:.1}]", x.0, x.1[0], x.1[1]);
            out.push_str(&format!(
                "{:<10} {:<15} {:>24} {:>24} {:>+9.1} {:>8}  {}\n",
                r.spec,
                r.state.name(),
                v(r.base),
                v(r.new),
                r.new.0 - r.base.0,
                pct,
                r.verdict.name()
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        let improved = self.rows.iter().filter(|r| r.verdict == Verdict::Improved).count();
        out.push_str(&format!(
            "{} compared, {} unchanged, {} within the threshold, {} improved, {} regressed\n",
            self.rows.len(),
            self.rows.len() - changed.len(),
            changed.iter().filter(|r| r.verdict == Verdict::Within).count(),
            improved,
            self.regressions()
        ));
        out
    }
}

/// Compare `run` with `baselines` (`(file name, report)`): each kernel of the run with the
/// baseline kernel of the same release, state by state. Refused when any baseline was measured
/// on another clock than the run, or one release has two baselines.
pub fn compare(baselines: &[(String, BenchReport)], run: &BenchReport, t: Threshold) -> Result<Comparison, String> {
    check_clocks(baselines, run.clock)?;
    let mut base: Vec<(&str, &KernelResult)> = Vec::new();
    for (file, b) in baselines {
        for k in &b.kernels {
            if let Some((other, _)) = base.iter().find(|(_, x)| x.release == k.release) {
                return Err(format!("{}: baselines in both {other} and {file}: give one", k.release));
            }
            base.push((file, k));
        }
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for k in &run.kernels {
        let Some((file, b)) = base.iter().find(|(_, x)| x.release == k.release) else {
            notes.push(format!("{} ({}): no baseline", k.spec, k.release));
            continue;
        };
        let (be, ne) = (&b.environment, &k.environment);
        for (what, x, y) in [
            ("QEMU", &be.qemu_version, &ne.qemu_version),
            ("CPU", &be.cpu, &ne.cpu),
            ("clocksource", &be.clocksource, &ne.clocksource),
        ] {
            if x != y {
                notes.push(format!("{}: {what} differs from {file}'s: `{x}` then, `{y}` now", k.spec));
            }
        }
        if be.vcpus != ne.vcpus {
            notes.push(format!("{}: {} vCPUs in {file}, {} now", k.spec, be.vcpus, ne.vcpus));
        }
        for s in &k.states {
            let Some(bs) = b.states.iter().find(|x| x.state == s.state) else {
                notes.push(format!("{} {}: not in {file}", k.spec, s.state.name()));
                continue;
            };
            let (bo, no) = (overhead(bs), overhead(s));
            rows.push(Row {
                spec: k.spec.clone(),
                release: k.release.clone(),
                state: s.state,
                base: bo,
                new: no,
                verdict: judge(bo, no, t),
            });
        }
    }
    Ok(Comparison { clock: run.clock, unit: run.unit.clone(), threshold: t, rows, notes })
}

/// Every baseline, and every kernel in it, on `clock`.
pub fn check_clocks(baselines: &[(String, BenchReport)], clock: Clock) -> Result<(), String> {
    for (file, b) in baselines {
        let other = std::iter::once(b.clock).chain(b.kernels.iter().map(|k| k.environment.clock)).find(|c| *c != clock);
        if let Some(c) = other {
            return Err(format!(
                "{file} was measured on the {c} clock, this run on the {clock} clock: results on different \
                 clocks are different units ({} against {}) and are never compared; give a baseline measured \
                 with --clock {clock}",
                c.unit(),
                clock.unit()
            ));
        }
    }
    Ok(())
}

/// Read `bench.json` files.
pub fn load(files: &[std::path::PathBuf]) -> Result<Vec<(String, BenchReport)>, String> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("reading {}: {e}", f.display()))?;
            let r: BenchReport =
                serde_json::from_str(&text).map_err(|e| format!("{}: not a bench.json: {e}", f.display()))?;
            if r.schema != super::latency::SCHEMA {
                return Err(format!("{}: schema {}, not {}", f.display(), r.schema, super::latency::SCHEMA));
            }
            Ok((f.display().to_string(), r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::fixture;
    use rstest::rstest;

    const T: Threshold = Threshold { pct: 2.0, abs: 2.0 };

    #[rstest]
    // icount: zero-wide intervals, so the threshold decides.
    #[case::identical((74.0, [74.0, 74.0]), (74.0, [74.0, 74.0]), Verdict::Within)]
    #[case::two_more_is_not_enough((74.0, [74.0, 74.0]), (76.0, [76.0, 76.0]), Verdict::Within)]
    #[case::three_more((74.0, [74.0, 74.0]), (77.0, [77.0, 77.0]), Verdict::Regressed)]
    #[case::three_fewer((74.0, [74.0, 74.0]), (71.0, [71.0, 71.0]), Verdict::Improved)]
    // On the list path 2 % (5.2) is the larger part of the threshold.
    #[case::list_path_5_more((259.0, [259.0, 259.0]), (264.0, [264.0, 264.0]), Verdict::Within)]
    #[case::list_path_6_more((259.0, [259.0, 259.0]), (265.0, [265.0, 265.0]), Verdict::Regressed)]
    // A nop appearing where there was none.
    #[case::from_zero((0.0, [0.0, 0.0]), (3.0, [3.0, 3.0]), Verdict::Regressed)]
    // host: grew well beyond the threshold but the intervals overlap: noise, not a verdict.
    #[case::overlapping((100.0, [80.0, 130.0]), (120.0, [110.0, 140.0]), Verdict::Within)]
    #[case::apart((100.0, [95.0, 105.0]), (120.0, [110.0, 130.0]), Verdict::Regressed)]
    #[case::apart_but_small((100.0, [99.0, 100.5]), (101.5, [101.0, 102.0]), Verdict::Within)]
    fn verdicts(#[case] base: (f64, [f64; 2]), #[case] new: (f64, [f64; 2]), #[case] expected: Verdict) {
        assert_eq!(judge(base, new, T), expected);
    }

    #[rstest]
    #[case(0.0, 2.0)]
    #[case(74.0, 2.0)]
    #[case(100.0, 2.0)]
    #[case(259.0, 5.18)]
    #[case(-300.0, 6.0)]
    fn the_limit_is_the_larger_part(#[case] base: f64, #[case] limit: f64) {
        assert!((T.limit(base) - limit).abs() < 1e-9);
    }

    /// A one-kernel report whose patched state costs `patched` ticks per 100 calls over a twin
    /// of 1000.
    fn report(clock: Clock, release: &str, patched: u64) -> BenchReport {
        let spec = release.split('.').take(2).collect::<Vec<_>>().join(".");
        fixture::report(clock, vec![fixture::kernel(clock, &spec, release, patched, vec![])])
    }

    #[rstest]
    #[case::same(8500, 0, "2 compared, 2 unchanged")]
    #[case::within(8700, 0, "1 within the threshold")]
    #[case::regressed(8900, 1, "REGRESSED")]
    #[case::improved(8000, 0, "1 improved")]
    fn a_run_against_its_baseline(#[case] patched: u64, #[case] regressions: usize, #[case] says: &str) {
        let base = vec![("b.json".to_string(), report(Clock::Icount, "6.1.0-1-amd64", 8500))];
        let c = compare(&base, &report(Clock::Icount, "6.1.0-1-amd64", patched), T).unwrap();
        assert_eq!(c.regressions(), regressions, "{}", c.render());
        assert!(c.render().contains(says), "{}", c.render());
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[rstest]
    #[case::host_against_icount(Clock::Icount, Clock::Host)]
    #[case::icount_against_host(Clock::Host, Clock::Icount)]
    fn clocks_are_never_mixed(#[case] base_clock: Clock, #[case] run_clock: Clock) {
        let base = vec![("b.json".to_string(), report(base_clock, "6.1.0-1-amd64", 8500))];
        let e = compare(&base, &report(run_clock, "6.1.0-1-amd64", 8500), T).unwrap_err();
        assert!(e.contains("b.json") && e.contains("never compared"), "{e}");
        // A report that says icount but holds a kernel measured on the host clock is refused too.
        let mut mixed = report(run_clock, "6.1.0-1-amd64", 8500);
        mixed.kernels[0].environment.clock = base_clock;
        assert!(check_clocks(&[("m.json".into(), mixed)], run_clock).is_err());
    }

    #[test]
    fn kernels_are_matched_by_release_and_gaps_are_noted() {
        let base = vec![
            ("a.json".to_string(), report(Clock::Icount, "6.1.0-1-amd64", 8500)),
            ("b.json".to_string(), report(Clock::Icount, "6.12.0-1-amd64", 9000)),
        ];
        let mut run = report(Clock::Icount, "6.12.0-1-amd64", 9000);
        run.kernels.extend(report(Clock::Icount, "7.2.0-1-amd64", 9000).kernels);
        run.kernels[0].environment.qemu_version = "QEMU emulator version 9.2.0".into();
        let c = compare(&base, &run, T).unwrap();
        assert_eq!(c.rows.len(), 2);
        assert!(c.rows.iter().all(|r| r.release == "6.12.0-1-amd64" && r.verdict == Verdict::Within));
        assert!(c.notes.iter().any(|n| n.contains("7.2.0-1-amd64") && n.contains("no baseline")), "{:?}", c.notes);
        assert!(c.notes.iter().any(|n| n.contains("QEMU differs")), "{:?}", c.notes);
        let twice = vec![base[0].clone(), ("c.json".to_string(), report(Clock::Icount, "6.1.0-1-amd64", 8500))];
        assert!(compare(&twice, &run, T).unwrap_err().contains("a.json and c.json"));
    }
}
