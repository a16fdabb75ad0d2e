//! Toolchain roots: the compiler and the build dependencies of a Debian kernel, installed with
//! `mmdebstrap` into the cache, for kernels whose toolchain the host cannot run (5.10 wants
//! bullseye's gcc-10; 7.x wants sid's gcc-16 and a glibc newer than bookworm's).
//!
//! A root is made the way DKMS would build on that release: its package set is what the
//! kernel's own packages depend on (the Depends of `linux-headers-<abi>` and of the
//! `linux-headers-*-common`/`linux-kbuild-*` packages it names: the compiler package such as
//! `linux-compiler-gcc-10-x86` or `gcc-16-for-host`, libelf, libssl, pahole…), plus `make`
//! (which DKMS itself depends on), never a list kept per kernel version. The kernel's headers
//! and kbuild are not installed in it: they stay in the cache, which is bind-mounted into the
//! root at the same path, so every absolute path kbuild wrote stays valid.
//!
//! ```text
//! <cache>/toolchains/<suite>-<key>/root/            the root file system
//! <cache>/toolchains/<suite>-<key>/manifest.json    what it was made from (suite, sources,
//!                                                   packages, the kernel packages they came
//!                                                   from, mmdebstrap version, installed versions)
//! <cache>/toolchains/<suite>-<key>.lock             held while it is made
//! ```
//!
//! An entry is made in a scratch dir and renamed into place, so it is complete or absent; the key
//! hashes the sources and the package set, so a kernel needing other packages gets another root.
//! Commands run in a root through `unshare` (a private mount namespace, plus a user namespace
//! mapping the caller to root when not root) and `chroot`, with the cache, `/dev` and `/proc`
//! bind-mounted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::KmodError;
use crate::kernel::apt::{self, AptRoot};
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::tools::{require_tool, run_capture};

/// Bump when roots are made differently from the same inputs.
const ROOT_VERSION: &str = "toolroot-1";
const MANIFEST: &str = "manifest.json";

/// What DKMS adds to a kernel's own build dependencies (`dkms`: `Depends: … make | build-essential`).
const DKMS_EXTRA: &[&str] = &["make"];

/// The part of a root's identity that says what goes into it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootSpec {
    /// The Debian release whose essential set the root gets (`bullseye`, `bookworm`, `sid`).
    pub release: String,
    /// `deb …` lines: the release (with its updates and security suites) and the kernel's own
    /// suite if that is another one (`bookworm-backports`).
    pub sources: Vec<String>,
    /// Packages installed on top of the `apt` variant, sorted.
    pub packages: Vec<String>,
    /// `package=version` of the kernel packages whose Depends gave `packages`.
    pub from: Vec<String>,
}

impl RootSpec {
    fn key(&self) -> String {
        let mut parts: Vec<&[u8]> = vec![ROOT_VERSION.as_bytes(), self.release.as_bytes()];
        parts.extend(self.sources.iter().map(|s| s.as_bytes()));
        parts.push(b"--");
        parts.extend(self.packages.iter().map(|s| s.as_bytes()));
        super::hash_parts(&parts)
    }

    /// `<release>-<key>`: the entry's name under `<cache>/toolchains/`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.release, &self.key()[..16])
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RootManifest {
    pub schema: String,
    pub spec: RootSpec,
    /// `mmdebstrap --version`.
    pub mmdebstrap: String,
    /// `dpkg-query -W` inside the root, for the packages asked for: what was really installed.
    pub installed: BTreeMap<String, String>,
    /// The cache path the root bind-mounts (its mount point exists in the root).
    pub cache: PathBuf,
    /// Seconds since the epoch.
    pub created: u64,
    /// Seconds mmdebstrap took.
    pub build_s: f64,
}

/// A usable toolchain root.
#[derive(Debug, Clone)]
pub struct Root {
    /// `<cache>/toolchains/<name>`.
    pub entry: PathBuf,
    pub name: String,
    pub manifest: RootManifest,
}

impl Root {
    /// The root file system.
    pub fn fs(&self) -> PathBuf {
        self.entry.join("root")
    }

    /// Where a file of the root (`/usr/lib/gcc/…`) is on the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.fs().join(inside.trim_start_matches('/'))
    }

    /// `program args…` (set with `.arg()` on the result) run inside the root with `cwd` as its
    /// working directory, the cache bind-mounted at its own path, and a clean environment.
    pub fn command(&self, cache: &Path, cwd: &Path, program: &str) -> Command {
        // Runs as root in a private mount namespace, so the mounts vanish with the process.
        const SCRIPT: &str = r#"set -e
r=$1 c=$2 d=$3; shift 3
mkdir -p "$r$c" 2>/dev/null || true
mount --rbind "$c" "$r$c"
mount --rbind /dev "$r/dev"
mount --rbind /proc "$r/proc" 2>/dev/null || true
exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LC_ALL=C.UTF-8 /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$d" "$@""#;
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--fork"]);
        if !is_root() {
            c.arg("--map-root-user");
        }
        c.args(["--", "/bin/sh", "-c", SCRIPT, "sh"]).arg(self.fs()).arg(cache).arg(cwd).arg(program);
        c
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The names in a Depends field, taking the first alternative that `keep` accepts, without
/// versions and architecture qualifiers.
pub fn depends_names(depends: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|group| {
            group
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n))
                .find(|n| keep(n))
                .map(str::to_string)
        })
        .collect()
}

/// Packages of the kernel itself (their files are in the cache already): followed for their
/// Depends, never installed into a root. `linux-compiler-*` is the kernel's compiler and stays.
fn is_kernel_package(name: &str) -> bool {
    ["linux-headers-", "linux-kbuild-", "linux-image-", "linux-base", "linux-modules-", "linux-binary-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// A root being made: removed on failure, but never across a mount point (see
/// [`super::remove_tree`]).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = super::remove_tree(&self.0);
    }
}

/// The root `kernel` needs: its Depends, read from klp-conform's apt lists of its suite.
pub fn spec_for(kernel: &Kernel, cache: &Path, progress: &Progress) -> Result<RootSpec, KmodError> {
    let suite = kernel.debian_suite.clone().ok_or_else(|| KmodError::Unsupported {
        release: kernel.release.clone(),
        why: "its toolchain cannot run on this host and it is not a Debian package, so there is no release to \
              make a toolchain root of; install its compiler on the host"
            .into(),
    })?;
    let lists = AptRoot::new(cache, &suite)?;
    lists.ensure(false, progress)?;
    let show = |what: &str| lists.show(what);
    // The headers at the kernel's exact version, then every kernel package they name.
    let mut todo = vec![format!("linux-headers-{}", kernel.release)];
    let mut seen: Vec<String> = Vec::new();
    let mut from = Vec::new();
    let mut packages: Vec<String> = DKMS_EXTRA.iter().map(|s| s.to_string()).collect();
    while let Some(pkg) = todo.pop() {
        if seen.contains(&pkg) {
            continue;
        }
        seen.push(pkg.clone());
        let stanza = match show(&format!("{pkg}={}", kernel.version))? {
            Some(s) => s,
            None => show(&pkg)?.ok_or_else(|| KmodError::Kbuild {
                detail: format!("the {suite} package lists have no {pkg}, so the toolchain root cannot be derived"),
            })?,
        };
        from.push(format!("{pkg}={}", apt::field(&stanza, "Version").unwrap_or_default()));
        let depends = apt::field(&stanza, "Depends").unwrap_or_default();
        for name in depends_names(&depends, |n| !n.starts_with("linux-image-")) {
            if name.starts_with("linux-headers-") || name.starts_with("linux-kbuild-") {
                todo.push(name);
            } else if !is_kernel_package(&name) {
                packages.push(name);
            }
        }
    }
    packages.sort();
    packages.dedup();
    from.sort();
    let release = apt::base_release(&suite).to_string();
    let mirror = std::env::var(apt::MIRROR_ENV).unwrap_or_else(|_| "http://deb.debian.org".into());
    let mirror = mirror.trim_end_matches('/');
    let mut sources: Vec<String> =
        apt::sources_list(&release, mirror).lines().filter(|l| l.starts_with("deb ")).map(str::to_string).collect();
    if suite != release {
        sources.extend(apt::sources_list(&suite, mirror).lines().filter(|l| l.starts_with("deb ")).map(str::to_string));
    }
    Ok(RootSpec { release, sources, packages, from })
}

fn read_entry(entry: &Path) -> Option<Root> {
    let m: RootManifest = serde_json::from_str(&std::fs::read_to_string(entry.join(MANIFEST)).ok()?).ok()?;
    let name = entry.file_name()?.to_string_lossy().into_owned();
    (entry.join("root/usr/bin/env").is_file() && m.spec.name() == name).then(|| Root {
        entry: entry.to_path_buf(),
        name,
        manifest: m,
    })
}

/// The root of `spec`, made now if the cache does not have it yet.
pub fn ensure(spec: &RootSpec, cache: &Path, progress: &Progress) -> Result<Root, KmodError> {
    let dir = cache.join("toolchains");
    let name = spec.name();
    let entry = dir.join(&name);
    let cache_entry = crate::cache::toolchain_root(&entry);
    let made_from = || serde_json::to_value(spec).unwrap_or_default();
    // Entries appear by rename, complete and recorded: no lock needed to use a good one.
    if matches!(cache_entry.check(), crate::cache::Check::Ok(_)) {
        if let Some(root) = read_entry(&entry) {
            return Ok(root);
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| KmodError::io(format!("creating {}", dir.display()), e))?;
    let lock_path = dir.join(format!("{name}.lock"));
    let _lock = crate::fsutil::FileLock::acquire(&lock_path)
        .map_err(|e| KmodError::io(format!("locking {}", lock_path.display()), e))?;
    if cache_entry.verify_or_adopt(progress, || read_entry(&entry).is_some(), made_from) {
        if let Some(root) = read_entry(&entry) {
            return Ok(root);
        }
    }
    let mmdebstrap = require_tool("mmdebstrap", "mmdebstrap", "make a toolchain root of another Debian release")?;
    require_tool("unshare", "util-linux", "run the kernel's toolchain inside its root")?;
    if !Path::new(apt::KEYRING).is_file() {
        return Err(crate::tools::ToolError::Missing {
            tool: apt::KEYRING.into(),
            package: "debian-archive-keyring".into(),
            why: "verify the packages of a toolchain root".into(),
        }
        .into());
    }
    super::sweep_stale_scratch(&dir);
    let scratch = Scratch(
        tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&dir)
            .map_err(|e| KmodError::io(format!("creating a scratch dir in {}", dir.display()), e))?
            .keep(),
    );
    let fs = scratch.0.join("root");
    progress.note(format!(
        "kmod: making the toolchain root {name} ({}: {}) with mmdebstrap (once; ~1 min)",
        spec.release,
        spec.packages.join(" ")
    ));
    let started = std::time::Instant::now();
    let mut c = Command::new(&mmdebstrap);
    c.args(["--variant=apt", "--format=directory", "--quiet"])
        .arg(format!("--mode={}", if is_root() { "root" } else { "unshare" }))
        .arg(format!("--include={}", spec.packages.join(",")))
        .arg(format!("--keyring={}", apt::KEYRING))
        // The archive copy reachable here is not always fresh: sid's Release file has been seen
        // past its Valid-Until. apt-get with klp-conform's lists reads the host's apt
        // configuration (which allows that); mmdebstrap does not, and refuses such a suite.
        .arg("--aptopt=Acquire::Check-Valid-Until \"false\"")
        .arg("--aptopt=Acquire::Languages \"none\"")
        // Documentation is never read in a build root.
        .args(["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*"])
        .args(["--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*"])
        // The mount point of the cache, at the cache's own path.
        .arg(format!("--customize-hook=mkdir -p \"$1{}\"", cache.display()))
        .arg(&spec.release)
        .arg(&fs)
        .args(&spec.sources);
    run_capture(&mut c).map_err(|e| KmodError::tool(&format!("making the toolchain root {name} (mmdebstrap)"), e))?;
    let build_s = started.elapsed().as_secs_f64();
    let version = run_capture(Command::new(&mmdebstrap).arg("--version")).unwrap_or_default().trim().to_string();
    let partial = Root {
        entry: scratch.0.clone(),
        name: name.clone(),
        manifest: RootManifest {
            schema: "klp-conform.toolroot.v1".into(),
            spec: spec.clone(),
            mmdebstrap: version,
            installed: BTreeMap::new(),
            cache: cache.to_path_buf(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            build_s,
        },
    };
    let mut q = partial.command(cache, Path::new("/"), "dpkg-query");
    q.args(["-W", "-f", "${Package}\t${Version}\n"]).args(&spec.packages);
    let installed =
        run_capture(&mut q).map_err(|e| KmodError::tool("checking the packages of the new toolchain root", e))?;
    let mut manifest = partial.manifest;
    manifest.installed =
        installed.lines().filter_map(|l| l.split_once('\t')).map(|(p, v)| (p.to_string(), v.to_string())).collect();
    crate::fsutil::write_atomic(
        &scratch.0.join(MANIFEST),
        serde_json::to_string_pretty(&manifest).expect("manifest serialises").as_bytes(),
    )
    .map_err(|e| KmodError::io("writing the toolchain root's manifest", e))?;
    cache_entry
        .record_in(&scratch.0, made_from())
        .map_err(|e| KmodError::io(format!("recording the toolchain root in {}", scratch.0.display()), e))?;
    if entry.exists() {
        progress.note(format!("kmod: replacing the incomplete toolchain root {}", entry.display()));
        super::remove_tree(&entry)
            .map_err(|e| KmodError::io(format!("removing the incomplete toolchain root {}", entry.display()), e))?;
    }
    std::fs::rename(&scratch.0, &entry)
        .map_err(|e| KmodError::io(format!("renaming the toolchain root into {}", entry.display()), e))?;
    std::mem::forget(scratch);
    progress.note(format!("kmod: toolchain root {name} made in {build_s:.1} s → {}", entry.display()));
    read_entry(&entry).ok_or_else(|| KmodError::Kbuild {
        detail: format!("the toolchain root {} is unreadable after it was made", entry.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_take_the_first_kept_alternative_without_versions() {
        let d = "linux-base (>= 4.12~), linux-headers-6.12.95+deb12-common (= 6.12.95-1~bpo12+1), \
                 linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1) | linux-image-6.12.95+deb12-amd64-unsigned (= 6.12.95-1~bpo12+1), \
                 linux-kbuild-6.12.95+deb12, gcc-12, python3:any";
        assert_eq!(
            depends_names(d, |n| !n.starts_with("linux-image-")),
            ["linux-base", "linux-headers-6.12.95+deb12-common", "linux-kbuild-6.12.95+deb12", "gcc-12", "python3"]
        );
        assert!(is_kernel_package("linux-base") && is_kernel_package("linux-kbuild-5.10"));
        assert!(!is_kernel_package("linux-compiler-gcc-10-x86"));
    }

    #[test]
    fn the_key_follows_sources_and_packages() {
        let a = RootSpec {
            release: "sid".into(),
            sources: vec!["deb x sid main".into()],
            packages: vec!["gcc-16-for-host".into(), "make".into()],
            from: vec![],
        };
        let mut b = a.clone();
        b.packages.push("pahole".into());
        assert_ne!(a.name(), b.name());
        assert!(a.name().starts_with("sid-"));
        let mut c = a.clone();
        c.from = vec!["linux-headers-x=1".into()];
        assert_eq!(a.name(), c.name(), "the provenance does not change what is installed");
    }
}
