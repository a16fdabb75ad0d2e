//! Benchmarks: measured, never asserted. Each reports every sample, the median and the spread,
//! and ratios between variants measured in the same run (these machines are noisy: only
//! comparisons within one run mean something).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::image;
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::vm::{Accel, Vm, VmConfig};

/// Summary statistics of one series of samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub n: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Median absolute deviation: a spread that one outlier does not drag.
    pub mad_s: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        let median = median_sorted(&s);
        let mut dev: Vec<f64> = s.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        Some(Self { n: s.len(), median_s: median, min_s: s[0], max_s: s[s.len() - 1], mad_s: median_sorted(&dev) })
    }
}

fn median_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// One named series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    pub name: String,
    pub samples_s: Vec<f64>,
    pub stats: Stats,
}

/// Boot-to-agent time under `accel`, `runs` times from each boot image the kernel offers (the
/// bzImage and the extracted vmlinux), interleaved so drift hits both alike.
pub fn boot_to_agent(
    kernel: &Kernel,
    agent: &Path,
    cache: &Path,
    accel: Accel,
    runs: usize,
    progress: &Progress,
) -> Result<Vec<Series>, String> {
    let (vmlinux, how) = image::boot_image(kernel, cache, progress).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let initramfs = dir.path().join("initramfs.cpio");
    image::Initramfs::new(agent)
        .boot_modules(&image::vm_boot_modules(kernel))
        .write(&initramfs)
        .map_err(|e| e.to_string())?;
    let mut images: Vec<(String, PathBuf)> = vec![("bzImage".into(), kernel.vmlinuz.clone())];
    if vmlinux != kernel.vmlinuz {
        images.push(("vmlinux (PVH)".into(), vmlinux));
    } else {
        progress.note(format!("only the bzImage can be booted: {how}"));
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); images.len()];
    for i in 0..runs {
        for (k, (name, image)) in images.iter().enumerate() {
            let mut cfg = VmConfig::new(image, &initramfs, &dir.path().join(format!("{k}-{i}")));
            cfg.accel = accel;
            let vm = Vm::boot(&cfg).map_err(|e| format!("{name}: {e}"))?;
            let t = vm.boot_time();
            let off = Instant::now();
            vm.shutdown().map_err(|e| e.to_string())?;
            progress.note(format!(
                "{name} run {}/{runs}: {:.2}s to agent, {:.2}s to power off",
                i + 1,
                t.as_secs_f64(),
                off.elapsed().as_secs_f64()
            ));
            samples[k].push(t);
        }
    }
    Ok(images
        .into_iter()
        .zip(samples)
        .map(|((name, _), s)| Series {
            name,
            samples_s: s.iter().map(Duration::as_secs_f64).collect(),
            stats: Stats::of(&s).expect("runs > 0"),
        })
        .collect())
}

/// A table of series with each one's ratio to the first.
pub fn render(title: &str, series: &[Series]) -> String {
    let mut out = format!(
        "{title}\n{:<16} {:>3} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
        "", "n", "median", "min", "max", "MAD", "ratio"
    );
    let base = series.first().map(|s| s.stats.median_s).unwrap_or(1.0);
    for s in series {
        let st = &s.stats;
        out.push_str(&format!(
            "{:<16} {:>3} {:>8.3}s {:>8.3}s {:>8.3}s {:>8.3}s {:>7.2}x\n",
            s.name,
            st.n,
            st.median_s,
            st.min_s,
            st.max_s,
            st.mad_s,
            st.median_s / base
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_robust() {
        let d = |v: &[f64]| v.iter().map(|s| Duration::from_secs_f64(*s)).collect::<Vec<_>>();
        let s = Stats::of(&d(&[1.0, 2.0, 3.0, 100.0, 2.5])).unwrap();
        assert_eq!((s.n, s.median_s, s.min_s, s.max_s), (5, 2.5, 1.0, 100.0));
        assert_eq!(s.mad_s, 0.5);
        assert_eq!(Stats::of(&d(&[1.0, 3.0])).unwrap().median_s, 2.0);
        assert!(Stats::of(&[]).is_none());
    }
}
