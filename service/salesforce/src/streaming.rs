//! A Bayeux (CometD) long-polling client for the routing table's PushTopic.
//!
//! One task per stream runs the phases below; events leave it through an mpsc channel with
//! `try_send`, so the connect loop never waits for the router. Every phase change is a `Step`
//! through the pure `next`; `Streamer::step` adds what the router hears: `Subscribed` on
//! entering `Connected`, `Disconnected` on leaving it for `Reconnecting` or `Backoff`.
//!
//! ```text
//!  Handshaking ─Handshaken─► Subscribing ─Subscribed─► Connected ─ConnectLost─► Reconnecting
//!       ▲                                                  ▲                         │
//!     Waited                                               └────────ConnectOk────────┘
//!       │
//!  Backoff{delay} ◄─Ended{delay}─ Handshaking, Subscribing, Connected or Reconnecting
//!
//!  any phase ─Stop (shutdown, handle dropped, router gone)─► Stopped
//! ```
//!
//! - `Handshaking`: a token (logging in if needed), then `/meta/handshake` (`ext.replay`).
//! - `Subscribing`: `/meta/subscribe` with the last seen replay id on its own request, while the
//!   connect loop (one `/meta/connect` outstanding) already runs.
//! - `Connected` / `Reconnecting`: the connect loop, answering / failing in transport.
//! - `Stopped`: final; `/meta/disconnect` is sent when the stop comes during a session.
//!
//! `Ended`, and the delay before the next handshake (back-off: bounded, exponential, jitter
//! 50..100 %, counting failures since a connect last succeeded while `Connected`):
//! - unknown client / `reconnect: handshake`: re-handshake and resubscribe with the last seen
//!   replay id, no re-login; the first of a series waits only `advice.interval`;
//! - 401 / Handshake denied (failureReason 401): shared re-login, then handshake; the first of a
//!   series at once;
//! - watchdog (connect unanswered after `advice.timeout` + margin): a new HTTP pool (same cookies);
//! - `reconnect: none` for another reason (limits…): at least `refused_delay_ms`;
//! - login failure, transport errors: back-off.
//!
//! Within a session the subscribe is re-sent (replay id invalid: at once with -1; channel
//! missing: after `ensure_push_topic`; otherwise after back-off), and so is the connect, with the
//! same client id (transport error: back-off and `ConnectLost`; refused: at least
//! `advice.interval`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sors_core::backoff::Retry;
use sors_core::model::RowId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, error, info, warn};

use crate::config::{Secret, StreamingConfig};
use crate::{Salesforce, SfError};

/// What the stream tells the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The PushTopic subscription is in place (after every (re)subscribe), replaying after
    /// `replay_from` (-1: new events only, -2: everything retained).
    Subscribed { replay_from: i64 },
    /// A PushTopic event for a routing row. `replay_id` is -1 when the server sent none.
    Push { row_id: RowId, replay_id: i64 },
    /// Events may have been missed (replay id rejected, PushTopic re-created, re-handshake
    /// without a replay position, event channel overflow): the router must scan the table.
    ResyncNeeded { reason: String },
    /// The stream is down (it keeps trying to come back; a `Subscribed` follows when it does).
    Disconnected { reason: String },
}

/// Controls a running stream. Dropping it stops the stream too (with `/meta/disconnect`).
pub struct StreamHandle {
    stop: DropGuard,
    task: JoinHandle<()>,
}

impl StreamHandle {
    /// Stops the stream: sends `/meta/disconnect` (frees the org's concurrent-client slot)
    /// and waits for the task to end. The event channel then closes.
    pub async fn shutdown(self) {
        let StreamHandle { stop, task } = self;
        stop.disarm().cancel();
        if let Err(e) = task.await {
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
        let stop = CancellationToken::new();
        let streamer = Streamer::new(self.clone(), replay_from, tx, stop.clone());
        let task = tokio::spawn(streamer.run());
        (
            StreamHandle {
                stop: stop.drop_guard(),
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
type Reply = Result<Vec<Message>, Fail>;
/// A subscribe in flight: resolves to the replay id it asked for and the answer.
type PendingSubscribe = BoxFut<(i64, Reply)>;

// ---------------------------------------------------------------------------------------------
// Phases

/// Where the stream is: the phases of the module doc's diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Getting a token (logging in if needed) and handshaking: no Bayeux session yet.
    Handshaking,
    /// A session: the subscribe is outstanding (re-sent on refusals), the connect loop runs.
    Subscribing,
    /// Subscribed, the connect loop answering: the router was told `Subscribed`.
    Connected,
    /// Subscribed, but a connect failed in transport: the router was told `Disconnected`, and
    /// the connect is re-sent on the same session after back-off.
    Reconnecting,
    /// The session ended (or the login failed): handshaking again after `delay`.
    Backoff { delay: Duration },
    /// Shutdown, the handle dropped, or the router gone. Final.
    Stopped,
}

/// What happened, as far as the phase is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// The handshake succeeded: a session.
    Handshaken,
    /// The subscribe succeeded; it asked for events after `replay_from`.
    Subscribed { replay_from: i64 },
    /// A connect was answered successfully.
    ConnectOk,
    /// A connect failed in transport (it is re-sent on the same session).
    ConnectLost { reason: String },
    /// The login failed or the session ended: handshake again after `delay`.
    Ended { reason: String, delay: Duration },
    /// The back-off delay has passed.
    Waited,
    /// Shutdown, the handle dropped, or the router gone.
    Stop,
}

/// The phase after `step`: the diagram of the module doc, and nothing else.
fn next(phase: Phase, step: &Step) -> Phase {
    match (phase, step) {
        (Phase::Stopped, _) | (_, Step::Stop) => Phase::Stopped,
        (_, Step::Ended { delay, .. }) => Phase::Backoff { delay: *delay },
        (Phase::Handshaking, Step::Handshaken) => Phase::Subscribing,
        (Phase::Subscribing, Step::Subscribed { .. }) => Phase::Connected,
        (Phase::Connected, Step::ConnectLost { .. }) => Phase::Reconnecting,
        (Phase::Reconnecting, Step::ConnectOk) => Phase::Connected,
        (Phase::Backoff { .. }, Step::Waited) => Phase::Handshaking,
        // The connect loop runs while subscribing, and keeps answering (or failing) once
        // connected or reconnecting: that changes nothing. Other pairs do not occur.
        (p, _) => p,
    }
}

/// How a Bayeux session (or its handshake) ended.
#[derive(Debug)]
enum End {
    Stop,
    Rehandshake(String),
    Auth(String),
    Watchdog,
    Refused(String),
    Transport(String),
}

/// The wait before handshaking again after a session ended with `end` (not `Stop`); counts the
/// failure in `retry`. A re-handshake or re-login right after the stream worked is not delayed
/// by back-off; one that keeps coming is.
fn end_delay(
    end: &End,
    retry: &mut Retry,
    cfg: &StreamingConfig,
    interval: Duration,
    sample: f64,
) -> Duration {
    let first = retry.failures() == 0;
    let backoff = retry.failed(sample);
    match end {
        End::Rehandshake(_) if first => interval,
        End::Auth(_) if first => Duration::ZERO,
        End::Refused(_) => backoff.max(Duration::from_millis(cfg.refused_delay_ms)),
        End::Stop | End::Rehandshake(_) | End::Auth(_) | End::Watchdog | End::Transport(_) => {
            backoff
        }
    }
}

/// Whether a successful handshake may have lost events (the server will not replay the gap),
/// and why.
fn handshake_resync(
    ever_subscribed: bool,
    replay_supported: bool,
    replay: i64,
) -> Option<&'static str> {
    if ever_subscribed {
        (!replay_supported || replay == -1)
            .then_some("re-handshake without a replay position: events may have been missed")
    } else {
        (!replay_supported && replay != -1)
            .then_some("the server does not support replay: events may have been missed")
    }
}

/// `advice.timeout` / `advice.interval` from the server, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Advised {
    hold_ms: u64,
    interval_ms: u64,
}

impl Advised {
    fn apply(&mut self, advice: Option<&Advice>) {
        if let Some(a) = advice {
            if let Some(t) = a.timeout.filter(|t| *t >= 0) {
                self.hold_ms = t as u64;
            }
            if let Some(i) = a.interval.filter(|i| *i >= 0) {
                self.interval_ms = i as u64;
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// The channel to the router, written with `try_send` only.
struct Outlet {
    tx: mpsc::Sender<StreamEvent>,
    state: OutletState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutletState {
    Open,
    /// An event was dropped on a full channel: a `ResyncNeeded` goes first when there is room.
    Owing,
    /// The router dropped its receiver.
    Closed,
}

impl Outlet {
    /// Hands an event to the router without ever waiting. Returns false once the router is gone.
    fn send(&mut self, ev: StreamEvent) -> bool {
        if self.state == OutletState::Owing {
            let resync = StreamEvent::ResyncNeeded {
                reason: "the router fell behind and stream events were dropped".into(),
            };
            match self.tx.try_send(resync) {
                Ok(()) => self.state = OutletState::Open,
                Err(mpsc::error::TrySendError::Full(_)) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => self.state = OutletState::Closed,
            }
        }
        if self.state == OutletState::Closed {
            return false;
        }
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                warn!(event = "salesforce.streaming.overflow", dropped = ?ev,
                      "Stream event channel full; dropping and asking for a resync");
                self.state = OutletState::Owing;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.state = OutletState::Closed,
        }
        self.state != OutletState::Closed
    }
}

/// What a subscribe answer leads to.
enum AfterSubscribe {
    Subscribed,
    Again { delay: Duration, ensure_topic: bool },
    End(End),
}

// ---------------------------------------------------------------------------------------------
// The client

struct Streamer {
    sf: Salesforce,
    cfg: StreamingConfig,
    request_timeout: Duration,
    channel: String,
    phase: Phase,
    /// The last seen replay id (or the starting point): what a resubscribe asks for.
    replay: i64,
    /// Whether a subscribe ever succeeded (history, not a phase): a later handshake without a
    /// replay position must ask for a resync.
    ever_subscribed: bool,
    /// Failures since a connect last succeeded while `Connected`: drives the back-off.
    retry: Retry,
    advised: Advised,
    outlet: Outlet,
    stop: CancellationToken,
    jar: Arc<reqwest::cookie::Jar>,
    http: reqwest::Client,
    /// The version of the proxy policy `http` was built with: a handshake rebuilds it when the
    /// policy changed.
    proxy_version: u64,
    next_id: u64,
}

impl Streamer {
    fn new(
        sf: Salesforce,
        replay_from: i64,
        tx: mpsc::Sender<StreamEvent>,
        stop: CancellationToken,
    ) -> Self {
        let cfg = sf.config().streaming.clone();
        let request_timeout = sf.config().request_timeout();
        let channel = sf.names().channel();
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let (http, proxy_version) = Self::build_http(&sf, &jar);
        let advised = Advised {
            hold_ms: cfg.default_connect_timeout_ms,
            interval_ms: 0,
        };
        let retry = Retry::new(cfg.backoff());
        Self {
            sf,
            cfg,
            request_timeout,
            channel,
            phase: Phase::Handshaking,
            replay: replay_from,
            ever_subscribed: false,
            retry,
            advised,
            outlet: Outlet {
                tx,
                state: OutletState::Open,
            },
            stop,
            jar,
            http,
            proxy_version,
            next_id: 0,
        }
    }

    /// A fresh connection pool sharing the cookie jar (BAYEUX_BROWSER, sfdc-stream), with the
    /// current proxy policy, and that policy's version.
    fn build_http(sf: &Salesforce, jar: &Arc<reqwest::cookie::Jar>) -> (reqwest::Client, u64) {
        let (version, proxy) = sf.config().proxy_now();
        let built = crate::http_builder(sf.config(), &proxy).and_then(|b| {
            b.cookie_provider(jar.clone())
                .build()
                .map_err(|e| SfError::Config(format!("HTTP client: {e}")))
        });
        let client = match built {
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
        };
        (client, version)
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn stopped(&self) -> bool {
        self.phase == Phase::Stopped || self.stop.is_cancelled()
    }

    /// The back-off delay after one more failure.
    fn backoff(&mut self) -> Duration {
        self.retry.failed(rand::random::<f64>())
    }

    /// Hands an event to the router; the stream stops once the router is gone.
    fn emit(&mut self, ev: StreamEvent) {
        if !self.outlet.send(ev) {
            self.phase = next(self.phase, &Step::Stop);
        }
    }

    /// The one place the phase changes, with what the router and the stats hear of it.
    fn step(&mut self, step: Step) {
        let old = self.phase;
        self.phase = next(old, &step);
        match &step {
            Step::ConnectLost { reason } | Step::Ended { reason, .. } => {
                self.sf.stats_cell().error(&format!("streaming: {reason}"));
            }
            Step::Subscribed { .. } => self.ever_subscribed = true,
            Step::ConnectOk if old == Phase::Connected => self.retry.reset(),
            _ => {}
        }
        match (old, self.phase, step) {
            (
                Phase::Connected,
                Phase::Reconnecting | Phase::Backoff { .. },
                Step::ConnectLost { reason } | Step::Ended { reason, .. },
            ) => {
                warn!(
                    event = "salesforce.streaming.down",
                    reason, "Salesforce streaming is down"
                );
                self.emit(StreamEvent::Disconnected { reason });
            }
            (Phase::Subscribing, Phase::Connected, Step::Subscribed { replay_from }) => {
                info!(event = "salesforce.pushtopic.subscribed", channel = %self.channel,
                      replay_from, "Subscribed successfully to Push Topic");
                self.emit(StreamEvent::Subscribed { replay_from });
            }
            (Phase::Reconnecting, Phase::Connected, _) => {
                // Back after transport errors with the same client id.
                info!(
                    event = "salesforce.streaming.up",
                    "Salesforce streaming is back"
                );
                self.emit(StreamEvent::Subscribed {
                    replay_from: self.replay,
                });
            }
            _ => {}
        }
    }

    /// Sleeps, unless asked to stop. Returns false when stopping.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopped(),
            _ = self.stop.cancelled() => false,
        }
    }

    async fn run(mut self) {
        info!(event = "salesforce.streaming.start", channel = %self.channel, replay_from = self.replay,
              "Starting Salesforce streaming");
        loop {
            if self.stop.is_cancelled() {
                self.step(Step::Stop);
            }
            match self.phase {
                Phase::Stopped => break,
                Phase::Backoff { delay } => {
                    let step = if self.pause(delay).await {
                        Step::Waited
                    } else {
                        Step::Stop
                    };
                    self.step(step);
                }
                // The session phases live inside `attempt`, which always ends in Backoff or
                // Stopped.
                Phase::Handshaking
                | Phase::Subscribing
                | Phase::Connected
                | Phase::Reconnecting => self.attempt().await,
            }
        }
        info!(event = "salesforce.streaming.stopped", channel = %self.channel,
              "Salesforce streaming stopped");
    }

    /// Handshaking: token, handshake, the session, and how it ended.
    async fn attempt(&mut self) {
        let session = match self.sf.tokens().session().await {
            Ok(s) => s,
            Err(e) => {
                let delay = self.backoff();
                self.step(Step::Ended {
                    reason: format!("login failed: {e}"),
                    delay,
                });
                return;
            }
        };
        if self.sf.config().proxy_now().0 != self.proxy_version {
            info!(
                event = "salesforce.streaming.proxy_changed",
                "Proxy settings changed: new connection pool for streaming"
            );
            (self.http, self.proxy_version) = Self::build_http(&self.sf, &self.jar);
        }
        let url = format!(
            "{}/cometd/{}",
            session.info.instance_url,
            self.sf.config().api_version
        );
        let end = match self.handshake(url, session.token.clone()).await {
            Ok(conn) => {
                self.step(Step::Handshaken);
                let end = self.run_session(&conn).await;
                if matches!(end, End::Stop) {
                    self.disconnect(&conn).await;
                }
                end
            }
            Err(end) => end,
        };
        let reason = match &end {
            End::Stop => return self.step(Step::Stop),
            End::Rehandshake(reason) => {
                info!(event = "salesforce.streaming.rehandshake", reason = %reason,
                      "Salesforce streaming re-handshake");
                reason.clone()
            }
            End::Watchdog => {
                warn!(
                    event = "salesforce.streaming.watchdog",
                    hold_ms = self.advised.hold_ms,
                    margin_ms = self.cfg.watchdog_margin_ms,
                    "Held connect got no answer in time; new connection pool and re-handshake"
                );
                (self.http, self.proxy_version) = Self::build_http(&self.sf, &self.jar);
                "connect watchdog expired".to_owned()
            }
            End::Refused(reason) => {
                warn!(event = "salesforce.streaming.refused", reason = %reason,
                      "Salesforce streaming refused; backing off");
                reason.clone()
            }
            End::Transport(reason) => {
                warn!(event = "salesforce.streaming.transport", reason = %reason,
                      "Salesforce streaming transport error; backing off");
                reason.clone()
            }
            End::Auth(reason) => reason.clone(),
        };
        let again = self.retry.failures() > 0;
        let delay = end_delay(
            &end,
            &mut self.retry,
            &self.cfg,
            self.advised.interval(),
            rand::random::<f64>(),
        );
        self.step(Step::Ended { reason, delay });
        if let End::Auth(reason) = &end {
            if again {
                error!(event = "salesforce.streaming.auth_rejected", reason = %reason,
                       "Streaming authentication failed again after a re-login");
            }
            warn!(event = "salesforce.streaming.auth", reason = %reason,
                  "Streaming session rejected; re-logging in");
            if let Err(e) = self.sf.tokens().relogin(session.generation).await {
                self.sf
                    .stats_cell()
                    .error(&format!("streaming: re-login failed: {e}"));
            }
        }
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
        let reply = tokio::select! {
            r = post(&self.http, &url, &token, body, self.request_timeout) => r,
            _ = self.stop.cancelled() => return Err(End::Stop),
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
                self.advised.apply(hs.advice.as_ref());
                let replay_supported = hs
                    .ext
                    .as_ref()
                    .and_then(|e| e.get("replay"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                debug!(
                    event = "salesforce.streaming.handshake",
                    replay = replay_supported,
                    "Bayeux handshake done"
                );
                if let Some(reason) =
                    handshake_resync(self.ever_subscribed, replay_supported, self.replay)
                {
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

    /// The one (re)subscribe: after `delay` (and `ensure_push_topic` first if asked), subscribe
    /// with the last seen replay id.
    fn subscribe(&mut self, conn: &Conn, delay: Duration, ensure_topic: bool) -> PendingSubscribe {
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
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if let Some(sf) = sf {
                match sf.ensure_push_topic().await {
                    Ok(outcome) => info!(
                        event = "salesforce.pushtopic.ensured",
                        ?outcome,
                        "PushTopic checked before resubscribing"
                    ),
                    Err(e) => {
                        return (
                            replay,
                            Err(Fail::Transport(format!("ensure_push_topic: {e}"))),
                        );
                    }
                }
            }
            (
                replay,
                post(&conn.http, &conn.url, &conn.token, body, timeout).await,
            )
        })
    }

    fn connect(&mut self, conn: &Conn, delay: Duration) -> BoxFut<Reply> {
        let body = json!([{
            "channel": "/meta/connect",
            "clientId": conn.client_id,
            "connectionType": "long-polling",
            "id": self.id(),
        }]);
        let conn = conn.clone();
        let limit = Duration::from_millis(self.advised.hold_ms + self.cfg.watchdog_margin_ms);
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

    /// Subscribing ∥ the connect loop, until something ends the session.
    async fn run_session(&mut self, conn: &Conn) -> End {
        let mut sub = Some(self.subscribe(conn, Duration::ZERO, false));
        let mut ensured = false;
        let mut connect = self.connect(conn, Duration::ZERO);
        loop {
            if self.stopped() {
                return End::Stop;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return End::Stop,
                (asked, reply) = async {
                    match sub.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    sub = None;
                    match self.on_subscribe(asked, reply, &mut ensured) {
                        AfterSubscribe::Subscribed => {}
                        AfterSubscribe::Again { delay, ensure_topic } => {
                            sub = Some(self.subscribe(conn, delay, ensure_topic));
                        }
                        AfterSubscribe::End(end) => return end,
                    }
                }
                reply = &mut connect => match self.on_connect(reply) {
                    Ok(delay) => connect = self.connect(conn, delay),
                    Err(end) => return end,
                },
            }
        }
    }

    /// A subscribe answer (it asked for events after `asked`).
    fn on_subscribe(&mut self, asked: i64, reply: Reply, ensured: &mut bool) -> AfterSubscribe {
        let msgs = match reply {
            Ok(m) => m,
            Err(Fail::HttpAuth(r)) => return AfterSubscribe::End(End::Auth(r)),
            Err(f) => {
                warn!(event = "salesforce.streaming.subscribe_failed", reason = %f.reason(),
                      "Subscribe request failed; retrying");
                return AfterSubscribe::Again {
                    delay: self.backoff(),
                    ensure_topic: false,
                };
            }
        };
        self.deliver(&msgs);
        let Some(reply) = msgs.iter().find(|m| m.channel == "/meta/subscribe") else {
            return AfterSubscribe::Again {
                delay: self.backoff(),
                ensure_topic: false,
            };
        };
        if reply.successful == Some(true) {
            self.step(Step::Subscribed { replay_from: asked });
            return AfterSubscribe::Subscribed;
        }
        match classify(reply) {
            Refusal::ReplayInvalid(r) if asked != -1 => {
                warn!(event = "salesforce.streaming.replay_invalid", replay = asked,
                      reason = %r, "Replay id rejected; resubscribing with -1");
                self.replay = -1;
                self.emit(StreamEvent::ResyncNeeded { reason: r });
                AfterSubscribe::Again {
                    delay: Duration::ZERO,
                    ensure_topic: false,
                }
            }
            Refusal::ChannelMissing(r) => {
                warn!(event = "salesforce.streaming.channel_missing", channel = %self.channel,
                      reason = %r, "PushTopic channel missing; ensuring the PushTopic");
                self.emit(StreamEvent::ResyncNeeded { reason: r });
                let delay = if *ensured {
                    self.backoff()
                } else {
                    Duration::ZERO
                };
                *ensured = true;
                AfterSubscribe::Again {
                    delay,
                    ensure_topic: true,
                }
            }
            Refusal::Rehandshake(r) => AfterSubscribe::End(End::Rehandshake(r)),
            Refusal::Auth(r) => AfterSubscribe::End(End::Auth(r)),
            Refusal::Refused(r) | Refusal::ReplayInvalid(r) => AfterSubscribe::End(End::Refused(r)),
            Refusal::Retry(r) => {
                warn!(event = "salesforce.streaming.subscribe_failed", reason = %r,
                      "Subscribe refused; retrying");
                AfterSubscribe::Again {
                    delay: self.backoff(),
                    ensure_topic: false,
                }
            }
        }
    }

    /// A connect answer: the delay before the next connect, or how the session ends.
    fn on_connect(&mut self, reply: Reply) -> Result<Duration, End> {
        let msgs = match reply {
            Ok(m) => m,
            Err(Fail::Watchdog) => return Err(End::Watchdog),
            Err(Fail::HttpAuth(r)) => return Err(End::Auth(r)),
            Err(Fail::Transport(r)) => {
                self.step(Step::ConnectLost { reason: r.clone() });
                let d = self.backoff();
                warn!(event = "salesforce.streaming.transport", reason = %r,
                      delay_ms = d.as_millis() as u64, "Connect failed; retrying");
                return Ok(d);
            }
        };
        self.deliver(&msgs);
        let Some(m) = msgs.iter().find(|m| m.channel == "/meta/connect") else {
            return Ok(self.advised.interval());
        };
        if m.successful == Some(true) {
            self.advised.apply(m.advice.as_ref());
            self.step(Step::ConnectOk);
            return Ok(self.advised.interval());
        }
        match classify(m) {
            Refusal::Rehandshake(r) => Err(End::Rehandshake(r)),
            Refusal::Auth(r) => Err(End::Auth(r)),
            Refusal::Refused(r) => Err(End::Refused(r)),
            Refusal::Retry(r) | Refusal::ReplayInvalid(r) | Refusal::ChannelMissing(r) => {
                self.advised.apply(m.advice.as_ref());
                let d = self.backoff().max(self.advised.interval());
                warn!(event = "salesforce.streaming.connect_failed", reason = %r,
                      delay_ms = d.as_millis() as u64, "Connect refused; retrying");
                Ok(d)
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
            let event_type = data
                .pointer("/event/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            debug!(
                event = "salesforce.streaming.push",
                row_id, replay_id, event_type, "PushTopic event"
            );
            self.emit(StreamEvent::Push {
                row_id: RowId::new(row_id),
                replay_id: replay_id.unwrap_or(-1),
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

    const MS: Duration = Duration::from_millis(1);

    fn ended(delay: Duration) -> Step {
        Step::Ended {
            reason: "gone".into(),
            delay,
        }
    }

    fn lost() -> Step {
        Step::ConnectLost {
            reason: "reset".into(),
        }
    }

    #[test]
    fn phases_follow_the_diagram() {
        let sub = Step::Subscribed { replay_from: -1 };
        assert_eq!(
            next(Phase::Handshaking, &Step::Handshaken),
            Phase::Subscribing
        );
        assert_eq!(next(Phase::Subscribing, &sub), Phase::Connected);
        assert_eq!(next(Phase::Connected, &lost()), Phase::Reconnecting);
        assert_eq!(
            next(Phase::Reconnecting, &Step::ConnectOk),
            Phase::Connected
        );
        assert_eq!(
            next(Phase::Backoff { delay: MS }, &Step::Waited),
            Phase::Handshaking
        );
        // The connect loop alongside a pending subscribe does not make the stream up or down.
        assert_eq!(
            next(Phase::Subscribing, &Step::ConnectOk),
            Phase::Subscribing
        );
        assert_eq!(next(Phase::Subscribing, &lost()), Phase::Subscribing);
        assert_eq!(next(Phase::Connected, &Step::ConnectOk), Phase::Connected);
        assert_eq!(next(Phase::Reconnecting, &lost()), Phase::Reconnecting);
        for p in [
            Phase::Handshaking,
            Phase::Subscribing,
            Phase::Connected,
            Phase::Reconnecting,
            Phase::Backoff { delay: MS },
        ] {
            assert_eq!(
                next(p, &ended(7 * MS)),
                Phase::Backoff { delay: 7 * MS },
                "{p:?}"
            );
            assert_eq!(next(p, &Step::Stop), Phase::Stopped, "{p:?}");
        }
        for s in [
            Step::Handshaken,
            sub,
            Step::ConnectOk,
            lost(),
            ended(MS),
            Step::Waited,
        ] {
            assert_eq!(
                next(Phase::Stopped, &s),
                Phase::Stopped,
                "Stopped is final: {s:?}"
            );
        }
    }

    fn cfg() -> StreamingConfig {
        StreamingConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            refused_delay_ms: 30_000,
            ..StreamingConfig::default()
        }
    }

    #[test]
    fn first_rehandshake_or_relogin_after_working_is_not_backed_off() {
        let cfg = cfg();
        let mut retry = Retry::new(cfg.backoff());
        let interval = 250 * MS;
        let rehandshake = End::Rehandshake("403::Unknown client".into());
        let auth = End::Auth("401::Authentication invalid".into());
        // Sample 1.0: the full, unjittered delay.
        assert_eq!(
            end_delay(&rehandshake, &mut retry, &cfg, interval, 1.0),
            interval
        );
        assert_eq!(
            end_delay(&rehandshake, &mut retry, &cfg, interval, 1.0),
            200 * MS
        );
        assert_eq!(end_delay(&auth, &mut retry, &cfg, interval, 1.0), 400 * MS);
        assert_eq!(retry.failures(), 3);
        retry.reset();
        assert_eq!(
            end_delay(&auth, &mut retry, &cfg, interval, 1.0),
            Duration::ZERO
        );
        assert_eq!(
            end_delay(&auth, &mut retry, &cfg, interval, 0.0),
            100 * MS,
            "jitter: 50 %"
        );
    }

    #[test]
    fn other_ends_back_off_from_the_first() {
        let cfg = cfg();
        let mut retry = Retry::new(cfg.backoff());
        let watchdog = end_delay(&End::Watchdog, &mut retry, &cfg, MS, 1.0);
        assert_eq!(watchdog, 100 * MS);
        let transport = End::Transport("reset".into());
        assert_eq!(end_delay(&transport, &mut retry, &cfg, MS, 1.0), 200 * MS);
        let refused = End::Refused("403::Handshake denied".into());
        assert_eq!(
            end_delay(&refused, &mut retry, &cfg, MS, 1.0),
            30_000 * MS,
            "at least refused_delay_ms"
        );
        let mut big = Retry::new(StreamingConfig::default().backoff());
        for _ in 0..10 {
            big.failed(1.0);
        }
        let d = end_delay(&refused, &mut big, &StreamingConfig::default(), MS, 1.0);
        assert_eq!(d, 60_000 * MS, "capped back-off above refused_delay_ms");
    }

    #[test]
    fn handshake_asks_for_a_resync_only_when_the_gap_is_not_replayed() {
        // First handshake: only a requested replay the server cannot do.
        assert_eq!(handshake_resync(false, true, 5), None);
        assert_eq!(handshake_resync(false, true, -1), None);
        assert_eq!(handshake_resync(false, false, -1), None);
        assert!(handshake_resync(false, false, -2).is_some());
        // After a subscription: unless replay is supported and a position is known.
        assert_eq!(handshake_resync(true, true, 5), None);
        assert!(handshake_resync(true, true, -1).is_some());
        assert!(handshake_resync(true, false, 5).is_some());
    }

    #[test]
    fn advice_keeps_what_is_absent_or_negative() {
        let mut a = Advised {
            hold_ms: 110_000,
            interval_ms: 0,
        };
        a.apply(None);
        a.apply(Some(&Advice {
            timeout: Some(-1),
            interval: Some(500),
            ..Advice::default()
        }));
        assert_eq!((a.hold_ms, a.interval()), (110_000, 500 * MS));
        a.apply(Some(&Advice {
            timeout: Some(20_000),
            ..Advice::default()
        }));
        assert_eq!((a.hold_ms, a.interval_ms), (20_000, 500));
    }

    #[test]
    fn a_full_channel_drops_then_owes_a_resync() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut out = Outlet {
            tx,
            state: OutletState::Open,
        };
        let ev = |n: &str| StreamEvent::Disconnected { reason: n.into() };
        assert!(out.send(ev("a")));
        assert!(out.send(ev("b")));
        assert!(out.send(ev("c")), "dropped, not closed");
        assert_eq!(out.state, OutletState::Owing);
        assert_eq!(rx.try_recv().ok(), Some(ev("a")));
        assert_eq!(rx.try_recv().ok(), Some(ev("b")));
        assert!(out.send(ev("d")));
        assert!(matches!(
            rx.try_recv(),
            Ok(StreamEvent::ResyncNeeded { .. })
        ));
        assert_eq!(rx.try_recv().ok(), Some(ev("d")));
        assert_eq!(out.state, OutletState::Open);
        drop(rx);
        assert!(!out.send(ev("e")));
        assert_eq!(out.state, OutletState::Closed);
    }

    /// A streamer over a client that never connects (nothing here does I/O).
    fn streamer(replay_from: i64) -> (Streamer, mpsc::Receiver<StreamEvent>) {
        let auth = crate::Auth::Soap {
            username: "u@example.com".into(),
            password: Secret::new("p"),
        };
        let cfg = crate::LoginConfig::new("http://127.0.0.1:9", auth);
        let sf = Salesforce::new(cfg, crate::Names::default()).expect("config");
        let (tx, rx) = mpsc::channel(16);
        (
            Streamer::new(sf, replay_from, tx, CancellationToken::new()),
            rx,
        )
    }

    fn drain(rx: &mut mpsc::Receiver<StreamEvent>) -> Vec<StreamEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn the_router_hears_up_and_down_only_at_connected() {
        let (mut s, mut rx) = streamer(-1);
        s.step(Step::Handshaken);
        s.step(lost());
        assert_eq!(drain(&mut rx), vec![], "not up yet: nothing to take back");
        s.step(Step::Subscribed { replay_from: 4 });
        assert_eq!(
            drain(&mut rx),
            vec![StreamEvent::Subscribed { replay_from: 4 }]
        );
        assert!(s.ever_subscribed);
        s.replay = 9;
        s.step(lost());
        assert_eq!(
            drain(&mut rx),
            vec![StreamEvent::Disconnected {
                reason: "reset".into()
            }]
        );
        s.step(lost());
        assert_eq!(drain(&mut rx), vec![], "already down");
        s.step(Step::ConnectOk);
        assert_eq!(
            drain(&mut rx),
            vec![StreamEvent::Subscribed { replay_from: 9 }],
            "back on the same session: from the last seen replay id"
        );
        s.step(ended(MS));
        assert_eq!(
            drain(&mut rx),
            vec![StreamEvent::Disconnected {
                reason: "gone".into()
            }]
        );
        s.step(Step::Waited);
        s.step(ended(MS));
        assert_eq!(
            drain(&mut rx),
            vec![],
            "a failed handshake while down says nothing"
        );
        assert_eq!(s.phase, Phase::Backoff { delay: MS });
    }

    #[test]
    fn back_off_resets_only_after_a_connect_while_connected() {
        let (mut s, _rx) = streamer(-1);
        s.step(Step::Handshaken);
        s.backoff();
        s.step(Step::ConnectOk);
        assert_eq!(
            s.retry.failures(),
            1,
            "subscribing: the stream has not worked yet"
        );
        s.step(Step::Subscribed { replay_from: -1 });
        assert_eq!(s.retry.failures(), 1, "a subscribe alone is not proof");
        s.step(lost());
        s.backoff();
        s.step(Step::ConnectOk);
        assert_eq!(s.phase, Phase::Connected);
        assert_eq!(
            s.retry.failures(),
            2,
            "the connect that brings it back does not reset"
        );
        s.step(Step::ConnectOk);
        assert_eq!(s.retry.failures(), 0);
    }

    #[test]
    fn the_router_gone_stops_the_stream() {
        let (mut s, rx) = streamer(-1);
        s.step(Step::Handshaken);
        drop(rx);
        s.step(Step::Subscribed { replay_from: -1 });
        assert_eq!(s.phase, Phase::Stopped);
        assert!(s.stopped());
        s.step(Step::ConnectOk);
        assert_eq!(s.phase, Phase::Stopped);
    }

    #[test]
    fn shutdown_token_means_stopped() {
        let (s, _rx) = streamer(-1);
        assert!(!s.stopped());
        s.stop.cancel();
        assert!(s.stopped());
    }

    #[test]
    fn delivers_row_ids_and_remembers_the_replay_id() {
        let (mut s, mut rx) = streamer(-1);
        let event = |channel: &str, data: Value| Message {
            channel: channel.into(),
            data: Some(data),
            ..Message::default()
        };
        let msgs = [
            event(
                "/topic/ObjectRoutingQueue",
                json!({"event": {"replayId": 7, "type": "created"},
                       "sobject": {"Id": "a01", "Status__c": "New"}}),
            ),
            event(
                "/topic/Other",
                json!({"event": {"replayId": 99}, "sobject": {"Id": "x"}}),
            ),
            event(
                "/topic/ObjectRoutingQueue",
                json!({"event": {"replayId": 8}}),
            ),
            event(
                "/topic/ObjectRoutingQueue",
                json!({"sobject": {"Id": "a02"}}),
            ),
            Message {
                channel: "/meta/connect".into(),
                successful: Some(true),
                ..Message::default()
            },
        ];
        s.deliver(&msgs);
        assert_eq!(
            drain(&mut rx),
            vec![
                StreamEvent::Push {
                    row_id: RowId::new("a01"),
                    replay_id: 7
                },
                StreamEvent::Push {
                    row_id: RowId::new("a02"),
                    replay_id: -1
                },
            ]
        );
        assert_eq!(
            s.replay, 8,
            "an event without sobject.Id still moves the position"
        );
    }
}
