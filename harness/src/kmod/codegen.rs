//! Code generation for one kernel: the rustc flags, the target features and the contract of
//! `klp::traceable!`, derived from the kernel's config the way the kernel's own Makefiles derive
//! its C flags (and, for kernels with Rust support, its Rust flags).
//!
//! Where each one comes from (paths in the kernel source of the line named):
//!
//! | config | C (arch/x86/Makefile) | Rust |
//! |---|---|---|
//! | `RETPOLINE` (`MITIGATION_RETPOLINE` from 6.9) | `RETPOLINE_CFLAGS`: `-mindirect-branch=thunk-extern` | target features `+retpoline-external-thunk,+retpoline-indirect-branches,+retpoline-indirect-calls` (scripts/generate_rust_target.rs, 6.12/7.2) |
//! | same, when gcc takes it | `-mindirect-branch-cs-prefix` (a `cc-option`, gcc ≥ 12) | `-Zindirect-branch-cs-prefix` (only if the probe's gcc line has the C flag) |
//! | `RETHUNK` (`MITIGATION_RETHUNK`) | `RETHUNK_CFLAGS`: `-mfunction-return=thunk-extern` (5.10: top-level Makefile) | `RETHUNK_RUSTFLAGS`: `-Zfunction-return=thunk-extern` |
//! | `SLS` (`MITIGATION_SLS`) | `-mharden-sls=all` | target features `+harden-sls-ijmp,+harden-sls-ret` (generate_rust_target.rs) |
//! | `X86_KERNEL_IBT` | `-fcf-protection=branch -fno-jump-tables` | `-Zcf-protection=branch` and `-Cjump-tables=n` (rustc ≥ 1.93, else `-Zno-jump-tables`) |
//! | `CALL_PADDING` | `PADDING_CFLAGS`: `-fpatchable-function-entry=N,N`, N = `FUNCTION_PADDING_BYTES` | `PADDING_RUSTFLAGS`: `-Zpatchable-function-entry=N,N` |
//! | `MITIGATION_CALL_DEPTH_TRACKING` | nothing more: the call thunks go into that padding; objtool `--hacks=skylake` lists the call sites | nothing more (same padding) |
//! | `FRAME_POINTER` | `-fno-omit-frame-pointer` (top-level Makefile) | `-Cforce-frame-pointers=y` |
//! | `CC_OPTIMIZE_FOR_SIZE` | `-Os` | `-Copt-level=s` (else `-Copt-level=2`) |
//!
//! Always: `-Cpanic=abort -Ccodegen-units=1 -Cforce-unwind-tables=n` (`KBUILD_RUSTFLAGS`,
//! top-level Makefile, mirroring `-fno-asynchronous-unwind-tables`), `-Zfunction-sections=no`,
//! no debug info. The kernel code model, no red zone and soft-float are in the base target JSON.
//! Kernels built with Clang CFI (`CFI_CLANG`: kCFI type hashes before every function) are
//! refused: the matrix is gcc-built and a module without the hashes would not pass the checks.
//!
//! `traceable!` functions are written in assembly, so the builder hands them the same contract as
//! constants (`klp::kconfig`): ENDBR64 first under IBT (gcc puts it before the `call __fentry__`,
//! and ftrace finds the fentry call of a function from its symbol, `ftrace_location()` in
//! kernel/trace/ftrace.c), `FUNCTION_PADDING_BYTES` NOPs before the symbol (the call-depth
//! thunks are written there, arch/x86/kernel/callthunks.c `patch_dest()`, and objtool's
//! `--prefix` expects them), `FUNCTION_ALIGNMENT`, and the return through the return thunk
//! (rethunk) followed by INT3 (SLS).

use crate::kernel::config::KConfig;

/// The code generation of one kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Codegen {
    /// Added to the base target JSON's `features`.
    pub target_features: Vec<String>,
    /// Passed to rustc for every crate (core, compiler_builtins, klp, the variants).
    pub rustc_flags: Vec<String>,
    /// The contract `klp::traceable!` follows.
    pub asm: AsmContract,
}

/// What assembly functions must do to look like the kernel's gcc-compiled functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AsmContract {
    /// ENDBR64 as the first instruction (X86_KERNEL_IBT).
    pub ibt: bool,
    /// NOPs before the function symbol (CALL_PADDING → FUNCTION_PADDING_BYTES, else 0).
    pub padding_bytes: u32,
    /// Alignment of the start of the padding, as gcc aligns a function (FUNCTION_ALIGNMENT,
    /// else gcc's x86-64 default of 16).
    pub function_alignment: u32,
    /// Return with `jmp __x86_return_thunk` (RETHUNK) instead of `ret`.
    pub rethunk: bool,
    /// INT3 after every return and indirect jump (SLS).
    pub sls: bool,
}

/// The release of a rustc (`1.96.0`) as (major, minor).
fn rustc_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Codegen {
    /// Derive everything from `cfg`. `gcc_flags` is kbuild's C command line for a module object
    /// of this kernel (the probe's), for the flags the kernel's Makefiles add only when the
    /// compiler supports them; `rustc_release` picks between spellings of a flag.
    pub fn derive(cfg: &KConfig, gcc_flags: &[String], rustc_release: &str) -> Result<Self, String> {
        if !cfg.on("X86_64") {
            return Err("only x86_64 kernels are supported".into());
        }
        if cfg.any_on(&["CFI_CLANG", "CFI"]) {
            return Err("kernels built with Clang CFI (CONFIG_CFI_CLANG) are not supported: the Rust code would \
                        need -Zsanitizer=kcfi and the kernel's exact type hashes"
                .into());
        }
        let gcc_has = |f: &str| gcc_flags.iter().any(|g| g == f);
        let retpoline = cfg.any_on(&["RETPOLINE", "MITIGATION_RETPOLINE"]);
        let rethunk = cfg.any_on(&["RETHUNK", "MITIGATION_RETHUNK"]);
        let sls = cfg.any_on(&["SLS", "MITIGATION_SLS"]);
        let ibt = cfg.on("X86_KERNEL_IBT");
        let padding_bytes = if cfg.on("CALL_PADDING") { cfg.int("FUNCTION_PADDING_BYTES").unwrap_or(0) } else { 0 };

        let mut target_features = Vec::new();
        if retpoline {
            target_features.extend(
                ["+retpoline-external-thunk", "+retpoline-indirect-branches", "+retpoline-indirect-calls"]
                    .map(String::from),
            );
        }
        if sls {
            target_features.extend(["+harden-sls-ijmp", "+harden-sls-ret"].map(String::from));
        }

        let opt = if cfg.on("CC_OPTIMIZE_FOR_SIZE") { "s" } else { "2" };
        let mut rustc_flags: Vec<String> = [
            "-Cpanic=abort",
            &format!("-Copt-level={opt}"),
            "-Ccodegen-units=1",
            "-Cforce-unwind-tables=n",
            "-Cdebuginfo=0",
            "-Zfunction-sections=no",
        ]
        .map(String::from)
        .to_vec();
        if retpoline && gcc_has("-mindirect-branch-cs-prefix") {
            rustc_flags.push("-Zindirect-branch-cs-prefix".into());
        }
        if rethunk {
            rustc_flags.push("-Zfunction-return=thunk-extern".into());
        }
        if ibt {
            rustc_flags.push("-Zcf-protection=branch".into());
            let new_spelling = rustc_minor(rustc_release).is_some_and(|v| v >= (1, 93));
            rustc_flags.push(if new_spelling { "-Cjump-tables=n" } else { "-Zno-jump-tables" }.into());
        }
        if padding_bytes > 0 {
            rustc_flags.push(format!("-Zpatchable-function-entry={padding_bytes},{padding_bytes}"));
        }
        if cfg.on("FRAME_POINTER") {
            rustc_flags.push("-Cforce-frame-pointers=y".into());
        }
        let function_alignment = cfg.int("FUNCTION_ALIGNMENT").filter(|a| *a > 0).unwrap_or(16);
        Ok(Self {
            target_features,
            rustc_flags,
            asm: AsmContract { ibt, padding_bytes, function_alignment, rethunk, sls },
        })
    }

    /// The target JSON for this kernel: `base` (the repo's target file) with the mitigation
    /// features appended to its `features`.
    pub fn target_json(&self, base: &str) -> Result<String, String> {
        let mut v: serde_json::Value = serde_json::from_str(base).map_err(|e| format!("target JSON: {e}"))?;
        let obj = v.as_object_mut().ok_or("target JSON: not an object")?;
        let base_features = obj.get("features").and_then(|f| f.as_str()).unwrap_or_default().to_string();
        let mut features: Vec<&str> = base_features.split(',').filter(|f| !f.is_empty()).collect();
        features.extend(self.target_features.iter().map(String::as_str));
        obj.insert("features".into(), features.join(",").into());
        Ok(serde_json::to_string_pretty(&v).expect("JSON serialises") + "\n")
    }

    /// `klp::kconfig`: the constants `klp::traceable!` reads (Rust source).
    pub fn kconfig_rs(&self) -> String {
        let a = &self.asm;
        format!(
            "// Generated by klp-conform's kmod builder from the kernel's config: what an assembly\n\
             // function must look like to pass for one of the kernel's gcc-compiled functions.\n\
             /// ENDBR64 first (CONFIG_X86_KERNEL_IBT).\n\
             pub const IBT: u32 = {};\n\
             /// NOPs before the symbol (CONFIG_CALL_PADDING: CONFIG_FUNCTION_PADDING_BYTES).\n\
             pub const PADDING_BYTES: u32 = {};\n\
             /// Alignment of the padded function (CONFIG_FUNCTION_ALIGNMENT).\n\
             pub const FUNCTION_ALIGNMENT: u32 = {};\n\
             /// Return through `__x86_return_thunk` (CONFIG_RETHUNK / CONFIG_MITIGATION_RETHUNK).\n\
             pub const RETHUNK: u32 = {};\n\
             /// INT3 after a return (CONFIG_SLS / CONFIG_MITIGATION_SLS).\n\
             pub const SLS: u32 = {};\n",
            a.ibt as u32, a.padding_bytes, a.function_alignment, a.rethunk as u32, a.sls as u32
        )
    }

    /// One line for progress output and the manifest.
    pub fn summary(&self) -> String {
        let a = &self.asm;
        format!(
            "rustc {} features {} | traceable: {}padding {}, align {}, {}{}",
            self.rustc_flags.join(" "),
            if self.target_features.is_empty() { "(none)".to_string() } else { self.target_features.join(",") },
            if a.ibt { "endbr64, " } else { "" },
            a.padding_bytes,
            a.function_alignment,
            if a.rethunk { "jmp __x86_return_thunk" } else { "ret" },
            if a.sls { " + int3" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_5_10: &str =
        "CONFIG_X86_64=y\nCONFIG_RETPOLINE=y\nCONFIG_RETHUNK=y\nCONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y\n";
    const DEBIAN_6_1: &str = "CONFIG_X86_64=y\nCONFIG_RETPOLINE=y\nCONFIG_RETHUNK=y\nCONFIG_SLS=y\n";
    const DEBIAN_6_12: &str = "CONFIG_X86_64=y\nCONFIG_X86_KERNEL_IBT=y\nCONFIG_FUNCTION_PADDING_BYTES=16\n\
        CONFIG_CALL_PADDING=y\nCONFIG_CALL_THUNKS=y\nCONFIG_MITIGATION_RETPOLINE=y\nCONFIG_MITIGATION_RETHUNK=y\n\
        CONFIG_MITIGATION_CALL_DEPTH_TRACKING=y\nCONFIG_MITIGATION_SLS=y\nCONFIG_FUNCTION_ALIGNMENT=16\n";

    fn flags(s: &[&str]) -> Vec<String> {
        s.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn debian_5_10_has_retpoline_and_rethunk_but_no_sls_and_no_cs_prefix() {
        let gcc10 = flags(&["-mindirect-branch=thunk-extern", "-mindirect-branch-register"]);
        let c = Codegen::derive(&KConfig::parse(DEBIAN_5_10), &gcc10, "1.96.0").unwrap();
        assert_eq!(c.target_features.len(), 3);
        assert!(c.rustc_flags.contains(&"-Zfunction-return=thunk-extern".into()));
        assert!(!c.rustc_flags.iter().any(|f| f.contains("cs-prefix") || f.contains("cf-protection")));
        assert_eq!(
            c.asm,
            AsmContract { ibt: false, padding_bytes: 0, function_alignment: 16, rethunk: true, sls: false }
        );
    }

    #[test]
    fn debian_6_1_adds_sls_and_the_cs_prefix_gcc_12_takes() {
        let gcc12 = flags(&["-mindirect-branch=thunk-extern", "-mindirect-branch-cs-prefix"]);
        let c = Codegen::derive(&KConfig::parse(DEBIAN_6_1), &gcc12, "1.96.0").unwrap();
        assert!(c.target_features.contains(&"+harden-sls-ret".into()));
        assert!(c.rustc_flags.contains(&"-Zindirect-branch-cs-prefix".into()));
        assert!(c.asm.sls && c.asm.rethunk && !c.asm.ibt);
    }

    #[test]
    fn debian_6_12_adds_ibt_and_padding_under_the_renamed_options() {
        let c = Codegen::derive(&KConfig::parse(DEBIAN_6_12), &[], "1.96.0").unwrap();
        for f in ["-Zcf-protection=branch", "-Cjump-tables=n", "-Zpatchable-function-entry=16,16"] {
            assert!(c.rustc_flags.contains(&f.into()), "{f}: {:?}", c.rustc_flags);
        }
        assert_eq!(c.target_features.len(), 5);
        assert_eq!(
            c.asm,
            AsmContract { ibt: true, padding_bytes: 16, function_alignment: 16, rethunk: true, sls: true }
        );
        let old = Codegen::derive(&KConfig::parse(DEBIAN_6_12), &[], "1.92.1").unwrap();
        assert!(old.rustc_flags.contains(&"-Zno-jump-tables".into()));
    }

    #[test]
    fn kcfi_and_other_arches_are_refused() {
        assert!(Codegen::derive(&KConfig::parse("CONFIG_ARM64=y\n"), &[], "1.96.0").is_err());
        assert!(Codegen::derive(&KConfig::parse("CONFIG_X86_64=y\nCONFIG_CFI_CLANG=y\n"), &[], "1.96.0").is_err());
    }

    #[test]
    fn target_json_gets_the_features() {
        let c = Codegen::derive(&KConfig::parse(DEBIAN_6_1), &[], "1.96.0").unwrap();
        let j = c.target_json(r#"{"arch": "x86_64", "features": "-mmx,+soft-float"}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(
            v["features"],
            "-mmx,+soft-float,+retpoline-external-thunk,+retpoline-indirect-branches,+retpoline-indirect-calls,\
             +harden-sls-ijmp,+harden-sls-ret"
        );
        assert!(c.kconfig_rs().contains("pub const SLS: u32 = 1;\n"));
    }
}
