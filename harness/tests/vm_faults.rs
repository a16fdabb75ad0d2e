//! Faults injected on purpose, against the real binary: a cache entry truncated, emptied, with
//! a corrupt record or with files missing is reported on one line, rebuilt, and the run passes;
//! two runs share one cache at once; a full or read-only cache or output directory stops the run
//! with a message naming the path (and the space), leaving the cache whole for the next run;
//! QEMU killed mid-boot and mid-case and the guest agent killed end their cases as ERROR with the
//! console excerpt while the other cases pass; SIGTERM during a module build leaves no build
//! tool running and no broken entry.
//!
//! Each test works on a private cache (`--cache`) seeded from the shared one, so that nothing
//! here damages the shared cache and nothing is downloaded again (but the kernel that one test
//! re-fetches): the kernel tree, apt lists, toolchain roots and `core` builds are symlinked (read
//! only here), the entries a test breaks are copied (a file that is truncated is a copy; a
//! hard-linked file is replaced, never written through).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use klp_conform::cache::{self, Check};
use klp_conform::kernel::{self, Kernel};
use klp_conform::progress::Progress;

const CASE: &str = "lifecycle/load-enable-disable-remove";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The default kernel, its recorded vmlinux and module set in the shared cache.
fn shared_entries() -> (Kernel, PathBuf, klp_conform::kmod::ModuleSet) {
    let shared = kernel::default_cache_dir();
    let progress = Progress::quiet();
    let k = kernel::resolve(&kernel::default_spec(&workspace()).unwrap(), &shared, &progress).unwrap();
    let (vmlinux, how) = klp_conform::image::boot_image(&k, &shared, &progress).unwrap();
    assert!(how.contains("vmlinux"), "the default kernel boots its vmlinux: {how}");
    let set = klp_conform::kmod::build_all(&k, &workspace().join("reference-kmod"), &shared, &progress).unwrap();
    (k, vmlinux, set)
}

/// A private cache: what a test does not break is the shared cache's (symlinked), the vmlinux
/// entry is a copy, the module set a hard-linked copy.
fn private_cache(k: &Kernel, vmlinux: &Path, set: &klp_conform::kmod::ModuleSet) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), k, Some(vmlinux), Some(set), &["kernels", "apt", "toolchains", "rust-core"]);
    dir
}

/// Fill the cache `c`: the shared cache's `links` symlinked, the vmlinux copied and the module
/// set linked (copied across file systems) when given.
fn seed(c: &Path, k: &Kernel, vmlinux: Option<&Path>, set: Option<&klp_conform::kmod::ModuleSet>, links: &[&str]) {
    let shared = kernel::default_cache_dir();
    for d in links {
        if shared.join(d).exists() {
            std::os::unix::fs::symlink(shared.join(d), c.join(d)).unwrap();
        }
    }
    if let Some(vmlinux) = vmlinux {
        let boot = c.join("boot").join(&k.release);
        std::fs::create_dir_all(&boot).unwrap();
        let src = vmlinux.parent().unwrap();
        for f in ["vmlinux", "vmlinux.source", "vmlinux.klp-entry.json"] {
            std::fs::copy(src.join(f), boot.join(f)).unwrap();
        }
    }
    if let Some(set) = set {
        let key = set.dir.file_name().unwrap();
        link_tree(&set.dir, &c.join("modules").join(&k.release).join(key));
    }
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            link_tree(&e.path(), &t);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &t).unwrap();
        } else if std::fs::hard_link(e.path(), &t).is_err() {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Replace a (possibly hard-linked) file by a new one with `data`: the shared inode is left
/// alone.
fn replace(path: &Path, data: &[u8]) {
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, data).unwrap();
}

fn run_case(cache: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--case", CASE, "--accel", "tcg", "--jobs", "1", "--cache"])
        .arg(cache)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// The one-line reports `cache: <path> is broken (…): rebuilding` for `path`.
fn broken_lines<'a>(stderr: &'a str, path: &Path) -> Vec<&'a str> {
    let needle = format!("cache: {} is broken (", path.display());
    // After the progress timestamp (`[   1.1s] `).
    stderr.lines().filter_map(|l| l.find(&needle).map(|i| &l[i..])).filter(|l| l.ends_with("): rebuilding")).collect()
}

#[test]
fn a_truncated_vmlinux_and_an_emptied_module_are_reported_rebuilt_and_the_run_passes() {
    let (k, vmlinux, set) = shared_entries();
    let priv_cache = private_cache(&k, &vmlinux, &set);
    let c = priv_cache.path();
    let v = c.join("boot").join(&k.release).join("vmlinux");
    let full_len = std::fs::metadata(&v).unwrap().len();
    // As a crash or a full disk leaves them: the vmlinux cut short, a module emptied.
    std::fs::OpenOptions::new().write(true).open(&v).unwrap().set_len(1 << 20).unwrap();
    let mods = c.join("modules").join(&k.release).join(set.dir.file_name().unwrap());
    replace(&mods.join("klp_ref_cmdline.ko"), b"");

    let out = tempfile::tempdir().unwrap();
    let o = run_case(c, out.path()).wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        broken_lines(&stderr, &v),
        [format!("cache: {} is broken (vmlinux is 1048576 bytes, recorded {full_len}): rebuilding", v.display())
            .as_str()],
        "{stderr}"
    );
    let m = broken_lines(&stderr, &mods);
    assert_eq!(m.len(), 1, "{stderr}");
    assert!(m[0].contains("(klp_ref_cmdline.ko is 0 bytes, recorded "), "{}", m[0]);
    // Rebuilt and recorded: the cache is whole again, and the shared one was not touched.
    assert!(matches!(cache::vmlinux(&v).check(), Check::Ok(_)));
    assert_eq!(std::fs::metadata(&v).unwrap().len(), full_len);
    assert!(matches!(cache::module_set(&mods).check(), Check::Ok(_)));
    assert!(matches!(cache::module_set(&set.dir).check(), Check::Ok(_)), "the shared module set was damaged");
    assert!(matches!(cache::vmlinux(&vmlinux).check(), Check::Ok(_)), "the shared vmlinux was damaged");
}

#[test]
fn a_corrupt_record_is_rebuilt_once_while_two_runs_share_the_cache() {
    let (k, vmlinux, set) = shared_entries();
    let priv_cache = private_cache(&k, &vmlinux, &set);
    let c = priv_cache.path();
    let v = c.join("boot").join(&k.release).join("vmlinux");
    std::fs::write(c.join("boot").join(&k.release).join("vmlinux.klp-entry.json"), b"{\"schema\": \"klp-co").unwrap();

    // Two runs at once on one cache: the entry is rebuilt by one, under its lock; the other
    // waits and finds it whole. Both pass.
    let (out1, out2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (run_case(c, out1.path()), run_case(c, out2.path()));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ((ao, ae), (bo, be)) = (text(&a), text(&b));
    assert_eq!(a.status.code(), Some(0), "first run:\n{ao}\n{ae}");
    assert_eq!(b.status.code(), Some(0), "second run:\n{bo}\n{be}");
    let lines: Vec<&str> = broken_lines(&ae, &v).into_iter().chain(broken_lines(&be, &v)).collect();
    assert_eq!(lines.len(), 1, "exactly one run rebuilds it:\n{ae}\n---\n{be}");
    assert!(lines[0].contains("does not parse"), "{}", lines[0]);
    assert!(matches!(cache::vmlinux(&v).check(), Check::Ok(_)));
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "klp-faults"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Tmpfs {
    fn path(&self) -> &Path {
        self.0.path()
    }

    /// `mount -o remount,<opts>`: `ro`, or `size=…` to give a full disk room again.
    fn remount(&self, opts: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{opts}")]).arg(self.path()).status().unwrap();
        assert!(ok.success(), "remount,{opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_output_directory_is_a_clear_error_and_leaves_no_half_written_file() {
    let Some(fs) = Tmpfs::mount("1m") else {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return;
    };
    let (k, _, _) = shared_entries();
    let out = fs.0.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--case", CASE, "--accel", "tcg", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    // The initramfs (megabytes) does not fit: the error names it, what it needed, what was free.
    let cpio = out.join("images").join(format!("{}.cpio", k.release));
    let said = format!("no space left on the device holding {} (", cpio.display());
    let all = format!("{stdout}\n{stderr}");
    let line = all.lines().find(|l| l.contains(&said)).unwrap_or_else(|| panic!("{said}\n{all}"));
    assert!(line.contains(" MB needed, ") && line.contains(" free)"), "{line}");
    // Nothing half-written: no temporary files, no partial initramfs, and every result file
    // that is there is whole.
    let mut leftovers = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".tmp") {
                leftovers.push(e.path());
            }
        }
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!cpio.exists());
    if let Ok(t) = std::fs::read_to_string(out.join("report.json")) {
        let r: serde_json::Value = serde_json::from_str(&t).expect("report.json is whole");
        assert_eq!(r["runs"][0]["cases"][0]["status"], "error", "{t}");
    }
}

/// Processes (other than this test) whose command line, working directory or executable
/// mention `needle`: what a run under a private cache or output dir left behind.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        if cmdline.contains(needle) || cwd.to_string_lossy().contains(needle) {
            found.push(format!("{pid}: {cmdline} (cwd {})", cwd.display()));
        }
    }
    found
}

/// Wait until nothing mentions `needle` any more (a SIGKILLed group takes a moment to go).
fn nothing_left(needle: &str) -> Vec<String> {
    for _ in 0..50 {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    processes_mentioning(needle)
}

fn klp(args: &[&str], cache: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(args)
        .arg("--cache")
        .arg(cache)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn cache_verify(cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klp-conform")).args(["cache", "verify", "--cache"]).arg(cache).output().unwrap()
}

#[test]
fn a_full_cache_stops_the_run_naming_the_path_and_the_next_run_repairs() {
    let Some(fs) = Tmpfs::mount("16m") else {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return;
    };
    let (k, _, set) = shared_entries();
    // Everything but the vmlinux (63 MB), which the run must extract into a 16 MB cache.
    let c = fs.path().join("cache");
    std::fs::create_dir_all(&c).unwrap();
    seed(&c, &k, None, Some(&set), &["kernels", "apt", "toolchains", "rust-core"]);
    let out = tempfile::tempdir().unwrap();
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg", "--jobs", "1"], &c, out.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    let said = format!("no space left on the device holding {}", c.join("boot").join(&k.release).display());
    let line = stderr.lines().find(|l| l.contains(&said)).unwrap_or_else(|| panic!("{said}\n{stderr}"));
    assert!(line.starts_with("error: ") && line.contains(" free") && line.contains("the run stopped here"), "{line}");
    // Stopped at once: no case ran, no report was written.
    assert!(!stdout.lines().any(|l| l.trim_start().starts_with("ok ") || l.contains("not ok")), "{stdout}");
    assert!(!out.path().join("report.json").exists());
    // The cache holds only whole entries: nothing is broken, nothing half-written stays.
    let v = cache_verify(&c);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v).0);
    assert!(!c.join("boot").join(&k.release).join("vmlinux").exists());
    // Room again: the next run extracts the vmlinux and passes.
    fs.remount("size=200m");
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg", "--jobs", "1"], &c, out.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    assert!(matches!(cache::vmlinux(&c.join("boot").join(&k.release).join("vmlinux")).check(), Check::Ok(_)));
}

#[test]
fn a_read_only_cache_or_output_directory_is_exit_2_naming_the_path() {
    let Some(fs) = Tmpfs::mount("4m") else {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return;
    };
    std::fs::create_dir_all(fs.path().join("cache")).unwrap();
    fs.remount("ro");
    let scratch = tempfile::tempdir().unwrap();

    // Output: refused before any kernel is looked at.
    let out = fs.path().join("out");
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg"], scratch.path(), &out);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    let said = format!("error: writing results: {} is not writable by uid ", out.display());
    assert!(stderr.contains(&said) && stderr.contains("(read-only file system)"), "{said}\n{stderr}");
    assert!(!stderr.contains("kernel 6"), "stopped before any kernel: {stderr}");

    // Cache: the first lock the run takes there fails; the run stops with the path.
    let c = fs.path().join("cache");
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg"], &c, scratch.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains(&format!("{}/", c.display()))
            && line.contains(" is not writable by uid ")
            && line.contains("(read-only file system)")
            && line.contains("the run stopped here"),
        "{line}"
    );
    assert!(!stdout.contains("ok "), "no case ran: {stdout}");
}

#[test]
fn a_kernel_tree_missing_its_headers_is_fetched_again_and_the_run_passes() {
    let (k, vmlinux, set) = shared_entries();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    seed(c, &k, Some(&vmlinux), Some(&set), &["apt", "toolchains", "rust-core"]);
    // The kernel tree as hard links (the shared files are never written: a rebuild extracts
    // new ones), then its -common headers gone, as a cleaner or a full disk leaves it.
    let tree = c.join("kernels").join(&k.release);
    link_tree(&kernel::default_cache_dir().join("kernels").join(&k.release), &tree);
    let common = std::fs::read_dir(tree.join("root/usr/src"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with("-common"))
        .expect("Debian's -common headers");
    std::fs::remove_dir_all(&common).unwrap();

    let out = tempfile::tempdir().unwrap();
    let o = run_case(c, out.path()).wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    let lines = broken_lines(&stderr, &tree);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("missing"), "{}", lines[0]);
    assert!(stderr.contains(&format!("kernel {}: downloading", k.release)), "fetched again:\n{stderr}");
    assert!(common.is_dir());
    assert!(matches!(cache::kernel_tree(&tree).check(), Check::Ok(_)));
}

#[test]
fn qemu_killed_mid_boot_and_mid_case_and_the_agent_killed_end_only_their_cases() {
    let (k, vmlinux, set) = shared_entries();
    let priv_cache = private_cache(&k, &vmlinux, &set);
    let out = tempfile::tempdir().unwrap();
    let out_s = out.path().display().to_string();
    // In suite order, which --jobs 1 runs them in.
    let cases = ["load-enable-disable-remove", "remove-while-enabled", "force-without-transition", "enabled-writes"];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klp-conform"));
    cmd.args(["conformance", "--suite", "lifecycle", "--accel", "tcg", "--jobs", "1", "--cache"])
        .arg(priv_cache.path())
        .arg("--out")
        .arg(out.path())
        // The third case's agent (PID 1) exits 50 ms into the case (its steps take ~0.3 s).
        .env("KLP_CONFORM_FAULT_AGENT_EXIT", format!("lifecycle/{}@50", cases[2]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();

    // The QEMUs of this run, in the order they start: 1 boots the guest to be saved (killed
    // mid-boot: every case then boots its own), 2 is the first case's (killed mid-boot), 3 the
    // second's (killed once its agent serves, mid-case), 4 and 5 are left alone.
    let qemus = |seen: &mut Vec<i32>| {
        for line in processes_mentioning(&out_s) {
            let pid: i32 = line.split(':').next().unwrap().parse().unwrap();
            if line.contains("qemu-system") && !seen.contains(&pid) {
                seen.push(pid);
            }
        }
    };
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let console = out.path().join("logs").join(&k.release).join("lifecycle").join(cases[1]).join("console.log");
    let mut killed = 0;
    while killed < 3 && std::time::Instant::now() < deadline {
        qemus(&mut seen);
        if seen.len() > killed {
            let pid = seen[killed];
            if killed == 2 {
                // Mid-case: the agent is serving.
                let serving = std::fs::read_to_string(&console).unwrap_or_default().contains("serving on");
                if !serving {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            } else {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            // SAFETY: kill(2) on a pid this run's harness started (found by its output dir).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(killed, 3, "QEMUs seen: {seen:?}");
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("could not save a booted guest, every case boots its own"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let by_name =
        |name: &str| report["runs"][0]["cases"].as_array().unwrap().iter().find(|c| c["case"] == name).unwrap().clone();
    for (name, says) in [
        (cases[0], "the VM did not start"),
        (cases[1], "QEMU"),
        (cases[2], "the guest agent (PID 1) died and the kernel panicked"),
    ] {
        let c = by_name(name);
        assert_eq!(c["status"], "error", "{name}: {c}");
        let error = c["error"].as_str().unwrap();
        assert!(error.contains(says), "{name}: {error}");
        // The console excerpt comes with it, in the diagnostics, not on the `not ok` line.
        assert!(error.contains('\n'), "{name} has no console excerpt: {error}");
        // The verdict line carries a 160-character headline at most.
        let line = stdout.lines().find(|l| l.contains("not ok") && l.contains(name)).unwrap();
        let reason = line.split_once(" # ERROR ").map(|(_, r)| r).unwrap_or_default();
        assert!(!reason.is_empty() && reason.chars().count() <= 160 && !reason.contains(" | "), "{line}");
    }
    assert!(by_name(cases[2])["error"].as_str().unwrap().contains("Attempted to kill init!"));
    assert_eq!(by_name(cases[3])["status"], "pass", "{stdout}");
    assert!(nothing_left(&out_s).is_empty(), "left running: {:?}", processes_mentioning(&out_s));
}

#[test]
fn sigterm_during_a_module_build_leaves_no_tool_running_and_the_next_run_builds() {
    let (k, vmlinux, _) = shared_entries();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    // No module set: the run must build one.
    seed(c, &k, Some(&vmlinux), None, &["kernels", "apt", "toolchains", "rust-core"]);
    let c_s = c.display().to_string();
    let out = tempfile::tempdir().unwrap();
    let child = run_case(c, out.path());
    let pid = child.id() as i32;
    // Wait for kbuild (make) to run under this cache, then SIGTERM the harness.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let building = loop {
        let tools = processes_mentioning(&c_s);
        if tools.iter().any(|l| l.contains("make") || l.contains("rustc")) {
            break tools;
        }
        assert!(std::time::Instant::now() < deadline, "no build started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(130), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("interrupted: every VM and build tool was killed"), "{stderr}");
    let left = nothing_left(&c_s);
    assert!(left.is_empty(), "left running after SIGTERM (building was {building:?}): {left:?}");
    // No entry half-made: verify finds nothing broken, and no module set was published.
    let v = cache_verify(c);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v).0);
    let sets: Vec<_> = std::fs::read_dir(c.join("modules").join(&k.release))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.path().is_dir())
                .count()
        })
        .into_iter()
        .collect();
    assert!(sets.iter().all(|&n| n == 0), "a module set appeared: {sets:?}");
    // The next run builds the set and passes.
    let o = run_case(c, out.path()).wait_with_output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}\nstderr:\n{stderr}");
}

/// The disk fills inside kbuild (its own message only says "No space left on device"): the run
/// stops naming the device the module build writes to, publishes no module set, and the next
/// run with room builds it and passes.
#[test]
fn a_full_cache_during_a_module_build_names_where_kbuild_writes() {
    let Some(fs) = Tmpfs::mount("8m") else {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return;
    };
    let (k, _, _) = shared_entries();
    let c = fs.path().join("cache");
    std::fs::create_dir_all(&c).unwrap();
    seed(&c, &k, None, None, &["kernels", "apt", "toolchains", "rust-core"]);
    let out = tempfile::tempdir().unwrap();
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg", "--jobs", "1"], &c, out.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "KTAP:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("No space left on device"), "the tool's own words are kept: {stderr}");
    let said = format!("no space left on the device holding {}/", c.join("modules").join(&k.release).display());
    let line = stderr.lines().find(|l| l.contains(&said)).unwrap_or_else(|| panic!("{said}\n{stderr}"));
    assert!(line.contains(" free)") && line.contains("the run stopped here"), "{line}");
    assert!(!out.path().join("report.json").exists());
    let v = cache_verify(&c);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v).0);
    fs.remount("size=400m");
    let o = klp(&["conformance", "--case", CASE, "--accel", "tcg", "--jobs", "1"], &c, out.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "KTAP:\n{stdout}\nstderr:\n{stderr}");
}
