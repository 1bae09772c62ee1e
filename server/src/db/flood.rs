//! Flood watch storage: gauge stations, readings per series (`real` or a drill's id), each station's
//! stage per series, response levels (history; the latest row per river is in force), drills.
//!
//! The rules (which stage, when to alert) are `crate::flood`; this module only reads and writes.

use super::schema::{drills, response_levels, station_readings, station_stages, stations, users};
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::coverage::FloodStage;
use riverchief_shared::flood::{
    DrillState, Reading, ResponseLevel, ResponseView, StagedReading, StationView, Thresholds,
};
use riverchief_shared::id::{DrillId, StationId, UserId};

/// Which of a station's series of readings and stage: the real one, or a drill's own, named by
/// the drill's id. Only the real series feeds the stage in force, the stations' levels and the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Real,
    Drill(DrillId),
}

impl Series {
    /// As stored in `station_readings.series` and `station_stages.series`.
    pub fn stored(&self) -> String {
        match self {
            Series::Real => "real".to_owned(),
            Series::Drill(id) => id.to_string(),
        }
    }

    pub fn is_drill(&self) -> bool {
        matches!(self, Series::Drill(_))
    }
}

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn stage_of(s: &str) -> QueryResult<FloodStage> {
    FloodStage::parse(s).ok_or_else(|| corrupt(format!("flood stage {s:?}")))
}

/// A gauge station.
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    pub id: StationId,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub river: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub datum: Option<String>,
    pub thresholds: Thresholds,
}

/// A station as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = stations)]
struct StationRow {
    id: String,
    code: String,
    name: String,
    name_en: Option<String>,
    river: String,
    lon: Option<f64>,
    lat: Option<f64>,
    datum: Option<String>,
    watch_m: f64,
    warning_m: f64,
    guarantee_m: f64,
}

fn to_station(r: StationRow) -> QueryResult<Station> {
    let StationRow {
        id,
        code,
        name,
        name_en,
        river,
        lon,
        lat,
        datum,
        watch_m,
        warning_m,
        guarantee_m,
    } = r;
    Ok(Station {
        id: parse_id(&id)?,
        code,
        name,
        name_en,
        river,
        lon,
        lat,
        datum,
        thresholds: Thresholds {
            watch_m,
            warning_m,
            guarantee_m,
        },
    })
}

/// Adds a station. A station with the same code is a unique violation.
pub fn insert_station(conn: &mut Conn, s: &Station) -> QueryResult<()> {
    diesel::insert_into(stations::table)
        .values((
            stations::id.eq(s.id.to_string()),
            stations::code.eq(&s.code),
            stations::name.eq(&s.name),
            stations::name_en.eq(&s.name_en),
            stations::river.eq(&s.river),
            stations::lon.eq(s.lon),
            stations::lat.eq(s.lat),
            stations::datum.eq(&s.datum),
            stations::watch_m.eq(s.thresholds.watch_m),
            stations::warning_m.eq(s.thresholds.warning_m),
            stations::guarantee_m.eq(s.thresholds.guarantee_m),
            stations::created_at.eq(super::written_now()),
        ))
        .execute(conn)
        .map(drop)
}

/// A station by id or code.
pub fn station(conn: &mut Conn, id_or_code: &str) -> QueryResult<Option<Station>> {
    stations::table
        .filter(
            stations::id
                .eq(id_or_code)
                .or(stations::code.eq(id_or_code)),
        )
        .select(StationRow::as_select())
        .first(conn)
        .optional()?
        .map(to_station)
        .transpose()
}

/// A station by its id.
pub fn station_by_id(conn: &mut Conn, id: &StationId) -> QueryResult<Option<Station>> {
    stations::table
        .filter(stations::id.eq(id.to_string()))
        .select(StationRow::as_select())
        .first(conn)
        .optional()?
        .map(to_station)
        .transpose()
}

/// Every station, by code.
pub fn all_stations(conn: &mut Conn) -> QueryResult<Vec<Station>> {
    stations::table
        .order(stations::code.asc())
        .select(StationRow::as_select())
        .load(conn)?
        .into_iter()
        .map(to_station)
        .collect()
}

/// A reading as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = station_readings)]
struct ReadingRow {
    observed_at: String,
    level_m: f64,
    stage: String,
    rise_m: f64,
}

fn to_stored(r: ReadingRow) -> QueryResult<StagedReading> {
    Ok(StagedReading {
        reading: Reading {
            observed_at: parse_ts(&r.observed_at)?,
            level_m: r.level_m,
        },
        stage: stage_of(&r.stage)?,
        rise_m: r.rise_m,
    })
}

/// The stored levels of a series at these times (those that exist).
pub fn levels_at(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    times: &[DateTime<Utc>],
) -> QueryResult<std::collections::BTreeMap<DateTime<Utc>, f64>> {
    let mut out = std::collections::BTreeMap::new();
    for chunk in times.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|t| ts(*t)).collect();
        let rows: Vec<(String, f64)> = station_readings::table
            .filter(station_readings::station_id.eq(station_id.to_string()))
            .filter(station_readings::series.eq(series.stored()))
            .filter(station_readings::observed_at.eq_any(keys))
            .select((station_readings::observed_at, station_readings::level_m))
            .load(conn)?;
        for (at, level) in rows {
            out.insert(parse_ts(&at)?, level);
        }
    }
    Ok(out)
}

/// The readings of a series with `from <= observed_at` (and `< until` when given), oldest first.
pub fn readings_from(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> QueryResult<Vec<StagedReading>> {
    let mut q = station_readings::table
        .filter(station_readings::station_id.eq(station_id.to_string()))
        .filter(station_readings::series.eq(series.stored()))
        .filter(station_readings::observed_at.ge(ts(from)))
        .into_boxed();
    if let Some(u) = until {
        q = q.filter(station_readings::observed_at.lt(ts(u)));
    }
    q.order(station_readings::observed_at.asc())
        .select(ReadingRow::as_select())
        .load::<ReadingRow>(conn)?
        .into_iter()
        .map(to_stored)
        .collect()
}

/// The last reading of a series observed before `t`.
pub fn reading_before(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    t: DateTime<Utc>,
) -> QueryResult<Option<StagedReading>> {
    station_readings::table
        .filter(station_readings::station_id.eq(station_id.to_string()))
        .filter(station_readings::series.eq(series.stored()))
        .filter(station_readings::observed_at.lt(ts(t)))
        .order(station_readings::observed_at.desc())
        .select(ReadingRow::as_select())
        .first::<ReadingRow>(conn)
        .optional()?
        .map(to_stored)
        .transpose()
}

/// Stores a new reading with its derived stage and rise.
pub fn insert_reading(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    r: &StagedReading,
) -> QueryResult<()> {
    diesel::insert_into(station_readings::table)
        .values((
            station_readings::station_id.eq(station_id.to_string()),
            station_readings::series.eq(series.stored()),
            station_readings::observed_at.eq(ts(r.reading.observed_at)),
            station_readings::level_m.eq(r.reading.level_m),
            station_readings::stage.eq(r.stage.as_str()),
            station_readings::rise_m.eq(r.rise_m),
            station_readings::recorded_at.eq(super::written_now()),
        ))
        .execute(conn)
        .map(drop)
}

/// Rewrites the derived stage and rise of a stored reading (a late reading changed its history).
pub fn update_derived(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    r: &StagedReading,
) -> QueryResult<()> {
    diesel::update(
        station_readings::table
            .filter(station_readings::station_id.eq(station_id.to_string()))
            .filter(station_readings::series.eq(series.stored()))
            .filter(station_readings::observed_at.eq(ts(r.reading.observed_at))),
    )
    .set((
        station_readings::stage.eq(r.stage.as_str()),
        station_readings::rise_m.eq(r.rise_m),
    ))
    .execute(conn)
    .map(drop)
}

/// A station's stage now, in one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageState {
    pub stage: FloodStage,
    /// Observed time of the reading that entered the stage.
    pub since: DateTime<Utc>,
    /// The latest reading.
    pub observed_at: DateTime<Utc>,
    pub level_m: f64,
    pub rising: bool,
}

pub fn stage_state(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
) -> QueryResult<Option<StageState>> {
    let row: Option<(String, String, String, f64, bool)> = station_stages::table
        .filter(station_stages::station_id.eq(station_id.to_string()))
        .filter(station_stages::series.eq(series.stored()))
        .select((
            station_stages::stage,
            station_stages::since,
            station_stages::observed_at,
            station_stages::level_m,
            station_stages::rising,
        ))
        .first(conn)
        .optional()?;
    row.map(|(stage, since, at, level_m, rising)| {
        Ok(StageState {
            stage: stage_of(&stage)?,
            since: parse_ts(&since)?,
            observed_at: parse_ts(&at)?,
            level_m,
            rising,
        })
    })
    .transpose()
}

pub fn put_stage_state(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    s: &StageState,
    existed: bool,
) -> QueryResult<()> {
    let now = super::written_now();
    if existed {
        diesel::update(
            station_stages::table
                .filter(station_stages::station_id.eq(station_id.to_string()))
                .filter(station_stages::series.eq(series.stored())),
        )
        .set((
            station_stages::stage.eq(s.stage.as_str()),
            station_stages::since.eq(ts(s.since)),
            station_stages::observed_at.eq(ts(s.observed_at)),
            station_stages::level_m.eq(s.level_m),
            station_stages::rising.eq(s.rising),
            station_stages::updated_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
    } else {
        diesel::insert_into(station_stages::table)
            .values((
                station_stages::station_id.eq(station_id.to_string()),
                station_stages::series.eq(series.stored()),
                station_stages::stage.eq(s.stage.as_str()),
                station_stages::since.eq(ts(s.since)),
                station_stages::observed_at.eq(ts(s.observed_at)),
                station_stages::level_m.eq(s.level_m),
                station_stages::rising.eq(s.rising),
                station_stages::updated_at.eq(now),
            ))
            .execute(conn)
            .map(drop)
    }
}

/// A station as the API shows it, with its real stage.
pub fn view(conn: &mut Conn, s: &Station) -> QueryResult<StationView> {
    let state = stage_state(conn, &s.id, Series::Real)?;
    Ok(StationView {
        id: s.id,
        code: s.code.clone(),
        name: s.name.clone(),
        name_en: s.name_en.clone(),
        river: s.river.clone(),
        lon: s.lon,
        lat: s.lat,
        thresholds: s.thresholds,
        level_m: state.map(|x| x.level_m),
        observed_at: state.map(|x| x.observed_at),
        stage: state.map_or(FloodStage::Normal, |x| x.stage),
        stage_since: state.map(|x| x.since),
        rising: state.is_some_and(|x| x.rising),
    })
}

/// Records a declaration (`Some`) or lifting (`None`) of a river's response.
pub fn declare_response(
    conn: &mut Conn,
    river: &str,
    level: Option<ResponseLevel>,
    by: UserId,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(response_levels::table)
        .values((
            response_levels::id.eq(uuid::Uuid::now_v7().to_string()),
            response_levels::river.eq(river),
            response_levels::level.eq(level.map(ResponseLevel::as_str)),
            response_levels::declared_by.eq(by.to_string()),
            response_levels::declared_at.eq(ts(at)),
            response_levels::note.eq(note),
        ))
        .execute(conn)
        .map(drop)
}

type ResponseRow = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
);

fn to_response(r: ResponseRow) -> QueryResult<ResponseView> {
    let (river, level, by, at, note, name) = r;
    let level = match level {
        Some(l) => {
            Some(ResponseLevel::parse(&l).ok_or_else(|| corrupt(format!("response {l:?}")))?)
        }
        None => None,
    };
    Ok(ResponseView {
        river,
        level,
        declared_by: parse_id(&by)?,
        declared_by_name: name,
        declared_at: parse_ts(&at)?,
        note,
    })
}

/// Every declaration and lifting, newest first (`river` to narrow).
pub fn response_history(conn: &mut Conn, river: Option<&str>) -> QueryResult<Vec<ResponseView>> {
    let mut q = response_levels::table
        .inner_join(users::table.on(users::id.eq(response_levels::declared_by)))
        .into_boxed();
    if let Some(r) = river {
        q = q.filter(response_levels::river.eq(r.to_owned()));
    }
    q.order((
        response_levels::declared_at.desc(),
        response_levels::id.desc(),
    ))
    .select((
        response_levels::river,
        response_levels::level,
        response_levels::declared_by,
        response_levels::declared_at,
        response_levels::note,
        users::display_name,
    ))
    .load::<ResponseRow>(conn)?
    .into_iter()
    .map(to_response)
    .collect()
}

/// The responses in force: per river, the latest row, when it declares a level.
pub fn responses_in_force(conn: &mut Conn) -> QueryResult<Vec<ResponseView>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in response_history(conn, None)? {
        if seen.insert(r.river.clone()) && r.level.is_some() {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.river.cmp(&b.river));
    Ok(out)
}

/// A drill as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRow {
    pub id: DrillId,
    pub station_id: StationId,
    pub speed: f64,
    pub state: DrillState,
    pub series: Vec<Reading>,
    pub readings_total: i64,
    pub readings_fed: i64,
    pub started_by: UserId,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A drill as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = drills)]
struct DrillRecord {
    id: String,
    station_id: String,
    speed: f64,
    state: String,
    series_json: String,
    readings_total: i64,
    readings_fed: i64,
    started_by: String,
    started_at: String,
    ended_at: Option<String>,
}

fn to_drill(r: DrillRecord, with_series: bool) -> QueryResult<DrillRow> {
    let DrillRecord {
        id,
        station_id,
        speed,
        state,
        series_json: series,
        readings_total: total,
        readings_fed: fed,
        started_by: by,
        started_at: at,
        ended_at: ended,
    } = r;
    Ok(DrillRow {
        state: DrillState::parse(&state)
            .ok_or_else(|| corrupt(format!("drill {id}: state {state:?}")))?,
        series: if with_series {
            serde_json::from_str(&series).map_err(|e| corrupt(format!("drill {id}: {e}")))?
        } else {
            Vec::new()
        },
        readings_total: total,
        readings_fed: fed,
        started_by: parse_id(&by)?,
        started_at: parse_ts(&at)?,
        ended_at: ended.as_deref().map(parse_ts).transpose()?,
        id: parse_id(&id)?,
        station_id: parse_id(&station_id)?,
        speed,
    })
}

pub fn insert_drill(conn: &mut Conn, d: &DrillRow) -> QueryResult<()> {
    let series = serde_json::to_string(&d.series)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::insert_into(drills::table)
        .values((
            drills::id.eq(d.id.to_string()),
            drills::station_id.eq(d.station_id.to_string()),
            drills::speed.eq(d.speed),
            drills::state.eq(d.state.as_str()),
            drills::series_json.eq(series.as_str()),
            drills::readings_total.eq(d.readings_total),
            drills::readings_fed.eq(d.readings_fed),
            drills::started_by.eq(d.started_by.to_string()),
            drills::started_at.eq(ts(d.started_at)),
            drills::ended_at.eq(d.ended_at.map(ts)),
        ))
        .execute(conn)
        .map(drop)
}

/// One drill (with its series when `with_series`).
pub fn drill(conn: &mut Conn, id: &DrillId, with_series: bool) -> QueryResult<Option<DrillRow>> {
    drills::table
        .filter(drills::id.eq(id.to_string()))
        .select(DrillRecord::as_select())
        .first(conn)
        .optional()?
        .map(|r| to_drill(r, with_series))
        .transpose()
}

/// Every drill, newest first, without their series.
pub fn all_drills(conn: &mut Conn) -> QueryResult<Vec<DrillRow>> {
    drills::table
        .order(drills::started_at.desc())
        .select(DrillRecord::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| to_drill(r, false))
        .collect()
}

/// The running drill of a station, if any.
pub fn running_drill(conn: &mut Conn, station_id: &StationId) -> QueryResult<Option<DrillId>> {
    let id: Option<String> = drills::table
        .filter(drills::station_id.eq(station_id.to_string()))
        .filter(drills::state.eq(DrillState::Running.as_str()))
        .select(drills::id)
        .first(conn)
        .optional()?;
    id.as_deref().map(parse_id).transpose()
}

/// Every running drill's id.
pub fn running_drills(conn: &mut Conn) -> QueryResult<Vec<DrillId>> {
    let ids: Vec<String> = drills::table
        .filter(drills::state.eq(DrillState::Running.as_str()))
        .select(drills::id)
        .load(conn)?;
    ids.iter().map(|id| parse_id(id)).collect()
}

pub fn set_drill_fed(conn: &mut Conn, id: &DrillId, fed: i64) -> QueryResult<()> {
    diesel::update(drills::table.filter(drills::id.eq(id.to_string())))
        .set(drills::readings_fed.eq(fed))
        .execute(conn)
        .map(drop)
}

/// Ends a running drill (finished or stopped); answers whether it was running.
pub fn end_drill(
    conn: &mut Conn,
    id: &DrillId,
    state: DrillState,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::update(
        drills::table
            .filter(drills::id.eq(id.to_string()))
            .filter(drills::state.eq(DrillState::Running.as_str())),
    )
    .set((
        drills::state.eq(state.as_str()),
        drills::ended_at.eq(ts(at)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Takes the lock of a station's series until the transaction ends (see `backend::Lock::Readings`).
pub fn lock_series(conn: &mut Conn, station_id: &StationId, series: Series) -> QueryResult<()> {
    super::lock(
        conn,
        super::Lock::Readings {
            station: *station_id.as_uuid(),
            drill: match series {
                Series::Real => None,
                Series::Drill(id) => Some(*id.as_uuid()),
            },
        },
    )
}

/// The observed time at which the run of `stage` that ends just before `before` began: the first
/// reading after the last one before `before` in another stage (the first reading of the series when
/// there is none).
pub fn run_start(
    conn: &mut Conn,
    station_id: &StationId,
    series: Series,
    stage: FloodStage,
    before: DateTime<Utc>,
) -> QueryResult<Option<DateTime<Utc>>> {
    let other: Option<String> = station_readings::table
        .filter(station_readings::station_id.eq(station_id.to_string()))
        .filter(station_readings::series.eq(series.stored()))
        .filter(station_readings::observed_at.lt(ts(before)))
        .filter(station_readings::stage.ne(stage.as_str()))
        .order(station_readings::observed_at.desc())
        .select(station_readings::observed_at)
        .first(conn)
        .optional()?;
    let mut q = station_readings::table
        .filter(station_readings::station_id.eq(station_id.to_string()))
        .filter(station_readings::series.eq(series.stored()))
        .filter(station_readings::observed_at.lt(ts(before)))
        .into_boxed();
    if let Some(o) = other {
        q = q.filter(station_readings::observed_at.gt(o));
    }
    q.order(station_readings::observed_at.asc())
        .select(station_readings::observed_at)
        .first::<String>(conn)
        .optional()?
        .as_deref()
        .map(parse_ts)
        .transpose()
}
