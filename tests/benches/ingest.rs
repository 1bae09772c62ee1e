//! Push ingest and photo upload throughput, each beside a baseline measured in the same run:
//! - points/s and mutations/s through `POST /sync/push`, beside raw rusqlite inserts of the same rows
//!   into a table of the same shape (one transaction per push request, as the server does);
//! - photo upload MB/s through tus, beside a raw loopback TCP copy of the same bytes into a file
//!   with their SHA-256 computed as they arrive.
//!
//! The server runs on SQLite and, when `RIVERCHIEF_TEST_DATABASE_URL` names a PostgreSQL server, on
//! PostgreSQL too, in the same run.
//!
//! Run: `scripts/with-postgres cargo bench -p riverchief-tests --bench ingest` (release build; without
//! the wrapper, SQLite only). Figures go to stdout and to `target/bench-ingest.md`; the latest are kept
//! in `docs/benchmarks.md`.

use anyhow::{bail, Result};
use riverchief_shared::id::{DeviceId, IssueId, MutationId, PatrolId};
use riverchief_tests::{fake_jpeg, login, walk, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const POINT_MUTATIONS: usize = 100;
const POINTS_EACH: usize = 1000;
const REPORTS: usize = 2000;
const PHOTOS: usize = 12;
const PHOTO_LEN: usize = 4 * 1024 * 1024;
/// Point mutations per push request.
const POINTS_PER_PUSH: usize = 20;
/// Reports per push request.
const REPORTS_PER_PUSH: usize = 100;

/// What one server did.
struct Measured {
    backend: &'static str,
    push_points: Duration,
    push_reports: Duration,
    upload: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let photos: Vec<Vec<u8>> = (0..PHOTOS)
        .map(|i| fake_jpeg(PHOTO_LEN, 1000 + i as u64))
        .collect();
    let mut runs = vec![measure(TestServer::start_fresh(true).await?, "SQLite", &photos).await?];
    if std::env::var(riverchief_tests::db::PG_ENV).is_ok_and(|v| !v.is_empty()) {
        runs.push(measure(TestServer::start_fresh(false).await?, "PostgreSQL", &photos).await?);
    }

    // Baselines: the same rows straight into SQLite with rusqlite, and a raw loopback copy.
    let raw_dir = tempfile::tempdir()?;
    let track = walk(
        &[[118.74485, 32.05], [118.74355, 32.0557]],
        POINT_MUTATIONS * POINTS_EACH,
        chrono::Utc::now(),
    );
    let (raw_points, raw_reports) = tokio::task::spawn_blocking({
        let path = raw_dir.path().join("raw.sqlite3");
        move || raw_inserts(&path, &track)
    })
    .await??;
    let copy_dir = tempfile::tempdir()?;
    let copy_time = riverchief_tests::bench::loopback_copy(&photos, copy_dir.path(), true).await?;

    let mb = (PHOTOS * PHOTO_LEN) as f64 / 1e6;
    let points = (POINT_MUTATIONS * POINTS_EACH) as f64;
    let mut out = String::from(
        "| what | backend | unit | riverchief | baseline | ratio |\n| --- | --- | --- | ---: | ---: | ---: |\n",
    );
    for m in &runs {
        let rows = [
            (
                "push: track points",
                "points/s",
                points / m.push_points.as_secs_f64(),
                points / raw_points.as_secs_f64(),
            ),
            (
                "push: issue reports",
                "mutations/s",
                REPORTS as f64 / m.push_reports.as_secs_f64(),
                REPORTS as f64 / raw_reports.as_secs_f64(),
            ),
            (
                "photo upload (tus)",
                "MB/s",
                mb / m.upload.as_secs_f64(),
                mb / copy_time.as_secs_f64(),
            ),
        ];
        for (what, unit, ours, base) in rows {
            out.push_str(&format!(
                "| {what} | {} | {unit} | {ours:.0} | {base:.0} | {:.2} |\n",
                m.backend,
                ours / base
            ));
        }
    }
    out.push_str(&format!(
        "\n{} point mutations of {} points pushed {} to a batch, {} reports pushed {} to a batch, {} photos of {} MiB \
         uploaded one PATCH each; baselines measured in the same run: raw rusqlite inserts of the same rows into a \
         table of the same shape (one transaction per push request, WAL, synchronous=NORMAL) and a raw loopback TCP \
         copy of the same bytes into a file (fsync'd), SHA-256 computed as they arrive.\n",
        POINT_MUTATIONS, POINTS_EACH, POINTS_PER_PUSH, REPORTS, REPORTS_PER_PUSH, PHOTOS, PHOTO_LEN >> 20
    ));
    println!("{out}");
    std::fs::create_dir_all("../target").ok();
    std::fs::write("../target/bench-ingest.md", &out).ok();
    Ok(())
}

async fn measure(
    server: TestServer,
    backend: &'static str,
    photos: &[Vec<u8>],
) -> Result<Measured> {
    let base = server.url();
    let token = login(&base, "zhangwei").await?;
    let http = reqwest::Client::new();
    let segments: Value = http
        .get(format!("{base}/api/v1/segments"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let qhl02 = segments["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["properties"]["code"] == "QHL-02"))
        .cloned()
        .unwrap_or_default();
    let segment_id = qhl02["properties"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let line: Vec<[f64; 2]> = serde_json::from_value(qhl02["geometry"]["coordinates"].clone())?;

    // Push ingest: track points.
    let patrol = PatrolId::new();
    let mut seq = 0u64;
    let mut m = |kind: &str, data: Value| {
        seq += 1;
        json!({"id": MutationId::new(), "device_seq": seq, "type": kind, "at": chrono::Utc::now(), "data": data})
    };
    push(&http, &base, &token, vec![m("patrol.start", json!({"patrol_id": patrol, "segment_ids": [segment_id], "started_at": chrono::Utc::now()}))]).await?;
    let t0 = chrono::Utc::now() - chrono::Duration::hours(30);
    let track = walk(&line, POINT_MUTATIONS * POINTS_EACH, t0);
    let point_mutations: Vec<Value> = track
        .chunks(POINTS_EACH)
        .map(|c| m("patrol.points", json!({"patrol_id": patrol, "points": c})))
        .collect();
    let started = Instant::now();
    for batch in point_mutations.chunks(POINTS_PER_PUSH) {
        push(&http, &base, &token, batch.to_vec()).await?;
    }
    let push_points = started.elapsed();

    // Push ingest: small mutations (reports without photos).
    let reports: Vec<Value> = (0..REPORTS)
        .map(|i| {
            m("issue.report", json!({
                "issue_id": IssueId::new(), "segment_id": segment_id,
                "location": {"lon": line[1][0], "lat": line[1][1]}, "category": "litter", "severity": 1,
                "description": format!("垃圾 {i}"), "reported_at": chrono::Utc::now()
            }))
        })
        .collect();
    let started = Instant::now();
    for batch in reports.chunks(REPORTS_PER_PUSH) {
        push(&http, &base, &token, batch.to_vec()).await?;
    }
    let push_reports = started.elapsed();

    let started = Instant::now();
    for p in photos {
        riverchief_tests::tus_upload(&http, &base, &token, p.clone()).await?;
    }
    let upload = started.elapsed();
    server.stop().await;
    Ok(Measured {
        backend,
        push_points,
        push_reports,
        upload,
    })
}

async fn push(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mutations: Vec<Value>,
) -> Result<()> {
    let r = http
        .post(format!("{base}/api/v1/sync/push"))
        .bearer_auth(token)
        .json(&json!({"device_id": DeviceId::new(), "mutations": mutations}))
        .send()
        .await?;
    let body: Value = r.json().await?;
    let results = body["results"].as_array().cloned().unwrap_or_default();
    if results.is_empty() || results.iter().any(|r| r["status"] != "applied") {
        bail!("push failed: {body}");
    }
    Ok(())
}

fn raw_inserts(
    path: &std::path::Path,
    track: &[riverchief_shared::domain::TrackPoint],
) -> Result<(Duration, Duration)> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE track_points (patrol_id TEXT NOT NULL, device_seq BIGINT NOT NULL, idx BIGINT NOT NULL,
           recorded_at TEXT NOT NULL, lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL,
           accuracy_m DOUBLE PRECISION, PRIMARY KEY (patrol_id, device_seq, idx));
         CREATE TABLE issues (id TEXT PRIMARY KEY NOT NULL, segment_id TEXT NOT NULL, lon DOUBLE PRECISION, lat DOUBLE PRECISION,
           category TEXT NOT NULL, severity BIGINT NOT NULL, description TEXT NOT NULL, reported_at TEXT NOT NULL);",
    )?;
    let patrol = PatrolId::new().to_string();
    let started = Instant::now();
    for (request, mutations) in track.chunks(POINTS_EACH * POINTS_PER_PUSH).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO track_points VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for (k, chunk) in mutations.chunks(POINTS_EACH).enumerate() {
                let seq = (request * POINTS_PER_PUSH + k) as i64;
                riverchief_tests::bench::insert_track_points(&mut stmt, &patrol, seq, chunk)?;
            }
        }
        tx.commit()?;
    }
    let points = started.elapsed();
    let started = Instant::now();
    for request in 0..REPORTS.div_ceil(REPORTS_PER_PUSH) {
        let tx = conn.transaction()?;
        for i in request * REPORTS_PER_PUSH..((request + 1) * REPORTS_PER_PUSH).min(REPORTS) {
            tx.prepare_cached(
                "INSERT INTO issues VALUES (?1, 'seg', 118.74, 32.05, 'litter', 1, ?2, ?3)",
            )?
            .execute(rusqlite::params![
                IssueId::new().to_string(),
                format!("垃圾 {i}"),
                chrono::Utc::now().to_rfc3339()
            ])?;
        }
        tx.commit()?;
    }
    Ok((points, started.elapsed()))
}
