//! Reference livepatch (replace) with klp_state id 1 version 1, whose data its callbacks allocate and free.
//!
//! `replace = true`, `states = [{id 1, version 1}]`, vmlinux object with no functions and the
//! four callbacks. `data` is a kmalloc'ed u64 (value 1):
//! - `klp_ref_state_v1: pre_patch: allocated state 1 data (value 1)`
//! - `klp_ref_state_v1: post_patch: state 1 version 1 in use (value 1)`
//! - `klp_ref_state_v1: pre_unpatch: state 1 version 1 (value 1)`
//! - `klp_ref_state_v1: post_unpatch: freed state 1 data`
//!
//! Replaced by `klp_ref_state_v2`, none of these run (AR6) and v2 takes the data over.

#![no_std]

use klp::{Callbacks, Object, State, States, c_int};

static STATES: States<1> = States::new([State::new(1, 1)]);

klp::no_funcs_patch! {
    patch: .replace().states(&STATES),
    callbacks: Callbacks::all(pre_patch, post_patch, pre_unpatch, post_unpatch),
}

fn value() -> u64 {
    STATES.get(0).data_value().unwrap_or(0)
}

extern "C" fn pre_patch(_obj: &Object) -> c_int {
    if !STATES.get(0).alloc_data(1) {
        return -12; // ENOMEM
    }
    klp::pr_info!("pre_patch: allocated state 1 data (value {})", value());
    0
}

extern "C" fn post_patch(_obj: &Object) {
    klp::pr_info!("post_patch: state 1 version 1 in use (value {})", value());
}

extern "C" fn pre_unpatch(_obj: &Object) {
    klp::pr_info!("pre_unpatch: state 1 version 1 (value {})", value());
}

extern "C" fn post_unpatch(_obj: &Object) {
    STATES.get(0).free_data();
    klp::pr_info!("post_unpatch: freed state 1 data");
}
