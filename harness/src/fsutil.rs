//! File-system helpers shared by every writer of results and caches.

use std::io::Write;
use std::path::Path;

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A reader (or a crash) sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
