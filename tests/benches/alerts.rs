//! Alert delivery latency, beside a baseline measured in the same run:
//! - from the answer to the push of a muddy piping report to its `alert` event on an open
//!   `GET /alerts/stream` (Server-Sent Events), over `REPORTS` reports pushed one at a time;
//! - from the same answer to the first webhook delivery of that alert reaching a receiver on
//!   loopback;
//! - baseline: a plain HTTP round trip to the same server on loopback (`GET /healthz`).
//!
//! The server runs on SQLite and, when `RIVERCHIEF_TEST_DATABASE_URL` names a PostgreSQL server, on
//! PostgreSQL too, in the same run.
//!
//! Run: `scripts/with-postgres cargo bench -p riverchief-tests --bench alerts` (release build; without
//! the wrapper, SQLite only). Figures go to stdout and to `target/bench-alerts.md`; the latest are kept
//! in `docs/benchmarks.md`.

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use riverchief_shared::id::{DeviceId, IssueId, MutationId};
use riverchief_tests::{login, TestServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPORTS: usize = 50;
/// Time between reports, so each is measured on its own rather than queued behind the last.
const GAP: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(30);

/// When each issue's alert arrived somewhere.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

struct Measured {
    backend: &'static str,
    stream: Vec<Duration>,
    webhook: Vec<Duration>,
    round_trip: Vec<Duration>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut runs = vec![measure(TestServer::start_fresh(true).await?, "SQLite").await?];
    if std::env::var(riverchief_tests::db::PG_ENV).is_ok_and(|v| !v.is_empty()) {
        runs.push(measure(TestServer::start_fresh(false).await?, "PostgreSQL").await?);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = String::from(
        "| backend | what | p50 ms | p99 ms | baseline p50 ms | baseline p99 ms | ratio p50 |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for m in &runs {
        let (b50, b99) = (pct(&m.round_trip, 50.0), pct(&m.round_trip, 99.0));
        for (what, v) in [
            ("push answered → SSE event", &m.stream),
            ("push answered → webhook received", &m.webhook),
        ] {
            let (p50, p99) = (pct(v, 50.0), pct(v, 99.0));
            out.push_str(&format!(
                "| {} | {what} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} |\n",
                m.backend,
                ms(p50),
                ms(p99),
                ms(b50),
                ms(b99),
                ms(p50) / ms(b50).max(1e-6)
            ));
        }
    }
    println!("{out}");
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-alerts.md"),
        &out,
    )?;
    Ok(())
}

/// The `p`-th percentile (nearest rank).
fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Reads the stream in the background and notes when each issue's alert arrives.
async fn watch_stream(base: &str, token: &str, arrivals: Arrivals) -> Result<()> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/alerts/stream"))
        .bearer_auth(token)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("stream: {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let now = Instant::now();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        if let Ok(v) = serde_json::from_str::<Value>(data) {
                            if let Some(issue) = v["issue_id"].as_str() {
                                if let Ok(mut a) = arrivals.lock() {
                                    a.entry(issue.to_owned()).or_insert(now);
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// A webhook receiver on loopback that notes when each issue's alert first arrives.
async fn receiver(arrivals: Arrivals) -> Result<(String, actix_web::dev::ServerHandle)> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let state = web::Data::new(arrivals);
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).default_service(web::to(
            |body: web::Bytes, arrivals: web::Data<Arrivals>| async move {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let Some(issue) = v["alert"]["issue_id"].as_str() {
                        if let Ok(mut a) = arrivals.lock() {
                            a.entry(issue.to_owned()).or_insert(now);
                        }
                    }
                }
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((format!("http://127.0.0.1:{port}/hook"), handle))
}

async fn until_arrived(arrivals: &Arrivals, issue: &str) -> Result<Instant> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(t) = arrivals.lock().ok().and_then(|a| a.get(issue).copied()) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!("issue {issue}: no alert within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn measure(server: TestServer, backend: &'static str) -> Result<Measured> {
    let base = server.url();
    let http = reqwest::Client::new();
    let admin = login(&base, "admin").await?;
    let webhook_arrivals: Arrivals = Arc::default();
    let (hook_url, hook) = receiver(webhook_arrivals.clone()).await?;
    let r = http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"url": hook_url, "secret": "bench-secret"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("webhook: {}", r.status());
    }
    let stream_arrivals: Arrivals = Arc::default();
    watch_stream(&base, &login(&base, "chen").await?, stream_arrivals.clone()).await?;

    let token = login(&base, "zhangwei").await?;
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
        .context("QHL-02")?;
    let segment_id = qhl02["properties"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let line: Vec<[f64; 2]> = serde_json::from_value(qhl02["geometry"]["coordinates"].clone())?;

    let device = DeviceId::new();
    let mut stream = Vec::new();
    let mut webhook = Vec::new();
    for i in 0..REPORTS {
        let issue = IssueId::new();
        let mutation = json!({"id": MutationId::new(), "device_seq": i + 1, "type": "issue.report",
            "at": chrono::Utc::now(), "data": {
            "issue_id": issue, "segment_id": segment_id,
            "location": {"lon": line[1][0], "lat": line[1][1]}, "category": "piping", "severity": 3,
            "outflow": "muddy", "description": format!("浑水管涌 {i}"), "reported_at": chrono::Utc::now()}});
        let r = http
            .post(format!("{base}/api/v1/sync/push"))
            .bearer_auth(&token)
            .json(&json!({"device_id": device, "mutations": [mutation]}))
            .send()
            .await?;
        let body: Value = r.json().await?;
        if body["results"][0]["status"] != "applied" {
            bail!("push: {body}");
        }
        let answered = Instant::now();
        let issue = issue.to_string();
        let at = until_arrived(&stream_arrivals, &issue).await?;
        stream.push(at.saturating_duration_since(answered));
        let at = until_arrived(&webhook_arrivals, &issue).await?;
        webhook.push(at.saturating_duration_since(answered));
        tokio::time::sleep(GAP).await;
    }

    let mut round_trip = Vec::new();
    for _ in 0..REPORTS {
        let started = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await?;
        r.bytes().await?;
        round_trip.push(started.elapsed());
    }
    hook.stop(false).await;
    server.stop().await;
    Ok(Measured {
        backend,
        stream,
        webhook,
        round_trip,
    })
}
