//! The sync protocol over HTTP: `POST /sync/push` (apply a batch of mutations, one answer each; the
//! rules are in [`crate::sync`]) and `GET /sync/pull` (page through the change log by cursor).

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use riverchief_shared::id::DeviceId;
use riverchief_shared::sync::{PullResponse, PushRequest, PushResponse};
use riverchief_shared::FieldError;
use serde::Deserialize;

/// Changes per pull page when the client does not say.
const DEFAULT_PULL_LIMIT: usize = 500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/sync/push").post(push).done())
        .service(Endpoint::new("/sync/pull").get(pull).done());
}

/// Applies a batch of mutations from a device, one answer each.
#[utoipa::path(post, path = "/api/v1/sync/push", tag = "sync",
    description = "Roles: any signed-in user (each mutation is judged for the caller's role). \
        Idempotent by mutation id: a replayed mutation gets its first answer again. A gzip- or \
        deflate-encoded body is inflated no further than the limit.",
    request_body = PushRequest,
    responses(
        (status = 200, description = "One result per mutation, in order", body = PushResponse),
    ))]
async fn push(
    state: web::Data<AppState>,
    metrics: web::Data<crate::metrics::Metrics>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let limits = state.limits;
    let body: PushRequest = json_body(&req, payload, limits.max_push_bytes).await?;
    if body.mutations.len() > limits.max_mutations_per_push {
        return Err(AppError::TooMany(FieldError::new(
            "too_many",
            "mutations",
            format!(
                "{} mutations; at most {} per push",
                body.mutations.len(),
                limits.max_mutations_per_push
            ),
        )));
    }
    let device_id = body.device_id;
    let policy = state.coverage;
    let results = state
        .db
        .run(move |conn| {
            let pusher = crate::sync::Pusher {
                caller: &user,
                device_id,
                limits: &limits,
                policy: &policy,
            };
            // Each mutation is received when its turn to be parsed comes.
            crate::sync::push_request(conn, &pusher, body.mutations, &mut Utc::now)
        })
        .await?;
    metrics.pushed(&results);
    Ok(HttpResponse::Ok().json(PushResponse { results }))
}

#[derive(Debug, Deserialize)]
struct PullQuery {
    since: Option<String>,
    limit: Option<String>,
    /// The pulling device: the changes of records only it has written are left out.
    device: Option<String>,
}

/// Where a pull starts: after which sequence, and whether the client's cursor had to be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub after: i64,
    pub reset: bool,
}

/// Reads a cursor `"<epoch>.<seq>"`. No cursor starts from the beginning; a cursor that does not
/// parse, comes from another database (epoch), or points past the end of the log is reset.
pub fn cursor_start(since: Option<&str>, epoch: &str, max_seq: i64) -> Start {
    const RESET: Start = Start {
        after: 0,
        reset: true,
    };
    let Some(since) = since.map(str::trim).filter(|s| !s.is_empty()) else {
        return Start {
            after: 0,
            reset: false,
        };
    };
    let Some((cursor_epoch, seq)) = since.rsplit_once('.') else {
        return RESET;
    };
    match seq.parse::<i64>() {
        Ok(seq) if cursor_epoch == epoch && (0..=max_seq).contains(&seq) => Start {
            after: seq,
            reset: false,
        },
        _ => RESET,
    }
}

/// The page size: default 500, at most `max`; zero, negative or not a number is refused.
pub fn page_limit(limit: Option<&str>, max: usize) -> Result<usize, FieldError> {
    let Some(text) = limit else {
        return Ok(DEFAULT_PULL_LIMIT.min(max));
    };
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(max).min(max)),
        Ok(_) => Err(FieldError::new(
            "out_of_range",
            "limit",
            "must be 1 or more",
        )),
        Err(_) => Err(FieldError::new(
            "invalid",
            "limit",
            "must be a whole number",
        )),
    }
}

/// A page of the change log the caller may see, after a cursor.
#[utoipa::path(get, path = "/api/v1/sync/pull", tag = "sync",
    description = "Roles: any signed-in user.",
    params(
        ("since" = Option<String>, Query, description = "The cursor of the last page (`<epoch>.<seq>`); none: from the start"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Changes per page (default 500, capped by the server)"),
    ),
    responses((status = 200, description = "The changes and the next cursor", body = PullResponse)))]
async fn pull(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<PullQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit.as_deref(), state.limits.max_pull_limit)?;
    let device = match query
        .device
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => None,
        Some(d) => Some(DeviceId::parse(d).map_err(|_| {
            AppError::from(FieldError::new(
                "invalid",
                "device",
                "must be a device id (a UUID)",
            ))
        })?),
    };
    let response = state
        .db
        .run(move |conn| -> Result<PullResponse, AppError> {
            let epoch = db::changes::epoch(conn)?;
            let max_seq = db::changes::max_seq(conn)?;
            let start = cursor_start(query.since.as_deref(), &epoch, max_seq);
            let page =
                db::changes::page_for_device(conn, user.id, user.role, start.after, limit, device)?;
            Ok(PullResponse {
                changes: page.changes,
                next: format!("{epoch}.{}", page.next),
                more: page.more,
                reset: start.reset,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: &str = "0192f0c1a2b37c4d8e9fa0b1c2d3e4f5";

    fn start(after: i64, reset: bool) -> Start {
        Start { after, reset }
    }

    #[test]
    fn no_cursor_starts_from_the_beginning() {
        assert_eq!(cursor_start(None, EPOCH, 10), start(0, false));
        assert_eq!(cursor_start(Some(""), EPOCH, 10), start(0, false));
    }

    #[test]
    fn a_good_cursor_continues() {
        assert_eq!(
            cursor_start(Some(&format!("{EPOCH}.7")), EPOCH, 10),
            start(7, false)
        );
        assert_eq!(
            cursor_start(Some(&format!("{EPOCH}.10")), EPOCH, 10),
            start(10, false)
        );
        assert_eq!(
            cursor_start(Some(&format!("{EPOCH}.0")), EPOCH, 0),
            start(0, false)
        );
    }

    #[test]
    fn bad_foreign_or_future_cursors_reset() {
        for bad in [
            "garbage".to_owned(),
            format!("{EPOCH}."),
            format!("{EPOCH}.x"),
            format!("{EPOCH}.-1"),
            format!("{EPOCH}.11"),
            format!("{EPOCH}.99999999999999999999999"),
            "otherepoch.3".to_owned(),
            ".3".to_owned(),
        ] {
            assert_eq!(cursor_start(Some(&bad), EPOCH, 10), start(0, true), "{bad}");
        }
    }

    #[test]
    fn limits_default_cap_and_refuse() {
        assert_eq!(page_limit(None, 1000), Ok(500));
        assert_eq!(page_limit(Some("20"), 1000), Ok(20));
        assert_eq!(page_limit(Some("5000"), 1000), Ok(1000));
        assert_eq!(
            page_limit(Some("99999999999999999999"), 1000).map_err(|e| e.field),
            Err("limit".into())
        );
        for bad in ["0", "-3", "ten", ""] {
            let err = page_limit(Some(bad), 1000).map_err(|e| e.field);
            assert_eq!(err, Err("limit".to_owned()), "{bad}");
        }
    }
}
