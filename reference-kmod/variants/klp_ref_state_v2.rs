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

include!("shared/state_v2.rs");
