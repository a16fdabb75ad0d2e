//! `conformance --module PATH.ko` refuses, before anything is built or booted and with exit
//! code 2, a file that is not a livepatch module for the kernel under test: a missing file,
//! one that is not ELF, a module without `livepatch=Y`, a module whose vermagic is another
//! kernel's. No VM: the kernel is a fake build tree (`--kernel <tree>` reads its release and
//! config, and its vermagic from a module in it), the modules are made with the `object` crate
//! the way kbuild lays them out.

use std::path::Path;
use std::process::Command;

use object::write::{Object, Symbol, SymbolSection};
use object::{Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope};

/// A relocatable ELF with a `.modinfo` of `modinfo` and a `struct module` section.
fn module(modinfo: &[&str]) -> Vec<u8> {
    let mut o = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let mi = o.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    let mut data = Vec::new();
    for s in modinfo {
        data.extend_from_slice(s.as_bytes());
        data.push(0);
    }
    o.append_section_data(mi, &data, 1);
    let this = o.add_section(Vec::new(), b".gnu.linkonce.this_module".to_vec(), SectionKind::Data);
    o.append_section_data(this, &[0; 64], 64);
    o.add_symbol(Symbol {
        name: b"__this_module".to_vec(),
        value: 0,
        size: 64,
        kind: SymbolKind::Data,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(this),
        flags: SymbolFlags::None,
    });
    o.write().unwrap()
}

const VERMAGIC: &str = "6.1.192 SMP preempt mod_unload ";

/// A kernel build tree as `--kernel <tree>` resolves it, with one module of its own to read the
/// vermagic from (nothing in it can be built or booted).
fn fake_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let fragment =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/kernel-config.fragment"))
            .unwrap();
    let derived = "CONFIG_X86_64=y\nCONFIG_HAVE_RELIABLE_STACKTRACE=y\nCONFIG_DYNAMIC_FTRACE_WITH_ARGS=y\n";
    std::fs::write(d.path().join(".config"), format!("{fragment}{derived}")).unwrap();
    std::fs::create_dir_all(d.path().join("include/config")).unwrap();
    std::fs::write(d.path().join("include/config/kernel.release"), "6.1.192\n").unwrap();
    std::fs::create_dir_all(d.path().join("arch/x86/boot")).unwrap();
    std::fs::write(d.path().join("arch/x86/boot/bzImage"), b"not a kernel").unwrap();
    std::fs::create_dir_all(d.path().join("drivers/virtio")).unwrap();
    std::fs::write(
        d.path().join("drivers/virtio/virtio.ko"),
        module(&["name=virtio", &format!("vermagic={VERMAGIC}")]),
    )
    .unwrap();
    std::fs::write(d.path().join("modules.order"), "drivers/virtio/virtio.ko\n").unwrap();
    d
}

fn run(tree: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .arg("conformance")
        .arg("--kernel")
        .arg(tree)
        .args(["--out", tree.join("out").to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn nothing_started(err: &str, out: &str, tree: &Path) {
    for never in ["building the guest agent", "reference modules ready", "kmod:", "accelerator:", "booted"] {
        assert!(!err.contains(never), "nothing may be built or booted ({never}): {err}");
    }
    assert!(out.is_empty(), "no KTAP for a run that never started: {out}");
    assert!(!tree.join("out/report.json").exists());
}

#[test]
fn missing_file() {
    let t = fake_tree();
    let ko = t.path().join("nope.ko");
    let (code, out, err) = run(t.path(), &["--module", ko.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("error: --module {}: no such file", ko.display())), "{err}");
    nothing_started(&err, &out, t.path());
}

#[test]
fn not_an_elf_file() {
    let t = fake_tree();
    let ko = t.path().join("text.ko");
    std::fs::write(&ko, "obj-m += text.o\n").unwrap();
    let (code, out, err) = run(t.path(), &["--module", ko.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: {}: not an ELF file (expected a kernel module, <name>.ko, as kbuild makes it; compressed \
             .ko.xz/.ko.zst files must be decompressed first)",
            ko.display()
        )),
        "{err}"
    );
    nothing_started(&err, &out, t.path());
}

#[test]
fn no_livepatch_modinfo() {
    let t = fake_tree();
    let ko = t.path().join("plain.ko");
    std::fs::write(&ko, module(&["name=plain", &format!("vermagic={VERMAGIC}")])).unwrap();
    let (code, out, err) = run(t.path(), &["--module", ko.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: {}: not a livepatch module: its .modinfo has no `livepatch=Y` (MODULE_INFO(livepatch, \"Y\"); \
             the kernel would refuse it with EINVAL, SPEC L2)",
            ko.display()
        )),
        "{err}"
    );
    nothing_started(&err, &out, t.path());
}

#[test]
fn wrong_vermagic() {
    let t = fake_tree();
    let ko = t.path().join("lp-other.ko");
    std::fs::write(
        &ko,
        module(&["livepatch=Y", "name=lp_other", "vermagic=6.12.95+deb12-amd64 SMP preempt mod_unload modversions "]),
    )
    .unwrap();
    let (code, out, err) = run(t.path(), &["--module", ko.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    let from = t.path().join("drivers/virtio/virtio.ko");
    assert!(
        err.contains(&format!(
            "error: {}: vermagic `6.12.95+deb12-amd64 SMP preempt mod_unload modversions ` does not match kernel \
             6.1.192's `{VERMAGIC}` (read from {}): the kernel would refuse to load it; build it against that \
             kernel's headers (make -C <headers> M=<dir> modules)",
            ko.display(),
            from.display()
        )),
        "{err}"
    );
    nothing_started(&err, &out, t.path());
}

/// Every problem of every module at once; and a module that passes is planned as the generic
/// suite `module` (`--list` builds and boots nothing).
#[test]
fn every_problem_at_once_and_a_good_module_is_planned() {
    let t = fake_tree();
    let good = t.path().join("lp-good.ko");
    std::fs::write(&good, module(&["livepatch=Y", "name=lp_good", &format!("vermagic={VERMAGIC}")])).unwrap();
    let (code, out, err) = run(t.path(), &["--module", good.to_str().unwrap(), "--list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l == "  run   module/lp_good"), "{out}");
    assert!(t.path().join("out/modules/lp_good.ko").is_file());
    let suite = std::fs::read_to_string(t.path().join("out/modules/module.yaml")).unwrap();
    assert!(suite.contains("load: \"lp_good\""), "{suite}");

    let text = t.path().join("a.ko");
    std::fs::write(&text, "x").unwrap();
    let missing = t.path().join("b.ko");
    let (code, _, err) = run(
        t.path(),
        &[
            "--module",
            text.to_str().unwrap(),
            "--module",
            missing.to_str().unwrap(),
            "--module",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("error: ").count(), 2, "{err}");
}

/// A module may not take a reference module's name, nor two modules one name: the guest
/// loads modules by name.
#[test]
fn names_that_collide_are_refused() {
    let t = fake_tree();
    let lp = |name: &str| module(&["livepatch=Y", &format!("name={name}"), &format!("vermagic={VERMAGIC}")]);
    let reference = t.path().join("mine.ko");
    std::fs::write(&reference, lp("klp_ref_cmdline")).unwrap();
    let (code, out, err) = run(t.path(), &["--module", reference.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: {}: module name `klp_ref_cmdline` is the name of a reference module of klp-conform; rename the \
             module",
            reference.display()
        )),
        "{err}"
    );
    nothing_started(&err, &out, t.path());
    let (a, b) = (t.path().join("a.ko"), t.path().join("b.ko"));
    std::fs::write(&a, lp("same")).unwrap();
    std::fs::write(&b, lp("same")).unwrap();
    let (code, _, err) = run(t.path(), &["--module", a.to_str().unwrap(), "--module", b.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: {}: module name `same` is also the name of {}; the kernel loads one module per name",
            b.display(),
            a.display()
        )),
        "{err}"
    );
}
