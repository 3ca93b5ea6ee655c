//! Errors: [`ApiError`] is a Salesforce REST error (`[{"message","errorCode","fields"?}]` with an
//! HTTP status); [`Error`] is what the in-process handle returns.

use axum::http::StatusCode;
use serde_json::json;

use crate::soql::{ErrorCode, SoqlError};

/// One Salesforce API error, as REST returns it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `fields` of field-level errors (absent for the others).
    pub fields: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            fields: None,
        }
    }

    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.fields = Some(fields.iter().map(|f| (*f).to_owned()).collect());
        self
    }

    pub fn not_found() -> Self {
        ApiError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn invalid_session() -> Self {
        ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    pub fn request_limit() -> Self {
        ApiError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub fn json_parser(message: impl Into<String>) -> Self {
        ApiError::new(400, "JSON_PARSER_ERROR", message)
    }

    pub fn entity_deleted() -> Self {
        ApiError::new(400, "ENTITY_IS_DELETED", "entity is deleted").with_fields(&[])
    }

    /// The REST body element `{"message","errorCode","fields"?}`.
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"message": self.message, "errorCode": self.code});
        if let (Some(fields), Some(obj)) = (&self.fields, v.as_object_mut()) {
            obj.insert("fields".into(), json!(fields));
        }
        v
    }

    /// The per-record error of the sObject Collections API `{"statusCode","message","fields"}`.
    pub fn collection_body(&self) -> serde_json::Value {
        json!({
            "statusCode": self.code,
            "message": self.message,
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<SoqlError> for ApiError {
    fn from(e: SoqlError) -> Self {
        let status = 400;
        match e.code {
            ErrorCode::MalformedQuery => ApiError::new(status, "MALFORMED_QUERY", e.message),
            ErrorCode::InvalidField => ApiError::new(status, "INVALID_FIELD", e.message),
            ErrorCode::InvalidType => ApiError::new(status, "INVALID_TYPE", e.message),
        }
    }
}

/// Errors of the in-process handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read org file {path}: {source}")]
    OrgFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid org file: {0}")]
    OrgToml(#[from] toml::de::Error),
    #[error("invalid org: {0}")]
    OrgSpec(String),
    #[error("no user named {0}")]
    UnknownUser(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}
