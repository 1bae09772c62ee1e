//! Coverage arithmetic: which track points count for a segment, which stretches of the segment they
//! cover, and what is left uncovered.
//!
//! Positions along a segment are metres from its start ("along"); chainage is the segment's start
//! chainage plus along. A point counts for a segment when its accuracy is good enough and it lies
//! within the segment's patrol buffer. Two consecutive counted points cover the stretch between their
//! projections onto the line only when they are close in time and in space ([`Rules`]), so a phone
//! that jumps, or a gap in the track, does not cover bank nobody walked.
//!
//! The computation is incremental: [`Segment::advance`] takes the last counted point of the previous
//! batch ([`Mark`]) and the new points, and returns the new covered intervals and the new last mark.
//! Intervals from any number of batches and patrols are combined with [`merge`].

use crate::domain::{Chainage, TrackPoint};
use crate::geo as rgeo;
use chrono::{DateTime, Duration, Utc};
use geo::{Closest, ClosestPoint, Distance, Geodesic, LineLocatePoint};
use serde::{Deserialize, Serialize};

/// The thresholds that decide what counts as walked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Two counted points further apart in time than this cover nothing between them.
    pub max_step: Duration,
    /// Two counted points further apart than this (metres) cover nothing between them.
    pub max_step_m: f64,
    /// Points whose reported accuracy is worse than this (metres) are ignored.
    pub max_accuracy_m: f64,
    /// A patrol covers a segment when it passes along at least this fraction of it.
    pub covering_ratio: f64,
    /// Uncovered pieces shorter than this (metres) are not reported: they are the gaps between
    /// projections of fixes, not bank nobody walked.
    pub min_gap_m: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_step: Duration::seconds(120),
            max_step_m: 150.0,
            max_accuracy_m: 50.0,
            covering_ratio: 0.8,
            min_gap_m: 1.0,
        }
    }
}

/// A stretch of a segment, in metres from its start (`from_m <= to_m`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interval {
    pub from_m: f64,
    pub to_m: f64,
}

impl Interval {
    pub fn length_m(&self) -> f64 {
        (self.to_m - self.from_m).max(0.0)
    }
}

/// A counted point: when, where along the segment, and where (WGS-84), kept between batches so the
/// last point of one batch joins the first of the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mark {
    pub t: DateTime<Utc>,
    pub along_m: f64,
    pub lon: f64,
    pub lat: f64,
}

/// A segment's geometry prepared for coverage: the line, its geodesic length, the buffer and the
/// start chainage.
#[derive(Debug, Clone)]
pub struct Segment {
    line: geo::LineString<f64>,
    length_m: f64,
    buffer_m: f64,
    start_chainage_m: f64,
}

impl Segment {
    /// `None` for a line with fewer than two points or no length.
    pub fn new(line: &[[f64; 2]], buffer_m: f64, start_chainage_m: f64) -> Option<Self> {
        let line = geo::LineString::from(line.iter().map(|[x, y]| (*x, *y)).collect::<Vec<_>>());
        let length_m = rgeo::length_m(&line);
        if line.0.len() < 2 || length_m.is_nan() || length_m <= 0.0 {
            return None;
        }
        Some(Segment {
            line,
            length_m,
            buffer_m,
            start_chainage_m,
        })
    }

    pub fn from_domain(s: &crate::domain::Segment) -> Option<Self> {
        Self::new(
            &s.line,
            s.properties.patrol_buffer_m,
            s.properties.start_chainage_m,
        )
    }

    pub fn length_m(&self) -> f64 {
        self.length_m
    }

    pub fn buffer_m(&self) -> f64 {
        self.buffer_m
    }

    pub fn line(&self) -> &geo::LineString<f64> {
        &self.line
    }

    /// The point as a [`Mark`] when it counts for this segment: good enough accuracy, inside the
    /// buffer.
    pub fn count(&self, rules: &Rules, p: &TrackPoint) -> Option<Mark> {
        // NaN accuracy is ignored like poor accuracy.
        if p.accuracy_m
            .is_some_and(|a| a.is_nan() || a > rules.max_accuracy_m)
        {
            return None;
        }
        let point = geo::Point::new(p.lon.get(), p.lat.get());
        let nearest = match self.line.closest_point(&point) {
            Closest::Intersection(q) | Closest::SinglePoint(q) => q,
            Closest::Indeterminate => return None,
        };
        let off = Geodesic.distance(nearest, point);
        if off.is_nan() || off > self.buffer_m {
            return None;
        }
        let fraction = self.line.line_locate_point(&point)?;
        Some(Mark {
            t: p.t,
            along_m: (fraction * self.length_m).clamp(0.0, self.length_m),
            lon: p.lon.get(),
            lat: p.lat.get(),
        })
    }

    /// Walks new points after `last` (the last counted point so far, if any): the intervals they
    /// cover and the new last counted point.
    pub fn advance(
        &self,
        rules: &Rules,
        mut last: Option<Mark>,
        points: &[TrackPoint],
    ) -> (Vec<Interval>, Option<Mark>) {
        let mut covered = Vec::new();
        for p in points {
            let Some(mark) = self.count(rules, p) else {
                continue;
            };
            if let Some(prev) = last {
                if joins(rules, &prev, &mark) {
                    covered.push(Interval {
                        from_m: prev.along_m.min(mark.along_m),
                        to_m: prev.along_m.max(mark.along_m),
                    });
                }
            }
            // A fix older than the last one (a late, out-of-order batch) does not move the mark back.
            if last.is_none_or(|l| mark.t >= l.t) {
                last = Some(mark);
            }
        }
        (merge(covered), last)
    }

    /// The ratio of the segment's length the intervals cover, in [0, 1].
    pub fn ratio(&self, merged: &[Interval]) -> f64 {
        // A fold from +0.0, not `sum()`: the sum of no floats is -0.0, which reaches the JSON as `-0`.
        let covered = merged
            .iter()
            .map(Interval::length_m)
            .fold(0.0, |a, b| a + b);
        (covered / self.length_m).clamp(0.0, 1.0)
    }

    /// The pieces of the segment the (merged) intervals leave uncovered, ignoring slivers shorter
    /// than `rules.min_gap_m`.
    pub fn uncovered(&self, rules: &Rules, merged: &[Interval]) -> Vec<Interval> {
        let mut gaps = Vec::new();
        let mut at = 0.0;
        for iv in merged {
            if iv.from_m - at >= rules.min_gap_m {
                gaps.push(Interval {
                    from_m: at,
                    to_m: iv.from_m,
                });
            }
            at = at.max(iv.to_m);
        }
        if self.length_m - at >= rules.min_gap_m {
            gaps.push(Interval {
                from_m: at,
                to_m: self.length_m,
            });
        }
        gaps
    }

    /// A piece as crews write it: `K0+350–K0+420`.
    pub fn chainage_range(&self, iv: &Interval) -> String {
        format!(
            "{}–{}",
            Chainage(self.start_chainage_m + iv.from_m),
            Chainage(self.start_chainage_m + iv.to_m)
        )
    }

    /// The piece of the line between two positions along it, as `[[lon, lat], ...]`.
    pub fn piece(&self, iv: &Interval) -> Vec<[f64; 2]> {
        // `line_locate_point` measures fractions in planar (degree) length; cut by the same measure so
        // that a piece starts and ends where its points project.
        let coords = &self.line.0;
        let steps: Vec<f64> = coords
            .windows(2)
            .map(|w| ((w[1].x - w[0].x).powi(2) + (w[1].y - w[0].y).powi(2)).sqrt())
            .collect();
        let total: f64 = steps.iter().sum();
        let (from, to) = (
            iv.from_m / self.length_m * total,
            iv.to_m / self.length_m * total,
        );
        let at = |d: f64| -> [f64; 2] {
            let mut walked = 0.0;
            for (w, step) in coords.windows(2).zip(&steps) {
                if walked + step >= d && *step > 0.0 {
                    let f = ((d - walked) / step).clamp(0.0, 1.0);
                    return [
                        w[0].x + f * (w[1].x - w[0].x),
                        w[0].y + f * (w[1].y - w[0].y),
                    ];
                }
                walked += step;
            }
            let last = coords[coords.len() - 1];
            [last.x, last.y]
        };
        let mut out = vec![at(from)];
        let mut walked = 0.0;
        for (c, step) in coords.iter().skip(1).zip(&steps) {
            walked += step;
            if walked > from && walked < to {
                out.push([c.x, c.y]);
            }
        }
        out.push(at(to));
        out
    }
}

/// Whether two consecutive counted points are close enough in time and space to have walked the
/// bank between them.
fn joins(rules: &Rules, a: &Mark, b: &Mark) -> bool {
    let dt = b.t.signed_duration_since(a.t).abs();
    dt <= rules.max_step
        && Geodesic.distance(geo::Point::new(a.lon, a.lat), geo::Point::new(b.lon, b.lat))
            <= rules.max_step_m
}

/// Sorts intervals and merges those that overlap or touch.
pub fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.retain(|iv| iv.from_m.is_finite() && iv.to_m.is_finite());
    intervals.sort_by(|a, b| a.from_m.total_cmp(&b.from_m));
    let mut out: Vec<Interval> = Vec::with_capacity(intervals.len());
    for iv in intervals {
        match out.last_mut() {
            Some(last) if iv.from_m <= last.to_m => last.to_m = last.to_m.max(iv.to_m),
            _ => out.push(iv),
        }
    }
    out
}

/// Whether a segment last covered at `last_covered` is overdue at `now` under `interval`: strictly
/// older than the interval, or never covered.
pub fn is_overdue(
    last_covered: Option<DateTime<Utc>>,
    interval: Duration,
    now: DateTime<Utc>,
) -> bool {
    match last_covered {
        Some(t) => now.signed_duration_since(t) > interval,
        None => true,
    }
}

/// The flood stage that sets how often segments must be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodStage {
    Normal,
    /// 设防
    Watch,
    /// 警戒
    Warning,
    /// 保证
    Guarantee,
}

crate::names::named!(FloodStage {
    Normal => "normal",
    Watch => "watch",
    Warning => "warning",
    Guarantee => "guarantee",
});

/// Patrol requirement: how often each segment must be covered, per flood stage (minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Requirement {
    pub normal: i64,
    pub watch: i64,
    pub warning: i64,
    pub guarantee: i64,
}

impl Requirement {
    /// Embankment practice (PRODUCT.md): weekly in normal times, hourly at watch, every 30 minutes at
    /// warning, every 15 at guarantee.
    pub const DEFAULT: Requirement = Requirement {
        normal: 7 * 24 * 60,
        watch: 60,
        warning: 30,
        guarantee: 15,
    };

    /// The interval in force at a stage.
    pub fn interval(&self, stage: FloodStage) -> Duration {
        Duration::minutes(match stage {
            FloodStage::Normal => self.normal,
            FloodStage::Watch => self.watch,
            FloodStage::Warning => self.warning,
            FloodStage::Guarantee => self.guarantee,
        })
    }
}

impl Default for Requirement {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Properties of one segment's Feature in `GET /api/v1/coverage` (the geometry is the uncovered
/// MultiLineString).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentCoverage {
    pub segment_id: crate::id::SegmentId,
    pub code: String,
    pub name: String,
    pub length_m: f64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Fraction of the length covered by patrols in the window, in [0, 1].
    pub ratio: f64,
    pub covered_m: f64,
    /// Covered and uncovered pieces as chainage ranges (`K0+350–K0+420`).
    pub covered: Vec<String>,
    pub uncovered: Vec<String>,
    /// Patrols in the window that touched the segment.
    pub patrols: u64,
    /// End of the latest patrol (up to `to`) that covered at least the covering ratio of the segment.
    pub last_covered: Option<DateTime<Utc>>,
    pub stage: FloodStage,
    pub interval_minutes: i64,
    /// Whether `last_covered` is older than the interval in force, now.
    pub overdue: bool,
}

/// One patrol in a segment's coverage timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatrolCoverage {
    pub patrol_id: crate::id::PatrolId,
    pub patroller: crate::id::UserId,
    pub patroller_name: String,
    /// First and last fix that counted for the segment.
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub ratio: f64,
    /// Whether this patrol alone counts as covering the segment.
    pub covers: bool,
    pub covered: Vec<String>,
}

/// `GET /api/v1/segments/{id}/coverage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentTimeline {
    pub coverage: SegmentCoverage,
    pub patrols: Vec<PatrolCoverage>,
}

/// `POST /api/v1/flood-stage` (admin, duty lead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFloodStage {
    pub stage: FloodStage,
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /api/v1/flood-stage`: the stage in force, who set it, and the requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloodStageState {
    pub stage: FloodStage,
    #[serde(default)]
    pub set_by: Option<crate::id::UserId>,
    #[serde(default)]
    pub set_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    pub interval_minutes: i64,
    pub requirement: Requirement,
}

/// What pull carries per segment (change entity `coverage`) so a phone can show which segments need
/// walking without asking: the phone computes `overdue` with [`is_overdue`] against its own clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoverageSummary {
    pub segment_id: crate::id::SegmentId,
    pub last_covered: Option<DateTime<Utc>>,
    pub stage: FloodStage,
    pub interval_minutes: i64,
    /// When the segment falls overdue (`last_covered` + interval); `None` when never covered.
    pub due_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geo::{Lat, Lon};
    use chrono::TimeZone;

    /// QHL-02 as in server/demo/qinhuai-demo.json (Qingliangmen Bridge–Caihong Bridge, left bank).
    const QHL_02: [[f64; 2]; 5] = [
        [118.74485, 32.05],
        [118.74445, 32.0515],
        [118.74415, 32.053],
        [118.74375, 32.0545],
        [118.74355, 32.0557],
    ];

    fn qhl02() -> Segment {
        Segment::new(&QHL_02, 60.0, 847.0).unwrap()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 7, 3, 20, 0, 0).unwrap()
    }

    fn point(t: DateTime<Utc>, lon: f64, lat: f64) -> TrackPoint {
        TrackPoint {
            t,
            lon: Lon::parse(lon, "lon").unwrap(),
            lat: Lat::parse(lat, "lat").unwrap(),
            accuracy_m: Some(8.0),
            crs: None,
            mock: false,
        }
    }

    /// A walk along the line from `from` to `to` (fractions of its planar length), one fix every
    /// `step_s` seconds at about 1.2 m/s, shifted by (dlon, dlat) degrees.
    fn walk(from: f64, to: f64, shift: (f64, f64)) -> Vec<TrackPoint> {
        let s = qhl02();
        let len = s.length_m();
        let n = ((to - from).abs() * len / 12.0).ceil() as usize;
        (0..=n)
            .map(|i| {
                let f = from + (to - from) * i as f64 / n as f64;
                let [lon, lat] = *s
                    .piece(&Interval {
                        from_m: 0.0,
                        to_m: f * len,
                    })
                    .last()
                    .unwrap();
                point(
                    t0() + Duration::seconds(10 * i as i64),
                    lon + shift.0,
                    lat + shift.1,
                )
            })
            .collect()
    }

    fn cover(points: &[TrackPoint]) -> Vec<Interval> {
        qhl02().advance(&Rules::default(), None, points).0
    }

    #[test]
    fn the_line_is_about_646_m_long() {
        assert!(
            (qhl02().length_m() - 646.0).abs() < 15.0,
            "{}",
            qhl02().length_m()
        );
    }

    #[test]
    fn walking_the_first_half_covers_half_and_leaves_the_second_half() {
        let s = qhl02();
        let covered = cover(&walk(0.0, 0.5, (0.0, 0.0)));
        let ratio = s.ratio(&covered);
        assert!((ratio - 0.5).abs() <= 0.02, "{ratio}");
        let gaps = s.uncovered(&Rules::default(), &covered);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!((gaps[0].from_m - s.length_m() / 2.0).abs() < 0.02 * s.length_m());
        assert!((gaps[0].to_m - s.length_m()).abs() < 1e-6);
        // Chainage 847 + ~322 to 847 + ~644: K1+169 to K1+491.
        let range = s.chainage_range(&gaps[0]);
        let end = Chainage(847.0 + s.length_m()).to_string();
        assert!(
            range.starts_with("K1+16") && range.ends_with(&format!("–{end}")),
            "{range}"
        );
    }

    #[test]
    fn walking_it_twice_is_not_more_than_all_of_it() {
        let s = qhl02();
        let mut there_and_back = walk(0.0, 1.0, (0.0, 0.0));
        let back: Vec<_> = walk(1.0, 0.0, (0.0, 0.0))
            .into_iter()
            .map(|mut p| {
                p.t += Duration::hours(1);
                p
            })
            .collect();
        there_and_back.extend(back);
        let covered = cover(&there_and_back);
        assert_eq!(covered.len(), 1);
        assert!((s.ratio(&covered) - 1.0).abs() < 1e-9);
        assert!(s.uncovered(&Rules::default(), &covered).is_empty());
    }

    #[test]
    fn a_track_200_m_off_the_bank_covers_nothing() {
        // 0.0021 degrees of longitude at 32°N is about 198 m; the line runs nearly north-south.
        let covered = cover(&walk(0.0, 1.0, (-0.0021, 0.0)));
        assert!(covered.is_empty(), "{covered:?}");
        let ratio = qhl02().ratio(&covered);
        assert_eq!(ratio, 0.0);
        // Not -0.0, which serializes as `-0` on the duty lead's map.
        assert!(ratio.is_sign_positive());
        assert_eq!(serde_json::to_string(&ratio).unwrap_or_default(), "0.0");
    }

    #[test]
    fn a_phone_that_jumps_400_m_and_back_covers_nothing_between() {
        let s = qhl02();
        let len = s.length_m();
        let at = |m: f64| {
            *s.piece(&Interval {
                from_m: 0.0,
                to_m: m,
            })
            .last()
            .unwrap()
        };
        let t = t0();
        // Standing near the start, then the fix jumps 400 m along the bank and comes back.
        let pts: Vec<_> = [(0, 20.0), (10, 30.0), (20, 430.0), (30, 40.0), (40, 50.0)]
            .iter()
            .map(|(s_, m)| {
                let [lon, lat] = at(*m);
                point(t + Duration::seconds(*s_), lon, lat)
            })
            .collect();
        let covered = cover(&pts);
        let total: f64 = covered.iter().map(Interval::length_m).sum();
        assert!(total < 40.0, "{covered:?}");
        assert!(covered.iter().all(|iv| iv.to_m < 60.0), "{covered:?}");
        assert!(s.ratio(&covered) < 40.0 / len);
    }

    #[test]
    fn a_gap_in_time_covers_nothing() {
        let mut pts = walk(0.0, 0.5, (0.0, 0.0));
        // The phone slept for three minutes between two fixes 12 m apart.
        for p in pts.iter_mut().skip(10) {
            p.t += Duration::seconds(180);
        }
        let covered = cover(&pts);
        assert_eq!(covered.len(), 2, "{covered:?}");
    }

    #[test]
    fn poor_accuracy_points_are_ignored() {
        let mut pts = walk(0.0, 1.0, (0.0, 0.0));
        for p in pts.iter_mut().skip(20) {
            p.accuracy_m = Some(80.0);
        }
        let s = qhl02();
        let r = s.ratio(&cover(&pts));
        assert!(r < 0.45, "{r}");
    }

    #[test]
    fn a_gcj02_track_covers_the_bank_once_converted_and_not_before() {
        let wgs = walk(0.0, 1.0, (0.0, 0.0));
        let gcj: Vec<_> = wgs
            .iter()
            .map(|p| {
                let (lon, lat) = crate::gcj02::from_wgs84(p.lon.get(), p.lat.get());
                point(p.t, lon, lat)
            })
            .collect();
        let s = qhl02();
        assert_eq!(
            s.ratio(&cover(&gcj)),
            0.0,
            "unconverted GCJ-02 is ~540 m off"
        );
        let converted: Vec<_> = gcj
            .iter()
            .map(|p| {
                let (lon, lat) = crate::gcj02::to_wgs84(p.lon.get(), p.lat.get());
                point(p.t, lon, lat)
            })
            .collect();
        assert!(s.ratio(&cover(&converted)) > 0.99);
    }

    #[test]
    fn batches_join_through_the_mark() {
        let s = qhl02();
        let rules = Rules::default();
        let pts = walk(0.0, 1.0, (0.0, 0.0));
        let whole = s.ratio(&cover(&pts));
        let (a, mark) = s.advance(&rules, None, &pts[..17]);
        let (b, _) = s.advance(&rules, mark, &pts[17..]);
        let mut both = a;
        both.extend(b);
        assert!((s.ratio(&merge(both)) - whole).abs() < 1e-9);
    }

    #[test]
    fn merge_joins_overlapping_and_touching_intervals() {
        let iv = |a, b| Interval { from_m: a, to_m: b };
        assert_eq!(
            merge(vec![
                iv(50.0, 60.0),
                iv(0.0, 10.0),
                iv(10.0, 20.0),
                iv(55.0, 70.0)
            ]),
            vec![iv(0.0, 20.0), iv(50.0, 70.0)]
        );
    }

    #[test]
    fn pieces_follow_the_line() {
        let s = qhl02();
        let whole = s.piece(&Interval {
            from_m: 0.0,
            to_m: s.length_m(),
        });
        assert_eq!(whole.len(), QHL_02.len());
        assert_eq!(whole[0], QHL_02[0]);
    }

    #[test]
    fn the_interval_tightens_as_the_stage_rises() {
        let r = Requirement::DEFAULT;
        let last = t0();
        let now = last + Duration::minutes(45);
        assert!(!is_overdue(Some(last), r.interval(FloodStage::Normal), now));
        assert!(!is_overdue(Some(last), r.interval(FloodStage::Watch), now));
        assert!(is_overdue(Some(last), r.interval(FloodStage::Warning), now));
        assert!(is_overdue(
            Some(last),
            r.interval(FloodStage::Guarantee),
            now
        ));
    }

    #[test]
    fn overdue_flips_exactly_when_the_interval_passes() {
        let last = t0();
        let hour = Duration::minutes(60);
        assert!(!is_overdue(Some(last), hour, last + hour));
        assert!(is_overdue(
            Some(last),
            hour,
            last + hour + Duration::seconds(1)
        ));
        assert!(is_overdue(None, hour, last));
    }
}
