//! Reference livepatch: /proc/version reads `klp_ref_stack_c` (one of three stacked patches).
//!
//! `klp_ref_stack_a`, `_b` and `_c` all replace the same vmlinux function,
//! `version_proc_show` (fs/proc/version.c), each with its own text, so /proc/version shows which
//! implementation runs: the head of that function's func_stack. Not a replace patch.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"version_proc_show", klp_ref_stack_c_version_show as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_stack_c_version_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_stack_c\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
