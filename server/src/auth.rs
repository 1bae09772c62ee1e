//! Authentication: random device tokens stored only as their SHA-256, the [`AuthUser`] extractor
//! that every protected handler takes, and the login limit. Passwords are `password`.

use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, FromRequest, HttpRequest};
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
    /// The id of the device token the request came with (what an admin revokes).
    pub token_id: String,
    /// The name the device gave when it logged in.
    pub device_name: String,
}

impl AuthUser {
    /// Who this is, for the audit trail.
    pub fn who(&self) -> db::audit::Who {
        db::audit::Who {
            actor_id: Some(self.id),
            actor_name: Some(self.username.clone()),
            token_id: Some(self.token_id.clone()),
            device_name: Some(self.device_name.clone()),
            address: None,
        }
    }

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

pub(crate) fn bearer(req: &HttpRequest) -> Result<String, AppError> {
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
            let owner = state
                .db
                .run(move |conn| -> Result<_, AppError> {
                    let owner = db::users::by_token(conn, &hash)?;
                    if let Some(o) = &owner {
                        // At most once per token per `LAST_USED_GRAIN`; failing to record it
                        // never fails the request.
                        if let Err(e) =
                            db::users::touch_token(conn, &hash, &o.last_used_at, chrono::Utc::now())
                        {
                            tracing::debug!(error = %e, "recording a token's last use");
                        }
                    }
                    Ok(owner)
                })
                .await?
                .ok_or_else(|| {
                    AppError::Unauthorized("unknown or revoked token; log in again".into())
                })?;
            Ok(AuthUser {
                id: owner.user.id,
                username: owner.user.username,
                role: owner.user.role,
                token_id: owner.token_id,
                device_name: owner.device_name,
            })
        })
    }
}

/// How many failed logins are allowed before the server answers 429 instead of checking the
/// password, per username and per client address, within a sliding window. Attempts are kept in the
/// database (`db::logins`), so the limit holds across instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub window: chrono::Duration,
    /// Failures on one username (from anywhere) within the window.
    pub per_user: usize,
    /// Failures from one address (on any usernames) within the window.
    pub per_address: usize,
    /// Take the client address from `X-Forwarded-For`/`Forwarded` (only behind a proxy that sets
    /// them); otherwise it is the peer's IP address.
    pub trust_forwarded: bool,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            window: chrono::Duration::minutes(15),
            per_user: 5,
            per_address: 20,
            trust_forwarded: false,
        }
    }
}

impl LoginLimits {
    /// Whether a login on a name from `address` may be checked now; `Err(seconds)` = refuse it,
    /// retry after that long. `on_user` are the name's attempts in the window and `from_address`
    /// the address's failures in the window, oldest first.
    ///
    /// A success clears only the failures that came before it *from the same address*: the real
    /// user logging in at the office does not wipe out a guesser's count from elsewhere.
    pub fn judge(
        &self,
        on_user: &[db::logins::Attempt],
        from_address: &[db::logins::Attempt],
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), u64> {
        let cleared_until = on_user
            .iter()
            .filter(|a| a.success && a.address == address)
            .map(|a| a.at)
            .max();
        let counted: Vec<_> = on_user
            .iter()
            .filter(|a| !a.success)
            .filter(|a| !(a.address == address && cleared_until.is_some_and(|c| a.at <= c)))
            .map(|a| a.at)
            .collect();
        let retry = |times: &[chrono::DateTime<chrono::Utc>], limit: usize| -> Option<u64> {
            if times.len() < limit || limit == 0 {
                return None;
            }
            // Free again when enough of the oldest failures have left the window.
            let freeing = times[times.len() - limit];
            let wait = (freeing + self.window - now).num_milliseconds();
            Some(
                u64::try_from(wait.max(0))
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1),
            )
        };
        let from_address: Vec<_> = from_address.iter().map(|a| a.at).collect();
        match (
            retry(&counted, self.per_user),
            retry(&from_address, self.per_address),
        ) {
            (None, None) => Ok(()),
            (a, b) => Err(a.unwrap_or(0).max(b.unwrap_or(0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use db::logins::Attempt;

    fn attempt(address: &str, ago_s: i64, success: bool) -> Attempt {
        Attempt {
            address: address.into(),
            at: Utc::now() - Duration::seconds(ago_s),
            success,
        }
    }

    #[test]
    fn five_failures_lock_the_name_and_a_success_elsewhere_does_not_unlock_it() {
        let limits = LoginLimits::default();
        let now = Utc::now();
        let four: Vec<_> = (0..4)
            .map(|i| attempt("10.0.0.9", 100 - i, false))
            .collect();
        assert_eq!(limits.judge(&four, &[], "10.0.0.9", now), Ok(()));
        let mut five = four.clone();
        five.push(attempt("10.0.0.9", 10, false));
        assert!(limits.judge(&five, &[], "10.0.0.9", now).is_err());
        // The owner logs in from the office: the guesser's failures still count, everywhere.
        let mut with_success = five.clone();
        with_success.push(attempt("10.0.0.1", 5, true));
        assert!(limits.judge(&with_success, &[], "10.0.0.9", now).is_err());
        assert!(limits.judge(&with_success, &[], "10.0.0.1", now).is_err());
        // A success from the guesser's own address clears what came before it there.
        let mut own = five;
        own.push(attempt("10.0.0.9", 5, true));
        assert_eq!(limits.judge(&own, &[], "10.0.0.9", now), Ok(()));
    }

    #[test]
    fn an_address_with_many_failures_is_refused_whatever_the_name() {
        let limits = LoginLimits {
            per_address: 3,
            ..LoginLimits::default()
        };
        let now = Utc::now();
        let failures: Vec<_> = (0..3).map(|i| attempt("10.0.0.7", 50 - i, false)).collect();
        let wait = limits.judge(&[], &failures, "10.0.0.7", now);
        assert!(matches!(wait, Err(s) if s > 0 && s <= 15 * 60), "{wait:?}");
    }
}
