//! Photo bytes by content address: `GET` and `HEAD /api/v1/photos/{sha256}`.
//!
//! A photo is served when its row is in the database (it has arrived) and the store holds its bytes.
//! Its address is its digest, so the answer never changes: clients may cache it for good. A single
//! byte range (`Range: bytes=...`) is answered 206 with `Content-Range`, streamed from the store
//! without reading the rest (a phone on a weak link resumes a large photo); several ranges are
//! answered with the whole photo (allowed by RFC 9110); a range past the end is 416.
//!
//! Who sees a photo (`db::issues::photo_visible_to`): duty leads and admins every photo; a patroller
//! the photos they uploaded and those listed by an issue they may see. Any other photo is answered 404,
//! the same as one that never arrived.

use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use riverchief_shared::photo::Sha256;

const CACHE_FOREVER: &str = "private, max-age=31536000, immutable";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        Endpoint::new("/photos/{sha256}")
            .get(photo)
            .on(Method::HEAD, photo)
            .done(),
    );
}

/// The photo's bytes; for `HEAD`, the same headers without them (actix drops the body of a HEAD
/// answer but keeps its length).
#[utoipa::path(
    method(get, head),
    path = "/api/v1/photos/{sha256}",
    tag = "photos",
    description = "Roles: duty leads and admins see every photo; a patroller the photos they uploaded \
        and those listed by an issue they may see (any other is 404, like one that never arrived). \
        A single `Range: bytes=` is answered 206; the answer never changes (cache it for good).",
    params(
        ("sha256" = Sha256, Path, description = "The photo's SHA-256, 64 lowercase hex characters"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=<first>-<last>`"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag held (the quoted digest)"),
    ),
    responses(
        (status = 200, description = "The photo", content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/heic"), ("image/heif")),
            headers(("ETag" = String), ("Cache-Control" = String), ("Accept-Ranges" = String))),
        (status = 206, description = "The range asked for", content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/heic"), ("image/heif")),
            headers(("Content-Range" = String, description = "bytes <first>-<last>/<size>"))),
        (status = 304, description = "The copy named by If-None-Match is current"),
        (status = 404, description = "No such photo, or one the caller may not see"),
        (status = 416, description = "The range is past the photo's end", headers(("Content-Range" = String, description = "bytes */<size>"))),
    ),
)]
async fn photo(
    req: HttpRequest,
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let sha = Sha256::parse(&path, "sha256")?;
    let not_found = || AppError::NotFound(format!("the server has no photo {sha}"));
    // A photo the caller may not see is answered like one that never arrived: its digest alone
    // tells nobody whether it exists.
    let row = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let visible = db::issues::photo_visible_to(conn, &sha, user.id, user.role)?;
            Ok(db::photos::photo(conn, &sha)?.filter(|_| visible))
        })
        .await?
        .ok_or_else(not_found)?;
    let etag = format!("\"{sha}\"");
    if super::if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, CACHE_FOREVER))
            .finish());
    }
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(raw) => match raw.parse::<header::Range>() {
            Ok(header::Range::Bytes(specs)) if specs.len() == 1 => {
                match specs[0].to_satisfiable_range(row.size_bytes) {
                    Some((first, last)) => Some((first, last)),
                    None => {
                        return Err(AppError::RangeNotSatisfiable {
                            size: row.size_bytes,
                        })
                    }
                }
            }
            // Several ranges, another unit, or a header that does not parse: the whole photo.
            _ => None,
        },
    };
    let reader = match range {
        Some((first, last)) => state.photos.photo_range(&sha, first..last + 1).await?,
        None => state.photos.photo(&sha).await?,
    };
    let Some(reader) = reader else {
        // The row says it arrived but the bytes are missing: answer as if it never came, so that a
        // client uploads it again and the store heals.
        tracing::warn!(photo = %sha, "a recorded photo is missing from the store");
        return Err(not_found());
    };
    let mut answer = match range {
        Some((first, last)) => {
            let mut a = HttpResponse::PartialContent();
            a.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{}", row.size_bytes),
            ));
            a
        }
        None => HttpResponse::Ok(),
    };
    Ok(answer
        .content_type(row.content_type)
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CACHE_FOREVER))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .no_chunking(reader.len)
        .streaming(reader.stream))
}
