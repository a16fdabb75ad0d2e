//! bindgen over the target kernel's headers, for `reference-kmod/src/klp.rs`.
//!
//! What is generated is listed in `reference-kmod/kbuild/bindings.allow`; the clang flags are
//! the ones kbuild itself used for a probe module of the same kernel (see `kbuild.rs`), so the
//! structs have the layout of that kernel's config.

use std::path::Path;

use super::KmodError;
use crate::tools::ToolError;

/// One line of `bindings.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowItem {
    /// `struct NAME` / `union NAME`: generated, and re-checked by gcc.
    Type {
        keyword: String,
        name: String,
    },
    /// `opaque struct NAME`: a blob of the right size and alignment.
    Opaque {
        keyword: String,
        name: String,
    },
    Function(String),
    Var(String),
}

/// Parse `bindings.allow` (`#` comments, blank lines ignored).
pub fn parse_allow(text: &str) -> Result<Vec<AllowItem>, String> {
    let mut items = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let item = match words.as_slice() {
            [kw @ ("struct" | "union"), name] if ident(name) => {
                AllowItem::Type { keyword: kw.to_string(), name: name.to_string() }
            }
            ["opaque", kw @ ("struct" | "union"), name] if ident(name) => {
                AllowItem::Opaque { keyword: kw.to_string(), name: name.to_string() }
            }
            ["function", name] if ident(name) => AllowItem::Function(name.to_string()),
            ["var", name] if ident(name) => AllowItem::Var(name.to_string()),
            _ => return Err(format!("line {}: expected `struct|union NAME`, `opaque struct|union NAME`, `function NAME` or `var NAME`, got `{line}`", i + 1)),
        };
        items.push(item);
    }
    Ok(items)
}

/// The flags of `flags` that clang named in its error diagnostics (`unknown argument: '-mfoo'`,
/// `'-ftrivial-auto-var-init=zero' hasn't been enabled`, `unsupported argument 'all' to option
/// '-mharden-sls='`, ...): gcc-only flags to drop.
pub fn rejected_flags(diagnostics: &str, flags: &[String]) -> Vec<String> {
    // `unsupported argument 'all' to option '-mharden-sls='`; clang 14 names some options
    // without their dash: `unsupported argument 'bounds-strict' to option 'fsanitize='`.
    let named_in = |line: &str, f: &str| {
        line.contains(&format!("'{f}'"))
            || f.split_once('=').is_some_and(|(k, v)| {
                (line.contains(&format!("'{k}='")) || line.contains(&format!("'{}='", k.trim_start_matches('-'))))
                    && line.contains(&format!("'{v}'"))
            })
    };
    flags
        .iter()
        .filter(|f| f.starts_with("-m") || f.starts_with("-f"))
        .filter(|f| diagnostics.lines().any(|l| named_in(l, f)))
        .cloned()
        .collect()
}

fn builder(header: &Path, clang_args: &[String], allow: &[AllowItem]) -> bindgen::Builder {
    let mut b = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_args(clang_args)
        .use_core()
        .ctypes_prefix("core::ffi")
        .rust_target(bindgen::RustTarget::stable(85, 0).expect("1.85 is a valid Rust target"))
        .rust_edition(bindgen::RustEdition::Edition2024)
        .layout_tests(true)
        .derive_default(false)
        .derive_debug(false)
        .generate_comments(false)
        .disable_header_comment()
        .merge_extern_blocks(true)
        .allowlist_recursively(true);
    for item in allow {
        b = match item {
            AllowItem::Type { name, .. } => b.allowlist_type(format!("^{name}$")),
            AllowItem::Opaque { name, .. } => b.opaque_type(format!("^{name}$")),
            AllowItem::Function(name) => b.allowlist_function(format!("^{name}$")),
            AllowItem::Var(name) => b.allowlist_var(format!("^{name}$")),
        };
    }
    b
}

/// Run bindgen; returns the Rust source and the clang flags that were finally accepted.
/// Flags clang rejects (gcc-only code-generation flags) are dropped and the run repeated.
pub fn generate(header: &Path, clang_args: &[String], allow: &[AllowItem]) -> Result<(String, Vec<String>), KmodError> {
    if !clang_sys::is_loaded() {
        clang_sys::load().map_err(|e| ToolError::Missing {
            tool: format!("libclang ({e})"),
            package: "libclang-dev".into(),
            why: "generate Rust bindings of the kernel's livepatch structs (bindgen)".into(),
        })?;
    }
    let mut args = clang_args.to_vec();
    for _ in 0..8 {
        match builder(header, &args, allow).generate() {
            Ok(bindings) => return Ok((bindings.to_string(), args)),
            Err(bindgen::BindgenError::ClangDiagnostic(diag)) => {
                let bad = rejected_flags(&diag, &args);
                if bad.is_empty() {
                    return Err(KmodError::Bindgen { detail: crate::tools::tail(&diag, 40) });
                }
                args.retain(|a| !bad.contains(a));
            }
            Err(e) => return Err(KmodError::Bindgen { detail: e.to_string() }),
        }
    }
    Err(KmodError::Bindgen { detail: "clang kept rejecting kbuild's flags".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_file_parses() {
        let items =
            parse_allow("# c\nstruct klp_func\nopaque struct module # x\n\nfunction seq_puts\nvar __this_module\n")
                .unwrap();
        assert_eq!(
            items,
            vec![
                AllowItem::Type { keyword: "struct".into(), name: "klp_func".into() },
                AllowItem::Opaque { keyword: "struct".into(), name: "module".into() },
                AllowItem::Function("seq_puts".into()),
                AllowItem::Var("__this_module".into()),
            ]
        );
        assert!(parse_allow("struct a b\n").unwrap_err().contains("line 1"));
        assert!(parse_allow("enum x\n").is_err());
    }

    #[test]
    fn rejected_flags_are_found_in_diagnostics() {
        let flags: Vec<String> = [
            "-mno-sse",
            "-mindirect-branch=thunk-extern",
            "-ftrivial-auto-var-init=zero",
            "-mharden-sls=all",
            "-fsanitize=bounds-strict",
            "-fno-PIE",
            "-DX",
        ]
        .map(String::from)
        .to_vec();
        let diag = "error: unknown argument: '-mindirect-branch=thunk-extern'\n\
                    error: '-ftrivial-auto-var-init=zero' hasn't been enabled; enable it at your own peril\n\
                    error: unsupported argument 'all' to option '-mharden-sls='\n\
                    error: unsupported argument 'bounds-strict' to option 'fsanitize='\n";
        assert_eq!(
            rejected_flags(diag, &flags),
            vec![
                "-mindirect-branch=thunk-extern",
                "-ftrivial-auto-var-init=zero",
                "-mharden-sls=all",
                "-fsanitize=bounds-strict"
            ]
        );
    }
}
