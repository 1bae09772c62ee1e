//! The server's one error type and its one mapping to HTTP.
//!
//! Policy: query functions return `db::QueryResult`; everything a handler can fail with converts
//! into [`AppError`] with `?`; [`AppError`]'s `ResponseError` impl is the only place an error becomes a
//! status code and the JSON envelope `{"error": {"code", "message", "field"}}`. Client mistakes are
//! 4xx with a message that names the problem (and the field, where there is one). Anything else is a
//! 500 whose detail goes to the log, not to the client. Extractor failures (bad JSON, bad query
//! strings, bad paths) are routed here too, through [`json_config`], [`query_config`] and [`path_config`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use riverchief_shared::api::{ErrorBody, ErrorDetail};
use riverchief_shared::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field of the request is wrong.
    #[error("{0}")]
    Invalid(FieldError),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A field clashes with what is stored (409 with the field named): a reading at a stored time
    /// with another level.
    #[error("{0}")]
    FieldConflict(FieldError),
    /// A movement would take stock below zero (409); the message says how much is available.
    #[error("{0}")]
    InsufficientStock(String),
    #[error("{0}")]
    TooLarge(String),
    /// A list in the request has more items than allowed (413, the field error's code).
    #[error("{0}")]
    TooMany(FieldError),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request names a record that does not exist.
    #[error("{0}")]
    UnknownReference(FieldError),
    /// tus checksum extension: the bytes do not match their digest (status 460).
    #[error("{0}")]
    ChecksumMismatch(String),
    /// A lifecycle step refused: 403 `forbidden` when the role may not take it, 409
    /// `invalid_transition` when the issue's status does not allow it; both name the status.
    #[error("{message}")]
    Step {
        forbidden: bool,
        message: String,
        current: riverchief_shared::domain::IssueStatus,
    },
    /// The path exists but not with this method (405, with `Allow`: the methods it takes).
    #[error("{method} is not supported here; this path takes {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// A byte range past the end of what is served (416, with `Content-Range: bytes */<size>`).
    #[error("the range is outside the {size} bytes there are")]
    RangeNotSatisfiable { size: u64 },
    /// Too many failed logins (429, with `Retry-After` in seconds).
    #[error("too many failed logins; try again in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::db::QueryError> for AppError {
    fn from(e: crate::db::QueryError) -> Self {
        AppError::Db(crate::db::DbError::Query(e))
    }
}

impl From<crate::password::PasswordError> for AppError {
    fn from(e: crate::password::PasswordError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::Invalid(e)
    }
}

impl AppError {
    fn code(&self) -> &str {
        match self {
            AppError::Invalid(e)
            | AppError::UnknownReference(e)
            | AppError::TooMany(e)
            | AppError::FieldConflict(e) => &e.code,
            AppError::MalformedJson(_) => "malformed_json",
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::InsufficientStock(_) => "insufficient_stock",
            AppError::TooLarge(_) => "too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::ChecksumMismatch(_) => "checksum_mismatch",
            AppError::Step {
                forbidden: true, ..
            } => "forbidden",
            AppError::Step { .. } => "invalid_transition",
            AppError::TooManyAttempts { .. } => "too_many_attempts",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            AppError::Db(_) | AppError::Io(_) | AppError::Internal(_) => "internal",
        }
    }

    /// The error detail as the client sees it (also used inside push results).
    pub fn detail(&self) -> ErrorDetail {
        match self {
            AppError::Invalid(e)
            | AppError::UnknownReference(e)
            | AppError::TooMany(e)
            | AppError::FieldConflict(e)
                if e.field.is_empty() =>
            {
                // An error about the body as a whole: no field to name.
                ErrorDetail {
                    code: e.code.clone(),
                    message: e.message.clone(),
                    field: None,
                    current_status: None,
                }
            }
            AppError::Invalid(e)
            | AppError::UnknownReference(e)
            | AppError::TooMany(e)
            | AppError::FieldConflict(e) => ErrorDetail::from(e.clone()),
            AppError::Db(_) | AppError::Io(_) | AppError::Internal(_) => ErrorDetail {
                code: "internal".into(),
                message: "internal error; it has been logged".into(),
                field: None,
                current_status: None,
            },
            AppError::Step { current, .. } => ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
                field: Some("kind".into()),
                current_status: Some(*current),
            },
            other => ErrorDetail {
                code: other.code().into(),
                message: other.to_string(),
                field: None,
                current_status: None,
            },
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Invalid(_) | AppError::MalformedJson(_) | AppError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) | AppError::InsufficientStock(_) | AppError::FieldConflict(_) => {
                StatusCode::CONFLICT
            }
            AppError::TooLarge(_) | AppError::TooMany(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::UnknownReference(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::ChecksumMismatch(_) => {
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
            }
            AppError::Step {
                forbidden: true, ..
            } => StatusCode::FORBIDDEN,
            AppError::Step { .. } => StatusCode::CONFLICT,
            AppError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AppError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            AppError::Db(_) | AppError::Io(_) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = HttpResponse::build(status);
        if matches!(self, AppError::Unauthorized(_)) {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        match self {
            AppError::TooManyAttempts { retry_after } => {
                resp.insert_header(("Retry-After", retry_after.to_string()));
            }
            AppError::MethodNotAllowed { allow, .. } => {
                resp.insert_header(("Allow", allow.as_str()));
            }
            AppError::RangeNotSatisfiable { size } => {
                resp.insert_header(("Content-Range", format!("bytes */{size}")));
            }
            _ => {}
        }
        resp.json(ErrorBody {
            error: self.detail(),
        })
    }
}

/// Turns actix's JSON extractor failures into the envelope: 413 for oversize bodies, 415 for a wrong
/// content type, 400 naming the field path for everything else.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError as J;
            let app = match &err {
                J::OverflowKnownLength { length, limit } => AppError::TooLarge(format!(
                    "the body is {length} bytes; at most {limit} are accepted"
                )),
                J::Overflow { limit } => {
                    AppError::TooLarge(format!("the body is over {limit} bytes"))
                }
                J::ContentType => AppError::UnsupportedMediaType(
                    "send JSON with Content-Type: application/json".into(),
                ),
                J::Deserialize(e) if e.is_data() => {
                    AppError::Invalid(FieldError::new("invalid", "", e.to_string()))
                }
                other => AppError::MalformedJson(other.to_string()),
            };
            app.into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| AppError::BadRequest(format!("query string: {err}")).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| AppError::NotFound(format!("path: {err}")).into())
}

/// Parses a JSON body, naming the field path of whatever is wrong. Handlers that need exact field
/// paths take `web::Bytes` and call this instead of using `web::Json`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: serde_json::Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| AppError::MalformedJson(e.to_string()))?;
    de.end()
        .map_err(|e| AppError::MalformedJson(e.to_string()))?;
    riverchief_shared::validate::parse_value(value, "").map_err(AppError::Invalid)
}
