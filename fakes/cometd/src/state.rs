//! The shared state of the streaming endpoint: clients, the replay log and the counters.
//!
//! Everything here is synchronous and lives under one `std::sync::Mutex`; the lock is never held
//! across an `.await`.
//!
//! Nothing here walks every client or every retained event: clients are indexed by the
//! channels they subscribe to (a publish touches only the subscribers) and by the instant they
//! expire (expiry looks only at the clients that are due), and a replay id is found by binary
//! search in its channel's log. A queued event is shared (`Arc`) by every subscriber's queue and
//! the log, so a publish to many subscribers copies no event body.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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

/// One handshaken Bayeux client. Its subscriptions and expiry are indexed by [`State`], so they
/// change only through it.
#[derive(Default)]
pub(crate) struct Client {
    /// Subscribed channels (without any `?filter` query string).
    subscriptions: HashSet<String>,
    /// Event messages (`channel` + `data`) waiting for the next connect reply.
    pub queue: Vec<QueuedEvent>,
    /// Has the first `/meta/connect` after the handshake been answered?
    pub connected: bool,
    pub held: Option<Held>,
    /// When the client is forgotten unless it sends a `/meta/connect` (None while one is held).
    expires_at: Option<Instant>,
}

impl Client {
    /// A new client that expires at `expires_at` unless it connects.
    pub fn new(expires_at: Option<Instant>) -> Client {
        Client {
            expires_at,
            ..Client::default()
        }
    }

    /// Wakes the held connect, if any, so it re-examines the client.
    pub fn wake(&self) {
        if let Some(held) = &self.held {
            held.wake.notify_one();
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct QueuedEvent {
    pub channel: Arc<str>,
    pub data: Arc<Value>,
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
    data: Arc<Value>,
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
    pub fn append(
        &mut self,
        channel: &str,
        event_type: EventType,
        sobject: Value,
    ) -> (i64, Arc<Value>) {
        self.last_id += rand::rng().random_range(2..=9);
        let replay_id = self.last_id;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let data = Arc::new(json!({
            "event": {
                "createdDate": created,
                "replayId": replay_id,
                "type": event_type.as_str(),
            },
            "sobject": sobject,
        }));
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
    /// retained (so: issued in this replay space, not purged, not newer than the latest). A
    /// channel's ids increase, so N is found by binary search.
    pub fn replay(
        &self,
        channel: &str,
        from: ReplayFrom,
    ) -> Result<Vec<Arc<Value>>, InvalidReplayId> {
        let events = self.channels.get(channel);
        match from {
            ReplayFrom::New => Ok(Vec::new()),
            ReplayFrom::All => Ok(events
                .into_iter()
                .flatten()
                .map(|e| e.data.clone())
                .collect()),
            ReplayFrom::After(n) => {
                let events = events.ok_or(InvalidReplayId)?;
                let at = events
                    .binary_search_by_key(&n, |e| e.replay_id)
                    .map_err(|_| InvalidReplayId)?;
                Ok(events.range(at + 1..).map(|e| e.data.clone()).collect())
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
    clients: HashMap<String, Client>,
    /// Channel → the clients subscribed to it.
    subscribers: HashMap<String, HashSet<String>>,
    /// (expiry, client) of every client with a deadline, soonest first.
    expiries: BTreeSet<(Instant, String)>,
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
            subscribers: HashMap::new(),
            expiries: BTreeSet::new(),
            forgotten: HashMap::new(),
            log: EventLog::new(),
            drop_pushes: false,
            counters: Counters::default(),
            next_token: 0,
        }
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    pub fn client_mut(&mut self, id: &str) -> Option<&mut Client> {
        self.clients.get_mut(id)
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn add_client(&mut self, id: String, client: Client) {
        self.remove_client(&id);
        if let Some(at) = client.expires_at {
            self.expiries.insert((at, id.clone()));
        }
        for channel in &client.subscriptions {
            self.subscribers
                .entry(channel.clone())
                .or_default()
                .insert(id.clone());
        }
        self.clients.insert(id, client);
    }

    /// Removes a client and its index entries (the caller wakes it if needed).
    pub fn remove_client(&mut self, id: &str) -> Option<Client> {
        let client = self.clients.remove(id)?;
        if let Some(at) = client.expires_at {
            self.expiries.remove(&(at, id.to_owned()));
        }
        for channel in &client.subscriptions {
            self.unindex_subscription(id, channel);
        }
        Some(client)
    }

    fn unindex_subscription(&mut self, id: &str, channel: &str) {
        if let Some(ids) = self.subscribers.get_mut(channel) {
            ids.remove(id);
            if ids.is_empty() {
                self.subscribers.remove(channel);
            }
        }
    }

    /// Sets when a client is forgotten unless it connects (`None`: while a connect is held).
    pub fn set_expiry(&mut self, id: &str, at: Option<Instant>) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if let Some(old) = client.expires_at.take() {
            self.expiries.remove(&(old, id.to_owned()));
        }
        client.expires_at = at;
        if let Some(at) = at {
            self.expiries.insert((at, id.to_owned()));
        }
    }

    pub fn subscribe(&mut self, id: &str, channel: &str) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        client.subscriptions.insert(channel.to_owned());
        self.subscribers
            .entry(channel.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    /// Removes the subscription and the events it queued.
    pub fn unsubscribe(&mut self, id: &str, channel: &str) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        client.subscriptions.remove(channel);
        client.queue.retain(|e| &*e.channel != channel);
        self.unindex_subscription(id, channel);
    }

    /// Queues an event for every subscriber of `channel` and wakes their held connects;
    /// returns how many there were.
    pub fn deliver(&mut self, channel: &str, data: &Arc<Value>) -> usize {
        let Some(ids) = self.subscribers.get(channel) else {
            return 0;
        };
        let channel: Arc<str> = Arc::from(channel);
        let mut n = 0;
        for id in ids {
            if let Some(client) = self.clients.get_mut(id) {
                client.queue.push(QueuedEvent {
                    channel: channel.clone(),
                    data: data.clone(),
                });
                client.wake();
                n += 1;
            }
        }
        n
    }

    /// Forgets the clients whose reconnect deadline has passed.
    pub fn expire_clients(&mut self, now: Instant) {
        while let Some((at, id)) = self.expiries.first().cloned() {
            if now < at {
                break;
            }
            self.expiries.remove(&(at, id.clone()));
            if let Some(client) = self.clients.get_mut(&id) {
                client.expires_at = None;
            }
            self.remove_client(&id);
            tracing::info!(client_id = %id, "client expired: no /meta/connect in time");
        }
    }

    /// Removes every client; each one's next request gets `403::Unknown client` with `advice`.
    pub fn forget_all(&mut self, advice: ForgetAdvice) {
        for (id, client) in self.clients.drain() {
            client.wake();
            self.forgotten.insert(id, advice);
        }
        self.subscribers.clear();
        self.expiries.clear();
    }

    /// The advice for a client id this endpoint does not know (expired, forgotten or invented).
    pub fn unknown_advice(&self, client_id: Option<&str>) -> ForgetAdvice {
        client_id
            .and_then(|id| self.forgotten.get(id))
            .copied()
            .unwrap_or(ForgetAdvice::Handshake)
    }

    /// The indexes agree with the clients (test only).
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        let mut expiries = BTreeSet::new();
        let mut subscribers: HashMap<String, HashSet<String>> = HashMap::new();
        for (id, c) in &self.clients {
            if let Some(at) = c.expires_at {
                expiries.insert((at, id.clone()));
            }
            for ch in &c.subscriptions {
                subscribers
                    .entry(ch.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
        if expiries != self.expiries {
            return Err(format!("expiries {:?} != {:?}", self.expiries, expiries));
        }
        if subscribers != self.subscribers {
            return Err(format!(
                "subscribers {:?} != {:?}",
                self.subscribers, subscribers
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(data: &[Arc<Value>]) -> Vec<i64> {
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
        state.add_client("late".into(), Client::new(Some(now)));
        state.add_client("held".into(), Client::new(None));
        state.expire_clients(now);
        assert!(state.client("late").is_none());
        assert!(state.client("held").is_some());
        assert_eq!(state.unknown_advice(Some("late")), ForgetAdvice::Handshake);

        state.forget_all(ForgetAdvice::None);
        assert_eq!(state.client_count(), 0);
        assert_eq!(state.unknown_advice(Some("held")), ForgetAdvice::None);
        assert_eq!(state.unknown_advice(None), ForgetAdvice::Handshake);
    }

    fn data(n: i64) -> Arc<Value> {
        Arc::new(json!({"n": n}))
    }

    #[test]
    fn publishes_reach_only_subscribers_and_the_index_follows_every_change() {
        let mut state = State::new();
        let now = Instant::now();
        for id in ["a", "b", "c"] {
            state.add_client(id.into(), Client::new(Some(now + Duration::from_secs(60))));
        }
        state.subscribe("a", "/topic/A");
        state.subscribe("b", "/topic/A");
        state.subscribe("b", "/topic/B");
        state.subscribe("nobody", "/topic/A");
        state.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.deliver("/topic/A", &data(1)), 2);
        assert_eq!(state.deliver("/topic/B", &data(2)), 1);
        assert_eq!(state.deliver("/topic/C", &data(3)), 0);
        let queued = |s: &State, id: &str| s.client(id).map_or(0, |c| c.queue.len());
        assert_eq!(
            [
                queued(&state, "a"),
                queued(&state, "b"),
                queued(&state, "c")
            ],
            [1, 2, 0]
        );
        // The queued event is the logged one, not a copy.
        let shared = data(4);
        state.deliver("/topic/B", &shared);
        assert_eq!(Arc::strong_count(&shared), 2);

        state.unsubscribe("b", "/topic/A");
        assert_eq!(queued(&state, "b"), 2, "only the /topic/A event goes");
        assert_eq!(state.deliver("/topic/A", &data(5)), 1);
        state.remove_client("a");
        assert_eq!(state.deliver("/topic/A", &data(6)), 0);
        state.check().unwrap_or_else(|e| panic!("{e}"));
        assert!(!state.subscribers.contains_key("/topic/A"), "empty sets go");
        state.forget_all(ForgetAdvice::Handshake);
        assert!(state.subscribers.is_empty() && state.expiries.is_empty());
    }

    #[test]
    fn expiry_looks_only_at_due_clients_and_follows_connects() {
        let mut state = State::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        state.add_client("early".into(), Client::new(Some(at(10))));
        state.add_client("late".into(), Client::new(Some(at(30))));
        state.add_client("moved".into(), Client::new(Some(at(10))));
        state.subscribe("early", "/topic/A");
        // A reply moved one deadline, a held connect removed another.
        state.set_expiry("moved", Some(at(40)));
        state.set_expiry("late", None);
        state.check().unwrap_or_else(|e| panic!("{e}"));
        state.expire_clients(at(9));
        assert_eq!(state.client_count(), 3);
        state.expire_clients(at(10));
        assert!(
            state.client("early").is_none(),
            "due at exactly its deadline"
        );
        assert_eq!(state.deliver("/topic/A", &data(1)), 0);
        state.expire_clients(at(35));
        assert!(state.client("late").is_some(), "held: no deadline");
        assert!(state.client("moved").is_some());
        state.set_expiry("late", Some(at(50)));
        state.expire_clients(at(45));
        assert!(state.client("moved").is_none());
        assert!(state.client("late").is_some());
        state.check().unwrap_or_else(|e| panic!("{e}"));
        state.set_expiry("ghost", Some(at(1)));
        assert!(state.expiries.len() == 1);
    }
}
