//! Background readers ([`klp_protocol::Request::StartReader`]) and the reaping of children.
//!
//! A reader is a child process that opens a path (blocking), reads it to the end and leaves
//! the outcome in a result file. It is the agent binary itself, executed again with
//! `--reader <tag> <path> <result-file>` ([`READER_FLAG`]): whatever the agent becomes
//! (threads included), the child runs no code between `fork` and `exec` but std's own, and
//! inherits none of the agent's descriptors (they are all `O_CLOEXEC`).
//!
//! The child names itself `klp-<tag>` (15 bytes at most, the kernel's `comm`), so that
//! [`crate::ops::tasks`] and a suite can find it, then writes `ok\n<data>` or `errno <n>\n` to
//! a temporary file renamed onto the result file, and exits. The agent never waits for a
//! reader: it reaps with `WNOHANG` before every request and on every poll of a wait, so a
//! reader asleep in the kernel (uninterruptibly, even) delays neither requests nor power-off.
//! As PID 1 it reaps every child, orphans re-parented to it included.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use klp_protocol::{ReaderState, Response};

use crate::ops::errno;
use crate::sys;

/// `argv[1]` of a reader child.
pub const READER_FLAG: &str = "--reader";
/// Where PID 1 keeps the result files.
const GUEST_DIR: &str = "/tmp/klp-readers";
/// Overrides the result directory when the agent is not PID 1 (its tests).
const DIR_ENV: &str = "KLP_AGENT_READERS_DIR";

struct Reader {
    pid: i32,
    result: PathBuf,
    /// The wait status once reaped.
    exit: Option<i32>,
}

static READERS: Mutex<BTreeMap<String, Reader>> = Mutex::new(BTreeMap::new());
/// PID 1 reaps every child (`waitpid(-1)`); any other agent only its readers, so that it
/// never steals a child from code it shares the process with.
static REAP_ALL: AtomicBool = AtomicBool::new(false);
static DIR: OnceLock<PathBuf> = OnceLock::new();

fn readers() -> MutexGuard<'static, BTreeMap<String, Reader>> {
    READERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called once at start.
pub fn init(pid1: bool) {
    REAP_ALL.store(pid1, Ordering::Relaxed);
    let dir = if pid1 {
        PathBuf::from(GUEST_DIR)
    } else {
        match std::env::var_os(DIR_ENV) {
            Some(d) => PathBuf::from(d),
            None => std::env::temp_dir().join(format!("klp-readers-{}", std::process::id())),
        }
    };
    let _ = DIR.set(dir);
}

fn dir() -> &'static Path {
    DIR.get_or_init(|| std::env::temp_dir().join(format!("klp-readers-{}", std::process::id())))
}

/// Collect the exit status of every child that has exited, without blocking.
pub fn reap() {
    let mut readers = readers();
    let mut status = 0;
    if REAP_ALL.load(Ordering::Relaxed) {
        loop {
            // SAFETY: status is a valid int; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if let Some(r) = readers.values_mut().find(|r| r.pid == pid && r.exit.is_none()) {
                    r.exit = Some(status);
                }
                continue;
            }
            if pid < 0 && sys::last_errno() == libc::EINTR {
                continue;
            }
            break; // 0: children left but none exited; ECHILD: no children at all
        }
    } else {
        for r in readers.values_mut().filter(|r| r.exit.is_none()) {
            // SAFETY: as above.
            let pid = unsafe { libc::waitpid(r.pid, &mut status, libc::WNOHANG) };
            if pid == r.pid {
                r.exit = Some(status);
            } else if pid < 0 && sys::last_errno() == libc::ECHILD {
                // Reaped behind our back: it has exited, whatever its status.
                r.exit = Some(-1);
            }
        }
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag == "." || tag == ".." || tag.contains(['/', '\0']) {
        return Err(format!("invalid reader tag {tag:?} (empty, `.`, `..`, or contains `/` or NUL)"));
    }
    Ok(())
}

/// [`klp_protocol::Request::StartReader`]: [`Response::Started`], or [`Response::Error`] for a
/// tag still running, an invalid tag, or a child that could not be started.
pub fn start(tag: &str, path: &str) -> Response {
    match try_start(tag, path) {
        Ok(pid) => Response::Started { pid },
        Err(message) => Response::Error { message },
    }
}

fn try_start(tag: &str, path: &str) -> Result<i32, String> {
    check_tag(tag)?;
    if path.contains('\0') {
        return Err("reader path contains a NUL byte".into());
    }
    reap();
    if let Some(r) = readers().get(tag) {
        if r.exit.is_none() {
            return Err(format!("reader `{tag}` is still running (pid {})", r.pid));
        }
    }
    let dir = dir();
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let result = dir.join(format!("{tag}.result"));
    match std::fs::remove_file(&result) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the old {}: {e}", result.display())),
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating the agent binary: {e}"))?;
    let child = Command::new(&exe)
        .arg(READER_FLAG)
        .arg(tag)
        .arg(path)
        .arg(&result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting reader `{tag}` ({}): {e}", exe.display()))?;
    let pid = child.id() as i32;
    // Dropping a Child neither waits for nor kills it; reap() collects it.
    drop(child);
    readers().insert(tag.to_string(), Reader { pid, result, exit: None });
    Ok(pid)
}

/// [`klp_protocol::Request::ReaderStatus`]: [`Response::Reader`], or [`Response::Error`] for a
/// tag never started or a reader that exited without leaving its result (it crashed).
pub fn status(tag: &str) -> Response {
    reap();
    let readers = readers();
    let Some(r) = readers.get(tag) else {
        return Response::Error { message: format!("no reader with tag `{tag}`") };
    };
    let mut st = ReaderState { tag: tag.to_string(), pid: r.pid, done: false, data: None, errno: None };
    let Some(exit) = r.exit else { return Response::Reader(st) };
    match std::fs::read(&r.result) {
        Ok(raw) => match parse_result(&raw) {
            Some(Ok(data)) => st.data = Some(data),
            Some(Err(n)) => st.errno = Some(errno(n)),
            None => {
                return Response::Error {
                    message: format!("reader `{tag}` left a malformed result in {}", r.result.display()),
                }
            }
        },
        Err(e) => {
            return Response::Error {
                message: format!("reader `{tag}` (pid {}) exited ({}) without a result: {e}", r.pid, describe(exit)),
            }
        }
    }
    st.done = true;
    Response::Reader(st)
}

/// For [`klp_protocol::Condition::ReaderDone`]: whether the reader has exited (and was reaped),
/// with a description; `Err` for an unknown tag.
pub fn done(tag: &str) -> Result<(bool, String), String> {
    reap();
    let readers = readers();
    let r = readers.get(tag).ok_or_else(|| format!("no reader with tag `{tag}`"))?;
    Ok(match r.exit {
        Some(st) => (true, format!("pid {} {}", r.pid, describe(st))),
        None => (false, format!("pid {} running", r.pid)),
    })
}

fn describe(status: i32) -> String {
    if status == -1 {
        "exited".into()
    } else if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// `ok\n<data>` → the data; `errno <n>\n` → the errno.
fn parse_result(raw: &[u8]) -> Option<Result<String, i32>> {
    if let Some(data) = raw.strip_prefix(b"ok\n") {
        return Some(Ok(String::from_utf8_lossy(data).into_owned()));
    }
    let text = std::str::from_utf8(raw).ok()?;
    let n = text.strip_prefix("errno ")?.trim_end().parse().ok()?;
    Some(Err(n))
}

fn encode_result(outcome: &Result<Vec<u8>, i32>) -> Vec<u8> {
    match outcome {
        Ok(data) => [b"ok\n".as_slice(), data].concat(),
        Err(n) => format!("errno {n}\n").into_bytes(),
    }
}

/// The body of a reader child (`argv` after [`READER_FLAG`]: tag, path, result file). Never
/// returns.
pub fn child_main(args: &[OsString]) -> ! {
    let code = match args {
        [tag, path, result] => {
            set_comm(&format!("klp-{}", tag.to_string_lossy()));
            let outcome = read_blocking(Path::new(path));
            match write_atomically(Path::new(result), &encode_result(&outcome)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("klp-agent reader: writing {}: {e}", Path::new(result).display());
                    2
                }
            }
        }
        _ => {
            eprintln!("klp-agent: usage: {READER_FLAG} <tag> <path> <result-file>");
            2
        }
    };
    // SAFETY: _exit has no preconditions; nothing needs flushing (the result is renamed).
    unsafe { libc::_exit(code) }
}

/// `prctl(PR_SET_NAME)`: the kernel keeps the first 15 bytes.
fn set_comm(name: &str) {
    let mut buf = [0u8; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    buf[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: buf is NUL-terminated and outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Open without `O_NONBLOCK` (the point: sleep in the kernel if the file makes readers
/// wait) and read to EOF; the errno of open or read otherwise.
fn read_blocking(path: &Path) -> Result<Vec<u8>, i32> {
    let mut f = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(data)
}

fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Whether `argv` asks for a reader child (checked first thing in `main`).
pub fn is_reader_invocation(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a.as_bytes() == READER_FLAG.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_encoding_round_trips() {
        for outcome in [Ok(b"Linux version 6.1\n".to_vec()), Ok(vec![]), Ok(b"errno 2\n".to_vec()), Err(2)] {
            let expected = outcome.clone().map(|d| String::from_utf8(d).unwrap());
            assert_eq!(parse_result(&encode_result(&outcome)), Some(expected));
        }
        assert_eq!(parse_result(b""), None);
        assert_eq!(parse_result(b"errno x\n"), None);
    }

    #[test]
    fn tags_are_file_names() {
        assert!(check_tag("blocker-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_tags_are_errors() {
        assert!(matches!(status("never-started"), Response::Error { .. }));
        assert!(done("never-started").is_err());
    }
}
