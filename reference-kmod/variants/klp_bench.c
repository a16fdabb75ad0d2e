/* Module parameters of klp_bench (storage in variants/klp_bench.rs). */
extern int klp_bench_calls;
module_param_named(calls, klp_bench_calls, int, 0644);
MODULE_PARM_DESC(calls, "calls of each function per batch (default 1000)");

extern int klp_bench_batches;
module_param_named(batches, klp_bench_batches, int, 0644);
MODULE_PARM_DESC(batches, "batches per read of /proc/klp_bench (default 40)");

extern int klp_bench_holders;
module_param_named(holders, klp_bench_holders, int, 0444);
MODULE_PARM_DESC(holders, "holder kthreads started at load, 0..16 (default 1)");

extern int klp_bench_hold;
module_param_named(hold, klp_bench_hold, int, 0644);
MODULE_PARM_DESC(hold, "a new non-zero value sends every holder into klp_bench_hold_func once");

extern int klp_bench_hold_ms;
module_param_named(hold_ms, klp_bench_hold_ms, int, 0644);
MODULE_PARM_DESC(hold_ms, "if > 0, holders leave klp_bench_hold_func this many ms after a livepatch transition started (default 0)");

extern int klp_bench_holding;
module_param_named(holding, klp_bench_holding, int, 0444);
MODULE_PARM_DESC(holding, "holders inside klp_bench_hold_func now");
