//! The scenario suite: TOML stories (see `README.md`) replayed against fresh fakes and a fresh
//! router, with a report per scenario and, on failure, a timeline of what happened.

pub mod format;
pub mod run;
pub mod timeline;

use std::path::{Path, PathBuf};

pub use format::{FormatError, Scenario, discover, load, parse};
pub use run::{Outcome, Report, RunOptions, run_all, run_one};

/// The directory holding the suite's scenario files (`scenarios/`, this crate's parent).
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Loads `files` (or every scenario of `dir` when `files` is empty). Every file is parsed before
/// anything runs; all parse errors are returned together.
pub fn load_all(dir: &Path, files: &[PathBuf]) -> Result<Vec<Scenario>, Vec<FormatError>> {
    let files = if files.is_empty() {
        discover(dir).map_err(|e| vec![e])?
    } else {
        files.to_vec()
    };
    let (ok, errs): (Vec<_>, Vec<_>) = files.iter().map(|f| load(f)).partition(Result::is_ok);
    if errs.is_empty() {
        Ok(ok.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(errs.into_iter().filter_map(Result::err).collect())
    }
}

/// `(passed, failed, known failures)`; a known failure does not count as failed.
pub fn tally(reports: &[Report]) -> (usize, usize, usize) {
    let failed = reports.iter().filter(|r| r.failed()).count();
    let known = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::KnownFailure { .. }))
        .count();
    (reports.len() - failed - known, failed, known)
}

/// The last line of a run: "N passed, N failed" (+ known failures when there are any).
pub fn summary_line(reports: &[Report]) -> String {
    let (passed, failed, known) = tally(reports);
    if known > 0 {
        format!("{passed} passed, {failed} failed ({known} known failures)")
    } else {
        format!("{passed} passed, {failed} failed")
    }
}
