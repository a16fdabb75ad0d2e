//! Benchmark: a plain ftrace user (not a livepatch) of klp_bench_func, the benchmark's ftrace-only state.
//!
//! One `ftrace_ops` without SAVE_REGS or IPMODIFY, filtered on `klp_bench_func`, registered at
//! init and unregistered at exit; its callback only counts. What it costs a caller is the
//! ftrace part of a livepatch's cost; a livepatch on top of it makes two ops on one function
//! (ftrace's list path). Load after `klp_bench`.
//@ livepatch-modinfo: no

#![no_std]

use klp::{FtraceUser, c_int};

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    let r = FtraceUser::register(c"klp_bench_func");
    if r != 0 {
        klp::pr_err!("cannot register an ftrace_ops on klp_bench_func ({r})");
    }
    r
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    FtraceUser::unregister();
    klp::pr_info!("{} calls seen", FtraceUser::hits());
}
