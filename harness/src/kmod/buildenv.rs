//! Where kbuild and objtool run for a kernel: on the host, or in a toolchain root.
//!
//! Modules are built with the compiler and the kbuild the kernel was built with. The host is
//! used when it has that compiler (the first word of `CONFIG_CC_VERSION_TEXT`, which is also
//! what the headers' `.kernelvariables` set `CC` to) and can run the kernel's kbuild binaries
//! (fixdep, modpost, objtool, …: every glibc symbol version they need is at most the host's, and
//! the libraries they link are there). Otherwise a toolchain root of the kernel's Debian release
//! is used ([`super::toolroot`]). `KLP_CONFORM_TOOLCHAIN=host|root` forces one.
//!
//! The Rust object is always compiled on the host; bindgen reads the headers on the host too,
//! with kbuild's include paths mapped to where the root's files are.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::toolroot::{self, Root};
use super::KmodError;
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::tools::{find_tool, run_capture, ToolError};

/// `auto` (default), `host` or `root`.
pub const TOOLCHAIN_ENV: &str = "KLP_CONFORM_TOOLCHAIN";

/// The kbuild binaries an out-of-tree module build runs (relative to the headers dir; missing
/// ones are skipped). Debian ships modpost and objtool as wrappers next to `.real-*` binaries.
const KBUILD_BINARIES: &[&str] = &[
    "scripts/basic/fixdep",
    "scripts/mod/modpost",
    "scripts/genksyms/genksyms",
    "scripts/gendwarfksyms/gendwarfksyms",
    "tools/objtool/objtool",
    "tools/bpf/resolve_btfids/resolve_btfids",
];

#[derive(Debug, Clone)]
pub enum Place {
    Host,
    Root(Box<Root>),
}

/// The build environment chosen for one kernel.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub place: Place,
    /// The compiler as kbuild calls it (`gcc-12`, `x86_64-linux-gnu-gcc-16`).
    pub cc: String,
    /// The first line of `<cc> --version` where it runs.
    pub cc_version: String,
    /// Why this place was chosen (for the progress output).
    pub why: String,
    cache: PathBuf,
}

impl BuildEnv {
    /// `host gcc-12` / `root bullseye gcc-10`: what the progress output says built the C side.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Host => format!("host {}", self.cc),
            Place::Root(r) => format!("root {} ({}) {}", r.manifest.spec.release, r.name, self.cc),
        }
    }

    /// The identity of the toolchain in the module cache key.
    pub fn identity(&self) -> String {
        match &self.place {
            Place::Host => format!("host\n{}", self.cc_version),
            Place::Root(r) => format!("root {}\n{}", r.name, self.cc_version),
        }
    }

    /// A command running `program` (a name looked up on the environment's PATH, or an absolute
    /// path inside the cache) with `cwd` as working directory.
    pub fn command(&self, program: &str, cwd: &Path) -> Command {
        match &self.place {
            Place::Host => {
                let mut c = Command::new(program);
                c.current_dir(cwd);
                c
            }
            Place::Root(r) => r.command(&self.cache, cwd, program),
        }
    }

    /// Where a path kbuild printed (valid in the environment) is on the host: paths into the
    /// cache are the same everywhere; anything else (the compiler's own include dir) is inside
    /// the root.
    pub fn host_path(&self, p: &str) -> String {
        match &self.place {
            Place::Root(r) if p.starts_with('/') && !Path::new(p).starts_with(&self.cache) => {
                r.host_path(p).to_string_lossy().into_owned()
            }
            _ => p.to_string(),
        }
    }
}

/// The compiler named by `CONFIG_CC_VERSION_TEXT` (`gcc-12`, `x86_64-linux-gnu-gcc-12`).
pub fn kernel_cc(config: &crate::kernel::config::KConfig) -> Option<String> {
    let cc = config.get("CC_VERSION_TEXT")?.split_whitespace().next()?;
    (cc.contains("gcc") || cc.contains("clang")).then(|| cc.to_string())
}

/// The Debian package of a compiler binary (`x86_64-linux-gnu-gcc-12` → `gcc-12`).
pub fn cc_package(cc: &str) -> String {
    cc.strip_prefix("x86_64-linux-gnu-").unwrap_or(cc).to_string()
}

/// What an ELF executable needs from the system it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfNeeds {
    /// The highest `GLIBC_x.y` symbol version it references.
    pub glibc: Option<(u32, u32)>,
    /// `DT_NEEDED` libraries.
    pub libs: Vec<String>,
}

/// Read the glibc symbol versions and the needed libraries of a 64-bit ELF (the `object` crate
/// reads `.gnu.version_r` and `.dynamic`). Not an ELF (a shell wrapper): `None`.
pub fn elf_needs(data: &[u8]) -> Option<ElfNeeds> {
    use object::read::elf::{Dyn, FileHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let mut needs = ElfNeeds::default();
    if let Ok(Some((mut it, link))) = sections.gnu_verneed(endian, data) {
        let strings = sections.strings(endian, data, link).ok()?;
        while let Ok(Some((_, mut aux))) = it.next() {
            while let Ok(Some(a)) = aux.next() {
                let name = a.name(endian, strings).ok()?;
                let v = std::str::from_utf8(name).ok().and_then(|n| n.strip_prefix("GLIBC_")).and_then(parse_version);
                needs.glibc = needs.glibc.max(v);
            }
        }
    }
    if let Ok(Some((dyns, link))) = sections.dynamic(endian, data) {
        let strings = sections.strings(endian, data, link).ok()?;
        for d in dyns {
            if d.tag(endian) == object::elf::DT_NEEDED {
                if let Ok(lib) = d.string(endian, strings) {
                    needs.libs.push(String::from_utf8_lossy(lib).into_owned());
                }
            }
        }
    }
    Some(needs)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next().map_or(Some(0), |m| m.parse().ok())?))
}

/// The host's glibc version (`gnu_get_libc_version`).
pub fn host_glibc() -> Option<(u32, u32)> {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    parse_version(v.to_str().ok()?)
}

/// Directories the host's dynamic loader searches (Debian amd64).
const LIB_DIRS: &[&str] =
    &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// Why the host cannot run the kernel's kbuild binaries (empty: it can): one line per need,
/// naming the binaries that have it.
pub fn kbuild_problems(
    headers_dir: &Path,
    host_glibc: Option<(u32, u32)>,
    lib_exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    // need → binaries that have it, in a stable order.
    let mut needs: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for rel in KBUILD_BINARIES {
        let main = headers_dir.join(rel);
        // Debian's wrappers pick `<name>.real-<variant>`; check every such binary.
        let mut candidates = vec![main.clone()];
        if let (Some(dir), Some(base)) = (main.parent(), main.file_name()) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                let prefix = format!("{}.real-", base.to_string_lossy());
                candidates.extend(
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))),
                );
            }
        }
        candidates.sort();
        for bin in candidates {
            let Ok(data) = std::fs::read(&bin) else { continue };
            let Some(elf) = elf_needs(&data) else { continue };
            let name = bin.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if let (Some(need), Some(have)) = (elf.glibc, host_glibc) {
                if need > have {
                    needs
                        .entry(format!("glibc {}.{} (the host has {}.{})", need.0, need.1, have.0, have.1))
                        .or_default()
                        .push(name.clone());
                }
            }
            for lib in elf.libs.iter().filter(|l| !lib_exists(l)) {
                needs.entry(format!("{lib}, which the host does not have")).or_default().push(name.clone());
            }
        }
    }
    needs.into_iter().map(|(need, bins)| format!("its kbuild binaries ({}) need {need}", bins.join(", "))).collect()
}

fn host_lib_exists(lib: &str) -> bool {
    LIB_DIRS.iter().any(|d| Path::new(d).join(lib).exists())
}

fn cc_version(c: &mut Command) -> Result<String, KmodError> {
    let out =
        run_capture(c.arg("--version")).map_err(|e| KmodError::tool("asking the kernel's compiler its version", e))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

/// Where kbuild will run for a kernel, decided without making anything (cheap: the module
/// cache key includes [`Decision::identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The host, whose `cc --version` is `cc_version`.
    Host { cc: String, cc_version: String },
    /// A toolchain root of the kernel's Debian suite, because of `why`.
    Root { cc: String, suite: Option<String>, why: String },
}

impl Decision {
    pub fn identity(&self) -> String {
        match self {
            Self::Host { cc_version, .. } => format!("host\n{cc_version}"),
            Self::Root { cc, suite, .. } => format!("root\n{cc}\n{}", suite.as_deref().unwrap_or("-")),
        }
    }
}

/// Decide where kbuild runs for `kernel`.
pub fn decide(kernel: &Kernel, config: &crate::kernel::config::KConfig) -> Result<Decision, KmodError> {
    let cc = kernel_cc(config).ok_or_else(|| KmodError::Unsupported {
        release: kernel.release.clone(),
        why: format!(
            "CONFIG_CC_VERSION_TEXT ({}) names no gcc or clang",
            config.get("CC_VERSION_TEXT").unwrap_or("missing")
        ),
    })?;
    let force = std::env::var(TOOLCHAIN_ENV).unwrap_or_default();
    let mut problems = Vec::new();
    if find_tool(&cc).is_none() {
        problems.push(format!("the host has no {cc} (Debian package {})", cc_package(&cc)));
    }
    if find_tool("make").is_none() {
        problems.push("the host has no make".into());
    }
    problems.extend(kbuild_problems(&kernel.headers_dir, host_glibc(), host_lib_exists));
    let root = |why: String| Decision::Root { cc: cc.clone(), suite: kernel.debian_suite.clone(), why };
    match force.as_str() {
        "root" => Ok(root(format!("{TOOLCHAIN_ENV}=root"))),
        "host" | "" | "auto" if problems.is_empty() => {
            Ok(Decision::Host { cc_version: cc_version(&mut Command::new(&cc))?, cc })
        }
        "host" => Err(KmodError::Unsupported {
            release: kernel.release.clone(),
            why: format!("{TOOLCHAIN_ENV}=host, but {}", problems.join("; ")),
        }),
        "" | "auto" => Ok(root(problems.join("; "))),
        other => Err(KmodError::Source { detail: format!("{TOOLCHAIN_ENV}={other}: expected auto, host or root") }),
    }
}

/// The tools among a Debian kernel's build dependencies (what a toolchain root would get, minus
/// libraries, the compiler and make, which are checked otherwise) must be installed on a host
/// that builds for it: e.g. `pahole`, which kbuild runs for module BTF from 6.x when the headers
/// ship a vmlinux. A missing one is an error naming its package.
fn host_has_build_depends(kernel: &Kernel, cc: &str, cache: &Path, progress: &Progress) -> Result<(), KmodError> {
    if kernel.debian_suite.is_none() || find_tool("dpkg-query").is_none() {
        return Ok(());
    }
    let spec = toolroot::spec_for(kernel, cache, progress)?;
    for pkg in spec.packages.iter().filter(|p| !p.starts_with("lib") && !p.starts_with("linux-compiler-")) {
        if *pkg == cc_package(cc) || pkg == "make" {
            continue;
        }
        let status =
            run_capture(Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}", pkg])).unwrap_or_default();
        if status.trim() != "installed" {
            return Err(KmodError::Tool(ToolError::Missing {
                tool: pkg.clone(),
                package: pkg.clone(),
                why: format!(
                    "build modules for {} on this host (its packages depend on it; kbuild runs it)",
                    kernel.release
                ),
            }));
        }
    }
    Ok(())
}

/// The build environment of a decision, making its toolchain root if the cache has none yet.
pub fn materialize(
    decision: &Decision,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
) -> Result<BuildEnv, KmodError> {
    match decision {
        Decision::Host { cc, cc_version } => {
            host_has_build_depends(kernel, cc, cache, progress)?;
            Ok(BuildEnv {
                place: Place::Host,
                cc: cc.clone(),
                cc_version: cc_version.clone(),
                why: "the host has the kernel's compiler and runs its kbuild".into(),
                cache: cache.to_path_buf(),
            })
        }
        Decision::Root { cc, why, .. } => {
            progress.note(format!("kmod: kbuild for {} runs in a toolchain root: {why}", kernel.release));
            let spec = toolroot::spec_for(kernel, cache, progress)?;
            let root = toolroot::ensure(&spec, cache, progress)?;
            let mut env = BuildEnv {
                place: Place::Root(Box::new(root)),
                cc: cc.clone(),
                cc_version: String::new(),
                why: why.clone(),
                cache: cache.to_path_buf(),
            };
            env.cc_version = cc_version(&mut env.command(cc, Path::new("/"))).map_err(|e| match e {
                KmodError::Step { stderr, .. } => KmodError::Tool(ToolError::Missing {
                    tool: format!("{cc} in the toolchain root {} ({})", env.describe(), crate::tools::tail(&stderr, 3)),
                    package: cc_package(cc),
                    why: "compile the C part of the modules (the kernel's Depends should have brought it)".into(),
                }),
                e => e,
            })?;
            Ok(env)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::config::KConfig;

    #[test]
    fn the_compiler_comes_from_the_config() {
        let c = KConfig::parse("CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0\"\n");
        assert_eq!(kernel_cc(&c).as_deref(), Some("x86_64-linux-gnu-gcc-16"));
        assert_eq!(cc_package("x86_64-linux-gnu-gcc-16"), "gcc-16");
        let c = KConfig::parse("CONFIG_CC_VERSION_TEXT=\"gcc-10 (Debian 10.2.1-6) 10.2.1 20210110\"\n");
        assert_eq!(kernel_cc(&c).as_deref(), Some("gcc-10"));
        assert_eq!(kernel_cc(&KConfig::parse("")), None);
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(parse_version("2.38"), Some((2, 38)));
        assert_eq!(parse_version("2.2.5"), Some((2, 2)));
        assert!(Some((2, 38)) > Some((2, 36)) && Some((2, 4)) < Some((2, 36)));
        assert!(host_glibc().is_some_and(|v| v >= (2, 17)));
    }

    #[test]
    fn elf_needs_of_a_host_binary() {
        let data = std::fs::read("/bin/sh").unwrap();
        let needs = elf_needs(&data).expect("an ELF");
        assert!(needs.glibc.is_some_and(|v| v <= host_glibc().unwrap()), "{needs:?}");
        assert!(needs.libs.iter().any(|l| l.starts_with("libc.so")), "{needs:?}");
        assert_eq!(elf_needs(b"#!/bin/sh\nexec true\n"), None);
    }

    #[test]
    fn kbuild_problems_name_the_binary_and_the_need() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("scripts/mod");
        std::fs::create_dir_all(&mp).unwrap();
        std::fs::copy("/bin/sh", mp.join("modpost.real-lsb-64")).unwrap();
        std::fs::write(mp.join("modpost"), "#!/bin/sh\n").unwrap();
        assert!(kbuild_problems(dir.path(), host_glibc(), |_| true).is_empty());
        let p = kbuild_problems(dir.path(), Some((2, 0)), |l| !l.starts_with("libc.so"));
        assert!(p.iter().any(|l| l.starts_with("its kbuild binaries (modpost.real-lsb-64) need glibc 2.")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("need libc.so.6, which the host does not have")), "{p:?}");
    }
}
