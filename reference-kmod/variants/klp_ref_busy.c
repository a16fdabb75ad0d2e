/* Module parameters of klp_ref_busy (storage in variants/klp_ref_busy.rs). */
extern bool klp_ref_busy_block;
module_param_named(block, klp_ref_busy_block, bool, 0644);
MODULE_PARM_DESC(block, "sleep in klp_ref_busy_func while Y (default N)");

extern bool klp_ref_busy_kthread;
module_param_named(kthread, klp_ref_busy_kthread, bool, 0444);
MODULE_PARM_DESC(kthread, "start the klp_ref_busy kthread at init (default Y)");

extern int klp_ref_busy_sleep_mode;

static int klp_ref_busy_sleep_mode_set(const char *val, const struct kernel_param *kp)
{
	if (sysfs_streq(val, "uninterruptible"))
		WRITE_ONCE(*(int *)kp->arg, 0);
	else if (sysfs_streq(val, "interruptible"))
		WRITE_ONCE(*(int *)kp->arg, 1);
	else
		return -EINVAL;
	return 0;
}

static int klp_ref_busy_sleep_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", READ_ONCE(*(int *)kp->arg) == 1 ? "interruptible" : "uninterruptible");
}

static const struct kernel_param_ops klp_ref_busy_sleep_mode_ops = {
	.set = klp_ref_busy_sleep_mode_set,
	.get = klp_ref_busy_sleep_mode_get,
};
module_param_cb(sleep_mode, &klp_ref_busy_sleep_mode_ops, &klp_ref_busy_sleep_mode, 0644);
MODULE_PARM_DESC(sleep_mode, "uninterruptible (default) or interruptible");
__MODULE_PARM_TYPE(sleep_mode, "string");
