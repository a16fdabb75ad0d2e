//! `snapshots diff`: what appeared, disappeared and changed between two kernels' snapshot
//! sets, case by case.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::format::SnapFile;

/// The snapshots of one release: `<suite>__<case>__<name>` → file.
pub fn load_release(dir: &Path, release: &str) -> std::io::Result<BTreeMap<String, SnapFile>> {
    let suffix = format!("@{release}.snap");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(&suffix) {
            if let Some(f) = SnapFile::read(&e.path())? {
                out.insert(stem.to_string(), f);
            }
        }
    }
    Ok(out)
}

/// The report, and whether the two sets differ. As in `snapshots matrix`, a case with no
/// snapshot at all on one side was not run there (skipped on that kernel, or outside a partial
/// run such as a tree's `--suite lifecycle`): it is listed once as absent, not as a difference.
pub fn diff_releases(dir: &Path, a: &str, b: &str) -> Result<(String, bool), String> {
    let load = |r: &str| -> Result<BTreeMap<String, SnapFile>, String> {
        let set = load_release(dir, r).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        if set.is_empty() {
            return Err(format!(
                "no snapshots for kernel {r} in {}; take them with `cargo xtask conformance --kernel … --snapshots accept`",
                dir.display()
            ));
        }
        Ok(set)
    };
    let (sa, sb) = (load(a)?, load(b)?);
    let case_of = |k: &str| k.rsplit_once("__").map_or(k.to_string(), |(c, _)| c.to_string());
    let cases_a: BTreeSet<String> = sa.keys().map(|k| case_of(k)).collect();
    let cases_b: BTreeSet<String> = sb.keys().map(|k| case_of(k)).collect();
    let mut keys: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();

    // Group by case (`<suite>__<case>`), in order.
    let mut by_case: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut same, mut differ) = (0usize, 0usize);
    for k in keys {
        let (case, name) = k.rsplit_once("__").unwrap_or(("?", k));
        if !(cases_a.contains(case) && cases_b.contains(case)) {
            continue;
        }
        let case_label = case.replace("__", " / ");
        let line = match (sa.get(k), sb.get(k)) {
            (Some(x), Some(y)) if x.contents == y.contents => {
                same += 1;
                continue;
            }
            (Some(x), Some(y)) => {
                let d = similar::TextDiff::from_lines(&x.contents, &y.contents);
                let body = d.unified_diff().context_radius(2).header(a, b).to_string();
                format!("  changed {name}:\n{}", indent(&body, "    "))
            }
            (Some(_), None) => format!("  disappeared {name} (only in {a})\n"),
            (None, Some(_)) => format!("  appeared {name} (only in {b})\n"),
            (None, None) => unreachable!(),
        };
        differ += 1;
        by_case.entry(case_label).or_default().push(line);
    }
    let mut out = format!("snapshots of {a} (-) against {b} (+): {} compared\n", same + differ);
    for (case, lines) in by_case {
        out.push_str(&format!("{case}:\n"));
        for l in lines {
            out.push_str(&l);
        }
    }
    let absent = |mine: &BTreeSet<String>, other: &BTreeSet<String>| -> Vec<String> {
        mine.difference(other).map(|c| c.replace("__", "/")).collect()
    };
    let mut absent_total = 0;
    for (there, not_there, cases) in [(a, b, absent(&cases_a, &cases_b)), (b, a, absent(&cases_b, &cases_a))] {
        if !cases.is_empty() {
            absent_total += cases.len();
            out.push_str(&format!(
                "absent: {} case(s) with snapshots only for {there}, not run on {not_there}: {}\n",
                cases.len(),
                cases.join(", ")
            ));
        }
    }
    let absent_note =
        if absent_total > 0 { format!("; {absent_total} case(s) absent on one side") } else { String::new() };
    if differ == 0 {
        out.push_str(&format!("no difference: all {same} snapshots are identical{absent_note}\n"));
        return Ok((out, false));
    }
    out.push_str(&format!("{differ} differ, {same} identical{absent_note}\n"));
    Ok((out, true))
}

fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, stem: &str, release: &str, contents: &str) {
        let f = SnapFile { source: "s".into(), expression: stem.into(), contents: contents.into() };
        std::fs::write(dir.join(format!("{stem}@{release}.snap")), f.render()).unwrap();
    }

    #[test]
    fn reports_appeared_disappeared_changed() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "lifecycle__c__same", "A", "x\n");
        put(d.path(), "lifecycle__c__same", "B", "x\n");
        put(d.path(), "lifecycle__c__changed", "A", "enabled = 1\n");
        put(d.path(), "lifecycle__c__changed", "B", "enabled = 0\n");
        put(d.path(), "lifecycle__c__gone", "A", "x\n");
        put(d.path(), "force__d__new", "B", "x\n");
        let (text, differ) = diff_releases(d.path(), "A", "B").unwrap();
        assert!(differ);
        // A case with no snapshot on one side was not run there: absent, not a difference.
        assert!(!text.contains("force / d:"), "{text}");
        assert!(text.contains("absent: 1 case(s) with snapshots only for B, not run on A: force/d\n"), "{text}");
        assert!(text.contains("lifecycle / c:\n  changed changed:"), "{text}");
        assert!(text.contains("-enabled = 1") && text.contains("+enabled = 0"), "{text}");
        assert!(text.contains("  disappeared gone (only in A)"), "{text}");
        assert!(text.ends_with("2 differ, 1 identical; 1 case(s) absent on one side\n"), "{text}");
    }

    /// A partial run (a tree's `--suite lifecycle`) against a full one: only what both ran.
    #[test]
    fn cases_run_on_one_side_only_do_not_make_a_difference() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "lifecycle__c__a", "A", "x\n");
        put(d.path(), "lifecycle__c__a", "B+tree", "x\n");
        put(d.path(), "force__d__held", "A", "y\n");
        put(d.path(), "force__e__held", "A", "y\n");
        let (text, differ) = diff_releases(d.path(), "A", "B+tree").unwrap();
        assert!(!differ, "{text}");
        assert!(
            text.contains("absent: 2 case(s) with snapshots only for A, not run on B+tree: force/d, force/e"),
            "{text}"
        );
        assert!(
            text.ends_with("no difference: all 1 snapshots are identical; 2 case(s) absent on one side\n"),
            "{text}"
        );
    }

    #[test]
    fn identical_sets_say_so() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "lifecycle__c__a", "A", "x\n");
        put(d.path(), "lifecycle__c__a", "B", "x\n");
        let (text, differ) = diff_releases(d.path(), "A", "B").unwrap();
        assert!(!differ);
        assert!(text.contains("no difference: all 1 snapshots are identical"), "{text}");
        assert!(diff_releases(d.path(), "A", "C").unwrap_err().contains("no snapshots for kernel C"));
    }
}
