//! Reference livepatch of a module: /proc/klp_ref_target reads `klp_ref_target: patched`.
//!
//! One object, the module `klp_ref_target` (loaded before or after this patch, or never:
//! `klp_ref_target_patch/klp_ref_target/patched` is then 0), replacing `klp_ref_target_show`.
//! No vmlinux object, no callbacks.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, SeqFile, c_int, c_void};

static FUNCS: Funcs<1> =
    Funcs::new([Func::new(c"klp_ref_target_show", klp_ref_target_patch_show as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::module(c"klp_ref_target", &FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Replaces `klp_ref_target_show(struct seq_file *m, void *v)` of `klp_ref_target`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_target_patch_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_target: patched\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
