//! Property tests of the routing core: random stories of case traffic and faults, applied to the
//! pure in-memory world, with the invariants of routing.md checked at quiescence.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod world;

use std::collections::HashMap;

use chrono::TimeDelta;
use proptest::prelude::*;
use sors_core::model::*;
use sors_core::router::*;
use world::*;

#[derive(Clone, Debug)]
enum Op {
    NewCase {
        fr: bool,
        skills: u8,
    },
    Comment(usize),
    Email(usize),
    MoveQueue(usize),
    AgentTakes(usize),
    Reply(usize),
    Close(usize),
    /// The next rows are written but no push announces them.
    DropPushes(bool),
    Switchover {
        recovery: bool,
    },
    CicSilent(bool),
    Restart,
    Sweep,
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u8..3).prop_map(|(fr, skills)| Op::NewCase { fr, skills }),
        2 => (0usize..64).prop_map(Op::Comment),
        2 => (0usize..64).prop_map(Op::Email),
        2 => (0usize..64).prop_map(Op::MoveQueue),
        1 => (0usize..64).prop_map(Op::AgentTakes),
        2 => (0usize..64).prop_map(Op::Reply),
        1 => (0usize..64).prop_map(Op::Close),
        1 => any::<bool>().prop_map(Op::DropPushes),
        1 => any::<bool>().prop_map(|recovery| Op::Switchover { recovery }),
        1 => any::<bool>().prop_map(Op::CicSilent),
        1 => Just(Op::Restart),
        1 => Just(Op::Sweep),
        2 => Just(Op::Tick),
    ]
}

fn settings() -> Settings {
    Settings {
        route_timeout: TimeDelta::seconds(10),
        retry_backoff: TimeDelta::seconds(1),
        // generous, so that a quiet CIC eventually answers before a row gives up
        max_attempts: 50,
        ..Settings::default()
    }
}

struct Story {
    w: World,
    cases: Vec<CaseId>,
    drop_pushes: bool,
    /// The workgroup each case's last routing row names, and whether it asks for routing.
    last_row: HashMap<CaseId, (String, bool)>,
}

impl Story {
    fn workgroup(queue: &str) -> &'static str {
        if queue == FR {
            "Support_FR"
        } else {
            "Support_EN"
        }
    }

    fn pick(&self, i: usize) -> Option<CaseId> {
        (!self.cases.is_empty()).then(|| self.cases[i % self.cases.len()].clone())
    }

    fn write(&mut self, case: &CaseId, event: &str, workgroup: &str) {
        let skills = self.w.cases[case].skills.clone();
        let row = self.w.add_row(case, event, workgroup, &skills);
        let route = RowEvent::parse(event).is_some_and(RowEvent::is_route);
        self.last_row
            .insert(case.clone(), (workgroup.to_owned(), route));
        if !self.drop_pushes {
            self.w.push(&[row]);
        }
    }

    fn owner(&self, case: &CaseId) -> String {
        self.w.cases[case].owner_id.clone()
    }

    fn monitored(owner: &str) -> bool {
        owner == EN || owner == FR
    }

    /// The trigger of routing.md §2, for the changes this story makes.
    fn apply(&mut self, op: Op) {
        match op {
            Op::NewCase { fr, skills } => {
                let q = if fr { FR } else { EN };
                let sk = ["", "English", "English;Premium"][skills as usize % 3];
                let case = self.w.add_case(q, sk);
                self.cases.push(case.clone());
                self.write(&case, "New", Self::workgroup(q));
            }
            Op::Comment(i) | Op::Email(i) => {
                if let Some(c) = self.pick(i) {
                    let owner = self.owner(&c);
                    if Self::monitored(&owner) && !self.w.cases[&c].is_closed {
                        let ev = if matches!(op, Op::Comment(_)) {
                            "Comment"
                        } else {
                            "EmailReceived"
                        };
                        self.write(&c, ev, Self::workgroup(&owner));
                    }
                }
            }
            Op::MoveQueue(i) => {
                if let Some(c) = self.pick(i) {
                    if self.w.cases[&c].is_closed {
                        return;
                    }
                    let old = self.owner(&c);
                    let new = if old == EN { FR } else { EN };
                    self.w.cases.get_mut(&c).unwrap().owner_id = new.into();
                    let ev = if Self::monitored(&old) {
                        "QueueChanged"
                    } else {
                        "OwnerChanged"
                    };
                    self.write(&c, ev, Self::workgroup(new));
                }
            }
            Op::AgentTakes(i) => {
                if let Some(c) = self.pick(i) {
                    self.w.cases.get_mut(&c).unwrap().owner_id = AGENT.into();
                }
            }
            Op::Reply(i) | Op::Close(i) => {
                if let Some(c) = self.pick(i)
                    && let Some((wg, _)) = self.last_row.get(&c).cloned()
                {
                    if matches!(op, Op::Close(_)) {
                        if self.w.cases[&c].is_closed {
                            return;
                        }
                        self.w.cases.get_mut(&c).unwrap().is_closed = true;
                        self.write(&c, "CaseClosed", &wg);
                    } else {
                        self.write(&c, "AgentReply", &wg);
                    }
                }
            }
            Op::DropPushes(on) => self.drop_pushes = on,
            Op::Switchover { recovery } => self.w.switchover(recovery),
            Op::CicSilent(on) => self.w.cic_silent = on,
            Op::Restart => {
                // Memory is lost; Salesforce and CIC are the truth.
                self.w.router = Router::new(settings());
                let mut fresh = World::new(settings());
                std::mem::swap(&mut fresh.router, &mut self.w.router);
                self.w.router = fresh.router;
                self.w.inputs = fresh.inputs;
                self.w.watched.clear();
                self.w.settle();
                self.w.scan();
            }
            Op::Sweep => self.w.sweep(),
            Op::Tick => self.w.tick(3),
        }
        self.w.settle();
        self.check_always();
    }

    /// Checked after every step.
    fn check_always(&self) {
        let mut live_per_case: HashMap<&CaseId, usize> = HashMap::new();
        let mut live_per_entry: HashMap<&RowId, usize> = HashMap::new();
        for ix in self.w.ix.values().filter(|i| i.live) {
            *live_per_case.entry(&ix.case).or_default() += 1;
            *live_per_entry.entry(&ix.entry).or_default() += 1;
        }
        for (case, n) in live_per_case {
            assert!(n <= 1, "case {case} has {n} live interactions");
        }
        for (entry, n) in live_per_entry {
            assert!(n <= 1, "row {entry} has {n} live interactions");
        }
    }

    /// At quiescence: every row final, and every case that should be live is live exactly once.
    fn check_quiescent(&mut self) {
        self.drop_pushes = false;
        self.w.cic_silent = false;
        self.w.sweep();
        self.w.run_to_quiescence(400);
        for r in self.w.rows.values() {
            assert!(
                r.status.is_final(),
                "row {} ({}) ended {}",
                r.id,
                r.event,
                r.status
            );
            if r.status == RowStatus::Failed {
                panic!("row {} ({}) failed: {:?}", r.id, r.event, r.error);
            }
        }
        self.check_always();
        for case in &self.cases {
            let snap = &self.w.cases[case];
            let Some((_, route)) = self.last_row.get(case) else {
                continue;
            };
            let live = self.w.live_of(case);
            if !Self::monitored(&snap.owner_id) {
                continue; // an agent took it: whatever was live stays as it is
            }
            if snap.is_closed || !route {
                assert!(
                    live.is_empty(),
                    "case {case} should have nothing live: {live:?}"
                );
            } else {
                assert_eq!(live.len(), 1, "case {case} should be live once");
                assert_eq!(
                    live[0].workgroup,
                    Self::workgroup(&snap.owner_id),
                    "case {case} in the wrong workgroup"
                );
                assert_eq!(
                    live[0].skills,
                    parse(&snap.skills),
                    "case {case} with the wrong skills"
                );
            }
        }
    }
}

fn parse(skills: &str) -> String {
    sors_core::rules::parse_skills(skills).unwrap().join(";")
}

/// Stories per run: 200, or `SORS_CORE_PROPS_CASES` (a longer soak after a change to the core).
fn cases() -> u32 {
    std::env::var("SORS_CORE_PROPS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn routing_stays_right_under_random_traffic_and_faults(ops in prop::collection::vec(op(), 1..60)) {
        let mut s = Story {
            w: World::new(settings()),
            cases: Vec::new(),
            drop_pushes: false,
            last_row: HashMap::new(),
        };
        s.w.settle();
        for op in ops {
            s.apply(op);
        }
        s.check_quiescent();
    }
}
