//! Bring your own livepatch module (`conformance --module PATH.ko`): a user's module is read
//! and checked on the host before any guest boots ([`ko`]: ELF, `livepatch=Y`, the kernel's
//! vermagic, the objects and functions it declares), copied into the run's output as
//! `modules/<name>.ko` (the initramfs carries it to the guest like a reference module, so
//! suites `load` it by name), and given the generic contract suite [`generic_suite`], written
//! as an ordinary suite file `modules/module.yaml` so that its failures point to real lines and
//! everything downstream (planning, snapshots, reports) is the normal path.
//!
//! Snapshots of user modules never go to `suites/snapshots` unless asked (`--module-snapshot-dir`):
//! by default they are kept in `<cache>/module-snapshots/<name>-<sha256 of the .ko, 12 hex>/`,
//! per kernel release as usual, so a rebuilt module (new hash) starts a new set and the same
//! module run again is compared with what it did last time.

pub mod ko;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use ko::{Declared, KoError, KoInfo};

/// A user module that passed the checks.
#[derive(Debug, Clone)]
pub struct UserModule {
    /// As given on the command line.
    pub source: PathBuf,
    /// The copy the run uses, `<out>/modules/<name>.ko`.
    pub path: PathBuf,
    pub info: KoInfo,
    /// sha256 of the file, hex.
    pub sha256: String,
}

impl UserModule {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// `<name>-<12 hex of sha256>`: where its snapshots are kept.
    pub fn key(&self) -> String {
        format!("{}-{}", self.info.name, &self.sha256[..12])
    }
}

/// The suite name of the generic cases: `klp_conformance.module.<name>`.
pub const SUITE: &str = "module";

/// Read and check each module against every kernel's vermagic (`kernels`: release, vermagic,
/// where it was read). Every problem of every module is returned, one line each.
pub fn check_modules(
    paths: &[PathBuf],
    kernels: &[(String, String, String)],
    reserved: &[String],
) -> Result<Vec<(PathBuf, KoInfo, String)>, Vec<String>> {
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        let shown = p.display().to_string();
        let data = match std::fs::read(p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("--module {shown}: no such file"));
                continue;
            }
            Err(e) => {
                problems.push(KoError::Read { path: shown, why: e.to_string() }.to_string());
                continue;
            }
        };
        let info = match ko::parse_ko(&data, p) {
            Ok(i) => i,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if !info.livepatch {
            problems.push(KoError::NotLivepatch { path: shown.clone() }.to_string());
        }
        for (release, vermagic, from) in kernels {
            if &info.vermagic != vermagic {
                problems.push(
                    KoError::Vermagic {
                        path: shown.clone(),
                        module: info.vermagic.clone(),
                        kernel: vermagic.clone(),
                        release: release.clone(),
                        source_file: from.clone(),
                    }
                    .to_string(),
                );
            }
        }
        if reserved.iter().any(|r| r == &info.name) {
            problems.push(format!(
                "{shown}: module name `{}` is the name of a reference module of klp-conform; rename the module",
                info.name
            ));
        }
        if let Some((other, _, _)) = ok.iter().find(|(_, i, _): &&(PathBuf, KoInfo, String)| i.name == info.name) {
            problems.push(format!(
                "{shown}: module name `{}` is also the name of {}; the kernel loads one module per name",
                info.name,
                other.display()
            ));
        }
        let sha = format!("{:x}", Sha256::digest(&data));
        ok.push((p.clone(), info, sha));
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        Err(problems)
    }
}

/// Copy each checked module to `<dir>/<name>.ko` (atomically).
pub fn install(checked: Vec<(PathBuf, KoInfo, String)>, dir: &Path) -> Result<Vec<UserModule>, String> {
    let mut out = Vec::new();
    for (source, info, sha256) in checked {
        let path = dir.join(format!("{}.ko", info.name));
        let data = std::fs::read(&source).map_err(|e| format!("reading {}: {e}", source.display()))?;
        crate::fsutil::write_atomic(&path, &data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        out.push(UserModule { source, path, info, sha256 });
    }
    Ok(out)
}

/// YAML string literal (double-quoted, escaped).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The generic contract suite, one case per module: load → sysfs as declared → transition
/// completes → taint K → disable → directory gone → refcount 0 → removed, a snapshot at each
/// settled point (enabled, disabled, removed), no WARNING/Oops (every step of every case
/// checks the console). One case per module, not one per step: each step needs the state the
/// one before left (a failed enable leaves nothing to disable), so KTAP and JUnit name the
/// failing step inside the case, and the step timings show every step that ran.
pub fn generic_suite(modules: &[UserModule]) -> String {
    let mut y = String::new();
    y.push_str("# Generated by klp-conform for `conformance --module`: the generic livepatch contract, one case\n");
    y.push_str("# per module. Each step is checked like any suite's; the console is checked after every step.\n");
    y.push_str("version: 1\n");
    y.push_str(&format!("suite: {SUITE}\n"));
    y.push_str("description: The generic livepatch contract on modules given with --module.\n");
    y.push_str("cases:\n");
    for m in modules {
        let n = m.name();
        let p = format!("/sys/kernel/livepatch/{n}");
        y.push_str(&format!("  - name: {}\n", q(n)));
        y.push_str("    spec: [L1, L4, L7, L13, L14, SY3, T2, T7, D1, T8, RM2]\n");
        let declared = match &m.info.declared {
            Declared::Read { objects, replace } => format!(
                "read from the .ko: {} object(s) ({}){}",
                objects.len(),
                objects
                    .iter()
                    .map(|o| format!(
                        "{}: {}",
                        o.sysfs_name(),
                        o.funcs.iter().map(ko::DeclaredFunc::sysfs_name).collect::<Vec<_>>().join(" ")
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                if *replace { ", replace" } else { "" }
            ),
            Declared::Unknown(why) => {
                format!("not read from the .ko ({why}); the sysfs layout is only recorded by the snapshots")
            }
        };
        y.push_str(&format!(
            "    description: {}\n",
            q(&format!(
                "{} (sha256 {}), built from {}; objects and functions {declared}.",
                n,
                &m.sha256[..12],
                m.source.display()
            ))
        ));
        y.push_str("    steps:\n");
        let step = |y: &mut String, s: String| {
            y.push_str("      - ");
            y.push_str(&s);
            y.push('\n');
        };
        step(&mut y, "mark: before-load".into());
        step(&mut y, format!("load: {}", q(n)));
        step(&mut y, format!("read: {{path: {}, equals: \"1\"}}", q(&format!("{p}/enabled"))));
        if let Declared::Read { objects, .. } = &m.info.declared {
            for o in objects {
                step(&mut y, format!("expect_exists: {}", q(&format!("{p}/{}", o.sysfs_name()))));
                for f in &o.funcs {
                    step(
                        &mut y,
                        format!("expect_exists: {}", q(&format!("{p}/{}/{}", o.sysfs_name(), f.sysfs_name()))),
                    );
                }
                if o.name.is_none() {
                    // Objects of vmlinux are patched at the start of the transition (SPEC L9).
                    step(
                        &mut y,
                        format!(
                            "read: {{path: {}, kernels: \">= 6.1\", equals: \"1\"}}",
                            q(&format!("{p}/vmlinux/patched"))
                        ),
                    );
                }
            }
        }
        step(&mut y, format!("read: {{path: {}, equals: \"1\"}}", q(&format!("/sys/module/{n}/refcnt"))));
        // No snapshot between the load and the end of the transition: the transition completes
        // inside the load or on a retry a second later (timing, not behaviour), so what sysfs
        // and the log show there differs from run to run.
        step(&mut y, format!("wait: {{path: {}, equals: \"0\", timeout_s: 60}}", q(&format!("{p}/transition"))));
        if let Declared::Read { objects, replace } = &m.info.declared {
            if let Some((path, listing)) = expected_tree(n, objects, *replace) {
                y.push_str(&format!("      - tree:\n          path: {}\n          equals: |\n", q(&path)));
                for line in listing {
                    y.push_str(&format!("            {line}\n"));
                }
            }
        }
        step(
            &mut y,
            format!(
                "kmsg: {{since: before-load, contains: [{}, {}, {}], absent: [{}]}}",
                q(&format!("livepatch: enabling patch '{n}'")),
                q(&format!("livepatch: '{n}': starting patching transition")),
                q(&format!("livepatch: '{n}': patching complete")),
                q(&format!("livepatch: '{n}': starting unpatching transition")),
            ),
        );
        step(&mut y, "patch_state: {equals: -1}".into());
        step(&mut y, "taint: {set: [K]}".into());
        step(&mut y, "snapshot: enabled".into());
        step(&mut y, format!("write: {{path: {}, value: \"0\"}}", q(&format!("{p}/enabled"))));
        step(&mut y, format!("wait: {{absent: {}, timeout_s: 60}}", q(&p)));
        step(
            &mut y,
            format!(
                "kmsg: {{since: before-load, contains: [{}, {}, {}], count: {{{}: 1}}}}",
                q(&format!("livepatch: '{n}': patching complete")),
                q(&format!("livepatch: '{n}': starting unpatching transition")),
                q(&format!("livepatch: '{n}': unpatching complete")),
                q(&format!("'{n}': unpatching complete")),
            ),
        );
        step(&mut y, "patch_state: {equals: -1}".into());
        step(
            &mut y,
            format!("wait: {{path: {}, equals: \"0\", timeout_s: 30}}", q(&format!("/sys/module/{n}/refcnt"))),
        );
        step(&mut y, "snapshot: disabled".into());
        step(&mut y, format!("unload: {}", q(n)));
        step(&mut y, format!("expect_absent: {}", q(&format!("/sys/module/{n}"))));
        step(&mut y, "snapshot: removed".into());
    }
    y
}

/// The exact sysfs listing once the patching transition is complete (SPEC §1, with the
/// attributes later kernels add, as `suites/enabling.yaml` checks them on every pinned kernel):
/// the whole `/sys/kernel/livepatch` when the patch has only a vmlinux object, else only its
/// `vmlinux/` directory (a module object's `patched` depends on whether that module is loaded,
/// which the host cannot know). `None` when there is no vmlinux object.
fn expected_tree(name: &str, objects: &[ko::DeclaredObject], replace: bool) -> Option<(String, Vec<String>)> {
    let vmlinux = objects.iter().find(|o| o.name.is_none())?;
    let object_lines = |prefix: &str| -> Vec<(String, String)> {
        let mut v = vec![(format!("{prefix}patched"), format!("-r--r--r-- {prefix}patched = 1  [>= 6.1]"))];
        for f in &vmlinux.funcs {
            let p = format!("{prefix}{}", f.sysfs_name());
            v.push((p.clone(), format!("drwxr-xr-x {p}/")));
        }
        v
    };
    let (path, mut lines) = if objects.len() == 1 {
        let mut v = vec![
            (name.to_string(), format!("drwxr-xr-x {name}/")),
            (format!("{name}/enabled"), format!("-rw-r--r-- {name}/enabled = 1")),
            (format!("{name}/force"), format!("--w------- {name}/force (EACCES)")),
            (format!("{name}/replace"), format!("-r--r--r-- {name}/replace = {}  [>= 6.11]", u8::from(replace))),
            (format!("{name}/stack_order"), format!("-r--r--r-- {name}/stack_order = 1  [>= 6.14]")),
            (format!("{name}/transition"), format!("-r--r--r-- {name}/transition = 0")),
            (format!("{name}/vmlinux"), format!("drwxr-xr-x {name}/vmlinux/")),
        ];
        v.extend(object_lines(&format!("{name}/vmlinux/")));
        ("/sys/kernel/livepatch".to_string(), v)
    } else {
        (format!("/sys/kernel/livepatch/{name}/vmlinux"), object_lines(""))
    };
    // The agent lists a tree sorted by path.
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    Some((path, lines.into_iter().map(|(_, l)| l).collect()))
}

/// The kernel-log records a module's case shows: those that name the module (its own
/// `pr_*` lines carry `KBUILD_MODNAME` by convention, the livepatch core's quote it), as
/// `[seconds] text`.
pub fn module_kmsg(records: &[klp_protocol::KmsgRecord], names: &[String]) -> Vec<String> {
    records
        .iter()
        .filter(|r| names.iter().any(|n| r.text.contains(n.as_str())))
        .map(|r| format!("[{:>5}.{:06}] {}", r.ts_us / 1_000_000, r.ts_us % 1_000_000, r.text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, declared: Declared) -> UserModule {
        UserModule {
            source: PathBuf::from(format!("/src/{name}.ko")),
            path: PathBuf::from(format!("/out/modules/{name}.ko")),
            info: KoInfo { name: name.into(), vermagic: "v".into(), livepatch: true, modinfo: vec![], declared },
            sha256: "0123456789abcdef0123".into(),
        }
    }

    #[test]
    fn the_generic_suite_parses_and_names_what_the_module_declares() {
        let read = Declared::Read {
            objects: vec![ko::DeclaredObject {
                name: None,
                funcs: vec![ko::DeclaredFunc { old_name: "cmdline_proc_show".into(), old_sympos: 0 }],
            }],
            replace: false,
        };
        let mods = [module("livepatch_sample", read), module("other", Declared::Unknown("stripped".into()))];
        let text = generic_suite(&mods);
        let s = crate::suite::parse_suite(Path::new("module.yaml"), &text).unwrap();
        assert_eq!(s.name(), SUITE);
        assert_eq!(s.cases.len(), 2);
        assert_eq!(s.cases[0].modules(), vec!["livepatch_sample"]);
        assert!(text.contains("expect_exists: \"/sys/kernel/livepatch/livepatch_sample/vmlinux/cmdline_proc_show,1\""));
        assert!(s.cases[1].description.contains("not read from the .ko (stripped)"));
        let tree = "      - tree:\n          path: \"/sys/kernel/livepatch\"\n          equals: |\n            \
                    drwxr-xr-x livepatch_sample/\n            \
                    -rw-r--r-- livepatch_sample/enabled = 1\n            \
                    --w------- livepatch_sample/force (EACCES)\n            \
                    -r--r--r-- livepatch_sample/replace = 0  [>= 6.11]\n            \
                    -r--r--r-- livepatch_sample/stack_order = 1  [>= 6.14]\n            \
                    -r--r--r-- livepatch_sample/transition = 0\n            \
                    drwxr-xr-x livepatch_sample/vmlinux/\n            \
                    drwxr-xr-x livepatch_sample/vmlinux/cmdline_proc_show,1/\n            \
                    -r--r--r-- livepatch_sample/vmlinux/patched = 1  [>= 6.1]\n";
        assert!(text.contains(tree), "{text}");
        let names: Vec<_> = s.cases[0]
            .steps
            .iter()
            .filter_map(|st| match &st.value {
                crate::suite::Step::Snapshot(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["enabled", "disabled", "removed"]);
    }

    #[test]
    fn the_modules_own_lines_are_picked() {
        let rec = |seq, text: &str| klp_protocol::KmsgRecord { seq, level: 6, ts_us: 1_500_000, text: text.into() };
        let got = module_kmsg(
            &[rec(0, "virtio: x"), rec(1, "livepatch: enabling patch 'lp'"), rec(2, "lp: pre_patch callback")],
            &["lp".into()],
        );
        assert_eq!(got, ["[    1.500000] livepatch: enabling patch 'lp'", "[    1.500000] lp: pre_patch callback"]);
    }
}
