//! A kernel's `.config`, read once: what the prerequisite check, the case gates and the module
//! builder (code generation, toolchain) read.

use std::collections::BTreeMap;
use std::path::Path;

/// `CONFIG_*` symbols that are set (`=y`, `=m`, a number or a string). Unset ones (`# … is not
/// set`) are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KConfig {
    values: BTreeMap<String, String>,
}

impl KConfig {
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        Self { values }
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// `CONFIG_<name>` is `y` or `m` (`name` without the prefix).
    pub fn on(&self, name: &str) -> bool {
        matches!(self.get(name), Some("y" | "m"))
    }

    /// `CONFIG_<name>` is `y` (built in).
    pub fn builtin(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }

    /// Any of the names is on: for options renamed between kernel lines (`RETPOLINE` became
    /// `MITIGATION_RETPOLINE` in 6.9).
    pub fn any_on(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.on(n))
    }

    /// The raw value (string values without their quotes).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(&format!("CONFIG_{name}")).map(String::as_str)
    }

    /// The names of the set options, without the `CONFIG_` prefix.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(|k| k.strip_prefix("CONFIG_").unwrap_or(k))
    }

    /// An integer value (`CONFIG_FUNCTION_PADDING_BYTES=16`).
    pub fn int(&self, name: &str) -> Option<u32> {
        self.get(name).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read() {
        let c = KConfig::parse(
            "# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_N=16\nCONFIG_S=\"gcc-12 (Debian) 12\"\n",
        );
        assert!(c.on("A") && c.on("B") && !c.on("C") && !c.on("N"));
        assert!(c.any_on(&["C", "B"]));
        assert_eq!(c.int("N"), Some(16));
        assert_eq!(c.get("S"), Some("gcc-12 (Debian) 12"));
        assert_eq!(c.int("S"), None);
    }
}
