//! The requests that touch the kernel. Every failure of the kernel is data: an [`Errno`].

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use klp_protocol::{Condition, EntryKind, Errno, KmsgRecord, Response, TaskInfo, TreeEntry};

use crate::{kmsg, readers, sys};

/// Largest value [`list_tree`] reads from one file (sysfs values are at most a page).
const TREE_VALUE_LIMIT: u64 = 1 << 20;

pub fn errno(n: i32) -> Errno {
    Errno::new(n, sys::strerror(n))
}

fn io_errno(e: &std::io::Error) -> Errno {
    errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Read a whole file. Opened `O_NONBLOCK` so that a pipe-like file (trace_pipe, kmsg) answers
/// with what it has (or EAGAIN) instead of wedging the agent.
pub fn read_whole(path: &str, limit: u64) -> Result<Vec<u8>, Errno> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_errno(&e))?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut r = f.take(limit);
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !data.is_empty() => return Ok(data),
            Err(e) => return Err(io_errno(&e)),
        }
    }
}

pub fn read_file(path: &str) -> Response {
    match read_whole(path, u64::MAX) {
        Ok(d) => Response::Text { data: String::from_utf8_lossy(&d).into_owned() },
        Err(e) => Response::Errno(e),
    }
}

/// One `write(2)` of the bytes to an existing file, as `echo data > path` does for sysfs.
pub fn write_file(path: &str, data: &str) -> Response {
    let mut f = match OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(path) {
        Ok(f) => f,
        Err(e) => return Response::Errno(io_errno(&e)),
    };
    loop {
        match f.write(data.as_bytes()) {
            Ok(_) => return Response::Done,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Response::Errno(io_errno(&e)),
        }
    }
}

pub fn load_module(path: &str, params: &str) -> Response {
    let Ok(params) = CString::new(params) else {
        return Response::Error { message: "module parameters contain a NUL byte".into() };
    };
    let f = match OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(path) {
        Ok(f) => f,
        Err(e) => return Response::Errno(io_errno(&e)),
    };
    match sys::finit_module(&f, &params) {
        Ok(()) => Response::Done,
        Err(n) => Response::Errno(errno(n)),
    }
}

pub fn unload_module(name: &str) -> Response {
    let Ok(name) = CString::new(name) else {
        return Response::Error { message: "module name contains a NUL byte".into() };
    };
    match sys::delete_module(&name) {
        Ok(()) => Response::Done,
        Err(n) => Response::Errno(errno(n)),
    }
}

/// Walk `root` with lstat (symlinks are listed, never followed); entries sorted by path.
pub fn list_tree(root: &str) -> Response {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => return Response::Errno(io_errno(&e)),
    };
    if !meta.is_dir() {
        return Response::Errno(errno(libc::ENOTDIR));
    }
    let mut entries = Vec::new();
    if let Err(e) = walk(Path::new(root), "", &mut entries) {
        return Response::Errno(e);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Response::Tree { entries }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<TreeEntry>) -> Result<(), Errno> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_errno(&e))?;
    for ent in rd {
        let ent = ent.map_err(|e| io_errno(&e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let path = dir.join(ent.file_name());
        let relp = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Vanished between readdir and lstat (a module went away): not listed.
            Err(_) => continue,
        };
        let ft = meta.file_type();
        let mut e = TreeEntry {
            path: relp.clone(),
            kind: EntryKind::Other,
            mode: meta.mode() & 0o7777,
            value: None,
            read_errno: None,
            target: None,
        };
        if ft.is_symlink() {
            e.kind = EntryKind::Symlink;
            match std::fs::read_link(&path) {
                Ok(t) => e.target = Some(t.to_string_lossy().into_owned()),
                Err(err) => e.read_errno = Some(err.raw_os_error().unwrap_or(libc::EIO)),
            }
            out.push(e);
        } else if ft.is_dir() {
            e.kind = EntryKind::Dir;
            let sub = walk(&path, &relp, out);
            if let Err(err) = sub {
                e.read_errno = Some(err.errno);
            }
            out.push(e);
        } else if ft.is_file() {
            e.kind = EntryKind::File;
            match read_whole(&path.to_string_lossy(), TREE_VALUE_LIMIT) {
                Ok(d) => e.value = Some(String::from_utf8_lossy(&d).into_owned()),
                Err(err) => e.read_errno = Some(err.errno),
            }
            out.push(e);
        } else {
            // Devices, fifos, sockets: listed, never opened.
            out.push(e);
        }
    }
    Ok(())
}

/// Poll `cond` every `poll_ms` until it holds or `timeout_ms` has passed (checked at least once).
/// Children are reaped on every poll. A condition that cannot be evaluated (a reader tag never
/// started) is [`Response::Error`].
pub fn wait_for(cond: &Condition, timeout_ms: u64, poll_ms: u64) -> Response {
    let start = Instant::now();
    let timeout = Duration::from_millis(timeout_ms);
    let poll = Duration::from_millis(poll_ms.clamp(1, 10_000));
    loop {
        readers::reap();
        let (met, last) = match check(cond) {
            Ok(c) => c,
            Err(message) => return Response::Error { message },
        };
        let elapsed = start.elapsed();
        if met || elapsed >= timeout {
            return Response::Waited { met, elapsed_ms: elapsed.as_millis() as u64, last };
        }
        std::thread::sleep(poll.min(timeout - elapsed));
    }
}

/// Whether the condition holds, and the last value seen: the file's content (or `<ERRNO>` if
/// it cannot be read) for the file conditions, the reader's state for `ReaderDone`.
fn check(cond: &Condition) -> Result<(bool, Option<String>), String> {
    Ok(match cond {
        Condition::FileEquals { path, value } => match read_whole(path, TREE_VALUE_LIMIT) {
            Ok(d) => {
                let text = String::from_utf8_lossy(&d).into_owned();
                let met = text.trim_end_matches('\n') == value;
                (met, Some(text))
            }
            Err(e) => (false, Some(format!("<{}>", e.name))),
        },
        Condition::FileNotEquals { path, value } => match read_whole(path, TREE_VALUE_LIMIT) {
            Ok(d) => {
                let text = String::from_utf8_lossy(&d).into_owned();
                let met = text.trim_end_matches('\n') != value;
                (met, Some(text))
            }
            Err(e) => (true, Some(format!("<{}>", e.name))),
        },
        Condition::Exists { path } => (std::fs::symlink_metadata(path).is_ok(), None),
        Condition::Absent { path } => (std::fs::symlink_metadata(path).is_err(), None),
        Condition::ReaderDone { tag } => {
            let (done, how) = readers::done(tag)?;
            (done, Some(how))
        }
    })
}

/// `PF_KTHREAD` of include/linux/sched.h, in the `flags` field of /proc/<pid>/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Every task of /proc/[0-9]*/task/[0-9]*, sorted by (pid, tid). Tasks that exit while being
/// listed are left out; a task whose `patch_state` cannot be read has `None`.
pub fn tasks() -> Response {
    tasks_in("/proc")
}

fn tasks_in(proc_root: &str) -> Response {
    let rd = match std::fs::read_dir(proc_root) {
        Ok(rd) => rd,
        Err(e) => return Response::Errno(io_errno(&e)),
    };
    let numeric = |e: std::fs::DirEntry| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok());
    let mut tasks = Vec::new();
    for pid in rd.filter_map(|e| e.ok()).filter_map(numeric) {
        // The process may be gone already.
        let Ok(trd) = std::fs::read_dir(format!("{proc_root}/{pid}/task")) else { continue };
        for tid in trd.filter_map(|e| e.ok()).filter_map(numeric) {
            let dir = format!("{proc_root}/{pid}/task/{tid}");
            let Ok(stat) = read_whole(&format!("{dir}/stat"), 4096) else { continue };
            let Some((comm, state, flags)) = parse_stat(&String::from_utf8_lossy(&stat)) else { continue };
            let patch_state = read_whole(&format!("{dir}/patch_state"), 64)
                .ok()
                .and_then(|d| String::from_utf8_lossy(&d).trim().parse().ok());
            tasks.push(TaskInfo { pid, tid, comm, state, patch_state, kthread: flags & PF_KTHREAD != 0 });
        }
    }
    tasks.sort_by_key(|t| (t.pid, t.tid));
    Response::Tasks { tasks }
}

/// `pid (comm) state ppid pgrp session tty_nr tpgid flags …`: comm, state and flags. The comm
/// may contain spaces and parentheses, so the fields are split after the last `)`.
fn parse_stat(stat: &str) -> Option<(String, String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.to_string();
    let flags = rest.nth(5)?.parse().ok()?;
    Some((comm, state, flags))
}

/// Every /dev/kmsg record still in the ring buffer with `seq >= since_seq`.
pub fn read_kmsg(since_seq: u64) -> Response {
    let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open("/dev/kmsg") {
        Ok(f) => f,
        Err(e) => return Response::Errno(io_errno(&e)),
    };
    let mut records: Vec<KmsgRecord> = Vec::new();
    // A record is at most ~8 KiB (text + dictionary); one read returns exactly one record.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(r) = kmsg::parse_record(&buf[..n]) {
                    if r.seq >= since_seq {
                        records.push(r);
                    }
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => break,
                // Records were overwritten while reading: the next read resumes at the oldest.
                Some(libc::EPIPE) | Some(libc::EINTR) => continue,
                _ => return Response::Errno(io_errno(&e)),
            },
        }
    }
    let next_seq = records.last().map(|r| r.seq + 1).unwrap_or(since_seq);
    Response::Kmsg { records, next_seq }
}

/// Load the kernel modules the image put in `dir`: their file names sort in load order, which
/// the host resolved from the kernel's module dependencies (a module after those it needs).
pub fn load_boot_modules(dir: &str, log: &dyn Fn(&str)) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        let path = p.to_string_lossy();
        let t = Instant::now();
        match load_module(&path, "") {
            Response::Done => log(&format!("loaded {path} ({} ms)", t.elapsed().as_millis())),
            Response::Errno(e) if e.errno == libc::EEXIST => log(&format!("{path}: already loaded")),
            other => log(&format!("could not load {path}: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_last_paren() {
        let s = "42 (a) b) (c) S 2 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_stat(s), Some(("a) b) (c".into(), "S".into(), 2129984)));
        assert_eq!(parse_stat("1 (init) R 0 1 1 0 -1 4194560 1"), Some(("init".into(), "R".into(), 4194560)));
        assert_eq!(parse_stat("1 init R"), None);
        assert_eq!(parse_stat("1 (init) R 0 1"), None);
    }

    #[test]
    fn tasks_lists_this_process_sorted() {
        let Response::Tasks { tasks } = tasks() else { panic!() };
        let me = std::process::id() as i32;
        let mine: Vec<_> = tasks.iter().filter(|t| t.pid == me).collect();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert!(mine.iter().any(|t| t.tid == me && !t.kthread), "{mine:?}");
        // The thread that reads the listing is running.
        assert!(mine.iter().any(|t| t.tid == tid && t.state == "R"), "{mine:?}");
        assert!(tasks.windows(2).all(|w| (w[0].pid, w[0].tid) < (w[1].pid, w[1].tid)));
        // kthreadd (pid 2) is visible unless /proc belongs to another pid namespace.
        if let Some(k) = tasks.iter().find(|t| t.pid == 2 && t.comm == "kthreadd") {
            assert!(k.kthread);
        }
        assert!(matches!(tasks_in("/nonexistent"), Response::Errno(ref e) if e.name == "ENOENT"));
    }

    #[test]
    fn file_not_equals() {
        let c = |value: &str| Condition::FileNotEquals { path: "/proc/sys/kernel/ostype".into(), value: value.into() };
        assert_eq!(check(&c("Linux")), Ok((false, Some("Linux\n".into()))));
        assert_eq!(check(&c("Plan9")), Ok((true, Some("Linux\n".into()))));
        let gone = Condition::FileNotEquals { path: "/nonexistent".into(), value: "1".into() };
        assert_eq!(check(&gone), Ok((true, Some("<ENOENT>".into()))));
        assert!(matches!(
            wait_for(&Condition::ReaderDone { tag: "never-started".into() }, 0, 1),
            Response::Error { .. }
        ));
    }
}
