//! The conformance suites are data (`*.yaml` beside this file) and their regression snapshots
//! (`snapshots/`); this crate has no code. See `tests/` for the checks that every suite is valid.

/// The directory holding the suite files.
pub const SUITES_DIR: &str = env!("CARGO_MANIFEST_DIR");
