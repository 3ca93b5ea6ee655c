//! A pure, in-memory world for driving the router: Salesforce rows and cases, and a CIC with the
//! routing handler (idempotent on the entry id) and workgroup queues. It executes the router's
//! effects and feeds their results back, recording everything the invariants need.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sors_core::model::*;
use sors_core::router::*;

pub const EN: &str = "00GEN0000000000001";
pub const FR: &str = "00GFR0000000000001";
pub const UNMONITORED: &str = "00GUN0000000000001";
pub const AGENT: &str = "005AG0000000000001";

#[derive(Clone, Debug)]
pub struct Ix {
    pub id: InteractionId,
    pub entry: RowId,
    pub case: CaseId,
    pub workgroup: String,
    pub skills: String,
    pub live: bool,
}

pub struct World {
    pub now: DateTime<Utc>,
    pub router: Router,
    pub rows: BTreeMap<RowId, RoutingRow>,
    pub cases: BTreeMap<CaseId, CaseSnapshot>,
    pub ix: BTreeMap<InteractionId, Ix>,
    /// The handler's memory: entry id → interaction.
    pub handler: HashMap<RowId, InteractionId>,
    pub cic_up: bool,
    /// When set, the handler ignores notifications (no answer: timeouts).
    pub cic_silent: bool,
    /// When set, answers to row writes are held back (a write in flight) until released.
    pub hold_writes: bool,
    pub held: Vec<Input>,
    /// Raises seen per entry.
    pub raises: HashMap<RowId, u32>,
    /// Interactions created per entry (must never exceed 1 without a switchover loss).
    pub created_per_entry: HashMap<RowId, u32>,
    pub notices: Vec<Notice>,
    pub writes: Vec<RowUpdate>,
    pub write_calls: usize,
    pub watched: Vec<String>,
    pub inputs: VecDeque<Input>,
    /// Salesforce's mapping table and CIC's configuration, as re-reads return them.
    pub mappings: Vec<QueueMapping>,
    pub workgroups: Vec<WorkgroupInfo>,
    pub skills: Vec<String>,
    pub mapping_reads: usize,
    pub config_reads: usize,
    pub reconcile_reads: usize,
    /// When each case was created (absent: at the start).
    pub case_created: HashMap<CaseId, DateTime<Utc>>,
    /// Row writes still to fail (a Salesforce outage).
    pub failing_writes: usize,
    /// Row fetches still to fail.
    pub fail_fetches: usize,
    /// When set, final marks (`Processed`/`Failed`) are lost: the process dies before they
    /// reach Salesforce (a kill between raising and marking).
    pub lose_marks: bool,
    next_id: u64,
    seq: u64,
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
}

impl World {
    pub fn new(settings: Settings) -> Self {
        let mut w = World {
            now: t0(),
            router: Router::new(settings),
            rows: BTreeMap::new(),
            cases: BTreeMap::new(),
            ix: BTreeMap::new(),
            handler: HashMap::new(),
            cic_up: true,
            cic_silent: false,
            hold_writes: false,
            held: Vec::new(),
            raises: HashMap::new(),
            created_per_entry: HashMap::new(),
            notices: Vec::new(),
            writes: Vec::new(),
            write_calls: 0,
            watched: Vec::new(),
            inputs: VecDeque::new(),
            mappings: Vec::new(),
            workgroups: Vec::new(),
            skills: Vec::new(),
            mapping_reads: 0,
            config_reads: 0,
            reconcile_reads: 0,
            case_created: HashMap::new(),
            failing_writes: 0,
            fail_fetches: 0,
            lose_marks: false,
            next_id: 1,
            seq: 0,
        };
        w.mappings = vec![
            QueueMapping {
                queue_id: EN.into(),
                queue_name: "Support EN".into(),
                workgroup: "Support_EN".into(),
            },
            QueueMapping {
                queue_id: FR.into(),
                queue_name: "Support FR".into(),
                workgroup: "Support_FR".into(),
            },
        ];
        w.workgroups = ["Support_EN", "Support_FR", "Operators"]
            .into_iter()
            .map(|n| WorkgroupInfo {
                name: n.into(),
                acd_email: n != "Operators",
            })
            .collect();
        w.skills = vec!["English".into(), "French".into(), "Premium".into()];
        w.inputs.push_back(Input::Mappings {
            mappings: w.mappings.clone(),
            as_of: t0(),
        });
        w.inputs.push_back(w.cic_config(t0()));
        w.inputs.push_back(Input::IcwsUp);
        w
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:015}", self.next_id)
    }

    pub fn add_case(&mut self, owner: &str, skills: &str) -> CaseId {
        let id = CaseId(self.id("500"));
        self.cases.insert(
            id.clone(),
            CaseSnapshot {
                id: id.clone(),
                owner_id: owner.into(),
                is_closed: false,
                case_number: format!("{:08}", self.next_id),
                subject: "Help".into(),
                skills: skills.into(),
                supplied_email: "c@example.com".into(),
                supplied_name: "Customer".into(),
                last_closing_row_at: None,
                last_route_row_at: None,
                last_route_row: None,
                last_closing_event: None,
            },
        );
        id
    }

    /// Writes a routing row as the trigger would (not yet delivered to the router).
    pub fn add_row(&mut self, case: &CaseId, event: &str, workgroup: &str, skills: &str) -> RowId {
        let id = RowId(self.id("a01"));
        self.seq += 1;
        let row = RoutingRow {
            id: id.clone(),
            case_id: Some(case.clone()),
            event: event.into(),
            status: RowStatus::New,
            queue_id: self.cases.get(case).map(|c| c.owner_id.clone()),
            workgroup: workgroup.into(),
            skills: skills.into(),
            case_number: "00001001".into(),
            subject: "Help".into(),
            from_address: "c@example.com".into(),
            from_name: "Customer".into(),
            attempts: 0,
            interaction_id: None,
            error: None,
            created_date: self.now + TimeDelta::milliseconds(self.seq as i64),
        };
        self.rows.insert(id.clone(), row);
        id
    }

    /// Delivers rows as a push would.
    pub fn push(&mut self, ids: &[RowId]) {
        self.inputs.push_back(Input::Pushed(ids.to_vec()));
    }

    /// Delivers every New/Processing row as the start-up scan would.
    pub fn scan(&mut self) {
        let rows = self.pending_rows();
        self.inputs.push_back(Input::Rows {
            source: Source::Scan,
            rows,
        });
    }

    pub fn sweep(&mut self) {
        let rows: Vec<RoutingRow> = self
            .rows
            .values()
            .filter(|r| r.status == RowStatus::New)
            .cloned()
            .collect();
        self.inputs.push_back(Input::Rows {
            source: Source::Sweep,
            rows,
        });
    }

    pub fn pending_rows(&self) -> Vec<RoutingRow> {
        self.rows
            .values()
            .filter(|r| !r.status.is_final())
            .cloned()
            .collect()
    }

    /// Creates an interaction directly in CIC (as if routed earlier), live.
    pub fn make_live(&mut self, case: &CaseId, entry: &RowId, workgroup: &str) -> InteractionId {
        let id = InteractionId(format!("{:010}", 1_000_000 + self.next_id));
        self.next_id += 1;
        self.ix.insert(
            id.clone(),
            Ix {
                id: id.clone(),
                entry: entry.clone(),
                case: case.clone(),
                workgroup: workgroup.into(),
                skills: String::new(),
                live: true,
            },
        );
        self.handler.insert(entry.clone(), id.clone());
        id
    }

    pub fn live_of(&self, case: &CaseId) -> Vec<&Ix> {
        self.ix
            .values()
            .filter(|i| i.live && &i.case == case)
            .collect()
    }

    fn live_interaction(ix: &Ix) -> LiveInteraction {
        LiveInteraction {
            id: ix.id.clone(),
            case_id: Some(ix.case.clone()),
            entry_id: Some(ix.entry.clone()),
            workgroup: ix.workgroup.clone(),
            skills: ix.skills.clone(),
            state: "O".into(),
            agent: None,
        }
    }

    fn snapshot(&mut self, wg: &str) {
        let list = self
            .ix
            .values()
            .filter(|i| i.live && i.workgroup == wg)
            .map(Self::live_interaction)
            .collect();
        self.inputs.push_back(Input::Snapshot {
            workgroup: wg.into(),
            interactions: list,
        });
    }

    /// CIC switchover: live interactions survive only with `recovery`; the handler forgets its
    /// entries when they do not.
    pub fn switchover(&mut self, recovery: bool) {
        self.inputs.push_back(Input::IcwsDown {
            reason: "switchover".into(),
        });
        if !recovery {
            for i in self.ix.values_mut() {
                i.live = false;
            }
            self.handler.clear();
        }
        self.inputs.push_back(Input::IcwsUp);
        for wg in self.watched.clone() {
            self.snapshot(&wg);
        }
    }

    /// Delivers the held write answers.
    pub fn release_writes(&mut self) {
        self.hold_writes = false;
        let held = std::mem::take(&mut self.held);
        self.inputs.extend(held);
    }

    pub fn tick(&mut self, secs: i64) {
        self.now += TimeDelta::seconds(secs);
        self.inputs.push_back(Input::Tick);
    }

    /// Feeds inputs and executes effects until nothing is left.
    pub fn settle(&mut self) {
        let mut guard = 0;
        while let Some(input) = self.inputs.pop_front() {
            guard += 1;
            assert!(guard < 100_000, "the router does not settle");
            let effects = self.router.handle(self.now, input);
            for e in effects {
                self.apply(e);
            }
        }
    }

    /// Ticks until every row is final or the limit is hit.
    pub fn run_to_quiescence(&mut self, max_ticks: usize) {
        self.settle();
        for _ in 0..max_ticks {
            if self.rows.values().all(|r| r.status.is_final()) {
                return;
            }
            self.tick(5);
            self.settle();
        }
    }

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::FetchRows(ids) => {
                if self.fail_fetches > 0 {
                    self.fail_fetches -= 1;
                    self.inputs.push_back(Input::FetchFailed {
                        ids,
                        error: "503".into(),
                    });
                    return;
                }
                let rows = ids
                    .iter()
                    .filter_map(|i| self.rows.get(i).cloned())
                    .collect();
                self.inputs.push_back(Input::Rows {
                    source: Source::Push,
                    rows,
                });
            }
            Effect::ReadCases(ids) => {
                let found = ids.iter().filter_map(|i| self.case_view(i)).collect();
                self.inputs.push_back(Input::Cases {
                    requested: ids,
                    found,
                });
            }
            Effect::ReadMappings => {
                self.mapping_reads += 1;
                self.inputs.push_back(Input::Mappings {
                    mappings: self.mappings.clone(),
                    as_of: self.now,
                });
            }
            Effect::ReadCicConfig => {
                self.config_reads += 1;
                self.inputs.push_back(self.cic_config(self.now));
            }
            Effect::ReadForReconcile {
                queues,
                since,
                live_cases,
            } => {
                self.reconcile_reads += 1;
                let mut ids: Vec<CaseId> = self
                    .cases
                    .values()
                    .filter(|c| !c.is_closed && queues.contains(&c.owner_id))
                    .filter(|c| self.case_created.get(&c.id).is_none_or(|t| *t >= since))
                    .map(|c| c.id.clone())
                    .collect();
                ids.extend(live_cases.iter().cloned());
                ids.sort();
                ids.dedup();
                let found = ids.iter().filter_map(|i| self.case_view(i)).collect();
                self.inputs.push_back(Input::Reconcile {
                    as_of: self.now,
                    live_cases,
                    found,
                });
            }
            Effect::WriteRows(updates) => {
                self.write_calls += 1;
                let mut results = Vec::new();
                for u in updates {
                    if self.lose_marks && u.status.is_final() {
                        continue;
                    }
                    if self.failing_writes > 0 {
                        self.failing_writes -= 1;
                        results.push((u.id, WriteResult::Retry("503 Service Unavailable".into())));
                        continue;
                    }
                    let res = match self.rows.get_mut(&u.id) {
                        None => WriteResult::Gone,
                        Some(r) => {
                            if u.status == RowStatus::Processed
                                && let Some(i) = &u.interaction_id
                            {
                                // Invariant: a row is never Processed before its interaction exists.
                                assert!(
                                    self.ix.contains_key(i),
                                    "row {} marked Processed with unknown interaction {i}",
                                    u.id
                                );
                            }
                            r.status = u.status;
                            if let Some(a) = u.attempts {
                                r.attempts = a;
                            }
                            if u.interaction_id.is_some() {
                                r.interaction_id = u.interaction_id.clone();
                            }
                            r.error = u.error.clone();
                            WriteResult::Ok
                        }
                    };
                    self.writes.push(u.clone());
                    results.push((u.id, res));
                }
                if self.hold_writes {
                    self.held.push(Input::Written(results));
                } else {
                    self.inputs.push_back(Input::Written(results));
                }
            }
            Effect::Raise(req) => {
                *self.raises.entry(req.entry_id.clone()).or_default() += 1;
                if !self.cic_up {
                    self.inputs.push_back(Input::RaiseFailed {
                        entry_id: req.entry_id,
                        error: "CIC is down".into(),
                    });
                    return;
                }
                if self.cic_silent {
                    return;
                }
                let id = match self.handler.get(&req.entry_id) {
                    Some(id) => id.clone(),
                    None => {
                        let id = InteractionId(format!("{:010}", 2_000_000 + self.next_id));
                        self.next_id += 1;
                        let ix = Ix {
                            id: id.clone(),
                            entry: req.entry_id.clone(),
                            case: req.case_id.clone(),
                            workgroup: req.workgroup.clone(),
                            skills: req.skills.join(";"),
                            live: true,
                        };
                        *self
                            .created_per_entry
                            .entry(req.entry_id.clone())
                            .or_default() += 1;
                        self.inputs
                            .push_back(Input::Upsert(Self::live_interaction(&ix)));
                        self.ix.insert(id.clone(), ix);
                        self.handler.insert(req.entry_id.clone(), id.clone());
                        id
                    }
                };
                self.inputs.push_back(Input::RouteResult {
                    entry_id: req.entry_id,
                    outcome: RouteOutcome::Created(id),
                });
            }
            Effect::Disconnect { interaction, .. } => {
                let result = match self.ix.get_mut(&interaction) {
                    Some(i) if i.live => {
                        i.live = false;
                        self.inputs.push_back(Input::Removed {
                            id: interaction.clone(),
                        });
                        DisconnectResult::Disconnected
                    }
                    _ => DisconnectResult::AlreadyGone,
                };
                self.inputs.push_back(Input::DisconnectDone {
                    interaction,
                    result,
                });
            }
            Effect::InsertRow(new) => {
                let case = new.case_id.clone();
                let id = self.add_row(&case, new.event.as_str(), &new.workgroup, &new.skills);
                self.inputs.push_back(Input::RowInserted {
                    case_id: case,
                    result: Ok(id.clone()),
                });
                self.push(&[id]);
            }
            Effect::Watch(wgs) => {
                let new: Vec<String> = wgs
                    .iter()
                    .filter(|w| !self.watched.contains(w))
                    .cloned()
                    .collect();
                self.watched = wgs;
                for w in new {
                    self.snapshot(&w);
                }
            }
            Effect::Notify(n) => self.notices.push(n),
        }
    }

    /// The case as the Salesforce client reads it: its fields and its routing history.
    pub fn case_view(&self, id: &CaseId) -> Option<CaseSnapshot> {
        let mut c = self.cases.get(id)?.clone();
        let rows: Vec<&RoutingRow> = self
            .rows
            .values()
            .filter(|r| r.case_id.as_ref() == Some(&c.id))
            .collect();
        let closing = rows
            .iter()
            .filter(|r| r.event == "AgentReply" || r.event == "CaseClosed")
            .max_by_key(|r| r.created_date);
        c.last_closing_row_at = closing.map(|r| r.created_date);
        c.last_closing_event = closing.and_then(|r| RowEvent::parse(&r.event));
        let route = rows
            .iter()
            .filter(|r| RowEvent::parse(&r.event).is_some_and(RowEvent::is_route))
            .filter(|r| r.status != RowStatus::Failed)
            .max_by_key(|r| r.created_date);
        c.last_route_row_at = route.map(|r| r.created_date);
        c.last_route_row = route.map(|r| RowSummary {
            id: r.id.clone(),
            status: r.status,
            workgroup: r.workgroup.clone(),
            interaction_id: r.interaction_id.clone(),
            created_date: r.created_date,
        });
        Some(c)
    }

    pub fn cic_config(&self, as_of: DateTime<Utc>) -> Input {
        Input::CicConfig {
            workgroups: self.workgroups.clone(),
            skills: self.skills.clone(),
            as_of,
        }
    }

    /// The router process dies and a new one starts: memory lost, Salesforce and CIC are the
    /// truth. Anything in flight is lost with it.
    pub fn restart(&mut self, settings: Settings) {
        self.inputs.clear();
        self.held.clear();
        self.lose_marks = false;
        self.router = Router::new(settings);
        self.watched.clear();
        self.inputs.push_back(Input::Mappings {
            mappings: self.mappings.clone(),
            as_of: self.now,
        });
        self.inputs.push_back(self.cic_config(self.now));
        self.inputs.push_back(Input::IcwsUp);
        self.settle();
        self.scan();
    }

    /// A Salesforce write outage: the next `n` row writes fail with a transient error.
    pub fn fail_writes(&mut self, n: usize) {
        self.failing_writes = n;
    }

    pub fn status(&self, row: &RowId) -> RowStatus {
        self.rows[row].status
    }

    pub fn row(&self, row: &RowId) -> &RoutingRow {
        &self.rows[row]
    }

    pub fn total_raises(&self) -> u32 {
        self.raises.values().sum()
    }
}
