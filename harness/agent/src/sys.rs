//! The few system calls std does not wrap, each returning the raw errno on failure.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};

/// The calling thread's errno after a failed libc call.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `strerror` text without std's " (os error N)" suffix.
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn cstr(s: &str) -> Result<CString, i32> {
    CString::new(s).map_err(|_| libc::EINVAL)
}

pub fn mount(source: &str, target: &str, fstype: &str) -> Result<(), i32> {
    mount_flags(source, target, fstype, 0)
}

/// `mount(2)` with flags (`MS_RDONLY`, …) and no data.
pub fn mount_flags(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> Result<(), i32> {
    let (s, t, f) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data is NULL.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `finit_module(fd, params, 0)`.
pub fn finit_module(file: &std::fs::File, params: &CString) -> Result<(), i32> {
    // SAFETY: the fd is open for the duration of the call and params is NUL-terminated.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `delete_module(name, O_NONBLOCK)`, as rmmod does.
pub fn delete_module(name: &CString) -> Result<(), i32> {
    // SAFETY: name is a valid NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Put a tty in raw mode: no echo, no line editing, no CR/LF translation, no flow control,
/// 8N1 at 115200 (the speed is nominal for QEMU's UART).
pub fn make_raw(fd: RawFd) -> Result<(), i32> {
    // SAFETY: termios is plain data; tcgetattr fills it completely before it is read.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open descriptor and t a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: t is a valid termios obtained above.
    unsafe { libc::cfmakeraw(&mut t) };
    // What cfset[io]speed do; the libc crate links those as versioned glibc symbols, which a
    // static link cannot resolve.
    t.c_cflag = (t.c_cflag & !libc::CBAUD) | libc::B115200;
    t.c_ispeed = libc::B115200;
    t.c_ospeed = libc::B115200;
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cflag &= !libc::CRTSCTS;
    t.c_iflag &= !(libc::IXON | libc::IXOFF | libc::IXANY);
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: fd is open and t is a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
        return Err(last_errno());
    }
    // Drop the echo of whatever arrived before raw mode took effect (the host skips it anyway).
    // Input is kept: hellos the host sent early are answered at once (noise becomes an error
    // line with id 0, which the host skips).
    // SAFETY: fd is open; flushing a queue has no memory-safety preconditions.
    unsafe { libc::tcflush(fd, libc::TCOFLUSH) };
    Ok(())
}

/// Wait until the output queue of a tty has gone out (before powering off after "done").
pub fn drain(fd: RawFd) {
    // SAFETY: fd is open; tcdrain only waits.
    unsafe { libc::tcdrain(fd) };
}

/// Point stdin, stdout and stderr at /dev/null (closing what they were: for PID 1, the
/// console the kernel opened for it).
pub fn stdio_to_dev_null() -> Result<(), i32> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open until the end of this call.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// sync(2), then power the machine off. Returns only if the reboot call failed (not PID 1 or
/// not privileged), with its errno.
pub fn power_off() -> i32 {
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    last_errno()
}
