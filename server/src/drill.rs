//! Drills: a duty lead replays a hydrograph (the shipped 2024 Dongshan series, or one uploaded with
//! the request) for a station at a chosen speed, to rehearse a flood night.
//!
//! A drill's readings are stored in their own series (the drill's id), so its stage never touches the
//! real one, the levels shown as real never include them, and everything the fold raises is marked
//! `drill` (deduplicated apart from real alerts). The replay is a tokio task in the server that
//! started it: each step feeds the readings whose time has come (`speed` seconds of series per
//! second of wall time) through [`crate::flood::ingest`], in a transaction that first checks the
//! drill is still running (the loop itself is `schedule::drill`). Stopping (or finishing) resolves the drill's open alerts. Nothing resumes a
//! drill after a restart: a drill whose replay died with its process stays marked running until the
//! time its replay should have ended has passed, then the next start-up or scheduled check ends it
//! ([`sweep`]); a duty lead may stop it at once. A drill another live instance is replaying is never
//! ended by this.

use crate::coverage::Policy;
use crate::db::alerts;
use crate::db::flood::{self as store, Series, Station};
use crate::db::{self, Conn, QueryResult};
use crate::error::AppError;
use crate::flood::Settings;
use chrono::{DateTime, Utc};
use riverchief_shared::alert::{AlertKind, Subject};
use riverchief_shared::flood::{DrillState, DrillView, Reading};
use riverchief_shared::id::DrillId;

/// The 2024 Dongshan hydrograph shipped with the server (`station,observed_at,level_m`, hourly).
pub const DONGSHAN_2024_CSV: &str = include_str!("../demo/dongshan-2024-hourly.csv");

/// The shipped hydrograph's readings (its station column is ignored: a drill names its station).
pub fn shipped_series() -> Result<Vec<Reading>, AppError> {
    let rows = riverchief_shared::flood::parse_csv(DONGSHAN_2024_CSV.as_bytes())
        .map_err(|e| AppError::Internal(format!("the shipped hydrograph: {e}")))?;
    Ok(rows.into_iter().map(|r| r.reading).collect())
}

/// A drill as the API shows it.
pub fn view(conn: &mut Conn, d: &store::DrillRow) -> QueryResult<DrillView> {
    let station = store::station_by_id(conn, &d.station_id)?;
    let state = store::stage_state(conn, &d.station_id, Series::Drill(d.id))?;
    Ok(DrillView {
        id: d.id,
        station: station.map_or_else(|| d.station_id.to_string(), |s| s.code),
        speed: d.speed,
        state: d.state,
        started_by: d.started_by,
        started_at: d.started_at,
        ended_at: d.ended_at,
        readings_total: u64::try_from(d.readings_total).unwrap_or(0),
        readings_fed: u64::try_from(d.readings_fed).unwrap_or(0),
        stage: state.map_or(riverchief_shared::coverage::FloodStage::Normal, |s| s.stage),
        level_m: state.map(|s| s.level_m),
        observed_at: state.map(|s| s.observed_at),
    })
}

/// Ends a running drill (`Finished` or `Stopped`) and resolves its open alerts, in the caller's
/// write transaction. Answers whether it was running.
pub fn end(
    conn: &mut Conn,
    id: &DrillId,
    state: DrillState,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let Some(d) = store::drill(conn, id, false)? else {
        return Ok(false);
    };
    // The drill's series lock: a replay step holds it from its check to its commit, so no step of
    // this drill commits after the end.
    store::lock_series(conn, &d.station_id, Series::Drill(*id))?;
    if !store::end_drill(conn, id, state, now)? {
        return Ok(false);
    }
    if let Some(station) = store::station_by_id(conn, &d.station_id)? {
        let subject = Subject::Station(&station.code).to_string();
        for kind in [AlertKind::StageChanged, AlertKind::RapidRise] {
            alerts::resolve(conn, kind, &subject, true, now)?;
        }
    }
    Ok(true)
}

/// How long past its expected end a drill still marked running is taken for dead: a minute, plus a
/// tenth of its run (a busy machine replays a little late).
fn grace(run: chrono::Duration) -> chrono::Duration {
    chrono::Duration::seconds(60) + run / 10
}

/// When a drill's replay should finish: its series' span divided by its speed, after its start.
fn expected_end(d: &store::DrillRow) -> (DateTime<Utc>, chrono::Duration) {
    let span = match (d.series.first(), d.series.last()) {
        (Some(a), Some(b)) => b.observed_at - a.observed_at,
        _ => chrono::Duration::zero(),
    };
    let run_ms = span.num_milliseconds() as f64 / d.speed.max(f64::MIN_POSITIVE);
    let run = chrono::Duration::milliseconds(run_ms.clamp(0.0, 1e14) as i64);
    (d.started_at + run, run)
}

/// Ends every drill still marked running whose replay should have finished by `now` (see
/// [`grace`]): the process replaying it died. A drill that another live instance is replaying is
/// within its time and left alone, so an instance starting up never stops a neighbour's drill. Run in
/// the caller's write transaction (at start-up, and by every scheduled check).
pub fn sweep_dead(conn: &mut Conn, now: DateTime<Utc>) -> QueryResult<usize> {
    let mut n = 0;
    for id in store::running_drills(conn)? {
        let Some(d) = store::drill(conn, &id, true)? else {
            continue;
        };
        let (end_at, run) = expected_end(&d);
        if now > end_at + grace(run) && end(conn, &id, DrillState::Stopped, now)? {
            n += 1;
        }
    }
    Ok(n)
}

/// [`sweep_dead`] in a write transaction of its own.
pub fn sweep(conn: &mut Conn, now: DateTime<Utc>) -> QueryResult<usize> {
    db::write_transaction(conn, |conn| sweep_dead(conn, now))
}

/// What one replay step did.
pub enum Step {
    /// Fed the readings up to this index; more are due later.
    Fed(usize),
    /// The drill ended (all fed, or it was stopped).
    Ended,
}

/// Feeds `series[from..to]` to the drill's series if it is still running, at `now` (the replay's
/// clock, `schedule::drill`).
#[allow(clippy::too_many_arguments)]
pub fn step(
    conn: &mut Conn,
    policy: &Policy,
    settings: &Settings,
    drill_id: &DrillId,
    station: &Station,
    series: &[Reading],
    (from, to): (usize, usize),
    now: DateTime<Utc>,
) -> Result<Step, AppError> {
    db::write_transaction(conn, |conn| -> Result<Step, AppError> {
        store::lock_series(conn, &station.id, Series::Drill(*drill_id))?;
        let running =
            store::drill(conn, drill_id, false)?.is_some_and(|d| d.state == DrillState::Running);
        if !running {
            return Ok(Step::Ended);
        }
        let batch: Vec<(usize, Reading)> = series[from..to].iter().copied().enumerate().collect();
        crate::flood::ingest(
            conn,
            settings,
            policy,
            station,
            Series::Drill(*drill_id),
            &batch,
            now,
        )
        .map_err(|e| AppError::Internal(format!("drill {drill_id}: {e}")))?;
        store::set_drill_fed(conn, drill_id, i64::try_from(to).unwrap_or(i64::MAX))?;
        if to == series.len() {
            end(conn, drill_id, DrillState::Finished, now)?;
            return Ok(Step::Ended);
        }
        Ok(Step::Fed(to))
    })
}
