//! The flood watch, told with the 2024 Dongshan hydrograph: a gauge feed's batches (one of them
//! late) and the CSV import raise `stage_changed` to warning once near the first crossing of 8.80 m
//! and once back when it clears, hysteresis swallowing the hovering readings; the fastest rise is a
//! `rapid_rise`; the intervals in force tighten and segments nobody walked fall overdue (the check
//! runs with the test's clock) until a patrol covers one. Replays change nothing; bad readings are
//! refused by field; a drill raises only drill alerts; stock below quota comes and goes with the
//! movements.

use crate::common::{phone, segment, Http};
use crate::coverage::{feature, patrol, walk_part};
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use riverchief_server::checks::Settings;
use riverchief_server::coverage::Policy;
use riverchief_shared::flood::{parse_csv, Reading};
use riverchief_tests::{login, TestServer};
use serde_json::{json, Value};

const DONGSHAN_SEGMENTS: [&str; 4] = ["QHL-01", "QHL-02", "QHL-03", "QHR-02"];
const WARNING_M: f64 = 8.8;
const MARGIN_M: f64 = 0.10;

fn csv_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dongshan-2024-hourly.csv")
}

fn series() -> Result<Vec<Reading>> {
    let file = std::fs::File::open(csv_path())?;
    Ok(parse_csv(file)
        .map_err(|e| anyhow!("{e}"))?
        .into_iter()
        .map(|r| r.reading)
        .collect())
}

/// What the data says, computed here from the CSV, not by the server's code.
struct Story {
    /// The first reading at or above 8.80 m.
    first_crossing: DateTime<Utc>,
    /// The first reading after it at or below 8.70 m (the margin below warning).
    clearing: DateTime<Utc>,
    /// Crossings of 8.80 m, either way, reading by reading: what a stage without hysteresis does.
    raw_crossings: usize,
    /// The largest rise over any 3 hours, and the readings where it happens.
    fastest_rise: f64,
    fastest_at: Vec<DateTime<Utc>>,
}

fn story(s: &[Reading]) -> Result<Story> {
    let first = s
        .iter()
        .position(|r| r.level_m >= WARNING_M - 1e-9)
        .ok_or_else(|| anyhow!("the series never reaches warning"))?;
    let clearing = s[first..]
        .iter()
        .find(|r| r.level_m <= WARNING_M - MARGIN_M + 1e-9)
        .ok_or_else(|| anyhow!("the series never clears"))?;
    let raw_crossings = s
        .windows(2)
        .filter(|w| (w[0].level_m >= WARNING_M - 1e-9) != (w[1].level_m >= WARNING_M - 1e-9))
        .count();
    let rises: Vec<f64> = (0..s.len())
        .map(|i| {
            let from = s[i].observed_at - Duration::hours(3);
            let low = s[..=i]
                .iter()
                .filter(|r| r.observed_at >= from)
                .map(|r| r.level_m)
                .fold(f64::INFINITY, f64::min);
            s[i].level_m - low
        })
        .collect();
    let fastest_rise = rises.iter().copied().fold(0.0, f64::max);
    let fastest_at = rises
        .iter()
        .zip(s)
        .filter(|(r, _)| **r >= fastest_rise - 1e-9)
        .map(|(_, x)| x.observed_at)
        .collect();
    Ok(Story {
        first_crossing: s[first].observed_at,
        clearing: clearing.observed_at,
        raw_crossings,
        fastest_rise,
        fastest_at,
    })
}

async fn send(
    method: reqwest::Method,
    base: &str,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> Result<(StatusCode, Value)> {
    send(reqwest::Method::POST, base, token, path, Some(body)).await
}

fn batch(readings: &[Reading]) -> Value {
    json!({ "readings": readings })
}

async fn alerts(lead: &Http, query: &str) -> Result<Vec<Value>> {
    let state = if query.contains("state=") {
        ""
    } else {
        "state=all&"
    };
    let list = lead
        .get(&format!("/api/v1/alerts?{state}limit=1000&{query}"))
        .await?;
    Ok(list["alerts"].as_array().cloned().unwrap_or_default())
}

fn observed(a: &Value) -> Option<DateTime<Utc>> {
    crate::common::parse_time(a["details"]["observed_at"].as_str()?)
}

/// The stage_changed alerts into and out of warning (real or drill).
async fn warning_changes(lead: &Http, drill: bool) -> Result<(Vec<Value>, Vec<Value>)> {
    let all = alerts(lead, &format!("kind=stage_changed&drill={drill}")).await?;
    let up = all
        .iter()
        .filter(|a| a["details"]["to"] == "warning")
        .cloned()
        .collect();
    let down = all
        .iter()
        .filter(|a| a["details"]["from"] == "warning" && a["details"]["to"] != "guarantee")
        .cloned()
        .collect();
    Ok((up, down))
}

/// Warning entered exactly once, at the first crossing; left exactly once, where it clears.
async fn assert_warning_once_each_way(lead: &Http, story: &Story, drill: bool) -> Result<()> {
    let (up, down) = warning_changes(lead, drill).await?;
    assert_eq!(up.len(), 1, "into warning: {up:?}");
    assert_eq!(down.len(), 1, "out of warning: {down:?}");
    assert_eq!(observed(&up[0]), Some(story.first_crossing), "{}", up[0]);
    assert_eq!(observed(&down[0]), Some(story.clearing), "{}", down[0]);
    assert_eq!(up[0]["level"], "warning");
    assert_eq!(up[0]["drill"], drill);
    assert_eq!(up[0]["station"], "DONGSHAN");
    // Without hysteresis each of the raw crossings would have been an alert.
    assert!(
        story.raw_crossings > up.len() + down.len(),
        "the data should hover: {} raw crossings",
        story.raw_crossings
    );
    Ok(())
}

async fn intervals(lead: &Http) -> Result<Vec<i64>> {
    let cov = lead.get("/api/v1/coverage").await?;
    DONGSHAN_SEGMENTS
        .iter()
        .map(|code| {
            feature(&cov, code)?["properties"]["interval_minutes"]
                .as_i64()
                .ok_or_else(|| anyhow!("no interval for {code}"))
        })
        .collect()
}

fn check(server: &TestServer, now: DateTime<Utc>) -> Result<riverchief_server::checks::Report> {
    let db = server.open_db()?;
    let mut conn = db.conn()?;
    Ok(riverchief_server::checks::run(
        &mut conn,
        &Policy::default(),
        &Settings::default(),
        now,
    )?)
}

async fn open_overdue(lead: &Http) -> Result<Vec<String>> {
    let open = alerts(lead, "kind=segment_overdue&state=active").await?;
    Ok(open
        .iter()
        .filter_map(|a| a["subject"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn the_2024_series_changes_stage_once_each_way_and_tightens_the_intervals() -> Result<()> {
    let readings = series()?;
    let story = story(&readings)?;
    // The 2024 series never rose 0.30 m in 3 hours (its fastest is about 0.11 m): the rule's
    // threshold is set to the fastest rise, so the alert must come exactly where the data says.
    let fastest = story.fastest_rise;
    let server = TestServer::start_with(|c| c.flood.rise.threshold_m = fastest).await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let lead = Http::new(&base, &token);
    assert_eq!(intervals(&lead).await?, vec![10080; 4]);
    // Never walked: overdue even at the weekly interval.
    check(&server, Utc::now())?;
    let weekly = alerts(&lead, "kind=segment_overdue&state=active").await?;
    assert_eq!(weekly.len(), 4);
    assert!(weekly
        .iter()
        .all(|a| a["details"]["interval_minutes"] == 10080));

    // A gauge feed: two days per batch, in order, except that the third batch arrives before the
    // second (a late batch), up to the batch of the first crossing of 8.80 m.
    let chunks: Vec<&[Reading]> = readings.chunks(48).collect();
    let crossing_chunk = chunks
        .iter()
        .position(|c| c.iter().any(|r| r.observed_at == story.first_crossing))
        .ok_or_else(|| anyhow!("no chunk holds the crossing"))?;
    assert!(crossing_chunk > 3);
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.swap(1, 2);
    for &k in &order[..=crossing_chunk] {
        let (status, body) = post(
            &base,
            &token,
            "/api/v1/stations/DONGSHAN/readings",
            batch(chunks[k]),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let station = lead.get("/api/v1/stations/DONGSHAN").await?;
    assert_eq!(station["stage"], "warning", "{station}");
    let since = crate::common::parse_time(station["stage_since"].as_str().unwrap_or_default());
    assert_eq!(since, Some(story.first_crossing));

    // The intervals in force tighten for every segment Dongshan governs.
    for minutes in intervals(&lead).await? {
        assert!(minutes <= 30, "{minutes}");
    }
    // Nobody walked them: an hour later (the test's clock) all four are overdue, once each.
    let in_an_hour = Utc::now() + Duration::hours(1);
    check(&server, in_an_hour)?;
    check(&server, in_an_hour)?;
    let overdue = open_overdue(&lead).await?;
    assert_eq!(overdue.len(), 4, "{overdue:?}");
    // Raised afresh under the tightened interval: what they say is what is required now.
    for a in alerts(&lead, "kind=segment_overdue&state=active").await? {
        assert!(a["details"]["interval_minutes"].as_i64() <= Some(30), "{a}");
    }
    let patroller_sees = Http::new(&base, &login(&base, "zhangwei").await?);
    let theirs = patroller_sees
        .get("/api/v1/alerts?kind=segment_overdue")
        .await?;
    assert_eq!(
        theirs["alerts"].as_array().map(Vec::len),
        Some(1),
        "zhangwei is assigned QHL-02 only: {theirs}"
    );

    // A patrol covers QHL-02: its overdue alert resolves as the points arrive.
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let walked = Utc::now() - Duration::minutes(10);
    patrol(&zhang, &qhl02, &walk_part(&qhl02, 0.0, 1.0, walked, false)?).await?;
    let subject = format!("segment:{}", qhl02.properties.id);
    let overdue = open_overdue(&lead).await?;
    assert_eq!(overdue.len(), 3, "{overdue:?}");
    assert!(!overdue.contains(&subject));
    // Still covered five minutes on; overdue again two hours on (30 minutes at warning).
    check(&server, Utc::now() + Duration::minutes(5))?;
    assert!(!open_overdue(&lead).await?.contains(&subject));
    check(&server, Utc::now() + Duration::hours(2))?;
    assert!(open_overdue(&lead).await?.contains(&subject));

    // The rest of the flood.
    for &k in &order[crossing_chunk + 1..] {
        let (status, body) = post(
            &base,
            &token,
            "/api/v1/stations/DONGSHAN/readings",
            batch(chunks[k]),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_warning_once_each_way(&lead, &story, false).await?;

    // The rapid rise comes where the series rises fastest.
    let rises = alerts(&lead, "kind=rapid_rise").await?;
    assert!(!rises.is_empty(), "no rapid_rise");
    for a in &rises {
        let at = observed(a).ok_or_else(|| anyhow!("no observed_at in {a}"))?;
        assert!(story.fastest_at.contains(&at), "{a}");
    }
    assert!(rises
        .iter()
        .any(|a| observed(a) == story.fastest_at.first().copied()));
    // Everything is stored, in order, and the station ends where the series ends.
    let all = lead
        .get("/api/v1/stations/DONGSHAN/readings?from=2024-01-01T00:00:00Z&to=2024-12-31T00:00:00Z")
        .await?;
    let stored = all["readings"].as_array().cloned().unwrap_or_default();
    assert_eq!(stored.len(), readings.len());
    let last = readings.last().ok_or_else(|| anyhow!("empty"))?;
    let flood = lead.get("/api/v1/flood-level").await?;
    let dongshan = &flood["stations"][0];
    assert_eq!(dongshan["code"], "DONGSHAN");
    assert_eq!(dongshan["level_m"].as_f64(), Some(last.level_m));
    assert_eq!(dongshan["stage"], "normal");
    assert_eq!(
        dongshan["thresholds"]["warning_m"].as_f64(),
        Some(WARNING_M)
    );
    assert_eq!(intervals(&lead).await?, vec![10080; 4]);
    Ok(())
}

#[tokio::test]
async fn the_csv_import_and_replays_change_nothing_and_bad_readings_are_refused_by_field(
) -> Result<()> {
    let readings = series()?;
    let story = story(&readings)?;
    let server = TestServer::start().await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let lead = Http::new(&base, &token);

    // The duty lead's CLI imports the file in batches.
    let dir = tempfile::tempdir()?;
    drop(phone(dir.path(), &base, "chen").await?);
    let import = |file: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
            .arg("--data")
            .arg(dir.path())
            .args(["readings", "import", "--batch", "200"])
            .arg(file)
            .output()
    };
    let out = import(csv_path())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1225 new"), "{stdout}");
    assert_warning_once_each_way(&lead, &story, false).await?;

    // Replays change nothing: the file again, a batch again, the admin's import of the same file.
    let patroller = login(&base, "zhangwei").await?;
    let before = server.db.digest()?;
    let out = import(csv_path())?;
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 new"));
    let (status, body) = post(
        &base,
        &token,
        "/api/v1/stations/DONGSHAN/readings",
        batch(&readings[300..400]),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["inserted"], 0);
    let mut admin = std::process::Command::new(env!("CARGO_BIN_EXE_rc-server"));
    admin
        .args(["readings", "import", "--data-dir"])
        .arg(&server.data_dir);
    if let Some(url) = server.db.url() {
        admin.arg("--database-url").arg(url);
    }
    let out = admin.arg(csv_path()).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.db.digest()?, before);

    // Bad readings: refused naming the field, nothing written.
    let t = |h: i64| (Utc::now() - Duration::hours(h)).to_rfc3339();
    let path = "/api/v1/stations/DONGSHAN/readings";
    let stored_at = readings[10].observed_at.to_rfc3339();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"readings": [{"observed_at": t(1), "level_m": "NaN"}]}),
            StatusCode::BAD_REQUEST,
            "readings[0].level_m",
        ),
        (
            json!({"readings": [{"observed_at": t(2), "level_m": 8.0}, {"observed_at": t(1), "level_m": 5000.0}]}),
            StatusCode::BAD_REQUEST,
            "readings[1].level_m",
        ),
        (
            json!({"readings": [{"observed_at": "2024-13-01T00:00:00Z", "level_m": 8.0}]}),
            StatusCode::BAD_REQUEST,
            "readings[0].observed_at",
        ),
        (
            json!({"readings": [{"observed_at": t(3), "level_m": 8.0}, {"observed_at": stored_at, "level_m": 9.99}]}),
            StatusCode::CONFLICT,
            "readings[1].level_m",
        ),
        (
            json!({"readings": [{"observed_at": t(3), "level_m": 8.0, "flow": 3}]}),
            StatusCode::BAD_REQUEST,
            "readings[0]",
        ),
        (json!({"readings": []}), StatusCode::BAD_REQUEST, "readings"),
    ];
    for (body, want, field) in cases {
        let (status, answer) = post(&base, &token, path, body.clone()).await?;
        assert_eq!(status, want, "{body} → {answer}");
        assert!(
            answer["error"]["field"]
                .as_str()
                .is_some_and(|f| f.starts_with(field)),
            "{body} → {answer}"
        );
    }
    let many: Vec<Value> = (0..5001)
        .map(|i| json!({"observed_at": (Utc::now() - Duration::minutes(i)).to_rfc3339(), "level_m": 8.0}))
        .collect();
    let (status, answer) = post(&base, &token, path, json!({ "readings": many })).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["field"], "readings");
    let one = json!({"readings": [{"observed_at": t(1), "level_m": 8.0}]});
    let (status, answer) =
        post(&base, &token, "/api/v1/stations/NOPE/readings", one.clone()).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "station");
    let (status, _) = post(&base, &patroller, path, one).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"readings": [{"observed_at": "2024-07-01T00:00:00Z", "level_m": NaN}]}"#)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A bad CSV line stops the CLI before anything is sent, naming the line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "station,observed_at,level_m\nDONGSHAN,2026-11-01T00:00:00Z,8.1\nDONGSHAN,yesterday,8.2\n",
    )?;
    let out = import(bad)?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.db.digest()?, before);

    // A response declared on the river tightens the intervals (the stage is normal by now); lifted,
    // they relax. Recorded with who and when.
    let river = "外秦淮河 Outer Qinhuai River";
    let (status, answer) = post(
        &base,
        &patroller,
        "/api/v1/response-level",
        json!({"river": river, "level": "IV"}),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    for (body, field) in [
        (json!({"river": river, "level": "V"}), "level"),
        (json!({"river": "黄河", "level": "IV"}), "river"),
        (json!({"river": "", "level": "IV"}), "river"),
    ] {
        let (status, answer) = post(&base, &token, "/api/v1/response-level", body).await?;
        assert!(status.is_client_error(), "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    assert_eq!(server.db.digest()?, before);
    let (status, answer) = post(
        &base,
        &token,
        "/api/v1/response-level",
        json!({"river": river, "level": "IV", "note": "市防指启动IV级应急响应"}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let responses = answer["responses"].as_array().cloned().unwrap_or_default();
    assert_eq!(responses.len(), 1, "{answer}");
    assert_eq!(responses[0]["level"], "IV");
    assert_eq!(responses[0]["river"], river);
    assert!(responses[0]["declared_by_name"].is_string());
    assert!(responses[0]["declared_at"].is_string());
    for minutes in intervals(&lead).await? {
        assert!(minutes <= 30, "{minutes}");
    }
    // Everyone on the bank hears of it: a public `response_changed` alert, once, even when the
    // same level is declared again.
    let declared = alerts(&lead, "kind=response_changed").await?;
    assert_eq!(declared.len(), 1, "{declared:?}");
    assert_eq!(declared[0]["state"], "open");
    assert_eq!(declared[0]["level"], "warning");
    assert!(
        declared[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("IV级") && m.contains("蓝色")),
        "{declared:?}"
    );
    let seen_by_patroller = Http::new(&base, &patroller);
    assert_eq!(
        alerts(&seen_by_patroller, "kind=response_changed")
            .await?
            .len(),
        1
    );
    let (status, _) = post(
        &base,
        &token,
        "/api/v1/response-level",
        json!({"river": river, "level": "IV"}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alerts(&lead, "kind=response_changed").await?.len(), 1);
    let (status, answer) = post(
        &base,
        &token,
        "/api/v1/response-level",
        json!({"river": river, "level": null}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["responses"], json!([]));
    assert_eq!(intervals(&lead).await?, vec![10080; 4]);
    // Lifted: the declaration resolves, and the lifting is announced in its place.
    let changes = alerts(&lead, "kind=response_changed").await?;
    let states: Vec<(&str, &str)> = changes
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap_or(""),
                a["details"]["to"].as_str().unwrap_or("lifted"),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("open", "lifted"), ("resolved", "IV")],
        "{changes:?}"
    );
    let history = lead.get("/api/v1/response-levels").await?;
    assert_eq!(history["responses"].as_array().map(Vec::len), Some(3));
    Ok(())
}

async fn wait_for_drill(lead: &Http, id: &str, state: &str) -> Result<Value> {
    for _ in 0..600 {
        let d = lead.get(&format!("/api/v1/drills/{id}")).await?;
        if d["state"] == state {
            return Ok(d);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("drill {id} never reached {state}")
}

#[tokio::test]
async fn a_drill_raises_only_drill_alerts_and_real_ones_stay_real() -> Result<()> {
    let readings = series()?;
    let story = story(&readings)?;
    let server = TestServer::start().await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let lead = Http::new(&base, &token);
    let patroller = login(&base, "zhangwei").await?;

    // Refusals first.
    let (status, _) = post(
        &base,
        &patroller,
        "/api/v1/drills",
        json!({"station": "DONGSHAN", "speed": 3600}),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, field) in [
        (json!({"station": "DONGSHAN", "speed": 0}), "speed"),
        (json!({"station": "NOPE", "speed": 3600}), "station"),
        (
            json!({"station": "DONGSHAN", "speed": 3600, "series": [{"observed_at": "2024-07-01T00:00:00Z", "level_m": 1e6}]}),
            "series[0].level_m",
        ),
    ] {
        let (status, answer) = post(&base, &token, "/api/v1/drills", body).await?;
        assert!(status.is_client_error(), "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }

    // A slow drill is stopped by the duty lead; a second one meanwhile is refused.
    let (status, slow) = post(
        &base,
        &token,
        "/api/v1/drills",
        json!({"station": "DONGSHAN", "speed": 1}),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{slow}");
    let slow_id = slow["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = post(
        &base,
        &token,
        "/api/v1/drills",
        json!({"station": "DONGSHAN", "speed": 3600}),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, stopped) = send(
        reqwest::Method::DELETE,
        &base,
        &token,
        &format!("/api/v1/drills/{slow_id}"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["state"], "stopped");

    // The 2024 flood in about three seconds (51 days of hours).
    let (status, drill) = post(
        &base,
        &token,
        "/api/v1/drills",
        json!({"station": "DONGSHAN", "speed": 1_500_000}),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{drill}");
    let id = drill["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(drill["readings_total"], readings.len());

    // During the drill a patroller reports muddy piping: a real alert.
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    zhang
        .report_issue(crate::common::draft(
            &qhl02,
            0.5,
            riverchief_shared::domain::IssueCategory::Piping,
            riverchief_shared::domain::Severity::Major,
            Some(riverchief_shared::domain::Outflow::Muddy),
            "背水坡脚冒浑水",
            None,
            vec![],
        ))
        .await?;
    zhang.sync(&|_| {}).await?;
    let running = lead.get(&format!("/api/v1/drills/{id}")).await?;
    assert_eq!(
        running["state"], "running",
        "the report came after the drill: {running}"
    );

    let done = wait_for_drill(&lead, &id, "finished").await?;
    assert_eq!(done["readings_fed"], readings.len());
    assert_warning_once_each_way(&lead, &story, true).await?;

    // Everything the drill raised is a drill alert, marked as one, and resolved with its end.
    let flood_alerts: Vec<Value> = alerts(&lead, "kind=stage_changed")
        .await?
        .into_iter()
        .chain(alerts(&lead, "kind=rapid_rise").await?)
        .collect();
    assert!(!flood_alerts.is_empty());
    for a in &flood_alerts {
        assert_eq!(a["drill"], true, "{a}");
        assert!(a["message"].as_str().unwrap_or("").contains("演练"), "{a}");
    }
    assert!(alerts(&lead, "kind=stage_changed&state=active&drill=true")
        .await?
        .is_empty());
    let hazards = alerts(&lead, "kind=critical_hazard").await?;
    assert_eq!(hazards.len(), 1);
    assert_eq!(hazards[0]["drill"], false);

    // The real station never moved: no real level, normal stage, weekly intervals.
    let station = lead.get("/api/v1/stations/DONGSHAN").await?;
    assert_eq!(station["level_m"], Value::Null, "{station}");
    assert_eq!(station["stage"], "normal");
    let real = lead.get("/api/v1/stations/DONGSHAN/readings").await?;
    assert_eq!(real["readings"], json!([]));
    assert_eq!(intervals(&lead).await?, vec![10080; 4]);
    assert_eq!(
        done["stage"], "normal",
        "the drill's own stage ends where the series ends"
    );

    // The duty lead acknowledges the hazard; the patroller's phone carries the drill mark and the
    // receipt, and the CLI shows both.
    let hazard_id = hazards[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, acked) = post(
        &base,
        &token,
        &format!("/api/v1/alerts/{hazard_id}/ack"),
        json!({}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{acked}");
    zhang.sync(&|_| {}).await?;
    let mirrored = zhang.alerts().await?;
    assert!(mirrored.iter().any(|a| a.drill));
    assert!(mirrored.iter().any(|a| !a.drill));
    let cli = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
            .arg("--data")
            .arg(dir.path())
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let listed = cli(&["alerts", "--all"])?;
    assert!(listed.contains("演练/DRILL"), "{listed}");
    assert!(listed.contains("critical_hazard"), "{listed}");
    assert!(listed.contains("acknowledged by"), "{listed}");
    let issues = cli(&["issue", "list"])?;
    let name = acked["acknowledged_by_name"].as_str().unwrap_or("?");
    assert!(
        issues.contains(&format!("receipt: acknowledged by {name}")),
        "{issues}"
    );
    Ok(())
}

#[tokio::test]
async fn stock_below_quota_comes_with_a_dispatch_and_goes_with_a_receive() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let lead = Http::new(&base, &token);
    let subject = "stock:FHXA-C/BAG-WOVEN";
    let of_subject = |list: Vec<Value>| -> Vec<Value> {
        list.into_iter()
            .filter(|a| a["subject"] == subject)
            .collect()
    };
    let movement = |kind: &str, quantity: i64| json!({"depot": "FHXA-C", "item": "BAG-WOVEN", "kind": kind, "quantity": quantity, "segment": "QHL-02"});
    // The demo holds exactly the quota of woven bags: a dispatch takes it under.
    let (status, answer) = post(
        &base,
        &token,
        "/api/v1/stock/movements",
        movement("dispatch", 200),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let open = of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["details"]["shortfall"], 200);
    assert_eq!(open[0]["drill"], false);
    // Not public: a patroller does not see it.
    let patroller = Http::new(&base, &login(&base, "zhangwei").await?);
    let theirs = patroller
        .get("/api/v1/alerts?kind=stock_below_quota")
        .await?;
    assert_eq!(theirs["alerts"], json!([]));
    // A second dispatch keeps the one alert.
    post(
        &base,
        &token,
        "/api/v1/stock/movements",
        movement("dispatch", 100),
    )
    .await?;
    assert_eq!(
        of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?).len(),
        1
    );
    // A partial receive is still short; the rest resolves it.
    post(
        &base,
        &token,
        "/api/v1/stock/movements",
        movement("receive", 250),
    )
    .await?;
    assert_eq!(
        of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?).len(),
        1
    );
    let (status, answer) = post(
        &base,
        &token,
        "/api/v1/stock/movements",
        movement("receive", 50),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?).is_empty());
    let all = of_subject(alerts(&lead, "kind=stock_below_quota").await?);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["state"], "resolved");

    // A patroller's dispatch from the bank (a `stock.move` pushed by the phone) raises it again; a
    // stocktake that finds the full quota resolves it.
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), &base, "zhangwei").await?;
    zhang
        .move_stock("FHXA-C", "BAG-WOVEN", "dispatch", 40, Some("QHL-02"), None)
        .await?;
    zhang.sync(&|_| {}).await?;
    let open = of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["details"]["on_hand"], 1460);
    let (status, answer) = post(
        &base,
        &token,
        "/api/v1/stock/stocktakes",
        json!({"depot": "FHXA-C", "reason": "盘点", "counts": [{"item": "BAG-WOVEN", "counted": 1500}]}),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(of_subject(alerts(&lead, "kind=stock_below_quota&state=active").await?).is_empty());
    assert_eq!(
        of_subject(alerts(&lead, "kind=stock_below_quota").await?).len(),
        2
    );

    // The scheduled check, on 1 July 2026, finds what the demo stocked short (lights) and the lot
    // of lights dated 30 June 2026; the life jackets (May 2027) are not yet near.
    let july = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 7, 1, 8, 0, 0)
        .single()
        .ok_or_else(|| anyhow!("date"))?;
    let report = check(&server, july)?;
    assert!(report.below_quota >= 1, "{report:?}");
    let lights = alerts(&lead, "kind=stock_below_quota&state=active").await?;
    assert!(
        lights.iter().any(|a| a["subject"] == "stock:FHXA-C/LIGHT"),
        "{lights:?}"
    );
    let lots = alerts(&lead, "kind=lot_expiring&state=active").await?;
    assert!(
        lots.iter().any(|a| a["details"]["item"] == "LIGHT"),
        "{lots:?}"
    );
    assert!(
        !lots.iter().any(|a| a["details"]["item"] == "LIFE-JACKET"),
        "{lots:?}"
    );
    Ok(())
}

#[tokio::test]
async fn batches_arriving_backwards_give_the_stage_of_the_ordered_series() -> Result<()> {
    let readings = series()?;
    let story = story(&readings)?;
    let server = TestServer::start().await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let lead = Http::new(&base, &token);
    let path = "/api/v1/stations/DONGSHAN/readings";

    // Up to a day past the first crossing of 8.80 m, the newest batch first.
    let crossing = readings
        .iter()
        .position(|r| r.observed_at == story.first_crossing)
        .ok_or_else(|| anyhow!("no crossing"))?;
    let head = &readings[..crossing + 24];
    for chunk in head.chunks(50).rev() {
        let (status, body) = post(&base, &token, path, batch(chunk)).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let station = lead.get("/api/v1/stations/DONGSHAN").await?;
    assert_eq!(station["stage"], "warning", "{station}");
    assert_eq!(
        crate::common::parse_time(station["stage_since"].as_str().unwrap_or_default()),
        Some(story.first_crossing),
        "{station}"
    );
    // The open stage alert says what the series says.
    let open = alerts(&lead, "kind=stage_changed&state=active").await?;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["details"]["to"], "warning");

    // The rest in order: the flood clears and ends normal, as the in-order feed does.
    for chunk in readings[crossing + 24..].chunks(50) {
        let (status, body) = post(&base, &token, path, batch(chunk)).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let station = lead.get("/api/v1/stations/DONGSHAN").await?;
    assert_eq!(station["stage"], "normal", "{station}");
    let out = alerts(&lead, "kind=stage_changed")
        .await?
        .into_iter()
        .filter(|a| a["details"]["from"] == "warning")
        .collect::<Vec<_>>();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(observed(&out[0]), Some(story.clearing));
    Ok(())
}
