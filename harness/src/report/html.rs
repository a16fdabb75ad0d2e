//! `report.html`: one self-contained page (inline CSS and JavaScript, nothing fetched) for
//! people: a cases × kernels matrix with filters, and per case the failing step with its diff,
//! the step timeline, snapshot diffs; per kernel its version notes and divergences; the SPEC
//! coverage; benchmark tables when a run has them.
//!
//! The page is `reports/html/report.html.tmpl` with `report.css` and `report.js` inlined
//! (compiled in with `include_str!`), and the data as one JSON blob in a
//! `<script type="application/json">` that the script reads: `{"report": <report.json>,
//! "extras": {...}}`. The blob has `<`, `>`, `&` and U+2028/U+2029 written as `\uXXXX`, so no
//! text in a report (a console line, an expected value) can close the script element or be
//! read as markup; the script only ever puts data into text nodes and attributes.

use serde::Serialize;

use crate::report::model::{Report, Status};

const TEMPLATE: &str = include_str!("../../../reports/html/report.html.tmpl");
const STYLE: &str = include_str!("../../../reports/html/report.css");
const SCRIPT: &str = include_str!("../../../reports/html/report.js");

/// What the page shows beyond `report.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extras {
    /// Who wrote the page (`klp-conform <version>`).
    pub generated_by: String,
    /// **Benchmark hook**: tables of a benchmark run, rendered in the page's "Benchmarks"
    /// section (hidden when empty) by `renderBenchmarks()` in `report.js`.
    pub benchmarks: Vec<BenchTable>,
}

/// One benchmark table: a title, column headings and rows of cells.
#[derive(Debug, Clone, Serialize)]
pub struct BenchTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize)]
struct Data<'a> {
    report: &'a Report,
    extras: &'a Extras,
}

/// The page for `report`.
pub fn render(report: &Report, extras: &Extras) -> String {
    let mut extras = extras.clone();
    if extras.generated_by.is_empty() {
        extras.generated_by = format!("klp-conform {}", env!("CARGO_PKG_VERSION"));
    }
    let json = serde_json::to_string(&Data { report, extras: &extras }).expect("report types always serialise");
    // The data goes in last, so nothing in it is taken for a placeholder.
    TEMPLATE
        .replace("{{TITLE}}", &escape_html(&title(report)))
        .replace("{{STYLE}}", STYLE.trim_end())
        .replace("{{SCRIPT}}", SCRIPT.trim_end())
        .replace("{{DATA}}", &script_safe(&json))
}

/// `klp-conform: 3 failed, 12 passed — 6.1.0-57-amd64`.
fn title(report: &Report) -> String {
    let s = &report.summary;
    let counts: Vec<String> = [(s.fail, "failed"), (s.error, "errors"), (s.pass, "passed"), (s.skip, "skipped")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    let kernels: Vec<&str> = report.runs.iter().map(super::junit::kernel_label).collect();
    let verdict = if report.runs.iter().flat_map(|r| &r.cases).any(|c| matches!(c.status, Status::Fail | Status::Error))
    {
        "✗"
    } else {
        "✓"
    };
    format!("{verdict} klp-conform: {} — {}", counts.join(", "), kernels.join(", "))
}

/// JSON that can sit inside `<script>`: only the characters that could end the element or
/// start markup are rewritten, as JSON escapes (they only ever occur inside JSON strings).
pub fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script() {
        let r = super::super::sample::report();
        let page = render(&r, &Extras::default());
        // The sample's `actual` holds "</script><script>alert(1)</script>".
        let data_start = page.find("<script type=\"application/json\" id=\"report-data\">").unwrap();
        let data_end = data_start + page[data_start..].find("</script>").unwrap();
        let blob = &page[data_start + page[data_start..].find('>').unwrap() + 1..data_end];
        assert!(!blob.contains('<') && !blob.contains('>'), "raw markup characters in the data");
        let back: serde_json::Value = serde_json::from_str(blob).unwrap();
        assert_eq!(back["report"], serde_json::to_value(&r).unwrap(), "the blob is the report, unchanged");
        assert_eq!(page.matches("<script").count(), 2, "exactly the data and the code");
    }

    #[test]
    fn self_contained() {
        let page = render(&super::super::sample::report(), &Extras::default());
        for needle in ["{{", "http://", "https://", "<link", " src=", "@import", "url("] {
            assert!(!page.contains(needle), "{needle} in the page");
        }
        assert!(page.contains("<title>✗ klp-conform: 3 failed, 2 errors, 3 passed, 2 skipped — 6.1.0-57-amd64, 6.12.95+deb12-amd64</title>"));
    }
}
