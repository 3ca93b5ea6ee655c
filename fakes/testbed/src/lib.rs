//! The test bed: both fakes plus a real `sors` router with fast timings, in one process.
//!
//! It sits beside the fakes and the product, never inside the product: the `sors` crates depend
//! on no fake and on nothing here. Users: the end-to-end, property, proxy and `check` tests
//! (`tests/`), the scenario runner, the crash tests, `sors demo` (`demo`), `sors bench`
//! (`bench`) and the dashboard's live tests (`examples/dashboard_bed.rs`). `table` is the one
//! typed view of the fake org's routing table that the oracles (crash report, property checks,
//! scenario runner) judge a run by.

mod bed;
pub mod bench;
pub mod demo;
pub mod table;
/// A real forward proxy (Debian's tinyproxy) for the proxy tests.
pub mod tinyproxy;

pub use bed::{Bed, BedOptions, fast_options};
pub use table::{CaseState, RoutingTable, Row, RowEvent, RowStatus, TableError};
