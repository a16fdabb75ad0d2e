// SPDX-License-Identifier: GPL-2.0-only
/*
 * The C helpers of kernel mutants (declared and explained in klp_helpers.h): only klp_mutant
 * includes this file (from its glue, variants/klp_mutant.c), so that no other reference module
 * imports klp_enable_patch, sprint_symbol or the ftrace API for it.
 */
#include <linux/completion.h>
#include <linux/ftrace.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/livepatch.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/version.h>
#include "klp_helpers.h"

/* Kernel mutants: one function of the livepatch core redirected to a wrong version. */

static unsigned long klp_helper_redirect_to;
static bool klp_helper_redirect_registered;

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0)
/* 5.10's klp_ftrace_handler: klp_arch_set_pc(regs, new_func), i.e. regs->ip, with SAVE_REGS. */
static void notrace klp_helper_redirect_cb(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
					    struct pt_regs *regs)
{
	regs->ip = READ_ONCE(klp_helper_redirect_to);
}
#else
/*
 * From 5.11 klp_ftrace_handler sets the new ip with ftrace_instruction_pointer_set(fregs, ...),
 * renamed ftrace_regs_set_instruction_pointer() in 6.7 (both x86 macros).
 */
static void notrace klp_helper_redirect_cb(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
					    struct ftrace_regs *fregs)
{
#ifdef ftrace_regs_set_instruction_pointer
	ftrace_regs_set_instruction_pointer(fregs, READ_ONCE(klp_helper_redirect_to));
#else
	ftrace_instruction_pointer_set(fregs, READ_ONCE(klp_helper_redirect_to));
#endif
}
#endif

static struct ftrace_ops klp_helper_redirect_ops = {
	.func = klp_helper_redirect_cb,
	/* The flags kernel/livepatch/patch.c gives its own ops on each line (but PERMANENT). */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0) || !defined(CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS)
	.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY,
#else
	.flags = FTRACE_OPS_FL_IPMODIFY,
#endif
};

/* How far from klp_enable_patch, in kallsyms symbols either way, a livepatch core function is looked for. */
#define KLP_HELPER_WALK 600

/* sprint_symbol()'s "name+0xoff/0xsize[ [mod]]" of `addr`: the name in `name`, its start and size. */
static bool klp_helper_symbol_at(unsigned long addr, char *name, unsigned long *start, unsigned long *size)
{
	static char buf[KSYM_SYMBOL_LEN];
	unsigned long off;
	char *plus, *slash, *end;

	sprint_symbol(buf, addr);
	plus = strrchr(buf, '+');
	slash = strrchr(buf, '/');
	if (!plus || !slash || slash < plus)
		return false;
	*plus = 0;
	*slash = 0;
	end = strchr(slash + 1, ' ');
	if (end)
		*end = 0;
	if (kstrtoul(plus + 1, 0, &off) || kstrtoul(slash + 1, 0, size) || !*size)
		return false;
	strscpy(name, buf, KSYM_NAME_LEN);
	*start = addr - off;
	return true;
}

/*
 * The address of the livepatch core's function `target`: static functions of
 * kernel/livepatch/ share their names with others in vmlinux (enabled_store is also
 * mm/huge_memory.c's, force_store kernel/reboot.c's), and ftrace_set_filter() would take them
 * all. The objects of kernel/livepatch/ are linked together (core, patch, shadow, state, transition), so
 * the livepatch one is the symbol of that exact name nearest to core.c's klp_enable_patch in
 * kallsyms (address) order. Two of them within the walk is refused as ambiguous.
 */
static unsigned long klp_helper_find_core_function(const char *target)
{
	static char name[KSYM_NAME_LEN], clone[KSYM_NAME_LEN];
	unsigned long anchor = (unsigned long)klp_enable_patch, addr, start, size, found = 0;
	size_t len = strlen(target);
	int i, found_at = 0, seen = 0;

	clone[0] = 0;

	/* Forward, from klp_enable_patch itself. */
	for (addr = anchor, i = 0; i < KLP_HELPER_WALK; i++) {
		if (!klp_helper_symbol_at(addr, name, &start, &size))
			break;
		if (!clone[0] && !strncmp(name, target, len) && name[len] == '.')
			strscpy(clone, name, sizeof(clone));
		if (!strcmp(name, target)) {
			seen++;
			if (!found) {
				found = start;
				found_at = i;
			}
		}
		addr = start + size;
	}
	/* Backward. */
	for (addr = anchor, i = 1; i <= KLP_HELPER_WALK; i++) {
		if (!klp_helper_symbol_at(addr - 1, name, &start, &size))
			break;
		if (!clone[0] && !strncmp(name, target, len) && name[len] == '.')
			strscpy(clone, name, sizeof(clone));
		if (!strcmp(name, target)) {
			seen++;
			if (!found || i < found_at) {
				found = start;
				found_at = i;
			}
		}
		addr = start;
	}
	if (!found && clone[0]) {
		pr_err("klp_mutant: not applicable: %s exists only as the compiler's clone %s (its calling "
		       "convention may differ from the source's), within %d kallsyms symbols of klp_enable_patch\n",
		       target, clone, KLP_HELPER_WALK);
		return 0;
	}
	if (!found) {
		pr_err("klp_mutant: not applicable: no symbol %s within %d kallsyms symbols of klp_enable_patch "
		       "(inlined, renamed by the compiler or absent in this kernel)\n",
		       target, KLP_HELPER_WALK);
		return 0;
	}
	if (seen > 1) {
		pr_err("klp_mutant: not applicable: %d symbols %s within %d kallsyms symbols of klp_enable_patch: "
		       "ambiguous\n", seen, target, KLP_HELPER_WALK);
		return 0;
	}
	pr_info("klp_mutant: %s is %pS, %d symbols from klp_enable_patch\n", target, (void *)found, found_at);
	return found;
}

int klp_helper_redirect_register(const char *name, void *new_func)
{
	unsigned long addr;
	int ret;

	if (klp_helper_redirect_registered)
		return -EBUSY;
	addr = klp_helper_find_core_function(name);
	if (!addr)
		return -ENOENT;
	WRITE_ONCE(klp_helper_redirect_to, (unsigned long)new_func);
	ret = ftrace_set_filter_ip(&klp_helper_redirect_ops, addr, 0, 0);
	if (ret) {
		pr_err("klp_mutant: not applicable: %s is not traceable (ftrace_set_filter_ip: %d)\n", name, ret);
		return ret;
	}
	ret = register_ftrace_function(&klp_helper_redirect_ops);
	if (ret) {
		pr_err("klp_mutant: cannot redirect %s (register_ftrace_function: %d)\n", name, ret);
		ftrace_set_filter_ip(&klp_helper_redirect_ops, addr, 1, 0);
		return ret;
	}
	klp_helper_redirect_registered = true;
	pr_info("klp_mutant: %s redirected to %pS\n", name, new_func);
	return 0;
}

void klp_helper_redirect_unregister(void)
{
	if (klp_helper_redirect_registered) {
		unregister_ftrace_function(&klp_helper_redirect_ops);
		klp_helper_redirect_registered = false;
	}
}

void klp_helper_free_patch_finish_no_put(void *p)
{
	struct klp_patch *patch = p;

	/* kernel/livepatch/core.c klp_free_patch_finish() (5.10 to 7.x), but the module_put(). */
	kobject_put(&patch->kobj);
	wait_for_completion(&patch->finish);
}

void klp_helper_free_patch_work_no_put(struct work_struct *work)
{
	/* kernel/livepatch/core.c klp_free_patch_work_fn(), with klp_free_patch_finish() inlined
	 * (as gcc does in 6.1) and without its module_put(). */
	klp_helper_free_patch_finish_no_put(container_of(work, struct klp_patch, free_work));
}

/*
 * kernel/livepatch/transition.c klp_check_and_switch_task(task, arg) (5.16 to 7.x; the callback
 * klp_try_switch_task hands task_call_func(), so never inlined) without its klp_check_stack():
 * where gcc inlined klp_check_stack into it, the `check_stack_always_safe` mutant replaces the
 * whole function. Two differences from the original besides the missing stack check:
 * klp_target_state is static to transition.c, but klp_try_switch_task calls this only for a
 * task whose patch_state is not the target yet, i.e. !target during a transition, so flipping
 * the task's own state gives the target; and task_curr() is not exported, so a task running on
 * another CPU is switched too (it would also pass a stack check that always says "safe").
 */
int klp_helper_check_and_switch_no_stack_check(struct task_struct *task, void *arg)
{
	clear_tsk_thread_flag(task, TIF_PATCH_PENDING);
	task->patch_state = !task->patch_state;
	return 0;
}

long klp_helper_sysfs_emit_str(char *buf, const char *s)
{
	return sysfs_emit(buf, "%s", s);
}
