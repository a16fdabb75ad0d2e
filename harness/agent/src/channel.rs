//! Opening the agent's end of the channel the kernel command line names ([`Channel`]).
//!
//! - `virtio:<name>`: the virtio-serial port QEMU created with that name. virtio_console
//!   learns port names from the host asynchronously after the driver probed, so the port is
//!   looked up by polling /sys/class/virtio-ports/*/name (no udev here: the node comes from
//!   devtmpfs as /dev/vportNpM, the same name as the sysfs entry). A port is not a tty: the
//!   bytes pass as written.
//! - `tty:<name>`: a serial tty, put in raw mode.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use klp_protocol::Channel;

use crate::sys;

/// Where virtio_console lists its ports.
const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";
/// How long the port may take to appear once its modules are loaded (under TCG on a loaded
/// host it takes tens of milliseconds; the host's boot deadline is the real limit).
const FIND_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);

/// An open channel and how to read, write and drain it.
pub struct Port {
    pub file: File,
    /// The device node, for messages.
    pub path: String,
    is_tty: bool,
}

impl Port {
    /// Wait until what was written has gone out (before powering off after the last answer).
    /// Only a tty has an output queue of its own; a virtio port hands each write to the host
    /// before write(2) returns.
    pub fn drain(&self) {
        if self.is_tty {
            sys::drain(self.file.as_raw_fd());
        }
    }
}

/// Open the channel; an error says what was looked for and what was found.
pub fn open(channel: &Channel) -> Result<Port, String> {
    match channel {
        Channel::Tty { name } => open_tty(&format!("/dev/{name}")),
        Channel::Virtio { name } => open_virtio(name, Path::new(VIRTIO_PORTS), Path::new("/dev")),
    }
}

fn open_rw(path: &str, extra: i32) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(extra | libc::O_CLOEXEC).open(path)
}

fn open_tty(path: &str) -> Result<Port, String> {
    let mut last = String::new();
    // devtmpfs has the node as soon as the 8250 driver registered it; wait a little anyway.
    for _ in 0..50 {
        match open_rw(path, libc::O_NOCTTY) {
            Ok(f) => {
                sys::make_raw(f.as_raw_fd()).map_err(|e| format!("raw mode on {path}: {}", sys::strerror(e)))?;
                return Ok(Port { file: f, path: path.into(), is_tty: true });
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("cannot open {path}: {last}"))
}

/// The port whose `name` attribute is `name`: (sysfs entry, e.g. `vport0p1`).
fn find_port(name: &str, class: &Path) -> Result<Option<String>, String> {
    let rd = match std::fs::read_dir(class) {
        Ok(rd) => rd,
        // The class appears when virtio_console registers it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("listing {}: {e}", class.display())),
    };
    for ent in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(ent.path().join("name")) else { continue };
        if text.trim_end_matches('\n') == name {
            return Ok(Some(ent.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// What /sys/class/virtio-ports holds, for the error when the port never appears.
fn seen_ports(class: &Path) -> String {
    let Ok(rd) = std::fs::read_dir(class) else { return format!("{} does not exist", class.display()) };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| {
            let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
            format!("{} (name {:?})", e.file_name().to_string_lossy(), n.trim_end())
        })
        .collect();
    v.sort();
    if v.is_empty() {
        "no ports".into()
    } else {
        v.join(", ")
    }
}

fn open_virtio(name: &str, class: &Path, dev: &Path) -> Result<Port, String> {
    let started = Instant::now();
    loop {
        if let Some(entry) = find_port(name, class)? {
            let node = dev.join(&entry).to_string_lossy().into_owned();
            match open_rw(&node, 0) {
                Ok(file) => return Ok(Port { file, path: node, is_tty: false }),
                // devtmpfs creates the node right after the sysfs entry; give it a moment.
                Err(e) if started.elapsed() >= FIND_TIMEOUT => return Err(format!("cannot open {node}: {e}")),
                Err(_) => {}
            }
        } else if started.elapsed() >= FIND_TIMEOUT {
            return Err(format!(
                "no virtio-serial port named {name} after {}s (is virtio_console loaded? {}: {})",
                FIND_TIMEOUT.as_secs(),
                class.display(),
                seen_ports(class)
            ));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let dir = tempfile_dir("find");
        let class = dir.join("class");
        let dev = dir.join("dev");
        std::fs::create_dir_all(class.join("vport0p1")).unwrap();
        std::fs::create_dir_all(class.join("vport0p2")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(class.join("vport0p1/name"), "org.qemu.guest_agent.0\n").unwrap();
        std::fs::write(class.join("vport0p2/name"), "org.klp-conform.agent\n").unwrap();
        std::fs::write(dev.join("vport0p2"), "").unwrap();
        assert_eq!(find_port("org.klp-conform.agent", &class).unwrap().as_deref(), Some("vport0p2"));
        assert_eq!(find_port("nope", &class).unwrap(), None);
        assert_eq!(find_port("x", &dir.join("missing")).unwrap(), None);
        let p = open_virtio("org.klp-conform.agent", &class, &dev).unwrap();
        assert!(p.path.ends_with("/dev/vport0p2") && !p.is_tty);
        let seen = seen_ports(&class);
        assert_eq!(seen, "vport0p1 (name \"org.qemu.guest_agent.0\"), vport0p2 (name \"org.klp-conform.agent\")");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("klp-agent-channel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
