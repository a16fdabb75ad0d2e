//! Reference livepatch of a function without an ftrace location: its load fails with EINVAL (L11).
//!
//! `mark_tsc_unstable` (arch/x86/kernel/tsc.c, built with `CFLAGS_REMOVE_tsc.o = -pg`) is a
//! unique vmlinux symbol but has no `__fentry__` call: `livepatch: failed to find location for
//! function 'mark_tsc_unstable'`, then `failed to patch object 'vmlinux'` and the cancel sequence.
//! The replacement does nothing, so even a kernel where it *is* traceable stays healthy.

#![no_std]

use klp::c_char;

klp::func_patch! {
    old: c"mark_tsc_unstable" in vmlinux,
    new:
        /// Would replace `void mark_tsc_unstable(char *reason)`.
        fn klp_ref_notrace_mark(_reason: *const c_char) {}
}
