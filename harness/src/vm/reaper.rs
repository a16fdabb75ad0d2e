//! QEMU must never outlive the harness, nor the virtiofsd daemons serving its shares
//! ([`super::virtiofs`]), nor the build tools it runs (make, gcc, rustc, dpkg-deb, mmdebstrap:
//! a SIGTERM during a module build must not leave kbuild writing into the cache). All are
//! registered here and handled alike. Three layers make sure of it:
//!
//! 1. `PR_SET_PDEATHSIG(SIGKILL)` in the child: the kernel kills QEMU when the harness dies,
//!    whatever killed it (Ctrl-C's default action, SIGKILL, a crash). Caveat: the signal fires
//!    when the *thread* that spawned QEMU exits, not the process, so a [`Vm`](super::Vm) must
//!    be booted on the thread that owns it for its whole life (a test's thread, a runner's
//!    worker thread), never on a short-lived helper thread.
//! 2. QEMU runs in its own process group, so the terminal's Ctrl-C does not race the harness
//!    to it, and killing `-pgid` takes any helper it forked with it.
//! 3. `Drop` of the VM kills and reaps the group. For a harness that installs its own SIGINT
//!    handler (and so does not die of Ctrl-C), [`kill_all_children`] is async-signal-safe and kills
//!    every live VM from inside the handler.

use std::sync::atomic::{AtomicI32, Ordering};

const SLOTS: usize = 128;
static LIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// Remember a QEMU process group (its pid) until [`unregister`].
pub(crate) fn register(pgid: i32) {
    for s in &LIVE {
        if s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
    // More than SLOTS VMs at once: the others still have PDEATHSIG and Drop.
}

pub(crate) fn unregister(pgid: i32) {
    for s in &LIVE {
        let _ = s.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// SIGKILL every child process group (QEMU, virtiofsd, build tools) this process started and
/// has not reaped yet. Async-signal-safe (atomics and kill(2) only): callable from a signal
/// handler.
pub fn kill_all_children() {
    for s in &LIVE {
        let pgid = s.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill has no memory-safety preconditions; a stale pgid at worst hits
            // nothing (pids are not reused while the zombie is unreaped, and we reap only
            // after unregistering).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// The `pre_exec` hook of QEMU's `Command`: die with the spawning thread.
///
/// # Safety
/// Runs between fork and exec: only async-signal-safe calls (prctl, getppid, _exit).
pub(crate) unsafe fn die_with_parent(parent: i32) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The parent may have died before prctl took effect: then nobody would kill us.
    // SAFETY: getppid and _exit are async-signal-safe and have no preconditions.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    Ok(())
}
