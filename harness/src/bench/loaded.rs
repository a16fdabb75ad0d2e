//! `bench latency`, second part: how long a livepatch transition takes when tasks sleep in a
//! patched function (issue item 5). It runs in a guest of its own, booted beside the states'
//! guest from the same image (`latency::run_kernel`): nothing here depends on the states.
//!
//! klp_bench's holder kthreads (`holders=` at load) sleep in `klp_bench_hold_func`, which
//! `klp_bench_patch_hold` patches; each leaves by itself `hold_ms` after it saw the transition
//! start (its own `patch_state` leaving -1; guest time, the module's own clock). A run is one enable and one disable of that patch:
//!
//! - **enable**: the holders go into the *original* function, then the patch is loaded. The
//!   stack check of its patching transition finds the function on their stacks (T4), so it
//!   cannot complete before they leave; `klp_transition_work_fn` retries every
//!   `round_jiffies_relative(HZ)` (T5), and the first retry after their release completes it.
//! - **disable**: with the patch enabled, the holders go into its *new* function (which calls
//!   the same wait), then `enabled` is written 0: the unpatching transition looks for the new
//!   function (T4) and is held the same way.
//!
//! Each transition is measured twice, on the guest's clock: by **polling** (the agent's 1 ms
//! poll, from the end of the request to `transition` reading 0, or the patch's directory gone),
//! and from the **kernel log**: the timestamps of livepatch's `'<p>': starting <dir> transition`
//! and `'<p>': <dir> complete` (both pr_notice), the holders' release (`klp_bench: holders
//! released`), whether `signaling remaining tasks` (T6: fake signals, on the 15th retry) was
//! printed, and — with dynamic debug turned on for `kernel/livepatch/transition.c`, whose
//! `klp_try_switch_task: <comm>:<pid> is sleeping on function …` lines (`klp_check_stack: …` up
//! to 5.10) are pr_debug — how many
//! passes over the tasks failed to switch one: the first in the request itself, then one per
//! retry of the transition work, so the number of retries the work made is that count (its last
//! retry is the one that completed the transition and logs nothing).
//!
//! The holders sleep with `msleep` (TASK_UNINTERRUPTIBLE): livepatch's fake signal wakes
//! interruptible kthreads only, so nothing but their own release ends the transition.

use std::time::{Duration, Instant};

use klp_protocol::{Condition, KmsgRecord};

use super::latency::{self, agent_err, Holders, TransitionKind, HOLD_PATCH};
use super::stats;
use crate::agent_client::AgentClient;
use crate::progress::Progress;

/// What to run (`--load-runs`, `--load-tasks`, `--load-hold-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadSettings {
    /// Runs (one enable and one disable each); 0 skips the part.
    pub runs: usize,
    /// Holder kthreads sleeping in the patched function.
    pub tasks: usize,
    /// How long each holder stays there once the transition started, guest milliseconds.
    pub hold_ms: u32,
}

impl LoadSettings {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.tasks) {
            return Err("--load-tasks must be 1..=16 (klp_bench starts at most 16 holders)".into());
        }
        if self.runs > 0 && self.hold_ms == 0 {
            return Err("--load-hold-ms must be at least 1 (the holders release themselves)".into());
        }
        Ok(())
    }
}

/// One kernel's loaded transitions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadedResult {
    pub tasks: usize,
    pub hold_ms: u32,
    /// The dynamic debug control file that turned livepatch's pr_debug on, or null if neither
    /// /proc/dynamic_debug/control nor debugfs's took it (then `retries` are null).
    pub dyndbg: Option<String>,
    /// Host seconds the whole part took (every run, under icount mostly skipped idle time).
    pub wall_s: f64,
    pub runs: Vec<LoadedRun>,
    /// The guest of their own the runs had, booted at the same time as the states' guest;
    /// absent from the baselines recorded before, whose runs came after the rounds in the
    /// states' guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<OwnGuest>,
}

/// The loaded runs' own guest (same boot image, initramfs and QEMU configuration as the
/// states' guest).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OwnGuest {
    /// Host seconds from starting QEMU to the agent's hello.
    pub boot_s: f64,
    /// Host seconds from starting QEMU to its power-off.
    pub wall_s: f64,
}

/// One loaded transition.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadedRun {
    pub kind: TransitionKind,
    /// Guest ms from the end of the request to the 1 ms poll that saw the transition complete.
    pub poll_ms: f64,
    /// Guest ms between the kernel log's `starting <dir> transition` and `<dir> complete`.
    pub log_ms: Option<f64>,
    /// Guest ms from `starting <dir> transition` to the log's `klp_bench: holders released`.
    pub released_ms: Option<f64>,
    /// Retries of the transition work (see the module's doc); null without dynamic debug.
    pub retries: Option<u32>,
    /// Whether livepatch printed `signaling remaining tasks` (fake signals sent).
    pub fake_signals: bool,
    /// Host ms from the request to the poll's answer.
    pub host_ms: f64,
}

/// What the kernel log says about one transition of `patch`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogFacts {
    pub log_ms: Option<f64>,
    pub released_ms: Option<f64>,
    /// Passes over the tasks that logged a task they could not switch (None: no pass logged
    /// anything and `dyndbg` is off, i.e. unknown).
    pub failed_passes: u32,
    pub fake_signals: bool,
}

/// Passes of `klp_try_complete_transition` log their unswitched tasks within one walk of the
/// task list; two passes are a retry period (about a second) apart. Records further apart than
/// this start a new pass.
const PASS_GAP_US: u64 = 100_000;

/// The prefixes of livepatch's pr_debug lines for a task a pass could not switch: from 5.11 on
/// all come from `klp_try_switch_task` (`is running`, `has an unreliable stack`, `is sleeping on
/// function …`); up to 5.10 the stack ones are written by `klp_check_stack` into a buffer that
/// `klp_try_switch_task` prints as is.
const SWITCH_FAILED: [&str; 2] = ["klp_try_switch_task: ", "klp_check_stack: "];

/// Read the kernel log records of one transition of `patch` (the records from just before its
/// request on).
pub fn analyse(records: &[KmsgRecord], patch: &str, kind: TransitionKind) -> LogFacts {
    let dir = match kind {
        TransitionKind::Enable => "patching",
        TransitionKind::Disable => "unpatching",
    };
    let (start_msg, done_msg) = (format!("'{patch}': starting {dir} transition"), format!("'{patch}': {dir} complete"));
    let start = records.iter().find(|r| r.text.contains(&start_msg)).map(|r| r.ts_us);
    let after = |r: &&KmsgRecord| start.is_some_and(|s| r.ts_us >= s);
    let ts_of = |needle: &str| records.iter().filter(after).find(|r| r.text.contains(needle)).map(|r| r.ts_us);
    let ms = |end: Option<u64>| start.zip(end).map(|(s, e)| e.saturating_sub(s) as f64 / 1e3);
    let mut passes = 0;
    let mut last: Option<u64> = None;
    for r in records.iter().filter(after).filter(|r| SWITCH_FAILED.iter().any(|p| r.text.contains(p))) {
        if last.is_none_or(|l| r.ts_us.saturating_sub(l) > PASS_GAP_US) {
            passes += 1;
        }
        last = Some(r.ts_us);
    }
    LogFacts {
        log_ms: ms(ts_of(&done_msg)),
        released_ms: ms(ts_of("klp_bench: holders released")),
        failed_passes: passes,
        fake_signals: records.iter().filter(after).any(|r| r.text.contains("signaling remaining tasks")),
    }
}

/// Median, lowest and highest of some guest milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(Spread {
            median: stats::median(values)?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: values.len(),
        })
    }
}

impl LoadedResult {
    pub fn of_kind(&self, kind: TransitionKind) -> impl Iterator<Item = &LoadedRun> {
        self.runs.iter().filter(move |r| r.kind == kind)
    }

    /// The transition time of one kind from the kernel log (the poll's where the log lacks it).
    pub fn log_spread(&self, kind: TransitionKind) -> Option<Spread> {
        Spread::of(&self.of_kind(kind).map(|r| r.log_ms.unwrap_or(r.poll_ms)).collect::<Vec<_>>())
    }

    pub fn poll_spread(&self, kind: TransitionKind) -> Option<Spread> {
        Spread::of(&self.of_kind(kind).map(|r| r.poll_ms).collect::<Vec<_>>())
    }

    /// One table cell: `log <median> [min,max] poll <median> r<retries> sig <runs with fake
    /// signals>/<runs>`.
    pub fn cell(&self, kind: TransitionKind) -> String {
        let (Some(l), Some(p)) = (self.log_spread(kind), self.poll_spread(kind)) else {
            return "-".into();
        };
        let retries: Vec<f64> = self.of_kind(kind).filter_map(|r| r.retries.map(f64::from)).collect();
        let r = stats::median(&retries).map_or("r?".to_string(), |m| format!("r{m:.0}"));
        let sig = self.of_kind(kind).filter(|r| r.fake_signals).count();
        format!("log {:.0} [{:.0},{:.0}] poll {:.0} {r} sig {sig}/{}", l.median, l.min, l.max, p.median, l.n)
    }
}

fn dyndbg_on(a: &mut AgentClient) -> Result<Option<String>, String> {
    for path in ["/proc/dynamic_debug/control", "/sys/kernel/debug/dynamic_debug/control"] {
        if a.write_file(path, "file kernel/livepatch/transition.c +p\n").map_err(agent_err)?.is_ok() {
            return Ok(Some(path.into()));
        }
    }
    Ok(None)
}

/// The kernel log from `cursor` on, moving it past what was read.
fn kmsg(a: &mut AgentClient, cursor: &mut u64) -> Result<Vec<KmsgRecord>, String> {
    let r = a.read_kmsg(*cursor).map_err(agent_err)?;
    if let Some(last) = r.last() {
        *cursor = last.seq + 1;
    }
    Ok(r)
}

/// Run the loaded transitions in a guest where klp_bench is loaded with `holders.count`
/// holders and none of its patches is.
pub(crate) fn run(
    a: &mut AgentClient,
    s: &LoadSettings,
    holders: &mut Holders,
    release: &str,
    progress: &Progress,
) -> Result<LoadedResult, String> {
    let started = Instant::now();
    let dyndbg = dyndbg_on(a)?;
    latency::set_param(a, "hold_ms", s.hold_ms)?;
    // Long enough for the hold, the retries after it and a loaded host; a transition that does
    // not complete in that time is an error, not a wait.
    let timeout = Duration::from_millis(u64::from(s.hold_ms)) + Duration::from_secs(60);
    let done = |kind: TransitionKind| match kind {
        TransitionKind::Enable => {
            Condition::FileEquals { path: format!("{}/transition", latency::lp(HOLD_PATCH)), value: "0".into() }
        }
        TransitionKind::Disable => Condition::Absent { path: latency::lp(HOLD_PATCH) },
    };
    let mut cursor = kmsg(a, &mut 0)?.last().map_or(0, |r| r.seq + 1);
    let mut runs = Vec::new();
    for i in 0..s.runs {
        for kind in [TransitionKind::Enable, TransitionKind::Disable] {
            // Enable: into the original function; disable: into the patch's new one.
            holders.hold(a)?;
            kmsg(a, &mut cursor)?;
            let since = Instant::now();
            match kind {
                TransitionKind::Enable => latency::load(a, HOLD_PATCH)?,
                TransitionKind::Disable => latency::write_disable(a, HOLD_PATCH)?,
            }
            let w = a.wait_for_with(done(kind), timeout, Duration::from_millis(1)).map_err(agent_err)?;
            if !w.met {
                return Err(format!(
                    "{HOLD_PATCH}'s {kind:?} transition with {} holders released after {} ms did not complete within {} s (last: {:?})",
                    holders.count,
                    s.hold_ms,
                    timeout.as_secs(),
                    w.last
                ));
            }
            let host_ms = since.elapsed().as_secs_f64() * 1e3;
            let f = analyse(&kmsg(a, &mut cursor)?, HOLD_PATCH, kind);
            runs.push(LoadedRun {
                kind,
                poll_ms: w.elapsed.as_secs_f64() * 1e3,
                log_ms: f.log_ms,
                released_ms: f.released_ms,
                retries: (dyndbg.is_some() || f.failed_passes > 0).then_some(f.failed_passes),
                fake_signals: f.fake_signals,
                host_ms,
            });
        }
        latency::unload(a, HOLD_PATCH)?;
        progress.note(format!("bench latency: {release} loaded run {}/{}", i + 1, s.runs));
    }
    latency::set_param(a, "hold_ms", 0)?;
    holders.release(a)?;
    Ok(LoadedResult {
        tasks: holders.count,
        hold_ms: s.hold_ms,
        dyndbg,
        wall_s: started.elapsed().as_secs_f64(),
        runs,
        guest: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, ts_us: u64, text: &str) -> KmsgRecord {
        KmsgRecord { seq, level: 5, ts_us, text: text.into() }
    }

    #[test]
    fn the_log_gives_the_time_the_retries_and_the_signals() {
        let sleeping = "klp_try_switch_task: klp_bench_hold:40 is sleeping on function klp_bench_hold_func";
        let log = vec![
            rec(1, 900_000, "livepatch: 'klp_bench_patch_hold': completing unpatching transition"),
            rec(2, 1_000_000, "livepatch: 'klp_bench_patch_hold': initializing patching transition"),
            rec(3, 1_000_100, "livepatch: 'klp_bench_patch_hold': starting patching transition"),
            // The pass in the request: two holders, logged together.
            rec(4, 1_000_300, sleeping),
            rec(5, 1_000_350, sleeping),
            // Two retries a second apart.
            rec(6, 2_000_000, sleeping),
            rec(7, 2_000_040, sleeping),
            rec(8, 2_500_100, "klp_bench: holders released (hold 3)"),
            rec(9, 3_000_000, sleeping),
            rec(10, 4_000_000, "livepatch: 'klp_bench_patch_hold': completing patching transition"),
            rec(11, 4_000_100, "livepatch: 'klp_bench_patch_hold': patching complete"),
        ];
        let f = analyse(&log, HOLD_PATCH, TransitionKind::Enable);
        assert_eq!(
            f,
            LogFacts { log_ms: Some(3000.0), released_ms: Some(1500.0), failed_passes: 3, fake_signals: false }
        );
        // The unpatching one is not in this log: nothing is made up.
        let d = analyse(&log, HOLD_PATCH, TransitionKind::Disable);
        assert_eq!(d, LogFacts::default());
        // 5.10 names klp_check_stack, which wrote the line.
        let old: Vec<KmsgRecord> = log
            .iter()
            .map(|r| KmsgRecord { text: r.text.replace("klp_try_switch_task", "klp_check_stack"), ..r.clone() })
            .collect();
        assert_eq!(analyse(&old, HOLD_PATCH, TransitionKind::Enable).failed_passes, 3);
        let mut sig = log.clone();
        sig.insert(8, rec(12, 2_600_000, "livepatch: signaling remaining tasks"));
        assert!(analyse(&sig, HOLD_PATCH, TransitionKind::Enable).fake_signals);
    }

    #[test]
    fn spreads_and_cells() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0, n: 3 }));
        let run = |kind, log_ms, retries, fake_signals| LoadedRun {
            kind,
            poll_ms: 1000.0,
            log_ms,
            released_ms: None,
            retries,
            fake_signals,
            host_ms: 5.0,
        };
        let r = LoadedResult {
            tasks: 2,
            hold_ms: 500,
            dyndbg: Some("/proc/dynamic_debug/control".into()),
            wall_s: 1.0,
            runs: vec![
                run(TransitionKind::Enable, Some(990.0), Some(1), false),
                run(TransitionKind::Enable, Some(1010.0), Some(1), true),
                run(TransitionKind::Enable, None, None, false),
                run(TransitionKind::Disable, Some(2000.0), Some(2), false),
            ],
            guest: Some(OwnGuest { boot_s: 10.0, wall_s: 30.0 }),
        };
        // The run without a log time counts with its poll time.
        assert_eq!(
            r.log_spread(TransitionKind::Enable),
            Some(Spread { median: 1000.0, min: 990.0, max: 1010.0, n: 3 })
        );
        assert_eq!(r.cell(TransitionKind::Enable), "log 1000 [990,1010] poll 1000 r1 sig 1/3");
        assert_eq!(r.cell(TransitionKind::Disable), "log 2000 [2000,2000] poll 1000 r2 sig 0/1");
    }
}
