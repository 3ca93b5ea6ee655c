//! A Bayeux (CometD) long-polling server that behaves like Salesforce's Streaming API.
//!
//! API CONTRACT (used by `sors-fake-salesforce`; keep these signatures stable):
//! the implementation behind them belongs to this crate alone.

use std::sync::Arc;
use std::time::Duration;

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

/// The streaming endpoint: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct Streaming {
    _inner: Arc<()>,
}

impl Streaming {
    pub fn new(_config: Config, _auth: Authenticator, _channels: ChannelCheck) -> Self {
        Streaming {
            _inner: Arc::new(()),
        }
    }

    /// Routes `POST /cometd/{version}` and `POST /cometd/{version}/{*message_type}`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Publishes an event on `channel` (e.g. `/topic/ObjectRoutingQueue`) with the given
    /// `sobject` body; returns its replay id, or `None` when pushes are being dropped.
    pub fn publish(
        &self,
        _channel: &str,
        _event_type: EventType,
        _sobject: serde_json::Value,
    ) -> Option<i64> {
        None
    }

    /// Forgets every client: their next request gets `403::Unknown client` with this advice.
    pub fn forget_clients(&self, _advice: ForgetAdvice) {}

    /// Drops (does not store, does not deliver) every published event while `on`.
    pub fn set_drop_pushes(&self, _on: bool) {}

    /// Sandbox refresh: forgets every client and every retained event, and starts a new replay
    /// id space, so old replay ids are invalid.
    pub fn reset(&self) {}

    /// Clears the retained events of one channel (its PushTopic was deleted).
    pub fn clear_channel(&self, _channel: &str) {}

    pub fn counters(&self) -> Counters {
        Counters::default()
    }
}
