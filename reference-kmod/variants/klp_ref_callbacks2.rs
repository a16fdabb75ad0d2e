//! Reference livepatch with the four callbacks on vmlinux only; param replace makes it a replace patch.
//!
//! Logs `klp_ref_callbacks2: <callback> vmlinux`. With `replace=Y` (bool, 0444, default N) it is
//! an atomic replace patch: loaded over `klp_ref_callbacks`, only its own callbacks run (AR6).
//! Patches no function.

#![no_std]

use klp::{BoolParam, Callbacks, Object, c_int};

/// `replace` (bool, 0444): set `patch->replace` before enabling.
#[unsafe(no_mangle)]
static klp_ref_callbacks2_replace: BoolParam = BoolParam::new(false);

klp::no_funcs_patch! {
    callbacks: Callbacks::all(pre_patch, post_patch, pre_unpatch, post_unpatch),
    replace: klp_ref_callbacks2_replace.get(),
}

extern "C" fn pre_patch(obj: &Object) -> c_int {
    klp::pr_info!("pre_patch {}", obj.name().to_str().unwrap_or("?"));
    0
}

extern "C" fn post_patch(obj: &Object) {
    klp::pr_info!("post_patch {}", obj.name().to_str().unwrap_or("?"));
}

extern "C" fn pre_unpatch(obj: &Object) {
    klp::pr_info!("pre_unpatch {}", obj.name().to_str().unwrap_or("?"));
}

extern "C" fn post_unpatch(obj: &Object) {
    klp::pr_info!("post_unpatch {}", obj.name().to_str().unwrap_or("?"));
}
