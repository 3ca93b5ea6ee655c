//! The routing handler, queue watches, the ACD, switchover and stop/start, driven over HTTP.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sors_fake_icws::{HistoryEvent, Which};

const ATTRS: &[&str] = &[
    "Eic_State",
    "Eic_UserName",
    "SF_CaseId",
    "SF_RoutingEntryId",
    "Eic_ObjectType",
];

/// Routes one entry and returns its RouteCaseResult data.
async fn route_and_wait(s: &Session, data: &[&str]) -> Vec<String> {
    assert_eq!(s.route(data).await, StatusCode::ACCEPTED);
    let entry = data.get(1).copied().unwrap_or_default();
    let msgs = s
        .poll_until("RouteCaseResult", |m| !results_for(m, entry).is_empty())
        .await;
    let result = results_for(&msgs, entry).remove(0);
    serde_json::from_value(result["data"].clone()).unwrap()
}

async fn ctl_post(url: String, body: Value) -> StatusCode {
    http().post(url).json(&body).send().await.unwrap().status()
}

#[tokio::test]
async fn route_case_creates_one_interaction_seen_in_the_queue_watch() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    s.watch(
        "wg",
        json!([{"queueType": 2, "queueName": "Support_EN"}]),
        ATTRS,
    )
    .await;
    let snap = s
        .poll_until("snapshot", |m| !queue_msgs(m, "wg").is_empty())
        .await;
    let snap = queue_msgs(&snap, "wg")[0].clone();
    assert_eq!(snap["isDelta"], false);
    assert_eq!(snap["interactionsAdded"], json!([]));

    let data = route_data("E1", "500A", "Support_EN", " English ; ;");
    assert_eq!(s.route(&data).await, StatusCode::ACCEPTED);
    assert_eq!(s.route(&data).await, StatusCode::ACCEPTED);
    let msgs = s
        .poll_until("two results and the answer", |m| {
            results_for(m, "E1").len() == 2
                && queue_msgs(m, "wg")
                    .iter()
                    .any(|q| q["interactionsChanged"][0]["attributes"]["Eic_State"] == "C")
        })
        .await;
    let results = results_for(&msgs, "E1");
    assert_eq!(results[0]["data"][2], "ok");
    let id = results[0]["data"][3].as_str().unwrap().to_owned();
    assert_eq!(
        results[1]["data"], results[0]["data"],
        "the duplicate reports the same interaction"
    );
    assert_eq!(id.len(), 10);
    assert!(id.chars().all(|c| c.is_ascii_digit()));

    let deltas = queue_msgs(&msgs, "wg");
    let added = &deltas[0];
    assert_eq!(added["isDelta"], true);
    assert_eq!(added["interactionsAdded"][0]["interactionId"], id.as_str());
    let a = &added["interactionsAdded"][0]["attributes"];
    assert_eq!(a["Eic_State"], "O");
    assert_eq!(a["SF_CaseId"], "500A");
    assert_eq!(a["Eic_ObjectType"], "Email Object");
    assert!(a.get("Eic_Subject").is_none(), "only requested attributes");
    let assigned = &deltas[1]["interactionsChanged"][0]["attributes"];
    assert_eq!(assigned["Eic_State"], "A");
    assert!(assigned["Eic_UserName"].is_string());
    assert!(
        assigned.get("SF_CaseId").is_none(),
        "only changed attributes"
    );
    assert_eq!(deltas.len(), 3, "added, assigned, connected: {deltas:#?}");

    let (st, attrs) = s
        .attributes(&id, "SF_RoutingEntryId,sf_caseid,SF_CaseNumber,Eic_WorkgroupName,Eic_RemoteName,Eic_RemoteAddress,Eic_Subject,Eic_AcdSkillSet,SF_URLPop,SF_SuppressEmailForm,Eic_CallDirection,Eic_InitiationTime,Eic_CallStateString")
        .await;
    assert_eq!(st, StatusCode::OK);
    let a = &attrs["attributes"];
    assert_eq!(a["SF_RoutingEntryId"], "E1");
    assert_eq!(
        a["sf_caseid"], "500A",
        "attribute names are case-insensitive"
    );
    assert_eq!(a["SF_CaseNumber"], "00001001");
    assert_eq!(a["Eic_WorkgroupName"], "Support_EN");
    assert_eq!(a["Eic_RemoteName"], "Jo Customer");
    assert_eq!(a["Eic_RemoteAddress"], "jo@example.com");
    assert_eq!(a["Eic_Subject"], "Printer on fire");
    assert_eq!(a["Eic_AcdSkillSet"], "English");
    assert_eq!(a["SF_URLPop"], "500A");
    assert_eq!(a["SF_SuppressEmailForm"], "1");
    assert_eq!(a["Eic_CallDirection"], "I");
    assert_eq!(a["Eic_CallStateString"], "Connected");
    let t = a["Eic_InitiationTime"].as_str().unwrap();
    assert_eq!(t.len(), 16);
    assert!(t.ends_with('Z') && t.as_bytes()[8] == b'T', "{t}");

    let (_, only_id) = s
        .send(Method::GET, &format!("interactions/{id}"), None)
        .await;
    assert_eq!(only_id, json!({"attributes": {"Eic_CallId": id}}));

    let c = fake.counters();
    assert_eq!(
        (
            c.handler_notifications,
            c.interactions_created,
            c.duplicates_suppressed
        ),
        (2, 1, 1)
    );
    let info = fake.live_interactions_for_case("500A");
    assert_eq!(info.len(), 1);
    let events: Vec<HistoryEvent> = info[0].history.iter().map(|h| h.event).collect();
    assert_eq!(
        events,
        [
            HistoryEvent::Created,
            HistoryEvent::Offered,
            HistoryEvent::Assigned,
            HistoryEvent::Connected
        ]
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn acd_assigns_only_to_agents_with_every_skill() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    // Only agent2 has Premium; only agent3 has French; agent4 is the only Billing member with Billing.
    for (entry, wg, skills, agent) in [
        ("P1", "Support_EN", "English;Premium", "agent2"),
        ("F1", "Support_EN", "French", "agent3"),
        ("B1", "Billing", "Billing", "agent4"),
    ] {
        let r = route_and_wait(&s, &route_data(entry, entry, wg, skills)).await;
        assert_eq!(r[2], "ok", "{r:?}");
        let ix = fake
            .interactions()
            .into_iter()
            .find(|i| i.id == r[3])
            .unwrap();
        assert_eq!(ix.agent.as_deref(), Some(agent), "{entry}");
    }
    // The agent's user queue shows it too.
    s.watch(
        "me",
        json!([{"queueType": 1, "queueName": "agent2"}]),
        &["SF_CaseId"],
    )
    .await;
    let msgs = s
        .poll_until("user queue snapshot", |m| !queue_msgs(m, "me").is_empty())
        .await;
    let snap = queue_msgs(&msgs, "me")[0];
    assert_eq!(
        snap["interactionsAdded"][0]["attributes"]["SF_CaseId"],
        "P1"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn waits_without_a_skilled_agent_then_assigns_when_one_is_available() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    assert_eq!(
        ctl_post(
            format!("{}/__fake/agents/agent2/availability", fake.primary_url()),
            json!({"available": false})
        )
        .await,
        StatusCode::OK
    );
    let r = route_and_wait(&s, &route_data("W1", "C-W1", "Support_EN", "Premium")).await;
    let id = r[3].clone();
    // Assignment runs synchronously in the handler: once the result exists it has been tried.
    let ix = fake
        .interactions()
        .into_iter()
        .find(|i| i.id == id)
        .unwrap();
    assert_eq!((ix.agent.clone(), ix.state.as_str()), (None, "O"));

    // Utilization: agent1 (English only) takes one email at a time.
    fake.set_agent_available("agent3", false).unwrap();
    fake.set_agent_available("agent4", false).unwrap();
    let a = route_and_wait(&s, &route_data("U1", "C-U1", "Support_EN", "English")).await;
    let b = route_and_wait(&s, &route_data("U2", "C-U2", "Support_EN", "English")).await;
    let agent_of = |id: &str| {
        fake.interactions()
            .into_iter()
            .find(|i| i.id == id)
            .unwrap()
            .agent
    };
    assert_eq!(agent_of(&a[3]).as_deref(), Some("agent1"));
    assert_eq!(
        agent_of(&b[3]),
        None,
        "agent1 is busy and the others are away"
    );
    // Disconnecting agent1's email re-runs assignment.
    let (st, _) = s
        .send(
            Method::POST,
            &format!("interactions/{}/disconnect", a[3]),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(agent_of(&b[3]).as_deref(), Some("agent1"));

    fake.set_agent_available("agent2", true).unwrap();
    assert_eq!(agent_of(&id).as_deref(), Some("agent2"));
    wait_for("agent2 answers", || {
        fake.interactions()
            .into_iter()
            .find(|i| i.id == id && i.state == "C")
    })
    .await;
    assert!(fake.set_agent_available("nobody", true).is_err());
    fake.shutdown().await;
}

#[tokio::test]
async fn disconnect_removes_from_the_queue() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    let r = route_and_wait(&s, &route_data("D1", "C-D1", "Support_FR", "")).await;
    let id = r[3].clone();
    s.watch(
        "fr",
        json!([{"queueType": 2, "queueName": "Support_FR"}]),
        &["Eic_State"],
    )
    .await;
    let (st, _) = s
        .send(
            Method::POST,
            &format!("interactions/{id}"),
            Some(json!({"attributes": {"SF_Note": "a"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .send(
            Method::POST,
            &format!("interactions/{id}"),
            Some(json!({"attributes": {"sf_note": "b"}, "appendMode": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, a) = s.attributes(&id, "SF_Note").await;
    assert_eq!(a["attributes"]["SF_Note"], "ab");

    let (st, _) = s
        .send(Method::POST, &format!("interactions/{id}/disconnect"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let msgs = s
        .poll_until("removal", |m| {
            queue_msgs(m, "fr")
                .iter()
                .any(|q| q["interactionsRemoved"] == json!([id.as_str()]))
        })
        .await;
    assert_eq!(
        queue_msgs(&msgs, "fr")[0]["interactionsAdded"][0]["interactionId"],
        id.as_str()
    );
    let (_, a) = s.attributes(&id, "Eic_State").await;
    assert_eq!(a["attributes"]["Eic_State"], "I");
    assert!(fake.live_interactions_for_case("C-D1").is_empty());
    // A re-raise of a disconnected entry reports the existing interaction.
    let again = route_and_wait(&s, &route_data("D1", "C-D1", "Support_FR", "")).await;
    assert_eq!(again, r);
    assert_eq!(fake.counters().disconnects, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn handler_errors_are_reported_and_other_notifications_ignored() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    for (data, needle) in [
        (route_data("X1", "C", "Nowhere", ""), "unknown workgroup"),
        (
            route_data("X2", "C", "Operators", ""),
            "no ACD email routing",
        ),
        (
            route_data("X3", "C", "Support_EN", "English;Klingon"),
            "unknown skill 'Klingon'",
        ),
        (
            vec!["2", "X4", "C", "1", "Support_EN", "", "s", "a", "n"],
            "version",
        ),
        (vec!["1", "X5", "C"], "9 data items"),
    ] {
        let r = route_and_wait(&s, &data).await;
        assert_eq!(r[2], "error", "{r:?}");
        assert!(r[3].contains(needle), "{r:?} should mention {needle}");
    }
    let (st, _) = s
        .send(
            Method::POST,
            "system/handler-notification",
            Some(json!({"objectId": "Other", "eventId": "RouteCase", "data": ["1"]})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Ids are case-insensitive.
    let (st, _) = s
        .send(
            Method::POST,
            "system/handler-notification",
            Some(json!({"objectId": "salesforceobjectrouting", "eventId": "ROUTECASE", "data": route_data("X6", "C6", "Support_EN", "")})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let c = fake.counters();
    assert_eq!(
        (
            c.handler_errors,
            c.ignored_notifications,
            c.interactions_created
        ),
        (5, 1, 1)
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn switchover_with_recovery_keeps_interactions_and_entry_memory() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    let r = route_and_wait(&s, &route_data("S1", "C-S1", "Support_EN", "")).await;
    let id = r[3].clone();

    let resp = http()
        .post(format!("{}/__fake/switchover", fake.backup_url()))
        .json(&json!({"recovery": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], "backup");
    assert_eq!(fake.active(), Which::Backup);

    // The old session: the state message, then 401 everywhere.
    let msgs = s
        .poll_until("state message", |m| {
            m.iter()
                .any(|x| x["__type"] == "urn:inin.com:connection:connectionStateChangeMessage")
        })
        .await;
    let state = msgs.last().unwrap();
    assert_eq!(
        (
            state["newConnectionState"].as_i64(),
            state["shouldReconnect"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(s.poll().await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.send(Method::GET, "connection", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Reconnecting to the old primary is redirected to the backup.
    let s2 = connect(&fake.primary_url()).await;
    assert_eq!(s2.base, fake.backup_url());
    s2.watch_results().await;
    let (st, a) = s2.attributes(&id, "SF_CaseId,Eic_State").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["attributes"]["SF_CaseId"], "C-S1");
    let again = route_and_wait(&s2, &route_data("S1", "C-S1", "Support_EN", "")).await;
    assert_eq!(again, r, "entry memory survives");
    assert_eq!(fake.live_interactions_for_case("C-S1").len(), 1);
    assert_eq!(fake.counters().switchovers, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn switchover_without_recovery_loses_interactions() {
    let mut site = fast_site();
    site.interaction_recovery = false;
    let fake = start(site).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    let r = route_and_wait(&s, &route_data("L1", "C-L1", "Support_EN", "")).await;
    let id = r[3].clone();

    assert_eq!(fake.switchover(None), Which::Backup);
    let s2 = connect(&fake.backup_url()).await;
    s2.watch_results().await;
    s2.watch(
        "wg",
        json!([{"queueType": 2, "queueName": "Support_EN"}]),
        &["SF_CaseId"],
    )
    .await;
    let msgs = s2
        .poll_until("snapshot", |m| !queue_msgs(m, "wg").is_empty())
        .await;
    assert_eq!(
        queue_msgs(&msgs, "wg")[0]["interactionsAdded"],
        json!([]),
        "the queue is empty"
    );
    assert_eq!(
        s2.attributes(&id, "SF_CaseId").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(fake.live_interactions_for_case("C-L1").is_empty());
    let lost = fake
        .interactions()
        .into_iter()
        .find(|i| i.id == id)
        .unwrap();
    assert!(lost.lost && !lost.live);
    assert_eq!(lost.history.last().unwrap().event, HistoryEvent::Lost);

    let again = route_and_wait(&s2, &route_data("L1", "C-L1", "Support_EN", "")).await;
    assert_eq!(again[2], "ok");
    assert_ne!(
        again[3], id,
        "the handler forgot the entry: a new interaction"
    );
    let c = fake.counters();
    assert_eq!(
        (
            c.interactions_lost,
            c.interactions_created,
            c.duplicates_suppressed
        ),
        (1, 2, 0)
    );

    // And back, overriding the (off) flag once: nothing lost this time.
    assert_eq!(fake.switchover(Some(true)), Which::Primary);
    assert_eq!(fake.live_interactions_for_case("C-L1").len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn stopped_server_refuses_connections_and_starts_again() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    let resp = http()
        .post(format!("{}/__fake/servers/primary/stop", fake.backup_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!fake.is_running(Which::Primary).await);
    let err = http()
        .post(format!("{}/icws/connection", fake.primary_url()))
        .body(connect_body("sors", "sors").to_string())
        .send()
        .await
        .expect_err("connection refused");
    assert!(err.is_connect(), "{err:?}");

    fake.start_server(Which::Primary).await.unwrap();
    let s2 = connect(&fake.primary_url()).await;
    assert_eq!(
        s2.send(Method::GET, "connection", None).await.0,
        StatusCode::OK
    );
    // A fresh client: the old pooled connection died with the stopped server.
    let old = Session {
        http: http(),
        ..s.clone()
    };
    assert_eq!(
        old.send(Method::GET, "connection", None).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions died with the server"
    );

    // A server can stop itself through its own control API.
    let resp = http()
        .post(format!("{}/__fake/servers/backup/stop", fake.backup_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let err = http()
        .get(format!("{}/__fake/status", fake.backup_url()))
        .send()
        .await
        .expect_err("backup stopped");
    assert!(err.is_connect(), "{err:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn a_put_on_an_existing_watch_replaces_it() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    s.watch_results().await;
    s.watch(
        "w",
        json!([{"queueType": 2, "queueName": "Support_EN"}]),
        &["SF_CaseId"],
    )
    .await;
    s.watch(
        "w",
        json!([{"queueType": 2, "queueName": "Billing"}]),
        &["SF_CaseId"],
    )
    .await;
    assert_eq!(
        s.route(&route_data("R1", "C-EN", "Support_EN", "")).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.route(&route_data("R2", "C-BI", "Billing", "")).await,
        StatusCode::ACCEPTED
    );
    let msgs = s
        .poll_until("both results and the Billing addition", |m| {
            !results_for(m, "R1").is_empty()
                && queue_msgs(m, "w")
                    .iter()
                    .any(|q| q["interactionsAdded"][0]["attributes"]["SF_CaseId"] == "C-BI")
        })
        .await;
    let snapshots = queue_msgs(&msgs, "w")
        .iter()
        .filter(|q| q["isDelta"] == false)
        .count();
    assert_eq!(snapshots, 2, "each PUT sends a snapshot");
    assert!(
        !queue_msgs(&msgs, "w")
            .iter()
            .any(|q| q.to_string().contains("C-EN")),
        "the replaced watch no longer covers Support_EN"
    );
    // DELETE stops it.
    let (st, _) = s
        .send(Method::DELETE, "messaging/subscriptions/queues/w", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.route(&route_data("R3", "C-BI3", "Billing", "")).await,
        StatusCode::ACCEPTED
    );
    let later = s
        .poll_until("R3 result", |m| !results_for(m, "R3").is_empty())
        .await;
    assert!(queue_msgs(&later, "w").is_empty(), "{later:#?}");
    fake.shutdown().await;
}
