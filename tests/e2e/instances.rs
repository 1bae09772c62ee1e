//! Two server instances on one database (one PostgreSQL in the PostgreSQL pass, one SQLite file
//! otherwise), 50 devices pushing to either at random, the same batch sometimes to both at once: every
//! record lands exactly once, identical replays are never a conflict, and a duty lead's pull, paging
//! while all this happens, ends up having seen every change, none skipped.

use crate::common::*;
use anyhow::{anyhow, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use riverchief_shared::id::{DeviceId, IssueId, PatrolId};
use riverchief_tests::{login, walk, TestDb, TestServer};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const DEVICES: usize = 50;
const POINT_BATCHES: usize = 4;
const POINTS_EACH: usize = 50;

struct Instance {
    url: String,
}

async fn push(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    device: DeviceId,
    batch: &[Value],
) -> Result<Vec<Value>> {
    let r = http
        .post(format!("{url}/api/v1/sync/push"))
        .bearer_auth(token)
        .json(&json!({"device_id": device, "mutations": batch}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if !status.is_success() {
        return Err(anyhow!("push to {url}: {status} {body}"));
    }
    Ok(body["results"].as_array().cloned().unwrap_or_default())
}

/// Pulls one page; returns (changes, next, more).
async fn pull(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    since: &Option<String>,
) -> Result<(Vec<Value>, String, bool)> {
    let mut req = http
        .get(format!("{url}/api/v1/sync/pull"))
        .bearer_auth(token)
        .query(&[("limit", "37")]);
    if let Some(c) = since {
        req = req.query(&[("since", c.as_str())]);
    }
    let body: Value = req.send().await?.json().await?;
    assert_eq!(body["reset"], false, "{body}");
    let changes = body["changes"].as_array().cloned().unwrap_or_default();
    let next = body["next"].as_str().unwrap_or_default().to_owned();
    Ok((changes, next, body["more"] == true))
}

#[tokio::test]
async fn two_instances_fifty_devices_exactly_once_and_no_change_skipped() -> Result<()> {
    let data = tempfile::tempdir()?;
    let db = TestDb::fresh(data.path())?;
    let a = TestServer::start_on(data.path(), &db, 0).await?;
    let b = TestServer::start_on(data.path(), &db, 0).await?;
    let instances = Arc::new([Instance { url: a.url() }, Instance { url: b.url() }]);
    let http = reqwest::Client::new();
    let tokens = [
        login(&a.url(), "zhangwei").await?,
        login(&b.url(), "lina").await?,
    ];
    let lead = login(&a.url(), "chen").await?;
    let qhl02 = {
        let fc: Value = http
            .get(format!("{}/api/v1/segments", a.url()))
            .bearer_auth(&lead)
            .send()
            .await?
            .json()
            .await?;
        fc["features"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["properties"]["code"] == "QHL-02"))
            .cloned()
            .ok_or_else(|| anyhow!("no QHL-02"))?
    };
    let segment_id = qhl02["properties"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let line: Vec<[f64; 2]> = serde_json::from_value(qhl02["geometry"]["coordinates"].clone())?;

    // The duty lead pages through the change log the whole time, from either instance.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (http, lead, instances, done) =
            (http.clone(), lead.clone(), instances.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut cursor: Option<String> = None;
            let mut seen: Vec<Value> = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let inst = &instances[rng.random_range(0..2)];
                let (changes, next, more) = pull(&http, &inst.url, &lead, &cursor).await?;
                seen.extend(changes);
                cursor = Some(next);
                // After the pushes end, drain: one full pass that ends with an empty, final page.
                if finished && !more {
                    let (tail, _, _) = pull(&http, &inst.url, &lead, &cursor).await?;
                    if tail.is_empty() {
                        return anyhow::Ok(seen);
                    }
                    seen.extend(tail);
                }
                if !more {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        })
    };

    // Fifty devices, each: start, four batches of points, finish, one report; pushed in random splits
    // to random instances, a third of the batches to both at once, and one batch replayed later.
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let (http, instances, token, segment_id, line) = (
            http.clone(),
            instances.clone(),
            tokens[d % 2].clone(),
            segment_id.clone(),
            line.clone(),
        );
        devices.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(d as u64);
            let device = DeviceId::new();
            let patrol = PatrolId::new();
            let issue = IssueId::new();
            let t0 = chrono::Utc::now() - chrono::Duration::hours(2);
            let track = walk(&line, POINT_BATCHES * POINTS_EACH, t0);
            let mut seq = 0;
            let mut m = |kind: &str, data: Value| {
                seq += 1;
                mutation(seq, kind, data)
            };
            let mut all = vec![m("patrol.start", json!({"patrol_id": patrol, "segment_ids": [segment_id], "started_at": t0}))];
            for chunk in track.chunks(POINTS_EACH) {
                all.push(m("patrol.points", json!({"patrol_id": patrol, "points": chunk})));
            }
            all.push(m("patrol.finish", json!({"patrol_id": patrol, "ended_at": chrono::Utc::now()})));
            all.push(m("issue.report", json!({
                "issue_id": issue, "segment_id": segment_id, "patrol_id": patrol,
                "location": {"lon": line[1][0], "lat": line[1][1]}, "category": "seepage", "severity": 2,
                "description": format!("渗水 {d}"), "reported_at": chrono::Utc::now()
            })));
            let cut = rng.random_range(1..all.len());
            let batches = vec![all[..cut].to_vec(), all[cut..].to_vec()];
            let mut results = Vec::new();
            for batch in &batches {
                let first = rng.random_range(0..2);
                if rng.random_bool(1.0 / 3.0) {
                    let (x, y) = tokio::join!(
                        push(&http, &instances[first].url, &token, device, batch),
                        push(&http, &instances[1 - first].url, &token, device, batch)
                    );
                    results.extend(x?);
                    results.extend(y?);
                } else {
                    results.extend(push(&http, &instances[first].url, &token, device, batch).await?);
                }
            }
            let again = batches.choose(&mut rng).cloned().unwrap_or_default();
            results.extend(push(&http, &instances[rng.random_range(0..2)].url, &token, device, &again).await?);
            anyhow::Ok((patrol, issue, all.len(), results))
        }));
    }
    let mut patrols = HashSet::new();
    let mut issues = HashSet::new();
    let mut applied: HashMap<String, usize> = HashMap::new();
    let mut total_mutations = 0;
    for d in devices {
        let (patrol, issue, n, results) = d.await??;
        patrols.insert(patrol.to_string());
        issues.insert(issue.to_string());
        total_mutations += n;
        for r in results {
            let status = r["status"].as_str().unwrap_or_default().to_owned();
            assert!(status == "applied" || status == "duplicate", "{r}");
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            *applied.entry(id).or_default() += usize::from(status == "applied");
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.await??;

    // Exactly once, in the database and in the answers.
    assert_eq!(applied.len(), total_mutations);
    assert!(
        applied.values().all(|&n| n == 1),
        "a mutation was applied twice or never"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM mutations")?,
        total_mutations as i64
    );
    assert_eq!(db.scalar("SELECT count(*) FROM patrols")?, DEVICES as i64);
    assert_eq!(
        db.scalar("SELECT count(*) FROM track_points")?,
        (DEVICES * POINT_BATCHES * POINTS_EACH) as i64
    );
    assert_eq!(
        db.scalar("SELECT coalesce(sum(point_count), 0) FROM patrols")?,
        (DEVICES * POINT_BATCHES * POINTS_EACH) as i64
    );
    assert_eq!(db.scalar("SELECT count(*) FROM issues")?, DEVICES as i64);

    // The lead saw every change, in increasing order, none twice, and the last word on each patrol
    // is its final state.
    let seqs: Vec<i64> = seen.iter().filter_map(|c| c["seq"].as_i64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "pull went backwards or repeated"
    );
    assert_eq!(
        seqs.len() as i64,
        db.scalar("SELECT count(*) FROM changes")?,
        "the lead's pull skipped changes"
    );
    let mut last: HashMap<String, &Value> = HashMap::new();
    for c in &seen {
        last.insert(
            format!(
                "{}:{}",
                c["entity"].as_str().unwrap_or_default(),
                c["id"].as_str().unwrap_or_default()
            ),
            &c["data"],
        );
    }
    for p in &patrols {
        let data = last
            .get(&format!("patrol:{p}"))
            .ok_or_else(|| anyhow!("patrol {p} never pulled"))?;
        assert_eq!(
            data["point_count"],
            (POINT_BATCHES * POINTS_EACH) as u64,
            "{data}"
        );
        assert!(data["ended_at"].is_string(), "{data}");
    }
    for i in &issues {
        assert!(
            last.contains_key(&format!("issue:{i}")),
            "issue {i} never pulled"
        );
    }

    // Each patroller's device, pulling from scratch, sees exactly its own patrols.
    for (user, token) in ["zhangwei", "lina"].iter().zip(&tokens) {
        let mut cursor = None;
        let mut own = HashSet::new();
        loop {
            let (changes, next, more) =
                pull(&http, &instances[own.len() % 2].url, token, &cursor).await?;
            for c in changes.iter().filter(|c| c["entity"] == "patrol") {
                own.insert(c["id"].as_str().unwrap_or_default().to_owned());
            }
            cursor = Some(next);
            if !more {
                break;
            }
        }
        assert_eq!(own.len(), DEVICES / 2, "{user}");
    }
    Ok(())
}
