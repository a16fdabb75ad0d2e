//! Reference livepatch of a module: /proc/klp_ref_target reads `klp_ref_target: patched`.
//!
//! One object, the module `klp_ref_target` (loaded before or after this patch, or never:
//! `klp_ref_target_patch/klp_ref_target/patched` is then 0), replacing `klp_ref_target_show`.
//! No vmlinux object, no callbacks.

#![no_std]

klp::show_patch! {
    old: c"klp_ref_target_show" in module c"klp_ref_target",
    new:
        /// Replaces `klp_ref_target_show(struct seq_file *m, void *v)` of `klp_ref_target`.
        klp_ref_target_patch_show,
    prints: c"klp_ref_target: patched\n",
}
