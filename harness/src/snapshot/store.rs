//! Stored snapshots: one file per (suite, case, snapshot, kernel release), compared with what a
//! run captured. `check` fails a case on a difference; `review` additionally leaves `.snap.new`
//! files for `cargo insta review`; `accept` stores what the run saw.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::SnapFile;
use crate::fsutil::write_atomic;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// Compare; a difference fails the case (what CI uses).
    #[default]
    Check,
    /// Compare, fail on a difference, and leave `.snap.new` files for `cargo insta review`.
    Review,
    /// Store what this run saw as the reference.
    Accept,
}

#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// `suites/snapshots` of the checkout.
    pub dir: PathBuf,
    pub mode: SnapshotMode,
    /// A missing snapshot fails the case instead of being reported as new.
    pub require: bool,
    /// Write `.snap.new` next to a missing or different snapshot (review mode; check mode
    /// outside CI, as insta does).
    pub write_pending: bool,
    /// Store a snapshot that has no stored counterpart yet (status `accepted`), and compare the
    /// ones that have: what users' own modules get, whose first run is their reference.
    pub store_new: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    /// Identical to the stored snapshot.
    Matched,
    /// No stored snapshot for this kernel release yet.
    New,
    /// Different from the stored snapshot.
    Changed,
    /// Stored by `--snapshots accept` (it was new or different).
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub name: String,
    /// Relative to the checkout.
    pub file: String,
    pub status: SnapshotStatus,
    /// For `changed`: unified diff, stored → this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// What identifies one snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotKey<'a> {
    /// The suite file, relative to the checkout (`suites/lifecycle.yaml`).
    pub source: &'a str,
    pub suite: &'a str,
    pub case: &'a str,
    pub name: &'a str,
    pub release: &'a str,
}

impl SnapshotKey<'_> {
    /// insta's naming (`<prefix>__<name>@<suffix>.snap`) with the release as the suffix.
    pub fn file_name(&self) -> String {
        format!("{}__{}__{}@{}.snap", self.suite, self.case, self.name, self.release)
    }

    pub fn expression(&self) -> String {
        format!("{} / {} / {}", self.suite, self.case, self.name)
    }
}

impl SnapshotSettings {
    /// Compare `contents` with the stored snapshot and act on it as the mode says.
    pub fn compare(&self, key: &SnapshotKey, contents: &str) -> std::io::Result<SnapshotResult> {
        let path = self.dir.join(key.file_name());
        let pending = pending_path(&path);
        let fresh = SnapFile {
            source: key.source.to_string(),
            expression: key.expression(),
            contents: super::format::with_one_newline(contents),
        };
        let stored = SnapFile::read(&path)?;
        let file = shown_path(&path);
        let mut result =
            SnapshotResult { name: key.name.to_string(), file, status: SnapshotStatus::Matched, diff: None };

        if stored.as_ref().is_some_and(|s| s.contents == fresh.contents) {
            remove_if_present(&pending)?;
            return Ok(result);
        }
        if self.mode == SnapshotMode::Accept || (self.store_new && stored.is_none()) {
            write_atomic(&path, fresh.render().as_bytes())?;
            remove_if_present(&pending)?;
            result.status = SnapshotStatus::Accepted;
            return Ok(result);
        }
        match &stored {
            None => result.status = SnapshotStatus::New,
            Some(s) => {
                result.status = SnapshotStatus::Changed;
                let stored_label = format!("stored {}", result.file);
                let d = similar::TextDiff::from_lines(&s.contents, &fresh.contents);
                result.diff = Some(d.unified_diff().context_radius(3).header(&stored_label, "this run").to_string());
            }
        }
        if self.write_pending {
            write_atomic(&pending, fresh.render().as_bytes())?;
        }
        Ok(result)
    }
}

/// A path as a user would refer to it: relative to the current directory when below it.
fn shown_path(p: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd).unwrap_or(p).display().to_string()
}

fn pending_path(snap: &Path) -> PathBuf {
    let mut s = snap.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SnapshotKey<'static> {
        SnapshotKey {
            source: "suites/lifecycle.yaml",
            suite: "lifecycle",
            case: "c",
            name: "after-enable",
            release: "6.1.0-56-amd64",
        }
    }

    fn settings(dir: &Path, mode: SnapshotMode, write_pending: bool) -> SnapshotSettings {
        SnapshotSettings { dir: dir.to_path_buf(), mode, require: false, write_pending, store_new: false }
    }

    #[test]
    fn new_then_accepted_then_matched_then_changed() {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("lifecycle__c__after-enable@6.1.0-56-amd64.snap");
        let pending = d.path().join("lifecycle__c__after-enable@6.1.0-56-amd64.snap.new");

        let r = settings(d.path(), SnapshotMode::Check, true).compare(&key(), "a\nb\n").unwrap();
        assert_eq!(r.status, SnapshotStatus::New);
        assert!(pending.exists() && !snap.exists());

        let r = settings(d.path(), SnapshotMode::Accept, false).compare(&key(), "a\nb\n").unwrap();
        assert_eq!(r.status, SnapshotStatus::Accepted);
        assert!(snap.exists() && !pending.exists());

        let r = settings(d.path(), SnapshotMode::Check, false).compare(&key(), "a\nb").unwrap();
        assert_eq!(r.status, SnapshotStatus::Matched);

        let r = settings(d.path(), SnapshotMode::Check, false).compare(&key(), "a\nc\n").unwrap();
        assert_eq!(r.status, SnapshotStatus::Changed);
        let diff = r.diff.unwrap();
        assert!(diff.contains("-b\n") && diff.contains("+c\n"), "{diff}");
        assert!(!pending.exists(), "check without write_pending leaves no .snap.new");
        // The stored file is untouched by check.
        assert!(std::fs::read_to_string(&snap).unwrap().ends_with("a\nb\n"));
    }

    #[test]
    fn store_new_keeps_the_first_and_checks_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotSettings { store_new: true, ..settings(d.path(), SnapshotMode::Check, false) };
        assert_eq!(s.compare(&key(), "a\n").unwrap().status, SnapshotStatus::Accepted);
        assert_eq!(s.compare(&key(), "a\n").unwrap().status, SnapshotStatus::Matched);
        assert_eq!(s.compare(&key(), "b\n").unwrap().status, SnapshotStatus::Changed);
    }
}
