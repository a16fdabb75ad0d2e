//! The QEMU command line, built from small pure functions (one per concern) so that each flag
//! has a stated reason and a unit test shows the whole line, as [`qemu_args`] builds it from the
//! checkout's guest recipe (`images/guest.yaml`: machine size, channel, kernel command line).

use std::ffi::OsString;
use std::path::Path;

use super::{Accel, VmConfig};
use crate::image::recipe::{ChannelKind, ChannelRecipe, TcgThreads};

/// Where a VM's files and sockets are.
#[derive(Debug, Clone)]
pub struct QemuPaths<'a> {
    pub console: &'a Path,
    pub qmp_socket: &'a Path,
    pub agent_socket: &'a Path,
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// A path inside a QEMU option string, where `,` separates options and is escaped as `,,`.
fn opt_path(p: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn kv(prefix: &str, p: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(opt_path(p));
    s.push(suffix);
    s
}

/// No default devices, no configuration files, no window: only what the lines below add.
pub fn base_args() -> Vec<OsString> {
    os(&[
        // No NIC, VGA, parallel port, default serial/monitor: nothing we did not ask for.
        "-nodefaults",
        // Ignore /etc/qemu/*.conf so the host's config cannot change the VM.
        "-no-user-config",
        "-display",
        "none",
        // A guest reboot (panic=-1 on a panic without pvpanic, a triple fault) ends QEMU.
        "-no-reboot",
    ])
}

pub fn accel_args(accel: Accel, threads: TcgThreads) -> Vec<OsString> {
    match accel {
        // The host CPU's features; only KVM can pass them through.
        Accel::Kvm => os(&["-accel", "kvm", "-cpu", "host"]),
        // Why single or multi: images/guest.yaml.
        Accel::Tcg | Accel::Auto => vec!["-accel".into(), format!("tcg,thread={}", threads.as_str()).into()],
    }
}

/// Guest time counts guest instructions (2^0 ns each) and does not run while the guest idles
/// (`sleep=off`: QEMU jumps to the next timer instead): a deterministic clock for benchmarks,
/// the same whatever the host's load. Only with single-threaded TCG.
pub fn icount_args() -> Vec<OsString> {
    os(&["-icount", "shift=0,sleep=off"])
}

/// The full QEMU command line for `cfg`.
pub fn qemu_args(cfg: &VmConfig, paths: &QemuPaths) -> Vec<OsString> {
    let mut v = base_args();
    v.extend(accel_args(cfg.accel, cfg.guest.tcg_threads));
    if cfg.icount {
        v.extend(icount_args());
    }
    v.extend(machine_args(cfg.guest.memory_mb, cfg.guest.cpus));
    v.extend(console_args(paths.console));
    v.extend(channel_args(&cfg.guest.channel, paths.agent_socket));
    v.extend(qmp_args(paths.qmp_socket));
    v.extend(panic_args());
    v.extend(kernel_args(&cfg.vmlinuz, &cfg.initramfs, &cfg.guest.kernel_cmdline(&cfg.extra_cmdline)));
    v
}

/// Memory and CPUs as the recipe says.
pub fn machine_args(memory_mb: u32, cpus: u32) -> Vec<OsString> {
    vec![
        // The guest's RAM in a memfd QEMU can share: a vhost-user-fs device (virtiofs, hot-added
        // after a restore, see vm::virtiofs) needs its daemon to map guest memory. Every guest has
        // it, so that one saved guest serves cases with and without shares (a restore must use
        // the RAM layout the guest was saved with).
        "-object".into(),
        format!("memory-backend-memfd,id=ram,size={memory_mb}M,share=on").into(),
        // i440fx: has the ISA bus the 8250 UART(s) and the pvpanic port sit on, and PCI for
        // virtio-serial (and for hot-added virtiofs devices: ACPI PCI hotplug).
        "-machine".into(),
        "pc,memory-backend=ram".into(),
        "-m".into(),
        format!("{memory_mb}M").into(),
        "-smp".into(),
        cpus.to_string().into(),
    ]
}

/// ttyS0: the kernel console, appended to a file the harness scans for oops/panic.
pub fn console_args(console: &Path) -> Vec<OsString> {
    // append=on: a restored guest's console.log starts with the boot console it was saved with.
    vec![
        "-chardev".into(),
        kv("file,id=console,path=", console, ",append=on"),
        "-serial".into(),
        "chardev:console".into(),
    ]
}

/// The agent's channel: the guest's end as the recipe says, QEMU's end a unix socket it
/// listens on (the harness connects).
pub fn channel_args(channel: &ChannelRecipe, socket: &Path) -> Vec<OsString> {
    let mut v = vec![
        "-chardev".into(),
        // wait=off: QEMU starts the guest without waiting for the harness to connect.
        kv("socket,id=agent,path=", socket, ",server=on,wait=off"),
        "-device".into(),
    ];
    match channel.kind {
        ChannelKind::VirtioSerial => {
            let port = channel.port.as_deref().expect("a virtio-serial recipe names its port");
            // max_ports=2: port 0 is reserved for a virtconsole, ours is 1; the default (31)
            // makes the guest driver set up 64 virtqueues it never uses.
            v.push("virtio-serial-pci,id=agent-serial,max_ports=2".into());
            v.push("-device".into());
            v.push(format!("virtserialport,bus=agent-serial.0,chardev=agent,name={port}").into());
        }
        // A second ISA 8250 at 0x2f8/IRQ3: built into every Debian kernel, needs no module.
        ChannelKind::IsaSerial => v.push("isa-serial,chardev=agent,index=1".into()),
    }
    v
}

/// QMP on a unix socket, for readiness, events (SHUTDOWN, GUEST_PANICKED, STOP) and `quit`.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        kv("socket,id=qmp,path=", socket, ",server=on,wait=off"),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ]
}

/// A guest panic becomes the QMP event GUEST_PANICKED and pauses the VM, so the console is
/// complete and the harness, not a reboot, decides what happens next.
pub fn panic_args() -> Vec<OsString> {
    os(&["-device", "pvpanic", "-action", "panic=pause"])
}

pub fn kernel_args(vmlinuz: &Path, initramfs: &Path, cmdline: &str) -> Vec<OsString> {
    vec!["-kernel".into(), vmlinuz.into(), "-initrd".into(), initramfs.into(), "-append".into(), cmdline.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(v: &[OsString]) -> String {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let v = console_args(Path::new("/tmp/a,b/console.log"));
        assert_eq!(joined(&v), "-chardev file,id=console,path=/tmp/a,,b/console.log,append=on -serial chardev:console");
    }

    /// The real command line: [`qemu_args`] from the checkout's `images/guest.yaml`.
    #[test]
    fn the_full_command_line() {
        let paths = QemuPaths {
            console: Path::new("/w/console.log"),
            qmp_socket: Path::new("/tmp/klp-vm-x/qmp.sock"),
            agent_socket: Path::new("/tmp/klp-vm-x/agent.sock"),
        };
        let guest = crate::image::recipe::checkout_recipe();
        let mut cfg = VmConfig::new(Path::new("/k/vmlinuz"), Path::new("/w/initramfs.cpio"), Path::new("/w"), &guest);
        cfg.extra_cmdline = " oops=panic ".into();
        insta::assert_snapshot!(joined(&qemu_args(&cfg, &paths)).replace(" -", "\n-"), @r"
        -nodefaults
        -no-user-config
        -display none
        -no-reboot
        -accel tcg,thread=single
        -object memory-backend-memfd,id=ram,size=512M,share=on
        -machine pc,memory-backend=ram
        -m 512M
        -smp 2
        -chardev file,id=console,path=/w/console.log,append=on
        -serial chardev:console
        -chardev socket,id=agent,path=/tmp/klp-vm-x/agent.sock,server=on,wait=off
        -device virtio-serial-pci,id=agent-serial,max_ports=2
        -device virtserialport,bus=agent-serial.0,chardev=agent,name=org.klp-conform.agent
        -chardev socket,id=qmp,path=/tmp/klp-vm-x/qmp.sock,server=on,wait=off
        -mon chardev=qmp,mode=control
        -device pvpanic
        -action panic=pause
        -kernel /k/vmlinuz
        -initrd /w/initramfs.cpio
        -append console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 rdinit=/init i8042.noaux i8042.nokbd no_timer_check klp_agent.channel=virtio:org.klp-conform.agent oops=panic
        ");
        cfg.guest = guest.with_isa_serial();
        let isa = joined(&qemu_args(&cfg, &paths));
        assert!(isa.contains(" -device isa-serial,chardev=agent,index=1 "), "{isa}");
        assert!(isa.contains(" klp_agent.channel=tty:ttyS1 oops=panic"), "{isa}");
        assert!(!isa.contains("virtio"), "{isa}");
        cfg.icount = true;
        assert!(joined(&qemu_args(&cfg, &paths)).contains(" -accel tcg,thread=single -icount shift=0,sleep=off "));
        cfg.icount = false;
        cfg.accel = Accel::Kvm;
        assert!(joined(&qemu_args(&cfg, &paths)).contains(" -accel kvm -cpu host "));
    }
}
