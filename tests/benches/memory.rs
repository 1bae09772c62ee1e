//! The server's memory under load, measured on the real server binary (`rc-server serve`, release
//! build, SQLite) from `/proc/<pid>/status`, sampled every 5 ms while each load runs:
//!
//! - photo uploads: photos of 2 MiB, then of 24 MiB (near the 25 MiB limit), `PARALLEL` at a time, each in one tus `PATCH`;
//! - photo downloads: the same photos fetched back, `PARALLEL` at a time;
//! - gzip bombs: `BOMBS` push bodies at once, each about 110 KiB inflating to 110 MiB, refused at
//!   the push body limit (the baseline);
//! - live streams: `STREAMS` alert streams (`GET /alerts/stream`) held open while `ALERTS` critical
//!   hazards are reported and each stream receives every alert.
//!
//! Each figure is the growth of the resident set over the server just before the load, in the same
//! run, beside a baseline: for photos, what a server holding the data in memory would need (the
//! photos in flight at once, `PARALLEL` × a photo); a ratio that falls as the photos grow is memory
//! that does not follow the data. For streams, the growth of the same server holding as many idle
//! keep-alive HTTP connections (one `GET /healthz` each): what any open connection costs.
//!
//! Run: `cargo bench -p riverchief-tests --bench memory`. Figures go to stdout and
//! `target/bench-memory.md`; the latest are kept in `docs/benchmarks.md`.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use riverchief_shared::id::{DeviceId, IssueId, MutationId};
use riverchief_shared::photo::Sha256;
use riverchief_tests::{fake_jpeg, login, rss, ServerProcess, TestDb};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// (photo size in MiB, how many): the same load at two sizes, so that memory that grew with the
/// size of the data would show.
const PHOTO_RUNS: [(usize, usize); 2] = [(2, 32), (24, 16)];
const PARALLEL: usize = 4;
const STREAMS: usize = 300;
const BOMBS: usize = 16;
const ALERTS: usize = 20;
const PATIENCE: Duration = Duration::from_secs(120);

/// The highest resident set seen while `work` runs.
async fn peak_during<F, T>(pid: u32, work: F) -> Result<(T, u64)>
where
    F: std::future::Future<Output = Result<T>>,
{
    let peak = Arc::new(AtomicU64::new(rss(pid)?));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(now) = rss(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let out = work.await;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    Ok((out?, peak.load(Ordering::Relaxed)))
}

async fn download(http: &reqwest::Client, base: &str, token: &str, sha: &str) -> Result<u64> {
    let r = http
        .get(format!("{base}/api/v1/photos/{sha}"))
        .bearer_auth(token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("download failed: {}", r.status());
    }
    let mut body = r.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        n += chunk?.len() as u64;
    }
    Ok(n)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = TestDb::sqlite_in(dir.path());
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_rc-server"), dir.path(), &db, 0).await?;
    let (base, pid) = (server.url(), server.pid());
    let http = reqwest::Client::new();
    let patroller = login(&base, "zhangwei").await?;
    let lead = login(&base, "chen").await?;
    // Warm up: every route once, so lazily built state is not counted as load.
    http.get(format!("{base}/api/v1/segments"))
        .bearer_auth(&lead)
        .send()
        .await?;
    let mut rows = Vec::new();

    // Gzip bombs first, on the fresh server (so that no heap the photos left behind hides them): a
    // push body of about 110 KiB that inflates to 110 MiB, `BOMBS` at once. Each is refused with 413
    // once it inflates past the push limit; the baseline is that limit.
    let limit = riverchief_shared::Limits::default().max_push_bytes;
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(br#"{"device_id": ""#)?;
        let spaces = vec![b' '; 1024 * 1024];
        for _ in 0..110 {
            e.write_all(&spaces)?;
        }
        e.finish()?
    };
    let idle = rss(pid)?;
    let ((), peak) = peak_during(pid, async {
        let mut work = futures_util::stream::iter((0..BOMBS).map(|_| {
            let (http, base, token, body) =
                (http.clone(), base.clone(), patroller.clone(), bomb.clone());
            async move {
                let r = http
                    .post(format!("{base}/api/v1/sync/push"))
                    .bearer_auth(&token)
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", "gzip")
                    .body(body)
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                    bail!("a gzip bomb was answered {}", r.status());
                }
                anyhow::Ok(())
            }
        }))
        .buffer_unordered(BOMBS);
        while let Some(r) = work.next().await {
            r?;
        }
        Ok(())
    })
    .await?;
    rows.push((
        format!(
            "gzip bombs: {BOMBS} at once, {} KiB each inflating to 110 MiB",
            bomb.len() / 1024
        ),
        idle,
        peak,
        limit as u64,
        "the push body limit",
    ));

    for (size_mb, count) in PHOTO_RUNS {
        let size = size_mb * 1024 * 1024;
        let photos: Vec<Vec<u8>> = (0..count)
            .map(|i| fake_jpeg(size, (size_mb * 1000 + i) as u64))
            .collect();
        let shas: Vec<String> = photos.iter().map(|p| Sha256::of(p).hex()).collect();
        let in_flight = (PARALLEL * size) as u64;

        let idle = rss(pid)?;
        let ((), peak) = peak_during(pid, async {
            let mut work = futures_util::stream::iter(photos.into_iter().map(|p| {
                let (http, base, token) = (http.clone(), base.clone(), patroller.clone());
                async move { riverchief_tests::tus_upload(&http, &base, &token, p).await }
            }))
            .buffer_unordered(PARALLEL);
            while let Some(r) = work.next().await {
                r?;
            }
            Ok(())
        })
        .await?;
        rows.push((
            format!("photo uploads: {count} × {size_mb} MiB, {PARALLEL} at a time"),
            idle,
            peak,
            in_flight,
            "the photos in flight",
        ));

        let idle = rss(pid)?;
        let (total, peak) = peak_during(pid, async {
            let mut work = futures_util::stream::iter(shas.iter().map(|sha| {
                let (http, base, token, sha) =
                    (http.clone(), base.clone(), lead.clone(), sha.clone());
                async move { download(&http, &base, &token, &sha).await }
            }))
            .buffer_unordered(PARALLEL);
            let mut total = 0;
            while let Some(r) = work.next().await {
                total += r?;
            }
            Ok(total)
        })
        .await?;
        if total != (count * size) as u64 {
            bail!("downloaded {total} bytes");
        }
        rows.push((
            format!("photo downloads: the same, {PARALLEL} at a time"),
            idle,
            peak,
            in_flight,
            "the photos in flight",
        ));
    }

    // The baseline for streams: as many idle keep-alive connections.
    let idle = rss(pid)?;
    let idle_http = reqwest::Client::builder()
        .pool_max_idle_per_host(STREAMS)
        .build()?;
    let ((), connections_peak) = peak_during(pid, async {
        let mut work = futures_util::stream::iter((0..STREAMS).map(|_| {
            let (http, base) = (idle_http.clone(), base.clone());
            async move {
                let r = http.get(format!("{base}/healthz")).send().await?;
                r.bytes().await?;
                anyhow::Ok(())
            }
        }))
        .buffer_unordered(STREAMS);
        while let Some(r) = work.next().await {
            r?;
        }
        // Held open a moment, as the streams will be.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    })
    .await?;
    let connections_growth = connections_peak.saturating_sub(idle);
    drop(idle_http);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Live streams.
    let idle = rss(pid)?;
    let received = Arc::new(AtomicU64::new(0));
    let (event_bytes, peak) = peak_during(pid, async {
        let mut streams = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let r = http
                .get(format!("{base}/api/v1/alerts/stream"))
                .bearer_auth(&lead)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("stream: {}", r.status());
            }
            let received = received.clone();
            streams.push(tokio::spawn(async move {
                let mut body = r.bytes_stream();
                let (mut events, mut bytes) = (0, 0u64);
                while events < ALERTS {
                    let Some(chunk) = body.next().await else {
                        break;
                    };
                    let chunk = chunk?;
                    bytes += chunk.len() as u64;
                    events += chunk
                        .windows(b"event: alert".len())
                        .filter(|w| *w == b"event: alert")
                        .count();
                }
                received.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(bytes)
            }));
        }
        let device = DeviceId::new();
        let segment = segment_id(&http, &base, &lead).await?;
        for i in 0..ALERTS {
            let at = chrono::Utc::now();
            let mutation = json!({
                "id": MutationId::new(), "device_seq": i, "type": "issue.report", "at": at,
                "data": {
                    "issue_id": IssueId::new(), "segment_id": segment,
                    "location": {"lon": 118.7445, "lat": 32.0522}, "category": "leak",
                    "severity": 3, "description": "memory bench", "photos": [], "reported_at": at,
                },
            });
            let r = http
                .post(format!("{base}/api/v1/sync/push"))
                .bearer_auth(&patroller)
                .json(&json!({"device_id": device, "mutations": [mutation]}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("push: {}", r.status());
            }
            let answer: serde_json::Value = r.json().await?;
            if answer["results"][0]["status"] != "applied" {
                bail!("the report was not applied: {answer}");
            }
        }
        let mut bytes = 0;
        for s in streams {
            bytes += tokio::time::timeout(PATIENCE, s)
                .await
                .context("a stream did not receive every alert")???;
        }
        Ok(bytes)
    })
    .await?;
    if received.load(Ordering::Relaxed) != STREAMS as u64 {
        bail!("not every stream finished");
    }
    std::hint::black_box(event_bytes);
    rows.push((
        format!("live streams: {STREAMS} open, {ALERTS} alerts each"),
        idle,
        peak,
        connections_growth,
        "as many idle keep-alive connections",
    ));
    server.kill()?;

    let mut md = String::from(
        "| load | idle RSS | peak RSS | growth | baseline | baseline is | growth / baseline |\n| --- | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (what, idle, peak, baseline, meaning) in &rows {
        let growth = peak.saturating_sub(*idle);
        // A baseline under a mebibyte is within what the allocator keeps anyway: no ratio.
        let ratio = if *baseline >= 1024 * 1024 {
            format!("{:.2}", growth as f64 / *baseline as f64)
        } else {
            "—".to_owned()
        };
        md.push_str(&format!(
            "| {what} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {meaning} | {ratio} |\n",
            mib(*idle),
            mib(*peak),
            mib(growth),
            mib(*baseline),
        ));
    }
    if let Some((_, idle, peak, baseline, _)) = rows.last() {
        md.push_str(&format!(
            "\nPer live stream: {:.1} KiB; per idle keep-alive connection: {:.1} KiB.\n",
            peak.saturating_sub(*idle) as f64 / 1024.0 / STREAMS as f64,
            *baseline as f64 / 1024.0 / STREAMS as f64,
        ));
    }
    print!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-memory.md");
    std::fs::write(out, &md)?;
    Ok(())
}

/// QHL-02's id, from the segments list.
async fn segment_id(http: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let segments: serde_json::Value = http
        .get(format!("{base}/api/v1/segments"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    segments["features"]
        .as_array()
        .and_then(|f| {
            f.iter()
                .find(|s| s["properties"]["code"] == "QHL-02")
                .and_then(|s| s["properties"]["id"].as_str().map(str::to_owned))
        })
        .ok_or_else(|| anyhow!("no QHL-02"))
}
