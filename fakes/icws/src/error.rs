//! ICWS-shaped error responses: `{errorId, errorCode, message}` (plus `propertyName` for
//! missing properties and `alternateHostList` for 503 on connect).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The ICWS media type of every JSON response.
pub const ICWS_JSON: &str = "application/vnd.inin.icws+json";

/// `errorCode` of failed authentication on connect (observed on real servers).
pub const CODE_AUTH_FAILED: i64 = -2147221503;
/// `errorCode` of an unknown, expired or ended session (observed: "Session Identifier is invalid").
pub const CODE_SESSION_INVALID: i64 = -2147221499;
/// `errorCode` of a missing or mismatching session cookie.
pub const CODE_COOKIE: i64 = 1;
/// `errorCode` of a missing or mismatching CSRF token.
pub const CODE_CSRF: i64 = 2;
/// `errorCode` (E_INVALIDARG) of invented request errors.
pub const CODE_BAD_REQUEST: i64 = -2147024809;
/// `errorCode` of invented not-found errors.
pub const CODE_NOT_FOUND: i64 = -2147024894;
/// `errorCode` (E_FAIL) of server-side and injected failures.
pub const CODE_SERVER: i64 = -2147467259;

/// An error answered to an ICWS client.
#[derive(Debug, Clone)]
pub struct IcwsError {
    pub status: StatusCode,
    pub error_id: String,
    pub error_code: i64,
    pub message: String,
    pub property_name: Option<String>,
    pub alternate_hosts: Option<Vec<String>>,
}

impl IcwsError {
    pub fn new(
        status: StatusCode,
        error_id: &str,
        error_code: i64,
        message: impl Into<String>,
    ) -> Self {
        IcwsError {
            status,
            error_id: error_id.to_owned(),
            error_code,
            message: message.into(),
            property_name: None,
            alternate_hosts: None,
        }
    }

    pub fn bad_request(error_id: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_id, CODE_BAD_REQUEST, message)
    }

    pub fn invalid_representation(message: impl Into<String>) -> Self {
        Self::bad_request("error.request.invalidRepresentation", message)
    }

    pub fn missing_property(name: &str) -> Self {
        let mut e = Self::bad_request(
            "error.request.missingProperty",
            format!("The required property '{name}' is missing."),
        );
        e.property_name = Some(name.to_owned());
        e
    }

    pub fn not_found(error_id: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error_id, CODE_NOT_FOUND, message)
    }

    pub fn unauthorized(error_code: i64, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "error.request.connection.authenticationFailure",
            error_code,
            message,
        )
    }

    pub fn session_invalid() -> Self {
        Self::unauthorized(
            CODE_SESSION_INVALID,
            "The session identifier is invalid or the session has expired.",
        )
    }

    pub fn body(&self) -> Value {
        let mut v = json!({
            "errorId": self.error_id,
            "errorCode": self.error_code,
            "message": self.message,
        });
        if let Some(p) = &self.property_name {
            v["__type"] = json!("urn:inin.com:common:missingPropertyError");
            v["propertyName"] = json!(p);
        }
        if let Some(hosts) = &self.alternate_hosts {
            v["__type"] = json!("urn:inin.com:connection:alternateHosts");
            v["alternateHostList"] = json!(hosts);
        }
        v
    }
}

impl IntoResponse for IcwsError {
    fn into_response(self) -> Response {
        let mut resp = icws_json(self.status, &self.body());
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"ICWS realm="ICWS" location="/ICWS/connection""#),
            );
        }
        resp
    }
}

/// A JSON response with the ICWS media type.
pub fn icws_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ICWS_JSON))],
        body.to_string(),
    )
        .into_response()
}
