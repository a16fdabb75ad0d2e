//! What a kernel's configuration must offer, checked from its `.config` before anything is
//! built or booted: everything missing is said in one message, so a kernel developer fixes
//! their config once instead of once per failed run.
//!
//! Two kinds: what the harness itself needs (a kernel without it cannot be tested at all:
//! exit 2 with the list), and what single cases need (those cases SKIP naming the option,
//! never FAIL) — see [`crate::suite::gate`].

pub use super::config::KConfig as KernelConfig;

/// One thing the config must have, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What to set, e.g. `CONFIG_LIVEPATCH=y` or `CONFIG_UNWINDER_ORC=y (or CONFIG_UNWINDER_FRAME_POINTER=y)`.
    pub set: String,
    pub why: &'static str,
}

/// What the harness needs of every kernel it tests. The options are the ones Kconfig lets a
/// user set: `HAVE_RELIABLE_STACKTRACE` follows from the unwinder, so that is what is named.
pub fn harness_missing(c: &KernelConfig) -> Vec<Missing> {
    let mut out = Vec::new();
    let mut need = |ok: bool, set: &str, why: &'static str| {
        if !ok {
            out.push(Missing { set: set.to_string(), why });
        }
    };
    need(c.builtin("X86_64"), "CONFIG_X86_64=y", "the reference modules are built for x86_64");
    need(c.builtin("MODULES"), "CONFIG_MODULES=y", "livepatches are kernel modules");
    need(c.builtin("MODULE_UNLOAD"), "CONFIG_MODULE_UNLOAD=y", "the removal suites unload livepatch modules");
    need(c.builtin("LIVEPATCH"), "CONFIG_LIVEPATCH=y", "the kernel's livepatch core is what is tested");
    need(
        c.builtin("HAVE_RELIABLE_STACKTRACE") || c.builtin("UNWINDER_ORC"),
        "CONFIG_UNWINDER_ORC=y (or CONFIG_UNWINDER_FRAME_POINTER=y with CONFIG_STACK_VALIDATION=y)",
        "reliable stack traces: without them sleeping tasks are never switched by the stack check and \
         every transition case would fail as if the kernel were non-conformant",
    );
    need(
        c.builtin("DYNAMIC_FTRACE_WITH_REGS") || c.builtin("DYNAMIC_FTRACE_WITH_ARGS"),
        "CONFIG_FUNCTION_TRACER=y and CONFIG_DYNAMIC_FTRACE=y (giving DYNAMIC_FTRACE_WITH_ARGS or _WITH_REGS)",
        "livepatch redirects functions through ftrace",
    );
    need(c.builtin("KALLSYMS_ALL"), "CONFIG_KALLSYMS_ALL=y", "livepatch resolves the functions it patches by name");
    need(c.builtin("BLK_DEV_INITRD"), "CONFIG_BLK_DEV_INITRD=y", "the guest's agent runs from an initramfs");
    need(c.builtin("BINFMT_ELF"), "CONFIG_BINFMT_ELF=y", "the agent is a static ELF binary (PID 1)");
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

/// The harness prerequisites as one message, or `None` when the config has them all.
pub fn harness_message(release: &str, c: &KernelConfig) -> Option<String> {
    let missing = harness_missing(c);
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
        CONFIG_KALLSYMS_ALL=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_BINFMT_ELF=y\nCONFIG_DEVTMPFS=y\n\
        CONFIG_SERIAL_8250=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_PROC_FS=y\nCONFIG_SYSFS=y\nCONFIG_PRINTK=y\n\
        CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n";

    #[test]
    fn a_complete_config_passes() {
        let c = KernelConfig::parse(GOOD);
        assert!(harness_missing(&c).is_empty(), "{:?}", harness_missing(&c));
        assert_eq!(c.get("CC_VERSION_TEXT"), Some("gcc-12 (Debian 12.2.0-14) 12.2.0"));
    }

    #[test]
    fn everything_missing_is_named_at_once() {
        let text = GOOD
            .replace("CONFIG_UNWINDER_ORC=y\nCONFIG_HAVE_RELIABLE_STACKTRACE=y\n", "CONFIG_UNWINDER_GUESS=y\n")
            .replace("CONFIG_KALLSYMS_ALL=y\n", "# CONFIG_KALLSYMS_ALL is not set\n");
        let msg = harness_message("6.1.0", &KernelConfig::parse(&text)).unwrap();
        assert!(msg.contains("CONFIG_UNWINDER_ORC=y"), "{msg}");
        assert!(msg.contains("CONFIG_KALLSYMS_ALL=y"), "{msg}");
        assert_eq!(msg.lines().filter(|l| l.starts_with("  - ")).count(), 2, "{msg}");
        assert!(harness_message("6.1.0", &KernelConfig::parse(GOOD)).is_none());
    }

    #[test]
    fn modules_are_not_builtins() {
        let c = KernelConfig::parse(&GOOD.replace("CONFIG_LIVEPATCH=y", "CONFIG_LIVEPATCH=m"));
        assert!(c.on("LIVEPATCH") && !c.builtin("LIVEPATCH"));
        assert_eq!(harness_missing(&c).len(), 1);
    }
}
