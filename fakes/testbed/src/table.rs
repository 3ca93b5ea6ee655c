//! One typed view of the fake org's routing table (`Object_Routing_Queue__c`) and its cases,
//! for the oracles that judge a run: the crash tests' report (`tests/src/report.rs`), the
//! property checks (`tests/properties/checks.rs`) and the scenario runner.
//!
//! It reads the fake in process, through the fake's own SOQL ([`FakeSalesforce::query`]), and
//! interprets the JSON records itself: no product protocol code (`sors-salesforce`) is involved,
//! so a misunderstanding of the wire cannot hide on both sides.
//!
//! Rows are kept in creation order ([`creation_order`], the one place that rule lives): by
//! `CreatedDate`, then by Id compared byte by byte. A query's `ORDER BY CreatedDate, Id` does
//! not give that order: rows written in the same millisecond (one save, or a case created and
//! moved at once) tie on `CreatedDate`, and SOQL compares Id text case-insensitively, while
//! Salesforce issues Ids in case-sensitive base-62 order ("…7Z" before "…7a").

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use sors_fake_salesforce::FakeSalesforce;

/// Every routing row with every field an oracle looks at.
pub const ROWS_SOQL: &str = "SELECT Id, Name, Case__c, Event__c, Status__c, Interaction_Id__c, Error__c, Attempts__c, Workgroup__c, Skills__c, CreatedDate, Processed_At__c FROM Object_Routing_Queue__c ORDER BY CreatedDate, Id";

/// Every case's final state.
pub const CASES_SOQL: &str = "SELECT Id, IsClosed FROM Case ORDER BY CreatedDate, Id";

/// Reading the table failed: the query, or a record without a field the fake always writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableError {
    Query(String),
    Record(String),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Query(e) => write!(f, "querying the fake org: {e}"),
            TableError::Record(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TableError {}

/// `Status__c` (routing.md §2): `New` → `Processing` → `Processed` or `Failed`. The field is
/// free text in the org, so anything else is kept as written, never guessed at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowStatus {
    New,
    Processing,
    Processed,
    Failed,
    /// A value outside the lifecycle (compared exactly: SOQL would ignore case, the oracles do
    /// not).
    Other(String),
}

impl RowStatus {
    pub fn parse(s: &str) -> RowStatus {
        match s {
            "New" => RowStatus::New,
            "Processing" => RowStatus::Processing,
            "Processed" => RowStatus::Processed,
            "Failed" => RowStatus::Failed,
            other => RowStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RowStatus::New => "New",
            RowStatus::Processing => "Processing",
            RowStatus::Processed => "Processed",
            RowStatus::Failed => "Failed",
            RowStatus::Other(s) => s,
        }
    }

    /// `Processed` or `Failed`: the router is done with the row.
    pub fn is_final(&self) -> bool {
        matches!(self, RowStatus::Processed | RowStatus::Failed)
    }

    /// `New` or `Processing`: the router still owes the row an outcome.
    pub fn is_pending(&self) -> bool {
        matches!(self, RowStatus::New | RowStatus::Processing)
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Event__c` (routing.md §2); anything else is kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowEvent {
    New,
    OwnerChanged,
    QueueChanged,
    Comment,
    EmailReceived,
    AgentReply,
    CaseClosed,
    SwitchoverRecovery,
    Other(String),
}

impl RowEvent {
    pub fn parse(s: &str) -> RowEvent {
        match s {
            "New" => RowEvent::New,
            "OwnerChanged" => RowEvent::OwnerChanged,
            "QueueChanged" => RowEvent::QueueChanged,
            "Comment" => RowEvent::Comment,
            "EmailReceived" => RowEvent::EmailReceived,
            "AgentReply" => RowEvent::AgentReply,
            "CaseClosed" => RowEvent::CaseClosed,
            "SwitchoverRecovery" => RowEvent::SwitchoverRecovery,
            other => RowEvent::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RowEvent::New => "New",
            RowEvent::OwnerChanged => "OwnerChanged",
            RowEvent::QueueChanged => "QueueChanged",
            RowEvent::Comment => "Comment",
            RowEvent::EmailReceived => "EmailReceived",
            RowEvent::AgentReply => "AgentReply",
            RowEvent::CaseClosed => "CaseClosed",
            RowEvent::SwitchoverRecovery => "SwitchoverRecovery",
            RowEvent::Other(s) => s,
        }
    }

    /// A route row (routing.md §3): it asks for the case to be live in its workgroup.
    pub fn is_route(&self) -> bool {
        matches!(
            self,
            RowEvent::New
                | RowEvent::OwnerChanged
                | RowEvent::QueueChanged
                | RowEvent::Comment
                | RowEvent::EmailReceived
                | RowEvent::SwitchoverRecovery
        )
    }

    /// `AgentReply` or `CaseClosed`: asks for the case's live interactions to be disconnected.
    pub fn is_closing(&self) -> bool {
        matches!(self, RowEvent::AgentReply | RowEvent::CaseClosed)
    }
}

impl fmt::Display for RowEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One routing row. Empty text fields read as absent (`None`) or empty strings.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    /// The auto-number (`ORQ-000001`).
    pub name: String,
    pub case_id: String,
    pub event: RowEvent,
    pub status: RowStatus,
    pub interaction_id: Option<String>,
    pub error: Option<String>,
    pub attempts: f64,
    pub workgroup: String,
    pub skills: String,
    pub created: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

impl Row {
    /// From a record of [`ROWS_SOQL`]. `Id`, `Case__c`, `Event__c`, `Status__c` and a valid
    /// `CreatedDate` are required: a row without them is a finding, not something to guess.
    pub fn from_record(v: &Value) -> Result<Row, TableError> {
        let text = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
        let need = |f: &str| {
            text(f).ok_or_else(|| TableError::Record(format!("a routing row without {f}: {v}")))
        };
        let created = need("CreatedDate")?;
        Ok(Row {
            id: need("Id")?,
            name: text("Name").unwrap_or_default(),
            case_id: need("Case__c")?,
            event: RowEvent::parse(&need("Event__c")?),
            status: RowStatus::parse(&need("Status__c")?),
            interaction_id: text("Interaction_Id__c").filter(|s| !s.is_empty()),
            error: text("Error__c").filter(|s| !s.is_empty()),
            attempts: v.get("Attempts__c").and_then(Value::as_f64).unwrap_or(0.0),
            workgroup: text("Workgroup__c").unwrap_or_default(),
            skills: text("Skills__c").unwrap_or_default(),
            created: parse_time(&created)
                .ok_or_else(|| TableError::Record(format!("bad CreatedDate '{created}'")))?,
            processed_at: text("Processed_At__c").and_then(|t| parse_time(&t)),
        })
    }

    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    pub fn is_route(&self) -> bool {
        self.event.is_route()
    }

    /// `Interaction_Id__c`, or "" when there is none.
    pub fn interaction(&self) -> &str {
        self.interaction_id.as_deref().unwrap_or("")
    }

    /// `Error__c`, or "" when there is none.
    pub fn error_text(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
}

/// The order in which rows were created: by `CreatedDate`, then by Id compared byte by byte
/// (Salesforce issues Ids in case-sensitive base-62 order). The only statement of this rule
/// among the oracles.
pub fn creation_order(a: &Row, b: &Row) -> Ordering {
    (a.created, a.id.as_bytes()).cmp(&(b.created, b.id.as_bytes()))
}

/// Salesforce date-times: `2024-01-01T10:00:00.000+0000` (the fake), RFC 3339, or without a
/// zone (UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// How many rows the router still owes an outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub new: usize,
    pub processing: usize,
}

/// The routing table at one moment, every row in creation order, indexed by case.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    rows: Vec<Row>,
    /// Case id → indexes into `rows`, ascending (so in creation order).
    by_case: HashMap<String, Vec<usize>>,
}

impl RoutingTable {
    /// Reads every row of the fake org now (in process; not counted as an API call).
    pub fn read(sf: &FakeSalesforce) -> Result<RoutingTable, TableError> {
        let records = sf
            .query(ROWS_SOQL)
            .map_err(|e| TableError::Query(format!("{e:?}")))?;
        RoutingTable::from_records(&records)
    }

    /// From records of [`ROWS_SOQL`], in any order.
    pub fn from_records(records: &[Value]) -> Result<RoutingTable, TableError> {
        let rows = records
            .iter()
            .map(Row::from_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RoutingTable::from_rows(rows))
    }

    /// From rows in any order.
    pub fn from_rows(mut rows: Vec<Row>) -> RoutingTable {
        rows.sort_by(creation_order);
        let mut by_case: HashMap<String, Vec<usize>> = HashMap::new();
        for (n, r) in rows.iter().enumerate() {
            by_case.entry(r.case_id.clone()).or_default().push(n);
        }
        RoutingTable { rows, by_case }
    }

    /// Every row, oldest first.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row with this Id (compared exactly).
    pub fn get(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The rows of one case, oldest first (empty for a case without rows).
    pub fn of_case(&self, case_id: &str) -> Vec<&Row> {
        self.by_case
            .get(case_id)
            .map(|ix| ix.iter().filter_map(|&n| self.rows.get(n)).collect())
            .unwrap_or_default()
    }

    /// The newest row of one case: the one that says what the case should be now.
    pub fn newest_of(&self, case_id: &str) -> Option<&Row> {
        self.by_case
            .get(case_id)
            .and_then(|ix| ix.last())
            .and_then(|&n| self.rows.get(n))
    }

    /// The ids of the cases that have rows, in no particular order.
    pub fn case_ids(&self) -> impl Iterator<Item = &str> {
        self.by_case.keys().map(String::as_str)
    }

    /// Rows not final yet (`New`, `Processing` or anything outside the lifecycle), oldest first.
    pub fn not_final(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.is_final())
    }

    /// Whether every row is `Processed` or `Failed`.
    pub fn all_final(&self) -> bool {
        self.rows.iter().all(Row::is_final)
    }

    /// Rows `New` and `Processing` now.
    pub fn pending(&self) -> Pending {
        let mut p = Pending::default();
        for r in &self.rows {
            match r.status {
                RowStatus::New => p.new += 1,
                RowStatus::Processing => p.processing += 1,
                _ => {}
            }
        }
        p
    }

    /// How many rows have this status.
    pub fn count_status(&self, status: &RowStatus) -> usize {
        self.rows.iter().filter(|r| &r.status == status).count()
    }

    /// How many rows have this event.
    pub fn count_event(&self, event: &RowEvent) -> usize {
        self.rows.iter().filter(|r| &r.event == event).count()
    }

    /// Rows per status (only statuses that occur).
    pub fn by_status(&self) -> BTreeMap<RowStatus, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.status.clone()).or_default() += 1;
        }
        m
    }

    /// Rows per event (only events that occur).
    pub fn by_event(&self) -> BTreeMap<RowEvent, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.event.clone()).or_default() += 1;
        }
        m
    }
}

/// A case's state, as the oracles need it.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseState {
    pub id: String,
    pub closed: bool,
}

impl CaseState {
    /// From a record of [`CASES_SOQL`].
    pub fn from_record(v: &Value) -> Result<CaseState, TableError> {
        Ok(CaseState {
            id: v
                .get("Id")
                .and_then(Value::as_str)
                .ok_or_else(|| TableError::Record(format!("a case without Id: {v}")))?
                .to_owned(),
            closed: v.get("IsClosed").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// Every case of the fake org now, oldest first.
    pub fn read_all(sf: &FakeSalesforce) -> Result<Vec<CaseState>, TableError> {
        sf.query(CASES_SOQL)
            .map_err(|e| TableError::Query(format!("{e:?}")))?
            .iter()
            .map(CaseState::from_record)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(id: &str, case: &str, event: &str, status: &str, created: &str) -> Value {
        json!({"Id": id, "Name": "ORQ-000001", "Case__c": case, "Event__c": event,
            "Status__c": status, "Attempts__c": 1.0, "CreatedDate": created})
    }

    /// Issue 8, item 1: rows of one save tie on CreatedDate; SOQL's `ORDER BY Id` would put
    /// "…7a" first (case-insensitive), but "…7Z" was issued first.
    #[test]
    fn ties_on_created_date_are_ordered_by_case_sensitive_id() {
        let at = "2026-01-01T10:00:00.000+0000";
        let table = RoutingTable::from_records(&[
            rec("a015g000000007aAAA", "c1", "QueueChanged", "Processed", at),
            rec("a015g000000007ZAAQ", "c1", "New", "Processed", at),
            rec(
                "a015g0000000001AAA",
                "c1",
                "Comment",
                "New",
                "2026-01-01T10:00:00.001+0000",
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = table.of_case("c1").iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "a015g000000007ZAAQ",
                "a015g000000007aAAA",
                "a015g0000000001AAA"
            ],
            "CreatedDate first, then Id byte by byte"
        );
        assert_eq!(table.rows().first().map(|r| &r.event), Some(&RowEvent::New));
        assert_eq!(
            table.newest_of("c1").map(|r| r.id.as_str()),
            Some("a015g0000000001AAA")
        );
        let a = Row::from_record(&rec("…7Z", "c", "New", "New", at)).expect("row");
        let b = Row::from_record(&rec("…7a", "c", "New", "New", at)).expect("row");
        assert_eq!(creation_order(&a, &b), Ordering::Less);
        assert_eq!(creation_order(&b, &a), Ordering::Greater);
    }

    #[test]
    fn records_parse_into_typed_rows() {
        let r = Row::from_record(
            &json!({"Id": "a01x", "Name": "ORQ-000007", "Case__c": "500x",
            "Event__c": "New", "Status__c": "Processed", "Interaction_Id__c": "1000000001",
            "Error__c": null, "Attempts__c": 2.0, "Workgroup__c": "Billing", "Skills__c": "",
            "CreatedDate": "2024-01-01T10:00:00.000+0000",
            "Processed_At__c": "2024-01-01T10:00:01.500Z"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, RowStatus::Processed);
        assert_eq!(r.event, RowEvent::New);
        assert!(r.is_final() && r.is_route());
        assert_eq!(r.interaction_id.as_deref(), Some("1000000001"));
        assert_eq!(r.error, None);
        assert_eq!(r.error_text(), "");
        assert_eq!(r.attempts, 2.0);
        assert_eq!(
            r.processed_at.map(|p| (p - r.created).num_milliseconds()),
            Some(1500)
        );
        assert!(Row::from_record(&json!({"Id": "a01x"})).is_err());
        let bad_date = rec("a01x", "500x", "New", "New", "yesterday");
        assert!(Row::from_record(&bad_date).is_err());
        assert!(CaseState::from_record(&json!({"IsClosed": true})).is_err());
    }

    #[test]
    fn statuses_and_events_keep_what_is_written() {
        for s in ["New", "Processing", "Processed", "Failed", "processed", ""] {
            assert_eq!(RowStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            RowStatus::parse("processed"),
            RowStatus::Other("processed".into())
        );
        assert!(!RowStatus::parse("processed").is_final());
        assert!(RowStatus::Failed.is_final() && RowStatus::Processing.is_pending());
        assert!(RowEvent::parse("SwitchoverRecovery").is_route());
        assert!(RowEvent::parse("CaseClosed").is_closing());
        assert!(!RowEvent::parse("AgentReply").is_route());
        assert_eq!(RowEvent::parse("Nonsense").as_str(), "Nonsense");
    }

    #[test]
    fn counts_and_cases() {
        let t = |ms: u32| format!("2026-01-01T10:00:00.{ms:03}+0000");
        let table = RoutingTable::from_records(&[
            rec("a3", "c2", "CaseClosed", "Processing", &t(3)),
            rec("a1", "c1", "New", "Processed", &t(1)),
            rec("a2", "c2", "New", "New", &t(2)),
            rec("a4", "c1", "AgentReply", "Failed", &t(4)),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(table.len(), 4);
        assert_eq!(
            table.pending(),
            Pending {
                new: 1,
                processing: 1
            }
        );
        assert!(!table.all_final());
        assert_eq!(
            table.not_final().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a2", "a3"]
        );
        assert_eq!(table.count_status(&RowStatus::Processed), 1);
        assert_eq!(table.count_event(&RowEvent::New), 2);
        assert_eq!(table.by_status().get(&RowStatus::Failed), Some(&1));
        assert_eq!(table.by_event().len(), 3);
        assert_eq!(table.of_case("c2").len(), 2);
        assert!(table.of_case("c9").is_empty());
        assert_eq!(table.newest_of("c2").map(|r| r.id.as_str()), Some("a3"));
        assert_eq!(table.get("a4").map(|r| &r.status), Some(&RowStatus::Failed));
        let mut cases: Vec<&str> = table.case_ids().collect();
        cases.sort_unstable();
        assert_eq!(cases, ["c1", "c2"]);
    }

    #[test]
    fn salesforce_times_parse() {
        assert!(parse_time("2024-01-01T10:00:00.000+0000").is_some());
        assert!(parse_time("2024-01-01T10:00:00.123Z").is_some());
        assert!(parse_time("2024-01-01T10:00:00.123").is_some());
        assert!(parse_time("nonsense").is_none());
    }
}
