//! The host side of the agent channel: typed requests with deadlines.
//!
//! The channel is a byte stream (QEMU's unix-socket chardev behind the guest's virtio-serial
//! port or ttyS1), so the client tolerates what a serial line produces: noise before the agent
//! put a tty in raw mode, answers to requests it gave up on (skipped by id), lines that are not
//! JSON (skipped).
//!
//! Once a request timed out or the channel broke, the client does not ask again: every later
//! call fails at once with [`AgentError::Lost`], so a silent agent costs one deadline, not one
//! per remaining request (the kernel log, the power-off).
//!
//! Every call has a host-side deadline. While it waits, the client asks its [`Watchdog`] (the
//! [`Vm`](crate::vm::Vm) that owns it: QEMU's exit status, QMP events, the console) whether the
//! guest is still there, so a guest panic mid-request fails within a fraction of a second with
//! the console excerpt instead of waiting out the deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use klp_protocol::{
    decode, encode, Condition, Envelope, Errno, KmsgRecord, ReaderState, Request, Response, TaskInfo, TreeEntry,
    PROTOCOL_VERSION,
};

/// How often a waiting call looks at the watchdog.
const TICK: Duration = Duration::from_millis(100);
/// Added to the guest-side timeout of a [`Request::WaitFor`] for the host's deadline.
const WAIT_MARGIN: Duration = Duration::from_secs(10);
/// How often [`AgentClient::handshake`] repeats its hello. On a UART, bytes sent before the
/// guest opened its port are partly lost, so the boot time is quantised by this; a virtio port
/// keeps them queued until the agent opens it, which then answers the first at once (the
/// answers to the others are skipped by id).
const HELLO_RESEND: Duration = Duration::from_millis(250);
/// How often [`AgentClient::wait_for`] polls in the guest.
const DEFAULT_POLL: Duration = Duration::from_millis(10);

/// Why the guest can no longer answer (it panicked, QEMU exited, …), with the console excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestGone {
    /// One line: what was observed, e.g. "guest panicked (QMP GUEST_PANICKED)".
    pub reason: String,
    /// The console lines that show it: the problem excerpt if there is one, else the tail.
    pub excerpt: String,
    /// The kernel died (a panic seen by QMP or on the console, the guest resetting itself),
    /// as opposed to QEMU or the agent going away on their own.
    pub kernel_died: bool,
}

impl std::fmt::Display for GuestGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- console ---\n{}\n--- end of console ---", self.reason, self.excerpt)
    }
}

/// Asked by a waiting call whether the guest is still alive.
pub trait Watchdog: Send {
    /// `Err` once the guest is gone; cheap enough to call every [`TICK`].
    fn check(&mut self) -> Result<(), GuestGone>;
    /// What to attach to a timeout: typically the last lines of the console.
    fn context(&mut self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent did not answer `{op}` within {:.1}s; console tail:\n{context}", after.as_secs_f64())]
    Timeout { op: &'static str, after: Duration, context: String },
    #[error("guest died during `{op}`: {gone}")]
    GuestDied { op: &'static str, gone: GuestGone },
    #[error("agent channel closed during `{op}` (QEMU gone?); console tail:\n{context}")]
    Closed { op: &'static str, context: String },
    #[error("agent channel I/O failed during `{op}`")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("agent could not serve `{op}`: {message}")]
    Agent { op: &'static str, message: String },
    #[error("agent answered `{op}` with an unexpected response: {got:?}")]
    Unexpected { op: &'static str, got: Box<Response> },
    #[error("agent speaks protocol {got}, the harness {PROTOCOL_VERSION}")]
    Version { got: u32 },
    #[error("`{op}` not sent: the agent channel was lost earlier ({first})")]
    Lost { op: &'static str, first: String },
}

impl AgentError {
    /// One line, without the console text some variants carry.
    pub fn summary(&self) -> String {
        match self {
            Self::Timeout { op, after, .. } => {
                format!("agent did not answer `{op}` within {:.1}s", after.as_secs_f64())
            }
            Self::GuestDied { op, gone } => format!("guest died during `{op}`: {}", gone.reason),
            Self::Closed { op, .. } => format!("agent channel closed during `{op}` (QEMU gone?)"),
            Self::Io { op, source } => format!("agent channel I/O failed during `{op}`: {source}"),
            other => other.to_string().lines().next().unwrap_or_default().to_string(),
        }
    }

    /// The kernel died under the request (the console or QMP says so).
    pub fn kernel_died(&self) -> bool {
        matches!(self, Self::GuestDied { gone, .. } if gone.kernel_died)
    }

    /// The agent stopped answering or its channel broke: the kernel died, or the harness lost
    /// its channel; the console tells which. (Not: the agent answered something it should
    /// not have.)
    pub fn is_lost_channel(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::GuestDied { .. } | Self::Closed { .. } | Self::Io { .. } | Self::Lost { .. }
        )
    }
}

/// What [`AgentClient::hello`] learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHello {
    pub protocol: u32,
    pub agent: String,
    /// The guest's `uname -r`.
    pub release: String,
}

/// The outcome of [`AgentClient::wait_for_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub met: bool,
    pub elapsed: Duration,
    /// The last value read (for `FileEquals`), or `<ERRNO>` if the file could not be read.
    pub last: Option<String>,
}

pub struct AgentClient {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
    timeout: Duration,
    watchdog: Option<Box<dyn Watchdog>>,
    /// Set once a request timed out or the channel broke: what happened, for later calls.
    lost: Option<String>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("next_id", &self.next_id).field("timeout", &self.timeout).finish()
    }
}

impl AgentClient {
    /// A client over a connected stream; the default per-request deadline is 30 s.
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(TICK))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream, buf: Vec::new(), next_id: 0, timeout: Duration::from_secs(30), watchdog: None, lost: None })
    }

    pub fn set_watchdog(&mut self, w: Box<dyn Watchdog>) {
        self.watchdog = Some(w);
    }

    /// The deadline of each request (except `wait_for`, whose deadline is its own timeout plus
    /// a margin).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `Hello` until the agent answers or `deadline` passes: the guest may not have opened
    /// its port yet, and bytes sent before that are partly lost, so one request is not enough.
    /// Any answer to one of these hellos counts.
    pub fn handshake(&mut self, deadline: Instant) -> Result<AgentHello, AgentError> {
        let first = self.next_id + 1;
        let started = Instant::now();
        loop {
            let id = self.send(&Request::Hello, "hello")?;
            let until = (Instant::now() + HELLO_RESEND).min(deadline);
            match self.receive("hello", |got| got >= first && got <= id, until) {
                Ok(resp) => return hello(resp),
                Err(AgentError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(AgentError::Timeout { op, context, .. }) => {
                    return Err(AgentError::Timeout { op, after: started.elapsed(), context })
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn hello(&mut self) -> Result<AgentHello, AgentError> {
        let r = self.call(Request::Hello, "hello", self.timeout)?;
        hello(r)
    }

    /// The whole content of a file, or the errno of opening/reading it.
    pub fn read_file(&mut self, path: &str) -> Result<Result<String, Errno>, AgentError> {
        match self.call(Request::ReadFile { path: path.into() }, "read_file", self.timeout)? {
            Response::Text { data } => Ok(Ok(data)),
            Response::Errno(e) => Ok(Err(e)),
            other => Err(unexpected("read_file", other)),
        }
    }

    /// One `write(2)` of `data` (as `echo data > path`); the errno of open or write otherwise.
    pub fn write_file(&mut self, path: &str, data: &str) -> Result<Result<(), Errno>, AgentError> {
        let r = self.call(Request::WriteFile { path: path.into(), data: data.into() }, "write_file", self.timeout)?;
        done_or_errno("write_file", r)
    }

    /// `finit_module` of a guest path (see [`crate::image::guest_module_path`]).
    pub fn load_module(&mut self, path: &str, params: &str) -> Result<Result<(), Errno>, AgentError> {
        let r =
            self.call(Request::LoadModule { path: path.into(), params: params.into() }, "load_module", self.timeout)?;
        done_or_errno("load_module", r)
    }

    /// `delete_module(name, O_NONBLOCK)`.
    pub fn unload_module(&mut self, name: &str) -> Result<Result<(), Errno>, AgentError> {
        let r = self.call(Request::UnloadModule { name: name.into() }, "unload_module", self.timeout)?;
        done_or_errno("unload_module", r)
    }

    /// Every entry below `path` (not `path` itself), sorted by relative path.
    pub fn list_tree(&mut self, path: &str) -> Result<Result<Vec<TreeEntry>, Errno>, AgentError> {
        match self.call(Request::ListTree { path: path.into() }, "list_tree", self.timeout)? {
            Response::Tree { entries } => Ok(Ok(entries)),
            Response::Errno(e) => Ok(Err(e)),
            other => Err(unexpected("list_tree", other)),
        }
    }

    /// Poll `condition` in the guest (every 10 ms) until it holds or `timeout` passes:
    /// whether it held, and the last value read (for `FileEquals`).
    pub fn wait_for(&mut self, condition: Condition, timeout: Duration) -> Result<(bool, Option<String>), AgentError> {
        let w = self.wait_for_with(condition, timeout, DEFAULT_POLL)?;
        Ok((w.met, w.last))
    }

    /// [`AgentClient::wait_for`] with the poll interval given, and the time it took.
    pub fn wait_for_with(
        &mut self,
        condition: Condition,
        timeout: Duration,
        poll: Duration,
    ) -> Result<Waited, AgentError> {
        let req =
            Request::WaitFor { condition, timeout_ms: timeout.as_millis() as u64, poll_ms: poll.as_millis() as u64 };
        match self.call(req, "wait_for", timeout + WAIT_MARGIN)? {
            Response::Waited { met, elapsed_ms, last } => {
                Ok(Waited { met, elapsed: Duration::from_millis(elapsed_ms), last })
            }
            other => Err(unexpected("wait_for", other)),
        }
    }

    /// The kernel log records with a sequence number ≥ `since_seq`, oldest first (the next
    /// call's `since_seq` is the last record's `seq + 1`).
    pub fn read_kmsg(&mut self, since_seq: u64) -> Result<Vec<KmsgRecord>, AgentError> {
        match self.call(Request::ReadKmsg { since_seq }, "read_kmsg", self.timeout)? {
            Response::Kmsg { records, .. } => Ok(records),
            Response::Errno(e) => Err(AgentError::Agent { op: "read_kmsg", message: format!("/dev/kmsg: {}", e.name) }),
            other => Err(unexpected("read_kmsg", other)),
        }
    }

    /// Every task (thread) of the guest, sorted by (pid, tid), with its `patch_state`.
    pub fn tasks(&mut self) -> Result<Vec<TaskInfo>, AgentError> {
        match self.call(Request::Tasks, "tasks", self.timeout)? {
            Response::Tasks { tasks } => Ok(tasks),
            Response::Errno(e) => Err(AgentError::Agent { op: "tasks", message: format!("/proc: {}", e.name) }),
            other => Err(unexpected("tasks", other)),
        }
    }

    /// Start a background reader of `path` (a child process named `klp-<tag>`, cut to 15
    /// bytes, that opens and reads it to the end, blocking): its pid. A tag whose reader still
    /// runs is refused ([`AgentError::Agent`]); a finished one may be reused.
    pub fn start_reader(&mut self, tag: &str, path: &str) -> Result<i32, AgentError> {
        match self.call(Request::StartReader { tag: tag.into(), path: path.into() }, "start_reader", self.timeout)? {
            Response::Started { pid } => Ok(pid),
            other => Err(unexpected("start_reader", other)),
        }
    }

    /// The state of the reader started with `tag`: running, or done with the data read or the
    /// errno of open/read. An unknown tag is [`AgentError::Agent`].
    pub fn reader_status(&mut self, tag: &str) -> Result<ReaderState, AgentError> {
        match self.call(Request::ReaderStatus { tag: tag.into() }, "reader_status", self.timeout)? {
            Response::Reader(state) => Ok(state),
            other => Err(unexpected("reader_status", other)),
        }
    }

    /// Fault injection for the harness's own tests: the agent exits `after` from now, as if
    /// killed (see [`Request::Exit`]).
    pub fn inject_exit(&mut self, after: Duration) -> Result<(), AgentError> {
        let req = Request::Exit { code: 137, after_ms: after.as_millis() as u64 };
        match self.call(req, "exit", self.timeout)? {
            Response::Done => Ok(()),
            other => Err(unexpected("exit", other)),
        }
    }

    /// Mount `source` (a virtiofs tag, or a pseudo file system's name) on `target` in the
    /// guest; a tag whose hot-added device is still being probed is retried for up to `wait`.
    pub fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        readonly: bool,
        wait: Duration,
    ) -> Result<Result<(), Errno>, AgentError> {
        let req = Request::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            readonly,
            wait_ms: wait.as_millis() as u64,
        };
        match self.call(req, "mount", self.timeout + wait)? {
            Response::Done => Ok(Ok(())),
            Response::Errno(e) => Ok(Err(e)),
            other => Err(unexpected("mount", other)),
        }
    }

    /// Create the symlink `link` → `target` in the guest.
    pub fn symlink(&mut self, target: &str, link: &str) -> Result<Result<(), Errno>, AgentError> {
        match self.call(Request::Symlink { target: target.into(), link: link.into() }, "symlink", self.timeout)? {
            Response::Done => Ok(Ok(())),
            Response::Errno(e) => Ok(Err(e)),
            other => Err(unexpected("symlink", other)),
        }
    }

    /// Run a program in the guest to its end (killed after `timeout`), optionally chrooted.
    pub fn exec(
        &mut self,
        argv: &[String],
        root: Option<&str>,
        cwd: &str,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<klp_protocol::ExecResult, AgentError> {
        let req = Request::Exec {
            argv: argv.to_vec(),
            root: root.map(String::from),
            cwd: cwd.into(),
            env: env.to_vec(),
            timeout_ms: timeout.as_millis() as u64,
        };
        // The agent answers once the program is gone: its own deadline plus a margin.
        match self.call(req, "exec", timeout + self.timeout)? {
            Response::Exited(r) => Ok(r),
            other => Err(unexpected("exec", other)),
        }
    }

    /// Ask the agent to sync and power off; `Ok` once it acknowledged (the guest then goes away).
    pub fn power_off(&mut self) -> Result<(), AgentError> {
        match self.call(Request::PowerOff, "power_off", self.timeout)? {
            Response::Done => Ok(()),
            other => Err(unexpected("power_off", other)),
        }
    }

    /// Send any request and wait for its answer; [`Response::Error`] becomes [`AgentError::Agent`].
    /// After a timeout or a broken channel, later calls fail at once ([`AgentError::Lost`]).
    pub fn call(&mut self, req: Request, op: &'static str, timeout: Duration) -> Result<Response, AgentError> {
        if let Some(first) = self.lost.clone() {
            // A guest that died is reported as such every time (the watchdog remembers it).
            self.check_guest(op)?;
            return Err(AgentError::Lost { op, first });
        }
        let sent = self.send(&req, op);
        let answer = sent.and_then(|id| self.receive(op, |got| got == id, Instant::now() + timeout));
        match answer {
            Ok(Response::Error { message }) => Err(AgentError::Agent { op, message }),
            Ok(r) => Ok(r),
            Err(e) => {
                if e.is_lost_channel() {
                    self.lost = Some(e.summary());
                }
                Err(e)
            }
        }
    }

    /// Number the next requests from `id + 1`. A guest restored from a saved state may still
    /// answer requests its saved self had queued; a fresh range of ids keeps those answers
    /// from ever matching a new request.
    pub fn start_ids_after(&mut self, id: u64) {
        self.next_id = self.next_id.max(id);
    }

    /// Whether a request timed out or the channel broke (no request is sent any more).
    pub fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    fn send(&mut self, req: &Request, op: &'static str) -> Result<u64, AgentError> {
        self.next_id += 1;
        let line = encode(self.next_id, req);
        if let Err(source) = self.stream.write_all(line.as_bytes()) {
            return Err(self.channel_failed(op, source));
        }
        Ok(self.next_id)
    }

    /// Read lines until one carries an id `wanted` accepts, the deadline passes, or the
    /// watchdog reports the guest gone.
    fn receive(
        &mut self,
        op: &'static str,
        wanted: impl Fn(u64) -> bool,
        deadline: Instant,
    ) -> Result<Response, AgentError> {
        let started = Instant::now();
        let mut last_check = Instant::now();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let Ok(text) = std::str::from_utf8(&line) else { continue };
                // Noise from the serial line and answers to abandoned requests are skipped.
                if let Ok(Envelope { id, body }) = decode::<Response>(text) {
                    if wanted(id) {
                        return Ok(body);
                    }
                }
            }
            if last_check.elapsed() >= TICK {
                last_check = Instant::now();
                self.check_guest(op)?;
            }
            if Instant::now() >= deadline {
                self.check_guest(op)?;
                let context = self.context();
                return Err(AgentError::Timeout { op, after: started.elapsed(), context });
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    // EOF: QEMU closed the chardev, i.e. it is exiting; say why if we can tell.
                    self.settle_and_check(op)?;
                    let context = self.context();
                    return Err(AgentError::Closed { op, context });
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(self.channel_failed(op, source)),
            }
        }
    }

    fn check_guest(&mut self, op: &'static str) -> Result<(), AgentError> {
        match self.watchdog.as_mut() {
            Some(w) => w.check().map_err(|gone| AgentError::GuestDied { op, gone }),
            None => Ok(()),
        }
    }

    /// After EOF or a broken pipe QEMU is on its way out; give the watchdog a moment to see
    /// the exit status or the panic before falling back to a generic error.
    fn settle_and_check(&mut self, op: &'static str) -> Result<(), AgentError> {
        let until = Instant::now() + Duration::from_secs(3);
        while self.watchdog.is_some() && Instant::now() < until {
            self.check_guest(op)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn channel_failed(&mut self, op: &'static str, source: std::io::Error) -> AgentError {
        if let Err(e) = self.settle_and_check(op) {
            return e;
        }
        AgentError::Io { op, source }
    }

    fn context(&mut self) -> String {
        self.watchdog.as_mut().map(|w| w.context()).unwrap_or_default()
    }
}

fn hello(r: Response) -> Result<AgentHello, AgentError> {
    match r {
        Response::Hello { protocol, agent, release } if protocol == PROTOCOL_VERSION => {
            Ok(AgentHello { protocol, agent, release })
        }
        Response::Hello { protocol, .. } => Err(AgentError::Version { got: protocol }),
        Response::Error { message } => Err(AgentError::Agent { op: "hello", message }),
        other => Err(unexpected("hello", other)),
    }
}

fn done_or_errno(op: &'static str, r: Response) -> Result<Result<(), Errno>, AgentError> {
    match r {
        Response::Done => Ok(Ok(())),
        Response::Errno(e) => Ok(Err(e)),
        other => Err(unexpected(op, other)),
    }
}

fn unexpected(op: &'static str, got: Response) -> AgentError {
    AgentError::Unexpected { op, got: Box::new(got) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A fake agent on the other end of a socket pair, answering with `answer(id, request)`;
    /// lines it returns are written verbatim.
    fn fake(answer: impl Fn(u64, Request) -> Vec<String> + Send + 'static) -> AgentClient {
        let (host, guest) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut w = guest.try_clone().unwrap();
            for line in std::io::BufReader::new(guest).lines() {
                let Ok(line) = line else { return };
                let env: Envelope<Request> = decode(&line).unwrap();
                for out in answer(env.id, env.body) {
                    if w.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            }
        });
        AgentClient::new(host).unwrap()
    }

    #[test]
    fn stale_ids_and_noise_are_skipped() {
        let mut c = fake(|id, _| {
            vec![
                "\u{0}garbage echo\n".into(),
                encode(id + 100, &Response::Text { data: "stale".into() }),
                encode(0, &Response::Error { message: "bad request".into() }),
                encode(id, &Response::Text { data: "Linux version 6.1".into() }),
            ]
        });
        assert_eq!(c.read_file("/proc/version").unwrap().unwrap(), "Linux version 6.1");
        assert_eq!(c.read_file("/proc/version").unwrap().unwrap(), "Linux version 6.1");
    }

    #[test]
    fn errno_is_data_and_agent_errors_are_errors() {
        let mut c = fake(|id, req| match req {
            Request::WriteFile { .. } => vec![encode(id, &Response::Errno(Errno::new(22, "Invalid argument")))],
            _ => vec![encode(id, &Response::Error { message: "nope".into() })],
        });
        assert_eq!(c.write_file("/sys/x", "2").unwrap().unwrap_err().name, "EINVAL");
        assert!(matches!(c.unload_module("m"), Err(AgentError::Agent { op: "unload_module", .. })));
    }

    #[test]
    fn tasks_and_readers() {
        let task =
            TaskInfo { pid: 7, tid: 7, comm: "klp-x".into(), state: "S".into(), patch_state: Some(-1), kthread: false };
        let t = task.clone();
        let mut c = fake(move |id, req| {
            let r = match req {
                Request::Tasks => Response::Tasks { tasks: vec![t.clone()] },
                Request::StartReader { tag, path } if tag == "x" && path == "/p" => Response::Started { pid: 7 },
                Request::StartReader { .. } => Response::Error { message: "reader `y` is still running".into() },
                Request::ReaderStatus { tag } if tag == "x" => Response::Reader(ReaderState {
                    tag,
                    pid: 7,
                    done: true,
                    data: None,
                    errno: Some(Errno::new(2, "No such file or directory")),
                }),
                _ => Response::Error { message: "no reader with tag `z`".into() },
            };
            vec![encode(id, &r)]
        });
        assert_eq!(c.tasks().unwrap(), vec![task]);
        assert_eq!(c.start_reader("x", "/p").unwrap(), 7);
        assert!(matches!(c.start_reader("y", "/p"), Err(AgentError::Agent { op: "start_reader", .. })));
        let s = c.reader_status("x").unwrap();
        assert_eq!((s.pid, s.done, s.errno.map(|e| e.name)), (7, true, Some("ENOENT".into())));
        assert!(matches!(c.reader_status("z"), Err(AgentError::Agent { op: "reader_status", .. })));
    }

    #[test]
    fn silence_is_a_timeout_with_context() {
        struct Ctx;
        impl Watchdog for Ctx {
            fn check(&mut self) -> Result<(), GuestGone> {
                Ok(())
            }
            fn context(&mut self) -> String {
                "last console line".into()
            }
        }
        let mut c = fake(|_, _| vec![]);
        c.set_watchdog(Box::new(Ctx));
        c.set_timeout(Duration::from_millis(300));
        let t = Instant::now();
        let e = c.hello().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(matches!(e, AgentError::Timeout { op: "hello", .. }), "{e}");
        assert!(e.to_string().contains("last console line"));
        assert!(e.is_lost_channel() && !e.kernel_died());
        let summary = e.summary();
        assert!(summary.starts_with("agent did not answer `hello` within 0.") && !summary.contains('\n'), "{summary}");
        // The channel is lost: later calls are not sent and fail at once, saying why.
        assert!(c.is_lost());
        let t = Instant::now();
        let e = c.read_kmsg(0).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        assert!(matches!(e, AgentError::Lost { op: "read_kmsg", .. }), "{e}");
        assert!(e.to_string().contains("agent did not answer `hello`"), "{e}");
    }

    #[test]
    fn a_dead_guest_ends_the_wait_early() {
        struct Dies(Instant);
        impl Watchdog for Dies {
            fn check(&mut self) -> Result<(), GuestGone> {
                if self.0.elapsed() > Duration::from_millis(200) {
                    Err(GuestGone {
                        reason: "guest panicked".into(),
                        excerpt: "Kernel panic - not syncing: x".into(),
                        kernel_died: true,
                    })
                } else {
                    Ok(())
                }
            }
            fn context(&mut self) -> String {
                String::new()
            }
        }
        let mut c = fake(|_, _| vec![]);
        c.set_watchdog(Box::new(Dies(Instant::now())));
        let t = Instant::now();
        let e = c.read_file("/x").unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("Kernel panic - not syncing"), "{e}");
        assert!(e.kernel_died() && e.is_lost_channel());
        assert_eq!(e.summary(), "guest died during `read_file`: guest panicked");
        // Later calls are not sent, and still say the guest died, with its console.
        let e = c.hello().unwrap_err();
        assert!(matches!(e, AgentError::GuestDied { op: "hello", .. }) && e.kernel_died(), "{e}");
    }

    #[test]
    fn eof_is_closed() {
        let (host, guest) = UnixStream::pair().unwrap();
        drop(guest);
        let mut c = AgentClient::new(host).unwrap();
        let e = c.hello().unwrap_err();
        assert!(matches!(e, AgentError::Closed { .. } | AgentError::Io { .. }), "{e}");
        assert!(c.is_lost());
    }

    #[test]
    fn an_agent_error_does_not_lose_the_channel() {
        let mut c = fake(|id, _| vec![encode(id, &Response::Error { message: "nope".into() })]);
        let e = c.read_file("/x").unwrap_err();
        assert!(!e.is_lost_channel() && !c.is_lost(), "{e}");
        assert!(matches!(c.read_file("/x"), Err(AgentError::Agent { .. })));
    }

    #[test]
    fn handshake_accepts_a_late_answer_to_an_earlier_hello() {
        // Answers only the second hello, with the id of the first (as a slow guest would).
        let mut c = fake(|id, _| {
            if id == 1 {
                vec![]
            } else {
                vec![encode(1, &Response::Hello { protocol: PROTOCOL_VERSION, agent: "a".into(), release: "r".into() })]
            }
        });
        let h = c.handshake(Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(h.release, "r");
    }
}
