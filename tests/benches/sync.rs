//! A day without signal, synced: the backlog through the real client core (`riverchief_client::
//! Client`) and the real server binary (`rc-server serve`, release build, SQLite) on loopback, beside
//! the bare work measured in the same run.
//!
//! 1. **The backlog.** `PATROLS` patrols recorded offline, each a `patrol.start`, one
//!    `patrol.points` batch of `FIXES` fixes and a `patrol.finish`, plus `REPORTS` issue reports with
//!    one photo of `PHOTO_LEN` bytes each (two of them critical hazards): 3,020 mutations and 20 MiB
//!    of photos. One `Client::sync` is measured, and its phases (push, photos, pull) are read from
//!    its progress events: each push lane from its start to its last answered batch, each photo
//!    lane from its start to its last photo event (the urgent lanes and the others add up), the
//!    pull from the end of the lanes before it to the end. When lanes overlap, their phases do too.
//!
//!    The baseline is the bare work: raw rusqlite inserts of the rows the server keeps for that
//!    backlog (each patrol, its segment, its fixes, its coverage row; each issue, its reported event
//!    and its expected photo; one journal row per mutation; one change-log row per record written in
//!    a request), one transaction per push request as the client batches them, into tables of the
//!    server's shapes (WAL, `synchronous = NORMAL` as the server runs); plus a raw loopback copy of
//!    the photo bytes into files, SHA-256 computed as they arrive (`riverchief_tests::bench`).
//!
//! 2. **A fresh duty lead's pull.** `PULL_CHANGES` patrol changes written into the server's change
//!    log (through `db::changes::record`, not measured), then pulled by a fresh device
//!    (`Client::pull`). The baseline reads the same rows from the server's database file and writes
//!    them into a fresh client store's mirror (raw rusqlite, one transaction per page of the size
//!    the client asks for).
//!
//! Run: `cargo bench -p riverchief-tests --bench sync`. Figures go to stdout and
//! `target/bench-sync.md`; the latest are kept in `docs/benchmarks.md`.

use anyhow::{anyhow, bail, Result};
use riverchief_client::{Client, ClientOptions, IssueDraft, SyncProgress};
use riverchief_shared::domain::{IssueCategory, Outflow, Patrol, Severity};
use riverchief_shared::geo::{Lat, Lon, Position};
use riverchief_shared::id::{PatrolId, SegmentId, UserId};
use riverchief_shared::sync::{ChangeEntity, ChangeOp};
use riverchief_tests::{photo_file, walk, ServerProcess, TestDb, DEMO_PASSWORD};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PATROLS: usize = 1000;
const FIXES: usize = 50;
const REPORTS: usize = 20;
const CRITICAL_REPORTS: usize = 2;
const PHOTO_LEN: usize = 1 << 20;
const PULL_CHANGES: usize = 100_000;

/// The spans of the lanes, read from the progress events: a lane's span runs from its start
/// event to its last event; lanes of one kind add up.
#[derive(Debug, Default)]
struct Timeline {
    started: Option<Instant>,
    push: Spans,
    photos: Spans,
    pull_first_page: Option<Instant>,
}

#[derive(Debug, Default)]
struct Spans {
    done: Duration,
    open: Option<(Instant, Instant)>,
}

impl Spans {
    fn start(&mut self, now: Instant) {
        self.close();
        self.open = Some((now, now));
    }
    fn event(&mut self, now: Instant) {
        if let Some((_, last)) = &mut self.open {
            *last = now;
        }
    }
    fn close(&mut self) {
        if let Some((from, to)) = self.open.take() {
            self.done += to.saturating_duration_since(from);
        }
    }
    fn last(&self) -> Option<Instant> {
        self.open.map(|(_, last)| last)
    }
}

fn see(timeline: &Mutex<Timeline>, event: &SyncProgress) {
    let now = Instant::now();
    let Ok(mut t) = timeline.lock() else { return };
    match event {
        SyncProgress::Started => t.started = Some(now),
        SyncProgress::PushStarted { .. } => t.push.start(now),
        SyncProgress::Pushed { .. } => t.push.event(now),
        SyncProgress::PhotosStarted { .. } => t.photos.start(now),
        SyncProgress::PhotoStarted { .. }
        | SyncProgress::PhotoBytes { .. }
        | SyncProgress::PhotoDone { .. }
        | SyncProgress::PhotoSkipped { .. }
        | SyncProgress::PhotoFailed { .. } => t.photos.event(now),
        SyncProgress::Pulled { .. } => {
            t.pull_first_page.get_or_insert(now);
        }
    }
}

fn options(server: &str) -> ClientOptions {
    ClientOptions {
        server_url: Some(server.to_owned()),
        ..ClientOptions::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the backlog's sync measured.
struct Backlog {
    total: Duration,
    push: Duration,
    photos: Duration,
    pull: Duration,
    requests: usize,
    pulled: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = TestDb::sqlite_in(&dir.path().join("server"));
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_rc-server"),
        &dir.path().join("server"),
        &db,
        0,
    )
    .await?;
    let base = server.url();

    // 1. The backlog.
    let phone = Client::open(&dir.path().join("phone"), options(&base))?;
    phone
        .login(&base, "zhangwei", DEMO_PASSWORD, "bench")
        .await?;
    phone.sync(&|_| {}).await?;
    let segment = phone
        .segments()
        .await?
        .into_iter()
        .find(|s| s.properties.code == "QHL-02")
        .ok_or_else(|| anyhow!("QHL-02 not mirrored"))?;
    let t0 = chrono::Utc::now() - chrono::Duration::hours(20);
    for p in 0..PATROLS {
        let started_at = t0 + chrono::Duration::seconds(p as i64 * 60);
        let patrol = phone
            .start_patrol_at(&[segment.properties.id], None, None, started_at)
            .await?;
        phone
            .add_points(patrol, &walk(&segment.line, FIXES, started_at))
            .await?;
        phone
            .finish_patrol_at(
                patrol,
                None,
                started_at + chrono::Duration::seconds(FIXES as i64),
            )
            .await?;
    }
    let camera = dir.path().join("camera");
    std::fs::create_dir_all(&camera)?;
    let mut photos = Vec::new();
    for i in 0..REPORTS {
        let path = photo_file(&camera, &format!("IMG_{i:04}.jpg"), PHOTO_LEN, i as u64)?;
        photos.push(std::fs::read(&path)?);
        let critical = i < CRITICAL_REPORTS;
        let at = &segment.line[i % segment.line.len()];
        phone
            .report_issue(IssueDraft {
                segment_id: segment.properties.id,
                patrol_id: None,
                location: Position {
                    lon: Lon::parse(at[0] + 0.0002, "lon")?,
                    lat: Lat::parse(at[1], "lat")?,
                },
                category: if critical {
                    IssueCategory::Piping
                } else {
                    IssueCategory::Crack
                },
                severity: if critical {
                    Severity::Major
                } else {
                    Severity::Minor
                },
                outflow: critical.then_some(Outflow::Muddy),
                description: format!("巡查发现 {i}"),
                photos: vec![path],
            })
            .await?;
    }
    let backlog = sync_backlog(&phone).await?;
    let admin = riverchief_tests::login(&base, "admin").await?;
    let server_push = route_seconds(&base, &admin, "/api/v1/sync/push").await?;
    let server_uploads = route_seconds(&base, &admin, "/api/v1/uploads").await?;

    // The bare work of the backlog.
    let raw_dir = tempfile::tempdir()?;
    let push_batch = options(&base).push_batch;
    let raw_rows = tokio::task::spawn_blocking({
        let path = raw_dir.path().join("raw.sqlite3");
        let line = segment.line.clone();
        move || raw_backlog(&path, &line, t0, push_batch)
    })
    .await??;
    let raw_photos = riverchief_tests::bench::loopback_copy(&photos, raw_dir.path(), true).await?;
    let raw_total = raw_rows + raw_photos;

    // 2. A fresh duty lead's pull of PULL_CHANGES changes.
    seed_changes(&db, PULL_CHANGES)?;
    let lead = Client::open(&dir.path().join("lead"), options(&base))?;
    lead.login(&base, "chen", DEMO_PASSWORD, "bench").await?;
    let started = Instant::now();
    let pulled = lead.pull(&|_| {}).await?;
    let pull_time = started.elapsed();
    if pulled.pulled < PULL_CHANGES as u64 {
        bail!("the lead pulled {} changes", pulled.pulled);
    }
    let page = options(&base)
        .pull_limit
        .clamp(1, riverchief_shared::Limits::DEFAULT.max_pull_limit);
    let raw_store = Client::open(&raw_dir.path().join("raw-lead"), options(&base))?;
    let raw_store_path = raw_store.db_path();
    drop(raw_store);
    let server_file = match &db {
        TestDb::Sqlite(path) => path.clone(),
        TestDb::Pg(_) => bail!("the pull baseline reads the server's SQLite file"),
    };
    let raw_pull =
        tokio::task::spawn_blocking(move || raw_pull(&server_file, &raw_store_path, page))
            .await??;
    server.kill()?;

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let mut out = String::from(
        "| what | riverchief | baseline | ratio (time: lower is better) |\n| --- | ---: | ---: | ---: |\n",
    );
    for (what, ours, base) in [
        ("backlog sync, whole", backlog.total, raw_total),
        ("backlog: push phase", backlog.push, raw_rows),
        ("backlog: photo phase", backlog.photos, raw_photos),
    ] {
        out.push_str(&format!(
            "| {what} | {:.0} ms | {:.0} ms | {:.2} |\n",
            ms(ours),
            ms(base),
            ratio(ours, base)
        ));
    }
    out.push_str(&format!(
        "| backlog: pull phase ({} changes) | {:.0} ms | — | — |\n",
        backlog.pulled,
        ms(backlog.pull)
    ));
    out.push_str(&format!(
        "| fresh device: pull of {} changes | {:.0} ms | {:.0} ms | {:.2} |\n",
        pulled.pulled,
        ms(pull_time),
        ms(raw_pull),
        ratio(pull_time, raw_pull)
    ));
    out.push_str(&format!(
        "\nOf the push phase, the server spent {:.0} ms answering push requests; it spent {:.0} ms in upload \
         requests (all of the server's time in those routes, from its own metrics).\n",
        server_push * 1e3,
        server_uploads * 1e3
    ));
    out.push_str(&format!(
        "\nBacklog: {PATROLS} patrols (start, one batch of {FIXES} fixes, finish) and {REPORTS} reports with one \
         photo of {} MiB each: {} mutations in {} push requests, {} changes pulled back. Pull pages of {page}.\n",
        PHOTO_LEN >> 20,
        PATROLS * 3 + REPORTS,
        backlog.requests,
        backlog.pulled,
    ));
    println!("{out}");
    std::fs::create_dir_all("../target").ok();
    std::fs::write("../target/bench-sync.md", &out).ok();
    Ok(())
}

async fn sync_backlog(phone: &Client) -> Result<Backlog> {
    let timeline = Mutex::new(Timeline::default());
    let requests = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let report = phone
        .sync(&|event| {
            if matches!(event, SyncProgress::Pushed { .. }) {
                requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            see(&timeline, &event)
        })
        .await?;
    let total = started.elapsed();
    let end = started + total;
    if report.pushed != (PATROLS * 3 + REPORTS) as u64 || report.photos_uploaded != REPORTS as u64 {
        bail!("the backlog did not go through: {report:?}");
    }
    let mut t = timeline
        .into_inner()
        .map_err(|_| anyhow!("timeline poisoned"))?;
    // The pull's first page is reported when it is applied; its request began when the lanes
    // before it ended.
    let lanes_end = [t.push.last(), t.photos.last()].into_iter().flatten().max();
    t.push.close();
    t.photos.close();
    let pull_from = lanes_end
        .or(t.pull_first_page)
        .or(t.started)
        .unwrap_or(started);
    Ok(Backlog {
        total,
        push: t.push.done,
        photos: t.photos.done,
        pull: end.saturating_duration_since(pull_from),
        requests: requests.into_inner(),
        pulled: report.pulled,
    })
}

/// The seconds the server spent answering requests whose route starts with `prefix`, from its
/// `/metrics` (the sum of its request-duration histograms), read with an admin's `token`.
async fn route_seconds(base: &str, token: &str, prefix: &str) -> Result<f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.contains("http_request_duration_seconds_sum"))
        .filter(|l| l.contains(&format!("route=\"{prefix}")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The rows the server keeps for the backlog, straight into SQLite, one transaction per push
/// request of `per_request` mutations, in the client's order (the urgent reports first).
fn raw_backlog(
    path: &Path,
    line: &[[f64; 2]],
    t0: chrono::DateTime<chrono::Utc>,
    per_request: usize,
) -> Result<Duration> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE patrols (id TEXT PRIMARY KEY NOT NULL, patroller_id TEXT NOT NULL, started_at TEXT NOT NULL,
           ended_at TEXT, notes TEXT, weather TEXT, point_count BIGINT NOT NULL DEFAULT 0, recorded_at TEXT NOT NULL);
         CREATE TABLE patrol_segments (patrol_id TEXT NOT NULL, segment_id TEXT NOT NULL, PRIMARY KEY (patrol_id, segment_id));
         CREATE TABLE track_points (patrol_id TEXT NOT NULL, device_seq BIGINT NOT NULL, idx BIGINT NOT NULL,
           recorded_at TEXT NOT NULL, lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL,
           accuracy_m DOUBLE PRECISION, PRIMARY KEY (patrol_id, device_seq, idx));
         CREATE TABLE patrol_coverage (patrol_id TEXT NOT NULL, segment_id TEXT NOT NULL, intervals_json TEXT NOT NULL,
           PRIMARY KEY (patrol_id, segment_id));
         CREATE TABLE issues (id TEXT PRIMARY KEY NOT NULL, segment_id TEXT NOT NULL, reporter_id TEXT NOT NULL,
           lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL, chainage_m DOUBLE PRECISION NOT NULL,
           category TEXT NOT NULL, severity BIGINT NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL,
           reported_at TEXT NOT NULL, recorded_at TEXT NOT NULL);
         CREATE TABLE issue_events (id TEXT PRIMARY KEY NOT NULL, issue_id TEXT NOT NULL, kind TEXT NOT NULL,
           by_id TEXT NOT NULL, at TEXT NOT NULL, recorded_at TEXT NOT NULL);
         CREATE TABLE issue_photos (issue_id TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (issue_id, sha256));
         CREATE TABLE mutations (id TEXT PRIMARY KEY NOT NULL, device_id TEXT NOT NULL, user_id TEXT NOT NULL,
           device_seq BIGINT NOT NULL, kind TEXT NOT NULL, fingerprint TEXT NOT NULL, result_json TEXT NOT NULL,
           applied_at TEXT NOT NULL);
         CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT NOT NULL, entity_id TEXT NOT NULL,
           op TEXT NOT NULL, data_json TEXT NOT NULL, owner_id TEXT, created_at TEXT NOT NULL);",
    )?;
    enum Row {
        Start(String, chrono::DateTime<chrono::Utc>),
        Points(String, chrono::DateTime<chrono::Utc>),
        Finish(String),
        Report(String, usize),
    }
    // The client's push order: the urgent reports, then everything in device order.
    let mut queue: Vec<Row> = (0..CRITICAL_REPORTS)
        .map(|i| Row::Report(uuid::Uuid::now_v7().to_string(), i))
        .collect();
    for p in 0..PATROLS {
        let id = PatrolId::new().to_string();
        let at = t0 + chrono::Duration::seconds(p as i64 * 60);
        queue.push(Row::Start(id.clone(), at));
        queue.push(Row::Points(id.clone(), at));
        queue.push(Row::Finish(id));
    }
    queue.extend(
        (CRITICAL_REPORTS..REPORTS).map(|i| Row::Report(uuid::Uuid::now_v7().to_string(), i)),
    );
    let user = UserId::new().to_string();
    let device = uuid::Uuid::now_v7().to_string();
    let segment = SegmentId::new().to_string();
    let now = || chrono::Utc::now().to_rfc3339();
    let patrol_json = |id: &str| {
        format!(
            r#"{{"id":"{id}","patroller":"{user}","segment_ids":["{segment}"],"point_count":50}}"#
        )
    };
    let started = Instant::now();
    let mut seq = 0i64;
    for request in queue.chunks(per_request) {
        let tx = conn.transaction()?;
        // One change row per record written in the request, after its writes.
        let mut touched: Vec<(&str, String)> = Vec::new();
        for row in request {
            seq += 1;
            let kind = match row {
                Row::Start(id, at) => {
                    tx.prepare_cached(
                        "INSERT INTO patrols (id, patroller_id, started_at, recorded_at) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(rusqlite::params![id, user, at.to_rfc3339(), now()])?;
                    tx.prepare_cached("INSERT INTO patrol_segments VALUES (?1, ?2)")?
                        .execute(rusqlite::params![id, segment])?;
                    touched.push(("patrol", id.clone()));
                    "patrol.start"
                }
                Row::Points(id, at) => {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO track_points VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    let fixes = walk(line, FIXES, *at);
                    riverchief_tests::bench::insert_track_points(&mut stmt, id, seq, &fixes)?;
                    tx.prepare_cached(
                        "INSERT INTO patrol_coverage VALUES (?1, ?2, '[[0.0,1000.0]]')
                         ON CONFLICT DO UPDATE SET intervals_json = excluded.intervals_json",
                    )?
                    .execute(rusqlite::params![id, segment])?;
                    tx.prepare_cached(
                        "UPDATE patrols SET point_count = point_count + 50 WHERE id = ?1",
                    )?
                    .execute([id])?;
                    touched.push(("patrol", id.clone()));
                    "patrol.points"
                }
                Row::Finish(id) => {
                    tx.prepare_cached("UPDATE patrols SET ended_at = ?2 WHERE id = ?1")?
                        .execute(rusqlite::params![id, now()])?;
                    touched.push(("patrol", id.clone()));
                    "patrol.finish"
                }
                Row::Report(id, i) => {
                    tx.prepare_cached(
                        "INSERT INTO issues VALUES (?1, ?2, ?3, 118.74, 32.05, 1234.5, 'crack', 1, ?4, 'reported', ?5, ?5)",
                    )?
                    .execute(rusqlite::params![id, segment, user, format!("巡查发现 {i}"), now()])?;
                    tx.prepare_cached(
                        "INSERT INTO issue_events VALUES (?1, ?2, 'reported', ?3, ?4, ?4)",
                    )?
                    .execute(rusqlite::params![
                        format!("{id}-r"),
                        id,
                        user,
                        now()
                    ])?;
                    tx.prepare_cached("INSERT INTO issue_photos VALUES (?1, ?2)")?
                        .execute(rusqlite::params![id, format!("{i:064x}")])?;
                    touched.push(("issue", id.clone()));
                    "issue.report"
                }
            };
            tx.prepare_cached("INSERT INTO mutations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
                .execute(rusqlite::params![
                    uuid::Uuid::now_v7().to_string(),
                    device,
                    user,
                    seq,
                    kind,
                    format!("{seq:064x}"),
                    r#"{"ok":true}"#,
                    now()
                ])?;
        }
        touched.sort();
        touched.dedup();
        for (entity, id) in touched {
            tx.prepare_cached(
                "INSERT INTO changes (entity, entity_id, op, data_json, owner_id, created_at)
                 VALUES (?1, ?2, 'upsert', ?3, ?4, ?5)",
            )?
            .execute(rusqlite::params![entity, id, patrol_json(&id), user, now()])?;
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// Writes `n` patrol changes into the server's change log (the set-up of the pull, not measured).
fn seed_changes(db: &TestDb, n: usize) -> Result<()> {
    use riverchief_server::db::{self, changes};
    let server_db = db::Db::open(&db.location())?;
    let mut conn = server_db.conn()?;
    let patroller = UserId::new();
    let segment = SegmentId::new();
    let t0 = chrono::Utc::now() - chrono::Duration::days(3);
    for chunk in 0..n.div_ceil(1000) {
        db::write_transaction(&mut conn, |conn| -> Result<()> {
            for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                let patrol = Patrol {
                    id: PatrolId::new(),
                    patroller,
                    segment_ids: vec![segment],
                    started_at: t0 + chrono::Duration::seconds(i as i64),
                    ended_at: Some(t0 + chrono::Duration::seconds(i as i64 + 1800)),
                    point_count: 50,
                    notes: None,
                    weather: Some("小雨".into()),
                };
                changes::record(
                    conn,
                    ChangeEntity::Patrol,
                    &patrol.id.to_string(),
                    ChangeOp::Upsert,
                    &serde_json::to_value(&patrol)?,
                    &changes::Audience {
                        owner: Some(patroller),
                        ..changes::Audience::default()
                    },
                )?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The pull's bare work: the server's patrol changes read page by page from its database file and
/// written into a client store's mirror, one transaction per page with the cursor.
fn raw_pull(server: &Path, store: &Path, page: usize) -> Result<Duration> {
    let from =
        rusqlite::Connection::open_with_flags(server, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut to = rusqlite::Connection::open(store)?;
    let started = Instant::now();
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, String, String, String)> = from
            .prepare_cached(
                "SELECT seq, entity, entity_id, data_json FROM changes WHERE seq > ?1
                 ORDER BY seq LIMIT ?2",
            )?
            .query_map(rusqlite::params![after, page as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some(last) = rows.last().map(|r| r.0) else {
            break;
        };
        let tx = to.transaction()?;
        // The demo world's few changes (segments, ...) are read but not written.
        for (seq, _, id, data) in rows.iter().filter(|r| r.1 == "patrol") {
            let v: serde_json::Value = serde_json::from_str(data)?;
            tx.prepare_cached(
                "INSERT INTO mirror_patrols (id, patroller, started_at, seq, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET patroller = excluded.patroller,
                     started_at = excluded.started_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_patrols.seq",
            )?
            .execute(rusqlite::params![
                id,
                v["patroller"].as_str().unwrap_or_default(),
                v["started_at"].as_str().unwrap_or_default(),
                seq,
                data
            ])?;
        }
        tx.execute("UPDATE device SET pull_cursor = ?1", [format!("e.{last}")])?;
        tx.commit()?;
        after = last;
    }
    Ok(started.elapsed())
}
