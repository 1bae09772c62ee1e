//! Logging in (`POST /auth/login`) and who am I (`GET /me`).
//!
//! Argon2 is slow on purpose, so verifying a password runs on the blocking pool. An unknown user is
//! checked against a dummy hash, so that neither the answer nor its timing tells whether the name
//! exists.

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::{self, AuthUser};
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use riverchief_shared::api::{LoginRequest, LoginResponse, Me, UserInfo};
use riverchief_shared::validate;
use serde_json::json;
use std::sync::OnceLock;

/// Login bodies are tiny; this is generous.
const MAX_LOGIN_BYTES: usize = 16 * 1024;
const MAX_DEVICE_NAME_CHARS: usize = 100;
const MAX_USERNAME_CHARS: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/auth/login").post(login).done())
        .service(Endpoint::new("/me").get(me).done());
}

fn bad_credentials() -> AppError {
    AppError::Unauthorized("wrong username or password".into())
}

/// How long a login waits for a password-hashing slot before it is answered 429.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Password checks running at once, per process: one per core, at least two.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// A hash to verify against when the user does not exist (made once, on the blocking pool).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| crate::password::hash("riverchief-dummy-password").unwrap_or_default())
}

/// The client's address as the login limit counts it: the peer's IP, or the forwarded one when the
/// server is configured to trust a proxy in front of it.
pub fn client_address(req: &HttpRequest, trust_forwarded: bool) -> String {
    if trust_forwarded {
        if let Some(ip) = req.connection_info().realip_remote_addr() {
            return ip.to_owned();
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Logs in. The rate limit is checked before the (deliberately slow) password hash, so that a
/// flood of guesses costs the server a few reads each, not an Argon2 run: past the limit the answer
/// is 429 with `Retry-After`, the password unchecked. Every checked attempt is recorded
/// (`db::logins`) and audited (`login.ok` / `login.failed`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "session",
    security(()),
    description = "Signs a device in and returns its bearer token. Failed logins are limited per \
        username and per address: past the limit the answer is 429 with Retry-After.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "Wrong username or password, or a switched-off user"),
        (status = 429, description = "Too many failed logins", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let body: LoginRequest = json_body(&req, payload, MAX_LOGIN_BYTES).await?;
    validate::non_empty(&body.device_name, "device_name")?;
    validate::text(&body.device_name, MAX_DEVICE_NAME_CHARS, "device_name")?;
    validate::text(&body.username, MAX_USERNAME_CHARS, "username")?;

    let limits = state.login;
    let address = client_address(&req, limits.trust_forwarded);
    let username = body.username.clone();
    let addr = address.clone();
    let user = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let now = Utc::now();
            let since = now - limits.window;
            let on_user = db::logins::for_username(conn, &username, since)?;
            let from_address = db::logins::failures_from(conn, &addr, since)?;
            if let Err(retry_after) = limits.judge(&on_user, &from_address, &addr, now) {
                return Err(AppError::TooManyAttempts { retry_after });
            }
            Ok(db::users::by_username(conn, &username)?)
        })
        .await?;
    let (hash, user) = match user {
        Some(row) => (Some(row.password_hash), Some(row.info)),
        None => (None, None),
    };
    let password = body.password;
    // Guesses spread over many names and addresses pass the limit; they still wait for a hashing
    // slot, so they cannot take every core. A login that waits too long is told to come back.
    let _slot = tokio::time::timeout(HASH_WAIT, hashing_slots().acquire())
        .await
        .map_err(|_| AppError::TooManyAttempts { retry_after: 1 })?
        .map_err(|e| AppError::Internal(format!("hashing slots: {e}")))?;
    let verified = web::block(move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        crate::password::verify(hash, &password)
    })
    .await
    .map_err(|e| AppError::Internal(format!("password check: {e}")))?;

    let (token, token_hash) = auth::new_token();
    let device_name = body.device_name.trim().to_owned();
    let username = body.username;
    let outcome = state
        .db
        .transaction(move |conn| -> Result<Option<UserInfo>, AppError> {
            let now = Utc::now();
            let active = match &user {
                Some(u) => db::users::is_active(conn, u.id)?,
                None => false,
            };
            let ok = verified && active;
            db::logins::record(conn, &username, &address, ok, now)?;
            let mut who = db::audit::Who {
                actor_id: user.as_ref().map(|u| u.id),
                actor_name: Some(username.clone()),
                device_name: Some(device_name.clone()),
                address: Some(address.clone()),
                token_id: None,
            };
            match user.filter(|_| ok) {
                Some(u) => {
                    let token_id = db::users::insert_token(conn, &token_hash, u.id, &device_name)?;
                    who.token_id = Some(token_id.clone());
                    db::audit::record(
                        conn,
                        &who,
                        "login.ok",
                        Some(&u.id.to_string()),
                        &json!({"token_id": token_id, "device_name": device_name}),
                    )?;
                    Ok(Some(u))
                }
                None => {
                    let why = if verified {
                        "user switched off"
                    } else {
                        "wrong username or password"
                    };
                    db::audit::record(conn, &who, "login.failed", None, &json!({"reason": why}))?;
                    Ok(None)
                }
            }
        })
        .await?;
    match outcome {
        Some(user) => Ok(HttpResponse::Ok().json(LoginResponse { token, user })),
        None => Err(bad_credentials()),
    }
}

/// The signed-in user and their assigned segments.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "session",
    description = "Roles: any signed-in user.",
    responses((status = 200, description = "The caller", body = Me)),
)]
async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, AppError> {
    let me = state
        .db
        .run(move |conn| -> Result<Me, AppError> {
            let row = db::users::by_id(conn, user.id)?
                .ok_or_else(|| AppError::Unauthorized("this user no longer exists".into()))?;
            let segment_ids = db::users::assigned_segments(conn, user.id)?;
            Ok(Me {
                user: row.info,
                segment_ids,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(me))
}
