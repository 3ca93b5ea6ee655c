//! The handle API: [`Icws`], the cheap-to-clone handle the router uses, what it tells the
//! router ([`IcwsEvent`]) and its status. `start` builds the shared state and spawns the
//! supervisor; every method waits for the supervisor's session and makes its request in it.
//!
//! It must never connect, reconnect or read messages (the supervisor does), nor publish or
//! clear the session: a method that finds the session gone reports it and returns an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use reqwest::header::{PROXY_AUTHENTICATE, VIA};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sors_core::model::{
    InteractionId, LiveInteraction, RouteOutcome, RouteRequest, RowId, WorkgroupInfo,
};
use sors_core::proxy::ProxyPolicy;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, error, info, warn};

use crate::config::IcwsConfig;
use crate::error::IcwsError;
use crate::session::{Inner, lock};
use crate::wire;
use url::Url;

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
    /// Dropped with the last clone: cancels `inner.shutdown`, so the supervisor closes the
    /// session and stops.
    _last: Arc<DropGuard>,
}

impl Icws {
    /// Validates the configuration and starts the supervisor task (call inside a Tokio
    /// runtime). The returned receiver carries every [`IcwsEvent`].
    pub fn start(cfg: IcwsConfig) -> Result<(Icws, mpsc::Receiver<IcwsEvent>), IcwsError> {
        let servers = cfg.server_urls()?;
        let http = Mutex::new(Http::build(&cfg)?);
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let inner = Arc::new(Inner {
            cfg,
            servers,
            http,
            session: watch::Sender::new(None),
            queues: Mutex::default(),
            subscriptions: tokio::sync::Mutex::new(()),
            status: Mutex::default(),
            learned_alternates: Mutex::default(),
            lost_tx,
            shutdown: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(inner.clone().supervise(events_tx, lost_rx));
        *lock(&inner.task) = Some(task);
        let last = Arc::new(inner.shutdown.clone().drop_guard());
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
        lock(&inner.queues).set_watched(new.clone());
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
        let list = self.config_list("skills", &[]).await?;
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

    /// The slot told the latency of every ICWS request (shared with the running client).
    pub fn observer(&self) -> &sors_core::observe::Observer {
        &self.inner.cfg.observer
    }

    /// Stops the supervisor, deletes the subscriptions (best effort) and the session. Later
    /// calls fail with [`IcwsError::Shutdown`].
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(Err(e)) = match task {
            Some(task) => Some(task.await),
            None => None,
        } {
            error!(event = "icws.supervisor_failed", error = %e, "ICWS supervisor task ended abnormally");
        }
    }

    /// `GET configuration/{kind}` (an empty body is an empty list).
    async fn config_list(
        &self,
        kind: &str,
        query: &[(&str, &str)],
    ) -> Result<wire::ConfigList, IcwsError> {
        let s = self.inner.wait_session().await?;
        let (status, bytes) = self
            .inner
            .send(
                &s,
                Method::GET,
                &["configuration", kind],
                query,
                None,
                wire::MEDIA_TYPE,
            )
            .await?;
        let bytes = self
            .inner
            .check(&s, "GET configuration list", status, &bytes)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(wire::ConfigList { items: Vec::new() });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| IcwsError::Protocol(format!("configuration/{kind}: {e}")))
    }
}

/// The HTTP pool of the client, built for one version of the proxy policy; a connection round
/// rebuilds it when the policy changed ([`Inner::refresh_http`]).
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// The policy `client` was built with: errors name the proxy a request went through.
    proxy: Arc<ProxyPolicy>,
    version: u64,
}

impl Http {
    pub(crate) fn build(cfg: &IcwsConfig) -> Result<Http, IcwsError> {
        let (version, proxy) = cfg.proxy_now();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.request_timeout)
            .user_agent(concat!("sors-icws/", env!("CARGO_PKG_VERSION")));
        // Judged per request: the backup server and redirect targets honour NO_PROXY too.
        builder = builder.no_proxy();
        if !proxy.is_direct() {
            let policy = proxy.clone();
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
        let client = builder
            .build()
            .map_err(|e| IcwsError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(Http {
            client,
            proxy,
            version,
        })
    }

    /// A transport error of a request to `url`, naming the proxy it went through (never the
    /// proxy's credentials).
    pub(crate) fn transport(&self, url: &Url, e: reqwest::Error) -> IcwsError {
        match (IcwsError::transport(e), self.proxy.shown_for(url.as_str())) {
            (IcwsError::Transport(m), Some(p)) => {
                IcwsError::Transport(format!("{m} (through proxy {p})"))
            }
            (e, _) => e,
        }
    }

    /// The proxy's own refusal of the request to `url`, when `resp` is one (a transport error:
    /// it is not CIC's answer, and it may pass once the proxy is fixed).
    pub(crate) fn refusal(&self, url: &Url, resp: &reqwest::Response) -> Option<IcwsError> {
        let h = resp.headers();
        self.proxy
            .refusal(
                url.as_str(),
                resp.status().as_u16(),
                h.contains_key(PROXY_AUTHENTICATE),
                h.contains_key(VIA),
            )
            .map(IcwsError::Transport)
    }
}

impl Inner {
    /// The current HTTP pool.
    pub(crate) fn http(&self) -> Http {
        lock(&self.http).clone()
    }

    /// A new pool when the proxy policy changed since the current one was built: called at the
    /// start of every connection round, so a new policy applies from the next (re)connection.
    pub(crate) fn refresh_http(&self) {
        if self.cfg.proxy_now().0 == lock(&self.http).version {
            return;
        }
        match Http::build(&self.cfg) {
            Ok(http) => {
                info!(event = "icws.proxy_changed", proxy = ?http.proxy,
                      "CIC proxy settings changed: new connections use them");
                *lock(&self.http) = http;
            }
            Err(e) => error!(event = "icws.proxy_unusable", error = %e,
                             "New CIC proxy settings unusable; keeping the old ones"),
        }
    }
}
