//! Errors of the ICWS client. No variant ever carries a password, CSRF token, cookie or
//! session id (request URLs, which contain the session id, are stripped from transport errors).

/// An error from the ICWS client.
#[derive(Debug, thiserror::Error)]
pub enum IcwsError {
    /// The server answered with an error status.
    #[error("ICWS error {status}{}: {message}", error_id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default())]
    Api {
        status: u16,
        error_id: Option<String>,
        message: String,
    },
    /// `POST /icws/connection` refused the user name or password.
    #[error("CIC authentication failed: {message}")]
    AuthenticationFailed { message: String },
    /// The session ended (401) while the request was being made; the client reconnects.
    #[error("ICWS session lost; reconnecting")]
    SessionLost,
    /// There is no session and none came up within the configured wait.
    #[error("not connected to CIC: {0}")]
    NotConnected(String),
    /// The request did not get an HTTP answer (connection refused, timeout, ...).
    #[error("ICWS request failed: {0}")]
    Transport(String),
    /// The server answered 2xx with something this client cannot read.
    #[error("unexpected ICWS response: {0}")]
    Protocol(String),
    #[error("invalid ICWS configuration: {0}")]
    Config(String),
    #[error("ICWS client is shut down")]
    Shutdown,
}

impl IcwsError {
    /// Whether the same request may succeed later (after a reconnection or a transient fault).
    pub fn is_retryable(&self) -> bool {
        match self {
            IcwsError::SessionLost | IcwsError::NotConnected(_) | IcwsError::Transport(_) => true,
            IcwsError::Api { status, .. } => *status >= 500 || *status == 401 || *status == 410,
            IcwsError::AuthenticationFailed { .. }
            | IcwsError::Protocol(_)
            | IcwsError::Config(_)
            | IcwsError::Shutdown => false,
        }
    }

    pub(crate) fn transport(err: reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else if err.is_body() || err.is_decode() {
            "error reading the response"
        } else {
            "error sending the request"
        };
        // `without_url`: the URL holds the session id.
        let err = err.without_url();
        IcwsError::Transport(format!("{kind}: {err}"))
    }
}
