//! Reference livepatch (replace) with klp_state id 1 version 2, like klp_ref_state_v2 under another name.
//!
//! The same code as `klp_ref_state_v2` (`shared/state_v2.rs`): a second module with an equal
//! state version, for ST2's "equal version is compatible" and for reloading a replaced patch
//! (upstream's test_klp_state3 next to test_klp_state2). Its lines start `klp_ref_state_v2b: `.

#![no_std]

include!("shared/state_v2.rs");
