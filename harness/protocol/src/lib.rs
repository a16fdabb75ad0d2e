//! The wire protocol between the klp-conform harness (host) and its agent (guest PID 1).
//!
//! One JSON object per line in each direction over a byte channel between QEMU and the guest:
//! a virtio-serial port by default, or a second 8250 UART ([`Channel`]; the harness names it on
//! the kernel command line with [`CHANNEL_PARAM`], the agent finds it there). The host sends an
//! [`Envelope<Request>`], the agent answers with an [`Envelope<Response>`] carrying the same
//! `id`, so a late answer to a request the host gave up on is recognised and dropped.
//!
//! Errors that the kernel returns are data, not failures of the channel: every operation that
//! touches the kernel reports the exact errno ([`Response::Errno`]) so suites can assert on it.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Where the image puts the modules under test (`/lib/modules/klp/<name>.ko`).
pub const GUEST_MODULE_DIR: &str = "/lib/modules/klp";
/// Where the image puts the kernel's own modules the agent loads at start, in name order.
pub const GUEST_BOOT_MODULE_DIR: &str = "/lib/modules/boot";

/// The version the agent reports in [`Response::Hello`]; the host refuses another.
///
/// 2: the channel is named on the kernel command line ([`CHANNEL_PARAM`]) and is a
/// virtio-serial port unless it says otherwise (1 was always ttyS1).
pub const PROTOCOL_VERSION: u32 = 2;

/// The kernel command line parameter that tells the agent where its channel is, as
/// `klp_agent.channel=<`[`Channel`]`>`. A dotted name: the kernel takes it for a parameter of a
/// module that is never loaded, so it neither passes it to init nor warns about it, and the
/// agent reads it from /proc/cmdline.
pub const CHANNEL_PARAM: &str = "klp_agent.channel";

/// The agent's end of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// `virtio:<name>`: the virtio-serial port QEMU created with `name=<name>`; the guest finds
    /// it as /sys/class/virtio-ports/vportNpM/name and opens /dev/vportNpM.
    Virtio { name: String },
    /// `tty:<name>`: a serial tty, `/dev/<name>` (e.g. ttyS1), used in raw mode.
    Tty { name: String },
}

impl Channel {
    /// Whether `name` can be a port or tty name: it travels on the kernel command line (no
    /// blanks) and in a QEMU option (no commas).
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    }

    /// The value of [`CHANNEL_PARAM`] (`virtio:<name>` or `tty:<name>`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let (kind, name) =
            value.split_once(':').ok_or_else(|| format!("`{value}`: expected virtio:<port name> or tty:<tty name>"))?;
        if !Self::valid_name(name) {
            return Err(format!("`{value}`: `{name}` is not a port name (letters, digits, `.`, `-`, `_`)"));
        }
        match kind {
            "virtio" => Ok(Self::Virtio { name: name.into() }),
            "tty" => Ok(Self::Tty { name: name.into() }),
            _ => Err(format!("`{value}`: unknown channel kind `{kind}` (expected virtio or tty)")),
        }
    }

    /// The channel named on a kernel command line (the last [`CHANNEL_PARAM`] wins, as for
    /// every kernel parameter).
    pub fn from_cmdline(cmdline: &str) -> Result<Self, String> {
        let prefix = format!("{CHANNEL_PARAM}=");
        let value = cmdline
            .split_whitespace()
            .filter_map(|t| t.strip_prefix(prefix.as_str()))
            .next_back()
            .ok_or_else(|| format!("no {CHANNEL_PARAM}= on the kernel command line"))?;
        Self::parse(value)
    }

    /// The kernel command line token that names this channel.
    pub fn cmdline_token(&self) -> String {
        format!("{CHANNEL_PARAM}={self}")
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Virtio { name } => write!(f, "virtio:{name}"),
            Self::Tty { name } => write!(f, "tty:{name}"),
        }
    }
}

/// A request or response with the id that pairs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and identity: answered with [`Response::Hello`].
    Hello,
    /// Read a whole file (sysfs/procfs values included): [`Response::Text`] or [`Response::Errno`].
    ReadFile { path: String },
    /// One `write(2)` of `data` to an existing file, as `echo data > path` does:
    /// [`Response::Done`] or [`Response::Errno`].
    WriteFile { path: String, data: String },
    /// `finit_module(2)` of a module file with its parameters: [`Response::Done`] or errno.
    LoadModule { path: String, params: String },
    /// `delete_module(2)` with `O_NONBLOCK`, as rmmod does: [`Response::Done`] or errno.
    UnloadModule { name: String },
    /// Walk a directory tree: [`Response::Tree`] (or errno if `path` cannot be opened).
    ListTree { path: String },
    /// Poll a condition in the guest until it holds or `timeout_ms` passes: [`Response::Waited`].
    WaitFor { condition: Condition, timeout_ms: u64, poll_ms: u64 },
    /// Kernel log records from /dev/kmsg with a sequence number ≥ `since_seq`: [`Response::Kmsg`].
    ReadKmsg { since_seq: u64 },
    /// Sync and power the guest off; the agent answers [`Response::Done`] first.
    PowerOff,
    /// Every task (thread) of the guest with its livepatch state: [`Response::Tasks`].
    Tasks,
    /// Start a background user task (a child process named `klp-<tag>`, at most 15 bytes)
    /// that opens `path`, reads it to the end and exits: [`Response::Started`]. A read that
    /// blocks inside the kernel keeps the task in whatever function it sleeps in, which is how
    /// a case holds a livepatch transition open with a user task.
    StartReader { tag: String, path: String },
    /// The state of a reader started with [`Request::StartReader`]: [`Response::Reader`].
    ReaderStatus { tag: String },
    /// Fault injection, for the harness's own tests only: answered with [`Response::Done`],
    /// then, `after_ms` later and whatever the agent is doing, the agent exits with `code` as
    /// if it had been killed. It is PID 1, so the kernel panics ("Attempted to kill init!").
    Exit { code: i32, after_ms: u64 },
    /// `mount(2)` of `source` (a virtiofs tag, or the file system's name for pseudo file
    /// systems) on `target` (created with its parents when missing), read-only if asked;
    /// fstype `bind` bind-mounts the directory `source` (recursively; `readonly` is then
    /// ignored: bind what is read-only already).
    /// `wait_ms`: a virtiofs tag whose device is still being probed (hot-added a moment ago)
    /// gives EINVAL/ENODEV/ENOENT; the agent retries for up to this long. [`Response::Done`]
    /// or the last [`Response::Errno`].
    Mount { source: String, target: String, fstype: String, readonly: bool, wait_ms: u64 },
    /// Create the symbolic link `link` → `target` (its parent directories too): [`Response::Done`]
    /// or errno. Building a root for [`Request::Exec`] out of shared directories.
    Symlink { target: String, link: String },
    /// Run a program to its end and collect its output: [`Response::Exited`]. `root` is
    /// `chroot`ed into first (a host's userspace shared over virtiofs), `cwd` is inside it;
    /// the environment is exactly `env`; stdin is /dev/null. A program still running after
    /// `timeout_ms` is killed with its process group (SIGKILL).
    Exec { argv: Vec<String>, root: Option<String>, cwd: String, env: Vec<(String, String)>, timeout_ms: u64 },
}

/// What [`Request::WaitFor`] polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The file's content, with trailing newlines removed, equals `value`.
    FileEquals { path: String, value: String },
    /// The path exists.
    Exists { path: String },
    /// The path does not exist.
    Absent { path: String },
    /// The file's content (trailing newlines removed) differs from `value`, or it cannot be
    /// read: the inverse of [`Condition::FileEquals`], for "stays at" checks.
    FileNotEquals { path: String, value: String },
    /// The reader started with this tag has exited.
    ReaderDone { tag: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol: u32,
        agent: String,
        release: String,
    },
    Done,
    Text {
        data: String,
    },
    Errno(Errno),
    Tree {
        entries: Vec<TreeEntry>,
    },
    Waited {
        met: bool,
        elapsed_ms: u64,
        last: Option<String>,
    },
    Kmsg {
        records: Vec<KmsgRecord>,
        next_seq: u64,
    },
    Tasks {
        tasks: Vec<TaskInfo>,
    },
    Started {
        pid: i32,
    },
    Reader(ReaderState),
    /// A program run with [`Request::Exec`] ended (or was killed at its deadline).
    Exited(ExecResult),
    /// The request itself could not be served (malformed, unsupported): a harness bug, not an
    /// observation of the kernel.
    Error {
        message: String,
    },
}

/// One guest task, from /proc/<pid>/task/<tid>/.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    /// The scheduler state letter of `stat` (R, S, D, I, …).
    pub state: String,
    /// `patch_state`: -1 outside a transition, 0 unpatched, 1 patched; None if unreadable
    /// (the task exited while being listed).
    pub patch_state: Option<i32>,
    /// Whether it is a kernel thread (PF_KTHREAD: no user address space).
    pub kthread: bool,
}

/// A background reader: running, or done with the data it read or the errno of the read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderState {
    pub tag: String,
    pub pid: i32,
    pub done: bool,
    pub data: Option<String>,
    pub errno: Option<Errno>,
}

/// What a program run with [`Request::Exec`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Its exit code; None when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it (9 when the deadline killed it).
    pub signal: Option<i32>,
    /// Killed at `timeout_ms`.
    pub timed_out: bool,
    /// Standard output, line by line, each with the milliseconds since the start at which
    /// the agent read it (per-test timings of a script that prints as it goes).
    pub stdout: Vec<OutputLine>,
    /// Standard error, whole (lossy UTF-8).
    pub stderr: String,
    /// From start to exit.
    pub elapsed_ms: u64,
}

/// One line of a program's output and when it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLine {
    pub ms: u64,
    pub text: String,
}

/// An errno as the kernel returned it, with its symbolic name and `strerror` text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errno {
    pub errno: i32,
    pub name: String,
    pub message: String,
}

impl Errno {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Self { errno, name: errno_name(errno).to_string(), message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry of a [`Request::ListTree`] walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to the walked root, `/`-separated; the root itself is not listed.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// For files: the content if it could be read (trailing newline kept).
    pub value: Option<String>,
    /// For files that could not be read: the errno of the read (e.g. EACCES for `force`).
    pub read_errno: Option<i32>,
    /// For symlinks: the target.
    pub target: Option<String>,
}

/// One /dev/kmsg record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsgRecord {
    pub seq: u64,
    /// Syslog level (0 emerg … 7 debug).
    pub level: u8,
    /// Microseconds since boot.
    pub ts_us: u64,
    pub text: String,
}

/// The symbolic name of the errnos livepatch and module loading return; `E<n>` otherwise.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        28 => "ENOSPC",
        30 => "EROFS",
        34 => "ERANGE",
        38 => "ENOSYS",
        61 => "ENODATA",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        _ => "E?",
    }
}

/// The errno for a symbolic name (`EINVAL` → 22), for suite files that name errnos.
pub fn errno_by_name(name: &str) -> Option<i32> {
    (1..=133).find(|&n| errno_name(n) == name)
}

/// Encode one message as a line (no embedded newline: serde_json escapes them).
pub fn encode<T: Serialize>(id: u64, body: &T) -> String {
    let mut s = serde_json::to_string(&Envelope { id, body }).expect("protocol types always serialise");
    s.push('\n');
    s
}

/// Decode one line.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<Envelope<T>, serde_json::Error> {
    serde_json::from_str(line.trim_end())
}

/// The kernel's taint flags (`/proc/sys/kernel/tainted`), by letter: what the guest reports and
/// the suites name.
pub mod taint {
    /// The letters of /proc/sys/kernel/tainted bits 0..=18 (Documentation/admin-guide/tainted-kernels.rst).
    pub const TAINT_FLAGS: &str = "PFSRMBUDAWCIOELKXTN";
    const TAINT_LETTERS: &[u8] = TAINT_FLAGS.as_bytes();

    /// The bit of a taint flag letter (`K` → 15).
    pub fn taint_bit(letter: &str) -> Option<u32> {
        let mut chars = letter.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        TAINT_FLAGS.find(c).map(|i| i as u32)
    }

    /// `45056` → `45056 (O E K)`.
    pub fn describe_taint(value: &str) -> String {
        let Ok(bits) = value.parse::<u64>() else { return value.to_string() };
        if bits == 0 {
            return "0".into();
        }
        let letters: Vec<String> = (0..64)
            .filter(|b| bits & (1 << b) != 0)
            .map(|b| TAINT_LETTERS.get(b).map_or(format!("bit{b}"), |c| (*c as char).to_string()))
            .collect();
        format!("{bits} ({})", letters.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = vec![
            Request::Hello,
            Request::WriteFile { path: "/sys/kernel/livepatch/p/enabled".into(), data: "0\n".into() },
            Request::WaitFor {
                condition: Condition::FileEquals { path: "/x".into(), value: "0".into() },
                timeout_ms: 5000,
                poll_ms: 10,
            },
            Request::ReadKmsg { since_seq: 3 },
        ];
        for (i, r) in reqs.into_iter().enumerate() {
            let line = encode(i as u64, &r);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            let back: Envelope<Request> = decode(&line).unwrap();
            assert_eq!(back, Envelope { id: i as u64, body: r });
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        assert_eq!(
            encode(7, &Request::UnloadModule { name: "m".into() }),
            "{\"id\":7,\"body\":{\"op\":\"unload_module\",\"name\":\"m\"}}\n"
        );
        assert_eq!(
            encode(7, &Response::Errno(Errno::new(22, "Invalid argument"))),
            "{\"id\":7,\"body\":{\"kind\":\"errno\",\"errno\":22,\"name\":\"EINVAL\",\"message\":\"Invalid argument\"}}\n"
        );
    }

    #[test]
    fn unknown_ops_are_rejected() {
        assert!(decode::<Request>("{\"id\":1,\"body\":{\"op\":\"reboot\"}}").is_err());
        assert!(decode::<Request>("{\"id\":1,\"body\":{\"op\":\"read_file\",\"path\":\"/x\",\"x\":1}}").is_err());
    }

    #[test]
    fn channel_on_the_command_line() {
        let v = Channel::Virtio { name: "org.klp-conform.agent".into() };
        assert_eq!(v.cmdline_token(), "klp_agent.channel=virtio:org.klp-conform.agent");
        let cmdline = format!("console=ttyS0 klp_agent.channel=tty:ttyS1 rdinit=/init {}\n", v.cmdline_token());
        assert_eq!(Channel::from_cmdline(&cmdline), Ok(v));
        assert_eq!(Channel::parse("tty:ttyS1"), Ok(Channel::Tty { name: "ttyS1".into() }));
        assert!(Channel::from_cmdline("console=ttyS0").unwrap_err().contains("no klp_agent.channel="));
        for bad in ["virtio", "virtio:", "usb:x", "virtio:a,b", "tty:../x"] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(16), "EBUSY");
        assert_eq!(errno_by_name("EINVAL"), Some(22));
        assert_eq!(errno_by_name("ENOPE"), None);
    }
}
