//! Reference livepatch WITHOUT the livepatch modinfo: its load fails with EINVAL (L2).
//!
//! Calls `klp_enable_patch` like `klp_ref_cmdline` (a `cmdline_proc_show` replacement that
//! never runs), but the module has no `livepatch=Y` in .modinfo, so the core refuses it:
//! `livepatch: module klp_ref_nolp is not marked as a livepatch module`. No TAINT_LIVEPATCH.
//@ livepatch-modinfo: no

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"cmdline_proc_show", klp_ref_nolp_cmdline_show as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

#[unsafe(no_mangle)]
extern "C" fn klp_ref_nolp_cmdline_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_nolp: this should never be seen\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
