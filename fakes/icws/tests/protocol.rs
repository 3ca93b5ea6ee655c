//! Connection, authentication, bad input, configuration and messaging, driven over HTTP.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sors_fake_icws::{CallKind, FailRule, SiteSpec, Which};

fn assert_icws_error(status: StatusCode, body: &Value, want: StatusCode, error_id: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["errorId"], error_id, "{body}");
    assert!(body["errorCode"].is_i64(), "errorCode in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
}

#[tokio::test]
async fn standby_answers_503_naming_the_active_and_the_active_connects() {
    let fake = start(fast_site()).await;
    let resp = raw_connect(
        &fake.backup_url(),
        &connect_body("sors", "sors").to_string(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorId"], "error.server.notAcceptingConnections");
    assert_eq!(
        body["alternateHostList"],
        json!([fake.addr(Which::Primary).to_string()])
    );

    let s = connect(&fake.backup_url()).await;
    assert_eq!(
        s.base,
        fake.primary_url(),
        "followed the 503 to the primary"
    );
    let b = &s.connect_body;
    assert!(
        s.sid.chars().all(|c| c.is_ascii_digit()),
        "numeric session id"
    );
    assert_eq!(b["userID"], "sors");
    assert_eq!(b["icServer"], "cic-primary");
    assert_eq!(
        b["alternateHostList"],
        json!([fake.addr(Which::Backup).to_string()])
    );
    let features = b["features"].as_array().unwrap();
    assert!(features.contains(&json!({"featureId": "messaging", "version": 2})));
    assert!(b["version"]["majorVersion"].is_string());
    assert!(s.cookie.starts_with(&format!("icws_{}=", s.sid)));
    assert!(s.cookie.ends_with("|languageId=en-us"));

    let (status, state) = s.send(Method::GET, "connection", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["connectionState"], 1);
    let (status, so) = s
        .send(Method::GET, "connection/switchover-status", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(so["primaryHost"], fake.addr(Which::Primary).to_string());
    assert_eq!(so["backupHost"], fake.addr(Which::Backup).to_string());
    let c = fake.counters();
    assert_eq!((c.connects, c.connects_refused), (1, 2));
    fake.shutdown().await;
}

#[tokio::test]
async fn connect_headers_cookie_and_media_type() {
    let fake = start(fast_site()).await;
    let resp = raw_connect(
        &fake.primary_url(),
        &connect_body("sors", "sors").to_string(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let h = resp.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with(ICWS_JSON));
    let sid = h["ININ-ICWS-Session-ID"].to_str().unwrap().to_owned();
    let csrf = h["ININ-ICWS-CSRF-Token"].to_str().unwrap().to_owned();
    let cookie = h["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.ends_with(&format!("; Path=/icws/{sid}; HttpOnly")),
        "{cookie}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sessionId"], sid.as_str());
    assert_eq!(body["csrfToken"], csrf.as_str());

    // Plain application/json is accepted too.
    let resp = http()
        .post(format!("{}/icws/connection", fake.primary_url()))
        .header("Content-Type", "application/json")
        .body(connect_body("sors", "sors").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    fake.shutdown().await;
}

#[tokio::test]
async fn bad_connects_get_icws_errors() {
    let fake = start(fast_site()).await;
    let base = fake.primary_url();
    let check = |resp: reqwest::Response| async move {
        let status = resp.status();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(ICWS_JSON));
        (status, resp.json::<Value>().await.unwrap())
    };

    let (st, b) = check(raw_connect(&base, &connect_body("sors", "wrong").to_string()).await).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.connection.authenticationFailure",
    );
    assert_eq!(b["errorCode"], -2147221503);

    let mut missing = connect_body("sors", "sors");
    missing.as_object_mut().unwrap().remove("userID");
    let (st, b) = check(raw_connect(&base, &missing.to_string()).await).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.missingProperty",
    );
    assert_eq!(b["propertyName"], "userID");

    let mut odd = connect_body("sors", "sors");
    odd["__type"] = json!("urn:inin.com:connection:somethingElse");
    let (st, b) = check(raw_connect(&base, &odd.to_string()).await).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.connection.unsupportedType",
    );

    let (st, b) = check(raw_connect(&base, "{\"__type\": ").await).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.invalidRepresentation",
    );

    let (st, b) = check(raw_connect(&base, "[1,2]").await).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.invalidRepresentation",
    );

    // Still serving.
    connect(&base).await;
    fake.shutdown().await;
}

#[tokio::test]
async fn session_calls_need_cookie_and_csrf() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    let www = r#"ICWS realm="ICWS" location="/ICWS/connection""#;

    // Missing CSRF header → 401 (errorCode 2).
    let resp = s
        .http
        .get(s.url("connection"))
        .header("Cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], www);
    let b: Value = resp.json().await.unwrap();
    assert_icws_error(
        StatusCode::UNAUTHORIZED,
        &b,
        StatusCode::UNAUTHORIZED,
        "error.request.connection.authenticationFailure",
    );
    assert_eq!(b["errorCode"], 2);

    // Wrong cookie → 401 (errorCode 1).
    let resp = s
        .http
        .get(s.url("connection"))
        .header("Cookie", format!("icws_{}=nope|languageId=en-us", s.sid))
        .header("ININ-ICWS-CSRF-Token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], www);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], 1);

    // Unknown session → 401.
    let mut ghost = s.clone();
    ghost.sid = "999".into();
    let (st, b) = ghost.send(Method::GET, "connection", None).await;
    assert_icws_error(
        st,
        &b,
        StatusCode::UNAUTHORIZED,
        "error.request.connection.authenticationFailure",
    );

    // The same session on the other server is unknown there.
    let mut elsewhere = s.clone();
    elsewhere.base = fake.backup_url();
    let (st, _) = elsewhere.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Messages need the cookie only.
    let (st, msgs) = s.poll().await;
    assert_eq!(st, StatusCode::OK);
    assert!(msgs.is_empty());

    // Logout ends the session.
    let (st, _) = s.send(Method::DELETE, "connection", None).await;
    assert!(st.is_success());
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    fake.shutdown().await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let mut site = fast_site();
    site.timings.session_idle_ttl = Duration::from_millis(100);
    let fake = start(site).await;
    let s = connect(&fake.primary_url()).await;
    // Sleeping past the configured TTL is the behaviour under test, not a wait for a result.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    fake.shutdown().await;
}

#[tokio::test]
async fn bad_session_requests_get_icws_errors() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;

    // Malformed JSON.
    let resp = s
        .request(Method::POST, "system/handler-notification")
        .header("Content-Type", ICWS_JSON)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["errorId"], "error.request.invalidRepresentation");

    // Unknown __type on a handler notification.
    let (st, b) = s
        .send(
            Method::POST,
            "system/handler-notification",
            Some(json!({"__type": "urn:inin.com:system:nope", "objectId": "x", "eventId": "y", "data": []})),
        )
        .await;
    assert_icws_error(st, &b, StatusCode::BAD_REQUEST, "error.request.invalidType");

    // Missing data.
    let (st, b) = s
        .send(
            Method::POST,
            "system/handler-notification",
            Some(json!({"objectId": "x", "eventId": "y"})),
        )
        .await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.missingProperty",
    );
    assert_eq!(b["propertyName"], "data");

    // Unknown queue type, unsupported queue type, unknown queue name.
    for (queues, id) in [
        (
            json!([{"queueType": 7, "queueName": "Support_EN"}]),
            "error.request.queue.invalidQueueType",
        ),
        (
            json!([{"queueType": 3, "queueName": "Support_EN"}]),
            "error.request.queue.unsupportedQueueType",
        ),
        (
            json!([{"queueType": 2, "queueName": "Nope"}]),
            "error.request.queue.notFound",
        ),
        (
            json!([{"queueType": "two", "queueName": "Support_EN"}]),
            "error.request.invalidRepresentation",
        ),
    ] {
        let (st, b) = s
            .send(
                Method::PUT,
                "messaging/subscriptions/queues/w1",
                Some(json!({"queueIds": queues, "attributeNames": ["Eic_State"]})),
            )
            .await;
        assert_icws_error(st, &b, StatusCode::BAD_REQUEST, id);
    }

    // Wrong media type.
    let resp = s
        .request(Method::POST, "system/handler-notification")
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Unknown interaction, unknown resource.
    let (st, b) = s.send(Method::GET, "interactions/1234567890", None).await;
    assert_icws_error(st, &b, StatusCode::NOT_FOUND, "error.interaction.notFound");
    let (st, b) = s
        .send(Method::POST, "interactions/1234567890/disconnect", None)
        .await;
    assert_icws_error(st, &b, StatusCode::NOT_FOUND, "error.interaction.notFound");
    let (st, b) = s.send(Method::GET, "no/such/thing", None).await;
    assert_icws_error(st, &b, StatusCode::NOT_FOUND, "error.request.notFound");

    // The session is still fine.
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::OK);
    fake.shutdown().await;
}

#[tokio::test]
async fn configuration_lists_select_and_where() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;

    let (st, b) = s.send(Method::GET, "configuration/workgroups", None).await;
    assert_eq!(st, StatusCode::OK);
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[0].as_object().unwrap().len(),
        1,
        "only configurationId without select"
    );
    assert_eq!(items[0]["configurationId"]["id"], "Support_EN");

    let (_, b) = s
        .send(
            Method::GET,
            "configuration/workgroups?select=*&where=configurationId.id%20eq%20operators",
            None,
        )
        .await;
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["queueType"], 5);
    assert_eq!(items[0]["hasQueue"], true);
    assert_eq!(items[0]["isAcdEmailRoutingActive"], false);

    let (_, b) = s
        .send(Method::GET, "configuration/workgroups?select=members,isAcdEmailRoutingActive&where=configurationId.id%20sw%20Support", None)
        .await;
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].get("queueType").is_none());
    assert_eq!(items[0]["members"].as_array().unwrap().len(), 4);

    let (_, b) = s
        .send(
            Method::GET,
            "configuration/skills?select=userAssignments",
            None,
        )
        .await;
    let premium = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["configurationId"]["id"] == "Premium")
        .unwrap()
        .clone();
    assert_eq!(premium["userAssignments"][0]["id"]["id"], "agent2");

    let (_, b) = s
        .send(
            Method::GET,
            "configuration/users?select=skills&where=configurationId.id%20ct%20gent3",
            None,
        )
        .await;
    let skills = &b["items"][0]["skills"];
    assert_eq!(skills.as_array().unwrap().len(), 2);

    let (st, b) = s
        .send(
            Method::GET,
            "configuration/workgroups?where=hasQueue%20eq%20true",
            None,
        )
        .await;
    assert_icws_error(
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "error.request.invalidWhere",
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn version_and_features_are_sessionless() {
    let fake = start(fast_site()).await;
    let v: Value = http()
        .get(format!("{}/icws/connection/version", fake.primary_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["majorVersion"], "20");
    let f: Value = http()
        .get(format!("{}/icws/connection/features", fake.backup_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        f["featureInfoList"]
            .as_array()
            .unwrap()
            .contains(&json!({"featureId": "queues", "version": 1}))
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn sse_delivers_messages_pings_and_ends_at_switchover() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    let resp = s
        .http
        .get(s.url("messaging/messages"))
        .header("Accept", "text/event-stream")
        .header("Cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut sse = SseReader::new(resp);

    s.watch(
        "wg",
        json!([{"queueType": 2, "queueName": "Support_EN"}]),
        &["Eic_State"],
    )
    .await;
    let first = sse.next_data().await.expect("snapshot event");
    assert_eq!(first["__type"], "urn:inin.com:queues:queueContentsMessage");
    assert_eq!(first["isDelta"], false);

    // Keep-alive comments, exactly `:ping`.
    match sse.next().await {
        Sse::Comment(c) => assert_eq!(c, "ping"),
        other => panic!("expected a :ping, got {other:?}"),
    }

    fake.switchover(None);
    let msg = sse.next_data().await.expect("state change event");
    assert_eq!(
        msg["__type"],
        "urn:inin.com:connection:connectionStateChangeMessage"
    );
    assert_eq!(msg["previousConnectionState"], 1);
    assert_eq!(msg["newConnectionState"], 2);
    assert_eq!(msg["shouldReconnect"], true);
    assert!(
        sse.next_data().await.is_none(),
        "the stream ends after the state message"
    );
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    fake.shutdown().await;
}

#[tokio::test]
async fn injected_failures_and_control_api() {
    let fake = start(fast_site()).await;
    let s = connect(&fake.primary_url()).await;
    let ctl = http();
    let resp = ctl
        .post(format!("{}/__fake/fail-next", fake.backup_url()))
        .json(&json!({"kind": "handler-notification", "count": 1, "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        s.route(&route_data("E-f", "C-f", "Support_EN", "")).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        fake.counters().handler_notifications,
        0,
        "an injected failure has no effect"
    );
    assert_eq!(
        s.route(&route_data("E-f", "C-f", "Support_EN", "")).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(fake.counters().interactions_created, 1);

    fake.fail_next(FailRule {
        kind: CallKind::Connect,
        count: 1,
        status: 503,
    })
    .unwrap();
    let resp = raw_connect(
        &fake.primary_url(),
        &connect_body("sors", "sors").to_string(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        b["alternateHostList"],
        json!([fake.addr(Which::Primary).to_string()])
    );

    fake.fail_next(FailRule {
        kind: CallKind::Any,
        count: 1,
        status: 401,
    })
    .unwrap();
    let resp = s.request(Method::GET, "connection").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert!(
        fake.fail_next(FailRule {
            kind: CallKind::Any,
            count: 1,
            status: 418
        })
        .is_err()
    );

    let bad = ctl
        .post(format!("{}/__fake/fail-next", fake.primary_url()))
        .json(&json!({"kind": "teapot", "count": 1, "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let status: Value = ctl
        .get(format!("{}/__fake/status", fake.backup_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["active"], "primary");
    assert_eq!(status["servers"]["backup"]["running"], true);

    let resp = ctl
        .post(format!("{}/__fake/latency", fake.primary_url()))
        .json(&json!({"ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::OK);

    let ended: Value = ctl
        .post(format!("{}/__fake/end-sessions", fake.primary_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["ended"], 1);
    let (st, _) = s.send(Method::GET, "connection", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    fake.shutdown().await;
}

#[tokio::test]
async fn example_site_file_parses_and_serves() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/site.toml");
    let site = SiteSpec::from_toml_file(path).expect("example site parses");
    assert!(!site.interaction_recovery);
    assert_eq!(site.timings.answer_delay, Duration::from_millis(500));
    let wg = site
        .workgroups
        .iter()
        .find(|w| w.name == "Sales")
        .expect("Sales");
    assert!(wg.routes_acd_email());
    let fake = start(site).await;
    let resp = raw_connect(
        &fake.primary_url(),
        &connect_body("router", "s3cret").to_string(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_password_changed_through_the_control_api_takes_effect_at_the_next_connect() {
    let fake = start(fast_site()).await;
    let base = fake.primary_url();
    let open = connect(&base).await; // a session with the old password
    let r = reqwest::Client::new()
        .post(format!("{base}/__fake/users/sors/password"))
        .body(json!({"password": "n3w"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let old = raw_connect(&base, &connect_body("sors", "sors").to_string()).await;
    assert_eq!(
        old.status(),
        StatusCode::BAD_REQUEST,
        "the old password is refused"
    );
    let new = raw_connect(&base, &connect_body("sors", "n3w").to_string()).await;
    assert_eq!(new.status(), StatusCode::CREATED, "the new one connects");
    let r = reqwest::Client::new()
        .post(format!("{base}/__fake/users/nobody/password"))
        .body(json!({"password": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(fake.set_password("SORS", "again"), "user ids ignore case");
    drop(open);
}
