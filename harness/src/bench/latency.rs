//! `bench latency`: what a livepatched function costs its callers, per kernel.
//!
//! Two guests per kernel, booted fresh at the same time from the same image: one for the
//! states, one for the transitions under load ([`super::loaded`]; none with `--load-runs 0`),
//! so a kernel takes as long as the slower of the two. The modules (`reference-kmod/variants/klp_bench*.rs`):
//! `klp_bench` holds the measured function `klp_bench_func` (an ftrace location) and its untraced
//! twin, and times batches of calls of both with preemption and interrupts off whenever
//! /proc/klp_bench is read; `klp_bench_ftrace` is a plain `ftrace_ops` on the function;
//! `klp_bench_patch` and `klp_bench_patch2` are livepatches of it (the second stacked on the
//! first); `klp_ref_replace_empty` is the atomic-replace patch that replaces them with nops.
//!
//! Each round makes, in a new random order (never "all of A, then all of B"), the visits of
//! [`super::visits`]: each enters one configuration from the bare target (nothing; the patch;
//! the patch replaced by an empty atomic replace; a held transition), reads one set of batches
//! for every selected [`State`] it offers (patched, patched+ftrace and stacked in a random
//! order, after-disable once the patch is disabled), and leaves it: 9 transitions a round
//! instead of 17 when each state was entered and left on its own. The first `warmup` batches of
//! each read (after every state change) are discarded. A batch gives one value: the per-call cost
//! `(ticks of the function's calls − ticks of the twin's calls) / calls`, i.e. what the ftrace
//! location and whatever hangs on it cost on top of the function itself.
//!
//! Clocks ([`Clock`]): the guest's TSC, which under `-icount shift=0,sleep=off` counts guest
//! instructions (deterministic, comparable across kernels and hosts), and under plain TCG is
//! the host's TSC (host time: noisy, comparable only within one run). Never mixed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use klp_protocol::Condition;

use super::loaded::{self, LoadSettings, LoadedResult};
use super::stats::{self, PairedEffect};
use super::visits::{self, Step};
use crate::agent_client::AgentClient;
use crate::image::{self, GuestRecipe};
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::vm::{Accel, Vm, VmConfig};

/// The schema name `bench.json` carries (`reports/schema/bench.schema.json`).
pub const SCHEMA: &str = "klp-conform.bench.v1";

/// The modules the benchmark loads (all built with the reference modules).
pub const MODULES: [&str; 6] = [
    "klp_bench",
    "klp_bench_ftrace",
    "klp_bench_patch",
    "klp_bench_patch2",
    "klp_bench_patch_hold",
    "klp_ref_replace_empty",
];

/// What the guest's TSC counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// `-icount shift=0,sleep=off` on single-threaded TCG: one tick per guest instruction.
    Icount,
    /// Plain TCG: the host's TSC, i.e. host time spent emulating.
    Host,
}

impl Clock {
    /// The unit of a per-call cost on this clock.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Icount => "instructions/call",
            Self::Host => "host-tsc-ticks/call",
        }
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Icount => "icount",
            Self::Host => "host",
        })
    }
}

/// The states measured, in report order; the first is the baseline of the paired differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Only the target module: its ftrace location is a NOP.
    Unpatched,
    /// A plain ftrace_ops (no SAVE_REGS, no IPMODIFY) on the function.
    FtraceOnly,
    /// One livepatch, transition complete.
    Patched,
    /// The livepatch and the plain ftrace_ops: two ops on one function (ftrace's list path).
    #[serde(rename = "patched+ftrace")]
    PatchedFtrace,
    /// Two livepatches of the function, the second stacked on the first.
    Stacked,
    /// The livepatch, then an atomic-replace patch with no functions (its nop is discarded once
    /// its transition completes).
    ReplaceNop,
    /// The livepatch enabled then disabled (its module still loaded).
    AfterDisable,
    /// `klp_bench_patch_hold`'s patching transition held open by klp_bench's holder kthreads
    /// (asleep in its other function), measured from holder 0: a task the transition cannot
    /// switch (patch_state 0), for which `klp_ftrace_handler` takes the transition branch and
    /// falls back to the original function.
    TransitionUnpatchedTask,
    /// The same held transition, measured from the agent's reading task, already switched
    /// (patch_state 1): the transition branch, then the new function.
    TransitionPatchedTask,
}

impl State {
    pub const ALL: [State; 9] = [
        Self::Unpatched,
        Self::FtraceOnly,
        Self::Patched,
        Self::PatchedFtrace,
        Self::Stacked,
        Self::ReplaceNop,
        Self::AfterDisable,
        Self::TransitionUnpatchedTask,
        Self::TransitionPatchedTask,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Unpatched => "unpatched",
            Self::FtraceOnly => "ftrace-only",
            Self::Patched => "patched",
            Self::PatchedFtrace => "patched+ftrace",
            Self::Stacked => "stacked",
            Self::ReplaceNop => "replace-nop",
            Self::AfterDisable => "after-disable",
            Self::TransitionUnpatchedTask => "transition-unpatched-task",
            Self::TransitionPatchedTask => "transition-patched-task",
        }
    }

    /// For the transition-held states, the measuring task's `patch_state` during the batches.
    pub fn held_patch_state(self) -> Option<i32> {
        match self {
            Self::TransitionUnpatchedTask => Some(0),
            Self::TransitionPatchedTask => Some(1),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub clock: Clock,
    pub rounds: usize,
    /// Batches kept per state and round.
    pub batches: usize,
    /// Batches discarded at the start of each read (after every state change).
    pub warmup: usize,
    /// Calls of the function (and of its twin) per batch.
    pub calls: usize,
    /// Seed of the round order and the bootstrap.
    pub seed: u64,
    pub states: Vec<State>,
    /// The transitions under load, in their own guest beside the states' (`runs` 0: none).
    pub load: LoadSettings,
    /// Kernel functions to time with the guest's function_graph tracer during the rounds
    /// (`--trace-functions`, for finding where a state change spends its time; empty: off).
    pub trace_functions: Vec<String>,
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.rounds == 0 || self.batches == 0 || self.calls == 0 {
            return Err("--rounds, --batches and --calls must be at least 1".into());
        }
        if self.batches + self.warmup > 200 || self.calls > 100_000 {
            return Err("at most 200 batches (warm-up included) of at most 100000 calls".into());
        }
        if self.states.first() != Some(&State::Unpatched) {
            return Err("the unpatched state is the baseline and comes first".into());
        }
        self.load.check()
    }
}

/// `bench.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub benchmark: String,
    /// RFC 3339.
    pub started_at: String,
    pub clock: Clock,
    /// Per-call costs are in this unit.
    pub unit: String,
    pub settings: SettingsOut,
    pub kernels: Vec<KernelResult>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SettingsOut {
    pub rounds: usize,
    pub batches: usize,
    pub warmup: usize,
    pub calls: usize,
    pub seed: u64,
    /// The transitions under load (absent from the first baselines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadSettings>,
}

/// One kernel's run, with what its numbers depend on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelResult {
    /// As given (`6.1`, `debian:<abi>`, a path).
    pub spec: String,
    pub release: String,
    pub environment: Environment,
    /// Seconds: booting the states' guest, and the whole benchmark on this kernel (from both
    /// guests' start to the later power-off; the module build, cached after the first run, is
    /// not in it).
    pub boot_s: f64,
    pub wall_s: f64,
    /// Seconds from the states' guest's start to its power-off (absent from the baselines
    /// recorded before the loaded runs had their own guest, when it was `wall_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states_wall_s: Option<f64>,
    pub states: Vec<StateResult>,
    /// Every livepatch transition the state changes went through, idle, in order (absent from
    /// the first baselines, which still load as `--baseline`).
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// The transitions under load (absent from the first baselines, and with `--load-runs 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<LoadedResult>,
}

/// One transition: from the request (the module's load for an enable, the write of 0 to
/// `enabled` for a disable) until the agent's poll (every millisecond) saw it complete.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    pub patch: String,
    pub kind: TransitionKind,
    /// Guest milliseconds (the agent's clock; virtual time under icount, where an idle guest's
    /// timers fire at once), from the end of the request to the poll that saw `transition`
    /// read 0 (enable) or the patch's sysfs directory gone (disable): 0 when the transition
    /// completed within the request.
    pub guest_ms: f64,
    /// Host milliseconds from sending the request to the poll's answer, agent round trips
    /// included: under icount, host time spent emulating (ratios within a run only).
    pub host_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Enable,
    Disable,
}

/// What a per-call cost depends on besides the kernel's code.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    pub clock: Clock,
    /// `tcg` (the only accelerator the benchmark uses so far).
    pub accel: String,
    /// `shift=0,sleep=off`, or null without icount.
    pub icount: Option<String>,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// The guest CPU model (QEMU's default under TCG: `qemu64`).
    pub cpu: String,
    pub vcpus: u32,
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource` in the guest.
    pub clocksource: String,
    /// CONFIG_HZ.
    pub hz: Option<u32>,
    /// `DYNAMIC_FTRACE_WITH_ARGS`, `DYNAMIC_FTRACE_WITH_REGS` (or both, `+`), or `none`.
    pub ftrace_flavour: String,
    /// `PREEMPT_RT`, `PREEMPT`, `PREEMPT_DYNAMIC`, `PREEMPT_VOLUNTARY` or `PREEMPT_NONE`.
    pub preempt: String,
}

/// One state on one kernel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateResult {
    pub state: State,
    /// Median and MAD of every kept batch's per-call cost (all rounds pooled).
    pub median: f64,
    pub mad: f64,
    pub n: usize,
    /// The median per-call cost of each round, in round order (what the pairing uses).
    pub round_medians: Vec<f64>,
    /// The twin's median per-call time (calibration: the function itself, without the ftrace
    /// location).
    pub calibration_median: f64,
    /// Against the baseline state, paired by round; null for the baseline itself.
    pub vs_unpatched: Option<PairedEffect>,
    /// Every kept batch: `[function ticks, twin ticks]`, per round.
    pub batches: Vec<Vec<[u64; 2]>>,
}

/// One read of /proc/klp_bench (or /proc/klp_bench_held).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRead {
    /// Calls per batch the module used.
    pub calls: usize,
    /// The measuring task and its `patch_state` (the same before and after the batches, or
    /// the read is refused), when the module says (it always does since the held states).
    pub task: Option<(i32, i32)>,
    /// `(function ticks, twin ticks)` per batch.
    pub batches: Vec<[u64; 2]>,
}

/// Parse one read of /proc/klp_bench; a `klp_bench: …` line after the header (wrong result,
/// patch_state changed) is the module refusing its own batches.
pub fn parse_batches(text: &str) -> Result<BenchRead, String> {
    let mut lines = text.lines();
    let head = lines.next().ok_or("empty /proc/klp_bench")?;
    let words: Vec<&str> = head.split_whitespace().collect();
    let bad = || format!("bad header `{head}`");
    let (calls, task) = match words.as_slice() {
        ["klp_bench:", "clock", "tsc", "calls", c, "batches", _] => (c.parse::<usize>().map_err(|_| bad())?, None),
        ["klp_bench:", "clock", "tsc", "calls", c, "batches", _, "pid", p, "patch_state", s] => (
            c.parse::<usize>().map_err(|_| bad())?,
            Some((p.parse::<i32>().map_err(|_| bad())?, s.parse::<i32>().map_err(|_| bad())?)),
        ),
        _ => return Err(bad()),
    };
    let mut batches = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace().map(str::parse::<u64>);
        match (w.next(), w.next(), w.next()) {
            (Some(Ok(f)), Some(Ok(t)), None) => batches.push([f, t]),
            _ => return Err(format!("bad batch line `{l}`")),
        }
    }
    Ok(BenchRead { calls, task, batches })
}

/// Per-call cost of one batch: (function − twin) / calls.
pub fn per_call(b: [u64; 2], calls: usize) -> f64 {
    (b[0] as f64 - b[1] as f64) / calls as f64
}

/// The summary of one state from its rounds of batches; `baseline` are the baseline state's
/// round medians (None for the baseline itself).
pub fn summarize(
    state: State,
    rounds: Vec<Vec<[u64; 2]>>,
    calls: usize,
    baseline: Option<&[f64]>,
    seed: u64,
) -> StateResult {
    let all: Vec<f64> = rounds.iter().flatten().map(|b| per_call(*b, calls)).collect();
    let twin: Vec<f64> = rounds.iter().flatten().map(|b| b[1] as f64 / calls as f64).collect();
    let round_medians: Vec<f64> = rounds
        .iter()
        .map(|r| stats::median(&r.iter().map(|b| per_call(*b, calls)).collect::<Vec<_>>()).unwrap_or(f64::NAN))
        .collect();
    let vs_unpatched = baseline.and_then(|b| stats::paired_effect(&round_medians, b, seed));
    StateResult {
        state,
        median: stats::median(&all).unwrap_or(f64::NAN),
        mad: stats::mad(&all).unwrap_or(f64::NAN),
        n: all.len(),
        round_medians,
        calibration_median: stats::median(&twin).unwrap_or(f64::NAN),
        vs_unpatched,
        batches: rounds,
    }
}

// ---------------------------------------------------------------------------------------------
// The guest side

pub(crate) fn agent_err(e: impl std::fmt::Display) -> String {
    format!("agent: {e}")
}

pub(crate) fn load(a: &mut AgentClient, name: &str) -> Result<(), String> {
    a.load_module(&image::guest_module_path(name), "")
        .map_err(agent_err)?
        .map_err(|e| format!("loading {name}: {} ({})", e.name, e.message))
}

pub(crate) fn wait(a: &mut AgentClient, c: Condition, what: &str) -> Result<Duration, String> {
    let w = a.wait_for_with(c, Duration::from_secs(60), Duration::from_millis(1)).map_err(agent_err)?;
    if w.met {
        Ok(w.elapsed)
    } else {
        Err(format!("{what} did not happen within 60 s (last: {:?})", w.last))
    }
}

/// The transitions seen while changing states.
type Log = Vec<Transition>;

fn record(log: &mut Log, patch: &str, kind: TransitionKind, guest: Duration, since: Instant) {
    let host_ms = since.elapsed().as_secs_f64() * 1e3;
    log.push(Transition { patch: patch.into(), kind, guest_ms: guest.as_secs_f64() * 1e3, host_ms });
}

pub(crate) fn lp(name: &str) -> String {
    format!("/sys/kernel/livepatch/{name}")
}

/// The livepatch whose transition klp_bench's holders hold open (transition-held states, and
/// the transitions under load).
pub(crate) const HOLD_PATCH: &str = "klp_bench_patch_hold";

/// Load a livepatch and wait until its transition completed.
fn enable(a: &mut AgentClient, name: &str, log: &mut Log) -> Result<(), String> {
    let since = Instant::now();
    load(a, name)?;
    let c = Condition::FileEquals { path: format!("{}/transition", lp(name)), value: "0".into() };
    let d = wait(a, c, &format!("{name}'s patching transition"))?;
    record(log, name, TransitionKind::Enable, d, since);
    Ok(())
}

/// Disable a livepatch and wait until it is gone from sysfs (its module stays loaded).
fn disable(a: &mut AgentClient, name: &str, log: &mut Log) -> Result<(), String> {
    let since = Instant::now();
    write_disable(a, name)?;
    let d = wait(a, Condition::Absent { path: lp(name) }, &format!("{name}'s unpatching"))?;
    record(log, name, TransitionKind::Disable, d, since);
    Ok(())
}

pub(crate) fn write_disable(a: &mut AgentClient, name: &str) -> Result<(), String> {
    a.write_file(&format!("{}/enabled", lp(name)), "0\n")
        .map_err(agent_err)?
        .map_err(|e| format!("disabling {name}: {}", e.name))
}

/// Unload, retrying while the module is still referenced (a disabled patch's module is
/// released by the livepatch core's work, shortly after its sysfs directory went).
pub(crate) fn unload(a: &mut AgentClient, name: &str) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match a.unload_module(name).map_err(agent_err)? {
            Ok(()) => return Ok(()),
            Err(e) if (e.name == "EAGAIN" || e.name == "EBUSY") && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("unloading {name}: {} ({})", e.name, e.message)),
        }
    }
}

pub(crate) fn set_param(a: &mut AgentClient, param: &str, value: impl std::fmt::Display) -> Result<(), String> {
    a.write_file(&format!("/sys/module/klp_bench/parameters/{param}"), &format!("{value}\n"))
        .map_err(agent_err)?
        .map_err(|e| format!("setting klp_bench {param}={value}: {}", e.name))
}

/// klp_bench's holder kthreads, driven through its `hold` parameter.
pub(crate) struct Holders {
    /// How many klp_bench started (`holders=` at load).
    pub count: usize,
    /// The last `hold` generation written (each new one sends every holder in once).
    generation: u32,
}

impl Holders {
    pub(crate) fn new(count: usize) -> Self {
        Self { count, generation: 0 }
    }

    /// Send every holder into klp_bench_hold_func (released by [`Holders::release`], or by the
    /// module after `hold_ms` if that is set) and wait until all of them are in.
    pub(crate) fn hold(&mut self, a: &mut AgentClient) -> Result<(), String> {
        self.generation += 1;
        set_param(a, "hold", self.generation)?;
        let c = Condition::FileEquals {
            path: "/sys/module/klp_bench/parameters/holding".into(),
            value: self.count.to_string(),
        };
        wait(a, c, &format!("all {} holders inside klp_bench_hold_func", self.count)).map(|_| ())
    }

    /// Let every holder out (they do not go back in until the next [`Holders::hold`]) and wait
    /// until none is inside.
    pub(crate) fn release(&mut self, a: &mut AgentClient) -> Result<(), String> {
        set_param(a, "hold", 0)?;
        let c = Condition::FileEquals { path: "/sys/module/klp_bench/parameters/holding".into(), value: "0".into() };
        wait(a, c, "the holders leaving klp_bench_hold_func").map(|_| ())
    }
}

/// What the state changes carry along: the idle transitions seen, and the holders.
struct Ctx {
    log: Log,
    holders: Holders,
}

fn transition_is(a: &mut AgentClient, patch: &str, want: &str, when: &str) -> Result<(), String> {
    let t = a
        .read_file(&format!("{}/transition", lp(patch)))
        .map_err(agent_err)?
        .map_err(|e| format!("{patch}/transition: {}", e.name))?;
    if t.trim() != want {
        return Err(format!("{patch}/transition reads {} {when}, not {want}", t.trim()));
    }
    Ok(())
}

/// Carry out one step of a visit (the measurements are [`measure`]'s).
fn run_step(a: &mut AgentClient, step: Step, cx: &mut Ctx) -> Result<(), String> {
    let log = &mut cx.log;
    match step {
        Step::Load(m) => load(a, m),
        Step::Unload(m) => unload(a, m),
        Step::Enable(p) => enable(a, p, log),
        Step::Disable(p) => disable(a, p, log),
        Step::Replaced(p) => wait(a, Condition::Absent { path: lp(p) }, &format!("{p}'s replacement")).map(|_| ()),
        Step::Hold => {
            // The holders sleep in the original klp_bench_hold_func: the patching transition
            // of a patch of it cannot complete while they are there.
            cx.holders.hold(a)?;
            load(a, HOLD_PATCH)?;
            transition_is(a, HOLD_PATCH, "1", "with the holders asleep in klp_bench_hold_func")
        }
        Step::Release => {
            // Released, the holders leave the function; the next retry of the transition work
            // (every second) switches them and completes it. Not an idle transition: not logged.
            cx.holders.release(a)?;
            let c = Condition::FileEquals { path: format!("{}/transition", lp(HOLD_PATCH)), value: "0".into() };
            wait(a, c, &format!("{HOLD_PATCH}'s patching transition once the holders were released"))?;
            write_disable(a, HOLD_PATCH)?;
            wait(a, Condition::Absent { path: lp(HOLD_PATCH) }, &format!("{HOLD_PATCH}'s unpatching"))?;
            unload(a, HOLD_PATCH)
        }
        Step::Measure(_) => unreachable!("measurements are not state changes"),
    }
}

/// What a step does, for error messages.
fn step_name(step: Step) -> String {
    match step {
        Step::Load(m) => format!("loading {m}"),
        Step::Unload(m) => format!("unloading {m}"),
        Step::Enable(p) => format!("enabling {p}"),
        Step::Disable(p) => format!("disabling {p}"),
        Step::Replaced(p) => format!("waiting for {p}'s replacement"),
        Step::Hold => format!("holding {HOLD_PATCH}'s transition open"),
        Step::Release => format!("releasing {HOLD_PATCH}'s transition and removing it"),
        Step::Measure(i) => format!("measuring state {i}"),
    }
}

/// Read one set of batches and drop the warm-up. For a transition-held state, from the task
/// the state names, checked: its patch_state as the module saw it during the batches and as
/// /proc/<pid>/patch_state shows it, and the patch still in transition afterwards.
fn measure(a: &mut AgentClient, s: &Settings, state: State) -> Result<Vec<[u64; 2]>, String> {
    let path = match state {
        State::TransitionUnpatchedTask => "/proc/klp_bench_held",
        _ => "/proc/klp_bench",
    };
    let text = a.read_file(path).map_err(agent_err)?.map_err(|e| format!("{path}: {}", e.name))?;
    let BenchRead { calls, task, mut batches } = parse_batches(&text)?;
    if calls != s.calls || batches.len() != s.batches + s.warmup {
        return Err(format!(
            "{path} ran {} batches of {calls} calls, not {} of {}",
            batches.len(),
            s.batches + s.warmup,
            s.calls
        ));
    }
    if let Some(want) = state.held_patch_state() {
        let (pid, ps) = task.ok_or_else(|| format!("{path} does not say which task measured"))?;
        if ps != want {
            return Err(format!("{path}: the measuring task {pid} had patch_state {ps}, not {want}"));
        }
        let tasks = a.tasks().map_err(agent_err)?;
        let t = tasks.iter().find(|t| t.tid == pid).ok_or_else(|| format!("task {pid} is not in /proc"))?;
        if t.patch_state != Some(want) {
            return Err(format!(
                "/proc/{pid}/patch_state ({}) reads {:?} after the batches, not {want}",
                t.comm, t.patch_state
            ));
        }
        transition_is(a, HOLD_PATCH, "1", "after the batches")?;
    }
    Ok(batches.split_off(s.warmup))
}

/// Turn on the function_graph tracer on `functions` (each one that the kernel cannot trace is
/// named on stderr and skipped).
fn trace_on(a: &mut AgentClient, functions: &[String]) -> Result<(), String> {
    let t = "/sys/kernel/tracing";
    let mut traced = 0;
    for f in functions {
        match a.write_file(&format!("{t}/set_ftrace_filter"), &format!("{f}\n")).map_err(agent_err)? {
            Ok(()) => traced += 1,
            Err(e) => eprintln!("bench latency: --trace-functions: {f}: {} (not traceable on this kernel)", e.name),
        }
    }
    if traced == 0 {
        // An empty filter would trace every function of the kernel.
        return Err("none of the --trace-functions can be traced on this kernel".into());
    }
    a.write_file(&format!("{t}/buffer_size_kb"), "8192\n")
        .map_err(agent_err)?
        .map_err(|e| format!("{t}/buffer_size_kb: {}", e.name))?;
    a.write_file(&format!("{t}/current_tracer"), "function_graph\n")
        .map_err(agent_err)?
        .map_err(|e| format!("{t}/current_tracer: {}", e.name))
}

/// Stop tracing and write the trace to `logs/trace.txt`.
fn trace_save(a: &mut AgentClient, logs: &Path) -> Result<(), String> {
    let t = "/sys/kernel/tracing";
    a.write_file(&format!("{t}/tracing_on"), "0\n")
        .map_err(agent_err)?
        .map_err(|e| format!("{t}/tracing_on: {}", e.name))?;
    let text = a.read_file(&format!("{t}/trace")).map_err(agent_err)?.map_err(|e| format!("{t}/trace: {}", e.name))?;
    let path = logs.join("trace.txt");
    crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// What the host and the kernel's config say about the environment (the guest's clocksource
/// is filled in once it runs).
pub fn environment(kernel: &Kernel, clock: Clock, vcpus: u32) -> Environment {
    let cfg = crate::kernel::config::KConfig::load(&kernel.config)
        .unwrap_or_else(|_| crate::kernel::config::KConfig::parse(""));
    let flavour: Vec<&str> =
        ["DYNAMIC_FTRACE_WITH_ARGS", "DYNAMIC_FTRACE_WITH_REGS"].into_iter().filter(|o| cfg.on(o)).collect();
    let preempt = ["PREEMPT_RT", "PREEMPT_DYNAMIC", "PREEMPT", "PREEMPT_VOLUNTARY", "PREEMPT_NONE"]
        .into_iter()
        .find(|o| cfg.on(o))
        .unwrap_or("unknown");
    let qemu_version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    Environment {
        clock,
        accel: "tcg".into(),
        icount: (clock == Clock::Icount).then(|| "shift=0,sleep=off".into()),
        qemu_version,
        cpu: "qemu64 (QEMU's TCG default; no -cpu given)".into(),
        vcpus,
        clocksource: String::new(),
        hz: cfg.int("HZ"),
        ftrace_flavour: if flavour.is_empty() { "none".into() } else { flavour.join("+") },
        preempt: preempt.into(),
    }
}

/// A kernel with its modules built (name → .ko), the agent, the cache and the guest recipe.
pub struct KernelInput<'a> {
    pub kernel: &'a Kernel,
    pub modules: &'a std::collections::BTreeMap<String, PathBuf>,
    pub agent: &'a Path,
    pub cache: &'a Path,
    pub recipe: &'a GuestRecipe,
}

/// What both guests of a kernel boot: the same image, initramfs and QEMU configuration.
struct GuestSetup {
    boot_image: PathBuf,
    initramfs: PathBuf,
    recipe: GuestRecipe,
}

impl GuestSetup {
    /// A guest whose console and QEMU logs go to `logs`.
    fn config(&self, settings: &Settings, logs: &Path) -> VmConfig {
        let mut cfg = VmConfig::new(&self.boot_image, &self.initramfs, logs, &self.recipe);
        cfg.accel = Accel::Tcg;
        cfg.icount = settings.clock == Clock::Icount;
        cfg.boot_timeout = Duration::from_secs(180);
        cfg
    }

    fn boot(&self, settings: &Settings, logs: &Path) -> Result<Vm, String> {
        let mut vm = Vm::boot(&self.config(settings, logs)).map_err(|e| crate::runner::chain_error(&e))?;
        vm.agent().set_timeout(Duration::from_secs(120));
        Ok(vm)
    }
}

/// Load klp_bench with its holder kthreads (both guests need them).
fn load_klp_bench(a: &mut AgentClient, settings: &Settings) -> Result<(), String> {
    a.load_module(&image::guest_module_path("klp_bench"), &format!("holders={}", settings.load.tasks))
        .map_err(agent_err)?
        .map_err(|e| format!("loading klp_bench: {} ({})", e.name, e.message))
}

/// Build the initramfs (the agent and every benchmark module) both guests boot.
fn prepare(
    input: &KernelInput<'_>,
    settings: &Settings,
    scratch: &Path,
    progress: &Progress,
) -> Result<GuestSetup, String> {
    let KernelInput { kernel, modules, agent, cache, recipe } = *input;
    let kos: Vec<PathBuf> = MODULES
        .iter()
        .map(|m| modules.get(*m).cloned().ok_or_else(|| format!("module {m} was not built for {}", kernel.release)))
        .collect::<Result<_, _>>()?;
    let (boot_image, _) = image::boot_image(kernel, cache, progress).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let initramfs = scratch.join("initramfs.cpio");
    let boot = image::guest_modules(kernel, recipe).map_err(|e| e.to_string())?;
    image::Initramfs::new(agent).modules(&kos).boot_modules(&boot).write(&initramfs).map_err(|e| e.to_string())?;
    let mut recipe = recipe.clone();
    if settings.clock == Clock::Icount {
        // Under -icount the 6.1 guest hung bringing up its second CPU ("Booting SMP
        // configuration", QEMU 7.2, single-threaded TCG): one vCPU, which the result records.
        recipe.cpus = 1;
    }
    Ok(GuestSetup { boot_image, initramfs, recipe })
}

/// Per selected state, per round, the kept batches.
type PerState = Vec<Vec<Vec<[u64; 2]>>>;

/// What the states guest measured.
struct StatesRun {
    boot_s: f64,
    /// Start to power-off.
    wall_s: f64,
    clocksource: String,
    per_state: PerState,
    log: Log,
}

/// Leave the guest, first reporting what its console shows (an oops during the work is an
/// error even if every request was answered).
fn finish<T>(vm: Vm, result: Result<T, String>) -> Result<T, String> {
    let problem = vm.console_problem();
    let _ = vm.shutdown();
    match (problem, result) {
        (Some(p), Err(e)) => Err(format!("{e}; the guest console shows a problem: {p:?}")),
        (Some(p), Ok(_)) => Err(format!("the guest console shows a problem: {p:?}")),
        (None, r) => r,
    }
}

/// The states guest: boot, then the rounds of visits.
fn states_guest(
    setup: &GuestSetup,
    settings: &Settings,
    release: &str,
    logs: &Path,
    progress: &Progress,
) -> Result<StatesRun, String> {
    let started = Instant::now();
    let mut vm = setup.boot(settings, logs)?;
    let boot_s = vm.boot_time().as_secs_f64();
    progress.note(format!("bench latency: {release} booted in {boot_s:.1} s ({} clock)", settings.clock));
    let result = (|| {
        let a = vm.agent();
        let clocksource = a
            .read_file("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map_err(agent_err)?
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unreadable ({})", e.name));
        load_klp_bench(a, settings)?;
        set_param(a, "calls", settings.calls)?;
        set_param(a, "batches", settings.batches + settings.warmup)?;
        if !settings.trace_functions.is_empty() {
            trace_on(a, &settings.trace_functions)?;
        }
        let (per_state, log) = rounds(a, settings, release, progress)?;
        if !settings.trace_functions.is_empty() {
            trace_save(a, logs)?;
        }
        Ok(StatesRun { boot_s, wall_s: 0.0, clocksource, per_state, log })
    })();
    let mut run = finish(vm, result)?;
    run.wall_s = started.elapsed().as_secs_f64();
    Ok(run)
}

/// Every round: its visits, in the order [`visits::plan_round`] drew from the seed.
fn rounds(
    a: &mut AgentClient,
    settings: &Settings,
    release: &str,
    progress: &Progress,
) -> Result<(PerState, Log), String> {
    let mut cx = Ctx { log: Log::new(), holders: Holders::new(settings.load.tasks) };
    let mut rng = stats::Rng::new(settings.seed);
    let mut per_state: PerState = vec![Vec::new(); settings.states.len()];
    for round in 0..settings.rounds {
        let plan = visits::plan_round(&settings.states, &mut rng);
        for (visit, steps) in &plan {
            for &step in steps {
                let r = match step {
                    Step::Measure(i) => measure(a, settings, settings.states[i])
                        .map(|b| per_state[i].push(b))
                        .map_err(|e| format!("measuring {}: {e}", settings.states[i].name())),
                    _ => run_step(a, step, &mut cx).map_err(|e| format!("{}: {e}", step_name(step))),
                };
                r.map_err(|e| format!("round {}, {} visit: {e}", round + 1, visit.name()))?;
            }
        }
        let order: Vec<&str> = visits::measured(&plan).iter().map(|&i| settings.states[i].name()).collect();
        progress.note(format!(
            "bench latency: {release} round {}/{} ({})",
            round + 1,
            settings.rounds,
            order.join(", ")
        ));
    }
    Ok((per_state, cx.log))
}

/// The loaded transitions in a guest of their own (booted like the states guest, at the same
/// time), so that a kernel takes as long as the longer of the two rather than their sum.
fn loaded_guest(
    setup: &GuestSetup,
    settings: &Settings,
    release: &str,
    logs: &Path,
    progress: &Progress,
) -> Result<LoadedResult, String> {
    let started = Instant::now();
    let mut vm = setup.boot(settings, logs)?;
    let boot_s = vm.boot_time().as_secs_f64();
    progress.note(format!("bench latency: {release} loaded-transitions guest booted in {boot_s:.1} s"));
    let mut holders = Holders::new(settings.load.tasks);
    let a = vm.agent();
    let result =
        load_klp_bench(a, settings).and_then(|()| loaded::run(a, &settings.load, &mut holders, release, progress));
    let mut r = finish(vm, result)?;
    r.guest = Some(loaded::OwnGuest { boot_s, wall_s: started.elapsed().as_secs_f64() });
    progress.note(format!(
        "bench latency: {release} {} loaded runs of {} holders took {:.1} s",
        settings.load.runs, settings.load.tasks, r.wall_s
    ));
    Ok(r)
}

/// Run the benchmark on one kernel whose modules are built (`modules`: name → .ko): the
/// states guest's `console.log` and `qemu.log` go to `logs`, the loaded-transitions guest's
/// (unless `--load-runs 0`) to `logs/loaded`. Both guests run at once.
pub fn run_kernel(
    input: &KernelInput<'_>,
    settings: &Settings,
    scratch: &Path,
    logs: &Path,
    progress: &Progress,
) -> Result<KernelResult, String> {
    let kernel = input.kernel;
    let setup = prepare(input, settings, scratch, progress)?;
    let mut env = environment(kernel, settings.clock, setup.recipe.cpus);
    let release = kernel.release.as_str();
    let started = Instant::now();
    let (states, loaded) = std::thread::scope(|scope| {
        let loaded = (settings.load.runs > 0).then(|| {
            let (setup, logs) = (&setup, logs.join("loaded"));
            scope.spawn(move || loaded_guest(setup, settings, release, &logs, progress))
        });
        let states = states_guest(&setup, settings, release, logs, progress);
        let loaded = loaded.map(|h| h.join().unwrap_or_else(|_| Err("its thread panicked".into())));
        (states, loaded.transpose())
    });
    let (run, loaded) = match (states, loaded) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(s), Err(l)) => return Err(format!("{release}: states guest: {s}; loaded-transitions guest: {l}")),
        (Err(s), Ok(_)) => return Err(format!("{release}: states guest: {s}")),
        (Ok(_), Err(l)) => return Err(format!("{release}: loaded-transitions guest: {l}")),
    };
    let wall_s = started.elapsed().as_secs_f64();
    env.clocksource = run.clocksource;

    let mut states = Vec::new();
    let mut baseline: Option<Vec<f64>> = None;
    for (st, rounds) in settings.states.iter().zip(run.per_state) {
        let r = summarize(*st, rounds, settings.calls, baseline.as_deref(), settings.seed);
        if baseline.is_none() {
            baseline = Some(r.round_medians.clone());
        }
        states.push(r);
    }
    Ok(KernelResult {
        spec: kernel.spec.clone(),
        release: kernel.release.clone(),
        environment: env,
        boot_s: run.boot_s,
        wall_s,
        states_wall_s: Some(run.wall_s),
        states,
        transitions: run.log,
        loaded,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

/// `bench.json`, pretty-printed.
pub fn render_json(r: &BenchReport) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("the bench report serialises");
    s.push('\n');
    s
}

/// A kernel's transitions of one kind: median [min, max] n=, in guest milliseconds.
pub fn transition_cell(k: &KernelResult, kind: TransitionKind) -> String {
    let of =
        |f: fn(&Transition) -> f64| -> Vec<f64> { k.transitions.iter().filter(|t| t.kind == kind).map(f).collect() };
    let (guest, host) = (of(|t| t.guest_ms), of(|t| t.host_ms));
    match (stats::median(&guest), stats::median(&host)) {
        (Some(m), Some(h)) => {
            let hi = guest.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{m:8.1} (max {hi:.0}) host {h:.0} n={}", guest.len())
        }
        _ => "-".into(),
    }
}

/// A number in 8 columns: 1 decimal, or unresolved.
fn cell(e: Option<&PairedEffect>) -> String {
    match e {
        None => "baseline".into(),
        Some(e) if !e.resolved => format!("unres. [{:.1},{:.1}]", e.ci95[0], e.ci95[1]),
        Some(e) => format!("{:+.1} [{:.1},{:.1}]", e.median, e.ci95[0], e.ci95[1]),
    }
}

/// The table: one row per state, per kernel its median per-call cost (MAD) and its paired
/// difference against unpatched with the 95 % interval; from the second kernel on, the %
/// difference of the median against the first kernel's. A geometric-mean row of the medians'
/// ratios to the first kernel closes it (states with a positive median on both).
pub fn render_table(r: &BenchReport) -> String {
    let mut out = format!(
        "handler latency, clock {} ({}); per call: median (MAD) | state − unpatched [95% CI]\n",
        r.clock, r.unit
    );
    out.push_str(&format!("{:<25}", "state"));
    for k in &r.kernels {
        out.push_str(&format!(" | {:<44}", format!("{} ({})", k.spec, k.release)));
    }
    out.push('\n');
    let first = r.kernels.first();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); r.kernels.len()];
    let states: Vec<State> = first.map(|k| k.states.iter().map(|s| s.state).collect()).unwrap_or_default();
    for st in states {
        out.push_str(&format!("{:<25}", st.name()));
        for (ki, k) in r.kernels.iter().enumerate() {
            let Some(s) = k.states.iter().find(|s| s.state == st) else {
                out.push_str(&format!(" | {:<44}", "-"));
                continue;
            };
            let mut c = format!("{:8.1} ({:.1}) {}", s.median, s.mad, cell(s.vs_unpatched.as_ref()));
            if ki > 0 {
                if let Some(b) = first.and_then(|f| f.states.iter().find(|x| x.state == st)) {
                    if b.median.abs() > 1e-9 {
                        c.push_str(&format!(" {:+.1}%", (s.median - b.median) / b.median.abs() * 100.0));
                    }
                    if b.median > 0.0 && s.median > 0.0 {
                        ratios[ki].push(s.median / b.median);
                    }
                }
            }
            out.push_str(&format!(" | {c:<44}"));
        }
        out.push('\n');
    }
    if r.kernels.len() > 1 {
        out.push_str(&format!("{:<25}", "geomean ratio"));
        for (ki, rs) in ratios.iter().enumerate() {
            let g = if ki == 0 || rs.is_empty() {
                "1.000".to_string()
            } else {
                format!("{:.3}", (rs.iter().map(|x| x.ln()).sum::<f64>() / rs.len() as f64).exp())
            };
            out.push_str(&format!(" | {g:<44}"));
        }
        out.push('\n');
    }
    for kind in [TransitionKind::Enable, TransitionKind::Disable] {
        let name = match kind {
            TransitionKind::Enable => "enable ms",
            TransitionKind::Disable => "disable ms",
        };
        if r.kernels.iter().all(|k| k.transitions.is_empty()) {
            continue;
        }
        out.push_str(&format!("{name:<25}"));
        for k in &r.kernels {
            out.push_str(&format!(" | {:<44}", transition_cell(k, kind)));
        }
        out.push('\n');
    }
    for kind in [TransitionKind::Enable, TransitionKind::Disable] {
        if r.kernels.iter().all(|k| k.loaded.is_none()) {
            continue;
        }
        out.push_str(&format!("{:<25}", format!("{kind:?} loaded").to_lowercase()));
        for k in &r.kernels {
            out.push_str(&format!(" | {:<44}", k.loaded.as_ref().map_or("-".into(), |l| l.cell(kind))));
        }
        out.push('\n');
    }
    for k in &r.kernels {
        let e = &k.environment;
        out.push_str(&format!(
            "{}: {} | {} | cpu {} x{} | clocksource {} | HZ {} | {} | {} | boot {:.1} s,{} benchmark {:.1} s\n",
            k.spec,
            e.qemu_version,
            e.icount.as_deref().map(|i| format!("-icount {i}")).unwrap_or_else(|| "no icount".into()),
            e.cpu,
            e.vcpus,
            e.clocksource,
            e.hz.map(|h| h.to_string()).unwrap_or_else(|| "?".into()),
            e.ftrace_flavour,
            e.preempt,
            k.boot_s,
            k.states_wall_s.map_or(String::new(), |s| format!(" states' guest {s:.1} s,")),
            k.wall_s
        ));
        if let Some(l) = &k.loaded {
            out.push_str(&format!(
                "{}: loaded transitions: {} holder kthreads released {} ms after the transition started, {} runs, dynamic debug {}, {:.1} s {}\n",
                k.spec,
                l.tasks,
                l.hold_ms,
                l.runs.len() / 2,
                l.dyndbg.as_deref().unwrap_or("off (no retry counts)"),
                l.wall_s,
                l.guest.map_or("of the benchmark, in its guest after the rounds".into(), |g| format!(
                    "in a guest of their own beside the states' (boot {:.1} s, boot to power-off {:.1} s)",
                    g.boot_s, g.wall_s
                ))
            ));
        }
    }
    out
}

/// Reports built by hand for the tests of the table, the plot and the baseline comparison.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    pub fn environment(clock: Clock) -> Environment {
        Environment {
            clock,
            accel: "tcg".into(),
            icount: (clock == Clock::Icount).then(|| "shift=0,sleep=off".into()),
            qemu_version: "QEMU emulator version 7.2.22".into(),
            cpu: "qemu64".into(),
            vcpus: 1,
            clocksource: "tsc".into(),
            hz: Some(250),
            ftrace_flavour: "DYNAMIC_FTRACE_WITH_ARGS".into(),
            preempt: "PREEMPT_DYNAMIC".into(),
        }
    }

    /// One kernel (`<spec>.0-1-amd64`) whose patched state costs `patched` ticks per 100 calls
    /// over a twin of 1000, against an unpatched 1100.
    pub fn kernel(clock: Clock, spec: &str, release: &str, patched: u64, transitions: Vec<Transition>) -> KernelResult {
        let b = summarize(State::Unpatched, vec![vec![[1100, 1000]]; 5], 100, None, 1);
        let p = summarize(State::Patched, vec![vec![[patched, 1000]]; 5], 100, Some(&b.round_medians), 1);
        KernelResult {
            spec: spec.into(),
            release: release.into(),
            environment: environment(clock),
            boot_s: 3.0,
            wall_s: 30.0,
            states_wall_s: None,
            transitions,
            states: vec![b, p],
            loaded: None,
        }
    }

    pub fn report(clock: Clock, kernels: Vec<KernelResult>) -> BenchReport {
        BenchReport {
            schema: SCHEMA.into(),
            benchmark: "latency".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            clock,
            unit: clock.unit().into(),
            settings: SettingsOut { rounds: 5, batches: 1, warmup: 0, calls: 100, seed: 1, load: None },
            kernels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_parsed() {
        let r = parse_batches("klp_bench: clock tsc calls 1000 batches 2\n5000 3000\n5100 3000\n").unwrap();
        assert_eq!((r.calls, r.task, r.batches), (1000, None, vec![[5000, 3000], [5100, 3000]]));
        let r = parse_batches("klp_bench: clock tsc calls 10 batches 1 pid 42 patch_state 0\n7 3\n").unwrap();
        assert_eq!((r.calls, r.task, r.batches), (10, Some((42, 0)), vec![[7, 3]]));
        assert!(parse_batches("").is_err());
        assert!(parse_batches("klp_bench: clock tsc calls 10 batches 1 pid x patch_state 0\n").is_err());
        assert!(parse_batches("klp_bench: clock tsc calls 10 batches 1\n1 2 3\n").is_err());
        assert!(parse_batches("klp_bench: clock tsc calls 10 batches 1\nklp_bench: wrong result\n").is_err());
        let changed = "klp_bench: clock tsc calls 10 batches 1 pid 1 patch_state 0\n7 3\n\
                       klp_bench: patch_state changed from 0 to 1 during the batches\n";
        assert!(parse_batches(changed).is_err());
    }

    #[test]
    fn a_state_is_summarised_against_the_baseline() {
        let base = summarize(State::Unpatched, vec![vec![[1100, 1000]; 3]; 5], 100, None, 1);
        assert_eq!((base.median, base.mad, base.n, base.calibration_median), (1.0, 0.0, 15, 10.0));
        assert!(base.vs_unpatched.is_none());
        let p = summarize(State::Patched, vec![vec![[11000, 1000]; 3]; 5], 100, Some(&base.round_medians), 1);
        let e = p.vs_unpatched.unwrap();
        assert_eq!((p.median, e.median, e.ci95, e.resolved), (100.0, 99.0, [99.0, 99.0], true));
    }

    #[test]
    fn the_table_has_a_column_per_kernel_and_a_percent_difference() {
        let transitions = || {
            vec![
                Transition { patch: "p".into(), kind: TransitionKind::Enable, guest_ms: 1.0, host_ms: 5.0 },
                Transition { patch: "p".into(), kind: TransitionKind::Enable, guest_ms: 3.0, host_ms: 9.0 },
                Transition { patch: "p".into(), kind: TransitionKind::Disable, guest_ms: 2.0, host_ms: 4.0 },
            ]
        };
        let k = |spec: &str, patched: u64| {
            fixture::kernel(Clock::Icount, spec, &format!("{spec}.0-1-amd64"), patched, transitions())
        };
        let r = fixture::report(Clock::Icount, vec![k("6.1", 11000), k("6.12", 12000)]);
        let t = render_table(&r);
        assert!(t.contains("6.1 (6.1.0-1-amd64)") && t.contains("6.12 (6.12.0-1-amd64)"), "{t}");
        assert!(t.contains("+99.0 [99.0,99.0]") && t.contains("+109.0 [109.0,109.0] +10.0%"), "{t}");
        assert!(t.contains("geomean ratio"), "{t}");
        assert!(t.contains("     2.0 (max 3) host 7 n=2") && t.contains("disable ms"), "{t}");
        let back: BenchReport = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_footer_says_where_the_loaded_runs_ran() {
        let mut k = fixture::kernel(Clock::Icount, "6.12", "6.12.0-1-amd64", 11000, vec![]);
        let loaded = |guest| LoadedResult { tasks: 4, hold_ms: 2000, dyndbg: None, wall_s: 20.0, runs: vec![], guest };
        k.loaded = Some(loaded(None));
        let t = render_table(&fixture::report(Clock::Icount, vec![k.clone()]));
        assert!(t.contains("boot 3.0 s, benchmark 30.0 s") && t.contains("in its guest after the rounds"), "{t}");
        k.states_wall_s = Some(28.0);
        k.loaded = Some(loaded(Some(loaded::OwnGuest { boot_s: 9.0, wall_s: 25.0 })));
        let t = render_table(&fixture::report(Clock::Icount, vec![k]));
        assert!(t.contains("boot 3.0 s, states' guest 28.0 s, benchmark 30.0 s"), "{t}");
        assert!(
            t.contains("20.0 s in a guest of their own beside the states' (boot 9.0 s, boot to power-off 25.0 s)"),
            "{t}"
        );
    }
}
