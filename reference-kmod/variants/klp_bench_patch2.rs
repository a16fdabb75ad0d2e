//! Benchmark livepatch stacked on klp_bench_patch (not replace): replaces klp_bench_func of klp_bench by the same body (x + 1).
//!
//! The new function does what the old one does, so what a caller pays more is the livepatch's
//! redirection alone (ftrace trampoline, klp_ftrace_handler, which takes the newest of the
//! function's two patches).

#![no_std]

use klp::c_long;

klp::func_patch! {
    old: c"klp_bench_func" in module c"klp_bench",
    new:
        /// Replaces `long klp_bench_func(long x)` of `klp_bench`.
        #[inline(never)]
        fn klp_bench_patch2_func(x: c_long) -> c_long {
            x.wrapping_add(1)
        }
}
