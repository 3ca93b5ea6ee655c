//! The runtime: wires the Salesforce and ICWS clients to the routing core.
//!
//! One task owns the [`Router`] and is the only place that changes it. It feeds the router what
//! the clients report, and carries out the effects the router returns as small tasks whose
//! results come back as inputs. Pushes and row writes are batched over a short window, so a
//! burst costs a few API calls. Nothing is stored locally: after a restart, the start-up scan
//! and the CIC queue snapshots rebuild everything (routing.md §1).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sors_core::model::*;
use sors_core::router::{
    DisconnectResult, Effect, Input, Notice, QueueMapping, Router, Settings, Source, WriteResult,
};
use sors_icws::{DisconnectOutcome, Icws, IcwsEvent};
use sors_salesforce::{PushTopicOutcome, Salesforce, StreamEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, error, info, info_span, warn};

use crate::status::{AlertKind, Shared, Streaming};

/// Timing of the runtime (config `[routing]`).
#[derive(Clone, Debug)]
pub struct Options {
    pub settings: Settings,
    pub sweep_interval: Duration,
    /// `New` rows younger than this are not yet "missed" by the sweep.
    pub sweep_grace: Duration,
    /// How long pushes and writes are gathered before one call carries them all.
    pub batch_window: Duration,
    /// How often the router's timers are checked.
    pub tick: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settings: Settings::default(),
            sweep_interval: Duration::from_secs(60),
            sweep_grace: Duration::from_secs(120),
            batch_window: Duration::from_millis(50),
            tick: Duration::from_secs(1),
        }
    }
}

/// Rows per sObject Collections call.
const WRITE_BATCH: usize = 200;

/// Runs until `shutdown` turns true. In-flight rows that have not finished stay `Processing` in
/// Salesforce; the next start finishes them.
pub async fn run(
    opts: Options,
    sf: Salesforce,
    icws: Icws,
    mut icws_events: mpsc::Receiver<IcwsEvent>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Salesforce first: without it there is nothing to route.
    let mut delay = Duration::from_secs(1);
    loop {
        match sf.login().await {
            Ok(s) => {
                shared.salesforce_logged_in(&s.org_id, &s.instance_url);
                break;
            }
            Err(e) => {
                shared.salesforce_login_failed(&e.to_string());
                if wait_or_stop(&mut shutdown, delay).await {
                    icws.shutdown().await;
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
    ensure_push_topic(&sf, &shared).await;

    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let (stream, mut stream_rx) = sf.stream(-1);
    let writer = Writer::spawn(sf.clone(), tx.clone(), opts.batch_window, shared.clone());
    let (watch_tx, watch_rx) = watch::channel(Vec::<String>::new());
    let watcher = AbortOnDrop(
        tokio::spawn(watch_workgroups(icws.clone(), watch_rx, shared.clone())).abort_handle(),
    );
    // Every task started for an effect lives in this set: if the runtime is dropped (a kill),
    // they all stop with it.
    let mut tasks: JoinSet<()> = JoinSet::new();
    spawn_mappings(&mut tasks, &sf, &tx, &shared);

    let mut rt = Loop {
        router: Router::new(opts.settings.clone()),
        sf: sf.clone(),
        icws: icws.clone(),
        tx: tx.clone(),
        writer: writer.tx.clone(),
        watch_tx,
        shared: shared.clone(),
        scanned: false,
        tasks,
    };
    let mut tick = tokio::time::interval(opts.tick);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sweep =
        tokio::time::interval_at(Instant::now() + opts.sweep_interval, opts.sweep_interval);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pushes: Vec<RowId> = Vec::new();
    let mut push_flush: Option<Instant> = None;

    loop {
        let flush_at = push_flush;
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
            Some(ev) = stream_rx.recv() => match ev {
                StreamEvent::Push { row_id, .. } => {
                    shared.push_received();
                    pushes.push(row_id);
                    if pushes.len() >= WRITE_BATCH {
                        rt.feed(Input::Pushed(std::mem::take(&mut pushes)));
                        push_flush = None;
                    } else if push_flush.is_none() {
                        push_flush = Some(Instant::now() + opts.batch_window);
                    }
                }
                StreamEvent::Subscribed { replay_from } => {
                    shared.streaming(Streaming::Subscribed);
                    info!(event = "router.streaming.subscribed", replay_from, "PushTopic subscription in place");
                    if !rt.scanned {
                        rt.scanned = true;
                        spawn_scan(&mut rt.tasks, &sf, &tx, &shared, "start-up");
                    }
                }
                StreamEvent::ResyncNeeded { reason } => {
                    warn!(event = "router.resync", %reason, "Streaming may have missed events: scanning the routing table");
                    shared.alert(AlertKind::Resync, format!("streaming resync: {reason}"));
                    spawn_scan(&mut rt.tasks, &sf, &tx, &shared, "resync");
                }
                StreamEvent::Disconnected { reason } => {
                    shared.streaming(Streaming::Reconnecting);
                    warn!(event = "router.streaming.down", %reason, "PushTopic stream is down; reconnecting");
                }
            },
            Some(ev) = icws_events.recv() => rt.on_icws(ev),
            Some(input) = rx.recv() => rt.feed(input),
            _ = tick.tick() => {
                while rt.tasks.try_join_next().is_some() {}
                rt.feed(Input::Tick);
                let session = sf.session();
                shared.salesforce_stats(
                    &sf.stats(),
                    session.as_ref().map(|s| (s.org_id.as_str(), s.instance_url.as_str())),
                );
                let cic = icws.status();
                shared.cic_client(cic.last_error.as_deref(), cic.auth_failing);
            }
            _ = sweep.tick() => {
                spawn_sweep(&mut rt.tasks, &sf, &tx, &shared, opts.sweep_grace);
                spawn_mappings(&mut rt.tasks, &sf, &tx, &shared);
                let (sf2, tx2, shared2) = (sf.clone(), tx.clone(), shared.clone());
                rt.tasks.spawn(async move {
                    // A PushTopic that had to be re-created announced nothing meanwhile: scan
                    // at once instead of waiting for the sweep's grace period.
                    if ensure_push_topic(&sf2, &shared2).await {
                        scan(&sf2, &tx2, &shared2, "PushTopic re-created").await;
                    }
                });
            }
            _ = async { tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)).await }, if flush_at.is_some() => {
                rt.feed(Input::Pushed(std::mem::take(&mut pushes)));
                push_flush = None;
            }
        }
    }

    info!(
        event = "router.stopping",
        "Stopping: rows in flight stay Processing for the next start"
    );
    drop(rt);
    drop(tx);
    writer.finish().await;
    drop(watcher);
    stream.shutdown().await;
    icws.shutdown().await;
    info!(event = "router.stopped", "Stopped");
}

struct Loop {
    router: Router,
    sf: Salesforce,
    icws: Icws,
    tx: mpsc::UnboundedSender<Input>,
    writer: mpsc::UnboundedSender<Vec<RowUpdate>>,
    watch_tx: watch::Sender<Vec<String>>,
    shared: Arc<Shared>,
    scanned: bool,
    tasks: JoinSet<()>,
}

/// Aborts a task when dropped (a killed runtime takes its helpers with it).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Loop {
    fn on_icws(&mut self, ev: IcwsEvent) {
        match ev {
            IcwsEvent::Connected {
                server,
                backup,
                generation,
            } => {
                self.shared.cic_connected(&server, backup);
                self.feed(Input::IcwsUp);
                let (icws, tx, shared) = (self.icws.clone(), self.tx.clone(), self.shared.clone());
                self.tasks.spawn(async move {
                    // Without workgroups and skills nothing can be validated: retry until read,
                    // unless a newer session took over (it reads them itself).
                    let mut delay = Duration::from_millis(500);
                    loop {
                        let as_of = Utc::now();
                        match tokio::try_join!(icws.workgroups(), icws.skills()) {
                            Ok((workgroups, skills)) => {
                                let _ = tx.send(Input::CicConfig {
                                    workgroups,
                                    skills,
                                    as_of,
                                });
                                return;
                            }
                            Err(e) => {
                                error!(event = "router.cic_config_failed", error = %e, "Could not read CIC workgroups and skills; retrying");
                                shared.cic_error(&e.to_string());
                            }
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                        if icws.status().generation != generation {
                            return;
                        }
                    }
                });
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

    fn feed(&mut self, input: Input) {
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
        // The status walks every held row: once a tick is plenty for the heartbeat.
        if tick {
            self.shared.router_status(self.router.status(), now);
        }
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::FetchRows(ids) => {
                let (sf, tx) = (self.sf.clone(), self.tx.clone());
                self.tasks.spawn(async move {
                    match sf.rows_by_ids(&ids).await {
                        Ok(rows) => {
                            let _ = tx.send(Input::Rows {
                                source: Source::Push,
                                rows,
                            });
                        }
                        // Fetched again after a back-off (the router schedules it).
                        Err(e) => {
                            warn!(event = "router.fetch_failed", rows = ids.len(), error = %e, "Could not read pushed rows; trying again");
                            let _ = tx.send(Input::FetchFailed {
                                ids,
                                error: e.to_string(),
                            });
                        }
                    }
                });
            }
            Effect::ReadMappings => {
                spawn_mappings(&mut self.tasks, &self.sf, &self.tx, &self.shared)
            }
            Effect::ReadCicConfig => {
                let (icws, tx) = (self.icws.clone(), self.tx.clone());
                self.tasks.spawn(async move {
                    let as_of = Utc::now();
                    let input = match tokio::try_join!(icws.workgroups(), icws.skills()) {
                        Ok((workgroups, skills)) => Input::CicConfig {
                            workgroups,
                            skills,
                            as_of,
                        },
                        Err(e) => {
                            warn!(event = "router.cic_config_failed", error = %e, "Could not read CIC workgroups and skills again");
                            Input::CicConfigFailed {
                                error: e.to_string(),
                            }
                        }
                    };
                    let _ = tx.send(input);
                });
            }
            Effect::ReadForReconcile {
                queues,
                since,
                live_cases,
            } => {
                let (sf, tx) = (self.sf.clone(), self.tx.clone());
                self.tasks.spawn(async move {
                    let as_of = Utc::now();
                    let input = match sf.reconcile_view(&queues, since, &live_cases).await {
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
                    };
                    let _ = tx.send(input);
                });
            }
            Effect::ReadCases(ids) => {
                let (sf, tx) = (self.sf.clone(), self.tx.clone());
                self.tasks.spawn(async move {
                    let input = match sf.cases(&ids).await {
                        Ok(found) => Input::Cases {
                            requested: ids,
                            found,
                        },
                        Err(e) => {
                            warn!(event = "router.cases_failed", cases = ids.len(), error = %e, "Could not read cases");
                            Input::CasesFailed {
                                requested: ids,
                                error: e.to_string(),
                            }
                        }
                    };
                    let _ = tx.send(input);
                });
            }
            Effect::WriteRows(updates) => {
                let _ = self.writer.send(updates);
            }
            Effect::Raise(req) => {
                let (icws, tx) = (self.icws.clone(), self.tx.clone());
                // Every log line of this hop carries the row and the case.
                let span = info_span!("raise", row = %req.entry_id, case = %req.case_id);
                self.tasks.spawn(
                    async move {
                        if let Err(e) = icws.raise_route(&req).await {
                            warn!(event = "router.raise_failed", error = %e, "Raising the routing notification failed");
                            let _ = tx.send(Input::RaiseFailed {
                                entry_id: req.entry_id,
                                error: e.to_string(),
                            });
                        }
                    }
                    .instrument(span),
                );
            }
            Effect::Disconnect {
                interaction,
                case_id,
            } => {
                let (icws, tx) = (self.icws.clone(), self.tx.clone());
                let span = info_span!("disconnect", interaction = %interaction, case = %case_id);
                self.tasks.spawn(async move {
                    let result = match icws.disconnect(&interaction).await {
                        Ok(DisconnectOutcome::Disconnected) => DisconnectResult::Disconnected,
                        Ok(DisconnectOutcome::AlreadyGone) => DisconnectResult::AlreadyGone,
                        Err(e) => {
                            warn!(event = "router.disconnect_failed", interaction = %interaction, case = %case_id, error = %e, "Disconnect failed");
                            DisconnectResult::Failed(e.to_string())
                        }
                    };
                    let _ = tx.send(Input::DisconnectDone {
                        interaction,
                        result,
                    });
                }.instrument(span));
            }
            Effect::InsertRow(row) => {
                let (sf, tx) = (self.sf.clone(), self.tx.clone());
                let span = info_span!("insert_row", case = %row.case_id, row_event = %row.event);
                self.tasks.spawn(
                    async move {
                        let result = sf.insert_row(&row).await.map_err(|e| e.to_string());
                        let _ = tx.send(Input::RowInserted {
                            case_id: row.case_id,
                            result,
                        });
                    }
                    .instrument(span),
                );
            }
            Effect::Watch(workgroups) => {
                let _ = self.watch_tx.send(workgroups);
            }
            Effect::Notify(n) => self.notice(n),
        }
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

async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
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

fn spawn_mappings(
    tasks: &mut JoinSet<()>,
    sf: &Salesforce,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Shared>,
) {
    let (sf, tx, shared) = (sf.clone(), tx.clone(), shared.clone());
    tasks.spawn(async move {
        let as_of = Utc::now();
        match sf.queue_mappings().await {
            Ok(maps) => {
                let maps: Vec<QueueMapping> = maps
                    .into_iter()
                    .filter_map(|m| {
                        let Some(queue_id) = m.queue_id else {
                            warn!(event = "router.mapping_unresolved", queue = %m.queue_name, "A mapping names a queue that does not exist");
                            return None;
                        };
                        Some(QueueMapping {
                            queue_id,
                            queue_name: m.queue_name,
                            workgroup: m.workgroup,
                        })
                    })
                    .collect();
                shared.mappings(maps.len());
                let _ = tx.send(Input::Mappings {
                    mappings: maps,
                    as_of,
                });
            }
            Err(e) => {
                error!(event = "router.mappings_failed", error = %e, "Could not read the queue mappings");
                shared.salesforce_error(&e.to_string());
                let _ = tx.send(Input::MappingsFailed {
                    error: e.to_string(),
                });
            }
        }
    });
}

fn spawn_scan(
    tasks: &mut JoinSet<()>,
    sf: &Salesforce,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Shared>,
    why: &'static str,
) {
    let (sf, tx, shared) = (sf.clone(), tx.clone(), shared.clone());
    tasks.spawn(async move { scan(&sf, &tx, &shared, why).await });
}

/// Reads every `New` and `Processing` row and hands them to the router.
async fn scan(sf: &Salesforce, tx: &mpsc::UnboundedSender<Input>, shared: &Shared, why: &str) {
    match sf.pending_rows().await {
        Ok(rows) => {
            info!(
                event = "router.scan",
                why,
                rows = rows.len(),
                "Scanned the routing table"
            );
            shared.salesforce_ok();
            let _ = tx.send(Input::Rows {
                source: Source::Scan,
                rows,
            });
        }
        Err(e) => {
            error!(event = "router.scan_failed", why, error = %e, "Could not scan the routing table; the sweep will retry");
            shared.salesforce_error(&e.to_string());
        }
    }
}

fn spawn_sweep(
    tasks: &mut JoinSet<()>,
    sf: &Salesforce,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Shared>,
    grace: Duration,
) {
    let (sf, tx, shared) = (sf.clone(), tx.clone(), shared.clone());
    tasks.spawn(async move {
        let before = Utc::now() - chrono::TimeDelta::from_std(grace).unwrap_or_default();
        // New and Processing rows older than the grace period: New ones no push announced, and
        // Processing ones whose final write was lost.
        match sf.pending_rows().await {
            Ok(rows) => {
                let rows: Vec<RoutingRow> = rows
                    .into_iter()
                    .filter(|r| r.created_date < before)
                    .collect();
                let _ = tx.send(Input::Rows {
                    source: Source::Sweep,
                    rows,
                });
                shared.swept();
            }
            Err(e) => {
                error!(event = "router.sweep_failed", error = %e, "Sweep failed");
                shared.salesforce_error(&e.to_string());
            }
        }
    });
}

async fn watch_workgroups(icws: Icws, mut rx: watch::Receiver<Vec<String>>, shared: Arc<Shared>) {
    while rx.changed().await.is_ok() {
        let set = rx.borrow_and_update().clone();
        loop {
            match icws.set_watched_workgroups(set.clone()).await {
                Ok(()) => {
                    shared.watched(&set);
                    break;
                }
                Err(e) => {
                    warn!(event = "router.watch_failed", error = %e, "Could not watch the workgroup queues; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if rx.has_changed().unwrap_or(true) {
                        break;
                    }
                }
            }
        }
    }
}

/// Gathers row updates for a short window and writes them in sObject Collections calls.
struct Writer {
    tx: mpsc::UnboundedSender<Vec<RowUpdate>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Writer {
    fn spawn(
        sf: Salesforce,
        results: mpsc::UnboundedSender<Input>,
        window: Duration,
        shared: Arc<Shared>,
    ) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<RowUpdate>>();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = first;
                let deadline = Instant::now() + window;
                let mut closed = false;
                while batch.len() < WRITE_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(more)) => batch.extend(more),
                        Ok(None) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                shared.write_call();
                let written = sf.update_rows(&batch).await;
                let retry = written.iter().find_map(|(_, r)| match r {
                    WriteResult::Retry(e) => Some(e.clone()),
                    _ => None,
                });
                match retry {
                    Some(e) => {
                        warn!(event = "router.write_failed", rows = batch.len(), error = %e, "Salesforce did not take row writes; they are tried again");
                        shared.writes_failing(&e);
                    }
                    None => shared.writes_ok(),
                }
                let _ = results.send(Input::Written(written));
                if closed {
                    break;
                }
            }
        });
        Writer {
            tx,
            task: Some(task),
        }
    }

    /// Writes what is queued, then ends.
    async fn finish(mut self) {
        // Closing the queue lets the writer flush what it holds and end.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, closed));
        let Some(task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            warn!(
                event = "router.writer_timeout",
                "Pending row writes did not finish in time; those rows stay as they are"
            );
        }
    }
}
