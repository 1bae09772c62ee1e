//! Webhooks (admins only):
//!
//! - `POST /webhooks` `{"url", "secret", "kinds": [...], "format": "generic"|"wecom"|"dingtalk",
//!   "include_drill": bool}` → 201 and the webhook (the secret only as a hint).
//! - `GET /webhooks`: those not deleted.
//! - `DELETE /webhooks/{id}` → 204; its pending deliveries are cancelled.
//! - `GET /webhooks/{id}/deliveries?state=&limit=`: newest first, with attempts, the next attempt,
//!   the last error and every attempt's answer and chosen delay.

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db::webhooks;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use riverchief_shared::id::WebhookId;
use riverchief_shared::webhook::{
    DeliveryList, DeliveryState, NewWebhook, WebhookList, MAX_SECRET_LEN, MAX_URL_LEN,
};
use riverchief_shared::FieldError;
use serde::Deserialize;

/// The largest webhook request body.
const MAX_BODY: usize = 16 * 1024;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/webhooks").post(create).get(list).done())
        .service(Endpoint::new("/webhooks/{id}").delete(delete).done())
        .service(
            Endpoint::new("/webhooks/{id}/deliveries")
                .get(deliveries)
                .done(),
        );
}

fn invalid(code: &str, field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid(FieldError::new(code, field, message))
}

/// Checks a new webhook at the edge: an http(s) URL with a host, a secret, each kind once.
pub fn validate(mut new: NewWebhook) -> Result<NewWebhook, AppError> {
    new.url = new.url.trim().to_owned();
    if new.url.is_empty() {
        return Err(invalid("required", "url", "url is required"));
    }
    if new.url.len() > MAX_URL_LEN {
        return Err(invalid(
            "too_long",
            "url",
            format!("url is at most {MAX_URL_LEN} bytes"),
        ));
    }
    let url = reqwest::Url::parse(&new.url)
        .map_err(|e| invalid("invalid", "url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "invalid",
            "url",
            format!(
                "the URL must be http:// or https://, not {}://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("invalid", "url", "the URL has no host"));
    }
    if new.secret.is_empty() {
        return Err(invalid("required", "secret", "secret is required"));
    }
    if new.secret.len() > MAX_SECRET_LEN {
        return Err(invalid(
            "too_long",
            "secret",
            format!("secret is at most {MAX_SECRET_LEN} bytes"),
        ));
    }
    let mut kinds = Vec::new();
    for k in new.kinds {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    new.kinds = kinds;
    Ok(new)
}

/// Adds a webhook: alert changes POSTed to a URL, signed with the secret.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks",
    description = "Roles: admin.",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The webhook", body = riverchief_shared::webhook::Webhook),
        (status = 403, description = "Not an admin"),
    ))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let new: NewWebhook = json_body(&req, payload, MAX_BODY).await?;
    let new = validate(new)?;
    let by = user.id;
    let hook = state
        .db
        .transaction(move |c| webhooks::insert(c, &new, by, Utc::now()).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Created().json(hook))
}

/// Every webhook.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    description = "Roles: admin.",
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 403, description = "Not an admin"),
    ))]
async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let hooks = state
        .db
        .run(|c| webhooks::list(c).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Ok().json(WebhookList { webhooks: hooks }))
}

fn parse_id(raw: &str) -> Result<WebhookId, AppError> {
    WebhookId::parse(raw)
        .map_err(|e| invalid("invalid", "id", format!("{raw:?} is not a webhook id: {e}")))
}

/// Removes a webhook (its pending deliveries are cancelled).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    description = "Roles: admin.",
    params(("id" = riverchief_shared::id::WebhookId, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The id is not a webhook id"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such webhook"),
    ))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path)?;
    let deleted = state
        .db
        .transaction(move |c| webhooks::delete(c, id, Utc::now()).map_err(AppError::from))
        .await?;
    if !deleted {
        return Err(AppError::NotFound(format!("no webhook {id}")));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// A delivery state, or `all` (the default).
    state: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A webhook's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    description = "Roles: admin.",
    params(("id" = riverchief_shared::id::WebhookId, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such webhook"),
    ))]
async fn deliveries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path)?;
    let filter = match query.state.as_deref().map(str::trim) {
        None | Some("") | Some("all") => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            invalid(
                "invalid",
                "state",
                "state is one of pending, delivered, failed, cancelled, all",
            )
        })?),
    };
    let limit = match query.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "out_of_range",
                    "limit",
                    format!("limit is a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let list = state
        .db
        .run(move |c| -> Result<_, AppError> {
            if !webhooks::exists(c, id)? {
                return Err(AppError::NotFound(format!("no webhook {id}")));
            }
            Ok(webhooks::deliveries(c, id, filter, limit)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries: list }))
}
