//! A fake Salesforce org for tests and demos: SOAP and OAuth login, the REST API subset SORS
//! uses (SOQL query with paging, sObject CRUD, sObject Collections, limits), the routing package
//! (objects and trigger of routing.md §2), PushTopics evaluated on every write and published
//! through the Streaming API of `sors-fake-cometd`, and a control API under `/__fake/`.
//!
//! See README.md for the endpoints, the SOQL subset, the org file format and the decisions.

mod control;
mod error;
mod ids;
mod login;
mod org;
mod rest;
pub mod schema;
pub mod soql;
mod spec;
mod store;
pub mod trigger;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::serve::ListenerExt;
use serde::Serialize;
use serde_json::Value;
use sors_fake_cometd::{ForgetAdvice, Streaming};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::{ApiError, Error};
pub use org::{ApiCounters, CallKind, InjectedError};
pub use spec::{MappingSpec, OAuthClientSpec, OrgSpec, QueueSpec, UserSpec};

use org::{Effect, Org};

/// Lowest and highest REST API versions accepted in `/services/data/vXX.X/`.
pub const MIN_API_VERSION: f64 = 37.0;
pub const MAX_API_VERSION: f64 = 66.0;

#[derive(Clone, Debug)]
pub struct FakeSalesforceConfig {
    /// Where to listen (default 127.0.0.1:0, an ephemeral port).
    pub listen: SocketAddr,
    /// The org to start with (default: the demo org).
    pub org: OrgSpec,
    /// Streaming timings and limits (default: Salesforce's).
    pub streaming: sors_fake_cometd::Config,
    /// Session inactivity timeout (`sessionSecondsValid`, default 7200).
    pub session_seconds_valid: u64,
    /// Base URL announced in login responses (`serverUrl`, `instance_url`); default
    /// `http://{bound address}` (0.0.0.0 announced as 127.0.0.1).
    pub public_url: Option<String>,
}

impl Default for FakeSalesforceConfig {
    fn default() -> Self {
        FakeSalesforceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            org: OrgSpec::demo(),
            streaming: sors_fake_cometd::Config::default(),
            session_seconds_valid: 7200,
            public_url: None,
        }
    }
}

/// Counters of the control API: API calls by kind, REST API usage, streaming events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub api: ApiCounters,
    /// Every counted call except streaming requests (login + REST).
    pub api_total: u64,
    /// REST calls counted against `DailyApiRequests` (the `api-usage` of `Sforce-Limit-Info`).
    pub api_usage: u64,
    pub events: sors_fake_cometd::Counters,
}

impl ApiCounters {
    /// Every call except streaming requests.
    pub fn total(&self) -> u64 {
        self.login
            + self.query
            + self.query_more
            + self.create
            + self.read
            + self.update
            + self.delete
            + self.composite
            + self.limits
    }
}

/// State shared by every request handler and the handle.
pub(crate) struct Shared {
    org: Arc<Mutex<Org>>,
    pub(crate) streaming: Streaming,
    pub(crate) base_url: String,
}

fn lock(org: &Mutex<Org>) -> MutexGuard<'_, Org> {
    org.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn org(&self) -> MutexGuard<'_, Org> {
        lock(&self.org)
    }

    /// Applies streaming effects (called with the org lock released).
    pub(crate) fn apply(&self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Publish {
                    channel,
                    event_type,
                    sobject,
                } => {
                    let replay = self.streaming.publish(&channel, event_type, sobject);
                    tracing::debug!(%channel, ?event_type, ?replay, "PushTopic event published");
                }
                Effect::ClearChannel(channel) => self.streaming.clear_channel(&channel),
            }
        }
    }

    pub(crate) fn expire_sessions(&self) {
        self.org().expire_sessions();
        tracing::info!("all sessions expired");
    }

    pub(crate) fn forget_streaming(&self, advice: ForgetAdvice) {
        self.streaming.forget_clients(advice);
        tracing::info!(?advice, "streaming clients forgotten");
    }

    pub(crate) fn set_drop_pushes(&self, on: bool) {
        self.streaming.set_drop_pushes(on);
        tracing::info!(on, "drop pushes");
    }

    pub(crate) fn sandbox_refresh(&self) -> String {
        let (org_id, effects) = {
            let mut org = self.org();
            let effects = org.sandbox_refresh();
            (org.org_id.clone(), effects)
        };
        self.apply(effects);
        self.streaming.reset();
        tracing::info!(%org_id, "sandbox refreshed");
        org_id
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.org().latency = latency;
    }

    pub(crate) fn fail_next(&self, kind: CallKind, count: u32, error: InjectedError) {
        self.org().add_fail_next(kind, count, error);
        tracing::info!(?kind, count, ?error, "failure injected");
    }

    pub(crate) fn counters(&self) -> Counters {
        let (api, api_usage) = {
            let org = self.org();
            (org.counters.clone(), org.api_used)
        };
        Counters {
            api_total: api.total(),
            api,
            api_usage,
            events: self.streaming.counters(),
        }
    }
}

/// A running fake Salesforce.
pub struct FakeSalesforce {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeSalesforce {
    /// Builds the org, binds, and serves in a background task; returns once listening.
    pub async fn start(cfg: FakeSalesforceConfig) -> Result<FakeSalesforce, Error> {
        cfg.org.validate()?;
        let org = Org::new(&cfg.org, Duration::from_secs(cfg.session_seconds_valid))?;
        let org = Arc::new(Mutex::new(org));
        let auth_org = org.clone();
        let topic_org = org.clone();
        let streaming = Streaming::new(
            cfg.streaming.clone(),
            Arc::new(move |token: &str| lock(&auth_org).session_user(token).is_some()),
            Arc::new(move |channel: &str| {
                channel
                    .strip_prefix("/topic/")
                    .is_some_and(|name| lock(&topic_org).active_topic(name))
            }),
        );
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: cfg.listen,
            source,
        })?;
        let base_url = cfg.public_url.clone().unwrap_or_else(|| {
            let host = if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            format!("http://{host}")
        });
        let shared = Arc::new(Shared {
            org,
            streaming,
            base_url,
        });
        let app = rest::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // TCP_NODELAY: without it a response written in two pieces waits for the client's
            // delayed ACK (Nagle), up to 40 ms a call, a stall no real server adds.
            let listener = listener.tap_io(|io| {
                if let Err(e) = io.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
                }
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "fake Salesforce server stopped");
            }
        });
        tracing::info!(%addr, "fake Salesforce listening");
        Ok(FakeSalesforce {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// e.g. `http://127.0.0.1:PORT`: the login URL and the instance URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current 18-character org id (changes on a sandbox refresh).
    pub fn org_id(&self) -> String {
        self.shared.org().org_id.clone()
    }

    /// The streaming endpoint, for what the control API does not cover.
    pub fn streaming(&self) -> &Streaming {
        &self.shared.streaming
    }

    /// Every session becomes invalid: REST answers 401 `INVALID_SESSION_ID`, Bayeux 401.
    pub fn expire_sessions(&self) {
        self.shared.expire_sessions();
    }

    /// Forgets every streaming client (`403::Unknown client` with this advice).
    pub fn forget_streaming(&self, advice: ForgetAdvice) {
        self.shared.forget_streaming(advice);
    }

    /// Swallows every PushTopic event while `on`.
    pub fn set_drop_pushes(&self, on: bool) {
        self.shared.set_drop_pushes(on);
    }

    /// New org id, every PushTopic deleted, replay ids reset, sessions expired. Returns the new
    /// org id.
    pub fn sandbox_refresh(&self) -> String {
        self.shared.sandbox_refresh()
    }

    /// Delays every login, REST and streaming request by this much.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.set_latency(latency);
    }

    /// The next `count` calls of `kind` (or of any kind) fail with `error`.
    pub fn fail_next(&self, kind: CallKind, count: u32, error: InjectedError) {
        self.shared.fail_next(kind, count, error);
    }

    /// Drops every failure injected with [`FakeSalesforce::fail_next`] and not yet used: the
    /// outage is over.
    pub fn clear_failures(&self) {
        self.shared.org().fail_next.clear();
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// The whole org as JSON (records by object, including deleted ones with `IsDeleted`).
    pub fn dump(&self) -> Value {
        self.shared.org().dump()
    }

    /// Acts as a user of the org: writes go through the same code path as REST calls (trigger
    /// and PushTopics fire) but are not counted as API calls.
    pub fn act_as(&self, username: &str) -> Result<OrgActor, Error> {
        let user_id = self
            .shared
            .org()
            .user_id_by_username(username)
            .ok_or_else(|| Error::UnknownUser(username.to_owned()))?;
        Ok(OrgActor {
            shared: self.shared.clone(),
            user_id,
        })
    }

    /// Runs a SOQL query (all pages) without counting it.
    pub fn query(&self, soql: &str) -> Result<Vec<Value>, ApiError> {
        query_all(&self.shared, soql)
    }

    /// The id of the queue with this name.
    pub fn queue_id(&self, name: &str) -> Option<String> {
        let escaped = name.replace('\\', "\\\\").replace('\'', "\\'");
        let soql = format!("SELECT Id FROM Group WHERE Type = 'Queue' AND Name = '{escaped}'");
        let rows = self.query(&soql).ok()?;
        let id = rows.first()?.get("Id")?.as_str()?;
        Some(id.to_owned())
    }

    /// The id of the user with this username.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.shared.org().user_id_by_username(username)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for FakeSalesforce {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn query_all(shared: &Shared, soql: &str) -> Result<Vec<Value>, ApiError> {
    let page = shared.org().query(soql, org::DEFAULT_VERSION, usize::MAX)?;
    Ok(page.records)
}

/// A user of the org, for tests and scenarios (see [`FakeSalesforce::act_as`]).
#[derive(Clone)]
pub struct OrgActor {
    shared: Arc<Shared>,
    user_id: String,
}

impl OrgActor {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Creates a record of `object` from JSON fields; returns its id.
    pub fn create(&self, object: &str, fields: Value) -> Result<String, ApiError> {
        let (id, effects) = self.shared.org().create(&self.user_id, object, &fields)?;
        self.shared.apply(effects);
        Ok(id)
    }

    pub fn update(&self, object: &str, id: &str, fields: Value) -> Result<(), ApiError> {
        let effects = self
            .shared
            .org()
            .update(&self.user_id, Some(object), id, &fields)?;
        self.shared.apply(effects);
        Ok(())
    }

    pub fn delete(&self, object: &str, id: &str) -> Result<(), ApiError> {
        let effects = self.shared.org().delete(object, id)?;
        self.shared.apply(effects);
        Ok(())
    }

    pub fn query(&self, soql: &str) -> Result<Vec<Value>, ApiError> {
        query_all(&self.shared, soql)
    }
}
