//! A Bayeux (CometD) long-polling server that behaves like Salesforce's Streaming API.
//!
//! API CONTRACT (used by `sors-fake-salesforce`; keep these signatures stable):
//! the implementation behind them belongs to this crate alone.
//!
//! See `README.md` for the behaviour, the error strings and the replay-id scheme.

mod bayeux;
mod http;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::state::State;

/// Timing and size settings of the streaming endpoint.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a `/meta/connect` is held when no event arrives (Salesforce: 110 s).
    pub connect_hold: Duration,
    /// A client that sends no `/meta/connect` for this long after a reply is forgotten (40 s).
    pub reconnect_expiry: Duration,
    /// How long published events stay replayable (24 h).
    pub retention: Duration,
    /// Larger request bodies get `413 Maximum Request Size Exceeded` (32,768 bytes).
    pub max_body_bytes: usize,
    /// Lowest API version accepted in `/cometd/{version}` (37.0).
    pub min_api_version: f64,
    /// Highest API version accepted.
    pub max_api_version: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_hold: Duration::from_secs(110),
            reconnect_expiry: Duration::from_secs(40),
            retention: Duration::from_secs(24 * 3600),
            max_body_bytes: 32_768,
            min_api_version: 37.0,
            max_api_version: 66.0,
        }
    }
}

/// Is this access token (session id) valid right now? Called on every request.
pub type Authenticator = Arc<dyn Fn(&str) -> bool + Send + Sync>;
/// Does this channel exist (for `/topic/X`: an active PushTopic named X)? Called on subscribe.
pub type ChannelCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// `data.event.type` of a PushTopic event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
    Undeleted,
}

impl EventType {
    /// The wire name: `created`, `updated`, `deleted` or `undeleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "created",
            EventType::Updated => "updated",
            EventType::Deleted => "deleted",
            EventType::Undeleted => "undeleted",
        }
    }
}

/// The advice sent to clients that the server forgets (`403::Unknown client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForgetAdvice {
    Handshake,
    None,
}

/// Counters read by tests and the control API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Events accepted into the replay log.
    pub published: u64,
    /// Event messages sent to subscribers (one per subscriber per event).
    pub delivered: u64,
    /// Events swallowed while "drop pushes" was on.
    pub dropped: u64,
    pub handshakes: u64,
    pub active_clients: u64,
}

/// What every clone of a [`Streaming`] and every request handler shares.
pub(crate) struct Shared {
    pub config: Config,
    pub auth: Authenticator,
    pub channels: ChannelCheck,
    state: Mutex<State>,
}

impl Shared {
    /// Locks the state; a panic elsewhere while locked does not make the fake unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The streaming endpoint: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct Streaming {
    inner: Arc<Shared>,
}

impl Streaming {
    pub fn new(config: Config, auth: Authenticator, channels: ChannelCheck) -> Self {
        Streaming {
            inner: Arc::new(Shared {
                config,
                auth,
                channels,
                state: Mutex::new(State::new()),
            }),
        }
    }

    /// Routes `POST /cometd/{version}` and `POST /cometd/{version}/{*message_type}`.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// Publishes an event on `channel` (e.g. `/topic/ObjectRoutingQueue`) with the given
    /// `sobject` body; returns its replay id, or `None` when pushes are being dropped.
    pub fn publish(
        &self,
        channel: &str,
        event_type: EventType,
        sobject: serde_json::Value,
    ) -> Option<i64> {
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        if state.drop_pushes {
            state.counters.dropped += 1;
            tracing::info!(channel, "push dropped");
            return None;
        }
        let now = Instant::now();
        state.log.purge(now, self.inner.config.retention);
        state.expire_clients(now);
        let (replay_id, data) = state.log.append(channel, event_type, sobject);
        state.counters.published += 1;
        let subscribers = state.deliver(channel, &data);
        tracing::debug!(channel, replay_id, subscribers, "event published");
        Some(replay_id)
    }

    /// Forgets every client: their next request gets `403::Unknown client` with this advice.
    pub fn forget_clients(&self, advice: ForgetAdvice) {
        tracing::info!(?advice, "forgetting every client");
        self.inner.lock().forget_all(advice);
    }

    /// Drops (does not store, does not deliver) every published event while `on`.
    pub fn set_drop_pushes(&self, on: bool) {
        self.inner.lock().drop_pushes = on;
    }

    /// Sandbox refresh: forgets every client and every retained event, and starts a new replay
    /// id space, so old replay ids are invalid.
    pub fn reset(&self) {
        tracing::info!("reset: new replay id space, every client forgotten");
        let mut state = self.inner.lock();
        state.forget_all(ForgetAdvice::Handshake);
        state.log.reset();
    }

    /// Clears the retained events of one channel (its PushTopic was deleted).
    pub fn clear_channel(&self, channel: &str) {
        self.inner.lock().log.clear_channel(channel);
    }

    pub fn counters(&self) -> Counters {
        let mut state = self.inner.lock();
        state.expire_clients(Instant::now());
        Counters {
            active_clients: state.client_count() as u64,
            ..state.counters.clone()
        }
    }
}
