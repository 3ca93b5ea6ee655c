//! Shared helpers of the integration tests: a served endpoint and a tiny Bayeux HTTP client.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sors_fake_cometd::{Config, Streaming};

pub const TOKEN: &str = "00Dxx0000001gPL!AQ4AQFakeSessionToken";
pub const TOPIC: &str = "/topic/ObjectRoutingQueue";

/// Short timings so that tests run in seconds.
pub fn test_config() -> Config {
    Config {
        connect_hold: Duration::from_secs(1),
        reconnect_expiry: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A served endpoint whose token validity and channel list the test can change.
pub struct Server {
    pub streaming: Streaming,
    pub base: String,
    pub token_valid: Arc<AtomicBool>,
    pub channels: Arc<Mutex<HashSet<String>>>,
    /// The path of every request served, in arrival order.
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let token_valid = Arc::new(AtomicBool::new(true));
        let channels = Arc::new(Mutex::new(HashSet::from([TOPIC.to_owned()])));
        let valid = token_valid.clone();
        let known = channels.clone();
        let streaming = Streaming::new(
            config,
            Arc::new(move |token| token == TOKEN && valid.load(Ordering::SeqCst)),
            Arc::new(move |channel| known.lock().is_ok_and(|c| c.contains(channel))),
        );
        let paths = Arc::new(Mutex::new(Vec::new()));
        let record = paths.clone();
        // Merged into a bigger router, as the fake Salesforce does.
        let app = axum::Router::new()
            .route("/services/data", axum::routing::get(|| async { "rest" }))
            .merge(streaming.router())
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    if let Ok(mut paths) = record.lock() {
                        paths.push(request.uri().path().to_owned());
                    }
                    next.run(request)
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            streaming,
            base: format!("http://{addr}"),
            token_valid,
            channels,
            paths,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/cometd/58.0", self.base)
    }

    pub fn client(&self) -> Bayeux {
        Bayeux::new(&self.url(), true)
    }

    pub fn set_token_valid(&self, valid: bool) {
        self.token_valid.store(valid, Ordering::SeqCst);
    }
}

/// Runs `f` until it returns `Some`, or fails the test after 20 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reply: HTTP status, `Set-Cookie` headers, JSON body.
pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub body: Value,
}

impl Reply {
    /// The reply message on `channel` (the meta reply), failing the test if absent.
    pub fn meta(&self, channel: &str) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m["channel"] == channel && m.get("successful").is_some())
            .unwrap_or_else(|| panic!("no {channel} reply in {}", self.body))
    }

    pub fn messages(&self) -> Vec<Value> {
        self.body.as_array().cloned().unwrap_or_default()
    }

    /// The event messages (those with `data`), in order.
    pub fn events(&self) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m.get("data").is_some())
            .collect()
    }

    pub fn replay_ids(&self) -> Vec<i64> {
        self.events()
            .iter()
            .filter_map(|e| e["data"]["event"]["replayId"].as_i64())
            .collect()
    }
}

/// A minimal Bayeux client over reqwest, with or without a cookie store.
#[derive(Clone)]
pub struct Bayeux {
    pub http: reqwest::Client,
    pub url: String,
    pub auth: Option<String>,
}

impl Bayeux {
    pub fn new(url: &str, cookies: bool) -> Bayeux {
        let http = reqwest::Client::builder()
            .cookie_store(cookies)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        Bayeux {
            http,
            url: url.to_owned(),
            auth: Some(format!("Bearer {TOKEN}")),
        }
    }

    pub async fn post_raw(&self, url: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let text = response.text().await.expect("HTTP body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text}"));
        Reply {
            status,
            set_cookies,
            body,
        }
    }

    pub async fn post(&self, messages: Value) -> Reply {
        let body = serde_json::to_vec(&messages).expect("serialize");
        self.post_raw(&self.url, "application/json", body).await
    }

    pub async fn handshake_reply(&self) -> Reply {
        self.post(json!([{
            "channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"], "id": "1", "ext": {"replay": true}
        }]))
        .await
    }

    /// Handshakes and returns the client id.
    pub async fn handshake(&self) -> String {
        let reply = self.handshake_reply().await;
        let meta = reply.meta("/meta/handshake");
        assert_eq!(meta["successful"], true, "handshake failed: {meta}");
        meta["clientId"].as_str().expect("clientId").to_owned()
    }

    pub async fn connect(&self, client_id: &str) -> Reply {
        self.post(json!([{
            "channel": "/meta/connect", "clientId": client_id,
            "connectionType": "long-polling", "id": "c"
        }]))
        .await
    }

    /// Handshake plus the first (immediate) connect: the client is then in its connect loop.
    pub async fn connected(&self) -> String {
        let id = self.handshake().await;
        let first = self.connect(&id).await;
        assert_eq!(first.meta("/meta/connect")["successful"], true);
        id
    }

    pub async fn subscribe(&self, client_id: &str, channel: &str, ext: Option<Value>) -> Value {
        let mut message = json!({
            "channel": "/meta/subscribe", "clientId": client_id,
            "subscription": channel, "id": "s"
        });
        if let Some(ext) = ext {
            message["ext"] = ext;
        }
        self.post(json!([message])).await.meta("/meta/subscribe")
    }

    pub async fn subscribe_from(&self, client_id: &str, channel: &str, replay: i64) -> Value {
        let ext = json!({"replay": {channel: replay}});
        self.subscribe(client_id, channel, Some(ext)).await
    }
}
