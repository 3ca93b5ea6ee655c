//! Connecting: one round over the configured servers, the alternates the last session named
//! and the alternates of each 503 (CIC's switchover redirection, at most `max_redirects`
//! followed), giving a [`Session`] or the most telling error of the round.
//!
//! It must never subscribe, read messages, send an [`crate::IcwsEvent`], publish the session or
//! wait between rounds: the supervisor does all of that with what a round returns.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, SET_COOKIE};
use tracing::warn;
use url::Url;

use crate::config::{display_server, resolve_alternate};
use crate::error::IcwsError;
use crate::session::{Inner, Session, api_error, lock};
use crate::wire;

/// Why one connect attempt did not give a session.
enum AttemptError {
    Redirect(Vec<String>),
    Failed(IcwsError),
}

impl Inner {
    /// One connect attempt against one server.
    async fn connect_once(&self, base: &Url, generation: u64) -> Result<Session, AttemptError> {
        let fail = AttemptError::Failed;
        let url = base
            .join("icws/connection")
            .map_err(|_| fail(IcwsError::Config("bad server URL".into())))?;
        let body = wire::connect_body(
            &self.cfg.application_name,
            &self.cfg.user,
            self.cfg.password.expose(),
        );
        let http = self.http();
        let started = std::time::Instant::now();
        let resp = http
            .client
            .post(url.clone())
            .query(&[("include", "features,version")])
            .timeout(self.cfg.request_timeout)
            .header(ACCEPT, wire::MEDIA_TYPE)
            .header("Accept-Language", "en-us")
            .header(CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(body.to_string())
            .send()
            .await;
        self.cfg.observer.call("POST connection", started.elapsed());
        let resp = resp.map_err(|e| fail(http.transport(&url, e)))?;
        if let Some(refused) = http.refusal(&url, &resp) {
            return Err(fail(refused));
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| fail(IcwsError::transport(e)))?;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(AttemptError::Redirect(
                wire::ErrorBody::parse(&bytes).alternate_host_list,
            ));
        }
        if !status.is_success() {
            let err = wire::ErrorBody::parse(&bytes);
            let auth = err
                .error_id
                .as_deref()
                .is_some_and(|id| id.contains("authenticationFailure"));
            if (status == StatusCode::BAD_REQUEST && auth) || status == StatusCode::UNAUTHORIZED {
                return Err(fail(IcwsError::AuthenticationFailed {
                    message: err
                        .message
                        .unwrap_or_else(|| "the user name or password was refused".into()),
                }));
            }
            return Err(fail(api_error(status, &bytes)));
        }
        let parsed: wire::ConnectionResponse = if bytes.iter().all(u8::is_ascii_whitespace) {
            wire::ConnectionResponse::default()
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| fail(IcwsError::Protocol(format!("connection response: {e}"))))?
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .filter(|v| !v.is_empty())
        };
        let id = parsed
            .session_id
            .filter(|v| !v.is_empty())
            .or_else(|| header(wire::SESSION_HEADER))
            .ok_or_else(|| {
                fail(IcwsError::Protocol(
                    "connection response without sessionId".into(),
                ))
            })?;
        let csrf = parsed
            .csrf_token
            .filter(|v| !v.is_empty())
            .or_else(|| header(wire::CSRF_HEADER))
            .ok_or_else(|| {
                fail(IcwsError::Protocol(
                    "connection response without csrfToken".into(),
                ))
            })?;
        let cookies: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::trim)
            .filter(|c| c.contains('='))
            .collect();
        let alternates = parsed
            .alternate_host_list
            .iter()
            .filter_map(|a| resolve_alternate(base, a))
            .collect();
        *lock(&self.learned_alternates) = alternates;
        let sse_offered = parsed
            .features
            .iter()
            .any(|f| f.feature_id.eq_ignore_ascii_case("messaging") && f.version >= 2);
        Ok(Session {
            base: base.clone(),
            id,
            csrf,
            cookie: (!cookies.is_empty()).then(|| cookies.join("; ")),
            generation,
            server: display_server(base),
            backup: self.servers.first() != Some(base),
            sse_offered,
            subscribed: Mutex::new(BTreeSet::new()),
        })
    }

    /// One round over the configured servers, the alternates learned from the last session
    /// and any 503 redirections (at most `max_redirects` followed).
    pub(crate) async fn connect_round(&self, generation: u64) -> Result<Arc<Session>, IcwsError> {
        self.refresh_http();
        let mut queue: VecDeque<Url> = self.servers.iter().cloned().collect();
        queue.extend(lock(&self.learned_alternates).iter().cloned());
        let mut tried = HashSet::new();
        let mut redirects = 0;
        let mut last_error = IcwsError::NotConnected("no server to try".into());
        while let Some(url) = queue.pop_front() {
            if !tried.insert(url.clone()) {
                continue;
            }
            let server = display_server(&url);
            match self.connect_once(&url, generation).await {
                Ok(s) => return Ok(Arc::new(s)),
                Err(AttemptError::Redirect(alternates)) => {
                    warn!(event = "icws.redirect", server = %server, alternates = ?alternates, "Error: 503: Connecting to alternate CIC Server");
                    keep_telling(
                        &mut last_error,
                        IcwsError::Api {
                            status: 503,
                            error_id: None,
                            message: format!("{server} is not accepting connections"),
                        },
                    );
                    if redirects < self.cfg.max_redirects {
                        redirects += 1;
                        for alt in alternates.iter().rev() {
                            match resolve_alternate(&url, alt) {
                                Some(alt) if !tried.contains(&alt) => queue.push_front(alt),
                                _ => {}
                            }
                        }
                    }
                }
                Err(AttemptError::Failed(e)) => {
                    warn!(event = "icws.connect_attempt_failed", server = %server, error = %e, "CIC server did not accept the connection");
                    keep_telling(&mut last_error, e);
                }
            }
        }
        Err(last_error)
    }
}

/// How much an error of a connection round tells an administrator: a refused password says more
/// than an unreachable server, which says more than a standby's 503 (the standby is doing its
/// job; the real cause is elsewhere).
fn telling(e: &IcwsError) -> u8 {
    match e {
        IcwsError::AuthenticationFailed { .. } | IcwsError::Config(_) => 4,
        IcwsError::Api { status: 503, .. } => 1,
        IcwsError::Api { .. } | IcwsError::Protocol(_) => 3,
        IcwsError::Transport(_) => 2,
        IcwsError::NotConnected(_) | IcwsError::SessionLost | IcwsError::Shutdown => 0,
    }
}

/// Keeps the more telling of two errors (the newer one on a tie).
fn keep_telling(kept: &mut IcwsError, new: IcwsError) {
    if telling(&new) >= telling(kept) {
        *kept = new;
    }
}
