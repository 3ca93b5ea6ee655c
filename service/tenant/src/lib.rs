//! One sors tenant directory: its configuration, its encrypted credentials and its logging.
//!
//! ```text
//! <dir>/config.toml                    settings, no secrets            (config)
//! <dir>/secureData/encryptData.json    encrypted credentials           (credentials)
//! <dir>/secureData/key                 32-byte key, mode 0600          (credentials)
//! <dir>/logs/application.YYYY-MM-DD.log daily log files                (logging)
//! ```
//!
//! See README.md beside this crate for the operator's view.

pub mod cli;
pub mod config;
pub mod credentials;
pub mod env;
mod fsutil;
pub mod logging;
pub mod proxy;

pub use config::{Config, ConfigError, LoggingConfig, Problem};
pub use credentials::{
    CicCredentials, CredentialError, CredentialStore, Credentials, SalesforceCredentials, Secret,
};
pub use env::{ProcessEnv, Source};
pub use proxy::{ProxyPolicy, effective_proxy, proxy_policy};
