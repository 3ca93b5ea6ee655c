//! The scenario suite: TOML stories (see `README.md`) replayed against fresh fakes and a fresh
//! router, with a report per scenario and, on failure, a timeline of what happened.

pub mod format;

pub use format::{FormatError, Scenario, discover, load, parse};
