//! `cargo xtask kernels list|update`: the pins of `images/kernels.yaml` against the cache and
//! against what the Debian archive has now.

use std::path::Path;

use super::pins::{self, Pins};
use super::{apt::AptRoot, DebianFetcher};
use crate::progress::Progress;

/// A table of every pin: suite, ABI, package version, whether it is cached, and what the
/// archive's meta package of its flavour points to now.
pub fn list(pins: &Result<Pins, String>, cache: &Path, refresh: bool, progress: &Progress) -> Result<(), String> {
    let pins = pins.as_ref().map_err(Clone::clone)?;
    let fetcher = DebianFetcher::new(cache);
    let mut rows = vec![["pin", "suite", "abi", "version", "cached", "archive now"].map(String::from).to_vec()];
    for pin in &pins.kernels {
        if refresh {
            AptRoot::new(cache, &pin.suite).and_then(|a| a.ensure(true, progress)).map_err(|e| e.to_string())?;
        }
        let cached = match fetcher.cached(&pin.abi) {
            Some(k) if k.version == pin.version => "yes".to_string(),
            Some(k) => format!("other version ({})", k.version),
            None => "no".into(),
        };
        let now = match fetcher.current_abi(&pin.suite, pin.flavour(), progress) {
            Ok((abi, v)) if abi == pin.abi && v == pin.version => "= pinned".to_string(),
            Ok((abi, v)) => format!("{abi} {v}"),
            Err(e) => format!("unknown: {e}"),
        };
        let mut name = pin.name.clone();
        if pins.default == pin.name {
            name.push_str(" (default)");
        }
        rows.push(vec![name, pin.suite.clone(), pin.abi.clone(), pin.version.clone(), cached, now]);
    }
    print!("{}", table(&rows));
    println!("matrix: {}", pins.matrix.join(" "));
    Ok(())
}

/// Move every pin to what its suite's meta package points to now, on the same kernel line.
pub fn update(pins: &Result<Pins, String>, cache: &Path, dry_run: bool, progress: &Progress) -> Result<(), String> {
    let pins = pins.as_ref().map_err(Clone::clone)?;
    let fetcher = DebianFetcher::new(cache);
    let mut text = std::fs::read_to_string(&pins.path).map_err(|e| format!("reading {}: {e}", pins.path.display()))?;
    let mut refreshed = std::collections::BTreeSet::new();
    let mut changed = 0;
    for pin in &pins.kernels {
        if refreshed.insert(pin.suite.clone()) {
            AptRoot::new(cache, &pin.suite).and_then(|a| a.ensure(true, progress)).map_err(|e| e.to_string())?;
        }
        let (abi, version) = fetcher.current_abi(&pin.suite, pin.flavour(), progress).map_err(|e| e.to_string())?;
        if abi == pin.abi && version == pin.version {
            println!("{}: {} {} (unchanged)", pin.name, pin.abi, pin.version);
            continue;
        }
        if pins::line_of(&abi) != pin.line() {
            println!(
                "{}: stays at {} {}: {} now ships {abi} ({version}), another kernel line; pin it under a new name",
                pin.name, pin.abi, pin.version, pin.suite
            );
            continue;
        }
        println!("{}: {} {} -> {abi} {version}", pin.name, pin.abi, pin.version);
        text = pins::rewrite_pin(&text, pins, &pin.name, &abi, &version).ok_or_else(|| {
            format!("{}: cannot find the `abi:` and `version:` lines of pin {}", pins.path.display(), pin.name)
        })?;
        changed += 1;
    }
    if changed == 0 {
        println!("every pin is current");
        return Ok(());
    }
    if dry_run {
        println!("{changed} pin(s) would move (--dry-run: {} not written)", pins.path.display());
        return Ok(());
    }
    // Check the result parses before it replaces the file.
    Pins::parse(&pins.path, &text).map_err(|e| format!("the rewritten pins do not parse: {e}"))?;
    crate::fsutil::write_atomic(&pins.path, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", pins.path.display()))?;
    println!(
        "{changed} pin(s) moved in {}; new releases have no stored snapshots yet: run \
         `cargo xtask conformance --kernel <pin> --snapshots accept` and review the diff",
        pins.path.display()
    );
    Ok(())
}

/// Columns padded to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, s)| format!("{s:<w$}", w = widths[i])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads() {
        let t = super::table(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "d".into()]]);
        assert_eq!(t, "a    bb\nccc  d\n");
    }
}
