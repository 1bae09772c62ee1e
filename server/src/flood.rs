//! The flood watch: folding gauge readings into each station's stage and rise, the alerts they raise,
//! and the stage in force for a segment.
//!
//! [`ingest`] runs in the transaction that stores a batch of readings (real ones from the API or
//! the CSV import, or a drill's). It reads the stored series around the batch and the alerts open on
//! it, folds the batch with the shared crate's pure [`fold_batch`] (a late batch placed where it
//! belongs, every reading after it given its stage and rise again; which stage changes and rises
//! to announce, so that a replay of what is already stored announces nothing; the rules are
//! written down there), and writes what the fold decided: the readings (`station_readings.stage`,
//! `rise_m`), then the alerts (a stage change resolves the station's open `stage_changed` alert and
//! raises a new one with from, to, level and observed time; the rapid rise raises `rapid_rise` when
//! it comes on and resolves it when it goes off), then the station's state (`station_stages`),
//! which follows the latest reading. A batch that adds nothing writes nothing.
//!
//! Drill readings go through the same fold in their own series (the drill's id): their stage never
//! touches the real one and everything they raise is marked `drill`.

use crate::alerting;
use crate::coverage::Policy;
use crate::db::alerts;
use crate::db::flood::{self as store, Series, StageState, Station};
use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Utc};
use riverchief_shared::alert::{AlertKind, Subject};
use riverchief_shared::coverage::FloodStage;
use riverchief_shared::flood::{
    fold_batch, unstored, Announcement, Around, FoldRules, Reading, RiseRules, StageRules, Write,
};
use riverchief_shared::id::SegmentId;

/// The flood watch's rules: the stage's hysteresis and the rapid rise.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Settings {
    pub stage: StageRules,
    pub rise: RiseRules,
}

/// A batch of readings refused: the stored level at a time differs from the one sent.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "readings[{index}]: {observed_at} is stored with level {stored} m; one time, one level"
    )]
    Conflict {
        index: usize,
        observed_at: DateTime<Utc>,
        stored: f64,
    },
    #[error(transparent)]
    Db(#[from] db::QueryError),
}

/// What [`ingest`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub inserted: usize,
    /// The station's state in this series after the batch.
    pub state: Option<StageState>,
}

/// Stores a batch of readings (sorted by time, one per time, each with its index in the request)
/// for a station in a series, and folds them into its stage and rise, raising and resolving alerts,
/// in the caller's write transaction. Replaying stored readings writes nothing; a stored time with
/// another level refuses the whole batch.
pub fn ingest(
    conn: &mut Conn,
    settings: &Settings,
    policy: &Policy,
    station: &Station,
    series: Series,
    batch: &[(usize, Reading)],
    now: DateTime<Utc>,
) -> Result<Ingested, IngestError> {
    store::lock_series(conn, &station.id, series)?;
    let times: Vec<DateTime<Utc>> = batch.iter().map(|(_, r)| r.observed_at).collect();
    let stored = store::levels_at(conn, &station.id, series, &times)?;
    let fresh = unstored(batch, &stored).map_err(|c| IngestError::Conflict {
        index: c.index,
        observed_at: c.observed_at,
        stored: c.stored,
    })?;
    let before = store::stage_state(conn, &station.id, series)?;
    let Some(first_new) = fresh.first().map(|r| r.observed_at) else {
        return Ok(Ingested {
            inserted: 0,
            state: before,
        });
    };
    let drill = series.is_drill();
    let subject = Subject::Station(&station.code).to_string();

    // The series around the batch: the reading before the first new one (the stage to start from),
    // those in the rise window before it, the stored tail, and the alerts open on the station.
    let prev = store::reading_before(conn, &station.id, series, first_new)?;
    let window: Vec<Reading> = store::readings_from(
        conn,
        &station.id,
        series,
        first_new - settings.rise.window,
        Some(first_new),
    )?
    .into_iter()
    .map(|s| s.reading)
    .collect();
    let tail = store::readings_from(conn, &station.id, series, first_new, None)?;
    let announced = alerts::open_alert(conn, AlertKind::StageChanged, &subject, drill)?
        .and_then(|a| serde_json::from_value::<FloodStage>(a.details["to"].clone()).ok());
    let rise_open = alerts::open_alert(conn, AlertKind::RapidRise, &subject, drill)?.is_some();
    let around = Around {
        before: prev,
        window: &window,
        after: &tail,
        announced,
        rise_open,
    };
    let rules = FoldRules {
        thresholds: &station.thresholds,
        stage: settings.stage,
        rise: settings.rise,
    };
    let Some(folded) = fold_batch(&around, &fresh, &rules) else {
        return Ok(Ingested {
            inserted: 0,
            state: before,
        });
    };

    for w in &folded.writes {
        match w.write {
            Write::Insert => store::insert_reading(conn, &station.id, series, &w.row)?,
            Write::Update => store::update_derived(conn, &station.id, series, &w.row)?,
        }
    }
    for a in &folded.announcements {
        match a {
            Announcement::Stage { from, to, at } => {
                alerts::resolve(conn, AlertKind::StageChanged, &subject, drill, now)?;
                alerts::raise(
                    conn,
                    &alerting::stage_alert(station, drill, *from, *to, at),
                    now,
                )?;
            }
            Announcement::RiseOn(row) => {
                alerts::raise(
                    conn,
                    &alerting::rise_alert(station, drill, &settings.rise, row),
                    now,
                )?;
            }
            Announcement::RiseOff => {
                alerts::resolve(conn, AlertKind::RapidRise, &subject, drill, now)?;
            }
        }
    }
    let since = match folded.entered {
        Some(r) => r.observed_at,
        None => store::run_start(conn, &station.id, series, folded.stage, first_new)?
            .unwrap_or(first_new),
    };
    let state = StageState {
        stage: folded.stage,
        since,
        observed_at: folded.last.reading.observed_at,
        level_m: folded.last.reading.level_m,
        rising: folded.rising,
    };
    store::put_stage_state(conn, &station.id, series, &state, before.is_some())?;
    if !drill && before.map(|b| b.stage) != Some(folded.stage) {
        // The interval in force changed for the segments this station governs: phones learn it
        // through their pull.
        let ids = governed(conn, station)?;
        crate::coverage::record_summaries(conn, policy, &ids, now)?;
    }
    Ok(Ingested {
        inserted: folded.inserted(),
        state: Some(state),
    })
}

/// The segments a station governs (`segments.gauge_station` is its code).
pub fn governed(conn: &mut Conn, station: &Station) -> QueryResult<Vec<SegmentId>> {
    Ok(db::segments::all(conn)?
        .into_iter()
        .filter(|s| s.properties.gauge_station.as_deref() == Some(station.code.as_str()))
        .map(|s| s.properties.id)
        .collect())
}
