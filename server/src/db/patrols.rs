//! Patrols, the segments they cover, and their GPS tracks.
//!
//! Track points are keyed by (patrol, device sequence of the mutation that carried them, index in
//! it), so reading them in key order gives the order the device recorded them, whatever order the
//! mutations arrived in.

use super::changes::{self, Audience};
use super::schema::{patrol_segments, patrols, track_points};
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::domain::{Patrol, TrackPoint};
use riverchief_shared::geo::{Lat, Lon};
use riverchief_shared::id::{DeviceId, PatrolId, SegmentId};
use riverchief_shared::sync::{ChangeEntity, ChangeOp};

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn count_to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Inserts a new patrol and its segments (`patrol.segment_ids` must hold no repeats), started from
/// `device`.
pub fn insert(conn: &mut Conn, patrol: &Patrol, device: DeviceId) -> QueryResult<()> {
    let id = patrol.id.to_string();
    diesel::insert_into(patrols::table)
        .values((
            patrols::id.eq(&id),
            patrols::patroller_id.eq(patrol.patroller.to_string()),
            patrols::started_at.eq(ts(patrol.started_at)),
            patrols::ended_at.eq(patrol.ended_at.map(ts)),
            patrols::notes.eq(&patrol.notes),
            patrols::weather.eq(&patrol.weather),
            patrols::point_count.eq(i64::try_from(patrol.point_count).unwrap_or(i64::MAX)),
            patrols::recorded_at.eq(super::written_now()),
            patrols::origin_device.eq(device.to_string()),
        ))
        .execute(conn)?;
    let rows: Vec<_> = patrol
        .segment_ids
        .iter()
        .map(|s| {
            (
                patrol_segments::patrol_id.eq(id.clone()),
                patrol_segments::segment_id.eq(s.to_string()),
            )
        })
        .collect();
    super::execute_batch(
        conn,
        diesel::insert_into(patrol_segments::table).values(&rows),
    )?;
    Ok(())
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// A patrol (without its points).
pub fn get(conn: &mut Conn, id: PatrolId) -> QueryResult<Option<Patrol>> {
    let row: Option<Row> = patrols::table
        .filter(patrols::id.eq(id.to_string()))
        .select((
            patrols::id,
            patrols::patroller_id,
            patrols::started_at,
            patrols::ended_at,
            patrols::notes,
            patrols::weather,
            patrols::point_count,
        ))
        .first(conn)
        .optional()?;
    let Some((id_text, patroller, started_at, ended_at, notes, weather, point_count)) = row else {
        return Ok(None);
    };
    // Segment ids are UUIDv7, so id order is the order the segments were created in.
    let segment_ids = patrol_segments::table
        .filter(patrol_segments::patrol_id.eq(&id_text))
        .select(patrol_segments::segment_id)
        .order(patrol_segments::segment_id.asc())
        .load::<String>(conn)?
        .iter()
        .map(|s| parse_id::<SegmentId>(s))
        .collect::<QueryResult<Vec<_>>>()?;
    Ok(Some(Patrol {
        id,
        patroller: parse_id(&patroller)?,
        segment_ids,
        started_at: parse_ts(&started_at)?,
        ended_at: ended_at.as_deref().map(parse_ts).transpose()?,
        point_count: count_to_u64(point_count),
        notes,
        weather,
    }))
}

/// Appends the points one mutation carried and returns the patrol's new point count. Should another
/// mutation with the same device sequence have written points already (two devices of one user),
/// the new points follow them instead of colliding.
pub fn add_points(
    conn: &mut Conn,
    id: PatrolId,
    device_seq: i64,
    points: &[TrackPoint],
) -> QueryResult<u64> {
    let id_text = id.to_string();
    let base: i64 = track_points::table
        .filter(track_points::patrol_id.eq(&id_text))
        .filter(track_points::device_seq.eq(device_seq))
        .select(diesel::dsl::max(track_points::idx))
        .first::<Option<i64>>(conn)?
        .map_or(0, |m| m + 1);
    let rows: Vec<_> = points
        .iter()
        .zip(base..)
        .map(|(p, idx)| {
            (
                track_points::patrol_id.eq(id_text.clone()),
                track_points::device_seq.eq(device_seq),
                track_points::idx.eq(idx),
                track_points::recorded_at.eq(ts(p.t)),
                track_points::lon.eq(p.lon.get()),
                track_points::lat.eq(p.lat.get()),
                track_points::accuracy_m.eq(p.accuracy_m),
            )
        })
        .collect();
    // A few hundred rows per statement keeps well under every backend's bind-parameter limit.
    for chunk in rows.chunks(500) {
        super::execute_batch(conn, diesel::insert_into(track_points::table).values(chunk))?;
    }
    let added = i64::try_from(points.len()).unwrap_or(i64::MAX);
    diesel::update(patrols::table.filter(patrols::id.eq(&id_text)))
        .set(patrols::point_count.eq(patrols::point_count + added))
        .execute(conn)?;
    patrols::table
        .filter(patrols::id.eq(&id_text))
        .select(patrols::point_count)
        .first::<i64>(conn)
        .map(count_to_u64)
}

/// Sets the end time and, when given, the closing notes.
pub fn finish(
    conn: &mut Conn,
    id: PatrolId,
    ended_at: DateTime<Utc>,
    notes: Option<&str>,
) -> QueryResult<()> {
    let target = patrols::table.filter(patrols::id.eq(id.to_string()));
    match notes {
        Some(n) => diesel::update(target)
            .set((patrols::ended_at.eq(ts(ended_at)), patrols::notes.eq(n)))
            .execute(conn)?,
        None => diesel::update(target)
            .set(patrols::ended_at.eq(ts(ended_at)))
            .execute(conn)?,
    };
    Ok(())
}

/// The track in recorded order.
pub fn points(conn: &mut Conn, id: PatrolId) -> QueryResult<Vec<TrackPoint>> {
    let rows: Vec<(String, f64, f64, Option<f64>)> = track_points::table
        .filter(track_points::patrol_id.eq(id.to_string()))
        .order((track_points::device_seq.asc(), track_points::idx.asc()))
        .select((
            track_points::recorded_at,
            track_points::lon,
            track_points::lat,
            track_points::accuracy_m,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(t, lon, lat, accuracy_m)| {
            Ok(TrackPoint {
                t: parse_ts(&t)?,
                lon: Lon::parse(lon, "lon").map_err(|e| corrupt(format!("patrol {id}: {e}")))?,
                lat: Lat::parse(lat, "lat").map_err(|e| corrupt(format!("patrol {id}: {e}")))?,
                accuracy_m,
                crs: None,
                mock: false,
            })
        })
        .collect()
}

/// Notes that `device` writes to the patrol: from a device other than the one that started it, the
/// patrol stops being that device's alone (its changes are then sent to every device, that one too).
pub fn written_from(conn: &mut Conn, id: PatrolId, device: DeviceId) -> QueryResult<()> {
    diesel::update(
        patrols::table
            .filter(patrols::id.eq(id.to_string()))
            .filter(patrols::origin_device.ne(device.to_string())),
    )
    .set(patrols::origin_device.eq(None::<String>))
    .execute(conn)?;
    Ok(())
}

/// Re-snapshots the patrol into the change log (its owner sees it). Like
/// [`super::issues::record_issue_change`], it takes the change-log lock before reading. While only
/// the device that started the patrol has written to it, the change names that device as its
/// origin, and that device's pull leaves it out (`changes::page_for_device`).
pub fn record_change(conn: &mut Conn, id: PatrolId) -> QueryResult<()> {
    changes::lock(conn)?;
    let Some(patrol) = get(conn, id)? else {
        return Ok(());
    };
    let origin: Option<String> = patrols::table
        .filter(patrols::id.eq(id.to_string()))
        .select(patrols::origin_device)
        .first(conn)?;
    let origin = origin
        .as_deref()
        .map(super::parse_id::<DeviceId>)
        .transpose()?;
    let data = serde_json::to_value(&patrol)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    changes::record_from(
        conn,
        ChangeEntity::Patrol,
        &id.to_string(),
        ChangeOp::Upsert,
        &data,
        &Audience {
            owner: Some(patrol.patroller),
            ..Audience::default()
        },
        origin,
    )?;
    Ok(())
}
