//! Reading JSON request bodies with our own byte limit, so that every refusal (wrong content type,
//! oversize body, bad JSON) comes back in the JSON error envelope rather than as actix's plain text,
//! and so that a field error names its path.

use crate::error::{parse_json, AppError};
use actix_web::dev::Decompress;
use actix_web::{web, HttpMessage, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;

/// Refuses a body that is not declared as JSON (`application/json` or any `+json` type).
pub fn require_json(req: &HttpRequest) -> Result<(), AppError> {
    let refuse =
        || AppError::UnsupportedMediaType("send JSON with Content-Type: application/json".into());
    let mime = req.mime_type().map_err(|_| refuse())?.ok_or_else(refuse)?;
    let json = mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json");
    if mime.type_() == "application" && json {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// Reads the whole body, refusing it with 413 as soon as it is known to exceed `limit` bytes.
/// A body sent with `Content-Encoding: gzip` (or deflate) is decompressed first, and the limit
/// applies to what it decompresses to.
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, AppError> {
    let too_large = || AppError::TooLarge(format!("the body is over {limit} bytes"));
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut payload = Decompress::from_headers(payload.into_inner(), req.headers());
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(format!("reading the body: {e}")))?;
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON body of at most `limit` bytes, parsed into `T` with field paths in its errors.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, AppError> {
    require_json(req)?;
    let body = read_limited(req, payload, limit).await?;
    parse_json(&body)
}
