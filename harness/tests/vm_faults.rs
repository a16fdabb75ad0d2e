//! Faults injected on purpose, against the real binary: a cache entry truncated, emptied or
//! with a corrupt record is reported on one line, rebuilt, and the run passes; two runs share
//! one cache at once; a full output directory is a clear error naming the path and the space.
//!
//! Each test works on a private cache (`--cache`) seeded from the shared one, so that nothing
//! here damages the shared cache and nothing is downloaded again: the kernel tree, apt lists,
//! toolchain roots and `core` builds are symlinked (read only here), the entries a test breaks
//! are copied (a file that is truncated is a copy; a hard-linked file is replaced, never
//! written through).

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
    let shared = kernel::default_cache_dir();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    for d in ["kernels", "apt", "toolchains", "rust-core"] {
        if shared.join(d).exists() {
            std::os::unix::fs::symlink(shared.join(d), c.join(d)).unwrap();
        }
    }
    let boot = c.join("boot").join(&k.release);
    std::fs::create_dir_all(&boot).unwrap();
    let src = vmlinux.parent().unwrap();
    for f in ["vmlinux", "vmlinux.source", "vmlinux.klp-entry.json"] {
        std::fs::copy(src.join(f), boot.join(f)).unwrap();
    }
    let key = set.dir.file_name().unwrap();
    let mods = c.join("modules").join(&k.release).join(key);
    link_tree(&set.dir, &mods);
    dir
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            link_tree(&e.path(), &t);
        } else {
            std::fs::hard_link(e.path(), &t).unwrap();
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
