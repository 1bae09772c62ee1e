//! Resumable photo uploads: tus 1.0.0 core with the creation and checksum extensions, at
//! `/api/v1/uploads` (see docs/http-api.md, "Photos").
//!
//! `POST` announces a photo by its length and SHA-256; `PATCH` appends a chunk at the offset the server
//! reports with `HEAD`. The offset and the one-writer lease live in the database and the chunks in the
//! shared photo store, so every request of an upload may reach a different server instance (see
//! `photo_store`). When the last byte arrives the bytes are sniffed and hashed, and only a photo whose
//! bytes match its announced digest enters the store; then one transaction records the photo, ends the
//! upload and tells the issues that were waiting for it.

use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::photo_store::{OnInterrupt, UploadError, UploadId};
use crate::state::AppState;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use futures_util::StreamExt;
use riverchief_shared::api::{ErrorBody, ErrorDetail};
use riverchief_shared::photo::{PhotoType, Sha256};
use riverchief_shared::FieldError;
use sha2::Digest;

const TUS_VERSION: &str = "1.0.0";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub fn configure(cfg: &mut web::ServiceConfig) {
    let tus_headers = || DefaultHeaders::new().add(("Tus-Resumable", TUS_VERSION));
    cfg.service(
        web::resource("/uploads")
            .wrap(tus_headers())
            .route(web::post().to(create))
            .route(web::method(Method::OPTIONS).to(options))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/uploads/{id}")
            .wrap(tus_headers())
            .route(web::head().to(head))
            .route(web::patch().to(patch))
            .route(web::method(Method::OPTIONS).to(options))
            .default_service(web::to(method_not_allowed)),
    );
}

/// What the server supports; open to anyone, as tus clients ask before they authenticate.
#[utoipa::path(options, path = "/api/v1/uploads", tag = "photos",
    description = "tus discovery; no token needed.",
    security(()),
    responses((status = 204, description = "What the tus server supports", headers(
        ("Tus-Resumable" = String, description = "1.0.0"),
        ("Tus-Version" = String, description = "1.0.0"),
        ("Tus-Extension" = String, description = "creation,checksum"),
        ("Tus-Max-Size" = u64, description = "The largest photo accepted, in bytes"),
        ("Tus-Checksum-Algorithm" = String, description = "sha1,sha256"),
    ))))]
async fn options(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", "creation,checksum"))
        .insert_header(("Tus-Max-Size", state.limits.max_photo_bytes.to_string()))
        .insert_header(("Tus-Checksum-Algorithm", "sha1,sha256"))
        .finish()
}

/// tus creation: announces a photo by its length and SHA-256.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "photos",
    description = "Roles: any signed-in user. tus 1.0.0 with the creation and checksum extensions. \
        `Upload-Metadata` carries `sha256` (required, base64 of the hex digest) and `content_type`.",
    params(
        ("Tus-Resumable" = String, Header, description = "The tus version: `1.0.0` (anything else is 412)"),
        ("Upload-Length" = u64, Header, minimum = 1, description = "The photo's size in bytes"),
        ("Upload-Metadata" = String, Header, description = "tus metadata: `sha256 <base64>,content_type <base64>`"),
    ),
    responses(
        (status = 201, description = "The upload was created", headers(
            ("Location" = String, description = "/api/v1/uploads/<id>"),
            ("Upload-Offset" = u64, description = "0"),
            ("Tus-Resumable" = String, description = "1.0.0"),
        )),
        (status = 412, description = "A tus version other than 1.0.0", headers(("Tus-Version" = String))),
        (status = 413, description = "The photo is larger than the server accepts"),
    ))]
async fn create(
    req: HttpRequest,
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if let Some(refusal) = unsupported_version(&req) {
        return Ok(refusal);
    }
    let headers = req.headers();
    if headers.contains_key("Upload-Defer-Length") {
        return Err(AppError::Invalid(FieldError::new(
            "invalid",
            "Upload-Defer-Length",
            "deferred lengths are not supported: send Upload-Length",
        )));
    }
    let length = number_header(headers, "Upload-Length")?.ok_or_else(|| {
        AppError::Invalid(FieldError::new(
            "required",
            "Upload-Length",
            "is required: the photo's size in bytes",
        ))
    })?;
    if length == 0 {
        return Err(AppError::Invalid(FieldError::new(
            "invalid",
            "Upload-Length",
            "must be at least 1: an empty file is not a photo",
        )));
    }
    let max = state.limits.max_photo_bytes;
    if length > max {
        return Err(AppError::TooLarge(format!(
            "the photo is {length} bytes; at most {max} are accepted"
        )));
    }
    let metadata = headers
        .get("Upload-Metadata")
        .map(|v| {
            v.to_str().map_err(|_| {
                AppError::Invalid(FieldError::new(
                    "invalid",
                    "Upload-Metadata",
                    "is not readable text",
                ))
            })
        })
        .transpose()?
        .unwrap_or("");
    let metadata = UploadMetadata::parse(metadata)?;
    let upload = db::photos::Upload {
        id: UploadId::new(),
        sha256: metadata.sha256,
        length,
        content_type: metadata.content_type,
        created_by: user.id,
        offset: 0,
    };
    let id = upload.id;
    state
        .db
        .run(move |conn| db::photos::insert_upload(conn, &upload).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/uploads/{id}")))
        .insert_header(("Upload-Offset", "0"))
        .finish())
}

/// tus: where an upload stands.
#[utoipa::path(head, path = "/api/v1/uploads/{id}", tag = "photos",
    description = "Roles: the user who created the upload.",
    params(("id" = String, Path, description = "The upload's id (from `Location`)"), ("Tus-Resumable" = String, Header, description = "The tus version: `1.0.0` (anything else is 412)")),
    responses(
        (status = 200, description = "The offset to resume from", headers(
            ("Upload-Offset" = u64), ("Upload-Length" = u64), ("Upload-Metadata" = String),
            ("Cache-Control" = String, description = "no-store"),
        )),
        (status = 404, description = "No such upload, or its bytes are gone"),
        (status = 412, description = "A tus version other than 1.0.0", headers(("Tus-Version" = String))),
    ))]
async fn head(
    req: HttpRequest,
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    if let Some(refusal) = unsupported_version(&req) {
        return Ok(refusal);
    }
    let upload = find_upload(&state, &path, &user).await?;
    // A PATCH cut a moment ago may still be storing its bytes: report the offset it leaves.
    let offset = state
        .photos
        .settled_offset(&state.db, upload.id)
        .await
        .map_err(|e| refusal_of(e, upload.offset))?
        .ok_or_else(upload_gone)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Upload-Offset", offset.to_string()))
        .insert_header(("Upload-Length", upload.length.to_string()))
        .insert_header(("Upload-Metadata", echo_metadata(&upload)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// tus: appends a chunk at the offset.
#[utoipa::path(patch, path = "/api/v1/uploads/{id}", tag = "photos",
    description = "Roles: the user who created the upload. When the last byte arrives the photo is \
        sniffed and hashed; bytes that are not an image are 415, bytes that do not match the \
        announced digest (or a chunk that does not match `Upload-Checksum`) are 460.",
    params(
        ("id" = String, Path, description = "The upload's id (from `Location`)"),
        ("Tus-Resumable" = String, Header, description = "The tus version: `1.0.0` (anything else is 412)"),
        ("Upload-Offset" = u64, Header, description = "Where this chunk starts (the offset HEAD reports)"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this chunk"),
    ),
    request_body(content = super::openapi::Binary, content_type = "application/offset+octet-stream", description = "The chunk's bytes"),
    responses(
        (status = 204, description = "Stored; the new offset", headers(("Upload-Offset" = u64))),
        (status = 404, description = "No such upload, or its bytes are gone"),
        (status = 409, description = "The offset is not the upload's, or another PATCH holds it"),
        (status = 412, description = "A tus version other than 1.0.0", headers(("Tus-Version" = String))),
        (status = 415, description = "Not application/offset+octet-stream, or the photo is not an image"),
        (status = 460, description = "The bytes do not match their checksum or digest"),
    ))]
async fn patch(
    req: HttpRequest,
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut body: web::Payload,
) -> Result<HttpResponse, AppError> {
    if let Some(refusal) = unsupported_version(&req) {
        return Ok(refusal);
    }
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(OFFSET_OCTET_STREAM) {
        return Err(AppError::UnsupportedMediaType(format!(
            "a PATCH to an upload needs Content-Type: {OFFSET_OCTET_STREAM}"
        )));
    }
    let offset = number_header(headers, "Upload-Offset")?.ok_or_else(|| {
        AppError::Invalid(FieldError::new(
            "required",
            "Upload-Offset",
            "is required: the offset this chunk starts at",
        ))
    })?;
    let checksum = headers
        .get("Upload-Checksum")
        .map(|v| {
            v.to_str()
                .map_err(|_| ChecksumError::Unreadable)
                .and_then(ChunkChecksum::parse)
                .map_err(|e| {
                    AppError::Invalid(FieldError::new("invalid", "Upload-Checksum", e.to_string()))
                })
        })
        .transpose()?;
    let upload = find_upload(&state, &path, &user).await?;
    let on_interrupt = if checksum.is_some() {
        OnInterrupt::Discard
    } else {
        OnInterrupt::Keep
    };
    let mut chunk = state
        .photos
        .begin_chunk(&state.db, &upload, offset, on_interrupt)
        .await
        .map_err(|e| refusal_of(e, offset))?;
    let remaining = upload.length - offset.min(upload.length);
    if let Some(declared) = number_header(headers, header::CONTENT_LENGTH.as_str())? {
        if declared > remaining {
            chunk.discard().await.map_err(|e| refusal_of(e, offset))?;
            return Err(past_length(&upload, offset));
        }
    }
    let mut hasher = checksum.as_ref().map(ChunkChecksum::hasher);
    while let Some(piece) = body.next().await {
        let bytes = match piece {
            Ok(bytes) => bytes,
            Err(e) => {
                // The client is gone (or sent a broken body): keep what arrived unless the chunk had a
                // checksum, which can no longer be verified.
                let kept = if checksum.is_some() {
                    chunk.discard().await.map_err(|e| refusal_of(e, offset))?;
                    0
                } else {
                    let new_offset = chunk.keep().await.map_err(|e| refusal_of(e, offset))?;
                    new_offset - offset
                };
                return Err(AppError::BadRequest(format!(
                    "the request body broke off ({e}); {kept} bytes of it were kept"
                )));
            }
        };
        if chunk.written() + bytes.len() as u64 > remaining {
            chunk.discard().await.map_err(|e| refusal_of(e, offset))?;
            return Err(past_length(&upload, offset));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&bytes);
        }
        chunk
            .write(&bytes)
            .await
            .map_err(|e| refusal_of(e, offset))?;
    }
    if let (Some(expected), Some(h)) = (&checksum, hasher) {
        let actual = h.finish();
        if actual != expected.digest {
            chunk.discard().await.map_err(|e| refusal_of(e, offset))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            return Err(AppError::ChecksumMismatch(format!(
                "the chunk's {} is {}, not {} as Upload-Checksum says; it was discarded",
                expected.algorithm.name(),
                b64.encode(&actual),
                b64.encode(&expected.digest),
            )));
        }
    }
    if offset + chunk.written() < upload.length {
        let new_offset = chunk.keep().await.map_err(|e| refusal_of(e, offset))?;
        return Ok(offset_response(new_offset));
    }
    chunk
        .finish(user.id)
        .await
        .map_err(|e| refusal_of(e, offset))?;
    Ok(offset_response(upload.length))
}

/// The answer to a `PATCH` that could not begin or end (`offset` is where the client said it was).
fn refusal_of(e: UploadError, offset: u64) -> AppError {
    match e {
        UploadError::Busy => AppError::Conflict(
            "another PATCH to this upload is still in progress; wait for it to end, then HEAD the \
             upload and resume from its offset"
                .into(),
        ),
        UploadError::OffsetMismatch { current } => AppError::Conflict(format!(
            "Upload-Offset is {offset} but the upload is at {current}; HEAD it and resume from there"
        )),
        UploadError::LeaseLost => AppError::Conflict(
            "this PATCH stalled and another took the upload over; HEAD it and resume from its offset"
                .into(),
        ),
        UploadError::Gone => upload_gone(),
        UploadError::NotAnImage => AppError::UnsupportedMediaType(
            "the uploaded bytes are not a JPEG, PNG, WebP, HEIC or HEIF image; the upload was deleted"
                .into(),
        ),
        UploadError::Mismatch { expected, actual } => AppError::ChecksumMismatch(format!(
            "the uploaded bytes hash to sha256 {actual}, but Upload-Metadata announced {expected}; \
             the upload was deleted"
        )),
        UploadError::Db(e) => AppError::Db(e),
        UploadError::Io(e) => AppError::Io(e),
    }
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not supported here: uploads take POST, and each upload HEAD and PATCH",
            req.method()
        ),
    )
}

/// The upload named in the path, if it is this user's.
async fn find_upload(
    state: &AppState,
    raw_id: &str,
    user: &AuthUser,
) -> Result<db::photos::Upload, AppError> {
    let not_found = || AppError::NotFound(format!("no upload {raw_id} of yours"));
    let id = UploadId::parse(raw_id).map_err(|_| not_found())?;
    let user_id = user.id;
    state
        .db
        .run(move |conn| db::photos::upload_of(conn, id, user_id).map_err(AppError::from))
        .await?
        .ok_or_else(not_found)
}

fn upload_gone() -> AppError {
    AppError::NotFound("this upload's bytes are gone; create a new upload".into())
}

fn past_length(upload: &db::photos::Upload, offset: u64) -> AppError {
    AppError::BadRequest(format!(
        "the body runs past Upload-Length ({}) from offset {offset}; nothing of it was kept",
        upload.length
    ))
}

fn offset_response(offset: u64) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Upload-Offset", offset.to_string()))
        .finish()
}

/// An error answer in the usual envelope, for the statuses that `AppError` does not model.
fn refusal(status: StatusCode, code: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message,
            field: None,
            current_status: None,
        },
    })
}

/// tus: a request must say which protocol version it speaks; anything but 1.0.0 gets 412 and the
/// versions this server speaks.
fn unsupported_version(req: &HttpRequest) -> Option<HttpResponse> {
    let given = req.headers().get("Tus-Resumable");
    if given.is_some_and(|v| v.as_bytes() == TUS_VERSION.as_bytes()) {
        return None;
    }
    let mut response = refusal(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!(
            "this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}{}",
            given
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (not {v})"))
                .unwrap_or_default()
        ),
    );
    response.headers_mut().insert(
        header::HeaderName::from_static("tus-version"),
        HeaderValue::from_static(TUS_VERSION),
    );
    Some(response)
}

/// A header holding a non-negative integer; `None` when absent.
fn number_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, AppError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let bad = || {
        AppError::Invalid(FieldError::new(
            "invalid",
            name,
            "must be a non-negative integer",
        ))
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map(Some).map_err(|_| bad())
}

/// The metadata `HEAD` echoes: what the server kept of what the client sent.
fn echo_metadata(upload: &db::photos::Upload) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = format!("sha256 {}", b64.encode(upload.sha256.hex()));
    if let Some(t) = upload.content_type {
        out.push_str(&format!(",content_type {}", b64.encode(t.mime())));
    }
    out
}

/// What a client announces about a photo in `Upload-Metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMetadata {
    pub sha256: Sha256,
    /// The declared type (`content_type`, or tus-js-client's `filetype`), if any.
    pub content_type: Option<PhotoType>,
}

impl UploadMetadata {
    pub fn parse(header: &str) -> Result<Self, AppError> {
        let pairs = parse_metadata_pairs(header)?;
        let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let field = "Upload-Metadata.sha256";
        let sha = value("sha256").ok_or_else(|| {
            FieldError::new(
                "required",
                field,
                "is required: the photo's SHA-256 as 64 lowercase hex characters, base64-encoded \
                 like every tus metadata value",
            )
        })?;
        let sha = std::str::from_utf8(sha)
            .map_err(|_| FieldError::new("bad_hash", field, "is not text"))
            .and_then(|s| Sha256::parse(s, field))?;
        let declared = value("content_type").or_else(|| value("filetype"));
        let content_type = match declared {
            None => None,
            Some(raw) => declared_type(raw)?,
        };
        Ok(UploadMetadata {
            sha256: sha,
            content_type,
        })
    }
}

/// A declared media type: empty or `application/octet-stream` say nothing; otherwise it must be one
/// of the photo types (the bytes decide in the end, this only refuses early what cannot be a photo).
fn declared_type(raw: &[u8]) -> Result<Option<PhotoType>, AppError> {
    let text = String::from_utf8_lossy(raw);
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || essence == "application/octet-stream" {
        return Ok(None);
    }
    let essence = if essence == "image/jpg" {
        "image/jpeg".to_owned()
    } else {
        essence
    };
    PhotoType::from_mime(&essence).map(Some).ok_or_else(|| {
        AppError::UnsupportedMediaType(format!(
            "a photo must be JPEG, PNG, WebP, HEIC or HEIF, not {text}"
        ))
    })
}

/// Splits a tus `Upload-Metadata` header: comma-separated `key base64value` pairs, the value optional,
/// keys unique and free of spaces and commas.
pub fn parse_metadata_pairs(header: &str) -> Result<Vec<(String, Vec<u8>)>, FieldError> {
    let field = "Upload-Metadata";
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for pair in header.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (pair, ""),
        };
        if key.is_empty() {
            return Err(FieldError::new("invalid", field, "a key is empty"));
        }
        if value.contains(' ') {
            return Err(FieldError::new(
                "invalid",
                field,
                format!("the value of {key} holds a space; values are base64"),
            ));
        }
        let decoded = lenient_base64().decode(value).map_err(|_| {
            FieldError::new(
                "invalid",
                format!("{field}.{key}"),
                "is not base64 (tus metadata values are base64-encoded)",
            )
        })?;
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(FieldError::new(
                "invalid",
                field,
                format!("the key {key} appears twice"),
            ));
        }
        pairs.push((key.to_owned(), decoded));
    }
    Ok(pairs)
}

/// Standard base64, with or without padding.
fn lenient_base64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// The hash algorithms of the checksum extension that this server computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("is not readable text")]
    Unreadable,
    #[error("must be `<algorithm> <base64 digest>`")]
    Malformed,
    #[error("algorithm {0:?} is not supported; use sha1 or sha256")]
    UnsupportedAlgorithm(String),
    #[error("the digest is not base64")]
    NotBase64,
    #[error("a {algorithm} digest is {expected} bytes, not {got}")]
    WrongLength {
        algorithm: &'static str,
        expected: usize,
        got: usize,
    },
}

/// A chunk's `Upload-Checksum`: the algorithm and the digest the client computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

impl ChunkChecksum {
    pub fn parse(header: &str) -> Result<Self, ChecksumError> {
        let (algorithm, digest) = header
            .trim()
            .split_once(' ')
            .ok_or(ChecksumError::Malformed)?;
        let digest = digest.trim();
        if algorithm.is_empty() || digest.is_empty() || digest.contains(' ') {
            return Err(ChecksumError::Malformed);
        }
        let algorithm = match algorithm.to_ascii_lowercase().as_str() {
            "sha1" => ChecksumAlgorithm::Sha1,
            "sha256" => ChecksumAlgorithm::Sha256,
            _ => return Err(ChecksumError::UnsupportedAlgorithm(algorithm.to_owned())),
        };
        let digest = lenient_base64()
            .decode(digest)
            .map_err(|_| ChecksumError::NotBase64)?;
        if digest.len() != algorithm.digest_len() {
            return Err(ChecksumError::WrongLength {
                algorithm: algorithm.name(),
                expected: algorithm.digest_len(),
                got: digest.len(),
            });
        }
        Ok(ChunkChecksum { algorithm, digest })
    }

    fn hasher(&self) -> ChunkHasher {
        match self.algorithm {
            ChecksumAlgorithm::Sha1 => ChunkHasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => ChunkHasher::Sha256(sha2::Sha256::new()),
        }
    }
}

enum ChunkHasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl ChunkHasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn metadata_pairs_follow_the_tus_grammar() {
        let header = format!(
            "filename {},is_confidential, sha256 {}",
            b64("a.jpg"),
            b64("x")
        );
        let pairs = parse_metadata_pairs(&header).expect("parses");
        assert_eq!(
            pairs,
            vec![
                ("filename".to_owned(), b"a.jpg".to_vec()),
                ("is_confidential".to_owned(), Vec::new()),
                ("sha256".to_owned(), b"x".to_vec()),
            ]
        );
        // Unpadded base64 is accepted too.
        let pairs = parse_metadata_pairs("k YQ").expect("parses");
        assert_eq!(pairs, vec![("k".to_owned(), b"a".to_vec())]);
        assert!(parse_metadata_pairs("k !!!").is_err());
        assert!(parse_metadata_pairs("k YQ==,k YQ==").is_err());
        assert!(parse_metadata_pairs("k YQ== YQ==").is_err());
        assert_eq!(parse_metadata_pairs("").expect("empty"), vec![]);
    }

    #[test]
    fn metadata_needs_a_lowercase_sha256_and_an_image_type_if_any() {
        let sha = Sha256::of(b"photo");
        let ok = UploadMetadata::parse(&format!(
            "sha256 {},filetype {},filename {}",
            b64(&sha.hex()),
            b64("image/jpeg"),
            b64("IMG_0001.JPG")
        ))
        .expect("parses");
        assert_eq!(ok.sha256, sha);
        assert_eq!(ok.content_type, Some(PhotoType::Jpeg));

        let ok = UploadMetadata::parse(&format!(
            "content_type {},sha256 {}",
            b64("image/heic"),
            b64(&sha.hex())
        ))
        .expect("parses");
        assert_eq!(ok.content_type, Some(PhotoType::Heic));

        let ok = UploadMetadata::parse(&format!("sha256 {},filetype", b64(&sha.hex())))
            .expect("an empty filetype says nothing");
        assert_eq!(ok.content_type, None);

        let field_of = |header: String| match UploadMetadata::parse(&header) {
            Err(AppError::Invalid(e)) => e.field,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(field_of(String::new()), "Upload-Metadata.sha256");
        assert_eq!(
            field_of(format!("sha256 {}", b64(&sha.hex().to_uppercase()))),
            "Upload-Metadata.sha256"
        );
        assert_eq!(
            field_of(format!("sha256 {}", b64("abc"))),
            "Upload-Metadata.sha256"
        );
        assert!(matches!(
            UploadMetadata::parse(&format!(
                "sha256 {},content_type {}",
                b64(&sha.hex()),
                b64("text/plain")
            )),
            Err(AppError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn checksum_headers_name_a_supported_algorithm_and_a_digest_of_its_size() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let sha1 = b64.encode(sha1::Sha1::digest(b"chunk"));
        let sha256 = b64.encode(sha2::Sha256::digest(b"chunk"));
        let parsed = ChunkChecksum::parse(&format!("sha1 {sha1}")).expect("sha1");
        assert_eq!(parsed.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(parsed.digest, sha1::Sha1::digest(b"chunk").to_vec());
        let parsed = ChunkChecksum::parse(&format!("sha256 {sha256}")).expect("sha256");
        assert_eq!(parsed.algorithm, ChecksumAlgorithm::Sha256);

        assert!(matches!(
            ChunkChecksum::parse(&format!("md5 {sha1}")),
            Err(ChecksumError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            ChunkChecksum::parse(&format!("sha256 {sha1}")),
            Err(ChecksumError::WrongLength { .. })
        ));
        assert_eq!(ChunkChecksum::parse("sha1"), Err(ChecksumError::Malformed));
        assert_eq!(
            ChunkChecksum::parse("sha1 not*base64"),
            Err(ChecksumError::NotBase64)
        );
    }

    #[test]
    fn chunk_hashers_match_their_algorithms() {
        for (algorithm, expected) in [
            (ChecksumAlgorithm::Sha1, sha1::Sha1::digest(b"ab").to_vec()),
            (
                ChecksumAlgorithm::Sha256,
                sha2::Sha256::digest(b"ab").to_vec(),
            ),
        ] {
            let checksum = ChunkChecksum {
                algorithm,
                digest: expected.clone(),
            };
            let mut h = checksum.hasher();
            h.update(b"a");
            h.update(b"b");
            assert_eq!(h.finish(), expected);
        }
    }
}
