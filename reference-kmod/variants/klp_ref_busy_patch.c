/* Module parameter of klp_ref_busy_patch (storage in variants/klp_ref_busy_patch.rs). */
extern bool klp_ref_busy_patch_block;
module_param_named(block, klp_ref_busy_patch_block, bool, 0644);
MODULE_PARM_DESC(block, "sleep in the new klp_ref_busy_func while Y (default N)");
