//! Out-of-tree C modules from the kernel's own source: Debian's `linux-source-<line>` package
//! of a kernel's exact version (fetched once into `<cache>/src-dl` with klp-conform's private
//! apt lists, as `tests/tree_e2e.rs` does), some of its files extracted, and built with that
//! kernel's kbuild (`make -C <headers> M=<dir> modules`) on the host.
//!
//! Small on purpose: it builds the kernel's sample and selftest livepatch modules for
//! `--module` tests. A second source-fetch/external-build path may exist on another branch
//! (virtiofs, the kernel's selftests); the two are meant to be unified into one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::kernel::{apt::AptRoot, Kernel};
use crate::progress::Progress;
use crate::tools::require_tool;

/// `6.1` of `6.1.192-3`: the line Debian names its source package after.
pub fn kernel_line(version: &str) -> Option<String> {
    let mut parts = version.split(['.', '-']);
    let (major, minor) = (parts.next()?, parts.next()?);
    (major.chars().all(|c| c.is_ascii_digit()) && minor.chars().all(|c| c.is_ascii_digit()) && !minor.is_empty())
        .then(|| format!("{major}.{minor}"))
}

/// Debian's `linux-source-<line>_<version>_all.deb` in `<cache>/src-dl`, downloaded (under a
/// lock, so concurrent tests fetch it once) when it is not there yet.
pub fn linux_source_deb(cache: &Path, suite: &str, version: &str, progress: &Progress) -> Result<PathBuf, String> {
    let line = kernel_line(version).ok_or_else(|| format!("cannot tell the kernel line of version {version}"))?;
    let dl = cache.join("src-dl");
    std::fs::create_dir_all(&dl).map_err(|e| format!("creating {}: {e}", dl.display()))?;
    let deb = dl.join(format!("linux-source-{line}_{version}_all.deb"));
    let lock = dl.join(format!("linux-source-{line}.lock"));
    let _lock = crate::fsutil::FileLock::acquire(&lock).map_err(|e| format!("locking {}: {e}", lock.display()))?;
    if deb.is_file() {
        return Ok(deb);
    }
    progress.note(format!("downloading linux-source-{line}={version} from Debian {suite} into {}", dl.display()));
    let apt = AptRoot::new(cache, suite).map_err(|e| e.to_string())?;
    apt.ensure(false, progress).map_err(|e| crate::runner::chain_error(&e))?;
    apt.download(&dl, &[format!("linux-source-{line}={version}")]).map_err(|e| crate::runner::chain_error(&e))?;
    if !deb.is_file() {
        return Err(format!("apt-get download reported success but {} is missing", deb.display()));
    }
    Ok(deb)
}

/// Extract `members` (paths in the source tree, e.g. `samples/livepatch/livepatch-sample.c`)
/// of the `linux-source` package `deb` into `dest` (flat: each by its file name). Returns the
/// extracted files.
pub fn extract_source_files(deb: &Path, members: &[&str], dest: &Path) -> Result<Vec<PathBuf>, String> {
    require_tool("dpkg-deb", "dpkg", "unpack Debian's linux-source package").map_err(|e| e.to_string())?;
    require_tool("tar", "tar", "unpack the kernel source tarball").map_err(|e| e.to_string())?;
    require_tool("xz", "xz-utils", "decompress the kernel source tarball").map_err(|e| e.to_string())?;
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let line = name
        .strip_prefix("linux-source-")
        .and_then(|r| r.split('_').next())
        .ok_or_else(|| format!("{}: not a linux-source-<line>_<version>_all.deb", deb.display()))?;
    let top = format!("linux-source-{line}");
    let scratch = tempfile::Builder::new()
        .prefix(".klp-src-")
        .tempdir_in(dest)
        .map_err(|e| format!("a scratch directory in {}: {e}", dest.display()))?;
    // dpkg-deb --fsys-tarfile | tar -xO <the source tarball> | tar -xJ <members>
    let mut fsys = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running dpkg-deb: {e}"))?;
    let mut inner = Command::new("tar")
        .args(["-xO", &format!("./usr/src/{top}.tar.xz")])
        .stdin(fsys.stdout.take().expect("piped"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running tar: {e}"))?;
    let out = Command::new("tar")
        .arg("-xJ")
        .arg("-C")
        .arg(scratch.path())
        .args(members.iter().map(|m| format!("{top}/{m}")))
        .stdin(inner.stdout.take().expect("piped"))
        .output()
        .map_err(|e| format!("running tar: {e}"))?;
    let _ = inner.wait();
    let _ = fsys.wait();
    if !out.status.success() {
        return Err(format!(
            "extracting {} from {}: {}",
            members.join(", "),
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut files = Vec::new();
    for m in members {
        let from = scratch.path().join(&top).join(m);
        let to = dest.join(Path::new(m).file_name().ok_or_else(|| format!("bad member {m}"))?);
        std::fs::rename(&from, &to).map_err(|e| format!("{} not extracted from {}: {e}", m, deb.display()))?;
        files.push(to);
    }
    Ok(files)
}

/// Build the C files `sources` (in `dir`) as one module each with `kernel`'s kbuild on the
/// host: a `Kbuild` with `obj-m`, then `make -C <headers> M=<dir> modules`. Returns the `.ko`
/// files in the order of `sources`.
pub fn build_external_modules(kernel: &Kernel, dir: &Path, sources: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    require_tool("make", "make", "build out-of-tree kernel modules").map_err(|e| e.to_string())?;
    let stems: Vec<String> = sources
        .iter()
        .map(|s| {
            s.file_stem()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| format!("{}: not a C file name", s.display()))
        })
        .collect::<Result<_, _>>()?;
    let kbuild = format!("obj-m += {}\n", stems.iter().map(|s| format!("{s}.o")).collect::<Vec<_>>().join(" "));
    std::fs::write(dir.join("Kbuild"), kbuild).map_err(|e| format!("writing {}/Kbuild: {e}", dir.display()))?;
    let out = Command::new("make")
        .arg("-C")
        .arg(&kernel.headers_dir)
        .arg(format!("M={}", dir.display()))
        .arg("modules")
        .output()
        .map_err(|e| format!("running make: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "make -C {} M={} modules failed:\n{}{}",
            kernel.headers_dir.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    stems
        .iter()
        .map(|s| {
            let ko = dir.join(format!("{s}.ko"));
            if ko.is_file() {
                Ok(ko)
            } else {
                Err(format!("kbuild reported success but {} is missing", ko.display()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_versions() {
        assert_eq!(kernel_line("6.1.192-3").as_deref(), Some("6.1"));
        assert_eq!(kernel_line("6.12.95-1~bpo12+1").as_deref(), Some("6.12"));
        assert_eq!(kernel_line("7.2.13-1").as_deref(), Some("7.2"));
        assert_eq!(kernel_line("x"), None);
    }
}
