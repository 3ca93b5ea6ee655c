//! A Bayeux (CometD) long-polling client for the routing table's PushTopic.
//!
//! One task per stream runs the state machine below; events leave it through an mpsc channel
//! with `try_send`, so the connect loop never waits for the router.
//!
//! ```text
//!  ┌─► token (login if needed) ─► handshake ─► session: subscribe ∥ connect loop ──► stop
//!  │        ▲                         │               │
//!  │        └── re-login (shared) ◄───┴── 401 / Handshake denied(401)
//!  ├── unknown client / reconnect:handshake (re-handshake, last seen replay id, no re-login)
//!  ├── watchdog: connect unanswered after advice.timeout + margin (new HTTP pool, same cookies)
//!  └── transport errors, reconnect:none: bounded exponential back-off with jitter
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sors_core::model::RowId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Secret, StreamingConfig, backoff};
use crate::{Salesforce, SfError};

/// What the stream tells the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The PushTopic subscription is in place (after every (re)subscribe), replaying after
    /// `replay_from` (-1: new events only, -2: everything retained).
    Subscribed { replay_from: i64 },
    /// A PushTopic event for a routing row. `replay_id` is -1 when the server sent none.
    Push {
        row_id: RowId,
        replay_id: i64,
        /// The row's `Status__c` in the event, when present.
        status: Option<String>,
        /// `created`, `updated`, `deleted`, `undeleted`.
        event_type: String,
    },
    /// Events may have been missed (replay id rejected, PushTopic re-created, re-handshake
    /// without a replay position, event channel overflow): the router must scan the table.
    ResyncNeeded { reason: String },
    /// The stream is down (it keeps trying to come back; a `Subscribed` follows when it does).
    Disconnected { reason: String },
}

/// Controls a running stream.
pub struct StreamHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StreamHandle {
    /// Stops the stream: sends `/meta/disconnect` (frees the org's concurrent-client slot)
    /// and waits for the task to end. The event channel then closes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(event = "salesforce.streaming.task_failed", error = %e, "Streaming task failed");
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Salesforce {
    /// Starts streaming the PushTopic (`/topic/{push_topic}`), replaying after `replay_from`
    /// (-1 new events only, -2 all retained, N after N). Must run inside a Tokio runtime.
    pub fn stream(&self, replay_from: i64) -> (StreamHandle, mpsc::Receiver<StreamEvent>) {
        let (tx, rx) = mpsc::channel(self.config().streaming.channel_capacity.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let streamer = Streamer::new(self.clone(), replay_from, tx, stop_rx);
        let task = tokio::spawn(streamer.run());
        (
            StreamHandle {
                stop: stop_tx,
                task,
            },
            rx,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Wire messages

#[derive(Debug, Default, Deserialize)]
struct Message {
    #[serde(default)]
    channel: String,
    #[serde(default, rename = "clientId")]
    client_id: Option<String>,
    #[serde(default)]
    successful: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    advice: Option<Advice>,
    #[serde(default)]
    ext: Option<Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Advice {
    #[serde(default)]
    reconnect: Option<String>,
    #[serde(default)]
    interval: Option<i64>,
    #[serde(default)]
    timeout: Option<i64>,
}

/// `code:args:message` of a Bayeux error.
fn error_code(error: &str) -> Option<u16> {
    error.split(':').next().and_then(|c| c.trim().parse().ok())
}

/// What a failed meta reply asks of the client.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Server forgot us (`403::Unknown client`, `402::session_unknown`, faye's
    /// `401:…:Unknown client`) or advised `reconnect: handshake`.
    Rehandshake(String),
    /// `401::Authentication invalid`, `403::Handshake denied` with `failureReason` 401.
    Auth(String),
    /// `400::The replayId {N} you provided was invalid…`
    ReplayInvalid(String),
    /// `400::The channel you requested to subscribe to does not exist {…}`
    ChannelMissing(String),
    /// `reconnect: none` for another reason (limits…): back off for longer.
    Refused(String),
    /// Anything else: retry after the advised interval / back-off.
    Retry(String),
}

fn classify(m: &Message) -> Refusal {
    let err = m
        .error
        .clone()
        .unwrap_or_else(|| "unsuccessful, no error given".into());
    let lower = err.to_ascii_lowercase();
    let code = error_code(&err);
    let failure_reason = m
        .ext
        .as_ref()
        .and_then(|e| e.pointer("/sfdc/failureReason"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reconnect = m.advice.as_ref().and_then(|a| a.reconnect.as_deref());
    if code == Some(400) && lower.contains("replayid") && lower.contains("invalid") {
        Refusal::ReplayInvalid(err)
    } else if code == Some(400) && lower.contains("channel") && lower.contains("does not exist") {
        Refusal::ChannelMissing(err)
    } else if matches!(code, Some(401..=403))
        && (lower.contains("nknown client") || lower.contains("session_unknown"))
    {
        Refusal::Rehandshake(err)
    } else if code == Some(401) || failure_reason.starts_with("401") {
        let reason = if failure_reason.is_empty() {
            err
        } else {
            format!("{err} ({failure_reason})")
        };
        Refusal::Auth(reason)
    } else if reconnect == Some("handshake") {
        Refusal::Rehandshake(err)
    } else if reconnect == Some("none") {
        let reason = if failure_reason.is_empty() {
            err
        } else {
            format!("{err} ({failure_reason})")
        };
        Refusal::Refused(reason)
    } else {
        Refusal::Retry(err)
    }
}

/// A request that did not produce Bayeux messages.
#[derive(Debug)]
enum Fail {
    Transport(String),
    /// HTTP 401 without a Bayeux body.
    HttpAuth(String),
    /// The held connect got no answer in time.
    Watchdog,
}

impl Fail {
    fn reason(&self) -> String {
        match self {
            Fail::Transport(s) | Fail::HttpAuth(s) => s.clone(),
            Fail::Watchdog => "connect watchdog expired".into(),
        }
    }
}

/// One Bayeux session: what every request needs. Cheap to clone into request futures.
#[derive(Clone)]
struct Conn {
    http: reqwest::Client,
    url: String,
    token: Secret,
    client_id: String,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &Secret,
    body: Value,
    timeout: Duration,
) -> Result<Vec<Message>, Fail> {
    let resp = http
        .post(url)
        .header("Authorization", format!("Bearer {}", token.expose()))
        .timeout(timeout)
        .json(&body)
        .send()
        .await
        .map_err(|e| Fail::Transport(SfError::transport(&e).to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Fail::Transport(SfError::transport(&e).to_string()))?;
    let parsed: Option<Vec<Message>> = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => Some(
            items
                .into_iter()
                .filter_map(|v| match serde_json::from_value::<Message>(v) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        warn!(event = "salesforce.streaming.bad_message", error = %e,
                              "Ignoring a malformed Bayeux message");
                        None
                    }
                })
                .collect(),
        ),
        Ok(v @ Value::Object(_)) => serde_json::from_value::<Message>(v).ok().map(|m| vec![m]),
        _ => None,
    };
    match parsed {
        Some(msgs) if !msgs.is_empty() => Ok(msgs),
        _ if status == 401 => Err(Fail::HttpAuth(format!("HTTP 401 from {url}"))),
        _ => {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            Err(Fail::Transport(format!(
                "HTTP {status} from {url} without Bayeux messages: {text}"
            )))
        }
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a Bayeux session ended.
enum End {
    Stop,
    Rehandshake(String),
    Auth(String),
    Watchdog,
    Refused(String),
    Transport(String),
}

struct Streamer {
    sf: Salesforce,
    cfg: StreamingConfig,
    request_timeout: Duration,
    channel: String,
    /// The last seen replay id (or the starting point): what a resubscribe asks for.
    replay: i64,
    tx: mpsc::Sender<StreamEvent>,
    overflowed: bool,
    closed: bool,
    stop: watch::Receiver<bool>,
    jar: Arc<reqwest::cookie::Jar>,
    http: reqwest::Client,
    next_id: u64,
    /// Consecutive failures since the stream last worked: drives the back-off.
    failures: u32,
    /// `advice.timeout` / `advice.interval` from the server, in ms.
    hold_ms: u64,
    interval_ms: u64,
    replay_supported: bool,
    up: bool,
    ever_subscribed: bool,
}

impl Streamer {
    fn new(
        sf: Salesforce,
        replay_from: i64,
        tx: mpsc::Sender<StreamEvent>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let cfg = sf.config().streaming.clone();
        let request_timeout = sf.config().request_timeout();
        let channel = sf.names().channel();
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = Self::build_http(&sf, &jar);
        let hold_ms = cfg.default_connect_timeout_ms;
        Self {
            sf,
            cfg,
            request_timeout,
            channel,
            replay: replay_from,
            tx,
            overflowed: false,
            closed: false,
            stop,
            jar,
            http,
            next_id: 0,
            failures: 0,
            hold_ms,
            interval_ms: 0,
            replay_supported: false,
            up: false,
            ever_subscribed: false,
        }
    }

    /// A fresh connection pool sharing the cookie jar (BAYEUX_BROWSER, sfdc-stream).
    fn build_http(sf: &Salesforce, jar: &Arc<reqwest::cookie::Jar>) -> reqwest::Client {
        let built = crate::http_builder(sf.config()).and_then(|b| {
            b.cookie_provider(jar.clone())
                .build()
                .map_err(|e| SfError::Config(format!("HTTP client: {e}")))
        });
        match built {
            Ok(c) => c,
            Err(e) => {
                // The same settings already built the REST client in Salesforce::new, so this
                // does not happen; fall back to a default client with the jar rather than panic.
                error!(event = "salesforce.streaming.http_client", error = %e,
                       "Could not build the streaming HTTP client; using defaults");
                reqwest::Client::builder()
                    .cookie_provider(jar.clone())
                    .build()
                    .unwrap_or_default()
            }
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow() || self.closed
    }

    /// Hands an event to the router without ever waiting. Returns false once the router is gone.
    fn emit(&mut self, ev: StreamEvent) {
        if self.overflowed {
            let resync = StreamEvent::ResyncNeeded {
                reason: "the router fell behind and stream events were dropped".into(),
            };
            match self.tx.try_send(resync) {
                Ok(()) => self.overflowed = false,
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.closed = true;
                    return;
                }
            }
        }
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                warn!(event = "salesforce.streaming.overflow", dropped = ?ev,
                      "Stream event channel full; dropping and asking for a resync");
                self.overflowed = true;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed = true,
        }
    }

    fn down(&mut self, reason: &str) {
        self.sf.stats_cell().error(&format!("streaming: {reason}"));
        if self.up {
            self.up = false;
            warn!(
                event = "salesforce.streaming.down",
                reason, "Salesforce streaming is down"
            );
            self.emit(StreamEvent::Disconnected {
                reason: reason.to_owned(),
            });
        }
    }

    /// Sleeps, unless asked to stop. Returns false when stopping.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopped(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    fn next_backoff(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        backoff(
            self.cfg.backoff_base_ms,
            self.cfg.backoff_max_ms,
            self.failures,
        )
    }

    async fn run(mut self) {
        info!(event = "salesforce.streaming.start", channel = %self.channel, replay_from = self.replay,
              "Starting Salesforce streaming");
        while !self.stopped() {
            let session = match self.sf.tokens().session().await {
                Ok(s) => s,
                Err(e) => {
                    self.down(&format!("login failed: {e}"));
                    let d = self.next_backoff();
                    if !self.pause(d).await {
                        break;
                    }
                    continue;
                }
            };
            let url = format!(
                "{}/cometd/{}",
                session.info.instance_url,
                self.sf.config().api_version
            );
            let end = match self.handshake(url, session.token.clone()).await {
                Ok(conn) => {
                    let end = self.run_session(&conn).await;
                    if matches!(end, End::Stop) {
                        self.disconnect(&conn).await;
                    }
                    end
                }
                Err(end) => end,
            };
            let delay = match end {
                End::Stop => break,
                End::Rehandshake(reason) => {
                    info!(event = "salesforce.streaming.rehandshake", reason = %reason,
                          "Salesforce streaming re-handshake");
                    self.down(&reason);
                    // The first re-handshake goes at once (after the advised interval); a
                    // server that keeps forgetting us gets the back-off.
                    if self.failures == 0 {
                        self.failures = 1;
                        Duration::from_millis(self.interval_ms)
                    } else {
                        self.next_backoff()
                    }
                }
                End::Auth(reason) => {
                    self.down(&reason);
                    if self.failures > 0 {
                        error!(event = "salesforce.streaming.auth_rejected", reason = %reason,
                               "Streaming authentication failed again after a re-login");
                    }
                    warn!(event = "salesforce.streaming.auth", reason = %reason,
                          "Streaming session rejected; re-logging in");
                    if let Err(e) = self.sf.tokens().relogin(session.generation).await {
                        self.down(&format!("re-login failed: {e}"));
                    }
                    if self.failures == 0 {
                        self.failures = 1;
                        Duration::ZERO
                    } else {
                        self.next_backoff()
                    }
                }
                End::Watchdog => {
                    warn!(
                        event = "salesforce.streaming.watchdog",
                        hold_ms = self.hold_ms,
                        margin_ms = self.cfg.watchdog_margin_ms,
                        "Held connect got no answer in time; new connection pool and re-handshake"
                    );
                    self.down("connect watchdog expired");
                    self.http = Self::build_http(&self.sf, &self.jar);
                    self.next_backoff()
                }
                End::Refused(reason) => {
                    warn!(event = "salesforce.streaming.refused", reason = %reason,
                          "Salesforce streaming refused; backing off");
                    self.down(&reason);
                    let b = self.next_backoff();
                    b.max(Duration::from_millis(self.cfg.refused_delay_ms))
                }
                End::Transport(reason) => {
                    warn!(event = "salesforce.streaming.transport", reason = %reason,
                          "Salesforce streaming transport error; backing off");
                    self.down(&reason);
                    self.next_backoff()
                }
            };
            if !self.pause(delay).await {
                break;
            }
        }
        info!(event = "salesforce.streaming.stopped", channel = %self.channel,
              "Salesforce streaming stopped");
    }

    async fn handshake(&mut self, url: String, token: Secret) -> Result<Conn, End> {
        let body = json!([{
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "id": self.id(),
            "ext": { "replay": true },
        }]);
        let mut stop = self.stop.clone();
        let reply = tokio::select! {
            r = post(&self.http, &url, &token, body, self.request_timeout) => r,
            _ = stop.wait_for(|s| *s) => return Err(End::Stop),
        };
        let msgs = match reply {
            Ok(m) => m,
            Err(Fail::HttpAuth(r)) => return Err(End::Auth(r)),
            Err(f) => return Err(End::Transport(format!("handshake: {}", f.reason()))),
        };
        let Some(hs) = msgs.into_iter().find(|m| m.channel == "/meta/handshake") else {
            return Err(End::Transport(
                "handshake answer without /meta/handshake".into(),
            ));
        };
        let client_id = hs.client_id.clone().filter(|c| !c.is_empty());
        match (hs.successful, client_id) {
            (Some(true), Some(client_id)) => {
                self.apply_advice(hs.advice.as_ref());
                self.replay_supported = hs
                    .ext
                    .as_ref()
                    .and_then(|e| e.get("replay"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                debug!(
                    event = "salesforce.streaming.handshake",
                    replay = self.replay_supported,
                    "Bayeux handshake done"
                );
                let resync = if self.ever_subscribed {
                    (!self.replay_supported || self.replay == -1).then_some(
                        "re-handshake without a replay position: events may have been missed",
                    )
                } else {
                    (!self.replay_supported && self.replay != -1).then_some(
                        "the server does not support replay: events may have been missed",
                    )
                };
                if let Some(reason) = resync {
                    self.emit(StreamEvent::ResyncNeeded {
                        reason: reason.into(),
                    });
                }
                Ok(Conn {
                    http: self.http.clone(),
                    url,
                    token,
                    client_id,
                })
            }
            _ => Err(match classify(&hs) {
                Refusal::Auth(r) => End::Auth(format!("handshake: {r}")),
                Refusal::Refused(r) => End::Refused(format!("handshake: {r}")),
                Refusal::Rehandshake(r)
                | Refusal::Retry(r)
                | Refusal::ReplayInvalid(r)
                | Refusal::ChannelMissing(r) => End::Transport(format!("handshake: {r}")),
            }),
        }
    }

    fn apply_advice(&mut self, advice: Option<&Advice>) {
        if let Some(a) = advice {
            if let Some(t) = a.timeout.filter(|t| *t >= 0) {
                self.hold_ms = t as u64;
            }
            if let Some(i) = a.interval.filter(|i| *i >= 0) {
                self.interval_ms = i as u64;
            }
        }
    }

    fn subscribe_fut(
        &mut self,
        conn: &Conn,
        delay: Duration,
        ensure_topic: bool,
    ) -> (i64, BoxFut<Result<Vec<Message>, Fail>>) {
        let replay = self.replay;
        let body = json!([{
            "channel": "/meta/subscribe",
            "clientId": conn.client_id,
            "subscription": self.channel,
            "id": self.id(),
            "ext": { "replay": { self.channel.clone(): replay } },
        }]);
        let conn = conn.clone();
        let timeout = self.request_timeout;
        let sf = ensure_topic.then(|| self.sf.clone());
        let fut = async move {
            tokio::time::sleep(delay).await;
            if let Some(sf) = sf {
                match sf.ensure_push_topic().await {
                    Ok(outcome) => info!(
                        event = "salesforce.pushtopic.ensured",
                        ?outcome,
                        "PushTopic checked before resubscribing"
                    ),
                    Err(e) => return Err(Fail::Transport(format!("ensure_push_topic: {e}"))),
                }
            }
            post(&conn.http, &conn.url, &conn.token, body, timeout).await
        };
        (replay, Box::pin(fut))
    }

    fn connect_fut(&mut self, conn: &Conn, delay: Duration) -> BoxFut<Result<Vec<Message>, Fail>> {
        let body = json!([{
            "channel": "/meta/connect",
            "clientId": conn.client_id,
            "connectionType": "long-polling",
            "id": self.id(),
        }]);
        let conn = conn.clone();
        let limit = Duration::from_millis(self.hold_ms + self.cfg.watchdog_margin_ms);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            // The reqwest timeout is a backstop a little after the watchdog.
            let req = post(
                &conn.http,
                &conn.url,
                &conn.token,
                body,
                limit + Duration::from_secs(5),
            );
            match tokio::time::timeout(limit, req).await {
                Ok(r) => r,
                Err(_) => Err(Fail::Watchdog),
            }
        })
    }

    /// Subscribe (on its own request) and the connect loop, until something ends the session.
    async fn run_session(&mut self, conn: &Conn) -> End {
        let mut stop = self.stop.clone();
        let (mut sub_replay, fut) = self.subscribe_fut(conn, Duration::ZERO, false);
        let mut sub: Option<BoxFut<Result<Vec<Message>, Fail>>> = Some(fut);
        let mut ensured = false;
        let mut connect = self.connect_fut(conn, Duration::ZERO);
        loop {
            if self.stopped() {
                return End::Stop;
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return End::Stop,
                r = async {
                    match sub.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    sub = None;
                    let msgs = match r {
                        Ok(m) => m,
                        Err(Fail::HttpAuth(r)) => return End::Auth(r),
                        Err(f) => {
                            warn!(event = "salesforce.streaming.subscribe_failed", reason = %f.reason(),
                                  "Subscribe request failed; retrying");
                            let d = self.next_backoff();
                            let (rp, fut) = self.subscribe_fut(conn, d, false);
                            sub_replay = rp;
                            sub = Some(fut);
                            continue;
                        }
                    };
                    self.deliver(&msgs);
                    let Some(reply) = msgs.iter().find(|m| m.channel == "/meta/subscribe") else {
                        let d = self.next_backoff();
                        let (rp, fut) = self.subscribe_fut(conn, d, false);
                        sub_replay = rp;
                        sub = Some(fut);
                        continue;
                    };
                    if reply.successful == Some(true) {
                        self.up = true;
                        self.ever_subscribed = true;
                        info!(event = "salesforce.pushtopic.subscribed", channel = %self.channel,
                              replay_from = sub_replay, "Subscribed successfully to Push Topic");
                        self.emit(StreamEvent::Subscribed { replay_from: sub_replay });
                        continue;
                    }
                    match classify(reply) {
                        Refusal::ReplayInvalid(r) if sub_replay != -1 => {
                            warn!(event = "salesforce.streaming.replay_invalid", replay = sub_replay,
                                  reason = %r, "Replay id rejected; resubscribing with -1");
                            self.replay = -1;
                            self.emit(StreamEvent::ResyncNeeded { reason: r });
                            let (rp, fut) = self.subscribe_fut(conn, Duration::ZERO, false);
                            sub_replay = rp;
                            sub = Some(fut);
                        }
                        Refusal::ChannelMissing(r) => {
                            warn!(event = "salesforce.streaming.channel_missing", channel = %self.channel,
                                  reason = %r, "PushTopic channel missing; ensuring the PushTopic");
                            self.emit(StreamEvent::ResyncNeeded { reason: r });
                            let d = if ensured { self.next_backoff() } else { Duration::ZERO };
                            ensured = true;
                            let (rp, fut) = self.subscribe_fut(conn, d, true);
                            sub_replay = rp;
                            sub = Some(fut);
                        }
                        Refusal::Rehandshake(r) => return End::Rehandshake(r),
                        Refusal::Auth(r) => return End::Auth(r),
                        Refusal::Refused(r) | Refusal::ReplayInvalid(r) => return End::Refused(r),
                        Refusal::Retry(r) => {
                            warn!(event = "salesforce.streaming.subscribe_failed", reason = %r,
                                  "Subscribe refused; retrying");
                            let d = self.next_backoff();
                            let (rp, fut) = self.subscribe_fut(conn, d, false);
                            sub_replay = rp;
                            sub = Some(fut);
                        }
                    }
                }
                r = &mut connect => {
                    let msgs = match r {
                        Ok(m) => m,
                        Err(Fail::Watchdog) => return End::Watchdog,
                        Err(Fail::HttpAuth(r)) => return End::Auth(r),
                        Err(Fail::Transport(r)) => {
                            self.down(&r);
                            let d = self.next_backoff();
                            warn!(event = "salesforce.streaming.transport", reason = %r,
                                  delay_ms = d.as_millis() as u64, "Connect failed; retrying");
                            connect = self.connect_fut(conn, d);
                            continue;
                        }
                    };
                    self.deliver(&msgs);
                    let reply = msgs.iter().find(|m| m.channel == "/meta/connect");
                    match reply {
                        Some(m) if m.successful == Some(true) => {
                            self.apply_advice(m.advice.as_ref());
                            if sub.is_none() && self.up {
                                self.failures = 0;
                            }
                            if !self.up && sub.is_none() && self.ever_subscribed {
                                // Back after transport errors with the same client id.
                                self.up = true;
                                info!(event = "salesforce.streaming.up", "Salesforce streaming is back");
                                self.emit(StreamEvent::Subscribed { replay_from: self.replay });
                            }
                            let d = Duration::from_millis(self.interval_ms);
                            connect = self.connect_fut(conn, d);
                        }
                        Some(m) => match classify(m) {
                            Refusal::Rehandshake(r) => return End::Rehandshake(r),
                            Refusal::Auth(r) => return End::Auth(r),
                            Refusal::Refused(r) => return End::Refused(r),
                            Refusal::Retry(r) | Refusal::ReplayInvalid(r) | Refusal::ChannelMissing(r) => {
                                self.apply_advice(m.advice.as_ref());
                                let d = self.next_backoff().max(Duration::from_millis(self.interval_ms));
                                warn!(event = "salesforce.streaming.connect_failed", reason = %r,
                                      delay_ms = d.as_millis() as u64, "Connect refused; retrying");
                                connect = self.connect_fut(conn, d);
                            }
                        },
                        None => {
                            let d = Duration::from_millis(self.interval_ms);
                            connect = self.connect_fut(conn, d);
                        }
                    }
                }
            }
        }
    }

    /// Pushes the data messages of an answer to the router and remembers the last replay id.
    fn deliver(&mut self, msgs: &[Message]) {
        for m in msgs {
            if m.channel.starts_with("/meta/") {
                continue;
            }
            let Some(data) = &m.data else { continue };
            let base_channel = m.channel.split('?').next().unwrap_or_default();
            if base_channel != self.channel {
                debug!(event = "salesforce.streaming.other_channel", channel = %m.channel,
                       "Ignoring an event on another channel");
                continue;
            }
            let replay_id = data.pointer("/event/replayId").and_then(Value::as_i64);
            if let Some(r) = replay_id {
                self.replay = r;
            }
            let Some(row_id) = data.pointer("/sobject/Id").and_then(Value::as_str) else {
                warn!(event = "salesforce.streaming.bad_event", channel = %m.channel,
                      "PushTopic event without sobject.Id; ignored");
                continue;
            };
            let status = data
                .get("sobject")
                .and_then(|s| s.get(self.sf.names().row_status.as_str()))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let event_type = data
                .pointer("/event/type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            debug!(event = "salesforce.streaming.push", row_id, replay_id, event_type = %event_type,
                   "PushTopic event");
            self.emit(StreamEvent::Push {
                row_id: RowId::new(row_id),
                replay_id: replay_id.unwrap_or(-1),
                status,
                event_type,
            });
        }
    }

    async fn disconnect(&mut self, conn: &Conn) {
        let body = json!([{
            "channel": "/meta/disconnect",
            "clientId": conn.client_id,
            "id": self.id(),
        }]);
        match post(
            &conn.http,
            &conn.url,
            &conn.token,
            body,
            self.request_timeout,
        )
        .await
        {
            Ok(_) => info!(
                event = "salesforce.streaming.disconnected",
                "Sent /meta/disconnect"
            ),
            Err(f) => warn!(event = "salesforce.streaming.disconnect_failed", reason = %f.reason(),
                            "Could not send /meta/disconnect"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(error: &str, reconnect: Option<&str>, ext: Option<Value>) -> Message {
        Message {
            channel: "/meta/connect".into(),
            successful: Some(false),
            error: Some(error.into()),
            advice: reconnect.map(|r| Advice {
                reconnect: Some(r.into()),
                ..Advice::default()
            }),
            ext,
            ..Message::default()
        }
    }

    #[test]
    fn classifies_salesforce_and_generic_errors() {
        let unknown = |e: &str, r| matches!(classify(&msg(e, r, None)), Refusal::Rehandshake(_));
        assert!(unknown("403::Unknown client", Some("handshake")));
        assert!(unknown("403::Unknown client", Some("none")));
        assert!(unknown("401:nope:Unknown client", Some("handshake")));
        assert!(unknown("402::session_unknown", Some("handshake")));
        assert!(unknown("999::whatever", Some("handshake")));
        assert!(matches!(
            classify(&msg("401::Authentication invalid", Some("none"), None)),
            Refusal::Auth(_)
        ));
        let denied = msg(
            "403::Handshake denied",
            Some("none"),
            Some(json!({"sfdc":{"failureReason":"401::Authentication invalid"}})),
        );
        assert!(matches!(classify(&denied), Refusal::Auth(_)));
        let limit = msg(
            "403::Handshake denied",
            Some("none"),
            Some(
                json!({"sfdc":{"failureReason":"403::Organization concurrent user limit exceeded"}}),
            ),
        );
        assert!(matches!(classify(&limit), Refusal::Refused(_)));
        assert!(matches!(
            classify(&msg(
                "400::The replayId {82} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.",
                None,
                None
            )),
            Refusal::ReplayInvalid(_)
        ));
        assert!(matches!(
            classify(&msg(
                "400::The channel you requested to subscribe to does not exist {/topic/X}",
                None,
                None
            )),
            Refusal::ChannelMissing(_)
        ));
        assert!(matches!(
            classify(&msg("500::oops", Some("retry"), None)),
            Refusal::Retry(_)
        ));
    }
}
