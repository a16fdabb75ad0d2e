//! Benchmark target and driver (not a livepatch): reading /proc/klp_bench times batches of calls of klp_bench_func and of its untraced twin.
//!
//! `klp_bench_func` is a [`klp::traceable!`] function (the one `klp_bench_patch`,
//! `klp_bench_patch2`, `klp_bench_patch_hold` and `klp_bench_ftrace` hook); `klp_bench_twin` is
//! the same assembly without the ftrace location ([`klp::untraced!`]), forwarding to the same
//! body. Each read of /proc/klp_bench runs `batches` batches; a batch calls each of the two
//! `calls` times in a row with preemption and interrupts off, timed with the time-stamp counter
//! ([`klp::cycles`]: the host's TSC under TCG, one tick per guest instruction under
//! `-icount shift=0`), alternating which of the two goes first. The file reads:
//!
//! ```text
//! klp_bench: clock tsc calls 1000 batches 40 pid 1 patch_state -1
//! <ticks of the calls of klp_bench_func> <ticks of the calls of klp_bench_twin>
//! …one line per batch
//! ```
//!
//! `pid` and `patch_state` are the measuring task's (`current->patch_state`: -1 outside a
//! transition, 0 unpatched, 1 patched; the same before and after the batches, or the read says
//! `klp_bench: patch_state changed …`).
//!
//! **Holders** hold a livepatch transition open. `holders` kernel threads (`klp_bench_hold`,
//! param, 0..=16, default 1, set at load) wait for `hold`: each non-zero value they have not
//! served yet sends every holder once into `klp_bench_hold_func` (a second traceable function,
//! which `klp_bench_patch_hold` patches), where it sleeps (msleep, uninterruptible: fake signals
//! do not wake it) until `hold` changes or, if `hold_ms` > 0, until `hold_ms` ms after it saw a
//! livepatch transition start (its own `patch_state` leaving -1: `klp_init_transition` sets
//! every task's). Counting from the transition's start, not from going in, keeps the hold the
//! same whatever happens in between: under `-icount sleep=off` an idle guest's clock jumps
//! ahead while it waits for the host. A task sleeping there cannot be switched by a transition of a patch of that
//! function, in either direction (the original, or the new function of `klp_bench_patch_hold`,
//! which calls back into the same wait). `holding` (0444) counts the holders inside; the last
//! one out logs `klp_bench: holders released (hold <n>)`.
//!
//! Reading **/proc/klp_bench_held** has holder 0 run the batches *from inside*
//! `klp_bench_hold_func` (so from a task a transition cannot switch) and prints them in the same
//! format, with that kthread's pid and patch_state; EAGAIN if holder 0 is not holding, ETIMEDOUT
//! if it did not answer within 30 s.
//!
//! A first read of a batch is slower (the patched or traced path's first run): the harness
//! discards the first batches of every read. Params `calls` (1..=100000) and `batches`
//! (1..=200), int, 0644.
//@ livepatch-modinfo: no

#![no_std]

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use klp::{IntParam, Kthread, SeqFile, c_int, c_long, c_void};

/// `calls` (int, 0644): calls of each function per batch. Default 1000.
#[unsafe(no_mangle)]
static klp_bench_calls: IntParam = IntParam::new(1000);
/// `batches` (int, 0644): batches per read. Default 40.
#[unsafe(no_mangle)]
static klp_bench_batches: IntParam = IntParam::new(40);
/// `holders` (int, 0444): holder kthreads started at load, 0..=16. Default 1.
#[unsafe(no_mangle)]
static klp_bench_holders: IntParam = IntParam::new(1);
/// `hold` (int, 0644): a new non-zero value sends every holder into klp_bench_hold_func once.
#[unsafe(no_mangle)]
static klp_bench_hold: IntParam = IntParam::new(0);
/// `hold_ms` (int, 0644): if > 0, a holder leaves klp_bench_hold_func this long after a livepatch
/// transition started.
#[unsafe(no_mangle)]
static klp_bench_hold_ms: IntParam = IntParam::new(0);
/// `holding` (int, 0444): holders inside klp_bench_hold_func now.
#[unsafe(no_mangle)]
static klp_bench_holding: IntParam = IntParam::new(0);

const MAX_HOLDERS: usize = 16;
const MAX_BATCHES: usize = 200;
const EAGAIN: c_int = 11;
const EBUSY: c_int = 16;
const ETIMEDOUT: c_int = 110;

static HOLDERS: [Kthread; MAX_HOLDERS] = [const { Kthread::new() }; MAX_HOLDERS];
static TICKET: AtomicUsize = AtomicUsize::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);
static HOLDING: AtomicI32 = AtomicI32::new(0);
/// Holder 0 is inside klp_bench_hold_func (and serves /proc/klp_bench_held).
static HOLDER0_IN: AtomicBool = AtomicBool::new(false);

/// /proc/klp_bench_held's request to holder 0: idle, pending, done.
const REQ_IDLE: u32 = 0;
const REQ_PENDING: u32 = 1;
const REQ_DONE: u32 = 2;
static REQ: AtomicU32 = AtomicU32::new(REQ_IDLE);
/// Holder 0's answer: the batches (function, twin ticks), their number and calls, its pid and
/// patch_state before and after, and the chained result.
static HELD: [[AtomicU64; 2]; MAX_BATCHES] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_BATCHES];
static HELD_N: AtomicUsize = AtomicUsize::new(0);
static HELD_CALLS: AtomicI32 = AtomicI32::new(0);
static HELD_PID: AtomicI32 = AtomicI32::new(0);
static HELD_STATE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
static HELD_OK: AtomicBool = AtomicBool::new(false);

#[inline(never)]
extern "C" fn bench_body(x: c_long) -> c_long {
    x.wrapping_add(1)
}

klp::traceable! {
    /// The measured function: `x + 1`, behind an ftrace location.
    pub fn klp_bench_func(x: c_long) -> c_long = bench_body;
}

klp::untraced! {
    /// The calibration twin: the same, without the ftrace location.
    pub fn klp_bench_twin(x: c_long) -> c_long = bench_body;
}

/// What a holder runs inside klp_bench_hold_func (the original or a livepatch's): wait until
/// released. `arg` is `hold generation << 8 | holder index`; returns the sleeps taken.
pub type HoldWait = extern "C" fn(arg: c_long) -> c_long;

#[inline(never)]
extern "C" fn hold_body(wait: HoldWait, arg: c_long) -> c_long {
    wait(arg)
}

klp::traceable! {
    /// Where holders sleep: calls `wait(arg)` (patched by `klp_bench_patch_hold`, whose new
    /// function does the same).
    pub fn klp_bench_hold_func(wait: HoldWait, arg: c_long) -> c_long = hold_body;
}

/// Ticks of `calls` calls of `f`, chained through their results so that none can be skipped.
#[inline(always)]
fn time_calls(f: extern "C" fn(c_long) -> c_long, calls: c_int, acc: &mut c_long) -> u64 {
    let t0 = klp::cycles();
    for _ in 0..calls {
        *acc = f(*acc);
    }
    klp::cycles().wrapping_sub(t0)
}

extern "C" fn func(x: c_long) -> c_long {
    klp_bench_func(x)
}

extern "C" fn twin(x: c_long) -> c_long {
    klp_bench_twin(x)
}

/// Run `batches` batches of `calls` calls, handing each `(function ticks, twin ticks)` to `out`
/// (with interrupts on again); true if the chained result is right.
fn run_batches(calls: c_int, batches: c_int, mut out: impl FnMut(usize, u64, u64)) -> bool {
    let mut acc: c_long = 0;
    for b in 0..batches {
        let (t_func, t_twin) = {
            let _off = klp::IrqsOff::new();
            if b % 2 == 0 {
                let f = time_calls(func, calls, &mut acc);
                (f, time_calls(twin, calls, &mut acc))
            } else {
                let t = time_calls(twin, calls, &mut acc);
                (time_calls(func, calls, &mut acc), t)
            }
        };
        out(b as usize, t_func, t_twin);
    }
    acc == 2 * calls as c_long * batches as c_long
}

fn params() -> (c_int, c_int) {
    (klp_bench_calls.get().clamp(1, 100_000), klp_bench_batches.get().clamp(1, MAX_BATCHES as c_int))
}

fn header(m: &SeqFile, calls: c_int, batches: c_int, pid: c_int, state: c_int) {
    m.print(format_args!("klp_bench: clock tsc calls {calls} batches {batches} pid {pid} patch_state {state}\n"));
}

fn footer(m: &SeqFile, ok: bool, before: c_int, after: c_int) {
    if before != after {
        m.print(format_args!("klp_bench: patch_state changed from {before} to {after} during the batches\n"));
    }
    if !ok {
        m.print(format_args!("klp_bench: wrong result\n"));
    }
}

extern "C" fn show(m: &SeqFile, _v: *mut c_void) -> c_int {
    let (calls, batches) = params();
    let before = klp::current_patch_state();
    header(m, calls, batches, klp::current_pid(), before);
    let ok = run_batches(calls, batches, |_, f, t| m.print(format_args!("{f} {t}\n")));
    footer(m, ok, before, klp::current_patch_state());
    0
}

/// Holder 0, inside klp_bench_hold_func: answer a pending /proc/klp_bench_held request.
fn serve_held() {
    let (calls, batches) = params();
    HELD_PID.store(klp::current_pid(), Ordering::Relaxed);
    HELD_STATE[0].store(klp::current_patch_state(), Ordering::Relaxed);
    let ok = run_batches(calls, batches, |b, f, t| {
        HELD[b][0].store(f, Ordering::Relaxed);
        HELD[b][1].store(t, Ordering::Relaxed);
    });
    HELD_STATE[1].store(klp::current_patch_state(), Ordering::Relaxed);
    HELD_N.store(batches as usize, Ordering::Relaxed);
    HELD_CALLS.store(calls, Ordering::Relaxed);
    HELD_OK.store(ok, Ordering::Relaxed);
    REQ.store(REQ_DONE, Ordering::Release);
}

extern "C" fn show_held(m: &SeqFile, _v: *mut c_void) -> c_int {
    if !HOLDER0_IN.load(Ordering::Acquire) {
        return -EAGAIN;
    }
    if REQ.compare_exchange(REQ_IDLE, REQ_PENDING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return -EBUSY;
    }
    let t0 = klp::ktime_ns();
    while REQ.load(Ordering::Acquire) != REQ_DONE {
        if klp::ktime_ns().wrapping_sub(t0) > 30_000_000_000 {
            klp::pr_err!("holder 0 did not run the batches within 30 s");
            return -ETIMEDOUT; // REQ stays pending: later requests get EBUSY
        }
        klp::msleep(1);
    }
    let (calls, n) = (HELD_CALLS.load(Ordering::Relaxed), HELD_N.load(Ordering::Relaxed));
    let (before, after) = (HELD_STATE[0].load(Ordering::Relaxed), HELD_STATE[1].load(Ordering::Relaxed));
    header(m, calls, n as c_int, HELD_PID.load(Ordering::Relaxed), before);
    for b in &HELD[..n] {
        m.print(format_args!("{} {}\n", b[0].load(Ordering::Relaxed), b[1].load(Ordering::Relaxed)));
    }
    footer(m, HELD_OK.load(Ordering::Relaxed), before, after);
    REQ.store(REQ_IDLE, Ordering::Release);
    0
}

fn must_stop() -> bool {
    STOPPING.load(Ordering::Acquire) || klp::kthread_should_stop()
}

extern "C" fn hold_wait(arg: c_long) -> c_long {
    let (generation, idx) = ((arg >> 8) as c_int, (arg & 0xff) as usize);
    let hold_ms = klp_bench_hold_ms.get().max(0) as u64;
    // When a transition was first seen (its start, to within one sleep).
    let mut t0: Option<u64> = None;
    klp_bench_holding.set(HOLDING.fetch_add(1, Ordering::AcqRel) + 1);
    if idx == 0 {
        HOLDER0_IN.store(true, Ordering::Release);
    }
    let mut sleeps: c_long = 0;
    loop {
        if must_stop() || klp_bench_hold.get() != generation {
            break;
        }
        if hold_ms > 0 {
            let now = klp::ktime_ns();
            match t0 {
                None if klp::current_patch_state() != -1 => t0 = Some(now),
                Some(t) if now.wrapping_sub(t) >= hold_ms * 1_000_000 => break,
                _ => {}
            }
        }
        if idx == 0 && REQ.load(Ordering::Acquire) == REQ_PENDING {
            serve_held();
        }
        klp::msleep(1);
        sleeps += 1;
    }
    if idx == 0 {
        HOLDER0_IN.store(false, Ordering::Release);
    }
    let left = HOLDING.fetch_sub(1, Ordering::AcqRel) - 1;
    klp_bench_holding.set(left);
    if left == 0 {
        klp::pr_info!("holders released (hold {generation})");
    }
    sleeps
}

extern "C" fn holder_main(_data: *mut c_void) -> c_int {
    let idx = TICKET.fetch_add(1, Ordering::AcqRel);
    let mut served: c_int = 0;
    while !must_stop() {
        let g = klp_bench_hold.get();
        if g != 0 && g != served {
            served = g;
            klp_bench_hold_func(hold_wait, ((g as c_long) << 8) | idx as c_long);
        }
        klp::msleep(5);
    }
    0
}

fn stop_holders() {
    STOPPING.store(true, Ordering::Release);
    for h in &HOLDERS {
        h.stop();
    }
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    if !klp::proc_create(c"klp_bench", show) {
        klp::pr_err!("cannot create /proc/klp_bench");
        return -12; // ENOMEM
    }
    if !klp::proc_create(c"klp_bench_held", show_held) {
        klp::pr_err!("cannot create /proc/klp_bench_held");
        klp::proc_remove(c"klp_bench");
        return -12;
    }
    let n = klp_bench_holders.get().clamp(0, MAX_HOLDERS as c_int) as usize;
    for h in &HOLDERS[..n] {
        let r = h.start(holder_main, c"klp_bench_hold");
        if r != 0 {
            klp::pr_err!("cannot start a holder kthread ({r})");
            stop_holders();
            klp::proc_remove(c"klp_bench_held");
            klp::proc_remove(c"klp_bench");
            return r;
        }
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    stop_holders();
    klp::proc_remove(c"klp_bench_held");
    klp::proc_remove(c"klp_bench");
}
