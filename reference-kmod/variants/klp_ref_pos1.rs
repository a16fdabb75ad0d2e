//! Reference livepatch: /proc/version reads `klp_ref_pos1`; the function is named with sympos 1.
//!
//! Replaces `version_proc_show` with `old_sympos = 1` on a name that is unique in vmlinux: the
//! sysfs directory is `vmlinux/version_proc_show,1` as with sympos 0 (SY3), and atomic replace
//! treats it as the same function as the sympos-0 entry of `klp_ref_replace` (AR1: no nop).

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> =
    Funcs::new([Func::new(c"version_proc_show", klp_ref_pos1_version_show as *const c_void).sympos(1)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_pos1_version_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_pos1\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
