//! The routing trigger of the Salesforce package, as one table-like function.
//!
//! This is TRIGGER.md (and routing.md §2) in code: every arm of [`rules`] is one row of the table.
//! It is pure: the org gives it the change, the monitored queues and the case's last routing row,
//! and writes the rows it returns.

use std::collections::HashMap;

/// The parts of a Case the rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseView {
    pub owner_id: String,
    pub is_closed: bool,
}

/// A change the trigger sees.
#[derive(Clone, Debug)]
pub enum Change<'a> {
    CaseInserted(&'a CaseView),
    CaseUpdated {
        old: &'a CaseView,
        new: &'a CaseView,
    },
    CommentInserted {
        case: &'a CaseView,
        author_id: &'a str,
    },
    EmailInserted {
        case: &'a CaseView,
        incoming: bool,
    },
}

/// The last routing row of a case (latest `CreatedDate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRow {
    pub queue_id: Option<String>,
    pub workgroup: Option<String>,
}

/// A routing row the trigger writes (`Status__c = New`, `Attempts__c = 0`, display fields and
/// skills copied from the case by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowToWrite {
    pub event: &'static str,
    pub queue_id: Option<String>,
    pub workgroup: Option<String>,
}

/// M and W: monitored queue id → CIC workgroup.
pub type Monitored = HashMap<String, String>;

fn route(event: &'static str, queue: &str, m: &Monitored) -> Option<RowToWrite> {
    m.get(queue).map(|w| RowToWrite {
        event,
        queue_id: Some(queue.to_owned()),
        workgroup: Some(w.clone()),
    })
}

fn follow_up(event: &'static str, last: Option<&LastRow>) -> Option<RowToWrite> {
    last.map(|l| RowToWrite {
        event,
        queue_id: l.queue_id.clone(),
        workgroup: l.workgroup.clone(),
    })
}

/// The rows written for one change, in order. `last` is the case's last routing row before the
/// change.
pub fn rules(change: &Change<'_>, m: &Monitored, last: Option<&LastRow>) -> Vec<RowToWrite> {
    let in_m = |q: &str| m.contains_key(q);
    match change {
        // Case inserted | OwnerId ∈ M | New, W(OwnerId)
        Change::CaseInserted(case) => route("New", &case.owner_id, m).into_iter().collect(),
        Change::CaseUpdated { old, new } => {
            let mut rows = Vec::new();
            if old.owner_id != new.owner_id && in_m(&new.owner_id) {
                // OwnerId changed | new ∈ M, old ∈ M | QueueChanged, W(new)
                // OwnerId changed | new ∈ M, old ∉ M | OwnerChanged, W(new)
                // OwnerId changed | new ∉ M          | none
                let event = if in_m(&old.owner_id) {
                    "QueueChanged"
                } else {
                    "OwnerChanged"
                };
                rows.extend(route(event, &new.owner_id, m));
            }
            // Case closed (IsClosed becomes true) | case has a routing row | CaseClosed (last row's
            // workgroup; a row written by this same update counts as the last row)
            if !old.is_closed && new.is_closed {
                let last_now = rows.last().map(|r: &RowToWrite| LastRow {
                    queue_id: r.queue_id.clone(),
                    workgroup: r.workgroup.clone(),
                });
                rows.extend(follow_up("CaseClosed", last_now.as_ref().or(last)));
            }
            rows
        }
        // CaseComment inserted | owner ∈ M and author ≠ owner | Comment, W(owner)
        Change::CommentInserted { case, author_id } => {
            if *author_id != case.owner_id {
                route("Comment", &case.owner_id, m).into_iter().collect()
            } else {
                Vec::new()
            }
        }
        // EmailMessage inserted, Incoming = true | owner ∈ M | EmailReceived, W(owner)
        Change::EmailInserted {
            case,
            incoming: true,
        } => route("EmailReceived", &case.owner_id, m)
            .into_iter()
            .collect(),
        // EmailMessage inserted, Incoming = false | case has a routing row | AgentReply (last row)
        Change::EmailInserted {
            incoming: false, ..
        } => follow_up("AgentReply", last).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q_EN: &str = "00G5g0000000001AAA";
    const Q_FR: &str = "00G5g0000000002AAA";
    const Q_UNROUTED: &str = "00G5g0000000003AAA";
    const AGENT: &str = "0055g0000000002AAA";
    const OTHER_AGENT: &str = "0055g0000000003AAA";

    fn m() -> Monitored {
        HashMap::from([
            (Q_EN.to_owned(), "Support_EN".to_owned()),
            (Q_FR.to_owned(), "Support_FR".to_owned()),
        ])
    }

    fn case(owner: &str, closed: bool) -> CaseView {
        CaseView {
            owner_id: owner.to_owned(),
            is_closed: closed,
        }
    }

    fn row(event: &'static str, q: &str, w: &str) -> RowToWrite {
        RowToWrite {
            event,
            queue_id: Some(q.to_owned()),
            workgroup: Some(w.to_owned()),
        }
    }

    fn last_en() -> LastRow {
        LastRow {
            queue_id: Some(Q_EN.to_owned()),
            workgroup: Some("Support_EN".to_owned()),
        }
    }

    #[test]
    fn case_inserted_into_monitored_queue_writes_new() {
        let c = case(Q_EN, false);
        assert_eq!(
            rules(&Change::CaseInserted(&c), &m(), None),
            vec![row("New", Q_EN, "Support_EN")]
        );
    }

    #[test]
    fn case_inserted_into_unmonitored_queue_or_user_writes_nothing() {
        for owner in [Q_UNROUTED, AGENT] {
            let c = case(owner, false);
            assert!(rules(&Change::CaseInserted(&c), &m(), None).is_empty());
        }
    }

    #[test]
    fn queue_to_monitored_queue_is_queue_changed() {
        let (old, new) = (case(Q_EN, false), case(Q_FR, false));
        let got = rules(
            &Change::CaseUpdated {
                old: &old,
                new: &new,
            },
            &m(),
            Some(&last_en()),
        );
        assert_eq!(got, vec![row("QueueChanged", Q_FR, "Support_FR")]);
    }

    #[test]
    fn user_or_unmonitored_queue_to_monitored_queue_is_owner_changed() {
        for from in [AGENT, Q_UNROUTED] {
            let (old, new) = (case(from, false), case(Q_EN, false));
            let got = rules(
                &Change::CaseUpdated {
                    old: &old,
                    new: &new,
                },
                &m(),
                None,
            );
            assert_eq!(
                got,
                vec![row("OwnerChanged", Q_EN, "Support_EN")],
                "from {from}"
            );
        }
    }

    #[test]
    fn agent_taking_ownership_or_move_to_unmonitored_queue_writes_nothing() {
        for to in [AGENT, Q_UNROUTED] {
            let (old, new) = (case(Q_EN, false), case(to, false));
            let got = rules(
                &Change::CaseUpdated {
                    old: &old,
                    new: &new,
                },
                &m(),
                Some(&last_en()),
            );
            assert!(got.is_empty(), "to {to}");
        }
    }

    #[test]
    fn other_case_changes_write_nothing() {
        let (old, new) = (case(Q_EN, false), case(Q_EN, false));
        assert!(
            rules(
                &Change::CaseUpdated {
                    old: &old,
                    new: &new
                },
                &m(),
                Some(&last_en())
            )
            .is_empty()
        );
        // Reopening is not closing.
        let (old, new) = (case(Q_EN, true), case(Q_EN, false));
        assert!(
            rules(
                &Change::CaseUpdated {
                    old: &old,
                    new: &new
                },
                &m(),
                Some(&last_en())
            )
            .is_empty()
        );
    }

    #[test]
    fn comment_by_someone_else_on_monitored_case_is_comment() {
        let c = case(Q_EN, false);
        let got = rules(
            &Change::CommentInserted {
                case: &c,
                author_id: AGENT,
            },
            &m(),
            None,
        );
        assert_eq!(got, vec![row("Comment", Q_EN, "Support_EN")]);
    }

    #[test]
    fn owner_written_comment_and_comment_on_unmonitored_case_write_nothing() {
        let c = case(AGENT, false);
        assert!(
            rules(
                &Change::CommentInserted {
                    case: &c,
                    author_id: AGENT
                },
                &m(),
                Some(&last_en())
            )
            .is_empty()
        );
        // Owned by an agent: not in M, whoever writes.
        assert!(
            rules(
                &Change::CommentInserted {
                    case: &c,
                    author_id: OTHER_AGENT
                },
                &m(),
                Some(&last_en())
            )
            .is_empty()
        );
        let c = case(Q_UNROUTED, false);
        assert!(
            rules(
                &Change::CommentInserted {
                    case: &c,
                    author_id: AGENT
                },
                &m(),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn incoming_email_on_monitored_case_is_email_received() {
        let c = case(Q_FR, false);
        let got = rules(
            &Change::EmailInserted {
                case: &c,
                incoming: true,
            },
            &m(),
            None,
        );
        assert_eq!(got, vec![row("EmailReceived", Q_FR, "Support_FR")]);
        let c = case(AGENT, false);
        assert!(
            rules(
                &Change::EmailInserted {
                    case: &c,
                    incoming: true
                },
                &m(),
                Some(&last_en())
            )
            .is_empty()
        );
    }

    #[test]
    fn outgoing_email_is_agent_reply_only_when_the_case_has_rows() {
        let c = case(AGENT, false);
        let got = rules(
            &Change::EmailInserted {
                case: &c,
                incoming: false,
            },
            &m(),
            Some(&last_en()),
        );
        assert_eq!(got, vec![row("AgentReply", Q_EN, "Support_EN")]);
        assert!(
            rules(
                &Change::EmailInserted {
                    case: &c,
                    incoming: false
                },
                &m(),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn closing_is_case_closed_only_when_the_case_has_rows() {
        let (old, new) = (case(AGENT, false), case(AGENT, true));
        let got = rules(
            &Change::CaseUpdated {
                old: &old,
                new: &new,
            },
            &m(),
            Some(&last_en()),
        );
        assert_eq!(got, vec![row("CaseClosed", Q_EN, "Support_EN")]);
        assert!(
            rules(
                &Change::CaseUpdated {
                    old: &old,
                    new: &new
                },
                &m(),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn move_and_close_in_one_update_writes_both_in_order() {
        let (old, new) = (case(Q_EN, false), case(Q_FR, true));
        let got = rules(
            &Change::CaseUpdated {
                old: &old,
                new: &new,
            },
            &m(),
            Some(&last_en()),
        );
        assert_eq!(
            got,
            vec![
                row("QueueChanged", Q_FR, "Support_FR"),
                row("CaseClosed", Q_FR, "Support_FR")
            ]
        );
    }
}
