//! The shared state of the streaming endpoint: clients, the replay log and the counters.
//!
//! Everything here is synchronous and lives under one `std::sync::Mutex`; the lock is never held
//! across an `.await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{Counters, EventType, ForgetAdvice};

/// A `/meta/connect` that is currently held open for a client.
pub(crate) struct Held {
    /// Identifies this particular held request (a later connect replaces it).
    pub token: u64,
    /// Wakes the held request: an event was queued, or it was superseded, or the client is gone.
    pub wake: Arc<Notify>,
}

/// One handshaken Bayeux client.
#[derive(Default)]
pub(crate) struct Client {
    /// Subscribed channels (without any `?filter` query string).
    pub subscriptions: HashSet<String>,
    /// Event messages (`channel` + `data`) waiting for the next connect reply.
    pub queue: Vec<QueuedEvent>,
    /// Has the first `/meta/connect` after the handshake been answered?
    pub connected: bool,
    pub held: Option<Held>,
    /// When the client is forgotten unless it sends a `/meta/connect` (None while one is held).
    pub expires_at: Option<Instant>,
}

impl Client {
    /// Wakes the held connect, if any, so it re-examines the client.
    pub fn wake(&self) {
        if let Some(held) = &self.held {
            held.wake.notify_one();
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct QueuedEvent {
    pub channel: String,
    pub data: Value,
}

/// Where a subscription starts in the replay log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplayFrom {
    /// `-1`: only events published from now on.
    New,
    /// `-2`: every retained event.
    All,
    /// `N`: the retained events after replay id N.
    After(i64),
}

impl ReplayFrom {
    pub fn from_id(id: i64) -> ReplayFrom {
        match id {
            -1 => ReplayFrom::New,
            -2 => ReplayFrom::All,
            n => ReplayFrom::After(n),
        }
    }
}

/// The replay id given is not in the retention window of the channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidReplayId;

struct StoredEvent {
    replay_id: i64,
    stored_at: Instant,
    data: Value,
}

/// The retained events of every channel.
///
/// Replay ids come from ONE global counter shared by all channels: each new id is the previous
/// one plus a random gap of 2..=9, so ids increase but are never contiguous. The counter never
/// goes back (not even on a reset), so an id from before a reset can never become valid again.
pub(crate) struct EventLog {
    channels: HashMap<String, VecDeque<StoredEvent>>,
    last_id: i64,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            channels: HashMap::new(),
            last_id: rand::rng().random_range(100..1_000),
        }
    }

    /// Stores a new event; returns its replay id and the message `data` object.
    pub fn append(&mut self, channel: &str, event_type: EventType, sobject: Value) -> (i64, Value) {
        self.last_id += rand::rng().random_range(2..=9);
        let replay_id = self.last_id;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let data = json!({
            "event": {
                "createdDate": created,
                "replayId": replay_id,
                "type": event_type.as_str(),
            },
            "sobject": sobject,
        });
        self.channels
            .entry(channel.to_owned())
            .or_default()
            .push_back(StoredEvent {
                replay_id,
                stored_at: Instant::now(),
                data: data.clone(),
            });
        (replay_id, data)
    }

    /// Drops the events stored before `now - retention`.
    pub fn purge(&mut self, now: Instant, retention: Duration) {
        for events in self.channels.values_mut() {
            while events
                .front()
                .is_some_and(|e| now.saturating_duration_since(e.stored_at) > retention)
            {
                events.pop_front();
            }
        }
        self.channels.retain(|_, events| !events.is_empty());
    }

    /// The `data` of the retained events a subscription starting at `from` must receive.
    ///
    /// `N` is valid only when it is the replay id of an event of this channel that is still
    /// retained (so: issued in this replay space, not purged, not newer than the latest).
    pub fn replay(&self, channel: &str, from: ReplayFrom) -> Result<Vec<Value>, InvalidReplayId> {
        let events = self.channels.get(channel);
        let all = || events.into_iter().flatten();
        match from {
            ReplayFrom::New => Ok(Vec::new()),
            ReplayFrom::All => Ok(all().map(|e| e.data.clone()).collect()),
            ReplayFrom::After(n) => {
                if !all().any(|e| e.replay_id == n) {
                    return Err(InvalidReplayId);
                }
                Ok(all()
                    .filter(|e| e.replay_id > n)
                    .map(|e| e.data.clone())
                    .collect())
            }
        }
    }

    pub fn clear_channel(&mut self, channel: &str) {
        self.channels.remove(channel);
    }

    /// Forgets every event and starts a new replay id space (far above the old one).
    pub fn reset(&mut self) {
        self.channels.clear();
        self.last_id += rand::rng().random_range(1_000_000..2_000_000);
    }
}

/// Everything that changes while the endpoint runs.
pub(crate) struct State {
    pub clients: HashMap<String, Client>,
    /// Clients removed by `forget_clients`/`reset`, with the advice their next request gets.
    pub forgotten: HashMap<String, ForgetAdvice>,
    pub log: EventLog,
    pub drop_pushes: bool,
    /// `active_clients` is computed on read; the other fields are kept here.
    pub counters: Counters,
    /// The token of the most recent held connect.
    pub next_token: u64,
}

impl State {
    pub fn new() -> State {
        State {
            clients: HashMap::new(),
            forgotten: HashMap::new(),
            log: EventLog::new(),
            drop_pushes: false,
            counters: Counters::default(),
            next_token: 0,
        }
    }

    /// Forgets the clients whose reconnect deadline has passed.
    pub fn expire_clients(&mut self, now: Instant) {
        self.clients.retain(|id, client| {
            let alive = client.expires_at.is_none_or(|at| now < at);
            if !alive {
                tracing::info!(client_id = %id, "client expired: no /meta/connect in time");
            }
            alive
        });
    }

    /// Removes every client; each one's next request gets `403::Unknown client` with `advice`.
    pub fn forget_all(&mut self, advice: ForgetAdvice) {
        for (id, client) in self.clients.drain() {
            client.wake();
            self.forgotten.insert(id, advice);
        }
    }

    /// The advice for a client id this endpoint does not know (expired, forgotten or invented).
    pub fn unknown_advice(&self, client_id: Option<&str>) -> ForgetAdvice {
        client_id
            .and_then(|id| self.forgotten.get(id))
            .copied()
            .unwrap_or(ForgetAdvice::Handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(data: &[Value]) -> Vec<i64> {
        data.iter()
            .filter_map(|d| d["event"]["replayId"].as_i64())
            .collect()
    }

    #[test]
    fn replay_ids_increase_with_gaps_and_are_shared_by_channels() {
        let mut log = EventLog::new();
        let mut last = 0;
        for i in 0..50 {
            let channel = if i % 2 == 0 { "/topic/A" } else { "/topic/B" };
            let (id, data) = log.append(channel, EventType::Created, json!({"Id": i}));
            assert!(id >= last + 2, "id {id} must leave a gap after {last}");
            assert_eq!(data["event"]["replayId"], json!(id));
            assert_eq!(data["event"]["type"], json!("created"));
            assert_eq!(data["sobject"]["Id"], json!(i));
            last = id;
        }
    }

    #[test]
    fn replay_new_all_and_after() {
        let mut log = EventLog::new();
        let a1 = log.append("/topic/A", EventType::Created, json!({})).0;
        let b1 = log.append("/topic/B", EventType::Created, json!({})).0;
        let a2 = log.append("/topic/A", EventType::Updated, json!({})).0;
        let a3 = log.append("/topic/A", EventType::Deleted, json!({})).0;

        assert_eq!(log.replay("/topic/A", ReplayFrom::New), Ok(vec![]));
        assert_eq!(
            ids(&log.replay("/topic/A", ReplayFrom::All).unwrap_or_default()),
            vec![a1, a2, a3]
        );
        assert_eq!(
            ids(&log
                .replay("/topic/A", ReplayFrom::After(a1))
                .unwrap_or_default()),
            vec![a2, a3]
        );
        assert_eq!(log.replay("/topic/A", ReplayFrom::After(a3)), Ok(vec![]));
        // An id of another channel, an id never issued, a newer one: all invalid.
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(b1)),
            Err(InvalidReplayId)
        );
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(a1 + 1)),
            Err(InvalidReplayId)
        );
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(a3 + 100)),
            Err(InvalidReplayId)
        );
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(-3)),
            Err(InvalidReplayId)
        );
        // A channel without events: -1/-2 fine, any N invalid.
        assert_eq!(log.replay("/topic/C", ReplayFrom::All), Ok(vec![]));
        assert_eq!(
            log.replay("/topic/C", ReplayFrom::After(a1)),
            Err(InvalidReplayId)
        );
    }

    #[test]
    fn purge_drops_old_events_and_their_ids() {
        let mut log = EventLog::new();
        let old = log.append("/topic/A", EventType::Created, json!({})).0;
        let later = Instant::now() + Duration::from_secs(10);
        log.purge(later, Duration::from_secs(5));
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(old)),
            Err(InvalidReplayId)
        );
        assert_eq!(log.replay("/topic/A", ReplayFrom::All), Ok(vec![]));

        let kept = log.append("/topic/A", EventType::Created, json!({})).0;
        log.purge(Instant::now(), Duration::from_secs(5));
        assert_eq!(log.replay("/topic/A", ReplayFrom::After(kept)), Ok(vec![]));
    }

    #[test]
    fn reset_and_clear_invalidate_old_ids() {
        let mut log = EventLog::new();
        let a = log.append("/topic/A", EventType::Created, json!({})).0;
        let b = log.append("/topic/B", EventType::Created, json!({})).0;
        log.clear_channel("/topic/A");
        assert_eq!(
            log.replay("/topic/A", ReplayFrom::After(a)),
            Err(InvalidReplayId)
        );
        assert_eq!(log.replay("/topic/B", ReplayFrom::After(b)), Ok(vec![]));

        log.reset();
        assert_eq!(
            log.replay("/topic/B", ReplayFrom::After(b)),
            Err(InvalidReplayId)
        );
        let fresh = log.append("/topic/B", EventType::Created, json!({})).0;
        assert!(fresh > b + 1_000_000, "a reset starts a new id space");
    }

    #[test]
    fn expiry_and_forget_remember_the_advice() {
        let mut state = State::new();
        let now = Instant::now();
        state.clients.insert(
            "late".into(),
            Client {
                expires_at: Some(now),
                ..Client::default()
            },
        );
        state.clients.insert(
            "held".into(),
            Client {
                expires_at: None,
                ..Client::default()
            },
        );
        state.expire_clients(now);
        assert!(!state.clients.contains_key("late"));
        assert!(state.clients.contains_key("held"));
        assert_eq!(state.unknown_advice(Some("late")), ForgetAdvice::Handshake);

        state.forget_all(ForgetAdvice::None);
        assert!(state.clients.is_empty());
        assert_eq!(state.unknown_advice(Some("held")), ForgetAdvice::None);
        assert_eq!(state.unknown_advice(None), ForgetAdvice::Handshake);
    }
}
