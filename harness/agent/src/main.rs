//! klp-agent: PID 1 of the klp-conform guest.
//!
//! It mounts the pseudo file systems, loads the kernel modules the image carries for the VM
//! itself (the channel's virtio drivers, pvpanic) in the order the image gives (dependencies
//! first), opens the channel the kernel command line names ([`channel`]: a virtio-serial port,
//! or a serial tty) and then serves [`klp_protocol::Request`]s one at a time, one JSON line each
//! way. It sends nothing until the host speaks. Errors of the kernel are answers
//! ([`Response::Errno`]); a request it cannot serve is answered with [`Response::Error`]. It
//! never exits: PID 1 exiting panics the kernel, so any failure of the agent itself powers the
//! machine off instead.
//!
//! Run as any other PID (for tests on the host) it mounts nothing and serves stdin/stdout.
//! Run as `--reader <tag> <path> <result-file>` it is a background reader ([`readers`]).

mod channel;
mod exec;
mod kmsg;
mod ops;
mod readers;
mod sys;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use klp_protocol::{decode, encode, Channel, Request, Response, PROTOCOL_VERSION};

static KMSG: OnceLock<File> = OnceLock::new();

/// Log a line to the kernel log (so it lands in the console and in dmesg) or, before /dev is
/// mounted and on the host, to stderr.
fn log(msg: &str) {
    let line = format!("<6>klp-agent: {msg}\n");
    match KMSG.get() {
        Some(mut kept) => {
            // A fresh open per line: the kernel rate-limits writes to /dev/kmsg per open file
            // (a burst of 10 per 5 s), and a boot logs more than that (one line per boot
            // module), which silently dropped `serving on …` once the image carried 10 modules.
            match OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open("/dev/kmsg") {
                Ok(mut f) => {
                    let _ = f.write_all(line.as_bytes());
                }
                Err(_) => {
                    let _ = kept.write_all(line.as_bytes());
                }
            }
        }
        None => eprintln!("klp-agent: {msg}"),
    }
}

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    if readers::is_reader_invocation(&args) {
        readers::child_main(&args[2..]);
    }
    let pid1 = std::process::id() == 1;
    readers::init(pid1);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log(&format!("panic: {info}"));
        default_hook(info);
    }));
    let outcome = std::panic::catch_unwind(|| run(pid1));
    let why = match &outcome {
        Ok(Ok(())) => "the channel was closed".to_string(),
        Ok(Err(e)) => e.clone(),
        Err(_) => "the agent panicked".to_string(),
    };
    if !pid1 {
        std::process::exit(if matches!(outcome, Ok(Ok(()))) { 0 } else { 1 });
    }
    // PID 1 must never exit ("Attempted to kill init" would panic the kernel).
    log(&format!("{why}; powering off"));
    loop {
        let e = sys::power_off();
        log(&format!("power off failed: {}", sys::strerror(e)));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run(pid1: bool) -> Result<(), String> {
    if !pid1 {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        return serve(stdin, stdout, pid1, &|| {});
    }
    setup_system();
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    let channel = Channel::from_cmdline(&cmdline)?;
    let started = Instant::now();
    let port = channel::open(&channel)?;
    log(&format!("serving on {} ({channel}, opened in {} ms)", port.path, started.elapsed().as_millis()));
    // From here on nothing of ours goes to the console: closing init's /dev/console (ttyS0)
    // also releases the UART's interrupt, so ttyS0 carries only the kernel's own console
    // output, which needs no interrupt.
    if let Err(e) = sys::stdio_to_dev_null() {
        log(&format!("stdio to /dev/null: {}", sys::strerror(e)));
    }
    let writer = port.file.try_clone().map_err(|e| format!("dup {}: {e}", port.path))?;
    let reader = port.file.try_clone().map_err(|e| format!("dup {}: {e}", port.path))?;
    serve(BufReader::new(reader), writer, pid1, &|| port.drain())
}

/// Mounts and boot modules. Failures are logged, not fatal: a missing debugfs should not cost
/// the run, and the requests that need it will report the errno.
fn setup_system() {
    for (fstype, target) in [
        ("devtmpfs", "/dev"),
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("tracefs", "/sys/kernel/tracing"),
        ("debugfs", "/sys/kernel/debug"),
    ] {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = sys::mount(fstype, target, fstype) {
            if e != libc::EBUSY {
                log(&format!("mount {fstype} on {target}: {}", sys::strerror(e)));
            }
        }
        if target == "/dev" {
            if let Ok(f) = OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open("/dev/kmsg") {
                let _ = KMSG.set(f);
            }
        }
    }
    log(&format!("started (protocol {PROTOCOL_VERSION}, {})", env!("CARGO_PKG_VERSION")));
    ops::load_boot_modules(klp_protocol::GUEST_BOOT_MODULE_DIR, &|m| log(m));
}

/// Serve requests until the channel ends (host mode) or a power-off was answered.
fn serve(mut reader: impl BufRead, mut writer: impl Write, pid1: bool, drain: &dyn Fn()) -> Result<(), String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) if !pid1 => return Ok(()),
            // A tty in raw mode does not normally report EOF; if it does (hangup), keep serving.
            // A virtio port reads EOF while no host is connected to its chardev.
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("reading the channel: {e}")),
        }
        let Some((id, response, power_off)) = handle_line(&line) else { continue };
        writer
            .write_all(encode(id, &response).as_bytes())
            .and_then(|_| writer.flush())
            .map_err(|e| format!("writing the channel: {e}"))?;
        if power_off {
            drain();
            if !pid1 {
                return Ok(());
            }
            log("powering off on request");
            let e = sys::power_off();
            return Err(format!("power off failed: {}", sys::strerror(e)));
        }
    }
}

/// Decode and serve one line; `None` for a blank line. A line that is not a request (noise on
/// the port before the host connected, a newer host) gets [`Response::Error`] with its id if
/// one can be found, else id 0, which the host never uses.
fn handle_line(line: &[u8]) -> Option<(u64, Response, bool)> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let env = match decode::<Request>(text) {
        Ok(env) => env,
        Err(e) => {
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                .unwrap_or(0);
            return Some((id, Response::Error { message: format!("bad request: {e}") }, false));
        }
    };
    let power_off = matches!(env.body, Request::PowerOff);
    let body = env.body;
    let response = std::panic::catch_unwind(move || dispatch(body))
        .unwrap_or_else(|_| Response::Error { message: "the agent panicked serving this request".into() });
    Some((env.id, response, power_off))
}

fn dispatch(req: Request) -> Response {
    // Children that exited since the last request (readers, orphans if PID 1) are collected
    // here and on every poll of a wait; nothing ever waits for one.
    readers::reap();
    match req {
        Request::Hello => Response::Hello {
            protocol: PROTOCOL_VERSION,
            agent: format!("klp-agent {}", env!("CARGO_PKG_VERSION")),
            release: release(),
        },
        Request::ReadFile { path } => ops::read_file(&path),
        Request::WriteFile { path, data } => ops::write_file(&path, &data),
        Request::LoadModule { path, params } => ops::load_module(&path, &params),
        Request::UnloadModule { name } => ops::unload_module(&name),
        Request::ListTree { path } => ops::list_tree(&path),
        Request::WaitFor { condition, timeout_ms, poll_ms } => ops::wait_for(&condition, timeout_ms, poll_ms),
        Request::ReadKmsg { since_seq } => ops::read_kmsg(since_seq),
        Request::PowerOff => Response::Done,
        Request::Tasks => ops::tasks(),
        Request::StartReader { tag, path } => readers::start(&tag, &path),
        Request::ReaderStatus { tag } => readers::status(&tag),
        Request::Exit { code, after_ms } => {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(after_ms));
                // No unwinding, no flushing: as abrupt as a SIGKILL (which PID 1 cannot get).
                // SAFETY: _exit has no preconditions.
                unsafe { libc::_exit(code) };
            });
            Response::Done
        }
        Request::Mount { source, target, fstype, readonly, wait_ms } => {
            exec::mount(&source, &target, &fstype, readonly, wait_ms)
        }
        Request::Symlink { target, link } => exec::symlink(&target, &link),
        Request::Exec { argv, root, cwd, env, timeout_ms } => {
            exec::exec(&argv, root.as_deref(), &cwd, &env, timeout_ms)
        }
    }
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_gets_an_error_with_id_zero() {
        let (id, r, off) = handle_line(b"\x00\xffello\"}}\n").unwrap();
        assert_eq!(id, 0);
        assert!(matches!(r, Response::Error { .. }));
        assert!(!off);
        assert!(handle_line(b"  \r\n").is_none());
    }

    #[test]
    fn unknown_op_keeps_its_id() {
        let (id, r, _) = handle_line(b"{\"id\":9,\"body\":{\"op\":\"reboot\"}}\n").unwrap();
        assert_eq!(id, 9);
        assert!(matches!(r, Response::Error { .. }));
    }

    #[test]
    fn serves_lines_until_eof() {
        let input = format!(
            "{}garbage\n{}{}",
            encode(1, &Request::Hello),
            encode(2, &Request::ReadFile { path: "/nonexistent/x".into() }),
            encode(3, &Request::WriteFile { path: "/nonexistent/x".into(), data: "1".into() }),
        );
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, false, &|| {}).unwrap();
        let lines: Vec<_> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
        assert_eq!(lines.len(), 4);
        let r: klp_protocol::Envelope<Response> = decode(&lines[2]).unwrap();
        assert_eq!(r.id, 2);
        assert!(
            matches!(r.body, Response::Errno(ref e) if e.name == "ENOENT" && e.message == "No such file or directory")
        );
    }

    #[test]
    fn list_tree_reports_modes_values_errnos_and_links() {
        let dir = std::env::temp_dir().join(format!("klp-agent-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("p/f")).unwrap();
        std::fs::write(dir.join("p/enabled"), "1\n").unwrap();
        std::os::unix::fs::symlink("../x", dir.join("p/link")).unwrap();
        let Response::Tree { entries } = ops::list_tree(dir.to_str().unwrap()) else { panic!() };
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["p", "p/enabled", "p/f", "p/link"]);
        assert_eq!(entries[1].value.as_deref(), Some("1\n"));
        assert_eq!(entries[3].target.as_deref(), Some("../x"));
        assert!(matches!(ops::list_tree("/nonexistent"), Response::Errno(ref e) if e.errno == libc::ENOENT));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wait_for_times_out_and_reports_last_value() {
        let c = klp_protocol::Condition::FileEquals { path: "/proc/sys/kernel/ostype".into(), value: "Plan9".into() };
        let Response::Waited { met, elapsed_ms, last } = ops::wait_for(&c, 50, 10) else { panic!() };
        assert!(!met && elapsed_ms >= 50);
        assert_eq!(last.as_deref(), Some("Linux\n"));
        let c = klp_protocol::Condition::Exists { path: "/proc".into() };
        assert!(matches!(ops::wait_for(&c, 0, 10), Response::Waited { met: true, .. }));
    }
}
