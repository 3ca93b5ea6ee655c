//! Running scenarios: each on its own thread, with its own single-threaded Tokio runtime, its
//! own fakes and router (`sors_testbed::Bed`, ports 0) and its own tracing capture, a few at a
//! time.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sors::runtime::Options;
use sors::serve::Service;
use sors::status::{Alert, StatusView};
use sors_fake_icws::{FailRule, InteractionInfo};
use sors_salesforce::{Auth, Names};
use sors_testbed::table::{RoutingTable, Row};
use sors_testbed::{Bed, BedOptions, fast_options};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use crate::format::{Action, Advice, Expectation, RouterSettings, Scenario, Step, StepKind};
use crate::timeline::{Capture, Material};

/// How scenarios are run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Scenarios run at once.
    pub jobs: usize,
}

impl Default for RunOptions {
    /// `SORS_SCENARIO_JOBS` or 3.
    fn default() -> Self {
        let jobs = std::env::var("SORS_SCENARIO_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(3);
        RunOptions { jobs }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed {
        error: String,
    },
    /// Failed, but the file says the router is known to get this wrong.
    KnownFailure {
        reason: String,
        error: String,
    },
    /// Marked `known_failure` but passed: the mark should go.
    KnownFailurePassed {
        reason: String,
    },
}

/// What one scenario did.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    pub file: PathBuf,
    pub title: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// One line per step, with its result.
    pub checks: Vec<String>,
    /// On failure: final rows, interactions, counters and the timeline.
    pub timeline: Option<String>,
}

impl Report {
    /// Fails CI: a plain failure (not a known one).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }

    /// The report as printed by `sors scenario run`.
    pub fn render(&self) -> String {
        let verdict = match &self.outcome {
            Outcome::Passed => "PASS",
            Outcome::Failed { .. } => "FAIL",
            Outcome::KnownFailure { .. } => "KNOWN FAILURE",
            Outcome::KnownFailurePassed { .. } => "PASS (marked known_failure: remove the mark)",
        };
        let mut out = format!(
            "{verdict}  {}  \"{}\"  ({:.1} s)\n",
            self.name,
            self.title,
            self.duration.as_secs_f64()
        );
        for c in &self.checks {
            out.push_str(&format!("    {c}\n"));
        }
        match &self.outcome {
            Outcome::Failed { error } => out.push_str(&format!("  FAILED: {error}\n")),
            Outcome::KnownFailure { reason, error } => {
                out.push_str(&format!("  known failure: {reason}\n  failed: {error}\n"));
            }
            _ => {}
        }
        if let Some(t) = &self.timeline {
            out.push_str(t);
        }
        out
    }
}

/// Runs `scenarios`, `opts.jobs` at a time; reports in the given order.
pub fn run_all(scenarios: Vec<Scenario>, opts: &RunOptions) -> Vec<Report> {
    let n = scenarios.len();
    let queue: Arc<Mutex<VecDeque<(usize, Scenario)>>> =
        Arc::new(Mutex::new(scenarios.into_iter().enumerate().collect()));
    let results: Arc<Mutex<Vec<Option<Report>>>> = Arc::new(Mutex::new(vec![None; n]));
    let workers: Vec<_> = (0..opts.jobs.clamp(1, n.max(1)))
        .map(|_| {
            let (queue, results) = (queue.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((i, s)) = next else { break };
                    let report = run_isolated(s);
                    if let Some(slot) = results.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i)
                    {
                        *slot = Some(report);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
    results.drain(..).flatten().collect()
}

/// Runs one scenario on a thread of its own, so that a panic anywhere becomes a failed report.
fn run_isolated(s: Scenario) -> Report {
    let (name, file, title) = (s.name.clone(), s.file.clone(), s.title.clone());
    let started = Instant::now();
    match std::thread::spawn(move || run_one(&s)).join() {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            Report {
                name,
                file,
                title,
                outcome: Outcome::Failed {
                    error: format!("the runner panicked: {msg}"),
                },
                duration: started.elapsed(),
                checks: vec![],
                timeline: None,
            }
        }
    }
}

/// Runs one scenario on the current thread (a fresh current-thread runtime; router events of
/// this scenario only are captured).
pub fn run_one(s: &Scenario) -> Report {
    let capture = Capture::default();
    let subscriber =
        tracing_subscriber::registry().with(capture.clone().with_filter(LevelFilter::INFO));
    let _guard = tracing::subscriber::set_default(subscriber);
    let started = Instant::now();
    let finish = |outcome: Outcome, checks: Vec<String>, timeline: Option<String>| Report {
        name: s.name.clone(),
        file: s.file.clone(),
        title: s.title.clone(),
        outcome,
        duration: started.elapsed(),
        checks,
        timeline,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return finish(
                Outcome::Failed {
                    error: format!("cannot start a runtime: {e}"),
                },
                vec![],
                None,
            );
        }
    };
    let (result, checks, material) = rt.block_on(execute(s, &capture));
    let outcome = match (result, &s.known_failure) {
        (Ok(()), None) => Outcome::Passed,
        (Ok(()), Some(reason)) => Outcome::KnownFailurePassed {
            reason: reason.clone(),
        },
        (Err(error), None) => Outcome::Failed { error },
        (Err(error), Some(reason)) => Outcome::KnownFailure {
            reason: reason.clone(),
            error,
        },
    };
    let timeline = match outcome {
        Outcome::Failed { .. } | Outcome::KnownFailure { .. } => material.map(|m| m.render()),
        _ => None,
    };
    finish(outcome, checks, timeline)
}

async fn execute(
    s: &Scenario,
    capture: &Capture,
) -> (Result<(), String>, Vec<String>, Option<Material>) {
    let started = Utc::now();
    let mut options = fast_options();
    apply_settings(&mut options, &s.router);
    let bed = match Bed::start_fakes(BedOptions {
        router: options,
        org: s.org.clone(),
        site: s.site.clone(),
        ..BedOptions::default()
    })
    .await
    {
        Ok(b) => b,
        Err(e) => return (Err(format!("starting the fakes: {e:#}")), vec![], None),
    };
    let mut ctx = Ctx {
        s,
        bed,
        cases: BTreeMap::new(),
        steps: Vec::new(),
        checks: Vec::new(),
        alerts: Vec::new(),
    };
    let result = ctx.run_steps().await;
    let material = ctx.material(started, capture);
    ctx.stop_router().await;
    ctx.bed.shutdown().await;
    (result, ctx.checks, Some(material))
}

fn apply_settings(o: &mut Options, r: &RouterSettings) {
    if r.production_timings == Some(true) {
        *o = Options::default();
    }
    if let Some(v) = r.auto_disconnect_on_reply {
        o.settings.auto_disconnect_on_reply = v;
    }
    if let Some(v) = r.reroute_lost_on_switchover {
        o.settings.reroute_lost_on_switchover = v;
    }
    if let Some(v) = r.max_attempts {
        o.settings.max_attempts = v;
    }
    if let Some(v) = r.route_timeout_ms {
        o.settings.route_timeout = TimeDelta::milliseconds(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = r.retry_backoff_ms {
        o.settings.retry_backoff = TimeDelta::milliseconds(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = r.sweep_interval_ms {
        o.sweep_interval = Duration::from_millis(v.max(100));
    }
    if let Some(v) = r.reconcile_interval_ms {
        o.settings.reconcile_interval =
            (v > 0).then(|| TimeDelta::milliseconds(i64::try_from(v).unwrap_or(i64::MAX)));
    }
}

const POLL: Duration = Duration::from_millis(25);

struct Ctx<'a> {
    s: &'a Scenario,
    bed: Bed,
    /// Scenario case name → Salesforce id.
    cases: BTreeMap<String, String>,
    steps: Vec<(DateTime<Utc>, String)>,
    checks: Vec<String>,
    /// Alerts of routers that were stopped or killed.
    alerts: Vec<Alert>,
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Ctx<'_> {
    async fn run_steps(&mut self) -> Result<(), String> {
        if self.s.start_router {
            self.start_router().await?;
        }
        for (i, step) in self.s.steps.iter().enumerate() {
            let label = describe(i + 1, step);
            self.steps.push((Utc::now(), label.clone()));
            let result = match &step.kind {
                StepKind::Do(a) => self.act(a).await.map(|()| String::new()),
                StepKind::Expect(e) => self.expect(e).await,
            };
            match result {
                Ok(seen) if seen.is_empty() => self.checks.push(format!("ok    {label}")),
                Ok(seen) => self.checks.push(format!("ok    {label}: {seen}")),
                Err(e) => {
                    self.checks.push(format!("FAIL  {label}"));
                    return Err(format!("step {} (line {}): {e}", i + 1, step.line));
                }
            }
        }
        Ok(())
    }

    fn material(&self, started: DateTime<Utc>, capture: &Capture) -> Material {
        let mut alerts = self.alerts.clone();
        if let Some(st) = self.bed.status() {
            alerts.extend(st.alerts);
        }
        let mut counters = vec![
            format!(
                "cic: {}",
                serde_json::to_string(&self.bed.cic.counters()).unwrap_or_default()
            ),
            format!(
                "sf: {}",
                serde_json::to_string(&self.bed.sf.counters()).unwrap_or_default()
            ),
        ];
        if let Some(st) = self.bed.status() {
            counters.push(format!(
                "router: {}",
                serde_json::to_string(&st.routing).unwrap_or_default()
            ));
        }
        Material {
            started,
            steps: self.steps.clone(),
            events: capture.events(),
            alerts,
            rows: self.table().map(|t| t.rows().to_vec()).unwrap_or_default(),
            interactions: self.bed.cic.interactions(),
            names: self
                .cases
                .iter()
                .map(|(n, id)| (id.clone(), n.clone()))
                .collect(),
            counters,
        }
    }

    // ----- the router -----

    async fn start_router(&mut self) -> Result<(), String> {
        if self.bed.service.is_some() {
            return Err("the router is already running".into());
        }
        let mut spec = self.bed.spec();
        if let Some(u) = self.s.org.users.first() {
            spec.salesforce.auth = Auth::Soap {
                username: u.username.clone(),
                password: sors_salesforce::Secret::new(format!(
                    "{}{}",
                    u.password, u.security_token
                )),
            };
        }
        if let Some(u) = self.s.site.users.first() {
            spec.icws.user = u.user_id.clone();
            spec.icws.password = sors_icws::Secret::new(u.password.clone());
        }
        let service = Service::start(spec)
            .await
            .map_err(|e| format!("starting the router: {e:#}"))?;
        self.bed.service = Some(service);
        self.bed
            .wait_for("the router to be up", Duration::from_secs(30), |b| {
                b.service.as_ref().is_some_and(|s| s.shared.is_ready())
            })
            .await
    }

    fn keep_alerts(&mut self) {
        if let Some(st) = self.bed.status() {
            self.alerts.extend(st.alerts);
        }
    }

    async fn stop_router(&mut self) {
        self.keep_alerts();
        self.bed.stop_service().await;
    }

    // ----- actions -----

    fn integration_user(&self) -> String {
        self.s
            .org
            .users
            .first()
            .map(|u| u.username.clone())
            .unwrap_or_default()
    }

    fn actor(&self, user: &Option<String>) -> Result<sors_fake_salesforce::OrgActor, String> {
        let name = user.clone().unwrap_or_else(|| self.integration_user());
        self.bed
            .sf
            .act_as(&name)
            .map_err(|e| format!("no Salesforce user '{name}': {e}"))
    }

    fn case(&self, name: &str) -> Result<String, String> {
        self.cases
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no case named '{name}' was created before this step"))
    }

    /// `name`, or every case whose name starts with `prefix` for `prefix*`.
    fn cases_matching(&self, pattern: &str) -> Result<Vec<(String, String)>, String> {
        match pattern.strip_suffix('*') {
            None => Ok(vec![(pattern.to_owned(), self.case(pattern)?)]),
            Some(prefix) => {
                let v: Vec<_> = self
                    .cases
                    .iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(n, id)| (n.clone(), id.clone()))
                    .collect();
                if v.is_empty() {
                    Err(format!("no case name matches '{pattern}'"))
                } else {
                    Ok(v)
                }
            }
        }
    }

    fn queue(&self, name: &str) -> Result<String, String> {
        self.bed
            .sf
            .queue_id(name)
            .ok_or_else(|| format!("no Salesforce queue named '{name}'"))
    }

    fn user(&self, name: &str) -> Result<String, String> {
        self.bed
            .sf
            .user_id(name)
            .ok_or_else(|| format!("no Salesforce user named '{name}'"))
    }

    fn create_case(
        &mut self,
        name: &str,
        owner: String,
        skills: &str,
        subject: Option<&str>,
        actor: &Option<String>,
    ) -> Result<(), String> {
        if self.cases.contains_key(name) {
            return Err(format!("a case named '{name}' exists already"));
        }
        let id = self
            .actor(actor)?
            .create(
                "Case",
                json!({"Subject": subject.unwrap_or("Printer on fire"), "OwnerId": owner,
                       "Status": "New", "Origin": "Email",
                       "SuppliedEmail": "customer@example.com", "SuppliedName": "Pat Customer",
                       "ObjectRouting_Skills__c": skills}),
            )
            .map_err(|e| format!("creating case '{name}': {e}"))?;
        self.cases.insert(name.to_owned(), id);
        Ok(())
    }

    async fn act(&mut self, a: &Action) -> Result<(), String> {
        let sf = |r: Result<String, sors_fake_salesforce::ApiError>| {
            r.map(|_| ())
                .map_err(|e| format!("Salesforce refused: {e}"))
        };
        let sfu = |r: Result<(), sors_fake_salesforce::ApiError>| {
            r.map_err(|e| format!("Salesforce refused: {e}"))
        };
        let cic = |r: Result<(), sors_fake_icws::Error>| r.map_err(|e| format!("CIC: {e}"));
        match a {
            Action::NewCase {
                case,
                queue,
                owner,
                skills,
                subject,
                actor,
            } => {
                let owner = match (queue, owner) {
                    (Some(q), _) => self.queue(q)?,
                    (None, Some(u)) => self.user(u)?,
                    (None, None) => return Err("new_case needs a queue or an owner".into()),
                };
                self.create_case(case, owner, skills, subject.as_deref(), actor)
            }
            Action::Burst {
                prefix,
                count,
                queue,
                skills,
            } => {
                let q = self.queue(queue)?;
                for i in 1..=*count {
                    self.create_case(&format!("{prefix}{i}"), q.clone(), skills, None, &None)?;
                }
                Ok(())
            }
            Action::Assign {
                case,
                queue,
                user,
                actor,
            } => {
                let owner = match (queue, user) {
                    (Some(q), _) => self.queue(q)?,
                    (None, Some(u)) => self.user(u)?,
                    (None, None) => return Err("assign needs a queue or a user".into()),
                };
                let id = self.case(case)?;
                sfu(self
                    .actor(actor)?
                    .update("Case", &id, json!({"OwnerId": owner})))
            }
            Action::Comment { case, actor } => {
                let id = self.case(case)?;
                sf(self.actor(&Some(actor.clone()))?.create(
                    "CaseComment",
                    json!({"ParentId": id, "CommentBody": "Any news on this?", "IsPublished": true}),
                ))
            }
            Action::IncomingEmail { case } => {
                let id = self.case(case)?;
                sf(self.actor(&None)?.create(
                    "EmailMessage",
                    json!({"ParentId": id, "Incoming": true, "FromAddress": "customer@example.com",
                           "FromName": "Pat Customer", "Subject": "Re: Printer on fire",
                           "TextBody": "It is still burning."}),
                ))
            }
            Action::AgentReply { case, actor } => {
                let id = self.case(case)?;
                sf(self.actor(&Some(actor.clone()))?.create(
                    "EmailMessage",
                    json!({"ParentId": id, "Incoming": false, "FromAddress": actor,
                           "Subject": "Re: Printer on fire", "TextBody": "Please unplug it."}),
                ))
            }
            Action::SetSkills {
                case,
                skills,
                actor,
            } => {
                let id = self.case(case)?;
                sfu(self.actor(actor)?.update(
                    "Case",
                    &id,
                    json!({"ObjectRouting_Skills__c": skills}),
                ))
            }
            Action::CloseCase { case, actor } => {
                let id = self.case(case)?;
                sfu(self
                    .actor(actor)?
                    .update("Case", &id, json!({"Status": "Closed"})))
            }
            Action::DeleteCase { case } => {
                let id = self.case(case)?;
                sfu(self.actor(&None)?.delete("Case", &id))
            }
            Action::AddMapping { queue, workgroup } => sf(self.actor(&None)?.create(
                "Interaction_Routing_Queue__c",
                json!({"Salesforce_Queue_Name__c": queue, "CIC_Workgroup_Name__c": workgroup}),
            )),
            Action::Switchover { recovery } => {
                self.bed.cic.switchover(*recovery);
                Ok(())
            }
            Action::StopServer { server } => {
                let which = server.resolve(self.bed.cic.active());
                cic(self.bed.cic.stop_server(which).await)
            }
            Action::StartServer { server } => {
                let which = server.resolve(self.bed.cic.active());
                cic(self.bed.cic.start_server(which).await)
            }
            Action::AgentAvailable { agent, available } => {
                cic(self.bed.cic.set_agent_available(agent, *available))
            }
            Action::EndCicSessions => {
                self.bed.cic.end_sessions();
                Ok(())
            }
            Action::ExpireSessions => {
                self.bed.sf.expire_sessions();
                Ok(())
            }
            Action::ForgetStreaming { advice } => {
                self.bed.sf.forget_streaming(match advice {
                    Advice::Handshake => sors_fake_cometd::ForgetAdvice::Handshake,
                    Advice::None => sors_fake_cometd::ForgetAdvice::None,
                });
                Ok(())
            }
            Action::DropPushes { on } => {
                self.bed.sf.set_drop_pushes(*on);
                Ok(())
            }
            Action::SandboxRefresh => {
                self.bed.sf.sandbox_refresh();
                Ok(())
            }
            Action::DeletePushtopic => {
                let topics = self.push_topics()?;
                if topics.is_empty() {
                    return Err("there is no PushTopic to delete".into());
                }
                let actor = self.actor(&None)?;
                for t in topics {
                    sfu(actor.delete("PushTopic", &s(&t, "Id")))?;
                }
                Ok(())
            }
            Action::InvalidateReplay => {
                let channel = format!("/topic/{}", Names::default().push_topic);
                self.bed.sf.streaming().clear_channel(&channel);
                self.bed
                    .sf
                    .forget_streaming(sors_fake_cometd::ForgetAdvice::Handshake);
                Ok(())
            }
            Action::SfLatency { ms } => {
                self.bed.sf.set_latency(Duration::from_millis(*ms));
                Ok(())
            }
            Action::CicLatency { ms } => {
                self.bed.cic.set_latency(Duration::from_millis(*ms));
                Ok(())
            }
            Action::SfFailNext { kind, count, error } => {
                self.bed.sf.fail_next(*kind, *count, error.injected());
                Ok(())
            }
            Action::CicFailNext {
                kind,
                count,
                status,
            } => cic(self.bed.cic.fail_next(FailRule {
                kind: *kind,
                count: *count,
                status: *status,
            })),
            Action::RouterStart => self.start_router().await,
            Action::RouterStop => {
                self.stop_router().await;
                Ok(())
            }
            Action::RouterKill => {
                self.keep_alerts();
                self.bed.kill_service();
                Ok(())
            }
            Action::RouterRestart => {
                self.stop_router().await;
                self.start_router().await
            }
            Action::RouterSet(settings) => {
                apply_settings(&mut self.bed.options, settings);
                if self.bed.service.is_some() {
                    self.stop_router().await;
                    self.start_router().await?;
                }
                Ok(())
            }
            Action::Wait { seconds } => {
                tokio::time::sleep(Duration::from_secs_f64(*seconds)).await;
                Ok(())
            }
        }
    }

    fn push_topics(&self) -> Result<Vec<Value>, String> {
        let name = Names::default().push_topic;
        Ok(self
            .bed
            .sf
            .query("SELECT Id, Name, IsActive FROM PushTopic")
            .map_err(|e| format!("querying PushTopics: {e}"))?
            .into_iter()
            .filter(|t| s(t, "Name") == name)
            .collect())
    }

    // ----- expectations -----

    async fn expect(&self, e: &Expectation) -> Result<String, String> {
        let (within, hold) = e.timing();
        let deadline = within
            .map(Duration::from_secs_f64)
            .unwrap_or(self.s.timeout);
        let start = Instant::now();
        loop {
            match self.check(e) {
                Ok(seen) => {
                    if let Some(h) = hold {
                        let held = Instant::now();
                        while held.elapsed() < Duration::from_secs_f64(h) {
                            tokio::time::sleep(POLL).await;
                            if let Err(why) = self.check(e) {
                                return Err(format!(
                                    "held for only {:.1} s of {h} s: {why}",
                                    held.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                    let waited = start.elapsed().as_secs_f64();
                    return Ok(if waited >= 0.1 {
                        format!("{seen} (met after {waited:.1} s)")
                    } else {
                        seen
                    });
                }
                Err(why) if start.elapsed() >= deadline => {
                    return Err(format!(
                        "not met within {:.1} s: {why}",
                        deadline.as_secs_f64()
                    ));
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The routing table now, every case's rows in creation order.
    fn table(&self) -> Result<RoutingTable, String> {
        RoutingTable::read(&self.bed.sf).map_err(|e| format!("reading the routing rows: {e}"))
    }

    fn live(&self, case_id: &str) -> Vec<InteractionInfo> {
        self.bed.cic.live_interactions_for_case(case_id)
    }

    /// `Ok(what was seen)` when the expectation holds now, `Err(why not)` otherwise.
    fn check(&self, e: &Expectation) -> Result<String, String> {
        match e {
            Expectation::Row {
                case,
                nth,
                rows,
                event,
                status,
                error,
                attempts,
                interaction,
                ..
            } => {
                let mut seen = Vec::new();
                let table = self.table()?;
                for (name, id) in self.cases_matching(case)? {
                    let all = table.of_case(&id);
                    if let Some(n) = rows
                        && all.len() != *n
                    {
                        return Err(format!("case {name} has {} rows, not {n}", all.len()));
                    }
                    let (idx, row) = match nth {
                        Some(n) => (*n, all.get(n - 1)),
                        None => (all.len(), all.last()),
                    };
                    let row = row.ok_or_else(|| format!("case {name} has no row {idx} yet"))?;
                    let here = format!("row {idx} of {name}");
                    let want = |field: &str, got: &str, v: &Option<String>| match v {
                        Some(v) if got != v => Err(format!(
                            "{here}: {field} is '{got}', not '{v}' (error: '{}')",
                            row.error_text()
                        )),
                        _ => Ok(()),
                    };
                    want("Event__c", row.event.as_str(), event)?;
                    want("Status__c", row.status.as_str(), status)?;
                    if let Some(text) = error
                        && !row.error_text().contains(text.as_str())
                    {
                        return Err(format!(
                            "{here}: Error__c '{}' does not contain '{text}'",
                            row.error_text()
                        ));
                    }
                    if let Some(n) = attempts {
                        let got = row.attempts;
                        if (got - *n as f64).abs() > f64::EPSILON {
                            return Err(format!("{here}: Attempts__c is {got}, not {n}"));
                        }
                    }
                    let iid = row.interaction();
                    if let Some(want) = interaction {
                        self.check_interaction(&here, iid, want, &id, &all)?;
                    }
                    seen.push(format!(
                        "{here} {} {} interaction={}",
                        row.event,
                        row.status,
                        if iid.is_empty() { "-" } else { iid }
                    ));
                }
                Ok(seen.join("; "))
            }
            Expectation::Rows {
                case,
                count,
                status,
                all_final,
                ..
            } => {
                let table = self.table()?;
                let rows: Vec<&Row> = match case {
                    None => table.rows().iter().collect(),
                    Some(c) => {
                        let ids: Vec<String> = self
                            .cases_matching(c)?
                            .into_iter()
                            .map(|(_, id)| id)
                            .collect();
                        table
                            .rows()
                            .iter()
                            .filter(|r| ids.contains(&r.case_id))
                            .collect()
                    }
                };
                let whose = case.as_deref().unwrap_or("the org");
                if let Some(n) = count
                    && rows.len() != *n
                {
                    return Err(format!("{whose} has {} rows, not {n}", rows.len()));
                }
                for r in &rows {
                    let st = &r.status;
                    if let Some(want) = status
                        && st.as_str() != want
                    {
                        return Err(format!(
                            "row {} ({}) is {st}, not {want} (error: '{}')",
                            r.name,
                            r.event,
                            r.error_text()
                        ));
                    }
                    if *all_final && !st.is_final() {
                        return Err(format!("row {} ({}) is still {st}", r.name, r.event));
                    }
                }
                Ok(format!("{} rows", rows.len()))
            }
            Expectation::Live {
                case,
                count,
                workgroup,
                skills,
                agent,
                not_agent,
                ..
            } => {
                let mut seen = Vec::new();
                for (name, id) in self.cases_matching(case)? {
                    let live = self.live(&id);
                    if live.len() != *count {
                        return Err(format!(
                            "case {name} has {} live interactions, not {count}",
                            live.len()
                        ));
                    }
                    for i in &live {
                        if let Some(w) = workgroup
                            && &i.workgroup != w
                        {
                            return Err(format!(
                                "interaction {} of {name} is in {}, not {w}",
                                i.id, i.workgroup
                            ));
                        }
                        let got_skills = i
                            .attributes
                            .get("Eic_AcdSkillSet")
                            .cloned()
                            .unwrap_or_default();
                        if let Some(sk) = skills
                            && &got_skills != sk
                        {
                            return Err(format!(
                                "interaction {} of {name} needs skills '{got_skills}', not '{sk}'",
                                i.id
                            ));
                        }
                        let got_agent = i.agent.as_deref().unwrap_or("nobody");
                        if let Some(a) = agent
                            && got_agent != a
                        {
                            return Err(format!(
                                "interaction {} of {name} is with {got_agent}, not {a}",
                                i.id
                            ));
                        }
                        if let Some(a) = not_agent
                            && got_agent == a
                        {
                            return Err(format!(
                                "interaction {} of {name} is with {a}, which must not happen",
                                i.id
                            ));
                        }
                    }
                    let desc: Vec<String> = live
                        .iter()
                        .map(|i| {
                            format!(
                                "{} in {} with {}",
                                i.id,
                                i.workgroup,
                                i.agent.as_deref().unwrap_or("nobody")
                            )
                        })
                        .collect();
                    if !desc.is_empty() {
                        seen.push(format!("{name}: {}", desc.join(", ")));
                    }
                }
                Ok(seen.join("; "))
            }
            Expectation::Interactions {
                case,
                created,
                lost,
                ..
            } => {
                let all = self.bed.cic.interactions();
                let mut ids: Vec<String> = Vec::new();
                if let Some(c) = case {
                    ids = self
                        .cases_matching(c)?
                        .into_iter()
                        .map(|(_, id)| id)
                        .collect();
                }
                let mine: Vec<&InteractionInfo> = all
                    .iter()
                    .filter(|i| case.is_none() || ids.contains(&i.case_id))
                    .collect();
                let whose = case.as_deref().unwrap_or("all cases");
                if let Some(n) = created
                    && mine.len() != *n
                {
                    return Err(format!(
                        "{whose}: {} interactions were created, not {n}",
                        mine.len()
                    ));
                }
                let n_lost = mine.iter().filter(|i| i.lost).count();
                if let Some(n) = lost
                    && n_lost != *n
                {
                    return Err(format!("{whose}: {n_lost} interactions were lost, not {n}"));
                }
                Ok(format!("{} created, {n_lost} lost", mine.len()))
            }
            Expectation::Alert { kind, contains, .. } => {
                let mut alerts = self.alerts.clone();
                if let Some(st) = self.bed.status() {
                    alerts.extend(st.alerts);
                }
                alerts
                    .iter()
                    .find(|a| {
                        let k = serde_json::to_value(a.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        kind.as_ref().is_none_or(|want| &k == want)
                            && contains
                                .as_ref()
                                .is_none_or(|t| a.message.contains(t.as_str()))
                    })
                    .map(|a| format!("{:?}: {}", a.kind, a.message))
                    .ok_or_else(|| {
                        let have: Vec<String> = alerts
                            .iter()
                            .map(|a| format!("{:?}: {}", a.kind, a.message))
                            .collect();
                        format!("no such alert; alerts so far: {have:?}")
                    })
            }
            Expectation::Counter {
                name,
                equals,
                at_least,
                at_most,
                ..
            } => {
                let v = self.counter(name)?;
                if equals.is_some_and(|n| v != n)
                    || at_least.is_some_and(|n| v < n)
                    || at_most.is_some_and(|n| v > n)
                {
                    return Err(format!(
                        "{name} is {v} (wanted{}{}{})",
                        equals.map(|n| format!(" = {n}")).unwrap_or_default(),
                        at_least.map(|n| format!(" >= {n}")).unwrap_or_default(),
                        at_most.map(|n| format!(" <= {n}")).unwrap_or_default()
                    ));
                }
                Ok(format!("{name} = {v}"))
            }
            Expectation::Pushtopic { exists, .. } => {
                let active = self
                    .push_topics()?
                    .iter()
                    .any(|t| t.get("IsActive") == Some(&Value::Bool(true)));
                if active == *exists {
                    Ok(format!("active PushTopic: {active}"))
                } else {
                    Err(format!("active PushTopic present: {active}"))
                }
            }
            Expectation::Router {
                status,
                streaming,
                cic_backup,
                ..
            } => {
                let st: StatusView = self
                    .bed
                    .status()
                    .ok_or_else(|| "no router is running".to_owned())?;
                if let Some(want) = status
                    && st.status.as_str() != want
                {
                    return Err(format!("status is {}, not {want}", st.status));
                }
                if let Some(want) = streaming
                    && st.salesforce.streaming.as_str() != want
                {
                    return Err(format!(
                        "streaming is {}, not {want}",
                        st.salesforce.streaming
                    ));
                }
                if let Some(want) = cic_backup
                    && st.cic.backup != *want
                {
                    return Err(format!(
                        "connected to the backup: {}, not {want}",
                        st.cic.backup
                    ));
                }
                Ok(format!(
                    "{} (streaming {}, CIC {})",
                    st.status,
                    st.salesforce.streaming,
                    st.cic.server.as_deref().unwrap_or("-")
                ))
            }
        }
    }

    fn check_interaction(
        &self,
        here: &str,
        iid: &str,
        want: &str,
        case_id: &str,
        rows: &[&Row],
    ) -> Result<(), String> {
        match want {
            "none" if !iid.is_empty() => Err(format!("{here} has interaction {iid}, wanted none")),
            "none" => Ok(()),
            "set" if iid.is_empty() => Err(format!("{here} has no interaction id")),
            "set" => Ok(()),
            "live" => {
                let live = self.live(case_id);
                match live.as_slice() {
                    [one] if one.id == iid => Ok(()),
                    _ => Err(format!(
                        "{here} names interaction '{iid}' but the live ones are {:?}",
                        live.iter().map(|i| i.id.as_str()).collect::<Vec<_>>()
                    )),
                }
            }
            other => {
                let n: usize = other
                    .strip_prefix("row ")
                    .and_then(|n| n.trim().parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!(
                            "interaction = '{other}': use live, none, set or 'row N' (N from 1)"
                        )
                    })?;
                let theirs = rows.get(n - 1).map(|r| r.interaction()).unwrap_or_default();
                if !iid.is_empty() && iid == theirs {
                    Ok(())
                } else {
                    Err(format!(
                        "{here} names interaction '{iid}', row {n} names '{theirs}'"
                    ))
                }
            }
        }
    }

    fn counter(&self, name: &str) -> Result<u64, String> {
        let (root, path) = name
            .split_once('.')
            .ok_or_else(|| format!("counter '{name}': use cic.X, sf.X or router.X"))?;
        let doc = match root {
            "cic" => serde_json::to_value(self.bed.cic.counters()),
            "sf" => serde_json::to_value(self.bed.sf.counters()),
            "router" => serde_json::to_value(
                self.bed
                    .status()
                    .ok_or_else(|| "no router is running".to_owned())?,
            ),
            _ => return Err(format!("counter '{name}': use cic.X, sf.X or router.X")),
        }
        .map_err(|e| e.to_string())?;
        let mut v = &doc;
        for part in path.split('.') {
            v = v
                .get(part)
                .ok_or_else(|| format!("counter '{name}': no '{part}' in {root} counters"))?;
        }
        v.as_u64()
            .ok_or_else(|| format!("counter '{name}' is not a count: {v}"))
    }
}

/// "#3 (line 20) comment: do new_case …"
fn describe(n: usize, step: &Step) -> String {
    let what = match &step.kind {
        StepKind::Do(a) => format!("do {}", short(&format!("{a:?}"))),
        StepKind::Expect(e) => format!("expect {}", short(&format!("{e:?}"))),
    };
    match &step.say {
        Some(say) => format!("#{n} (line {}) {say} [{what}]", step.line),
        None => format!("#{n} (line {}) [{what}]", step.line),
    }
}

/// Debug output without the `None` fields.
fn short(debug: &str) -> String {
    let mut out = debug.to_owned();
    for pat in [": None, ", ": None }"] {
        while let Some(pos) = out.find(pat) {
            let start = out[..pos].rfind(['{', ' ']).map(|p| p + 1).unwrap_or(pos);
            let end = pos + pat.len();
            let keep = if pat.ends_with('}') { " }" } else { "" };
            out.replace_range(start..end, keep);
        }
    }
    out.replace("{  }", "")
        .replace(", }", " }")
        .replace("  ", " ")
}
