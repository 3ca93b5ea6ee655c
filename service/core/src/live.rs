//! The live interactions the router sees in the watched workgroup queues, indexed by
//! interaction, by case and by workgroup, so that "the live interactions of this case" and
//! "the workgroups something is live in" cost the size of the answer, not of all interactions
//! (a backlog of 100,000 cases queued in CIC would otherwise make every decision walk them all).

use std::collections::{BTreeMap, HashMap};

use crate::model::{CaseId, InteractionId, LiveInteraction, RowId};

/// Adds `id` to a sorted list of ids (no duplicates).
fn insert_sorted(ids: &mut Vec<InteractionId>, id: &InteractionId) {
    if let Err(at) = ids.binary_search(id) {
        ids.insert(at, id.clone());
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LiveSet {
    by_id: BTreeMap<InteractionId, LiveInteraction>,
    /// Sorted, and nearly always of one element: a `Vec` costs a tenth of a `BTreeSet` node.
    by_case: HashMap<CaseId, Vec<InteractionId>>,
    by_entry: HashMap<RowId, Vec<InteractionId>>,
    /// How many live interactions sit in each workgroup.
    workgroups: BTreeMap<String, usize>,
}

impl LiveSet {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn contains_key(&self, id: &InteractionId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds `li`, or replaces the interaction with its id (its case or workgroup may change).
    pub(crate) fn insert(&mut self, li: LiveInteraction) {
        self.remove(&li.id);
        if let Some(case) = &li.case_id {
            insert_sorted(self.by_case.entry(case.clone()).or_default(), &li.id);
        }
        if let Some(entry) = &li.entry_id {
            insert_sorted(self.by_entry.entry(entry.clone()).or_default(), &li.id);
        }
        *self.workgroups.entry(li.workgroup.clone()).or_default() += 1;
        self.by_id.insert(li.id.clone(), li);
    }

    pub(crate) fn remove(&mut self, id: &InteractionId) -> Option<LiveInteraction> {
        let li = self.by_id.remove(id)?;
        if let Some(case) = &li.case_id
            && let Some(ids) = self.by_case.get_mut(case)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_case.remove(case);
            }
        }
        if let Some(entry) = &li.entry_id
            && let Some(ids) = self.by_entry.get_mut(entry)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_entry.remove(entry);
            }
        }
        if let Some(n) = self.workgroups.get_mut(&li.workgroup) {
            *n -= 1;
            if *n == 0 {
                self.workgroups.remove(&li.workgroup);
            }
        }
        Some(li)
    }

    /// Forgets every interaction of `workgroup` (a fresh snapshot of it follows).
    pub(crate) fn clear_workgroup(&mut self, workgroup: &str) {
        let ids: Vec<InteractionId> = self
            .by_id
            .values()
            .filter(|li| li.workgroup == workgroup)
            .map(|li| li.id.clone())
            .collect();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Every live interaction, in interaction id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &LiveInteraction> {
        self.by_id.values()
    }

    /// The live interactions of `case`, in interaction id order.
    pub(crate) fn of_case<'a>(
        &'a self,
        case: &CaseId,
    ) -> impl Iterator<Item = &'a LiveInteraction> + 'a {
        self.by_case
            .get(case)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }

    /// The first (in interaction id order) live interaction created for routing row `entry`.
    pub(crate) fn of_entry(&self, entry: &RowId) -> Option<&LiveInteraction> {
        self.by_entry
            .get(entry)?
            .iter()
            .find_map(|id| self.by_id.get(id))
    }

    /// The workgroups at least one interaction is live in.
    pub(crate) fn workgroups(&self) -> impl Iterator<Item = &String> {
        self.workgroups.keys()
    }

    /// Takes every interaction out (the session that showed them is gone).
    pub(crate) fn take(&mut self) -> BTreeMap<InteractionId, LiveInteraction> {
        self.by_case.clear();
        self.by_entry.clear();
        self.workgroups.clear();
        std::mem::take(&mut self.by_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn li(id: &str, case: Option<&str>, wg: &str) -> LiveInteraction {
        LiveInteraction {
            id: InteractionId::new(id),
            case_id: case.map(CaseId::new),
            entry_id: case.map(|c| RowId::new(format!("row-{c}"))),
            workgroup: wg.to_owned(),
            skills: String::new(),
            state: "O".to_owned(),
            agent: None,
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a LiveInteraction>) -> Vec<&'a str> {
        it.map(|l| l.id.as_str()).collect()
    }

    #[test]
    fn indexes_follow_inserts_replacements_and_removals() {
        let mut s = LiveSet::default();
        s.insert(li("2", Some("c1"), "A"));
        s.insert(li("1", Some("c1"), "B"));
        s.insert(li("3", Some("c2"), "A"));
        s.insert(li("4", None, "C"));
        assert_eq!(s.len(), 4);
        assert_eq!(
            ids(s.of_case(&CaseId::new("c1"))),
            vec!["1", "2"],
            "id order"
        );
        assert_eq!(s.workgroups().collect::<Vec<_>>(), vec!["A", "B", "C"]);
        assert_eq!(
            s.of_entry(&RowId::new("row-c1")).map(|l| l.id.as_str()),
            Some("1"),
            "the first in id order"
        );
        assert!(s.of_entry(&RowId::new("row-none")).is_none());

        // The same interaction moved to another case and workgroup.
        s.insert(li("2", Some("c2"), "C"));
        assert_eq!(s.len(), 4);
        assert_eq!(ids(s.of_case(&CaseId::new("c1"))), vec!["1"]);
        assert_eq!(ids(s.of_case(&CaseId::new("c2"))), vec!["2", "3"]);

        assert!(s.remove(&InteractionId::new("1")).is_some());
        assert!(s.remove(&InteractionId::new("1")).is_none());
        assert_eq!(ids(s.of_case(&CaseId::new("c1"))), Vec::<&str>::new());
        assert!(
            s.of_entry(&RowId::new("row-c1")).is_none(),
            "entry index follows"
        );
        assert_eq!(
            s.workgroups().collect::<Vec<_>>(),
            vec!["A", "C"],
            "B emptied"
        );

        s.clear_workgroup("C");
        assert_eq!(ids(s.values()), vec!["3"]);
        assert_eq!(ids(s.of_case(&CaseId::new("c2"))), vec!["3"]);
        assert_eq!(s.workgroups().collect::<Vec<_>>(), vec!["A"]);

        let taken = s.take();
        assert_eq!(taken.len(), 1);
        assert!(s.is_empty());
        assert_eq!(s.workgroups().count(), 0);
        assert_eq!(s.of_case(&CaseId::new("c2")).count(), 0);
    }
}
