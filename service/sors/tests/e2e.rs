//! End to end: the routing service against the fake Salesforce and the fake CIC pair.

mod common;

use common::Bed;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_case_becomes_exactly_one_interaction_offered_to_a_skilled_agent() {
    let bed = Bed::start().await;
    let case = bed.new_case("Support FR", "French");
    bed.wait("the row is processed", 20, |b| {
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
    bed.wait("offered to an agent with French", 20, |b| {
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
    let bed = Bed::start().await;
    let case = bed.new_case("Support EN", "English");
    bed.wait("routed", 20, |b| b.live(&case).len() == 1).await;
    bed.sf
        .act_as("agent1@sors.demo")
        .unwrap()
        .create(
            "EmailMessage",
            json!({"ParentId": case, "Incoming": false, "FromAddress": "agent1@sors.demo",
                   "FromName": "Agent One", "Subject": "Re: Printer on fire"}),
        )
        .unwrap();
    bed.wait("disconnected and every row processed", 20, |b| {
        b.live(&case).is_empty() && b.all_final() && b.rows_of(&case).len() == 2
    })
    .await;
    let rows = bed.rows_of(&case);
    assert_eq!(rows[1]["Event__c"], "AgentReply");
    assert_eq!(rows[1]["Status__c"], "Processed");
}
