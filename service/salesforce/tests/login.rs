//! Login: SOAP and both OAuth grants against wiremock, faults, secrets kept out of Debug.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use common::*;
use serde_json::json;
use sors_salesforce::{Auth, LoginConfig, Names, Salesforce, Secret, SfError};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn soap_login_escapes_credentials_and_takes_instance_from_server_url() {
    init_tracing();
    let login = MockServer::start().await;
    let instance = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .and(header("SOAPAction", "login"))
        .and(body_string_contains(
            "<urn:username>a&amp;b@example.com</urn:username>",
        ))
        .and(body_string_contains(
            "<urn:password>p&lt;w&gt;TOKEN</urn:password>",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(soap_ok(&instance.uri(), "00D!SESSION")),
        )
        .expect(1)
        .mount(&login)
        .await;
    // REST must go to the instance of the login answer, not to the login URL.
    Mock::given(method("GET"))
        .and(path(format!("{DATA}/query")))
        .and(header("Authorization", "Bearer 00D!SESSION"))
        .respond_with(ResponseTemplate::new(200).set_body_json(query_page(vec![], None)))
        .expect(1)
        .mount(&instance)
        .await;

    let mut cfg = config(&login.uri());
    cfg.auth = Auth::Soap {
        username: "a&b@example.com".into(),
        password: Secret::new("p<w>TOKEN"),
    };
    let sf = Salesforce::new(cfg, Names::default()).expect("config");
    let info = sf.login().await.expect("login");
    assert_eq!(info.instance_url, instance.uri());
    assert_eq!(info.org_id, "00Dx0000000ORG");
    assert_eq!(info.user_id, "005x0000001");
    assert!(sf.pending_rows().await.expect("query").is_empty());
    assert_eq!(sf.stats().logins, 1);
}

#[tokio::test]
async fn soap_fault_gives_the_fault_string_without_the_password() {
    let login = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string(soap_fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        )))
        .mount(&login)
        .await;
    let sf = client(&login.uri());
    let err = sf.login().await.expect_err("fault");
    assert!(matches!(&err, SfError::Login(m) if m.starts_with("INVALID_LOGIN: Invalid username")));
    assert!(!err.to_string().contains("pw-and-token"));
    assert!(
        sf.stats()
            .last_error
            .is_some_and(|e| e.contains("INVALID_LOGIN"))
    );
}

#[tokio::test]
async fn expired_password_and_incomplete_answers_are_login_errors() {
    let login = MockServer::start().await;
    let expired = soap_ok("https://na1.example.com", "T").replace(
        "<passwordExpired>false</passwordExpired>",
        "<passwordExpired>true</passwordExpired>",
    );
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(expired))
        .up_to_n_times(1)
        .mount(&login)
        .await;
    let no_session = soap_ok("https://na1.example.com", "");
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(no_session))
        .mount(&login)
        .await;
    let sf = client(&login.uri());
    let err = sf.login().await.expect_err("expired");
    assert!(err.to_string().contains("password has expired"), "{err}");
    let err = sf.login().await.expect_err("no session id");
    assert!(err.to_string().contains("sessionId"), "{err}");
}

fn token_answer(instance: &str) -> serde_json::Value {
    json!({"access_token":"00Dx!OAUTH","instance_url":instance,
           "id":"https://login.salesforce.com/id/00Dx0000000ORG/005x0000001",
           "token_type":"Bearer","issued_at":"1278448832702","signature":"x"})
}

#[tokio::test]
async fn oauth_password_grant() {
    let login = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("client_id=cid"))
        .and(body_string_contains("client_secret=csecret"))
        .and(body_string_contains("username=u%40example.com"))
        .and(body_string_contains("password=p%26w"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(token_answer("https://eu1.example.com:8443/")),
        )
        .expect(1)
        .mount(&login)
        .await;
    let mut cfg = config(&login.uri());
    cfg.auth = Auth::OAuthPassword {
        client_id: "cid".into(),
        client_secret: Secret::new("csecret"),
        username: "u@example.com".into(),
        password: Secret::new("p&w"),
    };
    let sf = Salesforce::new(cfg, Names::default()).expect("config");
    let info = sf.login().await.expect("login");
    assert_eq!(info.instance_url, "https://eu1.example.com:8443");
    assert_eq!(info.org_id, "00Dx0000000ORG");
    assert_eq!(info.user_id, "005x0000001");
}

#[tokio::test]
async fn oauth_client_credentials_grant_and_errors() {
    let login = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_secret=good"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(token_answer("https://my.example.com")),
        )
        .mount(&login)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error":"invalid_grant","error_description":"authentication failure"}),
        ))
        .mount(&login)
        .await;
    let make = |secret: &str| {
        let mut cfg = config(&login.uri());
        cfg.auth = Auth::ClientCredentials {
            client_id: "cid".into(),
            client_secret: Secret::new(secret),
        };
        Salesforce::new(cfg, Names::default()).expect("config")
    };
    let info = make("good").login().await.expect("login");
    assert_eq!(info.instance_url, "https://my.example.com");
    let err = make("bad-secret").login().await.expect_err("refused");
    assert_eq!(
        err,
        SfError::Login("invalid_grant: authentication failure".into())
    );
    assert!(!format!("{err:?}").contains("bad-secret"));
}

#[test]
fn config_from_toml_with_defaults_and_no_secret_in_debug() {
    let cfg: LoginConfig = toml::from_str(
        r#"
        login_url = "https://test.salesforce.com"
        auth = { kind = "oauth_password", client_id = "cid", client_secret = "S3CRET", username = "u", password = "PASSW0RD" }
        [retry]
        max_attempts = 7
        "#,
    )
    .expect("toml");
    assert_eq!(cfg.soap_api_version, "64.0");
    assert_eq!(cfg.api_version, "62.0");
    assert_eq!(cfg.retry.max_attempts, 7);
    assert_eq!(cfg.retry.base_delay_ms, 500);
    let dbg = format!("{cfg:?}");
    assert!(
        !dbg.contains("S3CRET") && !dbg.contains("PASSW0RD"),
        "{dbg}"
    );

    let names: Names = toml::from_str(
        r#"
        routing_object = "ns__Object_Routing_Queue__c"
        row_status = "ns__Status__c"
        "#,
    )
    .expect("toml");
    assert_eq!(names.routing_object, "ns__Object_Routing_Queue__c");
    assert_eq!(names.row_case, "Case__c");
    assert_eq!(
        names.push_topic_query(),
        "SELECT Id, Case__c, Event__c, Workgroup__c, Skills__c, ns__Status__c FROM ns__Object_Routing_Queue__c WHERE ns__Status__c = 'New'"
    );
    let bad = Names {
        row_case: "Case__c; DELETE".into(),
        ..Names::default()
    };
    assert!(Salesforce::new(config("https://login.salesforce.com"), bad).is_err());
}
