//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Once;

use serde_json::{Value, json};
use sors_salesforce::{Auth, LoginConfig, Names, Salesforce, Secret};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const SOAP_PATH: &str = "/services/Soap/u/64.0";
pub const DATA: &str = "/services/data/v62.0";

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

pub fn soap_ok(instance: &str, token: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{instance}/services/Soap/m/64.0/00Dx</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{instance}/services/Soap/u/64.0/00Dx</serverUrl><sessionId>{token}</sessionId><userId>005x0000001</userId><userInfo><organizationId>00Dx0000000ORG</organizationId><sessionSecondsValid>7200</sessionSecondsValid></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#
    )
}

pub fn soap_fault(code: &str, text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {text}</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{text}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A SOAP login on `server` whose answer points REST at `instance` with token `token`.
pub async fn mount_soap_login(server: &MockServer, instance: &str, token: &str) {
    Mock::given(method("POST"))
        .and(path(SOAP_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "text/xml")
                .set_body_string(soap_ok(instance, token)),
        )
        .mount(server)
        .await;
}

pub fn soap_auth() -> Auth {
    Auth::Soap {
        username: "router@example.com".into(),
        password: Secret::new("pw-and-token"),
    }
}

/// Defaults, with fast retries for tests.
pub fn config(login_url: &str) -> LoginConfig {
    let mut cfg = LoginConfig::new(login_url, soap_auth());
    cfg.request_timeout_ms = 10_000;
    cfg.retry.base_delay_ms = 1;
    cfg.retry.max_delay_ms = 5;
    cfg.retry.max_attempts = 4;
    cfg
}

pub fn client(login_url: &str) -> Salesforce {
    Salesforce::new(config(login_url), Names::default()).expect("valid config")
}

pub fn query_page(records: Vec<Value>, next: Option<&str>) -> Value {
    let mut v = json!({"totalSize": records.len(), "done": next.is_none(), "records": records});
    if let Some(n) = next {
        v["nextRecordsUrl"] = json!(n);
    }
    v
}

pub fn row(id: &str, case: &str, status: &str, created: &str) -> Value {
    json!({
        "attributes": {"type": "Object_Routing_Queue__c", "url": format!("{DATA}/sobjects/Object_Routing_Queue__c/{id}")},
        "Id": id, "CreatedDate": created, "Case__c": case, "Event__c": "New", "Status__c": status,
        "Salesforce_Queue_Id__c": "00G000000000001", "Workgroup__c": "Support", "Skills__c": "English;Billing",
        "Case_Number__c": "00001001", "Subject__c": "Help", "From_Address__c": "a@example.com",
        "From_Name__c": "A", "Attempts__c": 1.0, "Interaction_Id__c": null, "Error__c": null
    })
}

/// Polls `cond` every 20 ms until it holds or `secs` pass.
pub async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}
