//! `reports/schema/bench.schema.json` against real `bench.json` files: the baselines committed
//! under `reports/bench/` (written by `cargo xtask bench latency`), and what the model writes
//! after a round trip. `vm_bench_latency` validates a fresh run's output against it too.

mod validators;

use std::path::Path;

use klp_conform::bench::latency::{self, BenchReport};
use serde_json::Value;
use validators::{assert_bench_valid, bench_validator};

fn baselines() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/bench");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push((p.display().to_string(), serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()));
        }
    }
    assert!(!out.is_empty(), "no baseline in {}", dir.display());
    out
}

#[test]
fn the_committed_baselines_match_the_schema_and_the_model() {
    for (path, v) in baselines() {
        assert_bench_valid(&v);
        let r: BenchReport = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
        let again: Value = serde_json::from_str(&latency::render_json(&r)).unwrap();
        assert_eq!(again, v, "{path}: the model does not write back what it read");
        assert!(!latency::render_table(&r).is_empty());
    }
}

#[test]
fn the_schema_refuses_what_the_model_cannot_write() {
    let v = bench_validator();
    let (_, good) = baselines().remove(0);
    assert!(v.is_valid(&good));
    let mut extra = good.clone();
    extra["kernels"][0]["states"][0]["p99"] = 1.into();
    assert!(!v.is_valid(&extra), "an unknown field must fail");
    let mut clock = good.clone();
    clock["clock"] = "kvm".into();
    assert!(!v.is_valid(&clock), "only icount and host clocks exist so far");
    let mut state = good.clone();
    state["kernels"][0]["states"][0]["state"] = "half-patched".into();
    assert!(!v.is_valid(&state));
    let mut kind = good.clone();
    kind["kernels"][0]["transitions"][0]["kind"] = "half".into();
    assert!(!v.is_valid(&kind), "a transition is an enable or a disable");
    let mut missing = good.clone();
    missing["kernels"][0].as_object_mut().unwrap().remove("transitions");
    assert!(!v.is_valid(&missing), "every kernel says which transitions it went through");
    let mut time = good;
    time["started_at"] = "yesterday".into();
    assert!(!v.is_valid(&time), "formats are checked");
}

#[test]
fn the_loaded_transitions_are_checked_too() {
    let v = bench_validator();
    let Some((path, good)) = baselines().into_iter().find(|(_, b)| b["kernels"][0].get("loaded").is_some()) else {
        panic!("no committed baseline has loaded transitions");
    };
    assert!(v.is_valid(&good), "{path}");
    let mut kind = good.clone();
    kind["kernels"][0]["loaded"]["runs"][0]["kind"] = "sideways".into();
    assert!(!v.is_valid(&kind), "a loaded transition is an enable or a disable");
    let mut retries = good.clone();
    retries["kernels"][0]["loaded"]["runs"][0]["retries"] = (-1).into();
    assert!(!v.is_valid(&retries));
    let mut missing = good.clone();
    missing["kernels"][0]["loaded"]["runs"][0].as_object_mut().unwrap().remove("fake_signals");
    assert!(!v.is_valid(&missing), "every run says whether fake signals were sent");
    let mut tasks = good;
    tasks["settings"]["load"]["tasks"] = 17.into();
    assert!(!v.is_valid(&tasks), "klp_bench starts at most 16 holders");
}
