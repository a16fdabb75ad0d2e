//! Regression snapshots of livepatch state: what a case saw at a named point, normalised so that
//! nothing that varies from run to run remains, stored per kernel release as insta snapshots
//! (`suites/snapshots/<suite>__<case>__<name>@<release>.snap`), and compared on later runs. A
//! kernel build tree's are stored as `@<release>+tree` ([`crate::kernel::snapshot_key`]), never
//! mixed with a packaged kernel's of the same release.
//!
//! [`capture`] gathers and normalises the observations; [`store`] compares them with the stored
//! file and writes new ones (`check`/`review`/`accept`); [`diff`] compares two kernels' sets and
//! [`matrix`] every kernel of a matrix with the first.

pub mod capture;
pub mod diff;
pub mod format;
pub mod matrix;
pub mod store;

pub use capture::{capture, normalise_kmsg};
pub use store::{SnapshotMode, SnapshotResult, SnapshotSettings, SnapshotStatus};
