//! The classified report: what the router lost, duplicated, finished late or disconnected
//! without being asked, judged from the final state of the fake Salesforce and the fake CIC.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sors_fake_icws::{HistoryEvent, InteractionInfo};
pub use sors_testbed::table::{CaseState, RoutingTable, Row, RowEvent, RowStatus};

use crate::child::Life;

fn describe(row: &Row) -> String {
    format!(
        "row {} ({} {}, workgroup {}, created {}, attempts {}, interaction {}, note {:?})",
        row.id,
        row.event,
        row.status,
        row.workgroup,
        row.created.format("%H:%M:%S%.3f"),
        row.attempts,
        row.interaction_id.as_deref().unwrap_or("-"),
        row.error.as_deref().unwrap_or(""),
    )
}

/// The classes of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A row never final; a route row `Failed` though the case's skills are fine; a case that
    /// should have one live interaction (its last row routes it) with none, or in another
    /// workgroup.
    Lost,
    /// A case with two live interactions at once, at the end or ever (from the interaction
    /// histories); a routing row that created two interactions.
    Duplicated,
    /// A live interaction on a case that needs none (closed, answered by an agent, or with
    /// skills CIC refuses): an agent alerted for finished work.
    Stray,
    /// A row final only after more than the late budget of router up-time (downtime between
    /// a kill and the next ready router does not count).
    Late,
    /// An interaction disconnected that no `AgentReply`/`CaseClosed` row, and no route row to
    /// another workgroup (a case move), asked for before it happened.
    OrphanDisconnect,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Lost,
        Class::Duplicated,
        Class::Stray,
        Class::Late,
        Class::OrphanDisconnect,
    ];

    /// Whether a finding of this class fails the check.
    pub fn fails(self) -> bool {
        matches!(self, Class::Lost | Class::Duplicated | Class::Stray)
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Lost => "lost",
            Class::Duplicated => "duplicated",
            Class::Stray => "stray live",
            Class::Late => "late",
            Class::OrphanDisconnect => "orphan disconnect",
        }
    }
}

/// One finding, with a readable example.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub class: Class,
    pub case_id: String,
    pub detail: String,
}

/// What the classifier looks at.
pub struct Evidence<'a> {
    /// The routing table, every case's rows in creation order.
    pub table: &'a RoutingTable,
    pub cases: &'a [CaseState],
    pub interactions: &'a [InteractionInfo],
    /// The lives of the router process, for the late budget (router up-time).
    pub lives: &'a [Life],
    /// Cases created with skills CIC does not know: their rows must end `Failed`.
    pub expected_failed: &'a HashSet<String>,
    /// Router up-time after which a row counts as late.
    pub late_after: Duration,
    /// When the evidence was read (the end of a life still running).
    pub now: DateTime<Utc>,
}

/// The classified report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub rows: usize,
    pub rows_by_status: BTreeMap<RowStatus, usize>,
    pub rows_by_event: BTreeMap<RowEvent, usize>,
    pub cases: usize,
    pub interactions: usize,
    pub live: usize,
    /// The longest router up-time a row took to become final, in milliseconds.
    pub max_uptime_to_final_ms: i64,
}

impl Report {
    pub fn classify(ev: &Evidence<'_>) -> Report {
        let mut r = Report {
            rows: ev.table.len(),
            rows_by_status: ev.table.by_status(),
            rows_by_event: ev.table.by_event(),
            cases: ev.cases.len(),
            interactions: ev.interactions.len(),
            live: ev.interactions.iter().filter(|i| i.live).count(),
            ..Report::default()
        };
        let mut by_case: HashMap<&str, Vec<&InteractionInfo>> = HashMap::new();
        let mut by_entry: HashMap<&str, Vec<&InteractionInfo>> = HashMap::new();
        for i in ev.interactions {
            by_case.entry(i.case_id.as_str()).or_default().push(i);
            by_entry.entry(i.entry_id.as_str()).or_default().push(i);
        }
        r.rows_checks(ev);
        r.case_checks(ev, &by_case);
        r.entry_checks(ev, &by_entry);
        r.disconnect_checks(ev);
        r
    }

    fn add(&mut self, class: Class, case_id: &str, detail: String) {
        self.findings.push(Finding {
            class,
            case_id: case_id.to_owned(),
            detail,
        });
    }

    fn rows_checks(&mut self, ev: &Evidence<'_>) {
        for row in ev.table.rows() {
            if !row.is_final() {
                self.add(
                    Class::Lost,
                    &row.case_id,
                    format!("never final: {}", describe(row)),
                );
                continue;
            }
            if row.status == RowStatus::Failed && !ev.expected_failed.contains(&row.case_id) {
                self.add(
                    Class::Lost,
                    &row.case_id,
                    format!("failed: {}", describe(row)),
                );
            }
            if let Some(done) = row.processed_at {
                let up = uptime_between(ev.lives, row.created, done, ev.now);
                self.max_uptime_to_final_ms =
                    self.max_uptime_to_final_ms.max(up.num_milliseconds());
                if up.to_std().is_ok_and(|u| u > ev.late_after) {
                    self.add(
                        Class::Late,
                        &row.case_id,
                        format!(
                            "final after {:.1} s of router up-time ({:.1} s wall clock): {}",
                            up.num_milliseconds() as f64 / 1000.0,
                            (done - row.created).num_milliseconds() as f64 / 1000.0,
                            describe(row)
                        ),
                    );
                }
            }
        }
    }

    fn case_checks(&mut self, ev: &Evidence<'_>, by_case: &HashMap<&str, Vec<&InteractionInfo>>) {
        for case in ev.cases {
            let rows = ev.table.of_case(&case.id);
            if rows.is_empty() {
                continue;
            }
            let all: &[&InteractionInfo] =
                by_case.get(case.id.as_str()).map_or(&[], |v| v.as_slice());
            let live: Vec<&&InteractionInfo> = all.iter().filter(|i| i.live).collect();
            let ids = |v: &[&&InteractionInfo]| {
                v.iter()
                    .map(|i| format!("{} in {} (entry {})", i.id, i.workgroup, i.entry_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if live.len() > 1 {
                self.add(
                    Class::Duplicated,
                    &case.id,
                    format!(
                        "case {} has {} live interactions: {}",
                        case.id,
                        live.len(),
                        ids(&live)
                    ),
                );
            } else if let Some(overlap) = overlapping(all) {
                self.add(
                    Class::Duplicated,
                    &case.id,
                    format!(
                        "case {} had two live interactions at once: {overlap}",
                        case.id
                    ),
                );
            }
            let last = ev.table.newest_of(&case.id);
            let expect = match last {
                _ if ev.expected_failed.contains(&case.id) => None,
                _ if case.closed => None,
                Some(row) if row.is_route() && row.status == RowStatus::Processed => Some(row),
                _ => None,
            };
            match expect {
                Some(row) => {
                    if live.is_empty() {
                        self.add(
                            Class::Lost,
                            &case.id,
                            format!(
                                "case {} should be live in {}, nothing is; last {}",
                                case.id,
                                row.workgroup,
                                describe(row)
                            ),
                        );
                    } else if !live.iter().any(|i| i.workgroup == row.workgroup) {
                        self.add(
                            Class::Lost,
                            &case.id,
                            format!(
                                "case {} should be live in {}, is live in: {}; its rows: {}",
                                case.id,
                                row.workgroup,
                                ids(&live),
                                rows.iter()
                                    .map(|r| describe(r))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                        );
                    }
                }
                None if !live.is_empty() => {
                    let why = if ev.expected_failed.contains(&case.id) {
                        "its skills are refused".to_owned()
                    } else if case.closed {
                        "it is closed".to_owned()
                    } else {
                        last.map_or_else(
                            || "it has no row".to_owned(),
                            |r| format!("its last is {}", describe(r)),
                        )
                    };
                    self.add(
                        Class::Stray,
                        &case.id,
                        format!(
                            "case {} needs no interaction ({why}) but has: {}",
                            case.id,
                            ids(&live)
                        ),
                    );
                }
                None => {}
            }
        }
    }

    fn entry_checks(&mut self, ev: &Evidence<'_>, by_entry: &HashMap<&str, Vec<&InteractionInfo>>) {
        for row in ev.table.rows() {
            let made = by_entry.get(row.id.as_str()).map_or(0, Vec::len);
            if made > 1 {
                let ids: Vec<&str> = by_entry
                    .get(row.id.as_str())
                    .map(|v| v.iter().map(|i| i.id.as_str()).collect())
                    .unwrap_or_default();
                self.add(
                    Class::Duplicated,
                    &row.case_id,
                    format!(
                        "{} created {made} interactions: {}",
                        describe(row),
                        ids.join(", ")
                    ),
                );
            }
        }
    }

    fn disconnect_checks(&mut self, ev: &Evidence<'_>) {
        for i in ev.interactions {
            let Some(at) = i
                .history
                .iter()
                .find(|h| h.event == HistoryEvent::Disconnected)
                .map(|h| h.at)
            else {
                continue;
            };
            let asked = ev.table.of_case(&i.case_id).iter().any(|r| {
                r.created <= at
                    && (r.event.is_closing() || (r.is_route() && r.workgroup != i.workgroup))
            });
            if !asked {
                self.add(
                    Class::OrphanDisconnect,
                    &i.case_id,
                    format!(
                        "interaction {} (case {}, entry {}, {}) disconnected at {} with no row asking for it",
                        i.id,
                        i.case_id,
                        i.entry_id,
                        i.workgroup,
                        at.format("%H:%M:%S%.3f")
                    ),
                );
            }
        }
    }

    pub fn count(&self, class: Class) -> usize {
        self.findings.iter().filter(|f| f.class == class).count()
    }

    pub fn first(&self, class: Class) -> Option<&Finding> {
        self.findings.iter().find(|f| f.class == class)
    }

    /// Whether anything that fails the check was found.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.class.fails())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join<K: fmt::Display>(m: &BTreeMap<K, usize>) -> String {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        writeln!(
            f,
            "  rows {} ({}); by event: {}",
            self.rows,
            join(&self.rows_by_status),
            join(&self.rows_by_event)
        )?;
        writeln!(
            f,
            "  cases {}, interactions created {}, live now {}, longest router up-time to final {:.1} s",
            self.cases,
            self.interactions,
            self.live,
            self.max_uptime_to_final_ms as f64 / 1000.0
        )?;
        for class in Class::ALL {
            let n = self.count(class);
            let verdict = if class.fails() {
                "fails the check"
            } else {
                "reported"
            };
            write!(f, "  {:<18} {n:>5}   ({verdict})", class.name())?;
            match self.first(class) {
                Some(first) => writeln!(f, "\n      first: {}", first.detail)?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// Router up-time (time some life was ready and not yet ended) between `from` and `to`.
pub fn uptime_between(
    lives: &[Life],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> chrono::TimeDelta {
    lives
        .iter()
        .filter_map(|l| {
            let up = l.ready?;
            let down = l.ended.unwrap_or(now);
            let start = up.max(from);
            let end = down.min(to);
            (end > start).then(|| end - start)
        })
        .sum()
}

/// Two interactions of one case live at the same time (by their histories), if any.
fn overlapping(all: &[&InteractionInfo]) -> Option<String> {
    let span = |i: &InteractionInfo| {
        let start = i
            .history
            .iter()
            .find(|h| h.event == HistoryEvent::Created)?
            .at;
        let end = i
            .history
            .iter()
            .find(|h| matches!(h.event, HistoryEvent::Disconnected | HistoryEvent::Lost))
            .map(|h| h.at);
        Some((start, end))
    };
    for (n, a) in all.iter().enumerate() {
        for b in all.iter().skip(n + 1) {
            let (Some((a0, a1)), Some((b0, b1))) = (span(a), span(b)) else {
                continue;
            };
            let a_end = a1.unwrap_or(DateTime::<Utc>::MAX_UTC);
            let b_end = b1.unwrap_or(DateTime::<Utc>::MAX_UTC);
            if a0 < b_end && b0 < a_end {
                return Some(format!(
                    "{} (entry {}, {}) and {} (entry {}, {})",
                    a.id, a.entry_id, a.workgroup, b.id, b.entry_id, b.workgroup
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::LifeEnd;
    use sors_fake_icws::HistoryEntry;
    use std::path::PathBuf;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        id: &str,
        case: &str,
        event: &str,
        status: &str,
        wg: &str,
        created: i64,
        done: Option<i64>,
        ix: Option<&str>,
    ) -> Row {
        Row {
            id: id.into(),
            name: String::new(),
            case_id: case.into(),
            event: RowEvent::parse(event),
            status: RowStatus::parse(status),
            interaction_id: ix.map(Into::into),
            error: None,
            workgroup: wg.into(),
            skills: String::new(),
            attempts: 1.0,
            created: t(created),
            processed_at: done.map(t),
        }
    }

    fn ix(
        id: &str,
        case: &str,
        entry: &str,
        wg: &str,
        created: i64,
        disconnected: Option<i64>,
    ) -> InteractionInfo {
        let mut history = vec![HistoryEntry {
            event: HistoryEvent::Created,
            at: t(created),
            agent: None,
        }];
        if let Some(d) = disconnected {
            history.push(HistoryEntry {
                event: HistoryEvent::Disconnected,
                at: t(d),
                agent: None,
            });
        }
        InteractionInfo {
            id: id.into(),
            state: if disconnected.is_some() { "I" } else { "O" }.into(),
            workgroup: wg.into(),
            agent: None,
            entry_id: entry.into(),
            case_id: case.into(),
            live: disconnected.is_none(),
            lost: false,
            attributes: BTreeMap::new(),
            history,
        }
    }

    fn life(ready: i64, ended: Option<i64>) -> Life {
        Life {
            index: 1,
            pid: 1,
            started: t(ready),
            ready: Some(t(ready)),
            ended: ended.map(t),
            end: if ended.is_some() {
                LifeEnd::Killed
            } else {
                LifeEnd::Running
            },
            rows_new_at_end: None,
            rows_processing_at_end: None,
            log: PathBuf::new(),
        }
    }

    fn open(id: &str) -> CaseState {
        CaseState {
            id: id.into(),
            closed: false,
        }
    }

    fn classify(
        rows: &[Row],
        cases: &[CaseState],
        ixs: &[InteractionInfo],
        refused: &[&str],
    ) -> Report {
        let refused: HashSet<String> = refused.iter().map(|s| (*s).to_owned()).collect();
        Report::classify(&Evidence {
            table: &RoutingTable::from_rows(rows.to_vec()),
            cases,
            interactions: ixs,
            lives: &[life(0, None)],
            expected_failed: &refused,
            late_after: Duration::from_secs(20),
            now: t(1000),
        })
    }

    fn classes(r: &Report) -> Vec<Class> {
        r.findings.iter().map(|f| f.class).collect()
    }

    #[test]
    fn a_routed_case_answered_then_routed_again_is_clean() {
        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "AgentReply",
                "Processed",
                "Support_EN",
                5,
                Some(6),
                Some("i1"),
            ),
            row(
                "r3",
                "c1",
                "EmailReceived",
                "Processed",
                "Support_EN",
                8,
                Some(9),
                Some("i2"),
            ),
        ];
        let ixs = [
            ix("i1", "c1", "r1", "Support_EN", 2, Some(6)),
            ix("i2", "c1", "r3", "Support_EN", 9, None),
        ];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(!r.failed());
    }

    #[test]
    fn a_row_never_final_and_a_case_with_nothing_live_are_lost() {
        let rows = [
            row("r1", "c1", "New", "Processing", "Support_EN", 1, None, None),
            row(
                "r2",
                "c2",
                "New",
                "Processed",
                "Billing",
                1,
                Some(2),
                Some("i2"),
            ),
        ];
        let r = classify(&rows, &[open("c1"), open("c2")], &[], &[]);
        assert_eq!(classes(&r), vec![Class::Lost, Class::Lost]);
        assert!(r.failed());
        assert!(
            r.first(Class::Lost)
                .is_some_and(|f| f.detail.contains("never final"))
        );
    }

    #[test]
    fn a_case_live_in_the_wrong_workgroup_is_lost() {
        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "QueueChanged",
                "Processed",
                "Billing",
                3,
                Some(4),
                None,
            ),
        ];
        let ixs = [ix("i1", "c1", "r1", "Support_EN", 2, None)];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(classes(&r), vec![Class::Lost]);
    }

    /// Issue 8, item 1: a case created and moved in the same millisecond. Its rows tie on
    /// CreatedDate; the query returns them in case-insensitive Id order ("…7a" before "…7Z"),
    /// but "…7Z" was created first. The case is rightly live where its newest row put it.
    #[test]
    fn rows_tied_on_created_date_are_judged_in_id_creation_order() {
        let rows = [
            row(
                "a015g000000007aAAA",
                "c1",
                "QueueChanged",
                "Processed",
                "Support_FR",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "a015g000000007ZAAQ",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                None,
            ),
        ];
        let ixs = [ix("i1", "c1", "a015g000000007aAAA", "Support_FR", 2, None)];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(classes(&r), Vec::<Class>::new(), "{:?}", r.findings);
        // and the other way round it is lost
        let ixs = [ix("i1", "c1", "a015g000000007ZAAQ", "Support_EN", 2, None)];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(classes(&r), vec![Class::Lost]);
    }

    #[test]
    fn failed_rows_are_lost_unless_the_skills_are_refused() {
        let rows = [
            row("r1", "c1", "New", "Failed", "Support_EN", 1, Some(2), None),
            row("r2", "c2", "New", "Failed", "Support_EN", 1, Some(2), None),
        ];
        let r = classify(&rows, &[open("c1"), open("c2")], &[], &["c2"]);
        assert_eq!(r.count(Class::Lost), 1, "{:?}", r.findings);
        assert!(r.findings.iter().all(|f| f.case_id == "c1"));
    }

    #[test]
    fn two_live_interactions_or_two_per_row_are_duplicates() {
        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "EmailReceived",
                "Processed",
                "Support_EN",
                3,
                Some(4),
                Some("i2"),
            ),
        ];
        let ixs = [
            ix("i1", "c1", "r1", "Support_EN", 2, None),
            ix("i2", "c1", "r2", "Support_EN", 4, None),
        ];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(classes(&r), vec![Class::Duplicated]);

        let rows = [row(
            "r1",
            "c1",
            "New",
            "Processed",
            "Support_EN",
            1,
            Some(2),
            Some("i2"),
        )];
        let ixs = [
            ix("i1", "c1", "r1", "Support_EN", 2, Some(3)),
            ix("i2", "c1", "r1", "Support_EN", 2, None),
        ];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(
            r.count(Class::Duplicated),
            2,
            "overlapping in time and one row making two: {:?}",
            r.findings
        );
    }

    #[test]
    fn a_live_interaction_on_a_closed_case_is_stray() {
        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "CaseClosed",
                "Processed",
                "Support_EN",
                3,
                Some(4),
                None,
            ),
        ];
        let ixs = [ix("i1", "c1", "r1", "Support_EN", 2, None)];
        let closed = CaseState {
            id: "c1".into(),
            closed: true,
        };
        let r = classify(&rows, &[closed], &ixs, &[]);
        assert_eq!(classes(&r), vec![Class::Stray]);
    }

    #[test]
    fn a_disconnect_no_row_asked_for_is_an_orphan_and_a_move_is_not() {
        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "Comment",
                "Processed",
                "Support_EN",
                3,
                Some(4),
                Some("i1"),
            ),
        ];
        let ixs = [ix("i1", "c1", "r1", "Support_EN", 2, Some(5))];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert_eq!(classes(&r), vec![Class::Lost, Class::OrphanDisconnect]);
        assert!(r.failed());

        let rows = [
            row(
                "r1",
                "c1",
                "New",
                "Processed",
                "Support_EN",
                1,
                Some(2),
                Some("i1"),
            ),
            row(
                "r2",
                "c1",
                "QueueChanged",
                "Processed",
                "Billing",
                3,
                Some(5),
                Some("i2"),
            ),
        ];
        let ixs = [
            ix("i1", "c1", "r1", "Support_EN", 2, Some(4)),
            ix("i2", "c1", "r2", "Billing", 5, None),
        ];
        let r = classify(&rows, &[open("c1")], &ixs, &[]);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn late_counts_router_up_time_only() {
        let rows = [row(
            "r1",
            "c1",
            "New",
            "Processed",
            "Support_EN",
            0,
            Some(100),
            Some("i1"),
        )];
        let ixs = [ix("i1", "c1", "r1", "Support_EN", 99, None)];
        let refused = HashSet::new();
        let table = RoutingTable::from_rows(rows.to_vec());
        let ev = |lives: &[Life]| {
            Report::classify(&Evidence {
                table: &table,
                cases: &[open("c1")],
                interactions: &ixs,
                lives,
                expected_failed: &refused,
                late_after: Duration::from_secs(20),
                now: t(1000),
            })
        };
        // Up 0..10 and 90..: 20 s of up-time in 100 s: not late.
        let r = ev(&[life(0, Some(10)), life(90, None)]);
        assert_eq!(r.count(Class::Late), 0, "{:?}", r.findings);
        assert_eq!(r.max_uptime_to_final_ms, 20_000);
        // Up 0..30 and 90..: 40 s: late, and late alone does not fail.
        let r = ev(&[life(0, Some(30)), life(90, None)]);
        assert_eq!(classes(&r), vec![Class::Late]);
        assert!(!r.failed());
    }
}
