//! Shared setup of the VM tests: the cached Debian kernel, the static agent, an initramfs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use klp_conform::image::{self, GuestRecipe};
use klp_conform::kernel::{self, Kernel};
use klp_conform::progress::Progress;
use klp_conform::vm::{Accel, VmConfig};

pub struct Fixture {
    pub kernel: Kernel,
    pub agent: PathBuf,
    pub initramfs: PathBuf,
    /// What to boot: the uncompressed vmlinux where possible (see `image::boot_image`).
    pub boot_image: PathBuf,
    /// The checkout's `images/guest.yaml`.
    pub recipe: GuestRecipe,
    pub dir: tempfile::TempDir,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `debian` kernel (fetched into the cache if needed), the agent built, an initramfs with
/// the guest's own modules (the channel's virtio drivers, pvpanic) in a fresh temporary
/// directory.
pub fn fixture() -> Fixture {
    let progress = Progress::new();
    let kernel =
        kernel::resolve(&kernel::default_spec(&workspace_root()).unwrap(), &kernel::default_cache_dir(), &progress)
            .unwrap();
    let agent = image::agent_binary(&workspace_root(), &progress).unwrap();
    let (boot_image, how) = image::boot_image(&kernel, &kernel::default_cache_dir(), &progress).unwrap();
    progress.note(format!("booting {}: {how}", boot_image.display()));
    let dir = tempfile::tempdir().unwrap();
    let recipe = GuestRecipe::from_workspace(&workspace_root()).unwrap();
    let initramfs = dir.path().join("initramfs.cpio");
    let boot_modules = image::guest_modules(&kernel, &recipe).unwrap();
    image::Initramfs::new(&agent).boot_modules(&boot_modules).write(&initramfs).unwrap();
    Fixture { kernel, agent, initramfs, boot_image, recipe, dir }
}

impl Fixture {
    /// An initramfs with the guest's own modules for `recipe` (e.g. a variant of the
    /// checkout's) and the given modules under test.
    pub fn initramfs_for(&self, recipe: &GuestRecipe, modules: &[PathBuf], name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let boot = image::guest_modules(&self.kernel, recipe).unwrap();
        image::Initramfs::new(&self.agent).modules(modules).boot_modules(&boot).write(&out).unwrap();
        out
    }

    pub fn config(&self, name: &str) -> VmConfig {
        let mut cfg = VmConfig::new(&self.boot_image, &self.initramfs, &self.dir.path().join(name), &self.recipe);
        cfg.accel = Accel::Tcg;
        cfg.boot_timeout = Duration::from_secs(90);
        cfg
    }
}

/// Whether a process exists (a reaped child's /proc entry is gone).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Children of this process whose command is QEMU.
pub fn qemu_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid …: comm may contain spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid: u32 = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me && head.contains("qemu-system") {
            out.push(pid);
        }
    }
    out
}
