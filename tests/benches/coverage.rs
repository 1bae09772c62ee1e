//! Coverage throughput and latency, measured on the server's own code against a real database:
//! - update: points/s folded into stored coverage (`coverage::apply_points`, one write transaction
//!   per batch of 500 points, as a `patrol.points` mutation does) for 1,000,000 points over 100
//!   segments (1,000 patrols of 1,000 fixes, each walking one segment);
//! - query: latency of the whole-map answer (`GET /api/v1/coverage`, every segment) and of one
//!   segment's timeline with 10,000 patrols stored (100 per segment).
//!
//! Each figure has a baseline measured in the same run, so it can be read as a ratio on a noisy
//! machine: for the update, projecting the same points onto their segment's line with `geo` alone
//! (`LineLocatePoint`, the least any coverage computation must do, with no storage); for the map query,
//! one raw SQL aggregate over the same stored rows (count and latest time per segment, the least a map
//! must read); for the timeline, the raw SQL read of that segment's rows.
//!
//! The database is SQLite and, when `RIVERCHIEF_TEST_DATABASE_URL` names a PostgreSQL server,
//! PostgreSQL too. Run: `scripts/with-postgres cargo bench -p riverchief-tests --bench coverage`.
//! Figures go to stdout and `target/bench-coverage.md`.

use anyhow::{anyhow, Result};
use chrono::{Duration, TimeZone, Utc};
use diesel::prelude::*;
use geo::LineLocatePoint;
use riverchief_server::coverage::{self, Policy};
use riverchief_server::db::{self, Conn};
use riverchief_server::Config;
use riverchief_shared::api::UserInfo;
use riverchief_shared::coverage::{self as cov, Interval};
use riverchief_shared::domain::{Bank, Segment, TrackPoint};
use riverchief_shared::geo::{Lat, Lon};
use riverchief_shared::id::{PatrolId, SegmentId, UserId};
use riverchief_tests::TestDb;
use std::time::{Duration as StdDuration, Instant};

const SEGMENTS: usize = 100;
const PATROLS: usize = 1_000;
const POINTS_EACH: usize = 1_000;
const BATCH: usize = 500;
const STORED_PATROLS: usize = 10_000;
const QUERY_RUNS: usize = 20;

struct Measured {
    backend: &'static str,
    update: StdDuration,
    update_baseline: StdDuration,
    map: Vec<StdDuration>,
    map_baseline: Vec<StdDuration>,
    timeline: Vec<StdDuration>,
    timeline_baseline: Vec<StdDuration>,
}

fn main() -> Result<()> {
    let mut runs = Vec::new();
    let tmp = tempfile::tempdir()?;
    runs.push(measure(
        &TestDb::sqlite_in(tmp.path()),
        tmp.path(),
        "SQLite",
    )?);
    if std::env::var(riverchief_tests::db::PG_ENV).is_ok_and(|v| !v.is_empty()) {
        let tmp = tempfile::tempdir()?;
        runs.push(measure(
            &TestDb::fresh(tmp.path())?,
            tmp.path(),
            "PostgreSQL",
        )?);
    }
    let mut md = String::from(
        "| backend | what | riverchief | baseline | ratio |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    for m in &runs {
        let points = (PATROLS * POINTS_EACH) as f64;
        let pts = points / m.update.as_secs_f64();
        let base = points / m.update_baseline.as_secs_f64();
        md.push_str(&format!(
            "| {} | coverage update, points/s (1,000,000 points, 100 segments) | {pts:.0} | {base:.0} | {:.2} |\n",
            m.backend,
            pts / base,
        ));
        for (what, ours, base) in [
            (
                "map query, 10,000 patrols, median",
                pct(&m.map, 50),
                pct(&m.map_baseline, 50),
            ),
            ("map query, p95", pct(&m.map, 95), pct(&m.map_baseline, 95)),
            (
                "segment timeline, median",
                pct(&m.timeline, 50),
                pct(&m.timeline_baseline, 50),
            ),
            (
                "segment timeline, p95",
                pct(&m.timeline, 95),
                pct(&m.timeline_baseline, 95),
            ),
        ] {
            md.push_str(&format!(
                "| {} | {what} (time: lower is better) | {} | {} | {:.1} |\n",
                m.backend,
                ms(ours),
                ms(base),
                ours.as_secs_f64() / base.as_secs_f64().max(1e-9),
            ));
        }
    }
    print!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-coverage.md");
    std::fs::write(out, &md)?;
    Ok(())
}

fn ms(d: StdDuration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn pct(v: &[StdDuration], p: usize) -> StdDuration {
    let mut v = v.to_vec();
    v.sort();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// 100 segments of about 1 km in a 10 × 10 grid east of Nanjing, 2 km apart.
fn segments() -> Vec<Segment> {
    (0..SEGMENTS)
        .map(|i| {
            let (x, y) = (
                118.9 + 0.02 * (i % 10) as f64,
                31.9 + 0.02 * (i / 10) as f64,
            );
            let line = vec![
                [x, y],
                [x + 0.002, y + 0.003],
                [x + 0.003, y + 0.006],
                [x + 0.0045, y + 0.009],
            ];
            let ls = geo::LineString::from(line.iter().map(|[a, b]| (*a, *b)).collect::<Vec<_>>());
            let length_m = riverchief_shared::geo::length_m(&ls);
            Segment {
                properties: db::segments::properties(
                    SegmentId::new(),
                    format!("B-{i:03}"),
                    format!("bench {i}"),
                    None,
                    "bench river".into(),
                    Bank::Left,
                    length_m,
                    0.0,
                    60.0,
                    None,
                    None,
                ),
                line,
            }
        })
        .collect()
}

/// One walk along a segment: `POINTS_EACH` fixes one second apart.
fn walk(s: &Segment, t0: chrono::DateTime<Utc>) -> Result<Vec<TrackPoint>> {
    let g = cov::Segment::from_domain(s).ok_or_else(|| anyhow!("bad line"))?;
    (0..POINTS_EACH)
        .map(|i| {
            let along = g.length_m() * i as f64 / (POINTS_EACH - 1) as f64;
            let [lon, lat] = *g
                .piece(&Interval {
                    from_m: 0.0,
                    to_m: along,
                })
                .last()
                .ok_or_else(|| anyhow!("empty"))?;
            Ok(TrackPoint {
                t: t0 + Duration::seconds(i as i64),
                lon: Lon::parse(lon, "lon")?,
                lat: Lat::parse(lat, "lat")?,
                accuracy_m: Some(5.0),
                crs: None,
                mock: false,
            })
        })
        .collect()
}

fn measure(tdb: &TestDb, dir: &std::path::Path, backend: &'static str) -> Result<Measured> {
    let mut config = Config::new("127.0.0.1:0", dir);
    config.database_url = tdb.url();
    let opened = riverchief_server::app::open(&config)?;
    let mut conn = opened.db.conn()?;
    let conn: &mut Conn = &mut conn;
    let user = UserInfo {
        id: UserId::new(),
        username: "bench".into(),
        display_name: "bench".into(),
        role: riverchief_shared::domain::Role::Patroller,
    };
    db::users::insert(conn, &user, "x")?;
    let segs = segments();
    for s in &segs {
        db::segments::insert(conn, s)?;
    }
    let policy = Policy::default();
    let t0 = Utc
        .with_ymd_and_hms(2024, 7, 3, 0, 0, 0)
        .single()
        .ok_or_else(|| anyhow!("t0"))?;

    // Update throughput. Walks are generated up front so that only the coverage work is timed; the
    // baseline projects the same points onto their segment's line with `geo` alone.
    let lines: Vec<geo::LineString<f64>> = segs
        .iter()
        .map(|s| geo::LineString::from(s.line.iter().map(|[a, b]| (*a, *b)).collect::<Vec<_>>()))
        .collect();
    let mut update = StdDuration::ZERO;
    let mut update_baseline = StdDuration::ZERO;
    for p in 0..PATROLS {
        let s = &segs[p % SEGMENTS];
        let points = walk(s, t0 + Duration::minutes(p as i64))?;
        let patrol = PatrolId::new();
        let start = Instant::now();
        let mut sum = 0.0;
        for tp in &points {
            let at = geo::Point::new(tp.lon.get(), tp.lat.get());
            sum += lines[p % SEGMENTS].line_locate_point(&at).unwrap_or(0.0);
        }
        std::hint::black_box(sum);
        update_baseline += start.elapsed();
        let start = Instant::now();
        for batch in points.chunks(BATCH) {
            db::write_transaction(conn, |conn| {
                coverage::apply_points(conn, &policy.rules, patrol, user.id, batch)
            })?;
        }
        update += start.elapsed();
    }

    // Fill up to 10,000 stored patrols with rows like the ones measured above.
    db::write_transaction(conn, |conn| -> Result<(), diesel::result::Error> {
        for p in PATROLS..STORED_PATROLS {
            let s = &segs[p % SEGMENTS];
            let at = t0 + Duration::minutes(p as i64);
            let from = (p % 7) as f64 * 100.0;
            db::coverage::put(
                conn,
                &db::coverage::PatrolSegment {
                    patrol_id: PatrolId::new(),
                    segment_id: s.properties.id,
                    patroller: user.id,
                    intervals: vec![Interval {
                        from_m: from,
                        to_m: from + 250.0,
                    }],
                    ratio: 0.25,
                    first_at: at,
                    last_at: at + Duration::minutes(15),
                    mark: None,
                },
                false,
            )?;
        }
        Ok(())
    })?;

    let (from, to) = (t0 - Duration::days(1), t0 + Duration::days(30));
    let now = to;
    let mut map = Vec::new();
    let mut timeline = Vec::new();
    let mut map_baseline = Vec::new();
    let mut timeline_baseline = Vec::new();
    let b042 = db::segments::by_code(conn, "B-042")?
        .ok_or_else(|| anyhow!("B-042"))?
        .properties
        .id
        .to_string();
    for _ in 0..QUERY_RUNS {
        let start = Instant::now();
        let per_segment: Vec<PerSegment> = diesel::sql_query(
            "SELECT segment_id, COUNT(*) AS patrols, MAX(last_at) AS last_at FROM patrol_coverage \
             GROUP BY segment_id",
        )
        .load(conn)?;
        map_baseline.push(start.elapsed());
        assert_eq!(
            per_segment.iter().map(|r| r.patrols).sum::<i64>() as usize,
            STORED_PATROLS
        );
        std::hint::black_box(
            per_segment
                .iter()
                .filter_map(|r| r.last_at.as_ref())
                .count(),
        );
        let start = Instant::now();
        let rows: Vec<(String, String, String)> =
            riverchief_server::db::schema::patrol_coverage::table
                .filter(riverchief_server::db::schema::patrol_coverage::segment_id.eq(&b042))
                .select((
                    riverchief_server::db::schema::patrol_coverage::intervals_json,
                    riverchief_server::db::schema::patrol_coverage::first_at,
                    riverchief_server::db::schema::patrol_coverage::last_at,
                ))
                .load(conn)?;
        timeline_baseline.push(start.elapsed());
        assert_eq!(rows.len(), STORED_PATROLS / SEGMENTS);
        let start = Instant::now();
        let mut n = 0;
        for s in db::segments::all(conn)? {
            let r = coverage::segment_coverage(conn, &policy, &s, from, to, now)?;
            n += r.coverage.patrols;
        }
        map.push(start.elapsed());
        assert_eq!(n as usize, STORED_PATROLS);
        let start = Instant::now();
        let s = db::segments::by_code(conn, "B-042")?.ok_or_else(|| anyhow!("B-042"))?;
        let r = coverage::segment_coverage(conn, &policy, &s, from, to, now)?;
        timeline.push(start.elapsed());
        assert_eq!(r.patrols.len(), STORED_PATROLS / SEGMENTS);
        assert!(r.coverage.ratio > 0.99);
    }
    Ok(Measured {
        backend,
        update,
        update_baseline,
        map,
        map_baseline,
        timeline,
        timeline_baseline,
    })
}

/// One row of the baseline map query.
#[derive(diesel::QueryableByName)]
struct PerSegment {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[allow(dead_code)]
    segment_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    patrols: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    last_at: Option<String>,
}
