//! Reference livepatch (atomic replace) that patches nothing: replaces every patch with nops.
//!
//! `replace = true`, one vmlinux object with no functions and no callbacks. Enabling it turns
//! every function of every earlier patch into a nop (AR1, AR2), so all of them run their original
//! code again once the transition completes; disabling it changes nothing more.

#![no_std]

use klp::{Funcs, Object, Objects, Patch, c_int};

static FUNCS: Funcs<0> = Funcs::new([]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&FUNCS)]);
static PATCH: Patch = Patch::new(&OBJS).replace();

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable(&PATCH)
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
