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

    /// A login refused for the user name, password or security token (SOAP `INVALID_LOGIN`,
    /// OAuth `invalid_grant: authentication failure`).
    pub fn is_invalid_login(&self) -> bool {
        self.login_text().is_some_and(|m| {
            m.starts_with("INVALID_LOGIN")
                || m.contains("sf:INVALID_LOGIN")
                || m.starts_with("invalid_grant: authentication failure")
        })
    }

    /// The API is not enabled for the org or the user (`API_DISABLED_FOR_ORG`,
    /// `API_CURRENTLY_DISABLED`), at login or on the first call after it.
    pub fn is_api_disabled(&self) -> bool {
        let text = match self {
            SfError::Login(m) | SfError::SessionRejected(m) => m.as_str(),
            SfError::Api { code, .. } => code.as_str(),
            _ => return false,
        };
        text.contains("API_DISABLED_FOR_ORG") || text.contains("API_CURRENTLY_DISABLED")
    }

    /// Too many logins for the user in a short time (`LOGIN_RATE_EXCEEDED`).
    pub fn is_login_rate_exceeded(&self) -> bool {
        self.login_text()
            .is_some_and(|m| m.contains("LOGIN_RATE_EXCEEDED"))
    }

    /// The OAuth client id or secret was refused (`invalid_client_id`, `invalid_client`).
    pub fn is_invalid_client(&self) -> bool {
        self.login_text()
            .is_some_and(|m| m.starts_with("invalid_client"))
    }

    /// The flow is not allowed at this login host: the client-credentials flow needs the org's
    /// My Domain (`invalid_grant: request not supported on this domain`).
    pub fn needs_my_domain(&self) -> bool {
        self.login_text()
            .is_some_and(|m| m.contains("not supported on this domain"))
    }

    /// The host's TLS certificate was not accepted.
    pub fn is_certificate_problem(&self) -> bool {
        matches!(self, SfError::Transport(m) if m.to_ascii_lowercase().contains("certificate"))
    }

    /// No answer from the host (refused, unknown host name, timeout, reset), certificate
    /// problems aside.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SfError::Transport(_)) && !self.is_certificate_problem()
    }

    fn login_text(&self) -> Option<&str> {
        match self {
            SfError::Login(m) => Some(m),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_refusals_are_told_apart() {
        let soap = |m: &str| SfError::Login(m.to_owned());
        let bad =
            soap("INVALID_LOGIN: Invalid username, password, security token; or user locked out.");
        assert!(bad.is_invalid_login() && !bad.is_api_disabled() && !bad.is_unreachable());
        assert!(soap("invalid_grant: authentication failure").is_invalid_login());
        assert!(
            soap("API_DISABLED_FOR_ORG: API is not enabled for this Organization or Partner")
                .is_api_disabled()
        );
        let api = SfError::Api {
            status: 403,
            code: "API_CURRENTLY_DISABLED".into(),
            message: "API is disabled for this User".into(),
            fields: vec![],
        };
        assert!(api.is_api_disabled() && !api.is_invalid_login());
        assert!(soap("LOGIN_RATE_EXCEEDED: Login Rate Exceeded").is_login_rate_exceeded());
        assert!(soap("invalid_client_id: client identifier invalid").is_invalid_client());
        assert!(soap("invalid_client: invalid client credentials").is_invalid_client());
        assert!(soap("invalid_grant: request not supported on this domain").needs_my_domain());
        let refused = SfError::Transport("error sending request for url (https://login.example/): client error (Connect): tcp connect error: Connection refused (os error 111)".into());
        assert!(refused.is_unreachable() && !refused.is_certificate_problem());
        let cert = SfError::Transport(
            "error sending request: invalid peer certificate: UnknownIssuer".into(),
        );
        assert!(cert.is_certificate_problem() && !cert.is_unreachable());
    }
}
