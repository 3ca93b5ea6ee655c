//! The shared simulated site: sessions, interactions, the routing handler and the ACD.
//!
//! Everything here is plain synchronous code on `&mut SiteState`; the caller holds the one site
//! mutex for the duration of a call and never across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

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

struct QueueSub {
    /// (queueType, queueName): 1 user, 2 workgroup.
    queues: Vec<(u8, String)>,
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
}

struct Interaction {
    id: String,
    entry_id: String,
    case_id: String,
    workgroup: String,
    skills: Vec<String>,
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

struct AgentState {
    available: bool,
    /// Assignment sequence number of the agent's last assignment (0 = never).
    last_assigned: u64,
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
    interactions: BTreeMap<String, Interaction>,
    /// entryId → interaction id (the handler's idempotency memory).
    entries: HashMap<String, String>,
    agents: BTreeMap<String, AgentState>,
    counters: Counters,
    fail_rules: Vec<FailRule>,
    next_session: u64,
    next_interaction: u64,
    assign_seq: u64,
    /// (interaction id, agent) whose answer timer the caller must start.
    pending_answers: Vec<(String, String)>,
}

/// The handler contract (routing.md §4).
pub const OBJECT_ID: &str = "SalesforceObjectRouting";
pub const EVENT_ROUTE: &str = "RouteCase";
pub const EVENT_RESULT: &str = "RouteCaseResult";

impl SiteState {
    pub fn new(spec: SiteSpec) -> SiteState {
        let agents = spec
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    AgentState {
                        available: a.available,
                        last_assigned: 0,
                    },
                )
            })
            .collect();
        SiteState {
            spec,
            active: Which::Primary,
            latency: std::time::Duration::ZERO,
            sessions: HashMap::new(),
            interactions: BTreeMap::new(),
            entries: HashMap::new(),
            agents,
            counters: Counters::default(),
            fail_rules: Vec::new(),
            next_session: 0,
            next_interaction: 0,
            assign_seq: 0,
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

    fn purge_expired(&mut self) {
        let ttl = self.spec.timings.session_idle_ttl;
        self.sessions
            .retain(|_, s| s.open_streams > 0 || s.last_seen.elapsed() <= ttl);
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
            if let Some(s) = self.sessions.get(sid).filter(|s| s.server == server) {
                s.notify.notify_one();
                self.sessions.remove(sid);
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
        if let Some(s) = self.sessions.remove(sid) {
            s.notify.notify_one();
        }
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
            self.sessions.remove(sid);
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
        let before = self.sessions.len();
        self.sessions.retain(|_, s| {
            let keep = server.is_some_and(|w| s.server != w);
            if !keep {
                s.notify.notify_one();
            }
            keep
        });
        before - self.sessions.len()
    }

    // ---- queue and handler subscriptions ------------------------------------------------

    /// Validates the queues of a watch (user and workgroup queues of known names).
    pub fn check_queue(&self, queue_type: i64, name: &str) -> Result<u8, IcwsError> {
        match queue_type {
            2 if self.spec.workgroups.iter().any(|w| w.name == name) => Ok(2),
            1 if self.spec.agents.iter().any(|a| a.name == name)
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

    /// Creates or replaces a queue watch and queues its `isDelta:false` snapshot.
    pub fn watch_queues(
        &mut self,
        sid: &str,
        sub_id: &str,
        queues: Vec<(u8, String)>,
        attributes: Vec<String>,
    ) {
        let sub = QueueSub { queues, attributes };
        let added: Vec<Value> = self
            .interactions
            .values()
            .filter(|ix| ix.view().in_sub(&sub))
            .map(|ix| {
                json!({
                    "interactionId": ix.id,
                    "attributes": select_attrs(&ix.attributes, &sub.attributes),
                })
            })
            .collect();
        if let Some(s) = self.sessions.get_mut(sid) {
            s.queue_subs.insert(sub_id.to_owned(), sub);
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
        if let Some(s) = self.sessions.get_mut(sid) {
            s.queue_subs.remove(sub_id);
        }
    }

    pub fn set_handler_subs(&mut self, sid: &str, headers: Vec<(String, Vec<String>)>) {
        if let Some(s) = self.sessions.get_mut(sid) {
            s.handler_subs = headers
                .into_iter()
                .map(|(o, es)| {
                    (
                        o.to_lowercase(),
                        es.into_iter().map(|e| e.to_lowercase()).collect(),
                    )
                })
                .collect();
        }
    }

    /// Tells queue watchers how one interaction changed.
    fn publish(&mut self, id: &str, before: Option<View>, after: Option<View>) {
        for s in self.sessions.values_mut().filter(|s| !s.closing) {
            let mut msgs = Vec::new();
            for (sub_id, sub) in &s.queue_subs {
                let was = before.as_ref().is_some_and(|v| v.in_sub(sub));
                let now = after.as_ref().filter(|v| v.in_sub(sub));
                let (added, changed, removed) = match (was, now) {
                    (false, Some(v)) => (
                        vec![
                            json!({"interactionId": id, "attributes": select_attrs(&v.attributes, &sub.attributes)}),
                        ],
                        vec![],
                        vec![],
                    ),
                    (true, None) => (vec![], vec![], vec![json!(id)]),
                    (true, Some(v)) => {
                        let old = before
                            .as_ref()
                            .map(|b| select_attrs(&b.attributes, &sub.attributes))
                            .unwrap_or_default();
                        let diff: BTreeMap<String, String> =
                            select_attrs(&v.attributes, &sub.attributes)
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
                    (false, None) => continue,
                };
                msgs.push(json!({
                    "__type": "urn:inin.com:queues:queueContentsMessage",
                    "isDelta": true,
                    "subscriptionId": sub_id,
                    "interactionsAdded": added,
                    "interactionsChanged": changed,
                    "interactionsRemoved": removed,
                }));
            }
            for m in msgs {
                s.push(m);
            }
        }
    }

    fn send_handler_result(&mut self, data: Vec<String>) {
        let msg = json!({
            "__type": "urn:inin.com:system:handlerSentNotificationMessage",
            "isDelta": false,
            "objectId": OBJECT_ID,
            "eventId": EVENT_RESULT,
            "data": data,
        });
        let (obj, ev) = (OBJECT_ID.to_lowercase(), EVENT_RESULT.to_lowercase());
        for s in self.sessions.values_mut().filter(|s| !s.closing) {
            if s.handler_subs
                .iter()
                .any(|(o, es)| *o == obj && es.contains(&ev))
            {
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
        if let Some(existing) = self.entries.get(entry_id) {
            self.counters.duplicates_suppressed += 1;
            tracing::info!(entry_id = %entry_id, interaction = %existing, "duplicate RouteCase suppressed");
            return Ok(existing.clone());
        }
        let wg = self
            .spec
            .workgroups
            .iter()
            .find(|w| w.name == *workgroup)
            .ok_or_else(|| format!("unknown workgroup '{workgroup}'"))?;
        if !wg.routes_acd_email() {
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

        self.next_interaction += 1;
        let id = (1_001_000_000 + self.next_interaction).to_string();
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
            skills,
            attributes,
            agent: None,
            disconnected: false,
            lost: false,
            history: Vec::new(),
        };
        ix.record(HistoryEvent::Created, None);
        ix.record(HistoryEvent::Offered, None);
        let view = ix.view();
        self.interactions.insert(id.clone(), ix);
        self.entries.insert(entry_id.clone(), id.clone());
        self.counters.interactions_created += 1;
        tracing::info!(entry_id = %entry_id, interaction = %id, workgroup = %workgroup, "email interaction created");
        self.publish(&id, None, Some(view));
        self.run_acd();
        Ok(id)
    }

    // ---- ACD -----------------------------------------------------------------------------

    fn agent_load(&self, agent: &str) -> u32 {
        let n = self
            .interactions
            .values()
            .filter(|ix| ix.live() && ix.agent.as_deref() == Some(agent))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Assigns every waiting interaction (oldest first) to an eligible agent: available,
    /// member of the workgroup, every required skill, below utilization. Among those, the
    /// agent whose last assignment is oldest (never assigned first), then the lowest name.
    fn run_acd(&mut self) {
        let waiting: Vec<String> = self
            .interactions
            .values()
            .filter(|ix| ix.live() && ix.agent.is_none())
            .map(|ix| ix.id.clone())
            .collect();
        for id in waiting {
            let Some(ix) = self.interactions.get(&id) else {
                continue;
            };
            let Some(wg) = self.spec.workgroups.iter().find(|w| w.name == ix.workgroup) else {
                continue;
            };
            let chosen = self
                .spec
                .agents
                .iter()
                .filter(|a| wg.members.contains(&a.name))
                .filter(|a| self.agents.get(&a.name).is_some_and(|st| st.available))
                .filter(|a| {
                    ix.skills
                        .iter()
                        .all(|s| a.skills.iter().any(|have| have.name == *s))
                })
                .filter(|a| self.agent_load(&a.name) < a.utilization)
                .min_by_key(|a| {
                    (
                        self.agents.get(&a.name).map_or(0, |st| st.last_assigned),
                        a.name.clone(),
                    )
                })
                .map(|a| a.name.clone());
            if let Some(agent) = chosen {
                self.assign(&id, &agent);
            }
        }
    }

    fn assign(&mut self, id: &str, agent: &str) {
        self.assign_seq += 1;
        if let Some(st) = self.agents.get_mut(agent) {
            st.last_assigned = self.assign_seq;
        }
        let Some(ix) = self.interactions.get_mut(id) else {
            return;
        };
        let before = ix.view();
        ix.agent = Some(agent.to_owned());
        set_attr(&mut ix.attributes, "Eic_State", "A".to_owned());
        set_attr(
            &mut ix.attributes,
            "Eic_CallStateString",
            "Alerting".to_owned(),
        );
        set_attr(&mut ix.attributes, "Eic_UserName", agent.to_owned());
        ix.record(HistoryEvent::Assigned, Some(agent.to_owned()));
        let after = ix.view();
        tracing::info!(interaction = %id, agent, "interaction assigned");
        self.publish(id, Some(before), Some(after));
        self.pending_answers.push((id.to_owned(), agent.to_owned()));
    }

    /// The answer timer fired: the agent picks up if the interaction still alerts them.
    pub fn answer(&mut self, id: &str, agent: &str) {
        let Some(ix) = self.interactions.get_mut(id) else {
            return;
        };
        if !ix.live()
            || ix.agent.as_deref() != Some(agent)
            || attr(&ix.attributes, "Eic_State") != Some("A")
        {
            return;
        }
        let before = ix.view();
        set_attr(&mut ix.attributes, "Eic_State", "C".to_owned());
        set_attr(
            &mut ix.attributes,
            "Eic_CallStateString",
            "Connected".to_owned(),
        );
        ix.record(HistoryEvent::Connected, Some(agent.to_owned()));
        let after = ix.view();
        self.publish(id, Some(before), Some(after));
    }

    pub fn set_agent_available(&mut self, agent: &str, available: bool) -> bool {
        let Some(st) = self.agents.get_mut(agent) else {
            return false;
        };
        st.available = available;
        tracing::info!(agent, available, "agent availability changed");
        self.run_acd();
        true
    }

    // ---- interactions through ICWS --------------------------------------------------------

    fn known(&self, id: &str) -> Result<&Interaction, IcwsError> {
        self.interactions
            .get(id)
            .filter(|ix| !ix.lost)
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
        let ix = self.known(id)?;
        let names = select.unwrap_or_else(|| vec!["Eic_CallId".to_owned()]);
        Ok(select_attrs(&ix.attributes, &names))
    }

    /// `POST …/interactions/{id}`: appendMode 1 appends, 2 appends after a `|`, else overwrite.
    pub fn set_attributes(
        &mut self,
        id: &str,
        attrs: Vec<(String, String)>,
        append_mode: Option<i64>,
    ) -> Result<(), IcwsError> {
        self.known(id)?;
        let Some(ix) = self.interactions.get_mut(id) else {
            return Ok(());
        };
        let before = ix.view();
        for (k, v) in attrs {
            let value = match (append_mode, attr(&ix.attributes, &k)) {
                (Some(1), Some(old)) => format!("{old}{v}"),
                (Some(2), Some(old)) if !old.is_empty() => format!("{old}|{v}"),
                _ => v,
            };
            set_attr(&mut ix.attributes, &k, value);
        }
        let after = ix.view();
        self.publish(id, Some(before), Some(after));
        Ok(())
    }

    /// `POST …/interactions/{id}/disconnect`: state I, out of every queue. Disconnecting a
    /// disconnected interaction is a no-op.
    pub fn disconnect(&mut self, id: &str) -> Result<(), IcwsError> {
        self.known(id)?;
        let Some(ix) = self.interactions.get_mut(id) else {
            return Ok(());
        };
        if ix.disconnected {
            return Ok(());
        }
        let before = ix.view();
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
        let after = ix.view();
        self.counters.disconnects += 1;
        tracing::info!(interaction = %id, "interaction disconnected");
        self.publish(id, Some(before), Some(after));
        self.run_acd();
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
            let mut lost = 0;
            for ix in self.interactions.values_mut().filter(|ix| !ix.lost) {
                if ix.live() {
                    let agent = ix.agent.clone();
                    ix.record(HistoryEvent::Lost, agent);
                    lost += 1;
                }
                ix.lost = true;
            }
            self.entries.clear();
            self.counters.interactions_lost += lost;
        }
        tracing::info!(active = self.active.as_str(), recovery, "switchover");
        self.active
    }

    pub fn interactions(&self) -> Vec<InteractionInfo> {
        self.interactions.values().map(Interaction::info).collect()
    }

    pub fn live_interactions_for_case(&self, case_id: &str) -> Vec<InteractionInfo> {
        self.interactions
            .values()
            .filter(|ix| ix.live() && ix.case_id == case_id)
            .map(Interaction::info)
            .collect()
    }
}
