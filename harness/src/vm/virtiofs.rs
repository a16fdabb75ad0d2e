//! Host directories shared into a guest over virtiofs, served by the maintained Rust
//! `virtiofsd` (one daemon per share, started by the harness).
//!
//! QEMU 7.2 cannot migrate a guest that has a `vhost-user-fs` device, and every case normally
//! starts from a migrated (saved) guest. So the guest is booted and saved with its RAM in a
//! shared `memory-backend-memfd` (what vhost-user needs: the daemon maps the guest's memory)
//! but *without* the device; a case that needs a share gets it hot-added after the restore
//! ([`super::Vm::add_share`]: start the daemon, QMP `chardev-add` + `device_add
//! vhost-user-fs-pci`, then the agent mounts the tag, retrying while the guest probes the new
//! PCI device). The daemon runs in its own process group, dies with the harness like QEMU
//! ([`super::reaper`]) and exits by itself when QEMU closes the socket.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{reaper, VmError};
use crate::tools;

/// Overrides where `virtiofsd` is found.
pub const VIRTIOFSD_ENV: &str = "KLP_CONFORM_VIRTIOFSD";
/// Where `scripts/setup-debian.sh` installs it (bookworm has no `virtiofsd` package).
pub const SETUP_INSTALL: &str = "/opt/klp-conform/virtiofsd/bin/virtiofsd";
/// Debian 13 and later: the `virtiofsd` package.
pub const DEBIAN_PATH: &str = "/usr/libexec/virtiofsd";
/// QEMU's old C daemon (bookworm's `qemu-system-common`): not used, it is unmaintained and
/// its fallback costs seconds per mount.
const OLD_C_DAEMON: &str = "/usr/lib/qemu/virtiofsd";

/// One host directory to share, under a tag the guest mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The virtiofs tag (letters, digits, `-`, `_`; at most 36 bytes).
    pub tag: String,
    pub host_dir: PathBuf,
    /// Where the agent mounts it in the guest.
    pub guest_dir: String,
    pub readonly: bool,
}

impl Share {
    pub fn new(tag: &str, host_dir: &Path, guest_dir: &str, readonly: bool) -> Self {
        Self { tag: tag.into(), host_dir: host_dir.to_path_buf(), guest_dir: guest_dir.into(), readonly }
    }

    fn check(&self) -> Result<(), VmError> {
        let ok = !self.tag.is_empty()
            && self.tag.len() <= 36
            && self.tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(VmError::Config(format!(
                "virtiofs tag {:?}: 1–36 letters, digits, `-` or `_` (it travels in QEMU options)",
                self.tag
            )));
        }
        if !self.host_dir.is_dir() {
            return Err(VmError::Config(format!("share {}: {} is not a directory", self.tag, self.host_dir.display())));
        }
        Ok(())
    }
}

/// What adding one share cost, host time.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShareTiming {
    /// Spawning virtiofsd until its socket is there.
    pub daemon_s: f64,
    /// QMP `chardev-add` + `device_add`.
    pub hotadd_s: f64,
    /// The agent's mount, including waiting for the guest to probe the device.
    pub mount_s: f64,
}

impl ShareTiming {
    pub fn total_s(&self) -> f64 {
        self.daemon_s + self.hotadd_s + self.mount_s
    }
}

/// The virtiofsd binary: `$KLP_CONFORM_VIRTIOFSD`, Debian's package path, setup-debian.sh's
/// install, or `virtiofsd` on PATH. QEMU's old C daemon is refused.
pub fn find_virtiofsd() -> Result<PathBuf, VmError> {
    if let Some(p) = std::env::var_os(VIRTIOFSD_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(VmError::Config(format!("{VIRTIOFSD_ENV}={} is not a file", p.display())))
        };
    }
    let candidates = [PathBuf::from(DEBIAN_PATH), PathBuf::from(SETUP_INSTALL)];
    if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(p);
    }
    if let Some(p) = tools::find_tool("virtiofsd").filter(|p| p != Path::new(OLD_C_DAEMON)) {
        return Ok(p);
    }
    Err(VmError::Config(format!(
        "sharing host directories needs the Rust virtiofsd, and none was found ({DEBIAN_PATH}, {SETUP_INSTALL}, \
         PATH, ${VIRTIOFSD_ENV}): run scripts/setup-debian.sh, which builds it with `cargo install --locked \
         virtiofsd --root /opt/klp-conform/virtiofsd` (needs the Debian packages libseccomp-dev and \
         libcap-ng-dev; Debian 12 has no virtiofsd package, Debian 13 has `virtiofsd`); {OLD_C_DAEMON} (QEMU's \
         old C daemon) is not used"
    )))
}

/// The daemon's command line for one share.
pub fn virtiofsd_args(share: &Share, socket: &Path, sandbox: &str) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "--socket-path".into(),
        socket.into(),
        "--shared-dir".into(),
        share.host_dir.clone().into(),
        // Namespace sandbox as root (the default; the daemon pivots into the shared dir);
        // `none` otherwise, where user namespaces may not be usable.
        format!("--sandbox={sandbox}").into(),
        // Read-only shares may be cached by the guest; a writable one (results) is read back
        // by the host at once, so nothing is cached.
        format!("--cache={}", if share.readonly { "auto" } else { "never" }).into(),
        "--log-level=warn".into(),
    ];
    if share.readonly {
        v.push("--readonly".into());
    }
    v
}

/// A running virtiofsd. Dropping it kills its process group.
pub struct Virtiofsd {
    child: Child,
    pgid: i32,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Virtiofsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Virtiofsd").field("pid", &self.pgid).field("socket", &self.socket).finish()
    }
}

impl Virtiofsd {
    /// Start the daemon for `share`, its log in `log`, and wait (≤ 10 s) for its socket.
    /// Like QEMU, start it on the thread that owns the VM (PDEATHSIG, see [`reaper`]).
    pub fn start(share: &Share, log: &Path) -> Result<Self, VmError> {
        share.check()?;
        let bin = find_virtiofsd()?;
        let dir = tempfile::Builder::new()
            .prefix("klp-vfs-")
            .tempdir_in("/tmp")
            .map_err(|e| VmError::io("creating the virtiofsd socket directory", e))?;
        let socket = dir.path().join("sock");
        // SAFETY: geteuid has no preconditions.
        let sandbox = if unsafe { libc::geteuid() } == 0 { "namespace" } else { "none" };
        let logf = std::fs::File::create(log).map_err(|e| VmError::io(format!("creating {}", log.display()), e))?;
        let logf2 = logf.try_clone().map_err(|e| VmError::io("dup of the virtiofsd log", e))?;
        let mut cmd = Command::new(&bin);
        cmd.args(virtiofsd_args(share, &socket, sandbox))
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .process_group(0);
        let parent = std::process::id() as i32;
        // SAFETY: the hook only makes async-signal-safe calls (see die_with_parent).
        unsafe { cmd.pre_exec(move || reaper::die_with_parent(parent)) };
        let child = cmd
            .spawn()
            .map_err(|source| VmError::from(tools::ToolError::Spawn { command: tools::describe(&cmd), source }))?;
        let pgid = child.id() as i32;
        reaper::register(pgid);
        let mut d = Self { child, pgid, socket, _dir: dir };
        let end = Instant::now() + Duration::from_secs(10);
        while !d.socket.exists() {
            if let Ok(Some(st)) = d.child.try_wait() {
                reaper::unregister(d.pgid);
                let said = std::fs::read_to_string(log).map(|t| tools::tail(&t, 15)).unwrap_or_default();
                return Err(VmError::Config(format!(
                    "virtiofsd for share {} ({}) exited at start ({st}); it said:\n{said}",
                    share.tag,
                    share.host_dir.display()
                )));
            }
            if Instant::now() >= end {
                return Err(VmError::Config(format!(
                    "virtiofsd for share {} made no socket {} within 10 s",
                    share.tag,
                    d.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }

    /// Its pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the group is ours until reaped.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        reaper::unregister(self.pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_command_line() {
        let s = Share::new("modules", Path::new("/c/mods"), "/lib/modules", true);
        let a: Vec<String> = virtiofsd_args(&s, Path::new("/tmp/x/sock"), "namespace")
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(
            a.join(" "),
            "--socket-path /tmp/x/sock --shared-dir /c/mods --sandbox=namespace --cache=auto --log-level=warn --readonly"
        );
        let rw = Share::new("results", Path::new("/r"), "/r", false);
        let a: Vec<String> =
            virtiofsd_args(&rw, Path::new("/s"), "none").iter().map(|a| a.to_string_lossy().into()).collect();
        assert!(a.contains(&"--cache=never".to_string()) && !a.contains(&"--readonly".to_string()), "{a:?}");
    }

    #[test]
    fn tags_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Share::new("ok_tag-1", dir.path(), "/x", true).check().is_ok());
        for bad in ["", "a,b", "a b", &"x".repeat(37)] {
            assert!(Share::new(bad, dir.path(), "/x", true).check().is_err(), "{bad}");
        }
        assert!(Share::new("t", &dir.path().join("missing"), "/x", true).check().is_err());
    }
}
