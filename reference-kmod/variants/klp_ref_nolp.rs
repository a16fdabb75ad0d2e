//! Reference livepatch WITHOUT the livepatch modinfo: its load fails with EINVAL (L2).
//!
//! Calls `klp_enable_patch` like `klp_ref_cmdline` (a `cmdline_proc_show` replacement that
//! never runs), but the module has no `livepatch=Y` in .modinfo, so the core refuses it:
//! `livepatch: module klp_ref_nolp is not marked as a livepatch module`. No TAINT_LIVEPATCH.
//@ livepatch-modinfo: no

#![no_std]

klp::show_patch! {
    old: c"cmdline_proc_show" in vmlinux,
    new: klp_ref_nolp_cmdline_show,
    prints: c"klp_ref_nolp: this should never be seen\n",
}
