//! System tests of the sors router as a separate process: killed with SIGKILL at random
//! moments during a burst and restarted, or stopped with SIGTERM and restarted; then a
//! classified report of what was lost, duplicated, late or disconnected without cause.
//! The test binary is `tests/crash.rs`; README.md says how to run it.

pub mod check;
pub mod child;
pub mod report;
pub mod workload;

/// What can go wrong in the harness itself (not a finding about the router).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("router process: {0}")]
    Child(String),
    #[error("unexpected record: {0}")]
    Record(String),
    #[error("workload: {0}")]
    Workload(String),
    #[error("set-up: {0}")]
    Setup(String),
}

impl HarnessError {
    pub fn io(what: &'static str, source: std::io::Error) -> HarnessError {
        HarnessError::Io { what, source }
    }
}
