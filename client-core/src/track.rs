//! Track recording from a GPS feed: the phone's location API hands over a fix about every second,
//! and [`Client::record_fix`] keeps each one durable at once, judges it, and groups the kept fixes
//! into `patrol.points` mutations.
//!
//! The judgement is a pure function ([`judge`]) of the fix, the last fix kept on the patrol and
//! the [`FixRules`], tested without a database:
//!
//! - a fix less accurate than the coverage rule allows (or with no usable accuracy) is dropped: the
//!   server would not count it, and it would only cost bytes;
//! - a fix at or before the time of the last kept one is a duplicate (location APIs deliver the
//!   same fix twice, and replay cached fixes after a restart);
//! - a fix within `min_distance_m` of the last kept one is "standing still", dropped unless
//!   `still_keep` has passed since the last kept fix (a patroller who stops at a boil still shows on
//!   the map);
//! - a fix the OS marked as coming from a mock location provider is kept and flagged, never
//!   silently trusted: the server judges the patrol by it.
//!
//! Kept fixes wait in `pending_fixes`; the batch is closed into one mutation when it holds
//! `batch_size` fixes or its oldest is `batch_age` old, when the patrol finishes and when a sync
//! starts. Judging, keeping and closing happen in one local transaction per fix, so a crash loses
//! no fix already handed over and queues none twice.

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::record::{append_points, open_patrol};
use crate::store;
use chrono::{DateTime, Duration, Utc};
use riverchief_shared::domain::{Crs, TrackPoint};
use riverchief_shared::geo::{Lat, Lon};
use riverchief_shared::id::PatrolId;
use riverchief_shared::Limits;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

/// One fix as the phone's location API gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub t: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
    /// Horizontal accuracy in metres, as the platform reports it.
    pub accuracy_m: Option<f64>,
    /// The datum: GCJ-02 from Chinese map SDKs, WGS-84 from the raw GPS.
    pub crs: Crs,
    /// The platform's "mock location" flag.
    pub mock: bool,
}

/// What [`Client::record_fix`] did with a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixOutcome {
    Kept,
    /// Kept, marked as coming from a mock location provider.
    KeptMock,
    DroppedInaccurate,
    DroppedDuplicate,
    DroppedStill,
}

impl FixOutcome {
    pub fn is_kept(self) -> bool {
        matches!(self, Self::Kept | Self::KeptMock)
    }
}

/// How fixes are judged and grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixRules {
    /// Fixes per `patrol.points` mutation.
    pub batch_size: usize,
    /// A batch is closed when its oldest fix was handed over this long ago.
    pub batch_age: Duration,
    /// Closer than this to the last kept fix counts as standing still.
    pub min_distance_m: f64,
    /// While standing still, one fix is still kept this often.
    pub still_keep: Duration,
    /// Less accurate fixes are dropped (the server's coverage rule, 50 m by default).
    pub max_accuracy_m: f64,
}

impl Default for FixRules {
    fn default() -> Self {
        Self {
            batch_size: 50,
            batch_age: Duration::seconds(60),
            min_distance_m: 3.0,
            still_keep: Duration::seconds(30),
            max_accuracy_m: riverchief_shared::coverage::Rules::default().max_accuracy_m,
        }
    }
}

/// The last fix kept on a patrol, as the next one is judged against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastFix {
    pub t: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
}

/// Decides what becomes of `fix`, given the last fix kept on its patrol.
pub fn judge(fix: &Fix, last: Option<&LastFix>, rules: &FixRules) -> FixOutcome {
    let accurate = fix
        .accuracy_m
        .is_none_or(|a| a.is_finite() && a >= 0.0 && a <= rules.max_accuracy_m);
    if !accurate {
        return FixOutcome::DroppedInaccurate;
    }
    if let Some(last) = last {
        if fix.t <= last.t {
            return FixOutcome::DroppedDuplicate;
        }
        let moved = riverchief_shared::geo::distance_m([last.lon, last.lat], [fix.lon, fix.lat]);
        if moved < rules.min_distance_m && fix.t - last.t < rules.still_keep {
            return FixOutcome::DroppedStill;
        }
    }
    if fix.mock {
        FixOutcome::KeptMock
    } else {
        FixOutcome::Kept
    }
}

impl Client {
    /// Records one fix of a patrol started on this device; see the [module docs](self). The fix
    /// is durable when this returns. A position that is not a position (NaN, out of range) is
    /// refused with the field named.
    pub async fn record_fix(
        &self,
        patrol_id: PatrolId,
        fix: Fix,
        rules: FixRules,
    ) -> Result<FixOutcome> {
        let lon = Lon::parse(fix.lon, "fix.lon")?;
        let lat = Lat::parse(fix.lat, "fix.lat")?;
        let limits = self.limits();
        self.db(move |conn| {
            let now = Utc::now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            open_patrol(&tx, patrol_id)?;
            let last = last_fix(&tx, patrol_id)?;
            let outcome = judge(&fix, last.as_ref(), &rules);
            let id = patrol_id.to_string();
            if outcome.is_kept() {
                let n: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(n) + 1, 0) FROM pending_fixes WHERE patrol_id = ?1",
                    [&id],
                    |r| r.get(0),
                )?;
                tx.prepare_cached(
                    "INSERT INTO pending_fixes
                     (patrol_id, n, t, lon, lat, accuracy_m, crs, mock, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    id,
                    n,
                    store::time(fix.t),
                    lon.get(),
                    lat.get(),
                    fix.accuracy_m,
                    crs_name(fix.crs),
                    fix.mock,
                    store::time(now)
                ])?;
                tx.prepare_cached(
                    "UPDATE local_patrols SET fixes_kept = fixes_kept + 1,
                     fixes_mock = fixes_mock + ?2, last_fix_t = ?3, last_fix_lon = ?4, last_fix_lat = ?5
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    i64::from(fix.mock),
                    store::time(fix.t),
                    fix.lon,
                    fix.lat
                ])?;
                let (count, oldest) = waiting(&tx, patrol_id)?;
                let old = oldest.is_some_and(|t| now - t >= rules.batch_age);
                if count >= rules.batch_size.max(1) || old {
                    close_batch(&tx, patrol_id, &limits, now)?;
                }
            } else {
                tx.prepare_cached(
                    "UPDATE local_patrols SET fixes_dropped = fixes_dropped + 1 WHERE id = ?1",
                )?
                .execute([&id])?;
            }
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Closes the waiting fixes of every open patrol whose batch is due by `rules` (all of them
    /// when `all`), as a sync does before it pushes.
    pub async fn close_fix_batches(&self, rules: FixRules, all: bool) -> Result<usize> {
        let limits = self.limits();
        self.db(move |conn| {
            let now = Utc::now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let patrols: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT DISTINCT f.patrol_id FROM pending_fixes f
                     JOIN local_patrols p ON p.id = f.patrol_id WHERE p.ended_at IS NULL",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut closed = 0;
            for id in patrols {
                let patrol_id = store::parse_stored(&id, PatrolId::parse)?;
                let (count, oldest) = waiting(&tx, patrol_id)?;
                let due = all
                    || count >= rules.batch_size.max(1)
                    || oldest.is_some_and(|t| now - t >= rules.batch_age);
                if due && open_patrol(&tx, patrol_id).is_ok() {
                    closed += close_batch(&tx, patrol_id, &limits, now)?;
                }
            }
            tx.commit()?;
            Ok(closed)
        })
        .await
    }
}

/// A patrol started on this device, as the recorder and the outbox see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordedPatrol {
    pub id: PatrolId,
    pub segment_ids: Vec<riverchief_shared::id::SegmentId>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub fixes_kept: u64,
    pub fixes_mock: u64,
    pub fixes_dropped: u64,
    /// Kept fixes not yet closed into a mutation.
    pub fixes_unbatched: u64,
    /// Points queued as `patrol.points` mutations.
    pub points_queued: u64,
    /// How the patrol's start stands in the outbox (a refused start refuses the patrol).
    pub start: crate::query::LocalState,
}

impl Client {
    /// A patrol started on this device.
    pub async fn recorded_patrol(&self, patrol_id: PatrolId) -> Result<RecordedPatrol> {
        self.db(move |conn| {
            let id = patrol_id.to_string();
            let row = conn
                .query_row(
                    "SELECT p.segment_ids, p.started_at, p.ended_at, p.fixes_kept, p.fixes_mock,
                            p.fixes_dropped, p.point_count, o.state, o.error,
                            (SELECT COUNT(*) FROM pending_fixes f WHERE f.patrol_id = p.id)
                     FROM local_patrols p JOIN outbox o ON o.mutation_id = p.start_mutation
                     WHERE p.id = ?1",
                    [&id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, String>(7)?,
                            r.get::<_, Option<String>>(8)?,
                            r.get::<_, i64>(9)?,
                        ))
                    },
                )
                .optional()?
                .ok_or(ClientError::UnknownPatrol(patrol_id))?;
            let (segments, started, ended, kept, mock, dropped, queued, state, error, unbatched) =
                row;
            let count = |n: i64| u64::try_from(n).unwrap_or_default();
            Ok(RecordedPatrol {
                id: patrol_id,
                segment_ids: serde_json::from_str(&segments)?,
                started_at: store::parse_time(&started)?,
                ended_at: store::parse_time_opt(ended)?,
                fixes_kept: count(kept),
                fixes_mock: count(mock),
                fixes_dropped: count(dropped),
                fixes_unbatched: count(unbatched),
                points_queued: count(queued),
                start: crate::query::LocalState {
                    state: crate::outbox::OutboxState::parse(&state)?,
                    error: crate::outbox::error_message(error.as_deref()),
                },
            })
        })
        .await
    }
}

/// Turns the waiting fixes of a patrol into `patrol.points` mutations (in the order they were
/// handed over) and removes them from the waiting table; returns how many fixes were closed.
pub(crate) fn close_batch(
    tx: &Transaction<'_>,
    patrol_id: PatrolId,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<usize> {
    let id = patrol_id.to_string();
    let points = {
        let mut stmt = tx.prepare_cached(
            "SELECT t, lon, lat, accuracy_m, crs, mock FROM pending_fixes
             WHERE patrol_id = ?1 ORDER BY n",
        )?;
        let rows = stmt.query_map([&id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })?;
        let mut points = Vec::new();
        for row in rows {
            let (t, lon, lat, accuracy_m, crs, mock) = row?;
            points.push(TrackPoint {
                t: store::parse_time(&t)?,
                lon: stored_position(Lon::parse(lon, "lon"))?,
                lat: stored_position(Lat::parse(lat, "lat"))?,
                accuracy_m,
                crs: crs.as_deref().map(parse_crs).transpose()?,
                mock,
            });
        }
        points
    };
    if points.is_empty() {
        return Ok(0);
    }
    append_points(tx, patrol_id, &points, limits, now)?;
    tx.execute("DELETE FROM pending_fixes WHERE patrol_id = ?1", [&id])?;
    Ok(points.len())
}

/// The fixes of a patrol waiting for their batch, and when the oldest was handed over.
fn waiting(tx: &Transaction<'_>, patrol_id: PatrolId) -> Result<(usize, Option<DateTime<Utc>>)> {
    let (count, oldest): (i64, Option<String>) = tx
        .prepare_cached(
            "SELECT COUNT(*), MIN(received_at) FROM pending_fixes WHERE patrol_id = ?1",
        )?
        .query_row([patrol_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((
        usize::try_from(count).unwrap_or_default(),
        store::parse_time_opt(oldest)?,
    ))
}

fn last_fix(tx: &Transaction<'_>, patrol_id: PatrolId) -> Result<Option<LastFix>> {
    let row: Option<(Option<String>, Option<f64>, Option<f64>)> = tx
        .prepare_cached(
            "SELECT last_fix_t, last_fix_lon, last_fix_lat FROM local_patrols WHERE id = ?1",
        )?
        .query_row([patrol_id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match row {
        Some((Some(t), Some(lon), Some(lat))) => Ok(Some(LastFix {
            t: store::parse_time(&t)?,
            lon,
            lat,
        })),
        _ => Ok(None),
    }
}

/// A coordinate read back from `pending_fixes`, which holds only what `record_fix` parsed.
fn stored_position<T>(parsed: Result<T, riverchief_shared::FieldError>) -> Result<T> {
    parsed.map_err(|e| ClientError::Internal(format!("bad stored fix: {e}")))
}

/// The datum as stored and sent: absent for WGS-84 (what the server stores), `gcj02` otherwise.
fn crs_name(crs: Crs) -> Option<&'static str> {
    match crs {
        Crs::Wgs84 => None,
        Crs::Gcj02 => Some("gcj02"),
    }
}

fn parse_crs(s: &str) -> Result<Crs> {
    match s {
        "gcj02" => Ok(Crs::Gcj02),
        "wgs84" => Ok(Crs::Wgs84),
        other => Err(ClientError::Internal(format!("bad stored datum {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(secs: i64, lon: f64, lat: f64) -> Fix {
        Fix {
            t: DateTime::from_timestamp(1_720_000_000 + secs, 0).unwrap_or_default(),
            lon,
            lat,
            accuracy_m: Some(5.0),
            crs: Crs::Wgs84,
            mock: false,
        }
    }

    fn last(f: &Fix) -> LastFix {
        LastFix {
            t: f.t,
            lon: f.lon,
            lat: f.lat,
        }
    }

    #[test]
    fn judges_accuracy_duplicates_standing_still_and_mocks() {
        let rules = FixRules::default();
        let first = fix(0, 118.744, 32.05);
        assert_eq!(judge(&first, None, &rules), FixOutcome::Kept);
        // No accuracy given: kept (GPX-like feeds have none); the server judges it by the same rule.
        let mut unknown = first;
        unknown.accuracy_m = None;
        assert_eq!(judge(&unknown, None, &rules), FixOutcome::Kept);
        for bad in [Some(500.0), Some(f64::NAN), Some(-1.0), Some(50.001)] {
            let mut f = fix(1, 118.7441, 32.05);
            f.accuracy_m = bad;
            assert_eq!(
                judge(&f, Some(&last(&first)), &rules),
                FixOutcome::DroppedInaccurate
            );
        }
        let mut edge = fix(1, 118.7441, 32.05);
        edge.accuracy_m = Some(50.0);
        assert_eq!(judge(&edge, Some(&last(&first)), &rules), FixOutcome::Kept);

        // The same time again, or earlier: a duplicate.
        assert_eq!(
            judge(&first, Some(&last(&first)), &rules),
            FixOutcome::DroppedDuplicate
        );
        let earlier = fix(-5, 118.745, 32.05);
        assert_eq!(
            judge(&earlier, Some(&last(&first)), &rules),
            FixOutcome::DroppedDuplicate
        );

        // 1 m away a second later: standing still; 30 s later it is kept anyway.
        let still = fix(1, 118.744_01, 32.05);
        assert_eq!(
            judge(&still, Some(&last(&first)), &rules),
            FixOutcome::DroppedStill
        );
        let still_later = fix(30, 118.744_01, 32.05);
        assert_eq!(
            judge(&still_later, Some(&last(&first)), &rules),
            FixOutcome::Kept
        );
        // About 9 m away: walking.
        let walked = fix(1, 118.7441, 32.05);
        assert_eq!(
            judge(&walked, Some(&last(&first)), &rules),
            FixOutcome::Kept
        );

        let mut mock = walked;
        mock.mock = true;
        assert_eq!(
            judge(&mock, Some(&last(&first)), &rules),
            FixOutcome::KeptMock
        );
        // A mock fix is still judged by the other rules first.
        let mut mock_dup = first;
        mock_dup.mock = true;
        assert_eq!(
            judge(&mock_dup, Some(&last(&first)), &rules),
            FixOutcome::DroppedDuplicate
        );
    }
}
