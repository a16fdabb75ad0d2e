//! Reference livepatch (atomic replace): /proc/version reads `klp_ref_replace`.
//!
//! `replace = true`; patches only `version_proc_show` (the function of the `klp_ref_stack_*` and
//! `klp_ref_pos1` patches) and *not* `cmdline_proc_show`, so loaded over `klp_ref_cmdline` it gets
//! a nop for `cmdline_proc_show` (AR1) and /proc/cmdline goes back to the original.

#![no_std]

klp::show_patch! {
    patch: .replace(),
    old: c"version_proc_show" in vmlinux,
    new:
        /// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
        klp_ref_replace_version_show,
    prints: c"klp_ref_replace\n",
}
