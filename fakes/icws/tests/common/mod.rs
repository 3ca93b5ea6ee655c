//! A minimal ICWS client written from icws-protocol.md, to drive the fake as a client would.
#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sors_fake_icws::{FakeIcws, FakeIcwsConfig, SiteSpec};
use tokio::time::Instant;

pub const ICWS_JSON: &str = "application/vnd.inin.icws+json";
/// Deadline for conditions that normally take milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The demo site with tiny timings.
pub fn fast_site() -> SiteSpec {
    let mut site = SiteSpec::demo();
    site.timings.answer_delay = Duration::from_millis(20);
    site.timings.sse_keepalive = Duration::from_millis(100);
    site
}

pub async fn start(site: SiteSpec) -> FakeIcws {
    FakeIcws::start(FakeIcwsConfig {
        site,
        ..Default::default()
    })
    .await
    .expect("fake ICWS starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub fn connect_body(user: &str, password: &str) -> Value {
    json!({
        "__type": "urn:inin.com:connection:icAuthConnectionRequestSettings",
        "applicationName": "fake-icws tests",
        "userID": user,
        "password": password,
    })
}

/// `POST {base}/icws/connection?include=features,version` with a raw body.
pub async fn raw_connect(base: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/icws/connection?include=features,version"))
        .header("Accept-Language", "en-us")
        .header("Content-Type", ICWS_JSON)
        .body(body.to_owned())
        .send()
        .await
        .expect("connect request")
}

/// An established ICWS session.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub sid: String,
    pub csrf: String,
    pub cookie: String,
    pub connect_body: Value,
}

/// Connects to `base`, following 503 `alternateHostList` redirections (bare hosts or
/// host:port) like a real client.
pub async fn connect(base: &str) -> Session {
    let mut base = base.to_owned();
    for _ in 0..4 {
        let resp = raw_connect(&base, &connect_body("sors", "sors").to_string()).await;
        let status = resp.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = resp.json().await.expect("503 body");
            let host = body["alternateHostList"][0]
                .as_str()
                .expect("alternate host")
                .to_owned();
            base = if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            };
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "connect to {base}");
        let headers = resp.headers().clone();
        let set_cookie = headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("Set-Cookie")
            .to_owned();
        let cookie = set_cookie
            .split(';')
            .next()
            .expect("cookie pair")
            .to_owned();
        let body: Value = resp.json().await.expect("connect body");
        return Session {
            http: http(),
            base,
            sid: body["sessionId"].as_str().expect("sessionId").to_owned(),
            csrf: body["csrfToken"].as_str().expect("csrfToken").to_owned(),
            cookie,
            connect_body: body,
        };
    }
    panic!("too many 503 redirections");
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}/icws/{}/{}", self.base, self.sid, path)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("Accept", ICWS_JSON)
            .header("Cookie", &self.cookie)
            .header("ININ-ICWS-CSRF-Token", &self.csrf)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.header("Content-Type", ICWS_JSON).body(b.to_string());
        }
        let resp = req.send().await.expect("ICWS request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value)
    }

    /// Short poll (cookie only, no CSRF header, as the contract says).
    pub async fn poll(&self) -> (StatusCode, Vec<Value>) {
        let resp = self
            .http
            .get(self.url("messaging/messages"))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("poll");
        let status = resp.status();
        if status != StatusCode::OK {
            return (status, Vec::new());
        }
        let v: Value = resp.json().await.expect("messages array");
        (status, v.as_array().cloned().expect("array"))
    }

    /// Polls until `done(all messages so far)`; returns them all.
    pub async fn poll_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut all = Vec::new();
        loop {
            let (status, msgs) = self.poll().await;
            assert_eq!(status, StatusCode::OK, "polling for {what}");
            all.extend(msgs);
            if done(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn watch(&self, sub: &str, queues: Value, attrs: &[&str]) -> StatusCode {
        let (status, body) = self
            .send(
                Method::PUT,
                &format!("messaging/subscriptions/queues/{sub}"),
                Some(json!({"queueIds": queues, "attributeNames": attrs})),
            )
            .await;
        assert!(status.is_success(), "watch {sub}: {status} {body}");
        status
    }

    pub async fn watch_results(&self) {
        let (status, body) = self
            .send(
                Method::PUT,
                "messaging/subscriptions/system/handler-sent-notifications",
                Some(json!({"headers": [{"objectId": "SalesforceObjectRouting", "eventIds": ["RouteCaseResult"]}]})),
            )
            .await;
        assert!(
            status.is_success(),
            "handler-sent subscription: {status} {body}"
        );
    }

    pub async fn route(&self, data: &[&str]) -> StatusCode {
        let (status, _) = self
            .send(
                Method::POST,
                "system/handler-notification",
                Some(json!({"objectId": "SalesforceObjectRouting", "eventId": "RouteCase", "data": data})),
            )
            .await;
        status
    }

    pub async fn attributes(&self, id: &str, select: &str) -> (StatusCode, Value) {
        self.send(
            Method::GET,
            &format!("interactions/{id}?select={select}"),
            None,
        )
        .await
    }
}

/// RouteCase data for entry `entry` of case `case` in `workgroup` with `skills`.
pub fn route_data<'a>(
    entry: &'a str,
    case: &'a str,
    workgroup: &'a str,
    skills: &'a str,
) -> Vec<&'a str> {
    vec![
        "1",
        entry,
        case,
        "00001001",
        workgroup,
        skills,
        "Printer on fire",
        "jo@example.com",
        "Jo Customer",
    ]
}

/// The RouteCaseResult messages for `entry` among `msgs`.
pub fn results_for(msgs: &[Value], entry: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| {
            m["__type"] == "urn:inin.com:system:handlerSentNotificationMessage"
                && m["eventId"] == "RouteCaseResult"
                && m["data"][1] == entry
        })
        .cloned()
        .collect()
}

pub fn queue_msgs<'a>(msgs: &'a [Value], sub: &str) -> Vec<&'a Value> {
    msgs.iter()
        .filter(|m| {
            m["__type"] == "urn:inin.com:queues:queueContentsMessage" && m["subscriptionId"] == sub
        })
        .collect()
}

/// One parsed server-sent-events item.
#[derive(Debug)]
pub enum Sse {
    Data(Value),
    Comment(String),
    End,
}

pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
    items: std::collections::VecDeque<Sse>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> SseReader {
        SseReader {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
            items: Default::default(),
        }
    }

    /// The next item, failing the test after the deadline.
    pub async fn next(&mut self) -> Sse {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(item) = self.items.pop_front() {
                return item;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("SSE item before the deadline");
            match chunk {
                None => return Sse::End,
                Some(Err(e)) => panic!("SSE stream error: {e}"),
                Some(Ok(b)) => {
                    self.buf.push_str(&String::from_utf8_lossy(&b));
                    while let Some(pos) = self.buf.find("\n\n") {
                        let block: String = self.buf.drain(..pos + 2).collect();
                        let mut data = String::new();
                        for line in block.lines() {
                            if let Some(c) = line.strip_prefix(':') {
                                self.items.push_back(Sse::Comment(c.to_owned()));
                            } else if let Some(d) = line.strip_prefix("data:") {
                                data.push_str(d.trim_start());
                            }
                        }
                        if !data.is_empty() {
                            let v =
                                serde_json::from_str(&data).expect("one JSON message per event");
                            self.items.push_back(Sse::Data(v));
                        }
                    }
                }
            }
        }
    }

    /// The next data event, skipping keep-alive comments.
    pub async fn next_data(&mut self) -> Option<Value> {
        loop {
            match self.next().await {
                Sse::Data(v) => return Some(v),
                Sse::Comment(_) => continue,
                Sse::End => return None,
            }
        }
    }
}

/// Waits for a control-side condition on the fake.
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
