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
        // `without_url`: the URL holds the session id. The causes below it (I/O, DNS, TLS)
        // name no URL and carry no secret; they tell a refused connection from a bad
        // certificate.
        let err = err.without_url();
        let mut causes = String::new();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            causes.push_str(": ");
            causes.push_str(&s.to_string());
            source = s.source();
        }
        let lower = causes.to_ascii_lowercase();
        let kind = if err.is_timeout() {
            TIMED_OUT
        } else if err.is_connect() && lower.contains("certificate") {
            CERTIFICATE
        } else if err.is_connect() && (lower.contains("dns") || lower.contains("lookup")) {
            NO_SUCH_HOST
        } else if err.is_connect() {
            NO_CONNECTION
        } else if err.is_body() || err.is_decode() {
            "error reading the response"
        } else {
            "error sending the request"
        };
        IcwsError::Transport(format!("{kind}: {err}{causes}"))
    }

    /// CIC refused the user name or password.
    pub fn is_authentication_failure(&self) -> bool {
        self.failure_kind() == FailureKind::AuthenticationFailed
    }

    /// No connection: refused, the host name does not resolve, or no answer in time.
    pub fn is_unreachable(&self) -> bool {
        self.failure_kind() == FailureKind::Unreachable
    }

    /// The server's TLS certificate is not trusted (or not valid for its name).
    pub fn is_certificate_problem(&self) -> bool {
        self.failure_kind() == FailureKind::Certificate
    }

    /// Something answered over HTTP, but not ICWS (an error status without an ICWS error id,
    /// or a success answer this client cannot read).
    pub fn is_not_icws(&self) -> bool {
        self.failure_kind() == FailureKind::NotIcws
    }

    /// Only standby servers (`503`) answered and no alternate took the connection.
    pub fn is_standby(&self) -> bool {
        self.failure_kind() == FailureKind::Standby
    }

    /// The error that `text` shows, as [`crate::Status::last_error`] keeps it (the supervisor
    /// reports a failed connection round there, as text): the variant and kind are recovered
    /// from the `Display` form, so the predicates above answer as for the original error; the
    /// rest of the text is kept as the message.
    pub fn from_status_text(text: &str) -> IcwsError {
        let text = text.strip_prefix("session lost: ").unwrap_or(text);
        if let Some(m) = text.strip_prefix("CIC authentication failed: ") {
            IcwsError::AuthenticationFailed { message: m.into() }
        } else if let Some(m) = text.strip_prefix("ICWS request failed: ") {
            IcwsError::Transport(m.into())
        } else if let Some(rest) = text.strip_prefix("ICWS error ") {
            let (head, message) = rest.split_once(": ").unwrap_or((rest, ""));
            let (status, error_id) = match head.split_once(" (") {
                Some((st, id)) => (st, Some(id.trim_end_matches(')').to_owned())),
                None => (head, None),
            };
            IcwsError::Api {
                status: status.trim().parse().unwrap_or(0),
                error_id,
                message: message.into(),
            }
        } else if let Some(m) = text.strip_prefix("unexpected ICWS response: ") {
            IcwsError::Protocol(m.into())
        } else if let Some(m) = text.strip_prefix("invalid ICWS configuration: ") {
            IcwsError::Config(m.into())
        } else {
            IcwsError::NotConnected(text.into())
        }
    }

    fn failure_kind(&self) -> FailureKind {
        match self {
            IcwsError::AuthenticationFailed { .. } => FailureKind::AuthenticationFailed,
            IcwsError::Transport(m) => transport_kind(m),
            IcwsError::Api { status: 503, .. } => FailureKind::Standby,
            IcwsError::Api { error_id: None, .. } | IcwsError::Protocol(_) => FailureKind::NotIcws,
            IcwsError::Api { .. }
            | IcwsError::Config(_)
            | IcwsError::SessionLost
            | IcwsError::NotConnected(_)
            | IcwsError::Shutdown => FailureKind::Other,
        }
    }
}

/// How a failed connection is classified for an administrator (the predicates of
/// [`IcwsError`] answer from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    AuthenticationFailed,
    Unreachable,
    NotIcws,
    Certificate,
    Standby,
    Other,
}

const TIMED_OUT: &str = "timed out";
const CERTIFICATE: &str = "certificate not accepted";
const NO_SUCH_HOST: &str = "host name not found";
const NO_CONNECTION: &str = "could not connect";

fn transport_kind(message: &str) -> FailureKind {
    if message.starts_with(CERTIFICATE) {
        FailureKind::Certificate
    } else if [TIMED_OUT, NO_SUCH_HOST, NO_CONNECTION]
        .iter()
        .any(|k| message.starts_with(k))
    {
        FailureKind::Unreachable
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_the_text_the_status_keeps() {
        let cases = [
            (
                IcwsError::AuthenticationFailed {
                    message: "The authentication process failed.".into(),
                },
                FailureKind::AuthenticationFailed,
            ),
            (
                IcwsError::Transport(format!(
                    "{NO_CONNECTION}: error sending request: Connection refused"
                )),
                FailureKind::Unreachable,
            ),
            (
                IcwsError::Transport(format!("{NO_SUCH_HOST}: error sending request: dns error")),
                FailureKind::Unreachable,
            ),
            (
                IcwsError::Transport(format!("{TIMED_OUT}: operation timed out")),
                FailureKind::Unreachable,
            ),
            (
                IcwsError::Transport(format!(
                    "{CERTIFICATE}: invalid peer certificate: UnknownIssuer"
                )),
                FailureKind::Certificate,
            ),
            (
                IcwsError::Transport("error reading the response: body".into()),
                FailureKind::Other,
            ),
            (
                IcwsError::Api {
                    status: 503,
                    error_id: None,
                    message: "x is not accepting connections".into(),
                },
                FailureKind::Standby,
            ),
            (
                IcwsError::Api {
                    status: 404,
                    error_id: None,
                    message: "<html>".into(),
                },
                FailureKind::NotIcws,
            ),
            (
                IcwsError::Api {
                    status: 400,
                    error_id: Some("error.request.missingProperty".into()),
                    message: "missing".into(),
                },
                FailureKind::Other,
            ),
            (
                IcwsError::Protocol("connection response: expected value".into()),
                FailureKind::NotIcws,
            ),
            (IcwsError::Config("bad".into()), FailureKind::Other),
        ];
        for (e, kind) in cases {
            assert_eq!(e.failure_kind(), kind, "{e}");
            let back = IcwsError::from_status_text(&e.to_string());
            assert_eq!(back.failure_kind(), kind, "{e} read back as {back:?}");
            let lost = IcwsError::from_status_text(&format!("session lost: {e}"));
            assert_eq!(lost.failure_kind(), kind, "{e}");
        }
        let auth = IcwsError::AuthenticationFailed {
            message: "m".into(),
        };
        assert!(auth.is_authentication_failure() && !auth.is_unreachable());
    }
}
