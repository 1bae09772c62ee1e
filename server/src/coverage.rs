//! Coverage on the server: keeping each patrol's covered stretches up to date as points arrive, the
//! flood stage in force, and assembling the coverage answers.
//!
//! The arithmetic is `riverchief_shared::coverage`; this module finds the segments a batch of points
//! may touch (an R-tree of segment envelopes widened by their buffers, cached per database and
//! rebuilt when the segments change), and reads and writes the stored state.
//!
//! The flood stage in force ([`stage_in_force`]) is read here from what the flood watch stored
//! (`db::flood`): the governing station's real stage, the admin's manual floor and any declared
//! response; every caller (coverage answers, pull summaries, the overdue check) follows. So the flood
//! watch depends on coverage (its stage changes record pull summaries), never the other way.

use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Utc};
use riverchief_shared::coverage::{
    self as cov, CoverageSummary, FloodStage, Interval, Requirement, Rules, SegmentCoverage,
};
use riverchief_shared::domain::{Segment, TrackPoint};
use riverchief_shared::id::{PatrolId, SegmentId, UserId};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use std::sync::{Arc, Mutex};

/// Metres per degree of latitude (and of longitude at the equator), near enough for envelopes.
const M_PER_DEG: f64 = 111_320.0;

/// Segments prepared for coverage, with an R-tree over their buffered envelopes.
pub struct SegmentIndex {
    segments: Vec<(Segment, cov::Segment)>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl SegmentIndex {
    pub fn build(segments: Vec<Segment>) -> Self {
        let segments: Vec<(Segment, cov::Segment)> = segments
            .into_iter()
            .filter_map(|s| cov::Segment::from_domain(&s).map(|c| (s, c)))
            .collect();
        let rects = segments
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
                for p in c.line().0.iter() {
                    lo = [lo[0].min(p.x), lo[1].min(p.y)];
                    hi = [hi[0].max(p.x), hi[1].max(p.y)];
                }
                // Widen by the buffer, generously (cos of the most poleward latitude).
                let dlat = c.buffer_m() / M_PER_DEG * 1.1;
                let coslat = lo[1].abs().max(hi[1].abs()).to_radians().cos().max(0.01);
                let dlon = dlat / coslat;
                GeomWithData::new(
                    Rectangle::from_corners(
                        [lo[0] - dlon, lo[1] - dlat],
                        [hi[0] + dlon, hi[1] + dlat],
                    ),
                    i,
                )
            })
            .collect();
        SegmentIndex {
            segments,
            tree: RTree::bulk_load(rects),
        }
    }

    /// Indexes (into the segment list) of segments whose buffered envelope holds any of the points.
    fn candidates(&self, points: &[TrackPoint]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for p in points {
            let at = [p.lon.get(), p.lat.get()];
            for hit in self
                .tree
                .locate_in_envelope_intersecting(&AABB::from_point(at))
            {
                if !out.contains(&hit.data) {
                    out.push(hit.data);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

type Cached = Option<((i64, Option<String>), Arc<SegmentIndex>)>;

/// One index per process, keyed by the segments' count and newest id: segments are only ever added,
/// so that changes whenever they do, and two databases in one process (tests) never share a key.
static INDEX: Mutex<Cached> = Mutex::new(None);

/// The segment index for this database, built on first use and whenever the segments change.
pub fn index(conn: &mut Conn) -> QueryResult<Arc<SegmentIndex>> {
    let key = db::segments::version(conn)?;
    if let Ok(guard) = INDEX.lock() {
        if let Some((k, idx)) = guard.as_ref() {
            if *k == key {
                return Ok(idx.clone());
            }
        }
    }
    let idx = Arc::new(SegmentIndex::build(db::segments::all(conn)?));
    if let Ok(mut guard) = INDEX.lock() {
        *guard = Some((key, idx.clone()));
    }
    Ok(idx)
}

/// Folds a batch of (WGS-84) points into the patrol's stored coverage of every segment they touch.
/// Returns the segments whose "last covered" time moved, for the caller to publish summaries of
/// once its other writes are done.
pub fn apply_points(
    conn: &mut Conn,
    rules: &Rules,
    patrol: PatrolId,
    patroller: UserId,
    points: &[TrackPoint],
) -> QueryResult<Vec<SegmentId>> {
    let idx = index(conn)?;
    let mut moved = Vec::new();
    for i in idx.candidates(points) {
        let (segment, geometry) = &idx.segments[i];
        let id = segment.properties.id;
        let stored = db::coverage::get(conn, patrol, id)?;
        let prev_mark = stored.as_ref().and_then(|s| s.mark);
        let (new, mark) = geometry.advance(rules, prev_mark, points);
        // Counted fixes of this batch (for the time span), whether or not they joined.
        let counted: Vec<DateTime<Utc>> = points
            .iter()
            .filter_map(|p| geometry.count(rules, p).map(|m| m.t))
            .collect();
        let (Some(first), Some(last)) = (counted.iter().min(), counted.iter().max()) else {
            continue;
        };
        let was_covering = stored
            .as_ref()
            .is_some_and(|s| s.ratio >= rules.covering_ratio);
        let old_last = stored.as_ref().map(|s| s.last_at);
        let mut intervals = stored
            .as_ref()
            .map(|s| s.intervals.clone())
            .unwrap_or_default();
        intervals.extend(new);
        let intervals = cov::merge(intervals);
        let row = db::coverage::PatrolSegment {
            patrol_id: patrol,
            segment_id: id,
            patroller,
            ratio: geometry.ratio(&intervals),
            intervals,
            first_at: stored.as_ref().map_or(*first, |s| s.first_at.min(*first)),
            last_at: stored.as_ref().map_or(*last, |s| s.last_at.max(*last)),
            mark,
        };
        let covering = row.ratio >= rules.covering_ratio;
        if covering && (!was_covering || old_last != Some(row.last_at)) {
            moved.push(id);
        }
        db::coverage::put(conn, &row, stored.is_some())?;
    }
    Ok(moved)
}

/// The stage that sets a segment's patrol interval: the highest of its governing station's real
/// stage, the stage an admin set by hand (`POST /flood-stage`, a floor for every segment), and
/// warning while an emergency response is declared on the segment's river or its station's river.
pub fn stage_in_force(conn: &mut Conn, segment: &Segment) -> QueryResult<FloodStage> {
    let mut stage = db::coverage::stage_setting(conn)?.map_or(FloodStage::Normal, |s| s.stage);
    let mut rivers = vec![segment.properties.river.clone()];
    if let Some(code) = &segment.properties.gauge_station {
        if let Some(station) = db::flood::station(conn, code)? {
            if let Some(state) = db::flood::stage_state(conn, &station.id, db::flood::Series::Real)?
            {
                stage = stage.max(state.stage);
            }
            rivers.push(station.river);
        }
    }
    if stage < FloodStage::Warning {
        let responses = db::flood::responses_in_force(conn)?;
        if responses.iter().any(|r| rivers.contains(&r.river)) {
            stage = FloodStage::Warning;
        }
    }
    Ok(stage)
}
/// What the server needs to judge coverage: the rules and the requirement.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Policy {
    pub rules: Rules,
    pub requirement: Requirement,
}

/// A segment's summary for pull (see [`CoverageSummary`]).
pub fn summary(
    conn: &mut Conn,
    policy: &Policy,
    segment: &Segment,
) -> QueryResult<CoverageSummary> {
    let id = segment.properties.id;
    let last_covered = db::coverage::last_covered(conn, id, policy.rules.covering_ratio, None)?;
    let stage = stage_in_force(conn, segment)?;
    let interval = policy.requirement.interval(stage);
    Ok(CoverageSummary {
        segment_id: id,
        last_covered,
        stage,
        interval_minutes: interval.num_minutes(),
        due_at: last_covered.map(|t| t + interval),
    })
}

/// Records pull summaries for the given segments (at `now`). Call it last in the transaction.
pub fn record_summaries(
    conn: &mut Conn,
    policy: &Policy,
    ids: &[SegmentId],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    db::changes::lock(conn)?;
    for id in ids {
        if let Some(segment) = db::segments::by_id(conn, *id)? {
            let s = summary(conn, policy, &segment)?;
            db::coverage::record_summary(conn, &s)?;
            // Covered again: its overdue alert resolves now, not at the next scheduled check.
            crate::alerting::resolve_if_covered(conn, &s, now)?;
        }
    }
    Ok(())
}

/// One segment's coverage answer.
pub struct Report {
    pub coverage: SegmentCoverage,
    /// The uncovered pieces as lines (`[[lon, lat], ...]` each).
    pub uncovered_lines: Vec<Vec<[f64; 2]>>,
    /// The patrols in the window that touched the segment, oldest first.
    pub patrols: Vec<cov::PatrolCoverage>,
}

/// A segment's coverage in the window `[from, to]`, judged overdue against `now`; with the patrols
/// that touched it and the uncovered pieces as lines.
pub fn segment_coverage(
    conn: &mut Conn,
    policy: &Policy,
    segment: &Segment,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<Report> {
    let p = &segment.properties;
    let patrols = db::coverage::in_window(conn, p.id, from, to)?;
    let Some(geometry) = cov::Segment::from_domain(segment) else {
        return Err(db::corrupt_row(std::io::Error::other(format!(
            "segment {} has no usable line",
            p.id
        ))));
    };
    let merged = cov::merge(
        patrols
            .iter()
            .flat_map(|(c, _)| c.intervals.iter().copied())
            .collect(),
    );
    let gaps = geometry.uncovered(&policy.rules, &merged);
    let ranges = |ivs: &[Interval]| ivs.iter().map(|iv| geometry.chainage_range(iv)).collect();
    let last_covered =
        db::coverage::last_covered(conn, p.id, policy.rules.covering_ratio, Some(to))?;
    let stage = stage_in_force(conn, segment)?;
    let interval = policy.requirement.interval(stage);
    let timeline = patrols
        .iter()
        .map(|(c, name)| cov::PatrolCoverage {
            patrol_id: c.patrol_id,
            patroller: c.patroller,
            patroller_name: name.clone(),
            first_at: c.first_at,
            last_at: c.last_at,
            ratio: c.ratio,
            covers: c.ratio >= policy.rules.covering_ratio,
            covered: ranges(&c.intervals),
        })
        .collect();
    let coverage = SegmentCoverage {
        segment_id: p.id,
        code: p.code.clone(),
        name: p.name.clone(),
        length_m: geometry.length_m(),
        from,
        to,
        ratio: geometry.ratio(&merged),
        covered_m: merged.iter().map(Interval::length_m).sum(),
        covered: ranges(&merged),
        uncovered: ranges(&gaps),
        patrols: u64::try_from(patrols.len()).unwrap_or(u64::MAX),
        last_covered,
        stage,
        interval_minutes: interval.num_minutes(),
        overdue: cov::is_overdue(last_covered, interval, now),
    };
    Ok(Report {
        coverage,
        uncovered_lines: gaps.iter().map(|g| geometry.piece(g)).collect(),
        patrols: timeline,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use riverchief_shared::domain::{Bank, Chainage, SegmentProperties};
    use riverchief_shared::geo::{Lat, Lon};

    fn segment(code: &str, line: Vec<[f64; 2]>) -> Segment {
        Segment {
            properties: SegmentProperties {
                id: SegmentId::new(),
                code: code.into(),
                name: code.into(),
                name_en: None,
                river: "r".into(),
                bank: Bank::Left,
                length_m: 0.0,
                start_chainage_m: 0.0,
                start_chainage: Chainage(0.0).to_string(),
                end_chainage: Chainage(0.0).to_string(),
                patrol_buffer_m: 60.0,
                grid: None,
                gauge_station: None,
            },
            line,
        }
    }

    fn at(lon: f64, lat: f64) -> TrackPoint {
        TrackPoint {
            t: Utc::now(),
            lon: Lon::parse(lon, "lon").unwrap(),
            lat: Lat::parse(lat, "lat").unwrap(),
            accuracy_m: None,
            crs: None,
            mock: false,
        }
    }

    #[test]
    fn the_index_finds_the_segments_near_a_point_and_only_those() {
        let left = segment("L", vec![[118.74485, 32.05], [118.74355, 32.0557]]);
        let right = segment("R", vec![[118.74575, 32.05], [118.74445, 32.0557]]);
        let far = segment("F", vec![[118.80, 32.05], [118.80, 32.06]]);
        let idx = SegmentIndex::build(vec![left, right, far]);
        // West of the left line's northern end: only the left envelope (widened by ~66 m) holds it.
        assert_eq!(idx.candidates(&[at(118.7432, 32.0556)]), vec![0]);
        // Between the two banks: both envelopes.
        assert_eq!(idx.candidates(&[at(118.7445, 32.053)]), vec![0, 1]);
        assert!(idx.candidates(&[at(118.77, 32.05)]).is_empty());
    }
}
