//! What a kernel's configuration must offer, checked from its `.config` before anything is
//! built or booted: everything missing is said in one message, so a kernel developer fixes
//! their config once instead of once per failed run.
//!
//! Two kinds: what the harness itself needs (a kernel without it cannot be tested at all:
//! exit 2 with the list), and what single cases need (those cases SKIP naming the option,
//! never FAIL) — see [`crate::suite::gate`].

pub use super::config::KConfig as KernelConfig;
use crate::image::GuestRecipe;

/// One thing the config must have, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What to set, e.g. `CONFIG_LIVEPATCH=y` or `CONFIG_UNWINDER_ORC=y, not CONFIG_UNWINDER_GUESS=y (…)`.
    pub set: String,
    pub why: String,
}

/// What the harness needs of every kernel it tests. The options are the ones Kconfig lets a
/// user set: `HAVE_RELIABLE_STACKTRACE` follows from the unwinder, so that is what is named.
pub fn harness_missing(c: &KernelConfig) -> Vec<Missing> {
    let mut out = Vec::new();
    let mut need = |ok: bool, set: &str, why: &str| {
        if !ok {
            out.push(Missing { set: set.to_string(), why: why.to_string() });
        }
    };
    need(
        c.builtin("X86_64"),
        "CONFIG_X86_64=y (CONFIG_64BIT=y: tinyconfig on x86 is 32-bit)",
        "the reference modules and the agent are built for x86_64",
    );
    need(c.builtin("MODULES"), "CONFIG_MODULES=y", "livepatches are kernel modules");
    need(c.builtin("MODULE_UNLOAD"), "CONFIG_MODULE_UNLOAD=y", "the removal suites unload livepatch modules");
    need(c.builtin("LIVEPATCH"), "CONFIG_LIVEPATCH=y", "the kernel's livepatch core is what is tested");
    // Name what the user set instead, so that the message says which option to change.
    let instead = ["UNWINDER_GUESS", "UNWINDER_FRAME_POINTER"]
        .iter()
        .find(|u| c.builtin(u))
        .map(|u| format!(", not CONFIG_{u}=y"))
        .unwrap_or_default();
    need(
        c.builtin("HAVE_RELIABLE_STACKTRACE") || c.builtin("UNWINDER_ORC"),
        &format!("CONFIG_UNWINDER_ORC=y{instead} (so that CONFIG_HAVE_RELIABLE_STACKTRACE=y)"),
        "reliable stack traces: without them sleeping tasks are never switched by the stack check and \
         every transition case would fail as if the kernel were non-conformant",
    );
    need(
        c.builtin("DYNAMIC_FTRACE_WITH_REGS") || c.builtin("DYNAMIC_FTRACE_WITH_ARGS"),
        "CONFIG_FUNCTION_TRACER=y and CONFIG_DYNAMIC_FTRACE=y (giving DYNAMIC_FTRACE_WITH_ARGS or _WITH_REGS)",
        "livepatch redirects functions through ftrace",
    );
    need(
        c.builtin("KALLSYMS_ALL"),
        "CONFIG_KALLSYMS_ALL=y (it depends on CONFIG_DEBUG_KERNEL=y)",
        "livepatch resolves the functions it patches by name",
    );
    need(c.builtin("BLK_DEV_INITRD"), "CONFIG_BLK_DEV_INITRD=y", "the guest's agent runs from an initramfs");
    need(c.builtin("BINFMT_ELF"), "CONFIG_BINFMT_ELF=y", "the agent is a static ELF binary (PID 1)");
    need(c.builtin("FUTEX"), "CONFIG_FUTEX=y", "the agent's threads and locks (Rust's std) wait on futexes");
    need(c.builtin("DEVTMPFS"), "CONFIG_DEVTMPFS=y", "the agent finds its channel's device node in devtmpfs");
    need(
        c.builtin("SERIAL_8250") && c.builtin("SERIAL_8250_CONSOLE"),
        "CONFIG_SERIAL_8250=y and CONFIG_SERIAL_8250_CONSOLE=y",
        "the kernel console goes to the first UART, which the harness scans for oops and panics",
    );
    need(
        c.builtin("PROC_FS") && c.builtin("SYSFS"),
        "CONFIG_PROC_FS=y and CONFIG_SYSFS=y",
        "the suites read /proc and /sys",
    );
    need(c.builtin("PRINTK"), "CONFIG_PRINTK=y", "the suites read the kernel log");
    out
}

/// The config option of a recipe module, without its `CONFIG_` prefix.
fn option_name(opt: &str) -> &str {
    opt.strip_prefix("CONFIG_").unwrap_or(opt)
}

/// What the guest recipe (`images/guest.yaml`) needs of the kernel: the modules it loads at
/// start that are not optional (the agent channel's), built in or as modules.
pub fn guest_missing(c: &KernelConfig, recipe: &GuestRecipe) -> Vec<Missing> {
    recipe
        .boot_modules()
        .into_iter()
        .filter(|m| !m.optional)
        .filter_map(|m| {
            let opt = m.config.as_deref()?;
            (!c.on(option_name(opt))).then(|| Missing {
                set: format!("{opt}=y (or m)"),
                why: format!("{} ({}: module {})", m.why, recipe.source.display(), m.name),
            })
        })
        .collect()
}

/// What a kernel without it still runs, but with less: said before the run, never fatal.
pub fn advice(c: &KernelConfig, recipe: &GuestRecipe) -> Vec<Missing> {
    let mut out: Vec<Missing> = recipe
        .boot_modules()
        .into_iter()
        .filter(|m| m.optional)
        .filter_map(|m| {
            let opt = m.config.as_deref()?;
            (!c.on(option_name(opt))).then(|| Missing { set: format!("{opt}=y (or m)"), why: m.why.clone() })
        })
        .collect();
    if recipe.cpus > 1 && !c.builtin("SMP") {
        out.push(Missing {
            set: "CONFIG_SMP=y".into(),
            why: format!(
                "the guest has {} vCPUs ({}); transitions are only interesting with tasks on other CPUs",
                recipe.cpus,
                recipe.source.display()
            ),
        });
    }
    if recipe.cmdline.iter().any(|t| t.token.starts_with("earlyprintk=")) && !c.builtin("EARLY_PRINTK") {
        out.push(Missing {
            set: "CONFIG_EARLY_PRINTK=y".into(),
            why: format!(
                "the guest's command line has earlyprintk ({}): messages from before the console is up",
                recipe.source.display()
            ),
        });
    }
    if !c.builtin("PVH") {
        out.push(Missing {
            set: "CONFIG_PVH=y".into(),
            why: "the harness boots the uncompressed vmlinux through its PVH entry, ~2 s faster per boot under TCG"
                .into(),
        });
    }
    out
}

/// What the harness and the guest recipe need, as one message, or `None` when the config
/// has it all.
pub fn harness_message(release: &str, c: &KernelConfig, recipe: &GuestRecipe) -> Option<String> {
    let mut missing = harness_missing(c);
    missing.extend(guest_missing(c, recipe));
    if missing.is_empty() {
        return None;
    }
    let mut s = format!("kernel {release} cannot be tested: its config lacks what klp-conform needs:\n");
    for m in &missing {
        s.push_str(&format!("  - {}: {}\n", m.set, m.why));
    }
    s.push_str("(images/kernel-config.fragment has all of them; `cargo xtask kernel config <tree>` applies it)");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "CONFIG_X86_64=y\nCONFIG_MODULES=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_LIVEPATCH=y\n\
        CONFIG_UNWINDER_ORC=y\nCONFIG_HAVE_RELIABLE_STACKTRACE=y\nCONFIG_DYNAMIC_FTRACE_WITH_ARGS=y\n\
        CONFIG_KALLSYMS_ALL=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_BINFMT_ELF=y\nCONFIG_FUTEX=y\nCONFIG_DEVTMPFS=y\n\
        CONFIG_SERIAL_8250=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_PROC_FS=y\nCONFIG_SYSFS=y\nCONFIG_PRINTK=y\n\
        CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=m\nCONFIG_SMP=y\nCONFIG_PVH=y\nCONFIG_PVPANIC_MMIO=m\nCONFIG_VIRTIO_FS=m\nCONFIG_EARLY_PRINTK=y\n\
        CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n";

    /// The checkout's own recipe: what a real run checks against.
    fn recipe() -> GuestRecipe {
        GuestRecipe::from_workspace(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
    }

    #[test]
    fn a_complete_config_passes() {
        let c = KernelConfig::parse(GOOD);
        assert!(harness_missing(&c).is_empty(), "{:?}", harness_missing(&c));
        assert!(guest_missing(&c, &recipe()).is_empty(), "{:?}", guest_missing(&c, &recipe()));
        assert!(advice(&c, &recipe()).is_empty(), "{:?}", advice(&c, &recipe()));
        assert_eq!(c.get("CC_VERSION_TEXT"), Some("gcc-12 (Debian 12.2.0-14) 12.2.0"));
    }

    #[test]
    fn everything_missing_is_named_at_once() {
        let text = GOOD
            .replace("CONFIG_UNWINDER_ORC=y\nCONFIG_HAVE_RELIABLE_STACKTRACE=y\n", "CONFIG_UNWINDER_GUESS=y\n")
            .replace("CONFIG_KALLSYMS_ALL=y\n", "# CONFIG_KALLSYMS_ALL is not set\n")
            .replace("CONFIG_VIRTIO_CONSOLE=m\n", "");
        let msg = harness_message("6.1.0", &KernelConfig::parse(&text), &recipe()).unwrap();
        assert!(msg.contains("CONFIG_UNWINDER_ORC=y, not CONFIG_UNWINDER_GUESS=y"), "{msg}");
        assert!(msg.contains("CONFIG_KALLSYMS_ALL=y"), "{msg}");
        assert!(msg.contains("CONFIG_VIRTIO_CONSOLE=y (or m)") && msg.contains("module virtio_console"), "{msg}");
        assert!(msg.contains("images/guest.yaml"), "{msg}");
        assert_eq!(msg.lines().filter(|l| l.starts_with("  - ")).count(), 3, "{msg}");
        assert!(harness_message("6.1.0", &KernelConfig::parse(GOOD), &recipe()).is_none());
    }

    #[test]
    fn modules_are_not_builtins() {
        let c = KernelConfig::parse(&GOOD.replace("CONFIG_LIVEPATCH=y", "CONFIG_LIVEPATCH=m"));
        assert!(c.on("LIVEPATCH") && !c.builtin("LIVEPATCH"));
        assert_eq!(harness_missing(&c).len(), 1);
    }

    #[test]
    fn optional_things_are_advice_only() {
        let c = KernelConfig::parse(&GOOD.replace("CONFIG_PVPANIC_MMIO=m\n", "").replace("CONFIG_SMP=y\n", ""));
        assert!(harness_message("6.1.0", &c, &recipe()).is_none());
        let a: Vec<String> = advice(&c, &recipe()).into_iter().map(|m| m.set).collect();
        assert_eq!(a, ["CONFIG_PVPANIC_MMIO=y (or m)", "CONFIG_SMP=y"]);
    }

    /// The fragment a developer merges gives everything this module asks for (as far as a
    /// fragment can: the options Kconfig derives, like HAVE_RELIABLE_STACKTRACE, are not in it).
    #[test]
    fn the_fragment_sets_what_the_checks_name() {
        let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let frag = KernelConfig::load(&ws.join("images/kernel-config.fragment")).unwrap();
        for opt in [
            "64BIT",
            "MODULES",
            "MODULE_UNLOAD",
            "LIVEPATCH",
            "UNWINDER_ORC",
            "FUNCTION_TRACER",
            "DYNAMIC_FTRACE",
            "KALLSYMS_ALL",
            "DEBUG_KERNEL",
            "BLK_DEV_INITRD",
            "BINFMT_ELF",
            "FUTEX",
            "DEVTMPFS",
            "SERIAL_8250",
            "SERIAL_8250_CONSOLE",
            "PROC_FS",
            "SYSFS",
            "PRINTK",
            "SMP",
            "PVH",
            "EARLY_PRINTK",
            "PVPANIC_MMIO",
        ] {
            assert!(frag.builtin(opt), "images/kernel-config.fragment lacks CONFIG_{opt}=y");
        }
        for m in recipe().boot_modules() {
            let opt = m.config.as_deref().unwrap();
            assert!(frag.on(option_name(opt)), "images/kernel-config.fragment lacks {opt} (module {})", m.name);
        }
    }
}
