//! Reference livepatch: /proc/cmdline reads `klp_ref_cmdline: this has been live patched`.
//!
//! The Rust twin of the kernel's samples/livepatch/livepatch-sample.c: one vmlinux function,
//! `cmdline_proc_show`, replaced; no callbacks, no states, not a replace patch.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"cmdline_proc_show", klp_ref_cmdline_proc_show as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Replaces `static int cmdline_proc_show(struct seq_file *m, void *v)` (fs/proc/cmdline.c).
#[unsafe(no_mangle)]
extern "C" fn klp_ref_cmdline_proc_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_cmdline: this has been live patched\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
