//! The state shared by every handle and the supervisor ([`Inner`]), one CIC session
//! ([`Session`]), and the session-scoped requests everyone makes: building and sending a request
//! with the session's CSRF token and cookie, judging its answer (a 401 reports the session lost),
//! waiting for a session, and creating or deleting one queue watch.
//!
//! It must never connect, reconnect, read messages or send an [`crate::IcwsEvent`]: a request
//! that finds the session gone only reports it to the supervisor (`report_lost`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use url::Url;

use crate::client::Status;
use crate::config::IcwsConfig;
use crate::error::IcwsError;
use crate::views::QueueViews;
use crate::wire;

/// One CIC session.
pub(crate) struct Session {
    pub(crate) base: Url,
    pub(crate) id: String,
    pub(crate) csrf: String,
    pub(crate) cookie: Option<String>,
    pub(crate) generation: u64,
    pub(crate) server: String,
    pub(crate) backup: bool,
    pub(crate) sse_offered: bool,
    /// Workgroup queues this session really watches (a failed PUT is not in here, so the next
    /// `set_watched_workgroups` tries it again).
    pub(crate) subscribed: Mutex<BTreeSet<String>>,
}

/// Everything the handles and the supervisor share.
pub(crate) struct Inner {
    pub(crate) cfg: IcwsConfig,
    pub(crate) servers: Vec<Url>,
    /// Rebuilt by a connection round when the proxy policy changed.
    pub(crate) http: Mutex<crate::client::Http>,
    pub(crate) session: watch::Sender<Option<Arc<Session>>>,
    /// The watched workgroups and their queue views.
    pub(crate) queues: Mutex<QueueViews>,
    /// Serialises subscription changes (router calls and the supervisor's re-subscription).
    pub(crate) subscriptions: tokio::sync::Mutex<()>,
    pub(crate) status: Mutex<Status>,
    pub(crate) learned_alternates: Mutex<Vec<Url>>,
    pub(crate) lost_tx: mpsc::UnboundedSender<(u64, String)>,
    /// Cancelled by [`crate::Icws::shutdown`] or when the last handle is dropped.
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error status as an [`IcwsError::Api`], with CIC's error id and message when it sent them.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> IcwsError {
    let parsed = wire::ErrorBody::parse(body);
    IcwsError::Api {
        status: status.as_u16(),
        error_id: parsed.error_id,
        message: parsed.message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        }),
    }
}

impl Inner {
    pub(crate) fn current_session(&self) -> Option<Arc<Session>> {
        self.session.borrow().clone()
    }

    pub(crate) fn report_lost(&self, generation: u64, reason: String) {
        // The receiver lives as long as the supervisor; after shutdown nobody needs to know.
        let _ = self.lost_tx.send((generation, reason));
    }

    pub(crate) fn set_last_error(&self, e: String) {
        lock(&self.status).last_error = Some(e);
    }

    /// The current session, waiting up to `session_wait` for one.
    pub(crate) async fn wait_session(&self) -> Result<Arc<Session>, IcwsError> {
        if self.shutdown.is_cancelled() {
            return Err(IcwsError::Shutdown);
        }
        let mut rx = self.session.subscribe();
        let wait = async {
            match rx.wait_for(Option::is_some).await {
                Ok(s) => s.clone().ok_or(IcwsError::Shutdown),
                Err(_) => Err(IcwsError::Shutdown),
            }
        };
        tokio::select! {
            r = tokio::time::timeout(self.cfg.session_wait, wait) => match r {
                Ok(r) => r,
                Err(_) => {
                    let why = lock(&self.status).last_error.clone().unwrap_or_else(|| "reconnecting".into());
                    Err(IcwsError::NotConnected(format!("no CIC session within {:?} ({why})", self.cfg.session_wait)))
                }
            },
            _ = self.shutdown.cancelled() => Err(IcwsError::Shutdown),
        }
    }

    fn session_url(s: &Session, segments: &[&str]) -> Result<Url, IcwsError> {
        let mut url = s.base.clone();
        url.path_segments_mut()
            .map_err(|_| IcwsError::Config("server URL cannot take a path".into()))?
            .pop_if_empty()
            .push("icws")
            .push(&s.id)
            .extend(segments);
        Ok(url)
    }

    pub(crate) fn session_request(
        &self,
        s: &Session,
        method: Method,
        segments: &[&str],
        accept: &str,
    ) -> Result<reqwest::RequestBuilder, IcwsError> {
        let url = Self::session_url(s, segments)?;
        let mut rb = self
            .http()
            .client
            .request(method, url)
            .header(ACCEPT, accept)
            .header("Accept-Language", "en-us")
            .header(wire::CSRF_HEADER, &s.csrf);
        if let Some(cookie) = &s.cookie {
            rb = rb.header(COOKIE, cookie);
        }
        Ok(rb)
    }

    /// One session request with the ordinary timeout; returns any HTTP answer.
    pub(crate) async fn send(
        &self,
        s: &Session,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        accept: &str,
    ) -> Result<(StatusCode, Bytes), IcwsError> {
        let method_name = method.as_str().to_owned();
        let mut rb = self
            .session_request(s, method, segments, accept)?
            .timeout(self.cfg.request_timeout);
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(body) = body {
            rb = rb
                .header(CONTENT_TYPE, wire::CONTENT_TYPE)
                .body(body.to_string());
        }
        let started = std::time::Instant::now();
        let sent = rb.send().await;
        // Time to the answer's headers, failures included; the kind is the method and the
        // first path segment (`POST interactions`, `PUT messaging`).
        self.cfg.observer.call(
            &format!(
                "{} {}",
                method_name,
                segments.first().copied().unwrap_or("")
            ),
            started.elapsed(),
        );
        let resp = sent.map_err(IcwsError::transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(IcwsError::transport)?;
        Ok((status, bytes))
    }

    /// Accepts any 2xx; a 401 reports the session lost.
    pub(crate) fn check(
        &self,
        s: &Session,
        what: &str,
        status: StatusCode,
        body: &Bytes,
    ) -> Result<Bytes, IcwsError> {
        if status.is_success() {
            return Ok(body.clone());
        }
        if status == StatusCode::UNAUTHORIZED {
            self.report_lost(s.generation, format!("401 on {what}"));
            return Err(IcwsError::SessionLost);
        }
        Err(api_error(status, body))
    }

    pub(crate) async fn subscribe_queue(
        &self,
        s: &Session,
        workgroup: &str,
    ) -> Result<(), IcwsError> {
        let sub = format!("{}{workgroup}", wire::QUEUE_SUB_PREFIX);
        let body = wire::queue_subscription_body(workgroup);
        let (status, bytes) = self
            .send(
                s,
                Method::PUT,
                &["messaging", "subscriptions", "queues", &sub],
                &[],
                Some(&body),
                wire::MEDIA_TYPE,
            )
            .await?;
        self.check(s, "PUT messaging/subscriptions/queues", status, &bytes)?;
        lock(&s.subscribed).insert(workgroup.to_owned());
        info!(
            event = "icws.watching",
            workgroup, "watching workgroup queue"
        );
        Ok(())
    }

    pub(crate) async fn unsubscribe_queue(
        &self,
        s: &Session,
        workgroup: &str,
    ) -> Result<(), IcwsError> {
        let sub = format!("{}{workgroup}", wire::QUEUE_SUB_PREFIX);
        let (status, bytes) = self
            .send(
                s,
                Method::DELETE,
                &["messaging", "subscriptions", "queues", &sub],
                &[],
                None,
                wire::MEDIA_TYPE,
            )
            .await?;
        lock(&s.subscribed).remove(workgroup);
        self.check(s, "DELETE messaging/subscriptions/queues", status, &bytes)?;
        Ok(())
    }
}
