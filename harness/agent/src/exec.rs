//! [`Request::Mount`](klp_protocol::Request::Mount) and
//! [`Request::Exec`](klp_protocol::Request::Exec): shares the host hot-added over virtiofs,
//! and programs run from them (the kernel's own selftests, under the host's bash and kmod).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use klp_protocol::{ExecResult, OutputLine, Response};

use crate::ops::errno;
use crate::sys;

/// Mount `source` on `target`; a virtiofs tag not there yet (its device still being probed
/// after a hot-add) is retried every 20 ms until `wait_ms`.
pub fn mount(source: &str, target: &str, fstype: &str, readonly: bool, wait_ms: u64) -> Response {
    if let Err(e) = std::fs::create_dir_all(target) {
        return Response::Errno(errno(e.raw_os_error().unwrap_or(libc::EIO)));
    }
    let (fstype, flags) = match (fstype, readonly) {
        ("bind", _) => ("none", libc::MS_BIND | libc::MS_REC),
        (f, true) => (f, libc::MS_RDONLY),
        (f, false) => (f, 0),
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    loop {
        match sys::mount_flags(source, target, fstype, flags) {
            Ok(()) => return Response::Done,
            // virtio_fs: "tag <x> not found" is EINVAL; no virtiofs file system yet is ENODEV.
            Err(e) if matches!(e, libc::EINVAL | libc::ENODEV | libc::ENOENT) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Response::Errno(errno(e)),
        }
    }
}

pub fn symlink(target: &str, link: &str) -> Response {
    if let Some(parent) = std::path::Path::new(link).parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Response::Errno(errno(e.raw_os_error().unwrap_or(libc::EIO)));
        }
    }
    match std::os::unix::fs::symlink(target, link) {
        Ok(()) => Response::Done,
        Err(e) => Response::Errno(errno(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

pub fn exec(argv: &[String], root: Option<&str>, cwd: &str, env: &[(String, String)], timeout_ms: u64) -> Response {
    match run(argv, root, cwd, env, timeout_ms) {
        Ok(r) => Response::Exited(r),
        Err(message) => Response::Error { message },
    }
}

fn run(
    argv: &[String],
    root: Option<&str>,
    cwd: &str,
    env: &[(String, String)],
    timeout_ms: u64,
) -> Result<ExecResult, String> {
    let (program, args) = argv.split_first().ok_or("exec: empty argv")?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let root_c = root.map(|r| std::ffi::CString::new(r).map_err(|_| "exec: root contains NUL")).transpose()?;
    let cwd_c = std::ffi::CString::new(cwd).map_err(|_| "exec: cwd contains NUL")?;
    // SAFETY: between fork and exec only chroot/chdir (async-signal-safe) are called.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(r) = &root_c {
                if libc::chroot(r.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::chdir(cwd_c.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let mut child =
        cmd.spawn().map_err(|e| format!("exec {program:?} (root {}, cwd {cwd}): {e}", root.unwrap_or("/")))?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<OutputLine>();
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
                    let _ = tx.send(OutputLine { ms: started.elapsed().as_millis() as u64, text });
                }
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = started + Duration::from_millis(timeout_ms);
    let mut timed_out = false;
    // waitpid on this pid only: PID 1's reaper (`readers::reap`) runs between requests, not now.
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() >= deadline && !timed_out {
            timed_out = true;
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the program left running in its group must not hold the pipes open forever.
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = out_thread.join();
    let stderr = err_thread.join().unwrap_or_default();
    let stdout: Vec<OutputLine> = rx.try_iter().collect();
    Ok(ExecResult {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        stdout,
        stderr,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> ExecResult {
        let argv = ["/bin/sh", "-c", script].map(String::from);
        let env = [("PATH".to_string(), "/usr/bin:/bin".to_string())];
        match exec(&argv, None, "/", &env, timeout_ms) {
            Response::Exited(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_lines_code_and_stderr() {
        let r = sh("echo one; echo two; echo err >&2; exit 3", 10_000);
        assert_eq!(r.code, Some(3));
        assert!(!r.timed_out);
        assert_eq!(r.stdout.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(r.stderr, "err\n");
    }

    #[test]
    fn a_program_past_its_deadline_is_killed() {
        let r = sh("echo started; exec sleep 30", 300);
        assert!(r.timed_out);
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert_eq!(r.stdout[0].text, "started");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let argv = vec!["/nonexistent/prog".to_string()];
        assert!(matches!(exec(&argv, None, "/", &[], 1000), Response::Error { .. }));
    }
}
