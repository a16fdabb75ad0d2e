//! Reference livepatch (not replace) without any klp_state: accepted over a patch with state 1 (ST2).
//!
//! One vmlinux object with no functions and no callbacks, `states = NULL`, `replace = false`.
//! A *replace* patch without state 1 (`klp_ref_replace`, `klp_ref_replace_empty`) is refused
//! while a state-1 patch is installed; this one is not.

#![no_std]

klp::no_funcs_patch! {}
