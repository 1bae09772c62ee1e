//! User administration (admins only; duty leads may read the list, to dispatch): `GET/POST /users`, `PATCH /users/{id}` (role, display name,
//! active, segments), `POST /users/{id}/password` (reset), `GET /users/{id}/devices` and
//! `DELETE /devices/{token_id}` (revoke a device's token: it gets 401 from its next request on).
//! Every change writes an audit row in its own transaction.

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db::{self, Conn};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use riverchief_shared::api::{
    DeviceList, NewUser, PasswordReset, UserCreated, UserInfo, UserList, UserPatch,
};
use riverchief_shared::id::{SegmentId, UserId};
use riverchief_shared::{validate, FieldError};
use serde_json::json;

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_NAME_CHARS: usize = 100;
const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 200;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/users").get(list).post(create).done())
        .service(Endpoint::new("/users/{id}").patch(update).done())
        .service(
            Endpoint::new("/users/{id}/password")
                .post(reset_password)
                .done(),
        )
        .service(Endpoint::new("/users/{id}/devices").get(devices).done())
        .service(Endpoint::new("/devices/{token_id}").delete(revoke).done());
}

fn no_user() -> AppError {
    AppError::NotFound("no such user".into())
}

fn user_id(path: &str) -> Result<UserId, AppError> {
    UserId::parse(path).map_err(|_| no_user())
}

/// Checks a password chosen by a person (8 to 200 characters, no NUL).
pub fn check_password(password: &str, field: &str) -> Result<(), FieldError> {
    validate::text(password, MAX_PASSWORD_CHARS, field)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(FieldError::new(
            "invalid",
            field,
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_name(value: &str, field: &str) -> Result<(), FieldError> {
    validate::non_empty(value, field)?;
    validate::text(value, MAX_NAME_CHARS, field)
}

/// Segments named by id or code, in order; an unknown one is 422 naming `field[i]`.
fn resolve_segments(
    conn: &mut Conn,
    keys: &[String],
    field: &str,
) -> Result<Vec<SegmentId>, AppError> {
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let id = db::segments::by_id_or_code(conn, key.trim())?
            .map(|s| s.properties.id)
            .ok_or_else(|| {
                AppError::UnknownReference(FieldError::new(
                    "unknown_reference",
                    format!("{field}[{i}]"),
                    format!("no segment with id or code {key:?}"),
                ))
            })?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Every account (no secrets: names, roles, segments, active). Duty leads read it too: it is whom
/// they dispatch work to.
/// Every user account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    description = "Roles: duty_lead, admin.",
    responses(
        (status = 200, description = "The users", body = UserList),
        (status = 403, description = "A patroller"),
    ))]
async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let users = state
        .db
        .run(|conn| db::users::accounts(conn).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Ok().json(UserList { users }))
}

/// Adds a user; without a chosen password one is generated and returned once.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    description = "Roles: admin.",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user (and the generated password)", body = UserCreated),
        (status = 403, description = "Not an admin"),
        (status = 409, description = "The username is taken"),
        (status = 422, description = "No such segment"),
    ))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let body: NewUser = json_body(&req, payload, MAX_BODY_BYTES).await?;
    check_name(&body.username, "username")?;
    if body.username.trim() != body.username || body.username.contains(char::is_whitespace) {
        return Err(FieldError::new("invalid", "username", "no spaces in a username").into());
    }
    check_name(&body.display_name, "display_name")?;
    let (hash, generated) = hash_chosen_or_new(body.password.clone()).await?;
    let account = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            if db::users::by_username(conn, &body.username)?.is_some() {
                return Err(AppError::Conflict(format!(
                    "the username {:?} is taken",
                    body.username
                )));
            }
            let segments = resolve_segments(conn, &body.segments, "segments")?;
            let info = UserInfo {
                id: UserId::new(),
                username: body.username.clone(),
                display_name: body.display_name.trim().to_owned(),
                role: body.role,
            };
            db::users::insert(conn, &info, &hash)?;
            db::users::assign_segments(conn, info.id, &segments)?;
            db::audit::record(
                conn,
                &user.who(),
                "user.add",
                Some(&info.id.to_string()),
                &json!({"username": info.username, "role": info.role, "segments": segments}),
            )?;
            db::users::account(conn, info.id)?.ok_or_else(no_user)
        })
        .await?;
    Ok(HttpResponse::Created().json(UserCreated {
        user: account,
        password: generated,
    }))
}

/// Hashes the password given (after checking it), or a new one that is answered once.
async fn hash_chosen_or_new(chosen: Option<String>) -> Result<(String, Option<String>), AppError> {
    let generated = chosen.is_none().then(crate::password::generate);
    let password = chosen.or_else(|| generated.clone()).unwrap_or_default();
    check_password(&password, "password")?;
    let hash = web::block(move || crate::password::hash(&password))
        .await
        .map_err(|e| AppError::Internal(format!("hashing: {e}")))??;
    Ok((hash, generated))
}

/// Changes a user's role, name, segments or whether they may sign in.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    description = "Roles: admin. The last active admin cannot be demoted or switched off (409).",
    params(("id" = UserId, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The account as it now is", body = riverchief_shared::api::UserAccount),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "It would leave no active admin"),
        (status = 422, description = "No such segment"),
    ))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = user_id(&path)?;
    let body: UserPatch = json_body(&req, payload, MAX_BODY_BYTES).await?;
    if let Some(name) = &body.display_name {
        check_name(name, "display_name")?;
    }
    if id == user.id && (body.active == Some(false) || body.role.is_some_and(|r| r != user.role)) {
        return Err(AppError::Conflict(
            "an admin may not switch themselves off or change their own role; ask another admin"
                .into(),
        ));
    }
    let account = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            let before = db::users::account(conn, id)?.ok_or_else(no_user)?;
            let segments = match &body.segments {
                Some(keys) => Some(resolve_segments(conn, keys, "segments")?),
                None => None,
            };
            if let Some(role) = body.role {
                db::users::set_role(conn, id, role)?;
            }
            if let Some(name) = &body.display_name {
                db::users::set_display_name(conn, id, name.trim())?;
            }
            if let Some(active) = body.active {
                db::users::set_active(conn, id, active)?;
            }
            if let Some(segments) = &segments {
                db::users::replace_segments(conn, id, segments)?;
            }
            let after = db::users::account(conn, id)?.ok_or_else(no_user)?;
            db::audit::record(
                conn,
                &user.who(),
                "user.update",
                Some(&id.to_string()),
                &json!({
                    "username": after.user.username,
                    "before": {"role": before.user.role, "display_name": before.user.display_name,
                               "active": before.active, "segments": before.segment_ids},
                    "after": {"role": after.user.role, "display_name": after.user.display_name,
                              "active": after.active, "segments": after.segment_ids},
                }),
            )?;
            Ok(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(account))
}

/// Sets a user's password (generated when none is chosen); their device tokens are revoked.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users",
    description = "Roles: admin.",
    params(("id" = UserId, Path, description = "The user's id")),
    request_body = PasswordReset,
    responses(
        (status = 200, description = "The user (and the generated password)", body = UserCreated),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn reset_password(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = user_id(&path)?;
    let body: PasswordReset = json_body(&req, payload, MAX_BODY_BYTES).await?;
    let (hash, generated) = hash_chosen_or_new(body.password).await?;
    let was_generated = generated.is_some();
    let account = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            let account = db::users::account(conn, id)?.ok_or_else(no_user)?;
            db::users::set_password(conn, id, &hash)?;
            db::audit::record(
                conn,
                &user.who(),
                "user.password",
                Some(&id.to_string()),
                &json!({"username": account.user.username, "generated": was_generated}),
            )?;
            Ok(account)
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserCreated {
        user: account,
        password: generated,
    }))
}

/// A user's device tokens.
#[utoipa::path(get, path = "/api/v1/users/{id}/devices", tag = "users",
    description = "Roles: admin.",
    params(("id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The devices", body = DeviceList),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn devices(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = user_id(&path)?;
    let devices = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            db::users::account(conn, id)?.ok_or_else(no_user)?;
            Ok(db::users::devices(conn, id)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(DeviceList { devices }))
}

/// Revokes a device token. Idempotent: revoking a revoked token answers 204 again, and audits once.
/// Revokes a device token.
#[utoipa::path(delete, path = "/api/v1/devices/{token_id}", tag = "users",
    description = "Roles: admin.",
    params(("token_id" = String, Path, description = "The token's public id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such device token"),
    ))]
async fn revoke(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let token_id = path.into_inner();
    state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            let (owner, device_name, _) = db::users::token(conn, &token_id)?
                .ok_or_else(|| AppError::NotFound("no such device token".into()))?;
            if db::users::revoke_token(conn, &token_id)? {
                db::audit::record(
                    conn,
                    &user.who(),
                    "token.revoke",
                    Some(&token_id),
                    &json!({"user_id": owner, "device_name": device_name}),
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
