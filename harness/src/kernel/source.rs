//! The source of a kernel under test, as far as its own livepatch selftests need it:
//! `lib/` (the test modules, `lib/livepatch/test_klp_*.c` up to 6.x) and
//! `tools/testing/selftests/livepatch/` (the scripts; `test_modules/` from 6.8 on); and
//! `samples/livepatch/`, the kernel's sample livepatch modules (`--module`'s tests).
//!
//! A Debian kernel's is Debian's `linux-source-<line>` package of the kernel's exact version,
//! downloaded with klp-conform's own apt lists into `<cache>/src-dl/` (where the tree test
//! keeps it too) and unpacked, only those directories ([`KEPT`]), into the verified cache entry
//! `<cache>/src/linux-source-<line>_<version>/tree/`. A local build tree is its own source.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::AptRoot;
use super::{Kernel, KernelError};
use crate::progress::Progress;
use crate::tools::{require_tool, run_capture};

/// The directories of the source tree that are kept (relative to its top): the selftests'
/// and the kernel's livepatch samples (which `--module`'s tests build as modules nobody here
/// wrote).
pub const KEPT: &[&str] = &["lib", "samples/livepatch", "tools/testing/selftests/livepatch"];
/// Where a kernel's livepatch selftests are in its tree.
pub const SELFTESTS: &str = "tools/testing/selftests/livepatch";

/// A kernel's source, the parts of it the selftests need.
#[derive(Debug, Clone)]
pub struct KernelSource {
    /// The top of the (partial) tree.
    pub tree: PathBuf,
    /// `linux-source-6.1 6.1.192-3`, or the local tree's path.
    pub origin: String,
}

impl KernelSource {
    pub fn selftests(&self) -> PathBuf {
        self.tree.join(SELFTESTS)
    }
}

/// The kernel line of a package version: `6.1.192-3` → `6.1`, `6.12.95-1~bpo12+1` → `6.12`.
pub fn kernel_line(version: &str) -> Option<String> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let (major, minor) = (parts.next()?, parts.next()?);
    (!major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
}

/// The cache entry of an unpacked source.
pub fn entry(dir: &Path) -> crate::cache::Entry {
    crate::cache::Entry::dir(dir, "kernel source")
}

/// The source of `kernel` if it is already there (a local tree, or a complete cache entry),
/// without fetching anything: for `--list`.
pub fn cached(kernel: &Kernel, cache: &Path) -> Option<KernelSource> {
    if kernel.debian_suite.is_none() {
        let tree = kernel.headers_dir.clone();
        return tree.join(SELFTESTS).is_dir().then(|| KernelSource { origin: tree.display().to_string(), tree });
    }
    let line = kernel_line(&kernel.version)?;
    let dir = cache.join("src").join(format!("linux-source-{line}_{}", kernel.version));
    dir.join(crate::cache::RECORD)
        .is_file()
        .then(|| KernelSource { tree: dir.join("tree"), origin: format!("linux-source-{line} {}", kernel.version) })
}

/// The source of `kernel`, fetched and unpacked into the cache if needed.
pub fn ensure(kernel: &Kernel, cache: &Path, progress: &Progress) -> Result<KernelSource, KernelError> {
    let Some(suite) = kernel.debian_suite.as_deref() else {
        // A local build tree: the selftests are in it.
        let tree = kernel.headers_dir.clone();
        if !tree.join(SELFTESTS).is_dir() {
            return Err(KernelError::IncompleteTree {
                tree,
                missing: format!("{SELFTESTS}/ (the livepatch selftests)"),
            });
        }
        return Ok(KernelSource { origin: tree.display().to_string(), tree });
    };
    let line = kernel_line(&kernel.version).ok_or_else(|| KernelError::NoPackage {
        what: format!("the source of {}", kernel.release),
        detail: format!("cannot tell the kernel line of version {}", kernel.version),
    })?;
    let package = format!("linux-source-{line}");
    let name = format!("{package}_{}", kernel.version);
    let root = cache.join("src");
    let dir = root.join(&name);
    let origin = format!("{package} {} ({suite})", kernel.version);
    let e = entry(&dir);
    let done = || KernelSource { tree: dir.join("tree"), origin: origin.clone() };
    // An entry unpacked when fewer directories were kept is made again.
    let complete = || e.verify_for_use(progress) && KEPT.iter().all(|k| dir.join("tree").join(k).is_dir());
    if complete() {
        return Ok(done());
    }
    std::fs::create_dir_all(&root).map_err(|e| KernelError::io(format!("creating {}", root.display()), e))?;
    let lock = root.join(format!("{name}.lock"));
    let _lock = crate::fsutil::FileLock::acquire(&lock)
        .map_err(|e| KernelError::io(format!("locking {}", lock.display()), e))?;
    if complete() {
        return Ok(done());
    }
    let _ = crate::kmod::remove_tree(&dir);

    let dl = cache.join("src-dl");
    std::fs::create_dir_all(&dl).map_err(|e| KernelError::io(format!("creating {}", dl.display()), e))?;
    let deb = dl.join(format!("{package}_{}_all.deb", kernel.version));
    if !deb.is_file() {
        progress.note(format!("kernel source: downloading {package} {} from {suite} (~140 MB)", kernel.version));
        let apt = AptRoot::new(cache, suite)?;
        apt.ensure(false, progress)?;
        apt.download(&dl, &[format!("{package}={}", kernel.version)])?;
        if !deb.is_file() {
            return Err(KernelError::NoPackage {
                what: format!("{package}={}", kernel.version),
                detail: format!("apt-get download left no {}", deb.display()),
            });
        }
    }
    progress.note(format!("kernel source: unpacking {} of {}", KEPT.join(", "), deb.display()));
    require_tool("dpkg-deb", "dpkg", "unpack Debian's linux-source package")?;
    require_tool("xz", "xz-utils", "unpack the kernel source tarball")?;
    let staging = root.join(format!(".{name}.partial"));
    let _ = crate::kmod::remove_tree(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| KernelError::io(format!("creating {}", staging.display()), e))?;
    // Only the two directories, straight out of the .deb's tarball (the whole tree is ~1.4 GB).
    let top = format!("linux-source-{line}");
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xOf - "./usr/src/$2.tar.xz" | tar -xJf - -C "$3" "${@:4}""#)
        .arg("bash")
        .arg(&deb)
        .arg(&top)
        .arg(&staging)
        .args(KEPT.iter().map(|k| format!("{top}/{k}")));
    run_capture(&mut cmd)?;
    std::fs::rename(staging.join(&top), staging.join("tree"))
        .map_err(|e| KernelError::io(format!("renaming the unpacked {top}"), e))?;
    if !staging.join("tree").join(SELFTESTS).is_dir() {
        return Err(KernelError::IncompleteTree {
            tree: deb.clone(),
            missing: format!("{SELFTESTS}/ (this kernel line has no livepatch selftests)"),
        });
    }
    e.record_in(
        &staging,
        serde_json::json!({"package": package, "version": kernel.version, "suite": suite, "kept": KEPT}),
    )
    .map_err(|err| KernelError::io(format!("recording {}", staging.display()), err))?;
    std::fs::rename(&staging, &dir).map_err(|e| KernelError::io(format!("renaming {}", staging.display()), e))?;
    Ok(done())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines() {
        assert_eq!(kernel_line("6.1.192-3").as_deref(), Some("6.1"));
        assert_eq!(kernel_line("6.12.95-1~bpo12+1").as_deref(), Some("6.12"));
        assert_eq!(kernel_line("5.10.262-1").as_deref(), Some("5.10"));
        assert_eq!(kernel_line("7.2.13-1").as_deref(), Some("7.2"));
        assert_eq!(kernel_line("x"), None);
    }
}
