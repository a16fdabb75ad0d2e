//! One guest: a QEMU process booting a kernel with the agent as its init.
//!
//! - The command line is built from pure functions in [`args`].
//! - QMP (the `qapi` crate) gives readiness, `query-status`, events and `quit`: [`qmp`].
//! - What the guest is made of (memory, CPUs, kernel command line, the agent's channel) comes
//!   from the guest recipe, `images/guest.yaml` ([`crate::image::recipe`]).
//! - The kernel console (ttyS0) is a file, `console.log` in the case's workdir, scanned for
//!   oops/panic/WARN: [`console`].
//! - The agent (on a virtio-serial port, or ttyS1, as the recipe says) is reached with
//!   [`AgentClient`] over QEMU's unix socket, which asks the VM, while it waits,
//!   whether QEMU exited, QMP reported a panic or shutdown, or the console shows a panic; so a
//!   dead guest ends a request within a fraction of a second, with the console excerpt.
//! - QEMU never outlives the harness: see [`reaper`] (PDEATHSIG, own process group, Drop).
//!   **Boot a [`Vm`] on the thread that owns it**: PDEATHSIG fires when the spawning thread ends.
//! - [`probe_accel`] decides between KVM and TCG once per host and kernel.

pub mod accel;
pub mod args;
pub mod console;
mod qmp;
pub mod reaper;
pub mod virtiofs;

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::agent_client::{AgentClient, AgentError, AgentHello, GuestGone, Watchdog};
use crate::image::GuestRecipe;
use crate::tools::{self, ToolError};

pub use accel::{kvm_usable, probe_accel, KVM_PROBE_TIMEOUT};
pub use args::qemu_args;
pub use console::{scan_console, ConsoleProblem, ProblemKind};
pub use qmp::VmEvent;
pub use reaper::kill_all_children;

/// How the guest's CPUs are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if it works here (see [`probe_accel`]), else TCG. Must be resolved before booting.
    Auto,
    Kvm,
    /// QEMU's emulator: slower, works everywhere (and is the only thing that works on hosts
    /// where nested KVM hangs in early boot).
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(format!("unknown accelerator `{s}` (expected auto, kvm or tcg)")),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The kernel to boot: a bzImage, or the uncompressed PVH `vmlinux` that
    /// [`crate::image::boot_image`] extracts (boots ~2 s faster under TCG).
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    /// Per case: `console.log` and `qemu.log` are written here.
    pub workdir: PathBuf,
    /// `Kvm` or `Tcg` (resolve `Auto` with [`probe_accel`] first). Default: Tcg.
    pub accel: Accel,
    /// Memory, CPUs, kernel command line and the agent's channel (`images/guest.yaml`). The
    /// initramfs must carry the modules this recipe's channel needs.
    pub guest: GuestRecipe,
    /// From spawning QEMU to the agent's hello. Default: 60 s (TCG on a loaded 2-core host).
    pub boot_timeout: Duration,
    /// Appended to the kernel command line.
    pub extra_cmdline: String,
    /// `-icount shift=0,sleep=off` (TCG, single-threaded only): guest time counts guest
    /// instructions, one nanosecond each, for benchmarks whose clock must not depend on the host.
    pub icount: bool,
}

impl VmConfig {
    pub fn new(vmlinuz: &Path, initramfs: &Path, workdir: &Path, guest: &GuestRecipe) -> Self {
        Self {
            vmlinuz: vmlinuz.to_path_buf(),
            initramfs: initramfs.to_path_buf(),
            workdir: workdir.to_path_buf(),
            accel: Accel::Tcg,
            guest: guest.clone(),
            boot_timeout: Duration::from_secs(60),
            extra_cmdline: String::new(),
            icount: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("bad VM configuration: {0}")]
    Config(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("QEMU exited before the guest was up ({status}); QEMU said:\n{stderr}\nconsole tail:\n{console_tail}")]
    QemuExited { status: String, stderr: String, console_tail: String },
    #[error("QMP failed: {what}")]
    Qmp {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("guest died during boot after {:.1}s: {gone}", after.as_secs_f64())]
    BootFailed { after: Duration, gone: GuestGone },
    #[error("the agent did not answer within {:.1}s of starting QEMU; console tail:\n{console_tail}", after.as_secs_f64())]
    BootTimeout { after: Duration, console_tail: String },
    #[error("agent handshake failed")]
    Agent(#[source] AgentError),
    #[error("KVM was requested but is not usable: {0}")]
    KvmUnavailable(String),
    #[error("{0}")]
    State(String),
}

impl VmError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// How [`Vm::shutdown`] ended QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// The agent powered the guest off and QEMU exited by itself.
    PoweredOff,
    /// QMP `quit` (the guest was dead or did not power off in time).
    Quit,
    /// SIGKILL to QEMU's process group.
    Killed,
}

const CONSOLE_TAIL: usize = 40;

/// The state a VM and its agent client share: QEMU's process, QMP, the console.
struct Monitor {
    child: Child,
    pid: i32,
    exit: Option<ExitStatus>,
    qmp: Option<qmp::QmpConn>,
    console: console::ConsoleLog,
    qemu_log: PathBuf,
    events: Vec<VmEvent>,
    gone: Option<GuestGone>,
}

impl Monitor {
    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                reaper::unregister(self.pid);
            }
        }
        self.exit
    }

    fn poll_events(&mut self) {
        if let Some(q) = self.qmp.as_mut() {
            match q.events() {
                Ok(ev) => self.events.extend(ev),
                // QEMU closed QMP (it is exiting) or spoke garbage: from here on its exit
                // status and the console tell the story.
                Err(_) => self.qmp = None,
            }
        }
    }

    fn qemu_log_tail(&self) -> String {
        std::fs::read_to_string(&self.qemu_log).map(|t| tools::tail(&t, 20)).unwrap_or_default()
    }

    /// Is the guest still able to answer? Once it is not, the answer is remembered.
    fn check(&mut self) -> Result<(), GuestGone> {
        if let Some(g) = &self.gone {
            return Err(g.clone());
        }
        self.poll_events();
        self.console.refresh();
        let shutdown = self.events.iter().find(|e| matches!(e, VmEvent::Shutdown { .. })).cloned();
        // The guest resetting itself (panic=-1 without pvpanic, a triple fault) is the kernel
        // dying too: the agent never reboots.
        let reset = shutdown.as_ref().is_some_and(VmEvent::is_guest_reset);
        let (reason, mut kernel_died) = if self.events.contains(&VmEvent::GuestPanicked) {
            ("guest panicked (QMP GUEST_PANICKED)".to_string(), true)
        } else if let Some(st) = self.try_exit() {
            match shutdown {
                Some(ev) => (format!("QEMU exited ({st}) after QMP {ev}"), reset),
                None => (format!("QEMU exited ({st})"), false),
            }
        } else if let Some(ev) = shutdown {
            (format!("guest is shutting down (QMP {ev})"), reset)
        } else if console::shows_panic(self.console.text()) {
            ("guest panicked (kernel panic on the console)".to_string(), true)
        } else {
            return Ok(());
        };
        self.settle();
        let text = self.console.text();
        kernel_died |= console::shows_panic(text);
        let mut excerpt = match console::scan_console(text) {
            Some(p) => p.excerpt,
            None => console::tail(text, CONSOLE_TAIL),
        };
        if self.exit.is_some_and(|st| !st.success()) {
            excerpt.push_str(&format!("\n--- qemu.log ---\n{}", self.qemu_log_tail()));
        }
        let gone = GuestGone { reason, excerpt, kernel_died };
        self.gone = Some(gone.clone());
        Err(gone)
    }

    /// Give a dying guest a moment to finish printing: until the console has been quiet for
    /// 300 ms (at most 2 s).
    fn settle(&mut self) {
        let end = Instant::now() + Duration::from_secs(2);
        let mut quiet_since = Instant::now();
        while Instant::now() < end && quiet_since.elapsed() < Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(50));
            if self.console.refresh() {
                quiet_since = Instant::now();
            }
        }
    }

    fn console_tail(&mut self) -> String {
        self.console.refresh();
        console::tail(self.console.text(), CONSOLE_TAIL)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if self.try_exit().is_none() {
            reaper::unregister(self.pid);
            // SAFETY: kill has no memory-safety preconditions; the group is ours and unreaped.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                libc::kill(self.pid, libc::SIGKILL);
            }
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock(m: &Mutex<Monitor>) -> MutexGuard<'_, Monitor> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The agent client's view of the VM.
struct VmWatch(Arc<Mutex<Monitor>>);

impl Watchdog for VmWatch {
    fn check(&mut self) -> Result<(), GuestGone> {
        lock(&self.0).check()
    }
    fn context(&mut self) -> String {
        lock(&self.0).console_tail()
    }
}

/// A running guest whose agent has answered. Dropping it kills QEMU.
pub struct Vm {
    // Field order is drop order: the client (and its watchdog reference) first.
    agent: AgentClient,
    monitor: Arc<Mutex<Monitor>>,
    console: PathBuf,
    accel: Accel,
    boot_time: Duration,
    hello: AgentHello,
    pid: u32,
    /// The daemons of hot-added shares: dropped (killed) after QEMU.
    shares: Vec<virtiofs::Virtiofsd>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.pid)
            .field("accel", &self.accel)
            .field("console", &self.console)
            .finish()
    }
}

impl Vm {
    /// Start QEMU and wait until the agent answers `hello` (or the boot fails: QEMU exits, the
    /// guest panics, or `boot_timeout` passes; each error carries the console's tail).
    ///
    /// Boot the VM on the thread that will own it: QEMU gets SIGKILL when that thread exits.
    pub fn boot(cfg: &VmConfig) -> Result<Vm, VmError> {
        Self::start(cfg, None)
    }

    /// Start QEMU from a state [`Vm::save_state`] wrote for the same configuration (kernel,
    /// initramfs, recipe, accelerator; only `workdir` differs) and wait until its agent answers:
    /// a guest that is already booted, in a fraction of a boot's time. The console starts with
    /// the saved guest's boot console, so `console.log` reads as if this guest had booted.
    pub fn restore(cfg: &VmConfig, state: &SavedState) -> Result<Vm, VmError> {
        Self::start(cfg, Some(state))
    }

    fn start(cfg: &VmConfig, restore: Option<&SavedState>) -> Result<Vm, VmError> {
        if cfg.accel == Accel::Auto {
            return Err(VmError::Config("Accel::Auto must be resolved with probe_accel before booting".into()));
        }
        for (what, p) in [("kernel image", &cfg.vmlinuz), ("initramfs", &cfg.initramfs)] {
            if !p.is_file() {
                return Err(VmError::Config(format!("{what} {} does not exist", p.display())));
            }
        }
        if cfg.icount && (cfg.accel != Accel::Tcg || cfg.guest.tcg_threads != crate::image::recipe::TcgThreads::Single)
        {
            return Err(VmError::Config("-icount needs TCG with one host thread (tcg_threads: single)".into()));
        }
        if cfg.guest.cpus == 0 || cfg.guest.memory_mb < 64 {
            return Err(VmError::Config(format!(
                "{} CPUs and {} MiB are not a machine",
                cfg.guest.cpus, cfg.guest.memory_mb
            )));
        }
        let qemu = tools::require_tool("qemu-system-x86_64", "qemu-system-x86", "boot guest kernels")?;
        std::fs::create_dir_all(&cfg.workdir)
            .map_err(|e| VmError::io(format!("creating {}", cfg.workdir.display()), e))?;
        let console = cfg.workdir.join("console.log");
        let qemu_log = cfg.workdir.join("qemu.log");
        let _ = std::fs::remove_file(&console);
        if let Some(state) = restore {
            // QEMU appends to it (`append=on`).
            std::fs::copy(&state.console, &console)
                .map_err(|e| VmError::io(format!("copying the saved boot console {}", state.console.display()), e))?;
        }
        // Unix socket paths must fit sun_path (108 bytes): a short directory under /tmp.
        let sockets = tempfile::Builder::new()
            .prefix("klp-vm-")
            .tempdir_in("/tmp")
            .map_err(|e| VmError::io("creating the socket directory", e))?;
        let qmp_socket = sockets.path().join("qmp");
        let agent_socket = sockets.path().join("agent");
        let paths = args::QemuPaths { console: &console, qmp_socket: &qmp_socket, agent_socket: &agent_socket };

        let log =
            std::fs::File::create(&qemu_log).map_err(|e| VmError::io(format!("creating {}", qemu_log.display()), e))?;
        let log2 = log.try_clone().map_err(|e| VmError::io("dup of qemu.log", e))?;
        let mut cmd = Command::new(&qemu);
        cmd.args(qemu_args(cfg, &paths)).stdin(Stdio::null()).stdout(log).stderr(log2).process_group(0);
        if restore.is_some() {
            // The state comes in over QMP once QEMU is up (`migrate-incoming`), not from argv:
            // the file's path then needs no quoting for QEMU's option parser.
            cmd.args(["-incoming", "defer"]);
        }
        let parent = std::process::id() as i32;
        // SAFETY: the hook only makes async-signal-safe calls (see die_with_parent).
        unsafe { cmd.pre_exec(move || reaper::die_with_parent(parent)) };
        let started = Instant::now();
        let child =
            cmd.spawn().map_err(|source| VmError::from(ToolError::Spawn { command: tools::describe(&cmd), source }))?;
        let pid = child.id();
        reaper::register(pid as i32);
        let monitor = Arc::new(Mutex::new(Monitor {
            child,
            pid: pid as i32,
            exit: None,
            qmp: None,
            console: console::ConsoleLog::new(&console),
            qemu_log,
            events: Vec::new(),
            gone: None,
        }));
        // From here on, returning early drops `monitor`, which kills QEMU.

        let (qmp_stream, agent_stream) = connect_sockets(&monitor, &qmp_socket, &agent_socket)?;
        // Connected: the socket files are no longer needed (QEMU keeps its listening sockets),
        // so remove them now, and nothing is left in /tmp even if the harness is killed.
        drop(sockets);
        let qmp = qmp::QmpConn::handshake(qmp_stream)
            .map_err(|source| exited_error(&monitor).unwrap_or(VmError::Qmp { what: "handshake".into(), source }))?;
        lock(&monitor).qmp = Some(qmp);
        if let Some(state) = restore {
            load_state(&monitor, state, started + cfg.boot_timeout)?;
        }

        let mut agent = AgentClient::new(agent_stream).map_err(|e| VmError::io("configuring the agent socket", e))?;
        if restore.is_some() {
            // Ids the saved guest never saw: nothing it had queued can answer a new request.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            agent.start_ids_after(1 << 40 | (nanos as u64 & 0xff_ffff_ffff));
        }
        agent.set_watchdog(Box::new(VmWatch(monitor.clone())));
        let hello = agent.handshake(started + cfg.boot_timeout).map_err(|e| match e {
            AgentError::GuestDied { gone, .. } => VmError::BootFailed { after: started.elapsed(), gone },
            AgentError::Timeout { context, .. } => {
                VmError::BootTimeout { after: started.elapsed(), console_tail: context }
            }
            other => exited_error(&monitor).unwrap_or(VmError::Agent(other)),
        })?;
        Ok(Vm {
            agent,
            monitor,
            console,
            accel: cfg.accel,
            boot_time: started.elapsed(),
            hello,
            pid,
            shares: Vec::new(),
        })
    }

    /// Stop the guest and write its whole state to `path` (QMP `migrate` to a file), then end
    /// QEMU. Every [`Vm::restore`] of the result starts where this guest stopped: booted, its
    /// agent idle and answering. The file is written under a temporary name and renamed, so it
    /// is either complete or absent; the boot console is kept beside it.
    pub fn save_state(mut self, path: &Path) -> Result<SavedState, VmError> {
        // One more round trip first: once its answer is in, the agent has read and answered
        // every earlier request (it serves them in order), so no request sits in the saved
        // guest's input waiting to be answered after every restore.
        self.agent.hello().map_err(VmError::Agent)?;
        let partial = path.with_extension("partial");
        let console = path.with_extension("console.log");
        let _ = std::fs::remove_file(&partial);
        {
            let mut m = lock(&self.monitor);
            let q = m.qmp.as_mut().ok_or_else(|| VmError::Qmp {
                what: "saving the VM: QMP connection is closed".into(),
                source: std::io::ErrorKind::NotConnected.into(),
            })?;
            let qmp_err = |what: &str| {
                let what = format!("saving the VM: {what}");
                move |source| VmError::Qmp { what, source }
            };
            q.stop().map_err(qmp_err("stop"))?;
            q.migrate(&format!("exec:cat > {}", shell_quote(&partial))).map_err(qmp_err("migrate"))?;
        }
        wait_migration(&self.monitor, "saving the VM", Instant::now() + Duration::from_secs(120))?;
        self.console_text();
        std::fs::copy(&self.console, &console)
            .map_err(|e| VmError::io(format!("keeping the boot console as {}", console.display()), e))?;
        std::fs::rename(&partial, path).map_err(|e| VmError::io(format!("renaming {}", partial.display()), e))?;
        {
            let mut m = lock(&self.monitor);
            if let Some(q) = m.qmp.as_mut() {
                let _ = q.quit();
            }
            if m.wait_exit(Duration::from_secs(5)).is_none() {
                m.kill();
            }
        }
        Ok(SavedState { state: path.to_path_buf(), console })
    }

    /// Share a host directory into the running guest: start virtiofsd for it (its log is
    /// `virtiofsd-<tag>.log` in the workdir), hot-add a `vhost-user-fs-pci` device over QMP and
    /// have the agent mount the tag. Works on restored guests (the device is never part of a
    /// migration). Returns what each part cost, host time.
    pub fn add_share(&mut self, share: &virtiofs::Share) -> Result<virtiofs::ShareTiming, VmError> {
        let mut timing = virtiofs::ShareTiming::default();
        let t = Instant::now();
        let log = self.console.with_file_name(format!("virtiofsd-{}.log", share.tag));
        let daemon = virtiofs::Virtiofsd::start(share, &log)?;
        timing.daemon_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        {
            let mut m = lock(&self.monitor);
            let q = m.qmp.as_mut().ok_or_else(|| VmError::Qmp {
                what: "adding a share: QMP connection is closed".into(),
                source: std::io::ErrorKind::NotConnected.into(),
            })?;
            let chardev = format!("vfs-{}", share.tag);
            // virtiofsd binds its socket a moment before it listens: a refused connection is
            // retried for up to 5 s (probing with a connection of our own would be taken by the
            // daemon as its one frontend).
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                match q.chardev_add_unix(&chardev, &daemon.socket) {
                    Ok(()) => break,
                    Err(e) if e.to_string().contains("Connection refused") && Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => {
                        return Err(VmError::Qmp {
                            what: format!("adding share {}: chardev-add {}", share.tag, daemon.socket.display()),
                            source,
                        })
                    }
                }
            }
            // The tag is the device's: virtiofsd's own --tag would crash QEMU 7.1–8.0.
            q.device_add(
                "vhost-user-fs-pci",
                &format!("fs-{}", share.tag),
                &[("chardev", &chardev), ("tag", &share.tag)],
            )
            .map_err(|source| VmError::Qmp {
                what: format!(
                    "adding share {}: device_add vhost-user-fs-pci (virtiofsd said: {})",
                    share.tag,
                    std::fs::read_to_string(&log).map(|t| tools::tail(&t, 5)).unwrap_or_default()
                ),
                source,
            })?;
        }
        timing.hotadd_s = t.elapsed().as_secs_f64();
        self.shares.push(daemon);
        let t = Instant::now();
        // The guest sees the device through ACPI hotplug and probes it; the agent retries the
        // mount until the tag is there.
        let mounted = self
            .agent
            .mount(&share.tag, &share.guest_dir, "virtiofs", share.readonly, Duration::from_secs(30))
            .map_err(VmError::Agent)?;
        if let Err(e) = mounted {
            let hint = if matches!(e.name.as_str(), "ENODEV" | "EINVAL") {
                " (the kernel needs CONFIG_VIRTIO_FS, its virtiofs module in the guest image, and ACPI PCI \
                 hotplug, CONFIG_HOTPLUG_PCI_ACPI, to see the hot-added device)"
            } else {
                ""
            };
            return Err(VmError::State(format!(
                "the guest could not mount share {} on {}: {} ({}: {}){hint}; console tail:\n{}",
                share.tag,
                share.guest_dir,
                e.name,
                e.errno,
                e.message,
                tools::tail(&self.console_text(), 15)
            )));
        }
        timing.mount_s = t.elapsed().as_secs_f64();
        Ok(timing)
    }

    /// The pids of the virtiofsd daemons serving this guest's shares.
    pub fn share_daemons(&self) -> Vec<u32> {
        self.shares.iter().map(|d| d.pid()).collect()
    }

    /// The agent client; its calls fail fast if the guest dies.
    pub fn agent(&mut self) -> &mut AgentClient {
        &mut self.agent
    }

    pub fn console_log(&self) -> &Path {
        &self.console
    }

    /// The console so far.
    pub fn console_text(&self) -> String {
        let mut m = lock(&self.monitor);
        m.console.refresh();
        m.console.text().to_string()
    }

    /// The first oops/BUG/WARNING/panic/GPF/call trace on the console so far.
    pub fn console_problem(&self) -> Option<ConsoleProblem> {
        let mut m = lock(&self.monitor);
        m.console.refresh();
        console::scan_console(m.console.text())
    }

    /// `Err` once the guest can no longer answer (panicked, shut down, QEMU gone).
    pub fn check(&self) -> Result<(), GuestGone> {
        lock(&self.monitor).check()
    }

    /// QMP `query-status` (`running`, `paused`, `guest-panicked`, …).
    pub fn status(&self) -> Result<String, VmError> {
        let mut m = lock(&self.monitor);
        let q = m.qmp.as_mut().ok_or_else(|| VmError::Qmp {
            what: "query-status: QMP connection is closed".into(),
            source: std::io::ErrorKind::NotConnected.into(),
        })?;
        q.status().map_err(|source| VmError::Qmp { what: "query-status".into(), source })
    }

    /// QMP `stop`: freeze the guest's CPUs. The kernel neither runs nor dies, so its agent
    /// simply stops answering (how tests make a channel go silent with a healthy console).
    pub fn pause(&self) -> Result<(), VmError> {
        let mut m = lock(&self.monitor);
        let q = m.qmp.as_mut().ok_or_else(|| VmError::Qmp {
            what: "stop: QMP connection is closed".into(),
            source: std::io::ErrorKind::NotConnected.into(),
        })?;
        q.stop().map_err(|source| VmError::Qmp { what: "stop".into(), source })
    }

    /// QMP events seen so far.
    pub fn events(&self) -> Vec<VmEvent> {
        let mut m = lock(&self.monitor);
        m.poll_events();
        m.events.clone()
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// From spawning QEMU to the agent's hello.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    pub fn hello(&self) -> &AgentHello {
        &self.hello
    }

    /// QEMU's pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// End the VM at once: QMP `quit` (SIGKILL if QEMU does not go within 5 s). For guests
    /// whose state does not matter any more; [`Vm::shutdown`] lets the guest power off.
    pub fn quit(self) {
        let mut m = lock(&self.monitor);
        if let Some(q) = m.qmp.as_mut() {
            let _ = q.quit();
        }
        if m.wait_exit(Duration::from_secs(5)).is_none() {
            m.kill();
        }
    }

    /// End the VM: ask the agent to power off and wait for QEMU to exit; if the guest is dead
    /// or does not go within 20 s, QMP `quit`; if QEMU still runs 5 s later, SIGKILL.
    pub fn shutdown(mut self) -> Result<Shutdown, VmError> {
        self.agent.set_timeout(Duration::from_secs(10));
        let acked = self.agent.power_off().is_ok();
        let mut m = lock(&self.monitor);
        if acked && m.wait_exit(Duration::from_secs(20)).is_some() {
            return Ok(Shutdown::PoweredOff);
        }
        if let Some(q) = m.qmp.as_mut() {
            let _ = q.quit();
        }
        if m.wait_exit(Duration::from_secs(5)).is_some() {
            return Ok(Shutdown::Quit);
        }
        m.kill();
        Ok(Shutdown::Killed)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        lock(&self.monitor).kill();
    }
}

/// A booted guest's saved state ([`Vm::save_state`]) and its boot console.
#[derive(Debug, Clone)]
pub struct SavedState {
    pub state: PathBuf,
    pub console: PathBuf,
}

/// `'…'` for `sh`, which runs QEMU's `exec:` migration commands.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Poll `query-migrate` until the migration completed; `failed` or QEMU exiting is an error.
fn wait_migration(monitor: &Mutex<Monitor>, what: &str, deadline: Instant) -> Result<(), VmError> {
    loop {
        let status = {
            let mut m = lock(monitor);
            if let Some(st) = m.try_exit() {
                return Err(VmError::QemuExited {
                    status: st.to_string(),
                    stderr: m.qemu_log_tail(),
                    console_tail: m.console_tail(),
                });
            }
            let q = m.qmp.as_mut().ok_or_else(|| VmError::Qmp {
                what: format!("{what}: QMP connection is closed"),
                source: std::io::ErrorKind::NotConnected.into(),
            })?;
            q.migration_status().map_err(|source| VmError::Qmp { what: format!("{what}: query-migrate"), source })?
        };
        match status.0.as_str() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                let tail = lock(monitor).qemu_log_tail();
                return Err(VmError::State(format!(
                    "{what}: migration {}{}; QEMU said:\n{tail}",
                    status.0,
                    status.1.map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
            _ if Instant::now() >= deadline => {
                return Err(VmError::State(format!("{what}: the migration did not complete in time ({})", status.0)))
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Feed a saved state into a QEMU started with `-incoming defer`, then let it run.
fn load_state(monitor: &Mutex<Monitor>, state: &SavedState, deadline: Instant) -> Result<(), VmError> {
    {
        let mut m = lock(monitor);
        let q = m.qmp.as_mut().expect("QMP is connected before the state is loaded");
        q.migrate_incoming(&format!("exec:cat {}", shell_quote(&state.state)))
            .map_err(|source| VmError::Qmp { what: "restoring the VM: migrate-incoming".into(), source })?;
    }
    wait_migration(monitor, "restoring the VM", deadline)?;
    let mut m = lock(monitor);
    let q = m.qmp.as_mut().expect("QMP is connected");
    q.cont().map_err(|source| VmError::Qmp { what: "restoring the VM: cont".into(), source })
}

/// If QEMU has exited, the error that says so (with its log and the console tail).
fn exited_error(monitor: &Mutex<Monitor>) -> Option<VmError> {
    let mut m = lock(monitor);
    let st = m.wait_exit(Duration::from_millis(500))?;
    Some(VmError::QemuExited { status: st.to_string(), stderr: m.qemu_log_tail(), console_tail: m.console_tail() })
}

/// Connect to QMP and the agent socket once QEMU has created them (it does before the guest
/// runs), watching for QEMU exiting instead (bad option, missing file).
fn connect_sockets(monitor: &Mutex<Monitor>, qmp: &Path, agent: &Path) -> Result<(UnixStream, UnixStream), VmError> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut q = None;
    let mut a = None;
    loop {
        if q.is_none() {
            q = UnixStream::connect(qmp).ok();
        }
        if a.is_none() {
            a = UnixStream::connect(agent).ok();
        }
        if let (Some(_), Some(_)) = (&q, &a) {
            return Ok((q.unwrap(), a.unwrap()));
        }
        let exited = lock(monitor).try_exit();
        if let Some(st) = exited {
            let mut m = lock(monitor);
            return Err(VmError::QemuExited {
                status: st.to_string(),
                stderr: m.qemu_log_tail(),
                console_tail: m.console_tail(),
            });
        }
        if Instant::now() >= end {
            return Err(VmError::io(
                format!("QEMU did not create {} and {} within 10s", qmp.display(), agent.display()),
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
