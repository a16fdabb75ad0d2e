//! Running suites: [`exec`] turns one case's steps into observations and a verdict against a
//! [`Guest`]; [`run`] prepares the artefacts per kernel, gives every case a fresh VM and streams
//! the outcomes to the reporters.

pub mod exec;
pub mod guest;
mod run;
pub mod schedule;

pub use exec::{judge_lost_guest, run_case};
pub use guest::{Guest, GuestError, GuestFault, VmGuest};
pub use run::{chain, chain_error, coverage, list, run, RunConfig, RunError};
