//! `GET /patrols/{id}`: a patrol with its track in recorded order. Patrollers see their own; duty
//! leads and admins see any. Anything else is answered as not found.

use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use riverchief_shared::api::PatrolTrack;
use riverchief_shared::id::PatrolId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/patrols/{id}").get(get).done());
}

/// A patrol with its track.
#[utoipa::path(
    get,
    path = "/api/v1/patrols/{id}",
    tag = "patrols",
    description = "Roles: the patroller who walked it, duty leads and admins (anyone else: 404).",
    params(("id" = PatrolId, Path, description = "The patrol's id")),
    responses(
        (status = 200, description = "The patrol and its points in recorded order", body = PatrolTrack),
        (status = 404, description = "No such patrol, or one the caller may not see"),
    ),
)]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let not_found = || AppError::NotFound("no such patrol".into());
    let id = PatrolId::parse(&path).map_err(|_| not_found())?;
    let track = state
        .db
        .run(move |conn| -> Result<PatrolTrack, AppError> {
            let patrol = db::patrols::get(conn, id)?
                .filter(|p| p.patroller == user.id || user.role.sees_everything())
                .ok_or_else(not_found)?;
            let points = db::patrols::points(conn, id)?;
            Ok(PatrolTrack { patrol, points })
        })
        .await?;
    Ok(HttpResponse::Ok().json(track))
}
