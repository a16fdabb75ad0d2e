//! klp-conform's own apt: one source list and one set of package lists per Debian suite, kept
//! in the cache and passed to apt with `Dir::*` options. The host's apt configuration is read
//! (proxies, `Acquire::*` settings) but never changed, and its lists are never used: a kernel
//! from bullseye or sid is found the same way on any Debian host.
//!
//! ```text
//! <cache>/apt/<suite>/sources.list   deb [signed-by=<debian-archive-keyring>] <mirror> <suite…> main
//! <cache>/apt/<suite>/lists/         apt's package lists of those suites only
//! <cache>/apt/<suite>/cache/         apt's cache (downloads go to the caller's directory)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use super::KernelError;
use crate::progress::Progress;
use crate::tools::{require_tool, run_capture, ToolError};

/// The keyring every source list is verified with (Debian package `debian-archive-keyring`).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Overrides the Debian mirror (default `http://deb.debian.org`): `<mirror>/debian` and
/// `<mirror>/debian-security` must exist below it.
pub const MIRROR_ENV: &str = "KLP_CONFORM_DEBIAN_MIRROR";

/// The suites whose lists one apt root holds: a stable release name brings its updates and
/// security suites along (that is where its newest kernels are); any other suite name
/// (`sid`, `bookworm-backports`, `bullseye-security`) is just itself.
pub fn suite_family(suite: &str) -> Vec<String> {
    const RELEASES: &[&str] = &["buster", "bullseye", "bookworm", "trixie", "forky"];
    if RELEASES.contains(&suite) {
        vec![suite.to_string(), format!("{suite}-updates"), format!("{suite}-security")]
    } else {
        vec![suite.to_string()]
    }
}

/// The Debian release a suite belongs to (`bookworm-backports` → `bookworm`); toolchain roots
/// are made of the release itself.
pub fn base_release(suite: &str) -> &str {
    suite.split('-').next().unwrap_or(suite)
}

/// `suite` looks like a Debian suite name.
pub fn valid_suite(suite: &str) -> bool {
    !suite.is_empty() && suite.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The source list of one apt root.
pub fn sources_list(suite: &str, mirror: &str) -> String {
    let mut s = String::from("# Written by klp-conform: the lists of this directory only, never the host's.\n");
    for name in suite_family(suite) {
        let archive = if name.ends_with("-security") { "debian-security" } else { "debian" };
        s.push_str(&format!("deb [signed-by={KEYRING}] {mirror}/{archive} {name} main\n"));
    }
    s
}

/// The apt lists of one suite (family), private to klp-conform.
pub struct AptRoot {
    suite: String,
    dir: PathBuf,
}

impl AptRoot {
    /// `<cache>/apt/<suite>`; nothing is written until [`AptRoot::ensure`].
    pub fn new(cache: &Path, suite: &str) -> Result<Self, KernelError> {
        if !valid_suite(suite) {
            return Err(KernelError::BadSpec {
                spec: suite.into(),
                why: "a Debian suite name is lowercase letters, digits and `-` (e.g. bookworm, sid)".into(),
            });
        }
        Ok(Self { suite: suite.into(), dir: cache.join("apt").join(suite) })
    }

    pub fn suite(&self) -> &str {
        &self.suite
    }

    fn lists(&self) -> PathBuf {
        self.dir.join("lists")
    }

    /// apt's options that point it at this root.
    fn options(&self) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        vec![
            format!("Dir::Etc::sourcelist={}", d("sources.list")),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::Cache={}", d("cache")),
            // Package lists only: no translations, no AppStream metadata (the host's
            // configuration may ask for them; klp-conform reads Packages and nothing else).
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false".into(),
            // root cannot hand a private download directory to the _apt sandbox user.
            "APT::Sandbox::User=root".into(),
        ]
    }

    /// An apt program (`apt-get`, `apt-cache`) run against this root.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.arg("-q");
        for o in self.options() {
            c.arg("-o").arg(o);
        }
        c
    }

    /// Whether the lists have been downloaded at least once (apt may store them compressed,
    /// `…_Packages.lz4`, as the host's configuration says).
    pub fn has_lists(&self) -> bool {
        std::fs::read_dir(self.lists())
            .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().contains("_Packages")))
            .unwrap_or(false)
    }

    /// Write the source list and download the lists if they were never downloaded (or when
    /// `refresh`). A missing keyring or an unreachable suite is a clear error.
    pub fn ensure(&self, refresh: bool, progress: &Progress) -> Result<(), KernelError> {
        require_tool("apt-get", "apt", "download Debian kernel packages")?;
        if !Path::new(KEYRING).is_file() {
            return Err(KernelError::Tool(ToolError::Missing {
                tool: KEYRING.into(),
                package: "debian-archive-keyring".into(),
                why: "verify the Debian archive klp-conform downloads kernels from".into(),
            }));
        }
        let _lock = crate::fsutil::FileLock::acquire(&self.dir.with_extension("lock"))
            .map_err(|e| KernelError::io(format!("locking {}", self.dir.display()), e))?;
        let entry = crate::cache::apt_lists(&self.dir);
        let made_from = || serde_json::json!({ "suite": self.suite, "family": suite_family(&self.suite) });
        if !refresh && entry.verify_or_adopt(progress, || self.has_lists(), made_from) && self.has_lists() {
            return Ok(());
        }
        // Being refreshed: the old record no longer describes what apt is about to write.
        entry.forget().map_err(|e| KernelError::io(format!("removing {}", entry.record_path().display()), e))?;
        let mirror = std::env::var(MIRROR_ENV).unwrap_or_else(|_| "http://deb.debian.org".into());
        for sub in ["lists/partial", "cache/archives/partial"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| KernelError::io(format!("creating {}", d.display()), e))?;
        }
        let list = self.dir.join("sources.list");
        crate::fsutil::write_atomic(&list, sources_list(&self.suite, mirror.trim_end_matches('/')).as_bytes())
            .map_err(|e| KernelError::io(format!("writing {}", list.display()), e))?;
        // apt reads it as whoever it runs as; it holds nothing secret.
        let _ = std::fs::set_permissions(&list, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        progress.note(format!(
            "apt: updating the package lists of {} ({})",
            self.suite,
            suite_family(&self.suite).join(", ")
        ));
        let out = crate::tools::output(self.command("apt-get").arg("update"))
            .map_err(|e| KernelError::Tool(ToolError::Spawn { command: "apt-get update".into(), source: e }))?;
        // apt-get update exits 0 even when a suite could not be fetched: its warnings say so.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || (l.starts_with("W:") && l.contains("Failed to fetch")))
            .collect();
        if !out.status.success() || !failed.is_empty() || !self.has_lists() {
            return Err(KernelError::NoPackage {
                what: format!("the Debian suite `{}`", self.suite),
                detail: format!(
                    "apt-get update could not fetch its lists from {mirror} (set {MIRROR_ENV} for another mirror):\n{}",
                    if failed.is_empty() { crate::tools::tail(&stderr, 10) } else { failed.join("\n") }
                ),
            });
        }
        entry
            .record(serde_json::json!({ "suite": self.suite, "family": suite_family(&self.suite), "mirror": mirror }))
            .map_err(|e| KernelError::io(format!("recording the apt lists in {}", self.dir.display()), e))?;
        Ok(())
    }

    /// `apt-cache show <what>`: the stanzas, or `None` when apt knows no such package/version.
    pub fn show(&self, what: &str) -> Result<Option<String>, KernelError> {
        match run_capture(self.command("apt-cache").args(["show", "--no-all-versions", what])) {
            Ok(out) if out.trim().is_empty() => Ok(None),
            Ok(out) => Ok(Some(out)),
            Err(ToolError::Failed { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The names of the packages matching an anchored regular expression (`apt-cache
    /// search --names-only`).
    pub fn search_names(&self, regex: &str) -> Result<Vec<String>, KernelError> {
        let out = run_capture(self.command("apt-cache").args(["search", "--names-only", regex]))?;
        let mut names: Vec<String> =
            out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// `apt-get download pkg=ver…` into `dir`.
    pub fn download(&self, dir: &Path, pkgs: &[String]) -> Result<(), KernelError> {
        run_capture(self.command("apt-get").current_dir(dir).arg("download").args(pkgs))?;
        Ok(())
    }
}

/// The value of `name` in one package stanza.
pub fn field(stanza: &str, name: &str) -> Option<String> {
    stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_releases() {
        assert_eq!(suite_family("bookworm"), ["bookworm", "bookworm-updates", "bookworm-security"]);
        assert_eq!(suite_family("sid"), ["sid"]);
        assert_eq!(suite_family("bookworm-backports"), ["bookworm-backports"]);
        assert_eq!(base_release("bookworm-backports"), "bookworm");
        assert_eq!(base_release("sid"), "sid");
        assert!(valid_suite("bullseye-security"));
        assert!(!valid_suite("Bookworm") && !valid_suite("") && !valid_suite("a b"));
    }

    #[test]
    fn source_list_is_signed_and_split_by_archive() {
        let s = sources_list("bullseye", "http://m");
        assert!(s.contains(&format!("deb [signed-by={KEYRING}] http://m/debian bullseye main\n")));
        assert!(s.contains("http://m/debian bullseye-updates main\n"));
        assert!(s.contains("http://m/debian-security bullseye-security main\n"));
        assert_eq!(sources_list("sid", "http://m").lines().filter(|l| l.starts_with("deb ")).count(), 1);
    }

    #[test]
    fn fields() {
        assert_eq!(field("Package: a\nVersion: 1.2-3\n", "Version").as_deref(), Some("1.2-3"));
        assert_eq!(field("Package: a\n", "Version"), None);
    }
}
