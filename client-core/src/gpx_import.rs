//! Reading a GPX track (from a GPS logger, a sports watch or a map app) into track points, for
//! `riverchief patrol import`.
//!
//! Every `trkpt` of every `trk` and `trkseg` becomes a point, in file order; each must carry a time,
//! since coverage joins fixes by time. Elevation is ignored; GPX has no accuracy in metres, so the
//! points carry none. GPX is WGS-84 by definition, but files exported from Chinese map apps are often
//! GCJ-02: `crs` marks the points so the server converts them.

use crate::error::{ClientError, Result};
use chrono::{DateTime, Utc};
use riverchief_shared::domain::{Crs, TrackPoint};
use riverchief_shared::geo::{Lat, Lon};
use std::path::Path;

/// The track points of a GPX file, in file order.
pub fn read_track(path: &Path, crs: Option<Crs>) -> Result<Vec<TrackPoint>> {
    let bad = |reason: String| ClientError::BadGpx {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(ClientError::file(path))?;
    let gpx = gpx::read(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let mut points = Vec::new();
    for (ti, track) in gpx.tracks.iter().enumerate() {
        for (si, segment) in track.segments.iter().enumerate() {
            for (pi, wp) in segment.points.iter().enumerate() {
                let at = format!("trk[{ti}].trkseg[{si}].trkpt[{pi}]");
                let time = wp
                    .time
                    .ok_or_else(|| bad(format!("{at} has no <time>")))?
                    .format()
                    .map_err(|e| bad(format!("{at}: time: {e}")))?;
                let t: DateTime<Utc> = DateTime::parse_from_rfc3339(&time)
                    .map_err(|e| bad(format!("{at}: time {time:?}: {e}")))?
                    .with_timezone(&Utc);
                let p = wp.point();
                points.push(TrackPoint {
                    t,
                    lon: Lon::parse(p.x(), format!("{at}.lon").as_str())?,
                    lat: Lat::parse(p.y(), format!("{at}.lat").as_str())?,
                    accuracy_m: None,
                    crs: crs.filter(|c| *c != Crs::Wgs84),
                    mock: false,
                });
            }
        }
    }
    if points.is_empty() {
        return Err(bad("no track points (<trk><trkseg><trkpt>)".into()));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>巡堤</name>
    <trkseg>
      <trkpt lat="32.0500" lon="118.74485"><ele>9.1</ele><time>2024-07-03T12:00:00Z</time></trkpt>
      <trkpt lat="32.0501" lon="118.74482"><ele>9.2</ele><time>2024-07-03T12:00:08Z</time></trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="32.0502" lon="118.74480"><time>2024-07-03T20:00:16+08:00</time></trkpt>
    </trkseg>
  </trk>
</gpx>"#;

    #[test]
    fn reads_every_segment_in_order_with_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.gpx");
        std::fs::write(&path, GPX).expect("write");
        let pts = read_track(&path, Some(Crs::Gcj02)).expect("read");
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[0].lon.get(), 118.74485);
        assert_eq!(pts[2].t.to_rfc3339(), "2024-07-03T12:00:16+00:00");
        assert!(pts.iter().all(|p| p.crs == Some(Crs::Gcj02)));
    }

    #[test]
    fn refuses_a_point_without_time_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.gpx");
        std::fs::write(&path, GPX.replace("<time>2024-07-03T12:00:08Z</time>", "")).expect("write");
        let err = read_track(&path, None).expect_err("no time").to_string();
        assert!(
            err.contains("trk[0].trkseg[0].trkpt[1] has no <time>"),
            "{err}"
        );
    }
}

/// What an import recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Imported {
    pub patrol_id: riverchief_shared::id::PatrolId,
    pub segment_ids: Vec<riverchief_shared::id::SegmentId>,
    pub points: usize,
}

impl crate::Client {
    /// Records a GPX track as one finished patrol: started at its first fix, ended at its last, on
    /// the given segments, or (when none are given) on every mirrored segment the track counts for.
    /// Queued like any patrol; the next sync sends it.
    pub async fn import_gpx(
        &self,
        path: &Path,
        crs: Option<Crs>,
        segment_ids: &[riverchief_shared::id::SegmentId],
        notes: Option<String>,
    ) -> Result<Imported> {
        let points = read_track(path, crs)?;
        let segment_ids = if segment_ids.is_empty() {
            self.segments_under(&points).await?
        } else {
            segment_ids.to_vec()
        };
        if segment_ids.is_empty() {
            return Err(riverchief_shared::FieldError::new(
                "no_segment",
                "segment",
                "the track passes along no known segment; name one with --segment",
            )
            .into());
        }
        let first = points.iter().map(|p| p.t).min().unwrap_or_else(Utc::now);
        let last = points.iter().map(|p| p.t).max().unwrap_or(first);
        let count = points.len();
        let patrol_id = self
            .record_walk(crate::record::Walk {
                segment_ids: segment_ids.clone(),
                notes,
                started_at: first,
                ended_at: last,
                points,
            })
            .await?;
        Ok(Imported {
            patrol_id,
            segment_ids,
            points: count,
        })
    }

    /// The mirrored segments for which at least one of the points counts (WGS-84 after conversion).
    async fn segments_under(
        &self,
        points: &[TrackPoint],
    ) -> Result<Vec<riverchief_shared::id::SegmentId>> {
        use riverchief_shared::coverage::{Rules, Segment};
        let wgs: Vec<TrackPoint> = points.iter().map(|p| p.to_wgs84()).collect();
        let rules = Rules::default();
        Ok(self
            .segments()
            .await?
            .iter()
            .filter(|s| {
                Segment::from_domain(s)
                    .is_some_and(|g| wgs.iter().any(|p| g.count(&rules, p).is_some()))
            })
            .map(|s| s.properties.id)
            .collect())
    }
}
