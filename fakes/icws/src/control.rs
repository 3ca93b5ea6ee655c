//! The control API under `/__fake/`, served identically by both servers (JSON in and out).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::state::{FailRule, Which};
use crate::{Error, Shared};

#[derive(Clone)]
struct Ctl {
    shared: Arc<Shared>,
    which: Which,
}

pub(crate) fn router(shared: Arc<Shared>, which: Which) -> Router {
    Router::new()
        .route("/__fake/switchover", post(switchover))
        .route("/__fake/servers/{which}/{action}", post(server_action))
        .route("/__fake/end-sessions", post(end_sessions))
        .route("/__fake/latency", post(latency))
        .route("/__fake/fail-next", post(fail_next))
        .route("/__fake/agents/{user}/availability", post(availability))
        .route("/__fake/users/{user}/password", post(password))
        .route("/__fake/interactions", get(interactions))
        .route("/__fake/counters", get(counters))
        .route("/__fake/status", get(status))
        .with_state(Ctl { shared, which })
}

fn bad(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// Parses an optional JSON body (empty body = all defaults).
fn body<T: DeserializeOwned + Default>(b: &Bytes) -> Result<T, String> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| format!("invalid JSON body: {e}"))
}

fn required<T: DeserializeOwned>(b: &Bytes) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("invalid JSON body: {e}"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    recovery: Option<bool>,
}

async fn switchover(State(c): State<Ctl>, b: Bytes) -> Response {
    match body::<SwitchoverBody>(&b) {
        Ok(req) => {
            let active = c.shared.switchover(req.recovery);
            ok(json!({"active": active}))
        }
        Err(msg) => bad(StatusCode::BAD_REQUEST, msg),
    }
}

async fn server_action(
    State(c): State<Ctl>,
    Path((which, action)): Path<(String, String)>,
) -> Response {
    let Some(which) = Which::parse(&which) else {
        return bad(StatusCode::NOT_FOUND, "server must be primary or backup");
    };
    let result = match action.as_str() {
        "stop" => c.shared.stop_server(which).await,
        "start" => c.shared.start_server(which).await,
        _ => return bad(StatusCode::NOT_FOUND, "action must be stop or start"),
    };
    match result {
        Ok(()) => ok(json!({"server": which, "running": c.shared.is_running(which).await})),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn password(State(c): State<Ctl>, Path(user): Path<String>, b: Bytes) -> Response {
    match required::<PasswordBody>(&b) {
        Ok(req) => {
            if c.shared
                .with_state(|st| st.set_password(&user, &req.password))
            {
                ok(json!({"user": user}))
            } else {
                bad(StatusCode::NOT_FOUND, format!("no user {user}"))
            }
        }
        Err(msg) => bad(StatusCode::BAD_REQUEST, msg),
    }
}

async fn end_sessions(State(c): State<Ctl>) -> Response {
    let ended = c.shared.with_state(|st| st.drop_sessions(None));
    ok(json!({"ended": ended}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    ms: u64,
}

async fn latency(State(c): State<Ctl>, b: Bytes) -> Response {
    match required::<LatencyBody>(&b) {
        Ok(req) => {
            c.shared
                .with_state(|st| st.latency = Duration::from_millis(req.ms));
            ok(json!({"ms": req.ms}))
        }
        Err(msg) => bad(StatusCode::BAD_REQUEST, msg),
    }
}

async fn fail_next(State(c): State<Ctl>, b: Bytes) -> Response {
    let rule = match required::<FailRule>(&b) {
        Ok(r) => r,
        Err(msg) => return bad(StatusCode::BAD_REQUEST, msg),
    };
    match c.shared.fail_next(rule.clone()) {
        Ok(()) => ok(json!(rule)),
        Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityBody {
    available: bool,
}

async fn availability(State(c): State<Ctl>, Path(user): Path<String>, b: Bytes) -> Response {
    let req = match required::<AvailabilityBody>(&b) {
        Ok(r) => r,
        Err(msg) => return bad(StatusCode::BAD_REQUEST, msg),
    };
    match c.shared.set_agent_available(&user, req.available) {
        Ok(()) => ok(json!({"agent": user, "available": req.available})),
        Err(e @ Error::UnknownAgent(_)) => bad(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn interactions(State(c): State<Ctl>) -> Response {
    ok(json!(c.shared.with_state(|st| st.interactions())))
}

async fn counters(State(c): State<Ctl>) -> Response {
    ok(json!(c.shared.with_state(|st| st.counters())))
}

async fn status(State(c): State<Ctl>) -> Response {
    let (active, recovery, sessions) = c
        .shared
        .with_state(|st| (st.active, st.spec.interaction_recovery, st.session_count()));
    let mut servers = serde_json::Map::new();
    for w in [Which::Primary, Which::Backup] {
        servers.insert(
            w.as_str().to_owned(),
            json!({
                "url": format!("http://{}", c.shared.addr(w)),
                "running": c.shared.is_running(w).await,
            }),
        );
    }
    ok(json!({
        "active": active,
        "answeredBy": c.which,
        "servers": servers,
        "interactionRecovery": recovery,
        "sessions": sessions,
    }))
}
