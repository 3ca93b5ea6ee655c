//! The sors service: the runtime that wires the Salesforce and ICWS clients to the routing
//! core, the status endpoints, the tenant wiring and the commands (`serve`, `check`, `demo`).

pub mod bench;
pub mod check;
pub mod demo;
pub mod history;
pub mod runtime;
pub mod serve;
pub mod status;
pub mod testbed;
pub mod wiring;
