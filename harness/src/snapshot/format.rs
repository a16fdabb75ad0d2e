//! The insta snapshot file format, so that `cargo insta review` / `accept` work on our files:
//! a YAML header between `---` lines (`source`, `expression`), then the contents.
//!
//! Written here rather than through insta: insta's writer is test-harness machinery (its
//! metadata type cannot be built outside the crate); its reader is used in our tests to prove
//! that insta accepts what we write.

use std::path::Path;

/// Header fields and contents of one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    /// The suite file the snapshot comes from, relative to the workspace.
    pub source: String,
    /// `<suite> / <case> / <name>`.
    pub expression: String,
    /// Always ends with exactly one newline.
    pub contents: String,
}

impl SnapFile {
    pub fn render(&self) -> String {
        format!(
            "---\nsource: {}\nexpression: {}\n---\n{}",
            yaml_scalar(&self.source),
            yaml_scalar(&self.expression),
            with_one_newline(&self.contents)
        )
    }

    /// Parse a file we (or insta) wrote. `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("---\n")?;
        let end = rest.find("\n---\n")?;
        let header = &rest[..end];
        let contents = &rest[end + 5..];
        let field = |name: &str| {
            header.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": "))).map(unquote)
        };
        Some(Self {
            source: field("source").unwrap_or_default(),
            expression: field("expression").unwrap_or_default(),
            contents: with_one_newline(contents),
        })
    }

    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Self::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn with_one_newline(s: &str) -> String {
    format!("{}\n", s.trim_end_matches('\n'))
}

/// A one-line YAML scalar: plain when safe, double-quoted otherwise.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " ./_-@,".contains(c))
        && !s.starts_with([' ', '-', '@'])
        && !s.ends_with(' ');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapFile {
        SnapFile {
            source: "suites/lifecycle.yaml".into(),
            expression: "lifecycle / load-enable-disable-remove / after-enable".into(),
            contents: "/sys/kernel/livepatch:\n  drwxr-xr-x klp_ref_cmdline/\n".into(),
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(SnapFile::parse(&s.render()), Some(s));
        let q = SnapFile { expression: "a: \"b\"".into(), ..sample() };
        assert_eq!(SnapFile::parse(&q.render()), Some(q));
    }

    #[test]
    fn insta_reads_what_we_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lifecycle__load__after-enable@6.1.0-56-amd64.snap");
        std::fs::write(&p, sample().render()).unwrap();
        let snap = insta::Snapshot::from_file(&p).unwrap();
        assert_eq!(snap.metadata().expression(), Some("lifecycle / load-enable-disable-remove / after-enable"));
        assert_eq!(snap.metadata().source(), Some("suites/lifecycle.yaml"));
        let text = snap.contents().as_text().unwrap().to_string();
        assert_eq!(text.trim_end(), sample().contents.trim_end());
    }
}
