//! The ICWS client against small scripted responders (tests/common).
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use sors_core::model::{
    CaseId, InteractionId, LiveInteraction, RouteOutcome, RouteRequest, RowId, WorkgroupInfo,
};
use sors_icws::{DisconnectOutcome, IcwsError, IcwsEvent, MessagingMode, WATCHED_ATTRIBUTES};

fn connected(e: &IcwsEvent) -> bool {
    matches!(e, IcwsEvent::Connected { .. })
}

fn support_snapshot() -> serde_json::Value {
    json!([
        {"interactionId":"1001","conferenceParentId":"","attributes":{
            "SF_RoutingEntryId":"a0X1","SF_CaseId":"5001","SF_CaseNumber":"00001001",
            "Eic_WorkgroupName":"Support","Eic_AcdSkillSet":"English;Billing","Eic_State":"O",
            "Eic_UserName":""}},
        {"interactionId":"1009","conferenceParentId":"1001","attributes":{"Eic_State":"C"}}
    ])
}

fn ix1001(state: &str, agent: Option<&str>) -> LiveInteraction {
    LiveInteraction {
        id: InteractionId::new("1001"),
        case_id: Some(CaseId::new("5001")),
        entry_id: Some(RowId::new("a0X1")),
        workgroup: "Support".into(),
        skills: "English;Billing".into(),
        state: state.into(),
        agent: agent.map(str::to_owned),
    }
}

#[tokio::test]
async fn connect_sends_required_headers_then_csrf_and_cookie_on_every_call() {
    let cic = MiniCic::start(CicState::default()).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;

    let ev = next_event(&mut rx).await;
    assert_eq!(
        ev,
        IcwsEvent::Connected {
            server: format!("http://127.0.0.1:{}", cic.addr.port()),
            backup: false,
            generation: 1
        }
    );
    cic.wait("two polls", |s| s.count("GET", "/messaging/messages") >= 2)
        .await;

    let st = cic.st();
    let login = &st.requests[0];
    assert_eq!(
        (login.method.as_str(), login.path.as_str()),
        ("POST", "/icws/connection")
    );
    assert!(
        login.query.contains("include=features%2Cversion")
            || login.query.contains("include=features,version"),
        "{}",
        login.query
    );
    assert_eq!(login.header("accept-language"), Some("en-us"));
    assert!(
        login
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/vnd.inin.icws+json")
    );
    assert_eq!(login.header("ININ-ICWS-CSRF-Token"), None);
    assert_eq!(
        login.body,
        json!({"__type":"urn:inin.com:connection:icAuthConnectionRequestSettings",
            "applicationName":"Salesforce Object Routing Server","userID":"sors_user","password":PASSWORD})
    );
    let session_calls: Vec<&Req> = st
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/icws/29113001/"))
        .collect();
    assert!(session_calls.len() >= 3, "{session_calls:?}");
    for r in &session_calls {
        assert_eq!(
            r.header("ININ-ICWS-CSRF-Token"),
            Some("csrf-29113001"),
            "{}",
            r.path
        );
        assert_eq!(
            r.header("cookie"),
            Some("icws_29113001=cookie-29113001|languageId=en-us"),
            "{}",
            r.path
        );
    }
    let sub = st.find(
        "PUT",
        "/messaging/subscriptions/system/handler-sent-notifications",
    );
    assert_eq!(sub.len(), 1);
    assert_eq!(
        sub[0].body,
        json!({"headers":[{"objectId":"SalesforceObjectRouting","eventIds":["RouteCaseResult"]}]})
    );
    drop(st);
    let status = icws.status();
    assert!(status.connected);
    assert_eq!(status.generation, 1);
    assert!(!status.backup);
}

#[tokio::test]
async fn empty_connect_body_uses_the_session_headers() {
    let cic = MiniCic::start(CicState {
        empty_connect_body: true,
        ..CicState::default()
    })
    .await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Auto)).await;
    assert!(connected(&next_event(&mut rx).await));
    // Without a body there is no feature list: Auto polls.
    cic.wait("a poll", |s| {
        s.find("GET", "/icws/29113001/messaging/messages")
            .iter()
            .any(|r| !r.header("accept").unwrap_or("").contains("event-stream"))
    })
    .await;
    assert_eq!(
        icws.disconnect(&InteractionId::new("1")).await.unwrap(),
        DisconnectOutcome::Disconnected
    );
}

#[tokio::test]
async fn follows_503_to_a_host_port_alternate() {
    let b = MiniCic::start(CicState::default()).await;
    let a = MiniCic::start(CicState {
        connect: ConnectMode::Unavailable(vec![format!("127.0.0.1:{}", b.addr.port())]),
        ..CicState::default()
    })
    .await;
    let (icws, mut rx) = start_client(config(vec![a.url()], MessagingMode::Poll)).await;
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Connected {
            server: b.url(),
            backup: true,
            generation: 1
        }
    );
    assert_eq!(a.st().count("POST", "/icws/connection"), 1);
    assert_eq!(icws.status().server, Some(b.url()));
}

#[tokio::test]
async fn follows_503_to_a_bare_host_keeping_scheme_and_port() {
    let a = MiniCic::start(CicState {
        connect: ConnectMode::AcceptOnlyHost {
            host: "localhost".into(),
            alternates: vec!["localhost".into()],
        },
        ..CicState::default()
    })
    .await;
    let (_icws, mut rx) = start_client(config(vec![a.url()], MessagingMode::Poll)).await;
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Connected {
            server: format!("http://localhost:{}", a.addr.port()),
            backup: true,
            generation: 1
        }
    );
    let st = a.st();
    let hosts: Vec<String> = st
        .find("POST", "/icws/connection")
        .iter()
        .map(|r| r.header("host").unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        hosts,
        vec![
            format!("127.0.0.1:{}", a.addr.port()),
            format!("localhost:{}", a.addr.port())
        ]
    );
}

#[tokio::test]
async fn bad_credentials_are_reported_without_the_password_and_retried() {
    let cic = MiniCic::start(CicState {
        connect: ConnectMode::BadCredentials,
        ..CicState::default()
    })
    .await;
    let mut cfg = config(vec![cic.url()], MessagingMode::Poll);
    cfg.session_wait = Duration::from_millis(200);
    let (icws, _rx) = start_client(cfg).await;
    cic.wait("connect retried", |s| {
        s.count("POST", "/icws/connection") >= 2
    })
    .await;
    let status = icws.status();
    let last = status.last_error.unwrap_or_default();
    assert!(last.contains("authentication failed"), "{last}");
    assert!(!last.contains(PASSWORD));
    assert!(!status.connected);

    let err = icws.skills().await.unwrap_err();
    assert!(matches!(err, IcwsError::NotConnected(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD));
}

#[tokio::test]
async fn requests_made_while_down_wait_for_the_session() {
    let cic = MiniCic::start(CicState {
        connect: ConnectMode::Unavailable(vec![]),
        ..CicState::default()
    })
    .await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    cic.wait("a refused connect", |s| {
        s.count("POST", "/icws/connection") >= 1
    })
    .await;
    let waiting = {
        let icws = icws.clone();
        tokio::spawn(async move { icws.disconnect(&InteractionId::new("77")).await })
    };
    cic.st().connect = ConnectMode::Accept;
    assert!(connected(&next_event(&mut rx).await));
    let outcome = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("call finished")
        .expect("task");
    assert_eq!(outcome.unwrap(), DisconnectOutcome::Disconnected);
    assert_eq!(cic.st().count("POST", "/interactions/77/disconnect"), 1);
}

#[tokio::test]
async fn sse_stream_with_split_chunks_comments_and_multiline_data() {
    let cic = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let (_icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Auto)).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.wait("SSE stream open", CicState::sse_open).await;

    let first = route_result("a01", "ok", "1001").to_string();
    let (head, tail) = first.split_at(first.len() / 2);
    let second = r#"{"__type":"urn:inin.com:system:handlerSentNotificationMessage","objectId":"SalesforceObjectRouting","#;
    let second_rest =
        r#""eventId":"RouteCaseResult","data":["1","a02","error","no agent, no queue"]}"#;
    {
        let mut st = cic.st();
        for chunk in [
            ":ping\n\n".to_owned(),
            format!("data: {head}"),
            format!("{tail}\r\n"),
            "\r\n: keep-alive\nevent: message\nid: 5\n".to_owned(),
            format!("data: {second}\ndata: {second_rest}\n\n"),
        ] {
            assert!(st.push_raw_sse(&chunk));
        }
    }
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult {
            entry_id: RowId::new("a01"),
            outcome: RouteOutcome::Created(InteractionId::new("1001"))
        }
    );
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult {
            entry_id: RowId::new("a02"),
            outcome: RouteOutcome::Error("no agent, no queue".into())
        }
    );
    let st = cic.st();
    let gets = st.find("GET", "/messaging/messages");
    assert_eq!(gets.len(), 1, "one stream, no polls");
    assert_eq!(gets[0].header("accept"), Some("text/event-stream"));
}

#[tokio::test]
async fn polls_when_the_server_does_not_offer_sse() {
    let cic = MiniCic::start(CicState::default()).await;
    let (_icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Auto)).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.st().push(route_result("a01", "ok", "1001"));
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult { .. }
    ));
    cic.wait("more polls", |s| s.count("GET", "/messaging/messages") >= 3)
        .await;
    let st = cic.st();
    assert!(
        st.find("GET", "/messaging/messages")
            .iter()
            .all(|r| r.header("accept") == Some("application/vnd.inin.icws+json"))
    );
}

#[tokio::test]
async fn falls_back_to_polling_when_the_stream_is_refused() {
    let cic = MiniCic::start(CicState {
        messaging_version: 2,
        serve_sse: false,
        ..CicState::default()
    })
    .await;
    let (_icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Sse)).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.wait("polls after the refused stream", |s| {
        s.count("GET", "/messaging/messages") >= 3
    })
    .await;
    cic.st().push(route_result("a05", "error", "bad skills"));
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult {
            entry_id: RowId::new("a05"),
            outcome: RouteOutcome::Error("bad skills".into())
        }
    );
    let st = cic.st();
    let gets = st.find("GET", "/messaging/messages");
    assert_eq!(gets[0].header("accept"), Some("text/event-stream"));
    assert_eq!(
        gets[1].header("accept"),
        Some("application/vnd.inin.icws+json")
    );
}

#[tokio::test]
async fn queue_snapshot_and_deltas_give_merged_views() {
    let mut state = CicState::default();
    state.snapshots.insert("Support".into(), support_snapshot());
    state.snapshots.insert("Tier 2".into(), json!([]));
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    icws.set_watched_workgroups(vec!["Support".into(), " ".into()])
        .await
        .unwrap();

    assert!(connected(&next_event(&mut rx).await));
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Snapshot {
            workgroup: "Support".into(),
            interactions: vec![ix1001("O", None)]
        }
    );
    {
        let st = cic.st();
        let puts = st.find("PUT", "/messaging/subscriptions/queues/sors-wg-Support");
        assert_eq!(puts.len(), 1);
        assert_eq!(
            puts[0].body,
            json!({"queueIds":[{"queueType":2,"queueName":"Support"}],"attributeNames":WATCHED_ATTRIBUTES})
        );
    }

    cic.st().push(queue_delta(
        "Support",
        json!([{"interactionId":"1002","attributes":{"SF_CaseId":"5002","Eic_State":"O"}}]),
        json!([{"interactionId":"1001","attributes":{"eic_state":"C","Eic_UserName":"agent1"}}]),
        json!([]),
    ));
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Added(LiveInteraction {
            id: InteractionId::new("1002"),
            case_id: Some(CaseId::new("5002")),
            entry_id: None,
            workgroup: "Support".into(),
            skills: String::new(),
            state: "O".into(),
            agent: None,
        })
    );
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Changed(ix1001("C", Some("agent1")))
    );

    // The conference child 1009 was never part of the view: no event for it.
    cic.st().push(queue_delta(
        "Support",
        json!([]),
        json!([]),
        json!(["1009", "1001"]),
    ));
    cic.st().push(route_result("marker", "ok", "1"));
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Removed {
            id: InteractionId::new("1001"),
            workgroup: "Support".into()
        }
    );
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult { .. }
    ));

    // Changing the watched set: Support's watch is deleted, "Tier 2" is created.
    icws.set_watched_workgroups(vec!["Tier 2".into()])
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Snapshot {
            workgroup: "Tier 2".into(),
            interactions: vec![]
        }
    );
    {
        let st = cic.st();
        assert_eq!(
            st.count("DELETE", "/messaging/subscriptions/queues/sors-wg-Support"),
            1
        );
        assert_eq!(
            st.count("PUT", "/messaging/subscriptions/queues/sors-wg-Tier 2"),
            1
        );
    }
    // Messages of the dropped workgroup are ignored.
    cic.st().push(queue_delta(
        "Support",
        json!([{"interactionId":"1003","attributes":{}}]),
        json!([]),
        json!([]),
    ));
    cic.st().push(route_result("marker2", "ok", "1"));
    let ev = next_event(&mut rx).await;
    assert!(
        matches!(&ev, IcwsEvent::RouteResult { entry_id, .. } if entry_id.as_str() == "marker2"),
        "{ev:?}"
    );
}

#[tokio::test]
async fn raise_route_posts_the_handler_contract() {
    let cic = MiniCic::start(CicState::default()).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    assert!(connected(&next_event(&mut rx).await));
    let req = RouteRequest {
        entry_id: RowId::new("a0X9"),
        case_id: CaseId::new("5009"),
        case_number: "00001009".into(),
        workgroup: "Support".into(),
        skills: vec!["English".into(), "Billing".into()],
        subject: "Help".into(),
        from_address: "c@example.com".into(),
        from_name: "Customer".into(),
    };
    icws.raise_route(&req).await.unwrap();
    let posts = cic.st().find("POST", "/system/handler-notification");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body,
        json!({"objectId":"SalesforceObjectRouting","eventId":"RouteCase",
            "data":["1","a0X9","5009","00001009","Support","English;Billing","Help","c@example.com","Customer"]})
    );
    assert!(
        posts[0]
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/vnd.inin.icws+json")
    );
}

#[tokio::test]
async fn a_401_mid_session_reconnects_resubscribes_and_resnapshots() {
    let mut state = CicState::default();
    state.snapshots.insert("Support".into(), support_snapshot());
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    icws.set_watched_workgroups(vec!["Support".into()])
        .await
        .unwrap();
    assert!(connected(&next_event(&mut rx).await));
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::Snapshot { .. }
    ));

    cic.st().kill_session(true);
    let lost = next_event(&mut rx).await;
    assert!(
        matches!(&lost, IcwsEvent::Lost { generation: 1, reason } if reason.contains("401")),
        "{lost:?}"
    );
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Connected {
            server: cic.url(),
            backup: false,
            generation: 2
        }
    );
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Snapshot {
            workgroup: "Support".into(),
            interactions: vec![ix1001("O", None)]
        }
    );
    let st = cic.st();
    assert_eq!(
        st.count(
            "PUT",
            "/icws/29113002/messaging/subscriptions/queues/sors-wg-Support"
        ),
        1
    );
    assert_eq!(
        st.count(
            "PUT",
            "/icws/29113002/messaging/subscriptions/system/handler-sent-notifications"
        ),
        1
    );
    drop(st);
    assert_eq!(icws.status().generation, 2);
}

#[tokio::test]
async fn a_401_on_a_router_call_is_retryable_and_triggers_reconnection() {
    let cic = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let mut cfg = config(vec![cic.url()], MessagingMode::Sse);
    cfg.health_check_interval = Duration::from_secs(600);
    let (icws, mut rx) = start_client(cfg).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.wait("SSE stream open", CicState::sse_open).await;
    // The session dies but the stream stays open: only the router's call sees the 401.
    cic.st().kill_session(false);
    let err = icws.disconnect(&InteractionId::new("5")).await.unwrap_err();
    assert!(matches!(err, IcwsError::SessionLost), "{err:?}");
    assert!(err.is_retryable());
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::Lost { generation: 1, .. }
    ));
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::Connected { generation: 2, .. }
    ));
    assert_eq!(
        icws.disconnect(&InteractionId::new("5")).await.unwrap(),
        DisconnectOutcome::Disconnected
    );
}

#[tokio::test]
async fn a_dropped_stream_is_a_lost_session() {
    let cic = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let (_icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Auto)).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.wait("SSE stream open", CicState::sse_open).await;
    cic.st().kill_session(true);
    let lost = next_event(&mut rx).await;
    assert!(
        matches!(&lost, IcwsEvent::Lost { generation: 1, reason } if reason.contains("closed")),
        "{lost:?}"
    );
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::Connected { generation: 2, .. }
    ));
}

#[tokio::test]
async fn connection_down_message_moves_to_the_other_server() {
    let a = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let b = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let (icws, mut rx) = start_client(config(vec![a.url(), b.url()], MessagingMode::Auto)).await;
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Connected {
            server: a.url(),
            backup: false,
            generation: 1
        }
    );
    a.wait("SSE stream open", CicState::sse_open).await;
    {
        let mut st = a.st();
        st.connect = ConnectMode::Unavailable(vec![format!("127.0.0.1:{}", b.addr.port())]);
        st.push(json!({"__type":"urn:inin.com:connection:connectionStateChangeMessage","isDelta":true,
            "previousConnectionState":1,"newConnectionState":2,"reason":"switchover in progress","shouldReconnect":true}));
    }
    let lost = next_event(&mut rx).await;
    assert!(
        matches!(&lost, IcwsEvent::Lost { generation: 1, reason } if reason.contains("switchover in progress")),
        "{lost:?}"
    );
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::Connected {
            server: b.url(),
            backup: true,
            generation: 2
        }
    );
    let status = icws.status();
    assert!(status.connected && status.backup);
    assert_eq!(status.server, Some(b.url()));
    assert_eq!(b.st().count("PUT", "/handler-sent-notifications"), 1);
}

#[tokio::test]
async fn malformed_messages_are_skipped() {
    let mut state = CicState::default();
    let bad_queue = json!([{"__type":"urn:inin.com:queues:queueContentsMessage","subscriptionId":5},
        {"__type":"urn:inin.com:queues:queueContentsMessage","subscriptionId":"unknown-sub","isDelta":true}]);
    let bad_result = json!([{"__type":"urn:inin.com:system:handlerSentNotificationMessage",
        "objectId":"SalesforceObjectRouting","eventId":"RouteCaseResult","data":["9","x"]}]);
    state.poll_bodies.extend([
        "this is not json".to_owned(),
        "{\"isDelta\":true}".to_owned(),
        bad_queue.to_string(),
        bad_result.to_string(),
        String::new(),
        json!([{"__type":"urn:inin.com:connection:connectionStateChangeMessage","newConnectionState":"down"},
            route_result("good", "ok", "42")])
        .to_string(),
    ]);
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    assert!(connected(&next_event(&mut rx).await));
    assert_eq!(
        next_event(&mut rx).await,
        IcwsEvent::RouteResult {
            entry_id: RowId::new("good"),
            outcome: RouteOutcome::Created(InteractionId::new("42"))
        }
    );
    let status = icws.status();
    assert!(status.connected);
    assert_eq!(status.generation, 1);
}

#[tokio::test]
async fn disconnect_answers_200_404_and_errors() {
    let mut state = CicState::default();
    state.disconnect_status.insert("1002".into(), 404);
    state.disconnect_status.insert("1003".into(), 500);
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    assert!(connected(&next_event(&mut rx).await));
    assert_eq!(
        icws.disconnect(&InteractionId::new("1001")).await.unwrap(),
        DisconnectOutcome::Disconnected
    );
    assert_eq!(
        icws.disconnect(&InteractionId::new("1002")).await.unwrap(),
        DisconnectOutcome::AlreadyGone
    );
    let err = icws
        .disconnect(&InteractionId::new("1003"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IcwsError::Api { status: 500, error_id: Some(id), .. } if id == "error.server"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        cic.st()
            .count("POST", "/icws/29113001/interactions/1001/disconnect"),
        1
    );
}

#[tokio::test]
async fn workgroups_skills_and_interaction_attributes() {
    let mut state = CicState {
        workgroups: json!({"items":[
        {"configurationId":{"id":"Support","displayName":"Support","uri":"/configuration/workgroups/Support"},
         "hasQueue":true,"queueType":5,"isAcdEmailRoutingActive":true},
        {"configurationId":{"id":"Sales"},"hasQueue":true,"queueType":5,"isAcdEmailRoutingActive":false},
        {"configurationId":{"id":"Ring"},"hasQueue":true,"queueType":2},
        {"configurationId":{}}
        ]}),
        skills: json!({"items":[{"configurationId":{"id":"English"}},{"configurationId":{"id":"Billing"}}]}),
        ..CicState::default()
    };
    state.interactions.insert(
        "1001".into(),
        json!({"attributes":{"Eic_State":"C","SF_CaseId":"5001"}}),
    );
    state
        .interactions
        .insert("1002".into(), json!({"Eic_State":"A"}));
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    assert!(connected(&next_event(&mut rx).await));

    assert_eq!(
        icws.workgroups().await.unwrap(),
        vec![
            WorkgroupInfo {
                name: "Support".into(),
                acd_email: true
            },
            WorkgroupInfo {
                name: "Sales".into(),
                acd_email: false
            },
            WorkgroupInfo {
                name: "Ring".into(),
                acd_email: false
            },
        ]
    );
    let wg_req = &cic.st().find("GET", "/configuration/workgroups")[0];
    assert!(
        wg_req
            .query
            .contains("select=hasQueue%2CqueueType%2CisAcdEmailRoutingActive"),
        "{}",
        wg_req.query
    );
    assert_eq!(
        icws.skills().await.unwrap(),
        vec!["English".to_owned(), "Billing".to_owned()]
    );

    let wrapped = icws
        .interaction(&InteractionId::new("1001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        wrapped,
        HashMap::from([
            ("Eic_State".to_owned(), "C".to_owned()),
            ("SF_CaseId".to_owned(), "5001".to_owned())
        ])
    );
    let flat = icws
        .interaction(&InteractionId::new("1002"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flat.get("Eic_State").map(String::as_str), Some("A"));
    assert_eq!(
        icws.interaction(&InteractionId::new("404")).await.unwrap(),
        None
    );
    let get = &cic.st().find("GET", "/interactions/1001")[0];
    assert!(
        get.query.starts_with("select=SF_RoutingEntryId"),
        "{}",
        get.query
    );
}

#[tokio::test]
async fn shutdown_deletes_subscriptions_and_the_session() {
    let mut state = CicState::default();
    state.snapshots.insert("Support".into(), json!([]));
    let cic = MiniCic::start(state).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    icws.set_watched_workgroups(vec!["Support".into()])
        .await
        .unwrap();
    wait_event(&mut rx, "snapshot", |e| {
        matches!(e, IcwsEvent::Snapshot { .. })
    })
    .await;

    tokio::time::timeout(DEADLINE, icws.shutdown())
        .await
        .expect("shutdown finished");
    {
        let st = cic.st();
        assert_eq!(
            st.count(
                "DELETE",
                "/icws/29113001/messaging/subscriptions/queues/sors-wg-Support"
            ),
            1
        );
        assert_eq!(
            st.count(
                "DELETE",
                "/icws/29113001/messaging/subscriptions/system/handler-sent-notifications"
            ),
            1
        );
        assert_eq!(st.count("DELETE", "/icws/29113001/connection"), 1);
    }
    assert!(!icws.status().connected);
    assert!(matches!(icws.skills().await, Err(IcwsError::Shutdown)));
}

#[tokio::test]
async fn the_health_check_notices_a_dead_session_behind_a_silent_stream() {
    let cic = MiniCic::start(CicState {
        messaging_version: 2,
        ..CicState::default()
    })
    .await;
    let mut cfg = config(vec![cic.url()], MessagingMode::Sse);
    cfg.health_check_interval = Duration::from_millis(100);
    let (_icws, mut rx) = start_client(cfg).await;
    assert!(connected(&next_event(&mut rx).await));
    cic.wait("SSE stream open", CicState::sse_open).await;
    cic.st().kill_session(false);
    let lost = next_event(&mut rx).await;
    assert!(
        matches!(&lost, IcwsEvent::Lost { generation: 1, reason } if reason.contains("health check")),
        "{lost:?}"
    );
    assert!(matches!(
        next_event(&mut rx).await,
        IcwsEvent::Connected { generation: 2, .. }
    ));
    assert!(cic.st().count("GET", "/icws/29113001/connection") >= 1);
}

#[tokio::test]
async fn invalid_configuration_is_refused_at_start() {
    let no_servers = config(vec![], MessagingMode::Auto);
    assert!(matches!(
        sors_icws::Icws::start(no_servers),
        Err(IcwsError::Config(_))
    ));
    let bad_server = config(vec!["ftp://x".into()], MessagingMode::Auto);
    assert!(matches!(
        sors_icws::Icws::start(bad_server),
        Err(IcwsError::Config(_))
    ));
    let mut bad_ca = config(vec!["cicA".into()], MessagingMode::Auto);
    bad_ca.ca_file = Some("/nonexistent/ca.pem".into());
    let err = sors_icws::Icws::start(bad_ca).err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_session() {
    let cic = MiniCic::start(CicState::default()).await;
    let (icws, mut rx) = start_client(config(vec![cic.url()], MessagingMode::Poll)).await;
    assert!(connected(&next_event(&mut rx).await));
    let clone = icws.clone();
    drop(icws);
    assert!(
        clone.status().connected,
        "a remaining clone keeps the client running"
    );
    drop(clone);
    cic.wait("DELETE connection", |s| {
        s.count("DELETE", "/icws/29113001/connection") == 1
    })
    .await;
    // The supervisor is gone: the event channel closes.
    let closed = tokio::time::timeout(DEADLINE, async { while rx.recv().await.is_some() {} }).await;
    assert!(closed.is_ok(), "event channel still open");
}
