//! The ICWS endpoints of one server of the pair.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use crate::Shared;
use crate::error::{CODE_SERVER, IcwsError, icws_json};
use crate::state::{CallKind, SiteState, Which};

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    which: Which,
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

pub(crate) fn router(shared: Arc<Shared>, which: Which) -> Router {
    let ctx = Ctx { shared, which };
    Router::new()
        .route("/icws/connection", post(connect))
        .route("/icws/connection/version", get(version))
        .route("/icws/connection/features", get(features))
        .route("/icws/connection/features/{feature}", get(feature))
        .route(
            "/icws/{sid}/connection",
            get(connection_state).delete(logout),
        )
        .route(
            "/icws/{sid}/connection/switchover-status",
            get(switchover_status),
        )
        .route("/icws/{sid}/messaging/messages", get(messages))
        .route(
            "/icws/{sid}/messaging/subscriptions/queues/{sub}",
            put(watch_queues).delete(unwatch_queues),
        )
        .route(
            "/icws/{sid}/messaging/subscriptions/system/handler-sent-notifications",
            put(watch_handler).delete(unwatch_handler),
        )
        .route(
            "/icws/{sid}/system/handler-notification",
            post(handler_notification),
        )
        .route(
            "/icws/{sid}/interactions/{id}",
            get(get_interaction).post(set_interaction),
        )
        .route("/icws/{sid}/interactions/{id}/disconnect", post(disconnect))
        .route("/icws/{sid}/configuration/{kind}", get(configuration))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), gate))
        .with_state(ctx)
}

async fn not_found() -> IcwsError {
    IcwsError::not_found("error.request.notFound", "No such ICWS resource.")
}

async fn method_not_allowed() -> IcwsError {
    IcwsError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "error.request.methodNotAllowed",
        crate::error::CODE_BAD_REQUEST,
        "This method is not supported on this resource.",
    )
}

// ---- latency and failure injection --------------------------------------------------------

fn classify(method: &Method, path: &str) -> CallKind {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["icws", "connection"] if method == Method::POST => CallKind::Connect,
        ["icws", "connection", ..] | ["icws", _, "connection", ..] => CallKind::Connection,
        ["icws", _, "messaging", "messages"] => CallKind::Messages,
        ["icws", _, "messaging", "subscriptions", "queues", ..] => CallKind::QueueSubscription,
        ["icws", _, "messaging", "subscriptions", "system", ..] => CallKind::HandlerSubscription,
        ["icws", _, "system", "handler-notification"] => CallKind::HandlerNotification,
        ["icws", _, "interactions", _, "disconnect"] => CallKind::Disconnect,
        ["icws", _, "interactions", ..] => CallKind::Interaction,
        ["icws", _, "configuration", ..] => CallKind::Configuration,
        _ => CallKind::Any,
    }
}

async fn gate(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/icws/") {
        return next.run(req).await;
    }
    let kind = classify(req.method(), req.uri().path());
    let (latency, failure, active) = ctx
        .shared
        .with_state(|st| (st.latency, st.take_failure(kind), st.active));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(status) = failure else {
        return next.run(req).await;
    };
    tracing::info!(
        server = ctx.which.as_str(),
        ?kind,
        status,
        "injected failure"
    );
    let mut err = match status {
        401 => IcwsError::session_invalid(),
        403 => IcwsError::new(
            StatusCode::FORBIDDEN,
            "error.request.accessDenied",
            CODE_SERVER,
            "Injected failure: access denied.",
        ),
        503 => IcwsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "error.server.unavailable",
            CODE_SERVER,
            "Injected failure: the server is unavailable.",
        ),
        _ => IcwsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error.server.internal",
            CODE_SERVER,
            "Injected failure: internal server error.",
        ),
    };
    if status == 503 && kind == CallKind::Connect {
        err.alternate_hosts = Some(vec![ctx.shared.host(active)]);
    }
    err.into_response()
}

// ---- request helpers ----------------------------------------------------------------------

fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("ININ-ICWS-CSRF-Token")
        .and_then(|v| v.to_str().ok())
}

/// Parses a JSON object body; both ICWS and plain JSON media types are accepted.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, IcwsError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let media = ct
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && media != crate::error::ICWS_JSON {
            return Err(IcwsError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "error.request.unsupportedMediaType",
                crate::error::CODE_BAD_REQUEST,
                "Send application/vnd.inin.icws+json or application/json.",
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IcwsError::invalid_representation(
            "A JSON request body is required.",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(IcwsError::invalid_representation(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(IcwsError::invalid_representation(format!(
            "The request body is not valid JSON ({e})."
        ))),
    }
}

fn req_str<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, IcwsError> {
    match m.get(name) {
        None | Some(Value::Null) => Err(IcwsError::missing_property(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(IcwsError::invalid_representation(format!(
            "'{name}' must be a string."
        ))),
    }
}

fn req_array<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a Vec<Value>, IcwsError> {
    match m.get(name) {
        None | Some(Value::Null) => Err(IcwsError::missing_property(name)),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(IcwsError::invalid_representation(format!(
            "'{name}' must be an array."
        ))),
    }
}

fn string_list(m: &Map<String, Value>, name: &str) -> Result<Vec<String>, IcwsError> {
    req_array(m, name)?
        .iter()
        .map(|v| {
            v.as_str().map(str::to_owned).ok_or_else(|| {
                IcwsError::invalid_representation(format!("'{name}' must hold strings only."))
            })
        })
        .collect()
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// Authenticates a session call (cookie + CSRF), parses the body if one is expected, then
/// runs `f`, all under one hold of the site lock.
fn session_call<R>(
    ctx: &Ctx,
    headers: &HeaderMap,
    sid: &str,
    body: Option<&Bytes>,
    f: impl FnOnce(&mut SiteState, Map<String, Value>) -> Result<R, IcwsError>,
) -> Result<R, IcwsError> {
    let cookie = cookie_header(headers);
    let csrf = csrf_header(headers);
    ctx.shared.with_state(|st| {
        st.session(ctx.which, sid, cookie.as_deref(), csrf)?;
        let map = match body {
            Some(b) => json_body(headers, b)?,
            None => Map::new(),
        };
        f(st, map)
    })
}

fn respond(r: Result<Response, IcwsError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

// ---- connection -----------------------------------------------------------------------------

const IC_AUTH: &str = "urn:inin.com:connection:icAuthConnectionRequestSettings";

fn language(headers: &HeaderMap) -> String {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split([',', ';']).next())
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "en-us".to_owned())
}

fn version_info() -> Value {
    json!({
        "majorVersion": "20", "minorVersion": "2", "su": "0", "build": "fake",
        "productId": "cic-fake-icws", "codebaseId": "sors-fake-icws",
        "productReleaseDisplayString": "2020 R2", "productPatchDisplayString": "",
    })
}

fn feature_list() -> Vec<Value> {
    [
        ("connection", 11),
        ("messaging", 2),
        ("queues", 1),
        ("system", 1),
        ("interactions", 2),
        ("configuration", 1),
    ]
    .iter()
    .map(|(id, v)| json!({"featureId": id, "version": v}))
    .collect()
}

async fn connect(
    State(ctx): State<Ctx>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(connect_inner(&ctx, params, &headers, &body))
}

fn connect_inner(
    ctx: &Ctx,
    params: Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, IcwsError> {
    let active = ctx.shared.with_state(|st| {
        if st.active != ctx.which {
            st.count_refused_connect();
        }
        st.active
    });
    if active != ctx.which {
        tracing::info!(
            server = ctx.which.as_str(),
            "standby refused a connect (503)"
        );
        let mut e = IcwsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "error.server.notAcceptingConnections",
            CODE_SERVER,
            "This Session Manager is not currently accepting connections.",
        );
        e.alternate_hosts = Some(vec![ctx.shared.host(active)]);
        return Err(e);
    }
    let Query(params) =
        params.map_err(|e| IcwsError::bad_request("error.request.invalidQuery", e.body_text()))?;
    let m = json_body(headers, body)?;
    let ty = req_str(&m, "__type")?;
    if ty != IC_AUTH {
        return Err(IcwsError::bad_request(
            "error.request.connection.unsupportedType",
            format!("Connection request type '{ty}' is not supported; use {IC_AUTH}."),
        ));
    }
    req_str(&m, "applicationName")?;
    let user_id = req_str(&m, "userID")?;
    let password = req_str(&m, "password")?;
    let lang = language(headers);
    let (session, server_name) = ctx.shared.with_state(|st| {
        let name = match ctx.which {
            Which::Primary => st.spec.primary_name.clone(),
            Which::Backup => st.spec.backup_name.clone(),
        };
        st.connect(ctx.which, user_id, password, &lang)
            .map(|s| (s, name))
    })?;
    tracing::info!(server = ctx.which.as_str(), user = %session.user_id, "ICWS session created");
    let include: Vec<&str> = params
        .get("include")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut body = json!({
        "sessionId": session.session_id,
        "csrfToken": session.csrf_token,
        "alternateHostList": [ctx.shared.host(ctx.which.other())],
        "icServer": server_name,
        "userID": session.user_id,
        "userDisplayName": session.display_name,
    });
    if include.contains(&"features") {
        body["features"] = json!(feature_list());
    }
    if include.contains(&"version") {
        body["version"] = version_info();
    }
    let mut resp = icws_json(StatusCode::CREATED, &body);
    let h = resp.headers_mut();
    let cookie = format!(
        "icws_{sid}={val}; Path=/icws/{sid}; HttpOnly",
        sid = session.session_id,
        val = session.cookie_value
    );
    for (name, value) in [
        ("ININ-ICWS-Session-ID", session.session_id.as_str()),
        ("ININ-ICWS-CSRF-Token", session.csrf_token.as_str()),
        ("Set-Cookie", cookie.as_str()),
    ] {
        let v = HeaderValue::from_str(value).map_err(|_| {
            IcwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error.server.internal",
                CODE_SERVER,
                "Cannot encode the session headers.",
            )
        })?;
        h.insert(name, v);
    }
    Ok(resp)
}

async fn version() -> Response {
    icws_json(StatusCode::OK, &version_info())
}

async fn features() -> Response {
    icws_json(StatusCode::OK, &json!({"featureInfoList": feature_list()}))
}

async fn feature(Path(id): Path<String>) -> Response {
    match feature_list().into_iter().find(|f| {
        f["featureId"]
            .as_str()
            .is_some_and(|f| f.eq_ignore_ascii_case(&id))
    }) {
        Some(f) => icws_json(StatusCode::OK, &f),
        None => IcwsError::not_found("error.request.feature.notFound", "No such feature.")
            .into_response(),
    }
}

async fn connection_state(
    State(ctx): State<Ctx>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |_, _| {
        Ok(icws_json(StatusCode::OK, &json!({"connectionState": 1})))
    }))
}

async fn logout(State(ctx): State<Ctx>, Path(sid): Path<String>, headers: HeaderMap) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        st.logout(&sid);
        Ok(empty(StatusCode::NO_CONTENT))
    }))
}

async fn switchover_status(
    State(ctx): State<Ctx>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        Ok(icws_json(
            StatusCode::OK,
            &json!({
                "isSwitchoverActive": false,
                "primaryHost": ctx.shared.host(st.active),
                "backupHost": ctx.shared.host(st.active.other()),
            }),
        ))
    }))
}

// ---- messaging ------------------------------------------------------------------------------

async fn messages(State(ctx): State<Ctx>, Path(sid): Path<String>, headers: HeaderMap) -> Response {
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/event-stream"));
    let cookie = cookie_header(&headers);
    let auth = ctx.shared.with_state(|st| -> Result<_, IcwsError> {
        st.authenticate(ctx.which, &sid, cookie.as_deref(), None)?;
        if sse {
            st.stream_opened(&sid);
            Ok(st.session_notify(&sid))
        } else {
            Ok(None)
        }
    });
    let notify = match auth {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let Some(notify) = notify else {
        let (msgs, _) = ctx.shared.with_state(|st| st.drain_messages(&sid));
        return icws_json(StatusCode::OK, &Value::Array(msgs));
    };
    let keepalive = ctx.shared.with_state(|st| st.spec.timings.sse_keepalive);
    let guard = StreamGuard {
        shared: ctx.shared.clone(),
        sid,
    };
    // Framing: one unnamed event per message (`data: <json>`), `:ping` comments when idle.
    let stream = futures::stream::unfold(
        (guard, notify, VecDeque::<Value>::new(), false),
        move |(guard, notify, mut pending, mut done)| async move {
            loop {
                if let Some(m) = pending.pop_front() {
                    let chunk = Bytes::from(format!("data: {m}\n\n"));
                    return Some((
                        Ok::<Bytes, Infallible>(chunk),
                        (guard, notify, pending, done),
                    ));
                }
                if done {
                    return None;
                }
                let (msgs, over) = guard.shared.with_state(|st| st.drain_messages(&guard.sid));
                pending.extend(msgs);
                done = over;
                if pending.is_empty() && !done {
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = tokio::time::sleep(keepalive) => {
                            let ping = Bytes::from_static(b":ping\n\n");
                            return Some((Ok(ping), (guard, notify, pending, done)));
                        }
                    }
                }
            }
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Marks the session's event stream closed when the response body is dropped.
struct StreamGuard {
    shared: Arc<Shared>,
    sid: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.shared.with_state(|st| st.stream_closed(&self.sid));
    }
}

// ---- subscriptions --------------------------------------------------------------------------

async fn watch_queues(
    State(ctx): State<Ctx>,
    Path((sid, sub)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, Some(&body), |st, m| {
        let ids = req_array(&m, "queueIds")?;
        if ids.is_empty() {
            return Err(IcwsError::invalid_representation(
                "'queueIds' must not be empty.",
            ));
        }
        let mut queues = Vec::new();
        for q in ids {
            let q = q.as_object().ok_or_else(|| {
                IcwsError::invalid_representation("Each queueIds item must be an object.")
            })?;
            let ty = match q.get("queueType") {
                None | Some(Value::Null) => return Err(IcwsError::missing_property("queueType")),
                Some(v) => v.as_i64().ok_or_else(|| {
                    IcwsError::invalid_representation("'queueType' must be an integer.")
                })?,
            };
            let name = req_str(q, "queueName")?;
            queues.push((st.check_queue(ty, name)?, name.to_owned()));
        }
        let attributes = string_list(&m, "attributeNames")?;
        if attributes.is_empty() {
            return Err(IcwsError::invalid_representation(
                "'attributeNames' must not be empty.",
            ));
        }
        st.watch_queues(&sid, &sub, queues, attributes);
        Ok(empty(StatusCode::OK))
    }))
}

async fn unwatch_queues(
    State(ctx): State<Ctx>,
    Path((sid, sub)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        st.unwatch_queues(&sid, &sub);
        Ok(empty(StatusCode::NO_CONTENT))
    }))
}

async fn watch_handler(
    State(ctx): State<Ctx>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, Some(&body), |st, m| {
        let mut subs = Vec::new();
        for h in req_array(&m, "headers")? {
            let h = h.as_object().ok_or_else(|| {
                IcwsError::invalid_representation("Each headers item must be an object.")
            })?;
            let object_id = req_str(h, "objectId")?.to_owned();
            let event_ids = string_list(h, "eventIds")?;
            if event_ids.is_empty() {
                return Err(IcwsError::invalid_representation(
                    "'eventIds' must not be empty.",
                ));
            }
            subs.push((object_id, event_ids));
        }
        st.set_handler_subs(&sid, subs);
        Ok(empty(StatusCode::OK))
    }))
}

async fn unwatch_handler(
    State(ctx): State<Ctx>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        st.set_handler_subs(&sid, Vec::new());
        Ok(empty(StatusCode::NO_CONTENT))
    }))
}

// ---- handler notification -------------------------------------------------------------------

async fn handler_notification(
    State(ctx): State<Ctx>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, Some(&body), |st, m| {
        if m.get("__type")
            .is_some_and(|ty| ty.as_str() != Some("urn:inin.com:system:handlerNotification"))
        {
            return Err(IcwsError::bad_request(
                "error.request.invalidType",
                "Unknown __type for a handler notification.",
            ));
        }
        let object_id = req_str(&m, "objectId")?;
        let event_id = req_str(&m, "eventId")?;
        let data = string_list(&m, "data")?;
        st.handler_notification(object_id, event_id, data);
        Ok(empty(StatusCode::ACCEPTED))
    }))
}

// ---- interactions -------------------------------------------------------------------------

async fn get_interaction(
    State(ctx): State<Ctx>,
    Path((sid, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        let Query(params) = params
            .map_err(|e| IcwsError::bad_request("error.request.invalidQuery", e.body_text()))?;
        let select = params.get("select").map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        });
        let attrs = st.interaction_attributes(&id, select)?;
        Ok(icws_json(StatusCode::OK, &json!({"attributes": attrs})))
    }))
}

async fn set_interaction(
    State(ctx): State<Ctx>,
    Path((sid, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, Some(&body), |st, m| {
        let attrs = match m.get("attributes") {
            None | Some(Value::Null) => return Err(IcwsError::missing_property("attributes")),
            Some(Value::Object(a)) => a
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.clone(), v.to_owned()))
                        .ok_or_else(|| {
                            IcwsError::invalid_representation("Attribute values must be strings.")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(IcwsError::invalid_representation(
                    "'attributes' must be an object.",
                ));
            }
        };
        let append = match m.get("appendMode") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().filter(|n| (0..=2).contains(n)).ok_or_else(|| {
                IcwsError::invalid_representation("'appendMode' must be 1 or 2.")
            })?),
        };
        st.set_attributes(&id, attrs, append)?;
        Ok(empty(StatusCode::OK))
    }))
}

async fn disconnect(
    State(ctx): State<Ctx>,
    Path((sid, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        st.disconnect(&id)?;
        Ok(empty(StatusCode::OK))
    }))
}

// ---- configuration --------------------------------------------------------------------------

fn cfg_id(kind: &str, id: &str, display: &str) -> Value {
    json!({"id": id, "displayName": display, "uri": format!("/configuration/{kind}/{id}")})
}

fn skill_ref(name: &str, proficiency: u32, desire: u32) -> Value {
    json!({"id": cfg_id("skills", name, name), "proficiency": proficiency, "desireToUse": desire})
}

fn config_items(st: &SiteState, kind: &str) -> Option<Vec<Value>> {
    let spec = &st.spec;
    let display = |agent: &str| {
        spec.agents
            .iter()
            .find(|a| a.name == agent)
            .map_or_else(|| agent.to_owned(), |a| a.display_name.clone())
    };
    let items = match kind {
        "workgroups" => spec
            .workgroups
            .iter()
            .map(|w| {
                json!({
                    "configurationId": cfg_id("workgroups", &w.name, &w.name),
                    "hasQueue": w.has_queue,
                    "queueType": w.queue_type,
                    "isAcdEmailRoutingActive": w.acd_email_routing,
                    "isActive": true,
                    "skills": w.skills.iter().map(|s| skill_ref(&s.name, s.proficiency, s.desire_to_use)).collect::<Vec<_>>(),
                    "members": w.members.iter().map(|m| cfg_id("users", m, &display(m))).collect::<Vec<_>>(),
                })
            })
            .collect(),
        "skills" => spec
            .skills
            .iter()
            .map(|s| {
                let users: Vec<Value> = spec
                    .agents
                    .iter()
                    .filter_map(|a| {
                        a.skills.iter().find(|l| l.name == *s).map(|l| {
                            json!({"id": cfg_id("users", &a.name, &a.display_name), "proficiency": l.proficiency, "desireToUse": l.desire_to_use})
                        })
                    })
                    .collect();
                let wgs: Vec<Value> = spec
                    .workgroups
                    .iter()
                    .filter_map(|w| {
                        w.skills.iter().find(|l| l.name == *s).map(|l| {
                            json!({"id": cfg_id("workgroups", &w.name, &w.name), "proficiency": l.proficiency, "desireToUse": l.desire_to_use})
                        })
                    })
                    .collect();
                json!({"configurationId": cfg_id("skills", s, s), "userAssignments": users, "workgroupAssignments": wgs})
            })
            .collect(),
        "users" => spec
            .agents
            .iter()
            .map(|a| {
                json!({
                    "configurationId": cfg_id("users", &a.name, &a.display_name),
                    "skills": a.skills.iter().map(|s| skill_ref(&s.name, s.proficiency, s.desire_to_use)).collect::<Vec<_>>(),
                    "workgroups": spec.workgroups.iter().filter(|w| w.members.contains(&a.name)).map(|w| cfg_id("workgroups", &w.name, &w.name)).collect::<Vec<_>>(),
                })
            })
            .chain(spec.users.iter().filter(|u| !spec.agents.iter().any(|a| a.name == u.user_id)).map(|u| {
                json!({"configurationId": cfg_id("users", &u.user_id, &u.display_name), "skills": [], "workgroups": []})
            }))
            .collect(),
        _ => return None,
    };
    Some(items)
}

/// One `where` condition: `configurationId.id|configurationId.displayName eq|sw|ct value`.
fn condition(cond: &str) -> Result<impl Fn(&Value) -> bool, IcwsError> {
    let bad = || {
        IcwsError::bad_request(
            "error.request.invalidWhere",
            format!(
                "Unsupported where condition '{cond}' (use configurationId.id eq|sw|ct value)."
            ),
        )
    };
    let mut parts = cond.trim().splitn(3, ' ');
    let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key = match field {
        "configurationId.id" => "id",
        "configurationId.displayName" => "displayName",
        _ => return Err(bad()),
    };
    let op = op.to_ascii_lowercase();
    if !["eq", "sw", "ct"].contains(&op.as_str()) {
        return Err(bad());
    }
    let value = value.trim().to_lowercase();
    Ok(move |item: &Value| {
        let have = item["configurationId"][key]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        match op.as_str() {
            "eq" => have == value,
            "sw" => have.starts_with(&value),
            _ => have.contains(&value),
        }
    })
}

async fn configuration(
    State(ctx): State<Ctx>,
    Path((sid, kind)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Response {
    respond(session_call(&ctx, &headers, &sid, None, |st, _| {
        let Query(params) = params
            .map_err(|e| IcwsError::bad_request("error.request.invalidQuery", e.body_text()))?;
        let items = config_items(st, &kind).ok_or_else(|| {
            IcwsError::not_found("error.request.notFound", "No such configuration list.")
        })?;
        let conditions = params
            .get("where")
            .map(|w| {
                w.split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(condition)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let select: Option<Vec<String>> = params
            .get("select")
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect());
        let items: Vec<Value> = items
            .into_iter()
            .filter(|item| conditions.iter().all(|c| c(item)))
            .map(|item| project(item, select.as_deref()))
            .collect();
        Ok(icws_json(StatusCode::OK, &json!({"items": items})))
    }))
}

/// Without `select` only `configurationId`; `select=*` everything; else the named properties.
fn project(item: Value, select: Option<&[String]>) -> Value {
    let Value::Object(map) = item else {
        return item;
    };
    let keep = |k: &str| {
        k == "configurationId"
            || select.is_some_and(|s| s.iter().any(|p| p == "*" || p.eq_ignore_ascii_case(k)))
    };
    Value::Object(map.into_iter().filter(|(k, _)| keep(k)).collect())
}
