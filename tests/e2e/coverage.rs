//! Coverage: tracks pushed by the real client become covered stretches, uncovered chainage ranges,
//! "last covered" and "overdue" at the stage in force; a GCJ-02 track is converted on the way in; a
//! phone learns through pull which segments need walking.

use crate::common::*;
use anyhow::{anyhow, Result};
use chrono::{DateTime, Duration, Utc};
use riverchief_client::Client;
use riverchief_shared::coverage::{self as cov, CoverageSummary, Interval};
use riverchief_shared::domain::{Crs, Segment, TrackPoint};
use riverchief_shared::geo::{Lat, Lon};
use riverchief_tests::{login, TestServer};
use serde_json::{json, Value};

/// A walk along the segment from `from` to `to` (fractions of its length), a fix every 10 m and
/// 8 s, starting at `t0`; positions converted to GCJ-02 and marked so when `gcj02`.
pub fn walk_part(
    segment: &Segment,
    from: f64,
    to: f64,
    t0: DateTime<Utc>,
    gcj02: bool,
) -> Result<Vec<TrackPoint>> {
    let geometry =
        cov::Segment::from_domain(segment).ok_or_else(|| anyhow!("segment without a line"))?;
    let len = geometry.length_m();
    let n = ((to - from).abs() * len / 10.0).ceil().max(1.0) as usize;
    (0..=n)
        .map(|i| {
            let along = (from + (to - from) * i as f64 / n as f64) * len;
            let piece = geometry.piece(&Interval {
                from_m: 0.0,
                to_m: along,
            });
            let [mut lon, mut lat] = *piece.last().ok_or_else(|| anyhow!("empty piece"))?;
            if gcj02 {
                (lon, lat) = riverchief_shared::gcj02::from_wgs84(lon, lat);
            }
            Ok(TrackPoint {
                t: t0 + Duration::seconds(8 * i as i64),
                lon: Lon::parse(lon, "lon")?,
                lat: Lat::parse(lat, "lat")?,
                accuracy_m: Some(6.0),
                crs: gcj02.then_some(Crs::Gcj02),
                mock: false,
            })
        })
        .collect()
}

/// Records a patrol on `segment` with these points and syncs it.
pub async fn patrol(client: &Client, segment: &Segment, points: &[TrackPoint]) -> Result<()> {
    let id = client
        .start_patrol(&[segment.properties.id], None, None)
        .await?;
    for chunk in points.chunks(25) {
        client.add_points(id, chunk).await?;
    }
    client.finish_patrol(id, None).await?;
    client.sync(&|_| {}).await?;
    Ok(())
}

/// The properties of one segment's Feature in `GET /coverage`.
pub fn feature<'a>(collection: &'a Value, code: &str) -> Result<&'a Value> {
    collection["features"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["properties"]["code"] == code))
        .ok_or_else(|| anyhow!("no feature for {code} in {collection}"))
}

fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "from={}&to={}",
        from.format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

#[tokio::test]
async fn coverage_follows_the_tracks_and_the_stage() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &server.url(), "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let t0 = Utc::now() - Duration::minutes(60);

    // The first half of QHL-02, walked an hour ago.
    patrol(&zhang, &qhl02, &walk_part(&qhl02, 0.0, 0.5, t0, false)?).await?;
    let lead = Http::new(&base, &login(&base, "chen").await?);
    let w = window(t0 - Duration::minutes(5), Utc::now());
    let all = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let f = feature(&all, "QHL-02")?;
    let p = &f["properties"];
    let ratio = p["ratio"].as_f64().unwrap_or(-1.0);
    assert!((ratio - 0.5).abs() <= 0.02, "{p}");
    let end = &qhl02.properties.end_chainage;
    let uncovered = p["uncovered"].as_array().cloned().unwrap_or_default();
    assert_eq!(uncovered.len(), 1, "{p}");
    let range = uncovered[0].as_str().unwrap_or_default();
    // K0+847 + ~322 m = K1+169: the second half, to the segment's end.
    assert!(
        range.starts_with("K1+1") && range.ends_with(&format!("–{end}")),
        "{range}"
    );
    assert_eq!(f["geometry"]["type"], "MultiLineString");
    assert_eq!(
        f["geometry"]["coordinates"].as_array().map(Vec::len),
        Some(1)
    );
    // Half is not covering: never covered, so overdue even in normal times.
    assert_eq!(p["last_covered"], Value::Null, "{p}");
    assert_eq!(p["overdue"], true);
    assert_eq!(p["stage"], "normal");
    assert_eq!(p["interval_minutes"], 7 * 24 * 60);
    // The right bank, 85 m across the river, is outside the 60 m buffer.
    assert_eq!(feature(&all, "QHR-02")?["properties"]["ratio"], 0.0);

    // A second phone reports in GCJ-02 (as Chinese map apps do): converted, it covers the bank.
    let dir2 = tempfile::tempdir()?;
    let lina = phone(dir2.path(), &server.url(), "lina").await?;
    let t1 = t0 + Duration::minutes(2);
    let gcj = walk_part(&qhl02, 0.0, 1.0, t1, true)?;
    let last_fix = gcj
        .last()
        .map(|p| p.t)
        .ok_or_else(|| anyhow!("no points"))?;
    patrol(&lina, &qhl02, &gcj).await?;
    let all = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let p = &feature(&all, "QHL-02")?["properties"];
    assert!(p["ratio"].as_f64().unwrap_or(0.0) > 0.99, "{p}");
    assert_eq!(p["uncovered"], json!([]));
    assert_eq!(p["patrols"], 2);
    let last = p["last_covered"]
        .as_str()
        .and_then(parse_time)
        .ok_or_else(|| anyhow!("no last_covered in {p}"))?;
    assert_eq!(last, last_fix);
    assert_eq!(p["overdue"], false);

    // The timeline: who walked it, when, how much.
    let tl = lead
        .get(&format!("/api/v1/segments/QHL-02/coverage?{w}"))
        .await?;
    let patrols = tl["patrols"].as_array().cloned().unwrap_or_default();
    assert_eq!(patrols.len(), 2, "{tl}");
    assert_eq!(patrols[0]["covers"], false);
    assert_eq!(patrols[1]["covers"], true);
    assert!(patrols[1]["patroller_name"]
        .as_str()
        .is_some_and(|n| n.contains("李娜")));

    // The stage rises: at watch (60 min) a patrol ~50 minutes old is in time; at warning (30) not.
    let admin = login(&base, "admin").await?;
    let (status, body) = post(
        &base,
        &admin,
        "/api/v1/flood-stage",
        json!({"stage": "watch"}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let p = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let p = &feature(&p, "QHL-02")?["properties"];
    assert_eq!(
        (p["stage"].clone(), p["interval_minutes"].clone()),
        (json!("watch"), json!(60))
    );
    assert_eq!(p["overdue"], false, "{p}");
    post(
        &base,
        &admin,
        "/api/v1/flood-stage",
        json!({"stage": "warning", "note": "东山站 8.82 m"}),
    )
    .await?;
    let p = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let p = &feature(&p, "QHL-02")?["properties"];
    assert_eq!(p["interval_minutes"], 30);
    assert_eq!(p["overdue"], true, "{p}");
    let stage = lead.get("/api/v1/flood-stage").await?;
    assert_eq!(stage["stage"], "warning");
    assert_eq!(stage["note"], "东山站 8.82 m");
    assert_eq!(stage["set_by"], json!(user_id(&base, "admin").await?));

    // Phones learn it through pull: QHL-02 falls due 30 minutes after its last cover.
    zhang.sync(&|_| {}).await?;
    let summaries: Vec<CoverageSummary> = zhang.coverage().await?;
    let s = summaries
        .iter()
        .find(|s| s.segment_id == qhl02.properties.id)
        .ok_or_else(|| anyhow!("no summary for QHL-02 in {summaries:?}"))?;
    assert_eq!(s.last_covered, Some(last_fix));
    assert_eq!(s.interval_minutes, 30);
    assert_eq!(s.due_at, Some(last_fix + Duration::minutes(30)));
    Ok(())
}

#[tokio::test]
async fn coverage_refuses_bad_input_naming_the_field() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let http = reqwest::Client::new();
    let lead = login(&base, "chen").await?;
    let get = |path: String| {
        let r = http.get(format!("{base}{path}")).bearer_auth(&lead).send();
        async move {
            let r = r.await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (s, b) = get("/api/v1/coverage?from=yesterday".into()).await?;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("from")),
        "{b}"
    );
    let (s, b) =
        get("/api/v1/coverage?from=2024-07-03T00:00:00Z&to=2024-07-02T00:00:00Z".into()).await?;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("from")),
        "{b}"
    );
    let (s, _) = get("/api/v1/segments/NO-SUCH/coverage".into()).await?;
    assert_eq!(s, 404);
    // Only an admin sets the stage; an unknown stage names the field.
    let patroller = login(&base, "zhangwei").await?;
    let (s, _) = post(
        &base,
        &patroller,
        "/api/v1/flood-stage",
        json!({"stage": "warning"}),
    )
    .await?;
    assert_eq!(s, 403);
    let admin = login(&base, "admin").await?;
    let (s, b) = post(
        &base,
        &admin,
        "/api/v1/flood-stage",
        json!({"stage": "panic"}),
    )
    .await?;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("stage")),
        "{b}"
    );
    // Nothing was written by the refusals.
    let (s, b) = get("/api/v1/flood-stage".into()).await?;
    assert_eq!(
        (s, b["stage"].clone(), b["set_by"].clone()),
        (200, json!("normal"), Value::Null)
    );
    Ok(())
}

/// The points as a GPX 1.1 file the way a GPS logger writes it: one track, two segments (the
/// logger paused), elevation and time on every point.
fn gpx(points: &[TrackPoint]) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="e2e" xmlns="http://www.topografix.com/GPX/1/1">
<metadata><name>QHL-02</name></metadata>
<trk><name>巡堤 Qinhuai left bank</name><trkseg>
"#,
    );
    let half = points.len() / 2;
    for (i, p) in points.iter().enumerate() {
        if i == half {
            out.push_str("</trkseg><trkseg>\n");
        }
        out.push_str(&format!(
            "<trkpt lat=\"{}\" lon=\"{}\"><ele>{:.1}</ele><time>{}</time></trkpt>\n",
            p.lat.get(),
            p.lon.get(),
            9.0 + (i % 7) as f64 * 0.1,
            p.t.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    out.push_str("</trkseg></trk></gpx>\n");
    out
}

#[tokio::test]
async fn a_gpx_import_covers_what_the_same_points_pushed_cover() -> Result<()> {
    use chrono::Timelike;
    let server = TestServer::start().await?;
    let base = server.url();
    let t0 = (Utc::now() - Duration::minutes(40))
        .with_nanosecond(0)
        .ok_or_else(|| anyhow!("time"))?;

    // Pushed by the client: the first 60% of QHL-02.
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &server.url(), "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let points = walk_part(&qhl02, 0.0, 0.6, t0, false)?;
    patrol(&zhang, &qhl02, &points).await?;

    // The same walk as a GPX file, imported and synced by the CLI on another phone.
    let dir2 = tempfile::tempdir()?;
    drop(phone(dir2.path(), &server.url(), "lina").await?);
    let file = dir2.path().join("walk.gpx");
    std::fs::write(&file, gpx(&points))?;
    for args in [
        vec!["patrol", "import", file.to_str().unwrap_or_default()],
        vec!["sync"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
            .arg("--data")
            .arg(dir2.path())
            .args(&args)
            .output()?;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let lead = Http::new(&base, &login(&base, "chen").await?);
    let w = window(t0 - Duration::minutes(1), Utc::now());
    let tl = lead
        .get(&format!("/api/v1/segments/QHL-02/coverage?{w}"))
        .await?;
    let patrols = tl["patrols"].as_array().cloned().unwrap_or_default();
    assert_eq!(patrols.len(), 2, "{tl}");
    let (pushed, imported) = (&patrols[0], &patrols[1]);
    assert!(pushed["patroller_name"] != imported["patroller_name"]);
    let (a, b) = (
        pushed["ratio"].as_f64().unwrap_or(-1.0),
        imported["ratio"].as_f64().unwrap_or(-2.0),
    );
    assert!((a - 0.6).abs() <= 0.02, "{a}");
    assert!((a - b).abs() < 1e-6, "pushed {a}, imported {b}");
    assert_eq!(pushed["covered"], imported["covered"]);
    assert_eq!(pushed["first_at"], imported["first_at"]);
    assert_eq!(pushed["last_at"], imported["last_at"]);
    // The segment was found by the track itself (no --segment given): nothing else was touched.
    let all = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    assert_eq!(feature(&all, "QHL-02")?["properties"]["patrols"], 2);
    assert_eq!(feature(&all, "QHR-02")?["properties"]["patrols"], 0);
    Ok(())
}

/// An import is all or nothing: a track with one fix two days ahead is refused whole, and the
/// phone queues neither the patrol's start nor any of its points (no empty patrol that never ends).
#[tokio::test]
async fn a_gpx_import_with_a_bad_fix_queues_nothing() -> Result<()> {
    use chrono::Timelike;
    let server = TestServer::start().await?;
    let t0 = (Utc::now() - Duration::minutes(40))
        .with_nanosecond(0)
        .ok_or_else(|| anyhow!("time"))?;
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &server.url(), "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let mut points = walk_part(&qhl02, 0.0, 0.6, t0, false)?;
    let last = points.len() - 1;
    points[last].t = Utc::now() + Duration::days(2);
    drop(zhang);
    let file = dir.path().join("walk.gpx");
    std::fs::write(&file, gpx(&points))?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
        .arg("--data")
        .arg(dir.path())
        .args(["patrol", "import", file.to_str().unwrap_or_default()])
        .output()?;
    assert!(!out.status.success());
    let client = open_client(dir.path(), &server.url())?;
    let status = client.status().await?;
    assert_eq!(status.pending, 0, "{status:?}");
    assert!(client.patrols().await?.is_empty());
    Ok(())
}

/// A patroller's own figures (`riverchief stats`), from what the phone recorded and before any
/// sync: computed here again from the fixes and times sent, and compared.
#[tokio::test]
async fn a_patroller_sees_her_own_figures_offline() -> Result<()> {
    use chrono::Timelike;
    use geo::{Distance, Geodesic};
    use riverchief_shared::domain::{IssueCategory, Severity};
    let server = TestServer::start().await?;
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &server.url(), "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let t0 = (Utc::now() - Duration::hours(3))
        .with_nanosecond(0)
        .ok_or_else(|| anyhow!("time"))?;
    // Along QHL-02 and back (long and far enough to count), then a short look at half of it.
    let mut there_and_back = walk_part(&qhl02, 0.0, 1.0, t0, false)?;
    let back_from = there_and_back.last().map_or(t0, |p| p.t) + Duration::seconds(8);
    there_and_back.extend(walk_part(&qhl02, 1.0, 0.0, back_from, false)?);
    let t1 = t0 + Duration::minutes(60);
    let short = walk_part(&qhl02, 0.0, 0.3, t1, false)?;
    let mut walked_m = 0.0;
    let mut hours = 0.0;
    let mut first = None;
    for points in [&there_and_back, &short] {
        let (start, end) = (points[0].t, points[points.len() - 1].t);
        let id = zhang
            .record_walk(riverchief_client::Walk {
                segment_ids: vec![qhl02.properties.id],
                notes: None,
                started_at: start,
                ended_at: end,
                points: points.clone(),
            })
            .await?;
        first.get_or_insert(id);
        walked_m += points
            .windows(2)
            .map(|w| {
                Geodesic.distance(
                    geo::Point::new(w[0].lon.get(), w[0].lat.get()),
                    geo::Point::new(w[1].lon.get(), w[1].lat.get()),
                )
            })
            .sum::<f64>();
        hours += (end - start).num_seconds() as f64 / 3600.0;
    }
    // Two problems found on the first patrol, one on no patrol; and a patrol still open.
    for (category, patrol) in [
        (IssueCategory::Crack, first),
        (IssueCategory::Litter, first),
        (IssueCategory::Litter, None),
    ] {
        zhang
            .report_issue(draft(
                &qhl02,
                0.5,
                category,
                Severity::Minor,
                None,
                "巡查发现",
                patrol,
                vec![],
            ))
            .await?;
    }
    zhang
        .start_patrol(&[qhl02.properties.id], None, None)
        .await?;

    let today = riverchief_shared::report::local_day(Utc::now());
    let period = format!(
        "{}..{}",
        today - Duration::days(1),
        today + Duration::days(1)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
        .arg("--data")
        .arg(dir.path())
        .args(["--json", "stats", "--period", &period])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(s["patrols"], 2, "{s}");
    assert_eq!(s["open"], 1, "{s}");
    assert_eq!(s["long_enough"], 1, "{s}");
    assert!(
        (s["km"].as_f64().unwrap_or(-1.0) - walked_m / 1000.0).abs() < 1e-6,
        "{s} {walked_m}"
    );
    assert!(
        (s["hours"].as_f64().unwrap_or(-1.0) - hours).abs() < 1e-9,
        "{s} {hours}"
    );
    assert_eq!(s["issues"], 3, "{s}");
    assert_eq!(s["critical"], 0, "{s}");
    assert_eq!(s["by_category"], json!({"crack": 1, "litter": 2}), "{s}");
    assert_eq!(s["issues_per_patrol"], 1.0, "{s}");
    assert!(
        s["days"].as_u64().is_some_and(|d| (1..=2).contains(&d)),
        "{s}"
    );
    Ok(())
}

/// The operator sets what counts as covering: with `--covering-ratio 0.6` a patrol along 70 % of a
/// segment covers it (it would not at the default 80 %); a value out of range stops the server at
/// start with the flag named.
#[tokio::test]
async fn the_operator_sets_the_covering_rules_from_the_command_line() -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_rc-server");
    let dir = tempfile::tempdir()?;
    let db = riverchief_tests::TestDb::fresh(dir.path())?;
    let server = riverchief_tests::ServerProcess::start_with(
        bin,
        dir.path(),
        &db,
        0,
        &["--covering-ratio", "0.6", "--max-accuracy-m", "20"],
    )
    .await?;
    let base = server.url();
    let phone_dir = tempfile::tempdir()?;
    let zhang = phone(phone_dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let t0 = Utc::now() - Duration::minutes(30);
    patrol(&zhang, &qhl02, &walk_part(&qhl02, 0.0, 0.7, t0, false)?).await?;
    let lead = Http::new(&base, &login(&base, "chen").await?);
    let w = window(t0 - Duration::minutes(5), Utc::now());
    let all = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let p = &feature(&all, "QHL-02")?["properties"];
    let ratio = p["ratio"].as_f64().unwrap_or(-1.0);
    assert!((ratio - 0.7).abs() <= 0.03, "{p}");
    assert!(p["last_covered"].is_string(), "70 % covers at 0.6: {p}");
    // The rest of the segment walked with fixes of 30 m accuracy: they would count at the default
    // (50 m), but count for nothing at --max-accuracy-m 20, so the ratio stays where it was.
    let vague: Vec<TrackPoint> =
        walk_part(&qhl02, 0.7, 1.0, Utc::now() - Duration::minutes(10), false)?
            .into_iter()
            .map(|mut p| {
                p.accuracy_m = Some(30.0);
                p
            })
            .collect();
    patrol(&zhang, &qhl02, &vague).await?;
    assert_eq!(zhang.status().await?.pending, 0, "the patrol was sent");
    let all = lead.get(&format!("/api/v1/coverage?{w}")).await?;
    let p = &feature(&all, "QHL-02")?["properties"];
    let after = p["ratio"].as_f64().unwrap_or(-1.0);
    assert!(
        (after - ratio).abs() < 1e-9,
        "vague fixes counted: {ratio} → {p}"
    );
    server.kill()?;

    for bad in ["0", "1.5", "x"] {
        let out = std::process::Command::new(bin)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--covering-ratio",
                bad,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()?;
        assert!(!out.status.success(), "started with --covering-ratio {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--covering-ratio"), "{err}");
    }
    Ok(())
}
