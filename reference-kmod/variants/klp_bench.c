/* Module parameters of klp_bench (storage in variants/klp_bench.rs). */
extern int klp_bench_calls;
module_param_named(calls, klp_bench_calls, int, 0644);
MODULE_PARM_DESC(calls, "calls of each function per batch (default 1000)");

extern int klp_bench_batches;
module_param_named(batches, klp_bench_batches, int, 0644);
MODULE_PARM_DESC(batches, "batches per read of /proc/klp_bench (default 40)");
