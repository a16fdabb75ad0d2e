//! `snapshots diff`: what appeared, disappeared and changed between two kernels' snapshot
//! sets, case by case.

use std::collections::BTreeMap;
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

/// The report, and whether the two sets differ.
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
    let mut keys: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();

    // Group by case (`<suite>__<case>`), in order.
    let mut by_case: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut same, mut differ) = (0usize, 0usize);
    for k in keys {
        let (case, name) = k.rsplit_once("__").unwrap_or(("?", k));
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
    if differ == 0 {
        out.push_str(&format!("no difference: all {same} snapshots are identical\n"));
        return Ok((out, false));
    }
    for (case, lines) in by_case {
        out.push_str(&format!("{case}:\n"));
        for l in lines {
            out.push_str(&l);
        }
    }
    out.push_str(&format!("{differ} differ, {same} identical\n"));
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
        assert!(text.contains("force / d:\n  appeared new (only in B)"), "{text}");
        assert!(text.contains("lifecycle / c:\n  changed changed:"), "{text}");
        assert!(text.contains("-enabled = 1") && text.contains("+enabled = 0"), "{text}");
        assert!(text.contains("  disappeared gone (only in A)"), "{text}");
        assert!(text.ends_with("3 differ, 1 identical\n"), "{text}");
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
