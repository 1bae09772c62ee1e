//! `GET /audit` (admins only): the audit trail, newest first, filtered by actor, kind and time, in
//! pages (`limit`, and `before` = the previous page's `next_before`).

use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use riverchief_shared::api::AuditPage;
use riverchief_shared::id::UserId;
use riverchief_shared::FieldError;
use serde::Deserialize;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/audit").get(list).done());
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// A user id or a username.
    actor: Option<String>,
    /// Comma-separated kinds; `login.` (with the dot) keeps every `login.*`.
    kind: Option<String>,
    /// At or after (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    from: Option<String>,
    /// Before (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    to: Option<String>,
    /// Entries before this one (the page's `next_before`).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// A page of at most this many.
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
}

/// The audit trail, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "operations",
    description = "Roles: admin.",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page", body = riverchief_shared::api::AuditPage),
        (status = 403, description = "Not an admin"),
        (status = 422, description = "No such actor"),
    ))]
async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let q = query.into_inner();
    let from = super::issues::parse_time(q.from.as_deref(), "from")?;
    let to = super::issues::parse_time(q.to.as_deref(), "to")?;
    let before = super::whole_number(q.before.as_deref(), "before", 1, i64::MAX)?;
    let limit =
        super::whole_number(q.limit.as_deref(), "limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let kinds: Vec<String> = q
        .kind
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    for k in &kinds {
        riverchief_shared::validate::text(k, 100, "kind")?;
    }
    let actor = q
        .actor
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    if let Some(a) = &actor {
        riverchief_shared::validate::text(a, 100, "actor")?;
    }
    let page = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let actor = match actor {
                None => None,
                Some(a) => Some(match UserId::parse(&a) {
                    Ok(id) => id,
                    Err(_) => db::users::by_username(conn, &a)?
                        .map(|u| u.info.id)
                        .ok_or_else(|| {
                            AppError::UnknownReference(FieldError::new(
                                "unknown_reference",
                                "actor",
                                format!("no user {a:?}"),
                            ))
                        })?,
                }),
            };
            let filter = db::audit::Filter {
                actor,
                kinds,
                from,
                to,
                before,
            };
            Ok(db::audit::page(conn, &filter, limit)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(AuditPage {
        entries: page.0,
        next_before: page.1,
    }))
}
