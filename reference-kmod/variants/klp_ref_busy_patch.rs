//! Reference livepatch of klp_ref_busy: klp_ref_busy_func no longer sleeps (unless this patch's own param block is Y).
//!
//! One object, the module `klp_ref_busy`, replacing `klp_ref_busy_func`. While a task sleeps in
//! the original (`klp_ref_busy block=Y`), the patching transition cannot complete for it (T4);
//! setting that `block=N`, `echo 1 > force`, or (for an interruptible reader) the fake signal
//! ends it. Readers of /proc/klp_ref_busy then get `klp_ref_busy: patched`.
//!
//! Param `block` (bool, 0644, default N) of *this* module makes the new function sleep too
//! (uninterruptibly, 20 ms at a time, logging `klp_ref_busy_patch: <kthread|reader> sleeping in
//! the new klp_ref_busy_func`): a task sleeping there holds this patch's *unpatching* transition
//! open (T4, R2) and the transition of a replace patch whose nop replaces it (AR4).

#![no_std]

use klp::{BoolParam, SeqFile, c_int};

/// `block` (bool, 0644): sleep in the new function while Y. Default N.
#[unsafe(no_mangle)]
static klp_ref_busy_patch_block: BoolParam = BoolParam::new(false);

klp::func_patch! {
    old: c"klp_ref_busy_func" in module c"klp_ref_busy",
    new:
        /// Replaces `int klp_ref_busy_func(struct seq_file *m)` of `klp_ref_busy` (`m` is NULL for
        /// klp_ref_busy's kthread).
        #[inline(never)]
        fn klp_ref_busy_patch_func(m: Option<&SeqFile>) -> c_int {
            let kthread = m.is_none();
            let stop = || kthread && klp::kthread_should_stop();
            if klp_ref_busy_patch_block.get() && !stop() {
                let who = if kthread { "kthread" } else { "reader" };
                klp::pr_info!("{who} sleeping in the new klp_ref_busy_func");
                while klp_ref_busy_patch_block.get() && !stop() {
                    klp::msleep(20);
                }
                klp::pr_info!("{who} leaving the new klp_ref_busy_func");
            }
            if let Some(m) = m {
                m.puts(c"klp_ref_busy: patched\n");
            }
            0
        }
}
