//! Reference livepatch: /proc/cmdline reads `klp_ref_cmdline: this has been live patched`.
//!
//! The Rust twin of the kernel's samples/livepatch/livepatch-sample.c: one vmlinux function,
//! `cmdline_proc_show`, replaced; no callbacks, no states, not a replace patch.

#![no_std]

klp::show_patch! {
    old: c"cmdline_proc_show" in vmlinux,
    new:
        /// Replaces `static int cmdline_proc_show(struct seq_file *m, void *v)` (fs/proc/cmdline.c).
        klp_ref_cmdline_proc_show,
    prints: c"klp_ref_cmdline: this has been live patched\n",
}
