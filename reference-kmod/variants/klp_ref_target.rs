//! Target module (not a livepatch): /proc/klp_ref_target reads `klp_ref_target: original`.
//!
//! The show function `klp_ref_target_show` is what `klp_ref_target_patch` replaces; it is a
//! [`klp::traceable!`] function, so it has an ftrace location like a C function. The module
//! logs `klp_ref_target: init` / `klp_ref_target: exit` (to order them against the livepatch
//! core's module_coming/module_going messages and callbacks).
//@ livepatch-modinfo: no

#![no_std]

use klp::{SeqFile, c_int, c_void};

klp::traceable! {
    /// `/proc/klp_ref_target`'s show function, the function patched by `klp_ref_target_patch`.
    pub fn klp_ref_target_show(m: &SeqFile, v: *mut c_void) -> c_int = target_show;
}

#[inline(never)]
extern "C" fn target_show(m: &SeqFile, _v: *mut c_void) -> c_int {
    m.puts(c"klp_ref_target: original\n");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    if !klp::proc_create(c"klp_ref_target", klp_ref_target_show) {
        klp::pr_err!("cannot create /proc/klp_ref_target");
        return -12; // ENOMEM
    }
    klp::pr_info!("init");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    klp::proc_remove(c"klp_ref_target");
    klp::pr_info!("exit");
}
