//! Queue views: which workgroups are watched and what each watched queue holds, rebuilt from
//! the parsed queue-contents messages.
//!
//! Owns the watched set and, per watched workgroup, the merged attributes of every interaction
//! in its queue; [`QueueViews::apply`] turns one parsed [`QueueContents`] into the
//! [`IcwsEvent`]s the router gets (a snapshot replaces a view, a delta adds, merges and
//! removes).
//!
//! Pure: it must never do I/O, await, read a clock or log. What it ignores it reports in
//! [`Applied::ignored`] and the caller logs. It never sees ICWS JSON: `wire` parses, this module
//! only reads the parsed shapes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sors_core::model::{CaseId, InteractionId, LiveInteraction, RowId};

use crate::client::IcwsEvent;
use crate::wire::{self, QueueContents};

/// Attributes of one watched interaction, keys lower-cased (ICWS names are case-insensitive).
type Attrs = HashMap<String, String>;

/// The watched workgroups and the interactions of their queues.
#[derive(Debug, Default)]
pub(crate) struct QueueViews {
    watched: BTreeSet<String>,
    /// Workgroup → interaction id → attributes. A workgroup has a view once a message for it
    /// arrived in the current session.
    views: HashMap<String, BTreeMap<String, Attrs>>,
}

/// What one queue message did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The events to send to the router, in order.
    pub events: Vec<IcwsEvent>,
    /// What the message held that the views did not take (for the log).
    pub ignored: Vec<Ignored>,
}

/// A queue message, or part of one, that changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// The subscription id is not one of this client's queue watches.
    UnknownSubscription(String),
    /// The message is for a workgroup no longer watched (it crossed the unsubscription).
    NotWatched(String),
    /// A change for an interaction that is not in the workgroup's view.
    ChangeForUnknown {
        workgroup: String,
        interaction_id: String,
    },
}

impl QueueViews {
    /// The workgroups whose queues should be watched.
    pub(crate) fn watched(&self) -> &BTreeSet<String> {
        &self.watched
    }

    /// Replaces the watched set; the views of workgroups no longer watched are forgotten.
    pub(crate) fn set_watched(&mut self, watched: BTreeSet<String>) {
        self.views.retain(|wg, _| watched.contains(wg));
        self.watched = watched;
    }

    /// The session ended: every view is forgotten (the next session's snapshots rebuild them);
    /// the watched set stays.
    pub(crate) fn clear(&mut self) {
        self.views.clear();
    }

    /// Applies one queue message and says what changed.
    pub(crate) fn apply(&mut self, q: QueueContents) -> Applied {
        let mut out = Applied::default();
        let Some(workgroup) = q.subscription_id.strip_prefix(wire::QUEUE_SUB_PREFIX) else {
            out.ignored
                .push(Ignored::UnknownSubscription(q.subscription_id));
            return out;
        };
        if !self.watched.contains(workgroup) {
            out.ignored.push(Ignored::NotWatched(workgroup.to_owned()));
            return out;
        }
        let view = self.views.entry(workgroup.to_owned()).or_default();
        // Conference children are not interactions of the queue in their own right.
        let fresh = q.interactions_added.into_iter().filter(|ix| {
            let child = ix
                .conference_parent_id
                .as_deref()
                .is_some_and(|p| !p.is_empty());
            !child && !ix.interaction_id.is_empty()
        });
        if !q.is_delta {
            view.clear();
            for ix in fresh {
                view.insert(ix.interaction_id, normalise(ix.attributes));
            }
            out.events.push(IcwsEvent::Snapshot {
                workgroup: workgroup.to_owned(),
                interactions: view
                    .iter()
                    .map(|(id, attrs)| live(id, workgroup, attrs))
                    .collect(),
            });
            return out;
        }
        for ix in fresh {
            let attrs = normalise(ix.attributes);
            out.events.push(IcwsEvent::Added(live(
                &ix.interaction_id,
                workgroup,
                &attrs,
            )));
            view.insert(ix.interaction_id, attrs);
        }
        for ix in q.interactions_changed {
            match view.get_mut(&ix.interaction_id) {
                Some(current) => {
                    current.extend(normalise(ix.attributes));
                    out.events.push(IcwsEvent::Changed(live(
                        &ix.interaction_id,
                        workgroup,
                        current,
                    )));
                }
                None => out.ignored.push(Ignored::ChangeForUnknown {
                    workgroup: workgroup.to_owned(),
                    interaction_id: ix.interaction_id,
                }),
            }
        }
        for id in q.interactions_removed {
            if view.remove(&id).is_some() {
                out.events.push(IcwsEvent::Removed {
                    id: InteractionId::new(id),
                    workgroup: workgroup.to_owned(),
                });
            }
        }
        out
    }
}

/// The attributes [`live`] reads, lower-cased: a view keeps only these (a queue of 100,000
/// interactions would otherwise hold every watched attribute of each).
const KEPT: [&str; 5] = [
    "sf_caseid",
    "sf_routingentryid",
    "eic_acdskillset",
    "eic_state",
    "eic_username",
];

fn normalise(attrs: HashMap<String, Option<String>>) -> Attrs {
    attrs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| KEPT.contains(&k.as_str()))
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect()
}

fn live(id: &str, workgroup: &str, attrs: &Attrs) -> LiveInteraction {
    let get = |name: &str| {
        attrs
            .get(&name.to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    };
    LiveInteraction {
        id: InteractionId::new(id),
        case_id: get("SF_CaseId").map(|v| CaseId::new(v.as_str())),
        entry_id: get("SF_RoutingEntryId").map(|v| RowId::new(v.as_str())),
        workgroup: workgroup.to_owned(),
        skills: get("Eic_AcdSkillSet").cloned().unwrap_or_default(),
        state: get("Eic_State").cloned().unwrap_or_default(),
        agent: get("Eic_UserName").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::QueueInteraction;

    fn ix(id: &str, attrs: &[(&str, Option<&str>)]) -> QueueInteraction {
        QueueInteraction {
            interaction_id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            conference_parent_id: None,
        }
    }

    fn sub(workgroup: &str) -> String {
        format!("{}{workgroup}", wire::QUEUE_SUB_PREFIX)
    }

    fn snapshot(workgroup: &str, added: Vec<QueueInteraction>) -> QueueContents {
        QueueContents {
            is_delta: false,
            subscription_id: sub(workgroup),
            interactions_added: added,
            ..QueueContents::default()
        }
    }

    fn delta(
        workgroup: &str,
        added: Vec<QueueInteraction>,
        changed: Vec<QueueInteraction>,
        removed: &[&str],
    ) -> QueueContents {
        QueueContents {
            is_delta: true,
            subscription_id: sub(workgroup),
            interactions_added: added,
            interactions_changed: changed,
            interactions_removed: removed.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn watching(workgroups: &[&str]) -> QueueViews {
        let mut v = QueueViews::default();
        v.set_watched(workgroups.iter().map(|w| (*w).to_owned()).collect());
        v
    }

    fn lix(id: &str, workgroup: &str, case: Option<&str>, state: &str) -> LiveInteraction {
        LiveInteraction {
            id: InteractionId::new(id),
            case_id: case.map(CaseId::new),
            entry_id: None,
            workgroup: workgroup.into(),
            skills: String::new(),
            state: state.into(),
            agent: None,
        }
    }

    /// The ids in the workgroup's view, in order.
    fn ids(v: &QueueViews, workgroup: &str) -> Vec<String> {
        v.views
            .get(workgroup)
            .map(|view| view.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_snapshot_replaces_the_view_sorted_by_id_and_reads_every_attribute() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("0999", &[])]));
        let got = v.apply(snapshot(
            "Support",
            vec![
                ix("1002", &[("Eic_State", Some("O"))]),
                ix(
                    "1001",
                    &[
                        // Names are case-insensitive; empty and null values are absent.
                        ("sf_caseid", Some("5001")),
                        ("SF_ROUTINGENTRYID", Some("a0X1")),
                        ("Eic_AcdSkillSet", Some("English;Billing")),
                        ("Eic_State", Some("A")),
                        ("Eic_UserName", Some("agent1")),
                    ],
                ),
                ix("1003", &[("SF_CaseId", Some("")), ("Eic_UserName", None)]),
            ],
        ));
        assert_eq!(
            got,
            Applied {
                events: vec![IcwsEvent::Snapshot {
                    workgroup: "Support".into(),
                    interactions: vec![
                        LiveInteraction {
                            id: InteractionId::new("1001"),
                            case_id: Some(CaseId::new("5001")),
                            entry_id: Some(RowId::new("a0X1")),
                            workgroup: "Support".into(),
                            skills: "English;Billing".into(),
                            state: "A".into(),
                            agent: Some("agent1".into()),
                        },
                        lix("1002", "Support", None, "O"),
                        lix("1003", "Support", None, ""),
                    ],
                }],
                ignored: vec![],
            }
        );
        assert_eq!(
            ids(&v, "Support"),
            ["1001", "1002", "1003"],
            "0999 was replaced"
        );
    }

    #[test]
    fn an_empty_snapshot_empties_the_view() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        let got = v.apply(snapshot("Support", vec![]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Snapshot {
                workgroup: "Support".into(),
                interactions: vec![],
            }]
        );
        assert!(ids(&v, "Support").is_empty());
    }

    #[test]
    fn a_snapshot_takes_only_its_added_list() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        let mut q = snapshot("Support", vec![ix("1002", &[])]);
        q.interactions_changed = vec![ix("1001", &[("Eic_State", Some("C"))])];
        q.interactions_removed = vec!["1002".into()];
        let got = v.apply(q);
        assert_eq!(
            got.events,
            vec![IcwsEvent::Snapshot {
                workgroup: "Support".into(),
                interactions: vec![lix("1002", "Support", None, "")],
            }]
        );
    }

    #[test]
    fn an_add_emits_the_interaction_and_enters_the_view() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![]));
        let got = v.apply(delta(
            "Support",
            vec![ix(
                "1002",
                &[("SF_CaseId", Some("5002")), ("Eic_State", Some("O"))],
            )],
            vec![],
            &[],
        ));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Added(lix("1002", "Support", Some("5002"), "O"))]
        );
        assert_eq!(ids(&v, "Support"), ["1002"]);
    }

    #[test]
    fn a_delta_before_any_snapshot_starts_a_view() {
        let mut v = watching(&["Support"]);
        let got = v.apply(delta("Support", vec![ix("1002", &[])], vec![], &[]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Added(lix("1002", "Support", None, ""))]
        );
        assert_eq!(ids(&v, "Support"), ["1002"]);
    }

    #[test]
    fn conference_children_and_empty_ids_are_not_interactions_of_the_queue() {
        let mut v = watching(&["Support"]);
        let mut child = ix("1009", &[]);
        child.conference_parent_id = Some("1001".into());
        let mut not_child = ix("1010", &[]);
        not_child.conference_parent_id = Some(String::new());
        let got = v.apply(delta(
            "Support",
            vec![child, ix("", &[]), not_child],
            vec![],
            &[],
        ));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Added(lix("1010", "Support", None, ""))]
        );
        let mut child = ix("1009", &[]);
        child.conference_parent_id = Some("1001".into());
        let got = v.apply(snapshot("Support", vec![child]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Snapshot {
                workgroup: "Support".into(),
                interactions: vec![],
            }]
        );
    }

    #[test]
    fn a_change_merges_into_the_view_and_emits_the_whole_interaction() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot(
            "Support",
            vec![ix(
                "1001",
                &[("SF_CaseId", Some("5001")), ("Eic_State", Some("O"))],
            )],
        ));
        let got = v.apply(delta(
            "Support",
            vec![],
            vec![ix(
                "1001",
                &[("eic_state", Some("C")), ("Eic_UserName", Some("agent1"))],
            )],
            &[],
        ));
        let mut want = lix("1001", "Support", Some("5001"), "C");
        want.agent = Some("agent1".into());
        assert_eq!(got.events, vec![IcwsEvent::Changed(want.clone())]);
        // A later change builds on the merged view, and a null clears an attribute.
        let got = v.apply(delta(
            "Support",
            vec![],
            vec![ix("1001", &[("Eic_UserName", None)])],
            &[],
        ));
        want.agent = None;
        assert_eq!(got.events, vec![IcwsEvent::Changed(want)]);
    }

    #[test]
    fn a_change_for_an_interaction_not_in_the_view_is_reported_not_emitted() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![]));
        let got = v.apply(delta(
            "Support",
            vec![],
            vec![ix("1001", &[("Eic_State", Some("C"))])],
            &[],
        ));
        assert_eq!(
            got,
            Applied {
                events: vec![],
                ignored: vec![Ignored::ChangeForUnknown {
                    workgroup: "Support".into(),
                    interaction_id: "1001".into(),
                }],
            }
        );
        assert!(ids(&v, "Support").is_empty(), "a change does not add");
    }

    #[test]
    fn a_remove_emits_only_for_interactions_in_the_view() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("1001", &[]), ix("1002", &[])]));
        let got = v.apply(delta("Support", vec![], vec![], &["1009", "1001"]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Removed {
                id: InteractionId::new("1001"),
                workgroup: "Support".into(),
            }]
        );
        assert_eq!(ids(&v, "Support"), ["1002"]);
        // Gone is gone: removing it again says nothing.
        let got = v.apply(delta("Support", vec![], vec![], &["1001"]));
        assert_eq!(got, Applied::default());
    }

    #[test]
    fn one_delta_adds_then_changes_then_removes() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        let got = v.apply(delta(
            "Support",
            vec![ix("1002", &[])],
            vec![ix("1002", &[("Eic_State", Some("A"))])],
            &["1002", "1001"],
        ));
        assert_eq!(
            got.events,
            vec![
                IcwsEvent::Added(lix("1002", "Support", None, "")),
                IcwsEvent::Changed(lix("1002", "Support", None, "A")),
                IcwsEvent::Removed {
                    id: InteractionId::new("1002"),
                    workgroup: "Support".into(),
                },
                IcwsEvent::Removed {
                    id: InteractionId::new("1001"),
                    workgroup: "Support".into(),
                },
            ]
        );
        assert!(ids(&v, "Support").is_empty());
    }

    #[test]
    fn views_are_per_workgroup() {
        let mut v = watching(&["Support", "Tier 2"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        v.apply(snapshot("Tier 2", vec![ix("2001", &[])]));
        let got = v.apply(delta("Tier 2", vec![], vec![], &["1001"]));
        assert_eq!(got, Applied::default(), "1001 is Support's, not Tier 2's");
        let got = v.apply(delta("Support", vec![], vec![], &["1001"]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Removed {
                id: InteractionId::new("1001"),
                workgroup: "Support".into(),
            }]
        );
        assert_eq!(ids(&v, "Tier 2"), ["2001"]);
    }

    #[test]
    fn a_message_for_a_workgroup_no_longer_watched_is_ignored_and_its_view_forgotten() {
        let mut v = watching(&["Support", "Tier 2"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        v.apply(snapshot("Tier 2", vec![ix("2001", &[])]));
        v.set_watched(["Tier 2".to_owned()].into());
        assert!(
            ids(&v, "Support").is_empty(),
            "the dropped view is forgotten"
        );
        assert_eq!(ids(&v, "Tier 2"), ["2001"], "the kept view stays");
        let got = v.apply(delta("Support", vec![ix("1003", &[])], vec![], &["1001"]));
        assert_eq!(
            got,
            Applied {
                events: vec![],
                ignored: vec![Ignored::NotWatched("Support".into())],
            }
        );
        assert!(ids(&v, "Support").is_empty(), "no view is started for it");
        // Watched again: it starts from nothing (1001 is not remembered).
        v.set_watched(["Support".to_owned(), "Tier 2".to_owned()].into());
        let got = v.apply(delta("Support", vec![], vec![], &["1001"]));
        assert_eq!(got, Applied::default());
    }

    #[test]
    fn a_message_for_an_unknown_subscription_is_ignored() {
        let mut v = watching(&["Support"]);
        let mut q = delta("Support", vec![ix("1001", &[])], vec![], &[]);
        q.subscription_id = "Support".into();
        let got = v.apply(q);
        assert_eq!(
            got,
            Applied {
                events: vec![],
                ignored: vec![Ignored::UnknownSubscription("Support".into())],
            }
        );
        assert!(ids(&v, "Support").is_empty());
    }

    #[test]
    fn clear_on_session_loss_forgets_the_views_but_keeps_the_watched_set() {
        let mut v = watching(&["Support"]);
        v.apply(snapshot("Support", vec![ix("1001", &[])]));
        v.clear();
        assert_eq!(
            v.watched().iter().collect::<Vec<_>>(),
            ["Support"],
            "still watched"
        );
        // Nothing of the old session's view is left to change or remove...
        let got = v.apply(delta(
            "Support",
            vec![],
            vec![ix("1001", &[("Eic_State", Some("C"))])],
            &["1001"],
        ));
        assert_eq!(got.events, vec![]);
        assert_eq!(
            got.ignored,
            vec![Ignored::ChangeForUnknown {
                workgroup: "Support".into(),
                interaction_id: "1001".into(),
            }]
        );
        // ...and the next session's snapshot is taken as it comes.
        let got = v.apply(snapshot("Support", vec![ix("1002", &[])]));
        assert_eq!(
            got.events,
            vec![IcwsEvent::Snapshot {
                workgroup: "Support".into(),
                interactions: vec![lix("1002", "Support", None, "")],
            }]
        );
    }
}
