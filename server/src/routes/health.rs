//! Liveness and metrics: `GET /healthz` answers once the database does (no token); `GET /metrics`
//! answers Prometheus metrics in the OpenMetrics text format to an admin's token (a scraper is given
//! one: `authorization: {credentials: ...}` in its scrape config).

use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use riverchief_shared::domain::Role;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/healthz").get(healthz).done())
        .service(Endpoint::new("/metrics").get(metrics).done());
}

/// Whether the server and its database answer.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The server and its database answer", body = super::openapi::Health),
        (status = 500, description = "The database does not answer"),
    ),
)]
async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state
        .db
        .run(|conn| db::ping(conn).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    description = "Roles: admin.",
    responses(
        (status = 200, description = "The metrics in the OpenMetrics text format", content_type = "application/openmetrics-text"),
        (status = 403, description = "Not an admin"),
    ),
)]
async fn metrics(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
    user: AuthUser,
) -> Result<HttpResponse, AppError> {
    if user.role != Role::Admin {
        return Err(AppError::Forbidden("metrics are for admins".into()));
    }
    let m = metrics.clone();
    state
        .db
        .run(move |conn| m.refresh(conn).map_err(AppError::from))
        .await?;
    let body = metrics
        .encode()
        .map_err(|e| AppError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body))
}
