//! The HTTP surface: REST under `/services/data/vXX.X/`, plus the assembly of login, control
//! and streaming routes into one router.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use crate::Shared;
use crate::error::ApiError;
use crate::org::{CallKind, Effect, Org};
use crate::{MAX_API_VERSION, MIN_API_VERSION, control, login};

type St = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let data = Router::new()
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/{locator}", get(query_more))
        .route("/services/data/{version}/sobjects/{object}", post(create))
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(read).patch(update).delete(delete),
        )
        .route(
            "/services/data/{version}/composite/sobjects",
            patch(composite_update).post(composite_create),
        )
        .route("/services/data/{version}/limits", get(limits))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared.clone());
    let streaming = shared
        .streaming
        .router()
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            streaming_gate,
        ));
    Router::new()
        .merge(data)
        .merge(login::router(shared.clone()))
        .merge(streaming)
        .layer(middleware::from_fn_with_state(shared.clone(), latency))
        .merge(control::router(shared.clone()))
        .fallback(move || not_found(State(shared)))
}

/// Injected latency for every non-control request.
async fn latency(State(shared): St, req: Request, next: Next) -> Response {
    let delay = shared.org().latency;
    if delay > Duration::ZERO {
        tokio::time::sleep(delay).await;
    }
    next.run(req).await
}

/// Counts streaming requests and applies injected failures to them.
async fn streaming_gate(State(shared): St, req: Request, next: Next) -> Response {
    let failure = {
        let mut org = shared.org();
        org.count(CallKind::Streaming);
        org.take_failure(CallKind::Streaming)
    };
    match failure {
        Some(f) => {
            let e = f.api_error();
            (e.status_code(), axum::Json(json!([e.body()]))).into_response()
        }
        None => next.run(req).await,
    }
}

/// `v58.0` → ok when within the supported range.
fn check_version(v: &str) -> Result<(), ApiError> {
    let n = v
        .strip_prefix('v')
        .filter(|n| n.contains('.') && n.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(ApiError::not_found)?;
    if (MIN_API_VERSION..=MAX_API_VERSION).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::invalid_session)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(ApiError::invalid_session)?;
    if scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth") {
        Ok(token.trim())
    } else {
        Err(ApiError::new(
            401,
            "INVALID_AUTH_HEADER",
            "INVALID_HEADER_TYPE",
        ))
    }
}

/// What a REST handler produces.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    effects: Vec<Effect>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Result<Reply, ApiError> {
        Ok(Reply {
            status,
            body: Some(body),
            effects: Vec::new(),
        })
    }
}

fn usage_header(org: &Org) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "api-usage={}/{}",
        org.api_used, org.daily_api_requests
    ))
    .unwrap_or(HeaderValue::from_static("api-usage=0/0"))
}

fn error_response(e: &ApiError, usage: HeaderValue) -> Response {
    let mut resp = (e.status_code(), axum::Json(json!([e.body()]))).into_response();
    resp.headers_mut().insert("sforce-limit-info", usage);
    resp
}

/// The common REST path: version, injected failure, session, API limit, count, handler; the
/// handler runs under the org lock and its streaming effects are applied after it.
fn rest_call(
    shared: &Shared,
    version: &str,
    headers: &HeaderMap,
    kind: CallKind,
    handler: impl FnOnce(&mut Org, &str) -> Result<Reply, ApiError>,
) -> Response {
    let (result, usage) = {
        let mut org = shared.org();
        org.count(kind);
        let result = (|| {
            check_version(version)?;
            if let Some(f) = org.take_failure(kind) {
                return Err(f.api_error());
            }
            let token = bearer(headers)?;
            let user = org
                .session_user(token)
                .ok_or_else(ApiError::invalid_session)?;
            if org.api_used >= org.daily_api_requests {
                return Err(ApiError::request_limit());
            }
            org.api_used += 1;
            handler(&mut org, &user)
        })();
        (result, usage_header(&org))
    };
    match result {
        Ok(reply) => {
            shared.apply(reply.effects);
            let mut resp = match reply.body {
                Some(body) => (reply.status, axum::Json(body)).into_response(),
                None => reply.status.into_response(),
            };
            resp.headers_mut().insert("sforce-limit-info", usage);
            resp
        }
        Err(e) => {
            tracing::debug!(code = %e.code, status = e.status, ?kind, "REST error");
            error_response(&e, usage)
        }
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::json_parser(format!(
            "Unexpected character or end of input in the JSON request body at [line:{}, column:{}]",
            e.line(),
            e.column()
        ))
    })
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|part| {
                let (k, n) = part.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("batchSize"))
                    .then(|| n.trim().parse::<usize>().ok())?
            })
        })
        .map_or(2000, |n| n.clamp(200, 2000))
}

async fn query(
    State(shared): St,
    Path(version): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let batch = batch_size(&headers);
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Query,
        |org, _user| {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).map_err(|_| {
                    ApiError::new(
                        400,
                        "MALFORMED_QUERY",
                        "The query string could not be decoded",
                    )
                })?;
            let q = params
                .iter()
                .find(|(k, _)| k == "q")
                .map(|(_, v)| v.as_str())
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::new(400, "MALFORMED_QUERY", "A query string has to be specified")
                })?;
            let page = org.query(q, &version, batch)?;
            Reply::json(StatusCode::OK, page.to_json())
        },
    )
}

async fn query_more(
    State(shared): St,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::QueryMore,
        |org, _user| {
            let page = org.query_more(&locator, &version)?;
            Reply::json(StatusCode::OK, page.to_json())
        },
    )
}

async fn create(
    State(shared): St,
    Path((version, object)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Create,
        |org, user| {
            let input = parse_body(&body)?;
            let (id, effects) = org.create(user, &object, &input)?;
            Ok(Reply {
                status: StatusCode::CREATED,
                body: Some(json!({"id": id, "success": true, "errors": []})),
                effects,
            })
        },
    )
}

async fn read(
    State(shared): St,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    rest_call(&shared, &version, &headers, CallKind::Read, |org, _user| {
        Reply::json(StatusCode::OK, org.get(&object, &id, &version)?)
    })
}

async fn update(
    State(shared): St,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Update,
        |org, user| {
            let input = parse_body(&body)?;
            let effects = org.update(user, Some(&object), &id, &input)?;
            Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: None,
                effects,
            })
        },
    )
}

async fn delete(
    State(shared): St,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Delete,
        |org, _user| {
            let effects = org.delete(&object, &id)?;
            Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: None,
                effects,
            })
        },
    )
}

const MAX_COLLECTION: usize = 200;

fn rolled_back() -> Value {
    json!({
        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
        "fields": [],
    })
}

/// sObject Collections (`composite/sobjects`) update (`create == false`) or create.
fn collection(org: &mut Org, user: &str, body: &Bytes, create: bool) -> Result<Reply, ApiError> {
    let input = parse_body(body)?;
    let all_or_none = input
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let records = input
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::json_parser("The request body must have a \"records\" array"))?;
    if records.len() > MAX_COLLECTION {
        return Err(ApiError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    if all_or_none {
        org.begin();
    }
    let mut results: Vec<Result<String, ApiError>> = Vec::new();
    let mut effects = Vec::new();
    for rec in records {
        let outcome = (|| {
            let object = rec
                .pointer("/attributes/type")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::new(400, "INVALID_TYPE", "Must send a concrete entity type.")
                })?;
            if create {
                let (id, e) = org.create(user, object, rec)?;
                effects.extend(e);
                Ok(id)
            } else {
                let id = rec
                    .get("id")
                    .or_else(|| rec.get("Id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::new(
                            400,
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                        )
                    })?
                    .to_owned();
                let mut fields = rec.clone();
                if let Some(m) = fields.as_object_mut() {
                    m.remove("id");
                }
                effects.extend(org.update(user, None, &id, &fields)?);
                Ok(id)
            }
        })();
        results.push(outcome);
    }
    let failed = results.iter().any(Result::is_err);
    if all_or_none && failed {
        org.rollback();
        effects.clear();
    } else if all_or_none {
        org.commit();
    }
    let body: Vec<Value> = records
        .iter()
        .zip(&results)
        .map(|(rec, r)| {
            let given_id = rec.get("id").or_else(|| rec.get("Id")).cloned();
            match r {
                Ok(id) if failed && all_or_none => {
                    let id = if create { Value::Null } else { json!(id) };
                    json!({"id": id, "success": false, "errors": [rolled_back()]})
                }
                Ok(id) => json!({"id": id, "success": true, "errors": []}),
                Err(e) => {
                    json!({"id": given_id, "success": false, "errors": [e.collection_body()]})
                }
            }
        })
        .collect();
    Ok(Reply {
        status: StatusCode::OK,
        body: Some(Value::Array(body)),
        effects,
    })
}

async fn composite_update(
    State(shared): St,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Composite,
        |org, user| collection(org, user, &body, false),
    )
}

async fn composite_create(
    State(shared): St,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Composite,
        |org, user| collection(org, user, &body, true),
    )
}

async fn limits(State(shared): St, Path(version): Path<String>, headers: HeaderMap) -> Response {
    let events = shared.streaming.counters();
    rest_call(
        &shared,
        &version,
        &headers,
        CallKind::Limits,
        |org, _user| {
            let max = org.daily_api_requests;
            let used = org.api_used;
            let lim =
                |max: u64, used: u64| json!({"Max": max, "Remaining": max.saturating_sub(used)});
            Reply::json(
                StatusCode::OK,
                json!({
                    "DailyApiRequests": lim(max, used),
                    "DailyStreamingApiEvents": lim(200_000, events.delivered),
                    "DailyDurableStreamingApiEvents": lim(200_000, events.delivered),
                    "StreamingApiConcurrentClients": lim(1000, events.active_clients),
                    "DurableStreamingApiConcurrentClients": lim(1000, events.active_clients),
                    "DailyBulkApiBatches": lim(15_000, 0),
                    "DataStorageMB": lim(5, 0),
                }),
            )
        },
    )
}

async fn not_found(State(shared): St) -> Response {
    let usage = usage_header(&shared.org());
    error_response(&ApiError::not_found(), usage)
}

async fn method_not_allowed(State(shared): St, req: Request) -> Response {
    let usage = usage_header(&shared.org());
    let e = ApiError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{}' not allowed.", req.method()),
    );
    error_response(&e, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_batch_sizes() {
        assert!(check_version("v58.0").is_ok());
        assert!(check_version("v37.0").is_ok());
        assert!(check_version("v66.0").is_ok());
        for bad in ["v36.0", "v67.0", "58.0", "vx", "v58", "v-1.0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(batch_size(&h), 2000);
        for (v, want) in [
            ("batchSize=200", 200),
            ("batchSize=5", 200),
            ("batchSize=9999", 2000),
            ("x=1, batchSize=500", 500),
            ("batchSize=abc", 2000),
        ] {
            h.insert("sforce-query-options", HeaderValue::from_static(v));
            assert_eq!(batch_size(&h), want, "{v}");
        }
    }
}
