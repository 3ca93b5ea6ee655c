//! What the service knows about itself, and the HTTP endpoints that show it: `/heartbeat`
//! (JSON, CORS-enabled, what the dashboard polls), `/history` (the recent past kept in memory,
//! see [`crate::history`]; CORS like `/heartbeat`), `/metrics` (Prometheus text), `/healthz`
//! (the process answers), `/readyz` (logged in on both sides and subscribed) and `/dashboard/`
//! (the multi-tenant status page of `dashboard/`, built into the binary).
//!
//! Nothing here ever holds a secret: only ids, URLs, counters and error texts that the clients
//! have already stripped of tokens and passwords.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sors_core::model::RowId;
use sors_core::router::Status as RouterStatus;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::history::{History, HistoryView, IncidentKind};
use crate::metrics::Metrics;

const MAX_ALERTS: usize = 50;

/// How long evidence of another router on this tenant keeps the status degraded.
const OTHER_ROUTER_MEMORY: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The share of the daily API allowance above which the status warns.
const API_ALLOWANCE_WARN: f64 = 0.9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    PushLost,
    Switchover,
    Resync,
    PushTopic,
    Relogin,
    FailedRow,
    Reconciled,
    OtherRouter,
    ConfigDrift,
}

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// What the service can do right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Both sides connected, subscribed, nothing wrong: rows are routed as they come.
    Up,
    /// Running, but something is wrong (see the reasons); rows may wait.
    #[default]
    Degraded,
    /// Nothing can be routed: a side is not connected.
    Down,
}

/// The PushTopic stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Streaming {
    #[default]
    Connecting,
    Subscribed,
    Reconnecting,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Up => "up",
            Readiness::Degraded => "degraded",
            Readiness::Down => "down",
        }
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Streaming {
    pub fn as_str(self) -> &'static str {
        match self {
            Streaming::Connecting => "connecting",
            Streaming::Subscribed => "subscribed",
            Streaming::Reconnecting => "reconnecting",
        }
    }
}

impl std::fmt::Display for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the service is not `up`. Each kind is set and cleared by what the service sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    SalesforceLoggedOut,
    CicAuthFailing,
    CicDisconnected,
    StreamingDown,
    WaitingForCic,
    SalesforceWritesFailing,
    PushTopicMissing,
    PushLossSuspected,
    OtherRouterActive,
    ApiAllowanceLow,
    /// No routing runtime runs: CIC or Salesforce credentials (or the CIC server) are not
    /// entered yet (the `/loginIc` and `/loginSf` pages), or the saved ones cannot be used.
    NotConfigured,
}

impl ReasonKind {
    /// The kind as the heartbeat's `reasons[].kind` and `/history`'s `reason` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::SalesforceLoggedOut => "salesforce_logged_out",
            ReasonKind::CicAuthFailing => "cic_auth_failing",
            ReasonKind::CicDisconnected => "cic_disconnected",
            ReasonKind::StreamingDown => "streaming_down",
            ReasonKind::WaitingForCic => "waiting_for_cic",
            ReasonKind::SalesforceWritesFailing => "salesforce_writes_failing",
            ReasonKind::PushTopicMissing => "push_topic_missing",
            ReasonKind::PushLossSuspected => "push_loss_suspected",
            ReasonKind::OtherRouterActive => "other_router_active",
            ReasonKind::ApiAllowanceLow => "api_allowance_low",
            ReasonKind::NotConfigured => "not_configured",
        }
    }

    /// Kinds under which nothing at all is routed.
    fn is_down(self) -> bool {
        matches!(
            self,
            ReasonKind::SalesforceLoggedOut
                | ReasonKind::CicAuthFailing
                | ReasonKind::CicDisconnected
                | ReasonKind::NotConfigured
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    pub message: String,
    pub since: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SalesforceView {
    pub logged_in: bool,
    pub org_id: Option<String>,
    pub instance_url: Option<String>,
    pub streaming: Streaming,
    pub last_push_at: Option<DateTime<Utc>>,
    pub pushes: u64,
    pub api_used: Option<u64>,
    pub api_max: Option<u64>,
    pub api_calls: u64,
    pub relogins: u64,
    /// The last Salesforce error; cleared once Salesforce works again.
    pub last_error: Option<String>,
    pub monitored_queues: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CicView {
    pub connected: bool,
    pub server: Option<String>,
    pub backup: bool,
    pub sessions: u64,
    pub watched_workgroups: Vec<String>,
    /// The last CIC error; cleared once a session is up again.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RoutingView {
    pub routed: u64,
    pub closed: u64,
    pub failed: u64,
    pub retries: u64,
    pub disconnected: u64,
    pub push_lost_rows: u64,
    pub sweeps: u64,
    pub reconciliations: u64,
    pub write_calls: u64,
    /// Time from a row's creation to its interaction, last and mean (ms).
    pub last_time_to_route_ms: Option<i64>,
    pub mean_time_to_route_ms: Option<i64>,
    pub router: RouterStatus,
}

/// The heartbeat document.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusView {
    pub tenant: String,
    pub version: &'static str,
    pub started_at: Option<DateTime<Utc>>,
    /// `up` when nothing is wrong, `down` when nothing can be routed, `degraded` otherwise.
    pub status: Readiness,
    /// The original product's wording when up, else the first reason's.
    pub message: String,
    /// Everything that keeps the status from `up`, most serious first.
    pub reasons: Vec<Reason>,
    pub salesforce: SalesforceView,
    pub cic: CicView,
    pub routing: RoutingView,
    pub alerts: VecDeque<Alert>,
}

/// Status shared by the runtime (writer) and the HTTP endpoints (readers).
#[derive(Debug)]
pub struct Shared {
    view: Mutex<StatusView>,
    inner: Mutex<Inner>,
    /// What `/history` serves. Locked after `view` when both are (never the other way round).
    history: Mutex<History>,
    /// The histograms of `/metrics` (they lock themselves).
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Inner {
    route_ms_total: (i64, u64),
    reasons: BTreeMap<ReasonKind, Reason>,
    /// The client's last error as last adopted (its stats keep the last one forever).
    adopted_sf_error: Option<String>,
    /// The last row write call failed (cleared by the next one that goes through).
    write_call_failing: Option<String>,
    /// Rows waiting for a write retry, as the router last said.
    writes_waiting: usize,
    /// The CIC session (`cic.sessions`) whose switchover is already in the history: the
    /// reconciliation that follows it is a detail of the same switchover, not a second one.
    switchover_session: Option<u64>,
}

impl Shared {
    pub fn new(tenant: &str) -> Arc<Shared> {
        let started_at = Utc::now();
        let view = StatusView {
            tenant: tenant.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: Some(started_at),
            status: Readiness::Down,
            message: "Starting".to_owned(),
            ..StatusView::default()
        };
        let shared = Shared {
            view: Mutex::new(view),
            inner: Mutex::new(Inner::default()),
            history: Mutex::new(History::new(started_at)),
            metrics: Metrics::new(tenant),
        };
        shared.set_starting_reasons();
        Arc::new(shared)
    }

    fn set_starting_reasons(&self) {
        self.set(
            ReasonKind::SalesforceLoggedOut,
            "Not logged in to Salesforce yet",
        );
        self.set(ReasonKind::CicDisconnected, "Not connected to CIC yet");
        self.set(
            ReasonKind::StreamingDown,
            "Not subscribed to the PushTopic yet",
        );
    }

    /// Forgets what the last routing runtime reported about its connections and reasons.
    fn forget_runtime(&self) {
        {
            let mut inner = self.inner();
            inner.reasons.clear();
            inner.write_call_failing = None;
            inner.writes_waiting = 0;
        }
        self.update(|v| {
            v.salesforce.logged_in = false;
            v.salesforce.streaming = Streaming::Connecting;
            v.cic.connected = false;
            v.cic.watched_workgroups.clear();
        });
    }

    /// No routing runtime runs because the tenant is not configured (`message` says what is
    /// missing): the only reason, and the status is `down`.
    pub fn not_configured(&self, message: &str) {
        self.forget_runtime();
        self.set(ReasonKind::NotConfigured, message);
    }

    /// A new routing runtime starts (the first, or one with new credentials or settings):
    /// the reasons of a fresh start, whatever the previous runtime had reported.
    pub fn runtime_starting(&self) {
        self.forget_runtime();
        self.set_starting_reasons();
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recorder(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `/history` document now.
    pub fn history(&self) -> HistoryView {
        self.recorder().snapshot(Utc::now())
    }

    /// Sets a reason (keeping its `since` when it is already set).
    fn set(&self, kind: ReasonKind, message: impl Into<String>) {
        let message = message.into();
        {
            let mut inner = self.inner();
            let since = inner.reasons.get(&kind).map_or_else(Utc::now, |r| r.since);
            inner.reasons.insert(
                kind,
                Reason {
                    kind,
                    message,
                    since,
                },
            );
        }
        self.update(|_| {});
    }

    fn clear(&self, kind: ReasonKind) {
        let removed = self.inner().reasons.remove(&kind).is_some();
        if removed {
            self.update(|_| {});
        }
    }

    pub fn has_reason(&self, kind: ReasonKind) -> bool {
        self.inner().reasons.contains_key(&kind)
    }

    fn update(&self, f: impl FnOnce(&mut StatusView)) {
        let reasons: Vec<Reason> = self.inner().reasons.values().cloned().collect();
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut v);
        v.status = if reasons.is_empty() {
            Readiness::Up
        } else if reasons.iter().any(|r| r.kind.is_down()) {
            Readiness::Down
        } else {
            Readiness::Degraded
        };
        v.message = match reasons.first() {
            None => "Successfully connected to CIC Server and Salesforce".to_owned(),
            Some(r) => r.message.clone(),
        };
        // Recorded under the view's lock, so the newest transition is always the status shown.
        self.recorder().status(
            Utc::now(),
            v.status,
            reasons.first().map(|r| r.kind.as_str()),
            &v.message,
        );
        v.reasons = reasons;
    }

    /// Reads one thing of the status without cloning the whole document (per-tick callers).
    fn read<T>(&self, f: impl FnOnce(&StatusView) -> T) -> T {
        f(&self.view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> StatusView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_ready(&self) -> bool {
        self.read(|v| v.status == Readiness::Up)
    }

    pub fn alert(&self, kind: AlertKind, message: String) {
        self.record_alert(kind, &message);
        self.update(|v| {
            v.alerts.push_front(Alert {
                kind,
                message,
                at: Utc::now(),
            });
            v.alerts.truncate(MAX_ALERTS);
        });
    }

    pub fn salesforce_logged_in(&self, org_id: &str, instance_url: &str) {
        self.update(|v| {
            v.salesforce.logged_in = true;
            v.salesforce.org_id = Some(org_id.to_owned());
            v.salesforce.instance_url = Some(instance_url.to_owned());
            v.salesforce.last_error = None;
        });
        self.clear(ReasonKind::SalesforceLoggedOut);
    }

    /// A login that failed: nothing can be routed until one succeeds.
    pub fn salesforce_login_failed(&self, e: &str) {
        self.update(|v| {
            v.salesforce.logged_in = false;
            v.salesforce.last_error = Some(e.to_owned());
        });
        self.set(
            ReasonKind::SalesforceLoggedOut,
            format!("Not logged in to Salesforce: {e}"),
        );
    }

    pub fn salesforce_error(&self, e: &str) {
        self.update(|v| v.salesforce.last_error = Some(e.to_owned()));
    }

    /// A Salesforce call succeeded: the last error is history.
    pub fn salesforce_ok(&self) {
        self.update(|v| v.salesforce.last_error = None);
    }

    /// The client's counters, and its session (the org id follows a sandbox refresh).
    pub fn salesforce_stats(&self, s: &sors_salesforce::Stats, session: Option<(&str, &str)>) {
        let mut relogged = false;
        let adopt = {
            let mut inner = self.inner();
            let changed = s.last_error.is_some() && s.last_error != inner.adopted_sf_error;
            if changed {
                inner.adopted_sf_error = s.last_error.clone();
            }
            changed
        };
        self.update(|v| {
            relogged = s.relogins > v.salesforce.relogins;
            v.salesforce.api_used = s.api_used;
            v.salesforce.api_max = s.api_max;
            v.salesforce.api_calls = s.calls;
            v.salesforce.relogins = s.relogins;
            if adopt {
                v.salesforce.last_error = s.last_error.clone();
            }
            if let Some((org, url)) = session {
                if v.salesforce.org_id.as_deref() != Some(org) {
                    v.salesforce.org_id = Some(org.to_owned());
                }
                if v.salesforce.instance_url.as_deref() != Some(url) {
                    v.salesforce.instance_url = Some(url.to_owned());
                }
            }
        });
        if relogged {
            self.alert(AlertKind::Relogin, "Re-logged in to Salesforce".to_owned());
        }
        match (s.api_used, s.api_max) {
            (Some(used), Some(max))
                if max > 0 && used as f64 >= max as f64 * API_ALLOWANCE_WARN =>
            {
                let message =
                    format!("Salesforce API allowance nearly used: {used} of {max} requests today");
                if !self.has_reason(ReasonKind::ApiAllowanceLow) {
                    self.recorder()
                        .incident(Utc::now(), IncidentKind::ApiLimit, &message);
                }
                self.set(ReasonKind::ApiAllowanceLow, message);
            }
            _ => self.clear(ReasonKind::ApiAllowanceLow),
        }
    }

    /// An alert as an incident of the history. The reconciliation after a switchover (an alert
    /// of the same kind within the same CIC session) adds its numbers to that switchover.
    fn record_alert(&self, kind: AlertKind, message: &str) {
        let kind = match kind {
            AlertKind::PushLost => IncidentKind::PushLost,
            AlertKind::Switchover => IncidentKind::Switchover,
            AlertKind::Resync => IncidentKind::Resync,
            AlertKind::PushTopic => IncidentKind::PushTopicRepaired,
            AlertKind::Relogin => IncidentKind::Relogin,
            AlertKind::FailedRow => IncidentKind::FailedRows,
            AlertKind::Reconciled => IncidentKind::Reconciled,
            AlertKind::OtherRouter => IncidentKind::OtherRouter,
            AlertKind::ConfigDrift => IncidentKind::ConfigDrift,
        };
        let now = Utc::now();
        if kind == IncidentKind::Switchover {
            let session = self.read(|v| v.cic.sessions);
            let same = {
                let mut inner = self.inner();
                let same = inner.switchover_session == Some(session);
                inner.switchover_session = Some(session);
                same
            };
            if same && self.recorder().amend(kind, message) {
                return;
            }
        }
        self.recorder().incident(now, kind, message);
    }

    pub fn streaming(&self, state: Streaming) {
        self.update(|v| v.salesforce.streaming = state);
        match state {
            Streaming::Subscribed => self.clear(ReasonKind::StreamingDown),
            Streaming::Connecting | Streaming::Reconnecting => self.set(
                ReasonKind::StreamingDown,
                "Not subscribed to the PushTopic (reconnecting)",
            ),
        }
    }

    pub fn push_received(&self) {
        self.update(|v| {
            v.salesforce.pushes += 1;
            v.salesforce.last_push_at = Some(Utc::now());
        });
    }

    pub fn mappings(&self, n: usize) {
        self.update(|v| v.salesforce.monitored_queues = n);
    }

    pub fn cic_connected(&self, server: &str, backup: bool) {
        self.update(|v| {
            v.cic.connected = true;
            v.cic.server = Some(server.to_owned());
            v.cic.backup = backup;
            v.cic.sessions += 1;
            v.cic.last_error = None;
        });
        self.clear(ReasonKind::CicAuthFailing);
        self.clear(ReasonKind::CicDisconnected);
    }

    pub fn cic_lost(&self, reason: &str) {
        self.recorder().incident(
            Utc::now(),
            IncidentKind::CicLost,
            &format!("CIC session lost: {reason}"),
        );
        self.update(|v| {
            v.cic.connected = false;
            v.cic.last_error = Some(reason.to_owned());
        });
        self.set(
            ReasonKind::CicDisconnected,
            format!("Not connected to CIC: {reason}"),
        );
    }

    pub fn cic_error(&self, e: &str) {
        self.update(|v| v.cic.last_error = Some(e.to_owned()));
    }

    /// The CIC client's own view (read every tick): a refused password shows as such.
    pub fn cic_client(&self, last_error: Option<&str>, auth_failing: bool) {
        let connected = self.read(|v| v.cic.connected);
        if let (false, Some(e)) = (connected, last_error) {
            self.update(|v| v.cic.last_error = Some(e.to_owned()));
        }
        if auth_failing && !connected {
            self.set(
                ReasonKind::CicAuthFailing,
                format!(
                    "CIC refuses the user name or password: {}",
                    last_error.unwrap_or("authentication failed")
                ),
            );
        } else {
            self.clear(ReasonKind::CicAuthFailing);
        }
    }

    pub fn watched(&self, workgroups: &[String]) {
        self.update(|v| v.cic.watched_workgroups = workgroups.to_vec());
    }

    pub fn router_status(&self, s: RouterStatus, now: DateTime<Utc>) {
        let (cic_ready, waiting, other) = (s.cic_ready, s.writes_waiting, s.other_router_at);
        let connected = self.read(|v| v.cic.connected);
        self.recorder().backlog(now, s.waiting_rows);
        self.update(|v| v.routing.router = s);
        if connected && !cic_ready {
            self.set(
                ReasonKind::WaitingForCic,
                "Waiting for CIC workgroups, skills and queue contents",
            );
        } else {
            self.clear(ReasonKind::WaitingForCic);
        }
        self.inner().writes_waiting = waiting;
        self.judge_writes();
        match other {
            Some(at) if now - at < OTHER_ROUTER_MEMORY => {}
            _ => self.clear(ReasonKind::OtherRouterActive),
        }
    }

    fn judge_writes(&self) {
        let (failing, waiting) = {
            let inner = self.inner();
            (inner.write_call_failing.clone(), inner.writes_waiting)
        };
        match (failing, waiting) {
            (None, 0) => self.clear(ReasonKind::SalesforceWritesFailing),
            (Some(e), n) => self.set(
                ReasonKind::SalesforceWritesFailing,
                format!(
                    "Waiting for Salesforce: row writes fail ({e}); {n} row(s) wait to be written"
                ),
            ),
            (None, n) => self.set(
                ReasonKind::SalesforceWritesFailing,
                format!("Waiting for Salesforce: {n} row write(s) to retry"),
            ),
        }
    }

    /// A row write call failed for a transient reason.
    pub fn writes_failing(&self, e: &str) {
        self.salesforce_error(e);
        self.inner().write_call_failing = Some(e.to_owned());
        self.judge_writes();
    }

    /// A row write call went through.
    pub fn writes_ok(&self) {
        self.inner().write_call_failing = None;
        self.judge_writes();
        self.salesforce_ok();
    }

    pub fn push_topic_missing(&self, e: &str) {
        self.salesforce_error(e);
        self.set(
            ReasonKind::PushTopicMissing,
            format!("The PushTopic is missing and could not be created: {e}"),
        );
    }

    pub fn push_topic_ok(&self) {
        self.clear(ReasonKind::PushTopicMissing);
    }

    pub fn other_router(&self, entry: &RowId) {
        self.set(
            ReasonKind::OtherRouterActive,
            format!(
                "Another router is active on this tenant (a CIC result named row {entry}, which this router never raised)"
            ),
        );
        self.alert(
            AlertKind::OtherRouter,
            format!("another router is active on this tenant: CIC answered for row {entry}"),
        );
    }

    pub fn reconciled(&self) {
        self.update(|v| v.routing.reconciliations += 1);
    }

    /// The histograms, for the clients' call observers.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn routed(&self, ms: i64) {
        self.metrics.routed(ms);
        let mean = {
            let mut inner = self.inner();
            let t = &mut inner.route_ms_total;
            t.0 += ms;
            t.1 += 1;
            t.0 / t.1.max(1) as i64
        };
        self.recorder().routed(Utc::now(), ms);
        self.update(|v| {
            v.routing.routed += 1;
            v.routing.last_time_to_route_ms = Some(ms);
            v.routing.mean_time_to_route_ms = Some(mean);
        });
    }

    pub fn closed(&self) {
        self.update(|v| v.routing.closed += 1);
    }

    pub fn failed(&self, row: &RowId, reason: &str) {
        self.recorder().failed(Utc::now(), 1);
        self.update(|v| v.routing.failed += 1);
        self.alert(AlertKind::FailedRow, format!("row {row} failed: {reason}"));
    }

    pub fn retried(&self) {
        self.update(|v| v.routing.retries += 1);
    }

    pub fn disconnected(&self) {
        self.update(|v| v.routing.disconnected += 1);
    }

    pub fn push_lost(&self, rows: usize) {
        self.update(|v| v.routing.push_lost_rows += rows as u64);
        self.alert(
            AlertKind::PushLost,
            format!(
                "push notifications appear lost: the sweep found {rows} row(s) no push announced"
            ),
        );
        self.set(
            ReasonKind::PushLossSuspected,
            format!(
                "Push notifications appear lost: the sweep found {rows} row(s) no push announced"
            ),
        );
    }

    /// A sweep found every row it saw announced by a push.
    pub fn sweep_clean(&self) {
        self.clear(ReasonKind::PushLossSuspected);
    }

    pub fn swept(&self) {
        self.update(|v| v.routing.sweeps += 1);
        self.salesforce_ok();
    }

    pub fn write_call(&self) {
        self.update(|v| v.routing.write_calls += 1);
    }
}

/// The status endpoints. `cors_origins` empty or `*` means any origin may read the heartbeat (it
/// holds no secret), as the dashboard is a page opened from anywhere.
pub fn http_router(shared: Arc<Shared>, cors_origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let any = cors_origins.is_empty() || cors_origins.iter().any(|o| o.trim() == "*");
    let cors = if any {
        CorsLayer::new().allow_origin(AllowOrigin::any())
    } else {
        CorsLayer::new().allow_origin(origins)
    };
    Router::new()
        .route("/heartbeat", get(heartbeat).layer(cors.clone()))
        .route("/history", get(history_doc).layer(cors))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route("/dashboard/", get(|| dashboard_file("index.html")))
        .route("/dashboard/{file}", get(dashboard_asset))
        .with_state(shared)
}

async fn heartbeat(State(s): State<Arc<Shared>>) -> Json<StatusView> {
    Json(s.snapshot())
}

async fn history_doc(State(s): State<Arc<Shared>>) -> Json<HistoryView> {
    Json(s.history())
}

/// The policy the dashboard's files are served with: nothing but its own files, and requests to
/// any tenant's `/heartbeat` and `/history` (`connect-src http: https:`).
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's four static files (`dashboard/` in the repository), built into the binary.
const DASHBOARD_FILES: [(&str, &str, &[u8]); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../dashboard/index.html"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../dashboard/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../dashboard/dashboard.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../dashboard/favicon.svg"),
    ),
];

async fn dashboard_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    dashboard_file(&file).await
}

async fn dashboard_file(file: &str) -> Response {
    let Some((_, content_type, body)) = DASHBOARD_FILES.iter().find(|(name, _, _)| *name == file)
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        *body,
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let v = s.snapshot();
    let code = if v.status == Readiness::Up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if v.reasons.is_empty() {
        v.message
    } else {
        v.reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    (code, body).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut body = render_metrics(&s.snapshot());
    body.push_str(&s.metrics.render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Prometheus text exposition of the status document.
pub fn render_metrics(v: &StatusView) -> String {
    let mut out = String::new();
    let t = escape(&v.tenant);
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{tenant=\"{t}\"}} {value}");
    };
    let r = &v.routing;
    metric(
        "sors_up",
        "gauge",
        "1 when the status is up (both sides connected, subscribed, nothing wrong).",
        f64::from(u8::from(v.status == Readiness::Up)),
    );
    metric(
        "sors_salesforce_logged_in",
        "gauge",
        "1 when logged in to Salesforce.",
        f64::from(u8::from(v.salesforce.logged_in)),
    );
    metric(
        "sors_cic_connected",
        "gauge",
        "1 when a CIC session is up.",
        f64::from(u8::from(v.cic.connected)),
    );
    metric(
        "sors_rows_routed_total",
        "counter",
        "Rows that created an interaction.",
        r.routed as f64,
    );
    metric(
        "sors_rows_closed_total",
        "counter",
        "Rows processed without a new interaction.",
        r.closed as f64,
    );
    metric(
        "sors_rows_failed_total",
        "counter",
        "Rows that ended Failed.",
        r.failed as f64,
    );
    metric(
        "sors_retries_total",
        "counter",
        "Retried routing rounds.",
        r.retries as f64,
    );
    metric(
        "sors_interactions_disconnected_total",
        "counter",
        "Interactions the router disconnected.",
        r.disconnected as f64,
    );
    metric(
        "sors_push_lost_rows_total",
        "counter",
        "Rows the sweep found that no push announced.",
        r.push_lost_rows as f64,
    );
    metric(
        "sors_pushes_total",
        "counter",
        "PushTopic events received.",
        v.salesforce.pushes as f64,
    );
    metric(
        "sors_salesforce_api_calls_total",
        "counter",
        "Salesforce REST calls made.",
        v.salesforce.api_calls as f64,
    );
    metric(
        "sors_salesforce_relogins_total",
        "counter",
        "Salesforce re-logins.",
        v.salesforce.relogins as f64,
    );
    metric(
        "sors_row_write_calls_total",
        "counter",
        "Calls that wrote routing rows.",
        r.write_calls as f64,
    );
    metric(
        "sors_cic_sessions_total",
        "counter",
        "CIC sessions established.",
        v.cic.sessions as f64,
    );
    metric(
        "sors_rows_in_flight",
        "gauge",
        "Route rows whose handler notification is out, waiting for CIC (at most max_in_flight).",
        r.router.in_flight as f64,
    );
    metric(
        "sors_rows_waiting",
        "gauge",
        "Rows waiting their turn.",
        r.router.waiting_rows as f64,
    );
    metric(
        "sors_live_interactions",
        "gauge",
        "Live interactions in watched workgroup queues.",
        r.router.live_interactions as f64,
    );
    if let Some(ms) = r.mean_time_to_route_ms {
        metric(
            "sors_time_to_route_mean_seconds",
            "gauge",
            "Mean time from row creation to interaction.",
            ms as f64 / 1000.0,
        );
    }
    if let (Some(used), Some(max)) = (v.salesforce.api_used, v.salesforce.api_max) {
        metric(
            "sors_salesforce_api_usage",
            "gauge",
            "Salesforce daily API requests used (Sforce-Limit-Info).",
            used as f64,
        );
        metric(
            "sors_salesforce_api_limit",
            "gauge",
            "Salesforce daily API request limit.",
            max as f64,
        );
        metric(
            "sors_salesforce_api_remaining",
            "gauge",
            "Salesforce daily API requests left (limit - usage, shared with every integration of the org).",
            max.saturating_sub(used) as f64,
        );
    }
    let _ = writeln!(
        out,
        "# HELP sors_status_reason 1 for each reason the status is not up (see /heartbeat reasons)."
    );
    let _ = writeln!(out, "# TYPE sors_status_reason gauge");
    for r in &v.reasons {
        let kind = serde_json::to_value(r.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "sors_status_reason{{tenant=\"{t}\",reason=\"{kind}\"}} 1"
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Arc<Shared> {
        let s = Shared::new("acme");
        s.salesforce_logged_in("00D", "https://x");
        s.cic_connected("cic1", false);
        s.streaming(Streaming::Subscribed);
        s.router_status(
            RouterStatus {
                cic_ready: true,
                ..RouterStatus::default()
            },
            Utc::now(),
        );
        s
    }

    fn kinds(s: &Shared) -> Vec<ReasonKind> {
        s.snapshot().reasons.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn status_is_up_only_with_both_sides_and_the_subscription() {
        let s = Shared::new("acme");
        assert_eq!(s.snapshot().status, Readiness::Down);
        s.salesforce_logged_in("00D", "https://x");
        s.cic_connected("cic1", false);
        assert_eq!(s.snapshot().status, Readiness::Degraded);
        assert_eq!(s.snapshot().message, "Not subscribed to the PushTopic yet");
        s.streaming(Streaming::Subscribed);
        s.router_status(RouterStatus::default(), Utc::now());
        assert_eq!(
            kinds(&s),
            vec![ReasonKind::WaitingForCic],
            "not before the router is ready"
        );
        let s = up();
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Up);
        assert!(v.reasons.is_empty());
        assert_eq!(
            v.message,
            "Successfully connected to CIC Server and Salesforce"
        );
        s.cic_lost("switchover");
        assert_eq!(s.snapshot().status, Readiness::Down);
        assert_eq!(kinds(&s), vec![ReasonKind::CicDisconnected]);
    }

    #[test]
    fn each_fault_degrades_with_its_reason_and_recovery_clears_it() {
        let s = up();
        s.writes_failing("Salesforce API error (HTTP 503) SERVER_UNAVAILABLE: down");
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Degraded);
        assert_eq!(kinds(&s), vec![ReasonKind::SalesforceWritesFailing]);
        assert!(
            v.message.starts_with("Waiting for Salesforce"),
            "{}",
            v.message
        );
        assert!(v.salesforce.last_error.is_some());
        // the call goes through, but rows still wait for their retry
        s.writes_ok();
        s.router_status(
            RouterStatus {
                cic_ready: true,
                writes_waiting: 3,
                ..RouterStatus::default()
            },
            Utc::now(),
        );
        assert_eq!(kinds(&s), vec![ReasonKind::SalesforceWritesFailing]);
        s.router_status(
            RouterStatus {
                cic_ready: true,
                ..RouterStatus::default()
            },
            Utc::now(),
        );
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Up);
        assert_eq!(v.salesforce.last_error, None, "cleared on recovery");

        s.push_topic_missing("INSUFFICIENT_ACCESS");
        assert_eq!(kinds(&s), vec![ReasonKind::PushTopicMissing]);
        s.push_topic_ok();
        s.push_lost(2);
        assert_eq!(kinds(&s), vec![ReasonKind::PushLossSuspected]);
        s.sweep_clean();
        s.other_router(&RowId::from("a01"));
        assert_eq!(kinds(&s), vec![ReasonKind::OtherRouterActive]);
        let at = Utc::now();
        s.router_status(
            RouterStatus {
                cic_ready: true,
                other_router_at: Some(at),
                ..RouterStatus::default()
            },
            at + chrono::TimeDelta::minutes(1),
        );
        assert_eq!(
            kinds(&s),
            vec![ReasonKind::OtherRouterActive],
            "kept a while"
        );
        s.router_status(
            RouterStatus {
                cic_ready: true,
                other_router_at: Some(at),
                ..RouterStatus::default()
            },
            at + OTHER_ROUTER_MEMORY + chrono::TimeDelta::seconds(1),
        );
        assert_eq!(s.snapshot().status, Readiness::Up);
    }

    #[test]
    fn a_refused_cic_password_is_reported_as_such() {
        let s = up();
        s.cic_lost("session lost");
        s.cic_client(Some("CIC authentication failed: bad password"), true);
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Down);
        assert!(kinds(&s).contains(&ReasonKind::CicAuthFailing));
        assert_eq!(
            v.cic.last_error.as_deref(),
            Some("CIC authentication failed: bad password")
        );
        s.cic_connected("cic2", true);
        s.cic_client(None, false);
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Up);
        assert_eq!(v.cic.last_error, None);
    }

    #[test]
    fn the_org_id_follows_the_session_and_old_client_errors_are_not_readopted() {
        let s = up();
        let mut stats = sors_salesforce::Stats {
            last_error: Some("boom".into()),
            ..Default::default()
        };
        s.salesforce_stats(&stats, Some(("00DNEW", "https://new")));
        let v = s.snapshot();
        assert_eq!(v.salesforce.org_id.as_deref(), Some("00DNEW"));
        assert_eq!(v.salesforce.last_error.as_deref(), Some("boom"));
        s.salesforce_ok();
        s.salesforce_stats(&stats, None);
        assert_eq!(
            s.snapshot().salesforce.last_error,
            None,
            "the same old error"
        );
        stats.last_error = Some("new trouble".into());
        s.salesforce_stats(&stats, None);
        assert_eq!(
            s.snapshot().salesforce.last_error.as_deref(),
            Some("new trouble")
        );
    }

    #[test]
    fn not_configured_is_down_alone_and_a_new_runtime_starts_afresh() {
        let s = up();
        s.not_configured("Not configured: enter the CIC credentials");
        let v = s.snapshot();
        assert_eq!(v.status, Readiness::Down);
        assert_eq!(kinds(&s), vec![ReasonKind::NotConfigured]);
        assert_eq!(v.message, "Not configured: enter the CIC credentials");
        assert!(!v.cic.connected && !v.salesforce.logged_in);
        s.runtime_starting();
        assert_eq!(
            kinds(&s),
            vec![
                ReasonKind::SalesforceLoggedOut,
                ReasonKind::CicDisconnected,
                ReasonKind::StreamingDown
            ]
        );
    }

    #[test]
    fn a_nearly_used_api_allowance_degrades() {
        let s = up();
        let stats = sors_salesforce::Stats {
            api_used: Some(95_000),
            api_max: Some(100_000),
            ..Default::default()
        };
        s.salesforce_stats(&stats, None);
        assert_eq!(kinds(&s), vec![ReasonKind::ApiAllowanceLow]);
    }

    #[test]
    fn a_relogin_raises_one_alert() {
        let s = Shared::new("acme");
        let mut stats = sors_salesforce::Stats {
            logins: 1,
            ..Default::default()
        };
        s.salesforce_stats(&stats, None);
        assert!(s.snapshot().alerts.is_empty());
        stats.relogins = 1;
        s.salesforce_stats(&stats, None);
        s.salesforce_stats(&stats, None);
        let v = s.snapshot();
        assert_eq!(v.salesforce.relogins, 1);
        let relogins: Vec<_> = v
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Relogin)
            .collect();
        assert_eq!(relogins.len(), 1);
    }

    #[test]
    fn alerts_are_newest_first_and_bounded() {
        let s = Shared::new("acme");
        for i in 0..60 {
            s.alert(AlertKind::Resync, format!("a{i}"));
        }
        let v = s.snapshot();
        assert_eq!(v.alerts.len(), MAX_ALERTS);
        assert_eq!(v.alerts[0].message, "a59");
    }

    fn incidents(s: &Shared) -> Vec<(IncidentKind, u32, String)> {
        s.history()
            .incidents
            .into_iter()
            .map(|i| (i.kind, i.count, i.message))
            .collect()
    }

    #[test]
    fn transitions_incidents_and_minutes_reach_the_history() {
        let s = up();
        s.push_lost(2);
        s.sweep_clean();
        s.routed(840);
        s.failed(&RowId::from("a01"), "no queue");
        s.router_status(
            RouterStatus {
                cic_ready: true,
                waiting_rows: 4,
                ..RouterStatus::default()
            },
            Utc::now(),
        );
        let h = s.history();
        let got: Vec<(Readiness, Option<&str>)> = h
            .transitions
            .iter()
            .map(|t| (t.status, t.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Readiness::Down, Some("salesforce_logged_out")),
                (Readiness::Down, Some("cic_disconnected")),
                (Readiness::Degraded, Some("streaming_down")),
                (Readiness::Up, None),
                (Readiness::Degraded, Some("push_loss_suspected")),
                (Readiness::Up, None),
            ],
            "only changes, in order"
        );
        let last = h.transitions.last().unwrap();
        assert_eq!(
            last.message,
            "Successfully connected to CIC Server and Salesforce"
        );
        assert_eq!(
            h.transitions[4].message,
            "Push notifications appear lost: the sweep found 2 row(s) no push announced"
        );
        assert_eq!(h.started_at, s.snapshot().started_at.unwrap());
        let kinds: Vec<IncidentKind> = incidents(&s).into_iter().map(|i| i.0).collect();
        assert_eq!(
            kinds,
            vec![IncidentKind::PushLost, IncidentKind::FailedRows]
        );
        let m = &h.minutes;
        assert_eq!(m.routed.iter().sum::<u32>(), 1);
        assert_eq!(m.failed.iter().sum::<u32>(), 1);
        assert_eq!(*m.p50_ms.last().unwrap(), Some(840));
        assert_eq!(*m.backlog.last().unwrap(), Some(4));
    }

    #[test]
    fn every_alert_kind_is_an_incident() {
        let s = Shared::new("acme");
        for kind in [
            AlertKind::PushLost,
            AlertKind::Switchover,
            AlertKind::Resync,
            AlertKind::PushTopic,
            AlertKind::Relogin,
            AlertKind::FailedRow,
            AlertKind::Reconciled,
            AlertKind::OtherRouter,
            AlertKind::ConfigDrift,
        ] {
            s.alert(kind, format!("{kind:?}"));
        }
        let got: Vec<(IncidentKind, String)> =
            incidents(&s).into_iter().map(|i| (i.0, i.2)).collect();
        assert_eq!(
            got,
            vec![
                (IncidentKind::PushLost, "PushLost".to_owned()),
                (IncidentKind::Switchover, "Switchover".to_owned()),
                (IncidentKind::Resync, "Resync".to_owned()),
                (IncidentKind::PushTopicRepaired, "PushTopic".to_owned()),
                (IncidentKind::Relogin, "Relogin".to_owned()),
                (IncidentKind::FailedRows, "FailedRow".to_owned()),
                (IncidentKind::Reconciled, "Reconciled".to_owned()),
                (IncidentKind::OtherRouter, "OtherRouter".to_owned()),
                (IncidentKind::ConfigDrift, "ConfigDrift".to_owned()),
            ]
        );
    }

    #[test]
    fn a_switchover_and_its_reconciliation_are_one_incident() {
        let s = up();
        s.cic_lost("cic1 stopped answering");
        s.cic_connected("cic2", true);
        s.alert(
            AlertKind::Switchover,
            "CIC session re-established on cic2".into(),
        );
        s.alert(
            AlertKind::Switchover,
            "CIC switchover: 1 interaction(s) lost, 1 being re-routed, 0 request(s) raised again"
                .into(),
        );
        // A second switchover, in a new session, is a second incident.
        s.cic_lost("cic2 stopped answering");
        s.cic_connected("cic1", false);
        s.alert(
            AlertKind::Switchover,
            "CIC session re-established on cic1".into(),
        );
        assert_eq!(
            incidents(&s),
            vec![
                (
                    IncidentKind::CicLost,
                    1,
                    "CIC session lost: cic1 stopped answering".to_owned()
                ),
                (
                    IncidentKind::Switchover,
                    1,
                    "CIC session re-established on cic2; CIC switchover: 1 interaction(s) lost, 1 being re-routed, 0 request(s) raised again".to_owned()
                ),
                (
                    IncidentKind::CicLost,
                    1,
                    "CIC session lost: cic2 stopped answering".to_owned()
                ),
                (
                    IncidentKind::Switchover,
                    1,
                    "CIC session re-established on cic1".to_owned()
                ),
            ]
        );
        let h = s.history();
        assert!(h.transitions.iter().any(
            |t| t.reason.as_deref() == Some("cic_disconnected") && t.status == Readiness::Down
        ));
    }

    #[test]
    fn the_api_allowance_is_an_incident_when_it_first_runs_low() {
        let s = up();
        let mut stats = sors_salesforce::Stats {
            api_used: Some(95_000),
            api_max: Some(100_000),
            ..Default::default()
        };
        s.salesforce_stats(&stats, None);
        stats.api_used = Some(96_000);
        s.salesforce_stats(&stats, None);
        assert_eq!(
            incidents(&s),
            vec![(
                IncidentKind::ApiLimit,
                1,
                "Salesforce API allowance nearly used: 95000 of 100000 requests today".to_owned()
            )]
        );
        let h = s.history();
        let last = h.transitions.last().unwrap();
        assert_eq!(
            (last.status, last.reason.as_deref()),
            (Readiness::Degraded, Some("api_allowance_low"))
        );
    }

    #[test]
    fn reason_kinds_read_as_the_heartbeat_shows_them() {
        for k in [
            ReasonKind::SalesforceLoggedOut,
            ReasonKind::CicAuthFailing,
            ReasonKind::CicDisconnected,
            ReasonKind::StreamingDown,
            ReasonKind::WaitingForCic,
            ReasonKind::SalesforceWritesFailing,
            ReasonKind::PushTopicMissing,
            ReasonKind::PushLossSuspected,
            ReasonKind::OtherRouterActive,
            ReasonKind::ApiAllowanceLow,
            ReasonKind::NotConfigured,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    async fn get(
        app: Router,
        uri: &str,
        origin: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        use tower::ServiceExt as _;
        let mut req = axum::http::Request::get(uri);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let res = app
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, body.to_vec())
    }

    #[tokio::test]
    async fn history_is_served_with_the_heartbeats_cors() {
        let s = up();
        s.alert(AlertKind::Switchover, "CIC session re-established".into());
        let app = http_router(s.clone(), &[]);
        for path in ["/heartbeat", "/history"] {
            let (code, headers, _) = get(app.clone(), path, Some("null")).await;
            assert_eq!(code, StatusCode::OK, "{path}");
            assert_eq!(
                headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                "*",
                "{path} reads from a page opened as a file"
            );
        }
        let (_, headers, body) = get(app.clone(), "/history", None).await;
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["incidents"][0]["kind"], "switchover");
        assert_eq!(
            doc["transitions"].as_array().unwrap().last().unwrap()["status"],
            "up"
        );
        // Only the configured origins, when there are some: for both documents alike.
        let app = http_router(s, &["http://ops.example".to_owned()]);
        for path in ["/heartbeat", "/history"] {
            let (_, headers, _) = get(app.clone(), path, Some("http://ops.example")).await;
            assert_eq!(
                headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                "http://ops.example"
            );
            let (_, headers, _) = get(app.clone(), path, Some("http://evil.example")).await;
            assert!(
                !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn the_dashboard_is_served_with_its_policy() {
        let app = http_router(up(), &[]);
        let (code, headers, _) = get(app.clone(), "/dashboard", None).await;
        assert_eq!(code, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "/dashboard/");
        for (path, ty, file) in [
            ("/dashboard/", "text/html; charset=utf-8", "index.html"),
            (
                "/dashboard/index.html",
                "text/html; charset=utf-8",
                "index.html",
            ),
            (
                "/dashboard/dashboard.js",
                "text/javascript; charset=utf-8",
                "dashboard.js",
            ),
            (
                "/dashboard/dashboard.css",
                "text/css; charset=utf-8",
                "dashboard.css",
            ),
            ("/dashboard/favicon.svg", "image/svg+xml", "favicon.svg"),
        ] {
            let (code, headers, body) = get(app.clone(), path, None).await;
            assert_eq!(code, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                DASHBOARD_CSP,
                "{path}"
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            let on_disk = std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../dashboard")
                    .join(file),
            )
            .unwrap();
            assert!(body == on_disk, "{path} is {file} as built");
        }
        assert_eq!(
            DASHBOARD_CSP,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        for path in [
            "/dashboard/README.md",
            "/dashboard/package.json",
            "/dashboard/..%2FCargo.toml",
            "/dashboard/tests/status.test.mjs",
        ] {
            let (code, _, _) = get(app.clone(), path, None).await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn metrics_render_counters_with_the_tenant_label() {
        let s = Shared::new("ac\"me");
        s.routed(1500);
        s.routed(500);
        s.push_lost(3);
        let text = render_metrics(&s.snapshot());
        assert!(
            text.contains("sors_rows_routed_total{tenant=\"ac\\\"me\"} 2"),
            "{text}"
        );
        assert!(text.contains("sors_push_lost_rows_total{tenant=\"ac\\\"me\"} 3"));
        assert!(text.contains("sors_time_to_route_mean_seconds{tenant=\"ac\\\"me\"} 1"));
        assert!(text.contains("# TYPE sors_up gauge"));
        assert!(
            text.contains(
                "sors_status_reason{tenant=\"ac\\\"me\",reason=\"push_loss_suspected\"} 1"
            ),
            "{text}"
        );
    }
}
