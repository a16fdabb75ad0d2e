//! The guest image: the static agent binary and the initramfs that carries it as `/init`.
//!
//! Layout of the initramfs (uncompressed newc: the guest would spend longer decompressing it
//! under TCG than the host spends copying it):
//!
//! ```text
//! /init                      the agent (PID 1)
//! /dev/console               5:1, so the kernel can hand init its stdio before devtmpfs exists
//! /dev /proc /sys /tmp       mount points
//! /lib/modules/klp/<m>.ko    the modules under test
//! /lib/modules/boot/NN-x.ko  kernel modules the guest itself needs (the channel's virtio
//!                            drivers, pvpanic) with their dependencies, loaded at start in
//!                            NN order; compressed ones are stored decompressed
//! ```
//!
//! What the guest is made of (machine, channel, command line, those modules) is declared in
//! `images/guest.yaml`: [`recipe`].

pub mod cpio;
mod modules;
pub mod recipe;
mod vmlinux;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::progress::Progress;
use crate::tools::{self, ToolError};

use cpio::CpioWriter;
pub use modules::{guest_modules, modinfo, module_name_of, read_module, ModuleIndex};
pub use recipe::{GuestRecipe, RecipeError};
pub use vmlinux::boot_image;

/// The guest paths are the agent's business too: they live in the shared protocol crate.
pub use klp_protocol::{GUEST_BOOT_MODULE_DIR, GUEST_MODULE_DIR};
/// The target the agent is built for (the guest is x86_64; glibc links statically).
pub const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the guest agent failed")]
    AgentBuild(#[source] ToolError),
    #[error("module file {path}: {why}")]
    BadModule { path: PathBuf, why: String },
    #[error(
        "kernel {release} has no module `{module}` in {} and does not build it in{}; the guest needs it: {why}",
        dir.display(),
        config.as_deref().map(|c| format!(" ({c} is neither m nor y)")).unwrap_or_default()
    )]
    MissingModule { release: String, module: String, config: Option<String>, why: String, dir: PathBuf },
}

impl ImageError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// Build the static agent (`cargo build -p klp-agent --release --target x86_64-unknown-linux-gnu`
/// with `+crt-static`) in its own target dir, `<workspace>/target/agent`, so that it never
/// waits on the lock of the cargo that runs the tests. Cargo's incrementality makes a repeat
/// call cheap (well under a second when nothing changed). Returns the binary's path.
pub fn agent_binary(workspace_root: &Path, progress: &Progress) -> Result<PathBuf, ImageError> {
    let target_dir = workspace_root.join("target").join("agent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .args(["-p", "klp-agent", "--release", "--target", AGENT_TARGET, "--target-dir"])
        .arg(&target_dir)
        // Only for this target's artefacts (with --target, build scripts are not affected);
        // the encoded form wins over RUSTFLAGS, so set it and drop what an outer cargo set.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS");
    progress.note("building the guest agent (static klp-agent)");
    tools::run_capture(&mut cmd).map_err(ImageError::AgentBuild)?;
    let bin = target_dir.join(AGENT_TARGET).join("release").join("klp-agent");
    if !bin.is_file() {
        return Err(ImageError::io(
            format!("cargo reported success but {} is missing", bin.display()),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    Ok(bin)
}

/// What goes into an initramfs besides the fixed skeleton.
#[derive(Debug, Clone)]
pub struct Initramfs {
    agent: PathBuf,
    modules: Vec<PathBuf>,
    boot_modules: Vec<PathBuf>,
}

impl Initramfs {
    pub fn new(agent: &Path) -> Self {
        Self { agent: agent.to_path_buf(), modules: Vec::new(), boot_modules: Vec::new() }
    }

    /// A module under test: it lands in `/lib/modules/klp/<file name>`.
    pub fn module(mut self, ko: &Path) -> Self {
        self.modules.push(ko.to_path_buf());
        self
    }

    pub fn modules(mut self, kos: &[PathBuf]) -> Self {
        self.modules.extend(kos.iter().cloned());
        self
    }

    /// A kernel module the agent loads before it serves (in the order given, which must put
    /// dependencies first); `.ko.xz`, `.ko.zst` and `.ko.gz` are stored decompressed.
    pub fn boot_modules(mut self, kos: &[PathBuf]) -> Self {
        self.boot_modules.extend(kos.iter().cloned());
        self
    }

    /// The archive's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        let agent = std::fs::read(&self.agent)
            .map_err(|e| ImageError::io(format!("reading the agent binary {}", self.agent.display()), e))?;
        let mut w = CpioWriter::new(Vec::with_capacity(agent.len() + (1 << 20)));
        let io = |e| ImageError::io("writing the initramfs", e);
        for d in ["dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
            w.dir(d, if d == "tmp" { 0o1777 } else { 0o755 }).map_err(io)?;
        }
        w.char_dev("dev/console", 0o600, 5, 1).map_err(io)?;
        w.file("init", 0o755, &agent).map_err(io)?;

        w.dir(&GUEST_MODULE_DIR[1..], 0o755).map_err(io)?;
        let mut seen = std::collections::BTreeSet::new();
        for ko in &self.modules {
            let name = ko_name(ko)?;
            if !seen.insert(name.clone()) {
                return Err(ImageError::BadModule { path: ko.clone(), why: format!("a second module named {name}") });
            }
            let data = read_ko(ko)?;
            w.file(&format!("{}/{name}", &GUEST_MODULE_DIR[1..]), 0o644, &data).map_err(io)?;
        }
        w.dir(&GUEST_BOOT_MODULE_DIR[1..], 0o755).map_err(io)?;
        for (i, ko) in self.boot_modules.iter().enumerate() {
            let name = ko_name(ko)?;
            let data = read_module(ko)?;
            // The numeric prefix is the load order (dependencies first).
            w.file(&format!("{}/{i:02}-{name}", &GUEST_BOOT_MODULE_DIR[1..]), 0o644, &data).map_err(io)?;
        }
        w.finish().map_err(io)
    }

    /// Write the archive to `out` atomically (a reader never sees half an image).
    pub fn write(&self, out: &Path) -> Result<(), ImageError> {
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomic(out, &bytes).map_err(|e| ImageError::io(format!("writing {}", out.display()), e))
    }
}

/// An initramfs with the agent as `/init` and `modules` under `/lib/modules/klp/`.
pub fn build_initramfs(agent: &Path, modules: &[PathBuf], out: &Path) -> Result<(), ImageError> {
    Initramfs::new(agent).modules(modules).write(out)
}

/// The guest path of the module under test named `module` (what suites `load`).
pub fn guest_module_path(module: &str) -> String {
    format!("{GUEST_MODULE_DIR}/{module}.ko")
}

/// `<name>.ko` for a module file `<name>.ko` (or `.ko.xz`, `.ko.zst`, `.ko.gz`: the image
/// stores it decompressed).
fn ko_name(ko: &Path) -> Result<String, ImageError> {
    let name = ko.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or("");
    if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ImageError::BadModule {
            path: ko.to_path_buf(),
            why: "expected a file named <name>.ko (letters, digits, `_`, `-`; or .ko.xz, .ko.zst, .ko.gz)".into(),
        });
    }
    Ok(format!("{stem}.ko"))
}

fn read_ko(ko: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(ko).map_err(|e| ImageError::io(format!("reading {}", ko.display()), e))?;
    if !data.starts_with(b"\x7fELF") {
        return Err(ImageError::BadModule { path: ko.to_path_buf(), why: "not an ELF file".into() });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"\x7fELFagent").unwrap();
        let ko = dir.path().join("klp_a.ko");
        std::fs::write(&ko, b"\x7fELFmod").unwrap();
        let boot = dir.path().join("pvpanic.ko");
        std::fs::write(&boot, b"\x7fELFpv").unwrap();
        let out = dir.path().join("initramfs.cpio");
        Initramfs::new(&agent).module(&ko).boot_modules(&[boot]).write(&out).unwrap();
        let entries = cpio::parse(&std::fs::read(&out).unwrap()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "proc",
                "sys",
                "tmp",
                "lib",
                "lib/modules",
                "dev/console",
                "init",
                "lib/modules/klp",
                "lib/modules/klp/klp_a.ko",
                "lib/modules/boot",
                "lib/modules/boot/00-pvpanic.ko"
            ]
        );
        let init = entries.iter().find(|e| e.name == "init").unwrap();
        assert_eq!(init.mode, cpio::S_IFREG | 0o755);
        assert_eq!(init.data, b"\x7fELFagent");
        assert_eq!(guest_module_path("klp_a"), "/lib/modules/klp/klp_a.ko");
        assert!(entries.iter().any(|e| format!("/{}", e.name) == guest_module_path("klp_a")));
    }

    #[test]
    fn bad_modules_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"x").unwrap();
        let txt = dir.path().join("m.ko");
        std::fs::write(&txt, b"not elf").unwrap();
        let out = dir.path().join("i.cpio");
        assert!(matches!(build_initramfs(&agent, &[txt], &out), Err(ImageError::BadModule { .. })));
        assert!(!out.exists());
        let noext = dir.path().join("m.o");
        assert!(matches!(build_initramfs(&agent, &[noext], &out), Err(ImageError::BadModule { .. })));
        let missing = dir.path().join("nope");
        assert!(matches!(build_initramfs(&missing, &[], &out), Err(ImageError::Io { .. })));
    }
}
