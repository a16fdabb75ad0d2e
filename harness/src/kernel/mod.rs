//! Kernel artefacts: where a kernel comes from and what the rest of the harness needs of it.
//!
//! A kernel is named by a [`KernelSpec`] (`debian`, `debian:<abi>` or a local build tree) and
//! resolved into a [`Kernel`]: the boot image, the modules tree, the headers tree that kbuild
//! builds out-of-tree modules against, the config and the release. The host's /boot is never used.

mod debian;
mod local;

use std::path::{Path, PathBuf};

pub use debian::DebianFetcher;

use crate::progress::Progress;

/// How a kernel was named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// `debian`: whatever `linux-image-amd64` points to in the apt lists of this host.
    DebianDefault,
    /// `debian:<abi>`, e.g. `debian:6.1.0-50-amd64` or `debian:6.1.0-56-rt-amd64`.
    DebianAbi(String),
    /// A local kernel build tree (`make bzImage modules` done in it).
    LocalTree(PathBuf),
}

impl KernelSpec {
    pub fn parse(s: &str) -> Result<Self, KernelError> {
        if s == "debian" {
            return Ok(Self::DebianDefault);
        }
        if let Some(abi) = s.strip_prefix("debian:") {
            let ok =
                !abi.is_empty() && abi.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '+');
            if !ok {
                return Err(KernelError::BadSpec {
                    spec: s.into(),
                    why: "expected debian:<abi>, e.g. debian:6.1.0-50-amd64".into(),
                });
            }
            return Ok(Self::DebianAbi(abi.into()));
        }
        let p = Path::new(s);
        if p.is_dir() {
            return Ok(Self::LocalTree(p.to_path_buf()));
        }
        Err(KernelError::BadSpec {
            spec: s.into(),
            why: "expected `debian`, `debian:<abi>` or the path of a kernel build tree".into(),
        })
    }
}

impl KernelSpec {
    /// The release (`uname -r`) this spec names, without downloading anything: the ABI for
    /// `debian:<abi>`, what linux-image-amd64 points to for `debian`, the tree's
    /// `include/config/kernel.release` for a build tree.
    pub fn release(&self) -> Result<String, KernelError> {
        match self {
            Self::DebianAbi(abi) => Ok(abi.clone()),
            Self::DebianDefault => debian::default_abi(),
            Self::LocalTree(tree) => {
                let p = tree.join("include/config/kernel.release");
                std::fs::read_to_string(&p)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| KernelError::io(format!("reading {}", p.display()), e))
            }
        }
    }
}

impl std::fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DebianDefault => f.write_str("debian"),
            Self::DebianAbi(abi) => write!(f, "debian:{abi}"),
            Self::LocalTree(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A resolved kernel, ready to boot and to build modules for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Kernel {
    /// The spec as the user wrote it (`debian`, `debian:6.1.0-50-amd64`, a path).
    pub spec: String,
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The upstream/package version, e.g. `6.1.192-2` for Debian, `6.1.0` for a tree.
    pub version: String,
    /// The compressed boot image (bzImage / vmlinuz).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`: the kernel's own modules (virtio and friends come from here).
    pub modules_dir: PathBuf,
    /// The directory to pass to `make -C` for out-of-tree modules.
    pub headers_dir: PathBuf,
    /// The kernel's `.config`.
    pub config: PathBuf,
}

impl Kernel {
    /// Whether the kernel config sets `name` (e.g. `CONFIG_LIVEPATCH`) to `y` or `m`.
    pub fn config_enabled(&self, name: &str) -> Result<bool, KernelError> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| KernelError::io(format!("reading {}", self.config.display()), e))?;
        Ok(text.lines().any(|l| {
            l.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')).is_some_and(|v| v == "y" || v == "m")
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("bad kernel spec `{spec}`: {why}")]
    BadSpec { spec: String, why: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A host tool is missing (the message names its package) or failed (with its stderr).
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    #[error("no Debian package for {what}: {detail}")]
    NoPackage { what: String, detail: String },
    #[error("kernel tree {tree} is incomplete: {missing}")]
    IncompleteTree { tree: PathBuf, missing: String },
}

impl KernelError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// Resolve a spec into a kernel, fetching and extracting Debian packages into `cache` if needed.
pub fn resolve(spec: &KernelSpec, cache: &Path, progress: &Progress) -> Result<Kernel, KernelError> {
    match spec {
        KernelSpec::DebianDefault => {
            let fetcher = DebianFetcher::new(cache.join("kernels"));
            let abi = debian::default_abi()?;
            progress.note(format!("kernel `debian` follows linux-image-amd64 → {abi}"));
            let mut k = fetcher.fetch(&abi, progress)?;
            k.spec = spec.to_string();
            Ok(k)
        }
        KernelSpec::DebianAbi(abi) => DebianFetcher::new(cache.join("kernels")).fetch(abi, progress),
        KernelSpec::LocalTree(tree) => local::from_tree(tree),
    }
}

/// Where klp-conform keeps downloads and builds that outlive one run.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KLP_CONFORM_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("klp-conform");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("klp-conform")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(KernelSpec::parse("debian").unwrap(), KernelSpec::DebianDefault);
        assert_eq!(KernelSpec::parse("debian:6.1.0-50-amd64").unwrap(), KernelSpec::DebianAbi("6.1.0-50-amd64".into()));
        assert!(KernelSpec::parse("debian:").is_err());
        assert!(KernelSpec::parse("debian:a b").is_err());
        assert!(KernelSpec::parse("/nonexistent/tree").is_err());
    }
}
