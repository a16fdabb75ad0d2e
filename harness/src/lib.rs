//! klp-conform: conformance and benchmark harness for Linux kernel livepatching.
//!
//! Data flows one way: suite files → typed suite model → plan (which modules, which kernel) →
//! artefacts (kernel, modules, initramfs) → VM → observations → verdicts → reports.

pub mod agent_client;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod fsutil;
pub mod image;
pub mod kernel;
pub mod kernel_mutants;
pub mod kmod;
pub mod mutation;
pub mod progress;
pub mod report;
pub mod runner;
pub mod snapshot;
pub mod suite;
pub mod tools;
pub mod upstream;
pub mod usermod;
pub mod vm;
pub mod yaml;
