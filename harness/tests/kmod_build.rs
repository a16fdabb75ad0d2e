//! Builds the reference livepatch modules for the default Debian kernel (6.1) and for the pinned
//! 6.12 (IBT, call padding, objtool at link time) and checks the .ko files the way the kernel's
//! module loader, ftrace and the livepatch core will look at them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use klp_conform::kernel::{default_cache_dir, default_spec, resolve, KernelSpec, Pins};
use klp_conform::kmod::codegen::AsmContract;
use klp_conform::kmod::{build_all, ModuleSet};
use klp_conform::progress::Progress;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference-kmod")
}

fn modinfo(ko: &object::File<'_>) -> Vec<String> {
    let s = ko.section_by_name(".modinfo").expect(".modinfo section");
    s.data()
        .unwrap()
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Whether some `.orc_unwind_ip` entry points into the function `sym`: objtool generated ORC
/// data for the Rust code, so a task stopped in it has a reliable stack.
fn orc_covers(ko: &object::File<'_>, sym: &str) -> bool {
    let f = ko.symbols().find(|s| s.name() == Ok(sym)).unwrap_or_else(|| panic!("symbol {sym} in the .ko"));
    let (sec, start, end) = (f.section_index().unwrap(), f.address(), f.address() + f.size());
    let orc_ip = ko.section_by_name(".orc_unwind_ip").expect(".orc_unwind_ip section");
    orc_ip.relocations().any(|(_, r)| {
        let RelocationTarget::Symbol(idx) = r.target() else { return false };
        let t = ko.symbol_by_index(idx).unwrap();
        let addr = t.address().wrapping_add(r.addend() as u64);
        t.section_index() == Some(sec) && (start..end).contains(&addr)
    })
}

/// Whether `__mcount_loc` has an entry at `offset` bytes into `sym`: ftrace (and so livepatch)
/// can redirect it, as it can a C function built with `-pg -mfentry -mrecord-mcount` (whose
/// fentry call follows the ENDBR64 under IBT).
fn mcount_at(ko: &object::File<'_>, sym: &str, offset: u64) -> bool {
    let f = ko.symbols().find(|s| s.name() == Ok(sym)).unwrap_or_else(|| panic!("symbol {sym} in the .ko"));
    let Some(loc) = ko.section_by_name("__mcount_loc") else { return false };
    loc.relocations().any(|(_, r)| {
        let RelocationTarget::Symbol(idx) = r.target() else { return false };
        let t = ko.symbol_by_index(idx).unwrap();
        t.section_index() == f.section_index() && t.address().wrapping_add(r.addend() as u64) == f.address() + offset
    })
}

/// The name of the symbol a relocation of `sec` at `offset` refers to.
fn reloc_target_at<'a>(ko: &'a object::File<'_>, sec: &object::Section<'_, '_>, offset: u64) -> Option<&'a str> {
    sec.relocations().find(|(o, _)| *o == offset).and_then(|(_, r)| match r.target() {
        RelocationTarget::Symbol(idx) => ko.symbol_by_index(idx).ok()?.name().ok(),
        _ => None,
    })
}

/// A `traceable!` function as gcc would compile a C function of this kernel: the padding NOPs
/// before it, ENDBR64 first under IBT, then `call __fentry__` (recorded in `__mcount_loc`),
/// and the return through the return thunk, INT3 after it under SLS.
fn check_traceable(ko: &object::File<'_>, module: &str, sym: &str, asm: &AsmContract) {
    let f = ko.symbols().find(|s| s.name() == Ok(sym)).unwrap_or_else(|| panic!("{module}: symbol {sym}"));
    let text = ko.section_by_index(f.section_index().unwrap()).unwrap();
    let data = text.data().unwrap();
    let start = (f.address() - text.address()) as usize;
    let code = &data[start..start + f.size() as usize];
    let pad = asm.padding_bytes as usize;
    assert!(start >= pad && data[start - pad..start].iter().all(|b| *b == 0x90), "{module}: {pad} NOPs before {sym}");
    let fentry = if asm.ibt {
        assert_eq!(&code[..4], &[0xf3, 0x0f, 0x1e, 0xfa], "{module}: {sym} must start with ENDBR64 under IBT");
        4
    } else {
        0
    };
    assert_eq!(code[fentry], 0xe8, "{module}: {sym}+{fentry} must be a call");
    assert_eq!(
        reloc_target_at(ko, &text, f.address() + fentry as u64 + 1),
        Some("__fentry__"),
        "{module}: {sym}+{fentry} calls __fentry__"
    );
    assert!(mcount_at(ko, sym, fentry as u64), "{module}: no __mcount_loc entry at {sym}+{fentry}");
    // The return: `jmp __x86_return_thunk` (e9 + rel32) or `ret` (c3), then INT3 under SLS.
    let ret = if asm.rethunk {
        let at = (0..code.len() - 4)
            .find(|&i| {
                code[i] == 0xe9 && reloc_target_at(ko, &text, f.address() + i as u64 + 1) == Some("__x86_return_thunk")
            })
            .unwrap_or_else(|| panic!("{module}: {sym} returns through __x86_return_thunk"));
        at + 5
    } else {
        code.iter().position(|b| *b == 0xc3).unwrap_or_else(|| panic!("{module}: {sym} has a ret")) + 1
    };
    if asm.sls {
        assert_eq!(code.get(ret), Some(&0xcc), "{module}: INT3 after the return of {sym} (SLS)");
    }
}

fn pinned(name: &str) -> KernelSpec {
    let pins = Pins::load_workspace(source_root().parent().unwrap()).expect("images/kernels.yaml");
    KernelSpec::parse(name, &pins).expect("a pinned kernel")
}

/// The modules of the kernel `spec`, built (or found in the cache).
fn modules_for(spec: &KernelSpec) -> (klp_conform::kernel::Kernel, ModuleSet) {
    let progress = Progress::new();
    let cache = default_cache_dir();
    let kernel = resolve(spec, &cache, &progress).expect("kernel");
    let set = build_all(&kernel, &source_root(), &cache, &progress).expect("build");
    (kernel, set)
}

/// Every variant, and whether it is a livepatch (has `livepatch=Y` in .modinfo).
const VARIANTS: &[(&str, bool)] = &[
    ("klp_bench", false),
    ("klp_bench_ftrace", false),
    ("klp_bench_patch", true),
    ("klp_bench_patch2", true),
    ("klp_bench_patch_hold", true),
    ("klp_mutant", false),
    ("klp_ref_ambiguous", true),
    ("klp_ref_badpos", true),
    ("klp_ref_busy", false),
    ("klp_ref_busy_patch", true),
    ("klp_ref_callbacks", true),
    ("klp_ref_callbacks2", true),
    ("klp_ref_cmdline", true),
    ("klp_ref_nolp", false),
    ("klp_ref_nosym", true),
    ("klp_ref_notrace", true),
    ("klp_ref_pos1", true),
    ("klp_ref_replace", true),
    ("klp_ref_replace_empty", true),
    ("klp_ref_shadow", false),
    ("klp_ref_stack_a", true),
    ("klp_ref_stack_b", true),
    ("klp_ref_stack_c", true),
    ("klp_ref_state_noid", true),
    ("klp_ref_state_v1", true),
    ("klp_ref_state_v2", true),
    ("klp_ref_state_v2b", true),
    ("klp_ref_target", false),
    ("klp_ref_target_patch", true),
];

/// Module parameters each variant must declare (`parmtype=<name>:<type>`).
const PARAMS: &[(&str, &[&str])] = &[
    ("klp_bench", &["batches:int", "calls:int", "holders:int", "hold:int", "hold_ms:int", "holding:int"]),
    ("klp_mutant", &["mutant:charp"]),
    ("klp_ref_busy", &["block:bool", "kthread:bool", "sleep_mode:string"]),
    ("klp_ref_busy_patch", &["block:bool"]),
    ("klp_ref_callbacks", &["pre_patch_ret:int"]),
    ("klp_ref_callbacks2", &["replace:bool"]),
    ("klp_ref_shadow", &["keep:bool", "dup_warn:bool"]),
];

#[test]
fn every_variant_has_the_right_modinfo() {
    let (kernel, set) = modules_for(&default_spec(source_root().parent().unwrap()).unwrap());

    let built: Vec<&str> = set.modules.keys().map(String::as_str).collect();
    let want: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(built, want, "the built variants");
    let declared = klp_conform::kmod::variants(&source_root()).unwrap();
    for (name, livepatch) in VARIANTS {
        let data = std::fs::read(&set.modules[*name]).unwrap();
        let ko = object::File::parse(&*data).unwrap();
        let info = modinfo(&ko);
        let lp: Vec<&String> = info.iter().filter(|f| f.starts_with("livepatch=")).collect();
        if *livepatch {
            assert_eq!(lp, ["livepatch=Y"], "{name}: {info:?}");
        } else {
            assert!(lp.is_empty(), "{name} must not be marked as a livepatch: {info:?}");
        }
        let v = declared.iter().find(|v| v.name == *name).unwrap();
        assert_eq!(v.livepatch_modinfo, *livepatch, "{name}: //@ directive");
        for want in [format!("name={name}"), "license=GPL".to_string()] {
            assert!(info.contains(&want), "{name}: {want} missing from .modinfo: {info:?}");
        }
        assert!(
            info.iter().any(|f| f.starts_with("description=") && f.len() > "description=".len()),
            "{name}: {info:?}"
        );
        let vermagic = info.iter().find_map(|f| f.strip_prefix("vermagic=")).expect("vermagic");
        assert!(vermagic.starts_with(&format!("{} ", kernel.release)), "{name}: vermagic `{vermagic}`");
        let params = PARAMS.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, p)| *p);
        for p in params {
            assert!(info.iter().any(|f| f.starts_with(&format!("parmtype={p}"))), "{name}: parmtype={p}: {info:?}");
        }
        if params.is_empty() {
            assert!(!info.iter().any(|f| f.starts_with("parmtype=")), "{name} has no params: {info:?}");
        }
    }

    // The functions livepatches patch in the Rust target modules are traceable, and have ORC.
    assert!(set.warnings.is_empty(), "objtool/modpost/gcc warnings: {:#?}", set.warnings);
    assert!(!set.codegen.asm.ibt, "Debian's 6.1 has no IBT");
    for (module, func) in [
        ("klp_ref_target", "klp_ref_target_show"),
        ("klp_ref_busy", "klp_ref_busy_func"),
        ("klp_bench", "klp_bench_func"),
        ("klp_bench", "klp_bench_hold_func"),
    ] {
        let data = std::fs::read(&set.modules[module]).unwrap();
        let ko = object::File::parse(&*data).unwrap();
        check_traceable(&ko, module, func, &set.codegen.asm);
        assert!(mcount_at(&ko, func, 0), "{module}: no __mcount_loc entry at {func}");
        assert!(orc_covers(&ko, func), "{module}: no ORC entry inside {func}");
        let undefined: Vec<&str> = ko.symbols().filter(|s| s.is_undefined()).filter_map(|s| s.name().ok()).collect();
        assert!(undefined.contains(&"__fentry__"), "{module}: __fentry__ not imported");
        assert!(!undefined.contains(&"klp_enable_patch"), "{module} is not a livepatch");
    }
}

#[test]
fn reference_modules_build_for_the_debian_kernel_and_are_cached() {
    let cache = default_cache_dir();
    let (kernel, set) = modules_for(&default_spec(source_root().parent().unwrap()).unwrap());
    assert_eq!(set.release, kernel.release);
    let ko_path = set.modules.get("klp_ref_cmdline").expect("klp_ref_cmdline built");
    let data = std::fs::read(ko_path).unwrap();
    let ko = object::File::parse(&*data).unwrap();

    let info = modinfo(&ko);
    for want in ["livepatch=Y", "name=klp_ref_cmdline", "license=GPL"] {
        assert!(info.iter().any(|f| f == want), "{want} missing from .modinfo: {info:?}");
    }
    let vermagic = info.iter().find_map(|f| f.strip_prefix("vermagic=")).expect("vermagic");
    assert!(vermagic.starts_with(&format!("{} ", kernel.release)), "vermagic `{vermagic}` for {}", kernel.release);
    assert_eq!(info.iter().filter(|f| f.starts_with("vermagic=")).count(), 1, "one vermagic: {info:?}");

    let sections: Vec<String> = ko.sections().filter_map(|s| s.name().ok().map(str::to_string)).collect();
    assert!(!sections.iter().any(|s| s.starts_with(".klp")), "no .klp sections: {sections:?}");
    for want in [".orc_unwind", ".orc_unwind_ip", ".return_sites", "__versions"] {
        assert!(sections.iter().any(|s| s == want), "{want} missing: {sections:?}");
    }
    assert!(orc_covers(&ko, "klp_ref_cmdline_proc_show"), "no ORC entry inside the Rust replacement function");
    let undefined: Vec<&str> =
        ko.symbols().filter(|s| s.is_undefined()).filter_map(|s| s.name().ok()).filter(|n| !n.is_empty()).collect();
    for want in ["klp_enable_patch", "seq_puts"] {
        assert!(undefined.contains(&want), "{want} not imported: {undefined:?}");
    }
    assert!(
        !undefined.iter().any(|n| n.contains("rust") || n.starts_with("_ZN")),
        "Rust symbols left undefined: {undefined:?}"
    );

    // Second call: a cache hit, no rebuild — proven by the file not being rewritten (its
    // modification time), not by a time limit that a loaded CI machine may exceed.
    let mtime = std::fs::metadata(ko_path).unwrap().modified().unwrap();
    let t = Instant::now();
    let again = build_all(&kernel, &source_root(), &cache, &Progress::quiet()).expect("cached build");
    eprintln!("cache hit in {:?}", t.elapsed());
    assert_eq!(again, set);
    assert_eq!(std::fs::metadata(ko_path).unwrap().modified().unwrap(), mtime, "the cached .ko was rebuilt");
    assert_eq!(std::fs::read(ko_path).unwrap(), data, "the cached .ko was not rewritten");
}

/// 6.12 (Debian backports): IBT, 16 bytes of call padding (call depth tracking), objtool run by
/// kbuild on the linked module. Every function of a module, Rust ones included, has its padding
/// (objtool put a `__pfx_` symbol on it), the traceable functions start with ENDBR64 and their
/// fentry call after it is where `__mcount_loc` says, objtool listed the call sites for the call
/// thunks, and nothing warned.
#[test]
fn modules_for_an_ibt_kernel_follow_its_code_generation() {
    let (kernel, set) = modules_for(&pinned("6.12"));
    assert!(kernel.config_enabled("CONFIG_X86_KERNEL_IBT").unwrap(), "the 6.12 pin has IBT");
    let asm = &set.codegen.asm;
    assert!(asm.ibt && asm.rethunk && asm.sls, "{asm:?}");
    assert_eq!(asm.padding_bytes, 16, "{asm:?}");
    for flag in ["-Zcf-protection=branch", "-Zpatchable-function-entry=16,16", "-Zfunction-return=thunk-extern"] {
        assert!(set.codegen.rustc_flags.iter().any(|f| f == flag), "{flag}: {:?}", set.codegen.rustc_flags);
    }
    assert!(set.warnings.is_empty(), "objtool/modpost/gcc warnings: {:#?}", set.warnings);

    for (module, func) in [
        ("klp_ref_target", "klp_ref_target_show"),
        ("klp_ref_busy", "klp_ref_busy_func"),
        ("klp_bench", "klp_bench_func"),
        ("klp_bench", "klp_bench_hold_func"),
    ] {
        let data = std::fs::read(&set.modules[module]).unwrap();
        let ko = object::File::parse(&*data).unwrap();
        check_traceable(&ko, module, func, asm);
        assert!(!mcount_at(&ko, func, 0), "{module}: __mcount_loc must point after the ENDBR64, not at {func}");
        assert!(orc_covers(&ko, func), "{module}: no ORC entry inside {func}");
        let sections: Vec<&str> = ko.sections().filter_map(|s| s.name().ok()).collect();
        for want in [".call_sites", ".ibt_endbr_seal", ".return_sites", ".orc_unwind_ip"] {
            assert!(sections.contains(&want), "{module}: {want} missing: {sections:?}");
        }
        // Every function in .text, the Rust ones included, has its padding: objtool --prefix
        // put a `__pfx_<name>` symbol of PADDING_BYTES on the NOPs before it.
        let text = ko.section_by_name(".text").unwrap().index();
        let funcs: Vec<_> = ko
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.section_index() == Some(text))
            .filter(|s| !s.name().unwrap_or("").starts_with("__pfx_"))
            .collect();
        assert!(funcs.len() > 3, "{module}: functions in .text: {}", funcs.len());
        for f in &funcs {
            let name = f.name().unwrap();
            let pfx = format!("__pfx_{name}");
            let p = ko.symbols().find(|s| s.name() == Ok(pfx.as_str()));
            assert!(
                p.is_some_and(|p| p.address() + 16 == f.address() && p.size() == 16),
                "{module}: {name} has no 16-byte padding (no {pfx})"
            );
        }
    }
}
