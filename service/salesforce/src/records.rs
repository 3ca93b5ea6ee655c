//! Salesforce JSON records → sors-core domain types, and domain types → field maps.
//!
//! A malformed record never fails a whole page: what can be kept is kept (raw strings go into
//! the row untouched, the router validates them); only a record that cannot be represented at
//! all (no Id, unknown Status) is skipped, with a warning.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sors_core::model::{
    CaseId, CaseSnapshot, InteractionId, NewRoutingRow, RoutingRow, RowId, RowStatus, RowUpdate,
};
use tracing::warn;

use crate::config::Names;
use crate::rest::Record;

fn text(r: &Record, field: &str) -> String {
    match r.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn opt_text(r: &Record, field: &str) -> Option<String> {
    Some(text(r, field)).filter(|s| !s.is_empty())
}

/// Salesforce datetimes: `2024-01-02T03:04:05.000+0000` (REST) or RFC 3339 (`…Z`).
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// ISO datetime as Salesforce accepts it in JSON and as a SOQL literal.
pub(crate) fn format_datetime(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The SELECT list of routing-table queries.
pub(crate) fn row_fields(n: &Names) -> String {
    [
        "Id",
        "CreatedDate",
        &n.row_case,
        &n.row_event,
        &n.row_status,
        &n.row_queue_id,
        &n.row_workgroup,
        &n.row_skills,
        &n.row_case_number,
        &n.row_subject,
        &n.row_from_address,
        &n.row_from_name,
        &n.row_attempts,
        &n.row_interaction_id,
        &n.row_error,
    ]
    .join(", ")
}

pub(crate) fn parse_row(n: &Names, r: &Record) -> Option<RoutingRow> {
    let id = text(r, "Id");
    if id.is_empty() {
        warn!(event = "salesforce.record.skipped", object = %n.routing_object, reason = "no Id",
              "Skipping a routing row without Id");
        return None;
    }
    let raw_status = text(r, &n.row_status);
    let Some(status) = RowStatus::parse(&raw_status) else {
        warn!(event = "salesforce.record.skipped", object = %n.routing_object, id = %id,
              status = %raw_status, reason = "unknown status", "Skipping a routing row with an unknown status");
        return None;
    };
    let raw_created = text(r, "CreatedDate");
    let created_date = parse_datetime(&raw_created).unwrap_or_else(|| {
        // Kept, ordered first: later rows of the same case then supersede it.
        warn!(event = "salesforce.record.bad_field", id = %id, field = "CreatedDate",
              value = %raw_created, "Unparsable CreatedDate; ordering the row first");
        DateTime::<Utc>::UNIX_EPOCH
    });
    let attempts = match r.get(&n.row_attempts) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(x)) => x
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map_or(0, |f| f.min(u32::MAX as f64) as u32),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_or(0, |f| f.max(0.0) as u32),
        Some(other) => {
            warn!(event = "salesforce.record.bad_field", id = %id, field = %n.row_attempts,
                  value = %other, "Unparsable attempts; using 0");
            0
        }
    };
    Some(RoutingRow {
        id: RowId(id),
        case_id: opt_text(r, &n.row_case).map(CaseId),
        event: text(r, &n.row_event),
        status,
        queue_id: opt_text(r, &n.row_queue_id),
        workgroup: text(r, &n.row_workgroup),
        skills: text(r, &n.row_skills),
        case_number: text(r, &n.row_case_number),
        subject: text(r, &n.row_subject),
        from_address: text(r, &n.row_from_address),
        from_name: text(r, &n.row_from_name),
        attempts,
        interaction_id: opt_text(r, &n.row_interaction_id).map(InteractionId),
        error: opt_text(r, &n.row_error),
        created_date,
    })
}

pub(crate) fn case_fields(n: &Names) -> String {
    format!(
        "Id, OwnerId, IsClosed, CaseNumber, Subject, {}, SuppliedEmail, SuppliedName",
        n.case_skills
    )
}

pub(crate) fn parse_case(n: &Names, r: &Record) -> Option<CaseSnapshot> {
    let id = text(r, "Id");
    if id.is_empty() {
        warn!(
            event = "salesforce.record.skipped",
            object = "Case",
            reason = "no Id",
            "Skipping a case without Id"
        );
        return None;
    }
    let is_closed = match r.get("IsClosed") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => {
            warn!(event = "salesforce.record.bad_field", id = %id, field = "IsClosed",
                  "Missing IsClosed; assuming open");
            false
        }
    };
    Some(CaseSnapshot {
        id: CaseId(id),
        owner_id: text(r, "OwnerId"),
        is_closed,
        case_number: text(r, "CaseNumber"),
        subject: text(r, "Subject"),
        skills: text(r, &n.case_skills),
        supplied_email: text(r, "SuppliedEmail"),
        supplied_name: text(r, "SuppliedName"),
        last_closing_row_at: None,
        last_route_row_at: None,
        last_route_row: None,
        last_closing_event: None,
    })
}

/// Cuts `s` to at most `max` characters (not bytes).
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.to_owned(),
    }
}

pub(crate) fn update_fields(n: &Names, u: &RowUpdate) -> Record {
    let mut m = Record::new();
    m.insert(n.row_status.clone(), Value::from(u.status.as_str()));
    if let Some(a) = u.attempts {
        m.insert(n.row_attempts.clone(), Value::from(a));
    }
    if let Some(i) = &u.interaction_id {
        m.insert(n.row_interaction_id.clone(), Value::from(i.as_str()));
    }
    if let Some(e) = &u.error {
        m.insert(
            n.row_error.clone(),
            Value::from(truncate_chars(e, n.error_max_len)),
        );
    }
    if let Some(t) = &u.processed_at {
        m.insert(n.row_processed_at.clone(), Value::from(format_datetime(t)));
    }
    m
}

pub(crate) fn new_row_fields(n: &Names, row: &NewRoutingRow) -> Record {
    let mut m = Record::new();
    let mut put = |k: &String, v: &str| {
        m.insert(k.clone(), Value::from(v));
    };
    put(&n.row_case, row.case_id.as_str());
    put(&n.row_event, row.event.as_str());
    put(&n.row_status, RowStatus::New.as_str());
    if let Some(q) = &row.queue_id {
        put(&n.row_queue_id, q);
    }
    put(&n.row_workgroup, &row.workgroup);
    put(&n.row_skills, &row.skills);
    put(&n.row_case_number, &row.case_number);
    put(&n.row_subject, &row.subject);
    put(&n.row_from_address, &row.from_address);
    put(&n.row_from_name, &row.from_name);
    m
}

/// A SOQL string literal: `'` and `\` escaped.
pub(crate) fn soql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `('a', 'b', …)`.
pub(crate) fn soql_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let parts: Vec<String> = items.into_iter().map(soql_str).collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => Record::new(),
        }
    }

    #[test]
    fn parses_salesforce_datetimes() {
        let a = parse_datetime("2024-01-02T03:04:05.000+0000");
        let b = parse_datetime("2024-01-02T03:04:05Z");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn malformed_rows_keep_what_can_be_kept() {
        let n = Names::default();
        let row = parse_row(
            &n,
            &rec(json!({"Id":"a01","CreatedDate":"garbage","Status__c":"New",
                        "Event__c":"Bogus","Attempts__c":2.0,"Case__c":null})),
        );
        let row = row.expect("row kept");
        assert_eq!(row.event, "Bogus");
        assert_eq!(row.attempts, 2);
        assert_eq!(row.case_id, None);
        assert_eq!(row.created_date, DateTime::<Utc>::UNIX_EPOCH);
        assert!(parse_row(&n, &rec(json!({"Id":"a02","Status__c":"Weird"}))).is_none());
        assert!(parse_row(&n, &rec(json!({"Status__c":"New"}))).is_none());
    }

    #[test]
    fn soql_literals_are_escaped_and_errors_truncated() {
        assert_eq!(soql_str("O'Brien\\"), "'O\\'Brien\\\\'");
        assert_eq!(soql_list(["a", "b"]), "('a', 'b')");
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }
}
