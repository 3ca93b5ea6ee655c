//! REST behaviour against wiremock: paging, shared re-login, retries, collections, PushTopic,
//! malformed records and the domain operations' wire format.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{Value, json};
use sors_core::model::{CaseId, NewRoutingRow, RowEvent, RowId, RowStatus, RowUpdate, WriteResult};
use sors_salesforce::{PushTopicOutcome, SfError};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

async fn server_with_login(token: &str) -> MockServer {
    init_tracing();
    let s = MockServer::start().await;
    mount_soap_login(&s, &s.uri(), token).await;
    s
}

fn login_count(reqs: &[Request]) -> usize {
    reqs.iter().filter(|r| r.url.path() == SOAP_PATH).count()
}

#[tokio::test]
async fn query_pages_through_next_records_url_and_reads_limit_info() {
    let s = server_with_login("T").await;
    let next = format!("{DATA}/query/01gRO0000016PIAYA2-2000");
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(query_param(
            "q",
            "SELECT Id, CreatedDate, Case__c, Event__c, Status__c, Salesforce_Queue_Id__c, Workgroup__c, Skills__c, Case_Number__c, Subject__c, From_Address__c, From_Name__c, Attempts__c, Interaction_Id__c, Error__c FROM Object_Routing_Queue__c WHERE Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id",
        ))
        .and(header("Sforce-Query-Options", "batchSize=2000"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Sforce-Limit-Info", "api-usage=10/15000")
                .set_body_json(query_page(
                    vec![
                        row("a01", "500A", "New", "2024-01-02T03:04:05.000+0000"),
                        row("a02", "500A", "Processing", "2024-01-02T03:04:06.000+0000"),
                    ],
                    Some(&next),
                )),
        )
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(&next))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Sforce-Limit-Info", "api-usage=11/15000")
                .set_body_json(query_page(
                    vec![row("a03", "500B", "New", "2024-01-02T03:04:07Z")],
                    None,
                )),
        )
        .expect(1)
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let rows = sf.pending_rows().await.expect("rows");
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a01", "a02", "a03"]);
    assert_eq!(rows[1].status, RowStatus::Processing);
    assert_eq!(rows[0].case_id, Some(CaseId::from("500A")));
    assert_eq!(rows[0].skills, "English;Billing");
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(
        rows[2].created_date,
        Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 7)
            .single()
            .expect("date")
    );
    let st = sf.stats();
    assert_eq!((st.api_used, st.api_max), (Some(11), Some(15000)));
    assert_eq!(st.calls, 2);
}

#[tokio::test]
async fn a_scan_keeps_the_first_rows_in_full_and_only_the_ids_of_the_rest_across_pages() {
    let s = server_with_login("T").await;
    let next = format!("{DATA}/query/01gRO0000016PIAYA2-2");
    let first = vec![
        row("a01", "500A", "New", "2024-01-02T03:04:05Z"),
        row("a02", "500B", "Processing", "2024-01-02T03:04:06Z"),
    ];
    let second = vec![
        row("a03", "500C", "New", "2024-01-02T03:04:07Z"),
        json!({"Status__c": "New"}),
        row("a04", "500D", "New", "2024-01-02T03:04:08Z"),
    ];
    for (at, records, more) in [
        (format!("{DATA}/query"), first, Some(next.as_str())),
        (next.clone(), second, None),
    ] {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(query_page(records, more)))
            .expect(1)
            .mount(&s)
            .await;
    }
    let scan = client(&s.uri()).pending_scan(3).await.expect("scan");
    let full: Vec<&str> = scan.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        full,
        ["a01", "a02", "a03"],
        "the first 3 rows, across pages"
    );
    assert_eq!(scan.rows[2].case_id, Some(CaseId::from("500C")));
    assert_eq!(
        scan.more,
        [RowId::from("a04")],
        "the rest as ids, oldest first; a record without an id is skipped"
    );
}

#[tokio::test]
async fn malformed_records_do_not_fail_the_page() {
    let s = server_with_login("T").await;
    let mut bad_date = row("a02", "500A", "New", "not a date");
    bad_date["Event__c"] = json!("Nonsense");
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(
            vec![
                row("a01", "500A", "New", "2024-01-02T03:04:05.000+0000"),
                bad_date,
                row("a03", "500A", "Exploded", "2024-01-02T03:04:05.000+0000"),
                json!({"Status__c": "New"}),
                json!("not an object"),
            ],
            None,
        )))
        .mount(&s)
        .await;
    let rows = client(&s.uri()).pending_rows().await.expect("page kept");
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a01", "a02"]);
    assert_eq!(rows[1].event, "Nonsense");
}

/// The first login hands out T1, every later one T2; the instance accepts only T2.
async fn expiring_session_server() -> MockServer {
    init_tracing();
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(soap_ok(&s.uri(), "T1")))
        .up_to_n_times(1)
        .mount(&s)
        .await;
    mount_soap_login(&s, &s.uri(), "T2").await;
    Mock::given(method("GET"))
        .and(header("Authorization", "Bearer T1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!([{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]),
        ))
        .mount(&s)
        .await;
    s
}

#[tokio::test]
async fn concurrent_401s_share_one_relogin_then_retry_once() {
    let s = expiring_session_server().await;
    Mock::given(method("GET"))
        .and(header("Authorization", "Bearer T2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(
            vec![row("a01", "500A", "New", "2024-01-02T03:04:05Z")],
            None,
        )))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let sf = sf.clone();
            tokio::spawn(async move { sf.pending_rows().await })
        })
        .collect();
    for t in tasks {
        let rows = t.await.expect("join").expect("retried after re-login");
        assert_eq!(rows.len(), 1);
    }
    let reqs = s.received_requests().await.unwrap_or_default();
    assert_eq!(login_count(&reqs), 2, "first login + exactly one re-login");
    let st = sf.stats();
    assert_eq!((st.logins, st.relogins), (2, 1));
}

#[tokio::test]
async fn a_second_401_after_a_fresh_login_is_a_hard_error() {
    let s = expiring_session_server().await;
    Mock::given(method("GET"))
        .and(header("Authorization", "Bearer T2"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!([{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]),
        ))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let err = sf.pending_rows().await.expect_err("hard error");
    assert!(matches!(err, SfError::SessionRejected(_)), "{err:?}");
    assert!(!err.to_string().contains("T2"));
    let reqs = s.received_requests().await.unwrap_or_default();
    assert_eq!(login_count(&reqs), 2);
    assert_eq!(
        reqs.iter().filter(|r| r.method.as_str() == "GET").count(),
        2
    );
}

async fn retried_query(status: u16, body: Value) -> (MockServer, sors_salesforce::Salesforce) {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .up_to_n_times(2)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![], None)))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    (s, sf)
}

#[tokio::test]
async fn retries_on_503_limit_and_lock_errors() {
    for (status, body) in [
        (
            503,
            json!([{"message":"busy","errorCode":"SERVER_UNAVAILABLE"}]),
        ),
        (
            403,
            json!([{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]),
        ),
        (429, json!([])),
        (
            400,
            json!([{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]),
        ),
    ] {
        let (s, sf) = retried_query(status, body).await;
        sf.pending_rows().await.expect("succeeds after retries");
        assert_eq!(sf.stats().retries, 2, "status {status}");
        let gets = s.received_requests().await.unwrap_or_default();
        assert_eq!(
            gets.iter().filter(|r| r.method.as_str() == "GET").count(),
            3
        );
    }
}

#[tokio::test]
async fn retries_are_bounded_and_other_errors_are_not_retried() {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .mount(&s)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!([{"message":"bad value","errorCode":"FIELD_CUSTOM_VALIDATION_EXCEPTION","fields":["Status__c"]}]),
        ))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let err = sf.pending_rows().await.expect_err("gives up");
    assert_eq!(err.status(), Some(503));
    assert_eq!(sf.stats().retries, 3, "max_attempts = 4");
    let upd = RowUpdate {
        id: RowId::from("a01"),
        status: RowStatus::Failed,
        attempts: None,
        interaction_id: None,
        error: None,
        processed_at: None,
    };
    let err = sf.update_rows_raw(&[upd]).await.expect_err("whole failure");
    assert_eq!(err.code(), Some("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
    let patches = s.received_requests().await.unwrap_or_default();
    assert_eq!(
        patches
            .iter()
            .filter(|r| r.method.as_str() == "PATCH")
            .count(),
        1
    );
}

#[tokio::test]
async fn single_update_patches_the_row_with_truncated_error_and_iso_date() {
    let s = server_with_login("T").await;
    let long: String = "é".repeat(300);
    Mock::given(method("PATCH"))
        .and(path(format!("{DATA}/sobjects/Object_Routing_Queue__c/a01")))
        .and(body_partial_json(json!({
            "Status__c": "Processed", "Attempts__c": 2, "Interaction_Id__c": "100200",
            "Processed_At__c": "2024-05-06T07:08:09.000Z", "Error__c": "é".repeat(255)
        })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let res = sf
        .update_rows_raw(&[RowUpdate {
            id: RowId::from("a01"),
            status: RowStatus::Processed,
            attempts: Some(2),
            interaction_id: Some("100200".into()),
            error: Some(long),
            processed_at: Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single(),
        }])
        .await
        .expect("written");
    assert_eq!(res.len(), 1);
    assert!(res[0].1.is_ok());
}

fn claim(i: usize) -> RowUpdate {
    RowUpdate {
        id: RowId(format!("a{i:04}")),
        status: RowStatus::Processing,
        attempts: Some(1),
        interaction_id: None,
        error: None,
        processed_at: None,
    }
}

#[tokio::test]
async fn collections_chunk_by_200_and_report_per_record_results() {
    let s = server_with_login("T").await;
    // a0007 fails validation; a0011 is locked on its first attempt only.
    let locked_once = Arc::new(AtomicUsize::new(0));
    let lock_seen = locked_once.clone();
    Mock::given(method("PATCH"))
        .and(path(format!("{DATA}/composite/sobjects")))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            assert_eq!(body["allOrNone"], json!(false));
            let recs = body["records"].as_array().cloned().unwrap_or_default();
            let results: Vec<Value> = recs
                .iter()
                .map(|r| {
                    assert_eq!(r["attributes"]["type"], json!("Object_Routing_Queue__c"));
                    let id = r["id"].as_str().unwrap_or_default();
                    if id == "a0007" {
                        json!({"id": id, "success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "nope", "fields": []}]})
                    } else if id == "a0011" && lock_seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        json!({"id": id, "success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]})
                    } else {
                        json!({"id": id, "success": true, "errors": []})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(results)
        })
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let updates: Vec<RowUpdate> = (0..450).map(claim).collect();
    let res = sf.update_rows_raw(&updates).await.expect("results");
    assert_eq!(res.len(), 450);
    for (i, (id, r)) in res.iter().enumerate() {
        assert_eq!(id, &updates[i].id);
        if i == 7 {
            assert_eq!(
                r.as_ref().err().and_then(|e| e.code()),
                Some("FIELD_CUSTOM_VALIDATION_EXCEPTION")
            );
        } else {
            assert!(r.is_ok(), "row {i}: {r:?}");
        }
    }
    let sizes: Vec<usize> = s
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap_or_default()["records"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect();
    assert_eq!(
        sizes,
        [200, 1, 200, 50],
        "3 chunks, plus the locked record alone"
    );
}

fn push_topic_record(query: &str, active: bool) -> Value {
    json!({"attributes":{"type":"PushTopic"},"Id":"0IF000000000001","Name":"ObjectRoutingQueue",
           "Query":query,"ApiVersion":62.0,"IsActive":active,"NotifyForFields":"Referenced",
           "NotifyForOperationCreate":true,"NotifyForOperationUpdate":true,
           "NotifyForOperationDelete":false,"NotifyForOperationUndelete":false})
}

const TOPIC_QUERY: &str = "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'";

async fn topic_server(found: Vec<Value>) -> MockServer {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(found, None)))
        .mount(&s)
        .await;
    s
}

#[tokio::test]
async fn ensure_push_topic_creates_a_missing_topic() {
    let s = topic_server(vec![]).await;
    Mock::given(method("POST"))
        .and(path(format!("{DATA}/sobjects/PushTopic")))
        .and(body_partial_json(json!({
            "Name": "ObjectRoutingQueue", "Query": TOPIC_QUERY, "ApiVersion": 62.0,
            "NotifyForFields": "Referenced", "NotifyForOperationCreate": true,
            "NotifyForOperationUpdate": true, "NotifyForOperationDelete": false,
            "NotifyForOperationUndelete": false, "IsActive": true
        })))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id":"0IF1","success":true,"errors":[]})),
        )
        .expect(1)
        .mount(&s)
        .await;
    let outcome = client(&s.uri()).ensure_push_topic().await.expect("ensured");
    assert_eq!(outcome, PushTopicOutcome::Created);
}

#[tokio::test]
async fn ensure_push_topic_leaves_a_good_topic_and_repairs_a_bad_one() {
    // Whitespace differences do not count.
    let s = topic_server(vec![push_topic_record(
        &TOPIC_QUERY.replace(", ", ",  "),
        true,
    )])
    .await;
    let outcome = client(&s.uri()).ensure_push_topic().await.expect("ensured");
    assert_eq!(outcome, PushTopicOutcome::Unchanged);
    let writes = s.received_requests().await.unwrap_or_default();
    assert!(
        writes
            .iter()
            .all(|r| r.method.as_str() == "GET" || r.url.path() == SOAP_PATH)
    );

    for bad in [
        push_topic_record(TOPIC_QUERY, false),
        push_topic_record("SELECT Id FROM Object_Routing_Queue__c", true),
    ] {
        let s = topic_server(vec![bad]).await;
        Mock::given(method("PATCH"))
            .and(path(format!("{DATA}/sobjects/PushTopic/0IF000000000001")))
            .and(body_partial_json(
                json!({"Query": TOPIC_QUERY, "IsActive": true}),
            ))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&s)
            .await;
        let outcome = client(&s.uri()).ensure_push_topic().await.expect("ensured");
        assert_eq!(outcome, PushTopicOutcome::Repaired);
    }
}

#[tokio::test]
async fn insert_row_posts_a_new_row() {
    let s = server_with_login("T").await;
    Mock::given(method("POST"))
        .and(path(format!("{DATA}/sobjects/Object_Routing_Queue__c")))
        .and(body_partial_json(json!({
            "Case__c": "500A", "Event__c": "SwitchoverRecovery", "Status__c": "New",
            "Workgroup__c": "Support", "Skills__c": "English"
        })))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id":"a09","success":true,"errors":[]})),
        )
        .expect(1)
        .mount(&s)
        .await;
    let id = client(&s.uri())
        .insert_row(&NewRoutingRow {
            case_id: CaseId::from("500A"),
            event: RowEvent::SwitchoverRecovery,
            queue_id: Some("00G1".into()),
            workgroup: "Support".into(),
            skills: "English".into(),
            case_number: "1001".into(),
            subject: "s".into(),
            from_address: "a@example.com".into(),
            from_name: "A".into(),
        })
        .await
        .expect("inserted");
    assert_eq!(id, RowId::from("a09"));
}

#[tokio::test]
async fn queue_mappings_resolve_blank_queue_ids_by_name() {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(query_param("q", "SELECT Id, Salesforce_Queue_Name__c, CIC_Workgroup_Name__c, Queue_Id__c FROM Interaction_Routing_Queue__c ORDER BY Salesforce_Queue_Name__c"))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![
            json!({"Id":"m1","Salesforce_Queue_Name__c":"Billing","CIC_Workgroup_Name__c":"WG Billing","Queue_Id__c":"00GB"}),
            json!({"Id":"m2","Salesforce_Queue_Name__c":"Support","CIC_Workgroup_Name__c":"WG Support","Queue_Id__c":null}),
            json!({"Id":"m3","Salesforce_Queue_Name__c":"Gone","CIC_Workgroup_Name__c":"WG Gone","Queue_Id__c":""}),
        ], None)))
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(query_param(
            "q",
            "SELECT Id, Name FROM Group WHERE Type = 'Queue' ORDER BY Name",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(
            vec![
                json!({"Id":"00GS","Name":"Support"}),
                json!({"Id":"00Gs","Name":"support"}),
            ],
            None,
        )))
        .expect(1)
        .mount(&s)
        .await;
    let maps = client(&s.uri()).queue_mappings().await.expect("mappings");
    let got: Vec<(&str, &str, &str)> = maps
        .resolved
        .iter()
        .map(|m| {
            (
                m.queue_id.as_str(),
                m.queue_name.as_str(),
                m.workgroup.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("00GB", "Billing", "WG Billing"),
            ("00GS", "Support", "WG Support"),
        ]
    );
    let unresolved: Vec<(&str, &str)> = maps
        .unresolved
        .iter()
        .map(|m| (m.queue_name.as_str(), m.workgroup.as_str()))
        .collect();
    assert_eq!(unresolved, [("Gone", "WG Gone")]);
}

#[tokio::test]
/// The cases and their routing rows are read at once (one round trip), the rows for every case
/// asked about; a deleted case's rows are ignored.
async fn cases_read_snapshots_and_routing_history() {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(query_param("q", "SELECT Id, OwnerId, IsClosed, CaseNumber, Subject, ObjectRouting_Skills__c, SuppliedEmail, SuppliedName FROM Case WHERE Id IN ('500A', '500B', '500\\'X')"))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![
            json!({"Id":"500A","OwnerId":"00GS","IsClosed":false,"CaseNumber":"1001","Subject":"Hi","ObjectRouting_Skills__c":"English","SuppliedEmail":"a@x","SuppliedName":"A"}),
        ], None)))
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(query_param("q", "SELECT Id, Case__c, Event__c, Status__c, Workgroup__c, Interaction_Id__c, CreatedDate FROM Object_Routing_Queue__c WHERE Case__c IN ('500A', '500B', '500\\'X')"))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![
            json!({"Id":"a01","Case__c":"500A","Event__c":"New","Status__c":"Processed","Workgroup__c":"WG","Interaction_Id__c":"1001","CreatedDate":"2024-01-01T00:00:01.000+0000"}),
            json!({"Id":"a02","Case__c":"500A","Event__c":"AgentReply","Status__c":"Processed","Workgroup__c":"WG","Interaction_Id__c":null,"CreatedDate":"2024-01-01T00:00:02.000+0000"}),
            json!({"Id":"a03","Case__c":"500A","Event__c":"EmailReceived","Status__c":"Failed","Workgroup__c":"WG","Interaction_Id__c":null,"CreatedDate":"2024-01-01T00:00:03.000+0000"}),
        ], None)))
        .mount(&s)
        .await;
    let ids = [
        CaseId::from("500A"),
        CaseId::from("500B"),
        CaseId::from("500'X"),
    ];
    let cases = client(&s.uri()).cases(&ids).await.expect("cases");
    assert_eq!(cases.len(), 1, "500B is gone");
    let c = &cases[0];
    assert_eq!(
        (c.owner_id.as_str(), c.is_closed, c.skills.as_str()),
        ("00GS", false, "English")
    );
    assert_eq!(
        c.last_closing_row_at,
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 2).single()
    );
    assert_eq!(
        c.last_route_row_at,
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 1).single()
    );
    // what reconciliation judges by: the newest route row that did not fail, and the
    // newest closing row's event
    let last = c.last_route_row.as_ref().expect("a route row");
    assert_eq!(
        (last.id.as_str(), last.status, last.workgroup.as_str()),
        ("a01", RowStatus::Processed, "WG")
    );
    assert_eq!(
        last.interaction_id.as_ref().map(|i| i.as_str()),
        Some("1001")
    );
    assert_eq!(c.last_closing_event, Some(RowEvent::AgentReply));
}

#[tokio::test]
async fn rows_by_ids_and_sweep_queries() {
    let s = server_with_login("T").await;
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![], None)))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let ids: Vec<RowId> = (0..450).map(|i| RowId(format!("a{i:04}"))).collect();
    sf.rows_by_ids(&ids).await.expect("rows");
    let before = Utc
        .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
        .single()
        .expect("date");
    sf.pending_rows_older_than(before).await.expect("sweep");
    sf.rows_of_cases(&[CaseId::from("500A")])
        .await
        .expect("rows of cases");
    let qs: Vec<String> = s
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "q")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(qs.len(), 5, "3 id chunks, sweep, rows of cases");
    assert!(qs[0].contains("WHERE Id IN ('a0000', ") && qs[0].contains("'a0199')"));
    assert!(qs[2].contains("'a0449')"));
    assert!(qs[3].ends_with("WHERE Status__c IN ('New', 'Processing') AND CreatedDate < 2024-01-02T03:04:05.000Z ORDER BY CreatedDate, Id"), "{}", qs[3]);
    assert!(qs[4].ends_with("WHERE Case__c IN ('500A') AND Status__c IN ('New', 'Processing') ORDER BY CreatedDate, Id"), "{}", qs[4]);
}

/// The router matches no Salesforce code: the client says what a failed write means.
#[tokio::test]
async fn row_writes_come_back_classified_for_the_router() {
    let s = server_with_login("T").await;
    let patch = |id: &str, status: u16, code: &str| {
        Mock::given(method("PATCH"))
            .and(path(format!(
                "{DATA}/sobjects/Object_Routing_Queue__c/{id}"
            )))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(json!([{"message":"m","errorCode":code,"fields":[]}])),
            )
    };
    patch("gone", 404, "NOT_FOUND").mount(&s).await;
    patch("bad", 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION")
        .mount(&s)
        .await;
    patch("locked", 400, "UNABLE_TO_LOCK_ROW").mount(&s).await;
    patch("down", 503, "SERVER_UNAVAILABLE").mount(&s).await;
    Mock::given(method("PATCH"))
        .and(path(format!("{DATA}/composite/sobjects")))
        .respond_with(ResponseTemplate::new(503).set_body_string("unavailable"))
        .mount(&s)
        .await;
    let sf = client(&s.uri());
    let one = |id: &str| RowUpdate {
        id: RowId::from(id),
        status: RowStatus::Processed,
        attempts: None,
        interaction_id: None,
        error: None,
        processed_at: None,
    };
    let outcome = |v: Vec<(RowId, WriteResult)>| v.into_iter().next().map(|(_, r)| r);
    assert_eq!(
        outcome(sf.update_rows(&[one("gone")]).await),
        Some(WriteResult::Gone)
    );
    assert!(matches!(
        outcome(sf.update_rows(&[one("bad")]).await),
        Some(WriteResult::Rejected(m)) if m.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    ));
    assert!(matches!(
        outcome(sf.update_rows(&[one("locked")]).await),
        Some(WriteResult::Retry(_))
    ));
    assert!(matches!(
        outcome(sf.update_rows(&[one("down")]).await),
        Some(WriteResult::Retry(_))
    ));
    // A collection call failing as a whole: every row is tried again, none is rejected.
    let both = sf.update_rows(&[one("x1"), one("x2")]).await;
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|(_, r)| matches!(r, WriteResult::Retry(_))));
}
