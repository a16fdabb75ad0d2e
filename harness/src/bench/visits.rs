//! `bench latency`'s rounds as visits: each visit enters one configuration from the bare
//! target, measures every selected state that configuration offers, and leaves it. States that
//! share a livepatch share its transitions, so a round with every state goes through 9
//! transitions instead of the 17 it takes to enter and leave each state on its own (on 6.12
//! each transition costs ~0.5 s of host time under TCG, see the README).
//!
//! Pure: a round's plan is a list of [`Step`]s, made from the seeded RNG, that
//! `latency::run_kernel` carries out one by one.

use super::latency::State;
use super::stats::Rng;

/// The patch the patched states have enabled, and its module.
pub const PATCH: &str = "klp_bench_patch";
/// The patch stacked on [`PATCH`].
pub const PATCH2: &str = "klp_bench_patch2";
/// The plain ftrace_ops.
pub const FTRACE: &str = "klp_bench_ftrace";
/// The atomic-replace patch with no functions.
pub const REPLACE: &str = "klp_ref_replace_empty";

/// One configuration family: the states measured between one entry from the bare target and
/// the way back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// unpatched, ftrace-only: no transition.
    Bare,
    /// klp_bench_patch enabled: patched, patched+ftrace, stacked; after-disable once it is
    /// disabled.
    Patch,
    /// klp_bench_patch replaced by the empty atomic-replace patch.
    Replace,
    /// klp_bench_patch_hold's patching transition held open by the holders.
    Held,
}

impl Visit {
    pub const ALL: [Visit; 4] = [Self::Bare, Self::Patch, Self::Replace, Self::Held];

    pub fn of(state: State) -> Visit {
        match state {
            State::Unpatched | State::FtraceOnly => Self::Bare,
            State::Patched | State::PatchedFtrace | State::Stacked | State::AfterDisable => Self::Patch,
            State::ReplaceNop => Self::Replace,
            State::TransitionUnpatchedTask | State::TransitionPatchedTask => Self::Held,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Patch => "patch",
            Self::Replace => "replace",
            Self::Held => "held",
        }
    }
}

/// One thing a visit does in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Load a module that is not a livepatch (no transition).
    Load(&'static str),
    Unload(&'static str),
    /// Load a livepatch and wait until its patching transition completed (logged, idle).
    Enable(&'static str),
    /// Disable a livepatch and wait until it is gone from sysfs (logged, idle).
    Disable(&'static str),
    /// Wait until an atomic replace took this patch away.
    Replaced(&'static str),
    /// Send the holders into klp_bench_hold_func, load [`super::latency::HOLD_PATCH`] and check that its
    /// transition stays open (one transition, not idle: not logged).
    Hold,
    /// Release the holders, wait for the held transition to complete, then disable and unload
    /// `klp_bench_patch_hold` (one more transition, not logged).
    Release,
    /// Read one set of batches for this state (index into the selected states).
    Measure(usize),
}

impl Step {
    /// The livepatch transitions this step starts.
    pub fn transitions(self) -> usize {
        match self {
            Self::Enable(_) | Self::Disable(_) | Self::Hold | Self::Release => 1,
            _ => 0,
        }
    }
}

/// The steps of one visit: `picked` are the indices (into `states`) of the selected states of
/// `visit`, in the order the RNG chose where the order is free.
fn steps(visit: Visit, states: &[State], picked: &[usize]) -> Vec<Step> {
    let mut out = Vec::new();
    match visit {
        Visit::Bare => {
            for &i in picked {
                match states[i] {
                    State::FtraceOnly => out.extend([Step::Load(FTRACE), Step::Measure(i), Step::Unload(FTRACE)]),
                    _ => out.push(Step::Measure(i)),
                }
            }
        }
        Visit::Patch => {
            out.push(Step::Enable(PATCH));
            let mut after_disable = None;
            for &i in picked {
                match states[i] {
                    State::PatchedFtrace => out.extend([Step::Load(FTRACE), Step::Measure(i), Step::Unload(FTRACE)]),
                    State::Stacked => out.extend([
                        Step::Enable(PATCH2),
                        Step::Measure(i),
                        Step::Disable(PATCH2),
                        Step::Unload(PATCH2),
                    ]),
                    State::AfterDisable => after_disable = Some(i),
                    _ => out.push(Step::Measure(i)),
                }
            }
            out.push(Step::Disable(PATCH));
            out.extend(after_disable.map(Step::Measure));
            out.push(Step::Unload(PATCH));
        }
        Visit::Replace => {
            out.extend([Step::Enable(PATCH), Step::Enable(REPLACE), Step::Replaced(PATCH)]);
            out.extend(picked.iter().map(|&i| Step::Measure(i)));
            out.extend([Step::Disable(REPLACE), Step::Unload(REPLACE), Step::Unload(PATCH)]);
        }
        Visit::Held => {
            out.push(Step::Hold);
            out.extend(picked.iter().map(|&i| Step::Measure(i)));
            out.push(Step::Release);
        }
    }
    out
}

/// One round: the visits that have a selected state, in a random order, each with its selected
/// states in a random order (after-disable always comes after the patch's disable, whatever
/// its place here).
pub fn plan_round(states: &[State], rng: &mut Rng) -> Vec<(Visit, Vec<Step>)> {
    let mut visits: Vec<Visit> =
        Visit::ALL.into_iter().filter(|v| states.iter().any(|s| Visit::of(*s) == *v)).collect();
    rng.shuffle(&mut visits);
    visits
        .into_iter()
        .map(|v| {
            let mut picked: Vec<usize> = (0..states.len()).filter(|&i| Visit::of(states[i]) == v).collect();
            rng.shuffle(&mut picked);
            (v, steps(v, states, &picked))
        })
        .collect()
}

/// The states a round measures, in the order it measures them.
pub fn measured(plan: &[(Visit, Vec<Step>)]) -> Vec<usize> {
    plan.iter()
        .flat_map(|(_, s)| s.iter())
        .filter_map(|s| match s {
            Step::Measure(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// The transitions a round goes through.
pub fn transitions(plan: &[(Visit, Vec<Step>)]) -> usize {
    plan.iter().flat_map(|(_, s)| s.iter()).map(|s| s.transitions()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(states: &[State], seed: u64, n: usize) -> Vec<Vec<(Visit, Vec<Step>)>> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| plan_round(states, &mut rng)).collect()
    }

    #[test]
    fn every_state_is_measured_once_per_round_with_nine_transitions() {
        for round in rounds(&State::ALL, 1, 20) {
            let mut m = measured(&round);
            m.sort();
            assert_eq!(m, (0..State::ALL.len()).collect::<Vec<_>>(), "{round:?}");
            assert_eq!(transitions(&round), 9, "{round:?}");
            assert_eq!(round.len(), 4);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_order_and_orders_vary() {
        let a = rounds(&State::ALL, 7, 5);
        assert_eq!(a, rounds(&State::ALL, 7, 5));
        assert_ne!(a, rounds(&State::ALL, 8, 5));
        let orders: std::collections::BTreeSet<Vec<usize>> = a.iter().map(|r| measured(r)).collect();
        assert!(orders.len() > 1, "{orders:?}");
    }

    #[test]
    fn a_visit_measures_its_states_inside_its_configuration() {
        for round in rounds(&State::ALL, 3, 10) {
            let (_, patch) = round.iter().find(|(v, _)| *v == Visit::Patch).unwrap();
            let pos = |s: Step| patch.iter().position(|x| *x == s).unwrap();
            let at = |st: State| pos(Step::Measure(State::ALL.iter().position(|x| *x == st).unwrap()));
            let (en, dis) = (pos(Step::Enable(PATCH)), pos(Step::Disable(PATCH)));
            for st in [State::Patched, State::PatchedFtrace, State::Stacked] {
                assert!(en < at(st) && at(st) < dis, "{patch:?}");
            }
            assert!(dis < at(State::AfterDisable) && at(State::AfterDisable) < pos(Step::Unload(PATCH)));
            assert_eq!(pos(Step::Load(FTRACE)) + 1, at(State::PatchedFtrace));
            assert_eq!(pos(Step::Enable(PATCH2)) + 1, at(State::Stacked));
            let (_, held) = round.iter().find(|(v, _)| *v == Visit::Held).unwrap();
            assert_eq!((held[0], held[3]), (Step::Hold, Step::Release), "{held:?}");
        }
    }

    #[test]
    fn subsets_skip_visits_and_transitions() {
        let only = |states: &[State]| rounds(states, 5, 3);
        // The bare states alone: no transition at all.
        for r in only(&[State::Unpatched, State::FtraceOnly]) {
            assert_eq!((r.len(), transitions(&r)), (1, 0));
        }
        // after-disable alone still enables and disables the patch.
        for r in only(&[State::Unpatched, State::AfterDisable]) {
            assert_eq!(transitions(&r), 2);
            let (_, patch) = r.iter().find(|(v, _)| *v == Visit::Patch).unwrap();
            assert_eq!(patch, &[Step::Enable(PATCH), Step::Disable(PATCH), Step::Measure(1), Step::Unload(PATCH)]);
        }
        // patched without stacked: no klp_bench_patch2.
        for r in only(&[State::Unpatched, State::Patched, State::TransitionPatchedTask]) {
            assert_eq!((r.len(), transitions(&r)), (3, 4));
            assert!(!r.iter().flat_map(|(_, s)| s).any(|s| *s == Step::Enable(PATCH2)));
            let mut m = measured(&r);
            m.sort();
            assert_eq!(m, [0, 1, 2]);
        }
    }
}
