//! Panicking conveniences over `sors_testbed` for tests.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::json;
pub use sors_testbed::{Bed, BedOptions};

pub async fn bed() -> Bed {
    Bed::start(BedOptions::default()).await.expect("test bed")
}

pub async fn wait(bed: &Bed, what: &str, secs: u64, cond: impl Fn(&Bed) -> bool) {
    if let Err(e) = bed.wait_for(what, Duration::from_secs(secs), cond).await {
        panic!("{e}\nrows: {:#}", json!(bed.rows()));
    }
}
