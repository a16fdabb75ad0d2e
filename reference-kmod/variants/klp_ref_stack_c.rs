//! Reference livepatch: /proc/version reads `klp_ref_stack_c` (one of three stacked patches).
//!
//! `klp_ref_stack_a`, `_b` and `_c` all replace the same vmlinux function,
//! `version_proc_show` (fs/proc/version.c), each with its own text, so /proc/version shows which
//! implementation runs: the head of that function's func_stack. Not a replace patch.

#![no_std]

klp::show_patch! {
    old: c"version_proc_show" in vmlinux,
    new:
        /// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
        klp_ref_stack_c_version_show,
    prints: c"klp_ref_stack_c\n",
}
