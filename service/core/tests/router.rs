//! The routing rules of routing.md §3, one story per test, against the pure in-memory world.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod world;

use chrono::TimeDelta;
use sors_core::model::*;
use sors_core::router::*;
use world::*;

fn settings() -> Settings {
    Settings {
        route_timeout: TimeDelta::seconds(10),
        retry_backoff: TimeDelta::seconds(2),
        ..Settings::default()
    }
}

fn world() -> World {
    let mut w = World::new(settings());
    w.settle();
    w
}

fn failed_reason(w: &World, row: &RowId) -> String {
    assert_eq!(
        w.status(row),
        RowStatus::Failed,
        "row {row} should be Failed"
    );
    w.row(row).error.clone().unwrap_or_default()
}

/// A settled world with `max_in_flight` slots.
fn world_with_slots(max_in_flight: usize) -> World {
    let mut w = World::new(Settings {
        max_in_flight,
        ..settings()
    });
    w.settle();
    w
}

/// `n` new cases in `EN`, one `New` row each; returns the rows.
fn new_rows(w: &mut World, n: usize) -> Vec<RowId> {
    (0..n)
        .map(|_| {
            let c = w.add_case(EN, "");
            w.add_row(&c, "New", "Support_EN", "")
        })
        .collect()
}

/// Whether the row's claim (`Processing`) was written.
fn claimed(w: &World, row: &RowId) -> bool {
    w.writes
        .iter()
        .any(|u| u.id == *row && u.status == RowStatus::Processing)
}

#[test]
fn a_new_case_becomes_one_interaction_and_the_row_is_processed() {
    let mut w = world();
    let case = w.add_case(EN, "English;Premium");
    let row = w.add_row(&case, "New", "Support_EN", "English; Premium");
    w.push(std::slice::from_ref(&row));
    w.settle();

    assert_eq!(w.status(&row), RowStatus::Processed);
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].workgroup, "Support_EN");
    assert_eq!(live[0].skills, "English;Premium");
    assert_eq!(w.row(&row).interaction_id.as_ref(), Some(&live[0].id));
    assert_eq!(w.row(&row).attempts, 1);
    // claimed (Processing) before the mark
    let statuses: Vec<RowStatus> = w
        .writes
        .iter()
        .filter(|u| u.id == row)
        .map(|u| u.status)
        .collect();
    assert_eq!(statuses, vec![RowStatus::Processing, RowStatus::Processed]);
    assert!(
        w.notices
            .iter()
            .any(|n| matches!(n, Notice::Routed { row: r, .. } if *r == row))
    );
}

#[test]
fn a_row_delivered_by_push_scan_and_sweep_is_raised_once() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[row.clone(), row.clone()]);
    w.scan();
    w.sweep();
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.raises.get(&row), Some(&1));
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert_eq!(w.live_of(&case).len(), 1);
}

#[test]
fn a_case_already_live_in_the_workgroup_is_not_routed_again() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&first));
    w.settle();
    let comment = w.add_row(&case, "Comment", "Support_EN", "");
    w.push(std::slice::from_ref(&comment));
    w.settle();
    assert_eq!(w.status(&comment), RowStatus::Processed);
    assert_eq!(w.raises.get(&comment), None);
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1);
    assert_eq!(w.row(&comment).interaction_id.as_ref(), Some(&live[0].id));
}

#[test]
fn a_case_moved_to_another_queue_is_disconnected_there_first() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&first));
    w.settle();
    let old = w.live_of(&case)[0].id.clone();

    w.cases.get_mut(&case).unwrap().owner_id = FR.into();
    let moved = w.add_row(&case, "QueueChanged", "Support_FR", "");
    w.push(std::slice::from_ref(&moved));
    w.settle();

    assert_eq!(w.status(&moved), RowStatus::Processed);
    assert!(!w.ix[&old].live, "the old interaction is disconnected");
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].workgroup, "Support_FR");
}

#[test]
fn agent_reply_disconnects_when_auto_disconnect_is_on() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[first]);
    w.settle();
    let iid = w.live_of(&case)[0].id.clone();
    let reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    w.push(std::slice::from_ref(&reply));
    w.settle();
    assert_eq!(w.status(&reply), RowStatus::Processed);
    assert!(w.live_of(&case).is_empty());
    assert_eq!(w.row(&reply).interaction_id.as_ref(), Some(&iid));
}

#[test]
fn agent_reply_leaves_the_interaction_when_auto_disconnect_is_off() {
    let mut w = World::new(Settings {
        auto_disconnect_on_reply: false,
        ..settings()
    });
    w.settle();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[first]);
    w.settle();
    let reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    w.push(std::slice::from_ref(&reply));
    w.settle();
    assert_eq!(w.status(&reply), RowStatus::Processed);
    assert_eq!(w.live_of(&case).len(), 1);
    assert!(
        w.row(&reply)
            .error
            .as_deref()
            .unwrap()
            .contains("auto-disconnect")
    );

    // a closed case is disconnected whatever the setting
    let closed = w.add_row(&case, "CaseClosed", "Support_EN", "");
    w.push(std::slice::from_ref(&closed));
    w.settle();
    assert_eq!(w.status(&closed), RowStatus::Processed);
    assert!(w.live_of(&case).is_empty());
}

#[test]
fn a_backlog_routes_only_the_latest_row_and_honours_a_reply() {
    let mut w = world();
    let a = w.add_case(EN, "");
    let a1 = w.add_row(&a, "New", "Support_EN", "");
    let a2 = w.add_row(&a, "Comment", "Support_EN", "");
    let a3 = w.add_row(&a, "EmailReceived", "Support_EN", "");
    let b = w.add_case(EN, "");
    let b1 = w.add_row(&b, "New", "Support_EN", "");
    let b2 = w.add_row(&b, "AgentReply", "Support_EN", "");
    w.scan();
    w.settle();
    for r in [&a1, &a2] {
        assert_eq!(w.status(r), RowStatus::Processed);
        assert!(w.row(r).error.as_deref().unwrap().contains("superseded"));
    }
    assert_eq!(w.raises.get(&a3), Some(&1));
    assert_eq!(w.live_of(&a).len(), 1);
    // b: the reply supersedes the New row: no interaction at all
    assert!(w.row(&b1).error.as_deref().unwrap().contains("AgentReply"));
    assert_eq!(w.status(&b2), RowStatus::Processed);
    assert_eq!(w.raises.get(&b1), None);
    assert!(w.live_of(&b).is_empty());
}

#[test]
fn rows_whose_case_left_routing_create_nothing() {
    let mut w = world();
    let taken = w.add_case(AGENT, "");
    let deleted = w.add_case(EN, "");
    let closed = w.add_case(EN, "");
    let unmonitored = w.add_case(UNMONITORED, "");
    let r1 = w.add_row(&taken, "New", "Support_EN", "");
    let r2 = w.add_row(&deleted, "New", "Support_EN", "");
    let r3 = w.add_row(&closed, "New", "Support_EN", "");
    let r4 = w.add_row(&unmonitored, "New", "Support_EN", "");
    w.cases.remove(&deleted);
    w.cases.get_mut(&closed).unwrap().is_closed = true;
    w.scan();
    w.settle();
    for (r, why) in [
        (&r1, "no monitored queue"),
        (&r2, "deleted"),
        (&r3, "closed"),
        (&r4, "no monitored queue"),
    ] {
        assert_eq!(w.status(r), RowStatus::Processed);
        let note = w.row(r).error.clone().unwrap();
        assert!(
            note.contains("case left routing") && note.contains(why),
            "{note}"
        );
    }
    assert_eq!(w.total_raises(), 0);
}

#[test]
fn malformed_rows_fail_with_a_readable_reason_and_disturb_nothing() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let pipe = w.add_row(&case, "New", "Support_EN", "English|French");
    let long_case = w.add_case(EN, "");
    let long = w.add_row(&long_case, "New", "Support_EN", &"x".repeat(256));
    let wg_case = w.add_case(EN, "");
    let no_wg = w.add_row(&wg_case, "New", "Nowhere", "");
    let op_case = w.add_case(EN, "");
    let not_acd = w.add_row(&op_case, "New", "Operators", "");
    let sk_case = w.add_case(EN, "");
    let no_skill = w.add_row(&sk_case, "New", "Support_EN", "English;Klingon");
    let ev_case = w.add_case(EN, "");
    let bad_event = w.add_row(&ev_case, "Escalated", "Support_EN", "");
    let good_case = w.add_case(EN, "");
    let good = w.add_row(&good_case, "New", "Support_EN", "English");
    let mut orphan = w.rows[&good].clone();
    orphan.id = RowId::from("a01ORPHAN00000001");
    orphan.case_id = None;
    w.rows.insert(orphan.id.clone(), orphan.clone());
    w.scan();
    w.settle();

    assert!(failed_reason(&w, &pipe).contains("'|'"));
    assert!(failed_reason(&w, &long).contains("256 characters"));
    assert!(failed_reason(&w, &no_wg).contains("no workgroup named 'Nowhere'"));
    assert!(failed_reason(&w, &not_acd).contains("not an ACD email workgroup"));
    assert!(failed_reason(&w, &no_skill).contains("'Klingon'"));
    assert!(failed_reason(&w, &bad_event).contains("Unknown Event__c 'Escalated'"));
    assert!(failed_reason(&w, &orphan.id).contains("Case__c is empty"));
    assert_eq!(w.status(&good), RowStatus::Processed);
    assert_eq!(w.total_raises(), 1);
}

#[test]
fn no_answer_is_retried_with_backoff_then_failed() {
    let mut w = world();
    w.cic_silent = true;
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.run_to_quiescence(200);
    let reason = failed_reason(&w, &row);
    assert!(reason.contains("no answer from CIC"), "{reason}");
    assert_eq!(w.raises[&row], settings().max_attempts);
    assert_eq!(w.row(&row).attempts, settings().max_attempts);
}

#[test]
fn a_late_answer_after_a_retry_creates_one_interaction() {
    let mut w = world();
    w.cic_silent = true;
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    w.tick(11); // timeout → backoff
    w.settle();
    w.cic_silent = false;
    w.run_to_quiescence(50);
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert_eq!(w.created_per_entry[&row], 1);
    assert_eq!(w.row(&row).attempts, 2);
}

#[test]
fn rows_of_one_case_run_in_order_one_at_a_time() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&first));
    // deliver only up to the claim: the raise is answered later
    w.cic_silent = true;
    w.settle();
    let reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    w.push(std::slice::from_ref(&reply));
    w.settle();
    assert_eq!(
        w.status(&reply),
        RowStatus::New,
        "waits for the earlier row of its case"
    );
    w.cic_silent = false;
    w.tick(11);
    w.run_to_quiescence(50);
    assert_eq!(w.status(&first), RowStatus::Processed);
    assert_eq!(w.status(&reply), RowStatus::Processed);
    assert!(w.live_of(&case).is_empty());
}

#[test]
fn concurrency_is_bounded_by_max_in_flight() {
    let mut w = world_with_slots(3);
    w.cic_silent = true;
    let rows = new_rows(&mut w, 10);
    w.push(&rows);
    w.settle();
    assert_eq!(w.total_raises(), 3);
    assert_eq!(w.router.status().in_flight, 3);
    w.cic_silent = false;
    w.run_to_quiescence(100);
    assert!(rows.iter().all(|r| w.status(r) == RowStatus::Processed));
}

#[test]
fn a_freed_claim_goes_to_the_case_that_waited_longest() {
    let mut w = world_with_slots(1);
    w.cic_silent = true;
    let cases: Vec<CaseId> = (0..4).map(|_| w.add_case(EN, "")).collect();
    assert!(cases[1] < cases[2], "case ids grow with creation");
    // One row takes the slot, one is claimed ahead: the bound of each is 1.
    let push = |w: &mut World, case: usize| {
        let row = w.add_row(&cases[case], "New", "Support_EN", "");
        w.push(std::slice::from_ref(&row));
        w.settle();
        row
    };
    let raised = push(&mut w, 0);
    let ahead = push(&mut w, 3);
    // Then the third case starts waiting for a claim before the second one.
    let third = push(&mut w, 2);
    let second = push(&mut w, 1);
    assert_eq!(w.total_raises(), 1, "one slot");
    assert!(claimed(&w, &ahead) && !claimed(&w, &third) && !claimed(&w, &second));
    // The first raise times out and backs off: the row claimed ahead takes its slot, and the
    // claim it frees goes to the case that waited longest.
    w.tick(11);
    w.settle();
    assert_eq!(w.raises.get(&ahead), Some(&1));
    assert!(
        claimed(&w, &third) && !claimed(&w, &second),
        "first come, first served (not case-id order)"
    );
    w.cic_silent = false;
    w.run_to_quiescence(100);
    for r in [&raised, &ahead, &third, &second] {
        assert_eq!(w.status(r), RowStatus::Processed);
    }
}

#[test]
fn a_slot_frees_when_the_final_write_is_queued_not_when_it_is_answered() {
    let mut w = world_with_slots(1);
    let rows = new_rows(&mut w, 2);
    let (a, b) = (rows[0].clone(), rows[1].clone());
    w.hold_writes = true;
    w.push(&rows);
    w.settle();
    assert!(claimed(&w, &a) && !claimed(&w, &b), "one slot: A first");
    // A's claim is answered; A is raised and routed; its Processed write stays unanswered.
    w.release_writes();
    w.hold_writes = true;
    w.settle();
    assert_eq!(w.status(&a), RowStatus::Processed);
    assert!(!w.held.is_empty(), "A's final write is still in flight");
    assert!(
        claimed(&w, &b),
        "B's claim does not wait for the answer to A's bookkeeping write"
    );
    assert_eq!(
        w.router.status().in_flight,
        0,
        "A's slot is free while its final write is unanswered (B is still claiming)"
    );
    w.release_writes();
    w.run_to_quiescence(50);
    assert_eq!(w.status(&b), RowStatus::Processed);
    assert_eq!(w.router.status().in_flight, 0);
}

#[test]
fn claims_run_ahead_of_the_slots_by_at_most_max_in_flight_rows() {
    let mut w = world_with_slots(1);
    w.cic_silent = true;
    let rows = new_rows(&mut w, 3);
    w.push(&rows);
    w.settle();
    assert_eq!(w.total_raises(), 1, "one slot");
    assert_eq!(w.raises.get(&rows[0]), Some(&1));
    assert!(
        claimed(&w, &rows[1]),
        "the next row is claimed while the first one waits for CIC"
    );
    assert!(!claimed(&w, &rows[2]), "one claim ahead at most");
    assert_eq!(w.router.status().in_flight, 1);
    // The first raise times out and backs off: its slot goes to the row claimed ahead, which is
    // raised at once, and the third row is claimed.
    w.tick(11);
    w.settle();
    assert_eq!(w.raises.get(&rows[1]), Some(&1));
    assert!(claimed(&w, &rows[2]));
    assert_eq!(w.router.status().in_flight, 1);
    w.cic_silent = false;
    w.run_to_quiescence(100);
    assert!(rows.iter().all(|r| w.status(r) == RowStatus::Processed));
}

#[test]
fn a_burst_costs_few_write_calls() {
    let mut w = world();
    let rows: Vec<RowId> = (0..100)
        .map(|_| {
            let c = w.add_case(EN, "");
            w.add_row(&c, "New", "Support_EN", "")
        })
        .collect();
    w.push(&rows);
    w.settle();
    assert!(rows.iter().all(|r| w.status(r) == RowStatus::Processed));
    // in-memory answers come back one by one, so this bounds the router's own batching:
    // the claims of a batch go out in one write
    let claim_batches = w
        .writes
        .iter()
        .filter(|u| u.status == RowStatus::Processing)
        .count();
    assert_eq!(claim_batches, 100);
    assert!(
        w.write_calls < 200,
        "{} write calls for 100 rows",
        w.write_calls
    );
}

#[test]
fn the_sweep_reports_missed_pushes() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.sweep();
    w.settle();
    assert!(w.notices.contains(&Notice::PushLost { rows: 1 }));
    assert_eq!(w.status(&row), RowStatus::Processed);
    // a row already known is not a missed push
    let later_case = w.add_case(EN, "");
    let later = w.add_row(&later_case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&later));
    w.sweep();
    w.settle();
    assert_eq!(
        w.notices
            .iter()
            .filter(|n| matches!(n, Notice::PushLost { .. }))
            .count(),
        1
    );
}

#[test]
fn a_processing_row_whose_interaction_exists_is_just_marked() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.rows.get_mut(&row).unwrap().status = RowStatus::Processing;
    w.rows.get_mut(&row).unwrap().attempts = 1;
    let iid = w.make_live(&case, &row, "Support_EN");
    // the router restarts: fresh memory, CIC snapshot shows the interaction
    let mut w2 = World::new(settings());
    w2.rows = w.rows.clone();
    w2.cases = w.cases.clone();
    w2.ix = w.ix.clone();
    w2.handler = w.handler.clone();
    w2.settle();
    w2.scan();
    w2.settle();
    assert_eq!(w2.status(&row), RowStatus::Processed);
    assert_eq!(w2.row(&row).interaction_id.as_ref(), Some(&iid));
    assert_eq!(w2.total_raises(), 0);
}

#[test]
fn switchover_without_recovery_reroutes_lost_interactions_once() {
    let mut w = world();
    let case = w.add_case(EN, "English");
    let row = w.add_row(&case, "New", "Support_EN", "English");
    w.push(std::slice::from_ref(&row));
    w.settle();
    let old = w.live_of(&case)[0].id.clone();
    w.switchover(false);
    w.run_to_quiescence(20);
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1, "the lost interaction is re-routed");
    assert_ne!(live[0].id, old);
    let recovery: Vec<&RoutingRow> = w
        .rows
        .values()
        .filter(|r| r.event == "SwitchoverRecovery")
        .collect();
    assert_eq!(recovery.len(), 1);
    assert_eq!(recovery[0].status, RowStatus::Processed);
    assert_eq!(recovery[0].interaction_id.as_ref(), Some(&live[0].id));
    assert_eq!(
        w.row(&row).interaction_id.as_ref(),
        Some(&old),
        "the audit trail keeps the first"
    );
}

#[test]
fn switchover_with_recovery_changes_nothing() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[row]);
    w.settle();
    w.switchover(true);
    w.run_to_quiescence(20);
    assert_eq!(w.live_of(&case).len(), 1);
    assert!(w.rows.values().all(|r| r.event != "SwitchoverRecovery"));
}

#[test]
fn switchover_rerouting_can_be_turned_off() {
    let mut w = World::new(Settings {
        reroute_lost_on_switchover: false,
        ..settings()
    });
    w.settle();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[row]);
    w.settle();
    w.switchover(false);
    w.run_to_quiescence(20);
    assert!(w.live_of(&case).is_empty());
    assert!(w.notices.iter().any(|n| matches!(
        n,
        Notice::SwitchoverReconciled {
            lost: 1,
            rerouting: 0,
            ..
        }
    )));
}

#[test]
fn a_row_raised_when_cic_drops_is_raised_again_after_reconnect() {
    let mut w = world();
    w.cic_silent = true;
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    w.cic_silent = false;
    w.switchover(false);
    w.settle();
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert_eq!(w.raises[&row], 2);
    assert_eq!(w.created_per_entry[&row], 1);
    assert_eq!(w.live_of(&case).len(), 1);
}

#[test]
fn nothing_routes_while_cic_is_down_and_everything_does_after() {
    let mut w = world();
    w.inputs.push_back(Input::IcwsDown {
        reason: "test".into(),
    });
    w.cic_up = false;
    w.settle();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.status(&row), RowStatus::New);
    assert_eq!(w.total_raises(), 0);
    w.cic_up = true;
    w.switchover(true);
    w.settle();
    assert_eq!(w.status(&row), RowStatus::Processed);
}

// Stories found by the property test: rows that arrive late (their push was lost, the sweep
// finds them) must be judged against what Salesforce says now.

#[test]
fn a_late_new_row_after_a_handled_reply_routes_nothing() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let lost = w.add_row(&case, "New", "Support_EN", "");
    let reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    w.push(std::slice::from_ref(&reply));
    w.settle();
    w.sweep();
    w.settle();
    assert_eq!(w.status(&lost), RowStatus::Processed);
    assert!(
        w.row(&lost)
            .error
            .as_deref()
            .unwrap()
            .contains("superseded")
    );
    assert!(w.live_of(&case).is_empty());
}

#[test]
fn a_late_reply_does_not_disconnect_what_the_customer_asked_for_since() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&first));
    w.settle();
    let lost_reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    let email = w.add_row(&case, "EmailReceived", "Support_EN", "");
    w.push(std::slice::from_ref(&email));
    w.settle();
    w.sweep();
    w.settle();
    assert_eq!(w.status(&lost_reply), RowStatus::Processed);
    assert!(
        w.row(&lost_reply)
            .error
            .as_deref()
            .unwrap()
            .contains("wrote again")
    );
    assert_eq!(w.live_of(&case).len(), 1);
}

#[test]
fn a_late_row_for_a_queue_the_case_has_left_is_superseded() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let lost = w.add_row(&case, "New", "Support_EN", "");
    w.cases.get_mut(&case).unwrap().owner_id = FR.into();
    let moved = w.add_row(&case, "QueueChanged", "Support_FR", "");
    w.push(std::slice::from_ref(&moved));
    w.settle();
    w.sweep();
    w.settle();
    assert!(
        w.row(&lost)
            .error
            .as_deref()
            .unwrap()
            .contains("moved to another queue")
    );
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].workgroup, "Support_FR");
}

#[test]
fn a_switchover_does_not_reroute_a_case_answered_meanwhile() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let first = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&first));
    w.settle();
    let _unpushed_reply = w.add_row(&case, "AgentReply", "Support_EN", "");
    w.switchover(false);
    w.run_to_quiescence(20);
    assert!(w.rows.values().all(|r| r.event != "SwitchoverRecovery"));
    assert!(w.live_of(&case).is_empty());
}

#[test]
fn an_interaction_lost_while_its_row_is_being_marked_is_rerouted() {
    // Found by the scenario suite: the switchover lands between the router's mark and
    // Salesforce's answer to it.
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.hold_writes = true;
    w.push(std::slice::from_ref(&row));
    w.settle();
    // confirm the claim only: the interaction is created, the mark goes out and is held
    w.release_writes();
    w.hold_writes = true;
    w.settle();
    assert_eq!(
        w.status(&row),
        RowStatus::Processed,
        "written, but not yet confirmed"
    );
    assert_eq!(w.held.len(), 1);
    w.switchover(false);
    w.settle();
    w.release_writes();
    w.run_to_quiescence(20);
    assert_eq!(w.status(&row), RowStatus::Processed);
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1, "the lost interaction is routed again");
    assert!(w.rows.values().any(|r| r.event == "SwitchoverRecovery"));
}

// ------------------------------------------------------------------ issue 8 regressions

#[test]
fn a_queue_change_written_while_the_router_was_down_is_routed_after_a_crash_mid_route() {
    let mut w = world();
    let case = w.add_case(FR, "");
    let first = w.add_row(&case, "New", "Support_FR", "");
    // The router claims and raises, the interaction is created, and the process dies before
    // its mark reaches Salesforce.
    w.lose_marks = true;
    w.push(std::slice::from_ref(&first));
    w.settle();
    assert_eq!(w.status(&first), RowStatus::Processing);
    let old = w.live_of(&case)[0].id.clone();
    // While it is down the case moves to another monitored queue.
    w.cases.get_mut(&case).unwrap().owner_id = EN.into();
    let moved = w.add_row(&case, "QueueChanged", "Support_EN", "");
    w.tick(1);
    w.restart(settings());
    w.run_to_quiescence(50);

    assert_eq!(w.status(&first), RowStatus::Processed);
    assert_eq!(
        w.row(&first).interaction_id.as_ref(),
        Some(&old),
        "the superseded row still names the interaction it created"
    );
    assert_eq!(w.status(&moved), RowStatus::Processed);
    let live = w.live_of(&case);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].workgroup, "Support_EN");
    assert!(!w.ix[&old].live);
}

#[test]
fn a_salesforce_write_outage_fails_no_good_row_and_every_row_ends_once_it_is_over() {
    let mut w = world();
    let cases: Vec<CaseId> = (0..5).map(|_| w.add_case(EN, "English")).collect();
    let rows: Vec<RowId> = cases
        .iter()
        .map(|c| w.add_row(c, "New", "Support_EN", "English"))
        .collect();
    // Far more failed writes than max_attempts (5) would ever allow.
    w.fail_writes(60);
    w.push(&rows);
    w.settle();
    assert_eq!(
        w.router.status().writes_waiting,
        5,
        "every claim waits for Salesforce"
    );
    for _ in 0..200 {
        if w.failing_writes == 0 {
            break;
        }
        w.tick(5);
        w.settle();
    }
    assert_eq!(w.failing_writes, 0, "the outage was exercised");
    w.run_to_quiescence(40);
    for (case, row) in cases.iter().zip(&rows) {
        assert_eq!(
            w.status(row),
            RowStatus::Processed,
            "{:?}",
            w.row(row).error
        );
        assert_eq!(w.live_of(case).len(), 1);
        assert_eq!(w.created_per_entry.get(row), Some(&1));
    }
    assert_eq!(w.router.status().writes_waiting, 0);
}

#[test]
fn rows_waiting_for_a_failed_write_are_reported_and_never_left_to_the_sweep() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.fail_writes(1000);
    w.push(std::slice::from_ref(&row));
    w.settle();
    for _ in 0..100 {
        w.tick(30);
        w.settle();
    }
    assert_eq!(w.router.status().writes_waiting, 1);
    assert_eq!(w.status(&row), RowStatus::New);
    // 50 minutes later a sweep sees the row: it is held, not a missed push.
    w.sweep();
    w.settle();
    assert!(
        !w.notices
            .iter()
            .any(|n| matches!(n, Notice::PushLost { .. })),
        "a row waiting for its write is not a lost push"
    );
    w.fail_writes(0);
    w.run_to_quiescence(20);
    assert_eq!(w.status(&row), RowStatus::Processed);
}

#[test]
fn a_failed_push_fetch_is_retried_without_waiting_for_the_sweep() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.fail_fetches = 2;
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.status(&row), RowStatus::New);
    for _ in 0..10 {
        w.tick(2);
        w.settle();
    }
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert_eq!(w.fail_fetches, 0);
}

#[test]
fn a_queue_mapped_moments_ago_is_read_before_a_row_is_judged_left_routing() {
    let mut w = world();
    // A new queue and its mapping, unknown to the router's cached mappings.
    const NEW: &str = "00GNW0000000000001";
    w.mappings.push(QueueMapping {
        queue_id: NEW.into(),
        queue_name: "Support NEW".into(),
        workgroup: "Support_EN".into(),
    });
    w.tick(1);
    let case = w.add_case(NEW, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.mapping_reads, 1, "the mappings are read again first");
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert_eq!(w.live_of(&case).len(), 1, "{:?}", w.row(&row).error);
}

#[test]
fn a_row_of_a_queue_that_truly_left_routing_is_judged_after_one_fresh_read() {
    let mut w = world();
    let case = w.add_case(EN, "");
    w.tick(1);
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.cases.get_mut(&case).unwrap().owner_id = UNMONITORED.into();
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.mapping_reads, 1);
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert!(w.live_of(&case).is_empty());
    assert!(
        w.row(&row)
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no monitored queue")),
        "{:?}",
        w.row(&row).error
    );
    // the case moved on (its row names EN, it is now elsewhere): no drift
    assert!(
        !w.notices
            .iter()
            .any(|n| matches!(n, Notice::ConfigDrift { .. }))
    );
}

#[test]
fn a_row_naming_a_queue_no_mapping_lists_is_reported_as_config_drift() {
    let mut w = world();
    // The mapping of EN is removed (the periodic read sees it) after the trigger wrote a row.
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.mappings.retain(|m| m.queue_id != EN);
    w.inputs.push_back(Input::Mappings {
        mappings: w.mappings.clone(),
        as_of: w.now,
    });
    w.settle();
    w.tick(1);
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.mapping_reads, 1, "read again before judging");
    assert_eq!(w.status(&row), RowStatus::Processed);
    assert!(w.live_of(&case).is_empty());
    assert!(w.notices.iter().any(|n| matches!(
        n,
        Notice::ConfigDrift { message } if message.contains(EN)
    )));
}

#[test]
fn a_skill_added_in_cic_moments_ago_is_read_before_the_row_fails() {
    let mut w = world();
    w.skills.push("Klingon".into());
    w.tick(1);
    let case = w.add_case(EN, "Klingon");
    let row = w.add_row(&case, "New", "Support_EN", "Klingon");
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert_eq!(w.config_reads, 1);
    assert_eq!(
        w.status(&row),
        RowStatus::Processed,
        "{:?}",
        w.row(&row).error
    );
}

/// Runs the periodic reconciliation once.
fn reconcile(w: &mut World) {
    let before = w.reconcile_reads;
    for _ in 0..80 {
        w.tick(5);
        w.settle();
        if w.reconcile_reads > before {
            return;
        }
    }
    panic!("no reconciliation within 400 s");
}

#[test]
fn a_deleted_case_has_its_live_interaction_disconnected_by_reconciliation() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    let iid = w.live_of(&case)[0].id.clone();
    w.cases.remove(&case);
    reconcile(&mut w);
    w.run_to_quiescence(5);
    assert!(
        !w.ix[&iid].live,
        "the interaction of a deleted case is disconnected"
    );
    assert!(w.notices.iter().any(|n| matches!(
        n,
        Notice::Disconnected { why, .. } if why.contains("deleted")
    )));
}

#[test]
fn a_closed_case_whose_close_was_never_handled_is_disconnected_by_reconciliation() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    let iid = w.live_of(&case)[0].id.clone();
    // closed with the triggers off (a data load): no CaseClosed row
    w.cases.get_mut(&case).unwrap().is_closed = true;
    reconcile(&mut w);
    w.settle();
    assert!(!w.ix[&iid].live);
}

#[test]
fn interactions_lost_while_the_router_was_stopped_are_rerouted_once_at_start_up() {
    let mut w = world();
    let cases: Vec<CaseId> = (0..10).map(|_| w.add_case(EN, "")).collect();
    for c in &cases {
        let r = w.add_row(c, "New", "Support_EN", "");
        w.push(&[r]);
    }
    w.settle();
    // The router stops; CIC switches over without interaction recovery; the router starts.
    for i in w.ix.values_mut() {
        i.live = false;
    }
    w.handler.clear();
    w.tick(30);
    w.restart(settings());
    w.run_to_quiescence(20);
    for c in &cases {
        let live = w.live_of(c);
        assert_eq!(live.len(), 1, "case {c} is live again");
        assert_eq!(live[0].workgroup, "Support_EN");
    }
    let recovery_rows = w
        .rows
        .values()
        .filter(|r| r.event == "SwitchoverRecovery")
        .count();
    assert_eq!(recovery_rows, 10, "one audit row per re-routed case");
    // Later passes find nothing to do.
    reconcile(&mut w);
    w.run_to_quiescence(5);
    assert_eq!(
        w.rows
            .values()
            .filter(|r| r.event == "SwitchoverRecovery")
            .count(),
        10
    );
}

#[test]
fn reconciliation_leaves_answered_and_agent_owned_cases_alone() {
    let mut w = world();
    let answered = w.add_case(EN, "");
    let taken = w.add_case(EN, "");
    for c in [&answered, &taken] {
        let r = w.add_row(c, "New", "Support_EN", "");
        w.push(&[r]);
    }
    w.settle();
    let reply = w.add_row(&answered, "AgentReply", "Support_EN", "");
    w.push(&[reply]);
    w.settle();
    // An agent takes the other case: its interaction stays (routing.md §2).
    w.cases.get_mut(&taken).unwrap().owner_id = AGENT.into();
    let kept = w.live_of(&taken)[0].id.clone();
    // Everything is lost in CIC.
    for i in w.ix.values_mut() {
        if i.id != kept {
            i.live = false;
        }
    }
    w.tick(30);
    w.restart(settings());
    w.run_to_quiescence(10);
    reconcile(&mut w);
    w.run_to_quiescence(10);
    assert!(
        w.live_of(&answered).is_empty(),
        "an answered case is not re-routed"
    );
    assert!(w.ix[&kept].live, "an agent's case keeps its interaction");
    assert_eq!(
        w.rows
            .values()
            .filter(|r| r.event == "SwitchoverRecovery")
            .count(),
        0
    );
}

#[test]
fn reconciliation_does_not_reroute_when_rerouting_is_off() {
    let mut w = World::new(Settings {
        reroute_lost_on_switchover: false,
        ..settings()
    });
    w.settle();
    let case = w.add_case(EN, "");
    let r = w.add_row(&case, "New", "Support_EN", "");
    w.push(&[r]);
    w.settle();
    for i in w.ix.values_mut() {
        i.live = false;
    }
    w.handler.clear();
    w.restart(Settings {
        reroute_lost_on_switchover: false,
        ..settings()
    });
    w.run_to_quiescence(10);
    assert!(w.live_of(&case).is_empty());
    assert!(w.reconcile_reads > 0);
}

#[test]
fn a_result_for_an_entry_this_router_never_raised_reveals_another_router() {
    let mut w = world();
    let case = w.add_case(EN, "");
    let row = w.add_row(&case, "New", "Support_EN", "");
    w.push(std::slice::from_ref(&row));
    w.settle();
    assert!(
        w.router.status().other_router_at.is_none(),
        "its own results are not a sign"
    );
    w.inputs.push_back(Input::RouteResult {
        entry_id: RowId::from("a01OTHER000000001"),
        outcome: RouteOutcome::Created(InteractionId::from("9999")),
    });
    w.settle();
    assert!(w.router.status().other_router_at.is_some());
    assert!(
        w.notices
            .iter()
            .any(|n| matches!(n, Notice::OtherRouter { .. }))
    );
}

#[test]
fn error_texts_name_the_fields_as_the_org_calls_them() {
    let mut w = World::new(Settings {
        field_names: FieldNames {
            event: "acme__Event__c".into(),
            case: "acme__Case__c".into(),
            workgroup: "acme__Workgroup__c".into(),
        },
        ..settings()
    });
    w.settle();
    let case = w.add_case(EN, "");
    let bad_event = w.add_row(&case, "Teleported", "Support_EN", "");
    let no_workgroup = w.add_row(&case, "Comment", "", "");
    w.push(std::slice::from_ref(&bad_event));
    w.settle();
    assert!(failed_reason(&w, &bad_event).starts_with("Unknown acme__Event__c 'Teleported'"));
    w.push(std::slice::from_ref(&no_workgroup));
    w.run_to_quiescence(10);
    assert_eq!(
        failed_reason(&w, &no_workgroup),
        "acme__Workgroup__c is empty"
    );
}
