//! The client core as a phone app embeds it (`riverchief_ffi::Core`, the object the Kotlin, Swift
//! and Python bindings call), against the real server binary (`rc-server serve`, release build,
//! SQLite) on loopback:
//!
//! 1. **Recording fixes.** `FIXES` GPS fixes, one `Core::record_fix` call each (durable when it
//!    returns: one SQLite transaction per fix, WAL with `synchronous = FULL`, batched into
//!    `patrol.points` mutations of 50), against the baseline of the same fixes written to rusqlite
//!    directly with the same durability (one `INSERT` and one transaction per fix, same pragmas).
//!    The figure is the ratio of fixes per second. Measured on the Rust side of the boundary: the
//!    scaffolding's marshalling of one small record per call is not included.
//! 2. **Memory syncing 1 GiB of photos.** `PHOTO_COUNT` photos of `PHOTO_MIB` MiB (reported with
//!    issues, `PHOTOS_PER_ISSUE` each) synced through `Core::sync`; the peak resident set of this
//!    process is sampled from `/proc/self/status` every 5 ms during the sync. The goal is under
//!    64 MiB. Photos are not shrunk here (`photo_max_edge_px = 0`): shrinking happens at capture,
//!    one photo at a time, and is not part of a sync.
//!
//! Run: `cargo bench -p riverchief-tests --bench bindings`. Figures go to stdout and
//! `target/bench-bindings.md`; the latest are kept in `docs/benchmarks.md`.

use anyhow::{anyhow, Context, Result};
use riverchief_ffi::{Core, Crs, Fix, FixOutcome, IssueDraft, Network, StopReason};
use riverchief_tests::{photo_file, ServerProcess, TestDb, DEMO_PASSWORD};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIXES: usize = 3000;
const PHOTO_MIB: usize = 16;
const PHOTO_COUNT: usize = 64;
const PHOTOS_PER_ISSUE: usize = 4;

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// This process's resident set, in bytes.
fn rss() -> Result<u64> {
    riverchief_tests::rss(std::process::id())
}

/// Fixes walking north-east from QHL-02's start, about 5 m apart (every one is kept), one second apart.
fn fixes(start_ms: i64, offset: f64) -> Vec<Fix> {
    (0..FIXES)
        .map(|i| Fix {
            time_ms: start_ms + i as i64 * 1000,
            lon: 118.7470 + offset + i as f64 * 0.000_04,
            lat: 32.0440 + i as f64 * 0.000_02,
            accuracy_m: Some(5.0),
            crs: Crs::Wgs84,
            mock: false,
        })
        .collect()
}

/// The baseline: the same fixes into a fresh rusqlite file, one transaction each, same durability.
fn raw_fixes(dir: &std::path::Path, fixes: &[Fix]) -> Result<Duration> {
    let mut conn = rusqlite::Connection::open(dir.join("raw.sqlite3"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE fixes (patrol_id TEXT NOT NULL, n INTEGER NOT NULL, t TEXT NOT NULL,
             lon REAL NOT NULL, lat REAL NOT NULL, accuracy_m REAL, crs TEXT, mock INTEGER NOT NULL,
             received_at TEXT NOT NULL, PRIMARY KEY (patrol_id, n));",
    )?;
    let patrol = uuid::Uuid::now_v7().to_string();
    let started = Instant::now();
    for (n, fix) in fixes.iter().enumerate() {
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO fixes (patrol_id, n, t, lon, lat, accuracy_m, crs, mock, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7)",
        )?
        .execute(rusqlite::params![
            patrol,
            n as i64,
            fix.time_ms.to_string(),
            fix.lon,
            fix.lat,
            fix.accuracy_m,
            chrono::Utc::now().to_rfc3339()
        ])?;
        tx.commit()?;
    }
    Ok(started.elapsed())
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bench's own runtime only drives the async calls (login, sync) and the server process;
    // the core's calls run on the core's runtime, as they do under an app.
    let rt = tokio::runtime::Runtime::new()?;
    let db = TestDb::sqlite_in(dir.path());
    let server = rt.block_on(ServerProcess::start(
        env!("CARGO_BIN_EXE_rc-server"),
        &dir.path().join("server"),
        &db,
        0,
    ))?;
    let base = server.url();
    let open = |name: &str, shrink: u32| -> Result<Arc<Core>> {
        let mut options = riverchief_ffi::default_options();
        options.photo_max_edge_px = shrink;
        options.fix_batch_age_ms = 3_600_000;
        Ok(Core::open(
            dir.path().join(name).display().to_string(),
            options,
        )?)
    };

    // 1. Fixes.
    let core = open("phone", 0)?;
    rt.block_on(core.login(
        base.clone(),
        "zhangwei".into(),
        DEMO_PASSWORD.into(),
        "bench".into(),
    ))?;
    rt.block_on(core.sync(None, Network::Unmetered))?;
    let patrol = core.start_patrol(vec!["QHL-02".into()], None, None)?;
    let start_ms = chrono::Utc::now().timestamp_millis() - 10_000_000;
    let feed = fixes(start_ms, 0.0);
    let raw = raw_fixes(dir.path(), &feed)?;
    let started = Instant::now();
    for fix in &feed {
        let outcome = core.record_fix(patrol.clone(), *fix)?;
        if outcome != FixOutcome::Kept {
            return Err(anyhow!("a bench fix was not kept: {outcome:?}"));
        }
    }
    let through = started.elapsed();
    let info = core.patrol(patrol.clone())?;
    if info.points_queued + info.fixes_unbatched != FIXES as u64 {
        return Err(anyhow!("{info:?}: not every fix was recorded"));
    }
    core.finish_patrol(patrol, None)?;
    let per_sec = |d: Duration| FIXES as f64 / d.as_secs_f64();

    // 2. Photos: report them (not measured), then measure the sync.
    let photos_dir = dir.path().join("camera");
    std::fs::create_dir_all(&photos_dir)?;
    let mut made = 0;
    for issue in 0..PHOTO_COUNT / PHOTOS_PER_ISSUE {
        let mut paths = Vec::new();
        for _ in 0..PHOTOS_PER_ISSUE {
            let path = photo_file(
                &photos_dir,
                &format!("IMG_{made:04}.jpg"),
                PHOTO_MIB << 20,
                made as u64,
            )?;
            paths.push(path.display().to_string());
            made += 1;
        }
        rt.block_on(core.report_issue(IssueDraft {
            segment: "QHL-02".into(),
            patrol_id: None,
            lon: 118.7470,
            lat: 32.0440,
            crs: Crs::Wgs84,
            category: "crack".into(),
            severity: 1,
            outflow: None,
            description: format!("bench issue {issue}"),
            photo_paths: paths,
        }))?;
        // The camera's originals are not the app's: only the core's copies count.
        for f in std::fs::read_dir(&photos_dir)? {
            std::fs::remove_file(f?.path())?;
        }
    }
    let before = rss()?;
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(now) = rss() {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let outcome = rt.block_on(core.sync(None, Network::Unmetered));
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler
        .join()
        .map_err(|_| anyhow!("the memory sampler panicked"))?;
    let outcome = outcome.context("the photo sync")?;
    if outcome.stopped != StopReason::Completed || outcome.photos_uploaded != PHOTO_COUNT as u64 {
        return Err(anyhow!("the photo sync did not finish: {outcome:?}"));
    }
    let peak = peak.load(Ordering::Relaxed);
    let total = (PHOTO_COUNT * PHOTO_MIB) as f64;
    let mb_s = total / took.as_secs_f64();

    let report = format!(
        "| figure | through the core | baseline | ratio |\n| --- | ---: | ---: | ---: |\n\
         | fixes recorded per second ({FIXES}, one durable transaction each) | {:.0} | {:.0} (rusqlite, same pragmas) | {:.2} |\n\n\
         | sync of {PHOTO_COUNT} photos × {PHOTO_MIB} MiB = {total:.0} MiB | value |\n| --- | ---: |\n\
         | resident set before the sync | {:.1} MiB |\n\
         | peak resident set during the sync | {:.1} MiB |\n\
         | growth | {:.1} MiB |\n\
         | time, throughput | {:.1} s, {mb_s:.0} MiB/s |\n",
        per_sec(through),
        per_sec(raw),
        per_sec(through) / per_sec(raw),
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        took.as_secs_f64(),
    );
    println!("{report}");
    std::fs::create_dir_all("../target")?;
    std::fs::write("../target/bench-bindings.md", &report)?;
    drop(server);
    Ok(())
}
