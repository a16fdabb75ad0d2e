//! The pinned kernels of `images/kernels.yaml`: short names (`5.10`, `6.1`, `6.12`, `7.2`,
//! `6.1-rt`) for exact Debian packages, the default kernel, and the matrix.
//!
//! ```yaml
//! version: 1
//! default: "6.1"
//! matrix: ["5.10", "6.1", "6.12", "7.2"]
//! kernels:
//!   - name: "6.1"
//!     suite: bookworm            # the apt suite (family) it comes from
//!     abi: 6.1.0-57-amd64        # uname -r
//!     version: 6.1.192-3         # the package version
//! ```
//!
//! A pin names a package version, so the snapshots stored for its release stay comparable
//! until someone moves the pin on purpose (`cargo xtask kernels update`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::apt;

/// Where the pins live, relative to the checkout.
pub const KERNELS_FILE: &str = "images/kernels.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Spanned<u32>,
    default: Spanned<String>,
    matrix: Vec<Spanned<String>>,
    kernels: Vec<PinEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinEntry {
    name: Spanned<String>,
    suite: Spanned<String>,
    abi: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: String,
}

/// One pinned kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The short name (`6.1`, `6.1-rt`).
    pub name: String,
    /// The apt suite it comes from (see [`apt::suite_family`]).
    pub suite: String,
    /// `uname -r`.
    pub abi: String,
    /// The exact package version.
    pub version: String,
    pub description: String,
    /// The line in `images/kernels.yaml` (for `kernels update`'s edits and for messages).
    line: u64,
}

impl Pin {
    /// `amd64`, `rt-amd64` or `cloud-amd64`: the part of the ABI after the number.
    pub fn flavour(&self) -> &str {
        flavour_of(&self.abi)
    }

    /// `major.minor` of the ABI: the kernel line this pin stays on.
    pub fn line(&self) -> Option<String> {
        line_of(&self.abi)
    }
}

/// The flavour of a Debian kernel ABI (`6.1.0-57-rt-amd64` → `rt-amd64`).
pub fn flavour_of(abi: &str) -> &str {
    for f in ["rt-amd64", "cloud-amd64"] {
        if abi.ends_with(&format!("-{f}")) {
            return f;
        }
    }
    "amd64"
}

/// `major.minor` of an ABI or version (`6.12.95+deb12-amd64` → `6.12`).
pub fn line_of(abi: &str) -> Option<String> {
    let mut it = abi.split(['.', '-', '+']);
    let (major, minor) = (it.next()?, it.next()?);
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then(|| format!("{major}.{minor}"))
}

/// Every pin, the default and the matrix.
#[derive(Debug, Clone)]
pub struct Pins {
    pub path: PathBuf,
    pub default: String,
    pub matrix: Vec<String>,
    pub kernels: Vec<Pin>,
}

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("{}: cannot read the pinned kernels: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: u64, column: u64, message: String },
}

impl Pins {
    /// Read `<workspace>/images/kernels.yaml`.
    pub fn load_workspace(workspace: &Path) -> Result<Self, PinsError> {
        Self::load(&workspace.join(KERNELS_FILE))
    }

    pub fn load(path: &Path) -> Result<Self, PinsError> {
        let text = std::fs::read_to_string(path).map_err(|source| PinsError::Read { path: path.into(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, PinsError> {
        let invalid =
            |line: u64, column: u64, message: String| PinsError::Invalid { path: path.into(), line, column, message };
        let at = |s: &serde_saphyr::Location, message: String| invalid(s.line(), s.column(), message);
        let file: File = serde_saphyr::from_str(text).map_err(|e| {
            let (l, c) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            let msg = e.to_string();
            invalid(l, c, msg.lines().next().unwrap_or_default().to_string())
        })?;
        if file.version.value != 1 {
            return Err(at(
                &file.version.referenced,
                format!("unsupported version {}, expected 1", file.version.value),
            ));
        }
        let mut kernels: Vec<Pin> = Vec::new();
        for k in &file.kernels {
            let name = &k.name.value;
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                || matches!(name.as_str(), "matrix" | "debian")
            {
                return Err(at(
                    &k.name.referenced,
                    format!("pin name `{name}`: letters, digits, `.` and `-`, not `matrix` or `debian`"),
                ));
            }
            if kernels.iter().any(|p| &p.name == name) {
                return Err(at(&k.name.referenced, format!("a second pin named `{name}`")));
            }
            if !apt::valid_suite(&k.suite.value) {
                return Err(at(&k.suite.referenced, format!("`{}` is not a Debian suite name", k.suite.value)));
            }
            if line_of(&k.abi.value).is_none() || !k.abi.value.ends_with("amd64") {
                return Err(at(
                    &k.abi.referenced,
                    format!("`{}` is not a Debian amd64 kernel ABI (e.g. 6.1.0-57-amd64)", k.abi.value),
                ));
            }
            if k.version.value.is_empty() {
                return Err(at(&k.version.referenced, "the package version is empty".into()));
            }
            kernels.push(Pin {
                name: name.clone(),
                suite: k.suite.value.clone(),
                abi: k.abi.value.clone(),
                version: k.version.value.clone(),
                description: k.description.trim().to_string(),
                line: k.name.referenced.line(),
            });
        }
        let known = |s: &Spanned<String>| {
            if kernels.iter().any(|p| p.name == s.value) {
                Ok(())
            } else {
                Err(at(&s.referenced, format!("`{}` is not a pinned kernel", s.value)))
            }
        };
        known(&file.default)?;
        for m in &file.matrix {
            known(m)?;
        }
        Ok(Self {
            path: path.into(),
            default: file.default.value,
            matrix: file.matrix.into_iter().map(|m| m.value).collect(),
            kernels,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Pin> {
        self.kernels.iter().find(|p| p.name == name)
    }

    pub fn default_pin(&self) -> &Pin {
        self.get(&self.default).expect("validated at load")
    }

    pub fn names(&self) -> Vec<&str> {
        self.kernels.iter().map(|p| p.name.as_str()).collect()
    }
}

/// `text` with the pin `name`'s `abi` and `version` set: the rest of the file (comments,
/// order, quoting style) is kept as it is.
pub fn rewrite_pin(text: &str, pins: &Pins, name: &str, abi: &str, version: &str) -> Option<String> {
    let pin = pins.get(name)?;
    // The pin's keys are on the lines after its `name:` up to the next `- name:`.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let start = pin.line.saturating_sub(1) as usize;
    let mut done = (false, false);
    for (i, line) in lines.iter_mut().enumerate().skip(start) {
        if i > start && line.trim_start().starts_with("- ") {
            break;
        }
        for (key, value, flag) in [("abi:", abi, &mut done.0), ("version:", version, &mut done.1)] {
            let trimmed = line.trim_start().trim_start_matches("- ");
            if let Some(rest) = trimmed.strip_prefix(key) {
                let indent = &line[..line.len() - trimmed.len()];
                // Keep whatever follows the old value (spacing, a comment).
                let old = rest.trim_start();
                let tail = &old[old.find(char::is_whitespace).unwrap_or(old.len())..];
                *line = format!("{indent}{key} {value}{tail}");
                *flag = true;
                break;
            }
        }
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    (done.0 && done.1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# pins
version: 1
default: "6.1"
matrix: ["6.1", "7.2"]
kernels:
  - name: "6.1"
    suite: bookworm
    abi: 6.1.0-57-amd64   # the one bookworm-security ships
    version: 6.1.192-3
  - name: "7.2"
    suite: sid
    abi: 7.2.13+deb14-amd64
    version: 7.2.13-1
"#;

    fn pins() -> Pins {
        Pins::parse(Path::new("k.yaml"), TEXT).unwrap()
    }

    #[test]
    fn parses() {
        let p = pins();
        assert_eq!(p.default_pin().abi, "6.1.0-57-amd64");
        assert_eq!(p.matrix, ["6.1", "7.2"]);
        assert_eq!(p.get("7.2").unwrap().suite, "sid");
        assert_eq!(p.get("7.2").unwrap().line().as_deref(), Some("7.2"));
        assert_eq!(p.get("6.1").unwrap().flavour(), "amd64");
        assert_eq!(flavour_of("6.1.0-57-rt-amd64"), "rt-amd64");
        assert_eq!(line_of("6.12.95+deb12-amd64").as_deref(), Some("6.12"));
    }

    #[test]
    fn errors_are_located() {
        let bad = TEXT.replace("matrix: [\"6.1\", \"7.2\"]", "matrix: [\"6.1\", \"9.9\"]");
        let e = Pins::parse(Path::new("k.yaml"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("k.yaml:4:"), "{e}");
        assert!(e.contains("`9.9` is not a pinned kernel"), "{e}");
        let bad = TEXT.replace("suite: sid", "suite: Sid");
        assert!(Pins::parse(Path::new("k.yaml"), &bad).unwrap_err().to_string().starts_with("k.yaml:11:"));
        let bad = TEXT.replace("    version: 7.2.13-1\n", "    version: 7.2.13-1\n    flavor: rt\n");
        let e = Pins::parse(Path::new("k.yaml"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("k.yaml:14:"), "{e}");
    }

    #[test]
    fn rewrite_keeps_the_rest() {
        let p = pins();
        let out = rewrite_pin(TEXT, &p, "6.1", "6.1.0-58-amd64", "6.1.200-1").unwrap();
        assert!(out.contains("    abi: 6.1.0-58-amd64   # the one bookworm-security ships\n    version: 6.1.200-1\n"));
        assert!(out.contains("    abi: 7.2.13+deb14-amd64\n"), "other pins untouched");
        assert_eq!(out.lines().count(), TEXT.lines().count());
        assert!(rewrite_pin(TEXT, &p, "5.10", "x", "y").is_none());
    }
}
