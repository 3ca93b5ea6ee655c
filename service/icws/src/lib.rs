//! `sors-icws`: the production ICWS (CIC) client of the router.
//!
//! This crate is the only code in the product that knows ICWS JSON. It connects to the CIC
//! server (following switchover redirections), keeps the session alive, watches the routed
//! workgroup queues and the handler's result notifications, and speaks to the rest of the router
//! in `sors-core` domain types only. See `README.md` beside this file for the behaviour and the
//! decisions taken where the protocol notes are silent.
//!
//! Modules: `client` (the public handle API), `session` (shared state and session-scoped
//! requests), `connect` (one connection round with 503/alternate-host redirection),
//! `supervisor` (reconnecting and re-creating subscriptions), `messages` (SSE or polling, and
//! dispatching messages), `views` (the pure queue views), `wire` (the only code that knows ICWS
//! JSON), `sse` (the event-stream decoder), `config`, `error`.

mod client;
mod config;
mod connect;
mod error;
mod messages;
mod session;
mod sse;
mod supervisor;
mod views;
mod wire;

pub use client::{DisconnectOutcome, Icws, IcwsEvent, Status};
pub use config::{DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, IcwsConfig, MessagingMode, Secret};
pub use error::IcwsError;
pub use wire::WATCHED_ATTRIBUTES;
