//! `sors-salesforce`: the production Salesforce client of the router.
//!
//! This crate is the only code in the product that knows Salesforce JSON and XML. It speaks to
//! the rest of the router in `sors-core` domain types. Parts:
//! - [`config`]: login settings, API names, retry and streaming timing (serde, from TOML);
//! - login (SOAP partner `login()` or OAuth) with one shared, single-flight re-login;
//! - a thin REST layer with paging, retries and `Sforce-Limit-Info` accounting;
//! - the domain operations on [`Salesforce`];
//! - [`streaming`]: a Bayeux long-polling client for the PushTopic.

mod auth;
pub mod config;
mod error;
mod records;
mod rest;
mod stats;
pub mod streaming;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sors_core::model::{
    CaseId, CaseSnapshot, InteractionId, NewRoutingRow, QueueMapping, RoutingRow, RowEvent, RowId,
    RowStatus, RowSummary, RowUpdate, WriteResult,
};
use tracing::{info, warn};

pub use auth::SessionInfo;
pub use config::{Auth, LoginConfig, Names, RetryPolicy, Secret, StreamingConfig};
pub use error::{Result, SfError};
pub use rest::Limit;
pub use sors_core::proxy::ProxyPolicy;
pub use stats::Stats;
pub use streaming::{StreamEvent, StreamHandle};

use auth::TokenStore;
use records::{soql_list, soql_str};
use rest::{COLLECTION_MAX, Rest};
use stats::StatsCell;

/// Ids per `WHERE Id IN (…)` query (keeps the SOQL well under its length limit).
const IDS_PER_QUERY: usize = 200;

/// The mapping object as read: the mappings whose queue exists, and those that name none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mappings {
    /// Mappings with their queue id: `Queue_Id__c`, or, when blank, the id of the queue whose
    /// name equals the mapping's queue name (case-sensitive).
    pub resolved: Vec<QueueMapping>,
    /// Mappings whose queue id is blank and whose queue name matches no queue.
    pub unresolved: Vec<UnresolvedMapping>,
}

/// A mapping row that points at no Salesforce queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnresolvedMapping {
    pub queue_name: String,
    pub workgroup: String,
}

/// A scan of the pending rows ([`Salesforce::pending_scan`]), oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scan {
    /// The oldest rows, in full.
    pub rows: Vec<RoutingRow>,
    /// The ids of the rows after those, in the same order.
    pub more: Vec<RowId>,
}

/// What [`Salesforce::ensure_push_topic`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushTopicOutcome {
    Unchanged,
    Created,
    /// It existed but differed (query, version, notify settings) or was inactive.
    Repaired,
}

/// The Salesforce client. Cheap to clone; clones share the session, counters and HTTP pool.
#[derive(Clone)]
pub struct Salesforce {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<LoginConfig>,
    names: Names,
    tokens: Arc<TokenStore>,
    rest: Rest,
    stats: Arc<StatsCell>,
}

pub(crate) fn http_builder(
    cfg: &LoginConfig,
    proxy: &ProxyPolicy,
) -> Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(cfg.request_timeout())
        .no_proxy();
    if !proxy.is_direct() {
        let policy = proxy.clone();
        b = b.proxy(reqwest::Proxy::custom(move |url| {
            policy.for_url(url.as_str())
        }));
    }
    Ok(b)
}

impl Salesforce {
    /// Checks the configuration and builds the client. Does not log in.
    pub fn new(cfg: LoginConfig, names: Names) -> Result<Self> {
        cfg.validate()?;
        names.validate()?;
        let cfg = Arc::new(cfg);
        let stats = Arc::new(StatsCell::default());
        let tokens = Arc::new(TokenStore::new(cfg.clone(), stats.clone())?);
        let rest = Rest::new(tokens.clone(), cfg.clone(), stats.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                names,
                tokens,
                rest,
                stats,
            }),
        })
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn config(&self) -> &LoginConfig {
        &self.inner.cfg
    }

    /// Logs in now (also when already logged in). Other calls log in lazily when needed.
    pub async fn login(&self) -> Result<SessionInfo> {
        Ok(self.inner.tokens.login().await?.info.clone())
    }

    /// The current session, if logged in.
    pub fn session(&self) -> Option<SessionInfo> {
        self.inner.tokens.current().map(|s| s.info.clone())
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The query for the routing rows matching `condition`, oldest first.
    fn rows_soql(&self, condition: &str) -> String {
        let n = &self.inner.names;
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY CreatedDate, Id",
            records::row_fields(n),
            n.routing_object,
            condition
        )
    }

    async fn rows_where(&self, condition: &str) -> Result<Vec<RoutingRow>> {
        let n = &self.inner.names;
        let recs = self.inner.rest.query(&self.rows_soql(condition)).await?;
        Ok(recs
            .iter()
            .filter_map(|r| records::parse_row(n, r))
            .collect())
    }

    fn pending_condition(&self) -> String {
        format!("{} IN ('New', 'Processing')", self.inner.names.row_status)
    }

    /// Every `New` and `Processing` row, oldest first (CreatedDate, Id), all pages.
    pub async fn pending_rows(&self) -> Result<Vec<RoutingRow>> {
        Ok(self.pending_scan(usize::MAX).await?.rows)
    }

    /// Every `New` and `Processing` row, oldest first (CreatedDate, Id), all pages: the first
    /// `keep` in full, the rest as ids only (fetched by id when their turn comes), so a backlog
    /// of any length costs one page of records and the ids, not every record at once.
    pub async fn pending_scan(&self, keep: usize) -> Result<Scan> {
        let n = &self.inner.names;
        let soql = self.rows_soql(&self.pending_condition());
        let mut scan = Scan::default();
        self.inner
            .rest
            .query_each(&soql, |r| {
                if let Some(row) = records::parse_row(n, &r) {
                    if scan.rows.len() < keep {
                        scan.rows.push(row);
                    } else {
                        scan.more.push(row.id);
                    }
                }
            })
            .await?;
        Ok(scan)
    }

    /// The rows with these ids (any status), one query per 200 ids, oldest first per query.
    pub async fn rows_by_ids(&self, ids: &[RowId]) -> Result<Vec<RoutingRow>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let cond = format!("Id IN {}", soql_list(chunk.iter().map(|i| i.as_str())));
            out.extend(self.rows_where(&cond).await?);
        }
        Ok(out)
    }

    /// The sweep's rows: `New` and `Processing` rows created before `before`, oldest first.
    /// `New` ones no push announced; `Processing` ones whose final write was lost.
    pub async fn pending_rows_older_than(&self, before: DateTime<Utc>) -> Result<Vec<RoutingRow>> {
        let cond = format!(
            "{} AND CreatedDate < {}",
            self.pending_condition(),
            records::format_datetime(&before)
        );
        self.rows_where(&cond).await
    }

    /// The pending (`New`, `Processing`) rows of these cases, oldest first per query.
    pub async fn rows_of_cases(&self, cases: &[CaseId]) -> Result<Vec<RoutingRow>> {
        let mut out = Vec::new();
        for chunk in cases.chunks(IDS_PER_QUERY) {
            let cond = format!(
                "{} IN {} AND {}",
                self.inner.names.row_case,
                soql_list(chunk.iter().map(|c| c.as_str())),
                self.pending_condition()
            );
            out.extend(self.rows_where(&cond).await?);
        }
        Ok(out)
    }

    /// The current state of these cases. A case missing from the answer is deleted (or not
    /// visible to the integration user). Two queries per 200 ids: the cases, and their
    /// routing rows (for `last_closing_row_at` and `last_route_row_at`).
    pub async fn cases(&self, ids: &[CaseId]) -> Result<Vec<CaseSnapshot>> {
        let n = &self.inner.names;
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let soql = format!(
                "SELECT {} FROM Case WHERE Id IN {}",
                records::case_fields(n),
                soql_list(chunk.iter().map(|c| c.as_str()))
            );
            // The cases and their routing history at once: one round trip, not two.
            let (recs, history) = tokio::try_join!(
                self.inner.rest.query(&soql),
                self.history_of(chunk.iter().map(|c| c.as_str()))
            )?;
            let mut snapshots: Vec<CaseSnapshot> = recs
                .iter()
                .filter_map(|r| records::parse_case(n, r))
                .collect();
            self.apply_history(&mut snapshots, &history);
            out.extend(snapshots);
        }
        Ok(out)
    }

    /// Fills each case's routing history: its newest closing row (any status) and its newest
    /// route row that did not fail. One query per call (at most 200 cases).
    async fn add_history(&self, snapshots: &mut [CaseSnapshot]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let history = self
            .history_of(snapshots.iter().map(|c| c.id.as_str()))
            .await?;
        self.apply_history(snapshots, &history);
        Ok(())
    }

    /// The routing rows of these cases (at most 200), for [`Self::apply_history`].
    async fn history_of<'a>(
        &self,
        cases: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<rest::Record>> {
        let n = &self.inner.names;
        let soql = format!(
            "SELECT Id, {}, {}, {}, {}, {}, CreatedDate FROM {} WHERE {} IN {}",
            n.row_case,
            n.row_event,
            n.row_status,
            n.row_workgroup,
            n.row_interaction_id,
            n.routing_object,
            n.row_case,
            soql_list(cases)
        );
        self.inner.rest.query(&soql).await
    }

    fn apply_history(&self, snapshots: &mut [CaseSnapshot], history: &[rest::Record]) {
        let n = &self.inner.names;
        let index: HashMap<String, usize> = snapshots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.0.clone(), i))
            .collect();
        for r in history {
            let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
            let Some(created) = records::parse_datetime(field("CreatedDate")) else {
                continue;
            };
            let Some(snap) = index.get(field(&n.row_case)).map(|i| &mut snapshots[*i]) else {
                continue;
            };
            let Some(event) = RowEvent::parse(field(&n.row_event)) else {
                continue;
            };
            let status = RowStatus::parse(field(&n.row_status));
            if !event.is_route() {
                if snap.last_closing_row_at.is_none_or(|t| created > t) {
                    snap.last_closing_row_at = Some(created);
                    snap.last_closing_event = Some(event);
                }
            } else if let Some(status) = status.filter(|s| *s != RowStatus::Failed)
                && snap.last_route_row_at.is_none_or(|t| created > t)
            {
                snap.last_route_row_at = Some(created);
                let interaction = field(&n.row_interaction_id);
                snap.last_route_row = Some(RowSummary {
                    id: RowId(field("Id").to_owned()),
                    status,
                    workgroup: field(&n.row_workgroup).to_owned(),
                    interaction_id: (!interaction.is_empty())
                        .then(|| InteractionId(interaction.to_owned())),
                    created_date: created,
                });
            }
        }
    }

    /// What reconciliation compares with CIC: the open cases created since `since` and owned
    /// by one of `queues`, plus the cases named in `also` (the cases of live interactions,
    /// however old; those missing from the answer are deleted), each with its routing history.
    /// Costs one query (more pages for over 2,000 cases), one per 200 cases for their history,
    /// and two per 200 of the `also` cases not already found.
    pub async fn reconcile_view(
        &self,
        queues: &[String],
        since: DateTime<Utc>,
        also: &[CaseId],
    ) -> Result<Vec<CaseSnapshot>> {
        let n = &self.inner.names;
        let mut out: Vec<CaseSnapshot> = Vec::new();
        if !queues.is_empty() {
            let soql = format!(
                "SELECT {} FROM Case WHERE IsClosed = false AND OwnerId IN {} AND CreatedDate >= {}",
                records::case_fields(n),
                soql_list(queues.iter().map(String::as_str)),
                records::format_datetime(&since)
            );
            let mut open: Vec<CaseSnapshot> = Vec::new();
            self.inner
                .rest
                .query_each(&soql, |r| open.extend(records::parse_case(n, &r)))
                .await?;
            for chunk in open.chunks_mut(IDS_PER_QUERY) {
                self.add_history(chunk).await?;
            }
            out.extend(open);
        }
        let have: HashSet<&str> = out.iter().map(|c| c.id.as_str()).collect();
        let rest: Vec<CaseId> = also
            .iter()
            .filter(|c| !have.contains(c.as_str()))
            .cloned()
            .collect();
        out.extend(self.cases(&rest).await?);
        Ok(out)
    }

    /// Every queue: `(id, name)`.
    pub async fn queues(&self) -> Result<Vec<(String, String)>> {
        let recs = self
            .inner
            .rest
            .query("SELECT Id, Name FROM Group WHERE Type = 'Queue' ORDER BY Name")
            .await?;
        Ok(recs
            .iter()
            .filter_map(|r| {
                let id = r.get("Id")?.as_str()?.to_owned();
                let name = r.get("Name").and_then(Value::as_str).unwrap_or_default();
                Some((id, name.to_owned()))
            })
            .collect())
    }

    /// The mapping object's rows, in queue-name order. A blank `Queue_Id__c` is resolved by
    /// queue name; a mapping naming no queue is returned apart (and logged).
    pub async fn queue_mappings(&self) -> Result<Mappings> {
        let n = &self.inner.names;
        let soql = format!(
            "SELECT Id, {}, {}, {} FROM {} ORDER BY {}",
            n.mapping_queue_name,
            n.mapping_workgroup,
            n.mapping_queue_id,
            n.mapping_object,
            n.mapping_queue_name
        );
        let recs = self.inner.rest.query(&soql).await?;
        let field = |r: &rest::Record, f: &str| {
            r.get(f)
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let rows: Vec<(String, String, String)> = recs
            .iter()
            .map(|r| {
                (
                    field(r, &n.mapping_queue_id),
                    field(r, &n.mapping_queue_name),
                    field(r, &n.mapping_workgroup),
                )
            })
            .collect();
        let queues = if rows.iter().any(|(id, _, _)| id.is_empty()) {
            self.queues().await?
        } else {
            Vec::new()
        };
        let mut out = Mappings::default();
        for (queue_id, queue_name, workgroup) in rows {
            let queue_id = Some(queue_id).filter(|s| !s.is_empty()).or_else(|| {
                queues
                    .iter()
                    .find(|(_, name)| *name == queue_name)
                    .map(|(id, _)| id.clone())
            });
            match queue_id {
                Some(queue_id) => out.resolved.push(QueueMapping {
                    queue_id,
                    queue_name,
                    workgroup,
                }),
                None => {
                    warn!(event = "salesforce.mapping.unknown_queue", queue = %queue_name,
                          workgroup = %workgroup, "Mapped queue does not exist in Salesforce");
                    out.unresolved.push(UnresolvedMapping {
                        queue_name,
                        workgroup,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes row updates: one PATCH for one row, sObject Collections (≤ 200 per call,
    /// `allOrNone=false`) otherwise. One result per update, in input order.
    ///
    /// `Err` only when nothing was written because every call failed as a whole (login,
    /// transport, rejected session, an API error on the call); per-record failures, and
    /// whole-call failures of some chunks only, come back as per-row errors.
    pub async fn update_rows_raw(
        &self,
        updates: &[RowUpdate],
    ) -> Result<Vec<(RowId, Result<(), SfError>)>> {
        let n = &self.inner.names;
        let results: Vec<(RowId, Result<()>)> = if let [one] = updates {
            let r = self
                .inner
                .rest
                .update(
                    &n.routing_object,
                    one.id.as_str(),
                    &records::update_fields(n, one),
                )
                .await;
            vec![(one.id.clone(), r)]
        } else {
            let recs = updates
                .iter()
                .map(|u| (u.id.0.clone(), records::update_fields(n, u)))
                .collect();
            self.inner
                .rest
                .update_many(&n.routing_object, recs)
                .await
                .into_iter()
                .map(|(id, r)| (RowId(id), r))
                .collect()
        };
        let whole_failure = !results.is_empty()
            && results
                .iter()
                .all(|(_, r)| matches!(r, Err(e) if !matches!(e, SfError::Record { .. })));
        if whole_failure && let Some((_, Err(e))) = results.first() {
            return Err(e.clone());
        }
        Ok(results)
    }

    /// Writes row updates (as [`Salesforce::update_rows_raw`]) and says, per row, what the
    /// outcome means for the router: written, gone (deleted), to be tried again (Salesforce could
    /// not take it now), or rejected for the row's own data. The router matches no Salesforce
    /// error code itself.
    pub async fn update_rows(&self, updates: &[RowUpdate]) -> Vec<(RowId, WriteResult)> {
        match self.update_rows_raw(updates).await {
            Ok(per_row) => per_row
                .into_iter()
                .map(|(id, r)| {
                    let res = match r {
                        Ok(()) => WriteResult::Ok,
                        Err(e) => classify_write_error(&e),
                    };
                    (id, res)
                })
                .collect(),
            Err(e) => {
                let res = match classify_write_error(&e) {
                    // A collection call refused as a whole is not about one row's data.
                    WriteResult::Rejected(m) if updates.len() > 1 => WriteResult::Retry(m),
                    other => other,
                };
                updates
                    .iter()
                    .map(|u| (u.id.clone(), res.clone()))
                    .collect()
            }
        }
    }

    /// Inserts a routing row (`Status__c = New`).
    pub async fn insert_row(&self, row: &NewRoutingRow) -> Result<RowId> {
        let n = &self.inner.names;
        let id = self
            .inner
            .rest
            .create(&n.routing_object, &records::new_row_fields(n, row))
            .await?;
        Ok(RowId(id))
    }

    /// `GET /limits`: every limit with `Max` and `Remaining` (e.g. `DailyApiRequests`).
    pub async fn limits(&self) -> Result<std::collections::BTreeMap<String, Limit>> {
        self.inner.rest.limits().await
    }

    /// The PushTopic fields this client wants (routing.md §2).
    fn desired_push_topic(&self) -> rest::Record {
        let n = &self.inner.names;
        let api: f64 = self.inner.cfg.api_version.parse().unwrap_or_else(|_| {
            sors_core::model::SALESFORCE_API_VERSION
                .parse()
                .unwrap_or_default()
        });
        let mut m = rest::Record::new();
        m.insert("Query".into(), Value::from(n.push_topic_query()));
        m.insert("ApiVersion".into(), Value::from(api));
        m.insert("NotifyForFields".into(), Value::from("Referenced"));
        m.insert("NotifyForOperationCreate".into(), Value::from(true));
        m.insert("NotifyForOperationUpdate".into(), Value::from(true));
        m.insert("NotifyForOperationDelete".into(), Value::from(false));
        m.insert("NotifyForOperationUndelete".into(), Value::from(false));
        m.insert("IsActive".into(), Value::from(true));
        m
    }

    /// Makes sure the PushTopic exists, is active and matches routing.md §2: creates it when
    /// missing, PATCHes it back when it differs.
    pub async fn ensure_push_topic(&self) -> Result<PushTopicOutcome> {
        let n = &self.inner.names;
        let desired = self.desired_push_topic();
        let keys: Vec<&str> = desired.keys().map(String::as_str).collect();
        let soql = format!(
            "SELECT Id, Name, {} FROM PushTopic WHERE Name = {}",
            keys.join(", "),
            soql_str(&n.push_topic)
        );
        let found = self.inner.rest.query(&soql).await?;
        let Some(existing) = found.first() else {
            let mut fields = desired;
            fields.insert("Name".into(), Value::from(n.push_topic.as_str()));
            fields.insert(
                "Description".into(),
                Value::from("SORS routing table (managed by the router)"),
            );
            let id = self.inner.rest.create("PushTopic", &fields).await?;
            info!(event = "salesforce.pushtopic.created", name = %n.push_topic, id = %id,
                  "Created the PushTopic");
            return Ok(PushTopicOutcome::Created);
        };
        let id = existing
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| SfError::Protocol("PushTopic record without Id".into()))?
            .to_owned();
        let differing: Vec<&str> = desired
            .iter()
            .filter(|(k, want)| !push_topic_field_matches(k, want, existing.get(k.as_str())))
            .map(|(k, _)| k.as_str())
            .collect();
        if differing.is_empty() {
            return Ok(PushTopicOutcome::Unchanged);
        }
        warn!(event = "salesforce.pushtopic.repaired", name = %n.push_topic, id = %id,
              fields = %differing.join(","), "PushTopic differed; repairing it");
        self.inner.rest.update("PushTopic", &id, &desired).await?;
        Ok(PushTopicOutcome::Repaired)
    }

    pub(crate) fn tokens(&self) -> &Arc<TokenStore> {
        &self.inner.tokens
    }

    pub(crate) fn stats_cell(&self) -> &Arc<StatsCell> {
        &self.inner.stats
    }
}

/// Compares one PushTopic field: queries modulo whitespace, versions as numbers, a missing
/// notify flag as Salesforce's default (true).
fn push_topic_field_matches(key: &str, want: &Value, have: Option<&Value>) -> bool {
    let have = have.unwrap_or(&Value::Null);
    match want {
        Value::String(w) if key == "Query" => {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            have.as_str().is_some_and(|h| norm(h) == norm(w))
        }
        Value::Number(w) => {
            let h = have
                .as_f64()
                .or_else(|| have.as_str().and_then(|s| s.parse().ok()));
            h.zip(w.as_f64()).is_some_and(|(h, w)| (h - w).abs() < 1e-9)
        }
        Value::Bool(w) => match have {
            Value::Bool(h) => h == w,
            Value::Null if key.starts_with("NotifyForOperation") => *w,
            _ => false,
        },
        _ => have == want,
    }
}

/// The most rows one sObject Collections call carries: `update_rows` splits larger batches.
pub const MAX_BATCH: usize = COLLECTION_MAX;

/// Error codes that are about one record's data: writing the same values again fails again.
const ROW_DATA_CODES: &[&str] = &[
    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "FIELD_INTEGRITY_EXCEPTION",
    "STRING_TOO_LONG",
    "REQUIRED_FIELD_MISSING",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    "INVALID_TYPE_ON_FIELD_IN_RECORD",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
    "DUPLICATE_VALUE",
    "MALFORMED_ID",
    "NUMBER_OUTSIDE_VALID_RANGE",
];

/// What a failed row write means for the router: the row is gone, Salesforce refused the row's
/// data, or anything else (transport, 5xx, session, locks, limits, configuration), which is
/// tried again until Salesforce takes it.
pub fn classify_write_error(e: &SfError) -> WriteResult {
    match e.code() {
        Some("ENTITY_IS_DELETED" | "NOT_FOUND") => WriteResult::Gone,
        Some(code) if ROW_DATA_CODES.contains(&code) => WriteResult::Rejected(e.to_string()),
        _ => WriteResult::Retry(e.to_string()),
    }
}
