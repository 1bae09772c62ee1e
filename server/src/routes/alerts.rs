//! Alerts:
//!
//! - `GET /alerts?state=open|acknowledged|resolved|active|all&kind=&drill=true|false&limit=N`: newest
//!   first; `state` defaults to `active` (open or acknowledged), `limit` to 100 (at most 1000).
//!   Visibility: duty leads and admins see every alert; a patroller sees public alerts (stage
//!   changes), their own (the receipt of a hazard they reported) and those on their segments.
//! - `GET /alerts/{id}`: one alert (not found when invisible).
//! - `POST /alerts/{id}/ack` (duty lead or admin): acknowledges; idempotent (a second
//!   acknowledgement keeps the first one's who and when).

use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db::alerts::{self, ListFilter, StateFilter};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use riverchief_shared::alert::{Alert, AlertKind, AlertList, AlertState};
use riverchief_shared::id::AlertId;
use riverchief_shared::FieldError;
use serde::Deserialize;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/alerts").get(list).done())
        .service(Endpoint::new("/alerts/{id}").get(get).done())
        .service(Endpoint::new("/alerts/{id}/ack").post(ack).done());
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `open`, `acknowledged`, `resolved`, `active` (open or acknowledged; the default) or `all`.
    #[param(value_type = Option<AlertStateFilter>, inline)]
    state: Option<String>,
    /// One kind of alert.
    #[param(value_type = Option<AlertKind>, inline)]
    kind: Option<String>,
    /// Drill alerts only (`true`) or real ones only (`false`); default both.
    #[param(value_type = Option<bool>)]
    drill: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// What `state` may name: an alert state, `active` or `all`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum AlertStateFilter {
    Open,
    Acknowledged,
    Resolved,
    Active,
    All,
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid(FieldError::new("invalid", field, message))
}

fn filter(q: &ListQuery) -> Result<ListFilter, AppError> {
    let state = match q.state.as_deref().map(str::trim) {
        None | Some("") | Some("active") => StateFilter::Active,
        Some("all") => StateFilter::All,
        Some(s) => StateFilter::One(AlertState::parse(s).ok_or_else(|| {
            invalid(
                "state",
                "state is one of open, acknowledged, resolved, active, all",
            )
        })?),
    };
    let kind = match q.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(k) => Some(
            AlertKind::parse(k)
                .ok_or_else(|| invalid("kind", format!("unknown alert kind {k:?}")))?,
        ),
    };
    let drill = match q.drill.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(invalid("drill", "drill is true or false")),
    };
    let limit = match q.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(AppError::Invalid(FieldError::new(
                    "out_of_range",
                    "limit",
                    format!("limit is a whole number from 1 to {MAX_LIMIT}"),
                )))
            }
        },
    };
    Ok(ListFilter {
        state,
        kind,
        drill,
        limit,
    })
}

/// Alerts the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    description = "Roles: any signed-in user; a patroller sees the alerts about their segments and issues.",
    params(ListQuery),
    responses((status = 200, description = "The alerts, newest first", body = AlertList)),
)]
async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let f = filter(&query)?;
    let (viewer, role) = (user.id, user.role);
    let alerts = state
        .db
        .run(move |conn| alerts::list(conn, viewer, role, &f).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Ok().json(AlertList { alerts }))
}

fn parse_alert_id(raw: &str) -> Result<AlertId, AppError> {
    AlertId::parse(raw).map_err(|e| invalid("id", format!("{raw:?} is not an alert id: {e}")))
}

/// One alert.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    description = "Roles: any signed-in user who may see it.",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 400, description = "The id is not an alert id"),
        (status = 200, description = "The alert", body = Alert),
        (status = 404, description = "No such alert, or one the caller may not see"),
    ),
)]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_alert_id(&path)?;
    let (viewer, role) = (user.id, user.role);
    let alert = state
        .db
        .run(move |conn| alerts::get(conn, id, viewer, role).map_err(AppError::from))
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no alert {id}")))?;
    Ok(HttpResponse::Ok().json(alert))
}

/// Acknowledges an alert.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/ack",
    tag = "alerts",
    description = "Roles: duty_lead, admin.",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 400, description = "The id is not an alert id"),
        (status = 200, description = "The alert, acknowledged", body = Alert),
        (status = 403, description = "A patroller"),
        (status = 404, description = "No such alert"),
    ),
)]
async fn ack(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let id = parse_alert_id(&path)?;
    let by = user.id;
    let alert = state
        .db
        .transaction(move |conn| {
            alerts::acknowledge(conn, id, by, Utc::now()).map_err(AppError::from)
        })
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no alert {id}")))?;
    Ok(HttpResponse::Ok().json(alert))
}
