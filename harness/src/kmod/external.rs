//! C livepatch modules nobody here wrote, built as out-of-tree modules of a kernel: the kernel's
//! own samples and selftest modules, from its source as [`crate::kernel::source`] fetches it
//! (Debian's `linux-source-<line>` of the kernel's exact version), with the kernel's compiler
//! and kbuild where the reference modules are built too ([`super::buildenv`]: the host, or a
//! toolchain root of the kernel's Debian release), as `make -C <headers> M=<dir> modules`
//! ([`super::kbuild::make_command`], which `--suite upstream` builds the selftests' modules
//! with). `--module`'s tests use it; the harness takes a user's `.ko` as given.

use std::path::{Path, PathBuf};

use super::{buildenv, kbuild};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// Build each C file of `sources` (copied into `dir`) as one module of `kernel`; returns the
/// `.ko` files in the order of `sources` and what built them (`host gcc-12`, `root …`). With a
/// toolchain root `dir` must be inside `cache` (the only host directory the root sees).
pub fn build_external_modules(
    kernel: &Kernel,
    cache: &Path,
    dir: &Path,
    sources: &[PathBuf],
    progress: &Progress,
) -> Result<(Vec<PathBuf>, String), String> {
    let chain = |e: &dyn std::error::Error| crate::runner::chain(e);
    let config = crate::kernel::config::KConfig::load(&kernel.config)
        .map_err(|e| format!("reading the config of kernel {}: {e}", kernel.release))?;
    let decision = buildenv::decide(kernel, &config).map_err(|e| chain(&e))?;
    let env = buildenv::materialize(&decision, kernel, cache, progress).map_err(|e| chain(&e))?;
    if matches!(env.place, buildenv::Place::Root(_)) && !dir.starts_with(cache) {
        return Err(format!(
            "kernel {}'s modules are built in a toolchain root, which sees only {}; build in a directory below it, not {}",
            kernel.release,
            cache.display(),
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for s in sources {
        let file = s.file_name().ok_or_else(|| format!("{}: not a file name", s.display()))?;
        let name = s
            .file_stem()
            .and_then(|n| n.to_str())
            .filter(|_| s.extension().is_some_and(|x| x == "c"))
            .ok_or_else(|| format!("{}: expected a C file, <name>.c", s.display()))?;
        if s.parent() != Some(dir) {
            std::fs::copy(s, dir.join(file)).map_err(|e| format!("copying {}: {e}", s.display()))?;
        }
        names.push(name.to_string());
    }
    let kbuild_file: String = names.iter().map(|n| format!("obj-m += {n}.o\n")).collect();
    std::fs::write(dir.join("Kbuild"), kbuild_file).map_err(|e| format!("writing {}/Kbuild: {e}", dir.display()))?;
    progress.note(format!("building {} for {} with {}", names.join(", "), kernel.release, env.describe()));
    let mut make = kbuild::make_command(&env, &kernel.headers_dir, dir);
    kbuild::run_output(&mut make).map_err(|e| format!("building {}: {}", names.join(", "), chain(&e)))?;
    let kos = names
        .iter()
        .map(|n| {
            let ko = dir.join(format!("{n}.ko"));
            if ko.is_file() {
                Ok(ko)
            } else {
                Err(format!("kbuild reported success but made no {}", ko.display()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((kos, env.describe()))
}
