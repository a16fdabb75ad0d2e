//! Cache entries are verified, not trusted.
//!
//! Every entry of the cache (an extracted kernel tree, an uncompressed vmlinux, a `core` build,
//! a module set, a toolchain root, a suite's apt lists, the accelerator probe) is an [`Entry`]:
//! a directory or a file, plus a *record* written atomically when the entry is complete:
//! what it was made from, and the size and an xxh3 hash of each of its files (whole files up
//! to [`FULL_HASH_LIMIT`], fixed samples of larger ones; see [`sum_file`]). Every use checks
//! the entry against its record first; a broken entry (a truncated or emptied file, a missing
//! one, a record that does not parse) is reported on one line, removed and rebuilt, never
//! used.
//!
//! ```text
//! <dir entry>/.klp-entry.json          record of a directory entry, inside it
//! <file entry>.klp-entry.json          record of a file entry, beside it
//! ```
//!
//! A directory entry built in a scratch dir and renamed into place gets its record inside the
//! scratch dir before the rename ([`Entry::record_in`]): it appears complete or not at all.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// The record's file name (inside a directory entry; a file entry's record is `<file>` + this).
pub const RECORD: &str = ".klp-entry.json";
const SCHEMA: &str = "klp-conform.cache-entry.v1";

/// Files up to this size are hashed whole.
pub const FULL_HASH_LIMIT: u64 = 64 * 1024;
/// Larger files: this many blocks of [`SAMPLE_BLOCK`] bytes, evenly spread, the first and the
/// last included, and the size. A truncated or emptied file is caught by its size, a file
/// overwritten in place by its samples; a single flipped byte between samples is not (a full
/// hash of the 20 000 files of a kernel tree on every run would cost seconds).
pub const SAMPLES: u64 = 16;
pub const SAMPLE_BLOCK: u64 = 4096;

/// The sum of one file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileSum {
    File {
        size: u64,
        xxh3: String,
    },
    Link {
        link: String,
    },
    /// A file whose size alone is recorded (see [`Entry::size_only`]).
    Size {
        size: u64,
    },
}

/// What an entry was made from and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// What kind of entry (`kernel tree`, `vmlinux`, `module set`, …), for people.
    pub kind: String,
    /// Its inputs, as its producer describes them.
    pub made_from: serde_json::Value,
    /// Unix seconds.
    pub created: u64,
    /// Relative path (`/`-separated) → sum.
    pub files: BTreeMap<String, FileSum>,
}

/// An entry's state against its record.
#[derive(Debug)]
pub enum Check {
    /// Neither entry nor record.
    Missing,
    /// The entry is there without a record: made by an older klp-conform, or a build that was
    /// interrupted before it was complete.
    Unrecorded,
    /// The entry does not match its record (or the record is unreadable): why.
    Broken(String),
    /// It matches.
    Ok(Record),
}

/// A cache entry: a directory or a single file, and where its record lives.
#[derive(Debug, Clone)]
pub struct Entry {
    path: PathBuf,
    record: PathBuf,
    kind: String,
    /// Relative paths (or their prefixes) inside a directory entry that are not recorded:
    /// files their owner rewrites (apt's own binary caches).
    exclude: Vec<String>,
    /// File name suffixes whose size alone is recorded: the kernel tree's 20 000 headers and
    /// modules (truncated, emptied or missing ones are still caught; hashing them all costs
    /// seconds per run).
    size_only: Vec<String>,
}

impl Entry {
    /// A directory entry; its record is inside it.
    pub fn dir(path: &Path, kind: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            record: path.join(RECORD),
            kind: kind.into(),
            exclude: Vec::new(),
            size_only: Vec::new(),
        }
    }

    /// A single-file entry; its record is beside it.
    pub fn file(path: &Path, kind: &str) -> Self {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(RECORD);
        Self {
            path: path.to_path_buf(),
            record: path.with_file_name(name),
            kind: kind.into(),
            exclude: Vec::new(),
            size_only: Vec::new(),
        }
    }

    /// Leave files below these relative paths out of the record.
    pub fn excluding(mut self, prefixes: &[&str]) -> Self {
        self.exclude = prefixes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Record only the size of files whose name ends with one of `suffixes`.
    pub fn size_only(mut self, suffixes: &[&str]) -> Self {
        self.size_only = suffixes.iter().map(|s| s.to_string()).collect();
        self
    }

    fn sum(&self, p: &Path, rel: &str) -> std::io::Result<FileSum> {
        if self.size_only.iter().any(|s| rel.ends_with(s.as_str())) {
            let m = p.symlink_metadata()?;
            if m.file_type().is_file() {
                return Ok(FileSum::Size { size: m.len() });
            }
        }
        sum_path(p)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record_path(&self) -> &Path {
        &self.record
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    fn is_dir_entry(&self) -> bool {
        self.record.parent() == Some(self.path.as_path())
    }

    /// The entry against its record.
    pub fn check(&self) -> Check {
        let text = match std::fs::read(&self.record) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if self.path.symlink_metadata().is_ok() { Check::Unrecorded } else { Check::Missing };
            }
            Err(e) => return Check::Broken(format!("its record {} is unreadable: {e}", self.record.display())),
        };
        let record: Record = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => return Check::Broken(format!("its record {} does not parse: {e}", self.record.display())),
        };
        if record.schema != SCHEMA {
            return Check::Broken(format!("its record has schema {:?}, not {SCHEMA}", record.schema));
        }
        if record.files.is_empty() {
            return Check::Broken("its record lists no files".into());
        }
        let mut problems = Vec::new();
        for (rel, want) in &record.files {
            let p = self.file_path(&self.path, rel);
            match self.sum(&p, rel) {
                Ok(got) if &got == want => {}
                Ok(got) => problems.push(describe_mismatch(rel, want, &got)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(format!("{rel} is missing")),
                Err(e) => problems.push(format!("{rel} is unreadable: {e}")),
            }
            if problems.len() > 20 {
                break;
            }
        }
        match problems.len() {
            0 => Check::Ok(record),
            1 => Check::Broken(problems.remove(0)),
            n => Check::Broken(format!("{} (and {} more)", problems[0], n - 1)),
        }
    }

    /// The gate before a use: `true` when the entry matches its record. A broken entry is
    /// reported on one line (`cache: <path> is broken (<why>): rebuilding`) and removed, so the
    /// caller rebuilds it; a missing or unrecorded one is left to the caller (`false`; see
    /// [`Entry::check`] to tell them apart).
    pub fn verify_for_use(&self, progress: &Progress) -> bool {
        match self.check() {
            Check::Ok(_) => true,
            Check::Missing | Check::Unrecorded => false,
            Check::Broken(why) => {
                self.discard(&why, progress);
                false
            }
        }
    }

    /// [`Entry::verify_for_use`] for entries that older klp-conform versions made without a
    /// record: an unrecorded entry that passes `legacy_ok` (the completeness check of before)
    /// is recorded now, as it is, and used; one that does not is an interrupted build, removed.
    pub fn verify_or_adopt(
        &self,
        progress: &Progress,
        legacy_ok: impl FnOnce() -> bool,
        made_from: impl FnOnce() -> serde_json::Value,
    ) -> bool {
        match self.check() {
            Check::Ok(_) => true,
            Check::Missing => false,
            Check::Broken(why) => {
                self.discard(&why, progress);
                false
            }
            Check::Unrecorded if legacy_ok() => {
                match self.record(made_from()) {
                    Ok(_) => progress.note(format!(
                        "cache: {} had no integrity record (made by an older klp-conform): checked and recorded",
                        self.path.display()
                    )),
                    Err(e) => progress.note(format!(
                        "cache: could not record {}: {}",
                        self.path.display(),
                        crate::fsutil::describe_io_error(&e, &self.record, None)
                    )),
                }
                true
            }
            Check::Unrecorded => {
                self.discard("incomplete: no record", progress);
                false
            }
        }
    }

    /// Report a broken entry on one line and remove it.
    fn discard(&self, why: &str, progress: &Progress) {
        progress.note(format!("cache: {} is broken ({why}): rebuilding", self.path.display()));
        if let Err(e) = self.remove() {
            progress.note(format!("cache: could not remove {}: {e}", self.path.display()));
        }
    }

    /// Record the entry as it is now (it must be complete): sums of its files and `made_from`.
    pub fn record(&self, made_from: serde_json::Value) -> std::io::Result<Record> {
        self.write_record(&self.path, &self.record, made_from)
    }

    /// Record a directory entry being built at `staging` (renamed to [`Entry::path`] later):
    /// the record is written inside `staging`, so it moves with it.
    pub fn record_in(&self, staging: &Path, made_from: serde_json::Value) -> std::io::Result<Record> {
        debug_assert!(self.is_dir_entry(), "record_in is for directory entries");
        self.write_record(staging, &staging.join(RECORD), made_from)
    }

    fn write_record(&self, base: &Path, record_path: &Path, made_from: serde_json::Value) -> std::io::Result<Record> {
        let files = if self.is_dir_entry() {
            let mut files = BTreeMap::new();
            self.walk(base, base, &mut files)?;
            files
        } else {
            BTreeMap::from([(file_key(base), sum_path(base)?)])
        };
        let record = Record {
            schema: SCHEMA.into(),
            kind: self.kind.clone(),
            made_from,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            files,
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
        crate::fsutil::write_atomic(record_path, &json)?;
        Ok(record)
    }

    /// Remove the record first (so that nothing half-removed passes as complete), then the
    /// entry.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let r = match self.path.symlink_metadata() {
            Ok(m) if m.is_dir() => crate::kmod::remove_tree(&self.path),
            Ok(_) => std::fs::remove_file(&self.path),
            Err(_) => Ok(()),
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Forget the record only (an entry about to be rewritten in place).
    pub fn forget(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn file_path(&self, base: &Path, rel: &str) -> PathBuf {
        if self.is_dir_entry() {
            base.join(rel)
        } else {
            base.to_path_buf()
        }
    }
}

/// A file entry's single key: its file name.
fn file_key(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

fn describe_mismatch(rel: &str, want: &FileSum, got: &FileSum) -> String {
    match (want, got) {
        (
            FileSum::File { size: w, .. } | FileSum::Size { size: w },
            FileSum::File { size: g, .. } | FileSum::Size { size: g },
        ) if w != g => {
            format!("{rel} is {g} bytes, recorded {w}")
        }
        (FileSum::File { .. }, FileSum::File { .. }) => format!("{rel} has other content than recorded"),
        (FileSum::Link { link: w }, FileSum::Link { link: g }) => format!("{rel} points to {g}, recorded {w}"),
        (FileSum::Link { .. }, _) => format!("{rel} is a file, recorded as a link"),
        (_, FileSum::Link { .. }) => format!("{rel} is a link, recorded as a file"),
        _ => format!("{rel} is recorded differently (size only, or hashed)"),
    }
}

impl Entry {
    /// Regular files and symlinks below `dir` (symlinks are not followed); other file types
    /// (the device nodes of a toolchain root) and the record itself are left out.
    fn walk(&self, base: &Path, dir: &Path, out: &mut BTreeMap<String, FileSum>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(base).expect("below base").to_string_lossy().into_owned();
            if rel == RECORD || self.exclude.iter().any(|x| rel == *x || rel.starts_with(&format!("{x}/"))) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                self.walk(base, &p, out)?;
            } else if ft.is_file() || ft.is_symlink() {
                let sum = self.sum(&p, &rel)?;
                out.insert(rel, sum);
            }
        }
        Ok(())
    }
}

/// The sum of one path: a symlink's target, or a regular file's size and xxh3.
pub fn sum_path(p: &Path) -> std::io::Result<FileSum> {
    let m = p.symlink_metadata()?;
    if m.file_type().is_symlink() {
        return Ok(FileSum::Link { link: std::fs::read_link(p)?.to_string_lossy().into_owned() });
    }
    let (size, h) = sum_file(p)?;
    Ok(FileSum::File { size, xxh3: format!("{h:016x}") })
}

/// Size and xxh3-64 of a file: of all of it up to [`FULL_HASH_LIMIT`], else of its size and
/// [`SAMPLES`] blocks of [`SAMPLE_BLOCK`] bytes at evenly spread offsets (first and last
/// included). At most 64 KiB are read per file.
pub fn sum_file(p: &Path) -> std::io::Result<(u64, u64)> {
    let mut f = std::fs::File::open(p)?;
    let size = f.metadata()?.len();
    let mut h = twox_hash::XxHash3_64::new();
    h.write(&size.to_le_bytes());
    if size <= FULL_HASH_LIMIT {
        let mut buf = Vec::with_capacity(size as usize);
        f.read_to_end(&mut buf)?;
        if buf.len() as u64 != size {
            return Err(std::io::Error::other(format!("changed size while read ({} of {size} bytes)", buf.len())));
        }
        h.write(&buf);
    } else {
        let mut buf = vec![0u8; SAMPLE_BLOCK as usize];
        let last = size - SAMPLE_BLOCK;
        for i in 0..SAMPLES {
            let off = last * i / (SAMPLES - 1);
            f.seek(SeekFrom::Start(off))?;
            f.read_exact(&mut buf)?;
            h.write(&buf);
        }
    }
    Ok((size, h.finish()))
}

/// The entries under a cache dir, by its layout: what `cargo xtask cache verify` walks.
pub fn entries(cache: &Path) -> Vec<Entry> {
    let subdirs = |rel: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(cache.join(rel))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut out = Vec::new();
    for d in subdirs("kernels") {
        out.push(kernel_tree(&d));
    }
    for d in subdirs("boot") {
        if d.join("vmlinux").exists() || d.join(format!("vmlinux{RECORD}")).exists() {
            out.push(vmlinux(&d.join("vmlinux")));
        }
        let mut states: Vec<PathBuf> = std::fs::read_dir(&d)
            .map(|rd| {
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "vmstate")).collect()
            })
            .unwrap_or_default();
        states.sort();
        out.extend(states.iter().map(|p| saved_guest(p)));
    }
    for d in subdirs("rust-core") {
        out.push(rust_core(&d));
    }
    for rel in subdirs("modules") {
        for d in subdirs(&format!("modules/{}", rel.file_name().unwrap_or_default().to_string_lossy())) {
            out.push(module_set(&d));
        }
    }
    for d in subdirs("toolchains") {
        out.push(toolchain_root(&d));
    }
    for d in subdirs("apt") {
        out.push(apt_lists(&d));
    }
    for d in subdirs("src") {
        out.push(crate::kernel::source::entry(&d));
    }
    for rel in subdirs("upstream") {
        for d in subdirs(&format!("upstream/{}", rel.file_name().unwrap_or_default().to_string_lossy())) {
            out.push(crate::upstream::entry(&d));
        }
    }
    let probe = cache.join(crate::vm::accel::CACHE_FILE);
    if probe.exists() {
        out.push(accel_probe(&probe));
    }
    out
}

/// `cargo xtask cache verify`: every entry against its record, one line each, and a summary.
/// Returns how many are broken.
pub fn verify_all(cache: &Path, out: &mut dyn std::io::Write) -> std::io::Result<usize> {
    let (mut ok, mut broken, mut unrecorded) = (0, 0, 0);
    let entries = entries(cache);
    for e in &entries {
        let rel = e.path.strip_prefix(cache).unwrap_or(&e.path).display().to_string();
        let t = std::time::Instant::now();
        match e.check() {
            Check::Ok(r) => {
                ok += 1;
                writeln!(
                    out,
                    "ok          {rel}  ({}, {} files, checked in {:.2} s)",
                    e.kind,
                    r.files.len(),
                    t.elapsed().as_secs_f64()
                )?;
            }
            Check::Broken(why) => {
                broken += 1;
                writeln!(out, "broken      {rel}  ({}): {why}", e.kind)?;
            }
            Check::Unrecorded => {
                unrecorded += 1;
                writeln!(
                    out,
                    "unrecorded  {rel}  ({}): no integrity record (made by an older klp-conform, or an interrupted \
                     build); its next use checks it the old way and records it, or rebuilds it",
                    e.kind
                )?;
            }
            Check::Missing => {}
        }
    }
    writeln!(
        out,
        "{} entries in {}: {ok} ok, {broken} broken, {unrecorded} unrecorded",
        ok + broken + unrecorded,
        cache.display()
    )?;
    Ok(broken)
}

/// `cargo xtask cache clean`: remove the entries of the kernels of `releases` (their tree,
/// vmlinux and module sets), or with no release every entry. Returns the paths removed.
pub fn clean(cache: &Path, releases: Option<&[String]>) -> Result<Vec<PathBuf>, String> {
    let mut targets = Vec::new();
    match releases {
        Some(rels) => {
            for r in rels {
                for p in [
                    cache.join("kernels").join(r),
                    cache.join("boot").join(r),
                    cache.join("modules").join(r),
                    cache.join("upstream").join(r),
                ] {
                    targets.push(p);
                }
            }
        }
        None => {
            for d in ["kernels", "boot", "modules", "rust-core", "toolchains", "apt", "src", "upstream"] {
                targets.push(cache.join(d));
            }
            targets.push(cache.join(crate::vm::accel::CACHE_FILE));
            targets.push(cache.join(format!("{}{RECORD}", crate::vm::accel::CACHE_FILE)));
        }
    }
    let all = entries(cache);
    let mut removed = Vec::new();
    for p in targets {
        let r = match p.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                // Records first, so that an interrupted clean leaves nothing that passes as
                // complete.
                for e in all.iter().filter(|e| e.path.starts_with(&p)) {
                    let _ = e.forget();
                }
                crate::kmod::remove_tree(&p)
            }
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => continue,
        };
        r.map_err(|e| format!("removing {}: {e}", p.display()))?;
        removed.push(p);
    }
    Ok(removed)
}

// The entries of each producer, in one place so that `cache verify` and the producers agree.

/// `<cache>/kernels/<abi>/`: the extracted packages (`root/`) and `kernel.json`.
pub fn kernel_tree(dir: &Path) -> Entry {
    Entry::dir(dir, "kernel tree")
        .excluding(&["debs", "root.partial"])
        .size_only(&[".h", ".ko", ".ko.xz", ".ko.zst", ".ko.gz", "Kconfig"])
}

/// `<cache>/boot/<release>/vmlinux`.
pub fn vmlinux(file: &Path) -> Entry {
    Entry::file(file, "vmlinux")
}

/// `<cache>/boot/<release>/guest-<key>.vmstate`: a booted guest saved for restoring (what
/// `--shared-guest` runs start their cases from).
pub fn saved_guest(file: &Path) -> Entry {
    Entry::file(file, "saved guest")
}

/// `<cache>/rust-core/<release>-<key>/`.
pub fn rust_core(dir: &Path) -> Entry {
    Entry::dir(dir, "rust core")
}

/// `<cache>/modules/<release>/<key>/`.
pub fn module_set(dir: &Path) -> Entry {
    Entry::dir(dir, "module set")
}

/// `<cache>/toolchains/<suite>-<key>/`.
pub fn toolchain_root(dir: &Path) -> Entry {
    // The root's /tmp and /var are a build's scratch; apt and dpkg state are not used after
    // the root is made.
    Entry::dir(dir, "toolchain root").excluding(&["root/tmp", "root/var", "root/run", "root/dev", "root/proc"])
}

/// `<cache>/apt/<suite>/`: the source list and apt's lists (its binary caches are its own).
pub fn apt_lists(dir: &Path) -> Entry {
    Entry::dir(dir, "apt lists").excluding(&["cache", "lists/partial", "lists/lock"])
}

/// `<cache>/accel-probe.json`.
pub fn accel_probe(file: &Path) -> Entry {
    Entry::file(file, "accelerator probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Entry) {
        let dir = tempfile::tempdir().unwrap();
        let e = dir.path().join("entry");
        std::fs::create_dir_all(e.join("sub")).unwrap();
        std::fs::write(e.join("small"), b"hello").unwrap();
        std::fs::write(e.join("sub/big"), vec![7u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink("small", e.join("link")).unwrap();
        let entry = Entry::dir(&e, "test");
        (dir, entry)
    }

    #[test]
    fn a_recorded_entry_checks_ok_until_it_is_damaged() {
        let (_d, entry) = setup();
        assert!(matches!(entry.check(), Check::Unrecorded));
        let r = entry.record(serde_json::json!({"from": "test"})).unwrap();
        assert_eq!(r.files.len(), 3, "{:?}", r.files);
        assert!(matches!(entry.check(), Check::Ok(_)));

        // Truncated.
        let big = entry.path().join("sub/big");
        std::fs::write(&big, vec![7u8; 1000]).unwrap();
        match entry.check() {
            Check::Broken(why) => assert_eq!(why, "sub/big is 1000 bytes, recorded 1048576"),
            other => panic!("{other:?}"),
        }
        // Same size, other content in a sampled block.
        let mut data = vec![7u8; 1 << 20];
        data[(1 << 20) - 1] = 0;
        std::fs::write(&big, &data).unwrap();
        assert!(matches!(entry.check(), Check::Broken(w) if w.contains("other content")));
        std::fs::write(&big, vec![7u8; 1 << 20]).unwrap();
        assert!(matches!(entry.check(), Check::Ok(_)));

        // A small file changed by one byte; a link retargeted; a file gone.
        std::fs::write(entry.path().join("small"), b"hellO").unwrap();
        assert!(matches!(entry.check(), Check::Broken(w) if w.contains("small has other content")));
        std::fs::write(entry.path().join("small"), b"hello").unwrap();
        std::fs::remove_file(entry.path().join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", entry.path().join("link")).unwrap();
        assert!(matches!(entry.check(), Check::Broken(w) if w == "link points to elsewhere, recorded small"));
        std::fs::remove_file(entry.path().join("link")).unwrap();
        std::fs::remove_file(entry.path().join("small")).unwrap();
        assert!(matches!(entry.check(), Check::Broken(w) if w == "link is missing (and 1 more)"));
    }

    #[test]
    fn a_corrupt_record_is_broken_and_the_gate_removes_the_entry() {
        let (_d, entry) = setup();
        entry.record(serde_json::Value::Null).unwrap();
        std::fs::write(entry.record_path(), b"{not json").unwrap();
        assert!(matches!(entry.check(), Check::Broken(w) if w.contains("does not parse")));
        assert!(!entry.verify_for_use(&Progress::quiet()));
        assert!(!entry.path().exists());
        assert!(matches!(entry.check(), Check::Missing));
    }

    #[test]
    fn file_entries_keep_their_record_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vmlinux");
        std::fs::write(&f, vec![1u8; 300_000]).unwrap();
        let e = vmlinux(&f);
        assert_eq!(e.record_path(), dir.path().join("vmlinux.klp-entry.json"));
        e.record(serde_json::json!("bz")).unwrap();
        assert!(e.verify_for_use(&Progress::quiet()));
        // Emptied, as by a crash or a full disk.
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(e.check(), Check::Broken(w) if w == "vmlinux is 0 bytes, recorded 300000"));
        assert!(!e.verify_for_use(&Progress::quiet()));
        assert!(!f.exists() && !e.record_path().exists());
    }

    #[test]
    fn staged_records_move_with_the_rename_and_exclusions_hold() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".build-x");
        std::fs::create_dir_all(staging.join("cache")).unwrap();
        std::fs::write(staging.join("lists"), b"l").unwrap();
        std::fs::write(staging.join("cache/pkgcache.bin"), b"c").unwrap();
        let final_dir = dir.path().join("bookworm");
        let e = apt_lists(&final_dir);
        let r = e.record_in(&staging, serde_json::Value::Null).unwrap();
        assert_eq!(r.files.keys().collect::<Vec<_>>(), ["lists"]);
        std::fs::rename(&staging, &final_dir).unwrap();
        std::fs::write(final_dir.join("cache/pkgcache.bin"), b"rewritten by apt").unwrap();
        assert!(matches!(e.check(), Check::Ok(_)));
    }

    #[test]
    fn the_layout_lists_every_kind_of_entry() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path();
        for d in ["kernels/6.1.0-1-amd64", "boot/6.1.0-1-amd64", "rust-core/1.0-ab", "modules/6.1.0-1-amd64/0123"] {
            std::fs::create_dir_all(c.join(d)).unwrap();
        }
        std::fs::create_dir_all(c.join("modules/6.1.0-1-amd64/.build-x")).unwrap();
        std::fs::write(c.join("boot/6.1.0-1-amd64/vmlinux"), b"x").unwrap();
        std::fs::write(c.join("accel-probe.json"), b"{}").unwrap();
        let kinds: Vec<String> = entries(c).iter().map(|e| e.kind().to_string()).collect();
        assert_eq!(kinds, ["kernel tree", "vmlinux", "rust core", "module set", "accelerator probe"]);
    }
}
