//! Authentication: Argon2id password hashes, random device tokens stored only as their SHA-256, and
//! the [`AuthUser`] extractor that every protected handler takes.

use crate::app::AppState;
use crate::db;
use crate::error::AppError;
use actix_web::{web, FromRequest, HttpRequest};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use riverchief_shared::domain::Role;
use riverchief_shared::id::UserId;
use std::future::Future;
use std::pin::Pin;

/// The user behind a request's bearer token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    pub username: String,
    pub role: Role,
}

impl AuthUser {
    /// Refuses unless the user is a duty lead or an admin.
    pub fn require_lead(&self) -> Result<(), AppError> {
        if self.role.sees_everything() {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "only a duty lead or an admin may do this".into(),
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("only an admin may do this".into()))
        }
    }
}

/// Hashes a password with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| AppError::Internal(format!("making a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("hashing a password: {e}")))
}

/// A random password that reads well aloud and on paper: 12 characters, no look-alikes (0/O, 1/l/I).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rand::Rng::random_range(&mut rng, 0..ALPHABET.len())]))
        .collect()
}

/// Checks a password against a stored hash; a malformed hash never verifies.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token (shown to the device once) and the hash that is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    riverchief_shared::photo::Sha256::of(token.as_bytes()).hex()
}

fn bearer(req: &HttpRequest) -> Result<String, AppError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            AppError::Unauthorized("this needs Authorization: Bearer <token>; log in first".into())
        })?;
    let value = header.to_str().map_err(|_| {
        AppError::Unauthorized("the Authorization header is not readable text".into())
    })?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AppError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    Ok(token.to_owned())
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state =
                state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            let hash = token_hash(&token);
            let user = state
                .db
                .run(move |conn| db::users::by_token(conn, &hash).map_err(AppError::from))
                .await?
                .ok_or_else(|| {
                    AppError::Unauthorized("unknown or revoked token; log in again".into())
                })?;
            Ok(AuthUser {
                id: user.id,
                username: user.username,
                role: user.role,
            })
        })
    }
}
