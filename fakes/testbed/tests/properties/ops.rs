//! The operations of a random story and their proptest strategies.
//!
//! Cases are named by an index taken modulo the number of cases created so far, so any prefix or
//! shrunk sequence stays meaningful (an operation on a case before any exists does nothing).

use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;

/// Whether the story has mapped `Unrouted` to `Support_EN` (`Op::MapUnrouted`). Stories run one
/// at a time; `story::play` resets it before each one.
static UNROUTED_MAPPED: AtomicBool = AtomicBool::new(false);

pub fn set_unrouted_mapped(on: bool) {
    UNROUTED_MAPPED.store(on, Ordering::SeqCst);
}

pub fn unrouted_mapped() -> bool {
    UNROUTED_MAPPED.load(Ordering::SeqCst)
}

/// The Salesforce queues of the demo org (`OrgSpec::demo()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    SupportEn,
    SupportFr,
    Billing,
    /// A queue with no `Interaction_Routing_Queue__c` mapping.
    Unrouted,
}

impl Queue {
    pub fn name(self) -> &'static str {
        match self {
            Queue::SupportEn => "Support EN",
            Queue::SupportFr => "Support FR",
            Queue::Billing => "Billing",
            Queue::Unrouted => "Unrouted",
        }
    }

    /// W(q) of routing.md §2: the mapped CIC workgroup, `None` for an unmonitored queue.
    pub fn workgroup(self) -> Option<&'static str> {
        match self {
            Queue::SupportEn => Some("Support_EN"),
            Queue::SupportFr => Some("Support_FR"),
            Queue::Billing => Some("Billing"),
            Queue::Unrouted if unrouted_mapped() => Some("Support_EN"),
            Queue::Unrouted => None,
        }
    }
}

/// Skills of the demo site (`SiteSpec::demo()`), all known to CIC.
const SKILLS: [&str; 4] = ["English", "French", "Billing", "Premium"];

/// A valid `ObjectRouting_Skills__c` value: a subset of the site's skills, written the way an
/// administrator might (with or without spaces after `;`, with a stray trailing `;`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skills {
    pub set: u8,
    pub spaced: bool,
    pub trailing: bool,
}

impl Skills {
    fn names(self) -> Vec<&'static str> {
        SKILLS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.set & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect()
    }

    /// What is typed into the case field.
    pub fn field(self) -> String {
        let mut s = self.names().join(if self.spaced { "; " } else { ";" });
        if self.trailing {
            s.push(';');
        }
        s
    }

    /// What routing.md §3 step 1 makes of it (split on `;`, trim, drop empties), joined with `;`
    /// as the handler writes `Eic_AcdSkillSet`.
    pub fn cleaned(self) -> String {
        self.names().join(";")
    }
}

/// One step of a story. Agents are numbered 1..=4 (`agentN@sors.demo` in Salesforce, `agentN`
/// in CIC).
#[derive(Clone, Debug)]
pub enum Op {
    // Salesforce actions (people working in the Salesforce UI, or Email-to-Case).
    NewCase {
        queue: Queue,
        skills: Skills,
    },
    ChangeQueue {
        case: usize,
        to: Queue,
    },
    AgentTakes {
        case: usize,
        agent: u8,
    },
    /// A comment by an agent who does not own the case.
    Comment {
        case: usize,
        author: u8,
    },
    CustomerEmail {
        case: usize,
    },
    AgentReply {
        case: usize,
        agent: u8,
    },
    Close {
        case: usize,
    },
    /// The case is deleted (spam, a duplicate): no trigger fires; nothing may stay live for it.
    DeleteCase {
        case: usize,
    },
    /// An administrator maps the `Unrouted` queue to `Support_EN` (once per story): from then on
    /// its cases are routed, the first ones before the router's periodic mapping read.
    MapUnrouted,
    // CIC actions.
    Switchover {
        recovery: bool,
    },
    AgentAvailable {
        agent: u8,
        available: bool,
    },
    // Faults (all restored before the quiescence checks).
    ExpireSessions,
    ForgetStreaming {
        handshake: bool,
    },
    DropPushes(bool),
    FailSalesforce {
        call: SfCall,
        count: u32,
        lock_error: bool,
    },
    FailCic {
        call: CicCall,
        count: u32,
        status: u16,
    },
    /// A Salesforce write outage: the next `count` row updates, single and in collections,
    /// answer 503 (far more than the client's own retries and `max_attempts`).
    SalesforceWriteOutage {
        count: u32,
    },
    // The router.
    StopRouter,
    KillRouter,
    RestartRouter,
    /// Let time pass (the invariants are polled meanwhile).
    Pause {
        ms: u64,
    },
}

/// Salesforce calls that can be made to fail (transient errors the client retries).
#[derive(Clone, Copy, Debug)]
pub enum SfCall {
    Login,
    Query,
    Create,
    Update,
    Composite,
}

/// ICWS calls that can be made to fail.
#[derive(Clone, Copy, Debug)]
pub enum CicCall {
    Connect,
    Messages,
    HandlerNotification,
    QueueSubscription,
    Disconnect,
    Configuration,
}

fn queue() -> impl Strategy<Value = Queue> {
    prop_oneof![
        3 => Just(Queue::SupportEn),
        2 => Just(Queue::SupportFr),
        2 => Just(Queue::Billing),
        1 => Just(Queue::Unrouted),
    ]
}

fn skills() -> impl Strategy<Value = Skills> {
    (0u8..16, any::<bool>(), any::<bool>()).prop_map(|(set, spaced, trailing)| Skills {
        set,
        spaced,
        trailing,
    })
}

fn agent() -> impl Strategy<Value = u8> {
    1u8..=4
}

fn case() -> impl Strategy<Value = usize> {
    0usize..16
}

fn sf_call() -> impl Strategy<Value = SfCall> {
    prop_oneof![
        Just(SfCall::Login),
        Just(SfCall::Query),
        Just(SfCall::Create),
        Just(SfCall::Update),
        Just(SfCall::Composite),
    ]
}

fn cic_call() -> impl Strategy<Value = CicCall> {
    prop_oneof![
        Just(CicCall::Connect),
        Just(CicCall::Messages),
        Just(CicCall::HandlerNotification),
        Just(CicCall::QueueSubscription),
        Just(CicCall::Disconnect),
        Just(CicCall::Configuration),
    ]
}

fn new_case() -> impl Strategy<Value = Op> {
    (queue(), skills()).prop_map(|(queue, skills)| Op::NewCase { queue, skills })
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => new_case(),
        3 => (case(), queue()).prop_map(|(case, to)| Op::ChangeQueue { case, to }),
        1 => (case(), agent()).prop_map(|(case, agent)| Op::AgentTakes { case, agent }),
        2 => (case(), agent()).prop_map(|(case, author)| Op::Comment { case, author }),
        2 => case().prop_map(|case| Op::CustomerEmail { case }),
        2 => (case(), agent()).prop_map(|(case, agent)| Op::AgentReply { case, agent }),
        1 => case().prop_map(|case| Op::Close { case }),
        1 => case().prop_map(|case| Op::DeleteCase { case }),
        1 => Just(Op::MapUnrouted),
        2 => any::<bool>().prop_map(|recovery| Op::Switchover { recovery }),
        1 => (agent(), any::<bool>())
            .prop_map(|(agent, available)| Op::AgentAvailable { agent, available }),
        1 => Just(Op::ExpireSessions),
        1 => any::<bool>().prop_map(|handshake| Op::ForgetStreaming { handshake }),
        1 => any::<bool>().prop_map(Op::DropPushes),
        1 => (sf_call(), 1u32..=2, any::<bool>())
            .prop_map(|(call, count, lock_error)| Op::FailSalesforce { call, count, lock_error }),
        1 => (cic_call(), 1u32..=2, prop_oneof![Just(500u16), Just(503u16)])
            .prop_map(|(call, count, status)| Op::FailCic { call, count, status }),
        1 => (10u32..=40).prop_map(|count| Op::SalesforceWriteOutage { count }),
        1 => Just(Op::StopRouter),
        1 => Just(Op::KillRouter),
        1 => Just(Op::RestartRouter),
        4 => (50u64..800).prop_map(|ms| Op::Pause { ms }),
    ]
}

/// A story of 2..=`max` operations: one or two new cases first (so that most stories have
/// something to route), then anything.
pub fn story(max: usize) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(new_case(), 1..=2),
        prop::collection::vec(op(), 1..=max.saturating_sub(2).max(1)),
    )
        .prop_map(|(mut first, rest)| {
            first.extend(rest);
            first
        })
}
