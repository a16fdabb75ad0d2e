//! Reference livepatch (not replace) without any klp_state: accepted over a patch with state 1 (ST2).
//!
//! One vmlinux object with no functions and no callbacks, `states = NULL`, `replace = false`.
//! A *replace* patch without state 1 (`klp_ref_replace`, `klp_ref_replace_empty`) is refused
//! while a state-1 patch is installed; this one is not.

#![no_std]

use klp::{Funcs, Object, Objects, Patch, c_int};

static NO_FUNCS: Funcs<0> = Funcs::new([]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&NO_FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS);

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
