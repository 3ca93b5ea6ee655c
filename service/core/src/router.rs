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
//! - rows of one case run one at a time, oldest first; rows of different cases run concurrently,
//!   bounded twice by `max_in_flight`: route rows claiming or claimed and waiting for a slot, and
//!   route rows holding a slot (the CIC part: notification and result). A row's final write
//!   holds its case, not a slot;
//! - a route row is marked `Processed` only with the id of an interaction that the handler
//!   reported or that was seen live for its entry;
//! - at most one live interaction per case: a case already live in the row's workgroup is not
//!   routed again, and a case live elsewhere is disconnected there first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::live::LiveSet;
use crate::model::*;
use crate::rules;

/// Routing settings (config `[routing]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub auto_disconnect_on_reply: bool,
    pub reroute_lost_on_switchover: bool,
    /// Route rows whose CIC part (notification, result) is under way at once; as many more may
    /// be claimed ahead, waiting for a slot. A row gives its slot back when its final write is
    /// queued (Salesforce's bookkeeping: the case stays busy until it is written) or when it
    /// backs off.
    pub max_in_flight: usize,
    /// How long to wait for the handler's result and the interaction, per attempt.
    pub route_timeout: TimeDelta,
    /// Attempts per row (claims, disconnect rounds) before it ends `Failed`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 16×.
    pub retry_backoff: TimeDelta,
    /// How long a finished row is remembered so a stale push or read cannot restart it.
    pub finished_memory: TimeDelta,
    /// Longest wait between two tries of a row write or a fetch that failed for a transient
    /// reason (Salesforce down, a lock, a limit): those are retried until they succeed.
    pub max_write_backoff: TimeDelta,
    /// How often the router compares what Salesforce says should be live with what CIC has
    /// (reconciliation). `None`: never, not even at start-up.
    pub reconcile_interval: Option<TimeDelta>,
    /// Reconciliation looks at open cases created within this window (and at the case of every
    /// live interaction, however old).
    pub reconcile_lookback: TimeDelta,
    /// The routing table's field names as the org calls them (`[salesforce.names]`), for the
    /// `Error__c` texts that name a field.
    pub field_names: FieldNames,
}

/// Field names that `Error__c` texts mention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldNames {
    pub event: String,
    pub case: String,
    pub workgroup: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            event: "Event__c".into(),
            case: "Case__c".into(),
            workgroup: "Workgroup__c".into(),
        }
    }
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
            max_write_backoff: TimeDelta::seconds(30),
            reconcile_interval: Some(TimeDelta::minutes(5)),
            reconcile_lookback: TimeDelta::days(7),
            field_names: FieldNames::default(),
        }
    }
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

pub use crate::model::{QueueMapping, WriteResult};

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
    /// The monitored queues, as read by a query started at `as_of`.
    Mappings {
        mappings: Vec<QueueMapping>,
        as_of: DateTime<Utc>,
    },
    /// Reading the mappings (asked by [`Effect::ReadMappings`]) failed.
    MappingsFailed {
        error: String,
    },
    /// CIC's workgroups and skills, as read by calls started at `as_of`.
    CicConfig {
        workgroups: Vec<WorkgroupInfo>,
        skills: Vec<String>,
        as_of: DateTime<Utc>,
    },
    /// Reading CIC's configuration (asked by [`Effect::ReadCicConfig`]) failed.
    CicConfigFailed {
        error: String,
    },
    /// Fetching pushed rows failed: they are fetched again after a back-off.
    FetchFailed {
        ids: Vec<RowId>,
        error: String,
    },
    /// Answer to [`Effect::ReadForReconcile`], read by queries started at `as_of`: the open
    /// cases owned by monitored queues and the cases of the live interactions (those asked
    /// for and missing are deleted).
    Reconcile {
        as_of: DateTime<Utc>,
        live_cases: Vec<CaseId>,
        found: Vec<CaseSnapshot>,
    },
    ReconcileFailed {
        error: String,
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
    /// Read the monitored queues again (a row names a queue the router does not know yet).
    ReadMappings,
    /// Read CIC's workgroups and skills again (a row names one the router does not know yet).
    ReadCicConfig,
    /// Read what reconciliation needs: the open cases (created since `since`) owned by these
    /// monitored queues, and the cases of these live interactions; answer with
    /// [`Input::Reconcile`].
    ReadForReconcile {
        queues: Vec<String>,
        since: DateTime<Utc>,
        live_cases: Vec<CaseId>,
    },
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
    /// A handler result arrived for an entry this router never raised: another router is
    /// routing this tenant's rows.
    OtherRouter {
        entry: RowId,
    },
    /// A reconciliation pass compared Salesforce with CIC.
    Reconciled {
        cases: usize,
        rerouted: usize,
        disconnected: usize,
    },
    /// A row's write failed for a transient reason and waits to be tried again.
    WriteWaiting {
        row: RowId,
        tries: u32,
        reason: String,
    },
    /// A row names a queue, workgroup or skill unknown even after the router read its
    /// configuration again: the mapping table and CIC disagree.
    ConfigDrift {
        message: String,
    },
}

/// Counters and gauges for the status endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub known_rows: usize,
    pub waiting_rows: usize,
    /// Route rows holding a slot: their notification is out, waiting for CIC.
    pub in_flight: usize,
    pub live_interactions: usize,
    pub cic_ready: bool,
    pub watched: Vec<String>,
    /// Rows whose last write failed for a transient reason and waits to be tried again.
    pub writes_waiting: usize,
    /// The last time a handler result named an entry this router never raised.
    pub other_router_at: Option<DateTime<Utc>>,
    /// When the last reconciliation pass finished.
    pub reconciled_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Waiting for its turn (case idle, snapshot fresh, CIC ready, claims below the bound).
    Pending,
    /// Disconnecting the case's live interactions; then claim (a moved case) or mark (reply).
    Disconnecting {
        waiting: BTreeSet<InteractionId>,
        done: Vec<InteractionId>,
        then_route: bool,
    },
    /// The claim is out; `retry_at` is set after a transient failure.
    Claiming { retry_at: Option<DateTime<Utc>> },
    /// Claimed; waiting for a slot to raise the notification.
    Claimed,
    Raised {
        deadline: DateTime<Utc>,
        result: Option<InteractionId>,
    },
    /// Claimed; raising the notification failed for a transient reason: raised again then.
    RaiseWait { until: DateTime<Utc> },
    /// Waiting before the case is planned again.
    Backoff { until: DateTime<Utc> },
    /// The final write is out.
    Marking {
        update: RowUpdate,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// What a route row holds of the router's two bounds, each `max_in_flight`: claims under way
/// or done and waiting for a slot, and slots (the CIC part: notification and result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Nothing,
    Claim,
    Slot,
}

#[derive(Clone, Debug)]
struct Row {
    row: RoutingRow,
    event: Option<RowEvent>,
    stage: Stage,
    /// Failed rounds in this process (disconnects, handler timeouts): bounds retries.
    tries: u32,
    /// Consecutive transient write failures: sets the back-off, never fails the row.
    write_failures: u32,
    /// The share of the router's bounds this row holds.
    hold: Hold,
    /// When this router first held the row: configuration read before then may not know the
    /// queue, workgroup or skills the row names.
    seen_at: DateTime<Utc>,
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
    Fresh(Option<Box<CaseSnapshot>>),
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

/// An on-demand re-read of configuration (mappings, CIC workgroups and skills).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Refresh {
    Idle,
    Requested,
    /// The last re-read failed: not asked again before this time.
    Failed(DateTime<Utc>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ReconcileState {
    /// A pass is due as soon as the router can route.
    Due,
    Requested,
    /// The next pass is due at this time.
    At(DateTime<Utc>),
}

/// The router's memory: everything in it can be rebuilt from Salesforce and CIC after a restart.
#[derive(Clone, Debug)]
pub struct Router {
    settings: Settings,
    rows: HashMap<RowId, Row>,
    /// How many held route rows name each workgroup (for the watch set, without walking rows).
    route_workgroups: BTreeMap<String, usize>,
    cases: BTreeMap<CaseId, Case>,
    /// Cases an input touched since the last `advance`: only these are looked at again
    /// (a pass over every case costs the whole backlog on every input).
    dirty: BTreeSet<CaseId>,
    /// Something every case's next step depends on changed (configuration, readiness, the
    /// watch set, the clock): the next `advance` looks at every case.
    all_dirty: bool,
    /// Cases whose next step is a route row waiting for its claim (claims are at the bound),
    /// first come first served (`claim_waiting` mirrors the queue's members).
    claim_queue: VecDeque<CaseId>,
    claim_waiting: HashSet<CaseId>,
    /// Whether the router could route at the last `advance`.
    was_ready: bool,
    finished: HashMap<RowId, DateTime<Utc>>,
    /// Rows a push named that are still being fetched: not missed pushes.
    announced: HashMap<RowId, DateTime<Utc>>,
    in_flight: usize,
    /// Route rows claiming, or claimed and waiting for a slot (`raise_queue`, in claim order).
    claims: usize,
    raise_queue: VecDeque<RowId>,

    monitored: HashMap<String, String>,
    mappings_loaded: bool,
    /// When the query that produced `monitored` started.
    mappings_as_of: Option<DateTime<Utc>>,
    mappings_refresh: Refresh,
    workgroups: HashMap<String, WorkgroupInfo>,
    skills: HashSet<String>,
    config_loaded: bool,
    config_as_of: Option<DateTime<Utc>>,
    config_refresh: Refresh,
    /// Pushed rows whose fetch failed, to fetch again at the given time.
    refetch: Vec<(DateTime<Utc>, Vec<RowId>)>,
    fetch_failures: u32,
    /// Entries this router raised (so a result for any other entry is another router's).
    raised_entries: HashMap<RowId, DateTime<Utc>>,
    other_router_at: Option<DateTime<Utc>>,
    /// When a row of the case was last held here: reconciliation leaves recent cases alone.
    case_seen: HashMap<CaseId, DateTime<Utc>>,
    /// Cases reconciliation inserted a recovery row for (not again while remembered).
    recovered: HashMap<CaseId, DateTime<Utc>>,
    reconcile: ReconcileState,
    reconciled_at: Option<DateTime<Utc>>,
    /// Disconnects reconciliation asked for: interaction → (case, why).
    stray_disconnects: HashMap<InteractionId, (CaseId, String)>,

    cic_up: bool,
    live: LiveSet,
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
            route_workgroups: BTreeMap::new(),
            cases: BTreeMap::new(),
            dirty: BTreeSet::new(),
            all_dirty: true,
            claim_queue: VecDeque::new(),
            claim_waiting: HashSet::new(),
            was_ready: false,
            finished: HashMap::new(),
            announced: HashMap::new(),
            in_flight: 0,
            claims: 0,
            raise_queue: VecDeque::new(),
            monitored: HashMap::new(),
            mappings_loaded: false,
            mappings_as_of: None,
            mappings_refresh: Refresh::Idle,
            workgroups: HashMap::new(),
            skills: HashSet::new(),
            config_loaded: false,
            config_as_of: None,
            config_refresh: Refresh::Idle,
            refetch: Vec::new(),
            fetch_failures: 0,
            raised_entries: HashMap::new(),
            other_router_at: None,
            case_seen: HashMap::new(),
            recovered: HashMap::new(),
            reconcile: ReconcileState::Due,
            reconciled_at: None,
            stray_disconnects: HashMap::new(),
            cic_up: false,
            live: LiveSet::default(),
            seen_snapshots: HashSet::new(),
            watched: BTreeSet::new(),
            emitted_watch: None,
            disconnected_by_us: HashMap::new(),
            live_before_loss: None,
        }
    }

    /// Rows the router holds now (pending or in flight). Cheap.
    pub fn known_rows(&self) -> usize {
        self.rows.len()
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
            writes_waiting: self
                .rows
                .values()
                .filter(|r| {
                    r.write_failures > 0
                        && matches!(r.stage, Stage::Claiming { .. } | Stage::Marking { .. })
                })
                .count(),
            other_router_at: self.other_router_at,
            reconciled_at: self.reconciled_at,
        }
    }

    /// Feeds one input; returns the effects to carry out, in order.
    pub fn handle(&mut self, now: DateTime<Utc>, input: Input) -> Vec<Effect> {
        let mut out = Out::default();
        // The inputs of a row's own round mark the cases they touch; every other input may
        // change what any case can do next.
        if !matches!(
            input,
            Input::Pushed(_)
                | Input::Rows { .. }
                | Input::Cases { .. }
                | Input::CasesFailed { .. }
                | Input::Upsert(_)
                | Input::Removed { .. }
                | Input::RouteResult { .. }
                | Input::RaiseFailed { .. }
                | Input::Written(_)
        ) {
            self.all_dirty = true;
        }
        match input {
            Input::Pushed(ids) => self.on_pushed(now, ids, &mut out),
            Input::Rows { source, rows } => {
                if source == Source::Push {
                    self.fetch_failures = 0;
                }
                self.on_rows(now, source, rows, &mut out)
            }
            Input::Cases { requested, found } => self.on_cases(requested, found, &mut out),
            Input::CasesFailed { requested, .. } => {
                for id in requested {
                    if let Some(c) = self.cases.get_mut(&id)
                        && c.snap == Snap::Requested
                    {
                        self.dirty.insert(id.clone());
                        c.snap = Snap::Failed {
                            retry_at: now + self.settings.retry_backoff,
                        };
                    }
                }
            }
            Input::Mappings { mappings, as_of } => {
                // An older answer (a periodic read that started before an on-demand one) never
                // replaces a newer one.
                if self.mappings_as_of.is_none_or(|t| as_of >= t) {
                    self.monitored = mappings
                        .into_iter()
                        .map(|m| (m.queue_id, m.workgroup))
                        .collect();
                    self.mappings_as_of = Some(as_of);
                }
                self.mappings_loaded = true;
                self.mappings_refresh = Refresh::Idle;
            }
            Input::MappingsFailed { .. } => {
                self.mappings_refresh = Refresh::Failed(now + self.settings.retry_backoff);
            }
            Input::CicConfig {
                workgroups,
                skills,
                as_of,
            } => {
                if self.config_as_of.is_none_or(|t| as_of >= t) {
                    self.workgroups = workgroups
                        .into_iter()
                        .map(|w| (w.name.clone(), w))
                        .collect();
                    self.skills = skills.into_iter().collect();
                    self.config_as_of = Some(as_of);
                }
                self.config_loaded = true;
                self.config_refresh = Refresh::Idle;
            }
            Input::CicConfigFailed { .. } => {
                self.config_refresh = Refresh::Failed(now + self.settings.retry_backoff);
            }
            Input::FetchFailed { ids, .. } => {
                self.fetch_failures += 1;
                let at = now + write_backoff(&self.settings, self.fetch_failures);
                // Still announced: the sweep must not count them as missed pushes.
                for id in &ids {
                    self.announced.insert(id.clone(), now);
                }
                self.refetch.push((at, ids));
            }
            Input::Reconcile {
                as_of,
                live_cases,
                found,
            } => self.on_reconcile(now, as_of, live_cases, found, &mut out),
            Input::ReconcileFailed { .. } => {
                self.reconcile = ReconcileState::At(now + self.settings.retry_backoff);
            }
            Input::IcwsUp => self.cic_up = true,
            Input::IcwsDown { .. } => self.on_icws_down(),
            Input::Snapshot {
                workgroup,
                interactions,
            } => {
                self.live.clear_workgroup(&workgroup);
                for li in interactions {
                    self.on_upsert(now, li, &mut out);
                }
                self.seen_snapshots.insert(workgroup);
            }
            Input::Upsert(li) => {
                if let Some(c) = &li.case_id {
                    self.dirty.insert(c.clone());
                }
                self.on_upsert(now, li, &mut out)
            }
            Input::Removed { id } => {
                if let Some(c) = self.live.remove(&id).and_then(|li| li.case_id) {
                    self.dirty.insert(c);
                }
            }
            Input::RouteResult { entry_id, outcome } => {
                self.on_route_result(now, entry_id, outcome, &mut out)
            }
            Input::RaiseFailed { entry_id, error } => {
                // The notification did not reach the handler (CIC down, a switchover, a
                // transport error): a transient failure, tried again without counting.
                if let Some(r) = self.rows.get_mut(&entry_id)
                    && matches!(r.stage, Stage::Raised { .. })
                {
                    r.write_failures += 1;
                    let wait = write_backoff(&self.settings, r.write_failures);
                    out.notify(Notice::Retrying {
                        row: entry_id.clone(),
                        attempt: r.write_failures,
                        reason: format!("raising the notification failed: {error}"),
                    });
                    r.stage = Stage::RaiseWait { until: now + wait };
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
                    "Unknown {} '{}'; expected one of {}",
                    self.settings.field_names.event,
                    row.event,
                    RowEvent::ALL.map(RowEvent::as_str).join(", ")
                )),
                (_, None) => Some(format!("{} is empty", self.settings.field_names.case)),
                _ => None,
            };
            if let Some(c) = &row.case_id {
                self.case_seen.insert(c.clone(), now);
            }
            let entry = Row {
                row,
                event,
                stage: Stage::Pending,
                tries: 0,
                write_failures: 0,
                hold: Hold::Nothing,
                seen_at: now,
            };
            let key = entry.order_key();
            let case_id = entry.row.case_id.clone();
            if entry.event.is_some_and(RowEvent::is_route) {
                *self
                    .route_workgroups
                    .entry(entry.row.workgroup.clone())
                    .or_default() += 1;
            }
            self.rows.insert(id.clone(), entry);
            match (reason, case_id) {
                (Some(reason), _) => self.fail(now, &id, reason, out),
                (None, Some(case_id)) => {
                    self.dirty.insert(case_id.clone());
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
            let live_now = self.live.of_case(&id).next().is_some();
            let Some(case) = self.cases.get_mut(&id) else {
                continue;
            };
            self.dirty.insert(id.clone());
            case.snap = Snap::Fresh(snap.clone().map(Box::new));
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
            let before = self.live.take();
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
        self.live.insert(li);
        if let Some(entry) = entry
            && matches!(
                self.rows.get(&entry).map(|r| &r.stage),
                Some(Stage::Raised { .. })
            )
        {
            self.complete_route(now, &entry, id, None, out);
        }
    }

    fn on_route_result(
        &mut self,
        now: DateTime<Utc>,
        entry: RowId,
        outcome: RouteOutcome,
        out: &mut Out,
    ) {
        if !self.raised_entries.contains_key(&entry) {
            // Every result this router's own raises cause is for an entry it remembers.
            self.other_router_at = Some(now);
            out.notify(Notice::OtherRouter { entry });
            return;
        }
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
                (Stage::Claiming { .. }, WriteResult::Ok) => {
                    if let Some(row) = self.rows.get_mut(&id) {
                        row.row.attempts += 1;
                        row.row.status = RowStatus::Processing;
                        row.write_failures = 0;
                        row.stage = Stage::Claimed;
                    }
                    self.raise_queue.push_back(id);
                    self.serve_raise_queue(now, out);
                }
                (Stage::Claiming { .. }, WriteResult::Retry(e)) => {
                    let wait = self.note_write_failure(&id, &e, out);
                    if let Some(Stage::Claiming { retry_at }) =
                        self.rows.get_mut(&id).map(|r| &mut r.stage)
                    {
                        *retry_at = Some(now + wait);
                    }
                }
                (Stage::Claiming { .. }, WriteResult::Rejected(e)) => self.fail(
                    now,
                    &id,
                    format!("Salesforce refused to claim the row: {e}"),
                    out,
                ),
                (Stage::Marking { .. }, WriteResult::Ok | WriteResult::Gone)
                | (Stage::Claiming { .. }, WriteResult::Gone) => self.forget(now, &id),
                (Stage::Marking { .. }, WriteResult::Retry(e)) => {
                    // Kept until written: a row is never left to the sweep because Salesforce
                    // was briefly unable to take the write.
                    let wait = self.note_write_failure(&id, &e, out);
                    if let Some(Stage::Marking { retry_at, .. }) =
                        self.rows.get_mut(&id).map(|r| &mut r.stage)
                    {
                        *retry_at = Some(now + wait);
                    }
                }
                (Stage::Marking { update, .. }, WriteResult::Rejected(e)) => {
                    if update.status == RowStatus::Failed {
                        // Even the failure cannot be recorded: say so and let it go.
                        out.notify(Notice::Failed {
                            row: id.clone(),
                            reason: format!("Salesforce refused to record the failure: {e}"),
                        });
                        self.forget(now, &id);
                    } else {
                        self.fail(
                            now,
                            &id,
                            format!("Salesforce refused the row's update: {e}"),
                            out,
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// Counts a transient write failure of a row; returns how long to wait before the next try.
    fn note_write_failure(&mut self, id: &RowId, error: &str, out: &mut Out) -> TimeDelta {
        let Some(row) = self.rows.get_mut(id) else {
            return self.settings.retry_backoff;
        };
        row.write_failures += 1;
        let tries = row.write_failures;
        out.notify(Notice::WriteWaiting {
            row: id.clone(),
            tries,
            reason: error.to_owned(),
        });
        write_backoff(&self.settings, tries)
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
            // A disconnect reconciliation asked for, owned by no row.
            if let Some((case_id, why)) = self.stray_disconnects.remove(&interaction) {
                match result {
                    DisconnectResult::Failed(_) => {} // the next pass tries again
                    DisconnectResult::Disconnected | DisconnectResult::AlreadyGone => {
                        self.live.remove(&interaction);
                        self.disconnected_by_us.insert(interaction.clone(), now);
                        if result == DisconnectResult::Disconnected {
                            out.notify(Notice::Disconnected {
                                interaction,
                                case_id,
                                why,
                            });
                        }
                    }
                }
            }
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
        let mut reraise = Vec::new();
        let mut reclaim = Vec::new();
        let timeout = self.settings.route_timeout;
        for (id, r) in &mut self.rows {
            match &mut r.stage {
                Stage::Raised { deadline, result } if *deadline <= now => {
                    expired.push((id.clone(), result.clone()))
                }
                Stage::Backoff { until } if *until <= now => replan.push(id.clone()),
                Stage::RaiseWait { until } if *until <= now => {
                    r.stage = Stage::Raised {
                        deadline: now + timeout,
                        result: None,
                    };
                    reraise.push(id.clone());
                }
                Stage::Marking { update, retry_at } if retry_at.is_some_and(|t| t <= now) => {
                    *retry_at = None;
                    rewrites.push(update.clone());
                }
                Stage::Claiming { retry_at } if retry_at.is_some_and(|t| t <= now) => {
                    *retry_at = None;
                    reclaim.push(id.clone());
                }
                _ => {}
            }
        }
        for id in reclaim {
            if let Some(r) = self.rows.get(&id) {
                rewrites.push(claim_update(r));
            }
        }
        for id in reraise {
            self.raise(now, &id, out);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.refetch)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.refetch = later;
        let fetch: Vec<RowId> = due
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .filter(|id| !self.rows.contains_key(id) && !self.finished.contains_key(id))
            .collect();
        if !fetch.is_empty() {
            out.effects.push(Effect::FetchRows(fetch));
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
            if let Snap::Failed { retry_at } = case.snap
                && retry_at <= now
            {
                case.snap = Snap::Stale;
            }
        }
        let memory = self.settings.finished_memory;
        self.finished.retain(|_, t| now - *t < memory);
        self.announced.retain(|_, t| now - *t < memory);
        self.disconnected_by_us.retain(|_, t| now - *t < memory);
        self.raised_entries.retain(|_, t| now - *t < memory);
        self.case_seen.retain(|_, t| now - *t < memory);
        self.recovered.retain(|_, t| now - *t < memory);
    }

    // ---------------------------------------------------------------- decisions

    /// CIC connected, its workgroups and skills read, and a snapshot of every watched queue
    /// seen: the router can judge rows against CIC. Cheap (no walk of the rows).
    pub fn cic_ready(&self) -> bool {
        self.cic_up
            && self.config_loaded
            && self.watched.iter().all(|w| self.seen_snapshots.contains(w))
    }

    /// Moves every case that can move: first the claimed rows waiting for a free slot, then the
    /// cases waiting for a claim (both first come, first served, while the bound allows), then
    /// the cases an input touched (or every case, after an input that changes what all of them
    /// can do). Costs what changed, not what is held.
    fn advance(&mut self, now: DateTime<Utc>, out: &mut Out) {
        self.update_watch(out);
        if self.cic_ready() {
            self.reconcile_after_loss(now, out);
        }
        let ready = self.cic_ready() && self.mappings_loaded;
        if ready != self.was_ready {
            self.was_ready = ready;
            self.all_dirty = true;
        }
        let work: Vec<CaseId> = if std::mem::take(&mut self.all_dirty) {
            self.dirty.clear();
            self.cases.keys().cloned().collect()
        } else {
            std::mem::take(&mut self.dirty).into_iter().collect()
        };
        let mut reads = Vec::new();
        // Slots freed since the last pass go to the rows claimed longest ago, then claims to
        // the cases that waited longest.
        self.serve_raise_queue(now, out);
        if ready {
            self.serve_claim_queue(now, out);
        }
        for case_id in &work {
            let Some(case) = self.cases.get_mut(case_id) else {
                continue;
            };
            if case.active.is_some() || (case.pending.is_empty() && !case.recover) {
                continue;
            }
            match case.snap {
                Snap::Stale => {
                    case.snap = Snap::Requested;
                    reads.push(case_id.clone());
                    continue;
                }
                Snap::Requested | Snap::Failed { .. } => continue,
                Snap::Fresh(_) => {}
            }
            if ready {
                self.decide(now, case_id, out);
            }
        }
        if !reads.is_empty() {
            out.effects.push(Effect::ReadCases(reads));
        }
        if ready {
            self.maybe_reconcile(now, out);
        }
        for case_id in work {
            if self.cases.get(&case_id).is_some_and(|c| {
                c.active.is_none()
                    && c.pending.is_empty()
                    && !c.recover
                    && c.snap != Snap::Requested
            }) {
                self.cases.remove(&case_id);
            }
        }
    }

    /// Raises the claimed rows waiting for a slot, in claim order, while a slot is free.
    fn serve_raise_queue(&mut self, now: DateTime<Utc>, out: &mut Out) {
        while self.in_flight < self.settings.max_in_flight {
            let Some(id) = self.raise_queue.pop_front() else {
                return;
            };
            let deadline = now + self.settings.route_timeout;
            let Some(r) = self.rows.get_mut(&id) else {
                continue;
            };
            if !matches!(r.stage, Stage::Claimed) {
                continue;
            }
            r.stage = Stage::Raised {
                deadline,
                result: None,
            };
            self.take_slot(&id);
            self.raise(now, &id, out);
        }
    }

    /// Decides the cases waiting for a claim, oldest first, while claims are below the bound.
    fn serve_claim_queue(&mut self, now: DateTime<Utc>, out: &mut Out) {
        while self.claims < self.settings.max_in_flight {
            let Some(case_id) = self.claim_queue.pop_front() else {
                return;
            };
            self.claim_waiting.remove(&case_id);
            let movable = self.cases.get(&case_id).is_some_and(|c| {
                c.active.is_none() && !c.pending.is_empty() && matches!(c.snap, Snap::Fresh(_))
            });
            if movable {
                self.decide(now, &case_id, out);
            }
            // Whatever it did (or could not do), the case is looked at again next time.
            self.dirty.insert(case_id);
        }
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
        for workgroup in self.route_workgroups.keys() {
            if valid(workgroup) {
                want.insert(workgroup.clone());
            }
        }
        // Never stop watching a workgroup while something live sits in it.
        for workgroup in self.live.workgroups() {
            if self.watched.contains(workgroup) {
                want.insert(workgroup.clone());
            }
        }
        if want != self.watched {
            self.all_dirty = true;
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
            .filter(|(_, r)| matches!(r.stage, Stage::Raised { .. } | Stage::RaiseWait { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in raised {
            if let Some(r) = self.rows.get_mut(&id) {
                r.stage = Stage::Raised {
                    deadline: now + self.settings.route_timeout,
                    result: None,
                };
            }
            self.raise(now, &id, out);
            reraised += 1;
        }
        let mut rerouting = 0;
        if self.settings.reroute_lost_on_switchover {
            let cases: BTreeSet<CaseId> = lost.iter().filter_map(|li| li.case_id.clone()).collect();
            for case_id in cases {
                self.dirty.insert(case_id.clone());
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
            // A row claimed and raised in an earlier life may have its interaction live: the
            // mark names it (the newer row then keeps, moves or disconnects it).
            let own = self.live.of_entry(&id).map(|li| li.id.clone());
            self.close(now, &id, own, note, out);
        }
        if let Some(id) = plan.disconnect {
            self.start_disconnect_row(now, case_id, &id, out);
        } else if let Some(id) = plan.route {
            if self.claims < self.settings.max_in_flight {
                self.start_route_row(now, case_id, &id, out);
            } else if self.claim_waiting.insert(case_id.clone()) {
                self.claim_queue.push_back(case_id.clone());
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
        self.activate(case_id, id);
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
        let seen_at = r.seen_at;
        let snap = match &self.cases.get(case_id).map(|c| &c.snap) {
            Some(Snap::Fresh(s)) => s.as_deref().cloned(),
            _ => return,
        };
        // Configuration read before this row was seen may not know what the row names (a
        // mapping, workgroup or skill added moments ago): read it again before judging.
        let unknown_queue = snap
            .as_ref()
            .is_some_and(|s| !s.is_closed && !self.monitored.contains_key(&s.owner_id));
        if unknown_queue && self.mappings_as_of.is_none_or(|t| t < seen_at) {
            self.want_mappings(now, out);
            return;
        }
        if self.validate(id).is_err() && self.config_as_of.is_none_or(|t| t < seen_at) {
            self.want_cic_config(now, out);
            return;
        }
        self.take_from_pending(case_id, id);
        self.activate(case_id, id);

        let left = match &snap {
            None => Some("case left routing: the case is deleted"),
            Some(s) if s.is_closed => Some("case left routing: the case is closed"),
            Some(s) if !self.monitored.contains_key(&s.owner_id) => {
                Some("case left routing: no monitored queue owns the case")
            }
            _ => None,
        };
        if let Some(note) = left {
            // The trigger judged the case's queue monitored, and fresh mappings say it is not:
            // the mapping was removed meanwhile, or the two disagree. Worth an operator's look.
            let queue = self.rows.get(id).and_then(|r| r.row.queue_id.clone());
            if let (Some(s), Some(q)) = (&snap, queue)
                && q == s.owner_id
                && !self.monitored.contains_key(&q)
            {
                out.notify(Notice::ConfigDrift {
                        message: format!(
                            "row {id} names queue {q} as monitored, but no Interaction Routing Queue maps it (mapping removed, or its queue name no longer matches)"
                        ),
                    });
            }
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
        if let Some(iid) = self.live.of_entry(id).map(|li| li.id.clone()) {
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

    fn want_mappings(&mut self, now: DateTime<Utc>, out: &mut Out) {
        if refresh_due(self.mappings_refresh, now) {
            self.mappings_refresh = Refresh::Requested;
            out.effects.push(Effect::ReadMappings);
        }
    }

    fn want_cic_config(&mut self, now: DateTime<Utc>, out: &mut Out) {
        if refresh_due(self.config_refresh, now) {
            self.config_refresh = Refresh::Requested;
            out.effects.push(Effect::ReadCicConfig);
        }
    }

    fn maybe_reconcile(&mut self, now: DateTime<Utc>, out: &mut Out) {
        if self.settings.reconcile_interval.is_none() {
            return;
        }
        let due = match self.reconcile {
            ReconcileState::Due => true,
            ReconcileState::At(t) => t <= now,
            ReconcileState::Requested => false,
        };
        if !due {
            return;
        }
        self.reconcile = ReconcileState::Requested;
        let live_cases: BTreeSet<CaseId> = self
            .live
            .values()
            .filter_map(|li| li.case_id.clone())
            .collect();
        let mut queues: Vec<String> = self.monitored.keys().cloned().collect();
        queues.sort();
        out.effects.push(Effect::ReadForReconcile {
            queues,
            since: now - self.settings.reconcile_lookback,
            live_cases: live_cases.into_iter().collect(),
        });
    }

    /// Where Salesforce says the case should have a live interaction: open, owned by a
    /// monitored queue, its newest route row `Processed` with an interaction, and no reply or
    /// close after that row. Returns the workgroup of the owning queue.
    fn expected_workgroup(&self, s: &CaseSnapshot) -> Option<String> {
        if s.is_closed {
            return None;
        }
        let workgroup = self.monitored.get(&s.owner_id)?;
        let last = s.last_route_row.as_ref()?;
        if last.status != RowStatus::Processed || last.interaction_id.is_none() {
            return None;
        }
        if s.last_closing_row_at
            .is_some_and(|c| c >= last.created_date)
        {
            return None;
        }
        Some(workgroup.clone())
    }

    /// Why a live interaction of this case should not be live, if it should not.
    fn stray_reason(&self, li: &LiveInteraction, s: Option<&CaseSnapshot>) -> Option<String> {
        let Some(s) = s else {
            return Some("the case is deleted".to_owned());
        };
        if s.is_closed {
            return Some("the case is closed".to_owned());
        }
        let answered = match (s.last_closing_row_at, &s.last_route_row) {
            (Some(c), Some(r)) => c >= r.created_date,
            (Some(_), None) => true,
            _ => false,
        };
        let disconnects = match s.last_closing_event {
            Some(RowEvent::CaseClosed) => true,
            Some(RowEvent::AgentReply) => self.settings.auto_disconnect_on_reply,
            _ => false,
        };
        if answered && disconnects {
            return Some("the case was answered".to_owned());
        }
        // A newer route row made another interaction the case's own, and that one is live.
        if let Some(r) = &s.last_route_row
            && let Some(own) = &r.interaction_id
            && r.status == RowStatus::Processed
            && *own != li.id
            && li.entry_id.as_ref() != Some(&r.id)
            && self.live.contains_key(own)
        {
            return Some(format!(
                "the case's interaction is {own}, routed by a newer row"
            ));
        }
        None
    }

    /// A case reconciliation must leave alone: rows of it are held here, or were since the
    /// reconciliation's queries started (their answer may predate what those rows did).
    fn case_busy(&self, case_id: &CaseId, as_of: DateTime<Utc>) -> bool {
        self.cases.contains_key(case_id) || self.case_seen.get(case_id).is_some_and(|t| *t >= as_of)
    }

    fn on_reconcile(
        &mut self,
        now: DateTime<Utc>,
        as_of: DateTime<Utc>,
        live_cases: Vec<CaseId>,
        found: Vec<CaseSnapshot>,
        out: &mut Out,
    ) {
        if let Some(interval) = self.settings.reconcile_interval {
            self.reconcile = ReconcileState::At(now + interval);
        }
        self.reconciled_at = Some(now);
        if !self.cic_ready() || !self.mappings_loaded {
            // The live picture is incomplete: judge nothing now.
            self.reconcile = ReconcileState::Due;
            return;
        }
        let asked: HashSet<CaseId> = live_cases.into_iter().collect();
        let found: BTreeMap<CaseId, CaseSnapshot> =
            found.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut rerouted = 0;
        let mut disconnected = 0;
        // Cases that should have a live interaction and have none in their workgroup.
        if self.settings.reroute_lost_on_switchover {
            for (id, s) in &found {
                if self.case_busy(id, as_of) || self.recovered.contains_key(id) {
                    continue;
                }
                let Some(workgroup) = self.expected_workgroup(s) else {
                    continue;
                };
                if self.live_of_case(id).any(|li| li.workgroup == workgroup) {
                    continue;
                }
                out.effects.push(Effect::InsertRow(NewRoutingRow {
                    case_id: id.clone(),
                    event: RowEvent::SwitchoverRecovery,
                    queue_id: Some(s.owner_id.clone()),
                    workgroup,
                    skills: s.skills.clone(),
                    case_number: s.case_number.clone(),
                    subject: s.subject.clone(),
                    from_address: s.supplied_email.clone(),
                    from_name: s.supplied_name.clone(),
                }));
                self.recovered.insert(id.clone(), now);
                rerouted += 1;
            }
        }
        // Live interactions of cases that should have none (or another one).
        let live: Vec<LiveInteraction> = self.live.values().cloned().collect();
        for li in live {
            let Some(case_id) = li.case_id.clone() else {
                continue;
            };
            if !asked.contains(&case_id) && !found.contains_key(&case_id) {
                continue; // appeared after the queries
            }
            if self.case_busy(&case_id, as_of) || self.stray_disconnects.contains_key(&li.id) {
                continue;
            }
            if let Some(why) = self.stray_reason(&li, found.get(&case_id)) {
                out.effects.push(Effect::Disconnect {
                    interaction: li.id.clone(),
                    case_id: case_id.clone(),
                });
                self.stray_disconnects
                    .insert(li.id.clone(), (case_id, format!("reconciliation: {why}")));
                disconnected += 1;
            }
        }
        out.notify(Notice::Reconciled {
            cases: found.len(),
            rerouted,
            disconnected,
        });
    }

    fn validate(&self, id: &RowId) -> Result<(), String> {
        let r = self.rows.get(id).ok_or("row vanished")?;
        let skills = rules::parse_skills(&r.row.skills)?;
        if r.row.workgroup.trim().is_empty() {
            return Err(format!("{} is empty", self.settings.field_names.workgroup));
        }
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
            self.take_slot(id);
            self.raise(now, id, out);
            return;
        }
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        r.stage = Stage::Claiming { retry_at: None };
        out.writes.push(claim_update(r));
        if r.hold == Hold::Nothing {
            r.hold = Hold::Claim;
            self.claims += 1;
        }
    }

    /// Sends the handler notification of a claimed row (and remembers the entry as ours).
    fn raise(&mut self, now: DateTime<Utc>, id: &RowId, out: &mut Out) {
        if let Some(req) = self.route_request(id) {
            self.raised_entries.insert(id.clone(), now);
            out.effects.push(Effect::Raise(req));
        }
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
        self.release_hold(id);
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
        // The case waits out the back-off; the slot serves another case meanwhile.
        self.release_hold(id);
    }

    // ---------------------------------------------------------------- bookkeeping

    fn live_of_case<'a>(
        &'a self,
        case_id: &'a CaseId,
    ) -> impl Iterator<Item = &'a LiveInteraction> + 'a {
        self.live.of_case(case_id)
    }

    fn take_from_pending(&mut self, case_id: &CaseId, id: &RowId) {
        let key = self.rows.get(id).map(Row::order_key);
        if let (Some(case), Some(key)) = (self.cases.get_mut(case_id), key) {
            case.pending.remove(&key);
            self.dirty.insert(case_id.clone());
        }
    }

    /// The row holds its case (a route row takes its share of the bounds at the claim: `Hold`).
    fn activate(&mut self, case_id: &CaseId, id: &RowId) {
        if let Some(case) = self.cases.get_mut(case_id) {
            case.active = Some(id.clone());
            self.dirty.insert(case_id.clone());
        }
    }

    /// Releases the row's case (if this row holds it) and what it holds of the bounds.
    fn deactivate(&mut self, id: &RowId) {
        let Some(r) = self.rows.get(id) else {
            return;
        };
        let Some(case_id) = r.row.case_id.clone() else {
            return;
        };
        self.release_hold(id);
        if let Some(case) = self.cases.get_mut(&case_id)
            && case.active.as_ref() == Some(id)
        {
            case.active = None;
            self.dirty.insert(case_id.clone());
        }
    }

    /// Gives back what the row holds of the bounds (a claim or a slot): its claim or its CIC
    /// part is over.
    fn release_hold(&mut self, id: &RowId) {
        if let Some(r) = self.rows.get_mut(id) {
            match std::mem::replace(&mut r.hold, Hold::Nothing) {
                Hold::Nothing => {}
                Hold::Claim => self.claims = self.claims.saturating_sub(1),
                Hold::Slot => self.in_flight = self.in_flight.saturating_sub(1),
            }
        }
    }

    /// The row moves from its claim (if any) to a slot.
    fn take_slot(&mut self, id: &RowId) {
        self.release_hold(id);
        if let Some(r) = self.rows.get_mut(id) {
            r.hold = Hold::Slot;
            self.in_flight += 1;
        }
    }

    fn release_to_pending(&mut self, id: &RowId) {
        self.deactivate(id);
        let Some(r) = self.rows.get_mut(id) else {
            return;
        };
        r.stage = Stage::Pending;
        let key = r.order_key();
        if let Some(c) = &r.row.case_id
            && let Some(case) = self.cases.get_mut(c)
        {
            case.pending.insert(key);
            self.dirty.insert(c.clone());
        }
    }

    fn forget(&mut self, now: DateTime<Utc>, id: &RowId) {
        self.deactivate(id);
        if let Some(r) = self.rows.get(id)
            && r.event.is_some_and(RowEvent::is_route)
            && let Some(n) = self.route_workgroups.get_mut(&r.row.workgroup)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.route_workgroups.remove(&r.row.workgroup);
            }
        }
        if let Some(r) = self.rows.remove(id)
            && let Some(c) = &r.row.case_id
            && let Some(case) = self.cases.get_mut(c)
        {
            self.dirty.insert(c.clone());
            case.pending.remove(&r.order_key());
            // A recovery waiting for this case to be idle: read it again now.
            if case.recover && case.active.is_none() && case.pending.is_empty() {
                case.snap = Snap::Stale;
            }
        }
        self.finished.insert(id.clone(), now);
    }
}

fn refresh_due(r: Refresh, now: DateTime<Utc>) -> bool {
    match r {
        Refresh::Idle => true,
        Refresh::Requested => false,
        Refresh::Failed(at) => at <= now,
    }
}

/// The claim: `Processing`, one more attempt.
fn claim_update(r: &Row) -> RowUpdate {
    RowUpdate {
        id: r.row.id.clone(),
        status: RowStatus::Processing,
        attempts: Some(r.row.attempts + 1),
        interaction_id: None,
        error: None,
        processed_at: None,
    }
}

/// The wait before the next try of a transient failure (writes, raises, fetches).
fn write_backoff(settings: &Settings, failures: u32) -> TimeDelta {
    backoff(settings, failures).min(settings.max_write_backoff)
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
