//! The conformance suites are data (`*.yaml` beside this file) and their regression snapshots
//! (`snapshots/`); this crate has no code. `tests/valid.rs` checks that every suite is valid;
//! `tests/conformance.rs` runs every case × kernel as a test (`cargo nextest run -p
//! klp-conform-suites`).

#![forbid(unsafe_code)]

/// The directory holding the suite files.
pub const SUITES_DIR: &str = env!("CARGO_MANIFEST_DIR");
