//! Real VM: `bench latency` on the default kernel with a small N, on the icount clock. A
//! livepatched function must cost its callers more than an unpatched one, and a plain ftrace
//! user on it must lie in between (the livepatch adds its handler to ftrace's cost). The
//! result must match `reports/schema/bench.schema.json`.

mod validators;
mod vm_support;

use klp_conform::bench::latency::{
    self, BenchReport, Clock, KernelInput, Settings, SettingsOut, State, TransitionKind,
};
use klp_conform::kernel;
use klp_conform::progress::Progress;
use vm_support::{fixture, workspace_root};

#[test]
fn patched_costs_more_than_ftrace_only_which_costs_more_than_unpatched() {
    let fx = fixture();
    let progress = Progress::new();
    let cache = kernel::default_cache_dir();
    let set =
        klp_conform::kmod::build_all(&fx.kernel, &workspace_root().join("reference-kmod"), &cache, &progress).unwrap();
    let settings = Settings {
        clock: Clock::Icount,
        rounds: 2,
        batches: 5,
        warmup: 1,
        calls: 200,
        seed: 7,
        states: vec![State::Unpatched, State::FtraceOnly, State::Patched],
    };
    settings.check().unwrap();
    let input =
        KernelInput { kernel: &fx.kernel, modules: &set.modules, agent: &fx.agent, cache: &cache, recipe: &fx.recipe };
    let r = latency::run_kernel(&input, &settings, &fx.dir.path().join("s"), &fx.dir.path().join("logs"), &progress)
        .unwrap();
    let cost = |s: State| r.states.iter().find(|x| x.state == s).unwrap();
    let (u, f, p) = (cost(State::Unpatched), cost(State::FtraceOnly), cost(State::Patched));
    eprintln!("unpatched {:.1}, ftrace-only {:.1}, patched {:.1} instructions/call", u.median, f.median, p.median);
    assert!(u.median < f.median && f.median < p.median, "{u:?}\n{f:?}\n{p:?}");
    // The clock counts instructions and the batches run with interrupts off: every batch of a
    // state costs the same.
    assert_eq!(p.mad, 0.0, "{p:?}");
    assert!(p.vs_unpatched.as_ref().unwrap().resolved);
    assert_eq!(r.environment.vcpus, 1);
    // patched is entered and left once per round: one enable and one disable each.
    let kinds: Vec<_> = r.transitions.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransitionKind::Enable, TransitionKind::Disable].repeat(2), "{:?}", r.transitions);
    assert!(r.environment.icount.is_some());

    let report = BenchReport {
        schema: latency::SCHEMA.into(),
        benchmark: "latency".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        clock: Clock::Icount,
        unit: Clock::Icount.unit().into(),
        settings: SettingsOut { rounds: 2, batches: 5, warmup: 1, calls: 200, seed: 7, load: Some(load) },
        kernels: vec![r],
    };
    validators::assert_bench_valid(&serde_json::from_str(&latency::render_json(&report)).unwrap());
    eprintln!("{}", latency::render_table(&report));
}
