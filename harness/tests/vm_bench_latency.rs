//! Real VM: `bench latency` on the default kernel with a small N, on the icount clock. A
//! livepatched function must cost its callers more than an unpatched one, and a plain ftrace
//! user on it must lie in between (the livepatch adds its handler to ftrace's cost). During a
//! held transition, `klp_ftrace_handler` takes its `func->transition` branch: from an unswitched
//! task it then falls back to the original function (so it costs more than the plain ftrace
//! user, whose callback does less than the handler), from a switched one it goes on to the new
//! function like `patched` (so it costs more than `patched`: the same path plus that branch).
//! Loaded transitions (in a guest of their own) cannot complete before the tasks holding them
//! are released. The result must match `reports/schema/bench.schema.json`.

mod validators;
mod vm_support;

use klp_conform::bench::latency::{
    self, BenchReport, Clock, KernelInput, Settings, SettingsOut, State, TransitionKind,
};
use klp_conform::bench::loaded::LoadSettings;
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
    let load = LoadSettings { runs: 1, tasks: 2, hold_ms: 500 };
    let settings = Settings {
        clock: Clock::Icount,
        rounds: 2,
        batches: 5,
        warmup: 1,
        calls: 200,
        seed: 7,
        states: vec![
            State::Unpatched,
            State::FtraceOnly,
            State::Patched,
            State::TransitionUnpatchedTask,
            State::TransitionPatchedTask,
        ],
        load,
        trace_functions: vec![],
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
    let (tu, tp) = (cost(State::TransitionUnpatchedTask), cost(State::TransitionPatchedTask));
    eprintln!("transition-unpatched-task {:.1}, transition-patched-task {:.1}", tu.median, tp.median);
    assert!(f.median < tu.median, "{f:?}\n{tu:?}");
    assert!(p.median < tp.median, "{p:?}\n{tp:?}");
    for s in [tu, tp] {
        assert_eq!(s.mad, 0.0, "{s:?}");
        assert!(s.vs_unpatched.as_ref().unwrap().resolved, "{s:?}");
    }
    // The clock counts instructions and the batches run with interrupts off: every batch of a
    // state costs the same.
    assert_eq!(p.mad, 0.0, "{p:?}");
    assert!(p.vs_unpatched.as_ref().unwrap().resolved);
    assert_eq!(r.environment.vcpus, 1);
    // patched is entered and left once per round: one enable and one disable each (the held
    // states' transitions are not idle ones and not in this list).
    let kinds: Vec<_> = r.transitions.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransitionKind::Enable, TransitionKind::Disable].repeat(2), "{:?}", r.transitions);
    assert!(r.environment.icount.is_some());

    let l = r.loaded.as_ref().expect("loaded transitions");
    assert_eq!((l.tasks, l.hold_ms, l.runs.len()), (2, 500, 2), "{l:?}");
    // They had a guest of their own, logged apart from the states' one.
    let own = l.guest.expect("the loaded runs' own guest");
    assert!(own.boot_s > 0.0 && own.wall_s >= own.boot_s && r.states_wall_s.is_some(), "{l:?}");
    let logs = fx.dir.path().join("logs");
    assert!(logs.join("console.log").is_file() && logs.join("loaded/console.log").is_file());
    assert_eq!(l.runs.iter().map(|x| x.kind).collect::<Vec<_>>(), [TransitionKind::Enable, TransitionKind::Disable]);
    for run in &l.runs {
        let (log, released) = (run.log_ms.expect("the log times the transition"), run.released_ms.expect("release"));
        // The transition cannot complete while the holders are in the function: release, then
        // completion. (Not `released >= hold_ms`: the holders start counting when their
        // patch_state changes, in klp_init_transition, which comes before the `starting`
        // line the log time counts from.)
        assert!(released > 0.0 && log >= released, "{run:?}");
        if l.dyndbg.is_some() {
            // The pass in the request failed (the holders were in), so the work retried.
            let retries = run.retries.expect("retries with dynamic debug");
            assert!(retries >= 1, "{run:?}");
            // Fake signals only from the 15th retry on (SIGNALS_TIMEOUT).
            assert!(!run.fake_signals || retries >= 15, "{run:?}");
        }
    }

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
