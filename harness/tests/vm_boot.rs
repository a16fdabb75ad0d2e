//! Real VMs: the cached Debian kernel under TCG with the agent as PID 1.
//!
//! - `serves_requests`: every request kind against the real kernel, exact errnos included.
//! - `guest_panic_fails_the_request_fast`: a panic mid-request ends it within seconds with the
//!   console's panic excerpt, and QEMU is gone afterwards.
//! - `a_silent_agent_is_a_harness_error`: a guest whose agent stops answering while the kernel
//!   shows nothing wrong ends the case as ERROR within seconds of the deadline.
//!
//! (Ctrl-C on the real binary is checked by `conformance_e2e::ctrl_c_leaves_no_qemu_behind`;
//! boot times are measured by `cargo xtask bench boot`.)

mod vm_support;

use std::time::{Duration, Instant};

use klp_conform::agent_client::AgentError;
use klp_conform::runner::{run_case, VmGuest};
use klp_conform::vm::{Shutdown, Vm, VmEvent};
use klp_protocol::{Condition, EntryKind};
use vm_support::{alive, fixture, qemu_children};

#[test]
fn serves_requests() {
    let t0 = Instant::now();
    let fx = fixture();
    let cfg = fx.config("serves");
    let mut vm = Vm::boot(&cfg).unwrap();
    let pid = vm.pid();
    eprintln!(
        "boot to agent: {:.2}s (setup {:.2}s)",
        vm.boot_time().as_secs_f64(),
        (t0.elapsed() - vm.boot_time()).as_secs_f64()
    );
    assert_eq!(vm.hello().release, fx.kernel.release);
    let a = vm.agent();

    let h = a.hello().unwrap();
    assert_eq!(h.release, fx.kernel.release);

    let version = a.read_file("/proc/version").unwrap().unwrap();
    assert!(version.contains(&fx.kernel.release), "{version}");
    assert_eq!(a.read_file("/nonexistent").unwrap().unwrap_err().name, "ENOENT");

    // A sysfs store that rejects the value: mm/huge_memory.c enabled_store → -EINVAL.
    let e = a.write_file("/sys/kernel/mm/transparent_hugepage/enabled", "bogus\n").unwrap().unwrap_err();
    assert_eq!((e.errno, e.name.as_str(), e.message.as_str()), (22, "EINVAL", "Invalid argument"));
    // A procfs file without a write handler: open succeeds for root, write(2) gives -EIO
    // (fs/proc/inode.c pde_write).
    assert_eq!(a.write_file("/proc/version", "x").unwrap().unwrap_err().name, "EIO");
    // Writing where nothing exists, without O_CREAT: ENOENT, nothing created.
    assert_eq!(a.write_file("/sys/kernel/livepatch/nope/enabled", "1").unwrap().unwrap_err().name, "ENOENT");
    // A value sysfs accepts.
    a.write_file("/sys/kernel/mm/transparent_hugepage/enabled", "never").unwrap().unwrap();
    let thp = a.read_file("/sys/kernel/mm/transparent_hugepage/enabled").unwrap().unwrap();
    assert!(thp.contains("[never]"), "{thp}");

    // No livepatch loaded: the directory exists (CONFIG_LIVEPATCH=y) and is empty.
    assert_eq!(a.list_tree("/sys/kernel/livepatch").unwrap().unwrap(), vec![]);
    assert_eq!(a.list_tree("/sys/kernel/livepatch/nope").unwrap().unwrap_err().name, "ENOENT");
    // A tree with a write-only file (like livepatch's `force`): listed with its read errno.
    let bus = a.list_tree("/sys/bus/platform").unwrap().unwrap();
    let probe = bus.iter().find(|e| e.path == "drivers_probe").expect("drivers_probe listed");
    assert_eq!(
        (probe.kind, probe.mode, probe.value.as_deref(), probe.read_errno),
        (EntryKind::File, 0o200, None, Some(13))
    );
    assert!(bus
        .iter()
        .any(|e| e.kind == EntryKind::Symlink && e.target.as_deref().is_some_and(|t| t.contains("devices"))));
    let paths: Vec<_> = bus.iter().map(|e| e.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    let kmsg = a.read_kmsg(0).unwrap();
    assert!(kmsg.len() > 100, "{} records", kmsg.len());
    assert!(kmsg.iter().any(|r| r.text.starts_with("Linux version")));
    // The channel is the recipe's virtio-serial port, found by name without udev.
    let agent_line =
        kmsg.iter().find(|r| r.text.starts_with("klp-agent: serving on /dev/vport")).expect("agent logged");
    assert!(agent_line.text.contains("(virtio:org.klp-conform.agent, opened in "), "{}", agent_line.text);
    // Its drivers were loaded from the image, dependencies first.
    let loaded: Vec<&str> = kmsg
        .iter()
        .filter_map(|r| r.text.strip_prefix("klp-agent: loaded /lib/modules/boot/"))
        .filter_map(|t| t.split(".ko").next())
        .collect();
    eprintln!("boot modules: {loaded:?}");
    let at = |m: &str| loaded.iter().position(|l| l.ends_with(m)).unwrap_or_else(|| panic!("{m} not in {loaded:?}"));
    assert!(at("-virtio") < at("-virtio_pci") && at("-virtio_ring") < at("-virtio_console"));
    assert!(at("-virtio_pci") < at("-virtio_console") && at("-pvpanic") < at("-pvpanic-mmio"));
    assert_eq!(agent_line.level, 6);
    assert!(kmsg.windows(2).all(|w| w[0].seq < w[1].seq));
    let later = a.read_kmsg(agent_line.seq).unwrap();
    assert_eq!(later.first().map(|r| r.seq), Some(agent_line.seq));

    let (met, last) = a
        .wait_for(
            Condition::FileEquals { path: "/proc/sys/kernel/ostype".into(), value: "Linux".into() },
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(met);
    assert_eq!(last.as_deref(), Some("Linux\n"));
    let t = Instant::now();
    let w = a
        .wait_for_with(
            Condition::Exists { path: "/sys/kernel/livepatch/p".into() },
            Duration::from_millis(300),
            Duration::from_millis(20),
        )
        .unwrap();
    assert!(!w.met && w.elapsed >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(5), "{w:?}");

    assert_eq!(a.load_module("/lib/modules/klp/nope.ko", "").unwrap().unwrap_err().name, "ENOENT");
    assert_eq!(a.unload_module("nope").unwrap().unwrap_err().name, "ENOENT");
    // pvpanic was loaded at start (the image's boot module), so panics reach QMP.
    assert!(a.read_file("/proc/modules").unwrap().unwrap().contains("pvpanic_mmio"));

    assert_eq!(vm.console_problem(), None, "{}", vm.console_text());
    assert_eq!(vm.status().unwrap(), "running");
    let t = Instant::now();
    assert_eq!(vm.shutdown().unwrap(), Shutdown::PoweredOff);
    eprintln!("power off: {:.2}s; whole test {:.1}s", t.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64());
    assert!(!alive(pid));
    assert_eq!(qemu_children(), Vec::<u32>::new());
    let console = std::fs::read_to_string(cfg.workdir.join("console.log")).unwrap();
    assert!(console.contains("reboot: Power down"), "{}", klp_conform::tools::tail(&console, 20));
}

#[test]
fn guest_panic_fails_the_request_fast() {
    let fx = fixture();
    let mut vm = Vm::boot(&fx.config("panic")).unwrap();
    let pid = vm.pid();
    let t = Instant::now();
    // The write never returns: sysrq `c` panics the kernel inside write(2).
    let e = vm.agent().write_file("/proc/sysrq-trigger", "c").unwrap_err();
    let took = t.elapsed();
    let msg = e.to_string();
    eprintln!("failed after {:.2}s with:\n{msg}", took.as_secs_f64());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(matches!(e, AgentError::GuestDied { op: "write_file", .. }), "{e:?}");
    assert!(msg.contains("Kernel panic - not syncing: sysrq triggered crash"), "{msg}");
    // The next call fails at once, with the same story.
    let t = Instant::now();
    let e2 = vm.agent().hello().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(e2.to_string().contains("sysrq triggered crash"));
    let problem = vm.console_problem().expect("the console shows the panic");
    assert!(problem.panicked);
    assert!(vm.events().contains(&VmEvent::GuestPanicked), "{:?}", vm.events());
    assert_eq!(vm.status().unwrap(), "guest-panicked");
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Quit);
    assert!(!alive(pid));
    assert_eq!(qemu_children(), Vec::<u32>::new());
}

/// Without pvpanic (the recipe without it), `panic=-1` + `-no-reboot` end QEMU instead; the
/// request fails as fast, with the same excerpt.
#[test]
fn guest_panic_without_pvpanic_ends_qemu() {
    let fx = fixture();
    let mut recipe = fx.recipe.clone();
    recipe.modules.retain(|m| !m.name.starts_with("pvpanic"));
    let mut cfg = fx.config("panic-plain");
    cfg.initramfs = fx.initramfs_for(&recipe, &[], "plain.cpio");
    cfg.guest = recipe;
    let mut vm = Vm::boot(&cfg).unwrap();
    let pid = vm.pid();
    let t = Instant::now();
    let e = vm.agent().write_file("/proc/sysrq-trigger", "c").unwrap_err();
    eprintln!("failed after {:.2}s: {}", t.elapsed().as_secs_f64(), e.to_string().lines().next().unwrap());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(e.to_string().contains("Kernel panic - not syncing: sysrq triggered crash"), "{e}");
    assert!(!vm.events().contains(&VmEvent::GuestPanicked));
    assert!(matches!(e, AgentError::GuestDied { ref gone, .. } if gone.kernel_died), "{e:?}");
    assert_ne!(vm.shutdown().unwrap(), Shutdown::PoweredOff);
    assert!(!alive(pid));
}

/// A guest whose CPUs are stopped (QMP `stop`): the kernel is healthy and quiet, the agent
/// just does not answer. The case ends as a harness ERROR (not a FAIL) within seconds of the
/// request deadline, with the console, and the VM goes away at once afterwards.
#[test]
fn a_silent_agent_is_a_harness_error() {
    let fx = fixture();
    let mut vm = Vm::boot(&fx.config("silent")).unwrap();
    let pid = vm.pid();
    let deadline = Duration::from_secs(3);
    vm.agent().set_timeout(deadline);
    vm.agent().read_file("/proc/version").unwrap().unwrap();
    vm.pause().unwrap();
    let text = "version: 1\nsuite: t\ncases:\n  - name: c\n    spec: [L1]\n    steps:\n      - read: {path: /proc/sys/kernel/ostype, equals: Linux}\n      - read: {path: /proc/sys/kernel/ostype, equals: Linux}\n";
    let case = klp_conform::suite::parse_suite(std::path::Path::new("t.yaml"), text).unwrap().cases.remove(0);
    let t = Instant::now();
    let r = run_case(&case, &mut VmGuest::new(&mut vm));
    let took = t.elapsed();
    eprintln!("silent agent: {took:.2?}: {r:?}");
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let e = r.harness_error.expect("a harness error");
    assert!(e.starts_with("step 1: read /proc/sys/kernel/ostype: the harness lost its channel to the agent"), "{e}");
    assert!(e.contains("no oops, BUG, WARNING or panic") && e.contains("klp-agent: serving on"), "{e}");
    assert!(took < deadline + Duration::from_secs(3), "{took:?}");
    // Not asked again: the kernel log and the power-off fail at once, QMP `quit` ends it.
    let t = Instant::now();
    assert!(matches!(vm.agent().read_kmsg(0), Err(AgentError::Lost { .. })));
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Quit);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!alive(pid));
    assert_eq!(qemu_children(), Vec::<u32>::new());
}
