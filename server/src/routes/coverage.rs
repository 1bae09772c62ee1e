//! Coverage and the flood stage:
//!
//! - `GET /coverage?from=&to=`: a GeoJSON FeatureCollection, one Feature per segment whose geometry is
//!   the uncovered MultiLineString and whose properties are the shared `SegmentCoverage`.
//! - `GET /segments/{id or code}/coverage?from=&to=`: one segment's coverage and the patrols that
//!   touched it (`SegmentTimeline`).
//! - `GET /flood-stage`, `POST /flood-stage` (admin): the stage in force and the requirement.
//!
//! The window defaults to the last 24 hours. "Overdue" is judged against the server's clock now.

use super::body::json_body;
use super::endpoint::Endpoint;
use super::geojson;
use super::issues::parse_time;
use crate::auth::AuthUser;
use crate::coverage as cov;
use crate::db;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use riverchief_shared::coverage::{FloodStageState, SegmentTimeline, SetFloodStage};
use riverchief_shared::domain::Segment;
use riverchief_shared::id::SegmentId;
use riverchief_shared::{validate, FieldError};
use serde::Deserialize;
use serde_json::Value;

const MAX_STAGE_BODY_BYTES: usize = 4096;
const MAX_NOTE_CHARS: usize = 2000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/coverage").get(all).done())
        .service(
            Endpoint::new("/segments/{segment}/coverage")
                .get(one)
                .done(),
        )
        .service(
            Endpoint::new("/flood-stage")
                .get(get_stage)
                .post(set_stage)
                .done(),
        );
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Window {
    /// The window's start (RFC 3339); default `to` minus 24 hours.
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    from: Option<String>,
    /// The window's end (RFC 3339); default now.
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    to: Option<String>,
}

impl Window {
    fn parse(&self, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
        let to = parse_time(self.to.as_deref(), "to")?.unwrap_or(now);
        let from = parse_time(self.from.as_deref(), "from")?.unwrap_or(to - Duration::hours(24));
        if from > to {
            return Err(AppError::Invalid(FieldError::new(
                "invalid",
                "from",
                "`from` must not be later than `to`",
            )));
        }
        Ok((from, to))
    }
}

fn feature(c: &riverchief_shared::coverage::SegmentCoverage, lines: Vec<Vec<[f64; 2]>>) -> Value {
    geojson::feature(c.segment_id, geojson::geometry("MultiLineString", lines), c)
}

/// Every segment's coverage in a window, as GeoJSON.
#[utoipa::path(
    get,
    path = "/api/v1/coverage",
    tag = "coverage",
    description = "Roles: any signed-in user. One Feature per segment: its geometry the uncovered \
        MultiLineString, its properties `SegmentCoverage`. The window defaults to the last 24 hours.",
    params(Window),
    responses((status = 200, description = "Coverage per segment", body = super::openapi::FeatureCollection)),
)]
async fn all(
    state: web::Data<AppState>,
    _user: AuthUser,
    q: web::Query<Window>,
) -> Result<HttpResponse, AppError> {
    let now = Utc::now();
    let (from, to) = q.parse(now)?;
    let policy = state.coverage;
    let features = state
        .db
        .run(move |conn| -> Result<Vec<Value>, AppError> {
            let mut out = Vec::new();
            for s in db::segments::all(conn)? {
                let r = cov::segment_coverage(conn, &policy, &s, from, to, now)?;
                out.push(feature(&r.coverage, r.uncovered_lines));
            }
            Ok(out)
        })
        .await?;
    Ok(HttpResponse::Ok().json(geojson::collection(features)))
}

/// A segment named by id or by code.
fn find_segment(conn: &mut db::Conn, key: &str) -> Result<Segment, AppError> {
    db::segments::by_id_or_code(conn, key)?
        .ok_or_else(|| AppError::NotFound(format!("no segment {key:?}")))
}

/// One segment's coverage and the patrols that touched it.
#[utoipa::path(
    get,
    path = "/api/v1/segments/{segment}/coverage",
    tag = "coverage",
    description = "Roles: any signed-in user.",
    params(("segment" = String, Path, description = "The segment's id or code"), Window),
    responses(
        (status = 200, description = "The segment's coverage", body = SegmentTimeline),
        (status = 404, description = "No such segment"),
    ),
)]
async fn one(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
    q: web::Query<Window>,
) -> Result<HttpResponse, AppError> {
    let now = Utc::now();
    let (from, to) = q.parse(now)?;
    let policy = state.coverage;
    let key = path.into_inner();
    let timeline = state
        .db
        .run(move |conn| -> Result<SegmentTimeline, AppError> {
            let s = find_segment(conn, &key)?;
            let r = cov::segment_coverage(conn, &policy, &s, from, to, now)?;
            Ok(SegmentTimeline {
                coverage: r.coverage,
                patrols: r.patrols,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(timeline))
}

fn stage_state(conn: &mut db::Conn, policy: &cov::Policy) -> Result<FloodStageState, AppError> {
    let setting = db::coverage::stage_setting(conn)?;
    let stage = setting
        .as_ref()
        .map_or(riverchief_shared::coverage::FloodStage::Normal, |s| s.stage);
    Ok(FloodStageState {
        stage,
        set_by: setting.as_ref().map(|s| s.by),
        set_at: setting.as_ref().map(|s| s.at),
        note: setting.and_then(|s| s.note),
        interval_minutes: policy.requirement.interval(stage).num_minutes(),
        requirement: policy.requirement,
    })
}

/// The flood stage in force and the patrol requirement.
#[utoipa::path(
    get,
    path = "/api/v1/flood-stage",
    tag = "coverage",
    description = "Roles: any signed-in user.",
    responses((status = 200, description = "The stage in force", body = FloodStageState)),
)]
async fn get_stage(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    let policy = state.coverage;
    let s = state.db.run(move |conn| stage_state(conn, &policy)).await?;
    Ok(HttpResponse::Ok().json(s))
}

/// Sets the flood stage.
#[utoipa::path(
    post,
    path = "/api/v1/flood-stage",
    tag = "coverage",
    description = "Roles: admin.",
    request_body = SetFloodStage,
    responses(
        (status = 200, description = "The stage now in force", body = FloodStageState),
        (status = 403, description = "Not an admin"),
    ),
)]
async fn set_stage(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let body: SetFloodStage = json_body(&req, payload, MAX_STAGE_BODY_BYTES).await?;
    if let Some(note) = &body.note {
        validate::text(note, MAX_NOTE_CHARS, "note")?;
    }
    let policy = state.coverage;
    let s = state
        .db
        .run(move |conn| {
            db::write_transaction(conn, |conn| -> Result<FloodStageState, AppError> {
                let now = Utc::now();
                db::coverage::set_stage(conn, body.stage, user.id, now, body.note.as_deref())?;
                db::audit::record(
                    conn,
                    &user.who(),
                    "flood_stage.set",
                    None,
                    &serde_json::json!({"stage": body.stage, "note": body.note}),
                )?;
                // Every segment's interval in force changed: phones learn it through pull.
                let ids: Vec<SegmentId> = db::segments::all(conn)?
                    .iter()
                    .map(|s| s.properties.id)
                    .collect();
                cov::record_summaries(conn, &policy, &ids, now)?;
                stage_state(conn, &policy)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(s))
}
