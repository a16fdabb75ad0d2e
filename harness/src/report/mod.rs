//! Reporters: KTAP v1 on stdout as cases finish, and the result files of a run, each rendered
//! from the finished [`Report`] by its own module and written atomically:
//!
//! | file | module | consumed by |
//! |---|---|---|
//! | `report.json` | [`json`] | anything; schema `reports/schema/report.schema.json` |
//! | `junit.xml` | [`junit`] | Jenkins, GitLab (the Jenkins JUnit schema) |
//! | `kcidb.json` | [`kcidb`] | KernelCI's KCIDB (schema v5, as `kcidb-io` defines it) |
//! | `report.html` | [`html`] | people: one self-contained page |
//!
//! The writers only read the report (and nothing else), so a later step can render the same
//! files again from `report.json` files: [`merge`] does, for shards.

use std::path::{Path, PathBuf};

use crate::fsutil::write_atomic;
use crate::runner::RunError;

pub use model::*;

pub mod event;
pub mod html;
pub mod json;
pub mod junit;
pub mod kcidb;
pub mod ktap;
pub mod merge;
pub mod model;
#[doc(hidden)]
pub mod sample;

/// Where the result files of a run go, beyond `DIR/report.json` and `DIR/report.html`.
#[derive(Debug, Clone, Default)]
pub struct ResultFiles {
    /// `--junit FILE` [default: `DIR/junit.xml`].
    pub junit: Option<PathBuf>,
    /// `--kcidb FILE` [default: `DIR/kcidb.json`].
    pub kcidb: Option<PathBuf>,
    /// `--kcidb-url-base URL`: where `DIR` is published, for KCIDB's log and config URLs
    /// [default: `DIR` as a `file://` URL].
    pub kcidb_url_base: Option<url::Url>,
}

impl ResultFiles {
    /// Every file a run writes, in the order they are written (`report.json` last, so that a
    /// reader waiting for it finds the others complete).
    pub fn paths(&self, out_dir: &Path) -> Vec<PathBuf> {
        vec![
            self.junit.clone().unwrap_or_else(|| out_dir.join("junit.xml")),
            self.kcidb.clone().unwrap_or_else(|| out_dir.join("kcidb.json")),
            out_dir.join("report.html"),
            out_dir.join("report.json"),
        ]
    }
}

/// A result file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl From<WriteError> for RunError {
    fn from(e: WriteError) -> Self {
        RunError::Output { path: e.path, source: e.source }
    }
}

/// Before anything runs: every result file's directory exists (or is created) and takes a new
/// file, so that a typo in `--junit` is an error now, not after an hour of guests.
pub fn check_writable(out_dir: &Path, files: &ResultFiles) -> Result<(), WriteError> {
    for path in files.paths(out_dir) {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let probe = std::fs::create_dir_all(dir).and_then(|()| tempfile::NamedTempFile::new_in(dir).map(drop));
        if let Err(source) = probe {
            return Err(WriteError { path, source });
        }
        if path.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory");
            return Err(WriteError { path, source });
        }
    }
    Ok(())
}

/// Render and write every result file of `report` (each atomically).
pub fn write_all(report: &Report, out_dir: &Path, files: &ResultFiles) -> Result<(), WriteError> {
    let [junit_path, kcidb_path, html_path, json_path] =
        <[PathBuf; 4]>::try_from(files.paths(out_dir)).expect("four result files");
    let write = |path: PathBuf, data: String| {
        write_atomic(&path, data.as_bytes()).map_err(|source| WriteError { path, source })
    };
    write(junit_path, junit::render(report))?;
    let base = match &files.kcidb_url_base {
        Some(b) => b.clone(),
        None => kcidb::file_url_base(out_dir).map_err(|source| WriteError { path: out_dir.to_path_buf(), source })?,
    };
    write(kcidb_path, kcidb::render_string(report, &base))?;
    write(html_path, html::render(report, &html::Extras::default()))?;
    write(json_path, json::render(report))
}

/// The kernel's `.config` kept beside the logs (`kernels/<release>/config`), so that the
/// reports can link it; its path relative to `out_dir`, or `None` (said on `progress`).
pub fn keep_kernel_config(
    out_dir: &Path,
    kernel: &crate::kernel::Kernel,
    progress: &crate::progress::Progress,
) -> Option<String> {
    let rel = PathBuf::from("kernels").join(&kernel.release).join("config");
    let kept = std::fs::read(&kernel.config).and_then(|data| write_atomic(&out_dir.join(&rel), &data));
    match kept {
        Ok(()) => Some(rel.display().to_string()),
        Err(e) => {
            progress.note(format!("not keeping the config of {}: {}: {e}", kernel.release, kernel.config.display()));
            None
        }
    }
}

/// Text for XML 1.0 and for KCIDB (which forbids NUL): control characters other than tab,
/// newline and carriage return (a console excerpt may carry any byte) become U+FFFD.
pub(crate) fn clean_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && !matches!(c, '\t' | '\n' | '\r') { '\u{FFFD}' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_destination_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where a directory should be: no one, not even root, can write there.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let files = ResultFiles { junit: Some(blocker.join("junit.xml")), ..Default::default() };
        let e = check_writable(dir.path(), &files).unwrap_err();
        assert_eq!(e.path, blocker.join("junit.xml"));
        let e = RunError::from(e);
        assert!(e.to_string().contains(&blocker.join("junit.xml").display().to_string()), "{e}");
        // A directory given as the file.
        let files = ResultFiles { kcidb: Some(dir.path().to_path_buf()), ..Default::default() };
        assert_eq!(check_writable(dir.path(), &files).unwrap_err().path, dir.path());
        // Nothing was left behind by the probes.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(clean_text("a\u{1b}[0mb\0\tc\n"), "a\u{FFFD}[0mb\u{FFFD}\tc\n");
    }
}
