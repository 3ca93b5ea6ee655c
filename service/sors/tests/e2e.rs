//! End to end: the routing service against the fake Salesforce and the fake CIC pair.

mod common;

use common::{Bed, bed, wait};
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
