//! Benchmark livepatch whose transition klp_bench's holders can hold open: replaces klp_bench_func (x + 1) and klp_bench_hold_func of klp_bench.
//!
//! `klp_bench_func` gets the same body, as in `klp_bench_patch`. `klp_bench_hold_func(wait, arg)`
//! gets one that also calls `wait(arg)`, and stays on the stack while it runs: a holder kthread
//! of klp_bench sleeping in the original holds this patch's patching transition open, one
//! sleeping in the new function holds its unpatching transition open. While it is held, a task
//! already switched (e.g. a user task, at its syscall exit) calls the new `klp_bench_func`, and
//! a holder calls the original.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, c_long, c_void};

/// klp_bench's `HoldWait`: `extern "C" fn(arg: long) -> long`.
type HoldWait = extern "C" fn(arg: c_long) -> c_long;

static FUNCS: Funcs<2> = Funcs::new([
    Func::new(c"klp_bench_func", klp_bench_patch_hold_func as *const c_void),
    Func::new(c"klp_bench_hold_func", klp_bench_patch_hold_hold as *const c_void),
]);
static OBJS: Objects<1> = Objects::new([Object::module(c"klp_bench", &FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

klp::patch_entry_points!(PATCH);

/// Replaces `long klp_bench_func(long x)` of `klp_bench`.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn klp_bench_patch_hold_func(x: c_long) -> c_long {
    x.wrapping_add(1)
}

/// Replaces `long klp_bench_hold_func(hold_wait_t wait, long arg)` of `klp_bench`: the same wait,
/// called (never tail-called: the result passes through `black_box`), so that this function is
/// on the stack of a holder for as long as it sleeps.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn klp_bench_patch_hold_hold(wait: HoldWait, arg: c_long) -> c_long {
    core::hint::black_box(wait(arg))
}
