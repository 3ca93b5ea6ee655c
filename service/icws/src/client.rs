//! The session supervisor task and the cheap-to-clone handle the router uses.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sors_core::model::{
    CaseId, InteractionId, LiveInteraction, RouteOutcome, RouteRequest, RowId, WorkgroupInfo,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use url::Url;

use crate::config::{IcwsConfig, display_server, resolve_alternate};
use crate::error::IcwsError;
use crate::sse::SseDecoder;
use crate::wire::{self, Message, QueueContents};

/// Capacity of the event channel; the supervisor waits when the router falls this far behind.
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// What the client tells the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IcwsEvent {
    /// A session is up and every subscription exists. `backup` is false only when the first
    /// configured server answered.
    Connected {
        server: String,
        backup: bool,
        generation: u64,
    },
    /// The session of `generation` ended; the client is reconnecting.
    Lost {
        reason: String,
        generation: u64,
    },
    /// The full contents of a watched workgroup queue (`isDelta:false`, after every
    /// (re)subscription): replaces whatever the router knew about that workgroup.
    Snapshot {
        workgroup: String,
        interactions: Vec<LiveInteraction>,
    },
    Added(LiveInteraction),
    /// The merged, whole view of an interaction after a change.
    Changed(LiveInteraction),
    Removed {
        id: InteractionId,
        workgroup: String,
    },
    /// The handler's `RouteCaseResult`.
    RouteResult {
        entry_id: RowId,
        outcome: RouteOutcome,
    },
}

/// Result of [`Icws::disconnect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectOutcome {
    Disconnected,
    /// CIC answered 404: the interaction no longer exists.
    AlreadyGone,
}

/// Connection status, for the heartbeat / status endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    /// `scheme://host:port` of the server of the current (or last) session.
    pub server: Option<String>,
    pub backup: bool,
    /// Number of sessions established so far (the current one's generation).
    pub generation: u64,
    /// The last connection or subscription problem; cleared on each successful connect.
    pub last_error: Option<String>,
    /// The last connection round failed because CIC refused the user name or password.
    pub auth_failing: bool,
}

/// Handle to the ICWS client. Cheap to clone; all clones drive the same session. When the last
/// clone is dropped the supervisor shuts down as if [`Icws::shutdown`] had been called (without
/// waiting for it).
#[derive(Clone)]
pub struct Icws {
    inner: Arc<Inner>,
    _last: Arc<LastHandle>,
}

/// Dropped with the last [`Icws`] clone: asks the supervisor to close the session and stop.
struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
    }
}

struct Session {
    base: Url,
    id: String,
    csrf: String,
    cookie: Option<String>,
    generation: u64,
    server: String,
    backup: bool,
    sse_offered: bool,
    /// Workgroup queues this session really watches (a failed PUT is not in here, so the next
    /// `set_watched_workgroups` tries it again).
    subscribed: Mutex<BTreeSet<String>>,
}

/// Attributes of one watched interaction, keys lower-cased (ICWS names are case-insensitive).
type Attrs = HashMap<String, String>;

struct Inner {
    cfg: IcwsConfig,
    servers: Vec<Url>,
    http: reqwest::Client,
    session: watch::Sender<Option<Arc<Session>>>,
    watched: Mutex<BTreeSet<String>>,
    /// Serialises subscription changes (router calls and the supervisor's re-subscription).
    subscriptions: tokio::sync::Mutex<()>,
    views: Mutex<HashMap<String, BTreeMap<String, Attrs>>>,
    status: Mutex<Status>,
    learned_alternates: Mutex<Vec<Url>>,
    lost_tx: mpsc::UnboundedSender<(u64, String)>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Sessions in a row whose subscriptions could not all be set up (back-off between them).
    setup_failures: std::sync::atomic::AtomicU32,
}

type LostRx = mpsc::UnboundedReceiver<(u64, String)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Icws {
    /// Validates the configuration and starts the supervisor task (call inside a Tokio
    /// runtime). The returned receiver carries every [`IcwsEvent`].
    pub fn start(cfg: IcwsConfig) -> Result<(Icws, mpsc::Receiver<IcwsEvent>), IcwsError> {
        let servers = cfg.server_urls()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.request_timeout)
            .user_agent(concat!("sors-icws/", env!("CARGO_PKG_VERSION")));
        // Judged per request: the backup server and redirect targets honour NO_PROXY too.
        builder = builder.no_proxy();
        if !cfg.proxy.is_direct() {
            let policy = cfg.proxy.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                policy.for_url(url.as_str())
            }));
        }
        if let Some(path) = &cfg.ca_file {
            let bad = |why: &str| IcwsError::Config(format!("CA file {}: {why}", path.display()));
            let pem = std::fs::read(path).map_err(|e| bad(&e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| bad("not a PEM certificate bundle"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| IcwsError::Config(format!("HTTP client: {}", e.without_url())))?;
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let inner = Arc::new(Inner {
            cfg,
            servers,
            http,
            session: watch::Sender::new(None),
            watched: Mutex::default(),
            subscriptions: tokio::sync::Mutex::new(()),
            views: Mutex::default(),
            status: Mutex::default(),
            learned_alternates: Mutex::default(),
            lost_tx,
            shutdown: watch::Sender::new(false),
            task: Mutex::new(None),
            setup_failures: std::sync::atomic::AtomicU32::new(0),
        });
        let task = tokio::spawn(inner.clone().supervise(events_tx, lost_rx));
        *lock(&inner.task) = Some(task);
        let last = Arc::new(LastHandle(inner.clone()));
        Ok((Icws { inner, _last: last }, events_rx))
    }

    /// Sets the workgroups whose queues are watched: subscribes the new ones and unsubscribes
    /// the dropped ones now (when a session is up), and remembers the set for every reconnect.
    /// On error the set is still remembered; the failed subscriptions are retried on the next
    /// reconnect or call.
    pub async fn set_watched_workgroups(&self, workgroups: Vec<String>) -> Result<(), IcwsError> {
        let inner = &self.inner;
        let _serial = inner.subscriptions.lock().await;
        let new: BTreeSet<String> = workgroups
            .into_iter()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        let old = std::mem::replace(&mut *lock(&inner.watched), new.clone());
        {
            let mut views = lock(&inner.views);
            for wg in old.difference(&new) {
                views.remove(wg);
            }
        }
        let Some(s) = inner.current_session() else {
            debug!(
                event = "icws.watch_deferred",
                "no session; workgroups are watched on connect"
            );
            return Ok(());
        };
        // Against what this session really watches, so that a failed subscription is tried
        // again by the next call with the same set.
        let subscribed = lock(&s.subscribed).clone();
        let removed: Vec<&String> = subscribed.difference(&new).collect();
        let added: Vec<&String> = new.difference(&subscribed).collect();
        for wg in removed {
            if let Err(e) = inner.unsubscribe_queue(&s, wg).await {
                warn!(event = "icws.unsubscribe_failed", workgroup = %wg, error = %e, "could not stop a queue watch");
            }
        }
        let mut first_error = None;
        for wg in added {
            if let Err(e) = inner.subscribe_queue(&s, wg).await {
                warn!(event = "icws.subscribe_failed", workgroup = %wg, error = %e, "could not watch a workgroup queue");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Raises the `RouteCase` custom notification (routing.md §4). The result arrives later as
    /// [`IcwsEvent::RouteResult`].
    pub async fn raise_route(&self, req: &RouteRequest) -> Result<(), IcwsError> {
        let body = serde_json::json!({
            "objectId": wire::OBJECT_ID,
            "eventId": wire::ROUTE_EVENT,
            "data": [
                wire::CONTRACT_VERSION,
                req.entry_id.as_str(),
                req.case_id.as_str(),
                req.case_number,
                req.workgroup,
                req.skills.join(";"),
                req.subject,
                req.from_address,
                req.from_name,
            ],
        });
        let s = self.inner.wait_session().await?;
        let (status, bytes) = self
            .inner
            .send(
                &s,
                Method::POST,
                &["system", "handler-notification"],
                &[],
                Some(&body),
                wire::MEDIA_TYPE,
            )
            .await?;
        self.inner
            .check(&s, "POST system/handler-notification", status, &bytes)?;
        debug!(event = "icws.route_raised", entry_id = %req.entry_id, workgroup = %req.workgroup, "RouteCase raised");
        Ok(())
    }

    /// Disconnects an interaction; a 404 means it is already gone.
    pub async fn disconnect(&self, id: &InteractionId) -> Result<DisconnectOutcome, IcwsError> {
        let s = self.inner.wait_session().await?;
        let (status, bytes) = self
            .inner
            .send(
                &s,
                Method::POST,
                &["interactions", id.as_str(), "disconnect"],
                &[],
                None,
                wire::MEDIA_TYPE,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(DisconnectOutcome::AlreadyGone);
        }
        self.inner
            .check(&s, "POST interactions/{id}/disconnect", status, &bytes)?;
        info!(event = "icws.disconnected_interaction", interaction_id = %id, "interaction disconnected");
        Ok(DisconnectOutcome::Disconnected)
    }

    /// The CIC workgroups with whether each is an ACD email workgroup
    /// (`hasQueue && queueType == 5 && isAcdEmailRoutingActive`).
    pub async fn workgroups(&self) -> Result<Vec<WorkgroupInfo>, IcwsError> {
        let list = self
            .inner
            .config_list(
                "workgroups",
                &[("select", "hasQueue,queueType,isAcdEmailRoutingActive")],
            )
            .await?;
        Ok(list
            .items
            .iter()
            .filter_map(|item| {
                Some(WorkgroupInfo {
                    name: item.configuration_id.name()?.to_owned(),
                    acd_email: item.has_queue == Some(true)
                        && item.queue_type == Some(wire::QUEUE_TYPE_ACD)
                        && item.is_acd_email_routing_active == Some(true),
                })
            })
            .collect())
    }

    /// The names of the skills CIC knows.
    pub async fn skills(&self) -> Result<Vec<String>, IcwsError> {
        let list = self.inner.config_list("skills", &[]).await?;
        Ok(list
            .items
            .iter()
            .filter_map(|item| item.configuration_id.name().map(str::to_owned))
            .collect())
    }

    /// The watched attributes ([`crate::WATCHED_ATTRIBUTES`]) of one interaction, `None` when
    /// it does not exist (404).
    pub async fn interaction(
        &self,
        id: &InteractionId,
    ) -> Result<Option<HashMap<String, String>>, IcwsError> {
        let select = wire::WATCHED_ATTRIBUTES.join(",");
        let s = self.inner.wait_session().await?;
        let (status, bytes) = self
            .inner
            .send(
                &s,
                Method::GET,
                &["interactions", id.as_str()],
                &[("select", &select)],
                None,
                wire::MEDIA_TYPE,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = self
            .inner
            .check(&s, "GET interactions/{id}", status, &bytes)?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| IcwsError::Protocol(format!("interaction attributes: {e}")))?;
        wire::parse_interaction_attributes(&value)
            .map(Some)
            .ok_or_else(|| IcwsError::Protocol("interaction attributes are not an object".into()))
    }

    pub fn status(&self) -> Status {
        lock(&self.inner.status).clone()
    }

    /// Stops the supervisor, deletes the subscriptions (best effort) and the session. Later
    /// calls fail with [`IcwsError::Shutdown`].
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let task = lock(&self.inner.task).take();
        if let Some(Err(e)) = match task {
            Some(task) => Some(task.await),
            None => None,
        } {
            error!(event = "icws.supervisor_failed", error = %e, "ICWS supervisor task ended abnormally");
        }
    }
}

/// Why one connect attempt did not give a session.
enum AttemptError {
    Redirect(Vec<String>),
    Failed(IcwsError),
}

/// Why opening the SSE stream did not give a stream.
enum SseOpen {
    Lost(String),
    Fallback(String, Option<String>),
}

impl Inner {
    fn current_session(&self) -> Option<Arc<Session>> {
        self.session.borrow().clone()
    }

    fn report_lost(&self, generation: u64, reason: String) {
        // The receiver lives as long as the supervisor; after shutdown nobody needs to know.
        let _ = self.lost_tx.send((generation, reason));
    }

    /// The current session, waiting up to `session_wait` for one.
    async fn wait_session(&self) -> Result<Arc<Session>, IcwsError> {
        let mut stop = self.shutdown.subscribe();
        if *stop.borrow() {
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
            _ = stopped(&mut stop) => Err(IcwsError::Shutdown),
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

    fn session_request(
        &self,
        s: &Session,
        method: Method,
        segments: &[&str],
        accept: &str,
    ) -> Result<reqwest::RequestBuilder, IcwsError> {
        let url = Self::session_url(s, segments)?;
        let mut rb = self
            .http
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
    async fn send(
        &self,
        s: &Session,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        accept: &str,
    ) -> Result<(StatusCode, Bytes), IcwsError> {
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
        let resp = rb.send().await.map_err(IcwsError::transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(IcwsError::transport)?;
        Ok((status, bytes))
    }

    /// Accepts any 2xx; a 401 reports the session lost.
    fn check(
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

    async fn config_list(
        &self,
        kind: &str,
        query: &[(&str, &str)],
    ) -> Result<wire::ConfigList, IcwsError> {
        let s = self.wait_session().await?;
        let (status, bytes) = self
            .send(
                &s,
                Method::GET,
                &["configuration", kind],
                query,
                None,
                wire::MEDIA_TYPE,
            )
            .await?;
        let bytes = self.check(&s, "GET configuration list", status, &bytes)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(wire::ConfigList { items: Vec::new() });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| IcwsError::Protocol(format!("configuration/{kind}: {e}")))
    }

    async fn subscribe_queue(&self, s: &Session, workgroup: &str) -> Result<(), IcwsError> {
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

    async fn unsubscribe_queue(&self, s: &Session, workgroup: &str) -> Result<(), IcwsError> {
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

    fn set_last_error(&self, e: String) {
        lock(&self.status).last_error = Some(e);
    }

    // ---------------------------------------------------------------- connecting

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
        let resp = self
            .http
            .post(url)
            .query(&[("include", "features,version")])
            .timeout(self.cfg.request_timeout)
            .header(ACCEPT, wire::MEDIA_TYPE)
            .header("Accept-Language", "en-us")
            .header(CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| fail(IcwsError::transport(e)))?;
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
    async fn connect_round(&self, generation: u64) -> Result<Arc<Session>, IcwsError> {
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

    fn backoff(&self, failed_rounds: u32) -> Duration {
        let base = self.cfg.reconnect_backoff_base;
        let factor = 2u32.saturating_pow(failed_rounds.saturating_sub(1).min(16));
        let full = base
            .saturating_mul(factor)
            .min(self.cfg.reconnect_backoff_max);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    // ---------------------------------------------------------------- the supervisor

    async fn supervise(self: Arc<Self>, events: mpsc::Sender<IcwsEvent>, mut lost_rx: LostRx) {
        let mut stop = self.shutdown.subscribe();
        let mut generation = 0u64;
        let mut failed_rounds = 0u32;
        loop {
            let round = tokio::select! {
                r = self.connect_round(generation + 1) => r,
                _ = stopped(&mut stop) => return,
            };
            let session = match round {
                Ok(s) => s,
                Err(e) => {
                    failed_rounds = failed_rounds.saturating_add(1);
                    error!(event = "icws.connect_failed", error = %e, round = failed_rounds, "Failed to connect to IC server");
                    self.set_last_error(e.to_string());
                    lock(&self.status).auth_failing =
                        matches!(e, IcwsError::AuthenticationFailed { .. });
                    let delay = self.backoff(failed_rounds);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = stopped(&mut stop) => return,
                    }
                }
            };
            failed_rounds = 0;
            generation = session.generation;
            while lost_rx.try_recv().is_ok() {}
            let reason = tokio::select! {
                r = self.run_session(&session, &events, &mut lost_rx) => r,
                _ = stopped(&mut stop) => {
                    self.close_session(&session).await;
                    return;
                }
            };
            self.session.send_replace(None);
            lock(&self.views).clear();
            {
                let mut st = lock(&self.status);
                st.connected = false;
                st.last_error = Some(format!("session lost: {reason}"));
            }
            warn!(event = "icws.session_lost", server = %session.server, generation, reason = %reason, "CIC session lost; reconnecting");
            let _ = events.send(IcwsEvent::Lost { reason, generation }).await;
        }
    }

    /// Runs `op` up to three times, 250 ms apart doubling, while it fails with a server error
    /// (not a lost session or a transport failure, which end the session at once).
    async fn retry_briefly<F, Fut>(&self, op: F) -> Result<(), IcwsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), IcwsError>>,
    {
        let mut delay = Duration::from_millis(250);
        let mut result = op().await;
        for _ in 0..2 {
            match &result {
                Err(IcwsError::SessionLost | IcwsError::Transport(_)) | Ok(()) => break,
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    result = op().await;
                }
            }
        }
        result
    }

    async fn subscribe_handler_notifications(&self, s: &Session) -> Result<(), IcwsError> {
        let body = wire::handler_sent_subscription_body();
        let (status, bytes) = self
            .send(
                s,
                Method::PUT,
                &[
                    "messaging",
                    "subscriptions",
                    "system",
                    "handler-sent-notifications",
                ],
                &[],
                Some(&body),
                wire::MEDIA_TYPE,
            )
            .await?;
        self.check(s, "PUT handler-sent-notifications", status, &bytes)
            .map(drop)
    }

    /// A session whose subscriptions cannot be set up: close it, wait (growing back-off), and
    /// return the reason, so the supervisor connects again.
    async fn give_up_session(&self, s: &Arc<Session>, reason: String) -> String {
        self.set_last_error(reason.clone());
        self.close_session(s).await;
        let n = self
            .setup_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        tokio::time::sleep(self.backoff(n)).await;
        reason
    }

    /// Sets up the subscriptions, announces the session, then reads messages until the
    /// session is lost. Returns the reason.
    async fn run_session(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        {
            let mut st = lock(&self.status);
            st.last_error = None;
            st.auth_failing = false;
        }
        let handler_sub = self.subscribe_handler_notifications(s).await;
        let handler_sub = match handler_sub {
            Err(e) if !matches!(e, IcwsError::SessionLost | IcwsError::Transport(_)) => {
                // A passing server error: try again briefly before giving the session up.
                self.retry_briefly(|| self.subscribe_handler_notifications(s))
                    .await
            }
            other => other,
        };
        if let Err(e) = handler_sub {
            error!(event = "icws.subscribe_failed", error = %e, "could not subscribe to the handler's RouteCaseResult notifications");
            return self
                .give_up_session(s, format!("subscribing to handler notifications: {e}"))
                .await;
        }
        // Published before the queue watches, so that a concurrent set_watched_workgroups
        // applies its own changes to this session.
        self.session.send_replace(Some(s.clone()));
        {
            let _serial = self.subscriptions.lock().await;
            let watched = lock(&self.watched).clone();
            for wg in &watched {
                if let Err(e) = self.retry_briefly(|| self.subscribe_queue(s, wg)).await {
                    // Without every watch the router cannot know what is live: this session is
                    // of no use; start over (with back-off).
                    error!(event = "icws.subscribe_failed", workgroup = %wg, error = %e, "could not watch a workgroup queue");
                    drop(_serial);
                    return self
                        .give_up_session(s, format!("watching workgroup {wg}: {e}"))
                        .await;
                }
            }
        }
        self.setup_failures
            .store(0, std::sync::atomic::Ordering::Relaxed);
        {
            let mut st = lock(&self.status);
            st.connected = true;
            st.server = Some(s.server.clone());
            st.backup = s.backup;
            st.generation = s.generation;
        }
        if s.backup {
            info!(event = "icws.connected", server = %s.server, backup = true, generation = s.generation, "Successfully connected to Backup CIC server");
        } else {
            info!(event = "icws.connected", server = %s.server, backup = false, generation = s.generation, "Successfully connected to Primary CIC server");
        }
        let _ = events
            .send(IcwsEvent::Connected {
                server: s.server.clone(),
                backup: s.backup,
                generation: s.generation,
            })
            .await;
        self.read_messages(s, events, lost_rx).await
    }

    async fn read_messages(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        let use_sse = match self.cfg.messaging {
            crate::MessagingMode::Sse => true,
            crate::MessagingMode::Poll => false,
            crate::MessagingMode::Auto => s.sse_offered,
        };
        if use_sse {
            match until_lost(self.open_sse(s), s.generation, lost_rx).await {
                Err(reason) | Ok(Err(SseOpen::Lost(reason))) => return reason,
                Ok(Ok(resp)) => return self.read_sse(s, resp, events, lost_rx).await,
                Ok(Err(SseOpen::Fallback(why, body))) => {
                    warn!(event = "icws.sse_fallback", reason = %why, "no SSE message stream; polling instead");
                    if let Some(body) = body {
                        if let Some(reason) = self.handle_payload(s, &body, events).await {
                            return reason;
                        }
                    }
                }
            }
        }
        self.poll_messages(s, events, lost_rx).await
    }

    async fn open_sse(&self, s: &Session) -> Result<reqwest::Response, SseOpen> {
        let rb = self
            .session_request(
                s,
                Method::GET,
                &["messaging", "messages"],
                "text/event-stream",
            )
            .map_err(|e| SseOpen::Lost(e.to_string()))?;
        let resp = match tokio::time::timeout(self.cfg.request_timeout, rb.send()).await {
            Err(_) => return Err(SseOpen::Lost("timed out opening the message stream".into())),
            Ok(Err(e)) => {
                return Err(SseOpen::Lost(format!(
                    "message stream: {}",
                    IcwsError::transport(e)
                )));
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(SseOpen::Lost("401 on the message stream".into()));
        }
        if !status.is_success() {
            return Err(SseOpen::Fallback(
                format!("message stream answered {status}"),
                None,
            ));
        }
        let is_stream = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        if is_stream {
            return Ok(resp);
        }
        let body = tokio::time::timeout(self.cfg.request_timeout, resp.bytes()).await;
        let body = match body {
            Ok(Ok(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        };
        Err(SseOpen::Fallback(
            "server answered without an event stream".into(),
            body,
        ))
    }

    async fn read_sse(
        &self,
        s: &Arc<Session>,
        resp: reqwest::Response,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        debug!(event = "icws.sse_open", server = %s.server, "reading messages by SSE");
        let mut stream = resp.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut health = tokio::time::interval(self.cfg.health_check_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                chunk = stream.next() => match chunk {
                    Some(Ok(bytes)) => match decoder.feed(&bytes) {
                        Ok(payloads) => {
                            for payload in payloads {
                                if let Some(reason) = self.handle_payload(s, &payload, events).await {
                                    return reason;
                                }
                            }
                        }
                        Err(_) => return "the message stream sent an oversized event".into(),
                    },
                    Some(Err(e)) => return format!("message stream failed: {}", IcwsError::transport(e)),
                    None => return "message stream closed by the server".into(),
                },
                Some((generation, reason)) = lost_rx.recv() => {
                    if generation == s.generation {
                        return reason;
                    }
                }
                _ = health.tick() => {
                    if let Some(reason) = self.health_check(s).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// `GET …/connection`: `Some(reason)` when the session is gone.
    async fn health_check(&self, s: &Session) -> Option<String> {
        match self
            .send(s, Method::GET, &["connection"], &[], None, wire::MEDIA_TYPE)
            .await
        {
            Err(e) => Some(format!("health check failed: {e}")),
            Ok((StatusCode::UNAUTHORIZED, _)) => Some("401 on the health check".into()),
            Ok((status, bytes)) if status.is_success() => {
                let settings: wire::ConnectionSettings =
                    serde_json::from_slice(&bytes).unwrap_or_default();
                (settings.connection_state == Some(wire::CONNECTION_DOWN)).then(|| {
                    format!(
                        "connection down: {}",
                        settings.reason.unwrap_or_else(|| "no reason given".into())
                    )
                })
            }
            Ok((status, bytes)) => {
                warn!(event = "icws.health_check_failed", error = %api_error(status, &bytes), "session health check failed");
                None
            }
        }
    }

    async fn poll_messages(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        debug!(event = "icws.polling", server = %s.server, "reading messages by short polling");
        loop {
            let poll = self.send(
                s,
                Method::GET,
                &["messaging", "messages"],
                &[],
                None,
                wire::MEDIA_TYPE,
            );
            match until_lost(poll, s.generation, lost_rx).await {
                Err(reason) => return reason,
                Ok(Err(e)) => return format!("message poll failed: {e}"),
                Ok(Ok((StatusCode::UNAUTHORIZED, _))) => return "401 on the message poll".into(),
                Ok(Ok((status, bytes))) if status.is_success() => {
                    let text = String::from_utf8_lossy(&bytes);
                    if let Some(reason) = self.handle_payload(s, &text, events).await {
                        return reason;
                    }
                }
                Ok(Ok((status, bytes))) => {
                    warn!(event = "icws.poll_failed", error = %api_error(status, &bytes), "message poll failed");
                }
            }
            let pause = tokio::time::sleep(self.cfg.poll_interval);
            if let Err(reason) = until_lost(pause, s.generation, lost_rx).await {
                return reason;
            }
        }
    }

    async fn close_session(&self, s: &Session) {
        let _serial = self.subscriptions.lock().await;
        let watched = lock(&self.watched).clone();
        for wg in &watched {
            if let Err(e) = self.unsubscribe_queue(s, wg).await {
                debug!(event = "icws.unsubscribe_failed", workgroup = %wg, error = %e, "queue watch not deleted");
            }
        }
        let deletes: [&[&str]; 2] = [
            &[
                "messaging",
                "subscriptions",
                "system",
                "handler-sent-notifications",
            ],
            &["connection"],
        ];
        for path in deletes {
            if let Err(e) = self
                .send(s, Method::DELETE, path, &[], None, wire::MEDIA_TYPE)
                .await
            {
                debug!(event = "icws.delete_failed", error = %e, "best-effort DELETE failed");
            }
        }
        self.session.send_replace(None);
        lock(&self.views).clear();
        lock(&self.status).connected = false;
        info!(event = "icws.closed", server = %s.server, "CIC session closed");
    }

    // ---------------------------------------------------------------- messages

    /// Handles one payload (poll answer or SSE event data); `Some(reason)` ends the session.
    async fn handle_payload(
        &self,
        s: &Session,
        text: &str,
        events: &mpsc::Sender<IcwsEvent>,
    ) -> Option<String> {
        let (values, malformed) = wire::split_payload(text);
        for value in values {
            let message = match wire::parse_message(value) {
                Ok(m) => m,
                Err(e) => {
                    warn!(event = "icws.malformed_message", error = %e.0, "skipping a malformed ICWS message");
                    continue;
                }
            };
            match message {
                Message::ConnectionDown { reason } => {
                    return Some(format!("connection down: {reason}"));
                }
                Message::Queue(q) => {
                    for event in self.apply_queue(q) {
                        let _ = events.send(event).await;
                    }
                }
                Message::RouteResult {
                    entry_id,
                    ok,
                    detail,
                } => {
                    let outcome = if ok {
                        RouteOutcome::Created(InteractionId::new(detail))
                    } else {
                        RouteOutcome::Error(detail)
                    };
                    debug!(event = "icws.route_result", entry_id = %entry_id, ok, "RouteCaseResult received");
                    let _ = events
                        .send(IcwsEvent::RouteResult {
                            entry_id: RowId::new(entry_id),
                            outcome,
                        })
                        .await;
                }
                Message::SubscriptionState {
                    subscription_id,
                    state,
                } => {
                    if state >= 2 {
                        warn!(event = "icws.subscription_state", subscription = ?subscription_id, state, "a subscription is suspended or faulted");
                        self.set_last_error(format!(
                            "subscription {} state {state}",
                            subscription_id.as_deref().unwrap_or("?")
                        ));
                    }
                }
                Message::Ignored(kind) => {
                    debug!(event = "icws.message_ignored", kind = %kind, server = %s.server, "ignoring message");
                }
            }
        }
        if let Some(e) = malformed {
            warn!(event = "icws.malformed_message", error = %e.0, "skipping a malformed ICWS payload");
        }
        None
    }

    /// Applies a queue message to the cached views and says what changed.
    fn apply_queue(&self, q: QueueContents) -> Vec<IcwsEvent> {
        let Some(workgroup) = q.subscription_id.strip_prefix(wire::QUEUE_SUB_PREFIX) else {
            warn!(event = "icws.unknown_subscription", subscription = %q.subscription_id, "queue message for an unknown subscription");
            return Vec::new();
        };
        if !lock(&self.watched).contains(workgroup) {
            debug!(
                event = "icws.stale_queue_message",
                workgroup, "queue message for a workgroup no longer watched"
            );
            return Vec::new();
        }
        let mut views = lock(&self.views);
        let view = views.entry(workgroup.to_owned()).or_default();
        let mut out = Vec::new();
        let fresh = q.interactions_added.into_iter().filter(|ix| {
            let child = ix
                .conference_parent_id
                .as_deref()
                .is_some_and(|p| !p.is_empty());
            !child && !ix.interaction_id.is_empty()
        });
        if !q.is_delta {
            view.clear();
            for ix in fresh {
                view.insert(ix.interaction_id, normalise(ix.attributes));
            }
            out.push(IcwsEvent::Snapshot {
                workgroup: workgroup.to_owned(),
                interactions: view
                    .iter()
                    .map(|(id, attrs)| live(id, workgroup, attrs))
                    .collect(),
            });
            return out;
        }
        for ix in fresh {
            let attrs = normalise(ix.attributes);
            out.push(IcwsEvent::Added(live(
                &ix.interaction_id,
                workgroup,
                &attrs,
            )));
            view.insert(ix.interaction_id, attrs);
        }
        for ix in q.interactions_changed {
            match view.get_mut(&ix.interaction_id) {
                Some(current) => {
                    current.extend(normalise(ix.attributes));
                    out.push(IcwsEvent::Changed(live(
                        &ix.interaction_id,
                        workgroup,
                        current,
                    )));
                }
                None => {
                    debug!(event = "icws.change_for_unknown", workgroup, interaction_id = %ix.interaction_id, "change for an interaction not in the view");
                }
            }
        }
        for id in q.interactions_removed {
            if view.remove(&id).is_some() {
                out.push(IcwsEvent::Removed {
                    id: InteractionId::new(id),
                    workgroup: workgroup.to_owned(),
                });
            }
        }
        out
    }
}

/// Resolves once shutdown is requested.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Err: the sender is gone, which also means the client is going away.
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `fut` unless the session of `generation` is reported lost first.
async fn until_lost<F: Future>(
    fut: F,
    generation: u64,
    lost_rx: &mut LostRx,
) -> Result<F::Output, String> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            Some((g, reason)) = lost_rx.recv() => {
                if g == generation {
                    return Err(reason);
                }
            }
        }
    }
}

fn normalise(attrs: HashMap<String, Option<String>>) -> Attrs {
    attrs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.unwrap_or_default()))
        .collect()
}

fn live(id: &str, workgroup: &str, attrs: &Attrs) -> LiveInteraction {
    let get = |name: &str| {
        attrs
            .get(&name.to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    };
    LiveInteraction {
        id: InteractionId::new(id),
        case_id: get("SF_CaseId").map(|v| CaseId::new(v.as_str())),
        entry_id: get("SF_RoutingEntryId").map(|v| RowId::new(v.as_str())),
        workgroup: workgroup.to_owned(),
        skills: get("Eic_AcdSkillSet").cloned().unwrap_or_default(),
        state: get("Eic_State").cloned().unwrap_or_default(),
        agent: get("Eic_UserName").cloned(),
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> IcwsError {
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
