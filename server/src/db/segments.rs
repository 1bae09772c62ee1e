//! Segments: the stretches of embankment that patrols cover and issues are found on.
//!
//! A segment's line is stored as JSON text (`[[lon, lat], ...]`); its length is computed once, when
//! the segment is written, and its chainage strings (K0+847) are derived on the way out.

use super::changes::{self, Audience};
use super::schema::segments;
use super::{parse_id, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::domain::{Bank, Chainage, Segment, SegmentProperties};
use riverchief_shared::id::SegmentId;
use riverchief_shared::sync::{ChangeEntity, ChangeOp};

type Row = (
    String,         // id
    String,         // code
    String,         // name
    Option<String>, // name_en
    String,         // river
    String,         // bank
    String,         // line_json
    f64,            // length_m
    f64,            // start_chainage_m
    f64,            // patrol_buffer_m
    Option<String>, // grid
    Option<String>, // gauge_station
);

const COLUMNS: (
    segments::id,
    segments::code,
    segments::name,
    segments::name_en,
    segments::river,
    segments::bank,
    segments::line_json,
    segments::length_m,
    segments::start_chainage_m,
    segments::patrol_buffer_m,
    segments::grid,
    segments::gauge_station,
) = (
    segments::id,
    segments::code,
    segments::name,
    segments::name_en,
    segments::river,
    segments::bank,
    segments::line_json,
    segments::length_m,
    segments::start_chainage_m,
    segments::patrol_buffer_m,
    segments::grid,
    segments::gauge_station,
);

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn bank_str(bank: Bank) -> &'static str {
    match bank {
        Bank::Left => "left",
        Bank::Right => "right",
    }
}

fn to_segment(row: Row) -> QueryResult<Segment> {
    let (
        id,
        code,
        name,
        name_en,
        river,
        bank,
        line_json,
        length_m,
        start_chainage_m,
        patrol_buffer_m,
        grid,
        gauge_station,
    ) = row;
    let bank = match bank.as_str() {
        "left" => Bank::Left,
        "right" => Bank::Right,
        other => return Err(corrupt(format!("segment {id}: bank {other:?}"))),
    };
    let line: Vec<[f64; 2]> = serde_json::from_str(&line_json)
        .map_err(|e| corrupt(format!("segment {id}: line: {e}")))?;
    Ok(Segment {
        properties: properties(
            parse_id(&id)?,
            code,
            name,
            name_en,
            river,
            bank,
            length_m,
            start_chainage_m,
            patrol_buffer_m,
            grid,
            gauge_station,
        ),
        line,
    })
}

/// Builds the properties, deriving the chainage strings from the metres.
#[allow(clippy::too_many_arguments)]
pub fn properties(
    id: SegmentId,
    code: String,
    name: String,
    name_en: Option<String>,
    river: String,
    bank: Bank,
    length_m: f64,
    start_chainage_m: f64,
    patrol_buffer_m: f64,
    grid: Option<String>,
    gauge_station: Option<String>,
) -> SegmentProperties {
    SegmentProperties {
        id,
        code,
        name,
        name_en,
        river,
        bank,
        length_m,
        start_chainage_m,
        start_chainage: Chainage(start_chainage_m).to_string(),
        end_chainage: Chainage(start_chainage_m + length_m).to_string(),
        patrol_buffer_m,
        grid,
        gauge_station,
    }
}

/// The segment's line as a geo LineString (lon, lat).
pub fn line_string(segment: &Segment) -> geo::LineString<f64> {
    geo::LineString::from(
        segment
            .line
            .iter()
            .map(|[lon, lat]| (*lon, *lat))
            .collect::<Vec<_>>(),
    )
}

/// Inserts a segment and records a public change holding it.
pub fn insert(conn: &mut Conn, segment: &Segment) -> QueryResult<()> {
    let p = &segment.properties;
    let line_json = serde_json::to_string(&segment.line)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::insert_into(segments::table)
        .values((
            segments::id.eq(p.id.to_string()),
            segments::code.eq(&p.code),
            segments::name.eq(&p.name),
            segments::name_en.eq(&p.name_en),
            segments::river.eq(&p.river),
            segments::bank.eq(bank_str(p.bank)),
            segments::line_json.eq(line_json),
            segments::length_m.eq(p.length_m),
            segments::start_chainage_m.eq(p.start_chainage_m),
            segments::patrol_buffer_m.eq(p.patrol_buffer_m),
            segments::grid.eq(&p.grid),
            segments::gauge_station.eq(&p.gauge_station),
            segments::created_at.eq(super::written_now()),
        ))
        .execute(conn)?;
    let data = serde_json::to_value(segment)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    changes::record(
        conn,
        ChangeEntity::Segment,
        &p.id.to_string(),
        ChangeOp::Upsert,
        &data,
        &Audience {
            public: true,
            ..Audience::default()
        },
    )?;
    Ok(())
}

/// Every segment, ordered by code.
pub fn all(conn: &mut Conn) -> QueryResult<Vec<Segment>> {
    segments::table
        .select(COLUMNS)
        .order(segments::code.asc())
        .load::<Row>(conn)?
        .into_iter()
        .map(to_segment)
        .collect()
}

pub fn by_id(conn: &mut Conn, id: SegmentId) -> QueryResult<Option<Segment>> {
    segments::table
        .filter(segments::id.eq(id.to_string()))
        .select(COLUMNS)
        .first::<Row>(conn)
        .optional()?
        .map(to_segment)
        .transpose()
}

pub fn by_code(conn: &mut Conn, code: &str) -> QueryResult<Option<Segment>> {
    segments::table
        .filter(segments::code.eq(code))
        .select(COLUMNS)
        .first::<Row>(conn)
        .optional()?
        .map(to_segment)
        .transpose()
}

/// A segment named by id or by code (the id first: a key that is an id of no segment is tried as
/// a code). Every "segment by id or code" of the API and of `stock.move` is this.
pub fn by_id_or_code(conn: &mut Conn, key: &str) -> QueryResult<Option<Segment>> {
    if let Ok(id) = SegmentId::parse(key) {
        if let Some(s) = by_id(conn, id)? {
            return Ok(Some(s));
        }
    }
    by_code(conn, key)
}

/// Whether a segment with this id exists.
pub fn exists(conn: &mut Conn, id: SegmentId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        segments::table.filter(segments::id.eq(id.to_string())),
    ))
    .get_result(conn)
}

/// Changes whenever a segment is added: the number of segments and the newest id (UUIDv7).
pub fn version(conn: &mut Conn) -> QueryResult<(i64, Option<String>)> {
    segments::table
        .select((diesel::dsl::count_star(), diesel::dsl::max(segments::id)))
        .first(conn)
}
