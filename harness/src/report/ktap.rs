//! KTAP v1 (Documentation/dev-tools/ktap.rst) on stdout, streamed: the plan is known up front
//! (cases are parsed before anything runs), each case line is printed as the case ends.
//!
//! Shape: one top-level test per (kernel, suite), its cases as subtests:
//! ```text
//! KTAP version 1
//! 1..1
//!     KTAP version 1
//!     # Subtest: lifecycle
//!     # kernel: 6.1.0-56-amd64 (debian)
//!     1..2
//!     ok 1 load_enable_disable_remove
//!     # remove_while_enabled: step 3: unload …: expected EAGAIN, got success
//!     not ok 2 remove_while_enabled
//! not ok 1 lifecycle
//! ```

use std::io::Write;

use crate::report::model::{CaseOutcome, Status};

/// Writes KTAP to any sink (stdout in the CLI, a buffer in tests), flushing per line so a
/// CI log shows progress.
pub struct KtapWriter<W: Write> {
    out: W,
    top_index: usize,
    sub_index: usize,
    sub_failed: bool,
    sub_name: String,
}

const INDENT: &str = "    ";

impl<W: Write> KtapWriter<W> {
    pub fn new(mut out: W, top_level_tests: usize) -> std::io::Result<Self> {
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "1..{top_level_tests}")?;
        out.flush()?;
        Ok(Self { out, top_index: 0, sub_index: 0, sub_failed: false, sub_name: String::new() })
    }

    /// Open a suite (a top-level test) for one kernel.
    pub fn begin_suite(&mut self, suite: &str, kernel: &str, cases: usize) -> std::io::Result<()> {
        self.top_index += 1;
        self.sub_index = 0;
        self.sub_failed = false;
        self.sub_name = ktap_name(suite);
        writeln!(self.out, "{INDENT}KTAP version 1")?;
        writeln!(self.out, "{INDENT}# Subtest: {}", self.sub_name)?;
        writeln!(self.out, "{INDENT}# kernel: {}", one_line(kernel))?;
        writeln!(self.out, "{INDENT}1..{cases}")?;
        self.out.flush()
    }

    pub fn case(&mut self, c: &CaseOutcome) -> std::io::Result<()> {
        self.sub_index += 1;
        let name = ktap_name(&c.case);
        for line in diagnostics(c) {
            writeln!(self.out, "{INDENT}# {line}")?;
        }
        let (ok, directive) = match c.status {
            Status::Pass => ("ok", String::new()),
            Status::Skip => {
                ("ok", format!(" # SKIP {}", one_line(c.skip_reason.as_deref().unwrap_or("no reason given"))))
            }
            Status::Fail => ("not ok", String::new()),
            // One line CI dashboards show: what went wrong; the detail (a console excerpt) is in
            // the diagnostics above and in the logs.
            Status::Error => ("not ok", format!(" # ERROR {}", headline(c.error.as_deref().unwrap_or("")))),
        };
        if matches!(c.status, Status::Fail | Status::Error) {
            self.sub_failed = true;
        }
        writeln!(self.out, "{INDENT}{ok} {} {name}{directive}", self.sub_index)?;
        self.out.flush()
    }

    pub fn end_suite(&mut self) -> std::io::Result<()> {
        let ok = if self.sub_failed { "not ok" } else { "ok" };
        writeln!(self.out, "{ok} {} {}", self.top_index, self.sub_name)?;
        self.out.flush()
    }

    /// A top-level `# ` line (e.g. the SPEC coverage after the last suite).
    pub fn diagnostic(&mut self, text: &str) -> std::io::Result<()> {
        for line in text.lines() {
            writeln!(self.out, "# {line}")?;
        }
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// KTAP test names are one word: no spaces, no `#`.
fn ktap_name(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || c == '#' { '_' } else { c }).collect()
}

/// The first line of `s`, at most [`HEADLINE`] characters.
fn headline(s: &str) -> String {
    let first = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if first.chars().count() <= HEADLINE {
        return first.to_string();
    }
    let cut: String = first.chars().take(HEADLINE - 1).collect();
    format!("{}…", cut.trim_end())
}

/// How long a verdict line's reason may be.
const HEADLINE: usize = 160;

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// Why a case did not pass, as `# ` lines before its result line.
fn diagnostics(c: &CaseOutcome) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(f) = &c.failure {
        let at = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
        v.push(format!("{}: step {}{at}", c.case, f.step));
        v.push(format!("{}: expected: {}", c.case, one_line(&f.expected)));
        for (i, line) in f.actual.lines().enumerate() {
            let label = if i == 0 { "actual:  " } else { "         " };
            v.push(format!("{}: {label} {}", c.case, line.trim_end()));
        }
    }
    for snap in &c.snapshots {
        use crate::snapshot::SnapshotStatus::*;
        match snap.status {
            Matched => {}
            New => v.push(format!("{}: snapshot {}: new, nothing stored yet ({})", c.case, snap.name, snap.file)),
            Accepted => v.push(format!("{}: snapshot {}: stored ({})", c.case, snap.name, snap.file)),
            // The diff is already the failure's `actual`.
            Changed => {}
        }
    }
    for n in &c.notes {
        v.push(format!("{}: {}", c.case, n.trim_end()));
    }
    if let Some(d) = &c.divergence {
        v.push(format!("{}: DIVERGENCE from the documented contract: {}", c.case, one_line(d)));
    }
    if let Some(e) = &c.error {
        for line in e.lines() {
            v.push(format!("{}: error: {}", c.case, line.trim_end()));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Failure;

    fn outcome(case: &str, status: Status) -> CaseOutcome {
        let mut c = CaseOutcome::new("lifecycle", case, vec!["L1".into()]);
        c.status = status;
        c
    }

    #[test]
    fn verdict_lines_stay_short() {
        let long =
            format!("the VM did not start: guest died during boot: {}\n--- console ---\n[ 1.0] Oops", "x".repeat(300));
        let h = headline(&long);
        assert_eq!(h.chars().count(), HEADLINE);
        assert!(h.ends_with('…') && !h.contains("console"));
        assert_eq!(headline("\n  short\nmore"), "short");
    }

    #[test]
    fn streams_valid_ktap() {
        let mut w = KtapWriter::new(Vec::new(), 1).unwrap();
        w.begin_suite("lifecycle", "6.1.0-56-amd64 (debian)", 4).unwrap();
        w.case(&outcome("load-enable", Status::Pass)).unwrap();
        let mut f = outcome("remove-while-enabled", Status::Fail);
        f.failure = Some(Failure {
            step: "3: unload klp_ref_cmdline".into(),
            line: Some(40),
            expected: "failure with EAGAIN".into(),
            actual: "success".into(),
        });
        w.case(&f).unwrap();
        let mut s = outcome("skipped", Status::Skip);
        s.skip_reason = Some("kernel lacks stack_order".into());
        w.case(&s).unwrap();
        w.case(&outcome("broken", Status::Error).errored("VM did not boot\nconsole tail")).unwrap();
        w.end_suite().unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        insta::assert_snapshot!(text, @r"
        KTAP version 1
        1..1
            KTAP version 1
            # Subtest: lifecycle
            # kernel: 6.1.0-56-amd64 (debian)
            1..4
            ok 1 load-enable
            # remove-while-enabled: step 3: unload klp_ref_cmdline (line 40)
            # remove-while-enabled: expected: failure with EAGAIN
            # remove-while-enabled: actual:   success
            not ok 2 remove-while-enabled
            ok 3 skipped # SKIP kernel lacks stack_order
            # broken: error: VM did not boot
            # broken: error: console tail
            not ok 4 broken # ERROR VM did not boot
        not ok 1 lifecycle
        ");
    }
}
