//! Coverage kept per (patrol, segment), and the flood stage an admin set.
//!
//! A `patrol_coverage` row holds the merged stretches one patrol's track covered on one segment, the
//! times of its first and last counted fix, and that last fix (the [`Mark`] the next batch joins).
//! It is read and rewritten in the transaction that applies a `patrol.points` mutation, so coverage
//! queries never read raw track points.

use super::changes::{self, Audience};
use super::schema::{flood_stage_settings, patrol_coverage, users};
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::coverage::{CoverageSummary, FloodStage, Interval, Mark};
use riverchief_shared::id::{PatrolId, SegmentId, UserId};
use riverchief_shared::sync::{ChangeEntity, ChangeOp};

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn json<T: serde::Serialize>(v: &T) -> QueryResult<String> {
    serde_json::to_string(v).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// One patrol's coverage of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PatrolSegment {
    pub patrol_id: PatrolId,
    pub segment_id: SegmentId,
    pub patroller: UserId,
    /// Merged, in metres from the segment's start.
    pub intervals: Vec<Interval>,
    pub ratio: f64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub mark: Option<Mark>,
}

type Row = (
    String,
    String,
    String,
    String,
    f64,
    String,
    String,
    Option<String>,
);

const COLUMNS: (
    patrol_coverage::patrol_id,
    patrol_coverage::segment_id,
    patrol_coverage::patroller_id,
    patrol_coverage::intervals_json,
    patrol_coverage::ratio,
    patrol_coverage::first_at,
    patrol_coverage::last_at,
    patrol_coverage::mark_json,
) = (
    patrol_coverage::patrol_id,
    patrol_coverage::segment_id,
    patrol_coverage::patroller_id,
    patrol_coverage::intervals_json,
    patrol_coverage::ratio,
    patrol_coverage::first_at,
    patrol_coverage::last_at,
    patrol_coverage::mark_json,
);

fn to_patrol_segment(row: Row) -> QueryResult<PatrolSegment> {
    let (patrol_id, segment_id, patroller, intervals, ratio, first_at, last_at, mark) = row;
    Ok(PatrolSegment {
        intervals: serde_json::from_str(&intervals)
            .map_err(|e| corrupt(format!("coverage {patrol_id}/{segment_id}: {e}")))?,
        mark: mark
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(format!("coverage {patrol_id}/{segment_id}: {e}")))?,
        patrol_id: parse_id(&patrol_id)?,
        segment_id: parse_id(&segment_id)?,
        patroller: parse_id(&patroller)?,
        ratio,
        first_at: parse_ts(&first_at)?,
        last_at: parse_ts(&last_at)?,
    })
}

/// The stored coverage of one segment by one patrol.
pub fn get(
    conn: &mut Conn,
    patrol: PatrolId,
    segment: SegmentId,
) -> QueryResult<Option<PatrolSegment>> {
    patrol_coverage::table
        .filter(patrol_coverage::patrol_id.eq(patrol.to_string()))
        .filter(patrol_coverage::segment_id.eq(segment.to_string()))
        .select(COLUMNS)
        .first::<Row>(conn)
        .optional()?
        .map(to_patrol_segment)
        .transpose()
}

/// Writes a patrol's coverage of a segment (`existed`: whether [`get`] found a row).
pub fn put(conn: &mut Conn, c: &PatrolSegment, existed: bool) -> QueryResult<()> {
    let covered_m: f64 = c.intervals.iter().map(Interval::length_m).sum();
    let intervals = json(&c.intervals)?;
    let mark = c.mark.as_ref().map(json).transpose()?;
    let now = super::written_now();
    if existed {
        diesel::update(
            patrol_coverage::table
                .filter(patrol_coverage::patrol_id.eq(c.patrol_id.to_string()))
                .filter(patrol_coverage::segment_id.eq(c.segment_id.to_string())),
        )
        .set((
            patrol_coverage::intervals_json.eq(intervals),
            patrol_coverage::covered_m.eq(covered_m),
            patrol_coverage::ratio.eq(c.ratio),
            patrol_coverage::first_at.eq(ts(c.first_at)),
            patrol_coverage::last_at.eq(ts(c.last_at)),
            patrol_coverage::mark_json.eq(mark),
            patrol_coverage::updated_at.eq(now),
        ))
        .execute(conn)?;
    } else {
        diesel::insert_into(patrol_coverage::table)
            .values((
                patrol_coverage::patrol_id.eq(c.patrol_id.to_string()),
                patrol_coverage::segment_id.eq(c.segment_id.to_string()),
                patrol_coverage::patroller_id.eq(c.patroller.to_string()),
                patrol_coverage::intervals_json.eq(intervals),
                patrol_coverage::covered_m.eq(covered_m),
                patrol_coverage::ratio.eq(c.ratio),
                patrol_coverage::first_at.eq(ts(c.first_at)),
                patrol_coverage::last_at.eq(ts(c.last_at)),
                patrol_coverage::mark_json.eq(mark),
                patrol_coverage::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Patrols whose counted fixes on the segment overlap the window `[from, to]`, oldest first, with
/// their patroller's display name.
pub fn in_window(
    conn: &mut Conn,
    segment: SegmentId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryResult<Vec<(PatrolSegment, String)>> {
    let rows: Vec<(Row, String)> = patrol_coverage::table
        .inner_join(users::table.on(users::id.eq(patrol_coverage::patroller_id)))
        .filter(patrol_coverage::segment_id.eq(segment.to_string()))
        .filter(patrol_coverage::last_at.ge(ts(from)))
        .filter(patrol_coverage::first_at.le(ts(to)))
        .order((
            patrol_coverage::first_at.asc(),
            patrol_coverage::patrol_id.asc(),
        ))
        .select((COLUMNS, users::display_name))
        .load(conn)?;
    rows.into_iter()
        .map(|(row, name)| Ok((to_patrol_segment(row)?, name)))
        .collect()
}

/// When the segment was last covered (the last counted fix of the newest patrol whose ratio reached
/// `covering_ratio`), looking no later than `until` when given.
pub fn last_covered(
    conn: &mut Conn,
    segment: SegmentId,
    covering_ratio: f64,
    until: Option<DateTime<Utc>>,
) -> QueryResult<Option<DateTime<Utc>>> {
    let mut q = patrol_coverage::table
        .filter(patrol_coverage::segment_id.eq(segment.to_string()))
        .filter(patrol_coverage::ratio.ge(covering_ratio))
        .into_boxed();
    if let Some(until) = until {
        q = q.filter(patrol_coverage::last_at.le(ts(until)));
    }
    q.select(diesel::dsl::max(patrol_coverage::last_at))
        .first::<Option<String>>(conn)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

/// A flood stage an admin set: which, who, when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSetting {
    pub stage: FloodStage,
    pub by: UserId,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// The stage an admin set last; `None` when nobody ever set one.
pub fn stage_setting(conn: &mut Conn) -> QueryResult<Option<StageSetting>> {
    let row: Option<(String, String, String, Option<String>)> = flood_stage_settings::table
        .order((
            flood_stage_settings::set_at.desc(),
            flood_stage_settings::id.desc(),
        ))
        .select((
            flood_stage_settings::stage,
            flood_stage_settings::set_by,
            flood_stage_settings::set_at,
            flood_stage_settings::note,
        ))
        .first(conn)
        .optional()?;
    row.map(|(stage, by, at, note)| {
        let stage =
            FloodStage::parse(&stage).ok_or_else(|| corrupt(format!("flood stage {stage:?}")))?;
        Ok(StageSetting {
            stage,
            by: parse_id(&by)?,
            at: parse_ts(&at)?,
            note,
        })
    })
    .transpose()
}

/// Records a stage an admin set.
pub fn set_stage(
    conn: &mut Conn,
    stage: FloodStage,
    by: UserId,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(flood_stage_settings::table)
        .values((
            flood_stage_settings::id.eq(uuid::Uuid::now_v7().to_string()),
            flood_stage_settings::stage.eq(stage.as_str()),
            flood_stage_settings::set_by.eq(by.to_string()),
            flood_stage_settings::set_at.eq(ts(at)),
            flood_stage_settings::note.eq(note),
        ))
        .execute(conn)?;
    Ok(())
}

/// Appends a public `coverage` change holding the segment's summary. Call it last in the
/// transaction (it takes the change-log lock).
pub fn record_summary(conn: &mut Conn, summary: &CoverageSummary) -> QueryResult<()> {
    let data = serde_json::to_value(summary)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    changes::record(
        conn,
        ChangeEntity::Coverage,
        &summary.segment_id.to_string(),
        ChangeOp::Upsert,
        &data,
        &Audience {
            public: true,
            ..Audience::default()
        },
    )?;
    Ok(())
}
