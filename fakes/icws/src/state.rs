//! The shared simulated site: sessions, interactions, the routing handler and the ACD.
//!
//! Everything here is plain synchronous code on `&mut SiteState`; the caller holds the one site
//! mutex for the duration of a call and never across an await.
//!
//! No call scans every interaction or every session: interactions live in a vector indexed
//! by their creation number (the id is `1001000000 + n`), the ACD keeps its own queues and
//! loads ([`crate::acd`]), cases and entries are indexed, and queue-watch messages go only to
//! the watches of the queues an interaction was or is in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::acd::{Acd, Seq, skill_key};
use crate::error::{CODE_COOKIE, CODE_CSRF, IcwsError};
use crate::site::SiteSpec;

/// One of the two servers of the switchover pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Primary,
    Backup,
}

impl Which {
    pub fn other(self) -> Which {
        match self {
            Which::Primary => Which::Backup,
            Which::Backup => Which::Primary,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Which::Primary => "primary",
            Which::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Option<Which> {
        match s {
            "primary" => Some(Which::Primary),
            "backup" => Some(Which::Backup),
            _ => None,
        }
    }
}

/// The steps recorded in an interaction's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryEvent {
    Created,
    Offered,
    Assigned,
    Connected,
    Disconnected,
    Lost,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub event: HistoryEvent,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// What the control API reports about one interaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionInfo {
    pub id: String,
    /// `Eic_State`: O offering, A alerting, C connected, I disconnected.
    pub state: String,
    pub workgroup: String,
    pub agent: Option<String>,
    pub entry_id: String,
    pub case_id: String,
    /// In its workgroup queue on the active server and not disconnected.
    pub live: bool,
    /// Lost in a switchover without interaction recovery (unknown to the active server).
    pub lost: bool,
    pub attributes: BTreeMap<String, String>,
    pub history: Vec<HistoryEntry>,
}

/// Counters of what the fake has seen and done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// `RouteCase` notifications received (valid or not).
    pub handler_notifications: u64,
    /// Notifications for another objectId/eventId (no handler: nothing happens).
    pub ignored_notifications: u64,
    /// `RouteCase` notifications answered with an error result.
    pub handler_errors: u64,
    pub interactions_created: u64,
    pub duplicates_suppressed: u64,
    /// Interactions disconnected through ICWS.
    pub disconnects: u64,
    pub switchovers: u64,
    /// Interactions lost in switchovers without recovery.
    pub interactions_lost: u64,
    /// Successful connects (201).
    pub connects: u64,
    /// Connects refused by the standby (503).
    pub connects_refused: u64,
}

/// The kinds of ICWS calls `fail-next` can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallKind {
    /// `POST /icws/connection`.
    Connect,
    /// Other `…/connection…` calls (session state, logout, version, features, switchover status).
    Connection,
    /// `GET …/messaging/messages`.
    Messages,
    /// `POST …/system/handler-notification`.
    HandlerNotification,
    /// `PUT/DELETE …/messaging/subscriptions/system/handler-sent-notifications`.
    HandlerSubscription,
    /// `PUT/DELETE …/messaging/subscriptions/queues/{id}`.
    QueueSubscription,
    /// `POST …/interactions/{id}/disconnect`.
    Disconnect,
    /// `GET/POST …/interactions/{id}`.
    Interaction,
    /// `GET …/configuration/…`.
    Configuration,
    /// Any ICWS call.
    Any,
}

/// An injected failure: the next `count` calls of `kind` answer `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    pub kind: CallKind,
    pub count: u32,
    pub status: u16,
}

/// Most messages a session buffers; older ones are dropped beyond this.
const MAX_QUEUED_MESSAGES: usize = 10_000;

/// Interaction ids are `ID_BASE + n` for the n-th interaction (n = 1, 2, …).
const ID_BASE: u64 = 1_001_000_000;

/// A watched queue: (queueType, queueName), 1 user or 2 workgroup.
type QueueKey = (u8, String);

struct QueueSub {
    queues: Vec<QueueKey>,
    attributes: Vec<String>,
}

pub(crate) struct Session {
    pub server: Which,
    pub user_id: String,
    cookie: String,
    csrf: String,
    last_seen: Instant,
    open_streams: u32,
    /// Switched over: deliver what is queued (ending with the state message), then 401.
    closing: bool,
    messages: VecDeque<Value>,
    pub notify: Arc<Notify>,
    queue_subs: HashMap<String, QueueSub>,
    /// (objectId, eventIds), lower-cased.
    handler_subs: Vec<(String, Vec<String>)>,
}

impl Session {
    fn push(&mut self, msg: Value) {
        if self.messages.len() >= MAX_QUEUED_MESSAGES {
            self.messages.pop_front();
            tracing::warn!(user = %self.user_id, "session message queue full, dropping oldest");
        }
        self.messages.push_back(msg);
        self.notify.notify_one();
    }

    fn wants_results(&self) -> bool {
        let (obj, ev) = (OBJECT_ID.to_lowercase(), EVENT_RESULT.to_lowercase());
        self.handler_subs
            .iter()
            .any(|(o, es)| *o == obj && es.contains(&ev))
    }
}

struct Interaction {
    id: String,
    entry_id: String,
    case_id: String,
    workgroup: String,
    attributes: BTreeMap<String, String>,
    agent: Option<String>,
    disconnected: bool,
    /// Lost in a switchover without recovery: unknown to the active server.
    lost: bool,
    history: Vec<HistoryEntry>,
}

impl Interaction {
    fn live(&self) -> bool {
        !self.disconnected && !self.lost
    }

    fn record(&mut self, event: HistoryEvent, agent: Option<String>) {
        self.history.push(HistoryEntry {
            event,
            at: Utc::now(),
            agent,
        });
    }

    fn view(&self) -> View {
        View {
            visible: self.live(),
            workgroup: self.workgroup.clone(),
            agent: self.agent.clone(),
            attributes: self.attributes.clone(),
        }
    }

    /// The queues the interaction is in (when live).
    fn queues(&self) -> impl Iterator<Item = QueueKey> + '_ {
        std::iter::once((2, self.workgroup.clone()))
            .chain(self.agent.iter().map(|a| (1, a.clone())))
    }

    fn info(&self) -> InteractionInfo {
        InteractionInfo {
            id: self.id.clone(),
            state: attr(&self.attributes, "Eic_State")
                .unwrap_or_default()
                .to_owned(),
            workgroup: self.workgroup.clone(),
            agent: self.agent.clone(),
            entry_id: self.entry_id.clone(),
            case_id: self.case_id.clone(),
            live: self.live(),
            lost: self.lost,
            attributes: self.attributes.clone(),
            history: self.history.clone(),
        }
    }
}

/// What queue watchers can see of an interaction at one moment.
struct View {
    visible: bool,
    workgroup: String,
    agent: Option<String>,
    attributes: BTreeMap<String, String>,
}

impl View {
    fn in_sub(&self, sub: &QueueSub) -> bool {
        self.visible
            && sub.queues.iter().any(|(t, name)| match t {
                2 => *name == self.workgroup,
                1 => self.agent.as_deref() == Some(name.as_str()),
                _ => false,
            })
    }
}

/// Case-insensitive attribute lookup (ICWS attribute names are case-insensitive).
fn attr<'a>(attrs: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn set_attr(attrs: &mut BTreeMap<String, String>, name: &str, value: String) {
    let key = attrs
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned());
    attrs.insert(key, value);
}

/// The requested attributes that are set, keyed by the requested spelling.
fn select_attrs(attrs: &BTreeMap<String, String>, names: &[String]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| attr(attrs, n).map(|v| (n.clone(), v.to_owned())))
        .collect()
}

/// The outcome of a successful connect.
pub(crate) struct NewSession {
    pub session_id: String,
    pub csrf_token: String,
    pub cookie_value: String,
    pub user_id: String,
    pub display_name: String,
}

pub(crate) struct SiteState {
    pub spec: SiteSpec,
    pub active: Which,
    pub latency: std::time::Duration,
    sessions: HashMap<String, Session>,
    /// Every interaction ever created; the n-th (id `ID_BASE + n`) at index n - 1.
    interactions: Vec<Interaction>,
    /// Interactions before this index were all lost in a switchover without recovery.
    lost_upto: usize,
    /// entryId → interaction (the handler's idempotency memory).
    entries: HashMap<String, Seq>,
    /// caseId → its interactions, oldest first.
    by_case: HashMap<String, Vec<Seq>>,
    acd: Acd,
    /// Queue → the (session, subscription) watches that include it.
    watchers: HashMap<QueueKey, BTreeSet<(String, String)>>,
    /// Sessions subscribed to `RouteCaseResult`.
    result_watchers: BTreeSet<String>,
    counters: Counters,
    fail_rules: Vec<FailRule>,
    next_session: u64,
    /// (interaction id, agent) whose answer timer the caller must start.
    pending_answers: Vec<(String, String)>,
}

/// The handler contract (routing.md §4).
pub const OBJECT_ID: &str = "SalesforceObjectRouting";
pub const EVENT_ROUTE: &str = "RouteCase";
pub const EVENT_RESULT: &str = "RouteCaseResult";

impl SiteState {
    pub fn new(spec: SiteSpec) -> SiteState {
        SiteState {
            acd: Acd::new(&spec),
            spec,
            active: Which::Primary,
            latency: std::time::Duration::ZERO,
            sessions: HashMap::new(),
            interactions: Vec::new(),
            lost_upto: 0,
            entries: HashMap::new(),
            by_case: HashMap::new(),
            watchers: HashMap::new(),
            result_watchers: BTreeSet::new(),
            counters: Counters::default(),
            fail_rules: Vec::new(),
            next_session: 0,
            pending_answers: Vec::new(),
        }
    }

    pub fn take_pending_answers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.pending_answers)
    }

    pub fn counters(&self) -> Counters {
        self.counters.clone()
    }

    pub fn count_refused_connect(&mut self) {
        self.counters.connects_refused += 1;
    }

    // ---- failure injection ---------------------------------------------------------------

    pub fn add_fail_rule(&mut self, rule: FailRule) {
        self.fail_rules.push(rule);
    }

    /// Consumes one injected failure matching `kind`, if any, and returns its status.
    pub fn take_failure(&mut self, kind: CallKind) -> Option<u16> {
        let rule = self
            .fail_rules
            .iter_mut()
            .find(|r| r.count > 0 && (r.kind == kind || r.kind == CallKind::Any))?;
        rule.count -= 1;
        let status = rule.status;
        self.fail_rules.retain(|r| r.count > 0);
        Some(status)
    }

    // ---- sessions ------------------------------------------------------------------------

    /// Removes a session and every index entry of it, and wakes its waiters.
    fn remove_session(&mut self, sid: &str) -> Option<Session> {
        let s = self.sessions.remove(sid)?;
        for (sub_id, sub) in &s.queue_subs {
            self.unindex_sub(sid, sub_id, sub);
        }
        self.result_watchers.remove(sid);
        s.notify.notify_one();
        Some(s)
    }

    fn index_sub(&mut self, sid: &str, sub_id: &str, sub: &QueueSub) {
        for q in &sub.queues {
            self.watchers
                .entry(q.clone())
                .or_default()
                .insert((sid.to_owned(), sub_id.to_owned()));
        }
    }

    fn unindex_sub(&mut self, sid: &str, sub_id: &str, sub: &QueueSub) {
        for q in &sub.queues {
            if let Some(set) = self.watchers.get_mut(q) {
                set.remove(&(sid.to_owned(), sub_id.to_owned()));
                if set.is_empty() {
                    self.watchers.remove(q);
                }
            }
        }
    }

    fn purge_expired(&mut self) {
        let ttl = self.spec.timings.session_idle_ttl;
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.open_streams == 0 && s.last_seen.elapsed() > ttl)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in expired {
            self.remove_session(&sid);
        }
    }

    /// A user's new password; false when there is no such user.
    pub fn set_password(&mut self, user_id: &str, password: &str) -> bool {
        match self
            .spec
            .users
            .iter_mut()
            .find(|u| u.user_id.eq_ignore_ascii_case(user_id))
        {
            Some(u) => {
                u.password = password.to_owned();
                true
            }
            None => false,
        }
    }

    /// Checks credentials and creates a session on `server` (the caller checked it is active).
    pub fn connect(
        &mut self,
        server: Which,
        user_id: &str,
        password: &str,
        language: &str,
    ) -> Result<NewSession, IcwsError> {
        let user = self
            .spec
            .users
            .iter()
            .find(|u| u.user_id.eq_ignore_ascii_case(user_id) && u.password == password)
            .ok_or_else(|| {
                IcwsError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "error.request.connection.authenticationFailure",
                    crate::error::CODE_AUTH_FAILED,
                    "The authentication process failed.",
                )
            })?
            .clone();
        self.purge_expired();
        self.next_session += 1;
        let session_id = (29_113_000 + self.next_session * 1000 + 1).to_string();
        let guid = uuid::Uuid::new_v4();
        let csrf_token = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}|fake-icws|{}",
                user.user_id,
                uuid::Uuid::new_v4()
            ))
        };
        let cookie_value = format!("{guid}|languageId={language}");
        self.sessions.insert(
            session_id.clone(),
            Session {
                server,
                user_id: user.user_id.clone(),
                cookie: cookie_value.clone(),
                csrf: csrf_token.clone(),
                last_seen: Instant::now(),
                open_streams: 0,
                closing: false,
                messages: VecDeque::new(),
                notify: Arc::new(Notify::new()),
                queue_subs: HashMap::new(),
                handler_subs: Vec::new(),
            },
        );
        self.counters.connects += 1;
        Ok(NewSession {
            session_id,
            csrf_token,
            cookie_value,
            user_id: user.user_id,
            display_name: user.display_name,
        })
    }

    /// Validates session, cookie and (when `csrf` is `Some`) the CSRF header. `csrf: None`
    /// means the call does not need the token (only `GET messaging/messages`). A closing
    /// (switched-over) session passes: only the message call may still use it.
    pub fn authenticate(
        &mut self,
        server: Which,
        sid: &str,
        cookie_header: Option<&str>,
        csrf: Option<Option<&str>>,
    ) -> Result<&mut Session, IcwsError> {
        let ttl = self.spec.timings.session_idle_ttl;
        let expired = match self.sessions.get(sid) {
            None => return Err(IcwsError::session_invalid()),
            Some(s) => s.server != server || (s.open_streams == 0 && s.last_seen.elapsed() > ttl),
        };
        if expired {
            if self.sessions.get(sid).is_some_and(|s| s.server == server) {
                self.remove_session(sid);
            }
            return Err(IcwsError::session_invalid());
        }
        let session = self
            .sessions
            .get_mut(sid)
            .ok_or_else(IcwsError::session_invalid)?;
        let cookie_name = format!("icws_{sid}");
        let cookie_ok = cookie_header.is_some_and(|h| {
            h.split(';').any(|c| {
                c.trim()
                    .split_once('=')
                    .is_some_and(|(n, v)| n == cookie_name && v.trim_matches('"') == session.cookie)
            })
        });
        if !cookie_ok {
            return Err(IcwsError::unauthorized(
                CODE_COOKIE,
                "The session cookie is missing or does not match the session.",
            ));
        }
        if csrf.is_some_and(|token| token != Some(session.csrf.as_str())) {
            return Err(IcwsError::unauthorized(
                CODE_CSRF,
                "The ININ-ICWS-CSRF-Token header is missing or does not match the session.",
            ));
        }
        session.last_seen = Instant::now();
        Ok(session)
    }

    /// Like [`authenticate`](Self::authenticate), but a closing session is refused too.
    pub fn session(
        &mut self,
        server: Which,
        sid: &str,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> Result<&mut Session, IcwsError> {
        let s = self.authenticate(server, sid, cookie, Some(csrf))?;
        if s.closing {
            return Err(IcwsError::session_invalid());
        }
        Ok(s)
    }

    pub fn logout(&mut self, sid: &str) {
        self.remove_session(sid);
    }

    /// Drains the session's queued messages. A closing session is removed once drained;
    /// the bool says the session is over (a stream must end).
    pub fn drain_messages(&mut self, sid: &str) -> (Vec<Value>, bool) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return (Vec::new(), true);
        };
        s.last_seen = Instant::now();
        let msgs: Vec<Value> = s.messages.drain(..).collect();
        if s.closing {
            self.remove_session(sid);
            return (msgs, true);
        }
        (msgs, false)
    }

    pub fn stream_opened(&mut self, sid: &str) {
        if let Some(s) = self.sessions.get_mut(sid) {
            s.open_streams += 1;
        }
    }

    pub fn stream_closed(&mut self, sid: &str) {
        if let Some(s) = self.sessions.get_mut(sid) {
            s.open_streams = s.open_streams.saturating_sub(1);
            s.last_seen = Instant::now();
        }
    }

    pub fn session_notify(&self, sid: &str) -> Option<Arc<Notify>> {
        self.sessions.get(sid).map(|s| s.notify.clone())
    }

    pub fn session_count(&self) -> usize {
        self.sessions.values().filter(|s| !s.closing).count()
    }

    /// Ends every session of `server` at once (no message): the next call gets 401.
    pub fn drop_sessions(&mut self, server: Option<Which>) -> usize {
        let ended: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| server.is_none_or(|w| s.server == w))
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in &ended {
            self.remove_session(sid);
        }
        ended.len()
    }

    // ---- queue and handler subscriptions ------------------------------------------------

    /// Validates the queues of a watch (user and workgroup queues of known names).
    pub fn check_queue(&self, queue_type: i64, name: &str) -> Result<u8, IcwsError> {
        match queue_type {
            2 if self.acd.workgroup(name).is_some() => Ok(2),
            1 if self.acd.agent(name).is_some()
                || self.spec.users.iter().any(|u| u.user_id == name) =>
            {
                Ok(1)
            }
            1 | 2 => Err(IcwsError::bad_request(
                "error.request.queue.notFound",
                format!("The queue '{name}' (type {queue_type}) does not exist."),
            )),
            0 | 3 => Err(IcwsError::bad_request(
                "error.request.queue.unsupportedQueueType",
                format!("Queue type {queue_type} cannot be watched on this server."),
            )),
            _ => Err(IcwsError::bad_request(
                "error.request.queue.invalidQueueType",
                format!(
                    "{queue_type} is not a queue type (0 system, 1 user, 2 workgroup, 3 station)."
                ),
            )),
        }
    }

    /// Live interactions in one of these queues, oldest first, each once.
    fn contents(&self, queues: &[QueueKey]) -> BTreeSet<Seq> {
        let mut out = BTreeSet::new();
        for (t, name) in queues {
            match t {
                2 => {
                    if let Some(w) = self.acd.workgroup(name) {
                        out.extend(self.acd.workgroup_contents(w));
                    }
                }
                1 => {
                    if let Some(a) = self.acd.agent(name) {
                        out.extend(self.acd.agent_contents(a));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Creates or replaces a queue watch and queues its `isDelta:false` snapshot.
    pub fn watch_queues(
        &mut self,
        sid: &str,
        sub_id: &str,
        queues: Vec<(u8, String)>,
        attributes: Vec<String>,
    ) {
        if !self.sessions.contains_key(sid) {
            return;
        }
        let sub = QueueSub { queues, attributes };
        let added: Vec<Value> = self
            .contents(&sub.queues)
            .into_iter()
            .filter_map(|seq| self.ix(seq))
            .map(|ix| {
                json!({
                    "interactionId": ix.id,
                    "attributes": select_attrs(&ix.attributes, &sub.attributes),
                })
            })
            .collect();
        let replaced = self
            .sessions
            .get_mut(sid)
            .and_then(|s| s.queue_subs.remove(sub_id));
        if let Some(old) = replaced {
            self.unindex_sub(sid, sub_id, &old);
        }
        self.index_sub(sid, sub_id, &sub);
        if let Some(s) = self.sessions.get_mut(sid) {
            s.queue_subs.insert(sub_id.to_owned(), sub);
        }
        if let Some(s) = self.sessions.get_mut(sid) {
            s.push(json!({
                "__type": "urn:inin.com:queues:queueContentsMessage",
                "isDelta": false,
                "subscriptionId": sub_id,
                "interactionsAdded": added,
                "interactionsChanged": [],
                "interactionsRemoved": [],
            }));
        }
    }

    pub fn unwatch_queues(&mut self, sid: &str, sub_id: &str) {
        let removed = self
            .sessions
            .get_mut(sid)
            .and_then(|s| s.queue_subs.remove(sub_id));
        if let Some(sub) = removed {
            self.unindex_sub(sid, sub_id, &sub);
        }
    }

    pub fn set_handler_subs(&mut self, sid: &str, headers: Vec<(String, Vec<String>)>) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        s.handler_subs = headers
            .into_iter()
            .map(|(o, es)| {
                (
                    o.to_lowercase(),
                    es.into_iter().map(|e| e.to_lowercase()).collect(),
                )
            })
            .collect();
        if s.wants_results() {
            self.result_watchers.insert(sid.to_owned());
        } else {
            self.result_watchers.remove(sid);
        }
    }

    /// The watches of any of these queues, each once.
    fn watches_of(&self, queues: impl Iterator<Item = QueueKey>) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for q in queues {
            if let Some(set) = self.watchers.get(&q) {
                out.extend(set.iter().cloned());
            }
        }
        out
    }

    /// The interaction's view before a change, or `None` when nobody watches its queues
    /// (then nobody needs the "before" side of the change).
    fn watched_view(&self, seq: Seq) -> Option<View> {
        let ix = self.ix(seq)?;
        let watched = ix.queues().any(|q| self.watchers.contains_key(&q));
        watched.then(|| ix.view())
    }

    /// Tells queue watchers how one interaction changed: only the watches of the queues it
    /// was in (`before`) or is in now are looked at.
    fn publish(&mut self, seq: Seq, before: Option<View>) {
        let Some(ix) = self.ix(seq) else {
            return;
        };
        let before_queues = before.iter().flat_map(|v| {
            std::iter::once((2, v.workgroup.clone())).chain(v.agent.iter().map(|a| (1, a.clone())))
        });
        let watches = self.watches_of(before_queues.chain(ix.queues()));
        if watches.is_empty() {
            return;
        }
        let id = ix.id.clone();
        let after = ix.view();
        for (sid, sub_id) in watches {
            let Some(s) = self.sessions.get_mut(&sid).filter(|s| !s.closing) else {
                continue;
            };
            let Some(sub) = s.queue_subs.get(&sub_id) else {
                continue;
            };
            let was = before.as_ref().is_some_and(|v| v.in_sub(sub));
            let now = after.in_sub(sub);
            let (added, changed, removed) = match (was, now) {
                (false, true) => (
                    vec![
                        json!({"interactionId": id, "attributes": select_attrs(&after.attributes, &sub.attributes)}),
                    ],
                    vec![],
                    vec![],
                ),
                (true, false) => (vec![], vec![], vec![json!(id)]),
                (true, true) => {
                    let old = before
                        .as_ref()
                        .map(|b| select_attrs(&b.attributes, &sub.attributes))
                        .unwrap_or_default();
                    let diff: BTreeMap<String, String> =
                        select_attrs(&after.attributes, &sub.attributes)
                            .into_iter()
                            .filter(|(k, val)| old.get(k) != Some(val))
                            .collect();
                    if diff.is_empty() {
                        continue;
                    }
                    (
                        vec![],
                        vec![json!({"interactionId": id, "attributes": diff})],
                        vec![],
                    )
                }
                (false, false) => continue,
            };
            s.push(json!({
                "__type": "urn:inin.com:queues:queueContentsMessage",
                "isDelta": true,
                "subscriptionId": sub_id,
                "interactionsAdded": added,
                "interactionsChanged": changed,
                "interactionsRemoved": removed,
            }));
        }
    }

    fn send_handler_result(&mut self, data: Vec<String>) {
        if self.result_watchers.is_empty() {
            return;
        }
        let msg = json!({
            "__type": "urn:inin.com:system:handlerSentNotificationMessage",
            "isDelta": false,
            "objectId": OBJECT_ID,
            "eventId": EVENT_RESULT,
            "data": data,
        });
        for sid in &self.result_watchers {
            if let Some(s) = self.sessions.get_mut(sid).filter(|s| !s.closing) {
                s.push(msg.clone());
            }
        }
    }

    // ---- the routing handler (routing.md §4) --------------------------------------------

    /// A custom notification. Anything but `SalesforceObjectRouting`/`RouteCase` is ignored,
    /// as by a CIC server without a handler for it.
    pub fn handler_notification(&mut self, object_id: &str, event_id: &str, data: Vec<String>) {
        if !object_id.eq_ignore_ascii_case(OBJECT_ID) || !event_id.eq_ignore_ascii_case(EVENT_ROUTE)
        {
            self.counters.ignored_notifications += 1;
            tracing::info!(
                object_id,
                event_id,
                "custom notification without a handler ignored"
            );
            return;
        }
        self.counters.handler_notifications += 1;
        let entry_id = data.get(1).cloned().unwrap_or_default();
        let result = match self.route_case(&data) {
            Ok(id) => vec!["1".to_owned(), entry_id, "ok".to_owned(), id],
            Err(message) => {
                self.counters.handler_errors += 1;
                tracing::info!(entry_id = %entry_id, error = %message, "RouteCase failed");
                vec!["1".to_owned(), entry_id, "error".to_owned(), message]
            }
        };
        self.send_handler_result(result);
    }

    fn route_case(&mut self, data: &[String]) -> Result<String, String> {
        let [
            version,
            entry_id,
            case_id,
            case_number,
            workgroup,
            skills,
            subject,
            from_address,
            from_name,
        ] = data
        else {
            return Err(format!(
                "RouteCase expects 9 data items (version, entryId, caseId, caseNumber, workgroup, skills, subject, fromAddress, fromName), got {}",
                data.len()
            ));
        };
        if version != "1" {
            return Err(format!(
                "unsupported RouteCase contract version '{version}' (expected '1')"
            ));
        }
        if entry_id.trim().is_empty() {
            return Err("the routing entry id is empty".to_owned());
        }
        if let Some(existing) = self
            .entries
            .get(entry_id)
            .and_then(|&seq| self.ix(seq))
            .map(|ix| ix.id.clone())
        {
            self.counters.duplicates_suppressed += 1;
            tracing::info!(entry_id = %entry_id, interaction = %existing, "duplicate RouteCase suppressed");
            return Ok(existing);
        }
        let wg_index = self
            .acd
            .workgroup(workgroup)
            .ok_or_else(|| format!("unknown workgroup '{workgroup}'"))?;
        if !self
            .spec
            .workgroups
            .get(wg_index)
            .is_some_and(|w| w.routes_acd_email())
        {
            return Err(format!("workgroup '{workgroup}' has no ACD email routing"));
        }
        let skills: Vec<String> = skills
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = skills.iter().find(|s| !self.spec.skills.contains(s)) {
            return Err(format!("unknown skill '{unknown}'"));
        }

        let seq = self.interactions.len() as Seq + 1;
        let id = (ID_BASE + seq).to_string();
        let now = Utc::now();
        let mut attributes = BTreeMap::new();
        for (k, v) in [
            ("Eic_CallId", id.as_str()),
            ("Eic_InteractionId", id.as_str()),
            ("Eic_ObjectType", "Email Object"),
            ("Eic_CallDirection", "I"),
            ("Eic_State", "O"),
            ("Eic_CallStateString", "Offering"),
            ("SF_RoutingEntryId", entry_id),
            ("SF_CaseId", case_id),
            ("SF_CaseNumber", case_number),
            ("SF_URLPop", case_id),
            ("SF_SuppressEmailForm", "1"),
            ("Eic_WorkgroupName", workgroup),
            ("Eic_RemoteName", from_name),
            ("Eic_RemoteAddress", from_address),
            ("Eic_Subject", subject),
        ] {
            attributes.insert(k.to_owned(), v.to_owned());
        }
        attributes.insert("Eic_AcdSkillSet".to_owned(), skills.join(";"));
        attributes.insert(
            "Eic_InitiationTime".to_owned(),
            now.format("%Y%m%dT%H%M%SZ").to_string(),
        );
        let mut ix = Interaction {
            id: id.clone(),
            entry_id: entry_id.clone(),
            case_id: case_id.clone(),
            workgroup: workgroup.clone(),
            attributes,
            agent: None,
            disconnected: false,
            lost: false,
            history: Vec::new(),
        };
        ix.record(HistoryEvent::Created, None);
        ix.record(HistoryEvent::Offered, None);
        self.interactions.push(ix);
        self.entries.insert(entry_id.clone(), seq);
        self.by_case.entry(case_id.clone()).or_default().push(seq);
        self.counters.interactions_created += 1;
        tracing::info!(entry_id = %entry_id, interaction = %id, workgroup = %workgroup, "email interaction created");
        self.publish(seq, None);
        if let Some(agent) = self.acd.offer(seq, wg_index, skill_key(&skills)) {
            self.assigned(seq, agent);
        }
        Ok(id)
    }

    // ---- ACD -----------------------------------------------------------------------------

    fn ix(&self, seq: Seq) -> Option<&Interaction> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.interactions.get(i)
    }

    fn ix_mut(&mut self, seq: Seq) -> Option<&mut Interaction> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.interactions.get_mut(i)
    }

    /// The creation number of the interaction with this id (exactly as issued).
    fn seq_of(&self, id: &str) -> Option<Seq> {
        let seq = id.parse::<u64>().ok()?.checked_sub(ID_BASE)?;
        self.ix(seq).filter(|ix| ix.id == id).map(|_| seq)
    }

    /// The ACD recorded `agent` for interaction `seq`: alerting, in the agent's user queue.
    fn assigned(&mut self, seq: Seq, agent: usize) {
        let agent = self.acd.agent_name(agent).to_owned();
        let before = self.watched_view(seq);
        let Some(ix) = self.ix_mut(seq) else {
            return;
        };
        ix.agent = Some(agent.clone());
        set_attr(&mut ix.attributes, "Eic_State", "A".to_owned());
        set_attr(
            &mut ix.attributes,
            "Eic_CallStateString",
            "Alerting".to_owned(),
        );
        set_attr(&mut ix.attributes, "Eic_UserName", agent.clone());
        ix.record(HistoryEvent::Assigned, Some(agent.clone()));
        let id = ix.id.clone();
        tracing::info!(interaction = %id, agent, "interaction assigned");
        self.publish(seq, before);
        self.pending_answers.push((id, agent));
    }

    /// The agent has room again (made available, or one of theirs ended): they take the
    /// oldest waiting interactions they are eligible for, until full.
    fn fill(&mut self, agent: usize) {
        while let Some(seq) = self.acd.next_for(agent) {
            self.assigned(seq, agent);
        }
    }

    /// The answer timer fired: the agent picks up if the interaction still alerts them.
    pub fn answer(&mut self, id: &str, agent: &str) {
        let Some(seq) = self.seq_of(id) else {
            return;
        };
        let before = self.watched_view(seq);
        let Some(ix) = self.ix_mut(seq) else {
            return;
        };
        if !ix.live()
            || ix.agent.as_deref() != Some(agent)
            || attr(&ix.attributes, "Eic_State") != Some("A")
        {
            return;
        }
        set_attr(&mut ix.attributes, "Eic_State", "C".to_owned());
        set_attr(
            &mut ix.attributes,
            "Eic_CallStateString",
            "Connected".to_owned(),
        );
        ix.record(HistoryEvent::Connected, Some(agent.to_owned()));
        self.publish(seq, before);
    }

    pub fn set_agent_available(&mut self, agent: &str, available: bool) -> bool {
        let Some(a) = self.acd.agent(agent) else {
            return false;
        };
        self.acd.set_available(a, available);
        tracing::info!(agent, available, "agent availability changed");
        if available {
            self.fill(a);
        }
        true
    }

    // ---- interactions through ICWS --------------------------------------------------------

    fn known(&self, id: &str) -> Result<Seq, IcwsError> {
        self.seq_of(id)
            .filter(|&seq| self.ix(seq).is_some_and(|ix| !ix.lost))
            .ok_or_else(|| {
                IcwsError::not_found(
                    "error.interaction.notFound",
                    format!("The interaction {id} does not exist."),
                )
            })
    }

    /// `GET …/interactions/{id}?select=…`: without `select` only `Eic_CallId`.
    pub fn interaction_attributes(
        &self,
        id: &str,
        select: Option<Vec<String>>,
    ) -> Result<BTreeMap<String, String>, IcwsError> {
        let seq = self.known(id)?;
        let names = select.unwrap_or_else(|| vec!["Eic_CallId".to_owned()]);
        Ok(self
            .ix(seq)
            .map(|ix| select_attrs(&ix.attributes, &names))
            .unwrap_or_default())
    }

    /// `POST …/interactions/{id}`: appendMode 1 appends, 2 appends after a `|`, else overwrite.
    pub fn set_attributes(
        &mut self,
        id: &str,
        attrs: Vec<(String, String)>,
        append_mode: Option<i64>,
    ) -> Result<(), IcwsError> {
        let seq = self.known(id)?;
        let before = self.watched_view(seq);
        let Some(ix) = self.ix_mut(seq) else {
            return Ok(());
        };
        for (k, v) in attrs {
            let value = match (append_mode, attr(&ix.attributes, &k)) {
                (Some(1), Some(old)) => format!("{old}{v}"),
                (Some(2), Some(old)) if !old.is_empty() => format!("{old}|{v}"),
                _ => v,
            };
            set_attr(&mut ix.attributes, &k, value);
        }
        self.publish(seq, before);
        Ok(())
    }

    /// `POST …/interactions/{id}/disconnect`: state I, out of every queue. Disconnecting a
    /// disconnected interaction is a no-op.
    pub fn disconnect(&mut self, id: &str) -> Result<(), IcwsError> {
        let seq = self.known(id)?;
        let before = self.watched_view(seq);
        let Some(ix) = self.ix_mut(seq) else {
            return Ok(());
        };
        if ix.disconnected {
            return Ok(());
        }
        ix.disconnected = true;
        set_attr(&mut ix.attributes, "Eic_State", "I".to_owned());
        set_attr(
            &mut ix.attributes,
            "Eic_CallStateString",
            "Disconnected".to_owned(),
        );
        set_attr(
            &mut ix.attributes,
            "Eic_TerminationTime",
            Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
        );
        let agent = ix.agent.clone();
        ix.record(HistoryEvent::Disconnected, agent);
        self.counters.disconnects += 1;
        tracing::info!(interaction = %id, "interaction disconnected");
        self.publish(seq, before);
        if let Some(freed) = self.acd.remove(seq) {
            self.fill(freed);
        }
        Ok(())
    }

    // ---- switchover ---------------------------------------------------------------------

    /// Makes the standby active. Sessions on the old active get the state message (when the
    /// site announces switchovers) and then 401. Without recovery every interaction and the
    /// handler's entry memory are lost.
    pub fn switchover(&mut self, recovery: bool) -> Which {
        let old = self.active;
        self.active = old.other();
        self.counters.switchovers += 1;
        let announce = self.spec.announce_switchover;
        let msg = json!({
            "__type": "urn:inin.com:connection:connectionStateChangeMessage",
            "isDelta": true,
            "previousConnectionState": 1,
            "newConnectionState": 2,
            "reason": "The CIC server is switching over to its backup.",
            "shouldReconnect": true,
        });
        if announce {
            for s in self.sessions.values_mut().filter(|s| s.server == old) {
                s.push(msg.clone());
                s.closing = true;
            }
        } else {
            self.drop_sessions(Some(old));
        }
        if !recovery {
            // Everything created since the last such switchover (older ones are lost already).
            let mut lost = 0;
            for ix in self.interactions.iter_mut().skip(self.lost_upto) {
                if ix.live() {
                    let agent = ix.agent.clone();
                    ix.record(HistoryEvent::Lost, agent);
                    lost += 1;
                }
                ix.lost = true;
            }
            self.lost_upto = self.interactions.len();
            self.acd.clear();
            self.entries.clear();
            self.counters.interactions_lost += lost;
        }
        tracing::info!(active = self.active.as_str(), recovery, "switchover");
        self.active
    }

    pub fn interactions(&self) -> Vec<InteractionInfo> {
        self.interactions.iter().map(Interaction::info).collect()
    }

    pub fn live_interactions_for_case(&self, case_id: &str) -> Vec<InteractionInfo> {
        self.by_case
            .get(case_id)
            .into_iter()
            .flatten()
            .filter_map(|&seq| self.ix(seq))
            .filter(|ix| ix.live())
            .map(Interaction::info)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteState {
        SiteState::new(SiteSpec::demo())
    }

    fn session(st: &mut SiteState) -> String {
        st.connect(Which::Primary, "sors", "sors", "en-us")
            .map(|s| s.session_id)
            .unwrap_or_default()
    }

    fn route(st: &mut SiteState, n: u32, workgroup: &str, skills: &str) -> String {
        let data: Vec<String> = [
            "1",
            &format!("E{n}"),
            &format!("500C{n}"),
            "00001001",
            workgroup,
            skills,
            "subject",
            "jo@example.com",
            "Jo",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        st.route_case(&data).unwrap_or_else(|e| panic!("{e}"))
    }

    fn agent_of(st: &SiteState, id: &str) -> Option<String> {
        let seq = st.seq_of(id)?;
        st.ix(seq)?.agent.clone()
    }

    fn load(st: &SiteState, agent: &str) -> usize {
        st.acd
            .agent(agent)
            .map_or(0, |a| st.acd.agent_contents(a).count())
    }

    /// The ACD's queues agree with the interactions (recomputed by a full scan, test only).
    fn consistent(st: &SiteState) {
        for a in &st.spec.agents {
            let scanned = st
                .interactions
                .iter()
                .filter(|ix| ix.live() && ix.agent.as_deref() == Some(a.name.as_str()))
                .count();
            assert_eq!(load(st, &a.name), scanned, "load of {}", a.name);
        }
        for w in &st.spec.workgroups {
            let scanned: Vec<Seq> = (1..=st.interactions.len() as Seq)
                .filter(|&s| {
                    st.ix(s)
                        .is_some_and(|ix| ix.live() && ix.workgroup == w.name)
                })
                .collect();
            let idx = st.acd.workgroup(&w.name).unwrap_or(usize::MAX);
            let kept: Vec<Seq> = st.acd.workgroup_contents(idx).collect();
            assert_eq!(kept, scanned, "contents of {}", w.name);
        }
        for (entry, &seq) in &st.entries {
            assert_eq!(
                st.ix(seq).map(|ix| ix.entry_id.as_str()),
                Some(entry.as_str())
            );
        }
    }

    fn messages(st: &mut SiteState, sid: &str) -> Vec<Value> {
        st.drain_messages(sid).0
    }

    fn queue_msgs(msgs: &[Value], sub: &str) -> usize {
        msgs.iter()
            .filter(|m| m["subscriptionId"] == sub && m["isDelta"] == true)
            .count()
    }

    #[test]
    fn acd_order_and_loads_after_assign_and_disconnect() {
        let mut st = site();
        let ids: Vec<String> = (1..=6)
            .map(|n| route(&mut st, n, "Support_EN", "English"))
            .collect();
        let agents: Vec<Option<String>> = ids.iter().map(|id| agent_of(&st, id)).collect();
        assert_eq!(
            agents,
            ["agent1", "agent2", "agent3", "agent4"]
                .map(|a| Some(a.to_owned()))
                .into_iter()
                .chain([None, None])
                .collect::<Vec<_>>()
        );
        consistent(&st);
        // agent3 finishes: the oldest waiting (5th) goes to agent3, the 6th still waits.
        assert!(st.disconnect(&ids[2]).is_ok());
        assert_eq!(agent_of(&st, &ids[4]).as_deref(), Some("agent3"));
        assert_eq!(agent_of(&st, &ids[5]), None);
        assert_eq!(load(&st, "agent3"), 1);
        consistent(&st);
        // Disconnecting a waiting one frees nobody; disconnecting twice is a no-op.
        assert!(st.disconnect(&ids[5]).is_ok());
        assert!(st.disconnect(&ids[5]).is_ok());
        assert_eq!(st.counters.disconnects, 2);
        consistent(&st);
        // An unavailable agent keeps theirs, gets nothing new until available again.
        assert!(st.set_agent_available("agent1", false));
        assert!(st.disconnect(&ids[0]).is_ok());
        let seventh = route(&mut st, 7, "Support_EN", "English");
        assert_eq!(agent_of(&st, &seventh), None, "everyone else is busy");
        assert!(st.set_agent_available("agent1", true));
        assert_eq!(agent_of(&st, &seventh).as_deref(), Some("agent1"));
        assert!(!st.set_agent_available("nobody", true));
        consistent(&st);
        // Answer timers were scheduled for every assignment.
        assert_eq!(st.take_pending_answers().len(), 6);
    }

    #[test]
    fn skills_choose_the_agent_regardless_of_proficiency() {
        let mut st = site();
        let premium = route(&mut st, 1, "Support_EN", "English;Premium");
        assert_eq!(agent_of(&st, &premium).as_deref(), Some("agent2"));
        let french = route(&mut st, 2, "Support_FR", "French");
        assert_eq!(agent_of(&st, &french).as_deref(), Some("agent3"));
        // Billing: agent2 is a member without the skill and busy anyway; agent4 has it.
        let billing = route(&mut st, 3, "Billing", "Billing");
        assert_eq!(agent_of(&st, &billing).as_deref(), Some("agent4"));
        // A second Premium one waits for agent2 although agent1 is free.
        let premium2 = route(&mut st, 4, "Support_EN", "Premium");
        assert_eq!(agent_of(&st, &premium2), None);
        let plain = route(&mut st, 5, "Support_EN", "");
        assert_eq!(agent_of(&st, &plain).as_deref(), Some("agent1"));
        assert!(st.disconnect(&premium).is_ok());
        assert_eq!(agent_of(&st, &premium2).as_deref(), Some("agent2"));
        consistent(&st);
    }

    #[test]
    fn switchover_without_recovery_empties_queues_and_loads() {
        let mut st = site();
        let first: Vec<String> = (1..=6)
            .map(|n| route(&mut st, n, "Support_EN", "English"))
            .collect();
        assert!(st.disconnect(&first[0]).is_ok());
        st.switchover(false);
        for a in ["agent1", "agent2", "agent3", "agent4"] {
            assert_eq!(load(&st, a), 0);
        }
        assert_eq!(
            st.counters.interactions_lost, 5,
            "the disconnected one was not live"
        );
        assert!(
            st.known(&first[0]).is_err(),
            "disconnected ones are unknown too"
        );
        assert!(st.entries.is_empty());
        consistent(&st);
        // The same entry again: a new interaction, assigned to the longest idle agent (agent1
        // took the 5th when the 1st ended, so agent2).
        let again = route(&mut st, 2, "Support_EN", "English");
        assert_ne!(again, first[1]);
        assert_eq!(agent_of(&st, &again).as_deref(), Some("agent2"));
        st.switchover(false);
        assert_eq!(st.counters.interactions_lost, 6);
        let lost_entries = |id: &str| {
            st.seq_of(id).and_then(|s| st.ix(s)).map_or(0, |ix| {
                ix.history
                    .iter()
                    .filter(|h| h.event == HistoryEvent::Lost)
                    .count()
            })
        };
        assert_eq!(lost_entries(&first[1]), 1, "lost once, not again");
        assert_eq!(lost_entries(&again), 1);
        assert_eq!(lost_entries(&first[0]), 0);
        consistent(&st);
    }

    #[test]
    fn switchover_with_recovery_keeps_queues_and_loads() {
        let mut st = site();
        let ids: Vec<String> = (1..=5)
            .map(|n| route(&mut st, n, "Support_EN", "English"))
            .collect();
        st.switchover(true);
        assert_eq!(load(&st, "agent2"), 1);
        assert!(st.disconnect(&ids[1]).is_ok());
        assert_eq!(agent_of(&st, &ids[4]).as_deref(), Some("agent2"));
        // The entry memory survived: a duplicate creates nothing.
        assert_eq!(route(&mut st, 3, "Support_EN", "English"), ids[2]);
        assert_eq!(st.counters.duplicates_suppressed, 1);
        consistent(&st);
    }

    #[test]
    fn queue_messages_go_only_to_the_watches_of_the_queues_involved() {
        let mut st = site();
        let (en, billing, user) = (session(&mut st), session(&mut st), session(&mut st));
        let attrs = vec!["Eic_State".to_owned(), "Eic_UserName".to_owned()];
        st.watch_queues(&en, "en", vec![(2, "Support_EN".into())], attrs.clone());
        st.watch_queues(&billing, "bi", vec![(2, "Billing".into())], attrs.clone());
        st.watch_queues(&user, "u", vec![(1, "agent1".into())], attrs.clone());
        for sid in [&en, &billing, &user] {
            assert_eq!(messages(&mut st, sid).len(), 1, "the snapshot");
        }
        let id = route(&mut st, 1, "Support_EN", "English");
        let m = messages(&mut st, &en);
        assert_eq!(queue_msgs(&m, "en"), 2, "added, then assigned: {m:?}");
        assert!(messages(&mut st, &billing).is_empty());
        let m = messages(&mut st, &user);
        assert_eq!(queue_msgs(&m, "u"), 1, "added to agent1's queue: {m:?}");
        assert_eq!(m[0]["interactionsAdded"][0]["interactionId"], id.as_str());
        // A change touching no watched attribute sends nothing.
        assert!(
            st.set_attributes(&id, vec![("Custom".into(), "x".into())], None)
                .is_ok()
        );
        assert!(messages(&mut st, &en).is_empty());
        // A user-queue watch sees a snapshot of only what the agent holds.
        st.watch_queues(
            &user,
            "u",
            vec![(1, "agent1".into()), (1, "agent2".into())],
            attrs,
        );
        let m = messages(&mut st, &user);
        assert_eq!(m[0]["interactionsAdded"].as_array().map(Vec::len), Some(1));
        // Replaced, unwatched and logged-out watches leave nothing behind in the index.
        assert!(st.watchers.contains_key(&(1, "agent2".to_owned())));
        st.unwatch_queues(&user, "u");
        st.logout(&en);
        st.drop_sessions(None);
        assert!(st.watchers.is_empty(), "{:?}", st.watchers.keys());
        assert!(st.result_watchers.is_empty());
    }

    #[test]
    fn results_go_to_result_subscribers_only() {
        let mut st = site();
        let (a, b) = (session(&mut st), session(&mut st));
        st.set_handler_subs(&a, vec![(OBJECT_ID.into(), vec![EVENT_RESULT.into()])]);
        st.set_handler_subs(&b, vec![(OBJECT_ID.into(), vec!["Other".into()])]);
        st.handler_notification(OBJECT_ID, EVENT_ROUTE, vec!["1".into()]);
        assert_eq!(messages(&mut st, &a).len(), 1);
        assert!(messages(&mut st, &b).is_empty());
        st.set_handler_subs(&a, Vec::new());
        assert!(st.result_watchers.is_empty());
    }

    #[test]
    fn ids_are_looked_up_exactly_and_cases_by_index() {
        let mut st = site();
        let id = route(&mut st, 1, "Support_EN", "English");
        assert_eq!(id, "1001000001");
        assert!(st.known(&id).is_ok());
        for bad in [
            "01001000001",
            "+1001000001",
            "1001000002",
            "1001000000",
            "x",
            "",
        ] {
            assert!(st.known(bad).is_err(), "{bad}");
        }
        route(&mut st, 2, "Support_EN", "English");
        assert_eq!(st.live_interactions_for_case("500C1").len(), 1);
        assert!(st.disconnect(&id).is_ok());
        assert!(st.live_interactions_for_case("500C1").is_empty());
        assert_eq!(st.live_interactions_for_case("500C2").len(), 1);
        assert!(st.live_interactions_for_case("nope").is_empty());
    }
}
