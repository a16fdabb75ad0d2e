/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * C helpers of the klp layer (src/klp.rs), the one place where kernel API differences between
 * kernel lines are handled: each helper calls the kernel's own macro or inline function, so the
 * preprocessor of the kernel being built for picks the right thing (printk is a function in 5.10
 * and a macro over _printk from 5.15; kmalloc reaches __kmalloc or, from 6.10, kmalloc_noprof
 * through inlines; seq_puts is an inline over __seq_puts from 6.x; GFP_KERNEL's bits moved).
 * This is what Rust-for-Linux's rust/helpers/ do. bindgen reads this header (function
 * klp_helper_* in bindings.allow) and every module's shim compiles klp_helpers.c.
 */
#ifndef KLP_HELPERS_H
#define KLP_HELPERS_H

#include <linux/types.h>

struct module;
struct seq_file;
struct task_struct;

/* printk("%s", line): `line` starts with its KERN_<LEVEL> prefix. */
void klp_helper_printk(const char *line);
/* kmalloc(size, GFP_KERNEL). */
void *klp_helper_kmalloc(size_t size);
/* GFP_KERNEL, for the APIs that take it (klp_shadow_alloc). */
gfp_t klp_helper_gfp_kernel(void);
/* seq_puts(m, s). */
void klp_helper_seq_puts(struct seq_file *m, const char *s);
/* READ_ONCE(mod->state), as an int (enum module_state). */
int klp_helper_module_state(const struct module *mod);
/* kthread_run(fn, data, "%s", name): the task, or NULL with *err set to the negative errno. */
struct task_struct *klp_helper_kthread_run(int (*fn)(void *data), void *data, const char *name, int *err);
/* preempt_disable() + local_irq_save(): the flags for klp_helper_irq_restore (benchmark batches). */
unsigned long klp_helper_irq_save(void);
/* local_irq_restore(flags) + preempt_enable(). */
void klp_helper_irq_restore(unsigned long flags);
/*
 * A plain ftrace user of one function (the benchmark's ftrace-only state): one ftrace_ops per
 * module, no SAVE_REGS, no IPMODIFY, filtered on `name`, whose callback counts its calls.
 * 0 or a negative errno; the callback's signature and the recursion flag differ before 5.11.
 */
int klp_helper_ftrace_user_register(const char *name);
void klp_helper_ftrace_user_unregister(void);
unsigned long klp_helper_ftrace_user_hits(void);
/* task_pid_nr(current) and current->patch_state (-1 outside a transition, 0 unpatched, 1 patched). */
int klp_helper_current_pid(void);
int klp_helper_current_patch_state(void);
/* ktime_get_ns(): CLOCK_MONOTONIC nanoseconds. */
unsigned long long klp_helper_ktime_ns(void);
/*
 * Kernel mutants (klp_mutant; defined in klp_mutant_helpers.c, which only klp_mutant compiles):
 * redirect one function of the livepatch core to `new_func` (same C
 * signature) through one ftrace_ops with FTRACE_OPS_FL_IPMODIFY, as klp_ftrace_handler does for
 * that kernel line. `name` is looked up near klp_enable_patch (kallsyms order, see
 * klp_helpers.c) because static names such as enabled_store are not unique in vmlinux. 0 or a
 * negative errno, the reason printed to the kernel log.
 */
int klp_helper_redirect_register(const char *name, void *new_func);
void klp_helper_redirect_unregister(void);
/*
 * kernel/livepatch/core.c's klp_free_patch_finish() without its final module_put(): the
 * `free_patch_no_module_put` mutant. Compiled against the kernel's own struct klp_patch.
 */
void klp_helper_free_patch_finish_no_put(void *patch);
/* klp_free_patch_work_fn(work) without the module_put(), for kernels where gcc inlined
 * klp_free_patch_finish() into it. */
struct work_struct;
void klp_helper_free_patch_work_no_put(struct work_struct *work);
/* transition.c's klp_check_and_switch_task(task, arg) (5.16+) without its stack check: for
 * kernels where gcc inlined klp_check_stack() into it (no such function to redirect before 5.16). */
struct task_struct;
int klp_helper_check_and_switch_no_stack_check(struct task_struct *task, void *arg);
/* sysfs_emit(buf, "%s", s): what a sysfs show function returns. */
long klp_helper_sysfs_emit_str(char *buf, const char *s);

#endif
