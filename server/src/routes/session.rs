//! Logging in (`POST /auth/login`) and who am I (`GET /me`).
//!
//! Argon2 is slow on purpose, so verifying a password runs on the blocking pool. An unknown user is
//! checked against a dummy hash, so that neither the answer nor its timing tells whether the name
//! exists.

use super::body::json_body;
use crate::app::AppState;
use crate::auth::{self, AuthUser};
use crate::db;
use crate::error::AppError;
use actix_web::{web, HttpRequest, HttpResponse};
use riverchief_shared::api::{LoginRequest, LoginResponse, Me};
use riverchief_shared::validate;
use std::sync::OnceLock;

/// Login bodies are tiny; this is generous.
const MAX_LOGIN_BYTES: usize = 16 * 1024;
const MAX_DEVICE_NAME_CHARS: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login", web::post().to(login))
        .route("/me", web::get().to(me));
}

fn bad_credentials() -> AppError {
    AppError::Unauthorized("wrong username or password".into())
}

/// A hash to verify against when the user does not exist (made once, on the blocking pool).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| auth::hash_password("riverchief-dummy-password").unwrap_or_default())
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let body: LoginRequest = json_body(&req, payload, MAX_LOGIN_BYTES).await?;
    validate::non_empty(&body.device_name, "device_name")?;
    validate::text(&body.device_name, MAX_DEVICE_NAME_CHARS, "device_name")?;

    let username = body.username.clone();
    let user = state
        .db
        .run(move |conn| db::users::by_username(conn, &username).map_err(AppError::from))
        .await?;
    let (hash, user) = match user {
        Some(row) => (Some(row.password_hash), Some(row.info)),
        None => (None, None),
    };
    let password = body.password;
    let verified = web::block(move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        auth::verify_password(hash, &password)
    })
    .await
    .map_err(|e| AppError::Internal(format!("password check: {e}")))?;
    let user = match user {
        Some(u) if verified => u,
        _ => return Err(bad_credentials()),
    };

    let (token, token_hash) = auth::new_token();
    let device_name = body.device_name.trim().to_owned();
    let user_id = user.id;
    state
        .db
        .run(move |conn| {
            db::users::insert_token(conn, &token_hash, user_id, &device_name)
                .map_err(AppError::from)
        })
        .await?;
    Ok(HttpResponse::Ok().json(LoginResponse { token, user }))
}

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
