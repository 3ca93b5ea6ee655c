//! The runtime: wires the Salesforce and ICWS clients to the routing core.
//!
//! One owner, one loop: [`Runtime`] holds the [`Router`], the two clients, the status and every
//! task it starts, and [`Runtime::run`] is the only place that changes any of them. It feeds the
//! router what the clients report and carries out the effects the router returns as small tasks
//! whose results come back to the loop as [`Done`] messages. Pushes and row writes go through
//! one kind of [`Batcher`], so a burst costs a few API calls. Nothing is stored locally: after a
//! restart, the start-up scan and the CIC queue snapshots rebuild everything (routing.md §1).
//!
//! Invariants: the runtime knows no wire format (the clients return domain types and classified
//! outcomes); only the loop touches the router; a dropped runtime (a kill) takes every task it
//! started with it.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sors_core::backoff::{Backoff, Retry};
use sors_core::model::*;
use sors_core::router::{DisconnectResult, Effect, Input, Notice, Router, Settings, Source};
use sors_icws::{DisconnectOutcome, Icws, IcwsEvent};
use sors_salesforce::{PushTopicOutcome, Salesforce, Scan, StreamEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::batcher::Batcher;
use crate::status::{AlertKind, Shared, Streaming};

/// Timing of the runtime (config `[routing]`; the defaults are `sors_tenant`'s).
#[derive(Clone, Debug)]
pub struct Options {
    pub settings: Settings,
    pub sweep_interval: Duration,
    /// `New` rows younger than this are not yet "missed" by the sweep.
    pub sweep_grace: Duration,
    /// The longest a push waits for a fetch already in flight before a call of its own (a
    /// push with no fetch in flight, and a write with no write in flight, go at once).
    pub batch_window: Duration,
    /// How often the router's timers are checked.
    pub tick: Duration,
    /// A scan's rows beyond this many wait in the runtime's backlog and are handed to the router
    /// a chunk of this size at a time (default [`BACKLOG_CHUNK`]).
    pub backlog_chunk: usize,
}

/// The defaults of a tenant whose config sets nothing (`sors_tenant::Config::default()`).
impl Default for Options {
    fn default() -> Self {
        crate::wiring::options(&sors_tenant::Config::default())
    }
}

/// Rows per sObject Collections call, and pushed ids per fetch.
const BATCH_MAX: usize = 200;
/// A scan's rows beyond this many wait in the runtime's backlog (ids only) and are handed to
/// the router a chunk at a time, as if pushed (so they are read fresh when their turn comes),
/// whenever it holds fewer than half a chunk: the router's memory and its work per input stay
/// bounded however long the routing table's backlog is.
pub const BACKLOG_CHUNK: usize = 1000;
/// How long a graceful stop waits for pending row writes.
const WRITE_DRAIN: Duration = Duration::from_secs(10);
/// Salesforce login at start-up.
const LOGIN_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// CIC workgroups and skills after a (re)connect.
const CIC_CONFIG_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// Setting the watched workgroup queues.
const WATCH_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));

/// Runs until `shutdown` is cancelled. In-flight rows that have not finished stay `Processing`
/// in Salesforce; the next start finishes them.
pub async fn run(
    opts: Options,
    sf: Salesforce,
    icws: Icws,
    icws_events: mpsc::Receiver<IcwsEvent>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    // Every call's latency goes to this service's histograms.
    sf.config()
        .observer
        .set(shared.metrics().salesforce_observer());
    icws.observer().set(shared.metrics().icws_observer());
    // Salesforce first: without it there is nothing to route.
    let mut retry = Retry::new(LOGIN_BACKOFF);
    loop {
        match sf.login().await {
            Ok(s) => {
                shared.salesforce_logged_in(&s.org_id, &s.instance_url);
                break;
            }
            Err(e) => {
                shared.salesforce_login_failed(&e.to_string());
                let delay = retry.failed_exact();
                if shutdown
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    icws.shutdown().await;
                    return;
                }
            }
        }
    }
    ensure_push_topic(&sf, &shared).await;
    Runtime::new(opts, sf, icws, shared)
        .run(icws_events, shutdown)
        .await;
}

/// What a task started by the loop reports back.
enum Done {
    /// An input for the router.
    Input(Input),
    /// The writer's call ended; its results are an input for the router.
    Written(Vec<(RowId, WriteResult)>),
    /// A scan of the routing table (every `New` and `Processing` row, oldest first: the
    /// first chunk in full, the ids of the rest).
    Scanned(Scan),
    /// A fetch of pushed rows ended; its answer is an input for the router.
    Fetched(Input),
}

/// The one owner of the router and of everything the loop starts.
struct Runtime {
    opts: Options,
    router: Router,
    sf: Salesforce,
    icws: Icws,
    shared: Arc<Shared>,
    /// Where effect tasks report back.
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// The watched workgroups, for the watcher task.
    watch_tx: watch::Sender<Vec<String>>,
    pushes: Batcher<RowId>,
    writes: Batcher<RowUpdate>,
    /// The one row-write call in flight (writes go one call at a time, in order).
    writer: JoinSet<()>,
    /// Fetches of pushed rows in flight: pushes wait for them only up to the batch window.
    fetching: usize,
    /// Every other task started for an effect: dropped (a kill), they all stop.
    tasks: JoinSet<()>,
    scanned: bool,
    /// Ids of scanned rows not yet handed to the router (see [`Options::backlog_chunk`]).
    backlog: std::collections::VecDeque<RowId>,
    /// The router's `cic_ready` as the status last heard it: a change is told at once, not at
    /// the next tick, so readiness follows CIC without a second's lag.
    told_cic_ready: bool,
}

impl Runtime {
    fn new(opts: Options, sf: Salesforce, icws: Icws, shared: Arc<Shared>) -> Runtime {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (watch_tx, _) = watch::channel(Vec::new());
        Runtime {
            router: Router::new(opts.settings.clone()),
            pushes: Batcher::new(opts.batch_window, BATCH_MAX),
            writes: Batcher::new(opts.batch_window, BATCH_MAX),
            opts,
            sf,
            icws,
            shared,
            done_tx,
            done_rx,
            watch_tx,
            writer: JoinSet::new(),
            fetching: 0,
            tasks: JoinSet::new(),
            scanned: false,
            backlog: std::collections::VecDeque::new(),
            told_cic_ready: false,
        }
    }

    async fn run(
        mut self,
        mut icws_events: mpsc::Receiver<IcwsEvent>,
        shutdown: CancellationToken,
    ) {
        let (stream, mut stream_rx) = self.sf.stream(-1);
        let _watcher = AbortOnDropHandle::new(tokio::spawn(watch_workgroups(
            self.icws.clone(),
            self.watch_tx.subscribe(),
            self.shared.clone(),
        )));
        self.read_mappings();

        let mut tick = tokio::time::interval(self.opts.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sweep_every = self.opts.sweep_interval;
        let mut sweep = tokio::time::interval_at(Instant::now() + sweep_every, sweep_every);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let now = Instant::now();
            let push_due = self.pushes.due(now, self.fetching > 0);
            let write_due = self
                .writes
                .due(now, false)
                .filter(|_| self.writer.is_empty());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(ev) = stream_rx.recv() => self.on_stream(ev),
                Some(ev) = icws_events.recv() => self.on_icws(ev),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                Some(_) = self.writer.join_next() => {}
                _ = tick.tick() => self.on_tick(),
                _ = sweep.tick() => self.on_sweep(),
                _ = sleep_until(push_due), if push_due.is_some() => {
                    let ids = self.pushes.take(Instant::now());
                    info!(event = "router.pushed", count = ids.len(), rows = %joined(&ids), "Pushed rows to fetch");
                    self.feed(Input::Pushed(ids));
                }
                _ = sleep_until(write_due), if write_due.is_some() => self.start_write(),
            }
        }

        info!(
            event = "router.stopping",
            "Stopping: rows in flight stay Processing for the next start"
        );
        self.tasks.abort_all();
        self.drain_writes().await;
        drop(_watcher);
        stream.shutdown().await;
        self.icws.shutdown().await;
        info!(event = "router.stopped", "Stopped");
    }

    /// Writes what is queued (the call in flight first), for at most [`WRITE_DRAIN`].
    async fn drain_writes(&mut self) {
        let deadline = Instant::now() + WRITE_DRAIN;
        loop {
            if self.writer.is_empty() {
                if self.writes.is_empty() {
                    return;
                }
                self.start_write();
            }
            if tokio::time::timeout_at(deadline, self.writer.join_next())
                .await
                .is_err()
            {
                warn!(
                    event = "router.writer_timeout",
                    "Pending row writes did not finish in time; those rows stay as they are"
                );
                return;
            }
        }
    }

    fn on_stream(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Push { row_id, .. } => {
                self.shared.push_received();
                self.pushes.add(Instant::now(), [row_id]);
            }
            StreamEvent::Subscribed { replay_from } => {
                self.shared.streaming(Streaming::Subscribed);
                info!(
                    event = "router.streaming.subscribed",
                    replay_from, "PushTopic subscription in place"
                );
                if !self.scanned {
                    self.scanned = true;
                    self.scan("start-up");
                }
            }
            StreamEvent::ResyncNeeded { reason } => {
                warn!(event = "router.resync", %reason, "Streaming may have missed events: scanning the routing table");
                self.shared
                    .alert(AlertKind::Resync, format!("streaming resync: {reason}"));
                self.scan("resync");
            }
            StreamEvent::Disconnected { reason } => {
                self.shared.streaming(Streaming::Reconnecting);
                warn!(event = "router.streaming.down", %reason, "PushTopic stream is down; reconnecting");
            }
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Input(input) => self.feed(input),
            Done::Written(results) => self.feed(Input::Written(results)),
            Done::Scanned(scan) => {
                // A newer scan supersedes the held ids: it holds every row still pending.
                let rows = scan.rows;
                self.backlog = scan.more.into();
                if !self.backlog.is_empty() {
                    info!(
                        event = "router.backlog",
                        held = self.backlog.len(),
                        "A long backlog: rows are handed to the router a chunk at a time"
                    );
                }
                self.feed(Input::Rows {
                    source: Source::Scan,
                    rows,
                });
            }
            Done::Fetched(input) => {
                self.fetching = self.fetching.saturating_sub(1);
                self.feed(input)
            }
        }
    }

    fn on_tick(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        self.feed(Input::Tick);
        let session = self.sf.session();
        self.shared.salesforce_stats(
            &self.sf.stats(),
            session
                .as_ref()
                .map(|s| (s.org_id.as_str(), s.instance_url.as_str())),
        );
        let cic = self.icws.status();
        self.shared
            .cic_client(cic.last_error.as_deref(), cic.auth_failing);
    }

    /// The periodic safety net: missed rows, the mappings, the PushTopic.
    fn on_sweep(&mut self) {
        self.sweep();
        self.read_mappings();
        let (sf, shared, done) = (self.sf.clone(), self.shared.clone(), self.done_tx.clone());
        let chunk = self.opts.backlog_chunk;
        self.tasks.spawn(async move {
            // A PushTopic that had to be re-created announced nothing meanwhile: scan at once
            // instead of waiting for the sweep's grace period.
            if ensure_push_topic(&sf, &shared).await {
                scan(&sf, &shared, &done, chunk, "PushTopic re-created").await;
            }
        });
    }

    fn on_icws(&mut self, ev: IcwsEvent) {
        match ev {
            IcwsEvent::Connected {
                server,
                backup,
                generation,
            } => {
                self.shared.cic_connected(&server, backup);
                self.feed(Input::IcwsUp);
                self.read_cic_config_until_read(generation);
                if generation > 1 {
                    self.shared.alert(
                        AlertKind::Switchover,
                        format!("CIC session re-established on {server}"),
                    );
                }
            }
            IcwsEvent::Lost { reason, .. } => {
                self.shared.cic_lost(&reason);
                self.feed(Input::IcwsDown { reason });
            }
            IcwsEvent::Snapshot {
                workgroup,
                interactions,
            } => self.feed(Input::Snapshot {
                workgroup,
                interactions,
            }),
            IcwsEvent::Added(li) | IcwsEvent::Changed(li) => self.feed(Input::Upsert(li)),
            IcwsEvent::Removed { id, .. } => self.feed(Input::Removed { id }),
            IcwsEvent::RouteResult { entry_id, outcome } => {
                self.feed(Input::RouteResult { entry_id, outcome })
            }
        }
    }

    /// Hands `input` to the router, then tops the router up from the backlog.
    fn feed(&mut self, input: Input) {
        self.feed_one(input);
        let chunk = self.opts.backlog_chunk.max(1);
        // Handed-over ids become rows only when their fetch answers: wait for it.
        while !self.backlog.is_empty()
            && self.fetching == 0
            && self.router.known_rows() < chunk.div_ceil(2)
        {
            let n = self.backlog.len().min(chunk);
            let ids: Vec<RowId> = self.backlog.drain(..n).collect();
            self.feed_one(Input::Pushed(ids));
        }
    }

    fn feed_one(&mut self, input: Input) {
        let tick = input == Input::Tick;
        let sweep = matches!(
            input,
            Input::Rows {
                source: Source::Sweep,
                ..
            }
        );
        let now = Utc::now();
        let effects = self.router.handle(now, input);
        let missed = effects
            .iter()
            .any(|e| matches!(e, Effect::Notify(Notice::PushLost { .. })));
        for effect in effects {
            self.execute(effect);
        }
        if sweep && !missed {
            self.shared.sweep_clean();
        }
        // The status walks every held row: once a tick is plenty for the heartbeat, unless
        // CIC readiness just changed.
        let cic_ready = self.router.cic_ready();
        if tick || cic_ready != self.told_cic_ready {
            self.told_cic_ready = cic_ready;
            self.shared.router_status(self.router.status(), now);
        }
    }

    /// Starts a task whose answer is an input for the router.
    fn spawn_input<F>(&mut self, span: tracing::Span, task: F)
    where
        F: std::future::Future<Output = Option<Input>> + Send + 'static,
    {
        let done = self.done_tx.clone();
        self.tasks.spawn(
            async move {
                if let Some(input) = task.await {
                    let _ = done.send(Done::Input(input));
                }
            }
            .instrument(span),
        );
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::FetchRows(ids) => {
                let (sf, done) = (self.sf.clone(), self.done_tx.clone());
                let span = info_span!("fetch_rows", count = ids.len());
                self.fetching += 1;
                self.tasks.spawn(
                    async move {
                        let input = match sf.rows_by_ids(&ids).await {
                            Ok(rows) => {
                                info!(event = "router.rows_fetched", rows = %joined(rows.iter().map(|r| &r.id)), cases = %joined(rows.iter().filter_map(|r| r.case_id.as_ref())), "Read pushed rows");
                                Input::Rows {
                                    source: Source::Push,
                                    rows,
                                }
                            }
                            // Fetched again after a back-off (the router schedules it).
                            Err(e) => {
                                warn!(event = "router.fetch_failed", rows = %joined(&ids), error = %e, "Could not read pushed rows; trying again");
                                Input::FetchFailed {
                                    ids,
                                    error: e.to_string(),
                                }
                            }
                        };
                        let _ = done.send(Done::Fetched(input));
                    }
                    .instrument(span),
                );
            }
            Effect::ReadMappings => self.read_mappings(),
            Effect::ReadCicConfig => {
                let icws = self.icws.clone();
                self.spawn_input(info_span!("read_cic_config"), async move {
                    Some(read_cic_config(&icws).await.unwrap_or_else(|e| {
                        warn!(event = "router.cic_config_failed", error = %e, "Could not read CIC workgroups and skills again");
                        Input::CicConfigFailed {
                            error: e.to_string(),
                        }
                    }))
                });
            }
            Effect::ReadForReconcile {
                queues,
                since,
                live_cases,
            } => {
                let sf = self.sf.clone();
                let span = info_span!("reconcile", live = live_cases.len());
                self.spawn_input(span, async move {
                    let as_of = Utc::now();
                    Some(match sf.reconcile_view(&queues, since, &live_cases).await {
                        Ok(found) => Input::Reconcile {
                            as_of,
                            live_cases,
                            found,
                        },
                        Err(e) => {
                            warn!(event = "router.reconcile_failed", error = %e, "Could not read Salesforce for reconciliation; trying again later");
                            Input::ReconcileFailed {
                                error: e.to_string(),
                            }
                        }
                    })
                });
            }
            Effect::ReadCases(ids) => {
                let sf = self.sf.clone();
                let span = info_span!("read_cases", count = ids.len());
                self.spawn_input(span, async move {
                    Some(match sf.cases(&ids).await {
                        Ok(found) => Input::Cases {
                            requested: ids,
                            found,
                        },
                        Err(e) => {
                            warn!(event = "router.cases_failed", cases = %joined(&ids), error = %e, "Could not read cases");
                            Input::CasesFailed {
                                requested: ids,
                                error: e.to_string(),
                            }
                        }
                    })
                });
            }
            Effect::WriteRows(updates) => self.writes.add(Instant::now(), updates),
            Effect::Raise(req) => {
                let icws = self.icws.clone();
                // Every log line of this hop carries the row and the case.
                let span = info_span!("raise", row = %req.entry_id, case = %req.case_id);
                self.spawn_input(span, async move {
                    match icws.raise_route(&req).await {
                        Ok(()) => {
                            info!(event = "router.raised", "Raised the routing notification");
                            None
                        }
                        Err(e) => {
                            warn!(event = "router.raise_failed", error = %e, "Raising the routing notification failed");
                            Some(Input::RaiseFailed {
                                entry_id: req.entry_id,
                                error: e.to_string(),
                            })
                        }
                    }
                });
            }
            Effect::Disconnect {
                interaction,
                case_id,
            } => {
                let icws = self.icws.clone();
                let span = info_span!("disconnect", interaction = %interaction, case = %case_id);
                self.spawn_input(span, async move {
                    let result = match icws.disconnect(&interaction).await {
                        Ok(DisconnectOutcome::Disconnected) => DisconnectResult::Disconnected,
                        Ok(DisconnectOutcome::AlreadyGone) => DisconnectResult::AlreadyGone,
                        Err(e) => {
                            warn!(event = "router.disconnect_failed", error = %e, "Disconnect failed");
                            DisconnectResult::Failed(e.to_string())
                        }
                    };
                    Some(Input::DisconnectDone {
                        interaction,
                        result,
                    })
                });
            }
            Effect::InsertRow(row) => {
                let sf = self.sf.clone();
                let span = info_span!("insert_row", case = %row.case_id, row_event = %row.event);
                self.spawn_input(span, async move {
                    let result = sf.insert_row(&row).await.map_err(|e| e.to_string());
                    Some(Input::RowInserted {
                        case_id: row.case_id,
                        result,
                    })
                });
            }
            Effect::Watch(workgroups) => {
                let _ = self.watch_tx.send(workgroups);
            }
            Effect::Notify(n) => self.notice(n),
        }
    }

    /// Sends the next batch of row writes: one call at a time, so writes land in order.
    fn start_write(&mut self) {
        let batch = self.writes.take(Instant::now());
        if batch.is_empty() {
            return;
        }
        let (sf, shared, done) = (self.sf.clone(), self.shared.clone(), self.done_tx.clone());
        let span = info_span!("write_rows", count = batch.len());
        self.writer.spawn(
            async move {
                shared.write_call();
                let written = sf.update_rows(&batch).await;
                let retry = written.iter().find_map(|(_, r)| match r {
                    WriteResult::Retry(e) => Some(e.clone()),
                    _ => None,
                });
                match retry {
                    Some(e) => {
                        warn!(event = "router.write_failed", rows = %joined(batch.iter().map(|u| &u.id).collect::<Vec<_>>()), error = %e, "Salesforce did not take row writes; they are tried again");
                        shared.writes_failing(&e);
                    }
                    None => shared.writes_ok(),
                }
                info!(event = "router.rows_written", rows = %joined(batch.iter().map(|u| format!("{}:{}", u.id, u.status))), "Wrote rows");
                let _ = done.send(Done::Written(written));
            }
            .instrument(span),
        );
    }

    /// Reads the mapping object; the router gets the mappings whose queue exists.
    fn read_mappings(&mut self) {
        let (sf, shared) = (self.sf.clone(), self.shared.clone());
        self.spawn_input(info_span!("read_mappings"), async move {
            let as_of = Utc::now();
            Some(match sf.queue_mappings().await {
                Ok(maps) => {
                    for m in &maps.unresolved {
                        warn!(event = "router.mapping_unresolved", queue = %m.queue_name, "A mapping names a queue that does not exist");
                    }
                    shared.mappings(maps.resolved.len());
                    Input::Mappings {
                        mappings: maps.resolved,
                        as_of,
                    }
                }
                Err(e) => {
                    error!(event = "router.mappings_failed", error = %e, "Could not read the queue mappings");
                    shared.salesforce_error(&e.to_string());
                    Input::MappingsFailed {
                        error: e.to_string(),
                    }
                }
            })
        });
    }

    /// After a CIC (re)connect: workgroups and skills, retried until read, unless a newer
    /// session took over (it reads them itself). Nothing can be validated without them.
    fn read_cic_config_until_read(&mut self, generation: u64) {
        let (icws, shared) = (self.icws.clone(), self.shared.clone());
        self.spawn_input(info_span!("read_cic_config", generation), async move {
            let mut retry = Retry::new(CIC_CONFIG_BACKOFF);
            loop {
                match read_cic_config(&icws).await {
                    Ok(input) => return Some(input),
                    Err(e) => {
                        error!(event = "router.cic_config_failed", error = %e, "Could not read CIC workgroups and skills; retrying");
                        shared.cic_error(&e.to_string());
                    }
                }
                tokio::time::sleep(retry.failed_exact()).await;
                if icws.status().generation != generation {
                    return None;
                }
            }
        });
    }

    fn scan(&mut self, why: &'static str) {
        let (sf, shared, done) = (self.sf.clone(), self.shared.clone(), self.done_tx.clone());
        let chunk = self.opts.backlog_chunk;
        self.tasks
            .spawn(async move { scan(&sf, &shared, &done, chunk, why).await });
    }

    /// `New` and `Processing` rows older than the grace period: `New` ones no push announced,
    /// and `Processing` ones whose final write was lost.
    fn sweep(&mut self) {
        // The backlog's rows are older than the grace period and no push announced them: the
        // sweep would take them for lost pushes. The scan that filled it covers them.
        if !self.backlog.is_empty() {
            return;
        }
        let (sf, shared) = (self.sf.clone(), self.shared.clone());
        let grace = chrono::TimeDelta::from_std(self.opts.sweep_grace).unwrap_or_default();
        self.spawn_input(info_span!("sweep"), async move {
            match sf.pending_rows_older_than(Utc::now() - grace).await {
                Ok(rows) => {
                    shared.swept();
                    Some(Input::Rows {
                        source: Source::Sweep,
                        rows,
                    })
                }
                Err(e) => {
                    error!(event = "router.sweep_failed", error = %e, "Sweep failed");
                    shared.salesforce_error(&e.to_string());
                    None
                }
            }
        });
    }

    fn notice(&self, n: Notice) {
        match &n {
            Notice::Routed {
                row,
                case_id,
                interaction,
                event,
                attempts,
                millis_since_created,
            } => {
                info!(event = "router.routed", row = %row, case = %case_id, interaction = %interaction, row_event = %event, attempts, time_to_route_ms = millis_since_created, "Routed");
                self.shared.routed(*millis_since_created);
            }
            Notice::Closed { row, note } => {
                info!(event = "router.closed", row = %row, %note, "Row processed without a new interaction");
                self.shared.closed();
            }
            Notice::Failed { row, reason } => {
                warn!(event = "router.failed", row = %row, %reason, "Row failed");
                self.shared.failed(row, reason);
            }
            Notice::Retrying {
                row,
                attempt,
                reason,
            } => {
                warn!(event = "router.retrying", row = %row, attempt, %reason, "Retrying");
                self.shared.retried();
            }
            Notice::Disconnected {
                interaction,
                case_id,
                why,
            } => {
                info!(event = "router.disconnected", interaction = %interaction, case = %case_id, %why, "Disconnected interaction");
                self.shared.disconnected();
            }
            Notice::PushLost { rows } => {
                warn!(
                    event = "router.push_lost",
                    rows, "Push notifications appear lost: the sweep found rows no push announced"
                );
                self.shared.push_lost(*rows);
            }
            Notice::SwitchoverReconciled {
                lost,
                reraised,
                rerouting,
            } => {
                warn!(
                    event = "router.switchover_reconciled",
                    lost, reraised, rerouting, "Reconciled after the CIC session came back"
                );
                self.shared.alert(
                    AlertKind::Switchover,
                    format!("CIC switchover: {lost} interaction(s) lost, {rerouting} being re-routed, {reraised} request(s) raised again"),
                );
            }
            Notice::RecoveryRowInserted { case_id, row } => {
                info!(event = "router.recovery_row", case = %case_id, row = %row, "Inserted a SwitchoverRecovery row")
            }
            Notice::RecoveryRowFailed { case_id, error } => {
                error!(event = "router.recovery_row_failed", case = %case_id, %error, "Could not insert a SwitchoverRecovery row")
            }
            Notice::OtherRouter { entry } => {
                error!(event = "router.other_router", entry = %entry, "A handler result names a row this router never raised: another router is active on this tenant");
                self.shared.other_router(entry);
            }
            Notice::Reconciled {
                cases,
                rerouted,
                disconnected,
            } => {
                if *rerouted > 0 || *disconnected > 0 {
                    warn!(
                        event = "router.reconciled",
                        cases,
                        rerouted,
                        disconnected,
                        "Reconciliation found Salesforce and CIC apart and mended it"
                    );
                    self.shared.alert(
                        AlertKind::Reconciled,
                        format!("reconciliation: {rerouted} case(s) re-routed, {disconnected} interaction(s) disconnected"),
                    );
                } else {
                    info!(
                        event = "router.reconciled",
                        cases, "Reconciliation: Salesforce and CIC agree"
                    );
                }
                self.shared.reconciled();
            }
            Notice::WriteWaiting { row, tries, reason } => {
                warn!(event = "router.write_waiting", row = %row, tries, %reason, "Salesforce did not take a row write; trying again");
            }
            Notice::ConfigDrift { message } => {
                warn!(event = "router.config_drift", %message, "Configuration drift");
                self.shared.alert(AlertKind::ConfigDrift, message.clone());
            }
        }
    }
}

/// CIC's workgroups and skills as one input, stamped with when the read began.
async fn read_cic_config(icws: &Icws) -> Result<Input, sors_icws::IcwsError> {
    let as_of = Utc::now();
    let (workgroups, skills) = tokio::try_join!(icws.workgroups(), icws.skills())?;
    Ok(Input::CicConfig {
        workgroups,
        skills,
        as_of,
    })
}

async fn sleep_until(at: Option<Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(Instant::now)).await
}

/// Ids joined by spaces, for one log field a grep finds every row in.
fn joined<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&item.to_string());
    }
    out
}

/// Makes sure the PushTopic exists as configured; true when it had to be created or repaired.
async fn ensure_push_topic(sf: &Salesforce, shared: &Shared) -> bool {
    match sf.ensure_push_topic().await {
        Ok(PushTopicOutcome::Unchanged) => {
            shared.push_topic_ok();
            false
        }
        Ok(outcome) => {
            shared.push_topic_ok();
            warn!(
                event = "router.pushtopic_repaired",
                ?outcome,
                "The PushTopic was missing or different and has been fixed"
            );
            shared.alert(
                AlertKind::PushTopic,
                format!(
                    "PushTopic {}",
                    if outcome == PushTopicOutcome::Created {
                        "was missing and has been created"
                    } else {
                        "differed and has been repaired"
                    }
                ),
            );
            true
        }
        Err(e) => {
            error!(event = "router.pushtopic_failed", error = %e, "Could not check the PushTopic");
            shared.push_topic_missing(&e.to_string());
            false
        }
    }
}

/// Reads every `New` and `Processing` row and hands them to the router.
async fn scan(
    sf: &Salesforce,
    shared: &Shared,
    done: &mpsc::UnboundedSender<Done>,
    chunk: usize,
    why: &str,
) {
    match sf.pending_scan(chunk.max(1)).await {
        Ok(scan) => {
            info!(
                event = "router.scan",
                why,
                rows = scan.rows.len() + scan.more.len(),
                "Scanned the routing table"
            );
            shared.salesforce_ok();
            let _ = done.send(Done::Scanned(scan));
        }
        Err(e) => {
            error!(event = "router.scan_failed", why, error = %e, "Could not scan the routing table; the sweep will retry");
            shared.salesforce_error(&e.to_string());
        }
    }
}

/// Keeps the CIC queue watches equal to what the router last asked for.
async fn watch_workgroups(icws: Icws, mut rx: watch::Receiver<Vec<String>>, shared: Arc<Shared>) {
    while rx.changed().await.is_ok() {
        let set = rx.borrow_and_update().clone();
        let mut retry = Retry::new(WATCH_BACKOFF);
        loop {
            match icws.set_watched_workgroups(set.clone()).await {
                Ok(()) => {
                    shared.watched(&set);
                    break;
                }
                Err(e) => {
                    warn!(event = "router.watch_failed", error = %e, "Could not watch the workgroup queues; retrying");
                    tokio::time::sleep(retry.failed_exact()).await;
                    if rx.has_changed().unwrap_or(true) {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_ids_are_space_separated() {
        assert_eq!(joined(["a", "b", "c"]), "a b c");
        assert_eq!(joined(Vec::<String>::new()), "");
    }
}
