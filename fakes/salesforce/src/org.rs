//! The org: records, sessions, query locators, API counters and injected faults, all behind the
//! one mutex of [`crate::FakeSalesforce`]. Every write (REST, composite, `OrgActor`, org set-up)
//! goes through [`Org::create`], [`Org::update`] or [`Org::delete`], which run the routing
//! trigger and evaluate PushTopics. Streaming side effects are returned as [`Effect`]s, to be
//! applied after the lock is released.
//!
//! Nothing on a write or a query path looks at every record: records live in an indexed
//! [`Store`], the trigger finds a case's last row through the `Case__c` index, PushTopics are
//! compiled once per change of a PushTopic, and queries read only the records their WHERE can
//! match (see [`Store::candidates`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sors_fake_cometd::EventType;

use crate::error::ApiError;
use crate::ids;
use crate::schema::{
    self, CASE_OBJ, COMMENT_OBJ, EMAIL_OBJ, FieldDef, FieldType, GROUP_OBJ, MAPPING_OBJ, ObjectDef,
    PUSHTOPIC_OBJ, ROW_OBJ, USER_OBJ,
};
use crate::soql::{self, Query, SValue};
use crate::spec::{OAuthClientSpec, OrgSpec};
use crate::store::Store;
use crate::trigger::{self, CaseView, Change, LastRow, Monitored};

/// The API version used for record URLs when no request gave one.
pub const DEFAULT_VERSION: &str = "v66.0";
const POD: &str = "5g0";
const MAX_LOCATORS: usize = 100;

/// A streaming side effect of a write.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Publish {
        channel: String,
        event_type: EventType,
        sobject: Value,
    },
    ClearChannel(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub object: &'static ObjectDef,
    pub fields: BTreeMap<&'static str, Value>,
    /// Creation order.
    pub seq: u64,
    pub deleted: bool,
}

impl Record {
    pub fn id(&self) -> &str {
        self.str("Id").unwrap_or_default()
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    fn bool(&self, field: &str) -> bool {
        self.fields
            .get(field)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The typed value SOQL sees.
    pub fn svalue(&self, field: &str) -> SValue {
        let ty = self.object.field(field).map(|f| f.ty);
        match (self.fields.get(field), ty) {
            (None | Some(Value::Null), _) => SValue::Null,
            (Some(Value::String(s)), Some(FieldType::DateTime)) => soql::parse_datetime(s)
                .map(SValue::DateTime)
                .unwrap_or(SValue::Null),
            (Some(Value::String(s)), _) => SValue::Str(s.clone()),
            (Some(Value::Bool(b)), _) => SValue::Bool(*b),
            (Some(Value::Number(n)), _) => n.as_f64().map(SValue::Num).unwrap_or(SValue::Null),
            (Some(_), _) => SValue::Null,
        }
    }

    /// REST JSON: `attributes` plus the given fields (all fields when `None`).
    pub fn to_json(&self, fields: Option<&[String]>, version: &str) -> Value {
        let mut m = Map::new();
        m.insert(
            "attributes".into(),
            json!({
                "type": self.object.name,
                "url": format!("/services/data/{version}/sobjects/{}/{}", self.object.name, self.id()),
            }),
        );
        let mut put = |name: &str| {
            m.insert(
                name.to_owned(),
                self.fields.get(name).cloned().unwrap_or(Value::Null),
            );
        };
        match fields {
            Some(list) => list.iter().for_each(|f| put(f)),
            None => self.object.all_fields().for_each(|f| put(f.name)),
        }
        Value::Object(m)
    }
}

/// API calls by kind: how the project measures the cost of routing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApiCounters {
    pub login: u64,
    pub query: u64,
    pub query_more: u64,
    pub create: u64,
    pub read: u64,
    pub update: u64,
    pub delete: u64,
    pub composite: u64,
    pub limits: u64,
    /// HTTP requests to `/cometd/...`.
    pub streaming: u64,
}

/// The kinds of calls, for counting and for `fail_next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Login,
    Query,
    QueryMore,
    Create,
    Read,
    Update,
    Delete,
    Composite,
    Limits,
    Streaming,
    /// Only for `fail_next`: the next calls of any kind.
    Any,
}

/// The error an injected failure answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum InjectedError {
    /// HTTP 503, `SERVER_UNAVAILABLE`.
    #[serde(rename = "503")]
    ServiceUnavailable,
    /// HTTP 403, `REQUEST_LIMIT_EXCEEDED`.
    #[serde(rename = "REQUEST_LIMIT_EXCEEDED")]
    RequestLimitExceeded,
    /// HTTP 400, `UNABLE_TO_LOCK_ROW`.
    #[serde(rename = "UNABLE_TO_LOCK_ROW")]
    UnableToLockRow,
}

impl InjectedError {
    pub fn api_error(self) -> ApiError {
        match self {
            InjectedError::ServiceUnavailable => ApiError::new(
                503,
                "SERVER_UNAVAILABLE",
                "Server is temporarily unavailable. Please try again later.",
            ),
            InjectedError::RequestLimitExceeded => ApiError::request_limit(),
            InjectedError::UnableToLockRow => ApiError::new(
                400,
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to this record",
            ),
        }
    }
}

struct Session {
    user_id: String,
    last_used: Instant,
}

/// A query cursor: the matching records as they were when the query ran (immutable
/// snapshots), rendered page by page.
struct Locator {
    records: Vec<Arc<Record>>,
    fields: Vec<String>,
    version: String,
    batch: usize,
}

/// A PushTopic, parsed and bound once (rebuilt when any PushTopic changes).
struct Topic {
    channel: String,
    object: &'static str,
    query: Query,
    notify_for_fields: String,
    create: bool,
    update: bool,
    delete: bool,
    undelete: bool,
}

/// One page of a query result.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPage {
    pub total_size: usize,
    pub records: Vec<Value>,
    pub next_records_url: Option<String>,
}

impl QueryPage {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "totalSize": self.total_size,
            "done": self.next_records_url.is_none(),
            "records": self.records,
        });
        if let (Some(url), Some(m)) = (&self.next_records_url, v.as_object_mut()) {
            m.insert("nextRecordsUrl".into(), json!(url));
        }
        v
    }
}

struct Credentials {
    user_id: String,
    login_password: String,
    username: String,
}

pub struct Org {
    pub org_id: String,
    pub name: String,
    pub sandbox: bool,
    pub daily_api_requests: u64,
    pub allow_username_password_flow: bool,
    store: Store,
    next_number: HashMap<&'static str, u64>,
    seq: u64,
    /// What an all-or-none operation restores besides the records.
    txn: Option<(HashMap<&'static str, u64>, u64)>,
    /// Active PushTopics, compiled for the store's `topics_version`.
    topics: Option<(u64, Arc<Vec<Topic>>)>,
    last_time: DateTime<Utc>,
    credentials: Vec<Credentials>,
    clients: Vec<OAuthClientSpec>,
    sessions: HashMap<String, Session>,
    session_ttl: Duration,
    locators: HashMap<String, Locator>,
    locator_order: VecDeque<String>,
    pub api_used: u64,
    pub counters: ApiCounters,
    pub latency: Duration,
    pub(crate) fail_next: Vec<(CallKind, u32, InjectedError)>,
    org_counter: u64,
}

fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn invalid_field_for_update(name: &str) -> ApiError {
    ApiError::new(
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        format!("Unable to create/update fields: {name}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."),
    )
    .with_fields(&[name])
}

fn deserialize_error(def: &FieldDef, value: &Value) -> ApiError {
    let token = match value {
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(b) => {
            if *b {
                "VALUE_TRUE"
            } else {
                "VALUE_FALSE"
            }
        }
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::Null => "VALUE_NULL",
    };
    ApiError::json_parser(format!(
        "Cannot deserialize instance of {} from {token} value for field {}",
        def.ty.type_name(),
        def.name
    ))
}

impl Org {
    /// Builds the org of `spec`: users, queues, then mappings through the normal write path.
    pub fn new(spec: &OrgSpec, session_ttl: Duration) -> Result<Org, ApiError> {
        let mut org = Org {
            org_id: String::new(),
            name: spec.name.clone(),
            sandbox: spec.sandbox,
            daily_api_requests: spec.daily_api_requests,
            allow_username_password_flow: spec.allow_username_password_flow,
            store: Store::default(),
            next_number: HashMap::new(),
            seq: 0,
            txn: None,
            topics: None,
            last_time: DateTime::<Utc>::MIN_UTC,
            credentials: Vec::new(),
            clients: spec.oauth_clients.clone(),
            sessions: HashMap::new(),
            session_ttl,
            locators: HashMap::new(),
            locator_order: VecDeque::new(),
            api_used: 0,
            counters: ApiCounters::default(),
            latency: Duration::ZERO,
            fail_next: Vec::new(),
            org_counter: 0,
        };
        org.new_org_id();
        // Users first; the first user creates everything else.
        let mut admin: Option<String> = None;
        for u in &spec.users {
            let creator = admin.clone().unwrap_or_default();
            let mut fields =
                json!({"Username": u.username, "LastName": u.last_name, "Email": u.email});
            if let (Some(first), Some(m)) = (&u.first_name, fields.as_object_mut()) {
                m.insert("FirstName".into(), json!(first));
            }
            let (id, _) = org.create_as(&creator, USER_OBJ, &fields, true)?;
            if admin.is_none() {
                admin = Some(id.clone());
                // The first user created itself.
                if let Some(r) = org.store.by_id(&id) {
                    let mut r = Record::clone(r);
                    r.fields.insert("CreatedById", json!(id));
                    r.fields.insert("LastModifiedById", json!(id));
                    org.store.replace(r);
                }
            }
            org.credentials.push(Credentials {
                user_id: id,
                login_password: format!("{}{}", u.password, u.security_token),
                username: u.username.clone(),
            });
        }
        let admin = admin.unwrap_or_default();
        for q in &spec.queues {
            org.create(&admin, GROUP_OBJ, &json!({"Name": q.name, "Type": "Queue"}))?;
        }
        for m in &spec.mappings {
            org.create(
                &admin,
                MAPPING_OBJ,
                &json!({"Salesforce_Queue_Name__c": m.queue, "CIC_Workgroup_Name__c": m.workgroup}),
            )?;
        }
        Ok(org)
    }

    fn new_org_id(&mut self) {
        self.org_counter += 1;
        let n = u64::from(rand::rng().random::<u32>()) * 1000 + self.org_counter;
        self.org_id = ids::make("00D", POD, n);
    }

    /// The 15-character org id (as in `serverUrl` and session ids).
    pub fn org_id15(&self) -> &str {
        self.org_id.get(..15).unwrap_or(&self.org_id)
    }

    /// Strictly increasing timestamps at the millisecond precision they are stored with, so
    /// `CreatedDate` orders records (no two records share one).
    fn now(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = now
            .with_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(now);
        let t = if now > self.last_time {
            now
        } else {
            self.last_time + chrono::Duration::milliseconds(1)
        };
        self.last_time = t;
        t
    }

    // ------------------------------------------------------------ sessions, clients

    /// Checks `username` / `password` (+ security token); returns a new session and the user id.
    pub fn login(&mut self, username: &str, password: &str) -> Option<(String, String)> {
        let cred = self
            .credentials
            .iter()
            .find(|c| c.username.eq_ignore_ascii_case(username) && c.login_password == password)?;
        let user_id = cred.user_id.clone();
        let active = self
            .store
            .by_id(&user_id)
            .is_some_and(|u| u.bool("IsActive") && !u.deleted);
        active.then(|| (self.new_session(&user_id), user_id))
    }

    /// A session for the run-as user of an OAuth client, if the id and secret are right.
    pub fn client_login(
        &mut self,
        client_id: &str,
        secret: &str,
    ) -> Result<(String, String), &'static str> {
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .ok_or("invalid_client_id")?;
        if client.client_secret != secret {
            return Err("invalid_client");
        }
        let run_as = client.run_as.clone();
        let user_id = self
            .credentials
            .iter()
            .find(|c| c.username.eq_ignore_ascii_case(&run_as))
            .map(|c| c.user_id.clone())
            .ok_or("invalid_client")?;
        Ok((self.new_session(&user_id), user_id))
    }

    /// Is this a known OAuth client with this secret?
    pub fn client_ok(&self, client_id: &str, secret: &str) -> Result<(), &'static str> {
        match self.clients.iter().find(|c| c.client_id == client_id) {
            None => Err("invalid_client_id"),
            Some(c) if c.client_secret != secret => Err("invalid_client"),
            Some(_) => Ok(()),
        }
    }

    fn new_session(&mut self, user_id: &str) -> String {
        let sid = format!("{}!AQ{}", self.org_id15(), random_alnum(94));
        self.sessions.insert(
            sid.clone(),
            Session {
                user_id: user_id.to_owned(),
                last_used: Instant::now(),
            },
        );
        sid
    }

    /// The user of a valid session; every use extends it (`sessionSecondsValid` is an
    /// inactivity timeout).
    pub fn session_user(&mut self, sid: &str) -> Option<String> {
        let ttl = self.session_ttl;
        let s = self.sessions.get_mut(sid)?;
        if s.last_used.elapsed() > ttl {
            self.sessions.remove(sid);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.user_id.clone())
    }

    pub fn session_seconds_valid(&self) -> u64 {
        self.session_ttl.as_secs()
    }

    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    pub fn user_id_by_username(&self, username: &str) -> Option<String> {
        self.credentials
            .iter()
            .find(|c| c.username.eq_ignore_ascii_case(username))
            .map(|c| c.user_id.clone())
    }

    /// The org's first user (the one that created its records).
    pub fn first_user_id(&self) -> Option<String> {
        self.credentials.first().map(|c| c.user_id.clone())
    }

    /// Routing rows by `Status__c` as stored (a missing status as `""`), and how many in all,
    /// read from the status index: no record is visited.
    pub fn row_counts(&self) -> (usize, BTreeMap<String, usize>) {
        let mut by_status = BTreeMap::new();
        let mut total = 0;
        for (seq, n) in self.store.index_counts(ROW_OBJ, "Status__c") {
            let status = self
                .store
                .get(seq)
                .and_then(|r| r.str("Status__c"))
                .unwrap_or_default()
                .to_owned();
            *by_status.entry(status).or_insert(0) += n;
            total += n;
        }
        (total, by_status)
    }

    pub fn record(&self, id: &str) -> Option<&Record> {
        self.store.by_id(id).map(|r| &**r)
    }

    // ------------------------------------------------------------ counters and faults

    pub fn count(&mut self, kind: CallKind) {
        let c = &mut self.counters;
        match kind {
            CallKind::Login => c.login += 1,
            CallKind::Query => c.query += 1,
            CallKind::QueryMore => c.query_more += 1,
            CallKind::Create => c.create += 1,
            CallKind::Read => c.read += 1,
            CallKind::Update => c.update += 1,
            CallKind::Delete => c.delete += 1,
            CallKind::Composite => c.composite += 1,
            CallKind::Limits => c.limits += 1,
            CallKind::Streaming => c.streaming += 1,
            CallKind::Any => {}
        }
    }

    pub fn add_fail_next(&mut self, kind: CallKind, count: u32, error: InjectedError) {
        if count > 0 {
            self.fail_next.push((kind, count, error));
        }
    }

    /// Consumes one injected failure for a call of this kind, if one is pending.
    pub fn take_failure(&mut self, kind: CallKind) -> Option<InjectedError> {
        let pos = self
            .fail_next
            .iter()
            .position(|(k, _, _)| *k == kind || *k == CallKind::Any)?;
        let entry = self.fail_next.get_mut(pos)?;
        entry.1 -= 1;
        let err = entry.2;
        if entry.1 == 0 {
            self.fail_next.remove(pos);
        }
        Some(err)
    }

    /// Sandbox refresh: new org id, PushTopics deleted, sessions and query locators gone.
    /// Returns the channels to clear.
    pub fn sandbox_refresh(&mut self) -> Vec<Effect> {
        self.new_org_id();
        self.sessions.clear();
        self.locators.clear();
        self.locator_order.clear();
        let topics: Vec<u64> = self.store.all(PUSHTOPIC_OBJ).map(|r| r.seq).collect();
        let mut effects = Vec::new();
        for seq in topics {
            if let Some(r) = self.store.remove(seq) {
                effects.push(Effect::ClearChannel(format!(
                    "/topic/{}",
                    r.str("Name").unwrap_or_default()
                )));
            }
        }
        effects
    }

    pub fn dump(&self) -> Value {
        let mut objects = Map::new();
        for obj in schema::OBJECTS {
            let recs: Vec<Value> = self
                .store
                .all(obj.name)
                .map(|r| {
                    let mut v = r.to_json(None, DEFAULT_VERSION);
                    if let Some(m) = v.as_object_mut() {
                        m.insert("IsDeleted".into(), json!(r.deleted));
                    }
                    v
                })
                .collect();
            objects.insert(obj.name.to_owned(), Value::Array(recs));
        }
        json!({
            "orgId": self.org_id,
            "organizationName": self.name,
            "sandbox": self.sandbox,
            "apiUsage": {"used": self.api_used, "max": self.daily_api_requests},
            "activeSessions": self.sessions.len(),
            "objects": objects,
        })
    }

    // ------------------------------------------------------------ queries

    /// Runs a SOQL query; `batch` records per page, the rest behind a locator.
    pub fn query(
        &mut self,
        text: &str,
        version: &str,
        batch: usize,
    ) -> Result<QueryPage, ApiError> {
        let mut q = soql::parse(text)?;
        let obj = q.bind()?;
        let found = self.select(obj, &q);
        Ok(self.page(found, q.fields, version, batch))
    }

    /// The live records matching a bound query, in ORDER BY order (ties: creation order), at
    /// most LIMIT of them. Only the records the WHERE can match are read; ordering by
    /// `CreatedDate` first is creation order (it is unique and grows with every record), so
    /// it needs no sort and a LIMIT stops early.
    fn select(&self, obj: &'static ObjectDef, q: &Query) -> Vec<Arc<Record>> {
        let limit = q
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let candidates = self.store.candidates(obj.name, q.filter.as_ref());
        let matching = |seq: u64| {
            self.store
                .get(seq)
                .filter(|r| r.object.name == obj.name && !r.deleted)
                .filter(|r| q.matches(&|f| r.svalue(f)))
        };
        match q.order_by.first() {
            None => candidates
                .iter()
                .filter_map(matching)
                .take(limit)
                .cloned()
                .collect(),
            Some(o) if o.field == "CreatedDate" && !o.descending => candidates
                .iter()
                .filter_map(matching)
                .take(limit)
                .cloned()
                .collect(),
            Some(o) if o.field == "CreatedDate" => candidates
                .iter()
                .rev()
                .filter_map(matching)
                .take(limit)
                .cloned()
                .collect(),
            Some(_) => {
                let mut keyed: Vec<(Vec<SValue>, &Arc<Record>)> = candidates
                    .iter()
                    .filter_map(matching)
                    .map(|r| (q.sort_key(&|f| r.svalue(f)), r))
                    .collect();
                let order = |a: &(Vec<SValue>, &Arc<Record>), b: &(Vec<SValue>, &Arc<Record>)| {
                    q.compare_keys(&a.0, &b.0).then(a.1.seq.cmp(&b.1.seq))
                };
                if limit < keyed.len() {
                    keyed.select_nth_unstable_by(limit, order);
                    keyed.truncate(limit);
                }
                keyed.sort_by(order);
                keyed.into_iter().map(|(_, r)| r.clone()).collect()
            }
        }
    }

    fn page(
        &mut self,
        found: Vec<Arc<Record>>,
        fields: Vec<String>,
        version: &str,
        batch: usize,
    ) -> QueryPage {
        let total_size = found.len();
        let render = |recs: &[Arc<Record>]| -> Vec<Value> {
            recs.iter()
                .map(|r| r.to_json(Some(&fields), version))
                .collect()
        };
        if total_size <= batch {
            return QueryPage {
                total_size,
                records: render(&found),
                next_records_url: None,
            };
        }
        let first = render(found.get(..batch).unwrap_or_default());
        let locator = format!("01g{POD}{}", random_alnum(9));
        let next = format!("/services/data/{version}/query/{locator}-{batch}");
        self.locators.insert(
            locator.clone(),
            Locator {
                records: found,
                fields,
                version: version.to_owned(),
                batch,
            },
        );
        self.locator_order.push_back(locator);
        while self.locator_order.len() > MAX_LOCATORS {
            if let Some(old) = self.locator_order.pop_front() {
                self.locators.remove(&old);
            }
        }
        QueryPage {
            total_size,
            records: first,
            next_records_url: Some(next),
        }
    }

    /// The page at `{locator}-{offset}`: rendered from the snapshot the query took.
    pub fn query_more(&self, locator_offset: &str, version: &str) -> Result<QueryPage, ApiError> {
        let bad = || ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
        let (locator, offset) = locator_offset.rsplit_once('-').ok_or_else(bad)?;
        let offset: usize = offset.parse().map_err(|_| bad())?;
        let loc = self.locators.get(locator).ok_or_else(bad)?;
        let total_size = loc.records.len();
        if offset >= total_size {
            return Err(bad());
        }
        let records: Vec<Value> = loc
            .records
            .iter()
            .skip(offset)
            .take(loc.batch)
            .map(|r| r.to_json(Some(&loc.fields), &loc.version))
            .collect();
        let end = offset + records.len();
        Ok(QueryPage {
            total_size,
            records,
            next_records_url: (end < total_size)
                .then(|| format!("/services/data/{version}/query/{locator}-{end}")),
        })
    }

    /// One live record of `object` (a REST path type, case-insensitive).
    pub fn get(&self, object: &str, id: &str, version: &str) -> Result<Value, ApiError> {
        let obj = rest_object(object)?;
        let id = ids::normalize(id).ok_or_else(ApiError::not_found)?;
        match self.store.by_id(&id) {
            Some(r) if r.object.name == obj.name && !r.deleted => Ok(r.to_json(None, version)),
            _ => Err(ApiError::not_found()),
        }
    }

    // ------------------------------------------------------------ writes

    /// Creates a record as `user_id`; returns its id and the streaming effects.
    pub fn create(
        &mut self,
        user_id: &str,
        object: &str,
        input: &Value,
    ) -> Result<(String, Vec<Effect>), ApiError> {
        self.create_as(user_id, object, input, false)
    }

    fn create_as(
        &mut self,
        user_id: &str,
        object: &str,
        input: &Value,
        system: bool,
    ) -> Result<(String, Vec<Effect>), ApiError> {
        let obj = rest_object(object)?;
        let given = self.convert_input(obj, input, true, system)?;
        let mut fields: BTreeMap<&'static str, Value> = BTreeMap::new();
        for (k, v) in given {
            fields.insert(k, v);
        }
        self.apply_defaults(obj, user_id, &mut fields);
        for f in obj.fields.iter().filter(|f| f.required) {
            if fields.get(f.name).is_none_or(Value::is_null) {
                return Err(ApiError::new(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", f.name),
                )
                .with_fields(&[f.name]));
            }
        }
        self.before_save(obj, &mut fields, None)?;
        let number = self.next_number.entry(obj.key_prefix).or_insert(0);
        *number += 1;
        let n = *number;
        let id = ids::make(obj.key_prefix, POD, n);
        let now = json!(soql::format_datetime(self.now()));
        fields.insert("Id", json!(id));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            fields.insert(f, now.clone());
        }
        fields.insert("CreatedById", json!(user_id));
        fields.insert("LastModifiedById", json!(user_id));
        match obj.name {
            CASE_OBJ => {
                fields.insert("CaseNumber", json!(format!("{:08}", 1000 + n)));
            }
            MAPPING_OBJ => {
                fields.insert("Name", json!(format!("IRQ-{n:04}")));
            }
            ROW_OBJ => {
                fields.insert("Name", json!(format!("ORQ-{n:06}")));
            }
            _ => {}
        }
        self.seq += 1;
        let record = Record {
            object: obj,
            fields,
            seq: self.seq,
            deleted: false,
        };
        let mut effects = self.pushtopic_effects(&record, EventType::Created, None);
        self.store.insert(record);
        effects.extend(self.after_insert(obj, &id, user_id)?);
        Ok((id, effects))
    }

    /// Updates a record; `object` is the REST path type (`None` for collections, where the
    /// id decides).
    pub fn update(
        &mut self,
        user_id: &str,
        object: Option<&str>,
        id: &str,
        input: &Value,
    ) -> Result<Vec<Effect>, ApiError> {
        let (obj, id) = self.locate(object, id)?;
        let given = self.convert_input(obj, input, false, false)?;
        let old = self
            .store
            .by_id(&id)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let mut fields = old.fields.clone();
        for (k, v) in given {
            fields.insert(k, v);
        }
        if obj.name == CASE_OBJ && fields.get("OwnerId").is_none_or(Value::is_null) {
            return Err(ApiError::new(
                400,
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [OwnerId]",
            )
            .with_fields(&["OwnerId"]));
        }
        for f in obj.fields.iter().filter(|f| f.required) {
            if fields.get(f.name).is_none_or(Value::is_null) {
                return Err(ApiError::new(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", f.name),
                )
                .with_fields(&[f.name]));
            }
        }
        self.before_save(obj, &mut fields, Some(&id))?;
        let changed: BTreeSet<&'static str> = obj
            .all_fields()
            .map(|f| f.name)
            .filter(|f| fields.get(f) != old.fields.get(f))
            .collect();
        let now = json!(soql::format_datetime(self.now()));
        fields.insert("LastModifiedDate", now.clone());
        fields.insert("SystemModstamp", now);
        fields.insert("LastModifiedById", json!(user_id));
        let record = Record {
            object: old.object,
            fields,
            seq: old.seq,
            deleted: old.deleted,
        };
        let mut effects = self.pushtopic_effects(&record, EventType::Updated, Some(&changed));
        if obj.name == PUSHTOPIC_OBJ {
            let old_name = old.str("Name").unwrap_or_default();
            let deactivated = old.bool("IsActive") && !record.bool("IsActive");
            if deactivated || record.str("Name") != Some(old_name) {
                effects.push(Effect::ClearChannel(format!("/topic/{old_name}")));
            }
        }
        self.store.replace(record);
        if obj.name == CASE_OBJ {
            effects.extend(self.after_case_update(&old, &id, user_id)?);
        }
        Ok(effects)
    }

    pub fn delete(&mut self, object: &str, id: &str) -> Result<Vec<Effect>, ApiError> {
        let (obj, id) = self.locate(Some(object), id)?;
        let mut effects = Vec::new();
        if let Some(r) = self.store.by_id(&id).cloned() {
            effects = self.pushtopic_effects(&r, EventType::Deleted, None);
            if obj.name == PUSHTOPIC_OBJ {
                effects.push(Effect::ClearChannel(format!(
                    "/topic/{}",
                    r.str("Name").unwrap_or_default()
                )));
            }
            self.store.replace(Record {
                deleted: true,
                ..Record::clone(&r)
            });
        }
        Ok(effects)
    }

    /// Starts an all-or-none operation: [`Org::rollback`] undoes every write since.
    pub fn begin(&mut self) {
        self.store.begin();
        self.txn = Some((self.next_number.clone(), self.seq));
    }

    /// Keeps the writes of the all-or-none operation.
    pub fn commit(&mut self) {
        self.store.commit();
        self.txn = None;
    }

    /// Undoes every write since [`Org::begin`] (numbering included), newest first.
    pub fn rollback(&mut self) {
        self.store.rollback();
        if let Some((next_number, seq)) = self.txn.take() {
            self.next_number = next_number;
            self.seq = seq;
        }
    }

    /// The live record to write: the id must exist and belong to `object` when one is given.
    fn locate(
        &self,
        object: Option<&str>,
        id: &str,
    ) -> Result<(&'static ObjectDef, String), ApiError> {
        let path_obj = object.map(rest_object).transpose()?;
        let id = ids::normalize(id).ok_or_else(|| match path_obj {
            Some(_) => ApiError::not_found(),
            None => ApiError::new(400, "MALFORMED_ID", format!("malformed id {id}")),
        })?;
        let r = self.store.by_id(&id).ok_or_else(ApiError::not_found)?;
        if path_obj.is_some_and(|o| o.name != r.object.name) {
            return Err(ApiError::not_found());
        }
        if r.deleted {
            return Err(ApiError::entity_deleted());
        }
        Ok((r.object, id))
    }

    /// Checks and converts client JSON into stored values.
    fn convert_input(
        &self,
        obj: &'static ObjectDef,
        input: &Value,
        create: bool,
        system: bool,
    ) -> Result<Vec<(&'static str, Value)>, ApiError> {
        let map = input.as_object().ok_or_else(|| {
            ApiError::json_parser("Expected a JSON object with the record's fields")
        })?;
        let mut out = Vec::new();
        for (key, value) in map {
            if key == "attributes" {
                continue;
            }
            let def = obj.field(key).ok_or_else(|| {
                ApiError::new(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", obj.name),
                )
                .with_fields(&[])
            })?;
            if def.name == "Id" && !create {
                continue;
            }
            if !def.writable && !system {
                return Err(invalid_field_for_update(def.name));
            }
            out.push((def.name, self.convert_value(def, value)?));
        }
        Ok(out)
    }

    fn convert_value(&self, def: &'static FieldDef, value: &Value) -> Result<Value, ApiError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let too_long = |max: usize| {
            ApiError::new(
                400,
                "STRING_TOO_LONG",
                format!("{}: data value too large (max length={max})", def.name),
            )
            .with_fields(&[def.name])
        };
        match def.ty {
            FieldType::Text(max) => {
                let s = value
                    .as_str()
                    .ok_or_else(|| deserialize_error(def, value))?;
                if s.chars().count() > max {
                    return Err(too_long(max));
                }
                Ok(json!(s))
            }
            FieldType::TextArea | FieldType::AutoNumber => {
                let s = value
                    .as_str()
                    .ok_or_else(|| deserialize_error(def, value))?;
                if s.chars().count() > 32_000 {
                    return Err(too_long(32_000));
                }
                Ok(json!(s))
            }
            FieldType::Number => value
                .as_f64()
                .map(|n| json!(n))
                .ok_or_else(|| deserialize_error(def, value)),
            FieldType::Checkbox => value
                .as_bool()
                .map(|b| json!(b))
                .ok_or_else(|| deserialize_error(def, value)),
            FieldType::DateTime => {
                let s = value
                    .as_str()
                    .ok_or_else(|| deserialize_error(def, value))?;
                let d = soql::parse_datetime(s).ok_or_else(|| {
                    ApiError::json_parser(format!("Cannot deserialize value of type dateTime from String for field {}: not a valid date-time", def.name))
                })?;
                Ok(json!(soql::format_datetime(d)))
            }
            FieldType::Id | FieldType::Reference(_) => {
                let s = value
                    .as_str()
                    .ok_or_else(|| deserialize_error(def, value))?;
                let id = ids::normalize(s).ok_or_else(|| {
                    ApiError::new(
                        400,
                        "MALFORMED_ID",
                        format!("{}: id value of incorrect type: {s}", def.name),
                    )
                    .with_fields(&[def.name])
                })?;
                if let FieldType::Reference(targets) = def.ty {
                    let ok = self
                        .store
                        .by_id(&id)
                        .is_some_and(|r| !r.deleted && targets.contains(&r.object.name));
                    if !ok {
                        return Err(ApiError::new(
                            400,
                            "INVALID_CROSS_REFERENCE_KEY",
                            format!("invalid cross reference id for field {}", def.name),
                        )
                        .with_fields(&[def.name]));
                    }
                }
                Ok(json!(id))
            }
        }
    }

    fn apply_defaults(
        &self,
        obj: &ObjectDef,
        user_id: &str,
        fields: &mut BTreeMap<&'static str, Value>,
    ) {
        let mut default = |k: &'static str, v: Value| {
            if fields.get(k).is_none_or(Value::is_null) {
                fields.insert(k, v);
            }
        };
        match obj.name {
            USER_OBJ => default("IsActive", json!(true)),
            CASE_OBJ => {
                default("OwnerId", json!(user_id));
                default("Status", json!("New"));
            }
            COMMENT_OBJ => default("IsPublished", json!(false)),
            EMAIL_OBJ => default("Incoming", json!(false)),
            ROW_OBJ => {
                default("Status__c", json!("New"));
                default("Attempts__c", json!(0.0));
            }
            PUSHTOPIC_OBJ => {
                default("IsActive", json!(true));
                default("NotifyForFields", json!("Referenced"));
                for op in ["Create", "Update", "Delete", "Undelete"] {
                    let name = match op {
                        "Create" => "NotifyForOperationCreate",
                        "Update" => "NotifyForOperationUpdate",
                        "Delete" => "NotifyForOperationDelete",
                        _ => "NotifyForOperationUndelete",
                    };
                    default(name, json!(true));
                }
            }
            _ => {}
        }
    }

    /// Validation and derived fields, for create (`id` None) and update.
    fn before_save(
        &self,
        obj: &ObjectDef,
        fields: &mut BTreeMap<&'static str, Value>,
        id: Option<&str>,
    ) -> Result<(), ApiError> {
        let text = |fields: &BTreeMap<&'static str, Value>, k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let others = |name: &'static str| self.store.live(name).filter(move |r| Some(r.id()) != id);
        match obj.name {
            USER_OBJ => {
                let username = text(fields, "Username");
                if others(USER_OBJ).any(|u| {
                    u.str("Username")
                        .is_some_and(|n| n.eq_ignore_ascii_case(&username))
                }) {
                    return Err(
                        ApiError::new(400, "DUPLICATE_USERNAME", "Duplicate Username.")
                            .with_fields(&["Username"]),
                    );
                }
                let first = text(fields, "FirstName");
                let name = format!("{first} {}", text(fields, "LastName"));
                fields.insert("Name", json!(name.trim()));
            }
            GROUP_OBJ => {
                let ty = text(fields, "Type");
                if ty != "Queue" && ty != "Regular" {
                    return Err(ApiError::new(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("Type: bad value for restricted picklist field: {ty}"),
                    )
                    .with_fields(&["Type"]));
                }
                if fields.get("DeveloperName").is_none_or(Value::is_null) {
                    let dev: String = text(fields, "Name")
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    fields.insert("DeveloperName", json!(dev));
                }
            }
            CASE_OBJ => {
                let closed = text(fields, "Status") == "Closed";
                fields.insert("IsClosed", json!(closed));
            }
            MAPPING_OBJ => {
                // Trigger (before save): Queue_Id__c from the queue name, case-sensitive.
                let name = text(fields, "Salesforce_Queue_Name__c");
                let queue = self
                    .store
                    .live(GROUP_OBJ)
                    .find(|r| r.str("Type") == Some("Queue") && r.str("Name") == Some(name.as_str()))
                    .map(|r| r.id().to_owned())
                    .ok_or_else(|| {
                        ApiError::new(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", format!("Salesforce_Queue_Name__c: there is no queue named '{name}' (names are case-sensitive)"))
                            .with_fields(&["Salesforce_Queue_Name__c"])
                    })?;
                if let Some(dup) =
                    others(MAPPING_OBJ).find(|m| m.str("Queue_Id__c") == Some(queue.as_str()))
                {
                    return Err(ApiError::new(400, "DUPLICATE_VALUE", format!("duplicate value found: Salesforce_Queue_Name__c duplicates value on record with id: {}", dup.id()))
                        .with_fields(&["Salesforce_Queue_Name__c"]));
                }
                fields.insert("Queue_Id__c", json!(queue));
            }
            ROW_OBJ => {
                if let Some(s) = fields.get("Skills__c").and_then(Value::as_str)
                    && s.chars().count() > 255
                {
                    return Err(ApiError::new(
                        400,
                        "STRING_TOO_LONG",
                        "Skills__c: data value too large (max length=255)",
                    )
                    .with_fields(&["Skills__c"]));
                }
            }
            PUSHTOPIC_OBJ => {
                let name = text(fields, "Name");
                if let Some(dup) =
                    others(PUSHTOPIC_OBJ).find(|t| t.str("Name") == Some(name.as_str()))
                {
                    return Err(ApiError::new(
                        400,
                        "DUPLICATE_VALUE",
                        format!(
                            "duplicate value found: Name duplicates value on record with id: {}",
                            dup.id()
                        ),
                    )
                    .with_fields(&["Name"]));
                }
                validate_pushtopic(fields)?;
            }
            _ => {}
        }
        Ok(())
    }

    // ------------------------------------------------------------ trigger

    fn monitored(&self) -> Monitored {
        let mut m = Monitored::new();
        for r in self.store.live(MAPPING_OBJ) {
            if let (Some(q), Some(w)) = (r.str("Queue_Id__c"), r.str("CIC_Workgroup_Name__c"))
                && !q.is_empty()
            {
                m.entry(q.to_owned()).or_insert_with(|| w.to_owned());
            }
        }
        m
    }

    /// The case's newest routing row, through the `Case__c` index.
    fn last_row(&self, case_id: &str) -> Option<LastRow> {
        let by_case = soql::Expr::Cmp {
            field: "Case__c".to_owned(),
            op: soql::CmpOp::Eq,
            value: SValue::Str(case_id.to_owned()),
        };
        self.store
            .candidates(ROW_OBJ, Some(&by_case))
            .iter()
            .rev()
            .filter_map(|seq| self.store.get(seq))
            .find(|r| !r.deleted && r.str("Case__c") == Some(case_id))
            .map(|r| LastRow {
                queue_id: r.str("Salesforce_Queue_Id__c").map(str::to_owned),
                workgroup: r.str("Workgroup__c").map(str::to_owned),
            })
    }

    fn case_view(&self, case_id: &str) -> Option<CaseView> {
        self.store.by_id(case_id).map(|r| case_view(r))
    }

    fn after_insert(
        &mut self,
        obj: &ObjectDef,
        id: &str,
        user_id: &str,
    ) -> Result<Vec<Effect>, ApiError> {
        let (case_id, rows) = {
            let Some(rec) = self.store.by_id(id) else {
                return Ok(Vec::new());
            };
            match obj.name {
                CASE_OBJ => {
                    let view = case_view(rec);
                    (
                        id.to_owned(),
                        trigger::rules(&Change::CaseInserted(&view), &self.monitored(), None),
                    )
                }
                COMMENT_OBJ | EMAIL_OBJ => {
                    let case_id = rec.str("ParentId").unwrap_or_default().to_owned();
                    let Some(view) = self.case_view(&case_id) else {
                        return Ok(Vec::new());
                    };
                    let last = self.last_row(&case_id);
                    let change = if obj.name == COMMENT_OBJ {
                        Change::CommentInserted {
                            case: &view,
                            author_id: rec.str("CreatedById").unwrap_or_default(),
                        }
                    } else {
                        Change::EmailInserted {
                            case: &view,
                            incoming: rec.bool("Incoming"),
                        }
                    };
                    (
                        case_id.clone(),
                        trigger::rules(&change, &self.monitored(), last.as_ref()),
                    )
                }
                _ => return Ok(Vec::new()),
            }
        };
        self.write_rows(&case_id, rows, user_id)
    }

    fn after_case_update(
        &mut self,
        old: &Record,
        id: &str,
        user_id: &str,
    ) -> Result<Vec<Effect>, ApiError> {
        let Some(new) = self.case_view(id) else {
            return Ok(Vec::new());
        };
        let old = case_view(old);
        let last = self.last_row(id);
        let rows = trigger::rules(
            &Change::CaseUpdated {
                old: &old,
                new: &new,
            },
            &self.monitored(),
            last.as_ref(),
        );
        self.write_rows(id, rows, user_id)
    }

    fn write_rows(
        &mut self,
        case_id: &str,
        rows: Vec<trigger::RowToWrite>,
        user_id: &str,
    ) -> Result<Vec<Effect>, ApiError> {
        let mut effects = Vec::new();
        for row in rows {
            let Some(case) = self.store.by_id(case_id) else {
                break;
            };
            let copy = |f: &str| case.fields.get(f).cloned().unwrap_or(Value::Null);
            let fields = json!({
                "Case__c": case_id,
                "Case_Number__c": copy("CaseNumber"),
                "Subject__c": copy("Subject"),
                "From_Address__c": copy("SuppliedEmail"),
                "From_Name__c": copy("SuppliedName"),
                "Event__c": row.event,
                "Salesforce_Queue_Id__c": row.queue_id,
                "Workgroup__c": row.workgroup,
                "Skills__c": copy("ObjectRouting_Skills__c"),
                "Status__c": "New",
                "Attempts__c": 0.0,
            });
            let (_, e) = self.create(user_id, ROW_OBJ, &fields)?;
            effects.extend(e);
        }
        Ok(effects)
    }

    // ------------------------------------------------------------ PushTopics

    /// Is there an active PushTopic with this name (the streaming channel check)?
    pub fn active_topic(&self, name: &str) -> bool {
        self.store
            .live(PUSHTOPIC_OBJ)
            .any(|r| r.bool("IsActive") && r.str("Name") == Some(name))
    }

    /// The active PushTopics with a usable query, in creation order; parsed once per change
    /// of any PushTopic.
    fn compiled_topics(&mut self) -> Arc<Vec<Topic>> {
        let version = self.store.topics_version();
        if let Some((v, topics)) = &self.topics
            && *v == version
        {
            return topics.clone();
        }
        let topics: Vec<Topic> = self
            .store
            .live(PUSHTOPIC_OBJ)
            .filter(|t| t.bool("IsActive"))
            .filter_map(|t| {
                let mut query = soql::parse(t.str("Query").unwrap_or_default()).ok()?;
                let object = query.bind().ok()?.name;
                Some(Topic {
                    channel: format!("/topic/{}", t.str("Name").unwrap_or_default()),
                    object,
                    query,
                    notify_for_fields: t.str("NotifyForFields").unwrap_or("Referenced").to_owned(),
                    create: t.bool("NotifyForOperationCreate"),
                    update: t.bool("NotifyForOperationUpdate"),
                    delete: t.bool("NotifyForOperationDelete"),
                    undelete: t.bool("NotifyForOperationUndelete"),
                })
            })
            .collect();
        let topics = Arc::new(topics);
        self.topics = Some((version, topics.clone()));
        topics
    }

    fn pushtopic_effects(
        &mut self,
        rec: &Record,
        op: EventType,
        changed: Option<&BTreeSet<&'static str>>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        for topic in self.compiled_topics().iter() {
            if topic.object != rec.object.name {
                continue;
            }
            let on = match op {
                EventType::Created => topic.create,
                EventType::Updated => topic.update,
                EventType::Deleted => topic.delete,
                EventType::Undeleted => topic.undelete,
            };
            if !on {
                continue;
            }
            if let Some(changed) = changed
                && !fields_trigger(&topic.notify_for_fields, &topic.query, changed)
            {
                continue;
            }
            if !topic.query.matches(&|f| rec.svalue(f)) {
                continue;
            }
            let mut sobject = Map::new();
            for f in &topic.query.fields {
                sobject.insert(
                    f.clone(),
                    rec.fields.get(f.as_str()).cloned().unwrap_or(Value::Null),
                );
            }
            out.push(Effect::Publish {
                channel: topic.channel.clone(),
                event_type: op,
                sobject: Value::Object(sobject),
            });
        }
        out
    }
}

fn case_view(r: &Record) -> CaseView {
    CaseView {
        owner_id: r.str("OwnerId").unwrap_or_default().to_owned(),
        is_closed: r.bool("IsClosed"),
    }
}

/// The object of a REST path: unknown → 404 `NOT_FOUND` "sObject type 'X' is not supported."
pub fn rest_object(name: &str) -> Result<&'static ObjectDef, ApiError> {
    schema::object(name).ok_or_else(|| {
        ApiError::new(
            404,
            "NOT_FOUND",
            format!(
                "The requested resource does not exist: sObject type '{name}' is not supported."
            ),
        )
    })
}

/// `NotifyForFields` on update: does this set of changed fields make the record evaluated?
fn fields_trigger(mode: &str, q: &Query, changed: &BTreeSet<&'static str>) -> bool {
    let select: Vec<&str> = q
        .fields
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "Id")
        .collect();
    let wh = q.where_fields();
    let wher: Vec<&str> = wh
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "Id")
        .collect();
    let any = |list: &[&str]| list.iter().any(|f| changed.contains(f));
    match mode {
        "All" => true,
        "Select" => any(&select),
        "Where" => any(&wher),
        _ => any(&select) || any(&wher),
    }
}

/// PushTopic rules: query ≤ 1300 chars, parseable, one supported object, SELECT includes Id, no
/// ORDER BY / LIMIT, a NotifyForFields value and the fields it needs.
fn validate_pushtopic(fields: &BTreeMap<&'static str, Value>) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::new(400, "INVALID_FIELD", m).with_fields(&["Query"]);
    let text = fields
        .get("Query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut q =
        soql::parse(text).map_err(|e| bad(format!("Invalid PushTopic query: {}", e.message)))?;
    let obj = q
        .bind()
        .map_err(|e| bad(format!("Invalid PushTopic query: {}", e.message)))?;
    if !obj.pushtopic_supported {
        return Err(bad(format!(
            "Invalid PushTopic query: PushTopics are not supported on {}",
            obj.name
        )));
    }
    if !q.fields.iter().any(|f| f == "Id") {
        return Err(bad(
            "Invalid PushTopic query: the SELECT clause must include the Id field".into(),
        ));
    }
    if !q.order_by.is_empty() {
        return Err(bad(
            "Invalid PushTopic query: ORDER BY is not supported in PushTopic queries".into(),
        ));
    }
    if q.limit.is_some() {
        return Err(bad(
            "Invalid PushTopic query: LIMIT is not supported in PushTopic queries".into(),
        ));
    }
    let mode = fields
        .get("NotifyForFields")
        .and_then(Value::as_str)
        .unwrap_or("Referenced");
    let select_other = q.fields.iter().any(|f| f != "Id");
    let where_other = q.where_fields().iter().any(|f| f != "Id");
    let ok = match mode {
        "All" => true,
        "Referenced" => select_other || where_other,
        "Select" => select_other,
        "Where" => where_other,
        other => {
            return Err(ApiError::new(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!("NotifyForFields: bad value for restricted picklist field: {other}"),
            )
            .with_fields(&["NotifyForFields"]));
        }
    };
    if !ok {
        return Err(bad(format!(
            "Invalid PushTopic query: NotifyForFields {mode} needs a field other than Id in the query"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'";

    fn demo() -> (Org, String) {
        let org =
            Org::new(&OrgSpec::demo(), Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        let router = org
            .user_id_by_username("router@sors.demo")
            .unwrap_or_default();
        (org, router)
    }

    fn queue(org: &mut Org, name: &str) -> String {
        let q = format!("SELECT Id FROM Group WHERE Name = '{name}'");
        let page = org
            .query(&q, DEFAULT_VERSION, 2000)
            .unwrap_or_else(|e| panic!("{e}"));
        page.records
            .first()
            .and_then(|r| r["Id"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    fn rows(org: &mut Org, case_id: &str) -> Vec<Value> {
        let q = format!(
            "SELECT Id, Event__c, Workgroup__c, Salesforce_Queue_Id__c, Status__c, Attempts__c, Case_Number__c, Subject__c, From_Address__c, From_Name__c, Skills__c FROM Object_Routing_Queue__c WHERE Case__c = '{case_id}' ORDER BY CreatedDate"
        );
        org.query(&q, DEFAULT_VERSION, 2000)
            .unwrap_or_else(|e| panic!("{e}"))
            .records
    }

    fn publishes(effects: &[Effect]) -> Vec<(String, EventType, Value)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Publish {
                    channel,
                    event_type,
                    sobject,
                } => Some((channel.clone(), *event_type, sobject.clone())),
                Effect::ClearChannel(_) => None,
            })
            .collect()
    }

    #[test]
    fn demo_org_has_mapped_queues_with_ids() {
        let (mut org, _) = demo();
        let en = queue(&mut org, "Support EN");
        let m = org.monitored();
        assert_eq!(m.get(&en).map(String::as_str), Some("Support_EN"));
        assert_eq!(m.len(), 3);
        let unrouted = queue(&mut org, "Unrouted");
        assert!(!unrouted.is_empty() && !m.contains_key(&unrouted));
    }

    #[test]
    fn case_insert_writes_a_complete_new_row_and_the_topic_fires() {
        let (mut org, router) = demo();
        let (_, e) = org
            .create(
                &router,
                PUSHTOPIC_OBJ,
                &json!({"Name": "ObjectRoutingQueue", "Query": TOPIC, "ApiVersion": 58.0}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(e.is_empty());
        let en = queue(&mut org, "Support EN");
        let (case_id, effects) = org
            .create(&router, CASE_OBJ, &json!({"Subject": "Printer", "OwnerId": en, "SuppliedEmail": "c@x.com", "SuppliedName": "Cust", "ObjectRouting_Skills__c": "French;Printers"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = rows(&mut org, &case_id);
        assert_eq!(r.len(), 1);
        let row = &r[0];
        assert_eq!(row["Event__c"], "New");
        assert_eq!(row["Workgroup__c"], "Support_EN");
        assert_eq!(row["Salesforce_Queue_Id__c"], json!(en));
        assert_eq!(row["Status__c"], "New");
        assert_eq!(row["Attempts__c"], json!(0.0));
        assert_eq!(row["Case_Number__c"], "00001001");
        assert_eq!(row["Subject__c"], "Printer");
        assert_eq!(row["From_Address__c"], "c@x.com");
        assert_eq!(row["From_Name__c"], "Cust");
        assert_eq!(row["Skills__c"], "French;Printers");
        let p = publishes(&effects);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "/topic/ObjectRoutingQueue");
        assert_eq!(p[0].1, EventType::Created);
        let keys: Vec<&String> = p[0]
            .2
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 6, "exactly the SELECT fields: {keys:?}");
        assert_eq!(p[0].2["Id"], row["Id"]);
        assert_eq!(p[0].2["Case__c"], json!(case_id));
    }

    #[test]
    fn notify_for_fields_modes_on_update() {
        let (mut org, router) = demo();
        let en = queue(&mut org, "Support EN");
        for (name, mode) in [
            ("All", "All"),
            ("Ref", "Referenced"),
            ("Sel", "Select"),
            ("Where", "Where"),
        ] {
            org.create(&router, PUSHTOPIC_OBJ, &json!({"Name": name, "NotifyForFields": mode, "ApiVersion": 58.0,
                "Query": "SELECT Id, Skills__c FROM Object_Routing_Queue__c WHERE Attempts__c < 5"}))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (case_id, _) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        let row_id = rows(&mut org, &case_id)[0]["Id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let fired = |org: &mut Org, change: Value| -> Vec<String> {
            let e = org
                .update(&router, Some(ROW_OBJ), &row_id, &change)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut names: Vec<String> = publishes(&e)
                .into_iter()
                .map(|p| p.0.trim_start_matches("/topic/").to_owned())
                .collect();
            names.sort();
            names
        };
        // A field in no clause: only All.
        assert_eq!(fired(&mut org, json!({"Error__c": "x"})), vec!["All"]);
        // A SELECT field: All, Referenced, Select.
        assert_eq!(
            fired(&mut org, json!({"Skills__c": "A"})),
            vec!["All", "Ref", "Sel"]
        );
        // A WHERE field: All, Referenced, Where.
        assert_eq!(
            fired(&mut org, json!({"Attempts__c": 1.0})),
            vec!["All", "Ref", "Where"]
        );
        // Same value again: nothing changed, only All.
        assert_eq!(fired(&mut org, json!({"Attempts__c": 1.0})), vec!["All"]);
        // No longer matching WHERE: nobody.
        assert!(fired(&mut org, json!({"Attempts__c": 7.0})).is_empty());
    }

    #[test]
    fn operation_flags_and_inactive_topics() {
        let (mut org, router) = demo();
        let en = queue(&mut org, "Support EN");
        let (topic, _) = org
            .create(&router, PUSHTOPIC_OBJ, &json!({"Name": "Cases", "ApiVersion": 58.0, "Query": "SELECT Id, Subject FROM Case",
                "NotifyForOperationCreate": false, "NotifyForFields": "All"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let (case_id, e) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(publishes(&e).iter().all(|p| p.0 != "/topic/Cases"));
        let e = org
            .update(&router, Some(CASE_OBJ), &case_id, &json!({"Subject": "s"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(publishes(&e).len(), 1);
        let e = org
            .delete(CASE_OBJ, &case_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(publishes(&e)[0].1, EventType::Deleted);
        let e = org
            .update(
                &router,
                Some(PUSHTOPIC_OBJ),
                &topic,
                &json!({"IsActive": false}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e, vec![Effect::ClearChannel("/topic/Cases".into())]);
        assert!(!org.active_topic("Cases"));
        let (c2, _) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = org
            .update(&router, Some(CASE_OBJ), &c2, &json!({"Subject": "s"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(publishes(&e).is_empty());
    }

    #[test]
    fn pushtopic_validation() {
        let (mut org, router) = demo();
        let mut try_topic = |name: &str, query: &str| {
            org.create(
                &router,
                PUSHTOPIC_OBJ,
                &json!({"Name": name, "Query": query, "ApiVersion": 58.0}),
            )
            .map(|_| ())
            .map_err(|e| (e.code, e.message))
        };
        assert!(try_topic("Ok", TOPIC).is_ok());
        let dup = try_topic("Ok", TOPIC).err().unwrap_or_default();
        assert_eq!(dup.0, "DUPLICATE_VALUE");
        let long = try_topic("A_name_longer_than_25_chars", TOPIC)
            .err()
            .unwrap_or_default();
        assert_eq!(long.0, "STRING_TOO_LONG");
        let big = format!(
            "SELECT Id FROM Case WHERE Subject IN ({})",
            vec!["'xxxxxxxxxx'"; 120].join(",")
        );
        assert_eq!(
            try_topic("Big", &big).err().unwrap_or_default().0,
            "STRING_TOO_LONG"
        );
        for (q, needle) in [
            ("SELECT Subject FROM Case", "Id field"),
            ("SELECT Id, Subject FROM Case ORDER BY Subject", "ORDER BY"),
            ("SELECT Id, Subject FROM Case LIMIT 5", "LIMIT"),
            ("SELECT Id FROM Case", "other than Id"),
            ("SELECT Id, Name FROM User", "not supported"),
            ("SELEC Id FROM Case", "Invalid PushTopic query"),
            ("SELECT Id, Nope__c FROM Case", "Nope__c"),
        ] {
            let (code, msg) = try_topic("T", q).err().unwrap_or_default();
            assert_eq!(code, "INVALID_FIELD", "{q}");
            assert!(msg.contains(needle), "{q}: {msg}");
        }
    }

    #[test]
    fn mapping_rows_fill_queue_id_or_are_rejected() {
        let (mut org, router) = demo();
        let unrouted = queue(&mut org, "Unrouted");
        let (id, _) = org
            .create(
                &router,
                MAPPING_OBJ,
                &json!({"Salesforce_Queue_Name__c": "Unrouted", "CIC_Workgroup_Name__c": "Other"}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            org.record(&id).and_then(|r| r.str("Queue_Id__c")),
            Some(unrouted.as_str())
        );
        assert_eq!(
            org.monitored().get(&unrouted).map(String::as_str),
            Some("Other")
        );
        let e = org
            .create(
                &router,
                MAPPING_OBJ,
                &json!({"Salesforce_Queue_Name__c": "support en", "CIC_Workgroup_Name__c": "W"}),
            )
            .err();
        assert_eq!(
            e.map(|e| e.code),
            Some("FIELD_CUSTOM_VALIDATION_EXCEPTION".to_owned())
        );
        let e = org
            .create(
                &router,
                MAPPING_OBJ,
                &json!({"Salesforce_Queue_Name__c": "Billing", "CIC_Workgroup_Name__c": "W"}),
            )
            .err();
        assert_eq!(e.map(|e| e.code), Some("DUPLICATE_VALUE".to_owned()));
        // Renaming the mapping to another queue moves Queue_Id__c with it.
        let e = org
            .update(
                &router,
                Some(MAPPING_OBJ),
                &id,
                &json!({"Salesforce_Queue_Name__c": "Support EN"}),
            )
            .err();
        assert_eq!(e.map(|e| e.code), Some("DUPLICATE_VALUE".to_owned()));
        let billing_map = org
            .store
            .live(MAPPING_OBJ)
            .find(|r| r.str("CIC_Workgroup_Name__c") == Some("Billing"))
            .map(|r| r.id().to_owned())
            .unwrap_or_default();
        org.delete(MAPPING_OBJ, &billing_map)
            .unwrap_or_else(|e| panic!("{e}"));
        org.update(
            &router,
            Some(MAPPING_OBJ),
            &id,
            &json!({"Salesforce_Queue_Name__c": "Billing"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let billing = queue(&mut org, "Billing");
        assert_eq!(
            org.record(&id).and_then(|r| r.str("Queue_Id__c")),
            Some(billing.as_str())
        );
    }

    #[test]
    fn trigger_end_to_end_through_org_writes() {
        let (mut org, router) = demo();
        let agent = org
            .user_id_by_username("agent1@sors.demo")
            .unwrap_or_default();
        let (en, fr, unrouted) = (
            queue(&mut org, "Support EN"),
            queue(&mut org, "Support FR"),
            queue(&mut org, "Unrouted"),
        );
        let (case_id, _) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en, "Subject": "S"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let events = |org: &mut Org| -> Vec<String> {
            rows(org, &case_id)
                .iter()
                .map(|r| r["Event__c"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        org.update(&router, Some(CASE_OBJ), &case_id, &json!({"OwnerId": fr}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.create(
            &agent,
            COMMENT_OBJ,
            &json!({"ParentId": case_id, "CommentBody": "hi"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.create(
            &router,
            EMAIL_OBJ,
            &json!({"ParentId": case_id, "Incoming": true}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.update(&agent, Some(CASE_OBJ), &case_id, &json!({"OwnerId": agent}))
            .unwrap_or_else(|e| panic!("{e}"));
        // Owner-written comment on an agent-owned case: none.
        org.create(
            &agent,
            COMMENT_OBJ,
            &json!({"ParentId": case_id, "CommentBody": "mine"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.create(
            &agent,
            EMAIL_OBJ,
            &json!({"ParentId": case_id, "Incoming": false}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.update(
            &agent,
            Some(CASE_OBJ),
            &case_id,
            &json!({"OwnerId": unrouted}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.update(&agent, Some(CASE_OBJ), &case_id, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.update(
            &agent,
            Some(CASE_OBJ),
            &case_id,
            &json!({"Status": "Closed"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            events(&mut org),
            vec![
                "New",
                "QueueChanged",
                "Comment",
                "EmailReceived",
                "AgentReply",
                "OwnerChanged",
                "CaseClosed"
            ]
        );
        let r = rows(&mut org, &case_id);
        assert_eq!(
            r[4]["Workgroup__c"], "Support_FR",
            "AgentReply takes the last row's workgroup"
        );
        assert_eq!(r[6]["Workgroup__c"], "Support_EN");
        // A case with no rows: outgoing email and closing write nothing.
        let (quiet, _) = org
            .create(&agent, CASE_OBJ, &json!({"Subject": "mine"}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.create(
            &agent,
            EMAIL_OBJ,
            &json!({"ParentId": quiet, "Incoming": false}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.update(&agent, Some(CASE_OBJ), &quiet, &json!({"Status": "Closed"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(rows(&mut org, &quiet).is_empty());
    }

    #[test]
    fn write_validation_errors() {
        let (mut org, router) = demo();
        let code = |r: Result<(String, Vec<Effect>), ApiError>| {
            r.err().map(|e| e.code).unwrap_or_default()
        };
        assert_eq!(
            code(org.create(&router, ROW_OBJ, &json!({"Event__c": "New"}))),
            "REQUIRED_FIELD_MISSING"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!({"CaseNumber": "1"}))),
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!({"Bogus": "1"}))),
            "INVALID_FIELD"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!({"Subject": 5}))),
            "JSON_PARSER_ERROR"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!({"OwnerId": "nope"}))),
            "MALFORMED_ID"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!({"OwnerId": "500000000000000AAA"}))),
            "INVALID_CROSS_REFERENCE_KEY"
        );
        assert_eq!(
            code(org.create(
                &router,
                CASE_OBJ,
                &json!({"ObjectRouting_Skills__c": "x".repeat(256)})
            )),
            "STRING_TOO_LONG"
        );
        assert_eq!(
            code(org.create(&router, CASE_OBJ, &json!([1]))),
            "JSON_PARSER_ERROR"
        );
        let e = org
            .create(&router, "Account", &json!({}))
            .err()
            .unwrap_or_else(ApiError::not_found);
        assert_eq!((e.status, e.code.as_str()), (404, "NOT_FOUND"));
        assert!(
            e.message
                .contains("sObject type 'Account' is not supported.")
        );
        let (id, _) = org
            .create(&router, CASE_OBJ, &json!({}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.delete(CASE_OBJ, &id).unwrap_or_else(|e| panic!("{e}"));
        let e = org
            .update(&router, Some(CASE_OBJ), &id, &json!({"Subject": "x"}))
            .err();
        assert_eq!(e.map(|e| e.code), Some("ENTITY_IS_DELETED".to_owned()));
        assert_eq!(
            org.get(CASE_OBJ, &id, DEFAULT_VERSION)
                .err()
                .map(|e| e.status),
            Some(404)
        );
    }

    #[test]
    fn query_paging_and_locators() {
        let (mut org, router) = demo();
        for i in 0..5 {
            org.create(&router, CASE_OBJ, &json!({"Subject": format!("c{i}")}))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let page = org
            .query("SELECT Subject FROM Case ORDER BY Subject DESC", "v58.0", 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.total_size, 5);
        assert_eq!(page.records[0]["Subject"], "c4");
        let next = page.next_records_url.unwrap_or_default();
        assert!(next.starts_with("/services/data/v58.0/query/01g"), "{next}");
        let loc = next.rsplit('/').next().unwrap_or_default();
        let p2 = org
            .query_more(loc, "v58.0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p2.records[0]["Subject"], "c2");
        let p3 = org
            .query_more(
                p2.next_records_url
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default(),
                "v58.0",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p3.records.len(), 1);
        assert!(p3.next_records_url.is_none());
        assert_eq!(p3.to_json()["done"], true);
        for bad in ["nope", "01gxyz-2", "x-y"] {
            assert_eq!(
                org.query_more(bad, "v58.0").err().map(|e| e.code),
                Some("INVALID_QUERY_LOCATOR".to_owned())
            );
        }
        let limited = org
            .query("SELECT Id FROM Case LIMIT 3", "v58.0", 2000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limited.total_size, 3);
    }

    #[test]
    fn sessions_logins_and_failures() {
        let (mut org, _) = demo();
        assert!(
            org.login("router@sors.demo", "demo").is_none(),
            "token required"
        );
        let (sid, user) = org
            .login("ROUTER@sors.demo", "demoTOKEN")
            .unwrap_or_default();
        assert!(sid.starts_with(org.org_id15()) && sid.contains("!AQ"));
        assert_eq!(org.session_user(&sid), Some(user));
        org.expire_sessions();
        assert_eq!(org.session_user(&sid), None);
        assert!(org.client_login("sors-demo", "wrong").is_err());
        assert!(org.client_login("sors-demo", "sors-demo-secret").is_ok());
        org.add_fail_next(CallKind::Any, 2, InjectedError::UnableToLockRow);
        assert_eq!(
            org.take_failure(CallKind::Query),
            Some(InjectedError::UnableToLockRow)
        );
        assert_eq!(
            org.take_failure(CallKind::Update),
            Some(InjectedError::UnableToLockRow)
        );
        assert_eq!(org.take_failure(CallKind::Update), None);
        let old = org.org_id.clone();
        org.sandbox_refresh();
        assert_ne!(org.org_id, old);
    }

    /// The org's query path (indexes, creation-order shortcut, partial sort) against a plain
    /// scan of every record with the full ORDER BY sort.
    fn naive(org: &Org, soql_text: &str) -> Vec<String> {
        let mut q = soql::parse(soql_text).unwrap_or_else(|e| panic!("{e}"));
        let obj = q.bind().unwrap_or_else(|e| panic!("{e}"));
        let mut found: Vec<&Arc<Record>> = org
            .store
            .live(obj.name)
            .filter(|r| q.matches(&|f| r.svalue(f)))
            .collect();
        found.sort_by(|a, b| {
            q.compare(&|f| a.svalue(f), &|f| b.svalue(f))
                .then(a.seq.cmp(&b.seq))
        });
        if let Some(l) = q.limit {
            found.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        found.iter().map(|r| r.id().to_owned()).collect()
    }

    fn ids(page: &QueryPage) -> Vec<String> {
        page.records
            .iter()
            .map(|r| r["Id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A demo org with cases in two queues, rows in every status, comments, a deleted row.
    fn busy_org() -> (Org, String, Vec<String>) {
        let (mut org, router) = demo();
        let agent = org
            .user_id_by_username("agent1@sors.demo")
            .unwrap_or_default();
        let (en, fr) = (queue(&mut org, "Support EN"), queue(&mut org, "Support FR"));
        let mut cases = Vec::new();
        for i in 0..40 {
            let owner = if i % 3 == 0 { &fr } else { &en };
            let subject = format!("{} case {i}", ["alpha", "Beta", "gamma"][i % 3]);
            let (c, _) = org
                .create(
                    &agent,
                    CASE_OBJ,
                    &json!({"OwnerId": owner, "Subject": subject}),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            if i % 4 == 0 {
                org.create(
                    &router,
                    COMMENT_OBJ,
                    &json!({"ParentId": c, "CommentBody": "x"}),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
            cases.push(c);
        }
        let all = naive(&org, "SELECT Id FROM Object_Routing_Queue__c");
        for (i, row) in all.iter().enumerate() {
            let change = match i % 5 {
                0 => json!({"Status__c": "Processed", "Attempts__c": 1.0}),
                1 => json!({"Status__c": "Processing"}),
                2 => json!({"Status__c": "Failed", "Error__c": "boom", "Attempts__c": 3.0}),
                3 => json!({"Status__c": null}),
                _ => json!({}),
            };
            org.update(&router, Some(ROW_OBJ), row, &change)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        org.delete(ROW_OBJ, &all[4])
            .unwrap_or_else(|e| panic!("{e}"));
        (org, router, cases)
    }

    #[test]
    fn indexed_queries_return_what_a_full_scan_returns() {
        let (mut org, _, cases) = busy_org();
        let (c0, c1, c2) = (&cases[0], &cases[1], &cases[2]);
        let rows = naive(&org, "SELECT Id FROM Object_Routing_Queue__c");
        let (r0, r5) = (&rows[0], &rows[5]);
        let queries = [
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'New'".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'new' ORDER BY CreatedDate DESC LIMIT 3".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = null".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c != 'New' ORDER BY Status__c DESC, Attempts__c LIMIT 7".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'Processed' ORDER BY Id DESC LIMIT 5".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c ORDER BY Error__c NULLS LAST, Event__c DESC".to_owned(),
            "SELECT Id FROM Object_Routing_Queue__c ORDER BY LastModifiedDate DESC LIMIT 4".to_owned(),
            format!("SELECT Id FROM Object_Routing_Queue__c WHERE Case__c IN ('{c0}', '{c1}', '{c2}') AND Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id"),
            format!("SELECT Id FROM Object_Routing_Queue__c WHERE Case__c = '{}' OR Status__c = 'Failed'", &c0[..15]),
            format!("SELECT Id FROM Object_Routing_Queue__c WHERE Id IN ('{r0}', '{r5}', '{}')", r5.to_lowercase()),
            format!("SELECT Id FROM Object_Routing_Queue__c WHERE (Case__c = '{c1}' OR Attempts__c > 1) AND Status__c != 'Failed'"),
            "SELECT Id FROM Object_Routing_Queue__c WHERE Attempts__c >= 1 LIMIT 2".to_owned(),
            "SELECT Id FROM Case WHERE Subject LIKE 'b%' ORDER BY Subject, CreatedDate DESC".to_owned(),
            format!("SELECT Id FROM Case WHERE Id = '{c2}' OR Subject = 'GAMMA case 2'"),
            format!("SELECT Id FROM CaseComment WHERE ParentId IN ('{c0}', '{c1}')"),
            "SELECT Id FROM Object_Routing_Queue__c LIMIT 0".to_owned(),
        ];
        for q in &queries {
            let expected = naive(&org, q);
            let got = org
                .query(q, DEFAULT_VERSION, 2000)
                .unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(ids(&got), expected, "{q}");
            assert_eq!(got.total_size, expected.len(), "{q}");
        }
        // Non-trivial answers, so the comparison above means something.
        assert_eq!(naive(&org, &queries[0]).len(), 9, "New rows");
        assert_eq!(
            naive(&org, &queries[10]).len(),
            2,
            "ids, case-insensitively"
        );
    }

    #[test]
    fn created_dates_are_unique_and_follow_creation() {
        let (mut org, router) = demo();
        for _ in 0..50 {
            org.create(&router, CASE_OBJ, &json!({}))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let dates: Vec<String> = org
            .store
            .live(CASE_OBJ)
            .map(|r| r.str("CreatedDate").unwrap_or_default().to_owned())
            .collect();
        let parsed: Vec<_> = dates
            .iter()
            .filter_map(|d| soql::parse_datetime(d))
            .collect();
        assert_eq!(parsed.len(), 50);
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{dates:?}");
    }

    #[test]
    fn the_trigger_finds_the_newest_live_row_of_the_case() {
        let (mut org, _) = demo();
        let agent = org
            .user_id_by_username("agent1@sors.demo")
            .unwrap_or_default();
        let (en, fr) = (queue(&mut org, "Support EN"), queue(&mut org, "Support FR"));
        let (case_id, _) = org
            .create(&agent, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.update(&agent, Some(CASE_OBJ), &case_id, &json!({"OwnerId": fr}))
            .unwrap_or_else(|e| panic!("{e}"));
        let last = org.last_row(&case_id);
        assert_eq!(
            last.and_then(|l| l.workgroup).as_deref(),
            Some("Support_FR")
        );
        // The newest row deleted: the one before it is the last row now.
        let newest = rows(&mut org, &case_id)[1]["Id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        org.delete(ROW_OBJ, &newest)
            .unwrap_or_else(|e| panic!("{e}"));
        let last = org.last_row(&case_id);
        assert_eq!(
            last.and_then(|l| l.workgroup).as_deref(),
            Some("Support_EN")
        );
        assert!(org.last_row("500000000000000AAA").is_none());
    }

    #[test]
    fn rollback_restores_records_numbering_and_indexes() {
        let (mut org, router, cases) = busy_org();
        let before_rows = naive(&org, "SELECT Id FROM Object_Routing_Queue__c");
        let before_new = naive(
            &org,
            "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'New'",
        );
        let en = queue(&mut org, "Support EN");
        org.begin();
        let (created, _) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        org.update(
            &router,
            Some(ROW_OBJ),
            &before_new[0],
            &json!({"Status__c": "Processed"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.delete(CASE_OBJ, &cases[1])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            naive(
                &org,
                "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'New'"
            ),
            before_new
        );
        org.rollback();
        assert!(org.record(&created).is_none());
        assert_eq!(
            naive(&org, "SELECT Id FROM Object_Routing_Queue__c"),
            before_rows
        );
        let q = "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'New'";
        let page = org
            .query(q, DEFAULT_VERSION, 2000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&page), before_new, "the status index is restored");
        assert!(org.record(&cases[1]).is_some_and(|r| !r.deleted));
        // The rolled-back id and case number are issued again.
        let (again, _) = org
            .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, created);
        // A committed operation stays.
        org.begin();
        org.update(
            &router,
            Some(ROW_OBJ),
            &before_new[1],
            &json!({"Status__c": "Processed"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.commit();
        org.rollback();
        assert!(!naive(&org, q).contains(&before_new[1]));
    }

    #[test]
    fn locators_keep_the_records_as_they_were() {
        let (mut org, router) = demo();
        for i in 0..5 {
            org.create(&router, CASE_OBJ, &json!({"Subject": format!("c{i}")}))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let page = org
            .query(
                "SELECT Id, Subject FROM Case ORDER BY CreatedDate",
                "v58.0",
                2,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let all = naive(&org, "SELECT Id FROM Case ORDER BY CreatedDate");
        org.update(
            &router,
            Some(CASE_OBJ),
            &all[2],
            &json!({"Subject": "changed"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        org.delete(CASE_OBJ, &all[3])
            .unwrap_or_else(|e| panic!("{e}"));
        let next = page.next_records_url.unwrap_or_default();
        let p2 = org
            .query_more(next.rsplit('/').next().unwrap_or_default(), "v60.0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p2.records[0]["Subject"], "c2");
        assert_eq!(p2.records[1]["Id"], json!(all[3]));
        assert!(
            p2.records[0]["attributes"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("/services/data/v58.0/")),
            "records keep the version of the query"
        );
        assert!(
            p2.next_records_url
                .is_some_and(|u| u.starts_with("/services/data/v60.0/"))
        );
    }

    #[test]
    fn pushtopics_are_recompiled_when_one_changes() {
        let (mut org, router) = demo();
        let en = queue(&mut org, "Support EN");
        let (topic, _) = org
            .create(
                &router,
                PUSHTOPIC_OBJ,
                &json!({"Name": "Rows", "Query": TOPIC, "ApiVersion": 58.0}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let fired = |org: &mut Org| {
            let (_, e) = org
                .create(&router, CASE_OBJ, &json!({"OwnerId": en}))
                .unwrap_or_else(|e| panic!("{e}"));
            publishes(&e).into_iter().map(|p| p.0).collect::<Vec<_>>()
        };
        assert_eq!(fired(&mut org), vec!["/topic/Rows".to_owned()]);
        org.update(
            &router,
            Some(PUSHTOPIC_OBJ),
            &topic,
            &json!({"Name": "Renamed"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fired(&mut org), vec!["/topic/Renamed".to_owned()]);
        org.update(
            &router,
            Some(PUSHTOPIC_OBJ),
            &topic,
            &json!({"Query": "SELECT Id, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'Processed'"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(fired(&mut org).is_empty());
        org.delete(PUSHTOPIC_OBJ, &topic)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!org.active_topic("Renamed"));
    }
}
