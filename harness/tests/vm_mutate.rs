//! `suites mutate` end to end on the default kernel: a tiny suite with one sharp case (every
//! mutant killed but one marked equivalent) and one weak case (a wait on a directory that
//! exists from boot, whose dropped-wait mutant survives). Checks the counts, the survivor's
//! id and description, that it is run again (`--reruns`), the exit code (1: a mutant
//! survived) and the JSON file.

use std::process::Command;
use std::time::Instant;

const SUITE: &str = "\
version: 1
suite: tiny
cases:
  - name: sharp
    spec: [L1]
    equivalent_mutants:
      - {id: \"10:no-wait\", why: \"test fixture: listed, not run\"}
    steps:
      - load: klp_ref_cmdline
      - wait: {path: /sys/kernel/livepatch/klp_ref_cmdline/transition, equals: \"0\", timeout_s: 60}
      - kmsg: {contains: [\"'klp_ref_cmdline': patching complete\"]}
      - read: {path: /proc/cmdline, equals: \"klp_ref_cmdline: this has been live patched\"}
  - name: weak
    spec: [L1]
    steps:
      - wait: {exists: /sys/kernel/livepatch, timeout_s: 5}
      - expect_absent: /sys/kernel/livepatch/klp_ref_cmdline
";

/// `suites mutate` over SUITE, written to `dir`, with `args`; the output and where the JSON went.
fn mutate_tiny(dir: &std::path::Path, args: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let suite = dir.join("tiny.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let json = dir.join("result/mutate.json");
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["suites", "mutate"])
        .args(args)
        .arg("--suite")
        .arg(&suite)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    (o, json)
}

#[test]
fn mutants_run_on_the_kernel_killed_survived_and_equivalent_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (o, json) = mutate_tiny(tmp.path(), &["-j", "4"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    eprintln!("suites mutate took {:.1} s\n{stdout}", started.elapsed().as_secs_f64());
    assert_eq!(o.status.code(), Some(1), "a mutant survives: exit 1\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("SURVIVED 16:no-wait: step 1 (wait for /sys/kernel/livepatch to appear): dropped"),
        "{stdout}"
    );
    assert!(stdout.contains("equivalent 10:no-wait: test fixture"), "{stdout}");
    // The survivor runs again (--reruns, default 2), alone with its case's baseline.
    assert!(stderr.contains("rerun 1: 1 surviving mutant(s)"), "{stderr}");
    assert!(stderr.contains("rerun 2: 1 surviving mutant(s)"), "{stderr}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "klp-conform.mutate.v1");
    let suite = &v["kernels"][0]["suites"][0];
    assert_eq!(suite["suite"], "tiny");
    let sharp = &suite["cases"][0];
    assert_eq!(sharp["case"], "sharp");
    assert_eq!(sharp["status"], "mutated", "{sharp}");
    // load errno, wait value, wait no-wait (equivalent), kmsg missing, read value, read negate.
    assert_eq!(sharp["mutants"], 6, "{sharp}");
    assert_eq!(sharp["killed"], 5, "{sharp}");
    assert_eq!(sharp["survived"].as_array().unwrap().len(), 0, "{sharp}");
    assert_eq!(sharp["equivalent"][0]["id"], "10:no-wait");
    let weak = &suite["cases"][1];
    assert_eq!(weak["mutants"], 2, "{weak}");
    assert_eq!(weak["killed"], 1, "{weak}");
    assert_eq!(weak["survived"][0]["id"], "16:no-wait", "{weak}");
    let score = &v["score"];
    assert_eq!((score["killed"].as_u64(), score["survived"].as_u64()), (Some(6), Some(1)), "{score}");
    assert_eq!((score["equivalent"].as_u64(), score["errors"].as_u64()), (Some(1), Some(0)), "{score}");
}

/// `--sample`: only the sampled mutants run, a case with none in the sample runs no guest at all
/// (not even its baseline), and the scores count only what was sampled.
#[test]
fn a_sample_runs_only_its_mutants() {
    use klp_conform::suite::mutate::Sample;
    // Mutant ids of SUITE (`<line>:<operator>`): sharp's 9:errno 10:value 11:kmsg-missing:0
    // 12:value 12:negate (10:no-wait is equivalent), weak's 16:no-wait 17:exists.
    let sharp = ["9:errno", "10:value", "11:kmsg-missing:0", "12:value", "12:negate"];
    let seed = (0..10_000)
        .find(|&seed| {
            let s = Sample { every: 3, seed };
            s.keeps("tiny", "weak", "16:no-wait")
                && !s.keeps("tiny", "weak", "17:exists")
                && !sharp.iter().any(|id| s.keeps("tiny", "sharp", id))
        })
        .expect("a seed keeping only weak's dropped wait");
    let tmp = tempfile::tempdir().unwrap();
    let seed_arg = seed.to_string();
    let (o, json) = mutate_tiny(tmp.path(), &["-j", "2", "--reruns", "0", "--sample", "3", "--sample-seed", &seed_arg]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "the sampled dropped wait survives\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("--sample 3 --sample-seed {seed}")), "{stdout}");
    assert!(!stderr.contains("sharp@"), "no guest for a case without sampled mutants\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["sample"]["every"], 3);
    let cases = v["kernels"][0]["suites"][0]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["case"], "weak");
    assert_eq!((cases[0]["mutants"].as_u64(), cases[0]["killed"].as_u64()), (Some(1), Some(0)), "{}", cases[0]);
    assert_eq!(cases[0]["survived"][0]["id"], "16:no-wait");
}
