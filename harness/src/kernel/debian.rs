//! Debian kernels: found in klp-conform's own apt lists ([`super::apt`]), fetched with
//! `apt-get download` and extracted with `dpkg-deb -x` into the cache. No root, no triggers, no
//! change to the host, any number of kernels side by side.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::{self, AptRoot};
use super::{Kernel, KernelError};
use crate::progress::Progress;
use crate::tools::{require_tool, run_capture};

/// The suite `debian` and `debian:<abi>` mean: the host's own release.
pub const DEFAULT_SUITE: &str = "bookworm";

/// What to fetch: a kernel ABI from a suite, optionally at an exact package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub suite: &'a str,
    pub abi: &'a str,
    /// `None`: whatever the suite has now.
    pub version: Option<&'a str>,
    /// What the user called it (`6.1`, `debian/sid:7.2.13+deb14-amd64`), kept in the result.
    pub spec: String,
}

pub struct DebianFetcher {
    cache: PathBuf,
}

impl DebianFetcher {
    /// `cache` is klp-conform's cache dir: kernels go to `kernels/<abi>/`, apt lists to `apt/`.
    pub fn new(cache: &Path) -> Self {
        Self { cache: cache.to_path_buf() }
    }

    fn kernels(&self) -> PathBuf {
        self.cache.join("kernels")
    }

    /// The ABI the meta package `linux-image-<flavour>` of `suite` points to now.
    pub fn current_abi(
        &self,
        suite: &str,
        flavour: &str,
        progress: &Progress,
    ) -> Result<(String, String), KernelError> {
        let apt = AptRoot::new(&self.cache, suite)?;
        apt.ensure(false, progress)?;
        let meta = format!("linux-image-{flavour}");
        let stanza = apt.show(&meta)?.ok_or_else(|| KernelError::NoPackage {
            what: meta.clone(),
            detail: format!("the {suite} lists do not have it"),
        })?;
        let abi = apt::field(&stanza, "Depends").as_deref().and_then(meta_depends_abi).ok_or_else(|| {
            KernelError::NoPackage { what: meta.clone(), detail: format!("no linux-image-<abi> dependency in {suite}") }
        })?;
        let image = image_package(&apt, &abi, None)?;
        Ok((abi, image.1))
    }

    /// Fetch and extract the image (unsigned when Debian splits it), the headers and their
    /// companions (`-common` headers, kbuild), or reuse the cache.
    pub fn fetch(&self, req: &Request<'_>, progress: &Progress) -> Result<Kernel, KernelError> {
        let abi = req.abi;
        let dir = self.kernels().join(abi);
        let meta = dir.join("kernel.json");
        let lock_path = self.kernels().join(format!("{abi}.lock"));
        let _lock = crate::fsutil::FileLock::acquire(&lock_path)
            .map_err(|e| KernelError::io(format!("locking {}", lock_path.display()), e))?;
        let entry = crate::cache::kernel_tree(&dir);
        let usable = entry.verify_or_adopt(
            progress,
            || read_cached(&meta).is_some(),
            || read_cached(&meta).map(|k| made_from(&k, &[])).unwrap_or_default(),
        );
        if let Some(mut k) = read_cached(&meta).filter(|_| usable) {
            if req.version.is_none_or(|v| v == k.version) {
                progress.note(format!("kernel {abi}: cached in {}", dir.display()));
                k.spec = req.spec.clone();
                return Ok(k);
            }
            progress.note(format!(
                "kernel {abi}: cached package {} is not the pinned {}",
                k.version,
                req.version.unwrap_or("")
            ));
        }
        require_tool("dpkg-deb", "dpkg", "extract Debian kernel packages")?;
        // From here until the record is written the entry is being remade: nothing of the old
        // one may pass as complete if this run is interrupted.
        entry.forget().map_err(|e| KernelError::io(format!("removing {}", entry.record_path().display()), e))?;
        let _ = std::fs::remove_file(&meta);
        let apt = AptRoot::new(&self.cache, req.suite)?;
        apt.ensure(false, progress)?;
        // Lists older than the pin (or than a new ABI) are refreshed once before giving up.
        let (image_pkg, version) = match image_package(&apt, abi, req.version) {
            Ok(found) => found,
            Err(_) => {
                apt.ensure(true, progress)?;
                image_package(&apt, abi, req.version)?
            }
        };
        let headers_pkg = format!("linux-headers-{abi}");
        let headers = apt.show(&format!("{headers_pkg}={version}"))?.ok_or_else(|| KernelError::NoPackage {
            what: format!("{headers_pkg}={version}"),
            detail: format!("{} has the image but not its headers", req.suite),
        })?;
        let image = apt.show(&format!("{image_pkg}={version}"))?.unwrap_or_default();
        let mut pkgs = vec![format!("{image_pkg}={version}"), format!("{headers_pkg}={version}")];
        let mut deps = companions(&apt::field(&image, "Depends").unwrap_or_default(), abi);
        deps.extend(companions(&apt::field(&headers, "Depends").unwrap_or_default(), abi));
        deps.sort();
        deps.dedup();
        for dep in &deps {
            // kbuild's version can differ from the kernel's (linux-kbuild-6.1 (>= 6.1.192-3)):
            // take the exact one when it exists, else the newest the suite has.
            if apt.show(&format!("{dep}={version}"))?.is_some() {
                pkgs.push(format!("{dep}={version}"));
            } else {
                pkgs.push(dep.clone());
            }
        }

        let debs = dir.join("debs");
        let _ = std::fs::remove_dir_all(&debs);
        std::fs::create_dir_all(&debs).map_err(|e| KernelError::io(format!("creating {}", debs.display()), e))?;
        progress.note(format!("kernel {abi}: downloading {} packages ({version}) from {}", pkgs.len(), req.suite));
        apt.download(&debs, &pkgs)?;

        // Extract into a scratch dir and rename it, so an interrupted run never leaves a
        // half-extracted tree that the next run would take as complete.
        let scratch = dir.join("root.partial");
        let root = dir.join("root");
        let _ = std::fs::remove_dir_all(&scratch);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&debs)
            .map_err(|e| KernelError::io(format!("listing {}", debs.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        entries.sort();
        progress.note(format!("kernel {abi}: extracting {} .debs", entries.len()));
        for deb in &entries {
            run_capture(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&scratch))?;
        }
        let headers_dir = scratch.join("usr/src").join(format!("linux-headers-{abi}"));
        relocate_headers_makefile(&headers_dir, &scratch, &root)?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&scratch, &root).map_err(|e| KernelError::io("renaming the extracted kernel", e))?;
        let _ = std::fs::remove_dir_all(&debs);

        // Debian moved the image's files from /boot and /lib/modules to /usr/lib/modules/<abi>/
        // (7.x); take them from wherever this package put them.
        let first = |what: &str, candidates: &[PathBuf]| {
            candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| KernelError::IncompleteTree {
                tree: root.clone(),
                missing: format!(
                    "{what} (looked for {})",
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            })
        };
        let usr_modules = root.join("usr/lib/modules").join(abi);
        let kernel = Kernel {
            spec: req.spec.clone(),
            release: abi.to_string(),
            version: version.clone(),
            vmlinuz: first(
                "vmlinuz",
                &[root.join("boot").join(format!("vmlinuz-{abi}")), usr_modules.join("vmlinuz")],
            )?,
            modules_dir: first("the modules directory", &[root.join("lib/modules").join(abi), usr_modules.clone()])?,
            headers_dir: root.join("usr/src").join(format!("linux-headers-{abi}")),
            config: first("config", &[root.join("boot").join(format!("config-{abi}")), usr_modules.join("config")])?,
            debian_suite: Some(req.suite.to_string()),
        };
        crate::fsutil::write_atomic(&meta, serde_json::to_string_pretty(&kernel).unwrap().as_bytes())
            .map_err(|e| KernelError::io(format!("writing {}", meta.display()), e))?;
        entry
            .record(made_from(&kernel, &pkgs))
            .map_err(|e| KernelError::io(format!("recording the cache entry {}", dir.display()), e))?;
        Ok(kernel)
    }

    /// The cached kernel of `abi`, if one is there and intact (nothing is downloaded).
    pub fn cached(&self, abi: &str) -> Option<Kernel> {
        let dir = self.kernels().join(abi);
        match crate::cache::kernel_tree(&dir).check() {
            crate::cache::Check::Ok(_) | crate::cache::Check::Unrecorded => read_cached(&dir.join("kernel.json")),
            _ => None,
        }
    }
}

/// What a kernel tree entry was made from: the packages and where they came from.
fn made_from(k: &Kernel, packages: &[String]) -> serde_json::Value {
    serde_json::json!({
        "abi": k.release,
        "version": k.version,
        "suite": k.debian_suite,
        "packages": packages,
    })
}

fn read_cached(meta: &Path) -> Option<Kernel> {
    let k: Kernel = serde_json::from_str(&std::fs::read_to_string(meta).ok()?).ok()?;
    (k.vmlinuz.is_file() && k.headers_dir.join("Makefile").is_file()).then_some(k)
}

/// The image package of `abi` (`-unsigned` where Debian still splits signed and unsigned
/// images: the same kernel, without the EFI signature) and its version (`version` or the
/// newest the lists have).
fn image_package(apt: &AptRoot, abi: &str, version: Option<&str>) -> Result<(String, String), KernelError> {
    for pkg in [format!("linux-image-{abi}-unsigned"), format!("linux-image-{abi}")] {
        let what = match version {
            Some(v) => format!("{pkg}={v}"),
            None => pkg.clone(),
        };
        if let Some(stanza) = apt.show(&what)? {
            let v = apt::field(&stanza, "Version").unwrap_or_default();
            return Ok((pkg, v));
        }
    }
    Err(KernelError::NoPackage {
        what: format!("linux-image-{abi}{}", version.map(|v| format!(" = {v}")).unwrap_or_default()),
        detail: format!(
            "the {} lists do not have it (the archive may have dropped it): see what is there with \
             `cargo xtask kernels list`, move the pins with `cargo xtask kernels update`",
            apt.suite()
        ),
    })
}

/// `linux-image-6.1.0-57-amd64 (= 6.1.192-3)` (a meta package's Depends) → the ABI.
fn meta_depends_abi(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .filter_map(|d| d.strip_prefix("linux-image-"))
        .map(|abi| abi.trim_end_matches("-unsigned").to_string())
        .find(|abi| abi.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// The packages that make up a kernel besides its image and headers package, from their
/// Depends: the `-common` headers and kbuild, and (7.x, where the image package is a meta
/// package) the packages named after the ABI that hold the binary, the modules and the config.
/// Compilers and other tools are the toolchain's business.
fn companions(depends: &str, abi: &str) -> Vec<String> {
    depends
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .filter(|n| n.starts_with("linux-headers-") || n.starts_with("linux-kbuild-") || n.contains(abi))
        .filter(|n| !n.starts_with("linux-image-"))
        .map(str::to_string)
        .collect()
}

/// The flavour headers' Makefile includes the `-common` one by absolute path: point it into
/// the cache (`final_root`, where `scratch` will be renamed to).
fn relocate_headers_makefile(headers: &Path, scratch: &Path, final_root: &Path) -> Result<(), KernelError> {
    let mk = headers.join("Makefile");
    let text = std::fs::read_to_string(&mk).map_err(|_| KernelError::IncompleteTree {
        tree: scratch.to_path_buf(),
        missing: format!("{}", mk.display()),
    })?;
    let prefix = format!("include {}/usr/src/", final_root.display());
    let fixed = text.replace("include /usr/src/", &prefix);
    std::fs::write(&mk, fixed).map_err(|e| KernelError::io(format!("rewriting {}", mk.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_depends() {
        assert_eq!(meta_depends_abi("linux-image-6.1.0-57-amd64 (= 6.1.192-3)").as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(
            meta_depends_abi("linux-image-7.2.13+deb14-amd64-unsigned (= 7.2.13-1)").as_deref(),
            Some("7.2.13+deb14-amd64")
        );
        assert_eq!(meta_depends_abi("linux-image-amd64-signed-template"), None);
        assert_eq!(meta_depends_abi(""), None);
    }

    #[test]
    fn companions_of_headers_and_split_images() {
        let d =
            "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86";
        assert_eq!(companions(d, "6.1.0-56-amd64"), vec!["linux-headers-6.1.0-56-common", "linux-kbuild-6.1"]);
        let img = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)";
        assert_eq!(
            companions(img, "7.2.13+deb14-amd64"),
            ["linux-base-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64"]
        );
        let hdr = "linux-base (>= 4.12~), linux-headers-6.12.95+deb12-common (= 6.12.95-1~bpo12+1), linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1) | linux-image-6.12.95+deb12-amd64-unsigned (= 6.12.95-1~bpo12+1), linux-kbuild-6.12.95+deb12, gcc-12";
        assert_eq!(
            companions(hdr, "6.12.95+deb12-amd64"),
            ["linux-headers-6.12.95+deb12-common", "linux-kbuild-6.12.95+deb12"]
        );
    }
}
