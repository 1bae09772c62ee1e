//! Faults: a killed server, a cut connection, a killed client. Each loses nothing and doubles nothing.

use crate::common::*;
use anyhow::{bail, Result};
use riverchief_client::Client;
use riverchief_shared::domain::{IssueCategory, Severity};
use riverchief_shared::photo::Sha256;
use riverchief_tests::{
    free_port, photo_file, walk, NetMode, Proxy, ServerProcess, TestDb, TestServer,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Records, offline, one patrol of `points` points on QHL-02 and `issues` reports with `photos_each`
/// photos of about `photo_len` bytes. Returns the number of mutations queued.
async fn record_a_long_patrol(
    client: &Client,
    shots: &Path,
    points: usize,
    issues: usize,
    photos_each: usize,
    photo_len: usize,
) -> Result<usize> {
    let qhl02 = segment(client, "QHL-02").await?;
    let patrol = client
        .start_patrol(&[qhl02.properties.id], None, None)
        .await?;
    let track = walk(
        &qhl02.line,
        points,
        chrono::Utc::now() - chrono::Duration::hours(3),
    );
    for chunk in track.chunks(1000) {
        client.add_points(patrol, chunk).await?;
    }
    for i in 0..issues {
        let photos = (0..photos_each)
            .map(|j| {
                photo_file(
                    shots,
                    &format!("p{i}-{j}.jpg"),
                    photo_len + i * 1000 + j,
                    (i * 100 + j) as u64,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let d = draft(
            &qhl02,
            (i as f64 + 0.5) / issues as f64,
            IssueCategory::Seepage,
            Severity::Significant,
            None,
            &format!("背水坡渗水点 {i}"),
            Some(patrol),
            photos,
        );
        client.report_issue(d).await?;
    }
    client.finish_patrol(patrol, None).await?;
    Ok(client.status().await?.pending)
}

/// Waits until the server's database shows at least `n` complete photos, for at most 60 s.
async fn until_photos(db: &TestDb, n: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if db.scalar("SELECT count(*) FROM photos").unwrap_or(0) >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the server never had {n} photos")
}

/// Syncs until a sync succeeds (a few tries: the first may hit the fault).
async fn sync_until_done(client: &Client) -> Result<riverchief_client::SyncReport> {
    let mut last = None;
    for _ in 0..5 {
        match client.sync(&|_| {}).await {
            Ok(r) if r.rejected == 0 && client.status().await?.pending == 0 => return Ok(r),
            Ok(r) => last = Some(format!("{r:?}")),
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("sync never completed: {last:?}")
}

fn assert_exactly_once(
    db: &TestDb,
    points: i64,
    issues: i64,
    photos: i64,
    mutations: i64,
) -> Result<()> {
    assert_eq!(db.scalar("SELECT count(*) FROM track_points")?, points);
    assert_eq!(
        db.scalar("SELECT coalesce(sum(point_count), 0) FROM patrols")?,
        points,
        "point_count counted twice"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM patrols")?, 1);
    assert_eq!(db.scalar("SELECT count(*) FROM issues")?, issues);
    assert_eq!(db.scalar("SELECT count(*) FROM issue_events")?, issues);
    assert_eq!(db.scalar("SELECT count(*) FROM photos")?, photos);
    assert_eq!(db.scalar("SELECT count(*) FROM issue_photos")?, photos);
    assert_eq!(db.scalar("SELECT count(*) FROM mutations")?, mutations);
    assert_eq!(
        // A client killed between creating an upload and storing its URL leaves an empty upload
        // that it never learns of (the start-up sweep removes it after a week); any upload that
        // received bytes must have finished and gone.
        db.scalar("SELECT count(*) FROM uploads WHERE upload_offset > 0")?,
        0,
        "uploads with bytes left behind"
    );
    Ok(())
}

/// Every stored photo file hashes to its own name.
fn assert_photo_files_verified(data_dir: &Path, expected: usize) -> Result<()> {
    let mut n = 0;
    let mut stack = vec![data_dir.join("photos")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                assert_eq!(
                    Sha256::of(&std::fs::read(&p)?).hex(),
                    name,
                    "{}",
                    p.display()
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, expected);
    Ok(())
}

#[tokio::test]
async fn a_server_killed_mid_sync_loses_and_doubles_nothing() -> Result<()> {
    let data = tempfile::tempdir()?;
    let db = TestDb::fresh(data.path())?;
    let port = free_port()?;
    let mut server =
        Some(ServerProcess::start(env!("CARGO_BIN_EXE_rc-server"), data.path(), &db, port).await?);
    let proxy = Proxy::start(port, NetMode::Online).await?;
    let phone_dir = tempfile::tempdir()?;
    let client = phone(phone_dir.path(), &proxy.url(), "zhangwei").await?;
    let shots = tempfile::tempdir()?;
    let queued = record_a_long_patrol(&client, shots.path(), 5000, 10, 2, 1_000_000).await?;
    assert_eq!(queued, 1 + 5 + 10 + 1);

    // A slow link, so that the kill lands while photos are still travelling.
    proxy.throttle(6 * 1024 * 1024);
    let killer = async {
        until_photos(&db, 3).await?;
        if let Some(s) = server.take() {
            s.kill()?;
        }
        anyhow::Ok(())
    };
    let (first, killed) = tokio::join!(client.sync(&|_| {}), killer);
    killed?;
    assert!(
        first.is_err(),
        "the sync should have seen the server die: {first:?}"
    );
    let photos_at_kill = db.scalar("SELECT count(*) FROM photos")?;
    assert!(
        photos_at_kill < 20,
        "the kill came too late to test anything"
    );

    // Restart on the same port; the phone syncs again.
    let _server =
        ServerProcess::start(env!("CARGO_BIN_EXE_rc-server"), data.path(), &db, port).await?;
    proxy.throttle(0);
    sync_until_done(&client).await?;
    assert_exactly_once(&db, 5000, 10, 20, 17)?;
    assert_photo_files_verified(data.path(), 20)?;
    let status = client.status().await?;
    assert_eq!(
        (status.pending, status.rejected.len()),
        (0, 0),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cut_connection_resumes_from_the_server_offset() -> Result<()> {
    let server = TestServer::start().await?;
    let proxy = Proxy::start(server.port, NetMode::Online).await?;
    let phone_dir = tempfile::tempdir()?;
    let client = phone(phone_dir.path(), &proxy.url(), "zhangwei").await?;
    let qhl02 = segment(&client, "QHL-02").await?;
    let shots = tempfile::tempdir()?;
    const LEN: usize = 4 * 1024 * 1024;
    let photo = photo_file(shots.path(), "slide.jpg", LEN, 77)?;
    let sha = Sha256::of(&std::fs::read(&photo)?).hex();
    client
        .report_issue(draft(
            &qhl02,
            0.3,
            IssueCategory::SlopeSlide,
            Severity::Major,
            None,
            "临水坡局部滑坡",
            None,
            vec![photo],
        ))
        .await?;

    // The signal dies three quarters of the way through the photo.
    let before = proxy.upstream_bytes();
    proxy.cut_after(3 * 1024 * 1024);
    let _ = client.sync(&|_| {}).await;
    sync_until_done(&client).await?;
    assert_eq!(
        proxy
            .counters
            .cuts
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the connection was never cut"
    );
    let sent = proxy.upstream_bytes() - before;
    assert!(
        (sent as f64) < 1.5 * LEN as f64,
        "sent {sent} bytes for a {LEN}-byte photo: the upload restarted instead of resuming"
    );
    let lead = Http::new(
        &server.url(),
        &riverchief_tests::login(&server.url(), "chen").await?,
    );
    assert_eq!(
        Sha256::of(&lead.bytes(&format!("/api/v1/photos/{sha}")).await?).hex(),
        sha
    );
    Ok(())
}

#[tokio::test]
async fn a_client_killed_mid_sync_keeps_its_store_and_finishes_later() -> Result<()> {
    let server = TestServer::start().await?;
    let proxy = Proxy::start(server.port, NetMode::Online).await?;
    let phone_dir = tempfile::tempdir()?;
    let shots = tempfile::tempdir()?;
    let queued = {
        let client = phone(phone_dir.path(), &proxy.url(), "zhangwei").await?;
        record_a_long_patrol(&client, shots.path(), 3000, 5, 2, 1_000_000).await?
    };

    // The CLI syncs over a slow link and is killed part-way through the photos.
    proxy.throttle(4 * 1024 * 1024);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rc-client"))
        .arg("--server")
        .arg(proxy.url())
        .arg("--data")
        .arg(phone_dir.path())
        .arg("sync")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    until_photos(&server.db, 2).await?;
    child.kill()?;
    child.wait()?;
    proxy.throttle(0);
    assert!(
        server.db.scalar("SELECT count(*) FROM photos")? < 10,
        "the kill came too late"
    );

    // The local store is intact: nothing lost, nothing half-written.
    let conn = rusqlite::Connection::open(phone_dir.path().join("client.sqlite3"))?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    drop(conn);
    let client = open_client(phone_dir.path(), &proxy.url())?;
    let status = client.status().await?;
    assert_eq!(status.pending + status.done, queued, "{status:?}");
    let report = sync_until_done(&client).await?;
    assert_eq!(report.rejected, 0);
    assert_exactly_once(&server.db, 3000, 5, 10, queued as i64)?;
    assert_photo_files_verified(&server.data_dir, 10)?;
    Ok(())
}

/// Whether a write transaction is open on the server's database at this moment: on SQLite a
/// second writer's `BEGIN IMMEDIATE` is refused at once; on PostgreSQL a push request's
/// transaction holds its mutation locks (advisory, namespace `0x7263_0002`) from its start to its
/// commit.
fn write_transaction_open(db: &TestDb) -> Result<bool> {
    match db {
        TestDb::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(Duration::ZERO)?;
            match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
                Ok(()) => Ok(false),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy =>
                {
                    Ok(true)
                }
                Err(e) => Err(e.into()),
            }
        }
        TestDb::Pg(_) => Ok(db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1919090690 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )? > 0),
    }
}

#[tokio::test]
async fn a_server_killed_inside_a_grouped_push_applies_what_it_had_not_committed_once() -> Result<()>
{
    const BATCH: usize = 10;
    let data = tempfile::tempdir()?;
    let db = TestDb::fresh(data.path())?;
    let port = free_port()?;
    let mut server =
        Some(ServerProcess::start(env!("CARGO_BIN_EXE_rc-server"), data.path(), &db, port).await?);
    let url = format!("http://127.0.0.1:{port}");
    let phone_dir = tempfile::tempdir()?;
    let client = Client::open(
        phone_dir.path(),
        riverchief_client::ClientOptions {
            server_url: Some(url.clone()),
            push_batch: BATCH,
            retry: riverchief_client::RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
            },
            ..riverchief_client::ClientOptions::default()
        },
    )?;
    client
        .login(&url, "zhangwei", riverchief_tests::DEMO_PASSWORD, "phone")
        .await?;
    client.sync(&|_| {}).await?;
    let shots = tempfile::tempdir()?;
    // 60 batches of 1,000 points with their start and finish: 7 requests of at most 10.
    let queued = record_a_long_patrol(&client, shots.path(), 60_000, 0, 0, 0).await?;
    assert_eq!(queued, 62);

    // Killed while a request's transaction is open, after at least one request committed.
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let committed = db.scalar("SELECT count(*) FROM mutations")?;
            if committed >= BATCH as i64 && write_transaction_open(&db)? {
                if let Some(s) = server.take() {
                    s.kill()?;
                }
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!("no grouped request was ever caught in its transaction")
    };
    let (first, killed) = tokio::join!(client.sync(&|_| {}), killer);
    killed?;
    assert!(
        first.is_err(),
        "the sync should have seen the server die: {first:?}"
    );
    // A request commits whole or not at all.
    let committed = db.scalar("SELECT count(*) FROM mutations")?;
    assert!(
        committed < queued as i64,
        "the kill came too late: {committed}"
    );
    assert_eq!(committed % BATCH as i64, 0, "a request committed in part");
    assert_eq!(
        db.scalar("SELECT count(*) FROM track_points")?,
        db.scalar("SELECT coalesce(sum(point_count), 0) FROM patrols")?
    );

    // Restarted, the phone sends again what was not answered: what had not committed is applied
    // now, what had is a duplicate, and every point is stored once.
    let _server =
        ServerProcess::start(env!("CARGO_BIN_EXE_rc-server"), data.path(), &db, port).await?;
    let report = sync_until_done(&client).await?;
    assert!(report.pushed >= 1, "{report:?}");
    assert_exactly_once(&db, 60_000, 0, 0, queued as i64)?;
    Ok(())
}
