//! What the service knows about itself, and the HTTP endpoints that show it: `/heartbeat`
//! (JSON, CORS-enabled, what the dashboard polls), `/metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (logged in on both sides and subscribed).
//!
//! Nothing here ever holds a secret: only ids, URLs, counters and error texts that the clients
//! have already stripped of tokens and passwords.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sors_core::model::RowId;
use sors_core::router::Status as RouterStatus;
use tower_http::cors::{AllowOrigin, CorsLayer};

const MAX_ALERTS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    PushLost,
    Switchover,
    Resync,
    PushTopic,
    Relogin,
    FailedRow,
}

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SalesforceView {
    pub logged_in: bool,
    pub org_id: Option<String>,
    pub instance_url: Option<String>,
    /// `connecting`, `subscribed` or `reconnecting`.
    pub streaming: String,
    pub last_push_at: Option<DateTime<Utc>>,
    pub pushes: u64,
    pub api_used: Option<u64>,
    pub api_max: Option<u64>,
    pub api_calls: u64,
    pub relogins: u64,
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
    /// `up` when both sides are connected and the PushTopic is subscribed, `degraded` otherwise.
    pub status: &'static str,
    /// The original product's wording, for the dashboard.
    pub message: String,
    pub salesforce: SalesforceView,
    pub cic: CicView,
    pub routing: RoutingView,
    pub alerts: VecDeque<Alert>,
}

/// Status shared by the runtime (writer) and the HTTP endpoints (readers).
#[derive(Debug)]
pub struct Shared {
    view: Mutex<StatusView>,
    route_ms_total: Mutex<(i64, u64)>,
}

impl Shared {
    pub fn new(tenant: &str) -> Arc<Shared> {
        let view = StatusView {
            tenant: tenant.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: Some(Utc::now()),
            status: "degraded",
            message: "Starting".to_owned(),
            salesforce: SalesforceView {
                streaming: "connecting".to_owned(),
                ..SalesforceView::default()
            },
            ..StatusView::default()
        };
        Arc::new(Shared {
            view: Mutex::new(view),
            route_ms_total: Mutex::new((0, 0)),
        })
    }

    fn update(&self, f: impl FnOnce(&mut StatusView)) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut v);
        let ready = v.salesforce.logged_in
            && v.cic.connected
            && v.salesforce.streaming == "subscribed"
            && v.routing.router.cic_ready;
        v.status = if ready { "up" } else { "degraded" };
        v.message = if ready {
            "Successfully connected to CIC Server and Salesforce".to_owned()
        } else if !v.salesforce.logged_in {
            "Not logged in to Salesforce".to_owned()
        } else if !v.cic.connected {
            "Not connected to CIC".to_owned()
        } else if v.salesforce.streaming != "subscribed" {
            "Not subscribed to the PushTopic".to_owned()
        } else {
            "Waiting for CIC workgroups, skills and queue contents".to_owned()
        };
    }

    pub fn snapshot(&self) -> StatusView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_ready(&self) -> bool {
        self.snapshot().status == "up"
    }

    pub fn alert(&self, kind: AlertKind, message: String) {
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
        });
    }

    pub fn salesforce_error(&self, e: &str) {
        self.update(|v| v.salesforce.last_error = Some(e.to_owned()));
    }

    pub fn salesforce_stats(&self, s: &sors_salesforce::Stats) {
        let mut relogged = false;
        self.update(|v| {
            relogged = s.relogins > v.salesforce.relogins;
            v.salesforce.api_used = s.api_used;
            v.salesforce.api_max = s.api_max;
            v.salesforce.api_calls = s.calls;
            v.salesforce.relogins = s.relogins;
            if s.last_error.is_some() {
                v.salesforce.last_error = s.last_error.clone();
            }
        });
        if relogged {
            self.alert(AlertKind::Relogin, "Re-logged in to Salesforce".to_owned());
        }
    }

    pub fn streaming(&self, state: &str) {
        self.update(|v| v.salesforce.streaming = state.to_owned());
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
        });
    }

    pub fn cic_lost(&self, reason: &str) {
        self.update(|v| {
            v.cic.connected = false;
            v.cic.last_error = Some(reason.to_owned());
        });
    }

    pub fn cic_error(&self, e: &str) {
        self.update(|v| v.cic.last_error = Some(e.to_owned()));
    }

    pub fn watched(&self, workgroups: &[String]) {
        self.update(|v| v.cic.watched_workgroups = workgroups.to_vec());
    }

    pub fn router_status(&self, s: RouterStatus) {
        self.update(|v| v.routing.router = s);
    }

    pub fn routed(&self, ms: i64) {
        let mean = {
            let mut t = self
                .route_ms_total
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            t.0 += ms;
            t.1 += 1;
            t.0 / t.1.max(1) as i64
        };
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
    }

    pub fn swept(&self) {
        self.update(|v| v.routing.sweeps += 1);
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
        .route("/heartbeat", get(heartbeat).layer(cors))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

async fn heartbeat(State(s): State<Arc<Shared>>) -> Json<StatusView> {
    Json(s.snapshot())
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let v = s.snapshot();
    let code = if v.status == "up" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, v.message).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let body = render_metrics(&s.snapshot());
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
        "1 when both sides are connected and the PushTopic is subscribed.",
        f64::from(u8::from(v.status == "up")),
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
        "Cases being routed now.",
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

    #[test]
    fn status_is_up_only_with_both_sides_and_the_subscription() {
        let s = Shared::new("acme");
        assert_eq!(s.snapshot().status, "degraded");
        s.salesforce_logged_in("00D", "https://x");
        s.cic_connected("cic1", false);
        assert_eq!(s.snapshot().message, "Not subscribed to the PushTopic");
        s.streaming("subscribed");
        assert_eq!(
            s.snapshot().status,
            "degraded",
            "not before the router is ready"
        );
        s.router_status(RouterStatus {
            cic_ready: true,
            ..RouterStatus::default()
        });
        let v = s.snapshot();
        assert_eq!(v.status, "up");
        assert_eq!(
            v.message,
            "Successfully connected to CIC Server and Salesforce"
        );
        s.cic_lost("switchover");
        assert_eq!(s.snapshot().status, "degraded");
    }

    #[test]
    fn a_relogin_raises_one_alert() {
        let s = Shared::new("acme");
        let mut stats = sors_salesforce::Stats {
            logins: 1,
            ..Default::default()
        };
        s.salesforce_stats(&stats);
        assert!(s.snapshot().alerts.is_empty());
        stats.relogins = 1;
        s.salesforce_stats(&stats);
        s.salesforce_stats(&stats);
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
    }
}
