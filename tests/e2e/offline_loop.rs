//! The offline loop: a patrol recorded with no signal reaches the server whole, photos included; a
//! second patroller's device mirrors what it may see.

use crate::common::*;
use anyhow::Result;
use riverchief_shared::domain::{IssueCategory, Outflow, Severity};
use riverchief_shared::photo::Sha256;
use riverchief_tests::{free_port, login, photo_file, walk, TestDb, TestServer};
use serde_json::Value;

#[tokio::test]
async fn a_patrol_recorded_offline_reaches_the_server_whole() -> Result<()> {
    // The device logs in once while there is signal, and mirrors the segments.
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let db = TestDb::fresh(data.path())?;
    let server = TestServer::start_on(data.path(), &db, port).await?;
    let phone = tempfile::tempdir()?;
    let client = open_client(phone.path(), &server.url())?;
    client
        .login(
            &server.url(),
            "zhangwei",
            riverchief_tests::DEMO_PASSWORD,
            "zhangwei's phone",
        )
        .await?;
    client.sync(&|_| {}).await?;
    let qhl02 = segment(&client, "QHL-02").await?;

    // The server goes away (no signal on the bank). Everything below happens offline.
    server.stop().await;
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    let patrol = client
        .start_patrol(
            &[qhl02.properties.id],
            Some("汛期巡堤".into()),
            Some("小雨".into()),
        )
        .await?;
    let points = walk(&qhl02.line, 500, t0);
    for chunk in points.chunks(50) {
        client.add_points(patrol, chunk).await?;
    }
    let shots = tempfile::tempdir()?;
    let p1 = photo_file(shots.path(), "boil-1.jpg", 1_300_000, 11)?;
    let p2 = photo_file(shots.path(), "boil-2.jpg", 1_100_000, 12)?;
    let p3 = photo_file(shots.path(), "litter.jpg", 1_050_000, 13)?;
    let hashes: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .map(|p| Ok(Sha256::of(&std::fs::read(p)?).hex()))
        .collect::<Result<_>>()?;
    let boil = client
        .report_issue(draft(
            &qhl02,
            0.4,
            IssueCategory::Piping,
            Severity::Major,
            Some(Outflow::Muddy),
            "背水坡脚浑水管涌，直径约5厘米",
            Some(patrol),
            vec![p1.clone(), p2.clone()],
        ))
        .await?;
    let litter = client
        .report_issue(draft(
            &qhl02,
            0.7,
            IssueCategory::Litter,
            Severity::Minor,
            None,
            "堤顶垃圾堆放",
            Some(patrol),
            vec![p3.clone()],
        ))
        .await?;
    // The camera app may delete the originals: the client has its own copies.
    for p in [&p1, &p2, &p3] {
        std::fs::remove_file(p)?;
    }
    client
        .finish_patrol(patrol, Some("全段巡查完毕".into()))
        .await?;

    // A sync with no server fails and keeps everything.
    assert!(client.sync(&|_| {}).await.is_err());
    let status = client.status().await?;
    assert_eq!(status.pending, 1 + 10 + 2 + 1, "{status:?}");
    assert!(status.rejected.is_empty(), "{status:?}");

    // The server comes back; one sync brings everything.
    let server = TestServer::start_on(data.path(), &db, port).await?;
    let report = client.sync(&|_| {}).await?;
    assert_eq!(report.pushed, 14, "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(report.photos_uploaded, 3, "{report:?}");
    assert!(report.bytes_uploaded >= 3_450_000, "{report:?}");
    assert!(client.status().await?.pending == 0);

    // What the duty lead sees.
    let lead = Http::new(&server.url(), &login(&server.url(), "chen").await?);
    let p: Value = lead.get(&format!("/api/v1/patrols/{patrol}")).await?;
    assert_eq!(p["patrol"]["point_count"], 500);
    assert!(p["patrol"]["ended_at"].is_string());
    let got = p["points"].as_array().cloned().unwrap_or_default();
    assert_eq!(got.len(), 500);
    for (sent, got) in points.iter().zip(&got) {
        assert_eq!(got["lon"].as_f64(), Some(sent.lon.get()));
        assert_eq!(got["lat"].as_f64(), Some(sent.lat.get()));
        assert_eq!(got["t"].as_str().map(parse_time), Some(Some(sent.t)));
    }
    let issue: Value = lead.get(&format!("/api/v1/issues/{boil}")).await?;
    assert_eq!(issue["category"], "piping");
    assert_eq!(issue["critical"], true);
    assert_eq!(issue["photos_expected"], 2);
    assert_eq!(issue["photos_arrived"], 2);
    assert_eq!(issue["segment_id"], qhl02.properties.id.to_string());
    let chainage = issue["chainage_m"].as_f64().unwrap_or_default();
    assert!(chainage > 847.0 && chainage < 847.0 + 646.0, "{chainage}");
    let issue: Value = lead.get(&format!("/api/v1/issues/{litter}")).await?;
    assert_eq!(issue["photos_arrived"], 1);
    for sha in &hashes {
        let bytes = lead.bytes(&format!("/api/v1/photos/{sha}")).await?;
        assert_eq!(&Sha256::of(&bytes).hex(), sha);
    }
    assert_eq!(server.db.scalar("SELECT count(*) FROM track_points")?, 500);
    assert_eq!(server.db.scalar("SELECT count(*) FROM issues")?, 2);
    assert_eq!(server.db.scalar("SELECT count(*) FROM photos")?, 3);

    // The same push replayed, byte for byte: every mutation a duplicate, not a row changed.
    let token = login(&server.url(), "zhangwei").await?;
    let zhang = Http::new(&server.url(), &token);
    let before = server.db.digest()?;
    let sent = sent_mutations(phone.path())?;
    assert_eq!(sent.len(), 14);
    let results = zhang.push(client.device_id().await?, sent).await?;
    assert!(
        results.iter().all(|r| r["status"] == "duplicate"),
        "{results:?}"
    );
    assert_eq!(server.db.digest()?, before);

    // And a sync with nothing new changes nothing either.
    let again = client.sync(&|_| {}).await?;
    assert_eq!((again.pushed, again.photos_uploaded), (0, 0), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn a_second_patroller_mirrors_the_issues_on_their_segment() -> Result<()> {
    let server = TestServer::start().await?;
    let a_dir = tempfile::tempdir()?;
    let a = open_client(a_dir.path(), &server.url())?;
    a.login(
        &server.url(),
        "zhangwei",
        riverchief_tests::DEMO_PASSWORD,
        "phone A",
    )
    .await?;
    a.sync(&|_| {}).await?;
    let qhl02 = segment(&a, "QHL-02").await?;
    let qhl01 = segment(&a, "QHL-01").await?;
    let shots = tempfile::tempdir()?;
    let photo = photo_file(shots.path(), "crack.jpg", 200_000, 5)?;
    let on_02 = a
        .report_issue(draft(
            &qhl02,
            0.5,
            IssueCategory::Crack,
            Severity::Significant,
            None,
            "堤顶纵向裂缝约3米",
            None,
            vec![photo],
        ))
        .await?;
    let on_01 = a
        .report_issue(draft(
            &qhl01,
            0.5,
            IssueCategory::Litter,
            Severity::Minor,
            None,
            "垃圾",
            None,
            vec![],
        ))
        .await?;
    a.sync(&|_| {}).await?;

    // lina watches QHL-01, 02, 03 and QHR-02; a device of a patroller assigned elsewhere is tested below.
    let b_dir = tempfile::tempdir()?;
    let b = open_client(b_dir.path(), &server.url())?;
    b.login(
        &server.url(),
        "lina",
        riverchief_tests::DEMO_PASSWORD,
        "phone B",
    )
    .await?;
    let first = b.sync(&|_| {}).await?;
    assert!(first.pulled >= 4 + 2, "{first:?}");
    let segments = b.segments().await?;
    assert_eq!(segments.len(), 4);
    let issues = b.issues().await?;
    let ids: Vec<_> = issues.iter().map(|i| i.id).collect();
    assert!(ids.contains(&on_02) && ids.contains(&on_01), "{ids:?}");
    let crack = issues
        .iter()
        .find(|i| i.id == on_02)
        .ok_or_else(|| anyhow::anyhow!("no crack"))?;
    assert_eq!((crack.photos_expected, crack.photos_arrived), (1, 1));
    let second = b.sync(&|_| {}).await?;
    assert_eq!(second.pulled, 0, "{second:?}");

    // A patroller assigned only to QHL-03 (added with the server's own CLI) sees the segments but
    // neither issue, until a duty lead dispatches the crack to her.
    add_user(&server, "wangfang", "patroller", &["QHL-03"])?;
    let c_dir = tempfile::tempdir()?;
    let c = open_client(c_dir.path(), &server.url())?;
    c.login(
        &server.url(),
        "wangfang",
        riverchief_tests::DEMO_PASSWORD,
        "phone C",
    )
    .await?;
    c.sync(&|_| {}).await?;
    assert_eq!(c.segments().await?.len(), 4);
    assert!(c.issues().await?.is_empty());
    let lead = Http::new(&server.url(), &login(&server.url(), "chen").await?);
    let wang_id = user_id(&server.url(), "wangfang").await?;
    let results = lead
        .push(
            riverchief_shared::id::DeviceId::new(),
            vec![mutation(
                1,
                "issue.event",
                serde_json::json!({
                    "event_id": riverchief_shared::id::IssueEventId::new(), "issue_id": on_02,
                    "kind": "dispatched", "assignee": wang_id, "note": "请王芳前往处置"
                }),
            )],
        )
        .await?;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    c.sync(&|_| {}).await?;
    let seen: Vec<_> = c.issues().await?.iter().map(|i| (i.id, i.status)).collect();
    assert_eq!(
        seen,
        vec![(on_02, riverchief_shared::domain::IssueStatus::Dispatched)]
    );
    Ok(())
}

/// Handing a phone to a colleague must not push one patroller's unsent work under the other's
/// account (where it would be refused as someone else's) or lose it: the switch is refused until it
/// is sent, and then the new account starts from a fresh mirror.
#[tokio::test]
async fn another_account_cannot_log_in_over_unsent_work() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let dir = tempfile::tempdir()?;
    let phone = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&phone, "QHL-02").await?;
    let photo = photo_file(dir.path(), "crack.jpg", 20_000, 7)?;
    phone
        .report_issue(draft(
            &qhl02,
            0.3,
            IssueCategory::Crack,
            Severity::Minor,
            None,
            "裂缝",
            None,
            vec![photo],
        ))
        .await?;
    let before = phone.status().await?;
    assert_eq!(before.pending, 1);

    let err = phone
        .login(&base, "lina", riverchief_tests::DEMO_PASSWORD, "phone")
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("lina logged in over zhangwei's unsent report"))?;
    let message = err.to_string();
    assert!(
        matches!(err, riverchief_client::ClientError::UnsentWorkOfAnother { ref user, pending, .. } if user == "zhangwei" && pending == 2),
        "{message}"
    );
    // Nothing changed: still zhangwei, the report still queued, the mirror kept.
    let after = phone.status().await?;
    assert_eq!(
        after.user.as_ref().map(|u| u.username.as_str()),
        Some("zhangwei")
    );
    assert_eq!(after.pending, 1);
    assert_eq!(after.cursor, before.cursor);
    // The same account logging in again is fine (a new token, the work stays queued).
    phone
        .login(&base, "zhangwei", riverchief_tests::DEMO_PASSWORD, "phone")
        .await?;
    assert_eq!(phone.status().await?.pending, 1);

    // Once sent, the switch goes through, and lina's device starts from her own mirror.
    phone.sync(&|_| {}).await?;
    let sent = phone.status().await?;
    assert_eq!((sent.pending, sent.photos_pending), (0, 0));
    let lina = phone
        .login(&base, "lina", riverchief_tests::DEMO_PASSWORD, "phone")
        .await?;
    assert_eq!(lina.username, "lina");
    assert_eq!(phone.status().await?.cursor, None);
    phone.sync(&|_| {}).await?;
    assert_eq!(phone.segments().await?.len(), 4);
    Ok(())
}

/// A duty lead's phone on a weak link fetches a large photo in ranges.
#[tokio::test]
async fn a_photo_is_served_whole_or_by_byte_range() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let dir = tempfile::tempdir()?;
    let phone = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&phone, "QHL-02").await?;
    let bytes = riverchief_tests::fake_jpeg(300_000, 11);
    let path = dir.path().join("slide.jpg");
    std::fs::write(&path, &bytes)?;
    let sha = Sha256::of(&bytes);
    phone
        .report_issue(draft(
            &qhl02,
            0.6,
            IssueCategory::SlopeSlide,
            Severity::Major,
            None,
            "滑坡",
            None,
            vec![path],
        ))
        .await?;
    phone.sync(&|_| {}).await?;

    let token = login(&base, "chen").await?;
    let get = |range: Option<&'static str>| {
        let mut r = reqwest::Client::new()
            .get(format!("{base}/api/v1/photos/{sha}"))
            .bearer_auth(&token);
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        r.send()
    };
    let whole = get(None).await?;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await?.as_ref(), bytes.as_slice());

    let len = bytes.len();
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-200999", 1000, 200_999),
        ("bytes=299000-", 299_000, len - 1),
        ("bytes=-500", len - 500, len - 1),
        ("bytes=299990-400000", 299_990, len - 1),
    ] {
        let r = get(Some(range)).await?;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {first}-{last}/{len}").as_str(),
            "{range}"
        );
        assert_eq!(r.bytes().await?.as_ref(), &bytes[first..=last], "{range}");
    }
    let r = get(Some("bytes=400000-")).await?;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    // Several ranges, or nonsense: the whole photo.
    for range in ["bytes=0-1,5-9", "lines=1-2", "bytes=x"] {
        let r = get(Some(range)).await?;
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(r.bytes().await?.len(), len, "{range}");
    }
    Ok(())
}

/// The patrol as the phone lists it.
async fn patrol_on(
    client: &riverchief_client::Client,
    patrol: riverchief_shared::id::PatrolId,
) -> Result<riverchief_client::PatrolSummary> {
    client
        .patrols()
        .await?
        .into_iter()
        .find(|p| p.id == patrol)
        .ok_or_else(|| anyhow::anyhow!("the patrol is gone from the phone"))
}

#[tokio::test]
async fn a_device_is_not_sent_back_its_own_patrols_until_another_device_writes_to_them(
) -> Result<()> {
    let server = TestServer::start().await?;
    let a_dir = tempfile::tempdir()?;
    let a = phone(a_dir.path(), &server.url(), "zhangwei").await?;
    let qhl02 = segment(&a, "QHL-02").await?;
    let patrol = a.start_patrol(&[qhl02.properties.id], None, None).await?;
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    a.add_points(patrol, &walk(&qhl02.line, 40, t0)).await?;
    let first = a.sync(&|_| {}).await?;
    assert_eq!(first.pushed, 2, "{first:?}");
    assert_eq!(server.db.scalar("SELECT point_count FROM patrols")?, 40);
    // The phone holds its own patrol; the server's copy of it is not sent back.
    let mine = patrol_on(&a, patrol).await?;
    assert_eq!(
        (mine.point_count, mine.server.is_none()),
        (40, true),
        "{mine:?}"
    );

    // Another device of the same patroller adds points to it: from now on its changes come to
    // every device, the first one too.
    let other = Http::new(&server.url(), &login(&server.url(), "zhangwei").await?);
    let more = walk(&qhl02.line, 10, t0 + chrono::Duration::minutes(10));
    let results = other
        .push(
            riverchief_shared::id::DeviceId::new(),
            vec![mutation(
                1,
                "patrol.points",
                serde_json::json!({"patrol_id": patrol, "points": more}),
            )],
        )
        .await?;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    let second = a.sync(&|_| {}).await?;
    assert!(second.pulled >= 1, "{second:?}");
    let mine = patrol_on(&a, patrol).await?;
    let server_copy = mine
        .server
        .ok_or_else(|| anyhow::anyhow!("the other device's points never reached the phone"))?;
    assert_eq!(server_copy.point_count, 50);

    // A duty lead's device gets the patrol whatever device wrote it.
    let lead_dir = tempfile::tempdir()?;
    let lead = phone(lead_dir.path(), &server.url(), "chen").await?;
    let seen = lead
        .patrols()
        .await?
        .into_iter()
        .find(|p| p.id == patrol)
        .and_then(|p| p.server)
        .map(|p| p.point_count);
    assert_eq!(seen, Some(50));
    Ok(())
}
