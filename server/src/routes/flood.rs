//! The flood watch over HTTP:
//!
//! - `GET /stations`, `GET /stations/{id or code}`: stations with their latest real level and stage.
//! - `GET /stations/{id or code}/readings?from=&to=&limit=`: real readings, oldest first.
//! - `POST /stations/{id or code}/readings` (duty lead, admin): a batch, idempotent on time.
//! - `GET /flood-level`: every station's level and stage, and the responses in force.
//! - `POST /response-level` (duty lead, admin), `GET /response-levels`: declare or lift a river's
//!   response; its history.
//! - `POST /drills` (duty lead, admin), `GET /drills`, `GET /drills/{id}`, `DELETE /drills/{id}`.

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db::flood::{self as store, Series};
use crate::db::{self, Conn};
use crate::error::AppError;
use crate::flood::IngestError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use riverchief_shared::flood::{
    DrillList, DrillState, FloodLevel, FloodLevelStation, ReadingList, ReadingsBatch,
    ReadingsResult, SetResponseLevel, StartDrill, StationList, MAX_DRILL_SPEED,
};
use riverchief_shared::id::{DrillId, SegmentId};
use riverchief_shared::{validate, FieldError};
use serde::Deserialize;
use serde_json::json;

/// A batch of 5000 readings is about 300 KB of JSON.
const MAX_READINGS_BODY: usize = 1024 * 1024;
const MAX_SMALL_BODY: usize = 8 * 1024;
/// An uploaded drill hydrograph: up to 5000 readings, as a batch.
const MAX_DRILL_BODY: usize = 1024 * 1024;
const MAX_NOTE_CHARS: usize = 2000;
const MAX_RIVER_CHARS: usize = 200;
const DEFAULT_READINGS_LIMIT: i64 = 10_000;
const MAX_READINGS_LIMIT: i64 = 100_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/stations").get(stations).done())
        .service(Endpoint::new("/stations/{station}").get(station).done())
        .service(
            Endpoint::new("/stations/{station}/readings")
                .get(readings)
                .post(post_readings)
                .done(),
        )
        .service(Endpoint::new("/flood-level").get(flood_level).done())
        .service(Endpoint::new("/response-level").post(set_response).done())
        .service(
            Endpoint::new("/response-levels")
                .get(response_history)
                .done(),
        )
        .service(
            Endpoint::new("/drills")
                .post(start_drill)
                .get(drills)
                .done(),
        )
        .service(
            Endpoint::new("/drills/{id}")
                .get(drill)
                .delete(stop_drill)
                .done(),
        );
}

fn not_found_station(key: &str) -> AppError {
    AppError::NotFound(format!("no station {key:?}"))
}

fn unknown(field: &str, message: String) -> AppError {
    AppError::UnknownReference(FieldError::new("unknown_reference", field, message))
}

/// The stations with their latest real level and stage.
#[utoipa::path(get, path = "/api/v1/stations", tag = "flood",
    description = "Roles: any signed-in user.",
    responses((status = 200, description = "The stations", body = StationList)))]
async fn stations(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    let list = state
        .db
        .run(|conn| -> Result<StationList, AppError> {
            let mut stations = Vec::new();
            for s in store::all_stations(conn)? {
                stations.push(store::view(conn, &s)?);
            }
            Ok(StationList { stations })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One station.
#[utoipa::path(get, path = "/api/v1/stations/{station}", tag = "flood",
    description = "Roles: any signed-in user.",
    params(("station" = String, Path, description = "The station's id or code")),
    responses(
        (status = 200, description = "The station", body = riverchief_shared::flood::StationView),
        (status = 404, description = "No such station"),
    ))]
async fn station(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let key = path.into_inner();
    let view = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let s = store::station(conn, &key)?.ok_or_else(|| not_found_station(&key))?;
            Ok(store::view(conn, &s)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

fn time_param(value: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, AppError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                AppError::Invalid(FieldError::new(
                    "bad_time",
                    field,
                    format!("{s:?} is not an RFC 3339 time (2024-07-03T00:00:00Z)"),
                ))
            }),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadingsQuery {
    /// At or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// At or before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// At most this many (1 to 100000, default 10000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    limit: Option<String>,
}

/// A station's real readings, oldest first.
#[utoipa::path(get, path = "/api/v1/stations/{station}/readings", tag = "flood",
    description = "Roles: any signed-in user.",
    params(("station" = String, Path, description = "The station's id or code"), ReadingsQuery),
    responses(
        (status = 200, description = "The readings", body = ReadingList),
        (status = 404, description = "No such station"),
    ))]
async fn readings(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
    q: web::Query<ReadingsQuery>,
) -> Result<HttpResponse, AppError> {
    let from = time_param(q.from.as_deref(), "from")?;
    let to = time_param(q.to.as_deref(), "to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(AppError::Invalid(FieldError::new(
                "invalid",
                "from",
                "`from` must not be later than `to`",
            )));
        }
    }
    let limit = match q.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_READINGS_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_READINGS_LIMIT).contains(&n) => n,
            _ => {
                return Err(AppError::Invalid(FieldError::new(
                    "out_of_range",
                    "limit",
                    format!("limit is a whole number from 1 to {MAX_READINGS_LIMIT}"),
                )))
            }
        },
    };
    let key = path.into_inner();
    let list = state
        .db
        .run(move |conn| -> Result<ReadingList, AppError> {
            let s = store::station(conn, &key)?.ok_or_else(|| not_found_station(&key))?;
            // `to` is inclusive: the readings up to and including that time.
            let until = to.map(|t| t + chrono::Duration::nanoseconds(1));
            let from = from.unwrap_or(DateTime::<Utc>::MIN_UTC);
            let rows = store::readings_from(conn, &s.id, Series::Real, from, until)?;
            Ok(ReadingList {
                readings: rows
                    .into_iter()
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .map(|r| r.reading)
                    .collect(),
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

fn batch_error(e: FieldError) -> AppError {
    if e.code == "too_many" {
        AppError::TooMany(e)
    } else {
        AppError::Invalid(e)
    }
}

/// A batch of readings, idempotent on time.
#[utoipa::path(post, path = "/api/v1/stations/{station}/readings", tag = "flood",
    description = "Roles: duty_lead, admin. A reading at a stored time with another level is 409, \
        naming it.",
    params(("station" = String, Path, description = "The station's id or code")),
    request_body = ReadingsBatch,
    responses(
        (status = 200, description = "What was stored and what was already there", body = ReadingsResult),
        (status = 403, description = "A patroller"),
        (status = 409, description = "A reading clashes with a stored one"),
        (status = 422, description = "No such station"),
    ))]
async fn post_readings(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let body: ReadingsBatch = json_body(&req, payload, MAX_READINGS_BODY).await?;
    let batch = body.validate().map_err(batch_error)?;
    let key = path.into_inner();
    let (policy, settings) = (state.coverage, state.flood);
    let result = state
        .db
        .transaction(move |conn| -> Result<ReadingsResult, AppError> {
            let station = store::station(conn, &key)?
                .ok_or_else(|| unknown("station", format!("no station {key:?}")))?;
            let done = crate::flood::ingest(
                conn,
                &settings,
                &policy,
                &station,
                Series::Real,
                &batch,
                Utc::now(),
            )
            .map_err(|e| match e {
                IngestError::Conflict { index, .. } => AppError::FieldConflict(FieldError::new(
                    "conflict",
                    format!("readings[{index}].level_m"),
                    e.to_string(),
                )),
                IngestError::Db(d) => d.into(),
            })?;
            Ok(ReadingsResult {
                station: station.code,
                received: u64::try_from(batch.len()).unwrap_or(u64::MAX),
                inserted: u64::try_from(done.inserted).unwrap_or(u64::MAX),
                stage: done
                    .state
                    .map_or(riverchief_shared::coverage::FloodStage::Normal, |s| s.stage),
                level_m: done.state.map(|s| s.level_m),
                observed_at: done.state.map(|s| s.observed_at),
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(result))
}

fn flood_level_now(conn: &mut Conn) -> Result<FloodLevel, AppError> {
    let mut stations = Vec::new();
    for s in store::all_stations(conn)? {
        let v = store::view(conn, &s)?;
        stations.push(FloodLevelStation {
            id: v.id,
            code: v.code,
            name: v.name,
            river: v.river,
            level_m: v.level_m,
            observed_at: v.observed_at,
            stage: v.stage,
            thresholds: v.thresholds,
        });
    }
    Ok(FloodLevel {
        stations,
        responses: store::responses_in_force(conn)?,
    })
}

/// Every station's level and stage, and the responses in force.
#[utoipa::path(get, path = "/api/v1/flood-level", tag = "flood",
    description = "Roles: any signed-in user.",
    responses((status = 200, description = "The flood level", body = FloodLevel)))]
async fn flood_level(
    state: web::Data<AppState>,
    _user: AuthUser,
) -> Result<HttpResponse, AppError> {
    let level = state.db.run(flood_level_now).await?;
    Ok(HttpResponse::Ok().json(level))
}

/// The rivers a response may be declared on: those of the segments and the stations.
fn known_river(conn: &mut Conn, river: &str) -> Result<bool, AppError> {
    if store::all_stations(conn)?.iter().any(|s| s.river == river) {
        return Ok(true);
    }
    Ok(db::segments::all(conn)?
        .iter()
        .any(|s| s.properties.river == river))
}

/// Declares or lifts a river's response level.
#[utoipa::path(post, path = "/api/v1/response-level", tag = "flood",
    description = "Roles: duty_lead, admin.",
    request_body = SetResponseLevel,
    responses(
        (status = 200, description = "The flood level now", body = FloodLevel),
        (status = 403, description = "A patroller"),
        (status = 422, description = "No such river"),
    ))]
async fn set_response(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let body: SetResponseLevel = json_body(&req, payload, MAX_SMALL_BODY).await?;
    validate::non_empty(&body.river, "river")?;
    validate::text(&body.river, MAX_RIVER_CHARS, "river")?;
    if let Some(n) = &body.note {
        validate::text(n, MAX_NOTE_CHARS, "note")?;
    }
    let policy = state.coverage;
    let by = user.id;
    let username = user.username.clone();
    let level = state
        .db
        .transaction(move |conn| -> Result<FloodLevel, AppError> {
            if !known_river(conn, &body.river)? {
                return Err(unknown(
                    "river",
                    format!("no segment or station is on the river {:?}", body.river),
                ));
            }
            // The river's latest declaration (newest first), before this one.
            let before = store::response_history(conn, Some(&body.river))?
                .into_iter()
                .next()
                .and_then(|r| r.level);
            let now = Utc::now();
            store::declare_response(conn, &body.river, body.level, by, now, body.note.as_deref())?;
            let by_name = db::users::by_id(conn, by)?.map_or(username, |u| u.info.display_name);
            crate::alerting::response_changed(
                conn,
                &body.river,
                before,
                body.level,
                &by_name,
                now,
            )?;
            // Intervals in force may have changed: phones learn them through pull.
            let ids: Vec<SegmentId> = db::segments::all(conn)?
                .iter()
                .map(|s| s.properties.id)
                .collect();
            crate::coverage::record_summaries(conn, &policy, &ids, now)?;
            flood_level_now(conn)
        })
        .await?;
    Ok(HttpResponse::Ok().json(level))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// One river's history only.
    river: Option<String>,
}

/// The history of response levels.
#[utoipa::path(get, path = "/api/v1/response-levels", tag = "flood",
    description = "Roles: any signed-in user.",
    params(HistoryQuery),
    responses((status = 200, description = "The responses, newest first", body = ResponseHistory)))]
async fn response_history(
    state: web::Data<AppState>,
    _user: AuthUser,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    let river = q.river.clone().filter(|r| !r.trim().is_empty());
    let history = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            Ok(store::response_history(conn, river.as_deref())?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "responses": history })))
}

/// Starts a drill: a hydrograph replayed through the flood watch in its own series.
#[utoipa::path(post, path = "/api/v1/drills", tag = "flood",
    description = "Roles: duty_lead, admin.",
    request_body = StartDrill,
    responses(
        (status = 201, description = "The drill", body = riverchief_shared::flood::DrillView),
        (status = 403, description = "A patroller"),
        (status = 409, description = "A drill is already running on the station"),
        (status = 422, description = "No such station"),
    ))]
async fn start_drill(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let body: StartDrill = json_body(&req, payload, MAX_DRILL_BODY).await?;
    if !body.speed.is_finite() || body.speed <= 0.0 || body.speed > MAX_DRILL_SPEED {
        return Err(AppError::Invalid(FieldError::new(
            "out_of_range",
            "speed",
            format!("seconds of series per second, above 0 and at most {MAX_DRILL_SPEED}"),
        )));
    }
    let series = match &body.series {
        Some(readings) => ReadingsBatch {
            readings: readings.clone(),
        }
        .validate()
        .map_err(|mut e| {
            e.field = e.field.replacen("readings", "series", 1);
            batch_error(e)
        })?
        .into_iter()
        .map(|(_, r)| r)
        .collect(),
        None => crate::drill::shipped_series()?,
    };
    let by = user.id;
    let key = body.station.clone();
    let speed = body.speed;
    let view = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            let station = store::station(conn, &key)?
                .ok_or_else(|| unknown("station", format!("no station {key:?}")))?;
            if let Some(running) = store::running_drill(conn, &station.id)? {
                return Err(AppError::Conflict(format!(
                    "drill {running} is running for {}; stop it first",
                    station.code
                )));
            }
            let row = store::DrillRow {
                id: DrillId::new(),
                station_id: station.id,
                speed,
                state: DrillState::Running,
                readings_total: i64::try_from(series.len()).unwrap_or(i64::MAX),
                readings_fed: 0,
                series,
                started_by: by,
                started_at: Utc::now(),
                ended_at: None,
            };
            store::insert_drill(conn, &row)?;
            Ok(crate::drill::view(conn, &row)?)
        })
        .await?;
    crate::schedule::drill(state.db.clone(), state.coverage, state.flood, view.id);
    Ok(HttpResponse::Created().json(view))
}

/// Every drill.
#[utoipa::path(get, path = "/api/v1/drills", tag = "flood",
    description = "Roles: any signed-in user.",
    responses((status = 200, description = "The drills", body = DrillList)))]
async fn drills(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    let list = state
        .db
        .run(|conn| -> Result<DrillList, AppError> {
            let mut drills = Vec::new();
            for d in store::all_drills(conn)? {
                drills.push(crate::drill::view(conn, &d)?);
            }
            Ok(DrillList { drills })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One drill.
#[utoipa::path(get, path = "/api/v1/drills/{id}", tag = "flood",
    description = "Roles: any signed-in user.",
    params(("id" = riverchief_shared::id::DrillId, Path, description = "The drill's id")),
    responses(
        (status = 200, description = "The drill", body = riverchief_shared::flood::DrillView),
        (status = 404, description = "No such drill"),
    ))]
async fn drill(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = drill_id(&path)?;
    let view = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let d = store::drill(conn, &id, false)?
                .ok_or_else(|| AppError::NotFound(format!("no drill {id}")))?;
            Ok(crate::drill::view(conn, &d)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Stops a drill.
#[utoipa::path(delete, path = "/api/v1/drills/{id}", tag = "flood",
    description = "Roles: duty_lead, admin.",
    params(("id" = riverchief_shared::id::DrillId, Path, description = "The drill's id")),
    responses(
        (status = 200, description = "The drill, stopped", body = riverchief_shared::flood::DrillView),
        (status = 403, description = "A patroller"),
        (status = 404, description = "No such drill"),
    ))]
async fn stop_drill(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let id = drill_id(&path)?;
    let view = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            if store::drill(conn, &id, false)?.is_none() {
                return Err(AppError::NotFound(format!("no drill {id}")));
            }
            crate::drill::end(conn, &id, DrillState::Stopped, Utc::now())?;
            let d = store::drill(conn, &id, false)?
                .ok_or_else(|| AppError::NotFound(format!("no drill {id}")))?;
            Ok(crate::drill::view(conn, &d)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A drill's id from its path; what is not one names no drill (404, like an unknown id).
fn drill_id(raw: &str) -> Result<DrillId, AppError> {
    DrillId::parse(raw).map_err(|_| AppError::NotFound(format!("no drill {raw}")))
}

/// `GET /response-levels`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ResponseHistory {
    responses: Vec<riverchief_shared::flood::ResponseView>,
}
