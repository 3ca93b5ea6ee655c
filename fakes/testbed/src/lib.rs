//! The test bed: both fakes plus a real `sors` router with fast timings, in one process.
//!
//! It sits beside the fakes and the product, never inside the product: the `sors` crates depend
//! on no fake and on nothing here. Users: the end-to-end, property, proxy and `check` tests
//! (`tests/`), the scenario runner, the crash tests, `sors demo` (`demo`), `sors bench`
//! (`bench`) and the dashboard's live tests (`examples/dashboard_bed.rs`).

mod bed;
pub mod bench;
pub mod demo;

pub use bed::{Bed, BedOptions, fast_options};
