// SPDX-License-Identifier: GPL-2.0-only
/* The klp layer's C helpers (declared and explained in klp_helpers.h); included by every shim. */
#include <linux/err.h>
#include <linux/ftrace.h>
#include <linux/irqflags.h>
#include <linux/kernel.h>
#include <linux/preempt.h>
#include <linux/string.h>
#include <linux/version.h>
#include <linux/gfp.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/timekeeping.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include "klp_helpers.h"

void klp_helper_printk(const char *line)
{
	printk("%s", line);
}

void *klp_helper_kmalloc(size_t size)
{
	return kmalloc(size, GFP_KERNEL);
}

gfp_t klp_helper_gfp_kernel(void)
{
	return GFP_KERNEL;
}

void klp_helper_seq_puts(struct seq_file *m, const char *s)
{
	seq_puts(m, s);
}

int klp_helper_module_state(const struct module *mod)
{
	return (int)READ_ONCE(mod->state);
}

struct task_struct *klp_helper_kthread_run(int (*fn)(void *data), void *data, const char *name, int *err)
{
	struct task_struct *t = kthread_run(fn, data, "%s", name);

	if (IS_ERR(t)) {
		*err = (int)PTR_ERR(t);
		return NULL;
	}
	*err = 0;
	return t;
}

unsigned long klp_helper_irq_save(void)
{
	unsigned long flags;

	preempt_disable();
	local_irq_save(flags);
	return flags;
}

void klp_helper_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
	preempt_enable();
}

static unsigned long klp_helper_ftrace_hits;
static bool klp_helper_ftrace_registered;

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0)
static void notrace klp_helper_ftrace_cb(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
					 struct pt_regs *regs)
#else
static void notrace klp_helper_ftrace_cb(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
					 struct ftrace_regs *fregs)
#endif
{
	WRITE_ONCE(klp_helper_ftrace_hits, READ_ONCE(klp_helper_ftrace_hits) + 1);
}

static struct ftrace_ops klp_helper_ftrace_ops = {
	.func = klp_helper_ftrace_cb,
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0)
	/* The callback needs no recursion guard: called directly, not through the list function. */
	.flags = FTRACE_OPS_FL_RECURSION_SAFE,
#endif
};

int klp_helper_ftrace_user_register(const char *name)
{
	static unsigned char filter[KSYM_NAME_LEN];
	int ret;

	if (klp_helper_ftrace_registered)
		return -EBUSY;
	if (strscpy((char *)filter, name, sizeof(filter)) < 0)
		return -E2BIG;
	ret = ftrace_set_filter(&klp_helper_ftrace_ops, filter, strlen((char *)filter), 1);
	if (ret)
		return ret;
	ret = register_ftrace_function(&klp_helper_ftrace_ops);
	if (!ret)
		klp_helper_ftrace_registered = true;
	return ret;
}

void klp_helper_ftrace_user_unregister(void)
{
	if (klp_helper_ftrace_registered) {
		unregister_ftrace_function(&klp_helper_ftrace_ops);
		klp_helper_ftrace_registered = false;
	}
}

unsigned long klp_helper_ftrace_user_hits(void)
{
	return READ_ONCE(klp_helper_ftrace_hits);
}

int klp_helper_current_pid(void)
{
	return task_pid_nr(current);
}

int klp_helper_current_patch_state(void)
{
#ifdef CONFIG_LIVEPATCH
	return READ_ONCE(current->patch_state);
#else
	return -1;
#endif
}

unsigned long long klp_helper_ktime_ns(void)
{
	return ktime_get_ns();
}
