//! Progress for long work goes to stderr (stdout carries KTAP), one line per event, with the
//! time since the run started so slow phases stand out in CI logs.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Progress {
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self { start: Instant::now(), quiet: false }
    }

    /// A progress sink that prints nothing (unit tests).
    pub fn quiet() -> Self {
        Self { start: Instant::now(), quiet: true }
    }

    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("[{:7.1}s] {}", self.start.elapsed().as_secs_f64(), msg.as_ref());
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
