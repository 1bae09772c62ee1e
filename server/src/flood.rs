//! The flood watch: folding gauge readings into each station's stage and rise, the alerts they raise,
//! and the stage in force for a segment.
//!
//! [`ingest`] runs in the transaction that stores a batch of readings (real ones from the API or
//! the CSV import, or a drill's). New readings are folded in time order from the stored reading just
//! before the earliest new one, so a late batch is placed where it belongs: every reading after it
//! gets its stage and rise again (`station_readings.stage`, `rise_m`), and the station's state
//! (`station_stages`) follows the latest reading. A stage change at a reading that is new, or whose
//! stage the late batch changed, resolves the station's open `stage_changed` alert and raises a new
//! one (from, to, level, observed time); so a replay of what is already stored announces nothing.
//! The rapid-rise signal raises `rapid_rise` when it comes on and resolves it when it goes off.
//! A batch that adds nothing writes nothing.
//!
//! Drill readings go through the same fold in their own series (the drill's id): their stage never
//! touches the real one and everything they raise is marked `drill`.

use crate::alerting;
use crate::coverage::Policy;
use crate::db::alerts;
use crate::db::flood::{self as store, Series, StageState, Station, StoredReading};
use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Utc};
use riverchief_shared::alert::{AlertKind, Subject};
use riverchief_shared::coverage::FloodStage;
use riverchief_shared::flood::{next_stage, rise_at, Reading, RiseRules, StageRules};
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
    series: Series<'_>,
    batch: &[(usize, Reading)],
    now: DateTime<Utc>,
) -> Result<Ingested, IngestError> {
    store::lock_series(conn, &station.id, series)?;
    let times: Vec<DateTime<Utc>> = batch.iter().map(|(_, r)| r.observed_at).collect();
    let stored = store::levels_at(conn, &station.id, series, &times)?;
    let mut fresh: Vec<Reading> = Vec::new();
    for (index, r) in batch {
        match stored.get(&r.observed_at) {
            Some(level) if *level != r.level_m => {
                return Err(IngestError::Conflict {
                    index: *index,
                    observed_at: r.observed_at,
                    stored: *level,
                })
            }
            Some(_) => {}
            None => fresh.push(*r),
        }
    }
    let before = store::stage_state(conn, &station.id, series)?;
    let Some(first_new) = fresh.first().map(|r| r.observed_at) else {
        return Ok(Ingested {
            inserted: 0,
            state: before,
        });
    };
    let drill = series.is_drill();
    let subject = Subject::Station(&station.code).to_string();

    // The context: the stage at the reading before the first new one, and the readings in the rise
    // window before it.
    let prev = store::reading_before(conn, &station.id, series, first_new)?;
    let context = store::readings_from(
        conn,
        &station.id,
        series,
        first_new - settings.rise.window,
        Some(first_new),
    )?;
    let tail = store::readings_from(conn, &station.id, series, first_new, None)?;

    // The stored tail and the new readings, in time order.
    let mut merged: Vec<(Reading, Option<StoredReading>)> = tail
        .iter()
        .map(|s| (s.reading, Some(*s)))
        .chain(fresh.iter().map(|r| (*r, None)))
        .collect();
    merged.sort_by_key(|(r, _)| r.observed_at);
    let mut window: Vec<Reading> = context.iter().map(|s| s.reading).collect();
    let offset = window.len();
    window.extend(merged.iter().map(|(r, _)| *r));

    let mut stage = prev.map_or(FloodStage::Normal, |p| p.stage);
    let mut rising = prev.is_some_and(|p| settings.rise.is_rapid(p.rise_m));
    // The reading that entered the stage in force, when it is in this batch's range.
    let mut entered: Option<Reading> = None;
    let mut inserted = 0;
    let mut last_row = None;
    for (k, (reading, old)) in merged.iter().enumerate() {
        let next = next_stage(stage, reading.level_m, &station.thresholds, &settings.stage);
        let rise_m = rise_at(&window, offset + k, settings.rise.window);
        let now_rising = settings.rise.is_rapid(rise_m);
        let row = StoredReading {
            reading: *reading,
            stage: next,
            rise_m,
        };
        let (is_new, stage_moved) = match old {
            None => {
                store::insert_reading(conn, &station.id, series, &row)?;
                inserted += 1;
                (true, true)
            }
            Some(o) if o.stage != next || (o.rise_m - rise_m).abs() > 1e-9 => {
                store::update_derived(conn, &station.id, series, &row)?;
                (false, o.stage != next)
            }
            Some(_) => (false, false),
        };
        if next != stage {
            entered = Some(*reading);
            if is_new || stage_moved {
                alerts::resolve(conn, AlertKind::StageChanged, &subject, drill, now)?;
                alerts::raise(
                    conn,
                    &alerting::stage_alert(station, drill, stage, next, reading),
                    now,
                )?;
            }
        }
        if now_rising != rising && is_new {
            if now_rising {
                alerts::raise(
                    conn,
                    &alerting::rise_alert(station, drill, &settings.rise, &row),
                    now,
                )?;
            } else {
                alerts::resolve(conn, AlertKind::RapidRise, &subject, drill, now)?;
            }
        }
        stage = next;
        rising = now_rising;
        last_row = Some(row);
    }
    let Some(last) = last_row else {
        return Ok(Ingested {
            inserted,
            state: before,
        });
    };
    // A late batch may have moved history under alerts already announced: the open alerts are made
    // to say what the series now says (no write when they already do).
    let announced = alerts::open_alert(conn, AlertKind::StageChanged, &subject, drill)?
        .and_then(|a| serde_json::from_value::<FloodStage>(a.details["to"].clone()).ok())
        .unwrap_or(FloodStage::Normal);
    if announced != stage {
        let at = entered.unwrap_or(last.reading);
        alerts::resolve(conn, AlertKind::StageChanged, &subject, drill, now)?;
        alerts::raise(
            conn,
            &alerting::stage_alert(station, drill, announced, stage, &at),
            now,
        )?;
    }
    if rising {
        alerts::raise(
            conn,
            &alerting::rise_alert(station, drill, &settings.rise, &last),
            now,
        )?;
    } else if alerts::open_alert(conn, AlertKind::RapidRise, &subject, drill)?.is_some() {
        alerts::resolve(conn, AlertKind::RapidRise, &subject, drill, now)?;
    }
    let since = match entered {
        Some(r) => r.observed_at,
        None => store::run_start(conn, &station.id, series, stage, first_new)?
            .unwrap_or(merged[0].0.observed_at),
    };
    let state = StageState {
        stage,
        since,
        observed_at: last.reading.observed_at,
        level_m: last.reading.level_m,
        rising,
    };
    store::put_stage_state(conn, &station.id, series, &state, before.is_some())?;
    if !drill && before.map(|b| b.stage) != Some(stage) {
        // The interval in force changed for the segments this station governs: phones learn it
        // through their pull.
        let ids = governed(conn, station)?;
        crate::coverage::record_summaries(conn, policy, &ids, now)?;
    }
    Ok(Ingested {
        inserted,
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
