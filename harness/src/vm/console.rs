//! Scanning the serial console (console.log) for the kernel's signs of trouble.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What kind of trouble the first suspicious console line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Panic,
    Oops,
    Bug,
    GeneralProtectionFault,
    Warning,
    CallTrace,
}

/// The first sign of trouble on the console, with the lines around it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsoleProblem {
    pub kind: ProblemKind,
    /// Whether the console also shows a kernel panic (anywhere, not only at the first hit).
    pub panicked: bool,
    /// 1-based line number of the first hit in console.log.
    pub line: usize,
    /// About 30 lines: a few before the first hit, the rest after it.
    pub excerpt: String,
}

/// Markers, in the words the kernel prints them (6.1: `__die_header`, `__warn`, `panic`,
/// `report_bug`, `die_addr`, `show_trace_log_lvl`).
const MARKERS: &[(&str, ProblemKind)] = &[
    ("Kernel panic - not syncing", ProblemKind::Panic),
    ("Oops: ", ProblemKind::Oops),
    ("kernel BUG at ", ProblemKind::Bug),
    ("BUG: ", ProblemKind::Bug),
    ("general protection fault", ProblemKind::GeneralProtectionFault),
    ("WARNING: ", ProblemKind::Warning),
    ("Call Trace:", ProblemKind::CallTrace),
];

const BEFORE: usize = 5;
const AFTER: usize = 25;
const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// The first problem in `text`, if any.
pub fn scan_console(text: &str) -> Option<ConsoleProblem> {
    scan_for(text, |_| true)
}

/// The first sign that the kernel itself is in trouble: an oops, BUG, general protection
/// fault, WARNING or panic. Not a bare call trace: the kernel also prints those for reports
/// that do not mean it failed (`irq N: nobody cared`, a hung task).
pub fn fatal_problem(text: &str) -> Option<ConsoleProblem> {
    scan_for(text, |k| k != ProblemKind::CallTrace)
}

fn scan_for(text: &str, wanted: impl Fn(ProblemKind) -> bool) -> Option<ConsoleProblem> {
    let lines: Vec<&str> = text.lines().collect();
    let (idx, kind) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| MARKERS.iter().find(|&&(m, k)| wanted(k) && l.contains(m)).map(|&(_, k)| (i, k)))?;
    let start = idx.saturating_sub(BEFORE);
    let end = (idx + AFTER).min(lines.len());
    Some(ConsoleProblem {
        kind,
        panicked: text.contains(PANIC_MARKER),
        line: idx + 1,
        excerpt: lines[start..end].join("\n"),
    })
}

/// Whether the console shows a kernel panic (the guest is gone even if QEMU still runs).
pub fn shows_panic(text: &str) -> bool {
    text.contains(PANIC_MARKER)
}

/// The last `n` lines.
pub fn tail(text: &str, n: usize) -> String {
    crate::tools::tail(text, n)
}

/// console.log read incrementally: each [`ConsoleLog::refresh`] appends what QEMU wrote since.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    text: String,
    offset: u64,
}

impl ConsoleLog {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), text: String::new(), offset: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what was appended; returns whether anything was.
    pub fn refresh(&mut self) -> bool {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return false };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= self.offset {
            return false;
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        if f.take(len - self.offset).read_to_end(&mut buf).is_err() {
            return false;
        }
        self.offset += buf.len() as u64;
        // Serial output carries `\r\n`; the kernel never prints a lone `\r` that matters here.
        self.text.push_str(&String::from_utf8_lossy(&buf).replace('\r', ""));
        !buf.is_empty()
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "\
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)
[    0.000000] Command line: console=ttyS0 panic=-1
[    1.204518] Freeing unused kernel image (initmem) memory: 2960K
[    1.310002] Run /init as init process
[    1.401113] klp-agent: serving on /dev/vport0p1 (virtio:org.klp-conform.agent, opened in 12 ms)
";

    const OOPS: &str = "\
[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   12.345901] #PF: supervisor read access in kernel mode
[   12.346012] #PF: error_code(0x0000) - not-present page
[   12.346120] PGD 0 P4D 0
[   12.346230] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   12.346345] CPU: 1 PID: 1 Comm: init Tainted: G           OE K    6.1.0-56-amd64 #1  Debian 6.1.192-2
[   12.346460] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   12.346570] RIP: 0010:livepatch_cmdline_proc_show+0x12/0x30 [livepatch_sample]
[   12.346690] Call Trace:
[   12.346780]  <TASK>
[   12.346890]  seq_read_iter+0x11f/0x460
[   12.347000]  proc_reg_read_iter+0x50/0x90
[   12.347110]  vfs_read+0x1a9/0x2d0
[   12.347220]  </TASK>
[   12.347330] ---[ end trace 0000000000000000 ]---
[   12.347440] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009
[   12.347550] Kernel Offset: 0x2a000000 from 0xffffffff81000000
";

    #[test]
    fn clean_boot_has_no_problem() {
        assert_eq!(scan_console(BOOT), None);
        assert!(!shows_panic(BOOT));
    }

    #[test]
    fn oops_then_panic() {
        let text = format!("{BOOT}{OOPS}");
        let p = scan_console(&text).unwrap();
        assert_eq!(p.kind, ProblemKind::Bug);
        assert!(p.panicked);
        assert_eq!(p.line, 6);
        let lines: Vec<_> = p.excerpt.lines().collect();
        // Five lines before the hit (the whole boot), the hit and everything after it.
        assert_eq!(lines.len(), 5 + 17);
        assert!(lines[0].contains("Linux version"));
        assert!(p.excerpt.contains("RIP: 0010:livepatch_cmdline_proc_show"));
        assert!(p.excerpt.contains("Kernel panic - not syncing: Attempted to kill init!"));
    }

    #[test]
    fn warning_is_found_and_not_fatal() {
        let text = format!(
            "{BOOT}[    5.1] ------------[ cut here ]------------\n\
             [    5.2] WARNING: CPU: 0 PID: 57 at kernel/livepatch/transition.c:123 klp_complete_transition+0x1/0x2\n\
             [    5.3] Modules linked in: klp_test(OEK)\n[    5.4] Call Trace:\n"
        );
        let p = scan_console(&text).unwrap();
        assert_eq!(p.kind, ProblemKind::Warning);
        assert!(!p.panicked);
        assert_eq!(p.line, 7);
    }

    #[test]
    fn sysrq_crash_panic() {
        let text = format!(
            "{BOOT}[    8.0] sysrq: Trigger a crash\n[    8.1] Kernel panic - not syncing: sysrq triggered crash\n\
             [    8.2] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\n"
        );
        let p = scan_console(&text).unwrap();
        assert_eq!(p.kind, ProblemKind::Panic);
        assert!(p.excerpt.starts_with("[    0.000000] Command line"), "{}", p.excerpt);
        assert!(p.excerpt.contains("sysrq: Trigger a crash"));
    }

    #[test]
    fn a_bare_call_trace_is_not_fatal() {
        let text = format!(
            "{BOOT}[   41.7] irq 3: nobody cared (try booting with the \"irqpoll\" option)\n\
             [   41.7] Call Trace:\n[   41.7]  dump_stack_lvl+0x44/0x5c\n[   41.7] Disabling IRQ #3\n"
        );
        assert_eq!(scan_console(&text).unwrap().kind, ProblemKind::CallTrace);
        assert_eq!(fatal_problem(&text), None);
        let later = format!("{text}{OOPS}");
        let p = fatal_problem(&later).unwrap();
        assert_eq!((p.kind, p.line), (ProblemKind::Bug, 10));
        assert!(p.excerpt.contains("BUG: kernel NULL pointer dereference"));
    }

    #[test]
    fn gpf() {
        let p = scan_console("a\ngeneral protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP\n")
            .unwrap();
        assert_eq!(p.kind, ProblemKind::GeneralProtectionFault);
    }

    #[test]
    fn log_is_read_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        let mut log = ConsoleLog::new(&p);
        assert!(!log.refresh());
        std::fs::write(&p, "one\r\n").unwrap();
        assert!(log.refresh());
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"two\r\n").unwrap();
        assert!(log.refresh());
        assert!(!log.refresh());
        assert_eq!(log.text(), "one\ntwo\n");
    }
}
