//! `snapshots matrix`: one table, cases × kernels. The first kernel is the baseline; every
//! other cell says whether that kernel's snapshots of the case are identical to the baseline's,
//! changed (how many of them), or absent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::diff::load_release;

/// One kernel's view of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Cell {
    /// The baseline kernel's own column: how many snapshots it has of the case.
    Baseline { snapshots: usize },
    /// Every snapshot of the case has the same contents as the baseline's.
    Identical { snapshots: usize },
    /// `changed` of them differ, `appeared`/`disappeared` exist on one side only.
    Changed { changed: usize, appeared: usize, disappeared: usize },
    /// This kernel has no snapshot of the case (not run, skipped, or gated).
    Absent,
}

impl Cell {
    fn short(&self) -> String {
        match self {
            Cell::Baseline { snapshots } => format!("baseline ({snapshots})"),
            Cell::Identical { .. } => "identical".into(),
            Cell::Changed { changed, appeared, disappeared } => {
                let mut parts = Vec::new();
                if *changed > 0 {
                    parts.push(format!("{changed} changed"));
                }
                if *appeared > 0 {
                    parts.push(format!("+{appeared}"));
                }
                if *disappeared > 0 {
                    parts.push(format!("-{disappeared}"));
                }
                format!("CHANGED {}", parts.join(" "))
            }
            Cell::Absent => "absent".into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub suite: String,
    pub case: String,
    /// One cell per kernel, in the matrix's kernel order.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub schema: &'static str,
    /// Kernel releases; the first is the baseline.
    pub kernels: Vec<String>,
    /// The names the user gave them (pins), same order.
    pub labels: Vec<String>,
    pub rows: Vec<Row>,
}

/// The matrix of `releases` (first = baseline) over every case any of them has snapshots of.
pub fn build(dir: &Path, releases: &[String], labels: &[String]) -> Result<Matrix, String> {
    if releases.is_empty() {
        return Err("no kernels to compare".into());
    }
    let sets = releases
        .iter()
        .map(|r| load_release(dir, r).map_err(|e| format!("reading {}: {e}", dir.display())))
        .collect::<Result<Vec<_>, _>>()?;
    // `<suite>__<case>` → the names of its snapshots, per kernel.
    let case_of = |k: &str| k.rsplit_once("__").map(|(c, _)| c.to_string()).unwrap_or_else(|| k.to_string());
    let cases: BTreeSet<String> = sets.iter().flat_map(|s| s.keys().map(|k| case_of(k))).collect();
    let mut rows = Vec::new();
    for case in cases {
        let of = |set: &BTreeMap<String, super::format::SnapFile>| -> BTreeMap<String, String> {
            set.iter().filter(|(k, _)| case_of(k) == case).map(|(k, f)| (k.clone(), f.contents.clone())).collect()
        };
        let base = of(&sets[0]);
        let mut cells = vec![if base.is_empty() { Cell::Absent } else { Cell::Baseline { snapshots: base.len() } }];
        for set in &sets[1..] {
            let mine = of(set);
            cells.push(if mine.is_empty() {
                Cell::Absent
            } else {
                let changed = mine.iter().filter(|(k, v)| base.get(*k).is_some_and(|b| b != *v)).count();
                let appeared = mine.keys().filter(|k| !base.contains_key(*k)).count();
                let disappeared = base.keys().filter(|k| !mine.contains_key(*k)).count();
                if changed + appeared + disappeared == 0 {
                    Cell::Identical { snapshots: mine.len() }
                } else {
                    Cell::Changed { changed, appeared, disappeared }
                }
            });
        }
        let (suite, name) = case.split_once("__").unwrap_or(("?", &case));
        rows.push(Row { suite: suite.into(), case: name.into(), cells });
    }
    Ok(Matrix { schema: "klp-conform.snapshot-matrix.v1", kernels: releases.to_vec(), labels: labels.to_vec(), rows })
}

impl Matrix {
    /// A terminal table: one row per case, one column per kernel, and a count per column.
    pub fn render(&self) -> String {
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut head = vec!["suite / case".to_string()];
        head.extend(
            self.labels.iter().zip(&self.kernels).map(|(l, k)| if l == k { k.clone() } else { format!("{l} ({k})") }),
        );
        table.push(head);
        for r in &self.rows {
            let mut line = vec![format!("{} / {}", r.suite, r.case)];
            line.extend(r.cells.iter().map(Cell::short));
            table.push(line);
        }
        let mut totals = vec!["changed / absent".to_string()];
        for i in 0..self.kernels.len() {
            let changed = self.rows.iter().filter(|r| matches!(r.cells[i], Cell::Changed { .. })).count();
            let absent = self.rows.iter().filter(|r| r.cells[i] == Cell::Absent).count();
            totals.push(if i == 0 { format!("- / {absent}") } else { format!("{changed} / {absent}") });
        }
        table.push(totals);
        let widths: Vec<usize> =
            (0..table[0].len()).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (i, r) in table.iter().enumerate() {
            let cells: Vec<String> = r.iter().enumerate().map(|(c, s)| format!("{s:<w$}", w = widths[c])).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if i == 0 || i + 2 == table.len() {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::format::SnapFile;

    fn put(dir: &Path, stem: &str, release: &str, contents: &str) {
        let f = SnapFile { source: "s".into(), expression: stem.into(), contents: contents.into() };
        std::fs::write(dir.join(format!("{stem}@{release}.snap")), f.render()).unwrap();
    }

    #[test]
    fn cells_compare_with_the_first_kernel() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "lifecycle__same__a", "A", "x\n");
        put(d.path(), "lifecycle__same__a", "B", "x\n");
        put(d.path(), "lifecycle__diff__a", "A", "x\n");
        put(d.path(), "lifecycle__diff__a", "B", "y\n");
        put(d.path(), "lifecycle__diff__b", "B", "z\n");
        put(d.path(), "replace__gated__a", "B", "z\n");
        let rel = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        let m = build(d.path(), &rel, &["6.1".into(), "6.12".into(), "C".into()]).unwrap();
        let row = |c: &str| m.rows.iter().find(|r| r.case == c).unwrap();
        assert_eq!(
            row("same").cells,
            [Cell::Baseline { snapshots: 1 }, Cell::Identical { snapshots: 1 }, Cell::Absent]
        );
        assert_eq!(row("diff").cells[1], Cell::Changed { changed: 1, appeared: 1, disappeared: 0 });
        assert_eq!(row("gated").cells[0], Cell::Absent);
        let text = m.render();
        assert!(text.contains("6.12 (B)"), "{text}");
        assert!(text.contains("lifecycle / diff  baseline (1)  CHANGED 1 changed +1  absent"), "{text}");
        assert!(text.contains("changed / absent  - / 1         2 / 0"), "{text}");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["rows"][0]["cells"][1]["state"], "changed");
    }
}
