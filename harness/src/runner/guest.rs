//! The guest as the executor sees it (the port of the runner): a [`Guest`] answers requests
//! with observations, or fails to be asked with a [`GuestError`] that says whose fault that is.
//! [`VmGuest`] is the real one, a booted [`Vm`] and its agent; unit tests use a fake.

use std::time::Duration;

use klp_protocol::{Condition, Errno, KmsgRecord, ReaderState, TaskInfo, TreeEntry};

use crate::agent_client::{AgentClient, AgentError};
use crate::vm::Vm;

/// The guest as the executor needs it. The real one is a VM with the agent; unit tests use a
/// fake. `Ok(Err(errno))` is an observation (the kernel said no); `Err(GuestError)` means the
/// guest could not be asked (agent gone, VM dead).
pub trait Guest {
    fn read_file(&mut self, path: &str) -> Result<Result<String, Errno>, GuestError>;
    fn write_file(&mut self, path: &str, data: &str) -> Result<Result<(), Errno>, GuestError>;
    fn load_module(&mut self, path: &str, params: &str) -> Result<Result<(), Errno>, GuestError>;
    fn unload_module(&mut self, name: &str) -> Result<Result<(), Errno>, GuestError>;
    /// Poll `cond` in the guest; `Ok((met, last value seen))`.
    fn wait_for(&mut self, cond: Condition, timeout: Duration) -> Result<(bool, Option<String>), GuestError>;
    fn list_tree(&mut self, path: &str) -> Result<Result<Vec<TreeEntry>, Errno>, GuestError>;
    /// Kernel log records with a sequence number >= `since_seq`.
    fn read_kmsg(&mut self, since_seq: u64) -> Result<Vec<KmsgRecord>, GuestError>;
    fn tasks(&mut self) -> Result<Vec<TaskInfo>, GuestError>;
    fn start_reader(&mut self, tag: &str, path: &str) -> Result<i32, GuestError>;
    fn reader_status(&mut self, tag: &str) -> Result<ReaderState, GuestError>;
    /// An oops, BUG, WARNING or panic the kernel printed so far, as an excerpt.
    fn kernel_problem(&mut self) -> Option<String>;
    /// The kernel console so far (to judge a guest that stopped answering).
    fn console_text(&mut self) -> String;
}

/// Why the guest could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// The VM reported the kernel dead: a panic (QMP or console), the guest resetting itself.
    KernelDied,
    /// The agent stopped answering or its channel broke, and the VM reported no death: the
    /// console decides whether the kernel is to blame ([`judge_lost_guest`]).
    Lost,
    /// Something else the harness could not do (a request the agent refused, a snapshot it
    /// could not store).
    Harness,
}

/// The guest could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GuestError {
    /// One line.
    pub message: String,
    pub fault: GuestFault,
    /// Console lines that show what happened, when the VM had them at hand (a panic).
    pub excerpt: Option<String>,
}

impl GuestError {
    pub fn harness(message: impl Into<String>) -> Self {
        Self { message: message.into(), fault: GuestFault::Harness, excerpt: None }
    }

    /// A failed agent call: whether the VM saw the kernel die, the channel was lost (the
    /// console decides: [`super::exec::judge_lost_guest`]) or the agent could not serve it.
    pub fn from_agent(e: &AgentError) -> Self {
        let fault = if e.kernel_died() {
            GuestFault::KernelDied
        } else if e.is_lost_channel() {
            GuestFault::Lost
        } else {
            GuestFault::Harness
        };
        let excerpt = match e {
            AgentError::GuestDied { gone, .. } => Some(gone.excerpt.clone()),
            _ => None,
        };
        GuestError { message: e.summary(), fault, excerpt }
    }
}

/// The executor's view of a booted VM.
pub struct VmGuest<'a> {
    vm: &'a mut Vm,
}

impl<'a> VmGuest<'a> {
    pub fn new(vm: &'a mut Vm) -> Self {
        Self { vm }
    }

    /// One agent call. A failure says whether the VM saw the kernel die, the channel was lost
    /// (the executor then reads the console: [`super::exec::judge_lost_guest`]) or the agent
    /// could not serve the request.
    fn call<T>(&mut self, f: impl FnOnce(&mut AgentClient) -> Result<T, AgentError>) -> Result<T, GuestError> {
        f(self.vm.agent()).map_err(|e| GuestError::from_agent(&e))
    }
}

impl Guest for VmGuest<'_> {
    fn read_file(&mut self, path: &str) -> Result<Result<String, Errno>, GuestError> {
        self.call(|a| a.read_file(path))
    }
    fn write_file(&mut self, path: &str, data: &str) -> Result<Result<(), Errno>, GuestError> {
        self.call(|a| a.write_file(path, data))
    }
    fn load_module(&mut self, path: &str, params: &str) -> Result<Result<(), Errno>, GuestError> {
        self.call(|a| a.load_module(path, params))
    }
    fn unload_module(&mut self, name: &str) -> Result<Result<(), Errno>, GuestError> {
        self.call(|a| a.unload_module(name))
    }
    fn wait_for(&mut self, cond: Condition, timeout: Duration) -> Result<(bool, Option<String>), GuestError> {
        self.call(|a| a.wait_for(cond, timeout))
    }
    fn list_tree(&mut self, path: &str) -> Result<Result<Vec<TreeEntry>, Errno>, GuestError> {
        self.call(|a| a.list_tree(path))
    }
    fn read_kmsg(&mut self, since_seq: u64) -> Result<Vec<KmsgRecord>, GuestError> {
        self.call(|a| a.read_kmsg(since_seq))
    }
    fn tasks(&mut self) -> Result<Vec<TaskInfo>, GuestError> {
        self.call(|a| a.tasks())
    }
    fn start_reader(&mut self, tag: &str, path: &str) -> Result<i32, GuestError> {
        self.call(|a| a.start_reader(tag, path))
    }
    fn reader_status(&mut self, tag: &str) -> Result<ReaderState, GuestError> {
        self.call(|a| a.reader_status(tag))
    }
    fn kernel_problem(&mut self) -> Option<String> {
        self.vm.console_problem().map(|p| p.excerpt)
    }
    fn console_text(&mut self) -> String {
        self.vm.console_text()
    }
}
