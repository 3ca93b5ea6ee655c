//! The burst: people working in Salesforce, one routing row per action, driven by a seeded RNG.
//!
//! Actions go through `FakeSalesforce::act_as`, the same code path as REST writes, so the
//! trigger writes the routing rows and the PushTopic fires, exactly as in a real org.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sors_fake_salesforce::FakeSalesforce;
use tokio::time::{Instant, sleep_until};

use crate::HarnessError;

/// Monitored queues of the demo org and skills that CIC knows, per queue.
const QUEUES: [(&str, &[&str]); 3] = [
    ("Support EN", &["", "English", "English;Premium"]),
    ("Support FR", &["", "French"]),
    ("Billing", &["", "Billing"]),
];

/// A skill the demo CIC site does not know: the row must end `Failed`.
const REFUSED_SKILL: &str = "Klingon";

/// Follow-ups pick among the most recent open cases, so they meet rows still in flight.
const RECENT: usize = 40;

/// One action; each writes exactly one routing row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Email-to-Case creates a case in a monitored queue (`New`).
    NewCase,
    /// The customer writes again (`EmailReceived`).
    CustomerEmail,
    /// An agent comments (`Comment`).
    Comment,
    /// An agent replies (`AgentReply`: the interaction is disconnected).
    AgentReply,
    /// The case moves to another monitored queue (`QueueChanged`).
    Move,
    /// The case is closed (`CaseClosed`).
    Close,
}

#[derive(Clone, Debug)]
struct OpenCase {
    id: String,
    queue: usize,
}

/// The burst's state: the cases it made and what it did.
pub struct Workload {
    rng: StdRng,
    open: Vec<OpenCase>,
    /// Cases whose skills CIC refuses.
    pub refused: HashSet<String>,
    /// Actions done (one routing row each).
    pub done: usize,
    pub cases: usize,
    pub by_action: Vec<(Action, usize)>,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            open: Vec::new(),
            refused: HashSet::new(),
            done: 0,
            cases: 0,
            by_action: Vec::new(),
        }
    }

    /// Writes `rows` routing rows over about `over`, in small uneven clumps.
    pub async fn burst(
        &mut self,
        sf: &FakeSalesforce,
        rows: usize,
        over: Duration,
    ) -> Result<(), HarnessError> {
        let start = Instant::now();
        let target = rows.saturating_add(self.done);
        let per_row = over.as_secs_f64() / rows.max(1) as f64;
        let mut n = 0usize;
        while self.done < target {
            let clump = self.rng.random_range(1..=8usize).min(target - self.done);
            for _ in 0..clump {
                self.act(sf)?;
            }
            n += clump;
            sleep_until(start + Duration::from_secs_f64(per_row * n as f64)).await;
        }
        Ok(())
    }

    /// One random action.
    pub fn act(&mut self, sf: &FakeSalesforce) -> Result<Action, HarnessError> {
        let roll = self.rng.random_range(0..100u32);
        let recent = self.open.len().saturating_sub(RECENT);
        let action = match roll {
            _ if self.open.is_empty() => Action::NewCase,
            0..=59 => Action::NewCase,
            60..=71 => Action::CustomerEmail,
            72..=79 => Action::Comment,
            80..=87 => Action::AgentReply,
            88..=93 => Action::Move,
            _ => Action::Close,
        };
        let pick = if action == Action::NewCase {
            0
        } else {
            self.rng.random_range(recent..self.open.len())
        };
        match action {
            Action::NewCase => self.new_case(sf)?,
            _ => {
                let case = self
                    .open
                    .get(pick)
                    .cloned()
                    .ok_or_else(|| HarnessError::Workload("no open case to pick".into()))?;
                self.follow_up(sf, action, &case, pick)?;
            }
        }
        self.done += 1;
        match self.by_action.iter_mut().find(|(a, _)| *a == action) {
            Some((_, n)) => *n += 1,
            None => self.by_action.push((action, 1)),
        }
        Ok(action)
    }

    fn new_case(&mut self, sf: &FakeSalesforce) -> Result<(), HarnessError> {
        let queue = self.rng.random_range(0..QUEUES.len());
        let (name, skill_set) = QUEUES[queue];
        let refused = self.rng.random_range(0..100u32) < 2;
        let skills = if refused {
            REFUSED_SKILL
        } else {
            skill_set.choose(&mut self.rng).copied().unwrap_or("")
        };
        let owner = sf
            .queue_id(name)
            .ok_or_else(|| HarnessError::Workload(format!("no queue named '{name}'")))?;
        let n = self.cases + 1;
        let id = sf
            .act_as("router@sors.demo")
            .map_err(|e| HarnessError::Workload(e.to_string()))?
            .create(
                "Case",
                json!({"Subject": format!("Crash test case {n}"), "OwnerId": owner, "Status": "New",
                       "SuppliedEmail": format!("customer{n}@example.com"),
                       "SuppliedName": format!("Customer {n}"), "ObjectRouting_Skills__c": skills}),
            )
            .map_err(|e| HarnessError::Workload(e.to_string()))?;
        self.cases += 1;
        if refused {
            self.refused.insert(id);
        } else {
            self.open.push(OpenCase { id, queue });
        }
        Ok(())
    }

    fn follow_up(
        &mut self,
        sf: &FakeSalesforce,
        action: Action,
        case: &OpenCase,
        pick: usize,
    ) -> Result<(), HarnessError> {
        let as_user = |u: &str| {
            sf.act_as(u)
                .map_err(|e| HarnessError::Workload(e.to_string()))
        };
        let id = case.id.as_str();
        let written = match action {
            Action::CustomerEmail => as_user("router@sors.demo")?
                .create(
                    "EmailMessage",
                    json!({"ParentId": id, "Incoming": true, "FromAddress": "customer@example.com",
                           "FromName": "Customer", "Subject": "Any news?"}),
                )
                .map(drop),
            Action::Comment => as_user("agent2@sors.demo")?
                .create(
                    "CaseComment",
                    json!({"ParentId": id, "CommentBody": "Looking into it"}),
                )
                .map(drop),
            Action::AgentReply => as_user("agent1@sors.demo")?
                .create(
                    "EmailMessage",
                    json!({"ParentId": id, "Incoming": false, "FromAddress": "agent1@sors.demo",
                           "FromName": "Agent One", "Subject": "Re: your case"}),
                )
                .map(drop),
            Action::Move => {
                let to = (case.queue + self.rng.random_range(1..QUEUES.len())) % QUEUES.len();
                let owner = sf
                    .queue_id(QUEUES[to].0)
                    .ok_or_else(|| HarnessError::Workload("a demo queue is missing".into()))?;
                if let Some(c) = self.open.get_mut(pick) {
                    c.queue = to;
                }
                as_user("router@sors.demo")?.update("Case", id, json!({"OwnerId": owner}))
            }
            Action::Close => {
                self.open.remove(pick);
                as_user("agent3@sors.demo")?.update("Case", id, json!({"Status": "Closed"}))
            }
            Action::NewCase => {
                return Err(HarnessError::Workload(
                    "a new case is not a follow-up".into(),
                ));
            }
        };
        written.map_err(|e| HarnessError::Workload(format!("{action:?} on case {id}: {e}")))
    }
}
