//! `kernel config <tree>`: give a kernel developer's own tree the smallest config klp-conform
//! and every suite need, with the kernel's own tools: `make <base>` (tinyconfig or defconfig),
//! `scripts/kconfig/merge_config.sh -m .config images/kernel-config.fragment`, `make
//! olddefconfig`; then say what changed against the base, which options of the fragment Kconfig
//! did not take (and why, as far as the tree tells), and whether the result has what the
//! harness checks before a run ([`super::prereq`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::KConfig;
use crate::progress::Progress;
use crate::tools::{self, ToolError};

/// Where the fragment lives in the checkout.
pub const FRAGMENT_PATH: &str = "images/kernel-config.fragment";

/// The config the fragment is merged onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Base {
    /// `make tinyconfig`: the smallest kernel (~2 MB bzImage); the fragment adds what is needed.
    Tinyconfig,
    /// `make defconfig`: x86_64's default config plus the fragment.
    Defconfig,
}

impl Base {
    pub fn target(self) -> &'static str {
        match self {
            Self::Tinyconfig => "tinyconfig",
            Self::Defconfig => "defconfig",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeConfigError {
    #[error("{} is not a kernel source tree: {missing} is missing", tree.display())]
    NotATree { tree: PathBuf, missing: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TreeConfigError {
    let what = what.into();
    move |source| TreeConfigError::Io { what, source }
}

/// What a fragment asks for: option (with `CONFIG_`) → value, `n` for `# CONFIG_X is not set`.
pub fn parse_fragment(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("# CONFIG_") {
                let name = rest.strip_suffix(" is not set")?;
                return Some((format!("CONFIG_{name}"), "n".to_string()));
            }
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_").then(|| (k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// An option whose value differs between two configs (`None`: not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub option: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Every option whose value differs, sorted by name.
pub fn changes(before: &KConfig, after: &KConfig) -> Vec<Change> {
    let names: BTreeSet<&str> = before.names().chain(after.names()).collect();
    names
        .into_iter()
        .filter_map(|n| {
            let (b, a) = (before.get(n), after.get(n));
            (b != a).then(|| Change {
                option: format!("CONFIG_{n}"),
                before: b.map(str::to_string),
                after: a.map(str::to_string),
            })
        })
        .collect()
}

/// A fragment option the final config does not have as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTaken {
    pub option: String,
    pub wanted: String,
    /// What the config has (`n` when unset).
    pub got: String,
    /// This tree's Kconfig has no such symbol (renamed or not yet there in this version).
    pub unknown: bool,
}

/// The fragment options `config` does not have as asked; `known` says whether the tree's
/// Kconfig defines a symbol (`LIVEPATCH`, no prefix).
pub fn not_taken(fragment: &[(String, String)], config: &KConfig, known: &dyn Fn(&str) -> bool) -> Vec<NotTaken> {
    fragment
        .iter()
        .filter_map(|(opt, wanted)| {
            let name = opt.strip_prefix("CONFIG_").unwrap_or(opt);
            let got = config.get(name).unwrap_or("n").to_string();
            (got != *wanted).then(|| NotTaken {
                option: opt.clone(),
                wanted: wanted.clone(),
                got,
                unknown: !known(name),
            })
        })
        .collect()
}

/// The symbols (`config X`, `menuconfig X`) the tree's Kconfig files define.
pub fn kconfig_symbols(tree: &Path) -> std::io::Result<BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) -> std::io::Result<()> {
        for ent in std::fs::read_dir(dir)? {
            let ent = ent?;
            let ft = ent.file_type()?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() && !name.starts_with('.') {
                walk(&ent.path(), out)?;
            } else if ft.is_file() && name.starts_with("Kconfig") {
                let text = std::fs::read_to_string(ent.path()).unwrap_or_default();
                for l in text.lines() {
                    let l = l.trim_start();
                    if let Some(sym) = l.strip_prefix("config ").or_else(|| l.strip_prefix("menuconfig ")) {
                        out.insert(sym.trim().to_string());
                    }
                }
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(tree, &mut out)?;
    Ok(out)
}

/// What `configure` did.
#[derive(Debug)]
pub struct Configured {
    pub tree: PathBuf,
    pub base: Base,
    pub fragment: PathBuf,
    /// Options the fragment asks for.
    pub fragment_options: usize,
    /// The tree's .config before, if it had one, kept under this name.
    pub previous: Option<PathBuf>,
    /// Against the base config (what the fragment brought, with what Kconfig derived from it).
    pub changed: Vec<Change>,
    pub not_taken: Vec<NotTaken>,
    /// The harness's prerequisite check of the result (`None`: it has everything).
    pub missing: Option<String>,
    pub advice: Vec<super::prereq::Missing>,
}

fn make(tree: &Path, target: &str) -> Result<(), TreeConfigError> {
    let bin = tools::require_tool("make", "make", "configure the kernel tree")?;
    tools::run_capture(Command::new(bin).arg("-C").arg(tree).arg(target))?;
    Ok(())
}

/// Configure `tree`: `make <base>`, merge `fragment` with the tree's own merge_config.sh,
/// `make olddefconfig`, and compare. The tree's previous .config, if any, is kept as
/// `.config.before-klp-conform`.
pub fn configure(
    tree: &Path,
    base: Base,
    fragment: &Path,
    recipe: &crate::image::GuestRecipe,
    progress: &Progress,
) -> Result<Configured, TreeConfigError> {
    let tree = tree.canonicalize().map_err(io(format!("opening {}", tree.display())))?;
    let merge = tree.join("scripts/kconfig/merge_config.sh");
    for rel in ["Makefile", "Kconfig", "scripts/kconfig/merge_config.sh"] {
        if !tree.join(rel).is_file() {
            return Err(TreeConfigError::NotATree { tree: tree.clone(), missing: rel.into() });
        }
    }
    let frag_text = std::fs::read_to_string(fragment).map_err(io(format!("reading {}", fragment.display())))?;
    let wanted = parse_fragment(&frag_text);
    // Kconfig's own tools: the messages name the packages (gcc comes from build-essential).
    tools::require_tool("gcc", "gcc", "build Kconfig's conf tool")?;
    tools::require_tool("flex", "flex", "build Kconfig's conf tool")?;
    tools::require_tool("bison", "bison", "build Kconfig's conf tool")?;
    let dot = tree.join(".config");
    let previous = if dot.is_file() {
        let keep = tree.join(".config.before-klp-conform");
        std::fs::copy(&dot, &keep).map_err(io(format!("keeping {} as {}", dot.display(), keep.display())))?;
        Some(keep)
    } else {
        None
    };
    progress.note(format!("make -C {} {}", tree.display(), base.target()));
    make(&tree, base.target())?;
    let base_config = KConfig::load(&dot).map_err(io(format!("reading {}", dot.display())))?;
    progress.note(format!("{} -m .config {}", merge.display(), fragment.display()));
    let sh = tools::require_tool("sh", "dash", "run merge_config.sh")?;
    tools::run_capture(Command::new(sh).current_dir(&tree).arg(&merge).arg("-m").arg(".config").arg(fragment))?;
    progress.note(format!("make -C {} olddefconfig", tree.display()));
    make(&tree, "olddefconfig")?;
    let result = KConfig::load(&dot).map_err(io(format!("reading {}", dot.display())))?;
    let symbols = kconfig_symbols(&tree).map_err(io(format!("reading the Kconfig files of {}", tree.display())))?;
    let release = std::fs::read_to_string(tree.join("include/config/kernel.release"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| tree.display().to_string());
    Ok(Configured {
        changed: changes(&base_config, &result),
        not_taken: not_taken(&wanted, &result, &|n| symbols.contains(n)),
        missing: super::prereq::harness_message(&release, &result, recipe),
        advice: super::prereq::advice(&result, recipe),
        fragment_options: wanted.len(),
        tree,
        base,
        fragment: fragment.to_path_buf(),
        previous,
    })
}

impl Configured {
    /// The report for people (stdout).
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} + {} ({} options)\n",
            self.tree.join(".config").display(),
            self.base.target(),
            self.fragment.display(),
            self.fragment_options
        );
        if let Some(p) = &self.previous {
            s.push_str(&format!("the previous .config is kept as {}\n", p.display()));
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "n".into());
        s.push_str(&format!("changed against {} ({}):\n", self.base.target(), self.changed.len()));
        for c in &self.changed {
            s.push_str(&format!("  {}: {} -> {}\n", c.option, show(&c.before), show(&c.after)));
        }
        if self.not_taken.is_empty() {
            s.push_str("Kconfig took every option of the fragment\n");
        } else {
            s.push_str(&format!("not taken by Kconfig ({}):\n", self.not_taken.len()));
            for n in &self.not_taken {
                let why = if n.unknown {
                    "this tree's Kconfig has no such option (another kernel version names it; expected for the \
                     alternatives the fragment lists)"
                        .to_string()
                } else {
                    format!("Kconfig gave {} (a dependency is not met, or a choice went elsewhere)", n.got)
                };
                s.push_str(&format!("  {}={}: {why}\n", n.option, n.wanted));
            }
        }
        match &self.missing {
            None => s.push_str("the result has everything klp-conform checks before a run\n"),
            Some(m) => s.push_str(&format!("{m}\n")),
        }
        for a in &self.advice {
            s.push_str(&format!("consider {}: {}\n", a.set, a.why));
        }
        s.push_str(&format!(
            "next: make -C {0} -j$(nproc) bzImage modules, then cargo xtask conformance --kernel {0}\n",
            self.tree.display()
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_parse_with_unset_options() {
        let f = parse_fragment("# why\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n\n# not an option\n");
        assert_eq!(
            f,
            [("CONFIG_A".into(), "y".into()), ("CONFIG_B".into(), "n".into()), ("CONFIG_S".into(), "x y".into())]
        );
    }

    #[test]
    fn changes_and_what_was_not_taken() {
        let base = KConfig::parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_UNWINDER_GUESS=y\n");
        let after = KConfig::parse("CONFIG_A=y\nCONFIG_B=y\nCONFIG_UNWINDER_ORC=y\nCONFIG_C=m\n");
        let c = changes(&base, &after);
        let names: Vec<(&str, Option<&str>, Option<&str>)> =
            c.iter().map(|c| (c.option.as_str(), c.before.as_deref(), c.after.as_deref())).collect();
        assert_eq!(
            names,
            [
                ("CONFIG_B", None, Some("y")),
                ("CONFIG_C", None, Some("m")),
                ("CONFIG_UNWINDER_GUESS", Some("y"), None),
                ("CONFIG_UNWINDER_ORC", None, Some("y")),
            ]
        );
        let frag = parse_fragment("CONFIG_B=y\nCONFIG_C=y\nCONFIG_MITIGATION_SLS=y\n# CONFIG_A is not set\n");
        let known = |n: &str| n != "MITIGATION_SLS";
        let nt = not_taken(&frag, &after, &known);
        let got: Vec<(&str, &str, bool)> = nt.iter().map(|n| (n.option.as_str(), n.got.as_str(), n.unknown)).collect();
        assert_eq!(got, [("CONFIG_C", "m", false), ("CONFIG_MITIGATION_SLS", "n", true), ("CONFIG_A", "y", false)]);
    }

    #[test]
    fn symbols_come_from_every_kconfig_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("kernel/livepatch")).unwrap();
        std::fs::write(d.path().join("Kconfig"), "mainmenu \"x\"\nconfig MODULES\n\tbool\nmenuconfig EXPERT\n")
            .unwrap();
        std::fs::write(
            d.path().join("kernel/livepatch/Kconfig"),
            "config LIVEPATCH\n\tbool \"Kernel Live Patching\"\n",
        )
        .unwrap();
        std::fs::write(d.path().join("kernel/Kconfig.hz"), "choice\n\tprompt \"Timer\"\nconfig HZ_100\n").unwrap();
        let s = kconfig_symbols(d.path()).unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["EXPERT", "HZ_100", "LIVEPATCH", "MODULES"]);
    }

    #[test]
    fn a_directory_that_is_no_tree_is_named() {
        let d = tempfile::tempdir().unwrap();
        let recipe =
            crate::image::GuestRecipe::from_workspace(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
        let e = configure(d.path(), Base::Tinyconfig, Path::new("/nope"), &recipe, &Progress::quiet()).unwrap_err();
        assert!(e.to_string().ends_with("is not a kernel source tree: Makefile is missing"), "{e}");
    }
}
