//! Benchmark target and driver (not a livepatch): reading /proc/klp_bench times batches of calls of klp_bench_func and of its untraced twin.
//!
//! `klp_bench_func` is a [`klp::traceable!`] function (the one `klp_bench_patch`,
//! `klp_bench_patch2` and `klp_bench_ftrace` hook); `klp_bench_twin` is the same assembly
//! without the ftrace location ([`klp::untraced!`]), forwarding to the same body. Each read of
//! /proc/klp_bench runs `batches` batches; a batch calls each of the two `calls` times in a row
//! with preemption and interrupts off, timed with the time-stamp counter ([`klp::cycles`]: the
//! host's TSC under TCG, one tick per guest instruction under `-icount shift=0`), alternating
//! which of the two goes first. The file reads:
//!
//! ```text
//! klp_bench: clock tsc calls 1000 batches 40
//! <ticks of the calls of klp_bench_func> <ticks of the calls of klp_bench_twin>
//! …one line per batch
//! ```
//!
//! A first read of a batch is slower (the patched or traced path's first run): the harness
//! discards the first batches of every read. Params `calls` (1..=100000) and `batches`
//! (1..=200), int, 0644.
//@ livepatch-modinfo: no

#![no_std]

use klp::{IntParam, SeqFile, c_int, c_long, c_void};

/// `calls` (int, 0644): calls of each function per batch. Default 1000.
#[unsafe(no_mangle)]
static klp_bench_calls: IntParam = IntParam::new(1000);
/// `batches` (int, 0644): batches per read. Default 40.
#[unsafe(no_mangle)]
static klp_bench_batches: IntParam = IntParam::new(40);

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

extern "C" fn show(m: &SeqFile, _v: *mut c_void) -> c_int {
    let calls = klp_bench_calls.get().clamp(1, 100_000);
    let batches = klp_bench_batches.get().clamp(1, 200);
    m.print(format_args!("klp_bench: clock tsc calls {calls} batches {batches}\n"));
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
        m.print(format_args!("{t_func} {t_twin}\n"));
    }
    if acc != 2 * calls as c_long * batches as c_long {
        m.print(format_args!("klp_bench: wrong result {acc}\n"));
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    if !klp::proc_create(c"klp_bench", show) {
        klp::pr_err!("cannot create /proc/klp_bench");
        return -12; // ENOMEM
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    klp::proc_remove(c"klp_bench");
}
