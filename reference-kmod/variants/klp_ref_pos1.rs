//! Reference livepatch: /proc/version reads `klp_ref_pos1`; the function is named with sympos 1.
//!
//! Replaces `version_proc_show` with `old_sympos = 1` on a name that is unique in vmlinux: the
//! sysfs directory is `vmlinux/version_proc_show,1` as with sympos 0 (SY3), and atomic replace
//! treats it as the same function as the sympos-0 entry of `klp_ref_replace` (AR1: no nop).

#![no_std]

klp::show_patch! {
    old: c"version_proc_show" in vmlinux,
    sympos: 1,
    new:
        /// Replaces `static int version_proc_show(struct seq_file *m, void *v)`.
        klp_ref_pos1_version_show,
    prints: c"klp_ref_pos1\n",
}
