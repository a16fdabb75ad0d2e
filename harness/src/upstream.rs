//! `--suite upstream`: the kernel's own livepatch selftests
//! (`tools/testing/selftests/livepatch/test-*.sh`), unmodified, in the same report.
//!
//! For the kernel under test: its source ([`crate::kernel::source`]), its test modules
//! (`lib/livepatch/test_klp_*.c`, or `test_modules/` of the selftests from 6.8) built out of
//! tree with that kernel's kbuild and compiler ([`crate::kmod::buildenv`]: the host, or the
//! toolchain root of its Debian release), put into a copy of the kernel's modules tree (hard
//! links) under `extra/` and indexed with `depmod`, so that the scripts' `modprobe` finds
//! them. All of it is one verified cache entry, `<cache>/upstream/<release>/<key>/`.
//!
//! Each script runs in its own restored guest, under the host's bash, kmod and coreutils: the
//! guest gets virtiofs shares of the host's root (read-only), the modules tree, the selftests
//! and a results directory ([`guest_root`]), and runs `bash ./test-x.sh` chrooted into a root
//! made of them. Each test of a script (`start_test "…"` … `check_result`) is one case
//! `klp_conformance.upstream.<script>.<test>`; the script's own dmesg comparison is its
//! verdict. A script stops at its first failure: the tests after it are ERROR, "not run",
//! with the reason.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use klp_protocol::ExecResult;

use crate::kernel::source::{self, KernelSource};
use crate::kernel::Kernel;
use crate::kmod::{buildenv, kbuild};
use crate::progress::Progress;
use crate::vm::virtiofs::{Share, ShareTiming};
use crate::vm::{Vm, VmError};

/// The suite's name: case ids are `klp_conformance.upstream.<script>.<test>`.
pub const SUITE: &str = "upstream";
/// Where the guest's root for the scripts is assembled.
pub const GUEST_ROOT: &str = "/run/klp-root";
/// The host's root, shared read-only.
const GUEST_HOST: &str = "/run/klp-host";
/// Inside [`GUEST_ROOT`].
pub const GUEST_SELFTESTS: &str = "/tmp/klp/selftests";
pub const GUEST_RESULTS: &str = "/tmp/klp/results";
/// What a script may take before it is killed (the selftests' own `settings` say
/// `timeout=0`, their waits give up after 60 s each; the longest script measured here,
/// 6.12's test-callbacks.sh, took ~100 s with four guests sharing two cores). A guest that
/// dies or panics ends the script at once (the agent client's watchdog).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

/// One selftest script and the tests it runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `test-livepatch.sh`
    pub file: String,
    /// `test-livepatch`
    pub name: String,
    /// The names given to `start_test`, in the script's order.
    pub tests: Vec<String>,
}

impl Script {
    /// The case name of one of its tests: `test-livepatch.basic-function-patching`.
    pub fn case_name(&self, test: &str) -> String {
        format!("{}.{}", self.name, slug(test))
    }
}

/// A test name as a case name: lowercase letters, digits and `-`.
pub fn slug(test: &str) -> String {
    let mut out = String::new();
    for c in test.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The `start_test "…"` names of a script, in order.
pub fn start_tests(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("start_test")?;
            let rest = rest.trim_start();
            let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let body = &rest[1..];
            body.find(q).map(|end| body[..end].to_string())
        })
        .collect()
}

/// Every `test-*.sh` of a selftests directory, by name, with its tests.
pub fn discover(selftests: &Path) -> Result<Vec<Script>, String> {
    let mut scripts = Vec::new();
    let rd = std::fs::read_dir(selftests).map_err(|e| format!("reading {}: {e}", selftests.display()))?;
    for e in rd.filter_map(|e| e.ok()) {
        let file = e.file_name().to_string_lossy().into_owned();
        if !(file.starts_with("test-") && file.ends_with(".sh")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).map_err(|err| format!("reading {}: {err}", e.path().display()))?;
        let tests = start_tests(&text);
        if tests.is_empty() {
            return Err(format!("{} calls start_test nowhere: not a livepatch selftest script", e.path().display()));
        }
        scripts.push(Script { name: file.trim_end_matches(".sh").to_string(), file, tests });
    }
    scripts.sort_by(|a, b| a.file.cmp(&b.file));
    if scripts.is_empty() {
        return Err(format!("{} has no test-*.sh", selftests.display()));
    }
    Ok(scripts)
}

/// Everything a kernel's upstream cases share.
#[derive(Debug, Clone)]
pub struct Artefacts {
    pub source: KernelSource,
    /// The selftests directory as the guest sees it (scripts, plus `test_modules/*.ko` where
    /// the scripts load them from there).
    pub selftests: PathBuf,
    /// `…/lib/modules`: the kernel's modules tree with the test modules in `<release>/extra/`.
    pub modules: PathBuf,
    /// The test modules built, by name.
    pub test_modules: Vec<String>,
    pub scripts: Vec<Script>,
    /// How the test modules were built (`host gcc-12`, `root bullseye … gcc-10`).
    pub built_with: String,
    /// From 6.8 the scripts build their modules themselves and skip unless `$KDIR` (default
    /// `/lib/modules/$(uname -r)/build`) is a directory; theirs are built already, so `KDIR`
    /// names the directory they are in (`has_kdir` only checks that it exists).
    pub kdir: Option<String>,
}

/// The C files that are test modules: `lib/livepatch/test_klp_*.c` (up to 6.7), else every
/// `.c` of the selftests' `test_modules/`.
fn module_sources(src: &KernelSource) -> Result<(Vec<PathBuf>, bool), String> {
    let list = |dir: &Path, prefix: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "c"))
                    .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let lib = list(&src.tree.join("lib/livepatch"), "test_klp_");
    if !lib.is_empty() {
        return Ok((lib, false));
    }
    let tm = list(&src.selftests().join("test_modules"), "");
    if !tm.is_empty() {
        return Ok((tm, true));
    }
    Err(format!(
        "{}: neither lib/livepatch/test_klp_*.c nor {}/test_modules/*.c: no livepatch test modules",
        src.origin,
        source::SELFTESTS
    ))
}

/// The cache entry of a kernel's upstream artefacts.
pub fn entry(dir: &Path) -> crate::cache::Entry {
    crate::cache::Entry::dir(dir, "upstream selftests").size_only(&[".ko", ".ko.xz", ".ko.zst", ".ko.gz"])
}

/// Fetch the source, build the test modules, assemble the modules tree and the selftests
/// directory (once per kernel and toolchain; later runs verify and reuse the entry).
pub fn prepare(kernel: &Kernel, cache: &Path, progress: &Progress) -> Result<Artefacts, String> {
    let chain = |e: &dyn std::error::Error| crate::runner::chain(e);
    let src = source::ensure(kernel, cache, progress).map_err(|e| format!("the kernel's source: {}", chain(&e)))?;
    let scripts = discover(&src.selftests())?;
    let (sources, in_selftests) = module_sources(&src)?;
    let config = crate::kernel::config::KConfig::load(&kernel.config)
        .map_err(|e| format!("reading the kernel's config: {e}"))?;
    let decision = buildenv::decide(kernel, &config).map_err(|e| chain(&e))?;
    let programs = helper_programs(&src.selftests());
    let mut parts: Vec<Vec<u8>> = vec![
        b"upstream-2".to_vec(),
        crate::kmod::headers_identity(kernel),
        decision.identity().into_bytes(),
        kernel.modules_dir.display().to_string().into_bytes(),
    ];
    for p in sources.iter().chain(&programs) {
        parts.push(p.file_name().unwrap_or_default().to_string_lossy().as_bytes().to_vec());
        parts.push(std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?);
    }
    let key = crate::kmod::hash_parts(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let release_dir = cache.join("upstream").join(&kernel.release);
    let dir = release_dir.join(&key[..16]);
    let e = entry(&dir);
    let names: Vec<String> =
        sources.iter().map(|p| p.file_stem().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let artefacts = |built_with: String| Artefacts {
        source: src.clone(),
        selftests: dir.join("selftests"),
        modules: dir.join("root/lib/modules"),
        test_modules: names.clone(),
        scripts: scripts.clone(),
        built_with,
        kdir: in_selftests.then(|| format!("{GUEST_SELFTESTS}/test_modules")),
    };
    let built_with_of = |dir: &Path| std::fs::read_to_string(dir.join("built-with")).unwrap_or_default();
    if e.verify_for_use(progress) {
        return Ok(artefacts(built_with_of(&dir)));
    }
    std::fs::create_dir_all(&release_dir).map_err(|e| format!("creating {}: {e}", release_dir.display()))?;
    let lock = release_dir.join(format!("{}.lock", &key[..16]));
    let _lock = crate::fsutil::FileLock::acquire(&lock).map_err(|e| format!("locking {}: {e}", lock.display()))?;
    if e.verify_for_use(progress) {
        return Ok(artefacts(built_with_of(&dir)));
    }
    let started = Instant::now();
    let env = buildenv::materialize(&decision, kernel, cache, progress).map_err(|e| chain(&e))?;
    progress.note(format!(
        "upstream: building {} test modules of {} for {} with {}",
        names.len(),
        src.origin,
        kernel.release,
        env.describe()
    ));
    let staging = release_dir.join(format!(".{}.partial", &key[..16]));
    let _ = crate::kmod::remove_tree(&staging);
    let build = staging.join("build");
    std::fs::create_dir_all(&build).map_err(|e| format!("creating {}: {e}", build.display()))?;
    for p in &sources {
        std::fs::copy(p, build.join(p.file_name().unwrap_or_default()))
            .map_err(|e| format!("copying {}: {e}", p.display()))?;
    }
    // test_klp_state3.c includes test_klp_state2.c by name: every source sits together.
    let kbuild_file: String = names.iter().map(|n| format!("obj-m += {n}.o\n")).collect();
    std::fs::write(build.join("Kbuild"), kbuild_file).map_err(|e| format!("writing the Kbuild file: {e}"))?;
    let mut make = kbuild::make_command(&env, &kernel.headers_dir, &build);
    kbuild::run_output(&mut make).map_err(|e| format!("building the selftests' modules: {}", chain(&e)))?;
    let kos: Vec<PathBuf> = names.iter().map(|n| build.join(format!("{n}.ko"))).collect();
    if let Some(missing) = kos.iter().find(|k| !k.is_file()) {
        return Err(format!("kbuild made no {}", missing.display()));
    }

    // The modules tree: the kernel's own (hard links: it is large and never written), the
    // test modules in extra/, and depmod's index of all of them.
    let tree = staging.join("root/lib/modules").join(&kernel.release);
    if kernel.debian_suite.is_some() {
        link_tree(&kernel.modules_dir, &tree)
            .map_err(|e| format!("linking the modules tree into {}: {e}", tree.display()))?;
    } else {
        // A build tree's modules sit among its objects: only the test modules go in (they
        // need nothing but the kernel itself).
        std::fs::create_dir_all(&tree).map_err(|e| format!("creating {}: {e}", tree.display()))?;
    }
    let extra = tree.join("extra");
    std::fs::create_dir_all(&extra).map_err(|e| format!("creating {}: {e}", extra.display()))?;
    for k in &kos {
        std::fs::copy(k, extra.join(k.file_name().unwrap_or_default()))
            .map_err(|e| format!("copying {}: {e}", k.display()))?;
    }
    let depmod = crate::tools::require_tool("depmod", "kmod", "index the test modules for the selftests' modprobe")
        .map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(depmod);
    cmd.arg("-b").arg(staging.join("root")).arg(&kernel.release);
    crate::tools::run_capture(&mut cmd).map_err(|e| e.to_string())?;

    // The selftests as the guest sees them; from 6.8 the scripts insmod test_modules/<m>.ko.
    let st = staging.join("selftests");
    copy_dir(&src.selftests(), &st).map_err(|e| format!("copying the selftests: {e}"))?;
    if in_selftests {
        for k in &kos {
            std::fs::copy(k, st.join("test_modules").join(k.file_name().unwrap_or_default()))
                .map_err(|e| format!("copying {}: {e}", k.display()))?;
        }
    }
    // The scripts' user-space helpers (TEST_GEN_FILES, e.g. test-syscall.sh's
    // test_klp-call_getpid): built with the host's compiler, as they run on the host's libc.
    for p in &programs {
        let name = p.file_stem().unwrap_or_default();
        let cc = crate::tools::require_tool("gcc", "gcc", "build the selftests' helper programs")
            .map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new(cc);
        cmd.args(["-O2", "-Wall", "-o"]).arg(st.join(name)).arg(p);
        crate::tools::run_capture(&mut cmd).map_err(|e| format!("building {}: {e}", p.display()))?;
    }
    let _ = crate::kmod::remove_tree(&build);
    std::fs::write(staging.join("built-with"), env.describe()).map_err(|e| format!("writing built-with: {e}"))?;
    e.record_in(
        &staging,
        serde_json::json!({"source": src.origin, "modules": names, "toolchain": env.identity(), "release": kernel.release}),
    )
    .map_err(|e| format!("recording {}: {e}", staging.display()))?;
    let _ = crate::kmod::remove_tree(&dir);
    std::fs::rename(&staging, &dir).map_err(|e| format!("renaming {}: {e}", staging.display()))?;
    progress.note(format!("upstream: test modules and modules tree ready ({:.1}s)", started.elapsed().as_secs_f64()));
    Ok(artefacts(env.describe()))
}

/// The user-space programs the scripts run, as C files at the top of the selftests directory.
fn helper_programs(selftests: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(selftests)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "c")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Mirror `from` into `to` with hard links (copies across file systems); symlinks are left
/// out (Debian's `build`/`source` links point at the headers, which the guest does not need).
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            link_tree(&src, &dst)?;
        } else if ft.is_file() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// One step of assembling the guest's root for the scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootStep {
    /// A share hot-added and mounted.
    Share(Share),
    /// A pseudo file system (`tmpfs`, `proc`, …) or a bind mount (`bind`, from the source path).
    Mount {
        source: String,
        target: String,
        fstype: String,
    },
    Symlink {
        target: String,
        link: String,
    },
}

/// How the guest's root for the selftests is made: a tmpfs whose `usr` and `etc` are the
/// host's (read-only, from the host root's share; `bin`, `sbin`, `lib64` link into `usr` as
/// on a merged-/usr host), whose `lib/modules` is the kernel's modules tree with the test
/// modules, with /proc, /sys, debugfs (dynamic debug), /dev and a /tmp holding the selftests
/// and the results directory. virtme-ng gives its guests the host's userspace the same way.
pub fn guest_root(host_root: &Path, modules: &Path, selftests: &Path, results: &Path) -> Vec<RootStep> {
    let r = |p: &str| format!("{GUEST_ROOT}{p}");
    let mount = |source: &str, target: String, fstype: &str| RootStep::Mount {
        source: source.into(),
        target,
        fstype: fstype.into(),
    };
    let link = |target: &str, link: String| RootStep::Symlink { target: target.into(), link };
    let mut v = vec![
        RootStep::Share(Share::new("hostroot", host_root, GUEST_HOST, true)),
        mount("tmpfs", r(""), "tmpfs"),
        mount(&format!("{GUEST_HOST}/usr"), r("/usr"), "bind"),
        mount(&format!("{GUEST_HOST}/etc"), r("/etc"), "bind"),
    ];
    // Merged /usr (every Debian since 12): the top-level program and library directories are
    // links into usr; lib is a real directory so that lib/modules can be the kernel's.
    for d in ["bin", "sbin", "lib64"] {
        v.push(link(&format!("usr/{d}"), r(&format!("/{d}"))));
    }
    v.push(link("/usr/lib/x86_64-linux-gnu", r("/lib/x86_64-linux-gnu")));
    v.extend([
        mount("proc", r("/proc"), "proc"),
        mount("sysfs", r("/sys"), "sysfs"),
        mount("debugfs", r("/sys/kernel/debug"), "debugfs"),
        mount("tracefs", r("/sys/kernel/tracing"), "tracefs"),
        mount("devtmpfs", r("/dev"), "devtmpfs"),
        mount("tmpfs", r("/tmp"), "tmpfs"),
        mount("tmpfs", r("/run"), "tmpfs"),
        mount("tmpfs", r("/root"), "tmpfs"),
        mount("tmpfs", r("/var/tmp"), "tmpfs"),
        RootStep::Share(Share::new("modules", modules, &r("/lib/modules"), true)),
        RootStep::Share(Share::new("selftests", selftests, &r(GUEST_SELFTESTS), true)),
        RootStep::Share(Share::new("results", results, &r(GUEST_RESULTS), false)),
    ]);
    v
}

/// Assemble the root in a running guest; the shares' total cost.
pub fn make_guest_root(vm: &mut Vm, steps: &[RootStep]) -> Result<ShareTiming, VmError> {
    let mut total = ShareTiming::default();
    for s in steps {
        match s {
            RootStep::Share(share) => {
                let t = vm.add_share(share)?;
                total.daemon_s += t.daemon_s;
                total.hotadd_s += t.hotadd_s;
                total.mount_s += t.mount_s;
            }
            RootStep::Mount { source, target, fstype } => {
                let r = vm.agent().mount(source, target, fstype, false, Duration::ZERO).map_err(VmError::Agent)?;
                if let Err(e) = r {
                    return Err(VmError::State(format!(
                        "making the selftests' root: mount {fstype} {source} on {target}: {} ({})",
                        e.name, e.message
                    )));
                }
            }
            RootStep::Symlink { target, link } => {
                let r = vm.agent().symlink(target, link).map_err(VmError::Agent)?;
                if let Err(e) = r {
                    return Err(VmError::State(format!(
                        "making the selftests' root: symlink {link} -> {target}: {} ({})",
                        e.name, e.message
                    )));
                }
            }
        }
    }
    Ok(total)
}

/// The command that runs one script in the guest: under bash, from its directory, its output
/// (stdout and stderr, as a person running it sees them) also kept in the results share.
pub fn script_command(script: &Script) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-o".into(),
        "pipefail".into(),
        "-c".into(),
        format!("bash ./{} 2>&1 | tee {GUEST_RESULTS}/{}.log", script.file, script.name),
    ]
}

/// The environment of a script: a root login's, minimal (and `KDIR`, see [`Artefacts::kdir`]).
pub fn script_env(kdir: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LANG", "C"),
        ("TERM", "dumb"),
        ("TMPDIR", "/tmp"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(k) = kdir {
        env.push(("KDIR".into(), k.into()));
    }
    env
}

/// The verdict on one test of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum TestVerdict {
    /// `ok`; seconds from its `TEST:` line to its verdict.
    Pass { seconds: f64 },
    /// `not ok` and the script's diff of the expected against the actual kernel log.
    Fail { diff: String, seconds: f64 },
    /// The script died inside the test (`die`: a module did not load, a wait timed out, …).
    Error(String),
    /// The script skipped (exit 4, ksft_skip) before or in this test.
    Skip(String),
    /// The script stopped before this test.
    NotRun(String),
}

/// Split a script's output into a verdict per test (by its `TEST: <name> ... ` lines).
pub fn judge(script: &Script, r: &ExecResult) -> Vec<TestVerdict> {
    let lines = &r.stdout;
    let stderr_tail = crate::tools::tail(&r.stderr, 10);
    let all_output = || crate::tools::tail(&lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n"), 15);
    let how_ended = || match (r.timed_out, r.code, r.signal) {
        (true, _, _) => format!("killed after {} s", SCRIPT_TIMEOUT.as_secs()),
        (_, Some(c), _) => format!("exit {c}"),
        (_, None, Some(s)) => format!("signal {s}"),
        _ => "ended".into(),
    };
    let skip_reason = || {
        lines
            .iter()
            .map(|l| l.text.as_str())
            .chain(r.stderr.lines())
            .find_map(|l| {
                let at = |m: &str| l.find(m).map(|i| l[i + m.len()..].trim().to_string());
                at("SKIP: ").or_else(|| at("skip all tests: "))
            })
            .unwrap_or_else(|| "the script exited with ksft_skip (4)".into())
    };
    let mut out = Vec::new();
    let mut stopped: Option<String> = None;
    for test in &script.tests {
        if let Some(why) = &stopped {
            out.push(TestVerdict::NotRun(why.clone()));
            continue;
        }
        let marker = format!("TEST: {test} ... ");
        let Some(i) = lines.iter().position(|l| l.text.contains(&marker)) else {
            // The script ended before it started this test.
            let why = if r.code == Some(4) {
                out.push(TestVerdict::Skip(skip_reason()));
                stopped = Some(format!("not run: {} skipped: {}", script.file, skip_reason()));
                continue;
            } else {
                format!(
                    "not run: {} ended ({}) before this test; its output ends:\n{}\n{}",
                    script.file,
                    how_ended(),
                    all_output(),
                    stderr_tail
                )
            };
            out.push(TestVerdict::Error(why.clone()));
            stopped = Some(why);
            continue;
        };
        let line = &lines[i].text;
        let verdict = &line[line.find(&marker).expect("found above") + marker.len()..];
        let start_ms = lines.get(i.wrapping_sub(1)).filter(|_| i > 0).map_or(0, |l| l.ms);
        let seconds = (lines[i].ms.saturating_sub(start_ms)) as f64 / 1000.0;
        if verdict.trim() == "ok" {
            out.push(TestVerdict::Pass { seconds });
        } else if verdict.trim_start().starts_with("not ok") {
            let diff: Vec<&str> =
                lines[i + 1..].iter().map(|l| l.text.as_str()).take_while(|l| !l.starts_with("TEST: ")).collect();
            out.push(TestVerdict::Fail { diff: diff.join("\n").trim().to_string(), seconds });
            stopped = Some(format!("not run: {} stops at its first failure (`{test}` failed)", script.file));
        } else if r.code == Some(4) {
            out.push(TestVerdict::Skip(skip_reason()));
            stopped = Some(format!("not run: {} skipped in `{test}`: {}", script.file, skip_reason()));
        } else {
            // `die` in the middle of the test: its message is what follows on the line, or stderr.
            let msg = verdict.trim();
            let why = format!(
                "{} stopped in this test ({}): {}{}",
                script.file,
                how_ended(),
                if msg.is_empty() { "" } else { msg },
                if stderr_tail.trim().is_empty() { String::new() } else { format!("\n{stderr_tail}") }
            );
            out.push(TestVerdict::Error(why));
            stopped = Some(format!("not run: {} stopped in `{test}`", script.file));
        }
    }
    out
}

/// The guest was lost while the script ran (`died`: `Ok(what the console shows)` when the
/// kernel died, `Err(why)` when the harness lost its channel): the verdicts [`judge`] drew from
/// the output that reached the host stay for the tests the script finished; the test it was in
/// FAILs (a kernel death is a finding) or is an ERROR; the rest were never run.
pub fn guest_lost(script: &Script, verdicts: &mut [TestVerdict], died: Result<String, String>) {
    let Some(i) = verdicts.iter().position(|v| !matches!(v, TestVerdict::Pass { .. })) else { return };
    verdicts[i] = match died {
        Ok(actual) => TestVerdict::Fail { diff: format!("the kernel died: {actual}"), seconds: 0.0 },
        Err(message) => TestVerdict::Error(format!("running {}: {message}", script.file)),
    };
    for v in verdicts.iter_mut().skip(i + 1) {
        *v = TestVerdict::NotRun(format!("not run: the guest running {} was lost", script.file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use klp_protocol::OutputLine;

    fn script() -> Script {
        Script {
            file: "test-livepatch.sh".into(),
            name: "test-livepatch".into(),
            tests: vec![
                "basic function patching".into(),
                "multiple livepatches".into(),
                "atomic replace livepatch".into(),
            ],
        }
    }

    fn result(code: i32, out: &[(u64, &str)], err: &str) -> ExecResult {
        ExecResult {
            code: Some(code),
            signal: None,
            timed_out: false,
            stdout: out.iter().map(|(ms, t)| OutputLine { ms: *ms, text: t.to_string() }).collect(),
            stderr: err.into(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn start_tests_are_found_in_order() {
        let text =
            "start_test \"basic function patching\"\nload_lp x\n\tstart_test 'multiple livepatches'\n# start_test\n";
        assert_eq!(start_tests(text), ["basic function patching", "multiple livepatches"]);
        assert_eq!(slug("module_coming + pre-patch callback -ENODEV"), "module-coming-pre-patch-callback-enodev");
        assert_eq!(script().case_name("sysfs test object/patched"), "test-livepatch.sysfs-test-object-patched");
    }

    #[test]
    fn every_test_passes() {
        let r = result(
            0,
            &[
                (2000, "TEST: basic function patching ... ok"),
                (5000, "TEST: multiple livepatches ... ok"),
                (9000, "TEST: atomic replace livepatch ... ok"),
            ],
            "",
        );
        let v = judge(&script(), &r);
        assert_eq!(v[0], TestVerdict::Pass { seconds: 2.0 });
        assert_eq!(v[1], TestVerdict::Pass { seconds: 3.0 });
        assert_eq!(v[2], TestVerdict::Pass { seconds: 4.0 });
    }

    #[test]
    fn a_failure_stops_the_script_and_the_rest_is_not_run() {
        let r = result(
            1,
            &[
                (1000, "TEST: basic function patching ... not ok"),
                (1000, ""),
                (1000, "--- expected"),
                (1000, "+++ result"),
                (1000, "-livepatch: enabling patch 'x'"),
                (1000, "ERROR: livepatch kselftest(s) failed"),
            ],
            "",
        );
        let v = judge(&script(), &r);
        match &v[0] {
            TestVerdict::Fail { diff, .. } => assert!(diff.contains("-livepatch: enabling patch 'x'"), "{diff}"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&v[1], TestVerdict::NotRun(w) if w.contains("stops at its first failure (`basic function patching` failed)"))
        );
        assert!(matches!(&v[2], TestVerdict::NotRun(_)));
    }

    #[test]
    fn a_die_inside_a_test_is_an_error_and_a_skip_is_a_skip() {
        let r = result(1, &[(500, "TEST: basic function patching ... ERROR: failed to load module x")], "");
        let v = judge(&script(), &r);
        assert!(matches!(&v[0], TestVerdict::Error(m) if m.contains("failed to load module x")), "{v:?}");
        assert!(matches!(&v[1], TestVerdict::NotRun(_)));

        let r = result(4, &[], "SKIP: unable to load module test_klp_livepatch, verify CONFIG_TEST_LIVEPATCH=m\n");
        let v = judge(&script(), &r);
        assert!(matches!(&v[0], TestVerdict::Skip(m) if m.starts_with("unable to load module")), "{v:?}");
        assert!(matches!(&v[2], TestVerdict::NotRun(m) if m.contains("skipped")), "{v:?}");
    }

    #[test]
    fn a_script_that_ends_early_leaves_errors_with_its_output() {
        let r = result(1, &[(100, "TEST: basic function patching ... ok")], "bash: modprobe: command not found\n");
        let v = judge(&script(), &r);
        assert!(matches!(v[0], TestVerdict::Pass { .. }));
        assert!(
            matches!(&v[1], TestVerdict::Error(m) if m.contains("exit 1") && m.contains("command not found")),
            "{v:?}"
        );
        assert!(matches!(&v[2], TestVerdict::NotRun(_)));
    }

    #[test]
    fn a_kernel_death_keeps_the_finished_tests_and_fails_the_one_in_progress() {
        // What reached the results share before the guest died: one test done, one started.
        let r = result(-1, &[(0, "TEST: basic function patching ... ok"), (0, "TEST: multiple livepatches ... ")], "");
        let mut v = judge(&script(), &r);
        guest_lost(&script(), &mut v, Ok("Kernel panic - not syncing: Oops".into()));
        assert!(matches!(v[0], TestVerdict::Pass { .. }), "{v:?}");
        assert!(matches!(&v[1], TestVerdict::Fail { diff, .. } if diff.contains("Kernel panic")), "{v:?}");
        assert!(matches!(&v[2], TestVerdict::NotRun(m) if m.contains("was lost")), "{v:?}");

        let mut v = judge(&script(), &result(-1, &[], ""));
        guest_lost(&script(), &mut v, Err("the harness lost its channel".into()));
        assert!(matches!(&v[0], TestVerdict::Error(m) if m.contains("lost its channel")), "{v:?}");
        assert!(matches!(&v[1], TestVerdict::NotRun(_)) && matches!(&v[2], TestVerdict::NotRun(_)), "{v:?}");
    }

    #[test]
    fn the_root_has_the_shares_and_the_pseudo_file_systems() {
        let steps = guest_root(Path::new("/"), Path::new("/c/m"), Path::new("/c/s"), Path::new("/o/r"));
        let tags: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                RootStep::Share(sh) => Some(sh.tag.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(tags, ["hostroot", "modules", "selftests", "results"]);
        assert!(steps.contains(&RootStep::Mount {
            source: "debugfs".into(),
            target: format!("{GUEST_ROOT}/sys/kernel/debug"),
            fstype: "debugfs".into()
        }));
        let results = steps.iter().find_map(|s| match s {
            RootStep::Share(sh) if sh.tag == "results" => Some(sh),
            _ => None,
        });
        assert!(!results.unwrap().readonly);
    }
}
