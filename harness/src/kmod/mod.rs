//! Building the reference livepatch modules (`reference-kmod/`, Rust, `no_std`) out of tree for
//! a target kernel.
//!
//! ```text
//! .config ──▶ where kbuild runs (host, or a toolchain root of the kernel's release: buildenv)
//! probe module ──make──▶ .probe.o.cmd ──▶ gcc's flags, clang flags, objtool args
//! .config + gcc's flags ──▶ rustc flags, target features, traceable! contract (codegen)
//! rustc+library ──▶ core, compiler_builtins (cached per toolchain, target and flags)
//! kbuild/bindings.{h,allow} + klp_helpers.h ──bindgen(clang flags)──▶ bindings.rs ──▶ klp_layout.h (_Static_assert)
//! src/klp.rs (+ bindings.rs, kconfig.rs) ──rustc──▶ libklp.rlib
//! variants/<name>.rs ──rustc -Clto=fat --emit=obj──▶ <name>.obj (──objtool, unless kbuild runs it at link)──▶
//! kbuild/shim.c (+ klp_helpers.c) + Kbuild ──make M=──▶ <name>.ko   (vermagic, modversions from the kernel's kbuild)
//! ```
//!
//! Results are cached per (kernel release + headers identity, all reference-kmod sources,
//! rustc, where kbuild runs and its compiler, builder version) under
//! `<cache>/modules/<release>/<key>/`; a cache entry is built in a scratch dir and renamed into
//! place, so it is either complete or absent.

pub mod bindings;
pub mod buildenv;
pub mod codegen;
pub mod external;
pub mod kbuild;
pub mod layout_check;
pub mod toolchain;
pub mod toolroot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::tools::{run_capture, ToolError};

/// Bump when the builder changes what it produces for the same sources.
pub const BUILDER_VERSION: &str = "kmod-builder-3";

/// Set to keep the scratch build dir (probe, bindings, objects, kbuild output) for debugging.
pub const KEEP_BUILD_ENV: &str = "KLP_CONFORM_KEEP_BUILD";

/// The target JSON of the kernel-module target, relative to the reference-kmod dir.
pub const TARGET_JSON: &str = "x86_64-linux-kernel-module.json";

/// The modules built for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// `uname -r` of the kernel they load into.
    pub release: String,
    /// The cache entry holding them.
    pub dir: PathBuf,
    /// Module name (= sysfs patch name = variant file stem) → `.ko`.
    pub modules: BTreeMap<String, PathBuf>,
    /// Where kbuild and objtool ran (`host gcc-12`, `root bullseye (…) gcc-10`).
    pub toolchain: String,
    /// The code generation they were built with.
    pub codegen: codegen::Codegen,
    /// Warnings of objtool, modpost and the compiler during the build (none expected).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// Reading klp-conform's apt lists (for a toolchain root's package set).
    #[error(transparent)]
    Apt(#[from] crate::kernel::KernelError),
    /// `hint` says how to get them: a package to install, or a command to run in a tree.
    #[error("the headers of kernel {release} are missing ({dir} has no Makefile); {hint}")]
    MissingHeaders { release: String, dir: PathBuf, hint: String },
    #[error(
        "no rustc whose library source matches its version (found {found}); \
         apt-get install rustc-web rust-web-src, or rustup component add rust-src"
    )]
    NoRustToolchain { found: String },
    #[error("kernel {release} is not supported by the reference modules: {why}")]
    Unsupported { release: String, why: String },
    #[error("{step} failed: `{command}`:\n{stderr}")]
    Step { step: String, command: String, stderr: String },
    #[error("bindgen failed on the kernel headers:\n{detail}")]
    Bindgen { detail: String },
    #[error("kbuild: {detail}")]
    Kbuild { detail: String },
    #[error("reference-kmod sources: {detail}")]
    Source { detail: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl KmodError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    /// A failed tool run during `step`, with the tool's stderr tail.
    pub(crate) fn tool(step: &str, e: ToolError) -> Self {
        match e {
            e @ ToolError::Missing { .. } => Self::Tool(e),
            ToolError::Failed { command, status, stderr } => {
                Self::Step { step: step.into(), command: format!("{command} ({status})"), stderr }
            }
            ToolError::Spawn { command, source } => {
                Self::Io { what: format!("{step}: could not run `{command}`"), source }
            }
        }
    }
}

/// Hex SHA-256 of length-prefixed parts (so part boundaries matter).
pub(crate) fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One module variant: a crate root in `variants/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub path: PathBuf,
    /// The first `//!` line of the file (the module's MODULE_DESCRIPTION).
    pub description: String,
    /// Whether the module gets `MODULE_INFO(livepatch, "Y")` (directive `//@ livepatch-modinfo: no`
    /// turns it off: plain target modules, and the livepatch that must be refused for lacking it).
    pub livepatch_modinfo: bool,
    /// `variants/<name>.c`, if present: C glue compiled into the module's shim (module
    /// parameters, mostly).
    pub glue: Option<PathBuf>,
}

/// The `//@ key: value` directives of a variant file (before its first item). Known keys:
/// `livepatch-modinfo: yes|no`.
fn directives_of(text: &str, path: &Path) -> Result<bool, KmodError> {
    let mut livepatch_modinfo = true;
    for line in text.lines() {
        let Some(d) = line.strip_prefix("//@") else { continue };
        let bad = || KmodError::Source {
            detail: format!("{}: bad directive `{line}` (known: `//@ livepatch-modinfo: yes|no`)", path.display()),
        };
        let (k, v) = d.split_once(':').ok_or_else(bad)?;
        match (k.trim(), v.trim()) {
            ("livepatch-modinfo", "yes") => livepatch_modinfo = true,
            ("livepatch-modinfo", "no") => livepatch_modinfo = false,
            _ => return Err(bad()),
        }
    }
    Ok(livepatch_modinfo)
}

/// Every `variants/*.rs`, sorted by name.
pub fn variants(source_root: &Path) -> Result<Vec<Variant>, KmodError> {
    let dir = source_root.join("variants");
    let rd = std::fs::read_dir(&dir).map_err(|e| KmodError::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in rd {
        let path = entry.map_err(|e| KmodError::io(format!("listing {}", dir.display()), e))?.path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(KmodError::Source {
                detail: format!(
                    "{}: a variant's file stem is its module name and must match [a-z0-9_]+",
                    path.display()
                ),
            });
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| KmodError::io(format!("reading {}", path.display()), e))?;
        let livepatch_modinfo = directives_of(&text, &path)?;
        let glue = Some(path.with_extension("c")).filter(|g| g.is_file());
        out.push(Variant { description: description_of(&text, &name), name, path, livepatch_modinfo, glue });
    }
    if out.is_empty() {
        return Err(KmodError::Source { detail: format!("no variants in {}", dir.display()) });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn description_of(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("//!").map(str::trim).filter(|d| !d.is_empty()))
        .map(|d| d.replace('`', ""))
        .unwrap_or_else(|| format!("klp-conform reference livepatch {name}"))
}

/// Every file under `root`, as (relative path, contents), sorted: the identity of the sources.
fn source_tree(root: &Path) -> Result<Vec<(String, Vec<u8>)>, KmodError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), KmodError> {
        let rd = std::fs::read_dir(dir).map_err(|e| KmodError::io(format!("listing {}", dir.display()), e))?;
        for entry in rd {
            let entry = entry.map_err(|e| KmodError::io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| KmodError::io(format!("stat {}", path.display()), e))?;
            if ft.is_dir() {
                walk(root, &path, out)?;
            } else if ft.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                let data = std::fs::read(&path).map_err(|e| KmodError::io(format!("reading {}", path.display()), e))?;
                out.push((rel, data));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// The identity of a kernel's headers: the files an out-of-tree build depends on for vermagic,
/// config and symbol versions.
pub(crate) fn headers_identity(kernel: &Kernel) -> Vec<u8> {
    let mut id = kernel.release.as_bytes().to_vec();
    for rel in [
        "Module.symvers",
        "include/generated/autoconf.h",
        "include/generated/utsrelease.h",
        "include/config/kernel.release",
        "include/generated/compile.h",
    ] {
        id.extend_from_slice(rel.as_bytes());
        id.extend_from_slice(
            hash_parts(&[&std::fs::read(kernel.headers_dir.join(rel)).unwrap_or_default()]).as_bytes(),
        );
    }
    id
}

/// What the reference modules need of any kernel; everything else is derived from its config
/// ([`codegen::Codegen::derive`], [`buildenv::choose`]).
fn check_supported(kernel: &Kernel) -> Result<crate::kernel::config::KConfig, KmodError> {
    let unsupported = |why: String| Err(KmodError::Unsupported { release: kernel.release.clone(), why });
    if !kernel.config.is_file() {
        return unsupported(format!("its config {} is missing", kernel.config.display()));
    }
    let cfg = crate::kernel::config::KConfig::load(&kernel.config)
        .map_err(|e| KmodError::io(format!("reading {}", kernel.config.display()), e))?;
    if !cfg.on("X86_64") {
        return unsupported("only x86_64 kernels are supported".into());
    }
    if !cfg.on("LIVEPATCH") {
        return unsupported("CONFIG_LIVEPATCH is not set".into());
    }
    Ok(cfg)
}

/// Remove scratch dirs that a killed build left behind (older than an hour, so a concurrent
/// build's dir is never touched).
fn sweep_stale_scratch(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if e.file_name().to_string_lossy().starts_with(".build-") && age.is_some_and(|a| a.as_secs() > 3600) {
            let _ = remove_tree(&e.path());
        }
    }
}

/// The mount points at or below `dir` (from /proc/self/mountinfo; its octal escapes decoded).
pub(crate) fn mounts_below(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        PathBuf::from(String::from_utf8_lossy(&out).into_owned())
    };
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).filter(|m| m.starts_with(dir)).collect()
}

/// `remove_dir_all`, but never across a mount point: a toolchain root left with `/dev` or the
/// cache bind-mounted into it (a killed mmdebstrap) must not take the host's files with it.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mounts_below(dir, &mountinfo);
    if !mounts.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} has file systems mounted below it ({}); unmount them first",
            dir.display(),
            mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    std::fs::remove_dir_all(dir)
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    builder: String,
    release: String,
    rustc: String,
    /// Where kbuild and objtool ran: `host gcc-12`, `root bullseye (…) gcc-10`.
    toolchain: String,
    /// `<cc> --version` there.
    cc_version: String,
    codegen: codegen::Codegen,
    modules: BTreeMap<String, String>,
    clang_flags: Vec<String>,
    objtool: Option<(String, Vec<String>)>,
    /// Whether kbuild ran objtool on the linked modules (else the builder ran it on the Rust
    /// objects).
    objtool_at_link: bool,
    /// Warnings of objtool, modpost and the compiler (none expected).
    warnings: Vec<String>,
}

const MANIFEST: &str = "manifest.json";

fn read_entry(dir: &Path, release: &str) -> Option<ModuleSet> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let m: Manifest = serde_json::from_str(&text).ok()?;
    let modules: BTreeMap<String, PathBuf> = m.modules.iter().map(|(n, f)| (n.clone(), dir.join(f))).collect();
    if m.release != release || modules.is_empty() || !modules.values().all(|p| p.is_file()) {
        return None;
    }
    Some(ModuleSet {
        release: m.release,
        dir: dir.to_path_buf(),
        modules,
        toolchain: m.toolchain,
        codegen: m.codegen,
        warnings: m.warnings,
    })
}

/// Whether a file starts like an ELF object (a `.ko` a crash or a full disk left empty does not).
fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Build every reference module variant for `kernel`. `source_root` is the repo's
/// `reference-kmod/` dir; `cache` is the klp-conform cache dir.
pub fn build_all(
    kernel: &Kernel,
    source_root: &Path,
    cache: &Path,
    progress: &Progress,
) -> Result<ModuleSet, KmodError> {
    if !kernel.headers_dir.join("Makefile").is_file() {
        let hint = if kernel.spec.starts_with("debian") {
            format!("install linux-headers-{} (klp-conform fetches it for debian:<abi> kernels)", kernel.release)
        } else {
            format!("run `make modules_prepare` in {}", kernel.headers_dir.display())
        };
        return Err(KmodError::MissingHeaders {
            release: kernel.release.clone(),
            dir: kernel.headers_dir.clone(),
            hint,
        });
    }
    let variants = variants(source_root)?;
    let tc = toolchain::detect()?;
    let config = check_supported(kernel)?;
    // Where kbuild runs: decided now (cheaply: it is part of the key), made below if needed.
    let decision = buildenv::decide(kernel, &config)?;

    // Cache key: everything the result depends on. The code generation is a function of the
    // config (in the headers identity) and of the compiler (in the decision).
    let mut parts: Vec<Vec<u8>> = vec![
        BUILDER_VERSION.into(),
        tc.version_text.clone().into(),
        headers_identity(kernel),
        decision.identity().into(),
    ];
    for (rel, data) in source_tree(source_root)? {
        parts.push(rel.into_bytes());
        parts.push(data);
    }
    let key = hash_parts(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let release_dir = cache.join("modules").join(&kernel.release);
    let entry = release_dir.join(&key[..16]);
    let cached = |set: ModuleSet| {
        progress.note(format!(
            "kmod: {} module(s) for {} cached in {} (C side built with {})",
            set.modules.len(),
            kernel.release,
            entry.display(),
            set.toolchain
        ));
        Ok(set)
    };
    let cache_entry = crate::cache::module_set(&entry);
    let made_from = |toolchain: &str| {
        serde_json::json!({
            "release": kernel.release,
            "key": key,
            "builder": BUILDER_VERSION,
            "rustc": tc.version_text.lines().next().unwrap_or_default(),
            "toolchain": toolchain,
        })
    };
    // Entries appear by rename, complete and recorded: no lock needed to use a good one.
    if matches!(cache_entry.check(), crate::cache::Check::Ok(_)) {
        if let Some(set) = read_entry(&entry, &kernel.release) {
            return cached(set);
        }
    }
    // Building one is serialised per key: a second run waits, then finds the first one's entry.
    let lock_path = release_dir.join(format!("{}.lock", &key[..16]));
    let _lock = crate::fsutil::FileLock::acquire(&lock_path)
        .map_err(|e| KmodError::io(format!("locking {}", lock_path.display()), e))?;
    let legacy = read_entry(&entry, &kernel.release).filter(|set| set.modules.values().all(|p| is_elf(p)));
    let legacy_toolchain = legacy.as_ref().map(|s| s.toolchain.clone()).unwrap_or_default();
    if cache_entry.verify_or_adopt(progress, || legacy.is_some(), || made_from(&legacy_toolchain)) {
        if let Some(set) = read_entry(&entry, &kernel.release) {
            return cached(set);
        }
        progress.note(format!(
            "cache: {} is broken (its manifest does not list this kernel's modules): rebuilding",
            entry.display()
        ));
    }

    let started = Instant::now();
    let env = buildenv::materialize(&decision, kernel, cache, progress)?;
    if let Some(built_with) = config.get("CC_VERSION_TEXT").filter(|t| *t != env.cc_version) {
        // Same compiler binary (gcc-N), another build of it: kbuild accepts it, as DKMS would.
        progress.note(format!(
            "kmod: {} was built with `{built_with}`; the modules' C side gets `{}`",
            kernel.release, env.cc_version
        ));
    }
    progress.note(format!(
        "kmod: building {} reference module(s) for {}: C side (probe, shims, objtool, modpost) with {} \
         [{}], Rust side with host rustc {}",
        variants.len(),
        kernel.release,
        env.describe(),
        env.cc_version,
        tc.release
    ));

    std::fs::create_dir_all(&release_dir)
        .map_err(|e| KmodError::io(format!("creating {}", release_dir.display()), e))?;
    sweep_stale_scratch(&release_dir);
    let mut scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&release_dir)
        .map_err(|e| KmodError::io(format!("creating a scratch dir in {}", release_dir.display()), e))?;
    if std::env::var_os(KEEP_BUILD_ENV).is_some() {
        scratch.disable_cleanup(true);
        progress.note(format!("kmod: {KEEP_BUILD_ENV} is set: keeping the build dir {}", scratch.path().display()));
    }
    let work = scratch.path();
    let out_dir = work.join("entry");
    let module_dir = work.join("module");
    let rust_dir = work.join("rust");
    for d in [&out_dir, &module_dir.join("rust"), &rust_dir] {
        std::fs::create_dir_all(d).map_err(|e| KmodError::io(format!("creating {}", d.display()), e))?;
    }
    let read = |rel: &str| {
        let p = source_root.join(rel);
        std::fs::read_to_string(&p).map_err(|e| KmodError::io(format!("reading {}", p.display()), e))
    };
    let write = |p: &Path, text: &str| {
        std::fs::write(p, text).map_err(|e| KmodError::io(format!("writing {}", p.display()), e))
    };
    // The C helpers go next to everything that includes them.
    let helpers_h = read("kbuild/klp_helpers.h")?;
    let helpers_c = read("kbuild/klp_helpers.c")?;
    write(&work.join("klp_helpers.h"), &helpers_h)?;
    write(&module_dir.join("klp_helpers.h"), &helpers_h)?;
    write(&module_dir.join("klp_helpers.c"), &helpers_c)?;
    // Only klp_mutant's glue includes it (kernel mutants).
    write(&module_dir.join("klp_mutant_helpers.c"), &read("kbuild/klp_mutant_helpers.c")?)?;

    // 1. What kbuild does for C files of this kernel.
    progress.note("kmod: probing kbuild (flags, objtool)");
    let header_text = read("kbuild/bindings.h")?;
    let probe = kbuild::probe(
        &env,
        &kernel.headers_dir,
        &work.join("probe"),
        &header_text,
        &[("klp_helpers.h", &helpers_h), ("klp_helpers.c", &helpers_c)],
    )?;

    // 2. Code generation for this kernel's config.
    let codegen = codegen::Codegen::derive(&config, &probe.cc_words, &tc.release)
        .map_err(|why| KmodError::Unsupported { release: kernel.release.clone(), why })?;
    progress.note(format!("kmod: code generation for {}: {}", kernel.release, codegen.summary()));
    let target_json = codegen
        .target_json(&read(TARGET_JSON)?)
        .map_err(|detail| KmodError::Source { detail: format!("{TARGET_JSON}: {detail}") })?;
    let sysroot = toolchain::core_for(
        &tc,
        &target_json,
        &codegen.rustc_flags,
        &source_root.join("src/compiler_builtins.rs"),
        cache,
        progress,
    )?;

    // 3. Bindings, and gcc's re-check of their layouts.
    progress.note("kmod: bindgen over the kernel's livepatch headers");
    let allow = bindings::parse_allow(&read("kbuild/bindings.allow")?)
        .map_err(|e| KmodError::Source { detail: format!("kbuild/bindings.allow: {e}") })?;
    let header_path = work.join("bindings.h");
    write(&header_path, &header_text)?;
    let mut clang_args = probe.clang_flags.clone();
    clang_args.extend(["--target=x86_64-linux-gnu", "-D__BINDGEN__", "-w"].map(String::from));
    let (rust_bindings, clang_args) = bindings::generate(&header_path, &clang_args, &allow)?;
    let bindings_rs = rust_dir.join("bindings.rs");
    write(&bindings_rs, &rust_bindings)?;
    let kconfig_rs = rust_dir.join("kconfig.rs");
    write(&kconfig_rs, &codegen.kconfig_rs())?;
    let checked: Vec<(String, String)> = allow
        .iter()
        .filter_map(|i| match i {
            bindings::AllowItem::Type { keyword, name } => Some((keyword.clone(), name.clone())),
            _ => None,
        })
        .collect();
    let layout_h = layout_check::static_asserts(&header_text, &checked, &layout_check::parse_layouts(&rust_bindings))
        .map_err(|detail| KmodError::Bindgen { detail })?;
    write(&module_dir.join("klp_layout.h"), &layout_h)?;

    // 4. The Rust side: the klp layer, then one LTO'd object per variant.
    progress.note("kmod: compiling the klp layer and the variants (rustc, fat LTO)");
    let rustc_common = |c: &mut Command| {
        // Unsafe operations inside an `unsafe fn` need their own block (and SAFETY comment).
        c.args(["-Zunstable-options", "--edition", "2024", "-D", "unsafe_op_in_unsafe_fn", "--target"])
            .arg(&sysroot.target_json)
            .args(&codegen.rustc_flags)
            .arg("-L")
            .arg(&sysroot.dir)
            .env("KLP_BINDINGS", &bindings_rs)
            .env("KLP_KCONFIG", &kconfig_rs);
    };
    let mut c = tc.command();
    rustc_common(&mut c);
    c.args(["--crate-type", "rlib", "--crate-name", "klp", "--out-dir"])
        .arg(&rust_dir)
        .arg(source_root.join("src/klp.rs"));
    run_capture(&mut c).map_err(|e| KmodError::tool("compiling reference-kmod/src/klp.rs", e))?;
    let libklp = rust_dir.join("libklp.rlib");
    let mut kbuild_modules = Vec::new();
    let mut warnings = Vec::new();
    let rust_objects: Vec<String> = variants.iter().map(|v| format!("rust/{}.obj", v.name)).collect();
    let objtool_at_link = probe.objtool_at_link();
    for (v, obj_rel) in variants.iter().zip(&rust_objects) {
        let obj = module_dir.join(obj_rel);
        let mut c = tc.command();
        rustc_common(&mut c);
        c.args(["--crate-type", "staticlib", "--crate-name", &v.name, "-Clto=fat"])
            .arg("--extern")
            .arg(format!("klp={}", libklp.display()))
            // Without a `link` output rustc skips fat LTO and leaves the upstream crates' code
            // (klp, core) out of the object.
            .arg(format!("--emit=obj={},link={}", obj.display(), rust_dir.join(format!("lib{}.a", v.name)).display()))
            .arg(&v.path);
        run_capture(&mut c).map_err(|e| KmodError::tool(&format!("compiling variant {}", v.name), e))?;
        // objtool as kbuild runs it on C objects: on each object, unless kbuild runs it on the
        // linked module (then it covers the Rust object there).
        match &probe.objtool {
            Some(objtool) if !objtool_at_link => {
                let out = kbuild::run_objtool(&env, &kernel.headers_dir, objtool, &obj)?;
                warnings.extend(kbuild::warnings(&out));
            }
            _ => {}
        }
        kbuild_modules.push(kbuild::KbuildModule { name: &v.name, rust_object: obj_rel });
    }
    match (&probe.objtool, objtool_at_link) {
        (None, _) => progress.note("kmod: this kernel's kbuild runs no objtool on module objects"),
        (Some(_), true) => progress.note("kmod: objtool runs in kbuild, on each linked module (--link)"),
        (Some(_), false) => progress.note("kmod: objtool ran on each Rust object, as kbuild runs it on C objects"),
    }

    // 5. kbuild links them with the C shims and runs modpost (vermagic, modversions).
    progress
        .note(format!("kmod: kbuild (shims, layout re-check by gcc, objtool, modpost, link) with {}", env.describe()));
    let template = read("kbuild/shim.c")?;
    for v in &variants {
        let glue = match &v.glue {
            Some(g) => Some((
                format!("variants/{}.c", v.name),
                std::fs::read_to_string(g).map_err(|e| KmodError::io(format!("reading {}", g.display()), e))?,
            )),
            None => None,
        };
        let shim = kbuild::shim(
            &template,
            &kbuild::ShimParams {
                name: &v.name,
                description: &v.description,
                livepatch_modinfo: v.livepatch_modinfo,
                glue: glue.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            },
        );
        write(&module_dir.join(format!("{}_shim.c", v.name)), &shim)?;
    }
    write(&module_dir.join("Kbuild"), &kbuild::kbuild_file(&kbuild_modules))?;
    let mut c = kbuild::make_command(&env, &kernel.headers_dir, &module_dir);
    let (_, out) = kbuild::run_output(&mut c)
        .map_err(|e| KmodError::tool(&format!("kbuild (make modules, {})", env.describe()), e))?;
    warnings.extend(kbuild::warnings(&out));
    if !warnings.is_empty() {
        progress.note(format!(
            "kmod: {} warning(s) from objtool/modpost/gcc:\n  {}",
            warnings.len(),
            warnings.join("\n  ")
        ));
    }

    // 5. The cache entry: the .ko files, the manifest, and what was generated (for debugging).
    let mut modules = BTreeMap::new();
    for v in &variants {
        let ko = format!("{}.ko", v.name);
        let from = module_dir.join(&ko);
        std::fs::copy(&from, out_dir.join(&ko)).map_err(|e| KmodError::io(format!("copying {}", from.display()), e))?;
        modules.insert(v.name.clone(), ko);
    }
    let gen = out_dir.join("generated");
    std::fs::create_dir_all(&gen).map_err(|e| KmodError::io(format!("creating {}", gen.display()), e))?;
    for (from, name) in [
        (bindings_rs.clone(), "bindings.rs"),
        (module_dir.join("klp_layout.h"), "klp_layout.h"),
        (module_dir.join("Kbuild"), "Kbuild"),
    ] {
        std::fs::copy(&from, gen.join(name)).map_err(|e| KmodError::io(format!("copying {}", from.display()), e))?;
    }
    write(&gen.join("kconfig.rs"), &codegen.kconfig_rs())?;
    write(&gen.join(toolchain::TARGET_FILE), &target_json)?;
    let manifest = Manifest {
        builder: BUILDER_VERSION.into(),
        release: kernel.release.clone(),
        rustc: tc.version_text.lines().next().unwrap_or_default().to_string(),
        toolchain: env.describe(),
        cc_version: env.cc_version.clone(),
        codegen,
        modules,
        clang_flags: clang_args,
        objtool: probe.objtool.clone(),
        objtool_at_link,
        warnings,
    };
    write(&out_dir.join(MANIFEST), &serde_json::to_string_pretty(&manifest).expect("manifest serialises"))?;
    cache_entry
        .record_in(&out_dir, made_from(&manifest.toolchain))
        .map_err(|e| KmodError::io(format!("recording the module set in {}", out_dir.display()), e))?;
    // Under the lock, an entry still here is one `read_entry` rejected (a killed run's, or an
    // older layout's): replace it, or the rename would fail on it forever.
    if entry.exists() {
        progress.note(format!("kmod: replacing the broken cache entry {}", entry.display()));
        std::fs::remove_dir_all(&entry)
            .map_err(|e| KmodError::io(format!("removing the broken cache entry {}", entry.display()), e))?;
    }
    std::fs::rename(&out_dir, &entry)
        .map_err(|e| KmodError::io(format!("renaming the build into {}", entry.display()), e))?;
    drop(scratch);
    let set = read_entry(&entry, &kernel.release).ok_or_else(|| KmodError::Kbuild {
        detail: format!("cache entry {} is unreadable after the build", entry.display()),
    })?;
    progress.note(format!(
        "kmod: built {} module(s) in {:.1} s → {}",
        set.modules.len(),
        started.elapsed().as_secs_f64(),
        entry.display()
    ));
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_is_the_first_doc_line() {
        assert_eq!(description_of("//!\n//! Does `x`.\n//! More.\n#![no_std]\n", "m"), "Does x.");
        assert_eq!(description_of("#![no_std]\n", "m"), "klp-conform reference livepatch m");
    }

    #[test]
    fn mounts_below_a_dir_are_found() {
        let mi = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
                  90 22 0:5 / /c/toolchains/.build-x/root/dev rw - devtmpfs udev rw\n\
                  91 22 0:5 / /c/with\\040space/dev rw - devtmpfs udev rw\n";
        assert_eq!(
            mounts_below(Path::new("/c/toolchains/.build-x"), mi),
            [PathBuf::from("/c/toolchains/.build-x/root/dev")]
        );
        assert_eq!(mounts_below(Path::new("/c/with space"), mi), [PathBuf::from("/c/with space/dev")]);
        assert!(mounts_below(Path::new("/c/modules"), mi).is_empty());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        remove_tree(&dir.path().join("a")).unwrap();
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn hash_parts_depends_on_boundaries() {
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
        assert_eq!(hash_parts(&[b"x"]).len(), 64);
    }

    #[test]
    fn the_repo_variants_are_discovered() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference-kmod");
        let vs = variants(&root).unwrap();
        assert!(vs.iter().any(|v| v.name == "klp_ref_cmdline"));
    }

    #[test]
    fn directives_are_parsed() {
        let p = Path::new("v.rs");
        assert!(directives_of("//! x\n#![no_std]\n", p).unwrap());
        assert!(!directives_of("//! x\n//@ livepatch-modinfo: no\n", p).unwrap());
        assert!(directives_of("//@ livepatch-modinfo: yes\n", p).unwrap());
        assert!(matches!(directives_of("//@ livepatch: maybe\n", p), Err(KmodError::Source { .. })));
    }

    #[test]
    fn glue_files_are_not_variants_but_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("variants")).unwrap();
        std::fs::write(dir.path().join("variants/m.rs"), "//! M.\n//@ livepatch-modinfo: no\n").unwrap();
        std::fs::write(dir.path().join("variants/m.c"), "/* glue */").unwrap();
        let vs = variants(dir.path()).unwrap();
        assert_eq!(vs.len(), 1);
        assert!(!vs[0].livepatch_modinfo);
        assert_eq!(vs[0].glue.as_deref(), Some(dir.path().join("variants/m.c").as_path()));
    }

    #[test]
    fn bad_variant_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("variants")).unwrap();
        std::fs::write(dir.path().join("variants/Bad-Name.rs"), "").unwrap();
        assert!(matches!(variants(dir.path()), Err(KmodError::Source { .. })));
    }
}
