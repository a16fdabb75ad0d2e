//! Benchmarks: measured, never asserted. Each reports every sample, the median and the spread,
//! and ratios between variants measured in the same run (these machines are noisy: only
//! comparisons within one run mean something).

pub mod compare;
pub mod latency;
pub mod loaded;
pub mod plot;
pub mod stats;
pub mod visits;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::image::{self, recipe::ChannelKind, GuestRecipe};
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

/// What [`boot_to_agent`] measured: boot-to-agent times and request round trips.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootBench {
    pub boot: Vec<Series>,
    pub round_trip: Vec<Series>,
}

impl BootBench {
    pub fn render(&self, what: &str) -> String {
        format!(
            "{}\n{}",
            render(&format!("boot to agent, {what}"), &self.boot),
            render(&format!("request round trip (`hello`, {ROUND_TRIPS} per boot), {what}"), &self.round_trip)
        )
    }
}

/// `hello`s timed after each boot.
pub const ROUND_TRIPS: usize = 50;

/// Boot-to-agent time under `accel`, `runs` times for each variant, interleaved so drift hits
/// all alike: the agent on the 8250 UART (ttyS1, the channel before virtio-serial) and on the
/// recipe's channel, both booting the extracted vmlinux; and the bzImage with the recipe's
/// channel. After each boot, [`ROUND_TRIPS`] `hello` requests are timed one by one.
pub fn boot_to_agent(
    kernel: &Kernel,
    agent: &Path,
    cache: &Path,
    recipe: &GuestRecipe,
    accel: Accel,
    runs: usize,
    progress: &Progress,
) -> Result<BootBench, String> {
    let (vmlinux, how) = image::boot_image(kernel, cache, progress).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let initramfs = |guest: &GuestRecipe, name: &str| -> Result<PathBuf, String> {
        let path = dir.path().join(name);
        let boot = image::guest_modules(kernel, guest).map_err(|e| e.to_string())?;
        image::Initramfs::new(agent).boot_modules(&boot).write(&path).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let channel = |g: &GuestRecipe| match g.channel.kind {
        ChannelKind::VirtioSerial => "virtio-serial",
        ChannelKind::IsaSerial => "ttyS1",
    };
    let isa = recipe.with_isa_serial();
    let mut variants: Vec<(String, PathBuf, GuestRecipe, PathBuf)> = Vec::new();
    let (main_image, main_name) = if vmlinux != kernel.vmlinuz {
        (vmlinux.clone(), "vmlinux")
    } else {
        progress.note(format!("only the bzImage can be booted: {how}"));
        (kernel.vmlinuz.clone(), "bzImage")
    };
    if recipe.channel.kind != ChannelKind::IsaSerial {
        variants.push((
            format!("{main_name}, {}", channel(&isa)),
            main_image.clone(),
            isa.clone(),
            initramfs(&isa, "isa.cpio")?,
        ));
    }
    let main_initramfs = initramfs(recipe, "recipe.cpio")?;
    variants.push((format!("{main_name}, {}", channel(recipe)), main_image, recipe.clone(), main_initramfs.clone()));
    if vmlinux != kernel.vmlinuz {
        variants.push((
            format!("bzImage, {}", channel(recipe)),
            kernel.vmlinuz.clone(),
            recipe.clone(),
            main_initramfs,
        ));
    }

    let mut boots: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut trips: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for i in 0..runs {
        for (k, (name, image, guest, initramfs)) in variants.iter().enumerate() {
            let mut cfg = VmConfig::new(image, initramfs, &dir.path().join(format!("{k}-{i}")), guest);
            cfg.accel = accel;
            let mut vm = Vm::boot(&cfg).map_err(|e| format!("{name}: {e}"))?;
            let t = vm.boot_time();
            let mut rt = Vec::with_capacity(ROUND_TRIPS);
            for _ in 0..ROUND_TRIPS {
                let s = Instant::now();
                vm.agent().hello().map_err(|e| format!("{name}: {e}"))?;
                rt.push(s.elapsed());
            }
            let off = Instant::now();
            vm.shutdown().map_err(|e| e.to_string())?;
            progress.note(format!(
                "{name} run {}/{runs}: {:.2}s to agent, round trip median {:.2} ms, {:.2}s to power off",
                i + 1,
                t.as_secs_f64(),
                Stats::of(&rt).expect("round trips").median_s * 1e3,
                off.elapsed().as_secs_f64()
            ));
            boots[k].push(t);
            trips[k].extend(rt);
        }
    }
    let series = |samples: Vec<Vec<Duration>>| -> Vec<Series> {
        variants
            .iter()
            .zip(samples)
            .map(|((name, ..), s)| Series {
                name: name.clone(),
                samples_s: s.iter().map(Duration::as_secs_f64).collect(),
                stats: Stats::of(&s).expect("runs > 0"),
            })
            .collect()
    };
    Ok(BootBench { boot: series(boots), round_trip: series(trips) })
}

/// What one virtiofs share costs a case, host time, on guests restored one at a time from one
/// saved booted guest: per run, the restore, then virtiofsd's start, the hot-add
/// (`chardev-add` + `device_add vhost-user-fs-pci`) and the agent's mount of one writable
/// share, and a read through it. Series: daemon, hot-add, mount, total (and the restore, for
/// scale).
pub fn share_cost(
    kernel: &Kernel,
    agent: &Path,
    cache: &Path,
    recipe: &GuestRecipe,
    accel: Accel,
    runs: usize,
    progress: &Progress,
) -> Result<Vec<Series>, String> {
    use crate::vm::virtiofs::Share;
    let (image, _) = image::boot_image(kernel, cache, progress).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let initramfs = dir.path().join("guest.cpio");
    let boot = image::guest_modules(kernel, recipe).map_err(|e| e.to_string())?;
    image::Initramfs::new(agent).boot_modules(&boot).write(&initramfs).map_err(|e| e.to_string())?;
    let cfg = |name: &str| {
        let mut c = VmConfig::new(&image, &initramfs, &dir.path().join(name), recipe);
        c.accel = accel;
        c
    };
    let saved = Vm::boot(&cfg("boot"))
        .and_then(|vm| vm.save_state(&dir.path().join("guest.vmstate")))
        .map_err(|e| format!("booting and saving the guest: {e}"))?;
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
    std::fs::write(shared.join("probe"), "through virtiofs\n").map_err(|e| e.to_string())?;
    let names = ["virtiofsd start", "hot-add", "mount", "share total", "restore (for scale)"];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for i in 0..runs {
        let mut vm = Vm::restore(&cfg(&format!("run-{i}")), &saved).map_err(|e| format!("restore: {e}"))?;
        let t = vm.add_share(&Share::new("bench", &shared, "/mnt/bench", false)).map_err(|e| e.to_string())?;
        let read = vm.agent().read_file("/mnt/bench/probe").map_err(|e| e.to_string())?;
        if read.as_deref() != Ok("through virtiofs\n") {
            return Err(format!("reading through the share gave {read:?}"));
        }
        progress.note(format!(
            "run {}/{runs}: daemon {:.3}s, hot-add {:.3}s, mount {:.3}s, total {:.3}s (restore {:.3}s)",
            i + 1,
            t.daemon_s,
            t.hotadd_s,
            t.mount_s,
            t.total_s(),
            vm.boot_time().as_secs_f64()
        ));
        for (k, v) in [t.daemon_s, t.hotadd_s, t.mount_s, t.total_s(), vm.boot_time().as_secs_f64()].iter().enumerate()
        {
            samples[k].push(Duration::from_secs_f64(*v));
        }
        vm.quit();
    }
    Ok(names
        .iter()
        .zip(samples)
        .map(|(n, s)| Series {
            name: n.to_string(),
            samples_s: s.iter().map(Duration::as_secs_f64).collect(),
            stats: Stats::of(&s).expect("runs > 0"),
        })
        .collect())
}

/// A table of series with each one's ratio to the first.
pub fn render(title: &str, series: &[Series]) -> String {
    let mut out = format!(
        "{title}\n{:<22} {:>4} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
        "", "n", "median", "min", "max", "MAD", "ratio"
    );
    let base = series.first().map(|s| s.stats.median_s).unwrap_or(1.0);
    for s in series {
        let st = &s.stats;
        out.push_str(&format!(
            "{:<22} {:>4} {} {} {} {} {:>7.2}x\n",
            s.name,
            st.n,
            secs(st.median_s),
            secs(st.min_s),
            secs(st.max_s),
            secs(st.mad_s),
            st.median_s / base
        ));
    }
    out
}

/// A duration in 9 columns: seconds, or milliseconds below a tenth of a second.
fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{:>7.3}ms", s * 1e3)
    } else {
        format!("{s:>8.3}s")
    }
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

/// One way of running the same cases, for [`SuiteBench`].
#[derive(Debug, Clone)]
pub struct SuiteVariant {
    pub label: String,
    pub jobs: usize,
    pub fresh_boot: bool,
}

/// The three ways `bench suite` compares: the baseline first.
pub fn suite_variants(jobs: usize) -> Vec<SuiteVariant> {
    vec![
        SuiteVariant { label: "--jobs 1 --fresh-boot".into(), jobs: 1, fresh_boot: true },
        SuiteVariant { label: format!("--jobs {jobs} --fresh-boot"), jobs, fresh_boot: true },
        SuiteVariant { label: format!("--jobs {jobs} (restored guests)"), jobs, fresh_boot: false },
    ]
}

/// Walls and per-case guest start times of each variant, over the rounds.
#[derive(Debug)]
pub struct SuiteBench {
    variants: Vec<SuiteVariant>,
    walls: Vec<Vec<Duration>>,
    starts: Vec<Vec<Duration>>,
    /// Case id → status, per variant (the variants must agree).
    verdicts: Vec<Vec<(String, String)>>,
    summaries: Vec<String>,
}

impl SuiteBench {
    pub fn new(variants: &[SuiteVariant]) -> Self {
        let n = variants.len();
        Self {
            variants: variants.to_vec(),
            walls: vec![Vec::new(); n],
            starts: vec![Vec::new(); n],
            verdicts: vec![Vec::new(); n],
            summaries: vec![String::new(); n],
        }
    }

    pub fn add(&mut self, variant: usize, wall: Duration, report: &crate::report::Report) {
        self.walls[variant].push(wall);
        let cases = report.runs.iter().flat_map(|r| r.cases.iter().map(move |c| (r, c)));
        let mut verdicts = Vec::new();
        for (run, c) in cases {
            if let Some(s) = c.guest_start_s {
                self.starts[variant].push(Duration::from_secs_f64(s));
            }
            verdicts.push((
                format!("{}@{}", c.id, run.kernel.release.as_deref().unwrap_or("?")),
                format!("{:?}", c.status),
            ));
        }
        self.verdicts[variant] = verdicts;
        let s = &report.summary;
        self.summaries[variant] = format!("{}/{}/{}/{}", s.pass, s.fail, s.skip, s.error);
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "variant                          wall median (MAD)     guest start median (MAD)   pass/fail/skip/error\n",
        );
        let wall = |i: usize| Stats::of(&self.walls[i]);
        for (i, v) in self.variants.iter().enumerate() {
            let w = wall(i).map(|s| format!("{:8.1} s ({:.1})", s.median_s, s.mad_s)).unwrap_or_else(|| "-".into());
            let g = Stats::of(&self.starts[i])
                .map(|s| format!("{:6.2} s ({:.2}) n={}", s.median_s, s.mad_s, s.n))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!("{:<32} {:<21} {:<26} {}\n", v.label, w, g, self.summaries[i]));
        }
        if let (Some(base), true) = (wall(0), self.variants.len() > 1) {
            for i in 1..self.variants.len() {
                if let Some(w) = wall(i) {
                    out.push_str(&format!(
                        "ratio {} / {}: {:.3} ({:.1}x faster)\n",
                        self.variants[i].label,
                        self.variants[0].label,
                        w.median_s / base.median_s,
                        base.median_s / w.median_s
                    ));
                }
            }
        }
        let differ: Vec<&(String, String)> =
            self.verdicts.iter().skip(1).flat_map(|v| v.iter().filter(|x| !self.verdicts[0].contains(x))).collect();
        if differ.is_empty() {
            out.push_str("every variant gave the same verdict for every case\n");
        } else {
            out.push_str(&format!("VERDICTS DIFFER between variants: {differ:?}\n"));
        }
        out
    }
}
