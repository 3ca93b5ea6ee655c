//! The reference model: what the trigger (routing.md §2) writes for each Salesforce action, and
//! from that, what should be live in CIC once everything has settled.

use std::fmt;

use crate::ops::{Queue, Skills};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Queue(Queue),
    /// `agentN@sors.demo`.
    Agent(u8),
}

impl Owner {
    /// The queue when it is monitored (has a workgroup), else `None`.
    pub fn monitored(self) -> Option<Queue> {
        match self {
            Owner::Queue(q) if q.workgroup().is_some() => Some(q),
            _ => None,
        }
    }
}

/// Routing row events the trigger writes (never `SwitchoverRecovery`: the router writes that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    New,
    OwnerChanged,
    QueueChanged,
    Comment,
    EmailReceived,
    AgentReply,
    CaseClosed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::New => "New",
            Event::OwnerChanged => "OwnerChanged",
            Event::QueueChanged => "QueueChanged",
            Event::Comment => "Comment",
            Event::EmailReceived => "EmailReceived",
            Event::AgentReply => "AgentReply",
            Event::CaseClosed => "CaseClosed",
        }
    }

    fn is_route(self) -> bool {
        !matches!(self, Event::AgentReply | Event::CaseClosed)
    }
}

pub struct CaseModel {
    pub id: String,
    pub owner: Owner,
    pub closed: bool,
    pub skills: Skills,
    /// Rows the trigger wrote, oldest first.
    pub events: Vec<Event>,
    /// Deleted in Salesforce.
    pub deleted: bool,
}

/// What the model expects of one case once everything has settled.
#[derive(Debug, PartialEq, Eq)]
pub enum Expect {
    /// The case never had a routing row: CIC never had an interaction for it.
    NeverRouted,
    /// Exactly one live interaction, in this workgroup, with these skills.
    LiveOnce {
        workgroup: &'static str,
        skills: String,
    },
    /// Nothing live (closed, or its last row was an agent reply with auto-disconnect on).
    NothingLive(&'static str),
    /// Only the global "at most one live interaction" (owned by an agent or an unmonitored
    /// queue).
    AtMostOne,
}

impl CaseModel {
    pub fn expect(&self) -> Expect {
        let Some(last) = self.events.last() else {
            return Expect::NeverRouted;
        };
        if self.deleted {
            return Expect::NothingLive("the case is deleted");
        }
        if self.closed {
            return Expect::NothingLive("the case is closed");
        }
        if *last == Event::AgentReply {
            return Expect::NothingLive("its last row is an agent reply (auto-disconnect is on)");
        }
        match self.owner.monitored() {
            Some(q) if last.is_route() => Expect::LiveOnce {
                workgroup: q.workgroup().unwrap_or_default(),
                skills: self.skills.cleaned(),
            },
            _ => Expect::AtMostOne,
        }
    }

    /// Records a row the trigger writes; new work for the router supersedes any earlier loss.
    fn write(&mut self, event: Event) {
        self.events.push(event);
    }
}

impl fmt::Display for CaseModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: Vec<&str> = self.events.iter().map(|e| e.as_str()).collect();
        write!(
            f,
            "case {}: owner {:?}, closed {}, skills {:?}, trigger rows [{}], expect {:?}",
            self.id,
            self.owner,
            self.closed,
            self.skills.field(),
            events.join(", "),
            self.expect()
        )
    }
}

#[derive(Default)]
pub struct Model {
    pub cases: Vec<CaseModel>,
}

impl Model {
    /// The case an operation's index names, if any case exists yet.
    /// The `i`-th case (modulo), unless it is deleted: nobody works on a deleted case.
    pub fn pick(&self, i: usize) -> Option<usize> {
        (!self.cases.is_empty())
            .then(|| i % self.cases.len())
            .filter(|&n| !self.cases[n].deleted)
    }

    pub fn get(&self, id: &str) -> Option<&CaseModel> {
        self.cases.iter().find(|c| c.id == id)
    }

    pub fn new_case(&mut self, id: String, queue: Queue, skills: Skills) {
        let mut c = CaseModel {
            id,
            owner: Owner::Queue(queue),
            closed: false,
            skills,
            events: Vec::new(),
            deleted: false,
        };
        if queue.workgroup().is_some() {
            c.write(Event::New);
        }
        self.cases.push(c);
    }

    /// Rules 2-4: an owner change.
    pub fn change_owner(&mut self, i: usize, to: Owner) {
        let c = &mut self.cases[i];
        let was_monitored = c.owner.monitored().is_some();
        c.owner = to;
        if to.monitored().is_some() {
            c.write(if was_monitored {
                Event::QueueChanged
            } else {
                Event::OwnerChanged
            });
        }
    }

    /// Rule 5 (the author is never the owner) and rule 6.
    pub fn comment_or_email(&mut self, i: usize, event: Event) {
        let c = &mut self.cases[i];
        if c.owner.monitored().is_some() {
            c.write(event);
        }
    }

    /// Rules 7 and 8: only for a case that has at least one routing row.
    pub fn reply_or_close(&mut self, i: usize, event: Event) {
        let c = &mut self.cases[i];
        if event == Event::CaseClosed {
            c.closed = true;
        }
        if !c.events.is_empty() {
            c.write(event);
        }
    }
}
