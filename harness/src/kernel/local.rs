//! A local kernel build tree: `make bzImage modules` done in it; the tree itself is the
//! headers tree for out-of-tree modules.

use std::path::Path;

use super::{Kernel, KernelError};

pub fn from_tree(tree: &Path) -> Result<Kernel, KernelError> {
    let tree = tree.canonicalize().map_err(|e| KernelError::io(format!("opening {}", tree.display()), e))?;
    let need = |rel: &str| {
        let p = tree.join(rel);
        if p.exists() {
            Ok(p)
        } else {
            Err(KernelError::IncompleteTree { tree: tree.clone(), missing: rel.into() })
        }
    };
    let release_file = need("include/config/kernel.release")?;
    let release = std::fs::read_to_string(&release_file)
        .map_err(|e| KernelError::io(format!("reading {}", release_file.display()), e))?
        .trim()
        .to_string();
    let version = release.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap_or(&release).to_string();
    Ok(Kernel {
        spec: tree.display().to_string(),
        release,
        version,
        vmlinuz: need("arch/x86/boot/bzImage")?,
        // Modules are found by file name anywhere below this directory.
        modules_dir: tree.clone(),
        headers_dir: tree.clone(),
        config: need(".config")?,
        debian_suite: None,
    })
}
