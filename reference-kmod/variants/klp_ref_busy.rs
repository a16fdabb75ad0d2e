//! Target module (not a livepatch): tasks sleep inside klp_ref_busy_func while param block is Y.
//!
//! `klp_ref_busy_func` (a [`klp::traceable!`] function, patched by `klp_ref_busy_patch` and
//! `klp_ref_callbacks`) sleeps in a loop of 20 ms sleeps while `block` is Y, so a task sleeping
//! there has it on its stack and holds a transition of a patch of it open. Two kinds of sleeper:
//! - the kthread `klp_ref_busy` (param `kthread`, default Y), which calls the function every
//!   20 ms for as long as the module is loaded;
//! - any task reading /proc/klp_ref_busy, whose show function calls it and then prints
//!   `klp_ref_busy: original` (the patched versions print their own line).
//! `sleep_mode` is `uninterruptible` (msleep) or `interruptible` (msleep_interruptible; a reader
//! then returns -ERESTARTSYS when a signal, or livepatch's fake signal, is pending, and the read
//! restarts). Unloading the module ends every sleep (kthread stopped, readers let go).
//@ livepatch-modinfo: no

#![no_std]

use core::sync::atomic::{AtomicBool, Ordering};

use klp::{BoolParam, IntParam, Kthread, SeqFile, c_int, c_void};

/// `block` (bool, 0644): sleep in `klp_ref_busy_func` while Y. Default N.
#[unsafe(no_mangle)]
static klp_ref_busy_block: BoolParam = BoolParam::new(false);
/// `sleep_mode` (0644): 0 = `uninterruptible` (default), 1 = `interruptible`; the C glue maps
/// the names.
#[unsafe(no_mangle)]
static klp_ref_busy_sleep_mode: IntParam = IntParam::new(0);
/// `kthread` (bool, 0444): start the kthread at init. Default Y.
#[unsafe(no_mangle)]
static klp_ref_busy_kthread: BoolParam = BoolParam::new(true);

static STOPPING: AtomicBool = AtomicBool::new(false);
static THREAD: Kthread = Kthread::new();

const ERESTARTSYS: c_int = 512;

klp::traceable! {
    /// The function to patch. `m` is `Some` for a reader of /proc/klp_ref_busy, `None` for the
    /// kthread.
    pub fn klp_ref_busy_func(m: Option<&SeqFile>) -> c_int = busy_func;
}

fn must_stop(kthread: bool) -> bool {
    STOPPING.load(Ordering::Acquire) || (kthread && klp::kthread_should_stop())
}

#[inline(never)]
extern "C" fn busy_func(m: Option<&SeqFile>) -> c_int {
    let kthread = m.is_none();
    let who = if kthread { "kthread" } else { "reader" };
    if klp_ref_busy_block.get() && !must_stop(kthread) {
        let interruptible = klp_ref_busy_sleep_mode.get() == 1;
        let mode = if interruptible { "interruptible" } else { "uninterruptible" };
        klp::pr_info!("{who} sleeping in klp_ref_busy_func ({mode})");
        while klp_ref_busy_block.get() && !must_stop(kthread) {
            if !interruptible {
                klp::msleep(20);
            } else if klp::msleep_interruptible(20) != 0 && !kthread {
                klp::pr_info!("{who} interrupted in klp_ref_busy_func");
                return -ERESTARTSYS;
            }
        }
        klp::pr_info!("{who} leaving klp_ref_busy_func");
    }
    if let Some(m) = m {
        m.puts(c"klp_ref_busy: original\n");
    }
    0
}

extern "C" fn show(m: &SeqFile, _v: *mut c_void) -> c_int {
    klp_ref_busy_func(Some(m))
}

extern "C" fn kthread_main(_data: *mut c_void) -> c_int {
    while !klp::kthread_should_stop() {
        klp_ref_busy_func(None);
        klp::msleep(20);
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    if !klp::proc_create(c"klp_ref_busy", show) {
        klp::pr_err!("cannot create /proc/klp_ref_busy");
        return -12; // ENOMEM
    }
    // The init line comes before the kthread starts, so that it always precedes the kthread's
    // `sleeping` line (with block=1) in the kernel log: snapshots compare the log in order.
    klp::pr_info!(
        "init (block={}, sleep_mode={}, kthread={})",
        if klp_ref_busy_block.get() { 'Y' } else { 'N' },
        if klp_ref_busy_sleep_mode.get() == 1 { "interruptible" } else { "uninterruptible" },
        if klp_ref_busy_kthread.get() { 'Y' } else { 'N' },
    );
    if klp_ref_busy_kthread.get() {
        let r = THREAD.start(kthread_main, c"klp_ref_busy");
        if r != 0 {
            klp::pr_err!("cannot start the kthread ({r})");
            klp::proc_remove(c"klp_ref_busy");
            return r;
        }
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    STOPPING.store(true, Ordering::Release);
    THREAD.stop();
    klp::proc_remove(c"klp_ref_busy");
    klp::pr_info!("exit");
}
