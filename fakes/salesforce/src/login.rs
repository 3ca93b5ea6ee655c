//! Login: SOAP `login()` (partner API) and the OAuth 2.0 token endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_xml_entity};
use quick_xml::events::Event;
use rand::Rng;
use serde_json::json;

use crate::Shared;
use crate::org::CallKind;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/Soap/u/{version}", post(soap_login))
        .route("/services/oauth2/token", post(oauth_token))
        .with_state(shared)
}

const INVALID_LOGIN: &str = "Invalid username, password, security token; or user locked out.";

/// SOAP login is available from 37.0 up to 64.0 (not in 65.0+, protocol notes §1.1).
const MAX_SOAP_LOGIN_VERSION: f64 = 64.0;

fn soap_fault(code: &str, fault_type: &str, message: &str) -> Response {
    let (code, message) = (escape(code), escape(message));
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:{fault_type} xsi:type="sf:{fault_type}"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:{fault_type}></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    );
    xml(StatusCode::INTERNAL_SERVER_ERROR, body)
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        body,
    )
        .into_response()
}

/// `username` and `password` of a partner `login` envelope (namespace prefixes ignored,
/// entities resolved). `None` when it is not a well-formed login request.
fn parse_login(body: &str) -> Option<(String, String)> {
    let mut reader = Reader::from_str(body);
    let mut stack: Vec<String> = Vec::new();
    let mut saw_login = false;
    let (mut user, mut pass) = (None::<String>, None::<String>);
    let mut current: Option<String> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == "login" {
                    saw_login = true;
                }
                if saw_login && (name == "username" || name == "password") {
                    current = Some(String::new());
                }
                stack.push(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if saw_login && name == "password" {
                    pass.get_or_insert_with(String::new);
                }
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.xml_content().ok()?);
                }
            }
            Event::CData(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(c) = current.as_mut() {
                    match r.resolve_char_ref().ok()? {
                        Some(ch) => c.push(ch),
                        None => c.push_str(resolve_xml_entity(&r.decode().ok()?)?),
                    }
                }
            }
            Event::End(_) => {
                let name = stack.pop()?;
                if let Some(value) = current.take() {
                    if name == "username" {
                        user = Some(value);
                    } else {
                        pass = Some(value);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() || !saw_login {
        return None;
    }
    Some((user?, pass?))
}

fn parse_soap_version(v: &str) -> Option<f64> {
    let n: f64 = v.parse().ok()?;
    v.contains('.').then_some(n)
}

async fn soap_login(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let mut org = shared.org();
    org.count(CallKind::Login);
    if let Some(f) = org.take_failure(CallKind::Login) {
        let e = f.api_error();
        if e.status == 503 {
            return (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response();
        }
        return soap_fault(&e.code, "UnexpectedErrorFault", &e.message);
    }
    let Some(v) = parse_soap_version(&version) else {
        return soap_fault(
            "UNSUPPORTED_API_VERSION",
            "UnexpectedErrorFault",
            &format!("Invalid Api version specified on URL: {version}"),
        );
    };
    if !(crate::MIN_API_VERSION..=MAX_SOAP_LOGIN_VERSION).contains(&v) {
        return soap_fault(
            "UNSUPPORTED_API_VERSION",
            "UnexpectedErrorFault",
            &format!(
                "The login() call is not available in API version {version}; use 37.0 to 64.0"
            ),
        );
    }
    let text = String::from_utf8_lossy(&body);
    let Some((username, password)) = parse_login(&text) else {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>Unable to parse the login request: expected a partner login envelope with username and password</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        return xml(StatusCode::INTERNAL_SERVER_ERROR, body.to_owned());
    };
    let Some((sid, user_id)) = org.login(&username, &password) else {
        tracing::info!(%username, "SOAP login failed");
        return soap_fault("INVALID_LOGIN", "LoginFault", INVALID_LOGIN);
    };
    let base = &shared.base_url;
    let org15 = org.org_id15().to_owned();
    let user = org.record(&user_id);
    let field =
        |f: &str| escape(user.and_then(|u| u.str(f)).unwrap_or_default().to_owned()).into_owned();
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>{sandbox}</sandbox><serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl><sessionId>{sid}</sessionId><userId>{user_id}</userId><userInfo><currencySymbol>$</currencySymbol><organizationId>{org_id}</organizationId><organizationMultiCurrency>false</organizationMultiCurrency><organizationName>{org_name}</organizationName><profileId>00e5g000000AAAAAAA</profileId><roleId xsi:nil="true"/><sessionSecondsValid>{ttl}</sessionSecondsValid><userDefaultCurrencyIsoCode xsi:nil="true"/><userEmail>{email}</userEmail><userFullName>{full}</userFullName><userId>{user_id}</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>{uname}</userName><userTimeZone>Europe/Brussels</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#,
        sandbox = org.sandbox,
        org_id = org.org_id,
        org_name = escape(org.name.as_str()),
        ttl = org.session_seconds_valid(),
        email = field("Email"),
        full = field("Name"),
        uname = field("Username"),
    );
    tracing::info!(%username, "SOAP login");
    xml(StatusCode::OK, body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn client_error(code: &str) -> Response {
    let description = if code == "invalid_client_id" {
        "client identifier invalid"
    } else {
        "invalid client credentials"
    };
    oauth_error(StatusCode::BAD_REQUEST, code, description)
}

async fn oauth_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut org = shared.org();
    org.count(CallKind::Login);
    if let Some(f) = org.take_failure(CallKind::Login) {
        let e = f.api_error();
        return oauth_error(e.status_code(), &e.code.to_lowercase(), &e.message);
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body must be application/x-www-form-urlencoded",
        );
    };
    let param = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let (client_id, secret) = (param("client_id"), param("client_secret"));
    let outcome = match param("grant_type") {
        "password" => {
            if let Err(code) = org.client_ok(client_id, secret) {
                return client_error(code);
            }
            let username = param("username");
            let login = if org.allow_username_password_flow {
                org.login(username, param("password"))
            } else {
                None
            };
            match login {
                Some(ok) => ok,
                None => {
                    tracing::info!(%username, "OAuth password login failed");
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "authentication failure",
                    );
                }
            }
        }
        "client_credentials" => match org.client_login(client_id, secret) {
            Ok(ok) => ok,
            Err(code) => return client_error(code),
        },
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant type not supported",
            );
        }
    };
    let (sid, user_id) = outcome;
    let base = &shared.base_url;
    let signature: String = {
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    tracing::info!(grant_type = param("grant_type"), %client_id, "OAuth login");
    axum::Json(json!({
        "access_token": sid,
        "instance_url": base,
        "id": format!("{base}/id/{}/{user_id}", org.org_id),
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        "signature": signature,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_login_envelopes() {
        let env = r#"<?xml version="1.0"?><se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>a&amp;b@x.com</username><password>p&lt;&#62;&quot;q<![CDATA[&z]]></password></login></se:Body></se:Envelope>"#;
        assert_eq!(
            parse_login(env),
            Some(("a&b@x.com".to_owned(), "p<>\"q&z".to_owned()))
        );
    }

    #[test]
    fn rejects_non_login_bodies() {
        assert_eq!(parse_login("not xml <"), None);
        assert_eq!(
            parse_login("<a><username>x</username><password>y</password></a>"),
            None
        );
        assert_eq!(parse_login("<login><username>x</username>"), None);
        assert_eq!(parse_login("<login><username>x</username></login>"), None);
    }
}
