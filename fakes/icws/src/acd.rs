//! The ACD's bookkeeping, event-driven: per-workgroup waiting queues, per-agent load counters,
//! and the live contents of every workgroup and user queue.
//!
//! The rules (README "ACD rules") are those of a greedy pass over the waiting interactions,
//! oldest first, each taking the best eligible agent. That pass never needs to be re-run
//! from scratch: after every event the invariant "no waiting interaction has an eligible
//! agent" holds, so
//!
//! - a new interaction can only be served by its own workgroup's members, and it is the only
//!   candidate ([`Acd::offer`]);
//! - an agent who gains capacity (made available, or one of theirs disconnected) is the only
//!   agent whose eligibility changed, so they take the oldest waiting interactions they are
//!   eligible for, until full ([`Acd::next_for`]);
//! - a waiting interaction that goes away, or an agent made unavailable, assigns nothing.
//!
//! Waiting interactions are kept per workgroup **and per required skill set**, so an agent
//! finds the oldest interaction they can take by looking at the front of each skill set they
//! cover, without stepping over interactions that need a skill they lack. Every operation costs
//! the same whatever the number of interactions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::site::SiteSpec;

/// Creation number of an interaction (1, 2, …): the ACD's notion of age.
pub(crate) type Seq = u64;

/// The skills an interaction requires, sorted and without duplicates.
pub(crate) type SkillKey = Vec<String>;

/// The required-skill key of a skill list (order and repetition do not matter).
pub(crate) fn skill_key(skills: &[String]) -> SkillKey {
    let set: BTreeSet<&String> = skills.iter().collect();
    set.into_iter().cloned().collect()
}

struct Agent {
    name: String,
    available: bool,
    utilization: u32,
    skills: BTreeSet<String>,
    /// Assignment sequence number of the last assignment (0 = never).
    last_assigned: u64,
    /// Workgroups the agent is a member of.
    workgroups: Vec<usize>,
    /// Live interactions assigned to the agent (their user queue); its size is the load.
    holds: BTreeSet<Seq>,
}

impl Agent {
    fn has_room(&self) -> bool {
        self.available && self.load() < self.utilization
    }

    fn load(&self) -> u32 {
        u32::try_from(self.holds.len()).unwrap_or(u32::MAX)
    }

    fn covers(&self, key: &SkillKey) -> bool {
        key.iter().all(|s| self.skills.contains(s))
    }
}

#[derive(Default)]
struct Workgroup {
    /// Agent indices, each once.
    members: Vec<usize>,
    /// Waiting (unassigned) interactions by required skill set, oldest first. Empty sets are
    /// removed.
    waiting: BTreeMap<SkillKey, BTreeSet<Seq>>,
    /// Every live interaction of the workgroup queue, in any state.
    live: BTreeSet<Seq>,
}

struct Live {
    workgroup: usize,
    key: SkillKey,
    agent: Option<usize>,
}

/// The ACD of one site.
pub(crate) struct Acd {
    agents: Vec<Agent>,
    agent_by_name: HashMap<String, usize>,
    workgroups: Vec<Workgroup>,
    workgroup_by_name: HashMap<String, usize>,
    live: HashMap<Seq, Live>,
    assign_seq: u64,
}

impl Acd {
    pub fn new(spec: &SiteSpec) -> Acd {
        let mut agents: Vec<Agent> = spec
            .agents
            .iter()
            .map(|a| Agent {
                name: a.name.clone(),
                available: a.available,
                utilization: a.utilization,
                skills: a.skills.iter().map(|s| s.name.clone()).collect(),
                last_assigned: 0,
                workgroups: Vec::new(),
                holds: BTreeSet::new(),
            })
            .collect();
        let agent_by_name: HashMap<String, usize> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
        let mut workgroups = Vec::new();
        let mut workgroup_by_name = HashMap::new();
        for (w, spec_wg) in spec.workgroups.iter().enumerate() {
            let mut wg = Workgroup::default();
            for m in &spec_wg.members {
                if let Some(&a) = agent_by_name.get(m)
                    && !wg.members.contains(&a)
                {
                    wg.members.push(a);
                    if let Some(agent) = agents.get_mut(a) {
                        agent.workgroups.push(w);
                    }
                }
            }
            workgroups.push(wg);
            workgroup_by_name.entry(spec_wg.name.clone()).or_insert(w);
        }
        Acd {
            agents,
            agent_by_name,
            workgroups,
            workgroup_by_name,
            live: HashMap::new(),
            assign_seq: 0,
        }
    }

    pub fn workgroup(&self, name: &str) -> Option<usize> {
        self.workgroup_by_name.get(name).copied()
    }

    pub fn agent(&self, name: &str) -> Option<usize> {
        self.agent_by_name.get(name).copied()
    }

    pub fn agent_name(&self, agent: usize) -> &str {
        self.agents.get(agent).map_or("", |a| a.name.as_str())
    }

    /// A new live interaction in `workgroup`: the agent it is assigned to at once (already
    /// recorded), or `None` when nobody is eligible and it waits.
    pub fn offer(&mut self, seq: Seq, workgroup: usize, key: SkillKey) -> Option<usize> {
        let wg = self.workgroups.get_mut(workgroup)?;
        wg.live.insert(seq);
        // Eligible: available, room below utilization, every required skill. Best: oldest
        // last assignment (never assigned first), then the lowest name.
        let chosen = wg
            .members
            .iter()
            .filter_map(|&a| self.agents.get(a).map(|agent| (a, agent)))
            .filter(|(_, agent)| agent.has_room() && agent.covers(&key))
            .min_by(|(_, x), (_, y)| (x.last_assigned, &x.name).cmp(&(y.last_assigned, &y.name)))
            .map(|(a, _)| a);
        if chosen.is_none() {
            wg.waiting.entry(key.clone()).or_default().insert(seq);
        }
        self.live.insert(
            seq,
            Live {
                workgroup,
                key,
                agent: None,
            },
        );
        if let Some(a) = chosen {
            self.record_assignment(seq, a);
        }
        chosen
    }

    fn record_assignment(&mut self, seq: Seq, agent: usize) {
        self.assign_seq += 1;
        if let Some(a) = self.agents.get_mut(agent) {
            a.last_assigned = self.assign_seq;
            a.holds.insert(seq);
        }
        if let Some(l) = self.live.get_mut(&seq) {
            l.agent = Some(agent);
        }
    }

    /// The oldest waiting interaction `agent` may take now, if they have room: taken off its
    /// waiting queue and recorded as assigned. Call until `None` after the agent gained room.
    pub fn next_for(&mut self, agent: usize) -> Option<Seq> {
        let a = self.agents.get(agent)?;
        if !a.has_room() {
            return None;
        }
        let (workgroup, key, seq) = a
            .workgroups
            .iter()
            .filter_map(|&w| self.workgroups.get(w).map(|wg| (w, wg)))
            .flat_map(|(w, wg)| {
                wg.waiting
                    .iter()
                    .filter(|(key, _)| a.covers(key))
                    .filter_map(move |(key, seqs)| seqs.first().map(|s| (w, key, *s)))
            })
            .min_by_key(|(_, _, seq)| *seq)
            .map(|(w, key, seq)| (w, key.clone(), seq))?;
        self.unwait(workgroup, &key, seq);
        self.record_assignment(seq, agent);
        Some(seq)
    }

    fn unwait(&mut self, workgroup: usize, key: &SkillKey, seq: Seq) {
        if let Some(wg) = self.workgroups.get_mut(workgroup)
            && let Some(seqs) = wg.waiting.get_mut(key)
        {
            seqs.remove(&seq);
            if seqs.is_empty() {
                wg.waiting.remove(key);
            }
        }
    }

    /// A live interaction left every queue (disconnected): returns the agent who held it (who
    /// now has room; the caller lets them take more through [`Acd::next_for`]).
    pub fn remove(&mut self, seq: Seq) -> Option<usize> {
        let l = self.live.remove(&seq)?;
        if let Some(wg) = self.workgroups.get_mut(l.workgroup) {
            wg.live.remove(&seq);
        }
        match l.agent {
            Some(a) => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.holds.remove(&seq);
                }
                Some(a)
            }
            None => {
                self.unwait(l.workgroup, &l.key, seq);
                None
            }
        }
    }

    /// Every live interaction is gone at once (switchover without recovery).
    pub fn clear(&mut self) {
        self.live.clear();
        for wg in &mut self.workgroups {
            wg.waiting.clear();
            wg.live.clear();
        }
        for a in &mut self.agents {
            a.holds.clear();
        }
    }

    /// Changes availability; returns false for an unknown agent. Making an agent available
    /// gives them room: the caller then asks [`Acd::next_for`].
    pub fn set_available(&mut self, agent: usize, available: bool) -> bool {
        match self.agents.get_mut(agent) {
            Some(a) => {
                a.available = available;
                true
            }
            None => false,
        }
    }

    /// Live interactions in a workgroup queue, oldest first.
    pub fn workgroup_contents(&self, workgroup: usize) -> impl Iterator<Item = Seq> + '_ {
        self.workgroups
            .get(workgroup)
            .into_iter()
            .flat_map(|wg| wg.live.iter().copied())
    }

    /// Live interactions in an agent's user queue, oldest first.
    pub fn agent_contents(&self, agent: usize) -> impl Iterator<Item = Seq> + '_ {
        self.agents
            .get(agent)
            .into_iter()
            .flat_map(|a| a.holds.iter().copied())
    }

    #[cfg(test)]
    pub fn load(&self, agent: usize) -> u32 {
        self.agents.get(agent).map_or(0, Agent::load)
    }

    #[cfg(test)]
    pub fn last_assigned(&self, agent: usize) -> u64 {
        self.agents.get(agent).map_or(0, |a| a.last_assigned)
    }

    /// Waiting interactions of a workgroup, oldest first (all skill sets merged).
    #[cfg(test)]
    pub fn waiting(&self, workgroup: usize) -> Vec<Seq> {
        let mut out: Vec<Seq> = self
            .workgroups
            .get(workgroup)
            .into_iter()
            .flat_map(|wg| wg.waiting.values().flatten().copied())
            .collect();
        out.sort_unstable();
        out
    }

    /// The invariant every event must leave behind: no waiting interaction has an eligible
    /// agent; loads, queue contents and the live table agree.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        for (w, wg) in self.workgroups.iter().enumerate() {
            for (key, seqs) in &wg.waiting {
                if seqs.is_empty() {
                    return Err(format!("workgroup {w}: empty skill set {key:?} kept"));
                }
                for seq in seqs {
                    let l = self
                        .live
                        .get(seq)
                        .ok_or(format!("waiting {seq} not live"))?;
                    if l.agent.is_some() || l.workgroup != w || l.key != *key {
                        return Err(format!("waiting {seq} misfiled"));
                    }
                }
                if let Some(&a) = wg
                    .members
                    .iter()
                    .find(|&&a| self.agents[a].has_room() && self.agents[a].covers(key))
                {
                    return Err(format!(
                        "{} could take waiting {seqs:?} of workgroup {w}",
                        self.agents[a].name
                    ));
                }
            }
            for seq in &wg.live {
                if self.live.get(seq).map(|l| l.workgroup) != Some(w) {
                    return Err(format!("{seq} in workgroup {w} but not live there"));
                }
            }
        }
        for (a, agent) in self.agents.iter().enumerate() {
            for seq in &agent.holds {
                if self.live.get(seq).and_then(|l| l.agent) != Some(a) {
                    return Err(format!("{} holds {seq} but it is not theirs", agent.name));
                }
            }
        }
        for (seq, l) in &self.live {
            let in_wg = self
                .workgroups
                .get(l.workgroup)
                .is_some_and(|wg| wg.live.contains(seq));
            let filed = match l.agent {
                Some(a) => self.agents[a].holds.contains(seq),
                None => self.workgroups[l.workgroup]
                    .waiting
                    .get(&l.key)
                    .is_some_and(|s| s.contains(seq)),
            };
            if !in_wg || !filed {
                return Err(format!("live {seq} missing from its queues"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{AgentSpec, SkillLevel, WorkgroupSpec};

    fn skills(names: &[&str]) -> SkillKey {
        skill_key(&names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn demo() -> (Acd, usize, [usize; 4]) {
        let acd = Acd::new(&SiteSpec::demo());
        let en = acd.workgroup("Support_EN").unwrap_or(usize::MAX);
        let a = ["agent1", "agent2", "agent3", "agent4"].map(|n| acd.agent(n).unwrap_or(0));
        (acd, en, a)
    }

    #[test]
    fn skill_keys_ignore_order_and_repeats() {
        assert_eq!(
            skills(&["B", "A", "B"]),
            vec!["A".to_owned(), "B".to_owned()]
        );
        assert!(skills(&[]).is_empty());
    }

    #[test]
    fn new_interactions_take_the_longest_idle_agent_then_wait_in_order() {
        let (mut acd, en, [a1, a2, a3, a4]) = demo();
        // Never assigned: lowest name first, then whoever waited longest.
        assert_eq!(acd.offer(1, en, skills(&["English"])), Some(a1));
        assert_eq!(acd.offer(2, en, skills(&["English"])), Some(a2));
        assert_eq!(acd.offer(3, en, skills(&["English"])), Some(a3));
        assert_eq!(acd.offer(4, en, skills(&["English"])), Some(a4));
        assert_eq!(acd.offer(5, en, skills(&["English"])), None);
        assert_eq!(acd.offer(6, en, skills(&["English"])), None);
        assert_eq!(acd.waiting(en), vec![5, 6]);
        assert_eq!([a1, a2, a3, a4].map(|a| acd.load(a)), [1, 1, 1, 1]);
        acd.check().unwrap_or_else(|e| panic!("{e}"));

        // agent3's interaction ends: agent3 takes the oldest waiting one, then is full.
        assert_eq!(acd.remove(3), Some(a3));
        assert_eq!(acd.load(a3), 0);
        assert_eq!(acd.next_for(a3), Some(5));
        assert_eq!(acd.next_for(a3), None);
        assert_eq!(acd.waiting(en), vec![6]);
        assert_eq!(acd.load(a3), 1);
        assert!(acd.last_assigned(a3) > acd.last_assigned(a4));
        acd.check().unwrap_or_else(|e| panic!("{e}"));

        // A waiting interaction that is disconnected frees nobody.
        assert_eq!(acd.remove(6), None);
        assert!(acd.waiting(en).is_empty());
        assert_eq!(
            acd.workgroup_contents(en).collect::<Vec<_>>(),
            vec![1, 2, 4, 5]
        );
        assert_eq!(acd.agent_contents(a3).collect::<Vec<_>>(), vec![5]);
        acd.check().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn an_agent_skips_what_needs_a_skill_they_lack_and_keeps_the_age_order() {
        let (mut acd, en, [a1, a2, a3, a4]) = demo();
        for a in [a1, a2, a3, a4] {
            acd.set_available(a, false);
        }
        assert_eq!(acd.offer(1, en, skills(&["English", "Premium"])), None);
        assert_eq!(acd.offer(2, en, skills(&["French"])), None);
        assert_eq!(acd.offer(3, en, skills(&["English"])), None);
        assert_eq!(acd.offer(4, en, skills(&[])), None);
        // agent1 (English only): 3 then 4, never 1 (Premium) or 2 (French); utilization 1.
        acd.set_available(a1, true);
        assert_eq!(acd.next_for(a1), Some(3));
        assert_eq!(acd.next_for(a1), None);
        // agent3 (French, English): the French one (older than 4).
        acd.set_available(a3, true);
        assert_eq!(acd.next_for(a3), Some(2));
        // agent2 (English, Premium): the Premium one.
        acd.set_available(a2, true);
        assert_eq!(acd.next_for(a2), Some(1));
        acd.set_available(a4, true);
        assert_eq!(acd.next_for(a4), Some(4));
        assert!(acd.waiting(en).is_empty());
        acd.check().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn unavailable_agents_keep_what_they_hold_and_get_nothing_new() {
        let (mut acd, en, [a1, ..]) = demo();
        assert_eq!(acd.offer(1, en, skills(&["English"])), Some(a1));
        acd.set_available(a1, false);
        assert_eq!(acd.load(a1), 1);
        assert_eq!(acd.remove(1), Some(a1));
        assert_eq!(acd.next_for(a1), None, "unavailable: no room");
        assert_eq!(acd.load(a1), 0);
        acd.check().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn clear_empties_every_queue_and_load() {
        let (mut acd, en, [a1, a2, a3, a4]) = demo();
        for seq in 1..=6 {
            acd.offer(seq, en, skills(&["English"]));
        }
        acd.clear();
        assert!(acd.waiting(en).is_empty());
        assert_eq!(acd.workgroup_contents(en).count(), 0);
        assert_eq!([a1, a2, a3, a4].map(|a| acd.load(a)), [0, 0, 0, 0]);
        assert_eq!(acd.remove(5), None);
        acd.check().unwrap_or_else(|e| panic!("{e}"));
        // Room again: the next one is assigned at once to the longest idle (agent1 was first).
        assert_eq!(acd.offer(7, en, skills(&["English"])), Some(a1));
    }

    // ---- the event-driven ACD against the full greedy pass it replaces ---------------------

    /// The previous implementation: after every event, every waiting interaction (oldest
    /// first) takes the best eligible agent, loads counted by scanning every interaction.
    struct Reference {
        spec: SiteSpec,
        /// (workgroup name, skills, agent, live)
        interactions: Vec<(String, Vec<String>, Option<String>, bool)>,
        available: HashMap<String, bool>,
        last: HashMap<String, u64>,
        seq: u64,
    }

    impl Reference {
        fn load(&self, agent: &str) -> u32 {
            let n = self
                .interactions
                .iter()
                .filter(|ix| ix.3 && ix.2.as_deref() == Some(agent))
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        }

        fn run(&mut self) {
            for i in 0..self.interactions.len() {
                let (wg_name, need, agent, live) = self.interactions[i].clone();
                if !live || agent.is_some() {
                    continue;
                }
                let Some(wg) = self.spec.workgroups.iter().find(|w| w.name == wg_name) else {
                    continue;
                };
                let chosen = self
                    .spec
                    .agents
                    .iter()
                    .filter(|a| wg.members.contains(&a.name))
                    .filter(|a| self.available[&a.name])
                    .filter(|a| need.iter().all(|s| a.skills.iter().any(|h| h.name == *s)))
                    .filter(|a| self.load(&a.name) < a.utilization)
                    .min_by_key(|a| (self.last[&a.name], a.name.clone()))
                    .map(|a| a.name.clone());
                if let Some(a) = chosen {
                    self.seq += 1;
                    self.last.insert(a.clone(), self.seq);
                    self.interactions[i].2 = Some(a);
                }
            }
        }
    }

    /// A site with overlapping workgroups, mixed skills and utilizations.
    fn busy_site() -> SiteSpec {
        let sk = |n: &str| SkillLevel {
            name: n.to_owned(),
            proficiency: 50,
            desire_to_use: 50,
        };
        let agent = |name: &str, s: &[&str], utilization: u32| AgentSpec {
            name: name.to_owned(),
            display_name: name.to_owned(),
            skills: s.iter().map(|n| sk(n)).collect(),
            available: true,
            utilization,
        };
        let wg = |name: &str, members: &[&str]| WorkgroupSpec {
            name: name.to_owned(),
            has_queue: true,
            queue_type: 5,
            acd_email_routing: true,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            skills: Vec::new(),
        };
        let mut spec = SiteSpec::demo();
        spec.skills = ["A", "B", "C"].map(str::to_owned).to_vec();
        spec.agents = vec![
            agent("ann", &["A"], 1),
            agent("bob", &["A", "B"], 2),
            agent("cy", &["B", "C"], 1),
            agent("dee", &["A", "B", "C"], 3),
            agent("eve", &[], 1),
        ];
        spec.workgroups = vec![
            wg("W1", &["ann", "bob", "dee"]),
            wg("W2", &["bob", "cy", "eve"]),
            wg("W3", &["dee", "cy"]),
        ];
        spec
    }

    /// A small deterministic generator (no dependency needed for a test).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    #[test]
    fn same_assignments_as_the_full_greedy_pass_over_random_traffic() {
        let spec = busy_site();
        let skill_sets: [&[&str]; 6] = [&[], &["A"], &["B"], &["A", "B"], &["C"], &["B", "C"]];
        for seed in 1..=20u64 {
            let mut rng = Lcg(seed);
            let mut acd = Acd::new(&spec);
            let mut reference = Reference {
                spec: spec.clone(),
                interactions: Vec::new(),
                available: spec.agents.iter().map(|a| (a.name.clone(), true)).collect(),
                last: spec.agents.iter().map(|a| (a.name.clone(), 0)).collect(),
                seq: 0,
            };
            let mut assigned: HashMap<Seq, String> = HashMap::new();
            for step in 0..300 {
                match rng.below(10) {
                    // New interaction.
                    0..=4 => {
                        let w = rng.below(spec.workgroups.len());
                        let need: Vec<String> = skill_sets[rng.below(skill_sets.len())]
                            .iter()
                            .map(|s| (*s).to_owned())
                            .collect();
                        let seq = reference.interactions.len() as Seq + 1;
                        reference.interactions.push((
                            spec.workgroups[w].name.clone(),
                            need.clone(),
                            None,
                            true,
                        ));
                        reference.run();
                        if let Some(a) = acd.offer(seq, w, skill_key(&need)) {
                            assigned.insert(seq, acd.agent_name(a).to_owned());
                        }
                    }
                    // Disconnect a random interaction (live or not).
                    5..=7 if !reference.interactions.is_empty() => {
                        let i = rng.below(reference.interactions.len());
                        let was_live = reference.interactions[i].3;
                        reference.interactions[i].3 = false;
                        reference.run();
                        if was_live && let Some(a) = acd.remove(i as Seq + 1) {
                            while let Some(seq) = acd.next_for(a) {
                                assigned.insert(seq, acd.agent_name(a).to_owned());
                            }
                        }
                    }
                    // Availability change.
                    _ => {
                        let a = rng.below(spec.agents.len());
                        let name = spec.agents[a].name.clone();
                        let on = rng.below(3) != 0;
                        reference.available.insert(name.clone(), on);
                        reference.run();
                        let idx = acd.agent(&name).unwrap_or(usize::MAX);
                        acd.set_available(idx, on);
                        if on {
                            while let Some(seq) = acd.next_for(idx) {
                                assigned.insert(seq, name.clone());
                            }
                        }
                    }
                }
                acd.check()
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                for (i, ix) in reference.interactions.iter().enumerate() {
                    let seq = i as Seq + 1;
                    assert_eq!(
                        assigned.get(&seq),
                        ix.2.as_ref(),
                        "seed {seed} step {step}: interaction {seq}"
                    );
                }
                for a in &spec.agents {
                    let idx = acd.agent(&a.name).unwrap_or(usize::MAX);
                    assert_eq!(acd.load(idx), reference.load(&a.name), "{} load", a.name);
                    assert_eq!(
                        acd.last_assigned(idx),
                        reference.last[&a.name],
                        "{} last assignment",
                        a.name
                    );
                }
            }
        }
    }
}
