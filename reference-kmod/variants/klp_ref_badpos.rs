//! Reference livepatch with a sympos beyond the number of matches: its load fails with EINVAL (SY2).
//!
//! `load_elf_binary` (two matches in vmlinux, see `klp_ref_ambiguous`) with `old_sympos = 3`:
//! `livepatch: symbol position 3 for symbol 'load_elf_binary' in object 'vmlinux' not found`.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, c_int, c_void};

static FUNCS: Funcs<1> =
    Funcs::new([Func::new(c"load_elf_binary", klp_ref_badpos_load as *const c_void).sympos(3)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

/// Would replace `static int load_elf_binary(struct linux_binprm *bprm)`; never runs.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_badpos_load(_bprm: *mut c_void) -> c_int {
    -8 // ENOEXEC
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
