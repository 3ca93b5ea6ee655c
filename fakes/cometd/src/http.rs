//! The HTTP side: routes, version and size checks, authentication, body parsing, cookies.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;

use crate::Shared;
use crate::bayeux::{self, RequestContext};

const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";
const STREAM_COOKIE: &str = "sfdc-stream";
const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// A request rejected before its messages are looked at. The text never contains a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("API version in the URI is mandatory. URI format: '/cometd/{example:.1}'")]
    MissingVersion { example: f64 },
    #[error(
        "Unsupported API version. Only API versions '{min:.1}' and later are supported. URI format: '/cometd/{example:.1}'"
    )]
    UnsupportedVersion { min: f64, example: f64 },
    #[error("Maximum Request Size Exceeded")]
    TooLarge,
    #[error("Request requires authentication")]
    Unauthenticated,
    #[error("Malformed request: {0}")]
    Malformed(String),
}

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Unauthenticated => StatusCode::UNAUTHORIZED,
            RequestError::MissingVersion { .. }
            | RequestError::UnsupportedVersion { .. }
            | RequestError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for RequestError {
    /// The HTTP status plus a Bayeux-shaped body: `[{"successful":false,"error":"413::…"}]`.
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::warn!(status = status.as_u16(), error = %self, "cometd request rejected");
        let error = format!("{}::{}", status.as_u16(), self);
        json_response(status, &[bayeux::error_without_channel(&error)])
    }
}

fn json_response(status: StatusCode, messages: &[Value]) -> Response {
    let body = serde_json::to_vec(messages).unwrap_or_else(|_| b"[]".to_vec());
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    response
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/cometd", post(without_version))
        .route("/cometd/", post(without_version))
        .route("/cometd/{version}", post(with_version))
        .route("/cometd/{version}/", post(with_version))
        .route("/cometd/{version}/{*message_type}", post(with_message_type))
        .with_state(shared)
}

async fn without_version(State(shared): State<Arc<Shared>>) -> Response {
    RequestError::MissingVersion {
        example: shared.config.max_api_version,
    }
    .into_response()
}

async fn with_version(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(shared, &version, headers, body).await
}

/// CometD JS appends `/handshake`, `/connect`, … to URLs whose last segment has no '.'; the
/// suffix carries no information the messages do not, so it is ignored.
async fn with_message_type(
    State(shared): State<Arc<Shared>>,
    Path((version, _message_type)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(shared, &version, headers, body).await
}

async fn serve(shared: Arc<Shared>, version: &str, headers: HeaderMap, body: Body) -> Response {
    match handle(shared, version, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    shared: Arc<Shared>,
    version: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RequestError> {
    check_version(version, &shared)?;
    let bytes = read_limited(body, shared.config.max_body_bytes).await?;
    let token = bearer_token(&headers).ok_or(RequestError::Unauthenticated)?;
    let messages = parse_messages(&headers, bytes).await?;
    let browser_cookie = cookie(&headers, BROWSER_COOKIE);
    let ctx = RequestContext {
        authenticated: (shared.auth)(token),
        has_browser_cookie: browser_cookie.is_some(),
    };

    let mut replies = Vec::new();
    let mut handshaken = false;
    for message in &messages {
        let (out, handshake_ok) = bayeux::process(&shared, &ctx, message).await;
        replies.extend(out);
        handshaken |= handshake_ok;
    }

    let mut response = json_response(StatusCode::OK, &replies);
    if handshaken {
        let headers = response.headers_mut();
        if browser_cookie.is_none() {
            let value = uuid::Uuid::new_v4().simple().to_string();
            append_cookie(
                headers,
                &format!("{BROWSER_COOKIE}={value}; Path=/; HttpOnly"),
            );
        }
        // The load-balancer cookie rotates on every handshake.
        let route: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        append_cookie(headers, &format!("{STREAM_COOKIE}=!{route}; Path=/"));
    }
    Ok(response)
}

fn append_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(SET_COOKIE, value);
    }
}

/// `37.0`, `58`, `62.0` are versions; anything else (empty, `replay`, `1e2`, `inf`) is not.
fn check_version(version: &str, shared: &Shared) -> Result<(), RequestError> {
    let config = &shared.config;
    let well_formed = !version.is_empty()
        && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        && version.starts_with(|c: char| c.is_ascii_digit());
    let parsed = if well_formed {
        version.parse::<f64>().ok()
    } else {
        None
    };
    match parsed {
        None => Err(RequestError::MissingVersion {
            example: config.max_api_version,
        }),
        Some(v) if v < config.min_api_version || v > config.max_api_version => {
            Err(RequestError::UnsupportedVersion {
                min: config.min_api_version,
                example: config.max_api_version,
            })
        }
        Some(_) => Ok(()),
    }
}

/// Reads the body, giving up as soon as it grows past `max` bytes.
async fn read_limited(body: Body, max: usize) -> Result<Vec<u8>, RequestError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RequestError::Malformed(format!("unreadable body: {e}")))?;
        if bytes.len() + chunk.len() > max {
            return Err(RequestError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The token of `Authorization: Bearer <t>`, `OAuth <t>` or a bare `<t>`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let is_scheme = |word: &str| {
        ["Bearer", "OAuth"]
            .iter()
            .any(|s| word.eq_ignore_ascii_case(s))
    };
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if is_scheme(scheme) => rest.trim(),
        None if is_scheme(value) => "",
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// The value of the named cookie in the request's `Cookie` headers, if present and non-empty.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, value)| *n == name && !value.is_empty())
        .map(|(_, value)| value)
}

#[derive(serde::Deserialize)]
struct FormBody {
    message: String,
}

/// A JSON array of messages or one message object; or a form with `message=<json>`.
async fn parse_messages(headers: &HeaderMap, bytes: Vec<u8>) -> Result<Vec<Value>, RequestError> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let json = if is_form {
        let request = Request::builder()
            .method("POST")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(bytes))
            .map_err(|e| RequestError::Malformed(e.to_string()))?;
        let axum::Form(form) = axum::Form::<FormBody>::from_request(request, &())
            .await
            .map_err(|e| RequestError::Malformed(format!("bad form body: {}", e.body_text())))?;
        form.message.into_bytes()
    } else {
        bytes
    };
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Array(messages)) => Ok(messages),
        Ok(message @ Value::Object(_)) => Ok(vec![message]),
        Ok(_) => Err(RequestError::Malformed(
            "expected a JSON array of Bayeux messages".into(),
        )),
        Err(e) => Err(RequestError::Malformed(format!("invalid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(*name, value);
            }
        }
        map
    }

    #[test]
    fn tokens_in_all_three_forms() {
        let t = |v: &str| bearer_token(&headers(&[("authorization", v)])).map(str::to_owned);
        assert_eq!(t("Bearer abc"), Some("abc".into()));
        assert_eq!(t("bearer abc"), Some("abc".into()));
        assert_eq!(t("OAuth 00D!x.y"), Some("00D!x.y".into()));
        assert_eq!(t("00D!x.y"), Some("00D!x.y".into()));
        assert_eq!(t("Bearer "), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let h = headers(&[
            ("cookie", "a=1; sfdc-stream=!x"),
            ("cookie", "BAYEUX_BROWSER=abc"),
        ]);
        assert_eq!(cookie(&h, BROWSER_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, STREAM_COOKIE), Some("!x"));
        assert_eq!(
            cookie(&headers(&[("cookie", "BAYEUX_BROWSER=")]), BROWSER_COOKIE),
            None
        );
    }

    #[tokio::test]
    async fn bodies_parse_as_array_object_or_form() {
        let json = headers(&[("content-type", "application/json")]);
        let arr = parse_messages(&json, br#"[{"channel":"/meta/connect"},{}]"#.to_vec()).await;
        assert_eq!(arr.map(|m| m.len()).ok(), Some(2));
        let one = parse_messages(&json, br#"{"channel":"/meta/connect"}"#.to_vec()).await;
        assert_eq!(one.map(|m| m.len()).ok(), Some(1));
        assert!(matches!(
            parse_messages(&json, b"[{".to_vec()).await,
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_messages(&json, b"42".to_vec()).await,
            Err(RequestError::Malformed(_))
        ));
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let body = b"message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D".to_vec();
        let parsed = parse_messages(&form, body).await.unwrap_or_default();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0]["channel"], "/meta/handshake");
    }
}
