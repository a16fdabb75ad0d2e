//! Where a YAML input file (a suite, the guest recipe) is wrong: file:line:column, the message
//! and the offending line with a caret, from serde-saphyr's errors and spans.

use std::path::Path;

use serde_saphyr::Location;

/// A located problem in a YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// The source line with a caret under the column (or serde-saphyr's own rendering).
    pub snippet: String,
}

impl Located {
    /// A parse or type error of serde-saphyr, with the file named instead of `<input>`.
    pub fn from_saphyr(path: &Path, e: &serde_saphyr::Error) -> Self {
        let rendered = e.to_string();
        // The crate renders "error: line L column C: <message>" followed by a source snippet
        // that names the input `<input>`; keep the message and the snippet, name the real file.
        let mut lines = rendered.lines();
        let head = lines.next().unwrap_or_default();
        let message = match head.split_once(": ").map(|(_, rest)| rest) {
            Some(rest) if rest.starts_with("line ") => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
            Some(rest) => rest,
            None => head,
        }
        .to_string();
        let snippet = lines.collect::<Vec<_>>().join("\n").replace("<input>", &path.display().to_string());
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        Self { line, column, message, snippet }
    }

    /// A rule the types cannot express, broken at `loc` of `text`.
    pub fn at(text: &str, loc: Location, message: String) -> Self {
        let (line, column) = (loc.line(), loc.column());
        let snippet = text
            .lines()
            .nth(line.saturating_sub(1) as usize)
            .map(|l| format!("{line:>4} | {l}\n     | {}^", " ".repeat(column.saturating_sub(1) as usize)))
            .unwrap_or_default();
        Self { line, column, message, snippet }
    }

    /// `\n<snippet>` or nothing, to follow the one-line message.
    pub fn snippet_suffix(snippet: &str) -> String {
        if snippet.is_empty() {
            String::new()
        } else {
            format!("\n{snippet}")
        }
    }
}
