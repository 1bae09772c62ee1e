//! `GET /segments`: every segment as a GeoJSON FeatureCollection of LineStrings whose properties are
//! the shared `SegmentProperties`.

use super::endpoint::Endpoint;
use super::geojson;
use crate::auth::AuthUser;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use riverchief_shared::domain::Segment;
use serde_json::Value;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/segments").get(list).done());
}

/// One segment as a GeoJSON Feature.
pub fn feature(segment: &Segment) -> Value {
    geojson::feature(
        segment.properties.id,
        geojson::geometry("LineString", &segment.line),
        &segment.properties,
    )
}

/// Every segment, as GeoJSON.
#[utoipa::path(
    get,
    path = "/api/v1/segments",
    tag = "segments",
    description = "Roles: any signed-in user. One LineString Feature per segment; its properties are \
        `SegmentProperties`.",
    responses((status = 200, description = "The segments", body = super::openapi::FeatureCollection)),
)]
async fn list(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    let segments = state
        .db
        .run(|conn| db::segments::all(conn).map_err(AppError::from))
        .await?;
    let features: Vec<Value> = segments.iter().map(feature).collect();
    Ok(HttpResponse::Ok().json(geojson::collection(features)))
}
