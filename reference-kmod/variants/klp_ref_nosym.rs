//! Reference livepatch of a function that does not exist: its load fails with EINVAL (SY2).
//!
//! `old_name = "klp_ref_no_such_function"` in vmlinux:
//! `livepatch: symbol 'klp_ref_no_such_function' not found in symbol table`.

#![no_std]

use klp::{Func, Funcs, Object, Objects, Patch, c_int, c_void};

static FUNCS: Funcs<1> = Funcs::new([Func::new(c"klp_ref_no_such_function", klp_ref_nosym_func as *const c_void)]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

#[unsafe(no_mangle)]
extern "C" fn klp_ref_nosym_func() {}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
