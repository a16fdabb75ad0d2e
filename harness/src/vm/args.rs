//! The QEMU command line, built from small pure functions (one per concern) so that each flag
//! has a stated reason and a unit test shows the whole line.

use std::ffi::OsString;
use std::path::Path;

use super::Accel;

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

pub fn accel_args(accel: Accel) -> Vec<OsString> {
    match accel {
        // The host CPU's features; only KVM can pass them through.
        Accel::Kvm => os(&["-accel", "kvm", "-cpu", "host"]),
        // One host thread per vCPU (the default for x86 on x86 hosts, said explicitly).
        Accel::Tcg | Accel::Auto => os(&["-accel", "tcg,thread=multi"]),
    }
}

pub fn machine_args(memory_mb: u32, cpus: u32) -> Vec<OsString> {
    vec![
        // i440fx: has the ISA bus the two 8250 UARTs and the pvpanic port sit on.
        "-machine".into(),
        "pc".into(),
        "-m".into(),
        format!("{memory_mb}M").into(),
        // More than one CPU: livepatch transitions are only interesting with other tasks running.
        "-smp".into(),
        cpus.to_string().into(),
    ]
}

/// ttyS0: the kernel console, appended to a file the harness scans for oops/panic.
pub fn console_args(console: &Path) -> Vec<OsString> {
    vec!["-chardev".into(), kv("file,id=console,path=", console, ""), "-serial".into(), "chardev:console".into()]
}

/// ttyS1: the agent's channel, a unix socket QEMU listens on (the harness connects).
pub fn agent_port_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        // wait=off: QEMU starts the guest without waiting for the harness to connect.
        kv("socket,id=agent,path=", socket, ",server=on,wait=off"),
        "-device".into(),
        // A second ISA 8250 at 0x2f8/IRQ3: built into every Debian kernel, needs no module.
        "isa-serial,chardev=agent,index=1".into(),
    ]
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

/// The kernel command line. Every token says why it is there.
pub fn kernel_cmdline(extra: &str) -> String {
    let mut tokens = vec![
        // Kernel messages go to the first UART, i.e. to console.log.
        "console=ttyS0",
        // Messages before the console driver is up too (a KVM guest that hangs early shows
        // how far it got).
        "earlyprintk=serial,ttyS0",
        // On a panic reboot at once; with -no-reboot that ends QEMU, if pvpanic did not pause it.
        "panic=-1",
        // The initramfs's /init is the agent (the default, said explicitly).
        "rdinit=/init",
        // Shorter boot: no probing of the legacy i8042 keyboard controller.
        "i8042.noaux",
        "i8042.nokbd",
    ];
    let extra = extra.trim();
    if !extra.is_empty() {
        tokens.push(extra);
    }
    tokens.join(" ")
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
        assert_eq!(joined(&v), "-chardev file,id=console,path=/tmp/a,,b/console.log -serial chardev:console");
    }

    #[test]
    fn the_full_command_line() {
        let paths = QemuPaths {
            console: Path::new("/w/console.log"),
            qmp_socket: Path::new("/tmp/klp-vm-x/qmp.sock"),
            agent_socket: Path::new("/tmp/klp-vm-x/agent.sock"),
        };
        let mut v = base_args();
        v.extend(accel_args(Accel::Tcg));
        v.extend(machine_args(512, 2));
        v.extend(console_args(paths.console));
        v.extend(agent_port_args(paths.agent_socket));
        v.extend(qmp_args(paths.qmp_socket));
        v.extend(panic_args());
        v.extend(kernel_args(Path::new("/k/vmlinuz"), Path::new("/w/initramfs.cpio"), &kernel_cmdline(" oops=panic ")));
        insta::assert_snapshot!(joined(&v).replace(" -", "\n-"), @r"
        -nodefaults
        -no-user-config
        -display none
        -no-reboot
        -accel tcg,thread=multi
        -machine pc
        -m 512M
        -smp 2
        -chardev file,id=console,path=/w/console.log
        -serial chardev:console
        -chardev socket,id=agent,path=/tmp/klp-vm-x/agent.sock,server=on,wait=off
        -device isa-serial,chardev=agent,index=1
        -chardev socket,id=qmp,path=/tmp/klp-vm-x/qmp.sock,server=on,wait=off
        -mon chardev=qmp,mode=control
        -device pvpanic
        -action panic=pause
        -kernel /k/vmlinuz
        -initrd /w/initramfs.cpio
        -append console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 rdinit=/init i8042.noaux i8042.nokbd oops=panic
        ");
        assert_eq!(joined(&accel_args(Accel::Kvm)), "-accel kvm -cpu host");
    }
}
