//! The routing rules and the row lifecycle of sors, as pure code.
//!
//! Architecture invariant: nothing in this crate does I/O, reads a clock, or is async. Time and
//! randomness come in as values; effects go out as values. Everything here is tested without
//! sockets.

pub mod backoff;
mod live;
pub mod model;
pub mod observe;
pub mod proxy;
pub mod router;
pub mod rules;
pub mod secret;

pub use model::*;
pub use secret::Secret;
