//! `--accel auto`: probes KVM once with a real guest and a short deadline, falls back to TCG
//! with a note when the guest does not reach the agent (nested virtualisation here), and
//! remembers the answer so the next run does not pay for the probe again.

mod vm_support;

use std::time::{Duration, Instant};

use klp_conform::vm::{kvm_usable, probe_accel, Accel, Vm, KVM_PROBE_TIMEOUT};
use vm_support::{fixture, qemu_children};

#[test]
fn auto_probes_once_and_remembers() {
    let fx = fixture();
    let cache = tempfile::tempdir().unwrap();
    let probe = fx.config("probe");

    assert_eq!(
        probe_accel(Accel::Tcg, &probe, cache.path(), &klp_conform::progress::Progress::quiet()).unwrap().0,
        Accel::Tcg
    );

    let t = Instant::now();
    let (accel, note) =
        probe_accel(Accel::Auto, &probe, cache.path(), &klp_conform::progress::Progress::quiet()).unwrap();
    let first = t.elapsed();
    eprintln!("auto → {accel} in {:.1}s: {note}", first.as_secs_f64());
    assert_ne!(accel, Accel::Auto);
    assert!(first < KVM_PROBE_TIMEOUT + Duration::from_secs(15), "the probe must not hang: {first:?}");
    assert_eq!(qemu_children(), Vec::<u32>::new(), "the probe VM is gone");
    match kvm_usable() {
        Err(_) => assert!(note.contains("/dev/kvm"), "{note}"),
        Ok(()) => {
            // Remembered per host and guest kernel.
            let text = std::fs::read_to_string(cache.path().join("accel-probe.json")).unwrap();
            assert!(text.contains(&fx.kernel.release), "{text}");
            let t = Instant::now();
            let (again, note2) =
                probe_accel(Accel::Auto, &probe, cache.path(), &klp_conform::progress::Progress::quiet()).unwrap();
            assert_eq!(again, accel);
            assert!(t.elapsed() < Duration::from_secs(1));
            assert!(note2.contains("remembered"), "{note2}");
        }
    }

    // Whatever was chosen boots.
    let mut cfg = fx.config("chosen");
    cfg.accel = accel;
    let vm = Vm::boot(&cfg).unwrap();
    eprintln!("{accel} boot to agent: {:.2}s", vm.boot_time().as_secs_f64());
    vm.shutdown().unwrap();
}
