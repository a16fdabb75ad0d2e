//! The guest recipe, `images/guest.yaml`: what a klp-conform guest is made of (machine, agent
//! channel, kernel command line, the kernel modules the image carries for the guest itself),
//! declared in one file with the reason for every part, and loaded at every run.
//!
//! Unknown keys and wrong types are rejected by serde with their location; the rules serde
//! cannot express are checked here, also with file:line:column.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::yaml::Located;

/// Where the recipe lives in the checkout.
pub const RECIPE_PATH: &str = "images/guest.yaml";

/// A guest recipe that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{}: cannot read the guest recipe: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}{}", path.display(), Located::snippet_suffix(snippet))]
    Invalid { path: PathBuf, line: u64, column: u64, message: String, snippet: String },
}

/// How the agent and the harness talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelKind {
    /// A virtserialport on a virtio-serial-pci device (needs virtio_pci and virtio_console).
    VirtioSerial,
    /// A second ISA 8250 UART, ttyS1 (built into Debian kernels).
    IsaSerial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecipe {
    pub kind: ChannelKind,
    /// The virtio-serial port's name (`virtio-serial` only).
    pub port: Option<String>,
    /// Modules the channel needs, loaded before the agent opens it.
    pub modules: Vec<GuestModule>,
}

/// How TCG runs the guest's vCPUs (`-accel tcg,thread=…`); KVM ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcgThreads {
    /// One host thread runs every vCPU in turn.
    Single,
    /// One host thread per vCPU.
    Multi,
}

impl TcgThreads {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Multi => "multi",
        }
    }
}

/// The tty the `isa-serial` channel is in the guest (QEMU's `isa-serial,index=1`).
pub const ISA_SERIAL_TTY: &str = "ttyS1";

/// A kernel command line token and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineToken {
    pub token: String,
    pub why: String,
}

/// A module of the kernel under test the guest loads at start (with its dependencies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestModule {
    /// The module's name (`virtio_console`); `-` and `_` are the same, as for modprobe.
    pub name: String,
    /// The config option that builds it, for messages and to recognise it built in.
    pub config: Option<String>,
    /// A kernel without it (neither module nor built in) still boots.
    pub optional: bool,
    pub why: String,
}

/// What a guest is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRecipe {
    /// The file it came from, for messages.
    pub source: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    pub tcg_threads: TcgThreads,
    pub channel: ChannelRecipe,
    pub cmdline: Vec<CmdlineToken>,
    /// Modules needed whatever the channel (pvpanic), loaded after the channel's.
    pub modules: Vec<GuestModule>,
}

impl GuestRecipe {
    /// `<workspace>/images/guest.yaml`.
    pub fn from_workspace(workspace: &Path) -> Result<Self, RecipeError> {
        Self::load(&workspace.join(RECIPE_PATH))
    }

    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read { path: path.into(), source })?;
        Self::parse(path, &text)
    }

    /// Parse and check recipe text; `path` names it in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, RecipeError> {
        let invalid = |l: Located| RecipeError::Invalid {
            path: path.into(),
            line: l.line,
            column: l.column,
            message: l.message,
            snippet: l.snippet,
        };
        let file: RecipeFile = serde_saphyr::from_str(text).map_err(|e| invalid(Located::from_saphyr(path, &e)))?;
        file.validate().map_err(|(loc, msg)| invalid(Located::at(text, loc, msg)))?;
        Ok(file.into_recipe(path))
    }

    /// The agent's channel as the guest names it (the value of `klp_agent.channel`).
    pub fn agent_channel(&self) -> klp_protocol::Channel {
        match self.channel.kind {
            ChannelKind::VirtioSerial => {
                klp_protocol::Channel::Virtio { name: self.channel.port.clone().expect("validated: virtio has a port") }
            }
            ChannelKind::IsaSerial => klp_protocol::Channel::Tty { name: ISA_SERIAL_TTY.into() },
        }
    }

    /// The kernel command line: the recipe's tokens, the agent's channel, then `extra`.
    pub fn kernel_cmdline(&self, extra: &str) -> String {
        let mut tokens: Vec<String> = self.cmdline.iter().map(|t| t.token.clone()).collect();
        tokens.push(self.agent_channel().cmdline_token());
        let extra = extra.trim();
        if !extra.is_empty() {
            tokens.push(extra.to_string());
        }
        tokens.join(" ")
    }

    /// Every module the image carries for the guest, in load order before dependencies are
    /// added: the channel's first (the agent needs them to answer at all), then the others.
    pub fn boot_modules(&self) -> Vec<&GuestModule> {
        self.channel.modules.iter().chain(&self.modules).collect()
    }

    /// The same guest with the agent on the second 8250 UART instead (for comparisons).
    pub fn with_isa_serial(&self) -> Self {
        let mut r = self.clone();
        r.channel = ChannelRecipe { kind: ChannelKind::IsaSerial, port: None, modules: Vec::new() };
        r
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    version: Spanned<u32>,
    machine: MachineFile,
    channel: ChannelFile,
    cmdline: Vec<TokenFile>,
    #[serde(default)]
    modules: Vec<ModuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineFile {
    memory_mb: Spanned<u32>,
    cpus: Spanned<u32>,
    tcg_threads: Spanned<TcgThreads>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelFile {
    kind: Spanned<ChannelKind>,
    #[serde(default)]
    port: Option<Spanned<String>>,
    #[serde(default)]
    modules: Vec<ModuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    token: Spanned<String>,
    why: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleFile {
    name: Spanned<String>,
    #[serde(default)]
    config: Option<Spanned<String>>,
    #[serde(default)]
    optional: bool,
    why: Spanned<String>,
}

type Invalid = (Location, String);

fn check(ok: bool, loc: Location, msg: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((loc, msg()))
    }
}

/// A module name as modprobe compares them.
pub fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

impl RecipeFile {
    fn validate(&self) -> Result<(), Invalid> {
        check(self.version.value == 1, self.version.referenced, || {
            format!("unsupported guest recipe version {}, expected 1", self.version.value)
        })?;
        let m = &self.machine;
        check((64..=65536).contains(&m.memory_mb.value), m.memory_mb.referenced, || {
            format!("memory_mb {} is not a machine; expected 64 to 65536", m.memory_mb.value)
        })?;
        check((1..=64).contains(&m.cpus.value), m.cpus.referenced, || {
            format!("cpus {} is not a machine; expected 1 to 64", m.cpus.value)
        })?;

        let c = &self.channel;
        match (c.kind.value, &c.port) {
            (ChannelKind::VirtioSerial, None) => {
                return Err((c.kind.referenced, "a virtio-serial channel needs `port: <name>`".into()))
            }
            (ChannelKind::VirtioSerial, Some(p)) => {
                check(klp_protocol::Channel::valid_name(&p.value), p.referenced, || {
                    format!("port name `{}` must be letters, digits, `.`, `-` or `_`", p.value)
                })?
            }
            (ChannelKind::IsaSerial, Some(p)) => {
                return Err((p.referenced, "an isa-serial channel is always ttyS1 and takes no `port`".into()))
            }
            (ChannelKind::IsaSerial, None) => {}
        }
        if let (ChannelKind::IsaSerial, Some(first)) = (c.kind.value, c.modules.first()) {
            return Err((
                first.name.referenced,
                "an isa-serial channel needs no modules (the 8250 UART is built in)".into(),
            ));
        }

        let mut tokens = std::collections::BTreeSet::new();
        for t in &self.cmdline {
            let tok = &t.token.value;
            check(!tok.is_empty() && !tok.chars().any(char::is_whitespace), t.token.referenced, || {
                format!("`{tok}` is not one command line token (no blanks)")
            })?;
            check(!tok.starts_with(klp_protocol::CHANNEL_PARAM), t.token.referenced, || {
                format!("`{tok}`: the harness sets {} from `channel`", klp_protocol::CHANNEL_PARAM)
            })?;
            check(!t.why.value.trim().is_empty(), t.why.referenced, || format!("say why `{tok}` is there"))?;
            check(tokens.insert(tok.as_str()), t.token.referenced, || format!("`{tok}` is there twice"))?;
        }

        let mut names = std::collections::BTreeSet::new();
        for m in c.modules.iter().chain(&self.modules) {
            let n = &m.name.value;
            check(
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
                m.name.referenced,
                || format!("`{n}` is not a module name (lowercase letters, digits, `_`, `-`)"),
            )?;
            check(names.insert(module_key(n)), m.name.referenced, || format!("module `{n}` is listed twice"))?;
            if let Some(cfg) = &m.config {
                check(
                    cfg.value.starts_with("CONFIG_")
                        && cfg.value.len() > 7
                        && cfg.value.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                    cfg.referenced,
                    || format!("`{}` is not a config option (CONFIG_…)", cfg.value),
                )?;
            }
            check(!m.why.value.trim().is_empty(), m.why.referenced, || format!("say why module `{n}` is there"))?;
        }
        Ok(())
    }

    fn into_recipe(self, path: &Path) -> GuestRecipe {
        let module = |m: ModuleFile| GuestModule {
            name: m.name.value,
            config: m.config.map(|c| c.value),
            optional: m.optional,
            why: m.why.value.trim().to_string(),
        };
        GuestRecipe {
            source: path.to_path_buf(),
            memory_mb: self.machine.memory_mb.value,
            cpus: self.machine.cpus.value,
            tcg_threads: self.machine.tcg_threads.value,
            channel: ChannelRecipe {
                kind: self.channel.kind.value,
                port: self.channel.port.map(|p| p.value),
                modules: self.channel.modules.into_iter().map(module).collect(),
            },
            cmdline: self
                .cmdline
                .into_iter()
                .map(|t| CmdlineToken { token: t.token.value, why: t.why.value.trim().to_string() })
                .collect(),
            modules: self.modules.into_iter().map(module).collect(),
        }
    }
}

/// The recipe of this checkout, for tests.
#[cfg(test)]
pub(crate) fn checkout_recipe() -> GuestRecipe {
    GuestRecipe::from_workspace(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn the_checkout_recipe_loads() {
        let r = checkout_recipe();
        assert!(r.source.ends_with(RECIPE_PATH));
        assert_eq!((r.memory_mb, r.cpus), (512, 2));
        assert_eq!(r.channel.kind, ChannelKind::VirtioSerial);
        assert_eq!(r.agent_channel().to_string(), "virtio:org.klp-conform.agent");
        let names: Vec<_> = r.boot_modules().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["virtio_pci", "virtio_console", "pvpanic_mmio", "virtiofs"]);
        assert!(r.cmdline.iter().all(|t| !t.why.is_empty()));
        let cmdline = r.kernel_cmdline(" oops=panic ");
        assert!(cmdline.starts_with("console=ttyS0 "), "{cmdline}");
        assert!(cmdline.ends_with(" klp_agent.channel=virtio:org.klp-conform.agent oops=panic"), "{cmdline}");
        assert_eq!(klp_protocol::Channel::from_cmdline(&cmdline), Ok(r.agent_channel()));
        let isa = r.with_isa_serial();
        assert_eq!(isa.agent_channel().to_string(), "tty:ttyS1");
        assert_eq!(isa.boot_modules().len(), 2);
    }

    const GOOD: &str = "\
version: 1
machine: {memory_mb: 256, cpus: 1, tcg_threads: single}
channel:
  kind: virtio-serial
  port: p.0
  modules:
    - {name: virtio_pci, why: transport}
cmdline:
  - {token: console=ttyS0, why: console}
modules:
  - {name: pvpanic-mmio, optional: true, config: CONFIG_PVPANIC_MMIO, why: panics}
";

    #[test]
    fn a_small_recipe() {
        let r = GuestRecipe::parse(Path::new("g.yaml"), GOOD).unwrap();
        assert_eq!((r.memory_mb, r.cpus), (256, 1));
        assert_eq!(r.kernel_cmdline(""), "console=ttyS0 klp_agent.channel=virtio:p.0");
        assert_eq!(r.modules[0].config.as_deref(), Some("CONFIG_PVPANIC_MMIO"));
        assert!(r.modules[0].optional && !r.channel.modules[0].optional);
    }

    #[rstest]
    #[case::unknown_top("version: 1\n", "version: 1\ncpu: 2\n", 2, "unknown field `cpu`")]
    #[case::unknown_machine_key("memory_mb: 256", "memory: 256", 2, "unknown field `memory`")]
    #[case::wrong_type("cpus: 1,", "cpus: [1],", 2, "cpus")]
    #[case::unknown_threads("tcg_threads: single", "tcg_threads: many", 2, "unknown variant `many`")]
    #[case::tiny_machine("memory_mb: 256", "memory_mb: 16", 2, "not a machine")]
    #[case::unknown_kind("kind: virtio-serial", "kind: usb", 4, "unknown variant `usb`")]
    #[case::no_port("  port: p.0\n", "", 4, "needs `port")]
    #[case::bad_port("port: p.0", "port: 'a b'", 5, "port name")]
    #[case::token_with_blank("token: console=ttyS0", "token: 'a b'", 9, "one command line token")]
    #[case::channel_token("token: console=ttyS0", "token: klp_agent.channel=tty:ttyS1", 9, "the harness sets")]
    #[case::no_why("why: console}", "why: ''}", 9, "say why")]
    #[case::missing_why("{token: console=ttyS0, why: console}", "{token: console=ttyS0}", 9, "missing field `why`")]
    #[case::bad_module("name: pvpanic-mmio", "name: Pv", 11, "not a module name")]
    #[case::dup_module("name: pvpanic-mmio", "name: virtio-pci", 11, "listed twice")]
    #[case::bad_config("config: CONFIG_PVPANIC_MMIO", "config: PVPANIC", 11, "not a config option")]
    fn bad_recipes_are_located(#[case] from: &str, #[case] to: &str, #[case] line: u64, #[case] what: &str) {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD);
        let err = GuestRecipe::parse(Path::new("images/guest.yaml"), &text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("images/guest.yaml:{line}:")), "{shown}\n---\n{text}");
        assert!(shown.contains(what), "{shown}");
        match err {
            RecipeError::Invalid { column, .. } => assert!(column > 0, "{shown}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn isa_serial_takes_no_port_and_no_modules() {
        let isa = GOOD.replace("kind: virtio-serial", "kind: isa-serial");
        let e = GuestRecipe::parse(Path::new("g.yaml"), &isa).unwrap_err().to_string();
        assert!(e.starts_with("g.yaml:5:") && e.contains("takes no `port`"), "{e}");
        let isa = isa.replace("  port: p.0\n", "");
        let e = GuestRecipe::parse(Path::new("g.yaml"), &isa).unwrap_err().to_string();
        assert!(e.starts_with("g.yaml:6:") && e.contains("needs no modules"), "{e}");
        let isa = isa.replace("  modules:\n    - {name: virtio_pci, why: transport}\n", "");
        let r = GuestRecipe::parse(Path::new("g.yaml"), &isa).unwrap();
        assert_eq!(r.kernel_cmdline(""), "console=ttyS0 klp_agent.channel=tty:ttyS1");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = GuestRecipe::load(Path::new("/nonexistent/guest.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/guest.yaml: cannot read the guest recipe"), "{e}");
    }
}
