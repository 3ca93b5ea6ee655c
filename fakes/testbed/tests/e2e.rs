//! End to end: the routing service against the fake Salesforce and the fake CIC pair.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use common::{Bed, BedOptions, bed, wait};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_case_becomes_exactly_one_interaction_offered_to_a_skilled_agent() {
    let bed = bed().await;
    let case = bed.new_case("Support FR", "French").unwrap();
    wait(&bed, "the row is processed", 20, |b| {
        b.rows_of(&case)
            .first()
            .is_some_and(|r| r["Status__c"] == "Processed")
    })
    .await;
    let row = &bed.rows_of(&case)[0];
    let live = bed.live(&case);
    assert_eq!(live.len(), 1, "exactly one interaction");
    assert_eq!(row["Interaction_Id__c"], live[0].id.as_str());
    assert_eq!(live[0].workgroup, "Support_FR");
    assert_eq!(
        live[0]
            .attributes
            .get("Eic_AcdSkillSet")
            .map(String::as_str),
        Some("French")
    );
    assert_eq!(
        live[0]
            .attributes
            .get("SF_SuppressEmailForm")
            .map(String::as_str),
        Some("1")
    );
    wait(&bed, "offered to an agent with French", 20, |b| {
        b.live(&case).first().is_some_and(|i| i.agent.is_some())
    })
    .await;
    let agent = bed.live(&case)[0].agent.clone().unwrap();
    assert_eq!(
        agent, "agent3",
        "only agent3 speaks French in the demo site"
    );
    assert_eq!(bed.cic.counters().interactions_created, 1);

    // The distributions of /metrics saw this row and the calls it took.
    let addr = bed.service.as_ref().unwrap().http_addr;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("sors_time_to_route_seconds_count"), 1.0, "{text}");
    assert!(
        count("sors_salesforce_call_seconds_count{tenant=\"test\",kind=\"query\"}") >= 1.0,
        "{text}"
    );
    assert!(
        count("sors_salesforce_call_seconds_count{tenant=\"test\",kind=\"login\"}") >= 1.0,
        "{text}"
    );
    assert!(count("sors_icws_call_seconds_count") >= 1.0, "{text}");
    assert!(text.contains("# TYPE sors_time_to_route_seconds histogram"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reply_disconnects_the_interaction() {
    let bed = bed().await;
    let case = bed.new_case("Support EN", "English").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&case).len() == 1).await;
    bed.sf
        .act_as("agent1@sors.demo")
        .unwrap()
        .create(
            "EmailMessage",
            json!({"ParentId": case, "Incoming": false, "FromAddress": "agent1@sors.demo",
                   "FromName": "Agent One", "Subject": "Re: Printer on fire"}),
        )
        .unwrap();
    wait(&bed, "disconnected and every row processed", 20, |b| {
        b.live(&case).is_empty() && b.all_final() && b.rows_of(&case).len() == 2
    })
    .await;
    let rows = bed.rows_of(&case);
    assert_eq!(rows[1]["Event__c"], "AgentReply");
    assert_eq!(rows[1]["Status__c"], "Processed");
}

fn every_case_live_once(bed: &Bed, cases: &[String]) -> bool {
    cases.iter().all(|c| bed.live(c).len() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_without_interaction_recovery_mid_burst_loses_nothing() {
    let bed = bed().await;
    let mut cases: Vec<String> = (0..10)
        .map(|_| bed.new_case("Support EN", "English").unwrap())
        .collect();
    bed.cic.switchover(Some(false));
    cases.extend((0..10).map(|_| bed.new_case("Billing", "Billing").unwrap()));
    wait(
        &bed,
        "every case live exactly once after the switchover",
        60,
        |b| b.all_final() && every_case_live_once(b, &cases),
    )
    .await;
    let failed: Vec<_> = bed
        .rows()
        .into_iter()
        .filter(|r| r["Status__c"] == "Failed")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    // never two live interactions for one case
    for c in &cases {
        assert_eq!(bed.live(c).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_backlog_loses_and_duplicates_nothing() {
    let mut bed = bed().await;
    bed.stop_service().await;
    let cases: Vec<String> = (0..15)
        .map(|_| bed.new_case("Support EN", "").unwrap())
        .collect();
    bed.start_service().await.unwrap();
    wait(&bed, "the backlog is routed", 60, |b| {
        b.all_final() && every_case_live_once(b, &cases)
    })
    .await;
    assert_eq!(bed.cic.counters().interactions_created, 15);
}

/// A backlog longer than a chunk waits in the runtime and reaches the router a chunk at a
/// time, read fresh; the sweep (every 2 s here) takes none of it for lost pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_is_handed_over_in_chunks_and_nothing_is_taken_for_a_lost_push() {
    let mut opts = BedOptions::default();
    opts.router.backlog_chunk = 7;
    let mut bed = Bed::start(opts).await.unwrap();
    bed.stop_service().await;
    let cases: Vec<String> = (0..40)
        .map(|_| bed.new_case("Support EN", "").unwrap())
        .collect();
    bed.start_service().await.unwrap();
    let held = std::cell::Cell::new(0usize);
    wait(&bed, "the backlog is routed", 90, |b| {
        if let Some(s) = b.status() {
            held.set(held.get().max(s.routing.router.known_rows));
        }
        b.all_final() && every_case_live_once(b, &cases)
    })
    .await;
    assert_eq!(bed.cic.counters().interactions_created, 40);
    assert!(
        (1..=14).contains(&held.get()),
        "the router never held more than a chunk and a half: {}",
        held.get()
    );
    let status = bed.status().unwrap();
    assert_eq!(status.routing.push_lost_rows, 0, "no false lost-push alarm");
    assert_eq!(status.routing.routed, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_pushes_are_found_by_the_sweep_and_alerted() {
    let bed = bed().await;
    bed.sf.set_drop_pushes(true);
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "the sweep routes the row", 30, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
    let status = bed.service.as_ref().unwrap().shared.snapshot();
    assert!(status.routing.push_lost_rows >= 1);
    assert!(
        status
            .alerts
            .iter()
            .any(|a| a.message.contains("push notifications appear lost"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_salesforce_session_is_renewed_once_and_routing_goes_on() {
    let bed = bed().await;
    bed.sf.expire_sessions();
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed after re-login", 30, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
    let logins = bed.sf.counters().api.login;
    assert!(logins >= 2, "logged in again ({logins} logins)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_skills_fail_with_a_readable_reason_and_disturb_nothing() {
    let bed = bed().await;
    let bad = bed.new_case("Support EN", "English|French").unwrap();
    let unknown = bed.new_case("Support EN", "Klingon").unwrap();
    let good = bed.new_case("Support EN", "English").unwrap();
    wait(&bed, "all rows final", 30, |b| {
        b.all_final() && b.rows().len() == 3
    })
    .await;
    let err = |c: &str| {
        bed.rows_of(c)[0]["Error__c"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(bed.rows_of(&bad)[0]["Status__c"], "Failed");
    assert!(err(&bad).contains("'|'"), "{}", err(&bad));
    assert_eq!(bed.rows_of(&unknown)[0]["Status__c"], "Failed");
    assert!(err(&unknown).contains("Klingon"));
    assert_eq!(bed.live(&good).len(), 1);
    assert!(bed.live(&bad).is_empty() && bed.live(&unknown).is_empty());
}

// ---------------------------------------------------------------- triggers and non-triggers

fn as_user(bed: &Bed, user: &str) -> sors_fake_salesforce::OrgActor {
    bed.sf.act_as(user).unwrap()
}

fn agent_id(bed: &Bed, user: &str) -> String {
    bed.sf.user_id(user).unwrap()
}

fn reply(bed: &Bed, case: &str) {
    as_user(bed, "agent1@sors.demo")
        .create(
            "EmailMessage",
            json!({"ParentId": case, "Incoming": false, "FromAddress": "agent1@sors.demo", "Subject": "Re"}),
        )
        .unwrap();
}

fn events(bed: &Bed, case: &str) -> Vec<String> {
    bed.rows_of(case)
        .iter()
        .map(|r| r["Event__c"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_change_moves_the_interaction_to_the_new_workgroup() {
    let bed = bed().await;
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&case).len() == 1).await;
    let old = bed.live(&case)[0].id.clone();
    let fr = bed.queue("Support FR").unwrap();
    as_user(&bed, "router@sors.demo")
        .update("Case", &case, json!({"OwnerId": fr}))
        .unwrap();
    wait(&bed, "live in Support_FR only", 20, |b| {
        b.all_final() && b.live(&case).len() == 1 && b.live(&case)[0].workgroup == "Support_FR"
    })
    .await;
    assert_ne!(bed.live(&case)[0].id, old);
    assert_eq!(events(&bed, &case), ["New", "QueueChanged"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_change_back_to_a_monitored_queue_routes_again() {
    let bed = bed().await;
    let unrouted = bed.queue("Unrouted").unwrap();
    let case = as_user(&bed, "router@sors.demo")
        .create(
            "Case",
            json!({"Subject": "S", "OwnerId": unrouted, "Status": "New"}),
        )
        .unwrap();
    let billing = bed.queue("Billing").unwrap();
    as_user(&bed, "router@sors.demo")
        .update("Case", &case, json!({"OwnerId": billing}))
        .unwrap();
    wait(&bed, "routed to Billing", 20, |b| {
        b.all_final() && b.live(&case).len() == 1 && b.live(&case)[0].workgroup == "Billing"
    })
    .await;
    assert_eq!(events(&bed, &case), ["OwnerChanged"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_comment_and_a_customer_email_route_an_answered_case_again() {
    let bed = bed().await;
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&case).len() == 1).await;
    reply(&bed, &case);
    wait(&bed, "disconnected", 20, |b| {
        b.live(&case).is_empty() && b.all_final()
    })
    .await;
    as_user(&bed, "agent2@sors.demo")
        .create(
            "CaseComment",
            json!({"ParentId": case, "CommentBody": "any news?"}),
        )
        .unwrap();
    wait(&bed, "routed again after the comment", 20, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
    reply(&bed, &case);
    wait(&bed, "disconnected again", 20, |b| {
        b.live(&case).is_empty() && b.all_final()
    })
    .await;
    as_user(&bed, "router@sors.demo")
        .create(
            "EmailMessage",
            json!({"ParentId": case, "Incoming": true, "FromAddress": "pat@example.com", "Subject": "Still broken"}),
        )
        .unwrap();
    wait(&bed, "routed again after the email", 20, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
    assert_eq!(
        events(&bed, &case),
        [
            "New",
            "AgentReply",
            "Comment",
            "AgentReply",
            "EmailReceived"
        ]
    );
    assert_eq!(bed.cic.counters().interactions_created, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_triggers_route_nothing_and_an_agent_taking_ownership_keeps_the_interaction() {
    let bed = bed().await;
    // an unmonitored queue
    let unrouted = bed.new_case("Unrouted", "").unwrap();
    // an agent takes a routed case: no row, the interaction stays
    let taken = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&taken).len() == 1).await;
    let agent1 = agent_id(&bed, "agent1@sors.demo");
    as_user(&bed, "agent1@sors.demo")
        .update("Case", &taken, json!({"OwnerId": agent1}))
        .unwrap();
    // the owner's own comment
    as_user(&bed, "agent1@sors.demo")
        .create(
            "CaseComment",
            json!({"ParentId": taken, "CommentBody": "mine"}),
        )
        .unwrap();
    // a case created after these: when it is routed, the router has seen everything before it
    let marker = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "the marker case is routed", 20, |b| {
        b.live(&marker).len() == 1 && b.all_final()
    })
    .await;
    assert!(bed.rows_of(&unrouted).is_empty());
    assert!(bed.live(&unrouted).is_empty());
    assert_eq!(events(&bed, &taken), ["New"]);
    assert_eq!(bed.live(&taken).len(), 1, "the agent keeps the interaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_leaves_the_interaction_when_auto_disconnect_is_off_but_closing_disconnects() {
    let mut opts = BedOptions::default();
    opts.router.settings.auto_disconnect_on_reply = false;
    let bed = Bed::start(opts).await.unwrap();
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&case).len() == 1).await;
    reply(&bed, &case);
    wait(&bed, "the reply row is processed", 20, |b| {
        b.rows_of(&case).len() == 2 && b.all_final()
    })
    .await;
    assert_eq!(bed.live(&case).len(), 1);
    let note = bed.rows_of(&case)[1]["Error__c"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(note.contains("auto-disconnect"), "{note}");
    as_user(&bed, "agent1@sors.demo")
        .update("Case", &case, json!({"Status": "Closed"}))
        .unwrap();
    wait(&bed, "closing disconnects", 20, |b| {
        b.live(&case).is_empty() && b.all_final()
    })
    .await;
}

// ---------------------------------------------------------------- faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_with_interaction_recovery_keeps_every_interaction() {
    let bed = bed().await;
    let cases: Vec<String> = (0..5)
        .map(|_| bed.new_case("Support EN", "").unwrap())
        .collect();
    wait(&bed, "routed", 20, |b| {
        every_case_live_once(b, &cases) && b.all_final()
    })
    .await;
    let before: Vec<String> = cases.iter().map(|c| bed.live(c)[0].id.clone()).collect();
    bed.cic.switchover(Some(true));
    let more: Vec<String> = (0..5)
        .map(|_| bed.new_case("Support EN", "").unwrap())
        .collect();
    wait(&bed, "the burst after the switchover is routed", 30, |b| {
        every_case_live_once(b, &more) && b.all_final()
    })
    .await;
    let after: Vec<String> = cases.iter().map(|c| bed.live(c)[0].id.clone()).collect();
    assert_eq!(before, after, "the same interactions survive");
    assert!(
        bed.rows()
            .iter()
            .all(|r| r["Event__c"] != "SwitchoverRecovery")
    );
    assert_eq!(bed.cic.counters().interactions_created, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_backlog_is_finished_after_a_restart() {
    let mut bed = bed().await;
    bed.stop_service().await;
    let cases: Vec<String> = (0..5)
        .map(|_| bed.new_case("Support EN", "").unwrap())
        .collect();
    // two rows were claimed by the previous run when it died
    for c in &cases[..2] {
        let id = bed.rows_of(c)[0]["Id"].as_str().unwrap().to_owned();
        as_user(&bed, "router@sors.demo")
            .update(
                "Object_Routing_Queue__c",
                &id,
                json!({"Status__c": "Processing", "Attempts__c": 1}),
            )
            .unwrap();
    }
    bed.start_service().await.unwrap();
    wait(&bed, "the backlog is routed", 30, |b| {
        b.all_final() && every_case_live_once(b, &cases)
    })
    .await;
    assert_eq!(bed.cic.counters().interactions_created, 5);
    let attempts: Vec<i64> = cases
        .iter()
        .map(|c| bed.rows_of(c)[0]["Attempts__c"].as_f64().unwrap_or(0.0) as i64)
        .collect();
    assert_eq!(attempts, [2, 2, 1, 1, 1]);
}

fn push_only() -> BedOptions {
    let mut opts = BedOptions::default();
    // no sweep: only the stream can deliver rows in these tests
    opts.router.sweep_interval = std::time::Duration::from_secs(3600);
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_forgets_the_streaming_client_pushes_still_arrive() {
    let bed = Bed::start(push_only()).await.unwrap();
    bed.sf
        .forget_streaming(sors_fake_cometd::ForgetAdvice::Handshake);
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed by push after the re-handshake", 20, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_refresh_recreates_the_pushtopic_and_rescans() {
    let bed = Bed::start(push_only()).await.unwrap();
    bed.sf.sandbox_refresh();
    // rows written right after the refresh: the replay id is invalid, the PushTopic gone
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed after the refresh", 30, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
    let topics = bed.sf.query("SELECT Id, IsActive FROM PushTopic").unwrap();
    assert_eq!(topics.len(), 1, "the PushTopic is back");
    let later = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "pushes flow again", 20, |b| {
        b.live(&later).len() == 1 && b.all_final()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pushtopic_is_recreated_by_the_sweep_and_alerted() {
    let bed = bed().await;
    let topic = bed.sf.query("SELECT Id FROM PushTopic").unwrap()[0]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    as_user(&bed, "router@sors.demo")
        .delete("PushTopic", &topic)
        .unwrap();
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed and the PushTopic is back", 30, |b| {
        b.live(&case).len() == 1
            && b.all_final()
            && b.sf
                .query("SELECT Id FROM PushTopic")
                .unwrap_or_default()
                .len()
                == 1
    })
    .await;
    wait(&bed, "the alert", 10, |b| {
        b.status()
            .is_some_and(|s| s.alerts.iter().any(|a| a.message.contains("PushTopic")))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_workgroup_and_a_deleted_case_end_with_a_reason() {
    // (Skills over 255 characters cannot reach the router from this org: Salesforce refuses them
    // on the 255-character fields; the router's own check is tested in sors-core.)
    let mut bed = bed().await;
    // the Billing queue is mapped to a workgroup CIC does not have
    let mapping = bed
        .sf
        .query("SELECT Id FROM Interaction_Routing_Queue__c WHERE Salesforce_Queue_Name__c = 'Billing'")
        .unwrap()[0]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    as_user(&bed, "router@sors.demo")
        .update(
            "Interaction_Routing_Queue__c",
            &mapping,
            json!({"CIC_Workgroup_Name__c": "Nowhere"}),
        )
        .unwrap();
    let nowhere = bed.new_case("Billing", "").unwrap();
    wait(&bed, "the row is final", 20, |b| {
        b.all_final() && b.rows().len() == 1
    })
    .await;
    let err = |b: &Bed, c: &str| {
        b.rows_of(c)[0]["Error__c"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        err(&bed, &nowhere).contains("no workgroup named 'Nowhere'"),
        "{}",
        err(&bed, &nowhere)
    );

    bed.stop_service().await;
    let gone = bed.new_case("Support EN", "").unwrap();
    as_user(&bed, "router@sors.demo")
        .delete("Case", &gone)
        .unwrap();
    bed.start_service().await.unwrap();
    wait(&bed, "the deleted case's row is closed", 20, |b| {
        b.all_final()
    })
    .await;
    let row = &bed.rows_of(&gone)[0];
    assert_eq!(row["Status__c"], "Processed");
    assert!(
        err(&bed, &gone).contains("case left routing"),
        "{}",
        err(&bed, &gone)
    );
    assert!(bed.live(&gone).is_empty());
}

// Stories found by the property tests against the fakes: a failed CIC call during (re)connect
// must not leave the router connected but unable to route.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_of_cic_workgroups_at_start_is_retried() {
    use sors_fake_icws::{CallKind, FailRule};
    let mut bed = bed().await;
    let case = bed.new_case("Support EN", "English").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&case).len() == 1).await;
    bed.stop_service().await;
    bed.cic
        .fail_next(FailRule {
            kind: CallKind::Configuration,
            count: 1,
            status: 500,
        })
        .unwrap();
    // start_service waits until the router is ready, which needs the configuration
    bed.start_service().await.unwrap();
    let later = bed.new_case("Support EN", "English").unwrap();
    wait(&bed, "routed after the retry", 20, |b| {
        b.live(&later).len() == 1 && b.all_final()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_queue_watches_after_a_switchover_are_retried() {
    use sors_fake_icws::{CallKind, FailRule};
    let bed = bed().await;
    let first = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| b.live(&first).len() == 1).await;
    bed.cic
        .fail_next(FailRule {
            kind: CallKind::QueueSubscription,
            count: 2,
            status: 500,
        })
        .unwrap();
    bed.cic.switchover(Some(false));
    let later = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "both cases live after the switchover", 30, |b| {
        b.live(&later).len() == 1 && b.live(&first).len() == 1 && b.all_final()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_queue_watch_of_a_fresh_router_is_retried() {
    use sors_fake_icws::{CallKind, FailRule};
    let mut bed = bed().await;
    bed.stop_service().await;
    bed.cic
        .fail_next(FailRule {
            kind: CallKind::QueueSubscription,
            count: 1,
            status: 503,
        })
        .unwrap();
    bed.start_service().await.unwrap();
    let case = bed.new_case("Support EN", "").unwrap();
    wait(&bed, "routed", 20, |b| {
        b.live(&case).len() == 1 && b.all_final()
    })
    .await;
}

/// A killed service stops answering at once, on kept-alive connections too (the dashboard polls
/// over one): nothing goes on saying "up" for a service that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_stops_answering_on_open_connections_too() {
    let mut bed = bed().await;
    let addr = bed.service.as_ref().unwrap().http_addr;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://{addr}/heartbeat");
    assert!(client.get(&url).send().await.unwrap().status().is_success());
    bed.kill_service();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if client.get(&url).send().await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed service still answers on a kept-alive connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
