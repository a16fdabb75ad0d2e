//! virtiofs shares on a restored guest (real VM, TCG): the guest is booted and saved without
//! any virtiofs device (QEMU 7.2 cannot migrate one), restored, then a writable share is
//! hot-added; the guest reads what the host wrote and the host reads what the guest wrote.
//! The cost of the share (daemon start, hot-add, mount) is printed, not asserted.

mod vm_support;

use klp_conform::vm::virtiofs::Share;
use klp_conform::vm::Vm;

#[test]
fn a_share_round_trips_files_on_a_restored_guest_and_its_daemon_dies_with_the_vm() {
    let fx = vm_support::fixture();
    let booted = Vm::boot(&fx.config("boot")).expect("boot");
    let saved = booted.save_state(&fx.dir.path().join("guest.vmstate")).expect("save");

    let host_dir = fx.dir.path().join("results");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host.txt"), "written by the host\n").unwrap();

    let mut vm = Vm::restore(&fx.config("restored"), &saved).expect("restore");
    let timing = vm.add_share(&Share::new("results", &host_dir, "/mnt/results", false)).expect("add share");
    eprintln!(
        "share cost (host time): virtiofsd start {:.3} s, hot-add {:.3} s, mount {:.3} s, total {:.3} s",
        timing.daemon_s,
        timing.hotadd_s,
        timing.mount_s,
        timing.total_s()
    );
    let daemons = vm.share_daemons();
    assert_eq!(daemons.len(), 1);

    let agent = vm.agent();
    assert_eq!(agent.read_file("/mnt/results/from-host.txt").unwrap().unwrap(), "written by the host\n");
    agent.write_file("/mnt/results/from-host.txt", "overwritten by the guest\n").unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(host_dir.join("from-host.txt")).unwrap(), "overwritten by the guest\n");
    // Read-only: a share mounted readonly refuses writes with EROFS.
    let ro_dir = fx.dir.path().join("ro");
    std::fs::create_dir_all(&ro_dir).unwrap();
    std::fs::write(ro_dir.join("f"), "ro\n").unwrap();
    vm.add_share(&Share::new("ro", &ro_dir, "/mnt/ro", true)).expect("add read-only share");
    let agent = vm.agent();
    assert_eq!(agent.read_file("/mnt/ro/f").unwrap().unwrap(), "ro\n");
    let e = agent.write_file("/mnt/ro/f", "x\n").unwrap().unwrap_err();
    assert_eq!(e.name, "EROFS", "{e:?}");

    let daemons = vm.share_daemons();
    vm.quit();
    for pid in daemons {
        // Reaped by Drop: the pid no longer names a live process of ours.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "virtiofsd {pid} outlived its VM");
    }
}
