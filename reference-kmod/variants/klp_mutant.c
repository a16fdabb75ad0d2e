/* The kernel-mutant helpers (the redirecting ftrace_ops), compiled into this module only. */
#include "klp_mutant_helpers.c"

/* Module parameter of klp_mutant (storage in variants/klp_mutant.rs). */
extern char *klp_mutant_name;
module_param_named(mutant, klp_mutant_name, charp, 0444);
MODULE_PARM_DESC(mutant, "kernel mutant: enabled_store_noop, force_store_noop, transition_show_zero, check_stack_always_safe, switch_task_never, send_signals_noop, free_patch_no_module_put, or none");
