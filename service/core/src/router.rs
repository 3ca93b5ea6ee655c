//! The router as a deterministic state machine: `handle(now, input) -> effects`.
//!
//! The runtime feeds it what the two sides report (rows, case snapshots, live interactions,
//! handler results, write results, ticks) and carries out the effects it returns (fetch rows, read
//! cases, write rows, raise the handler notification, disconnect, insert a row, change the queue
//! watches). All of routing.md §3 lives here; the runtime only does I/O.
//!
//! Guarantees kept by this module (checked by its tests and by the property tests):
//! - a row is held by at most one stage at a time, so it is never started twice, whichever of
//!   push, scan, sweep or replay delivered it;
//! - rows of one case run one at a time, oldest first; rows of different cases run concurrently up
//!   to `max_in_flight`;
//! - a route row is marked `Processed` only with the id of an interaction that the handler
//!   reported or that was seen live for its entry;
//! - at most one live interaction per case: a case already live in the row's workgroup is not
//!   routed again, and a case live elsewhere is disconnected there first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::*;
use crate::rules;

/// Routing settings (config `[routing]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub auto_disconnect_on_reply: bool,
    pub reroute_lost_on_switchover: bool,
    /// Cases routed at once.
    pub max_in_flight: usize,
    /// How long to wait for the handler's result and the interaction, per attempt.
    pub route_timeout: TimeDelta,
    /// Attempts per row (claims, disconnect rounds) before it ends `Failed`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 16×.
    pub retry_backoff: TimeDelta,
    /// How long a finished row is remembered so a stale push or read cannot restart it.
    pub finished_memory: TimeDelta,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auto_disconnect_on_reply: true,
            reroute_lost_on_switchover: true,
            max_in_flight: 32,
            route_timeout: TimeDelta::seconds(30),
            max_attempts: 5,
            retry_backoff: TimeDelta::seconds(5),
            finished_memory: TimeDelta::minutes(10),
        }
    }
}

/// A monitored Salesforce queue and its CIC workgroup (`Interaction_Routing_Queue__c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMapping {
    pub queue_id: String,
    pub queue_name: String,
    pub workgroup: String,
}

/// Where rows came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    /// The start-up (or resync) scan of `New` and `Processing` rows.
    Scan,
    /// Rows fetched after a push.
    Push,
    /// The periodic sweep of old `New` rows: any unknown row found here was a missed push.
    Sweep,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    /// The row no longer exists (deleted): forget it.
    Gone,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectResult {
    Disconnected,
    AlreadyGone,
    Failed(String),
}

/// What the runtime reports to the router.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A push named these rows (their fields are fetched only if the router needs them).
    Pushed(Vec<RowId>),
    Rows {
        source: Source,
        rows: Vec<RoutingRow>,
    },
    /// Answer to [`Effect::ReadCases`]: cases not in `found` are deleted.
    Cases {
        requested: Vec<CaseId>,
        found: Vec<CaseSnapshot>,
    },
    CasesFailed {
        requested: Vec<CaseId>,
        error: String,
    },
    Mappings(Vec<QueueMapping>),
    CicConfig {
        workgroups: Vec<WorkgroupInfo>,
        skills: Vec<String>,
    },
    IcwsUp,
    IcwsDown {
        reason: String,
    },
    /// The full contents of a watched workgroup queue (`isDelta:false`).
    Snapshot {
        workgroup: String,
        interactions: Vec<LiveInteraction>,
    },
    /// An interaction appeared or changed in a watched workgroup queue.
    Upsert(LiveInteraction),
    Removed {
        id: InteractionId,
    },
    RouteResult {
        entry_id: RowId,
        outcome: RouteOutcome,
    },
    RaiseFailed {
        entry_id: RowId,
        error: String,
    },
    Written(Vec<(RowId, WriteResult)>),
    DisconnectDone {
        interaction: InteractionId,
        result: DisconnectResult,
    },
    RowInserted {
        case_id: CaseId,
        result: Result<RowId, String>,
    },
    /// Time passes (the runtime ticks about once a second).
    Tick,
}

/// What the router asks the runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    FetchRows(Vec<RowId>),
    ReadCases(Vec<CaseId>),
    /// Claims and marks, to be written in as few calls as possible; results come back as
    /// [`Input::Written`].
    WriteRows(Vec<RowUpdate>),
    Raise(RouteRequest),
    Disconnect {
        interaction: InteractionId,
        case_id: CaseId,
    },
    InsertRow(NewRoutingRow),
    /// The complete set of workgroup queues to watch.
    Watch(Vec<String>),
    Notify(Notice),
}

/// Things worth a log line, a metric or an alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Notice {
    Routed {
        row: RowId,
        case_id: CaseId,
        interaction: InteractionId,
        event: RowEvent,
        attempts: u32,
        /// From the row's `CreatedDate` to now: the time-to-route.
        millis_since_created: i64,
    },
    /// A row ended `Processed` without creating anything (superseded, already live, left routing,
    /// disconnect done).
    Closed {
        row: RowId,
        note: String,
    },
    Failed {
        row: RowId,
        reason: String,
    },
    Retrying {
        row: RowId,
        attempt: u32,
        reason: String,
    },
    Disconnected {
        interaction: InteractionId,
        case_id: CaseId,
        why: String,
    },
    /// The sweep found rows no push had announced.
    PushLost {
        rows: usize,
    },
    /// Reconciliation after CIC came back.
    SwitchoverReconciled {
        lost: usize,
        reraised: usize,
        rerouting: usize,
    },
    RecoveryRowInserted {
        case_id: CaseId,
        row: RowId,
    },
    RecoveryRowFailed {
        case_id: CaseId,
        error: String,
    },
}

/// Counters and gauges for the status endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub known_rows: usize,
    pub waiting_rows: usize,
    pub in_flight: usize,
    pub live_interactions: usize,
    pub cic_ready: bool,
    pub watched: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Waiting for its turn (case idle, snapshot fresh, CIC ready, a free slot).
    Pending,
    /// Disconnecting the case's live interactions; then claim (a moved case) or mark (reply).
    Disconnecting {
        waiting: BTreeSet<InteractionId>,
        done: Vec<InteractionId>,
        then_route: bool,
    },
    Claiming,
    Raised {
        deadline: DateTime<Utc>,
        result: Option<InteractionId>,
    },
    /// Waiting before the case is planned again.
    Backoff {
        until: DateTime<Utc>,
    },
    /// The final write is out.
    Marking {
        update: RowUpdate,
        retry_at: Option<DateTime<Utc>>,
    },
}

#[derive(Clone, Debug)]
struct Row {
    row: RoutingRow,
    event: Option<RowEvent>,
    stage: Stage,
    /// Failed rounds in this process (claims, disconnects, writes): bounds retries.
    tries: u32,
}

impl Row {
    fn order_key(&self) -> (DateTime<Utc>, RowId) {
        (self.row.created_date, self.row.id.clone())
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Snap {
    Stale,
    Requested,
    Failed {
        retry_at: DateTime<Utc>,
    },
    /// `None`: the case is gone.
    Fresh(Option<CaseSnapshot>),
}

#[derive(Clone, Debug)]
struct Case {
    pending: BTreeSet<(DateTime<Utc>, RowId)>,
    active: Option<RowId>,
    snap: Snap,
    /// A lost interaction to re-route once the case is read (switchover recovery).
    recover: bool,
}

impl Case {
    fn new() -> Self {
        Case {
            pending: BTreeSet::new(),
            active: None,
            snap: Snap::Stale,
            recover: false,
        }
    }
}

/// The router's memory: everything in it can be rebuilt from Salesforce and CIC after a restart.
#[derive(Clone, Debug)]
pub struct Router {
    settings: Settings,
    rows: HashMap<RowId, Row>,
    cases: BTreeMap<CaseId, Case>,
    finished: HashMap<RowId, DateTime<Utc>>,
    /// Rows a push named that are still being fetched: not missed pushes.
    announced: HashMap<RowId, DateTime<Utc>>,
    in_flight: usize,

    monitored: HashMap<String, String>,
    mappings_loaded: bool,
    workgroups: HashMap<String, WorkgroupInfo>,
    skills: HashSet<String>,
    config_loaded: bool,

    cic_up: bool,
    live: BTreeMap<InteractionId, LiveInteraction>,
    seen_snapshots: HashSet<String>,
    watched: BTreeSet<String>,
    emitted_watch: Option<BTreeSet<String>>,
    disconnected_by_us: HashMap<InteractionId, DateTime<Utc>>,
    live_before_loss: Option<BTreeMap<InteractionId, LiveInteraction>>,
}

impl Router {
    pub fn new(settings: Settings) -> Self {
        Router {
            settings,
            rows: HashMap::new(),
            cases: BTreeMap::new(),
            finished: HashMap::new(),
            announced: HashMap::new(),
            in_flight: 0,
            monitored: HashMap::new(),
            mappings_loaded: false,
            workgroups: HashMap::new(),
            skills: HashSet::new(),
            config_loaded: false,
            cic_up: false,
            live: BTreeMap::new(),
            seen_snapshots: HashSet::new(),
            watched: BTreeSet::new(),
            emitted_watch: None,
            disconnected_by_us: HashMap::new(),
            live_before_loss: None,
        }
    }

    pub fn status(&self) -> Status {
        Status {
            known_rows: self.rows.len(),
            waiting_rows: self
                .rows
                .values()
                .filter(|r| r.stage == Stage::Pending)
                .count(),
            in_flight: self.in_flight,
            live_interactions: self.live.len(),
            cic_ready: self.cic_ready(),
            watched: self.watched.iter().cloned().collect(),
        }
    }

    /// Feeds one input; returns the effects to carry out, in order.
    pub fn handle(&mut self, now: DateTime<Utc>, input: Input) -> Vec<Effect> {
        let mut out = Out::default();
        match input {
            Input::Pushed(ids) => self.on_pushed(now, ids, &mut out),
            Input::Rows { source, rows } => self.on_rows(now, source, rows, &mut out),
            Input::Cases { requested, found } => self.on_cases(requested, found, &mut out),
            Input::CasesFailed { requested, .. } => {
                for id in requested {
                    if let Some(c) = self.cases.get_mut(&id) {
                        if c.snap == Snap::Requested {
                            c.snap = Snap::Failed {
                                retry_at: now + self.settings.retry_backoff,
                            };
                        }
                    }
                }
            }
            Input::Mappings(maps) => {
                self.monitored = maps
                    .into_iter()
                    .map(|m| (m.queue_id, m.workgroup))
                    .collect();
                self.mappings_loaded = true;
            }
            Input::CicConfig { workgroups, skills } => {
                self.workgroups = workgroups
                    .into_iter()
                    .map(|w| (w.name.clone(), w))
                    .collect();
                self.skills = skills.into_iter().collect();
                self.config_loaded = true;
            }
            Input::IcwsUp => self.cic_up = true,
            Input::IcwsDown { .. } => self.on_icws_down(),
            Input::Snapshot {
                workgroup,
                interactions,
            } => {
                self.live.retain(|_, li| li.workgroup != workgroup);
                for li in interactions {
                    self.on_upsert(now, li, &mut out);
                }
                self.seen_snapshots.insert(workgroup);
            }
            Input::Upsert(li) => self.on_upsert(now, li, &mut out),
            Input::Removed { id } => {
                self.live.remove(&id);
            }
            Input::RouteResult { entry_id, outcome } => {
                self.on_route_result(now, entry_id, outcome, &mut out)
            }
            Input::RaiseFailed { entry_id, error } => {
                if let Some(r) = self.rows.get(&entry_id) {
                    if matches!(r.stage, Stage::Raised { .. }) {
                        self.retry(
                            now,
                            &entry_id,
                            format!("raising the notification failed: {error}"),
                            &mut out,
                        );
                    }
                }
            }
            Input::Written(results) => self.on_written(now, results, &mut out),
            Input::DisconnectDone {
                interaction,
                result,
            } => self.on_disconnect_done(now, interaction, result, &mut out),
            Input::RowInserted { case_id, result } => match result {
                Ok(row) => out.notify(Notice::RecoveryRowInserted { case_id, row }),
                Err(error) => out.notify(Notice::RecoveryRowFailed { case_id, error }),
            },
            Input::Tick => self.on_tick(now, &mut out),
        }
        self.advance(now, &mut out);
        out.finish()
    }

    // ---------------------------------------------------------------- inputs

    fn on_pushed(&mut self, now: DateTime<Utc>, ids: Vec<RowId>, out: &mut Out) {
        let fetch: Vec<RowId> = ids
            .into_iter()
            .filter(|id| {
                !self.rows.contains_key(id)
                    && !self.finished.contains_key(id)
                    && self.announced.insert(id.clone(), now).is_none()
            })
            .collect();
        if !fetch.is_empty() {
            out.effects.push(Effect::FetchRows(fetch));
        }
    }

    fn on_rows(
        &mut self,
        now: DateTime<Utc>,
        source: Source,
        rows: Vec<RoutingRow>,
        out: &mut Out,
    ) {
        let mut missed = 0;
        for row in rows {
            let announced = self.announced.remove(&row.id).is_some();
            if row.status.is_final()
                || self.rows.contains_key(&row.id)
                || self.finished.contains_key(&row.id)
            {
                continue;
            }
            if source == Source::Sweep && row.status == RowStatus::New && !announced {
                missed += 1;
            }
            let event = RowEvent::parse(&row.event);
            let id = row.id.clone();
            let reason = match (&event, &row.case_id) {
                (None, _) => Some(format!(
                    "Unknown Event__c '{}'; expected one of {}",
                    row.event,
                    RowEvent::ALL.map(RowEvent::as_str).join(", ")
                )),
                (_, None) => Some("Case__c is empty".to_owned()),
                _ => None,
            };
            let entry = Row {
                row,
                event,
                stage: Stage::Pending,
                tries: 0,
            };
            let key = entry.order_key();
            let case_id = entry.row.case_id.clone();
            self.rows.insert(id.clone(), entry);
            match (reason, case_id) {
                (Some(reason), _) => self.fail(now, &id, reason, out),
                (None, Some(case_id)) => {
                    let case = self.cases.entry(case_id).or_insert_with(Case::new);
                    case.pending.insert(key);
                    if matches!(case.snap, Snap::Fresh(_)) {
                        case.snap = Snap::Stale;
                    }
                }
                (None, None) => {}
            }
        }
        if missed > 0 {
            out.notify(Notice::PushLost { rows: missed });
        }
    }

    fn on_cases(&mut self, requested: Vec<CaseId>, found: Vec<CaseSnapshot>, out: &mut Out) {
        let mut found: HashMap<CaseId, CaseSnapshot> =
            found.into_iter().map(|c| (c.id.clone(), c)).collect();
        for id in requested {
            let snap = found.remove(&id);
            let live_now = self
                .live
                .values()
                .any(|li| li.case_id.as_ref() == Some(&id));
            let Some(case) = self.cases.get_mut(&id) else {
                continue;
            };
            case.snap = Snap::Fresh(snap.clone());
            let idle = case.active.is_none() && case.pending.is_empty();
            // A lost interaction is re-routed once its case is idle (a row still being handled
            // may have been the one whose interaction was lost), unless something is live again.
            if case.recover && idle {
                case.recover = false;
                if let (false, Some(s)) = (live_now, snap) {
                    // Answered meanwhile: the case's newest row is a reply or a close.
                    let answered = match (s.last_closing_row_at, s.last_route_row_at) {
                        (Some(c), Some(r)) => c >= r,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if let Some(workgroup) = self
                        .monitored
                        .get(&s.owner_id)
                        .filter(|_| !s.is_closed && !answered)
                    {
                        out.effects.push(Effect::InsertRow(NewRoutingRow {
                            case_id: id.clone(),
                            event: RowEvent::SwitchoverRecovery,
                            queue_id: Some(s.owner_id.clone()),
                            workgroup: workgroup.clone(),
                            skills: s.skills,
                            case_number: s.case_number,
                            subject: s.subject,
                            from_address: s.supplied_email,
                            from_name: s.supplied_name,
                        }));
                    }
                }
            }
        }
    }

    fn on_icws_down(&mut self) {
        if self.cic_up || !self.live.is_empty() {
            let before = std::mem::take(&mut self.live);
            if self.live_before_loss.is_none() {
                self.live_before_loss = Some(before);
            }
        }
        self.cic_up = false;
        self.seen_snapshots.clear();
    }

    fn on_upsert(&mut self, now: DateTime<Utc>, li: LiveInteraction, out: &mut Out) {
        if self.disconnected_by_us.contains_key(&li.id) {
            return;
        }
        let entry = li.entry_id.clone();
        let id = li.id.clone();
        self.live.insert(li.id.clone(), li);
        if let Some(entry) = entry {
            if matches!(
                self.rows.get(&entry).map(|r| &r.stage),
                Some(Stage::Raised { .. })
            ) {
                self.complete_route(now, &entry, id, None, out);
            }
        }
    }

    fn on_route_result(
        &mut self,
        now: DateTime<Utc>,
        entry: RowId,
        outcome: RouteOutcome,
        out: &mut Out,
    ) {
        if !matches!(
            self.rows.get(&entry).map(|r| &r.stage),
            Some(Stage::Raised { .. })
        ) {
            return;
        }
        match outcome {
            RouteOutcome::Created(id) if self.live.contains_key(&id) => {
                self.complete_route(now, &entry, id, None, out)
            }
            RouteOutcome::Created(id) => {
                if let Some(Stage::Raised { result, .. }) =
                    self.rows.get_mut(&entry).map(|r| &mut r.stage)
                {
                    *result = Some(id);
                }
            }
            RouteOutcome::Error(msg) => self.fail(now, &entry, format!("CIC handler: {msg}"), out),
        }
    }

    fn on_written(
        &mut self,
        now: DateTime<Utc>,
        results: Vec<(RowId, WriteResult)>,
        out: &mut Out,
    ) {
        for (id, res) in results {
            let Some(stage) = self.rows.get(&id).map(|r| r.stage.clone()) else {
                continue;
            };
            match (stage, res) {
                (Stage::Claiming, WriteResult::Ok) => {
                    let deadline = now + self.settings.route_timeout;
                    if let Some(row) = self.rows.get_mut(&id) {
                        row.row.attempts += 1;
                        row.row.status = RowStatus::Processing;
                        row.stage = Stage::Raised {
                            deadline,
                            result: None,
                        };
                    }
                    if let Some(req) = self.route_request(&id) {
                        out.effects.push(Effect::Raise(req));
                    }
                }
                (Stage::Claiming, WriteResult::Failed(e)) => {
                    self.retry(now, &id, format!("claiming the row failed: {e}"), out)
                }
                (Stage::Marking { .. }, WriteResult::Ok | WriteResult::Gone)
                | (Stage::Claiming, WriteResult::Gone) => self.forget(now, &id),
                (Stage::Marking { .. }, WriteResult::Failed(e)) => {
                    let max = self.settings.max_attempts;
                    let Some(row) = self.rows.get_mut(&id) else {
                        continue;
                    };
                    row.tries += 1;
                    let tries = row.tries;
                    if tries >= max {
                        // Leave it to the sweep: the row stays New/Processing in Salesforce.
                        out.notify(Notice::Retrying {
                            row: id.clone(),
                            attempt: tries,
                            reason: format!(
                                "writing the row failed: {e}; the sweep will pick it up"
                            ),
                        });
                        self.forget(now, &id);
                    } else if let Stage::Marking { retry_at, .. } = &mut row.stage {
                        *retry_at = Some(now + backoff(&self.settings, tries));
                    }
                }
                _ => {}
            }
        }
    }

    fn on_disconnect_done(
        &mut self,
        now: DateTime<Utc>,
        interaction: InteractionId,
        result: DisconnectResult,
        out: &mut Out,
    ) {
        let owner = self.rows.iter().find_map(|(id, r)| match &r.stage {
            Stage::Disconnecting { waiting, .. } if waiting.contains(&interaction) => {
                Some(id.clone())
            }
            _ => None,
        });
        let Some(row_id) = owner else {
            return;
        };
        match result {
            DisconnectResult::Failed(e) => {
                self.retry(
                    now,
                    &row_id,
                    format!("disconnecting interaction {interaction} failed: {e}"),
                    out,
                );
            }
            DisconnectResult::Disconnected | DisconnectResult::AlreadyGone => {
                self.live.remove(&interaction);
                self.disconnected_by_us.insert(interaction.clone(), now);
                let Some(row) = self.rows.get_mut(&row_id) else {
                    return;
                };
                let why = row.event.map(|e| e.as_str()).unwrap_or("").to_owned();
                let case_id = row.row.case_id.clone();
                let Stage::Disconnecting {
                    waiting,
                    done,
                    then_route,
                } = &mut row.stage
                else {
                    return;
                };
                waiting.remove(&interaction);
                done.push(interaction.clone());
                let finished = waiting.is_empty();
                let then_route = *then_route;
                let done = done.clone();
                if let (Some(case_id), true) = (case_id, result == DisconnectResult::Disconnected) {
                    out.notify(Notice::Disconnected {
                        interaction,
                        case_id,
                        why,
                    });
                }
                if finished {
                    if then_route {
                        self.claim(now, &row_id, out);
                    } else {
                        let note = format!("disconnected {} interaction(s)", done.len());
                        self.close(now, &row_id, done.first().cloned(), note, out);
                    }
                }
            }
        }
    }

    fn on_tick(&mut self, now: DateTime<Utc>, out: &mut Out) {
        let mut expired = Vec::new();
        let mut rewrites = Vec::new();
        let mut replan = Vec::new();
        for (id, r) in &mut self.rows {
            match &mut r.stage {
                Stage::Raised { deadline, result } if *deadline <= now => {
                    expired.push((id.clone(), result.clone()))
                }
                Stage::Backoff { until } if *until <= now => replan.push(id.clone()),
                Stage::Marking { update, retry_at } if retry_at.is_some_and(|t| t <= now) => {
                    *retry_at = None;
                    rewrites.push(update.clone());
                }
                _ => {}
            }
        }
        for (id, result) in expired {
            match result {
                Some(interaction) => self.complete_route(
                    now,
                    &id,
                    interaction,
                    Some("the interaction was not seen in the workgroup queue".to_owned()),
                    out,
                ),
                None => self.retry(now, &id, "no answer from CIC in time".to_owned(), out),
            }
        }
        for id in replan {
            self.release_to_pending(&id);
            // The case may have moved meanwhile: read it again before the next round.
            let case = self.rows.get(&id).and_then(|r| r.row.case_id.clone());
            if let Some(c) = case.and_then(|c| self.cases.get_mut(&c)) {
                c.snap = Snap::Stale;
            }
        }
        if !rewrites.is_empty() {
            out.writes.extend(rewrites);
        }
        for case in self.cases.values_mut() {
            if let Snap::Failed { retry_at } = case.snap {
                if retry_at <= now {
                    case.snap = Snap::Stale;
                }
            }
        }
        let memory = self.settings.finished_memory;
        self.finished.retain(|_, t| now - *t < memory);
        self.announced.retain(|_, t| now - *t < memory);
        self.disconnected_by_us.retain(|_, t| now - *t < memory);
    }

    // ---------------------------------------------------------------- decisions

    fn cic_ready(&self) -> bool {
        self.cic_up
            && self.config_loaded
            && self.watched.iter().all(|w| self.seen_snapshots.contains(w))
    }

    fn advance(&mut self, now: DateTime<Utc>, out: &mut Out) {
        self.update_watch(out);
        if self.cic_ready() {
            self.reconcile_after_loss(now, out);
        }
        let ready = self.cic_ready() && self.mappings_loaded;
        let mut reads = Vec::new();
        let candidates: Vec<CaseId> = self
            .cases
            .iter()
            .filter(|(_, c)| c.active.is_none() && (!c.pending.is_empty() || c.recover))
            .map(|(id, _)| id.clone())
            .collect();
        for case_id in candidates {
            let Some(case) = self.cases.get_mut(&case_id) else {
                continue;
            };
            match case.snap {
                Snap::Stale => {
                    case.snap = Snap::Requested;
                    reads.push(case_id);
                    continue;
                }
                Snap::Requested | Snap::Failed { .. } => continue,
                Snap::Fresh(_) => {}
            }
            if ready {
                self.decide(now, &case_id, out);
            }
        }
        if !reads.is_empty() {
            out.effects.push(Effect::ReadCases(reads));
        }
        self.cases.retain(|_, c| {
            c.active.is_some() || !c.pending.is_empty() || c.recover || c.snap == Snap::Requested
        });
    }

    fn update_watch(&mut self, out: &mut Out) {
        if !self.config_loaded {
            return;
        }
        let valid = |w: &String| self.workgroups.get(w).is_some_and(|i| i.acd_email);
        let mut want: BTreeSet<String> = self
            .monitored
            .values()
            .filter(|w| valid(w))
            .cloned()
            .collect();
        for r in self.rows.values() {
            if r.event.is_some_and(RowEvent::is_route) && valid(&r.row.workgroup) {
                want.insert(r.row.workgroup.clone());
            }
        }
        // Never stop watching a workgroup while something live sits in it.
        for li in self.live.values() {
            if self.watched.contains(&li.workgroup) {
                want.insert(li.workgroup.clone());
            }
        }
        self.watched = want;
        if self.emitted_watch.as_ref() != Some(&self.watched) {
            self.emitted_watch = Some(self.watched.clone());
            out.effects
                .push(Effect::Watch(self.watched.iter().cloned().collect()));
        }
    }

    fn reconcile_after_loss(&mut self, now: DateTime<Utc>, out: &mut Out) {
        let Some(before) = self.live_before_loss.take() else {
            return;
        };
        let lost: Vec<LiveInteraction> = before
            .into_values()
            .filter(|li| {
                !self.live.contains_key(&li.id) && !self.disconnected_by_us.contains_key(&li.id)
            })
            .collect();
        // Rows waiting for CIC may have lost their answer with the session: raise them again
        // (the handler is idempotent on the entry id).
        let mut reraised = 0;
        let raised: Vec<RowId> = self
            .rows
            .iter()
            .filter(|(_, r)| matches!(r.stage, Stage::Raised { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in raised {
            if let Some(r) = self.rows.get_mut(&id) {
                r.stage = Stage::Raised {
                    deadline: now + self.settings.route_timeout,
                    result: None,
                };
            }
            if let Some(req) = self.route_request(&id) {
                out.effects.push(Effect::Raise(req));
                reraised += 1;
            }
        }
        let mut rerouting = 0;
        if self.settings.reroute_lost_on_switchover {
            let cases: BTreeSet<CaseId> = lost.iter().filter_map(|li| li.case_id.clone()).collect();
            for case_id in cases {
                let case = self.cases.entry(case_id).or_insert_with(Case::new);
                case.recover = true;
                rerouting += 1;
                if case.active.is_none() && case.pending.is_empty() {
                    case.snap = Snap::Stale;
                }
            }
        }
        if !lost.is_empty() || reraised > 0 {
            out.notify(Notice::SwitchoverReconciled {
                lost: lost.len(),
                reraised,
                rerouting,
            });
        }
    }

    fn decide(&mut self, now: DateTime<Utc>, case_id: &CaseId, out: &mut Out) {
        let Some(case) = self.cases.get(case_id) else {
            return;
        };
        let backlog: Vec<(RowId, RowEvent)> = case
            .pending
            .iter()
            .filter_map(|(_, id)| {
                self.rows
                    .get(id)
                    .and_then(|r| r.event.map(|e| (id.clone(), e)))
            })
            .collect();
        let plan = rules::plan_case(&backlog);
        for (id, note) in plan.superseded {
            self.take_from_pending(case_id, &id);
            self.close(now, &id, None, note, out);
        }
        if let Some(id) = plan.disconnect {
            self.start_disconnect_row(now, case_id, &id, out);
        } else if let Some(id) = plan.route {
            if self.in_flight < self.settings.max_in_flight {
                self.start_route_row(now, case_id, &id, out);
            }
        }
    }

    fn start_disconnect_row(
        &mut self,
        now: DateTime<Utc>,
        case_id: &CaseId,
        id: &RowId,
        out: &mut Out,
    ) {
        let Some(event) = self.rows.get(id).and_then(|r| r.event) else {
            return;
        };
        self.take_from_pending(case_id, id);
        self.activate(case_id, id, false);
        if event == RowEvent::AgentReply && !self.settings.auto_disconnect_on_reply {
            self.close(
                now,
                id,
                None,
                "auto-disconnect on reply is off".to_owned(),
                out,
            );
            return;
        }
        let created = self.rows.get(id).map(|r| r.row.created_date);
        let newer_route = match self.cases.get(case_id).map(|c| &c.snap) {
            Some(Snap::Fresh(Some(s))) => {
                s.last_route_row_at.zip(created).is_some_and(|(l, c)| l > c)
            }
            _ => false,
        };
        if newer_route {
            let note = "superseded: the customer wrote again after this row".to_owned();
            self.close(now, id, None, note, out);
            return;
        }
        let targets: BTreeSet<InteractionId> =
            self.live_of_case(case_id).map(|li| li.id.clone()).collect();
        if targets.is_empty() {
            self.close(now, id, None, "nothing live to disconnect".to_owned(), out);
            return;
        }
        self.begin_disconnect(case_id, id, targets, false, out);
    }

    fn start_route_row(&mut self, now: DateTime<Utc>, case_id: &CaseId, id: &RowId, out: &mut Out) {
        let Some(r) = self.rows.get(id) else {
            return;
        };
        let workgroup = r.row.workgroup.clone();
        let attempts = r.row.attempts;
        let snap = match &self.cases.get(case_id).map(|c| &c.snap) {
            Some(Snap::Fresh(s)) => s.clone(),
            _ => return,
        };
        self.take_from_pending(case_id, id);
        self.activate(case_id, id, true);

        let left = match &snap {
            None => Some("case left routing: the case is deleted"),
            Some(s) if s.is_closed => Some("case left routing: the case is closed"),
            Some(s) if !self.monitored.contains_key(&s.owner_id) => {
                Some("case left routing: no monitored queue owns the case")
            }
            _ => None,
        };
        if let Some(note) = left {
            self.close(now, id, None, note.to_owned(), out);
            return;
        }
        // A row that arrives late (a lost push found by the sweep, a backlog) may describe a past
        // the case has left: answered since, or moved to another queue since.
        if let (Some(s), Some(r)) = (&snap, self.rows.get(id)) {
            let note = if s
                .last_closing_row_at
                .is_some_and(|t| t > r.row.created_date)
            {
                Some("superseded by a newer AgentReply or CaseClosed row")
            } else if r.row.queue_id.as_ref().is_some_and(|q| *q != s.owner_id) {
                Some("superseded: the case moved to another queue after this row was written")
            } else {
                None
            };
            if let Some(note) = note {
                self.close(now, id, None, note.to_owned(), out);
                return;
            }
        }
        if let Err(reason) = self.validate(id) {
            self.fail(now, id, reason, out);
            return;
        }
        // A crash between raising and marking: the interaction for this entry already exists.
        if let Some(li) = self
            .live
            .values()
            .find(|li| li.entry_id.as_ref() == Some(id))
        {
            let iid = li.id.clone();
            self.complete_route(now, id, iid, None, out);
            return;
        }
        if attempts >= self.settings.max_attempts {
            self.fail(now, id, format!("gave up after {attempts} attempts"), out);
            return;
        }
        if !self.watched.contains(&workgroup) {
            // update_watch adds it on the next pass; wait for its snapshot.
            self.release_to_pending(id);
            return;
        }
        let live: Vec<LiveInteraction> = self.live_of_case(case_id).cloned().collect();
        let same_workgroup = live
            .iter()
            .find(|li| li.workgroup == workgroup && !cfg!(feature = "mutant-no-live-check"));
        if let Some(same) = same_workgroup {
            let iid = same.id.clone();
            self.close(
                now,
                id,
                Some(iid),
                "already live in the workgroup".to_owned(),
                out,
            );
            return;
        }
        if live.is_empty() || cfg!(feature = "mutant-no-live-check") {
            self.claim(now, id, out);
        } else {
            let targets = live.into_iter().map(|li| li.id).collect();
            self.begin_disconnect(case_id, id, targets, true, out);
        }
    }

    fn validate(&self, id: &RowId) -> Result<(), String> {
        let r = self.rows.get(id).ok_or("row vanished")?;
        let skills = rules::parse_skills(&r.row.skills)?;
        rules::check_workgroup(&r.row.workgroup, &self.workgroups)?;
        rules::check_skills_known(&skills, &self.skills)
    }

    fn begin_disconnect(
        &mut self,
        case_id: &CaseId,
        id: &RowId,
        targets: BTreeSet<InteractionId>,
        then_route: bool,
        out: &mut Out,
    ) {
        for t in &targets {
            out.effects.push(Effect::Disconnect {
                interaction: t.clone(),
                case_id: case_id.clone(),
            });
        }
        if let Some(r) = self.rows.get_mut(id) {
            r.stage = Stage::Disconnecting {
                waiting: targets,
                done: Vec::new(),
                then_route,
            };
        }
    }

    fn claim(&mut self, now: DateTime<Utc>, id: &RowId, out: &mut Out) {
        if cfg!(feature = "mutant-skip-claim") {
            // The broken router: raises without claiming the row first.
            let deadline = now + self.settings.route_timeout;
            if let Some(r) = self.rows.get_mut(id) {
                r.stage = Stage::Raised {
                    deadline,
                    result: None,
                };
            }
            if let Some(req) = self.route_request(id) {
                out.effects.push(Effect::Raise(req));
            }
            return;
        }
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        r.stage = Stage::Claiming;
        out.writes.push(RowUpdate {
            id: id.clone(),
            status: RowStatus::Processing,
            attempts: Some(r.row.attempts + 1),
            interaction_id: None,
            error: None,
            processed_at: None,
        });
    }

    fn route_request(&self, id: &RowId) -> Option<RouteRequest> {
        let r = self.rows.get(id)?;
        Some(RouteRequest {
            entry_id: id.clone(),
            case_id: r.row.case_id.clone()?,
            case_number: r.row.case_number.clone(),
            workgroup: r.row.workgroup.clone(),
            skills: rules::parse_skills(&r.row.skills).ok()?,
            subject: r.row.subject.clone(),
            from_address: r.row.from_address.clone(),
            from_name: r.row.from_name.clone(),
        })
    }

    fn complete_route(
        &mut self,
        now: DateTime<Utc>,
        id: &RowId,
        interaction: InteractionId,
        note: Option<String>,
        out: &mut Out,
    ) {
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        let (Some(case_id), Some(event)) = (r.row.case_id.clone(), r.event) else {
            return;
        };
        out.notify(Notice::Routed {
            row: id.clone(),
            case_id,
            interaction: interaction.clone(),
            event,
            attempts: r.row.attempts,
            millis_since_created: (now - r.row.created_date).num_milliseconds(),
        });
        self.mark(now, id, RowStatus::Processed, Some(interaction), note, out);
    }

    /// Ends a row `Processed` without routing it (superseded, left routing, disconnect done).
    fn close(
        &mut self,
        now: DateTime<Utc>,
        id: &RowId,
        interaction: Option<InteractionId>,
        note: String,
        out: &mut Out,
    ) {
        out.notify(Notice::Closed {
            row: id.clone(),
            note: note.clone(),
        });
        self.mark(now, id, RowStatus::Processed, interaction, Some(note), out);
    }

    fn fail(&mut self, now: DateTime<Utc>, id: &RowId, reason: String, out: &mut Out) {
        out.notify(Notice::Failed {
            row: id.clone(),
            reason: reason.clone(),
        });
        self.mark(now, id, RowStatus::Failed, None, Some(reason), out);
    }

    fn mark(
        &mut self,
        now: DateTime<Utc>,
        id: &RowId,
        status: RowStatus,
        interaction: Option<InteractionId>,
        error: Option<String>,
        out: &mut Out,
    ) {
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        let update = RowUpdate {
            id: id.clone(),
            status,
            attempts: None,
            interaction_id: interaction,
            error,
            processed_at: Some(now),
        };
        out.writes.push(update.clone());
        r.stage = Stage::Marking {
            update,
            retry_at: None,
        };
    }

    /// A failed round: back off and plan the case again, or fail the row for good.
    fn retry(&mut self, now: DateTime<Utc>, id: &RowId, reason: String, out: &mut Out) {
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        r.tries += 1;
        let attempts = r.row.attempts.max(r.tries);
        if attempts >= self.settings.max_attempts {
            self.fail(
                now,
                id,
                format!("{reason} (gave up after {attempts} attempts)"),
                out,
            );
            return;
        }
        out.notify(Notice::Retrying {
            row: id.clone(),
            attempt: attempts,
            reason,
        });
        r.stage = Stage::Backoff {
            until: now + backoff(&self.settings, attempts),
        };
    }

    // ---------------------------------------------------------------- bookkeeping

    fn live_of_case<'a>(
        &'a self,
        case_id: &'a CaseId,
    ) -> impl Iterator<Item = &'a LiveInteraction> + 'a {
        self.live
            .values()
            .filter(move |li| li.case_id.as_ref() == Some(case_id))
    }

    fn take_from_pending(&mut self, case_id: &CaseId, id: &RowId) {
        let key = self.rows.get(id).map(Row::order_key);
        if let (Some(case), Some(key)) = (self.cases.get_mut(case_id), key) {
            case.pending.remove(&key);
        }
    }

    fn activate(&mut self, case_id: &CaseId, id: &RowId, route: bool) {
        if let Some(case) = self.cases.get_mut(case_id) {
            case.active = Some(id.clone());
        }
        if route {
            self.in_flight += 1;
        }
    }

    /// Releases the case's active slot (if this row holds it).
    fn deactivate(&mut self, id: &RowId) {
        let Some(r) = self.rows.get(id) else {
            return;
        };
        let Some(case_id) = r.row.case_id.clone() else {
            return;
        };
        let route = r.event.is_some_and(RowEvent::is_route);
        if let Some(case) = self.cases.get_mut(&case_id) {
            if case.active.as_ref() == Some(id) {
                case.active = None;
                if route {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
            }
        }
    }

    fn release_to_pending(&mut self, id: &RowId) {
        self.deactivate(id);
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        r.stage = Stage::Pending;
        let key = r.order_key();
        if let Some(case) = r.row.case_id.as_ref().and_then(|c| self.cases.get_mut(c)) {
            case.pending.insert(key);
        }
    }

    fn forget(&mut self, now: DateTime<Utc>, id: &RowId) {
        self.deactivate(id);
        if let Some(r) = self.rows.remove(id) {
            if let Some(case) = r.row.case_id.as_ref().and_then(|c| self.cases.get_mut(c)) {
                case.pending.remove(&r.order_key());
                // A recovery waiting for this case to be idle: read it again now.
                if case.recover && case.active.is_none() && case.pending.is_empty() {
                    case.snap = Snap::Stale;
                }
            }
        }
        self.finished.insert(id.clone(), now);
    }
}

fn backoff(settings: &Settings, attempt: u32) -> TimeDelta {
    let factor = 1i32 << attempt.saturating_sub(1).min(4);
    settings.retry_backoff * factor
}

/// Effects gathered during one `handle` call; all row writes become one `WriteRows`.
#[derive(Default)]
struct Out {
    effects: Vec<Effect>,
    writes: Vec<RowUpdate>,
}

impl Out {
    fn notify(&mut self, n: Notice) {
        self.effects.push(Effect::Notify(n));
    }

    fn finish(mut self) -> Vec<Effect> {
        if !self.writes.is_empty() {
            // Writes go first: a claim must be confirmed before its raise is even attempted,
            // and marks are the audit trail.
            self.effects.insert(0, Effect::WriteRows(self.writes));
        }
        self.effects
    }
}
