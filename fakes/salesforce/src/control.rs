//! The control API under `/__fake/` (JSON). Every action is also a method of
//! [`crate::FakeSalesforce`]; both go through [`Shared`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sors_fake_cometd::ForgetAdvice;

use crate::Shared;
use crate::org::{CallKind, InjectedError};

type St = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__fake/expire-sessions", post(expire_sessions))
        .route("/__fake/forget-streaming", post(forget_streaming))
        .route("/__fake/drop-pushes", post(drop_pushes))
        .route("/__fake/sandbox-refresh", post(sandbox_refresh))
        .route("/__fake/latency", post(latency))
        .route("/__fake/fail-next", post(fail_next))
        .route("/__fake/counters", get(counters))
        .route("/__fake/dump", get(dump))
        .with_state(shared)
}

fn ok() -> Response {
    axum::Json(json!({"ok": true})).into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"ok": false, "error": message})),
    )
        .into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid request body: {e}"))))
}

async fn expire_sessions(State(shared): St) -> Response {
    shared.expire_sessions();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetBody {
    advice: String,
}

async fn forget_streaming(State(shared): St, body: Bytes) -> Response {
    let b: ForgetBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let advice = match b.advice.as_str() {
        "handshake" => ForgetAdvice::Handshake,
        "none" => ForgetAdvice::None,
        other => {
            return bad_request(format!(
                "advice must be \"handshake\" or \"none\", not {other:?}"
            ));
        }
    };
    shared.forget_streaming(advice);
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropBody {
    on: bool,
}

async fn drop_pushes(State(shared): St, body: Bytes) -> Response {
    match parse::<DropBody>(&body) {
        Ok(b) => {
            shared.set_drop_pushes(b.on);
            ok()
        }
        Err(r) => *r,
    }
}

async fn sandbox_refresh(State(shared): St) -> Response {
    let org_id = shared.sandbox_refresh();
    axum::Json(json!({"ok": true, "orgId": org_id})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    ms: u64,
}

async fn latency(State(shared): St, body: Bytes) -> Response {
    match parse::<LatencyBody>(&body) {
        Ok(b) => {
            shared.set_latency(Duration::from_millis(b.ms));
            ok()
        }
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    kind: CallKind,
    #[serde(default = "one")]
    count: u32,
    error: InjectedError,
}

fn one() -> u32 {
    1
}

async fn fail_next(State(shared): St, body: Bytes) -> Response {
    match parse::<FailBody>(&body) {
        Ok(b) => {
            shared.fail_next(b.kind, b.count, b.error);
            ok()
        }
        Err(r) => *r,
    }
}

async fn counters(State(shared): St) -> Response {
    axum::Json(shared.counters()).into_response()
}

async fn dump(State(shared): St) -> Response {
    let dump = shared.org().dump();
    axum::Json(dump).into_response()
}
