//! Builds the reference livepatch modules for the default Debian kernel and checks the .ko files
//! the way the kernel's module loader and livepatch core will look at them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use klp_conform::kernel::{default_cache_dir, default_spec, resolve};
use klp_conform::kmod::build_all;
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

/// Whether `__mcount_loc` has an entry at the first byte of `sym`: ftrace (and so livepatch)
/// can redirect it, as it can a C function built with `-pg -mfentry -mrecord-mcount`.
fn mcount_at_start(ko: &object::File<'_>, sym: &str) -> bool {
    let f = ko.symbols().find(|s| s.name() == Ok(sym)).unwrap_or_else(|| panic!("symbol {sym} in the .ko"));
    let Some(loc) = ko.section_by_name("__mcount_loc") else { return false };
    loc.relocations().any(|(_, r)| {
        let RelocationTarget::Symbol(idx) = r.target() else { return false };
        let t = ko.symbol_by_index(idx).unwrap();
        t.section_index() == f.section_index() && t.address().wrapping_add(r.addend() as u64) == f.address()
    })
}

/// Every variant, and whether it is a livepatch (has `livepatch=Y` in .modinfo).
const VARIANTS: &[(&str, bool)] = &[
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
    ("klp_ref_target", false),
    ("klp_ref_target_patch", true),
];

/// Module parameters each variant must declare (`parmtype=<name>:<type>`).
const PARAMS: &[(&str, &[&str])] = &[
    ("klp_ref_busy", &["block:bool", "kthread:bool", "sleep_mode:string"]),
    ("klp_ref_busy_patch", &["block:bool"]),
    ("klp_ref_callbacks", &["pre_patch_ret:int"]),
    ("klp_ref_callbacks2", &["replace:bool"]),
    ("klp_ref_shadow", &["keep:bool", "dup_warn:bool"]),
];

#[test]
fn every_variant_has_the_right_modinfo() {
    let progress = Progress::new();
    let cache = default_cache_dir();
    let kernel = resolve(&default_spec(source_root().parent().unwrap()).unwrap(), &cache, &progress).expect("kernel");
    let set = build_all(&kernel, &source_root(), &cache, &progress).expect("build");

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
    for (module, func) in [("klp_ref_target", "klp_ref_target_show"), ("klp_ref_busy", "klp_ref_busy_func")] {
        let data = std::fs::read(&set.modules[module]).unwrap();
        let ko = object::File::parse(&*data).unwrap();
        assert!(mcount_at_start(&ko, func), "{module}: no __mcount_loc entry at {func}");
        assert!(orc_covers(&ko, func), "{module}: no ORC entry inside {func}");
        let undefined: Vec<&str> = ko.symbols().filter(|s| s.is_undefined()).filter_map(|s| s.name().ok()).collect();
        assert!(undefined.contains(&"__fentry__"), "{module}: __fentry__ not imported");
        assert!(!undefined.contains(&"klp_enable_patch"), "{module} is not a livepatch");
    }
}

#[test]
fn reference_modules_build_for_the_debian_kernel_and_are_cached() {
    let progress = Progress::new();
    let cache = default_cache_dir();
    let kernel = resolve(&default_spec(source_root().parent().unwrap()).unwrap(), &cache, &progress).expect("kernel");

    let set = build_all(&kernel, &source_root(), &cache, &progress).expect("build");
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

    // Second call: a cache hit, no rebuild.
    let t = Instant::now();
    let again = build_all(&kernel, &source_root(), &cache, &Progress::quiet()).expect("cached build");
    let took = t.elapsed();
    eprintln!("cache hit in {took:?}");
    assert_eq!(again, set);
    assert!(took.as_secs_f64() < 1.0, "cache hit took {took:?}");
    assert_eq!(std::fs::read(ko_path).unwrap(), data, "the cached .ko was not rewritten");
}
