//! Drives the fake streaming endpoint with plain HTTP (reqwest + cookie store) through every rule.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sors_fake_cometd::{Config, EventType, ForgetAdvice};
use support::{Bayeux, Server, TOKEN, TOPIC, eventually, test_config};

fn error_of(reply: &Value) -> &str {
    reply["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn handshake_advertises_long_polling_only_and_sets_cookies() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let reply = client.handshake_reply().await;
    assert_eq!(reply.status, StatusCode::OK);
    let meta = reply.meta("/meta/handshake");
    assert_eq!(meta["successful"], true);
    assert_eq!(meta["id"], "1");
    assert_eq!(meta["supportedConnectionTypes"], json!(["long-polling"]));
    assert_eq!(meta["ext"], json!({"replay": true, "payload.format": true}));
    assert_eq!(meta["version"], "1.0");
    assert_eq!(
        reply.messages().len(),
        1,
        "a handshake reply carries no events"
    );
    let browser = reply
        .set_cookies
        .iter()
        .find(|c| c.starts_with("BAYEUX_BROWSER="))
        .expect("BAYEUX_BROWSER cookie");
    assert!(browser.contains("HttpOnly"));
    assert!(
        reply
            .set_cookies
            .iter()
            .any(|c| c.starts_with("sfdc-stream=!"))
    );

    // A second handshake: new client id, BAYEUX_BROWSER kept (already in the jar), new route.
    let again = client.handshake_reply().await;
    assert_ne!(
        again.meta("/meta/handshake")["clientId"],
        meta["clientId"],
        "client ids are random"
    );
    assert!(
        !again
            .set_cookies
            .iter()
            .any(|c| c.starts_with("BAYEUX_BROWSER="))
    );
    assert!(
        again
            .set_cookies
            .iter()
            .any(|c| c.starts_with("sfdc-stream="))
    );
    assert_eq!(server.streaming.counters().handshakes, 2);
    assert_eq!(server.streaming.counters().active_clients, 2);
}

#[tokio::test]
async fn all_three_authorization_forms_are_accepted_and_none_is_401() {
    let server = Server::start(test_config()).await;
    for auth in [
        format!("Bearer {TOKEN}"),
        format!("OAuth {TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let mut client = server.client();
        client.auth = Some(auth);
        client.handshake().await;
    }
    let mut client = server.client();
    client.auth = None;
    let reply = client.handshake_reply().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.body,
        json!([{"successful": false, "error": "401::Request requires authentication"}])
    );
}

#[tokio::test]
async fn invalid_token_is_denied_on_handshake_connect_and_subscribe() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;

    server.set_token_valid(false);
    let hs = client.handshake_reply().await.meta("/meta/handshake");
    assert_eq!(hs["successful"], false);
    assert_eq!(hs["error"], "403::Handshake denied");
    assert_eq!(
        hs["ext"]["sfdc"]["failureReason"],
        "401::Authentication invalid"
    );
    assert_eq!(hs["advice"]["reconnect"], "none");

    let connect = client.connect(&id).await.meta("/meta/connect");
    assert_eq!(connect["error"], "401::Authentication invalid");
    assert_eq!(
        connect["advice"],
        json!({"reconnect": "none", "interval": 0})
    );
    assert_eq!(connect["clientId"], id.as_str());

    let sub = client.subscribe(&id, TOPIC, None).await;
    assert_eq!(sub["error"], "401::Authentication invalid");
    assert_eq!(sub["advice"], json!({"reconnect": "none", "interval": 0}));

    // A wrong token (not just a revoked one) is refused the same way.
    server.set_token_valid(true);
    let mut wrong = server.client();
    wrong.auth = Some("Bearer not-a-session".into());
    let hs = wrong.handshake_reply().await.meta("/meta/handshake");
    assert_eq!(hs["error"], "403::Handshake denied");
}

#[tokio::test]
async fn first_connect_is_immediate_with_advice_later_ones_are_held() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.handshake().await;
    let first = client.connect(&id).await.meta("/meta/connect");
    assert_eq!(first["successful"], true);
    assert_eq!(first["id"], "c");
    assert_eq!(
        first["advice"],
        json!({"interval": 0, "timeout": 1000, "reconnect": "retry"})
    );

    // No event: the held connect ends after connect_hold, successful and without advice.
    let second = client.connect(&id).await;
    assert_eq!(second.messages().len(), 1);
    let meta = second.meta("/meta/connect");
    assert_eq!(meta["successful"], true);
    assert!(meta.get("advice").is_none());
}

#[tokio::test]
async fn events_ride_in_the_connect_reply_before_the_connect_message() {
    let server = Server::start(Config {
        connect_hold: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let client = server.client();
    let id = client.connected().await;
    assert_eq!(client.subscribe(&id, TOPIC, None).await["successful"], true);

    let held = tokio::spawn({
        let client = client.clone();
        let id = id.clone();
        async move { client.connect(&id).await }
    });
    let replay_id = server
        .streaming
        .publish(
            TOPIC,
            EventType::Created,
            json!({"Id": "a0B1", "Case__c": "500x"}),
        )
        .expect("published");
    let reply = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the held connect returns early with the event")
        .expect("join");
    let messages = reply.messages();
    assert_eq!(messages.len(), 2, "{}", reply.body);
    let event = &messages[0];
    assert_eq!(event["channel"], TOPIC);
    assert_eq!(event["clientId"], id.as_str());
    assert_eq!(event["data"]["event"]["replayId"], replay_id);
    assert_eq!(event["data"]["event"]["type"], "created");
    assert_eq!(
        event["data"]["sobject"],
        json!({"Id": "a0B1", "Case__c": "500x"})
    );
    let created = event["data"]["event"]["createdDate"].as_str().unwrap_or("");
    assert!(
        created.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "createdDate {created}"
    );
    assert_eq!(messages[1]["channel"], "/meta/connect");
    assert_eq!(messages[1]["successful"], true);
    let counters = server.streaming.counters();
    assert_eq!((counters.published, counters.delivered), (1, 1));
}

#[tokio::test]
async fn connect_without_browser_cookie_or_with_another_transport_fails() {
    let server = Server::start(test_config()).await;
    let jarless = Bayeux::new(&server.url(), false);
    let id = jarless.handshake().await;
    let reply = jarless.connect(&id).await.meta("/meta/connect");
    assert_eq!(reply["successful"], false);
    assert_eq!(
        reply["error"],
        format!("400::Client {id} has established a session, but no BAYEUX_BROWSER cookie present")
    );

    let client = server.client();
    let id = client.handshake().await;
    let reply = client
        .post(json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "w"}]))
        .await
        .meta("/meta/connect");
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["id"], "w");
    assert!(
        error_of(&reply).starts_with("400::Invalid connection type"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_second_connect_releases_the_held_one() {
    let server = Server::start(Config {
        connect_hold: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let client = server.client();
    let id = client.connected().await;
    client.subscribe(&id, TOPIC, None).await;

    let spawn_connect = || {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move { client.connect(&id).await })
    };
    let mut a = spawn_connect();
    let mut b = spawn_connect();
    // Whichever reached the server first is released by the other (long before 30 s)…
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            r = &mut a => (r, true),
            r = &mut b => (r, false),
        }
    })
    .await
    .expect("one of two connects is released at once");
    let (first_reply, a_first) = first;
    let first_reply = first_reply.expect("join");
    assert_eq!(first_reply.meta("/meta/connect")["successful"], true);
    assert!(first_reply.events().is_empty());
    // …and the other is the one held connect that gets the next event.
    server
        .streaming
        .publish(TOPIC, EventType::Updated, json!({"Id": "x"}));
    let other = if a_first { b } else { a };
    let second = tokio::time::timeout(Duration::from_secs(20), other)
        .await
        .expect("the remaining held connect gets the event")
        .expect("join");
    assert_eq!(second.events().len(), 1);
}

#[tokio::test]
async fn subscribe_works_on_a_second_connection_while_a_connect_is_held() {
    let server = Server::start(Config {
        connect_hold: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let client = server.client();
    let id = client.connected().await;
    let held = tokio::spawn({
        let client = client.clone();
        let id = id.clone();
        async move { client.connect(&id).await }
    });
    let sub = client.subscribe_from(&id, TOPIC, -1).await;
    assert_eq!(sub["successful"], true);
    assert_eq!(sub["subscription"], TOPIC);
    assert_eq!(sub["clientId"], id.as_str());
    assert!(
        !held.is_finished(),
        "the connect is still held (hold is 30 s)"
    );
    let replay_id = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({"Id": "y"}));
    let reply = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("event delivered")
        .expect("join");
    assert_eq!(reply.replay_ids(), vec![replay_id.expect("id")]);
}

#[tokio::test]
async fn a_client_that_stops_connecting_expires() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;
    assert_eq!(server.streaming.counters().active_clients, 1);
    eventually("the client expires after reconnect_expiry", || async {
        (server.streaming.counters().active_clients == 0).then_some(())
    })
    .await;
    let reply = client.connect(&id).await.meta("/meta/connect");
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "403::Unknown client");
    assert_eq!(
        reply["advice"],
        json!({"reconnect": "handshake", "interval": 0})
    );
    assert!(reply.get("clientId").is_none());
}

#[tokio::test]
async fn a_client_in_its_connect_loop_does_not_expire() {
    // Hold (1 s) and expiry (2 s): five held connects in a row span longer than the expiry.
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;
    for _ in 0..5 {
        let reply = client.connect(&id).await.meta("/meta/connect");
        assert_eq!(reply["successful"], true, "{reply}");
    }
    assert_eq!(server.streaming.counters().active_clients, 1);
}

#[tokio::test]
async fn forget_clients_gives_the_chosen_advice_and_releases_held_connects() {
    let server = Server::start(Config {
        connect_hold: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let client = server.client();
    let id = client.connected().await;
    let held = tokio::spawn({
        let client = client.clone();
        let id = id.clone();
        async move { client.connect(&id).await }
    });
    // Held or not yet arrived: either way the connect is answered with 403 at once.
    server.streaming.forget_clients(ForgetAdvice::Handshake);
    let reply = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("held connect answered at once")
        .expect("join")
        .meta("/meta/connect");
    assert_eq!(reply["error"], "403::Unknown client");
    assert_eq!(
        reply["advice"],
        json!({"reconnect": "handshake", "interval": 0})
    );
    assert_eq!(server.streaming.counters().active_clients, 0);
    let sub = client.subscribe(&id, TOPIC, None).await;
    assert_eq!(sub["error"], "403::Unknown client");

    let id2 = client.connected().await;
    server.streaming.forget_clients(ForgetAdvice::None);
    let reply = client.connect(&id2).await.meta("/meta/connect");
    assert_eq!(reply["error"], "403::Unknown client");
    assert_eq!(reply["advice"], json!({"reconnect": "none", "interval": 0}));
    // A forgotten client is really gone: events are not queued for it.
    server
        .streaming
        .publish(TOPIC, EventType::Created, json!({"Id": "z"}));
    assert_eq!(server.streaming.counters().delivered, 0);
}

#[tokio::test]
async fn replay_minus_two_n_and_minus_one() {
    let server = Server::start(test_config()).await;
    let p = |n: u32| {
        server
            .streaming
            .publish(TOPIC, EventType::Created, json!({"Id": n}))
            .expect("published")
    };
    let ids = [p(1), p(2), p(3)];
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
    assert!(
        ids.windows(2).all(|w| w[1] - w[0] > 1),
        "ids are not contiguous: {ids:?}"
    );

    let client = server.client();
    let all = client.connected().await;
    assert_eq!(
        client.subscribe_from(&all, TOPIC, -2).await["successful"],
        true
    );
    assert_eq!(client.connect(&all).await.replay_ids(), ids.to_vec());

    let after = client.connected().await;
    assert_eq!(
        client.subscribe_from(&after, TOPIC, ids[0]).await["successful"],
        true
    );
    assert_eq!(client.connect(&after).await.replay_ids(), ids[1..].to_vec());

    let latest = client.connected().await;
    assert_eq!(
        client.subscribe_from(&latest, TOPIC, ids[2]).await["successful"],
        true
    );
    let new_only = client.connected().await;
    assert_eq!(
        client.subscribe_from(&new_only, TOPIC, -1).await["successful"],
        true
    );
    let no_ext = client.connected().await;
    assert_eq!(
        client.subscribe(&no_ext, TOPIC, None).await["successful"],
        true
    );
    let fourth = p(4);
    for id in [&latest, &new_only, &no_ext] {
        assert_eq!(client.connect(id).await.replay_ids(), vec![fourth]);
    }
}

#[tokio::test]
async fn replay_errors_have_salesforce_texts() {
    let server = Server::start(test_config()).await;
    let first = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}))
        .expect("id");
    let latest = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}))
        .expect("id");
    let client = server.client();
    let id = client.connected().await;

    let other = client
        .subscribe(&id, TOPIC, Some(json!({"replay": {"/topic/Other": -1}})))
        .await;
    assert_eq!(other["successful"], false);
    assert_eq!(other["subscription"], TOPIC);
    assert_eq!(
        other["error"],
        "400::The replayId for channel {/topic/ObjectRoutingQueue} wasn't found using the provided replay ID map {{/topic/Other=-1}}. Ensure that the channel name you provided in the replay map is valid and matches the channel name used for subscribing."
    );
    let empty = client
        .subscribe(&id, TOPIC, Some(json!({"replay": {}})))
        .await;
    assert!(error_of(&empty).contains("replay ID map {{}}"), "{empty}");

    for bad in [first + 1, latest + 50, first - 1, -7] {
        let reply = client.subscribe_from(&id, TOPIC, bad).await;
        assert_eq!(
            reply["error"],
            format!(
                "400::The replayId {{{bad}}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
            )
        );
    }

    let missing = client.subscribe_from(&id, "/topic/Missing", -1).await;
    assert_eq!(
        missing["error"],
        "400::The channel you requested to subscribe to does not exist {/topic/Missing}"
    );
    // A failed subscribe subscribes nothing: the next event reaches nobody.
    server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}));
    assert!(client.connect(&id).await.events().is_empty());
}

#[tokio::test]
async fn filtered_subscriptions_use_the_bare_channel_for_replay() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;
    let filtered = format!("{TOPIC}?Event__c=Route");
    let reply = client
        .subscribe(&id, &filtered, Some(json!({"replay": {TOPIC: -1}})))
        .await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["subscription"], filtered.as_str());
    let rid = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}));
    assert_eq!(
        client.connect(&id).await.replay_ids(),
        vec![rid.expect("id")]
    );
}

#[tokio::test]
async fn reset_and_clear_channel_invalidate_replay_ids() {
    let server = Server::start(test_config()).await;
    server
        .channels
        .lock()
        .expect("lock")
        .insert("/topic/B".into());
    let a = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}))
        .expect("id");
    let b = server
        .streaming
        .publish("/topic/B", EventType::Created, json!({}))
        .expect("id");
    let client = server.client();
    let id = client.connected().await;
    // An id of another channel is not valid for this one.
    assert!(
        error_of(&client.subscribe_from(&id, TOPIC, b).await).starts_with("400::The replayId {")
    );

    server.streaming.clear_channel(TOPIC);
    assert!(
        error_of(&client.subscribe_from(&id, TOPIC, a).await).starts_with("400::The replayId {")
    );
    assert_eq!(
        client.subscribe_from(&id, "/topic/B", b).await["successful"],
        true
    );

    server.streaming.reset();
    let reply = client.connect(&id).await.meta("/meta/connect");
    assert_eq!(reply["error"], "403::Unknown client");
    assert_eq!(reply["advice"]["reconnect"], "handshake");
    let id = client.connected().await;
    assert!(
        error_of(&client.subscribe_from(&id, "/topic/B", b).await)
            .starts_with("400::The replayId {")
    );
    assert_eq!(
        client.subscribe_from(&id, "/topic/B", -2).await["successful"],
        true
    );
    let fresh = server
        .streaming
        .publish("/topic/B", EventType::Created, json!({}));
    assert!(fresh.expect("id") > b);
    assert_eq!(
        client.connect(&id).await.replay_ids(),
        vec![fresh.expect("id")]
    );
}

#[tokio::test]
async fn dropped_pushes_are_neither_stored_nor_delivered() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;
    client.subscribe_from(&id, TOPIC, -1).await;
    server.streaming.set_drop_pushes(true);
    assert_eq!(
        server
            .streaming
            .publish(TOPIC, EventType::Created, json!({})),
        None
    );
    assert!(client.connect(&id).await.events().is_empty());
    let late = client.connected().await;
    client.subscribe_from(&late, TOPIC, -2).await;
    assert!(client.connect(&late).await.events().is_empty());
    server.streaming.set_drop_pushes(false);
    assert!(
        server
            .streaming
            .publish(TOPIC, EventType::Created, json!({}))
            .is_some()
    );
    let counters = server.streaming.counters();
    assert_eq!((counters.dropped, counters.published), (1, 1));
}

#[tokio::test]
async fn retention_purges_old_events() {
    let server = Server::start(Config {
        retention: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let old = server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}))
        .expect("id");
    let client = server.client();
    let id = client.connected().await;
    eventually("the event leaves the retention window", || async {
        let reply = client.subscribe_from(&id, TOPIC, old).await;
        (reply["successful"] == false).then_some(())
    })
    .await;
    client.subscribe_from(&id, TOPIC, -2).await;
    assert!(client.connect(&id).await.events().is_empty());
}

#[tokio::test]
async fn unsubscribe_and_disconnect() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let id = client.connected().await;
    client.subscribe(&id, TOPIC, None).await;
    let reply = client
        .post(json!([{"channel": "/meta/unsubscribe", "clientId": id, "subscription": TOPIC, "id": "u"}]))
        .await
        .meta("/meta/unsubscribe");
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["subscription"], TOPIC);
    server
        .streaming
        .publish(TOPIC, EventType::Created, json!({}));
    assert!(client.connect(&id).await.events().is_empty());

    let reply = client
        .post(json!([{"channel": "/meta/disconnect", "clientId": id, "id": "d"}]))
        .await
        .meta("/meta/disconnect");
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["id"], "d");
    assert_eq!(server.streaming.counters().active_clients, 0);
    assert_eq!(
        client.connect(&id).await.meta("/meta/connect")["error"],
        "403::Unknown client"
    );
}

#[tokio::test]
async fn versions_paths_and_body_formats() {
    let server = Server::start(test_config()).await;
    let client = server.client();
    let handshake = br#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let post = |path: &str, content_type: &'static str, body: &[u8]| {
        let url = format!("{}{path}", server.base);
        let client = client.clone();
        let body = body.to_vec();
        async move { client.post_raw(&url, content_type, body).await }
    };

    for path in [
        "/cometd/37.0",
        "/cometd/66.0",
        "/cometd/58",
        "/cometd/58.0/",
        "/cometd/58/handshake",
    ] {
        let reply = post(path, "application/json", handshake).await;
        assert_eq!(reply.meta("/meta/handshake")["successful"], true, "{path}");
    }
    for (path, text) in [
        (
            "/cometd/36.0",
            "400::Unsupported API version. Only API versions '37.0' and later are supported. URI format: '/cometd/66.0'",
        ),
        (
            "/cometd/67.0",
            "400::Unsupported API version. Only API versions '37.0' and later are supported. URI format: '/cometd/66.0'",
        ),
        (
            "/cometd/abc",
            "400::API version in the URI is mandatory. URI format: '/cometd/66.0'",
        ),
        (
            "/cometd/replay/36.0",
            "400::API version in the URI is mandatory. URI format: '/cometd/66.0'",
        ),
        (
            "/cometd",
            "400::API version in the URI is mandatory. URI format: '/cometd/66.0'",
        ),
    ] {
        let reply = post(path, "application/json", handshake).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.body[0]["error"], text, "{path}");
    }

    // One message object instead of an array; the form-encoded `message=` body.
    let single = post(
        "/cometd/58.0",
        "application/json",
        &handshake[1..handshake.len() - 1],
    )
    .await;
    assert_eq!(single.meta("/meta/handshake")["successful"], true);
    let form = format!(
        "message={}",
        "%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C%22version%22%3A%221.0%22%7D%5D"
    );
    let reply = post(
        "/cometd/58.0",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )
    .await;
    assert_eq!(reply.meta("/meta/handshake")["successful"], true);

    // Too large: 413 before anything else is looked at.
    let mut big = handshake.to_vec();
    big.extend(std::iter::repeat_n(b' ', 32_768));
    let reply = post("/cometd/58.0", "application/json", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body[0]["error"], "413::Maximum Request Size Exceeded");

    // The REST route the endpoint was merged with still answers.
    let rest = client
        .http
        .get(format!("{}/services/data", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(rest.text().await.expect("body"), "rest");
}

#[tokio::test]
async fn bad_messages_get_bayeux_errors_and_the_server_carries_on() {
    let server = Server::start(test_config()).await;
    let client = server.client();

    let reply = client
        .post_raw(
            &server.url(),
            "application/json",
            b"[{\"channel\":".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body[0]["successful"], false);
    assert!(
        reply.body[0]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("400::Malformed request")
    );

    let reply = client
        .post(json!([
            "not an object",
            {"id": "n"},
            {"channel": "/meta/nope", "id": "m"},
            {"channel": "/topic/ObjectRoutingQueue", "data": {}, "id": "p"},
            {"channel": "/meta/connect", "connectionType": "long-polling", "id": "x"},
            {"channel": "/meta/subscribe", "subscription": TOPIC, "id": "y"},
        ]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let m = reply.messages();
    assert_eq!(m.len(), 6, "{}", reply.body);
    assert!(m.iter().all(|r| r["successful"] == false), "{}", reply.body);
    assert_eq!(m[0]["error"], "400::Message must be a JSON object");
    assert_eq!(
        (m[1]["id"].clone(), m[1]["error"].clone()),
        (json!("n"), json!("400::Channel name not specified"))
    );
    assert_eq!(m[2]["error"], "400::Unknown meta channel /meta/nope");
    assert!(error_of(&m[3]).starts_with("403::"));
    assert_eq!(m[4]["error"], "403::Unknown client");
    assert_eq!(m[4]["advice"]["reconnect"], "handshake");
    assert_eq!(m[5]["error"], "403::Unknown client");

    let id = client.handshake().await;
    let no_sub = client
        .post(json!([{"channel": "/meta/subscribe", "clientId": id, "id": "z"}]))
        .await
        .meta("/meta/subscribe");
    assert_eq!(no_sub["error"], "400::Channel name not specified");
    // Still serving.
    assert_eq!(
        client.connect(&id).await.meta("/meta/connect")["successful"],
        true
    );
}

#[tokio::test]
async fn a_connect_asking_for_timeout_zero_is_not_held() {
    // CometD clients send advice.timeout=0 after a lost connection to be answered at once.
    let server = Server::start(Config {
        connect_hold: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let client = server.client();
    let id = client.connected().await;
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        client.post(json!([{
            "channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
            "id": "t0", "advice": {"timeout": 0}
        }])),
    )
    .await
    .expect("answered without the 60 s hold");
    assert_eq!(reply.meta("/meta/connect")["successful"], true);
}
