//! Debian kernels from apt: `apt-get download` + `dpkg-deb -x` into a cache, no root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Kernel, KernelError};
use crate::progress::Progress;
use crate::tools::{require_tool, run_capture};

pub struct DebianFetcher {
    root: PathBuf,
}

impl DebianFetcher {
    /// `root` holds one directory per ABI: `<abi>/debs`, `<abi>/root`, `<abi>/kernel.json`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Fetch and extract `linux-image-<abi>-unsigned` and its headers, or reuse the cache.
    pub fn fetch(&self, abi: &str, progress: &Progress) -> Result<Kernel, KernelError> {
        let dir = self.root.join(abi);
        let meta = dir.join("kernel.json");
        let lock_path = self.root.join(format!("{abi}.lock"));
        let _lock = crate::fsutil::FileLock::acquire(&lock_path)
            .map_err(|e| KernelError::io(format!("locking {}", lock_path.display()), e))?;
        if let Ok(text) = std::fs::read_to_string(&meta) {
            if let Ok(k) = serde_json::from_str::<Kernel>(&text) {
                if k.vmlinuz.is_file() && k.headers_dir.join("Makefile").is_file() {
                    progress.note(format!("kernel {abi}: cached in {}", dir.display()));
                    return Ok(k);
                }
            }
        }
        require_tool("apt-get", "apt", "download Debian kernel packages")?;
        require_tool("dpkg-deb", "dpkg", "extract Debian kernel packages")?;

        let image_pkg = format!("linux-image-{abi}-unsigned");
        let version = package_version(&image_pkg)?;
        let headers_pkg = format!("linux-headers-{abi}");
        let headers_deps = package_field(&headers_pkg, &version, "Depends")?;
        let mut pkgs = vec![format!("{image_pkg}={version}"), format!("{headers_pkg}={version}")];
        for dep in header_companions(&headers_deps) {
            pkgs.push(format!("{dep}={version}"));
        }

        let debs = dir.join("debs");
        let _ = std::fs::remove_dir_all(&debs);
        std::fs::create_dir_all(&debs).map_err(|e| KernelError::io(format!("creating {}", debs.display()), e))?;
        progress.note(format!("kernel {abi}: downloading {} packages ({version})", pkgs.len()));
        run_capture(
            Command::new("apt-get")
                .current_dir(&debs)
                // root cannot hand the download to the _apt user in a private cache dir
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .args(&pkgs),
        )?;

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
        let release = abi.to_string();
        let headers_dir = scratch.join("usr/src").join(format!("linux-headers-{release}"));
        relocate_headers_makefile(&headers_dir, &scratch, &root)?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&scratch, &root).map_err(|e| KernelError::io("renaming the extracted kernel", e))?;
        let _ = std::fs::remove_dir_all(&debs);

        let kernel = Kernel {
            spec: format!("debian:{abi}"),
            release: release.clone(),
            version,
            vmlinuz: root.join("boot").join(format!("vmlinuz-{release}")),
            modules_dir: root.join("lib/modules").join(&release),
            headers_dir: root.join("usr/src").join(format!("linux-headers-{release}")),
            config: root.join("boot").join(format!("config-{release}")),
        };
        for (what, p) in [("vmlinuz", &kernel.vmlinuz), ("config", &kernel.config)] {
            if !p.is_file() {
                return Err(KernelError::IncompleteTree {
                    tree: root.clone(),
                    missing: format!("{what} {}", p.display()),
                });
            }
        }
        crate::fsutil::write_atomic(&meta, serde_json::to_string_pretty(&kernel).unwrap().as_bytes())
            .map_err(|e| KernelError::io(format!("writing {}", meta.display()), e))?;
        Ok(kernel)
    }
}

/// The ABI that `linux-image-amd64` depends on in this host's apt lists.
pub fn default_abi() -> Result<String, KernelError> {
    require_tool("apt-cache", "apt", "look up Debian kernel packages")?;
    let out = run_capture(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    parse_meta_depends(&out).ok_or_else(|| KernelError::NoPackage {
        what: "linux-image-amd64".into(),
        detail: "apt-cache knows no linux-image-<abi> dependency; run `apt-get update` first".into(),
    })
}

/// `apt-cache depends linux-image-amd64` → the ABI of its first `linux-image-*` dependency.
fn parse_meta_depends(out: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
        .filter_map(|d| d.trim().strip_prefix("linux-image-"))
        .map(|abi| abi.trim_end_matches("-unsigned").to_string())
        .next()
}

fn package_version(pkg: &str) -> Result<String, KernelError> {
    let out = run_capture(Command::new("apt-cache").args(["show", "--no-all-versions", pkg])).map_err(|_| {
        KernelError::NoPackage {
            what: pkg.into(),
            detail: "apt-cache does not know it; check the ABI with `apt-cache search linux-image-6` or run `apt-get update`"
                .into(),
        }
    })?;
    field(&out, "Version").ok_or_else(|| KernelError::NoPackage { what: pkg.into(), detail: "no Version field".into() })
}

fn package_field(pkg: &str, version: &str, name: &str) -> Result<String, KernelError> {
    let out = run_capture(Command::new("apt-cache").args(["show", &format!("{pkg}={version}")])).map_err(|_| {
        KernelError::NoPackage { what: format!("{pkg}={version}"), detail: "apt-cache does not know it".into() }
    })?;
    Ok(field(&out, name).unwrap_or_default())
}

fn field(stanza: &str, name: &str) -> Option<String> {
    stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")).map(str::to_string))
}

/// The header package's own companions (`-common` headers and kbuild) from its Depends line;
/// compilers and other tools are the host's business.
fn header_companions(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .filter(|n| n.starts_with("linux-headers-") || n.starts_with("linux-kbuild-"))
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
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(parse_meta_depends(out).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(parse_meta_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn companions() {
        let d =
            "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86";
        assert_eq!(header_companions(d), vec!["linux-headers-6.1.0-56-common", "linux-kbuild-6.1"]);
    }
}
