// The body of klp_ref_state_v2 and klp_ref_state_v2b (two modules with the same klp_state
// id 1 version 2, as upstream's test_klp_state2 and test_klp_state3), included by both crate
// roots. Not a variant: variants are the *.rs files directly in variants/.

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
