// SPDX-License-Identifier: GPL-2.0-only
/* The klp layer's C helpers (declared and explained in klp_helpers.h); included by every shim. */
#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/printk.h>
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
