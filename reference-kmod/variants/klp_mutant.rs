//! Kernel mutant (not a livepatch): one function of the livepatch core redirected to a wrong version, chosen by `mutant`.
//!
//! Mutation analysis of the suites against the code under test, without building kernels:
//! `suites mutate --kernel-mutants` loads this module (`mutant=<id>`) right after each case's
//! guest starts, before the case's steps, and the case must notice. The redirect is one
//! `ftrace_ops` with `FTRACE_OPS_FL_IPMODIFY` ([`klp::Redirect`]), as `klp_ftrace_handler`
//! redirects a patched function; /sys/kernel/livepatch is not touched. `mutant=none` loads and
//! redirects nothing (the control every mutant is compared with). A mutant whose function is
//! not in this kernel (inlined, renamed, untraceable) fails to load with the reason in the
//! kernel log (`klp_mutant: not applicable: …`). Param `mutant` (charp, 0444).
//@ livepatch-modinfo: no

#![no_std]

use klp::{CStr, Redirect, StrParam, SysfsPage, c_int, c_void};

/// `mutant` (charp, 0444): which mutant (see `MUTANTS`).
#[unsafe(no_mangle)]
static klp_mutant_name: StrParam = StrParam::new();

/// `enabled_store`/`force_store(kobj, attr, buf, count)`: the write is accepted and nothing
/// happens.
extern "C" fn accept_store(_kobj: *mut c_void, _attr: *mut c_void, _buf: *const c_void, count: usize) -> isize {
    count as isize
}

/// `transition_show(kobj, attr, buf)`: never in transition.
extern "C" fn show_zero(_kobj: *mut c_void, _attr: *mut c_void, buf: &SysfsPage) -> isize {
    buf.emit(c"0\n")
}

/// `klp_check_stack(task, oldname)` (5.10: `(task, err_buf)`): every stack is safe.
extern "C" fn stack_always_safe(_task: *mut c_void, _out: *mut c_void) -> c_int {
    0
}

/// `klp_try_switch_task(task)`: no task ever switches.
extern "C" fn never_switch(_task: *mut c_void) -> bool {
    false
}

/// `klp_send_signals(void)`: no fake signals, no kthread wake-ups.
extern "C" fn no_signals() {}

/// `(id, livepatch core function, its replacement)`; the ids are the harness's
/// (`harness/src/kernel_mutants.rs`).
fn mutants() -> [(&'static CStr, &'static CStr, *const c_void); 7] {
    [
        (c"enabled_store_noop", c"enabled_store", accept_store as *const c_void),
        (c"force_store_noop", c"force_store", accept_store as *const c_void),
        (c"transition_show_zero", c"transition_show", show_zero as *const c_void),
        (c"check_stack_always_safe", c"klp_check_stack", stack_always_safe as *const c_void),
        (c"switch_task_never", c"klp_try_switch_task", never_switch as *const c_void),
        (c"send_signals_noop", c"klp_send_signals", no_signals as *const c_void),
        (c"free_patch_no_module_put", c"klp_free_patch_finish", Redirect::free_patch_finish_without_module_put()),
    ]
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    let Some(name) = klp_mutant_name.get() else {
        klp::pr_err!("no mutant= given");
        return -22; // EINVAL
    };
    if name == c"none" {
        klp::pr_info!("mutant none: nothing redirected");
        return 0;
    }
    let Some((_, target, new_func)) = mutants().into_iter().find(|(id, _, _)| *id == name) else {
        klp::pr_err!("unknown mutant {:?}", name);
        return -22; // EINVAL
    };
    let mut r = Redirect::install(target, new_func);
    if r == -2 && name == c"free_patch_no_module_put" {
        // ENOENT: inlined (6.1): its only other caller, the free work, without the put.
        r = Redirect::install(c"klp_free_patch_work_fn", Redirect::free_patch_work_without_module_put());
    }
    if r == -2 && name == c"check_stack_always_safe" {
        // ENOENT: inlined into its only caller, task_call_func()'s callback (5.16+; before, its
        // caller is klp_try_switch_task, on 5.10 split by gcc into a .part clone: not applicable).
        r = Redirect::install(c"klp_check_and_switch_task", Redirect::check_and_switch_without_stack_check());
    }
    if r == 0 {
        klp::pr_info!("mutant {:?} active", name);
    }
    r
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {
    Redirect::remove();
}
