//! Reference livepatch with the four callbacks on vmlinux only; param replace makes it a replace patch.
//!
//! Logs `klp_ref_callbacks2: <callback> vmlinux`. With `replace=Y` (bool, 0444, default N) it is
//! an atomic replace patch: loaded over `klp_ref_callbacks`, only its own callbacks run (AR6).
//! Patches no function.

#![no_std]

use klp::{BoolParam, Callbacks, Funcs, Object, Objects, Patch, c_int};

/// `replace` (bool, 0444): set `patch->replace` before enabling.
#[unsafe(no_mangle)]
static klp_ref_callbacks2_replace: BoolParam = BoolParam::new(false);

const CB: Callbacks = Callbacks {
    pre_patch: Some(pre_patch),
    post_patch: Some(post_patch),
    pre_unpatch: Some(pre_unpatch),
    post_unpatch: Some(post_unpatch),
};

static NO_FUNCS: Funcs<0> = Funcs::new([]);
static OBJS: Objects<1> = Objects::new([Object::vmlinux(&NO_FUNCS).callbacks(CB)]);
static PATCH: Patch = Patch::new(&OBJS);

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

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    klp::enable_with_replace(&PATCH, klp_ref_callbacks2_replace.get())
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
