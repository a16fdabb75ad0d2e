//! Reference livepatch (replace) with klp_state id 1 version 2, taking over the data of an earlier state 1.
//!
//! `replace = true`, `states = [{id 1, version 2}]`, vmlinux object with no functions and the
//! four callbacks. pre_patch asks `klp_get_prev_state(1)`:
//! - found: `klp_ref_state_v2: pre_patch: found state 1 version <v> (value <x>)`, and post_patch
//!   moves its data over: `klp_ref_state_v2: post_patch: took over state 1 data from version <v> (value <x>)`;
//! - none: `klp_ref_state_v2: pre_patch: no earlier state 1, allocated state 1 data (value 2)`.
//! Then `post_patch: state 1 version 2 in use (value <x>)`; on disable
//! `pre_unpatch: state 1 version 2 (value <x>)` and `post_unpatch: freed state 1 data`.
//! Loading `klp_ref_state_v1` while this is installed fails (ST2: lower version).

#![no_std]

use klp::{Callbacks, Object, State, States, c_int};

static STATES: States<1> = States::new([State::new(1, 2)]);

klp::no_funcs_patch! {
    patch: .replace().states(&STATES),
    callbacks: Callbacks::all(pre_patch, post_patch, pre_unpatch, post_unpatch),
}

fn value() -> u64 {
    STATES.get(0).data_value().unwrap_or(0)
}

extern "C" fn pre_patch(obj: &Object) -> c_int {
    match klp::prev_state(obj, 1) {
        Some(prev) => {
            klp::pr_info!(
                "pre_patch: found state 1 version {} (value {})",
                prev.version(),
                prev.data_value().unwrap_or(0)
            );
        }
        None => {
            if !STATES.get(0).alloc_data(2) {
                return -12; // ENOMEM
            }
            klp::pr_info!("pre_patch: no earlier state 1, allocated state 1 data (value {})", value());
        }
    }
    0
}

extern "C" fn post_patch(obj: &Object) {
    if STATES.get(0).data_value().is_none() {
        if let Some(prev) = klp::prev_state(obj, 1) {
            STATES.get(0).take_data_from(prev);
            klp::pr_info!("post_patch: took over state 1 data from version {} (value {})", prev.version(), value());
        }
    }
    klp::pr_info!("post_patch: state 1 version 2 in use (value {})", value());
}

extern "C" fn pre_unpatch(_obj: &Object) {
    klp::pr_info!("pre_unpatch: state 1 version 2 (value {})", value());
}

extern "C" fn post_unpatch(_obj: &Object) {
    STATES.get(0).free_data();
    klp::pr_info!("post_unpatch: freed state 1 data");
}
