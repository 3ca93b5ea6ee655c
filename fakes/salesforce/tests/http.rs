//! The fake over HTTP: login, REST, errors and the control API, with reqwest.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use reqwest::StatusCode;
use serde_json::{Value, json};
use sors_fake_salesforce::{
    CallKind, FakeSalesforce, FakeSalesforceConfig, InjectedError, OrgSpec,
};

const V: &str = "v58.0";

async fn start() -> FakeSalesforce {
    FakeSalesforce::start(FakeSalesforceConfig::default())
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

fn soap(user: &str, pass: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header/><soapenv:Body><urn:login><urn:username>{user}</urn:username><urn:password>{pass}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"#
    )
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

async fn token(sf: &FakeSalesforce) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sf.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sors-demo"),
            ("client_secret", "sors-demo-secret"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap_or_default();
    body["access_token"].as_str().unwrap_or_default().to_owned()
}

struct Rest {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Rest {
    async fn new(sf: &FakeSalesforce) -> Rest {
        Rest {
            base: format!("{}/services/data/{V}", sf.base_url()),
            token: token(sf).await,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let url = if path.starts_with("/services") {
            format!(
                "{}{path}",
                self.base.split("/services").next().unwrap_or_default()
            )
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status();
        let limit = resp
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            limit,
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value, String) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn error_code(body: &Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn soap_login_success_and_faults() {
    let sf = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/services/Soap/u/58.0", sf.base_url());
    let resp = http
        .post(&url)
        .header("SOAPAction", "\"\"")
        .body(soap("router@sors.demo", "demoTOKEN"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let xml = resp.text().await.unwrap_or_default();
    let org = sf.org_id();
    assert_eq!(
        tag(&xml, "serverUrl"),
        Some(format!("{}/services/Soap/u/58.0/{}", sf.base_url(), &org[..15]).as_str())
    );
    assert_eq!(tag(&xml, "organizationId"), Some(org.as_str()));
    assert_eq!(tag(&xml, "passwordExpired"), Some("false"));
    assert_eq!(tag(&xml, "sessionSecondsValid"), Some("7200"));
    assert_eq!(tag(&xml, "userName"), Some("router@sors.demo"));
    assert_eq!(tag(&xml, "userId").map(str::len), Some(18));
    assert!(tag(&xml, "sessionId").is_some_and(|s| s.starts_with(&org[..15])));
    assert!(tag(&xml, "metadataServerUrl").is_some());

    let resp = http
        .post(&url)
        .body(soap("router@sors.demo", "demo"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let xml = resp.text().await.unwrap_or_default();
    assert_eq!(tag(&xml, "faultcode"), Some("sf:INVALID_LOGIN"));
    assert_eq!(
        tag(&xml, "faultstring"),
        Some("INVALID_LOGIN: Invalid username, password, security token; or user locked out.")
    );
    assert_eq!(tag(&xml, "sf:exceptionCode"), Some("INVALID_LOGIN"));

    let resp = http
        .post(&url)
        .body("<not-xml")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("soapenv:Client")
    );

    let resp = http
        .post(format!("{}/services/Soap/u/65.0", sf.base_url()))
        .body(soap("router@sors.demo", "demoTOKEN"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("sf:UNSUPPORTED_API_VERSION")
    );
    assert_eq!(sf.counters().api.login, 4);
}

#[tokio::test]
async fn oauth_flows_and_errors() {
    let sf = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/services/oauth2/token", sf.base_url());
    let post = |form: Vec<(&'static str, &'static str)>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let resp = http
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or_default())
        }
    };
    let client = [
        ("client_id", "sors-demo"),
        ("client_secret", "sors-demo-secret"),
    ];
    let mut form = vec![
        ("grant_type", "password"),
        ("username", "agent2@sors.demo"),
        ("password", "demoTOKEN"),
    ];
    form.extend(client);
    let (status, body) = post(form).await;
    assert_eq!(status, StatusCode::OK);
    let agent2 = sf.user_id("agent2@sors.demo").unwrap_or_default();
    assert_eq!(
        body["id"],
        json!(format!("{}/id/{}/{agent2}", sf.base_url(), sf.org_id()))
    );
    assert_eq!(body["instance_url"], json!(sf.base_url()));
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["issued_at"]
            .as_str()
            .is_some_and(|s| s.parse::<i64>().is_ok())
    );
    assert!(body["signature"].is_string());

    let mut form = vec![
        ("grant_type", "password"),
        ("username", "agent2@sors.demo"),
        ("password", "demo"),
    ];
    form.extend(client);
    assert_eq!(
        post(form).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "authentication failure"})
        )
    );
    let (status, body) = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sors-demo"),
        ("client_secret", "nope"),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
    let (status, body) = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "who"),
        ("client_secret", "x"),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client_id"))
    );
    let (_, body) = post(vec![("grant_type", "magic")]).await;
    assert_eq!(body["error"], "unsupported_grant_type");

    // client_credentials runs as the configured user.
    let (_, body) = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sors-demo"),
        ("client_secret", "sors-demo-secret"),
    ])
    .await;
    let router = sf.user_id("router@sors.demo").unwrap_or_default();
    assert!(body["id"].as_str().is_some_and(|id| id.ends_with(&router)));
}

#[tokio::test]
async fn rest_crud_query_and_paging() {
    let sf = start().await;
    let rest = Rest::new(&sf).await;
    let en = sf.queue_id("Support EN").unwrap_or_default();
    let (status, body, limit) = rest
        .call(
            reqwest::Method::POST,
            "/sobjects/Case",
            Some(json!({"Subject": "Hello", "OwnerId": en})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["errors"], json!([]));
    assert!(
        limit.starts_with("api-usage=") && limit.ends_with("/100000"),
        "{limit}"
    );
    let case_id = body["id"].as_str().unwrap_or_default().to_owned();
    let (status, case, _) = rest.get(&format!("/sobjects/Case/{case_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(case["CaseNumber"], "00001001");
    assert_eq!(case["attributes"]["type"], "Case");
    assert_eq!(
        case["attributes"]["url"],
        json!(format!("/services/data/{V}/sobjects/Case/{case_id}"))
    );
    assert_eq!(case["IsClosed"], false);

    // The trigger wrote the row; the router reads and claims it.
    let q = format!(
        "/query?q={}",
        url_encode(&format!(
            "SELECT Id, Event__c, Status__c FROM Object_Routing_Queue__c WHERE Case__c = '{case_id}'"
        ))
    );
    let (status, page, _) = rest.get(&q).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (page["totalSize"].as_u64(), page["done"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(page.get("nextRecordsUrl").is_none());
    let row_id = page["records"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(page["records"][0]["Event__c"], "New");
    let (status, body, _) = rest
        .call(
            reqwest::Method::PATCH,
            &format!("/sobjects/Object_Routing_Queue__c/{row_id}"),
            Some(json!({"Status__c": "Processing", "Attempts__c": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let rows = sf
        .query(&format!(
            "SELECT Status__c, Attempts__c FROM Object_Routing_Queue__c WHERE Id = '{row_id}'"
        ))
        .unwrap_or_default();
    assert_eq!(rows[0]["Status__c"], "Processing");
    assert_eq!(rows[0]["Attempts__c"], json!(1.0));

    // Paging: 450 cases, batchSize 200 → 200 + 200 + 50.
    let agent = sf
        .act_as("agent1@sors.demo")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..450 {
        agent
            .create("Case", json!({"Subject": format!("bulk {i}")}))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let q = format!(
        "/query?q={}",
        url_encode("SELECT Id, Subject FROM Case WHERE Subject LIKE 'bulk%'")
    );
    let resp = rest
        .http
        .get(format!("{}{q}", rest.base))
        .bearer_auth(&rest.token)
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut page: Value = resp.json().await.unwrap_or_default();
    let mut seen = Vec::new();
    loop {
        assert_eq!(page["totalSize"], 450);
        seen.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["nextRecordsUrl"].as_str() {
            Some(next) => {
                assert_eq!(page["done"], false);
                let (status, next_page, _) = rest.get(next).await;
                assert_eq!(status, StatusCode::OK);
                page = next_page;
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 450);
    assert_eq!(sf.counters().api.query_more, 2);

    let (status, _, _) = rest
        .call(
            reqwest::Method::DELETE,
            &format!("/sobjects/Case/{case_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = rest.get(&format!("/sobjects/Case/{case_id}")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, body, _) = rest
        .call(
            reqwest::Method::DELETE,
            &format!("/sobjects/Case/{case_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "ENTITY_IS_DELETED")
    );

    let (status, limits, _) = rest.get("/limits").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(limits["DailyApiRequests"]["Max"], 100000);
    assert!(
        limits["DailyApiRequests"]["Remaining"]
            .as_u64()
            .is_some_and(|r| r < 100000)
    );
    let c = sf.counters();
    assert_eq!(
        (
            c.api.create,
            c.api.read,
            c.api.update,
            c.api.delete,
            c.api.query,
            c.api.limits
        ),
        (1, 2, 1, 2, 2, 1)
    );
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn composite_update_all_or_none() {
    let sf = start().await;
    let rest = Rest::new(&sf).await;
    let actor = sf
        .act_as("router@sors.demo")
        .unwrap_or_else(|e| panic!("{e}"));
    let en = sf.queue_id("Support EN").unwrap_or_default();
    let mut rows = Vec::new();
    for _ in 0..3 {
        let case = actor
            .create("Case", json!({"OwnerId": en}))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = actor
            .query(&format!(
                "SELECT Id FROM Object_Routing_Queue__c WHERE Case__c = '{case}'"
            ))
            .unwrap_or_default();
        rows.push(r[0]["Id"].as_str().unwrap_or_default().to_owned());
    }
    let rec = |id: &str, status: &str| json!({"attributes": {"type": "Object_Routing_Queue__c"}, "id": id, "Status__c": status});
    // allOrNone: one bad record rolls everything back.
    let body = json!({"allOrNone": true, "records": [rec(&rows[0], "Processing"), {"attributes": {"type": "Object_Routing_Queue__c"}, "id": rows[1], "Bogus__c": 1}]});
    let (status, res, _) = rest
        .call(reqwest::Method::PATCH, "/composite/sobjects", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(res[0]["success"], false);
    assert_eq!(
        res[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(res[1]["errors"][0]["statusCode"], "INVALID_FIELD");
    let st = |id: &str| {
        sf.query(&format!(
            "SELECT Status__c FROM Object_Routing_Queue__c WHERE Id = '{id}'"
        ))
        .unwrap_or_default()[0]["Status__c"]
            .clone()
    };
    assert_eq!(st(&rows[0]), "New");
    // Not allOrNone: the good ones stick.
    let body = json!({"allOrNone": false, "records": [rec(&rows[0], "Processed"), rec(&rows[2], "Failed"), rec("a015g0000000zzzAAA", "Processed")]});
    let (_, res, _) = rest
        .call(reqwest::Method::PATCH, "/composite/sobjects", Some(body))
        .await;
    assert_eq!(
        (
            res[0]["success"].as_bool(),
            res[1]["success"].as_bool(),
            res[2]["success"].as_bool()
        ),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(res[0]["id"], json!(rows[0]));
    assert_eq!(res[2]["errors"][0]["statusCode"], "NOT_FOUND");
    assert_eq!(
        (st(&rows[0]), st(&rows[2])),
        (json!("Processed"), json!("Failed"))
    );
    let many: Vec<Value> = (0..201).map(|_| rec(&rows[0], "New")).collect();
    let (status, res, _) = rest
        .call(
            reqwest::Method::PATCH,
            "/composite/sobjects",
            Some(json!({"records": many})),
        )
        .await;
    assert_eq!(
        (status, error_code(&res)),
        (StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT")
    );
    assert_eq!(sf.counters().api.composite, 3);
}

#[tokio::test]
async fn bad_input_gets_salesforce_errors() {
    let sf = start().await;
    let rest = Rest::new(&sf).await;
    let http = reqwest::Client::new();
    let base = sf.base_url();
    // Wrong API version.
    for v in ["v36.0", "v67.0", "vX", "58.0"] {
        let resp = http
            .get(format!("{base}/services/data/{v}/limits"))
            .bearer_auth(&rest.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{v}");
        assert!(resp.headers().contains_key("sforce-limit-info"));
        let body: Value = resp.json().await.unwrap_or_default();
        assert_eq!(
            body,
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        );
    }
    // Missing or bad auth.
    let resp = http
        .get(format!("{base}/services/data/{V}/limits"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap_or_default(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let resp = http
        .get(format!("{base}/services/data/{V}/limits"))
        .header("Authorization", "OAuth not-a-session")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Malformed JSON, unknown type, unknown field, bad SOQL, missing q.
    let resp = http
        .post(format!("{}/sobjects/Case", rest.base))
        .bearer_auth(&rest.token)
        .header("content-type", "application/json")
        .body("{\"Subject\": ")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_code(&resp.json().await.unwrap_or_default()),
        "JSON_PARSER_ERROR"
    );
    let (status, body, _) = rest
        .call(reqwest::Method::POST, "/sobjects/Account", Some(json!({})))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    assert!(
        body[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sObject type 'Account' is not supported."))
    );
    let (status, body, _) = rest
        .call(
            reqwest::Method::POST,
            "/sobjects/Case",
            Some(json!({"Nope__c": 1})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD")
    );
    let (status, body, _) = rest
        .call(
            reqwest::Method::POST,
            "/sobjects/CaseComment",
            Some(json!({"CommentBody": "x"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "REQUIRED_FIELD_MISSING")
    );
    assert_eq!(body[0]["fields"], json!(["ParentId"]));
    for (soql, code) in [
        ("SELECT Nope FROM Case", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        ("SELECT FROM", "MALFORMED_QUERY"),
    ] {
        let (status, body, _) = rest.get(&format!("/query?q={}", url_encode(soql))).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, code),
            "{soql}"
        );
    }
    let (status, body, _) = rest.get("/query").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "MALFORMED_QUERY")
    );
    let (status, body, _) = rest.get("/query/01gbogus-200").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR")
    );
    let (status, body, _) = rest.get("/sobjects/Case/not-an-id").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, body, _) = rest
        .call(
            reqwest::Method::PUT,
            "/sobjects/Case/500000000000000AAA",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
    );
    let (status, body, _) = rest.get("/nothing/here").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    // Still serving.
    let (status, _, _) = rest.get("/limits").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn injected_failures_limits_and_session_expiry() {
    let mut spec = OrgSpec::demo();
    spec.daily_api_requests = 4;
    let sf = FakeSalesforce::start(FakeSalesforceConfig {
        org: spec,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let rest = Rest::new(&sf).await;
    sf.fail_next(CallKind::Limits, 1, InjectedError::ServiceUnavailable);
    sf.fail_next(CallKind::Any, 1, InjectedError::UnableToLockRow);
    let (status, body, _) = rest.get("/limits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE")
    );
    let (status, body, _) = rest.get("/limits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "UNABLE_TO_LOCK_ROW")
    );
    sf.fail_next(CallKind::Query, 1, InjectedError::RequestLimitExceeded);
    let (status, body, _) = rest.get("/query?q=SELECT+Id+FROM+Case").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED")
    );
    assert_eq!(body[0]["message"], "TotalRequests Limit exceeded.");
    // The real daily limit: 4 calls.
    for _ in 0..4 {
        let (status, _, _) = rest.get("/limits").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body, limit) = rest.get("/limits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED")
    );
    assert_eq!(limit, "api-usage=4/4");
    // Expired sessions.
    sf.expire_sessions();
    let (status, body, _) = rest.get("/limits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID")
    );
}

#[tokio::test]
async fn control_api_over_http() {
    let sf = start().await;
    let rest = Rest::new(&sf).await;
    let http = reqwest::Client::new();
    let ctl = |p: &str| format!("{}/__fake/{p}", sf.base_url());
    let post = |p: &str, body: Value| http.post(ctl(p)).json(&body).send();
    let (status, _, _) = rest.call(reqwest::Method::POST, "/sobjects/PushTopic", Some(json!({"Name": "ObjectRoutingQueue", "ApiVersion": 58.0,
        "Query": "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    for (path, body) in [
        ("forget-streaming", json!({"advice": "handshake"})),
        ("forget-streaming", json!({"advice": "none"})),
        ("drop-pushes", json!({"on": false})),
        ("latency", json!({"ms": 0})),
        (
            "fail-next",
            json!({"kind": "query", "count": 1, "error": "503"}),
        ),
    ] {
        let resp = post(path, body).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let (status, _, _) = rest.get("/query?q=SELECT+Id+FROM+Case").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for (path, body) in [
        ("forget-streaming", json!({"advice": "maybe"})),
        ("fail-next", json!({"kind": "nope", "error": "503"})),
        ("fail-next", json!({"kind": "query", "error": "418"})),
        ("latency", json!({"ms": "slow"})),
    ] {
        let resp = post(path, body).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    let counters: Value = http
        .get(ctl("counters"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(counters["api"]["query"], 1);
    assert_eq!(counters["api"]["login"], 1);
    assert!(counters["events"]["published"].is_u64());
    let dump: Value = http
        .get(ctl("dump"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(dump["orgId"], json!(sf.org_id()));
    assert_eq!(
        dump["objects"]["PushTopic"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(dump["objects"]["Group"].as_array().map(Vec::len), Some(4));
    assert!(
        !dump.to_string().contains("demoTOKEN"),
        "no secrets in the dump"
    );

    let old = sf.org_id();
    let resp: Value = post("sandbox-refresh", json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_ne!(resp["orgId"], json!(old));
    assert_eq!(resp["orgId"], json!(sf.org_id()));
    assert!(
        sf.query("SELECT Id FROM PushTopic")
            .unwrap_or_default()
            .is_empty()
    );
    let (status, _, _) = rest.get("/limits").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "sessions expired by the refresh"
    );
    let resp = post("expire-sessions", json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    sf.shutdown().await;
}

#[tokio::test]
async fn streaming_endpoint_is_served_counted_and_guarded() {
    let sf = start().await;
    let session = token(&sf).await;
    let http = reqwest::Client::new();
    let url = format!("{}/cometd/58.0", sf.base_url());
    let handshake = json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1"}]);
    let resp = http
        .post(&url)
        .bearer_auth(&session)
        .json(&handshake)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!(body[0]["successful"], true, "{body}");
    // Oversized body: 413, and the server carries on.
    let big = format!(
        "[{{\"channel\":\"/meta/handshake\",\"pad\":\"{}\"}}]",
        "x".repeat(40_000)
    );
    let resp = http
        .post(&url)
        .bearer_auth(&session)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Subscribing to a PushTopic that does not exist is refused (ChannelCheck).
    let client_id = body[0]["clientId"].as_str().unwrap_or_default();
    let sub = json!([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/topic/Nope", "id": "2"}]);
    let resp: Value = http
        .post(&url)
        .bearer_auth(&session)
        .json(&sub)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(resp[0]["successful"], false, "{resp}");
    // An expired session cannot handshake.
    sf.expire_sessions();
    let resp = http
        .post(&url)
        .bearer_auth(&session)
        .json(&handshake)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!(body[0]["successful"], false, "{body}");
    // Injected failure on streaming requests.
    sf.fail_next(CallKind::Streaming, 1, InjectedError::ServiceUnavailable);
    let resp = http
        .post(&url)
        .bearer_auth(&session)
        .json(&handshake)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sf.counters().api.streaming, 5);
}

#[tokio::test]
async fn org_file_and_actor_helpers() {
    let spec = OrgSpec::from_toml_file(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/org.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sf = FakeSalesforce::start(FakeSalesforceConfig {
        org: spec,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::new();
    // The example org blocks the username-password flow.
    let resp = http
        .post(format!("{}/services/oauth2/token", sf.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "acme-router"),
            ("client_secret", "acme-router-secret"),
            ("username", "integration@acme.example"),
            ("password", "s3cretABCDEF123456"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = http
        .post(format!("{}/services/Soap/u/64.0", sf.base_url()))
        .body(soap("integration@acme.example", "s3cretABCDEF123456"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let xml = resp.text().await.unwrap_or_default();
    assert_eq!(tag(&xml, "sandbox"), Some("true"));
    assert_eq!(tag(&xml, "organizationName"), Some("Acme Support"));

    let alice = sf
        .act_as("alice@acme.example")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sf.act_as("nobody@acme.example").is_err());
    let tier1 = sf.queue_id("Tier 1").unwrap_or_default();
    let case = alice
        .create("Case", json!({"OwnerId": sf.queue_id("Escalations")}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        alice
            .query(&format!(
                "SELECT Id FROM Object_Routing_Queue__c WHERE Case__c = '{case}'"
            ))
            .unwrap_or_default()
            .is_empty()
    );
    alice
        .update("Case", &case, json!({"OwnerId": tier1}))
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = alice
        .query(&format!(
            "SELECT Event__c, Workgroup__c FROM Object_Routing_Queue__c WHERE Case__c = '{case}'"
        ))
        .unwrap_or_default();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0]["Event__c"].as_str(),
            rows[0]["Workgroup__c"].as_str()
        ),
        (Some("OwnerChanged"), Some("Tier1_Email"))
    );
    alice
        .delete("Case", &case)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        alice
            .update("Case", &case, json!({"Subject": "x"}))
            .err()
            .map(|e| e.code),
        Some("ENTITY_IS_DELETED".into())
    );
    assert_eq!(
        sf.counters().api.total(),
        2,
        "actor calls are not API calls: only the OAuth and SOAP logins count"
    );
}

#[tokio::test]
async fn bulk_cases_go_through_the_trigger_and_are_not_api_calls() {
    let sf = start().await;
    let rest = Rest::new(&sf).await;
    let http = reqwest::Client::new();
    let ctl = |p: &str| format!("{}/__fake/{p}", sf.base_url());
    let (status, _, _) = rest.call(reqwest::Method::POST, "/sobjects/PushTopic", Some(json!({"Name": "ObjectRoutingQueue", "ApiVersion": 58.0,
        "Query": "SELECT Id, Case__c, Status__c FROM Object_Routing_Queue__c WHERE Status__c = 'New'"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = sf.counters();
    let resp = http
        .post(ctl("cases"))
        .json(&json!({"count": 25, "queue": "Support EN", "fields": {"ObjectRouting_Skills__c": "English"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["created"], 25);
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 25);
    // Every case got its NewCase row from the trigger, with the mapped workgroup, and a push.
    let rows = sf
        .query("SELECT Case__c, Event__c, Workgroup__c, Skills__c, Status__c FROM Object_Routing_Queue__c ORDER BY CreatedDate")
        .unwrap();
    assert_eq!(rows.len(), 25);
    for (row, id) in rows.iter().zip(ids) {
        assert_eq!(&row["Case__c"], id);
        assert_eq!(row["Workgroup__c"], "Support_EN");
        assert_eq!(row["Skills__c"], "English");
        assert_eq!(row["Status__c"], "New");
    }
    let after = sf.counters();
    assert_eq!(after.api, before.api, "control calls are not API calls");
    assert_eq!(after.events.published - before.events.published, 25);

    // Row counts from the status index, after one row is processed.
    let first = sf
        .query("SELECT Id FROM Object_Routing_Queue__c ORDER BY CreatedDate LIMIT 1")
        .unwrap();
    sf.act_as("router@sors.demo")
        .unwrap()
        .update(
            "Object_Routing_Queue__c",
            first[0]["Id"].as_str().unwrap(),
            json!({"Status__c": "Processed"}),
        )
        .unwrap();
    let counts: Value = http
        .get(ctl("row-counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts,
        json!({"total": 25, "byStatus": {"New": 24, "Processed": 1}})
    );

    // The uncounted query.
    let resp: Value = http
        .post(ctl("query"))
        .json(&json!({"soql": "SELECT Id FROM Object_Routing_Queue__c WHERE Status__c = 'New'"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["totalSize"], 24);
    assert_eq!(resp["records"].as_array().map(Vec::len), Some(24));
    assert_eq!(sf.counters().api, before.api);

    // Refusals: an unknown queue, a bad query, too many cases.
    for (path, body) in [
        ("cases", json!({"count": 1, "queue": "Nope"})),
        ("cases", json!({"count": 2_000_000, "queue": "Support EN"})),
        ("cases", json!({"queue": "Support EN"})),
        ("query", json!({"soql": "SELECT FROM"})),
    ] {
        let resp = http.post(ctl(path)).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body}");
    }
}
