//! Kernel artefacts: where a kernel comes from and what the rest of the harness needs of it.
//!
//! A kernel is named by a [`KernelSpec`] (`debian`, `debian:<abi>` or a local build tree) and
//! resolved into a [`Kernel`]: the boot image, the modules tree, the headers tree that kbuild
//! builds out-of-tree modules against, the config and the release. The host's /boot is never used.

pub mod apt;
pub mod config;
mod debian;
mod local;
pub mod pin_tools;
pub mod pins;
pub mod prereq;
pub mod source;
pub mod tree_config;

use std::path::{Path, PathBuf};

pub use debian::{DebianFetcher, DEFAULT_SUITE};
pub use pins::{Pin, Pins, PinsError};

use crate::progress::Progress;

/// How a kernel was named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// A kernel pinned in `images/kernels.yaml` by its short name (`6.1`, `5.10`, `6.1-rt`).
    Pinned(Pin),
    /// `debian`: whatever bookworm's `linux-image-amd64` points to now.
    DebianDefault,
    /// `debian:<abi>` (a bookworm kernel) or `debian/<suite>:<abi>` (any suite).
    Debian { suite: String, abi: String },
    /// A local kernel build tree (`make bzImage modules` done in it).
    LocalTree(PathBuf),
}

impl KernelSpec {
    /// One `--kernel` argument: `matrix` names every kernel of the pinned matrix, anything else
    /// names one kernel.
    pub fn parse_all(s: &str, pins: &Pins) -> Result<Vec<Self>, KernelError> {
        if s == "matrix" {
            return Ok(pins.matrix.iter().map(|n| Self::Pinned(pins.get(n).expect("validated").clone())).collect());
        }
        Self::parse(s, pins).map(|k| vec![k])
    }

    pub fn parse(s: &str, pins: &Pins) -> Result<Self, KernelError> {
        if let Some(pin) = pins.get(s) {
            return Ok(Self::Pinned(pin.clone()));
        }
        if s == "debian" {
            return Ok(Self::DebianDefault);
        }
        let debian = |suite: &str, abi: &str| {
            let ok = !abi.is_empty()
                && abi.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '+')
                && apt::valid_suite(suite);
            if ok {
                Ok(Self::Debian { suite: suite.into(), abi: abi.into() })
            } else {
                Err(KernelError::BadSpec {
                    spec: s.into(),
                    why: "expected debian:<abi> or debian/<suite>:<abi>, e.g. debian/sid:7.2.13+deb14-amd64".into(),
                })
            }
        };
        if let Some(abi) = s.strip_prefix("debian:") {
            return debian(DEFAULT_SUITE, abi);
        }
        if let Some(rest) = s.strip_prefix("debian/") {
            let (suite, abi) = rest.split_once(':').unwrap_or((rest, ""));
            return debian(suite, abi);
        }
        let p = Path::new(s);
        if p.is_dir() {
            return Ok(Self::LocalTree(p.to_path_buf()));
        }
        Err(KernelError::BadSpec {
            spec: s.into(),
            why: format!(
                "expected a pinned kernel ({}), `matrix`, `debian`, `debian:<abi>`, `debian/<suite>:<abi>` \
                 or the path of a kernel build tree",
                pins.names().join(", ")
            ),
        })
    }

    /// The name this kernel's snapshots are stored under ([`snapshot_key`]), without
    /// downloading anything.
    pub fn snapshot_key(&self, cache: &Path) -> Result<String, KernelError> {
        Ok(snapshot_key(self, &self.release(cache)?))
    }

    /// The release (`uname -r`) this spec names, without downloading anything: the pinned or
    /// named ABI, what bookworm's linux-image-amd64 points to for `debian`, the tree's
    /// `include/config/kernel.release` for a build tree.
    pub fn release(&self, cache: &Path) -> Result<String, KernelError> {
        match self {
            Self::Pinned(pin) => Ok(pin.abi.clone()),
            Self::Debian { abi, .. } => Ok(abi.clone()),
            Self::DebianDefault => {
                Ok(DebianFetcher::new(cache).current_abi(DEFAULT_SUITE, "amd64", &Progress::quiet())?.0)
            }
            Self::LocalTree(tree) => {
                let p = tree.join("include/config/kernel.release");
                std::fs::read_to_string(&p)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| KernelError::io(format!("reading {}", p.display()), e))
            }
        }
    }
}

/// What a build tree's snapshots are stored under, after its release: a tree built from
/// Debian's source can have exactly the release of a packaged kernel (`6.1.0-57-amd64` with
/// that LOCALVERSION), and its snapshots must never be compared as that package's.
pub const TREE_SNAPSHOT_MARK: &str = "+tree";

/// The name a kernel's regression snapshots are stored under (`…@<key>.snap`): its release,
/// marked for a build tree.
pub fn snapshot_key(spec: &KernelSpec, release: &str) -> String {
    match spec {
        KernelSpec::LocalTree(_) => format!("{release}{TREE_SNAPSHOT_MARK}"),
        _ => release.to_string(),
    }
}

impl std::fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pinned(pin) => f.write_str(&pin.name),
            Self::DebianDefault => f.write_str("debian"),
            Self::Debian { suite, abi } if suite == DEFAULT_SUITE => write!(f, "debian:{abi}"),
            Self::Debian { suite, abi } => write!(f, "debian/{suite}:{abi}"),
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
    /// The Debian suite a packaged kernel came from (its toolchain is that release's).
    #[serde(default)]
    pub debian_suite: Option<String>,
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
    let fetcher = DebianFetcher::new(cache);
    let request = |suite, abi, version| debian::Request { suite, abi, version, spec: spec.to_string() };
    match spec {
        KernelSpec::Pinned(pin) => fetcher.fetch(&request(&pin.suite, &pin.abi, Some(&pin.version)), progress),
        KernelSpec::DebianDefault => {
            let (abi, _) = fetcher.current_abi(DEFAULT_SUITE, "amd64", progress)?;
            progress.note(format!("kernel `debian` follows {DEFAULT_SUITE}'s linux-image-amd64 → {abi}"));
            fetcher.fetch(&request(DEFAULT_SUITE, &abi, None), progress)
        }
        KernelSpec::Debian { suite, abi } => fetcher.fetch(&request(suite, abi, None), progress),
        KernelSpec::LocalTree(tree) => local::from_tree(tree),
    }
}

/// The pinned default kernel of the checkout at `workspace` (tests and tools that need "the"
/// kernel use the same one a plain `cargo xtask conformance` does).
pub fn default_spec(workspace: &Path) -> Result<KernelSpec, PinsError> {
    Ok(KernelSpec::Pinned(Pins::load_workspace(workspace)?.default_pin().clone()))
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

    fn pins() -> Pins {
        Pins::parse(
            Path::new("k.yaml"),
            "version: 1\ndefault: '6.1'\nmatrix: ['6.1', '7.2']\nkernels:\n  - {name: '6.1', suite: bookworm, abi: 6.1.0-57-amd64, version: 6.1.192-3}\n  - {name: '7.2', suite: sid, abi: 7.2.13+deb14-amd64, version: 7.2.13-1}\n",
        )
        .unwrap()
    }

    #[test]
    fn specs_parse() {
        let p = pins();
        assert_eq!(KernelSpec::parse("debian", &p).unwrap(), KernelSpec::DebianDefault);
        assert_eq!(
            KernelSpec::parse("debian:6.1.0-50-amd64", &p).unwrap(),
            KernelSpec::Debian { suite: "bookworm".into(), abi: "6.1.0-50-amd64".into() }
        );
        let sid = KernelSpec::parse("debian/sid:7.2.13+deb14-amd64", &p).unwrap();
        assert_eq!(sid, KernelSpec::Debian { suite: "sid".into(), abi: "7.2.13+deb14-amd64".into() });
        assert_eq!(sid.to_string(), "debian/sid:7.2.13+deb14-amd64");
        assert!(matches!(KernelSpec::parse("7.2", &p).unwrap(), KernelSpec::Pinned(ref pin) if pin.suite == "sid"));
        assert_eq!(KernelSpec::parse_all("matrix", &p).unwrap().len(), 2);
        assert!(KernelSpec::parse("debian:", &p).is_err());
        assert!(KernelSpec::parse("debian/sid", &p).is_err());
        assert!(KernelSpec::parse("debian/Sid:x", &p).is_err());
        assert!(KernelSpec::parse("debian:a b", &p).is_err());
        let e = KernelSpec::parse("/nonexistent/tree", &p).unwrap_err().to_string();
        assert!(e.contains("a pinned kernel (6.1, 7.2)"), "{e}");
    }

    /// A tree with the very release of a pinned package is stored apart from it.
    #[test]
    fn tree_snapshots_are_marked() {
        let p = pins();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("include/config")).unwrap();
        std::fs::write(d.path().join("include/config/kernel.release"), "6.1.0-57-amd64\n").unwrap();
        let tree = KernelSpec::parse(d.path().to_str().unwrap(), &p).unwrap();
        let pinned = KernelSpec::parse("6.1", &p).unwrap();
        let cache = d.path().join("cache");
        assert_eq!(tree.release(&cache).unwrap(), pinned.release(&cache).unwrap());
        assert_eq!(tree.snapshot_key(&cache).unwrap(), "6.1.0-57-amd64+tree");
        assert_eq!(pinned.snapshot_key(&cache).unwrap(), "6.1.0-57-amd64");
    }
}
