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
        .route("/__fake/cases", post(cases))
        .route("/__fake/query", post(query))
        .route("/__fake/row-counts", get(row_counts))
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

/// The most cases one `POST /__fake/cases` creates.
const MAX_BULK_CASES: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesBody {
    count: usize,
    /// The queue that owns the new cases (by name, as in the org file).
    queue: String,
    /// Who creates them (a username); default: the org's first user (the demo's integration
    /// user, as Email-to-Case does).
    #[serde(default, rename = "as")]
    as_user: Option<String>,
    /// `Subject` of case i is `"{subject} {i}"`.
    #[serde(default = "bulk_subject")]
    subject: String,
    /// More fields of every case (e.g. `ObjectRouting_Skills__c`).
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

fn bulk_subject() -> String {
    "Bulk case".to_owned()
}

/// `POST /__fake/cases`: `count` cases in `queue`, each created as a user would (validation,
/// trigger, PushTopics: the path of `OrgActor::create`), one after the other. Not counted as
/// API calls. Answers the new case ids in creation order.
async fn cases(State(shared): St, body: Bytes) -> Response {
    let b: CasesBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if b.count > MAX_BULK_CASES {
        return bad_request(format!("count must be at most {MAX_BULK_CASES}"));
    }
    let escaped = b.queue.replace('\\', "\\\\").replace('\'', "\\'");
    let soql = format!("SELECT Id FROM Group WHERE Type = 'Queue' AND Name = '{escaped}'");
    let queue_id = crate::query_all(&shared, &soql).ok().and_then(|rows| {
        rows.first()
            .and_then(|r| r.get("Id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    let Some(queue_id) = queue_id else {
        return bad_request(format!("no queue named {:?}", b.queue));
    };
    let user_id = match &b.as_user {
        Some(name) => shared.org().user_id_by_username(name),
        None => shared.org().first_user_id(),
    };
    let Some(user_id) = user_id else {
        return bad_request(format!("no user {:?}", b.as_user.unwrap_or_default()));
    };
    // Thousands of cases take a while: off the async workers.
    let created = tokio::task::spawn_blocking(move || {
        let mut ids = Vec::with_capacity(b.count);
        for i in 1..=b.count {
            let mut fields = serde_json::Map::new();
            fields.insert("Subject".into(), json!(format!("{} {i}", b.subject)));
            fields.insert("OwnerId".into(), json!(queue_id));
            fields.insert("Status".into(), json!("New"));
            fields.insert(
                "SuppliedEmail".into(),
                json!(format!("bulk{i}@example.com")),
            );
            fields.insert("SuppliedName".into(), json!(format!("Bulk {i}")));
            for (k, v) in &b.fields {
                fields.insert(k.clone(), v.clone());
            }
            let made = shared
                .org()
                .create(&user_id, "Case", &serde_json::Value::Object(fields));
            match made {
                Ok((id, effects)) => {
                    shared.apply(effects);
                    ids.push(id);
                }
                Err(e) => return Err((ids.len(), e)),
            }
        }
        Ok(ids)
    })
    .await;
    match created {
        Ok(Ok(ids)) => {
            axum::Json(json!({"ok": true, "created": ids.len(), "ids": ids})).into_response()
        }
        Ok(Err((done, e))) => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"ok": false, "created": done, "error": e.message, "errorCode": e.code}),
            ),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"ok": false, "error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    soql: String,
}

/// `POST /__fake/query`: every matching record (no paging), not counted as an API call.
async fn query(State(shared): St, body: Bytes) -> Response {
    let b: QueryBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match crate::query_all(&shared, &b.soql) {
        Ok(records) => {
            axum::Json(json!({"ok": true, "totalSize": records.len(), "records": records}))
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"ok": false, "error": e.message, "errorCode": e.code})),
        )
            .into_response(),
    }
}

/// `GET /__fake/row-counts`: routing rows by status, from the status index (cheap to poll).
async fn row_counts(State(shared): St) -> Response {
    let (total, by_status) = shared.org().row_counts();
    axum::Json(json!({"total": total, "byStatus": by_status})).into_response()
}
