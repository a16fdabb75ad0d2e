//! The Rust toolchain for kernel modules: a rustc together with the `library/` source of exactly
//! its version (to build `core` for the kernel-module target), and the cached `core` +
//! `compiler_builtins` built with it.
//!
//! The rustc first on PATH is not necessarily the right one: Debian's `rustc-web` installs rustc
//! 1.96 as /usr/bin/rustc with its sources in /usr/src/rustc-1.96.0/library, while a rustup
//! rustc 1.95 earlier on PATH cannot compile those sources. So the pair is detected, never
//! assumed: Debian's `/usr/src/rustc-<version>/library` for a rustc of that version, or the
//! `rust-src` component inside the rustc's own sysroot (rustup).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::KmodError;
use crate::progress::Progress;
use crate::tools::run_capture;

/// Set by a user to force a rustc (its library source is still detected).
pub const RUSTC_ENV: &str = "KLP_CONFORM_RUSTC";

/// A rustc and the library source of the same version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub rustc: PathBuf,
    /// `rustc -vV` verbatim: the identity of the compiler in cache keys.
    pub version_text: String,
    /// e.g. `1.96.0`.
    pub release: String,
    /// The `library/` directory (contains `core/src/lib.rs`).
    pub library: PathBuf,
}

impl Toolchain {
    /// A `Command` for this rustc with unstable features allowed (custom target, `-Z` flags).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.rustc);
        c.env("RUSTC_BOOTSTRAP", "1");
        c
    }
}

/// What is known about one rustc, before pairing it with a library source.
#[derive(Debug, Clone)]
pub struct RustcInfo {
    pub rustc: PathBuf,
    pub version_text: String,
    pub sysroot: PathBuf,
}

/// The `release:` line of `rustc -vV`.
pub fn parse_release(version_text: &str) -> Option<String> {
    version_text.lines().find_map(|l| l.strip_prefix("release: ")).map(|r| r.trim().to_string())
}

/// The library sources that belong to this rustc, best first: Debian's `rust-web-src`
/// (`/usr/src/rustc-<release>/library`), then the `rust-src` component of its sysroot.
pub fn library_candidates(info: &RustcInfo, usr_src: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(release) = parse_release(&info.version_text) {
        v.push(usr_src.join(format!("rustc-{release}")).join("library"));
    }
    v.push(info.sysroot.join("lib/rustlib/src/rust/library"));
    v
}

/// The first (rustc, library) pair among `infos` whose library source exists (judged by
/// `has_core`, which is given `<library>/core/src/lib.rs`).
pub fn pick_pair(infos: &[RustcInfo], usr_src: &Path, has_core: impl Fn(&Path) -> bool) -> Option<Toolchain> {
    for info in infos {
        let Some(release) = parse_release(&info.version_text) else { continue };
        for lib in library_candidates(info, usr_src) {
            if has_core(&lib.join("core/src/lib.rs")) {
                return Some(Toolchain {
                    rustc: info.rustc.clone(),
                    version_text: info.version_text.clone(),
                    release,
                    library: lib,
                });
            }
        }
    }
    None
}

fn probe_rustc(rustc: &Path) -> Option<RustcInfo> {
    let version_text = run_capture(Command::new(rustc).arg("-vV")).ok()?;
    let sysroot = run_capture(Command::new(rustc).args(["--print", "sysroot"])).ok()?;
    Some(RustcInfo { rustc: rustc.to_path_buf(), version_text, sysroot: PathBuf::from(sysroot.trim()) })
}

/// Find a usable (rustc, library source) pair on this host.
pub fn detect() -> Result<Toolchain, KmodError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(RUSTC_ENV) {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("/usr/bin/rustc"));
    if let Some(p) = crate::tools::find_tool("rustc") {
        candidates.push(p);
    }
    candidates.dedup();
    let infos: Vec<RustcInfo> = candidates.iter().filter(|p| p.is_file()).filter_map(|p| probe_rustc(p)).collect();
    pick_pair(&infos, Path::new("/usr/src"), |p| p.is_file()).ok_or_else(|| {
        let seen: Vec<String> = infos
            .iter()
            .map(|i| format!("{} ({})", i.rustc.display(), parse_release(&i.version_text).unwrap_or_default()))
            .collect();
        KmodError::NoRustToolchain { found: if seen.is_empty() { "no rustc".to_string() } else { seen.join(", ") } }
    })
}

/// The file name of the generated target JSON (rustc names the target after it).
pub const TARGET_FILE: &str = "x86_64-linux-kernel-module.json";

/// The cached `core` and `compiler_builtins` for one (rustc, target, flags) triple.
#[derive(Debug, Clone)]
pub struct Sysroot {
    /// Holds `libcore.rlib` and `libcompiler_builtins.rlib`; pass it with `-L`.
    pub dir: PathBuf,
    /// The target JSON they were built for (in `dir`): every crate linked with them uses it.
    pub target_json: PathBuf,
}

/// Build (or reuse) `core` and a stub `compiler_builtins` for the target `target_json` (its
/// text) with `flags` (every rustc flag that changes code generation: they are all in the
/// key), cached under `<cache>/rust-core/<release>-<hash>/`.
pub fn core_for(
    tc: &Toolchain,
    target_json: &str,
    flags: &[String],
    builtins_src: &Path,
    cache: &Path,
    progress: &Progress,
) -> Result<Sysroot, KmodError> {
    let builtins =
        std::fs::read(builtins_src).map_err(|e| KmodError::io(format!("reading {}", builtins_src.display()), e))?;
    let mut parts: Vec<&[u8]> =
        vec![tc.version_text.as_bytes(), tc.library.as_os_str().as_encoded_bytes(), target_json.as_bytes(), &builtins];
    parts.extend(flags.iter().map(|f| f.as_bytes()));
    let key = super::hash_parts(&parts);
    let root = cache.join("rust-core");
    let name = format!("{}-{}", tc.release, &key[..16]);
    let dir = root.join(&name);
    let sysroot = |dir: &Path| Sysroot { dir: dir.to_path_buf(), target_json: dir.join(TARGET_FILE) };
    let complete =
        |dir: &Path| ["libcore.rlib", "libcompiler_builtins.rlib", TARGET_FILE].iter().all(|f| dir.join(f).is_file());
    let entry = crate::cache::rust_core(&dir);
    let made_from = || {
        serde_json::json!({
            "rustc": tc.version_text.lines().next().unwrap_or_default(),
            "library": tc.library,
            "key": key,
            "flags": flags,
        })
    };
    // Entries appear by rename, complete and recorded: no lock needed to use a good one.
    if matches!(entry.check(), crate::cache::Check::Ok(_)) {
        return Ok(sysroot(&dir));
    }
    std::fs::create_dir_all(&root).map_err(|e| KmodError::io(format!("creating {}", root.display()), e))?;
    // Building one is serialised: a second run waits, then finds the first one's build.
    let lock_path = root.join(format!("{name}.lock"));
    let _lock = crate::fsutil::FileLock::acquire(&lock_path)
        .map_err(|e| KmodError::io(format!("locking {}", lock_path.display()), e))?;
    if entry.verify_or_adopt(progress, || complete(&dir), made_from) {
        return Ok(sysroot(&dir));
    }
    super::sweep_stale_scratch(&root);
    let scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&root)
        .map_err(|e| KmodError::io(format!("creating a scratch dir in {}", root.display()), e))?;
    let target_path = scratch.path().join(TARGET_FILE);
    std::fs::write(&target_path, target_json)
        .map_err(|e| KmodError::io(format!("writing {}", target_path.display()), e))?;
    let started = std::time::Instant::now();
    progress.note(format!(
        "kmod: building core {} for this kernel's code generation (once per toolchain and flags, ~20 s)",
        tc.release
    ));
    let mut c = tc.command();
    c.args(["-Zunstable-options", "--edition", "2024", "--crate-type", "rlib", "--crate-name", "core"])
        .args(["--cfg", "no_fp_fmt_parse", "--cap-lints", "allow", "--target"])
        .arg(&target_path)
        .args(flags)
        .arg("--out-dir")
        .arg(scratch.path())
        .arg(tc.library.join("core/src/lib.rs"));
    run_capture(&mut c).map_err(|e| KmodError::tool("building core", e))?;
    let mut c = tc.command();
    c.args(["-Zunstable-options", "--edition", "2024", "--crate-type", "rlib", "--crate-name", "compiler_builtins"])
        .arg("--target")
        .arg(&target_path)
        .args(flags)
        .arg("-L")
        .arg(scratch.path())
        .arg("--out-dir")
        .arg(scratch.path())
        .arg(builtins_src);
    run_capture(&mut c).map_err(|e| KmodError::tool("building the compiler_builtins stub", e))?;
    // Under the lock, a dir still here is an incomplete one: replace it, or the rename would
    // fail on it forever.
    if dir.exists() {
        progress.note(format!("kmod: replacing the incomplete core build {}", dir.display()));
        std::fs::remove_dir_all(&dir)
            .map_err(|e| KmodError::io(format!("removing the incomplete core build {}", dir.display()), e))?;
    }
    entry
        .record_in(scratch.path(), made_from())
        .map_err(|e| KmodError::io(format!("recording the core build in {}", scratch.path().display()), e))?;
    let built = scratch.keep();
    if let Err(e) = std::fs::rename(&built, &dir) {
        let _ = std::fs::remove_dir_all(&built);
        return Err(KmodError::io(format!("renaming the core build into {}", dir.display()), e));
    }
    progress.note(format!("kmod: core built in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(sysroot(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(rustc: &str, release: &str, sysroot: &str) -> RustcInfo {
        RustcInfo {
            rustc: rustc.into(),
            version_text: format!(
                "rustc {release} (abc 2026-01-01)\nbinary: rustc\nrelease: {release}\nLLVM version: 22.1.8\n"
            ),
            sysroot: sysroot.into(),
        }
    }

    #[test]
    fn release_is_parsed() {
        assert_eq!(parse_release(&info("r", "1.96.0", "/s").version_text).as_deref(), Some("1.96.0"));
        assert_eq!(parse_release("rustc 1.0"), None);
    }

    #[test]
    fn debian_pair_is_found_and_mismatched_rustup_skipped() {
        let infos = [
            info("/root/.cargo/bin/rustc", "1.95.0", "/root/.rustup/toolchains/stable"),
            info("/usr/bin/rustc", "1.96.0", "/usr"),
        ];
        // Only Debian's 1.96 source is installed: the 1.95 rustup rustc must not be paired with it.
        let tc = pick_pair(&infos, Path::new("/usr/src"), |p| {
            p == Path::new("/usr/src/rustc-1.96.0/library/core/src/lib.rs")
        })
        .unwrap();
        assert_eq!(tc.rustc, Path::new("/usr/bin/rustc"));
        assert_eq!(tc.library, Path::new("/usr/src/rustc-1.96.0/library"));
        assert_eq!(tc.release, "1.96.0");
    }

    #[test]
    fn rustup_rust_src_is_found() {
        let infos = [info("/root/.cargo/bin/rustc", "1.95.0", "/root/.rustup/toolchains/stable")];
        let tc = pick_pair(&infos, Path::new("/usr/src"), |p| {
            p == Path::new("/root/.rustup/toolchains/stable/lib/rustlib/src/rust/library/core/src/lib.rs")
        })
        .unwrap();
        assert_eq!(tc.library, Path::new("/root/.rustup/toolchains/stable/lib/rustlib/src/rust/library"));
    }

    #[test]
    fn no_pair_is_none() {
        let infos = [info("/usr/bin/rustc", "1.96.0", "/usr")];
        assert!(pick_pair(&infos, Path::new("/usr/src"), |_| false).is_none());
    }
}
