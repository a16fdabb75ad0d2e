//! Reference livepatch of a function without an ftrace location: its load fails with EINVAL (L11).
//!
//! `mark_tsc_unstable` (arch/x86/kernel/tsc.c, built with `CFLAGS_REMOVE_tsc.o = -pg`) is a
//! unique vmlinux symbol but has no `__fentry__` call: `livepatch: failed to find location for
//! function 'mark_tsc_unstable'`, then `failed to patch object 'vmlinux'` and the cancel sequence.
//! The replacement does nothing, so even a kernel where it *is* traceable stays healthy.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, c_char, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"mark_tsc_unstable", klp_ref_notrace_mark as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Would replace `void mark_tsc_unstable(char *reason)`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_notrace_mark(_reason: *const c_char) {}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
