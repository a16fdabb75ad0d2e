//! `suites mutate --kernel-mutants` end to end on the default kernel: one case of the
//! transition suite (a kthread sleeping in the old function holds the patching transition)
//! against two kernel mutants, each loaded by the runner (`klp_mutant mutant=<id>`) before the
//! case's steps. `transition_show_zero` makes `<patch>/transition` read "0" while the kthread
//! holds the transition, so the case, which reads "1" there, must detect it; the control
//! (`mutant=none`) must pass. `force_store_noop` is never exercised by that case (it does not
//! write `force`), so it must pass there: reported undetected, exit 1. The JSON carries the
//! `kernel_mutants` section.

use std::process::Command;
use std::time::Instant;

#[test]
fn a_transition_case_detects_the_transition_show_mutant() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("result/mutate.json");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args([
            "suites",
            "mutate",
            "-j",
            "3",
            "--kernel-mutant",
            "transition_show_zero",
            "--kernel-mutant",
            "force_store_noop",
            "--case",
            "transition/held-by-kthread-in-old-function",
        ])
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    eprintln!("suites mutate --kernel-mutants took {:.1} s\n{stdout}", started.elapsed().as_secs_f64());
    assert_eq!(o.status.code(), Some(1), "force_store_noop goes unnoticed by this case: exit 1\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("transition_show_zero       transition_show        detected by 1 of 1 case(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "transition/held-by-kthread-in-old-function: step 6: read /sys/kernel/livepatch/klp_ref_busy_patch/transition"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("force_store_noop           force_store            NOT DETECTED"), "{stdout}");
    // Three guests: the control and the two mutants.
    assert!(stderr.contains("3 guests"), "{stderr}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "klp-conform.mutate.v1");
    let k = &v["kernel_mutants"]["kernels"][0];
    assert_eq!(k["cases"][0], "transition/held-by-kthread-in-old-function", "{k}");
    let show = &k["mutants"][0];
    assert_eq!((show["id"].as_str(), show["status"].as_str()), (Some("transition_show_zero"), Some("detected")), "{k}");
    assert_eq!(show["detected_by"][0]["case"], "transition/held-by-kthread-in-old-function");
    let force = &k["mutants"][1];
    assert_eq!((force["id"].as_str(), force["status"].as_str()), (Some("force_store_noop"), Some("undetected")), "{k}");

    // The module said what it redirected, in the mutant's guest.
    let dmesg = std::fs::read_to_string(
        tmp.path()
            .join("out/logs")
            .join(k["release"].as_str().unwrap())
            .join("transition/held-by-kthread-in-old-function@kernel:transition_show_zero/dmesg.log"),
    )
    .unwrap();
    assert!(dmesg.contains("klp_mutant: transition_show redirected to"), "{dmesg}");
}
