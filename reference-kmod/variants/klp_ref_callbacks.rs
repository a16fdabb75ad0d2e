//! Reference livepatch with all four callbacks on vmlinux, klp_ref_target and klp_ref_busy.
//!
//! Every callback logs `klp_ref_callbacks: <callback> <object>`, with ` [MODULE_STATE_*]` for a
//! module object, e.g. `klp_ref_callbacks: pre_patch vmlinux`,
//! `klp_ref_callbacks: post_patch klp_ref_target [MODULE_STATE_COMING]`. Every pre_patch returns
//! the module parameter `pre_patch_ret` (int, 0644, default 0; e.g. -19 makes the enable, or the
//! load of a target module, fail with ENODEV). The vmlinux and klp_ref_target objects patch no
//! function; the klp_ref_busy object replaces `klp_ref_busy_func` (readers of /proc/klp_ref_busy
//! get `klp_ref_callbacks: patched`), so `klp_ref_busy block=Y` holds its transition open.

#![no_std]

use klp::{Callbacks, Func, Funcs, IntParam, Object, Objects, Patch, SeqFile, c_int, c_void};

/// `pre_patch_ret` (int, 0644): what every pre_patch callback returns.
#[unsafe(no_mangle)]
static klp_ref_callbacks_pre_patch_ret: IntParam = IntParam::new(0);

const CB: Callbacks = Callbacks::all(pre_patch, post_patch, pre_unpatch, post_unpatch);

static NO_FUNCS: Funcs<0> = Funcs::new([]);
static NO_FUNCS_TARGET: Funcs<0> = Funcs::new([]);
static BUSY_FUNCS: Funcs<1> =
    Funcs::new([Func::new(c"klp_ref_busy_func", klp_ref_callbacks_busy_func as *const c_void)]);
static OBJS: Objects<3> = Objects::new([
    Object::vmlinux(&NO_FUNCS).callbacks(CB),
    Object::module(c"klp_ref_target", &NO_FUNCS_TARGET).callbacks(CB),
    Object::module(c"klp_ref_busy", &BUSY_FUNCS).callbacks(CB),
]);
static PATCH: Patch = Patch::new(&OBJS);
klp::patch_entry_points!(PATCH);

fn log(callback: &str, obj: &Object) {
    let name = obj.name().to_str().unwrap_or("?");
    match obj.module_state() {
        Some(st) => klp::pr_info!("{callback} {name} [{}]", st.c_name()),
        None => klp::pr_info!("{callback} {name}"),
    }
}

extern "C" fn pre_patch(obj: &Object) -> c_int {
    log("pre_patch", obj);
    klp_ref_callbacks_pre_patch_ret.get()
}

extern "C" fn post_patch(obj: &Object) {
    log("post_patch", obj);
}

extern "C" fn pre_unpatch(obj: &Object) {
    log("pre_unpatch", obj);
}

extern "C" fn post_unpatch(obj: &Object) {
    log("post_unpatch", obj);
}

/// Replaces `klp_ref_busy_func(struct seq_file *m)` of `klp_ref_busy`.
#[unsafe(no_mangle)]
extern "C" fn klp_ref_callbacks_busy_func(m: Option<&SeqFile>) -> c_int {
    if let Some(m) = m {
        m.puts(c"klp_ref_callbacks: patched\n");
    }
    0
}
