//! `klp-conform cache verify|clean` against a small cache made here (no kernel, no VM): every
//! kind of damage a crash or a full disk leaves is reported, with exit code 1; clean removes
//! what it is asked to and nothing else.

use std::path::Path;
use std::process::Command;

use klp_conform::cache;

fn klp(args: &[&str], cache: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform")).args(args).arg("--cache").arg(cache).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

const ABI: &str = "6.1.0-99-amd64";

/// A kernel tree, a vmlinux, a module set and an accelerator probe, each recorded.
fn fake_cache(c: &Path) {
    let k = c.join("kernels").join(ABI);
    std::fs::create_dir_all(k.join("root/boot")).unwrap();
    std::fs::create_dir_all(k.join("root/usr/src/linux-headers/include")).unwrap();
    std::fs::write(k.join("root/boot/vmlinuz"), vec![3u8; 200_000]).unwrap();
    std::fs::write(k.join("root/usr/src/linux-headers/Makefile"), b"include x\n").unwrap();
    std::fs::write(k.join("root/usr/src/linux-headers/include/a.h"), b"#define A 1\n").unwrap();
    std::fs::write(k.join("kernel.json"), b"{}").unwrap();
    cache::kernel_tree(&k).record(serde_json::json!("test")).unwrap();

    let v = c.join("boot").join(ABI).join("vmlinux");
    std::fs::create_dir_all(v.parent().unwrap()).unwrap();
    std::fs::write(&v, vec![5u8; 3_000_000]).unwrap();
    cache::vmlinux(&v).record(serde_json::json!("test")).unwrap();

    let m = c.join("modules").join(ABI).join("0123456789abcdef");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("klp_ref_cmdline.ko"), b"\x7fELF module").unwrap();
    std::fs::write(m.join("manifest.json"), b"{}").unwrap();
    cache::module_set(&m).record(serde_json::json!("test")).unwrap();

    std::fs::write(c.join("accel-probe.json"), b"{}").unwrap();
    cache::accel_probe(&c.join("accel-probe.json")).record(serde_json::json!("test")).unwrap();
}

#[test]
fn verify_reports_every_broken_entry_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    fake_cache(c);
    let (code, out, err) = klp(&["cache", "verify"], c);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok ")).count(), 4, "{out}");
    assert!(out.ends_with(&format!("4 entries in {}: 4 ok, 0 broken, 0 unrecorded\n", c.display())), "{out}");

    // A truncated vmlinux, an emptied module, a header gone, a record that does not parse.
    std::fs::write(c.join("boot").join(ABI).join("vmlinux"), vec![5u8; 4096]).unwrap();
    std::fs::write(c.join("modules").join(ABI).join("0123456789abcdef/klp_ref_cmdline.ko"), b"").unwrap();
    std::fs::remove_file(c.join("kernels").join(ABI).join("root/usr/src/linux-headers/include/a.h")).unwrap();
    std::fs::write(c.join("accel-probe.json.klp-entry.json"), b"{\"schema\": ").unwrap();
    let (code, out, err) = klp(&["cache", "verify"], c);
    assert_eq!(code, 1, "{out}{err}");
    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {out}"));
    assert_eq!(
        line("broken      boot/"),
        format!("broken      boot/{ABI}/vmlinux  (vmlinux): vmlinux is 4096 bytes, recorded 3000000")
    );
    assert_eq!(
        line("broken      modules/"),
        format!("broken      modules/{ABI}/0123456789abcdef  (module set): klp_ref_cmdline.ko is 0 bytes, recorded 11")
    );
    assert_eq!(
        line("broken      kernels/"),
        format!("broken      kernels/{ABI}  (kernel tree): root/usr/src/linux-headers/include/a.h is missing")
    );
    assert!(line("broken      accel-probe.json").contains("does not parse"), "{out}");
    assert!(out.ends_with(": 0 ok, 4 broken, 0 unrecorded\n"), "{out}");
}

#[test]
fn an_unrecorded_entry_is_listed_but_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    fake_cache(c);
    std::fs::remove_file(c.join("modules").join(ABI).join("0123456789abcdef").join(cache::RECORD)).unwrap();
    let (code, out, _) = klp(&["cache", "verify"], c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("unrecorded  modules/{ABI}/0123456789abcdef  (module set)")), "{out}");
}

#[test]
fn clean_removes_one_kernels_entries_or_all() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    fake_cache(c);
    let other = c.join("boot/5.10.0-1-amd64/vmlinux");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, b"x").unwrap();
    let (code, out, err) = klp(&["cache", "clean", "--kernel", &format!("debian:{ABI}")], c);
    assert_eq!(code, 0, "{out}{err}");
    for d in ["kernels", "boot", "modules"] {
        assert!(!c.join(d).join(ABI).exists(), "{d} left: {out}");
        assert!(out.contains(&format!("removed {}", c.join(d).join(ABI).display())), "{out}");
    }
    assert!(other.exists(), "another kernel's entry was removed");
    assert!(c.join("accel-probe.json").exists());

    let (code, out, _) = klp(&["cache", "clean"], c);
    assert_eq!(code, 0, "{out}");
    assert!(!other.exists() && !c.join("accel-probe.json").exists(), "{out}");
    let (code, out, _) = klp(&["cache", "verify"], c);
    assert_eq!(
        (code, out.trim_end()),
        (0, format!("0 entries in {}: 0 ok, 0 broken, 0 unrecorded", c.display()).as_str())
    );
}
