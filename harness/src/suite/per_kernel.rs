//! Expectations that differ between kernel versions, in the smallest form the suite format
//! allows: a value is either the same on every kernel, or a map from version ranges to values.
//!
//! ```yaml
//! - read: {path: /sys/module/klp_ref_busy_patch/refcnt, equals: "1"}
//! - tree:
//!     path: /sys/kernel/livepatch/p
//!     equals:
//!       "< 6.11": |
//!         -rw-r--r-- enabled = 1
//!       ">= 6.11": |
//!         -rw-r--r-- enabled = 1
//!         -r--r--r-- replace = 0
//! ```
//!
//! Exactly one range must hold for the kernel under test; a kernel no range covers cannot be
//! judged by that step, and the case is an error before its guest boots (never a guess). Each
//! difference is backed by a version note in `suites/spec/versions.yaml` citing the kernel
//! source it comes from.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::gate::KernelVersion;

/// One comparison of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// `>= 6.1, < 6.11`: every comparison must hold (comma = and).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    text: String,
    parts: Vec<(Op, KernelVersion)>,
}

impl VersionRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (op, rest) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt), ("==", Op::Eq)]
                .iter()
                .find_map(|(p, op)| part.strip_prefix(p).map(|r| (*op, r.trim())))
                .ok_or_else(|| {
                    format!("`{part}` is not a version comparison; expected e.g. `>= 6.11` or `>= 6.1, < 6.11`")
                })?;
            let v = KernelVersion::parse(rest).ok_or_else(|| format!("`{rest}` is not a kernel version like 6.11"))?;
            parts.push((op, v));
        }
        Ok(Self { text: s.trim().to_string(), parts })
    }

    pub fn contains(&self, v: KernelVersion) -> bool {
        self.parts.iter().all(|(op, b)| match op {
            Op::Lt => v < *b,
            Op::Le => v <= *b,
            Op::Gt => v > *b,
            Op::Ge => v >= *b,
            Op::Eq => v == *b,
        })
    }

    /// The versions at which this range's answer can change (its bounds and their
    /// neighbours): what overlap checks probe.
    fn edges(&self) -> Vec<KernelVersion> {
        self.parts
            .iter()
            .flat_map(|(_, KernelVersion(a, b, c))| {
                [
                    KernelVersion(*a, *b, *c),
                    KernelVersion(*a, *b, c + 1),
                    KernelVersion(*a, b + 1, 0),
                    KernelVersion(*a, b.saturating_sub(1), 999),
                    KernelVersion(*a, *b, c.saturating_sub(1)),
                ]
            })
            .collect()
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A listing (a `tree` step's expected lines) whose lines may end in a version range in
/// brackets, `-r--r--r-- p/replace = 0  [>= 6.11]`: such a line is expected only on kernels in
/// that range. The smallest form for an attribute a kernel line adds or lacks.
pub fn filter_listing(text: &str, v: Option<KernelVersion>) -> Result<String, String> {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end();
        let (body, keep) = match trimmed.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
            Some((body, range)) => {
                let r = VersionRange::parse(range).map_err(|e| format!("in `{trimmed}`: {e}"))?;
                (body.trim_end(), v.is_none_or(|v| r.contains(v)))
            }
            None => (trimmed, true),
        };
        if keep {
            out.push_str(body);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A step value that is the same on every kernel, or given per version range.
#[derive(Debug, Clone, PartialEq)]
pub enum PerKernel<T> {
    Same(T),
    ByVersion(Vec<(VersionRange, T)>),
}

impl<T> PerKernel<T> {
    /// The value for kernel `v`: `Err` names the ranges when none (or more than one) holds.
    pub fn get(&self, v: KernelVersion) -> Result<&T, String> {
        match self {
            Self::Same(x) => Ok(x),
            Self::ByVersion(list) => {
                let hits: Vec<&(VersionRange, T)> = list.iter().filter(|(r, _)| r.contains(v)).collect();
                match hits.as_slice() {
                    [(_, x)] => Ok(x),
                    [] => Err(format!("no expectation for kernel {v}: the step gives {}", self.ranges())),
                    _ => Err(format!("kernel {v} matches more than one of {}", self.ranges())),
                }
            }
        }
    }

    /// The value when the kernel is unknown (unit tests, descriptions): the only one, or the
    /// last range's.
    pub fn any(&self) -> &T {
        match self {
            Self::Same(x) => x,
            Self::ByVersion(list) => &list.last().expect("validated non-empty").1,
        }
    }

    /// The value of a case planned for one kernel ([`super::Case::planned_for`]), where every
    /// per-kernel value is down to one.
    pub fn planned(&self) -> &T {
        debug_assert!(!self.is_per_kernel(), "a per-kernel value used before the case was planned for a kernel");
        self.any()
    }

    /// Every value, whatever its range (for validation).
    pub fn values(&self) -> Vec<&T> {
        match self {
            Self::Same(x) => vec![x],
            Self::ByVersion(list) => list.iter().map(|(_, x)| x).collect(),
        }
    }

    pub fn is_per_kernel(&self) -> bool {
        matches!(self, Self::ByVersion(_))
    }

    fn ranges(&self) -> String {
        match self {
            Self::Same(_) => "one value for every kernel".into(),
            Self::ByVersion(list) => list.iter().map(|(r, _)| format!("`{r}`")).collect::<Vec<_>>().join(", "),
        }
    }

    /// Two ranges that hold for one kernel version, if any (a suite-authoring error).
    pub fn overlap(&self) -> Option<String> {
        let Self::ByVersion(list) = self else { return None };
        let probes: Vec<KernelVersion> = list.iter().flat_map(|(r, _)| r.edges()).collect();
        for v in probes {
            let hits: Vec<String> = list.iter().filter(|(r, _)| r.contains(v)).map(|(r, _)| format!("`{r}`")).collect();
            if hits.len() > 1 {
                return Some(format!("version ranges {} overlap (both hold for {v})", hits.join(" and ")));
            }
        }
        None
    }

    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> PerKernel<U> {
        match self {
            Self::Same(x) => PerKernel::Same(f(x)),
            Self::ByVersion(list) => PerKernel::ByVersion(list.iter().map(|(r, x)| (r.clone(), f(x))).collect()),
        }
    }
}

impl<T: Default> Default for PerKernel<T> {
    fn default() -> Self {
        Self::Same(T::default())
    }
}

/// A value type that can appear in a [`PerKernel`]: it says how to read it from a plain
/// (non-map) YAML node, so that a map is always a version map.
pub trait PlainValue: Sized {
    const EXPECTING: &'static str;
    fn from_str<E: de::Error>(_v: &str) -> Result<Self, E> {
        Err(E::custom(format!("expected {}", Self::EXPECTING)))
    }
    fn from_seq<'de, A: SeqAccess<'de>>(_seq: A) -> Result<Self, A::Error> {
        Err(de::Error::custom(format!("expected {}", Self::EXPECTING)))
    }
    fn from_none<E: de::Error>() -> Result<Self, E> {
        Err(E::custom(format!("expected {}", Self::EXPECTING)))
    }
}

impl PlainValue for String {
    const EXPECTING: &'static str = "a string, or a map from version ranges (`>= 6.11`) to strings";
    fn from_str<E: de::Error>(v: &str) -> Result<Self, E> {
        Ok(v.to_string())
    }
}

impl PlainValue for Option<String> {
    const EXPECTING: &'static str = "a string or null, or a map from version ranges to those";
    fn from_str<E: de::Error>(v: &str) -> Result<Self, E> {
        Ok(Some(v.to_string()))
    }
    fn from_none<E: de::Error>() -> Result<Self, E> {
        Ok(None)
    }
}

impl PlainValue for Vec<String> {
    const EXPECTING: &'static str = "a list of strings, or a map from version ranges (`>= 6.11`) to lists";
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut v = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            v.push(s);
        }
        Ok(v)
    }
}

impl<'de, T> Deserialize<'de> for PerKernel<T>
where
    T: PlainValue + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: PlainValue + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = PerKernel<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::from_str(v).map(PerKernel::Same)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::from_str(&v.to_string()).map(PerKernel::Same)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_str(&v.to_string()).map(PerKernel::Same)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::from_str(&v.to_string()).map(PerKernel::Same)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_str(&v.to_string()).map(PerKernel::Same)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                T::from_none().map(PerKernel::Same)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                T::from_none().map(PerKernel::Same)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::from_seq(seq).map(PerKernel::Same)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let range = VersionRange::parse(&key).map_err(de::Error::custom)?;
                    list.push((range, map.next_value::<T>()?));
                }
                if list.is_empty() {
                    return Err(de::Error::custom("an empty map of version ranges: give at least one"));
                }
                Ok(PerKernel::ByVersion(list))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KernelVersion {
        KernelVersion::parse(s).unwrap()
    }

    #[test]
    fn ranges() {
        let r = VersionRange::parse(">= 6.1, < 6.11").unwrap();
        assert!(r.contains(v("6.1.192")) && r.contains(v("6.10.99")));
        assert!(!r.contains(v("6.11")) && !r.contains(v("5.10.262")));
        assert!(VersionRange::parse("== 5.10.262").unwrap().contains(v("5.10.262")));
        assert!(VersionRange::parse("6.1").unwrap_err().contains("not a version comparison"));
        assert!(VersionRange::parse(">= six").unwrap_err().contains("not a kernel version"));
    }

    #[derive(Debug, serde::Deserialize)]
    struct S {
        equals: PerKernel<String>,
        #[serde(default)]
        contains: PerKernel<Vec<String>>,
        #[serde(default)]
        divergence: Option<PerKernel<Option<String>>>,
    }

    fn parse(y: &str) -> Result<S, String> {
        serde_saphyr::from_str::<S>(y).map_err(|e| e.to_string())
    }

    #[test]
    fn plain_and_per_kernel_values() {
        let s = parse("equals: '1'\ncontains: [a, b]\n").unwrap();
        assert_eq!(s.equals.get(v("5.10")).unwrap(), "1");
        assert_eq!(s.contains.any(), &["a", "b"]);
        let s =
            parse("equals: {'< 6.11': old, '>= 6.11': new}\ndivergence: {'< 5.18': null, '>= 5.18': why}\n").unwrap();
        assert_eq!(s.equals.get(v("6.1.192")).unwrap(), "old");
        assert_eq!(s.equals.get(v("7.2.13")).unwrap(), "new");
        let d = s.divergence.unwrap();
        assert_eq!(d.get(v("5.10")).unwrap(), &None);
        assert_eq!(d.get(v("6.1")).unwrap().as_deref(), Some("why"));
        let s = parse("equals: {'>= 6.11': new}\n").unwrap();
        assert!(s.equals.get(v("6.1")).unwrap_err().contains("no expectation for kernel 6.1.0"));
    }

    #[test]
    fn listing_lines_by_version() {
        let t = "a\nb = 1  [>= 6.11]\nc [< 6.1]\n";
        assert_eq!(filter_listing(t, Some(v("6.12.95"))).unwrap(), "a\nb = 1\n");
        assert_eq!(filter_listing(t, Some(v("5.10"))).unwrap(), "a\nc\n");
        assert_eq!(filter_listing(t, Some(v("6.1"))).unwrap(), "a\n");
        assert!(filter_listing("x [6.1]\n", None).unwrap_err().contains("not a version comparison"));
    }

    #[test]
    fn bad_ranges_and_overlaps() {
        let e = parse("equals: {'6.1': x}\n").unwrap_err();
        assert!(e.contains("not a version comparison"), "{e}");
        let s = parse("equals: {'>= 6.1': a, '< 6.12': b}\n").unwrap();
        assert!(s.equals.overlap().unwrap().contains("overlap"));
        let s = parse("equals: {'>= 6.11': a, '< 6.11': b}\n").unwrap();
        assert_eq!(s.equals.overlap(), None);
    }
}
