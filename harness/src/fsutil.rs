//! File-system helpers shared by every writer of results and caches.

use std::io::Write;
use std::path::Path;

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A reader (or a crash) sees the old file or the new one, never half of one.
///
/// A full disk or an unwritable place comes back as an error whose message names `path`, the
/// bytes it needed and the bytes free (its kind is kept: `StorageFull`, `PermissionDenied`…);
/// the temporary file is removed, the old file (if any) stays.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| {
        if is_space_or_permission(&e) {
            std::io::Error::new(e.kind(), describe_io_error(&e, path, Some(data.len() as u64)))
        } else {
            e
        }
    })
}

/// Bytes free (for an unprivileged writer) on the file system holding `path` (or its nearest
/// existing ancestor).
pub fn free_space(path: &Path) -> Option<u64> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if cur.exists() {
            let c = std::ffi::CString::new(cur.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: statvfs is plain old data, for which all-zero bytes are a valid value.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: statvfs writes into the struct we own; the path is NUL-terminated.
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return None;
            }
            return Some(st.f_bavail as u64 * st.f_frsize as u64);
        }
        p = cur.parent();
    }
    None
}

/// A byte count for people: `512 B`, `6.2 MB`, `1.4 GB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n < 1000 => format!("{n} B"),
        n if n < 1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// An I/O error on `path` in words that say what to do: a full disk names the path, how much
/// was to be written (`needed`, when known) and how much is free; an unwritable place names
/// the path and the user. Other errors: the path and the error.
pub fn describe_io_error(e: &std::io::Error, path: &Path, needed: Option<u64>) -> String {
    use std::io::ErrorKind as K;
    // By kind, not errno: tempfile wraps the OS error (`… at path <tmp>`) but keeps its kind.
    match e.kind() {
        K::StorageFull | K::QuotaExceeded => {
            let free = free_space(path).map(|f| format!("{} free", human_bytes(f)));
            let need = needed.map(|n| format!("{} needed", human_bytes(n)));
            let detail: Vec<String> = [need, free].into_iter().flatten().collect();
            format!(
                "no space left on the device holding {}{}",
                path.display(),
                if detail.is_empty() { String::new() } else { format!(" ({})", detail.join(", ")) }
            )
        }
        K::PermissionDenied | K::ReadOnlyFilesystem => {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            let why = if e.kind() == K::ReadOnlyFilesystem { "read-only file system" } else { "permission denied" };
            format!("{} is not writable by uid {uid} ({why})", path.display())
        }
        _ => format!("{}: {e}", path.display()),
    }
}

/// Whether an I/O error means a full disk or an unwritable place (the run cannot go on
/// writing there, whatever it retries).
pub fn is_space_or_permission(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::StorageFull | K::QuotaExceeded | K::PermissionDenied | K::ReadOnlyFilesystem)
}

/// Whether a message carries one of [`describe_io_error`]'s full-disk or unwritable-place
/// phrases: a run that hits one while preparing a kernel stops at once (every later kernel and
/// case would write to the same place) instead of erroring case after case.
pub fn names_storage_failure(message: &str) -> bool {
    message.contains("no space left on the device holding ")
        || message.contains("no space left on a device the tool writes to")
        || message.contains(" is not writable by uid ")
}

/// An exclusive advisory lock on a file, held until dropped. Cache builders take one so that
/// two runs (or two parallel tests) never fill the same cache entry at once; the second waits
/// and then finds the entry complete.
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// A cache on a full or read-only disk fails here first: that error names the path and
    /// the space or the reason, like [`write_atomic`]'s.
    pub fn acquire(path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let describe = |e: std::io::Error| {
            if is_space_or_permission(&e) {
                std::io::Error::new(e.kind(), describe_io_error(&e, path, None))
            } else {
                e
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(describe)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(describe)?;
        // SAFETY: flock on a descriptor we own; the lock goes away with the descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/report.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn io_errors_name_the_path_and_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out/report.json");
        let full = describe_io_error(&std::io::Error::from_raw_os_error(libc::ENOSPC), &p, Some(6_200_000));
        assert!(full.starts_with(&format!("no space left on the device holding {} (6.2 MB needed, ", p.display())));
        assert!(full.ends_with(" free)"), "{full}");
        let ro = describe_io_error(&std::io::Error::from_raw_os_error(libc::EACCES), &p, None);
        // SAFETY: geteuid cannot fail and has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(ro, format!("{} is not writable by uid {uid} (permission denied)", p.display()));
        // As tempfile returns it: wrapped, the kind kept.
        let wrapped = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device at path /x/.tmp1");
        assert!(describe_io_error(&wrapped, &p, None).starts_with("no space left on the device holding "));
        assert!(free_space(&p).is_some(), "the nearest existing ancestor counts");
        assert_eq!(human_bytes(999), "999 B");
        assert!(is_space_or_permission(&std::io::Error::from_raw_os_error(libc::EROFS)));
        assert!(!is_space_or_permission(&std::io::Error::from_raw_os_error(libc::ENOENT)));
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    }

    #[test]
    fn lock_serialises_holders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let held = FileLock::acquire(&p).unwrap();
        let p2 = p.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _l = FileLock::acquire(&p2).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "second holder must wait");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
