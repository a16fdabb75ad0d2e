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
        if path.is_some_and(|p| p.starts_with("/proc/sys/")) {
            add("CONFIG_PROC_SYSCTL", "the case reads or writes /proc/sys");
        }
        let expects_unsigned_taint = match &step.value {
            Step::Read(r) if r.path == "/proc/sys/kernel/tainted" => r.equals.as_ref().is_some_and(|e| {
                e.values().into_iter().any(|v| v.trim().parse::<u64>().is_ok_and(|t| t & TAINT_UNSIGNED_MODULE != 0))
            }),
            Step::Taint(t) => t.set.iter().any(|f| f == "E"),
            _ => false,
        };
        if expects_unsigned_taint {
            add(
                "CONFIG_MODULE_SIG",
                "the case expects TAINT_UNSIGNED_MODULE (E), which only a kernel that checks module signatures sets",
            );
        }
    }
    out
}

/// Bit 13 of /proc/sys/kernel/tainted: an unsigned module was loaded (only with MODULE_SIG).
const TAINT_UNSIGNED_MODULE: u64 = 1 << 13;

/// One config option some cases need and the kernel lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigGap {
    pub option: String,
    pub why: String,
    /// The cases it makes skip, as `suite/case`.
    pub cases: Vec<String>,
}

/// The config options some of `cases` (`(suite, case)`) need — by their `requires` or by what
/// their steps touch — and `kernel` lacks, each with the cases it will make skip: said once,
/// up front, before anything is built or booted.
pub fn config_gaps<'a>(cases: impl IntoIterator<Item = (&'a str, &'a super::Case)>, kernel: &Kernel) -> Vec<ConfigGap> {
    let mut gaps: Vec<ConfigGap> = Vec::new();
    for (suite, case) in cases {
        let mut needs: Vec<(String, String)> = case
            .requires
            .iter()
            .flat_map(|r| r.config.iter())
            .map(|o| (o.clone(), "the case's `requires`".to_string()))
            .collect();
        needs.extend(implied_config(case).into_iter().map(|(o, why)| (o.to_string(), why.to_string())));
        for (option, why) in needs {
            if !matches!(kernel.config_enabled(&option), Ok(false)) {
                continue;
            }
            let id = format!("{suite}/{}", case.name());
            match gaps.iter_mut().find(|g| g.option == option) {
                Some(g) if !g.cases.contains(&id) => g.cases.push(id),
                Some(_) => {}
                None => gaps.push(ConfigGap { option, why, cases: vec![id] }),
            }
        }
    }
    gaps
}

/// The gaps as one message (a few cases named per option), or `None` if there are none.
pub fn config_gaps_message(release: &str, gaps: &[ConfigGap]) -> Option<String> {
    if gaps.is_empty() {
        return None;
    }
    let mut all: Vec<&String> = gaps.iter().flat_map(|g| &g.cases).collect();
    all.sort();
    all.dedup();
    let mut s = format!("kernel {release}: {} case(s) will SKIP for config options it lacks:\n", all.len());
    const SHOWN: usize = 4;
    for g in gaps {
        let mut names = g.cases.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if g.cases.len() > SHOWN {
            names.push_str(&format!(" and {} more", g.cases.len() - SHOWN));
        }
        s.push_str(&format!("  - {}=y ({}): {names}\n", g.option, g.why));
    }
    Some(s.trim_end().to_string())
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

    fn case(yaml: &str) -> super::super::Case {
        let text = format!("version: 1\nsuite: s\ncases:\n{yaml}");
        let suite = crate::suite::parse_suite(std::path::Path::new("s.yaml"), &text).unwrap();
        suite.cases.into_iter().next().unwrap()
    }

    #[test]
    fn what_steps_touch_implies_options() {
        let c = case(
            "  - name: c\n    spec: [L1]\n    steps:\n      - load: klp_ref_cmdline\n      \
             - read: {path: /proc/sys/kernel/tainted, equals: \"12288\"}\n      \
             - write: {path: /sys/kernel/debug/dynamic_debug/control, value: 'module livepatch +p'}\n",
        );
        let opts: Vec<&str> = implied_config(&c).into_iter().map(|(o, _)| o).collect();
        assert_eq!(opts, ["CONFIG_PROC_SYSCTL", "CONFIG_MODULE_SIG", "CONFIG_DYNAMIC_DEBUG", "CONFIG_DEBUG_FS"]);
        // O and K only (4096 + 32768): no signature check needed.
        let c = case(
            "  - name: c\n    spec: [L1]\n    steps:\n      - read: {path: /proc/sys/kernel/tainted, equals: \"36864\"}\n",
        );
        let opts: Vec<&str> = implied_config(&c).into_iter().map(|(o, _)| o).collect();
        assert_eq!(opts, ["CONFIG_PROC_SYSCTL"]);
    }

    #[test]
    fn gaps_are_gathered_per_option_and_skips_name_it() {
        let (k, _d) = kernel("6.1.0", "CONFIG_PROC_SYSCTL=y\n# CONFIG_MODULE_SIG is not set\n");
        let a = case(
            "  - name: a\n    spec: [L1]\n    steps:\n      - read: {path: /proc/sys/kernel/tainted, equals: \"12288\"}\n",
        );
        let b = case(
            "  - name: b\n    spec: [L1]\n    requires: {config: [CONFIG_MODULE_SIG, CONFIG_FOO]}\n    steps:\n      - load: klp_ref_cmdline\n",
        );
        let ok = case("  - name: ok\n    spec: [L1]\n    steps:\n      - load: klp_ref_cmdline\n");
        let gaps = config_gaps([("s", &a), ("s", &b), ("s", &ok)], &k);
        let got: Vec<(&str, Vec<&str>)> =
            gaps.iter().map(|g| (g.option.as_str(), g.cases.iter().map(String::as_str).collect())).collect();
        assert_eq!(got, [("CONFIG_MODULE_SIG", vec!["s/a", "s/b"]), ("CONFIG_FOO", vec!["s/b"])]);
        let msg = config_gaps_message("6.1.0", &gaps).unwrap();
        assert!(msg.starts_with("kernel 6.1.0: 2 case(s) will SKIP"), "{msg}");
        assert!(msg.contains("  - CONFIG_MODULE_SIG=y (the case expects TAINT_UNSIGNED_MODULE"), "{msg}");
        assert!(case_skip_reason(&a, &k).unwrap().contains("needs CONFIG_MODULE_SIG=y"));
        assert_eq!(case_skip_reason(&ok, &k), None);
        assert_eq!(config_gaps_message("6.1.0", &[]), None);
    }
}
