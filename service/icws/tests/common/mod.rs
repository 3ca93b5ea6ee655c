//! A small scriptable ICWS responder for the client tests. It models only what the tests need:
//! connect (201 / 503 / 400), session checks (401 for a dead session), SSE or polled messages,
//! queue and handler-sent subscriptions, handler notifications, disconnect, configuration lists
//! and interaction attributes. Every request is recorded for assertions.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sors_icws::{Icws, IcwsConfig, IcwsEvent, MessagingMode, Secret};
use tokio::sync::mpsc;

pub const PASSWORD: &str = "s3cret-pw";
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub enum ConnectMode {
    Accept,
    /// 503 with this `alternateHostList`.
    Unavailable(Vec<String>),
    /// 400 authentication failure.
    BadCredentials,
    /// 201 only when the `Host` header starts with `host`, else 503 with `alternates`.
    AcceptOnlyHost {
        host: String,
        alternates: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct CicState {
    pub connect: ConnectMode,
    /// Feature `messaging` version announced on connect (2 offers SSE).
    pub messaging_version: i64,
    /// When false, an SSE request is answered with a JSON array (no stream).
    pub serve_sse: bool,
    /// Connect answers carry the session only in headers, with an empty body.
    pub empty_connect_body: bool,
    pub sessions: u32,
    pub live_session: Option<String>,
    pub requests: Vec<Req>,
    pub pending: VecDeque<Value>,
    /// Raw bodies returned by the next polls, before any pending message.
    pub poll_bodies: VecDeque<String>,
    pub sse_tx: Option<mpsc::UnboundedSender<Bytes>>,
    /// Workgroup → `interactionsAdded` sent as the isDelta:false snapshot after a queue PUT.
    pub snapshots: HashMap<String, Value>,
    pub disconnect_status: HashMap<String, u16>,
    pub workgroups: Value,
    pub skills: Value,
    pub interactions: HashMap<String, Value>,
}

impl Default for CicState {
    fn default() -> Self {
        Self {
            connect: ConnectMode::Accept,
            messaging_version: 1,
            serve_sse: true,
            empty_connect_body: false,
            sessions: 0,
            live_session: None,
            requests: Vec::new(),
            pending: VecDeque::new(),
            poll_bodies: VecDeque::new(),
            sse_tx: None,
            snapshots: HashMap::new(),
            disconnect_status: HashMap::new(),
            workgroups: json!({"items": []}),
            skills: json!({"items": []}),
            interactions: HashMap::new(),
        }
    }
}

impl CicState {
    /// Queues a message for the session (SSE event when a stream is open, else next poll).
    pub fn push(&mut self, v: Value) {
        let sent = self
            .sse_tx
            .as_ref()
            .is_some_and(|tx| tx.send(Bytes::from(format!("data: {v}\n\n"))).is_ok());
        if sent {
            return;
        }
        self.pending.push_back(v);
    }

    /// Sends raw bytes on the open SSE stream; false when no stream is open.
    pub fn push_raw_sse(&mut self, chunk: &str) -> bool {
        self.sse_tx
            .as_ref()
            .is_some_and(|tx| tx.send(Bytes::from(chunk.to_owned())).is_ok())
    }

    pub fn sse_open(&self) -> bool {
        self.sse_tx.is_some()
    }

    /// Ends the session: its calls get 401 from now on; `close_stream` also ends the SSE stream.
    pub fn kill_session(&mut self, close_stream: bool) {
        self.live_session = None;
        if close_stream {
            self.sse_tx = None;
        }
    }

    pub fn count(&self, method: &str, path_end: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path_end))
            .count()
    }

    pub fn find(&self, method: &str, path_end: &str) -> Vec<Req> {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path_end))
            .cloned()
            .collect()
    }
}

#[derive(Clone)]
pub struct MiniCic {
    pub addr: SocketAddr,
    state: Arc<Mutex<CicState>>,
}

impl MiniCic {
    pub async fn start(state: CicState) -> MiniCic {
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MiniCic { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn st(&self) -> MutexGuard<'_, CicState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `cond` holds on the state.
    pub async fn wait(&self, what: &str, cond: impl Fn(&CicState) -> bool) {
        let start = Instant::now();
        while !cond(&self.st()) {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn config(servers: Vec<String>, messaging: MessagingMode) -> IcwsConfig {
    IcwsConfig {
        servers,
        user: "sors_user".into(),
        password: Secret::new(PASSWORD),
        messaging,
        poll_interval: Duration::from_millis(30),
        request_timeout: Duration::from_secs(10),
        reconnect_backoff_base: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(100),
        session_wait: Duration::from_secs(15),
        health_check_interval: Duration::from_secs(5),
        proxy: sors_core::proxy::ProxyPolicy::direct(),
        ..IcwsConfig::default()
    }
}

pub async fn next_event(rx: &mut mpsc::Receiver<IcwsEvent>) -> IcwsEvent {
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no event within {DEADLINE:?}"),
    }
}

/// Skips events until one matches.
pub async fn wait_event(
    rx: &mut mpsc::Receiver<IcwsEvent>,
    what: &str,
    pred: impl Fn(&IcwsEvent) -> bool,
) -> IcwsEvent {
    let start = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for event: {what}"),
        }
    }
}

pub async fn start_client(cfg: IcwsConfig) -> (Icws, mpsc::Receiver<IcwsEvent>) {
    Icws::start(cfg).expect("valid config")
}

pub fn route_result(entry: &str, status: &str, detail: &str) -> Value {
    json!({"__type":"urn:inin.com:system:handlerSentNotificationMessage","isDelta":false,
        "objectId":"SalesforceObjectRouting","eventId":"RouteCaseResult",
        "data":["1", entry, status, detail]})
}

pub fn queue_delta(workgroup: &str, added: Value, changed: Value, removed: Value) -> Value {
    json!({"__type":"urn:inin.com:queues:queueContentsMessage","isDelta":true,
        "subscriptionId": format!("sors-wg-{workgroup}"),
        "interactionsAdded": added, "interactionsChanged": changed, "interactionsRemoved": removed})
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = decoded {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn icws_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/vnd.inin.icws+json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, id: &str, msg: &str) -> Response {
    icws_json(status, &json!({"errorId": id, "message": msg}))
}

async fn handle(State(state): State<Arc<Mutex<CicState>>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = percent_decode(req.uri().path());
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.requests.push(Req {
        method: method.clone(),
        path: path.clone(),
        query,
        headers: headers.clone(),
        body: body.clone(),
    });

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first() != Some(&"icws") {
        return StatusCode::NOT_FOUND.into_response();
    }
    if segs.get(1) == Some(&"connection") && method == "POST" {
        return connect(&mut st, &headers);
    }
    let Some(sid) = segs.get(1).map(|s| s.to_string()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if st.live_session.as_deref() != Some(sid.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "error.request.connection.authenticationFailure",
            "The session is not valid.",
        );
    }
    let csrf_ok = headers
        .get("ININ-ICWS-CSRF-Token")
        .and_then(|v| v.to_str().ok())
        == Some(format!("csrf-{sid}").as_str());
    let cookie_ok = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains(&format!("icws_{sid}=cookie-{sid}")));
    if !csrf_ok || !cookie_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "error.request.missingToken",
            "CSRF token or cookie missing",
        );
    }
    let rest: Vec<&str> = segs.get(2..).unwrap_or_default().to_vec();
    match (method.as_str(), rest.as_slice()) {
        ("GET", ["messaging", "messages"]) => {
            let wants_sse = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/event-stream"));
            if wants_sse && st.serve_sse {
                let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                for v in st.pending.drain(..) {
                    let _ = tx.send(Bytes::from(format!("data: {v}\n\n")));
                }
                st.sse_tx = Some(tx);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
                });
                return (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(stream),
                )
                    .into_response();
            }
            if let Some(raw) = st.poll_bodies.pop_front() {
                return (StatusCode::OK, raw).into_response();
            }
            let msgs: Vec<Value> = st.pending.drain(..).collect();
            icws_json(StatusCode::OK, &Value::Array(msgs))
        }
        ("PUT", ["messaging", "subscriptions", "queues", sub]) => {
            let name = body["queueIds"][0]["queueName"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if let Some(added) = st.snapshots.get(&name).cloned() {
                let sub = sub.to_string();
                st.push(
                    json!({"__type":"urn:inin.com:queues:queueContentsMessage","isDelta":false,
                    "subscriptionId": sub, "interactionsAdded": added}),
                );
            }
            StatusCode::OK.into_response()
        }
        (
            "PUT",
            [
                "messaging",
                "subscriptions",
                "system",
                "handler-sent-notifications",
            ],
        ) => StatusCode::NO_CONTENT.into_response(),
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["system", "handler-notification"]) => StatusCode::ACCEPTED.into_response(),
        ("POST", ["interactions", id, "disconnect"]) => {
            let code = st.disconnect_status.get(*id).copied().unwrap_or(200);
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            if code == StatusCode::NOT_FOUND {
                return error(
                    code,
                    "error.interaction.notFound",
                    "The interaction does not exist.",
                );
            }
            if code.is_success() {
                return code.into_response();
            }
            error(code, "error.server", "Injected failure.")
        }
        ("GET", ["interactions", id]) => match st.interactions.get(*id) {
            Some(v) => icws_json(StatusCode::OK, v),
            None => error(
                StatusCode::NOT_FOUND,
                "error.interaction.notFound",
                "The interaction does not exist.",
            ),
        },
        ("GET", ["configuration", "workgroups"]) => icws_json(StatusCode::OK, &st.workgroups),
        ("GET", ["configuration", "skills"]) => icws_json(StatusCode::OK, &st.skills),
        ("GET", ["connection"]) => icws_json(StatusCode::OK, &json!({"connectionState": 1})),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn connect(st: &mut CicState, headers: &HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match st.connect.clone() {
        ConnectMode::Accept => {}
        ConnectMode::Unavailable(alternates) => return unavailable(alternates),
        ConnectMode::BadCredentials => {
            return icws_json(
                StatusCode::BAD_REQUEST,
                &json!({"errorId":"error.request.connection.authenticationFailure",
                    "errorCode":-2147221503,"message":"The authentication process failed."}),
            );
        }
        ConnectMode::AcceptOnlyHost {
            host: want,
            alternates,
        } => {
            if !host.starts_with(&want) {
                return unavailable(alternates);
            }
        }
    }
    st.sessions += 1;
    let sid = format!("{}", 29113000 + st.sessions);
    st.live_session = Some(sid.clone());
    st.sse_tx = None;
    st.pending.clear();
    let csrf = format!("csrf-{sid}");
    let body = if st.empty_connect_body {
        String::new()
    } else {
        json!({"csrfToken": csrf, "sessionId": sid, "userID": "sors_user",
            "features": [{"featureId":"connection","version":11},
                         {"featureId":"messaging","version": st.messaging_version}]})
        .to_string()
    };
    (
        StatusCode::CREATED,
        [
            ("ININ-ICWS-Session-ID", sid.clone()),
            ("ININ-ICWS-CSRF-Token", csrf),
            (
                "Set-Cookie",
                format!("icws_{sid}=cookie-{sid}|languageId=en-us; Path=/icws/{sid}; HttpOnly"),
            ),
            ("Content-Type", "application/vnd.inin.icws+json".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn unavailable(alternates: Vec<String>) -> Response {
    icws_json(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"alternateHostList": alternates, "errorId":"error.server.notAcceptingConnections",
            "message":"This Session Manager is not currently accepting connections."}),
    )
}
