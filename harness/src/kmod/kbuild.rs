//! Everything that comes from, or goes to, the kernel's own build system.
//!
//! - A probe module is built with `make -C <headers> M=<probe>`; its `.probe.o.cmd` is the exact
//!   gcc command line kbuild uses for module C files of this kernel (include paths, defines,
//!   target flags) followed by the objtool command it runs on every object. The clang flags for
//!   bindgen and the objtool arguments for the Rust object are taken from there, so they follow
//!   the kernel's config instead of being hard-coded.
//! - The module dir gets one generated `Kbuild` for every variant: `<name>-y := <name>_shim.o
//!   <name>_rust.o`, the Rust object entering through an `if_changed` rule (a `.cmd` file is
//!   written for it, which modpost needs under CONFIG_MODVERSIONS).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::KmodError;
use crate::tools::run_capture;

/// Split a command line the way `sh` would (quotes and backslashes; no expansions).
pub fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        _ => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The command of a kbuild `.cmd` file: the value of its `cmd_<target> := …` line.
pub fn cmd_line(cmd_file: &str) -> Option<&str> {
    cmd_file.lines().find_map(|l| l.strip_prefix("cmd_").and_then(|r| r.split_once(" := ")).map(|(_, v)| v))
}

/// The compiler command and the commands chained after it (`; ./tools/objtool/objtool …`).
fn commands(cmd: &str) -> Vec<&str> {
    cmd.split(';').map(str::trim).filter(|c| !c.is_empty()).collect()
}

fn absolute(dir: &Path, p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_string()
    } else {
        let rel = p.strip_prefix("./").unwrap_or(p);
        dir.join(rel).to_string_lossy().into_owned()
    }
}

/// The flags of kbuild's C command line that matter to a C parser: `-nostdinc`, include paths
/// (made absolute against `headers_dir`, the directory make runs in), forced includes,
/// defines (but not the per-module `KBUILD_*` ones), `-std=`, and the `-m*`/`-f*` flags
/// (the ones clang rejects are dropped later, by `bindings::generate`).
pub fn clang_flags(cmd: &str, headers_dir: &Path) -> Vec<String> {
    let Some(cc) = commands(cmd).into_iter().next() else { return Vec::new() };
    let words = shell_words(cc);
    let mut out = Vec::new();
    let mut it = words.iter().skip(1); // the compiler
    while let Some(w) = it.next() {
        let w = w.as_str();
        match w {
            "-nostdinc" => out.push(w.to_string()),
            "-I" | "-isystem" | "-include" | "-idirafter" => {
                if let Some(p) = it.next() {
                    out.push(w.to_string());
                    out.push(absolute(headers_dir, p));
                }
            }
            "-o" | "-MF" | "-MT" | "-MQ" => {
                it.next();
            }
            _ if w.starts_with("-I") => out.push(format!("-I{}", absolute(headers_dir, &w[2..]))),
            _ if w.starts_with("-D") => {
                let name = &w[2..];
                if !(name.starts_with("KBUILD_") || name.starts_with("__KBUILD_")) {
                    out.push(w.to_string());
                }
            }
            _ if w.starts_with("-U") || w.starts_with("-std=") => out.push(w.to_string()),
            _ if w.starts_with("-fmacro-prefix-map") || w.starts_with("-fdebug-prefix-map") => {}
            _ if w.starts_with("-m") || w.starts_with("-f") => out.push(w.to_string()),
            _ => {}
        }
    }
    out
}

/// objtool as kbuild runs it on a module object of this kernel: the program (relative to the
/// headers dir) and its arguments, without the object path. `None` when the kernel does not run
/// objtool on module objects (e.g. no CONFIG_OBJTOOL, or objtool runs at link time).
pub fn objtool_command(cmd: &str, object: &str) -> Option<(String, Vec<String>)> {
    commands(cmd).into_iter().skip(1).find_map(|c| {
        let mut words = shell_words(c);
        let prog = words.first()?.clone();
        if !prog.ends_with("/objtool") && prog != "objtool" {
            return None;
        }
        words.remove(0);
        if words.last().is_some_and(|w| w == object || w.ends_with(&format!("/{object}"))) {
            words.pop();
        }
        Some((prog, words))
    })
}

/// What the probe module taught us about this kernel's kbuild.
#[derive(Debug, Clone)]
pub struct Probe {
    /// For bindgen, before clang's own filtering.
    pub clang_flags: Vec<String>,
    /// `./tools/objtool/objtool` and its arguments (without the object), if objtool runs.
    pub objtool: Option<(String, Vec<String>)>,
}

pub fn make_command(make: &Path, headers_dir: &Path, module_dir: &Path) -> Command {
    let mut c = Command::new(make);
    c.arg("-C").arg(headers_dir).arg(format!("M={}", module_dir.display()));
    c.arg(format!("-j{}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4)));
    c.arg("modules");
    c
}

/// Build the probe module in `dir` and read its `.probe.o.cmd`.
pub fn probe(make: &Path, headers_dir: &Path, dir: &Path, header_text: &str) -> Result<Probe, KmodError> {
    std::fs::create_dir_all(dir).map_err(|e| KmodError::io(format!("creating {}", dir.display()), e))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| KmodError::io(format!("writing {name} in {}", dir.display()), e))
    };
    write("probe.c", &format!("{header_text}\nMODULE_LICENSE(\"GPL\");\n"))?;
    write("Kbuild", "obj-m := probe.o\n")?;
    let mut c = make_command(make, headers_dir, dir);
    run_capture(&mut c).map_err(|e| KmodError::tool("building the kbuild probe module", e))?;
    let cmd_path = dir.join(".probe.o.cmd");
    let text =
        std::fs::read_to_string(&cmd_path).map_err(|e| KmodError::io(format!("reading {}", cmd_path.display()), e))?;
    let cmd = cmd_line(&text)
        .ok_or_else(|| KmodError::Kbuild { detail: format!("{} has no cmd_… line", cmd_path.display()) })?;
    let object = dir.join("probe.o").to_string_lossy().into_owned();
    Ok(Probe { clang_flags: clang_flags(cmd, headers_dir), objtool: objtool_command(cmd, &object) })
}

/// One variant in the generated `Kbuild`.
pub struct KbuildModule<'a> {
    pub name: &'a str,
    /// The Rust object, relative to the module dir.
    pub rust_object: &'a str,
}

/// The `Kbuild` of the module dir.
pub fn kbuild_file(modules: &[KbuildModule<'_>]) -> String {
    let mut s = String::from(
        "# Generated by klp-conform's kmod builder; do not edit.\n\
         # The Rust objects are prebuilt; they enter through if_changed so that kbuild writes a\n\
         # .cmd file for them, which modpost needs under CONFIG_MODVERSIONS.\n\
         quiet_cmd_rust_object = RUSTOBJ $@\n      cmd_rust_object = cp $< $@\n\n",
    );
    for m in modules {
        let n = m.name;
        s.push_str(&format!(
            "obj-m += {n}.o\n{n}-y := {n}_shim.o {n}_rust.o\ntargets += {n}_rust.o\n\
             $(obj)/{n}_rust.o: $(src)/{obj} FORCE\n\t$(call if_changed,rust_object)\n\n",
            obj = m.rust_object
        ));
    }
    s
}

/// What varies between the shims of the variants.
pub struct ShimParams<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// Emit `MODULE_INFO(livepatch, "Y")` (`@LIVEPATCH_MODINFO@`).
    pub livepatch_modinfo: bool,
    /// (path for diagnostics, text) of the variant's C glue, appended after the template.
    pub glue: Option<(&'a str, &'a str)>,
}

/// The C shim of one variant from the template (`@NAME@`, `@DESCRIPTION@`,
/// `@LIVEPATCH_MODINFO@`), followed by the variant's C glue if it has one.
pub fn shim(template: &str, p: &ShimParams<'_>) -> String {
    let desc: String = p
        .description
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let modinfo = if p.livepatch_modinfo {
        "MODULE_INFO(livepatch, \"Y\");"
    } else {
        "/* no livepatch modinfo for this variant (//@ livepatch-modinfo: no) */"
    };
    let mut s =
        template.replace("@NAME@", p.name).replace("@DESCRIPTION@", &desc).replace("@LIVEPATCH_MODINFO@", modinfo);
    if let Some((path, text)) = p.glue {
        s.push_str(&format!("\n/* C glue of the variant */\n#line 1 \"{path}\"\n{text}"));
        if !text.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Run objtool on `object` the way kbuild runs it on C objects (cwd: the headers dir, where the
/// program path in the .cmd file is relative to). Returns objtool's warnings (empty when clean).
pub fn run_objtool(headers_dir: &Path, objtool: &(String, Vec<String>), object: &Path) -> Result<String, KmodError> {
    let prog = PathBuf::from(absolute(headers_dir, &objtool.0));
    if !prog.is_file() {
        return Err(KmodError::Kbuild {
            detail: format!(
                "objtool {} is missing from the kernel headers (it is part of linux-kbuild-*)",
                prog.display()
            ),
        });
    }
    let mut c = Command::new(prog);
    c.current_dir(headers_dir).args(&objtool.1).arg(object);
    let command = crate::tools::describe(&c);
    let out = c.output().map_err(|e| KmodError::io(format!("running `{command}`"), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(KmodError::Step {
            step: "running objtool on the Rust object".into(),
            command: format!("{command} ({})", out.status),
            stderr: crate::tools::tail(&stderr, 40),
        });
    }
    Ok(stderr.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = r#"cmd_/tmp/p/probe.o :=  gcc-12 -Wp,-MMD,/tmp/p/.probe.o.d -nostdinc -I/h/common/arch/x86/include -I./arch/x86/include/generated -I/h/common/include -I./include -include /h/common/include/linux/kconfig.h -D__KERNEL__ -fmacro-prefix-map=/h/common/= -Wall -Wundef -fno-strict-aliasing -fshort-wchar -fno-PIE -std=gnu11 -mno-sse -mno-red-zone -mcmodel=kernel -mindirect-branch=thunk-extern -O2 -ftrivial-auto-var-init=zero -pg -mfentry -DCC_USING_FENTRY -g  -DMODULE  -DKBUILD_BASENAME='"probe"' -DKBUILD_MODNAME='"probe"' -D__KBUILD_MODNAME=kmod_probe -c -o /tmp/p/probe.o /tmp/p/probe.c   ; ./tools/objtool/objtool --hacks=jump_label --hacks=noinstr --orc --retpoline --rethunk --sls --static-call --uaccess   --module /tmp/p/probe.o

source_/tmp/p/probe.o := /tmp/p/probe.c
"#;

    #[test]
    fn words_split_like_sh() {
        assert_eq!(
            shell_words(r#"a  -D'"x"' "b c" d\ e -DX="\"y\"""#),
            vec!["a", r#"-D"x""#, "b c", "d e", r#"-DX="y""#]
        );
        assert_eq!(shell_words("  "), Vec::<String>::new());
    }

    #[test]
    fn clang_flags_come_from_the_cmd_file() {
        let cmd = cmd_line(CMD).unwrap();
        let flags = clang_flags(cmd, Path::new("/h/amd64"));
        assert_eq!(
            flags,
            [
                "-nostdinc",
                "-I/h/common/arch/x86/include",
                "-I/h/amd64/arch/x86/include/generated",
                "-I/h/common/include",
                "-I/h/amd64/include",
                "-include",
                "/h/common/include/linux/kconfig.h",
                "-D__KERNEL__",
                "-fno-strict-aliasing",
                "-fshort-wchar",
                "-fno-PIE",
                "-std=gnu11",
                "-mno-sse",
                "-mno-red-zone",
                "-mcmodel=kernel",
                "-mindirect-branch=thunk-extern",
                "-ftrivial-auto-var-init=zero",
                "-mfentry",
                "-DCC_USING_FENTRY",
                "-DMODULE",
            ]
        );
    }

    #[test]
    fn objtool_args_come_from_the_cmd_file() {
        let cmd = cmd_line(CMD).unwrap();
        let (prog, args) = objtool_command(cmd, "/tmp/p/probe.o").unwrap();
        assert_eq!(prog, "./tools/objtool/objtool");
        assert_eq!(
            args,
            [
                "--hacks=jump_label",
                "--hacks=noinstr",
                "--orc",
                "--retpoline",
                "--rethunk",
                "--sls",
                "--static-call",
                "--uaccess",
                "--module"
            ]
        );
        assert_eq!(objtool_command("gcc -c -o x.o x.c", "x.o"), None);
    }

    #[test]
    fn kbuild_file_lists_every_variant() {
        let k = kbuild_file(&[
            KbuildModule { name: "a", rust_object: "rust/a.obj" },
            KbuildModule { name: "b", rust_object: "rust/b.obj" },
        ]);
        assert!(k.contains("obj-m += a.o\na-y := a_shim.o a_rust.o\ntargets += a_rust.o\n"));
        assert!(k.contains("$(obj)/b_rust.o: $(src)/rust/b.obj FORCE\n\t$(call if_changed,rust_object)\n"));
        assert!(!k.contains("_shipped"));
    }

    #[test]
    fn shim_is_instantiated() {
        let t = "MODULE_DESCRIPTION(\"@DESCRIPTION@\"); /* @NAME@ */ @LIVEPATCH_MODINFO@";
        let p = ShimParams { name: "m", description: "say \"hi\"\\", livepatch_modinfo: true, glue: None };
        assert_eq!(shim(t, &p), "MODULE_DESCRIPTION(\"say 'hi'/\"); /* m */ MODULE_INFO(livepatch, \"Y\");");
        let p = ShimParams { livepatch_modinfo: false, glue: Some(("variants/m.c", "int x;")), ..p };
        let s = shim(t, &p);
        assert!(!s.contains("MODULE_INFO(livepatch"), "{s}");
        assert!(s.ends_with("\n#line 1 \"variants/m.c\"\nint x;\n"), "{s}");
    }
}
