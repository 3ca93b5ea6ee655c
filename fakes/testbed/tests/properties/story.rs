//! Plays one story against fresh fakes and a fresh router, checking the invariants after every
//! step and at quiescence.

use std::fmt::Display;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use sors_fake_cometd::ForgetAdvice;
use sors_fake_icws::FailRule;
use sors_fake_salesforce::InjectedError;
use sors_testbed::table::RowEvent;
use sors_testbed::{Bed, BedOptions};

use crate::checks::{Failure, Snapshot};
use crate::model::{Event, Expect, Model, Owner};
use crate::ops::{CicCall, Op, SfCall};

/// Email-to-Case and the router's own writes run as this user.
const INTEGRATION_USER: &str = "router@sors.demo";
/// How long the router gets to come up (both sides connected, queues read).
const ROUTER_UP: Duration = Duration::from_secs(20);
/// How long everything gets to settle once the faults are restored. Settling normally takes
/// well under a second; a lost handler result costs one route timeout (5 s) per retry.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// The settled state must hold this long (longer than a sweep interval) to count.
const SETTLE_STABLE: Duration = Duration::from_millis(2500);
const POLL: Duration = Duration::from_millis(50);

fn agent_user(n: u8) -> String {
    format!("agent{n}@sors.demo")
}

fn fake<T, E: Display>(what: &str, r: Result<T, E>) -> Result<T, Failure> {
    r.map_err(|e| Failure::new(None, format!("{what}: {e}")))
}

struct Story {
    bed: Bed,
    model: Model,
    /// What was done, with the time, for the failure report.
    log: Vec<String>,
}

/// What a passing story covered, for the log line of each story.
pub struct Covered {
    pub cases: usize,
    pub rows: usize,
    pub recovery_rows: usize,
    pub interactions: usize,
    pub lost: usize,
    /// Cases checked to be live exactly once at the end.
    pub live_checked: usize,
}

/// Plays `ops` on a fresh bed. On failure, returns the report: the broken invariant, the model's
/// view and the timeline of the case concerned, and the operations as played.
pub async fn play(ops: &[Op]) -> Result<Covered, String> {
    crate::ops::set_unrouted_mapped(false);
    let bed = Bed::start(BedOptions::default())
        .await
        .map_err(|e| format!("the test bed did not start: {e:#}"))?;
    let mut story = Story {
        bed,
        model: Model::default(),
        log: Vec::new(),
    };
    let result = story.run(ops).await;
    let report = result.map_err(|f| story.report(&f));
    story.bed.shutdown().await;
    report
}

impl Story {
    async fn run(&mut self, ops: &[Op]) -> Result<Covered, Failure> {
        self.router_caught_up().await?;
        for op in ops {
            let note = self.apply(op).await?;
            self.log.push(format!(
                "{} {op:?}{note}",
                Utc::now().format("%H:%M:%S%.6f")
            ));
            self.check_always()?;
        }
        self.quiesce().await?;
        let snap = Snapshot::take(&self.bed)?;
        let cases = &self.model.cases;
        Ok(Covered {
            cases: cases.len(),
            rows: snap.table.len(),
            recovery_rows: snap.table.count_event(&RowEvent::SwitchoverRecovery),
            interactions: snap.interactions.len(),
            lost: snap.interactions.iter().filter(|i| i.lost).count(),
            live_checked: cases
                .iter()
                .filter(|c| matches!(c.expect(), Expect::LiveOnce { .. }))
                .count(),
        })
    }

    fn check_always(&self) -> Result<Snapshot, Failure> {
        let snap = Snapshot::take(&self.bed)?;
        snap.check_always(&self.model)?;
        Ok(snap)
    }

    /// Applies one operation; returns a note for the log (which case it touched).
    async fn apply(&mut self, op: &Op) -> Result<String, Failure> {
        let bed = &self.bed;
        let note = match *op {
            Op::NewCase { queue, skills } => {
                let id = fake(
                    "creating a case",
                    bed.new_case(queue.name(), &skills.field()),
                )?;
                self.model.new_case(id.clone(), queue, skills);
                format!(" -> {id}")
            }
            Op::ChangeQueue { case, to } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let c = &self.model.cases[i];
                let id = c.id.clone();
                if c.owner != Owner::Queue(to) {
                    let qid = fake("queue id", bed.queue(to.name()))?;
                    let actor = fake("actor", bed.sf.act_as(INTEGRATION_USER))?;
                    fake(
                        "changing the owner",
                        actor.update("Case", &id, json!({ "OwnerId": qid })),
                    )?;
                    self.model.change_owner(i, Owner::Queue(to));
                }
                format!(" -> {id}")
            }
            Op::AgentTakes { case, agent } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let c = &self.model.cases[i];
                let id = c.id.clone();
                if c.owner != Owner::Agent(agent) {
                    let user = agent_user(agent);
                    let uid = fake(
                        "user id",
                        bed.sf.user_id(&user).ok_or("no such agent in the org"),
                    )?;
                    let actor = fake("actor", bed.sf.act_as(&user))?;
                    fake(
                        "taking ownership",
                        actor.update("Case", &id, json!({ "OwnerId": uid })),
                    )?;
                    self.model.change_owner(i, Owner::Agent(agent));
                }
                format!(" -> {id}")
            }
            Op::Comment { case, author } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let c = &self.model.cases[i];
                let id = c.id.clone();
                // Never the owner: the next agent comments instead.
                let author = if c.owner == Owner::Agent(author) {
                    author % 4 + 1
                } else {
                    author
                };
                let actor = fake("actor", bed.sf.act_as(&agent_user(author)))?;
                fake(
                    "commenting",
                    actor.create(
                        "CaseComment",
                        json!({ "ParentId": id, "CommentBody": "Customer called back" }),
                    ),
                )?;
                self.model.comment_or_email(i, Event::Comment);
                format!(" -> {id} by agent{author}")
            }
            Op::CustomerEmail { case } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let id = self.model.cases[i].id.clone();
                let actor = fake("actor", bed.sf.act_as(INTEGRATION_USER))?;
                fake(
                    "a customer email",
                    actor.create(
                        "EmailMessage",
                        json!({ "ParentId": id, "Incoming": true, "FromAddress": "pat@example.com",
                                "FromName": "Pat", "Subject": "Re: Printer on fire" }),
                    ),
                )?;
                self.model.comment_or_email(i, Event::EmailReceived);
                format!(" -> {id}")
            }
            Op::AgentReply { case, agent } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let id = self.model.cases[i].id.clone();
                let user = agent_user(agent);
                let actor = fake("actor", bed.sf.act_as(&user))?;
                fake(
                    "an agent reply",
                    actor.create(
                        "EmailMessage",
                        json!({ "ParentId": id, "Incoming": false, "FromAddress": user,
                                "FromName": format!("Agent {agent}"), "Subject": "Re: Printer on fire" }),
                    ),
                )?;
                self.model.reply_or_close(i, Event::AgentReply);
                format!(" -> {id}")
            }
            Op::Close { case } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let id = self.model.cases[i].id.clone();
                if !self.model.cases[i].closed {
                    let actor = fake("actor", bed.sf.act_as(INTEGRATION_USER))?;
                    fake(
                        "closing",
                        actor.update("Case", &id, json!({ "Status": "Closed" })),
                    )?;
                    self.model.reply_or_close(i, Event::CaseClosed);
                }
                format!(" -> {id}")
            }
            Op::Switchover { recovery } => {
                let live: Vec<String> = bed
                    .cic
                    .interactions()
                    .into_iter()
                    .filter(|i| i.live)
                    .map(|i| i.case_id)
                    .collect();
                // Whether a router runs or not, every loss is recovered: reconciliation finds
                // from Salesforce and CIC alone which cases should be live (issue 8, item 2).
                bed.cic.switchover(Some(recovery));
                if recovery {
                    String::new()
                } else {
                    format!(" (lost {live:?})")
                }
            }
            Op::AgentAvailable { agent, available } => {
                fake(
                    "agent availability",
                    bed.cic
                        .set_agent_available(&format!("agent{agent}"), available),
                )?;
                String::new()
            }
            Op::ExpireSessions => {
                bed.sf.expire_sessions();
                String::new()
            }
            Op::ForgetStreaming { handshake } => {
                bed.sf.forget_streaming(if handshake {
                    ForgetAdvice::Handshake
                } else {
                    ForgetAdvice::None
                });
                String::new()
            }
            Op::DropPushes(on) => {
                bed.sf.set_drop_pushes(on);
                String::new()
            }
            Op::FailSalesforce {
                call,
                count,
                lock_error,
            } => {
                use sors_fake_salesforce::CallKind as K;
                let kind = match call {
                    SfCall::Login => K::Login,
                    SfCall::Query => K::Query,
                    SfCall::Create => K::Create,
                    SfCall::Update => K::Update,
                    SfCall::Composite => K::Composite,
                };
                let error = if lock_error {
                    InjectedError::UnableToLockRow
                } else {
                    InjectedError::ServiceUnavailable
                };
                bed.sf.fail_next(kind, count, error);
                String::new()
            }
            Op::DeleteCase { case } => {
                let Some(i) = self.model.pick(case) else {
                    return Ok(" (no case yet)".into());
                };
                let id = self.model.cases[i].id.clone();
                let actor = fake("actor", bed.sf.act_as(INTEGRATION_USER))?;
                fake("deleting", actor.delete("Case", &id))?;
                self.model.cases[i].deleted = true;
                format!(" -> {id}")
            }
            Op::MapUnrouted => {
                if crate::ops::unrouted_mapped() {
                    return Ok(" (already mapped)".into());
                }
                let actor = fake("actor", bed.sf.act_as(INTEGRATION_USER))?;
                fake(
                    "mapping Unrouted",
                    actor.create(
                        "Interaction_Routing_Queue__c",
                        json!({
                            "Salesforce_Queue_Name__c": "Unrouted",
                            "CIC_Workgroup_Name__c": "Support_EN"
                        }),
                    ),
                )?;
                crate::ops::set_unrouted_mapped(true);
                String::new()
            }
            Op::SalesforceWriteOutage { count } => {
                use sors_fake_salesforce::CallKind as K;
                bed.sf
                    .fail_next(K::Update, count, InjectedError::ServiceUnavailable);
                bed.sf
                    .fail_next(K::Composite, count, InjectedError::ServiceUnavailable);
                String::new()
            }
            Op::FailCic {
                call,
                count,
                status,
            } => {
                use sors_fake_icws::CallKind as K;
                let kind = match call {
                    CicCall::Connect => K::Connect,
                    CicCall::Messages => K::Messages,
                    CicCall::HandlerNotification => K::HandlerNotification,
                    CicCall::QueueSubscription => K::QueueSubscription,
                    CicCall::Disconnect => K::Disconnect,
                    CicCall::Configuration => K::Configuration,
                };
                fake(
                    "a CIC failure rule",
                    bed.cic.fail_next(FailRule {
                        kind,
                        count,
                        status,
                    }),
                )?;
                String::new()
            }
            Op::StopRouter => {
                self.bed.stop_service().await;
                String::new()
            }
            Op::KillRouter => {
                self.bed.kill_service();
                String::new()
            }
            Op::RestartRouter => {
                if self.bed.service.is_some() {
                    self.bed.stop_service().await;
                }
                self.start_router().await?;
                String::new()
            }
            Op::Pause { ms } => {
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until {
                    tokio::time::sleep(POLL).await;
                    self.check_always()?;
                }
                String::new()
            }
        };
        Ok(note)
    }

    async fn start_router(&mut self) -> Result<(), Failure> {
        fake("starting the router", self.bed.start_service().await)?;
        self.router_caught_up().await
    }

    /// Waits until the router has read the workgroup queues (so it knows what is live).
    async fn router_caught_up(&self) -> Result<(), Failure> {
        fake(
            "the router catching up with CIC",
            self.bed
                .wait_for("the router to read the CIC queues", ROUTER_UP, |b| {
                    b.status().is_some_and(|s| {
                        s.status == sors::status::Readiness::Up
                            && s.routing.router.cic_ready
                            && !s.routing.router.watched.is_empty()
                    })
                })
                .await,
        )
    }

    /// Restores every fault, makes sure a router runs, and waits until the settled state the
    /// model expects holds (checking the invariants meanwhile).
    async fn quiesce(&mut self) -> Result<(), Failure> {
        self.bed.sf.set_drop_pushes(false);
        // A Salesforce outage ends here too: failures injected and not yet used are dropped.
        self.bed.sf.clear_failures();
        for agent in 1..=4u8 {
            fake(
                "agent availability",
                self.bed
                    .cic
                    .set_agent_available(&format!("agent{agent}"), true),
            )?;
        }
        if self.bed.service.is_none() {
            self.start_router().await?;
        }
        self.log.push(format!(
            "{} faults restored, router running; waiting to settle",
            Utc::now().format("%H:%M:%S%.6f")
        ));
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let mut settled_since: Option<Instant> = None;
        loop {
            let snap = self.check_always()?;
            let mut problems = snap.unsettled(&self.model);
            let ready = self.bed.status().is_some_and(|s| {
                s.status == sors::status::Readiness::Up && s.routing.router.cic_ready
            });
            if !ready {
                problems.push(Failure::new(
                    None,
                    "the router is not up with its CIC queues read".into(),
                ));
            }
            if problems.is_empty() {
                let since = *settled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE_STABLE {
                    return Ok(());
                }
            } else {
                settled_since = None;
                if Instant::now() > deadline {
                    let mut first = problems.remove(0);
                    first.what = format!(
                        "not settled {SETTLE_DEADLINE:?} after the faults were restored: {}{}",
                        first.what,
                        if problems.is_empty() {
                            String::new()
                        } else {
                            format!(" (and {} more problems)", problems.len())
                        }
                    );
                    return Err(first);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn report(&self, f: &Failure) -> String {
        let mut out = format!("INVARIANT BROKEN: {}\n", f.what);
        let snap = Snapshot::take(&self.bed);
        match (&f.case, &snap) {
            (Some(case), Ok(snap)) => {
                if let Some(c) = self.model.get(case) {
                    let _ = writeln!(out, "model: {c}");
                }
                let _ = write!(out, "timeline of case {case}:\n{}", snap.timeline(case));
            }
            (None, Ok(snap)) => {
                let _ = writeln!(out, "model:");
                for c in &self.model.cases {
                    let _ = writeln!(out, "  {c}");
                }
                for c in &self.model.cases {
                    let _ = write!(out, "timeline of case {}:\n{}", c.id, snap.timeline(&c.id));
                }
            }
            (_, Err(e)) => {
                let _ = writeln!(out, "(no timeline: {})", e.what);
            }
        }
        if let Some(s) = self.bed.status() {
            let _ = writeln!(
                out,
                "router: {} ({}), cic {:?}, router {:?}",
                s.status, s.message, s.cic, s.routing.router
            );
        } else {
            let _ = writeln!(out, "router: not running");
        }
        let _ = writeln!(out, "operations as played:");
        for line in &self.log {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}
