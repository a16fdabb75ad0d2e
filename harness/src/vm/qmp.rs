//! QMP over a unix socket with the `qapi` crate's blocking client, plus what it lacks: a read
//! timeout, no panic on an early EOF, and a way to collect events without blocking.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use qapi::qmp::{self, Event};
use qapi::{Qmp, Stream};

type QmpStream = Stream<BufReader<UnixStream>, UnixStream>;

/// What the harness cares about among QMP events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest panicked (pvpanic); with `-action panic=pause` the VM is now paused.
    GuestPanicked,
    /// QEMU is shutting down; `reason` as QMP names it (`guest-shutdown`, `guest-reset`, …).
    Shutdown {
        guest: bool,
        reason: String,
    },
    /// The VM stopped running (paused).
    Stop,
    Other(String),
}

impl VmEvent {
    /// A SHUTDOWN the guest caused by resetting (with `-no-reboot`) or by panicking.
    pub fn is_guest_reset(&self) -> bool {
        matches!(self, Self::Shutdown { reason, .. } if reason == "guest-reset" || reason == "guest-panic")
    }
}

impl std::fmt::Display for VmEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GuestPanicked => f.write_str("GUEST_PANICKED"),
            Self::Shutdown { guest, reason } => write!(f, "SHUTDOWN (reason {reason}, guest {guest})"),
            Self::Stop => f.write_str("STOP"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

fn convert(e: Event) -> VmEvent {
    match e {
        Event::GUEST_PANICKED { .. } => VmEvent::GuestPanicked,
        Event::SHUTDOWN { data, .. } => VmEvent::Shutdown {
            guest: data.guest,
            reason: serde_json::to_value(data.reason)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_else(|| format!("{:?}", data.reason)),
        },
        Event::STOP { .. } => VmEvent::Stop,
        other => VmEvent::Other(
            serde_json::to_value(&other)
                .ok()
                .and_then(|v| v.get("event").and_then(|n| n.as_str()).map(String::from))
                .unwrap_or_else(|| "event".into()),
        ),
    }
}

pub struct QmpConn {
    qmp: Qmp<QmpStream>,
    sock: UnixStream,
}

impl QmpConn {
    /// Handshake on a connected socket: read the greeting, negotiate capabilities.
    pub fn handshake(sock: UnixStream) -> Result<Self, std::io::Error> {
        // Answers to commands come within milliseconds; a stuck QEMU must not block us.
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut qmp = Qmp::new(Stream::new(BufReader::new(sock.try_clone()?), sock.try_clone()?));
        // qapi's read_capabilities panics on EOF: make sure the greeting is there first. Under
        // load a line that is not the greeting was seen first once in ~80 boots ("missing
        // field `QMP`"); skip such lines (at most a few) rather than fail the boot.
        for _ in 0..8 {
            let buf = qmp.inner_mut().fill_buf()?;
            if buf.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "QMP closed before its greeting"));
            }
            let Some(end) = buf.iter().position(|&b| b == b'\n') else { break };
            if buf[..end].windows(5).any(|w| w == b"\"QMP\"") {
                break;
            }
            qmp.inner_mut().consume(end + 1);
        }
        qmp.handshake().map_err(std::io::Error::from)?;
        Ok(Self { qmp, sock })
    }

    /// Whether QEMU sent something we have not read (an event, or EOF).
    fn pending(&self) -> bool {
        if !self.qmp.inner().get_ref_read().buffer().is_empty() {
            return true;
        }
        let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: pfd is a valid pollfd for an open descriptor; timeout 0 never blocks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0
    }

    /// The events QEMU sent since the last call, without blocking when there are none. The
    /// sync client reads events only while it waits for a response, so when something is
    /// pending this sends a no-op command to pull it in.
    pub fn events(&mut self) -> Result<Vec<VmEvent>, std::io::Error> {
        if self.pending() {
            self.qmp.nop()?;
        }
        Ok(self.qmp.events().map(convert).collect())
    }

    /// `query-status`: e.g. `running`, `paused`, `guest-panicked`, `shutdown`.
    pub fn status(&mut self) -> Result<String, std::io::Error> {
        let st = self.qmp.execute(&qmp::query_status {}).map_err(std::io::Error::from)?;
        Ok(serde_json::to_value(st.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| format!("{:?}", st.status)))
    }

    /// `stop`: the vCPUs stop where they are (the guest neither runs nor dies).
    pub fn stop(&mut self) -> Result<(), std::io::Error> {
        self.qmp.execute(&qmp::stop {}).map(drop).map_err(std::io::Error::from)
    }

    /// `cont`: the vCPUs run again (after `stop`, or after an incoming migration).
    pub fn cont(&mut self) -> Result<(), std::io::Error> {
        self.qmp.execute(&qmp::cont {}).map(drop).map_err(std::io::Error::from)
    }

    /// `migrate` to `uri` (e.g. `exec:cat > FILE`): the VM's whole state goes there.
    pub fn migrate(&mut self, uri: &str) -> Result<(), std::io::Error> {
        let cmd = qmp::migrate { uri: Some(uri.into()), channels: None, detach: None, resume: None };
        self.qmp.execute(&cmd).map(drop).map_err(std::io::Error::from)
    }

    /// `migrate-incoming` from `uri` (QEMU started with `-incoming defer`).
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), std::io::Error> {
        let cmd = qmp::migrate_incoming { uri: Some(uri.into()), channels: None, exit_on_error: None };
        self.qmp.execute(&cmd).map(drop).map_err(std::io::Error::from)
    }

    /// `query-migrate`'s status (`active`, `completed`, `failed`, …; `none` before any) and its
    /// error description when it failed.
    pub fn migration_status(&mut self) -> Result<(String, Option<String>), std::io::Error> {
        let info = self.qmp.execute(&qmp::query_migrate {}).map_err(std::io::Error::from)?;
        let status = info
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "none".into());
        Ok((status, info.error_desc))
    }

    /// `chardev-add` of a unix socket client (QEMU connects to `path`, e.g. a vhost-user
    /// daemon's socket).
    pub fn chardev_add_unix(&mut self, id: &str, path: &std::path::Path) -> Result<(), std::io::Error> {
        // The typed command is deep (backend → socket → address); built from its JSON form.
        let cmd: qmp::chardev_add = serde_json::from_value(serde_json::json!({
            "id": id,
            "backend": {"type": "socket", "data": {
                "addr": {"type": "unix", "data": {"path": path}},
                "server": false,
            }},
        }))
        .map_err(std::io::Error::other)?;
        self.qmp.execute(&cmd).map(drop).map_err(std::io::Error::from)
    }

    /// `device_add` of `driver` with `id` and the device's properties.
    pub fn device_add(&mut self, driver: &str, id: &str, props: &[(&str, &str)]) -> Result<(), std::io::Error> {
        let arguments = props.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        let cmd = qmp::device_add { driver: driver.into(), id: Some(id.into()), bus: None, arguments };
        self.qmp.execute(&cmd).map(drop).map_err(std::io::Error::from)
    }

    /// `quit`: QEMU exits at once (the guest gets no say).
    pub fn quit(&mut self) -> Result<(), std::io::Error> {
        match self.qmp.execute(&qmp::quit {}) {
            Ok(_) => Ok(()),
            // QEMU may close the socket before the answer arrives: that is success too.
            Err(qapi::ExecuteError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
