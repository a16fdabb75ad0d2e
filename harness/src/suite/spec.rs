//! The assertion ids of the livepatch specification (`suites/spec/ids.yaml`) and coverage of
//! them by suites.

use std::collections::BTreeMap;
use std::path::Path;

/// Id → one-line summary, in SPEC.md order.
#[derive(Debug, Clone, Default)]
pub struct SpecIds {
    pub ids: Vec<(String, String)>,
}

impl SpecIds {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // A mapping keeps file order only through a list of pairs.
        let map: indexmap_like::Ordered =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { ids: map.0 })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.iter().any(|(i, _)| i == id)
    }
}

mod indexmap_like {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    /// A YAML mapping of strings, in file order.
    pub struct Ordered(pub Vec<(String, String)>);

    impl<'de> Deserialize<'de> for Ordered {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a mapping of assertion ids to summaries")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                    let mut v = Vec::new();
                    while let Some((k, val)) = m.next_entry::<String, String>()? {
                        v.push((k, val));
                    }
                    Ok(Ordered(v))
                }
            }
            d.deserialize_map(V)
        }
    }
}

/// Which ids a run checked: cited by a case that ran to a verdict (pass or fail), and which
/// were left out.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    pub total: usize,
    pub covered: Vec<String>,
    pub missing: Vec<String>,
}

impl Coverage {
    pub fn compute<'a>(spec: &SpecIds, checked: impl IntoIterator<Item = &'a str>) -> Self {
        let mut hit: BTreeMap<&str, bool> = spec.ids.iter().map(|(i, _)| (i.as_str(), false)).collect();
        for id in checked {
            if let Some(h) = hit.get_mut(id) {
                *h = true;
            }
        }
        let in_order = |want: bool| -> Vec<String> {
            spec.ids.iter().filter(|(i, _)| hit[i.as_str()] == want).map(|(i, _)| i.clone()).collect()
        };
        Self { total: spec.ids.len(), covered: in_order(true), missing: in_order(false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> SpecIds {
        SpecIds::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/spec/ids.yaml")).unwrap()
    }

    #[test]
    fn committed_list_is_in_order_and_complete() {
        let s = committed();
        assert_eq!(s.ids.len(), 82);
        assert_eq!(s.ids[0].0, "L1");
        assert_eq!(s.ids.last().unwrap().0, "FT3");
        // In step with the specification itself when it is at hand (CI has ../shared).
        let spec_md = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/SPEC.md");
        if let Ok(text) = std::fs::read_to_string(&spec_md) {
            let from_md: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("**"))
                .filter_map(|l| l.split_once(".**").map(|(id, _)| id.to_string()))
                .filter(|id| {
                    id.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && id.chars().last().is_some_and(|c| c.is_ascii_digit())
                })
                .collect();
            let ours: Vec<String> = s.ids.iter().map(|(i, _)| i.clone()).collect();
            assert_eq!(ours, from_md, "suites/spec/ids.yaml is out of step with {}", spec_md.display());
        } else {
            eprintln!("note: {} not found; only the committed list was checked", spec_md.display());
        }
    }

    #[test]
    fn coverage_counts_known_ids_only() {
        let s = SpecIds { ids: vec![("L1".into(), "".into()), ("L2".into(), "".into()), ("D1".into(), "".into())] };
        let c = Coverage::compute(&s, ["D1", "L1", "L1", "ZZ9"]);
        assert_eq!(c, Coverage { total: 3, covered: vec!["L1".into(), "D1".into()], missing: vec!["L2".into()] });
    }
}

/// `suites/spec/versions.yaml`: where a kernel line departs from SPEC.md (written against 6.1),
/// each from reading that kernel's source.
#[derive(Debug, Clone, Default)]
pub struct VersionNotes {
    pub notes: Vec<VersionNote>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VersionNote {
    /// The SPEC assertion it changes.
    pub id: String,
    /// The kernel versions it applies to, e.g. `< 5.18` or `>= 6.4, < 6.16`.
    pub kernels: String,
    pub change: String,
    /// The kernel source it was read from.
    pub source: String,
}

impl VersionNotes {
    pub fn load(path: &Path) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct File {
            version: u32,
            sources: Vec<String>,
            notes: Vec<VersionNote>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: File = serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for n in &f.notes {
            super::per_kernel::VersionRange::parse(&n.kernels)
                .map_err(|e| format!("{}: note on {}: {e}", path.display(), n.id))?;
        }
        Ok(Self { notes: f.notes })
    }

    /// The notes that apply to kernel version `v`.
    pub fn applying_to(&self, v: super::KernelVersion) -> Vec<VersionNote> {
        self.notes
            .iter()
            .filter(|n| super::per_kernel::VersionRange::parse(&n.kernels).is_ok_and(|r| r.contains(v)))
            .cloned()
            .collect()
    }
}
