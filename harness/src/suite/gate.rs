//! Case gating: whether the kernel under test can run a case at all, decided on the host
//! from the kernel's version and config before any guest boots.

use super::model::Requires;
use crate::kernel::Kernel;

/// A kernel version as `major.minor.patch`, compared numerically (`6.11` > `6.9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32, pub u32);

impl KernelVersion {
    /// `6.1`, `6.1.192`, `6.1.192-2` (a Debian revision is ignored), `6.11.0-rc3`.
    pub fn parse(s: &str) -> Option<Self> {
        let core = s.split(['-', '+', '~']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next()?.ok()?;
        let patch = match it.next() {
            Some(p) => p.ok()?,
            None => 0,
        };
        if it.next().is_some() {
            return None;
        }
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Config options a case needs because of what its steps touch, with the reason: a kernel
/// without them skips the case naming the option, instead of failing it.
pub fn implied_config(case: &super::Case) -> Vec<(&'static str, &'static str)> {
    use super::Step;
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    let mut add = |opt: &'static str, why: &'static str| {
        if !out.iter().any(|(o, _)| *o == opt) {
            out.push((opt, why));
        }
    };
    for step in &case.steps {
        let path = match &step.value {
            Step::Write(w) => Some(w.path.as_str()),
            Step::Read(r) => Some(r.path.as_str()),
            _ => None,
        };
        match path {
            Some(p) if p.starts_with("/sys/kernel/debug/dynamic_debug") => {
                add("CONFIG_DYNAMIC_DEBUG", "the case turns on livepatch's debug messages");
                add("CONFIG_DEBUG_FS", "dynamic debug is controlled through debugfs");
            }
            Some("/proc/sys/kernel/ftrace_enabled") => {
                add("CONFIG_FUNCTION_TRACER", "the case toggles kernel.ftrace_enabled")
            }
            _ => {}
        }
    }
    out
}

/// Why a case cannot run on `kernel` (its `requires`, or a config option its steps need), if
/// it cannot.
pub fn case_skip_reason(case: &super::Case, kernel: &Kernel) -> Option<String> {
    if let Some(why) = case.requires.as_ref().and_then(|r| skip_reason(r, kernel)) {
        return Some(why);
    }
    for (opt, why) in implied_config(case) {
        if let Ok(false) = kernel.config_enabled(opt) {
            return Some(format!("needs {opt}=y, which kernel {} lacks ({why})", kernel.release));
        }
    }
    None
}

/// The version of a kernel: its package version (`6.1.192-3`), else its release.
pub fn kernel_version(kernel: &Kernel) -> Option<KernelVersion> {
    KernelVersion::parse(&kernel.version).or_else(|| KernelVersion::parse(&kernel.release))
}

/// `None` if the kernel meets every requirement, else the reason to skip.
pub fn skip_reason(req: &Requires, kernel: &Kernel) -> Option<String> {
    let running = kernel_version(kernel);
    let version_of = |s: &str| KernelVersion::parse(s).expect("versions are validated at load");
    if let Some(min) = &req.min_kernel {
        match running {
            Some(v) if v >= version_of(&min.value) => {}
            Some(v) => return Some(format!("needs kernel >= {}, running {v}", min.value)),
            None => {
                return Some(format!("needs kernel >= {}, cannot tell the version of {}", min.value, kernel.release))
            }
        }
    }
    if let Some(max) = &req.max_kernel {
        match running {
            Some(v) if v <= version_of(&max.value) => {}
            Some(v) => return Some(format!("applies up to kernel {}, running {v}", max.value)),
            None => {
                return Some(format!(
                    "applies up to kernel {}, cannot tell the version of {}",
                    max.value, kernel.release
                ))
            }
        }
    }
    for opt in &req.config {
        match kernel.config_enabled(opt) {
            Ok(true) => {}
            Ok(false) => return Some(format!("needs {opt}=y or m, which kernel {} lacks", kernel.release)),
            Err(e) => return Some(format!("needs {opt}; cannot read the config of {}: {e}", kernel.release)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(KernelVersion::parse("6.1.192-2"), Some(KernelVersion(6, 1, 192)));
        assert_eq!(KernelVersion::parse("6.11"), Some(KernelVersion(6, 11, 0)));
        assert_eq!(KernelVersion::parse("6.11.0-rc3"), Some(KernelVersion(6, 11, 0)));
        assert!(KernelVersion::parse("6.11").unwrap() > KernelVersion::parse("6.9.12").unwrap());
        assert_eq!(KernelVersion::parse("six"), None);
        assert_eq!(KernelVersion::parse("6"), None);
        assert_eq!(KernelVersion::parse("6.1.2.3"), None);
    }

    fn kernel(version: &str, config: &str) -> (Kernel, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, config).unwrap();
        let k = Kernel {
            spec: "debian".into(),
            release: "6.1.0-56-amd64".into(),
            version: version.into(),
            vmlinuz: "/nope".into(),
            modules_dir: "/nope".into(),
            headers_dir: "/nope".into(),
            config: cfg,
            debian_suite: None,
        };
        (k, dir)
    }

    fn req(yaml: &str) -> Requires {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn gates_on_version_and_config() {
        let (k, _d) = kernel("6.1.192-2", "CONFIG_LIVEPATCH=y\n# CONFIG_FOO is not set\nCONFIG_BAR=m\n");
        assert_eq!(skip_reason(&req("min_kernel: '6.1'"), &k), None);
        assert_eq!(skip_reason(&req("min_kernel: '6.11'"), &k).unwrap(), "needs kernel >= 6.11, running 6.1.192");
        assert_eq!(skip_reason(&req("max_kernel: '5.0'"), &k).unwrap(), "applies up to kernel 5.0, running 6.1.192");
        assert_eq!(skip_reason(&req("config: [CONFIG_LIVEPATCH, CONFIG_BAR]"), &k), None);
        assert!(skip_reason(&req("config: [CONFIG_FOO]"), &k).unwrap().starts_with("needs CONFIG_FOO=y or m"));
    }
}
