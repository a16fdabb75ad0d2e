/* Module parameter of klp_ref_callbacks (storage in variants/klp_ref_callbacks.rs). */
extern int klp_ref_callbacks_pre_patch_ret;
module_param_named(pre_patch_ret, klp_ref_callbacks_pre_patch_ret, int, 0644);
MODULE_PARM_DESC(pre_patch_ret, "value every pre_patch callback returns (default 0, e.g. -19)");
