//! Reference livepatch (atomic replace) that patches nothing: replaces every patch with nops.
//!
//! `replace = true`, one vmlinux object with no functions and no callbacks. Enabling it turns
//! every function of every earlier patch into a nop (AR1, AR2), so all of them run their original
//! code again once the transition completes; disabling it changes nothing more.

#![no_std]

klp::no_funcs_patch! {
    patch: .replace(),
}
