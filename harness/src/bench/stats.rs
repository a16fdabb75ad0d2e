//! Robust statistics for the benchmarks: median, MAD, and a bootstrap confidence interval of
//! paired differences, with the rule that decides whether an effect is resolved. Pure and
//! deterministic (a seeded SplitMix64), so a run can be recomputed from its samples.

/// The median; `None` for no values. NaNs sort last (`total_cmp`).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

/// Median absolute deviation from the median (unscaled): a spread one outlier does not drag.
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    median(&values.iter().map(|v| (v - m).abs()).collect::<Vec<_>>())
}

/// SplitMix64: small, seeded, good enough to resample and shuffle.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for small n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// How many resamples [`bootstrap_median_ci`] draws.
pub const BOOTSTRAP_RESAMPLES: usize = 4000;

/// Percentile bootstrap 95 % interval of the median of `values` (resampling with replacement,
/// [`BOOTSTRAP_RESAMPLES`] times, from `seed`). `None` for no values.
pub fn bootstrap_median_ci(values: &[f64], seed: u64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut sample = vec![0.0; values.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for x in sample.iter_mut() {
            *x = values[rng.below(values.len())];
        }
        medians.push(median(&sample).expect("not empty"));
    }
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (medians.len() - 1) as f64).round() as usize).min(medians.len() - 1)];
    Some((at(0.025), at(0.975)))
}

/// An interval wider than this fraction of the effect leaves the effect unresolved.
pub const RESOLVED_MAX_WIDTH: f64 = 0.25;

/// The effect of a state against the baseline, from paired per-round differences.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedEffect {
    /// Median of the per-round differences (state − baseline).
    pub median: f64,
    /// Bootstrap 95 % interval of that median.
    pub ci95: [f64; 2],
    /// Whether the interval is at most [`RESOLVED_MAX_WIDTH`] of |median| wide. An effect of
    /// exactly zero with an interval of zero width (a deterministic clock) is resolved.
    pub resolved: bool,
    /// The number of paired rounds.
    pub rounds: usize,
}

/// [`PairedEffect`] of `state` against `baseline`, paired by round (equal lengths, ≥ 1).
pub fn paired_effect(state: &[f64], baseline: &[f64], seed: u64) -> Option<PairedEffect> {
    if state.len() != baseline.len() || state.is_empty() {
        return None;
    }
    let diffs: Vec<f64> = state.iter().zip(baseline).map(|(s, b)| s - b).collect();
    let m = median(&diffs)?;
    let (lo, hi) = bootstrap_median_ci(&diffs, seed)?;
    Some(PairedEffect { median: m, ci95: [lo, hi], resolved: resolved(m, lo, hi), rounds: diffs.len() })
}

/// The rule: width ≤ 25 % of |effect|.
pub fn resolved(effect: f64, lo: f64, hi: f64) -> bool {
    (hi - lo) <= RESOLVED_MAX_WIDTH * effect.abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::odd(&[3.0, 1.0, 2.0], Some(2.0), Some(1.0))]
    #[case::even(&[1.0, 2.0, 3.0, 10.0], Some(2.5), Some(1.0))]
    #[case::outlier(&[1.0, 2.0, 3.0, 100.0, 2.5], Some(2.5), Some(0.5))]
    #[case::one(&[7.0], Some(7.0), Some(0.0))]
    #[case::empty(&[], None, None)]
    fn median_and_mad(#[case] v: &[f64], #[case] med: Option<f64>, #[case] spread: Option<f64>) {
        assert_eq!(median(v), med);
        assert_eq!(mad(v), spread);
    }

    #[rstest]
    // Identical differences: the interval is that one value, zero wide: resolved.
    #[case::deterministic(&[110.0; 5], &[10.0; 5], 100.0, [100.0, 100.0], true)]
    // No effect at all on a deterministic clock: zero, resolved as zero.
    #[case::exact_zero(&[10.0; 5], &[10.0; 5], 0.0, [0.0, 0.0], true)]
    // Small noise around a large effect: narrow interval, resolved.
    #[case::tight(&[109.0, 110.0, 111.0, 110.0, 110.5], &[10.0; 5], 100.0, [99.0, 101.0], true)]
    // Noise as large as the effect: the interval spans more than 25 % of it: unresolved.
    #[case::noisy(&[5.0, 30.0, 12.0, 40.0, 1.0], &[0.0; 5], 12.0, [1.0, 40.0], false)]
    // Noise around nothing: unresolved (not reported as a number).
    #[case::noise_around_zero(&[0.5, -0.4, 0.1, -0.2, 0.3], &[0.0; 5], 0.1, [-0.4, 0.5], false)]
    fn paired_effects(
        #[case] state: &[f64],
        #[case] base: &[f64],
        #[case] med: f64,
        #[case] ci_within: [f64; 2],
        #[case] is_resolved: bool,
    ) {
        let e = paired_effect(state, base, 42).unwrap();
        assert!((e.median - med).abs() < 1e-9, "{e:?}");
        assert!(e.ci95[0] >= ci_within[0] - 1e-9 && e.ci95[1] <= ci_within[1] + 1e-9, "{e:?}");
        assert!(e.ci95[0] <= e.median && e.median <= e.ci95[1], "{e:?}");
        assert_eq!(e.resolved, is_resolved, "{e:?}");
        assert_eq!(e.rounds, state.len());
    }

    #[rstest]
    #[case::unequal(&[1.0, 2.0], &[1.0])]
    #[case::empty(&[], &[])]
    fn unpairable(#[case] a: &[f64], #[case] b: &[f64]) {
        assert!(paired_effect(a, b, 1).is_none());
    }

    #[rstest]
    #[case(100.0, 90.0, 115.0, true)]
    #[case(100.0, 80.0, 110.0, false)]
    #[case(-100.0, -110.0, -90.0, true)]
    #[case(0.0, 0.0, 0.0, true)]
    #[case(0.0, -0.1, 0.1, false)]
    fn the_resolution_rule(#[case] effect: f64, #[case] lo: f64, #[case] hi: f64, #[case] expected: bool) {
        assert_eq!(resolved(effect, lo, hi), expected);
    }

    #[test]
    fn the_bootstrap_is_deterministic_and_the_shuffle_a_permutation() {
        let v = [1.0, 5.0, 2.0, 8.0, 3.0, 4.0];
        assert_eq!(bootstrap_median_ci(&v, 7), bootstrap_median_ci(&v, 7));
        let mut p: Vec<usize> = (0..10).collect();
        Rng::new(3).shuffle(&mut p);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(p, sorted, "seed 3 moves something");
    }
}
