//! What a snapshot holds, gathered through the agent and normalised: the whole
//! /sys/kernel/livepatch tree, `refcnt` and `taint` of the case's modules, the kernel's tainted
//! mask, and the livepatch lines of the kernel log since the case's guest booted. Nothing that
//! varies between two runs of the same kernel stays: no timestamps, pids, pointers or timings.

use std::sync::LazyLock;

use regex::Regex;

use crate::runner::exec::render_tree;
use crate::runner::guest::{Guest, GuestError};
use klp_protocol::taint::describe_taint;
use klp_protocol::KmsgRecord;

const LIVEPATCH_ROOT: &str = "/sys/kernel/livepatch";

pub fn capture(guest: &mut dyn Guest, modules: &[String]) -> Result<String, GuestError> {
    let mut out = String::new();

    out.push_str(&format!("{LIVEPATCH_ROOT}:\n"));
    match guest.list_tree(LIVEPATCH_ROOT)? {
        Ok(entries) if entries.is_empty() => out.push_str("  (empty)\n"),
        Ok(entries) => indent_into(&mut out, &render_tree(&entries)),
        Err(e) => out.push_str(&format!("  ({})\n", e.name)),
    }

    out.push_str("modules:\n");
    for m in modules {
        let refcnt = guest.read_file(&format!("/sys/module/{m}/refcnt"))?;
        let line = match refcnt {
            Err(_) => format!("  {m}: not loaded\n"),
            Ok(r) => {
                let taint = guest.read_file(&format!("/sys/module/{m}/taint"))?.unwrap_or_default();
                format!("  {m}: refcnt {}, taint {}\n", r.trim(), or_none(taint.trim()))
            }
        };
        out.push_str(&line);
    }
    if modules.is_empty() {
        out.push_str("  (none)\n");
    }

    let tainted = guest.read_file("/proc/sys/kernel/tainted")?.unwrap_or_default();
    out.push_str(&format!("kernel tainted: {}\n", describe_taint(tainted.trim())));

    out.push_str("kernel log:\n");
    let lines = normalise_kmsg(&guest.read_kmsg(0)?, modules);
    if lines.is_empty() {
        out.push_str("  (no livepatch lines)\n");
    }
    for l in lines {
        out.push_str(&format!("  {l}\n"));
    }
    Ok(out)
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn indent_into(out: &mut String, text: &str) {
    for l in text.lines() {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
}

static PTR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(____ptrval____\)|\b(0x)?[0-9a-f]{16}\b|\b0x[0-9a-f]{8,}\b").unwrap());
static PID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\S):\d+ is ").unwrap());

/// The kernel log lines a snapshot keeps: the livepatch core's (`livepatch: …`, the
/// TAINT_LIVEPATCH notice) and those of the case's own modules (`<module>: …`), with pointers
/// and pids masked. Per-retry debug lines go: how many retries a transition needs depends on
/// timing. They are `klp_try_switch_task: …`, and before 6.1 also `klp_check_stack: …`
/// (version note T4).
pub fn normalise_kmsg(records: &[KmsgRecord], modules: &[String]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.text.trim_end())
        .filter(|t| !t.contains("klp_try_switch_task") && !t.contains("klp_check_stack: "))
        .filter(|t| {
            t.starts_with("livepatch: ")
                || t.contains("TAINT_LIVEPATCH")
                || modules.iter().any(|m| t.strip_prefix(m.as_str()).is_some_and(|r| r.starts_with(": ")))
        })
        .map(|t| PID.replace_all(&PTR.replace_all(t, "<ptr>"), "$1:<pid> is ").into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> KmsgRecord {
        KmsgRecord { seq: 0, level: 6, ts_us: 1234, text: text.into() }
    }

    #[test]
    fn keeps_livepatch_and_own_module_lines_masked() {
        let records = [
            rec("Linux version 6.1.0-56-amd64"),
            rec("klp_ref_cmdline: tainting kernel with TAINT_LIVEPATCH"),
            rec("livepatch: enabling patch 'klp_ref_cmdline'"),
            rec("livepatch: klp_try_switch_task: klp_ref_busy:93 is sleeping on function klp_ref_busy_func"),
            rec("livepatch: klp_check_stack: klp_ref_busy:93 is sleeping on function klp_ref_busy_func"),
            rec("klp_ref_shadow: klp_shadow_get(obj=PTR1, id=0x1234) = PTR0"),
            rec("livepatch: Failed to construct shadow variable <(____ptrval____), 1236> (-22)"),
            rec("livepatch: Failed to construct shadow variable <00000000deadbeef, 1236> (-22)"),
            rec("klp_ref_shadowy: not ours"),
            rec("livepatch: 'p': foo:17 is running"),
        ];
        let mods = vec!["klp_ref_cmdline".to_string(), "klp_ref_shadow".to_string()];
        assert_eq!(
            normalise_kmsg(&records, &mods),
            vec![
                "klp_ref_cmdline: tainting kernel with TAINT_LIVEPATCH",
                "livepatch: enabling patch 'klp_ref_cmdline'",
                "klp_ref_shadow: klp_shadow_get(obj=PTR1, id=0x1234) = PTR0",
                "livepatch: Failed to construct shadow variable <<ptr>, 1236> (-22)",
                "livepatch: Failed to construct shadow variable <<ptr>, 1236> (-22)",
                "livepatch: 'p': foo:<pid> is running",
            ]
        );
    }

    #[test]
    fn taint_letters() {
        assert_eq!(describe_taint("45056"), "45056 (O E K)");
        assert_eq!(describe_taint("0"), "0");
        assert_eq!(describe_taint("512"), "512 (W)");
        assert_eq!(describe_taint("x"), "x");
    }
}
