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
//! - make and objtool run in the kernel's build environment ([`super::buildenv`]): on the host or
//!   inside a toolchain root.

use std::path::Path;
use std::process::Command;

use super::buildenv::BuildEnv;
use super::KmodError;
use crate::tools::ToolError;

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

/// The command of a kbuild `.cmd` file: the value of its `cmd_<target> := …` line
/// (`savedcmd_<target>` since 6.2).
pub fn cmd_line(cmd_file: &str) -> Option<&str> {
    cmd_file.lines().find_map(|l| {
        l.strip_prefix("cmd_")
            .or_else(|| l.strip_prefix("savedcmd_"))
            .and_then(|r| r.split_once(" := "))
            .map(|(_, v)| v)
    })
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

/// The words of kbuild's C command line (the compiler first).
pub fn cc_words(cmd: &str) -> Vec<String> {
    commands(cmd).into_iter().next().map(shell_words).unwrap_or_default()
}

/// The flags of kbuild's C command line that matter to a C parser: `-nostdinc`, include paths
/// (made absolute against `headers_dir`, the directory make runs in, then mapped to the host by
/// `host_path`: a toolchain root's compiler include dir is inside the root), forced includes,
/// defines (but not the per-module `KBUILD_*` ones), `-std=`, and the `-m*`/`-f*` flags (the
/// ones clang rejects are dropped later, by `bindings::generate`).
pub fn clang_flags(cmd: &str, headers_dir: &Path, host_path: impl Fn(&str) -> String) -> Vec<String> {
    let words = cc_words(cmd);
    let mut out = Vec::new();
    let mut it = words.iter().skip(1); // the compiler
    while let Some(w) = it.next() {
        let w = w.as_str();
        match w {
            "-nostdinc" => out.push(w.to_string()),
            "-I" | "-isystem" | "-include" | "-idirafter" => {
                if let Some(p) = it.next() {
                    out.push(w.to_string());
                    out.push(host_path(&absolute(headers_dir, p)));
                }
            }
            "-o" | "-MF" | "-MT" | "-MQ" => {
                it.next();
            }
            _ if w.starts_with("-I") => out.push(format!("-I{}", host_path(&absolute(headers_dir, &w[2..])))),
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
/// headers dir) and its arguments, without the object, from one shell command line (commands
/// chained with `;`). `object` is the object's file name; the command may name it by a relative
/// or an absolute path.
pub fn objtool_command(cmd: &str, object: &str) -> Option<(String, Vec<String>)> {
    let name = Path::new(object).file_name()?.to_string_lossy().into_owned();
    commands(cmd).into_iter().find_map(|c| {
        let mut words = shell_words(c);
        let at = words.iter().position(|w| w.ends_with("/objtool") || w == "objtool")?;
        words.drain(..at);
        let prog = words.remove(0);
        if words.last().is_some_and(|w| Path::new(w).file_name().is_some_and(|f| f.to_string_lossy() == name)) {
            words.pop();
        } else {
            return None;
        }
        Some((prog, words))
    })
}

/// objtool's command for `object` in make's `V=1` output: kernels before 5.19 run it as a
/// command of its own, which the `.cmd` file does not record.
pub fn objtool_in_log(log: &str, object: &str) -> Option<(String, Vec<String>)> {
    log.lines().find_map(|l| objtool_command(l, object))
}

/// What the probe module taught us about this kernel's kbuild.
#[derive(Debug, Clone)]
pub struct Probe {
    /// kbuild's C command line for a module object, the compiler first (code generation looks
    /// for the flags the kernel's Makefiles add only when gcc takes them).
    pub cc_words: Vec<String>,
    /// For bindgen, before clang's own filtering.
    pub clang_flags: Vec<String>,
    /// `./tools/objtool/objtool` and its arguments (without the object), if objtool runs on a
    /// single-object module.
    pub objtool: Option<(String, Vec<String>)>,
}

impl Probe {
    /// Whether kbuild runs objtool itself on the linked object of a composite module (`--link`:
    /// `delay-objtool` in scripts/Makefile.lib, set under CONFIG_X86_KERNEL_IBT and Clang LTO
    /// since 6.x), which then covers the Rust object too: running it on the Rust object first
    /// would process it twice.
    pub fn objtool_at_link(&self) -> bool {
        self.objtool.as_ref().is_some_and(|(_, args)| args.iter().any(|a| a == "--link"))
    }
}

/// The variables the make command line must override in a headers dir. Debian's 7.x headers
/// set `KBUILD_OUTPUT=/usr/src/linux-headers-<abi>` in their Makefile, a path that exists only
/// where the package is installed; the cache's copy is used in place, so it points there.
pub fn make_overrides(headers_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(headers_dir.join("Makefile")).unwrap_or_default();
    let sets_output = text.lines().any(|l| {
        l.trim_start()
            .strip_prefix("KBUILD_OUTPUT")
            .is_some_and(|r| r.trim_start().starts_with('=') || r.trim_start().starts_with(":="))
    });
    if sets_output {
        vec![format!("KBUILD_OUTPUT={}", headers_dir.display())]
    } else {
        Vec::new()
    }
}

pub fn make_command(env: &BuildEnv, headers_dir: &Path, module_dir: &Path) -> Command {
    let mut c = env.command("make", headers_dir);
    c.arg("-C").arg(headers_dir).arg(format!("M={}", module_dir.display()));
    c.args(make_overrides(headers_dir));
    c.arg(format!("-j{}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4)));
    c.arg("modules");
    c
}

/// Run a command; on success its stdout and stderr (where kbuild, objtool and modpost put their
/// warnings), on failure an error with the stderr's tail.
pub fn run_output(c: &mut Command) -> Result<(String, String), ToolError> {
    let command = crate::tools::describe(c);
    let out = crate::tools::output(c).map_err(|source| ToolError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        return Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Err(crate::tools::failed(c, command, &out))
}

/// The warnings in kbuild's output: objtool's (`x.o: warning: objtool: …`), modpost's
/// (`WARNING: modpost: …`), the compiler's.
pub fn warnings(output: &str) -> Vec<String> {
    output.lines().filter(|l| l.contains("warning:") || l.contains("WARNING:")).map(|l| l.trim().to_string()).collect()
}

/// Build the probe module in `dir` and read its `.probe.o.cmd`. `files` are written next to it
/// (headers `header_text` includes).
pub fn probe(
    env: &BuildEnv,
    headers_dir: &Path,
    dir: &Path,
    header_text: &str,
    files: &[(&str, &str)],
) -> Result<Probe, KmodError> {
    std::fs::create_dir_all(dir).map_err(|e| KmodError::io(format!("creating {}", dir.display()), e))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| KmodError::io(format!("writing {name} in {}", dir.display()), e))
    };
    for (name, text) in files {
        write(name, text)?;
    }
    write("probe.c", &format!("{header_text}\nMODULE_LICENSE(\"GPL\");\nMODULE_DESCRIPTION(\"probe\");\n"))?;
    write("Kbuild", "obj-m := probe.o\n")?;
    let mut c = make_command(env, headers_dir, dir);
    c.arg("V=1");
    let (log, _) = run_output(&mut c)
        .map_err(|e| KmodError::tool(&format!("building the kbuild probe module ({})", env.describe()), e))?;
    let cmd_path = dir.join(".probe.o.cmd");
    let text =
        std::fs::read_to_string(&cmd_path).map_err(|e| KmodError::io(format!("reading {}", cmd_path.display()), e))?;
    let cmd = cmd_line(&text)
        .ok_or_else(|| KmodError::Kbuild { detail: format!("{} has no cmd_… line", cmd_path.display()) })?;
    // The compiler command is the first of the .cmd line; objtool follows it there from 5.19
    // (`; ./tools/objtool/objtool …`), before that it is a command of its own in make's log.
    let objtool = objtool_command(cmd, "probe.o").or_else(|| objtool_in_log(&log, "probe.o"));
    Ok(Probe { cc_words: cc_words(cmd), clang_flags: clang_flags(cmd, headers_dir, |p| env.host_path(p)), objtool })
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
pub fn run_objtool(
    env: &BuildEnv,
    headers_dir: &Path,
    objtool: &(String, Vec<String>),
    object: &Path,
) -> Result<String, KmodError> {
    let abs = absolute(headers_dir, &objtool.0);
    let prog = Path::new(&abs);
    if !prog.is_file() {
        return Err(KmodError::Kbuild {
            detail: format!(
                "objtool {} is missing from the kernel headers (it is part of linux-kbuild-*)",
                prog.display()
            ),
        });
    }
    let mut c = env.command(&abs, headers_dir);
    c.args(&objtool.1).arg(object);
    let command = crate::tools::describe(&c);
    let out = crate::tools::output(&mut c).map_err(|e| KmodError::io(format!("running `{command}`"), e))?;
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
        let flags = clang_flags(cmd, Path::new("/h/amd64"), |p| p.to_string());
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
        let (prog, args) = objtool_command(cmd, "probe.o").unwrap();
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
        // 7.x names the object relatively, and adds --link when kbuild runs it at link time.
        let (_, args) = objtool_command(
            "gcc -c -o probe.o probe.c; ./tools/objtool/objtool --ibt --link --module probe.o",
            "probe.o",
        )
        .unwrap();
        assert_eq!(args, ["--ibt", "--link", "--module"]);
    }

    #[test]
    fn objtool_of_5_10_is_found_in_the_make_log() {
        let log = "  gcc-10 -Wp,-MMD,/m/.probe.o.d -nostdinc -c -o /m/probe.o /m/probe.c\n   \
                   ./tools/objtool/objtool orc generate  --module --no-fp  --retpoline --rethunk --uaccess /m/probe.o\n\
                   { echo /m/probe.ko; } > /m/probe.mod\n";
        let (prog, args) = objtool_in_log(log, "probe.o").unwrap();
        assert_eq!(prog, "./tools/objtool/objtool");
        assert_eq!(args, ["orc", "generate", "--module", "--no-fp", "--retpoline", "--rethunk", "--uaccess"]);
        assert_eq!(objtool_in_log("gcc -c probe.c\n", "probe.o"), None);
    }

    #[test]
    fn savedcmd_lines_are_read() {
        assert_eq!(cmd_line("savedcmd_/m/probe.o := gcc -c x.c\n"), Some("gcc -c x.c"));
        assert_eq!(cmd_line("source_x := y\n"), None);
    }

    #[test]
    fn objtool_at_link_is_seen() {
        let p = |args: &[&str]| Probe {
            cc_words: vec![],
            clang_flags: vec![],
            objtool: Some(("objtool".into(), args.iter().map(|a| a.to_string()).collect())),
        };
        assert!(p(&["--ibt", "--link", "--module"]).objtool_at_link());
        assert!(!p(&["--orc", "--module"]).objtool_at_link());
        assert!(!Probe { cc_words: vec![], clang_flags: vec![], objtool: None }.objtool_at_link());
    }

    #[test]
    fn kbuild_output_is_overridden_only_where_the_makefile_sets_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Makefile"), "include /x/common/Makefile\n").unwrap();
        assert!(make_overrides(dir.path()).is_empty());
        std::fs::write(
            dir.path().join("Makefile"),
            "KBUILD_OUTPUT=/usr/src/linux-headers-7.2.13+deb14-amd64\ninclude /x\n",
        )
        .unwrap();
        assert_eq!(make_overrides(dir.path()), [format!("KBUILD_OUTPUT={}", dir.path().display())]);
    }

    #[test]
    fn warnings_are_picked_from_kbuild_output() {
        let out = "  LD [M]  /m/a.o\n/m/a.o: warning: objtool: a+0x4: relocation to !ENDBR: b\n\
                   WARNING: modpost: missing MODULE_DESCRIPTION() in /m/a.o\n  MODPOST /m/Module.symvers\n";
        assert_eq!(
            warnings(out),
            [
                "/m/a.o: warning: objtool: a+0x4: relocation to !ENDBR: b",
                "WARNING: modpost: missing MODULE_DESCRIPTION() in /m/a.o"
            ]
        );
    }

    #[test]
    fn clang_flags_map_paths_of_a_toolchain_root() {
        let cmd = "gcc-10 -nostdinc -isystem /usr/lib/gcc/x86_64-linux-gnu/10/include -I./include -c -o p.o p.c";
        let flags = clang_flags(cmd, Path::new("/cache/h"), |p| {
            if p.starts_with("/cache") {
                p.to_string()
            } else {
                format!("/cache/root{p}")
            }
        });
        assert_eq!(
            flags,
            ["-nostdinc", "-isystem", "/cache/root/usr/lib/gcc/x86_64-linux-gnu/10/include", "-I/cache/h/include"]
        );
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
