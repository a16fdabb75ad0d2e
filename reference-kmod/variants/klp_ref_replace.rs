//! Reference livepatch (atomic replace): /proc/version reads `klp_ref_replace`.
//!
//! `replace = true`; patches only `version_proc_show` (the function of the `klp_ref_stack_*` and
//! `klp_ref_pos1` patches) and *not* `cmdline_proc_show`, so loaded over `klp_ref_cmdline` it gets
//! a nop for `cmdline_proc_show` (AR1) and /proc/cmdline goes back to the original.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"version_proc_show", klp_ref_replace_version_show as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS).replace();

/// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_replace_version_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_replace\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
