//! The invariants, read from the fakes: routing rows from the fake Salesforce, interactions (with
//! their history) from the fake CIC. Also the timeline printed for a failing case.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sors_fake_icws::{HistoryEvent, InteractionInfo};
use sors_testbed::Bed;
use sors_testbed::table::{RoutingTable, RowEvent, RowStatus};

use crate::model::{Expect, Model};

/// A broken invariant (or a story that could not be played), naming the case it concerns.
#[derive(Debug)]
pub struct Failure {
    pub case: Option<String>,
    pub what: String,
}

impl Failure {
    pub fn new(case: Option<&str>, what: String) -> Failure {
        Failure {
            case: case.map(str::to_owned),
            what,
        }
    }
}

/// When an interaction was live: from its creation to its disconnect or loss (open if neither).
struct Span {
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

impl Span {
    fn of(ix: &InteractionInfo) -> Option<Span> {
        let at = |e: HistoryEvent| ix.history.iter().find(|h| h.event == e).map(|h| h.at);
        let end = match (at(HistoryEvent::Disconnected), at(HistoryEvent::Lost)) {
            (Some(d), Some(l)) => Some(d.min(l)),
            (d, l) => d.or(l),
        };
        Some(Span {
            start: at(HistoryEvent::Created)?,
            end,
        })
    }

    fn overlaps(&self, other: &Span) -> bool {
        self.end.is_none_or(|e| other.start < e) && other.end.is_none_or(|e| self.start < e)
    }
}

/// One consistent reading of both fakes: rows first, then interactions, so every interaction a
/// row names was created before the interactions were read.
pub struct Snapshot {
    /// The routing table, in creation order.
    pub table: RoutingTable,
    pub interactions: Vec<InteractionInfo>,
}

impl Snapshot {
    pub fn take(bed: &Bed) -> Result<Snapshot, Failure> {
        let table = RoutingTable::read(&bed.sf)
            .map_err(|e| Failure::new(None, format!("reading the routing rows failed: {e}")))?;
        Ok(Snapshot {
            table,
            interactions: bed.cic.interactions(),
        })
    }

    fn live_of<'a>(&'a self, case: &'a str) -> impl Iterator<Item = &'a InteractionInfo> {
        self.interactions
            .iter()
            .filter(move |i| i.live && i.case_id == case)
    }

    /// Invariants that hold at every moment, whatever is in flight and whatever faults are on.
    pub fn check_always(&self, model: &Model) -> Result<(), Failure> {
        self.never_two_live_at_once()?;
        let by_id: BTreeMap<&str, &InteractionInfo> = self
            .interactions
            .iter()
            .map(|i| (i.id.as_str(), i))
            .collect();
        for r in self.table.rows() {
            let here = Some(r.case_id.as_str());
            if r.status == RowStatus::Failed {
                return Err(Failure::new(
                    here,
                    format!(
                        "row {} ({}) is Failed although every input is valid: {:?}",
                        r.id, r.event, r.error
                    ),
                ));
            }
            let (true, Some(iid)) = (r.status == RowStatus::Processed, &r.interaction_id) else {
                continue;
            };
            let Some(ix) = by_id.get(iid.as_str()) else {
                return Err(Failure::new(
                    here,
                    format!(
                        "row {} ({}) is Processed with interaction {iid}, which CIC never created",
                        r.id, r.event
                    ),
                ));
            };
            if ix.case_id != r.case_id {
                return Err(Failure::new(
                    here,
                    format!(
                        "row {} is Processed with interaction {iid} of another case ({})",
                        r.id, ix.case_id
                    ),
                ));
            }
            let created = Span::of(ix).map(|s| s.start);
            // Processed_At__c has millisecond precision: compare at that precision.
            let created_ms =
                created.and_then(|c| c.duration_trunc(TimeDelta::milliseconds(1)).ok());
            if let (Some(done), Some(created)) = (r.processed_at, created_ms)
                && done < created
            {
                return Err(Failure::new(
                    here,
                    format!(
                        "row {} ({}) was Processed at {done} before its interaction {iid} was created at {created}",
                        r.id, r.event
                    ),
                ));
            }
        }
        for c in &model.cases {
            let written: Vec<&str> = self
                .table
                .of_case(&c.id)
                .into_iter()
                .filter(|r| r.event != RowEvent::SwitchoverRecovery)
                .map(|r| r.event.as_str())
                .collect();
            let expected: Vec<&str> = c.events.iter().map(|e| e.as_str()).collect();
            if written != expected {
                return Err(Failure::new(
                    Some(&c.id),
                    format!(
                        "the trigger wrote rows {written:?}, the model (routing.md §2) expects {expected:?}"
                    ),
                ));
            }
            if c.events.is_empty()
                && let Some(ix) = self.interactions.iter().find(|i| i.case_id == c.id)
            {
                return Err(Failure::new(
                    Some(&c.id),
                    format!(
                        "interaction {} exists for a case that never had a routing row",
                        ix.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// At most one live interaction per case and per routing row, now and at every earlier
    /// moment (from the interactions' histories).
    fn never_two_live_at_once(&self) -> Result<(), Failure> {
        let mut by_case: BTreeMap<&str, Vec<&InteractionInfo>> = BTreeMap::new();
        let mut by_entry: BTreeMap<&str, Vec<&InteractionInfo>> = BTreeMap::new();
        for ix in &self.interactions {
            by_case.entry(&ix.case_id).or_default().push(ix);
            by_entry.entry(&ix.entry_id).or_default().push(ix);
        }
        for (case, list) in &by_case {
            let live: Vec<&str> = list
                .iter()
                .filter(|i| i.live)
                .map(|i| i.id.as_str())
                .collect();
            if live.len() > 1 {
                return Err(Failure::new(
                    Some(case),
                    format!("case has {} live interactions: {live:?}", live.len()),
                ));
            }
            if let Some((a, b)) = overlapping(list) {
                return Err(Failure::new(
                    Some(case),
                    format!("interactions {a} and {b} of the case were live at the same time"),
                ));
            }
        }
        for (entry, list) in &by_entry {
            if let Some((a, b)) = overlapping(list) {
                return Err(Failure::new(
                    list.first().map(|i| i.case_id.as_str()),
                    format!(
                        "routing row {entry} produced two interactions live at the same time: {a} and {b}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What still differs from the settled state the model expects (empty once settled).
    pub fn unsettled(&self, model: &Model) -> Vec<Failure> {
        let mut out = Vec::new();
        for r in self.table.not_final() {
            out.push(Failure::new(
                Some(&r.case_id),
                format!("row {} ({}) is still {}", r.id, r.event, r.status),
            ));
        }
        for c in &model.cases {
            let live: Vec<&InteractionInfo> = self.live_of(&c.id).collect();
            let ids: Vec<&str> = live.iter().map(|i| i.id.as_str()).collect();
            let here = Some(c.id.as_str());
            match c.expect() {
                Expect::LiveOnce { workgroup, skills } => match live.as_slice() {
                    [one] => {
                        let set = one
                            .attributes
                            .get("Eic_AcdSkillSet")
                            .map(String::as_str)
                            .unwrap_or_default();
                        if one.workgroup != workgroup || set != skills {
                            out.push(Failure::new(
                                here,
                                format!(
                                    "should be live in {workgroup} with skills {skills:?}; interaction {} is in {} with {set:?}",
                                    one.id, one.workgroup
                                ),
                            ));
                        }
                    }
                    _ => out.push(Failure::new(
                        here,
                        format!(
                            "should have exactly one live interaction (in {workgroup}); has {ids:?}"
                        ),
                    )),
                },
                Expect::NothingLive(why) if !live.is_empty() => out.push(Failure::new(
                    here,
                    format!("should have nothing live ({why}); has {ids:?}"),
                )),
                _ => {}
            }
        }
        out
    }

    /// Rows and interaction events of one case, in time order.
    pub fn timeline(&self, case: &str) -> String {
        let mut lines: Vec<(Option<DateTime<Utc>>, String)> = Vec::new();
        for r in self.table.of_case(case) {
            lines.push((
                Some(r.created),
                format!(
                    "row {} {} created (workgroup {}, skills {:?})",
                    r.id, r.event, r.workgroup, r.skills
                ),
            ));
            lines.push((
                Some(r.processed_at.unwrap_or(r.created)),
                format!(
                    "row {} {} now {} (interaction {:?}, attempts {}, error {:?}, processed at {:?})",
                    r.id,
                    r.event,
                    r.status,
                    r.interaction_id,
                    r.attempts,
                    r.error,
                    r.processed_at.map(|t| t.to_rfc3339())
                ),
            ));
        }
        for ix in self.interactions.iter().filter(|i| i.case_id == case) {
            for h in &ix.history {
                lines.push((
                    Some(h.at),
                    format!(
                        "interaction {} (row {}, {}) {:?}{}",
                        ix.id,
                        ix.entry_id,
                        ix.workgroup,
                        h.event,
                        h.agent
                            .as_ref()
                            .map(|a| format!(" agent {a}"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        lines.sort_by_key(|(t, _)| *t);
        let mut out = String::new();
        for (t, line) in lines {
            let t = t.map(|t| t.format("%H:%M:%S%.6f").to_string());
            let _ = writeln!(out, "  {} {line}", t.as_deref().unwrap_or("?"));
        }
        out
    }
}

/// Two interactions of `list` whose live spans overlap, if any.
fn overlapping<'a>(list: &[&'a InteractionInfo]) -> Option<(&'a str, &'a str)> {
    let spans: Vec<(&str, Option<Span>)> =
        list.iter().map(|i| (i.id.as_str(), Span::of(i))).collect();
    for (n, (a, sa)) in spans.iter().enumerate() {
        for (b, sb) in spans.iter().skip(n + 1) {
            if let (Some(sa), Some(sb)) = (sa, sb)
                && sa.overlaps(sb)
            {
                return Some((a, b));
            }
        }
    }
    None
}
