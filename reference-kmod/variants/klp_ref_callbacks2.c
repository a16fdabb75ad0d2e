/* Module parameter of klp_ref_callbacks2 (storage in variants/klp_ref_callbacks2.rs). */
extern bool klp_ref_callbacks2_replace;
module_param_named(replace, klp_ref_callbacks2_replace, bool, 0444);
MODULE_PARM_DESC(replace, "make it an atomic replace patch (default N)");
