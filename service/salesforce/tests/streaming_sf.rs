//! The Salesforce-only streaming behaviour against a small scripted Bayeux responder (axum):
//! `403::Unknown client`, `401::Authentication invalid`, `403::Handshake denied` (failureReason
//! 401), invalid replay id, missing channel, the connect watchdog, and the BAYEUX_BROWSER cookie.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::*;
use serde_json::{Value, json};
use sors_salesforce::{Names, Salesforce, StreamEvent};
use tokio::sync::{Notify, mpsc};

const CHANNEL: &str = "/topic/ObjectRoutingQueue";

#[derive(Clone, Copy, Debug, PartialEq)]
enum ConnectFault {
    UnknownClient,
    AuthInvalid,
    Stall,
}

#[derive(Default)]
struct Inner {
    logins: u32,
    /// The token the server accepts (the latest login's).
    valid_token: String,
    deny_next_handshake: bool,
    reject_replay_ids: bool,
    topic_exists: bool,
    topic_created: Option<Value>,
    connect_faults: VecDeque<ConnectFault>,
    next_client: u32,
    events: Vec<Value>,
    /// Every Bayeux message received, with its Authorization and Cookie headers.
    log: Vec<(Value, String, String)>,
}

#[derive(Clone)]
struct Fake {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    hold_ms: u64,
}

impl Fake {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("fake state"))
    }

    fn publish(&self, replay: i64, row: &str) {
        self.with(|s| {
            s.events.push(json!({"channel": CHANNEL, "data": {
                "event": {"createdDate": "2024-01-01T00:00:00.000Z", "replayId": replay, "type": "created"},
                "sobject": {"Id": row, "Status__c": "New"}}}))
        });
        self.notify.notify_waiters();
    }

    fn sent(&self, channel: &str) -> Vec<(Value, String, String)> {
        self.with(|s| {
            s.log
                .iter()
                .filter(|(m, _, _)| m["channel"] == channel)
                .cloned()
                .collect()
        })
    }
}

async fn soap_login(State(f): State<Fake>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let token = f.with(|s| {
        s.logins += 1;
        s.valid_token = format!("T{}", s.logins);
        s.valid_token.clone()
    });
    soap_ok(&format!("http://{host}"), &token).into_response()
}

async fn query(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Response {
    let soql = q.get("q").cloned().unwrap_or_default();
    assert!(soql.contains("FROM PushTopic"), "unexpected query {soql}");
    let records: Vec<Value> = f.with(|s| s.topic_created.clone()).into_iter().collect();
    axum::Json(query_page(records, None)).into_response()
}

async fn create_topic(State(f): State<Fake>, axum::Json(body): axum::Json<Value>) -> Response {
    f.with(|s| {
        s.topic_exists = true;
        s.topic_created = Some(body);
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({"id":"0IF1","success":true,"errors":[]})),
    )
        .into_response()
}

async fn cometd(State(f): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let msgs: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    let mut replies = Vec::new();
    let mut set_cookie = None;
    for m in msgs {
        f.with(|s| s.log.push((m.clone(), auth.clone(), cookie.clone())));
        let channel = m["channel"].as_str().unwrap_or_default().to_owned();
        let id = m["id"].clone();
        let token_ok = f.with(|s| auth == format!("Bearer {}", s.valid_token));
        match channel.as_str() {
            "/meta/handshake" => {
                let denied = f.with(|s| std::mem::take(&mut s.deny_next_handshake));
                if denied || !token_ok {
                    replies.push(json!({"channel": channel, "id": id, "successful": false,
                        "error": "403::Handshake denied", "advice": {"reconnect": "none"},
                        "ext": {"sfdc": {"failureReason": "401::Authentication invalid"}}}));
                } else {
                    let n = f.with(|s| {
                        s.next_client += 1;
                        s.next_client
                    });
                    set_cookie = Some(format!("BAYEUX_BROWSER=b{n}; Path=/; HttpOnly"));
                    replies.push(json!({"channel": channel, "id": id, "successful": true,
                        "clientId": format!("c{n}"), "version": "1.0", "minimumVersion": "1.0",
                        "supportedConnectionTypes": ["long-polling"],
                        "ext": {"replay": true, "payload.format": true},
                        "advice": {"timeout": f.hold_ms, "interval": 0, "reconnect": "retry"}}));
                }
            }
            "/meta/subscribe" => {
                let replay = m["ext"]["replay"][CHANNEL].as_i64();
                let (reject, exists) = f.with(|s| (s.reject_replay_ids, s.topic_exists));
                let reply = if !exists {
                    json!({"successful": false, "error": format!("400::The channel you requested to subscribe to does not exist {{{CHANNEL}}}")})
                } else if reject && replay != Some(-1) {
                    json!({"successful": false, "error": format!("400::The replayId {{{}}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.", replay.unwrap_or(0))})
                } else {
                    json!({"successful": true})
                };
                let mut reply = reply;
                reply["channel"] = json!(channel);
                reply["id"] = id;
                reply["subscription"] = m["subscription"].clone();
                replies.push(reply);
            }
            "/meta/connect" => {
                if !cookie.contains("BAYEUX_BROWSER=") {
                    replies.push(json!({"channel": channel, "id": id, "successful": false,
                        "error": "400::Client has established a session, but no BAYEUX_BROWSER cookie present"}));
                    continue;
                }
                match f.with(|s| s.connect_faults.pop_front()) {
                    Some(ConnectFault::UnknownClient) => {
                        replies.push(json!({"channel": channel, "id": id, "successful": false,
                            "error": "403::Unknown client", "advice": {"interval": 0, "reconnect": "handshake"}}));
                        continue;
                    }
                    Some(ConnectFault::AuthInvalid) => {
                        replies.push(json!({"channel": channel, "id": id, "successful": false,
                            "error": "401::Authentication invalid", "advice": {"interval": 0, "reconnect": "none"}}));
                        continue;
                    }
                    Some(ConnectFault::Stall) => std::future::pending::<()>().await,
                    None => {}
                }
                let deadline = tokio::time::Instant::now() + Duration::from_millis(f.hold_ms);
                loop {
                    let notified = f.notify.notified();
                    let events = f.with(|s| std::mem::take(&mut s.events));
                    if !events.is_empty() {
                        replies.extend(events);
                        break;
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break;
                    }
                }
                replies.push(json!({"channel": channel, "id": id, "successful": true,
                    "advice": {"timeout": f.hold_ms, "interval": 0, "reconnect": "retry"}}));
            }
            _ => replies.push(json!({"channel": channel, "id": id, "successful": true})),
        }
    }
    let mut resp = axum::Json(Value::Array(replies)).into_response();
    if let Some(c) = set_cookie
        && let Ok(v) = c.parse()
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn start(setup: impl FnOnce(&mut Inner)) -> (Fake, Salesforce) {
    init_tracing();
    let fake = Fake {
        inner: Arc::new(Mutex::new(Inner {
            topic_exists: true,
            ..Inner::default()
        })),
        notify: Arc::new(Notify::new()),
        hold_ms: 300,
    };
    fake.with(setup);
    let app = Router::new()
        .route(SOAP_PATH, post(soap_login))
        .route(&format!("{DATA}/query"), get(query))
        .route(&format!("{DATA}/sobjects/PushTopic"), post(create_topic))
        .route("/cometd/62.0", post(cometd))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut cfg = config(&format!("http://{addr}"));
    cfg.streaming.watchdog_margin_ms = 3_000;
    cfg.streaming.backoff_base_ms = 20;
    cfg.streaming.backoff_max_ms = 200;
    cfg.streaming.refused_delay_ms = 50;
    let sf = Salesforce::new(cfg, Names::default()).expect("config");
    (fake, sf)
}

async fn next_event(
    rx: &mut mpsc::Receiver<StreamEvent>,
    pred: impl Fn(&StreamEvent) -> bool,
) -> (StreamEvent, Vec<StreamEvent>) {
    let mut skipped = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return (ev, skipped),
            Ok(Some(ev)) => skipped.push(ev),
            Ok(None) => panic!("stream ended; skipped {skipped:?}"),
            Err(_) => panic!("no matching event; got {skipped:?}"),
        }
    }
}

fn subscribed(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::Subscribed { .. })
}

fn resync(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::ResyncNeeded { .. })
}

fn replays_sent(f: &Fake) -> Vec<Option<i64>> {
    f.sent("/meta/subscribe")
        .iter()
        .map(|(m, _, _)| m["ext"]["replay"][CHANNEL].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_rehandshakes_and_resubscribes_from_the_last_replay_id() {
    let (fake, sf) = start(|_| {}).await;
    let (handle, mut rx) = sf.stream(-1);
    next_event(&mut rx, subscribed).await;
    fake.publish(10, "a01");
    let (ev, _) = next_event(&mut rx, |e| matches!(e, StreamEvent::Push { .. })).await;
    assert!(matches!(ev, StreamEvent::Push { replay_id: 10, .. }));

    fake.with(|s| s.connect_faults.push_back(ConnectFault::UnknownClient));
    fake.notify.notify_waiters();
    let (ev, before) = next_event(&mut rx, subscribed).await;
    assert_eq!(ev, StreamEvent::Subscribed { replay_from: 10 });
    assert!(
        !before.iter().any(resync),
        "replay covers the gap: {before:?}"
    );
    assert!(
        before
            .iter()
            .any(|e| matches!(e, StreamEvent::Disconnected { .. }))
    );
    assert_eq!(replays_sent(&fake), [Some(-1), Some(10)]);
    assert_eq!(fake.sent("/meta/handshake").len(), 2);
    assert_eq!(
        fake.with(|s| s.logins),
        1,
        "no re-login for an unknown client"
    );
    // Every connect carried the cookie of its handshake and the bearer token.
    for (_, auth, cookie) in fake.sent("/meta/connect") {
        assert_eq!(auth, "Bearer T1");
        assert!(cookie.contains("BAYEUX_BROWSER=b"), "{cookie}");
    }
    handle.shutdown().await;
    assert_eq!(fake.sent("/meta/disconnect").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_invalid_on_connect_relogs_in_then_handshakes() {
    let (fake, sf) = start(|_| {}).await;
    let (handle, mut rx) = sf.stream(-1);
    next_event(&mut rx, subscribed).await;
    // The session is revoked: the server now wants a new login's token.
    fake.with(|s| {
        s.valid_token = "revoked".into();
        s.connect_faults.push_back(ConnectFault::AuthInvalid);
    });
    fake.notify.notify_waiters();
    next_event(&mut rx, subscribed).await;
    assert_eq!(fake.with(|s| s.logins), 2);
    assert_eq!(sf.stats().relogins, 1);
    let handshakes = fake.sent("/meta/handshake");
    assert_eq!(handshakes.last().map(|h| h.1.as_str()), Some("Bearer T2"));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_denied_for_authentication_relogs_in() {
    let (fake, sf) = start(|s| s.deny_next_handshake = true).await;
    let (handle, mut rx) = sf.stream(-1);
    next_event(&mut rx, subscribed).await;
    assert_eq!(fake.with(|s| s.logins), 2, "first login, then one re-login");
    let auths: Vec<String> = fake
        .sent("/meta/handshake")
        .into_iter()
        .map(|h| h.1)
        .collect();
    assert_eq!(auths, ["Bearer T1", "Bearer T2"]);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_replay_id_resubscribes_with_minus_one_and_asks_for_a_scan() {
    let (fake, sf) = start(|s| s.reject_replay_ids = true).await;
    let (handle, mut rx) = sf.stream(42);
    let (ev, before) = next_event(&mut rx, subscribed).await;
    assert_eq!(ev, StreamEvent::Subscribed { replay_from: -1 });
    assert!(before.iter().any(resync), "{before:?}");
    assert_eq!(replays_sent(&fake), [Some(42), Some(-1)]);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_channel_ensures_the_push_topic_then_resubscribes() {
    let (fake, sf) = start(|s| s.topic_exists = false).await;
    let (handle, mut rx) = sf.stream(-1);
    let (_, before) = next_event(&mut rx, subscribed).await;
    assert!(
        before.iter().any(resync),
        "events may have been missed: {before:?}"
    );
    let created = fake
        .with(|s| s.topic_created.clone())
        .expect("PushTopic created");
    assert_eq!(created["Name"], json!("ObjectRoutingQueue"));
    assert_eq!(
        created["Query"],
        json!(
            "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'"
        )
    );
    assert_eq!(fake.sent("/meta/subscribe").len(), 2);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connect_trips_the_watchdog_and_the_stream_recovers() {
    let (fake, sf) = start(|_| {}).await;
    let (handle, mut rx) = sf.stream(-1);
    next_event(&mut rx, subscribed).await;
    fake.publish(7, "a07");
    next_event(&mut rx, |e| matches!(e, StreamEvent::Push { .. })).await;
    fake.with(|s| s.connect_faults.push_back(ConnectFault::Stall));
    let (ev, before) = next_event(&mut rx, subscribed).await;
    assert_eq!(ev, StreamEvent::Subscribed { replay_from: 7 });
    assert!(
        before.iter().any(
            |e| matches!(e, StreamEvent::Disconnected { reason } if reason.contains("watchdog"))
        ),
        "{before:?}"
    );
    assert_eq!(fake.sent("/meta/handshake").len(), 2);
    fake.publish(8, "a08");
    let (ev, _) = next_event(&mut rx, |e| matches!(e, StreamEvent::Push { .. })).await;
    assert!(matches!(ev, StreamEvent::Push { replay_id: 8, .. }));
    handle.shutdown().await;
}
