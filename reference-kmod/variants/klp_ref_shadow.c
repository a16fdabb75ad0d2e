/* Module parameters of klp_ref_shadow (storage in variants/klp_ref_shadow.rs). */
extern bool klp_ref_shadow_keep;
module_param_named(keep, klp_ref_shadow_keep, bool, 0444);
MODULE_PARM_DESC(keep, "leave the shadow variable <0x6b6c7072, 0x1237> allocated (default N: free it if found)");

extern bool klp_ref_shadow_dup_warn;
module_param_named(dup_warn, klp_ref_shadow_dup_warn, bool, 0444);
MODULE_PARM_DESC(dup_warn, "also allocate a duplicate shadow variable, which WARNs (default N)");
