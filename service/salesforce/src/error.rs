//! The crate's error type. No variant ever carries a password, secret or session id.

use thiserror::Error;

/// An error talking to Salesforce.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SfError {
    /// Bad configuration (URL, versions, API names).
    #[error("configuration error: {0}")]
    Config(String),
    /// Login refused: SOAP fault string, OAuth `error: error_description`, or an unusable answer.
    #[error("Salesforce login failed: {0}")]
    Login(String),
    /// A REST call answered with an error: the first `errorCode`/`message` of the error array.
    #[error("Salesforce API error (HTTP {status}) {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// One record of an sObject Collections call failed (the call itself succeeded).
    #[error("Salesforce record error {code}: {message}")]
    Record {
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// The session was rejected again right after a fresh login (expired password, blocked
    /// flow, missing API permission...): retrying will not help.
    #[error("Salesforce rejected the session right after a fresh login: {0}")]
    SessionRejected(String),
    /// The request never got an HTTP answer (connect, TLS, timeout, reset).
    #[error("transport error: {0}")]
    Transport(String),
    /// An answer that does not follow the protocol (bad JSON, missing fields).
    #[error("unexpected answer from Salesforce: {0}")]
    Protocol(String),
}

impl SfError {
    /// The Salesforce `errorCode` / `statusCode`, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SfError::Api { code, .. } | SfError::Record { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            SfError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        // reqwest's message names the URL (no secrets: tokens travel in headers only).
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        SfError::Transport(msg)
    }
}

pub type Result<T, E = SfError> = std::result::Result<T, E>;
