//! Bad input gets a clear 4xx that names the problem, and changes nothing (the database digest before
//! and after is equal). No request answers 5xx.

use anyhow::Result;
use reqwest::{Client, StatusCode};
use riverchief_shared::id::{MutationId, PatrolId, SegmentId};
use riverchief_shared::photo::Sha256;
use riverchief_tests::{fake_jpeg, login, TestServer};
use serde_json::{json, Value};

struct Api {
    base: String,
    token: String,
    http: Client,
}

impl Api {
    async fn new(server: &TestServer, user: &str) -> Result<Api> {
        Ok(Api {
            base: server.url(),
            token: login(&server.url(), user).await?,
            http: Client::new(),
        })
    }

    async fn push_raw(&self, body: impl Into<reqwest::Body>) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .post(format!("{}/api/v1/sync/push", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let body = r.json().await.unwrap_or(Value::Null);
        assert!(!status.is_server_error(), "5xx: {status} {body}");
        Ok((status, body))
    }

    async fn push(&self, mutations: Vec<Value>) -> Result<Vec<Value>> {
        let body =
            json!({"device_id": riverchief_shared::id::DeviceId::new(), "mutations": mutations});
        let (status, body) = self.push_raw(body.to_string()).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        Ok(body["results"].as_array().cloned().unwrap_or_default())
    }

    async fn segment_id(&self, code: &str) -> Result<String> {
        let fc: Value = self
            .http
            .get(format!("{}/api/v1/segments", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        let f = fc["features"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["properties"]["code"] == code))
            .ok_or_else(|| anyhow::anyhow!("no segment {code}"))?;
        Ok(f["properties"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

fn mutation(seq: u64, kind: &str, data: Value) -> Value {
    json!({"id": MutationId::new(), "device_seq": seq, "type": kind, "at": chrono::Utc::now(), "data": data})
}

fn start(segment: &str, patrol: PatrolId) -> Value {
    mutation(
        1,
        "patrol.start",
        json!({"patrol_id": patrol, "segment_ids": [segment], "started_at": chrono::Utc::now()}),
    )
}

fn points(patrol: PatrolId, lat: Value) -> Value {
    mutation(
        2,
        "patrol.points",
        json!({"patrol_id": patrol, "points": [
            {"t": chrono::Utc::now(), "lon": 118.744, "lat": 32.052, "accuracy_m": 4.0},
            {"t": chrono::Utc::now(), "lon": 118.744, "lat": lat, "accuracy_m": 4.0}
        ]}),
    )
}

fn assert_rejected(result: &Value, code: &str, field: Option<&str>) {
    assert_eq!(result["status"], "rejected", "{result}");
    assert_eq!(result["error"]["code"], code, "{result}");
    if let Some(f) = field {
        assert_eq!(result["error"]["field"], f, "{result}");
    }
    assert!(
        result["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{result}"
    );
}

fn assert_envelope(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn bad_pushes_are_refused_and_write_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let api = Api::new(&server, "zhangwei").await?;
    let other = Api::new(&server, "lina").await?;
    let qhl02 = api.segment_id("QHL-02").await?;

    // A patrol of lina's that zhangwei will try to write into, and one of his own.
    let linas = PatrolId::new();
    let r = other.push(vec![start(&qhl02, linas)]).await?;
    assert_eq!(r[0]["status"], "applied", "{r:?}");
    let mine = PatrolId::new();
    let first = start(&qhl02, mine);
    let r = api.push(vec![first.clone()]).await?;
    assert_eq!(r[0]["status"], "applied", "{r:?}");

    let before = server.db.digest()?;

    // Malformed JSON, NaN (not JSON at all), wrong top-level types.
    let (s, b) = api.push_raw("{\"device_id\": ").await?;
    assert_envelope(s, &b, StatusCode::BAD_REQUEST, "malformed_json");
    let nan = format!(
        r#"{{"device_id":"{}","mutations":[{{"id":"{}","device_seq":2,"type":"patrol.points","at":"2024-07-03T00:00:00Z","data":{{"patrol_id":"{}","points":[{{"t":"2024-07-03T00:00:00Z","lon":NaN,"lat":32.05}}]}}}}]}}"#,
        riverchief_shared::id::DeviceId::new(),
        MutationId::new(),
        mine
    );
    let (s, b) = api.push_raw(nan).await?;
    assert_envelope(s, &b, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, b) = api
        .push_raw(
            json!({"device_id": riverchief_shared::id::DeviceId::new(), "mutations": "lots"})
                .to_string(),
        )
        .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "mutations", "{b}");

    // Per-mutation refusals, each naming its field.
    let results = api
        .push(vec![
            points(mine, json!(91.0)),
            points(mine, json!("north")),
            start(&SegmentId::new().to_string(), PatrolId::new()),
            points(linas, json!(32.05)),
            {
                // The same mutation id as an applied one, with a different payload.
                let mut changed = first.clone();
                changed["data"]["started_at"] = json!("2024-07-03T01:00:00Z");
                changed
            },
            mutation(3, "patrol.teleport", json!({})),
            json!({"id": "not-a-uuid", "device_seq": 1, "type": "patrol.finish", "at": "2024-07-03T00:00:00Z", "data": {}}),
        ])
        .await?;
    assert_rejected(&results[0], "invalid", Some("data.points[1].lat"));
    assert!(
        results[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("91"),
        "{}",
        results[0]
    );
    assert_rejected(&results[1], "invalid", Some("data.points[1].lat"));
    assert_rejected(
        &results[2],
        "unknown_reference",
        Some("data.segment_ids[0]"),
    );
    assert_rejected(&results[3], "forbidden", None);
    assert_rejected(&results[4], "conflict", None);
    assert_rejected(&results[5], "unknown_type", Some("type"));
    assert_rejected(&results[6], "invalid", Some("id"));
    assert_eq!(results[6]["id"], Value::Null);

    // Oversize batches: by count and by bytes.
    let many: Vec<Value> = (0..201)
        .map(|i| points(mine, json!(32.05 + i as f64 * 1e-6)))
        .collect();
    let (s, b) = api
        .push_raw(
            json!({"device_id": riverchief_shared::id::DeviceId::new(), "mutations": many})
                .to_string(),
        )
        .await?;
    assert_envelope(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "too_many");
    let huge = json!({"device_id": riverchief_shared::id::DeviceId::new(), "mutations": [], "padding": "x".repeat(5 * 1024 * 1024)});
    let (s, b) = api.push_raw(huge.to_string()).await?;
    assert_envelope(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    assert_eq!(
        server.db.digest()?,
        before,
        "a refused request wrote something"
    );
    Ok(())
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() -> Result<()> {
    let server = TestServer::start().await?;
    let before = server.db.digest()?;
    let http = Client::new();
    let body = json!({"device_id": riverchief_shared::id::DeviceId::new(), "mutations": []});
    for auth in [
        None,
        Some("Bearer 0000"),
        Some("Basic emhhbmd3ZWk6eA=="),
        Some("Bearer "),
    ] {
        for (method, path) in [
            ("POST", "/api/v1/sync/push"),
            ("GET", "/api/v1/sync/pull"),
            ("GET", "/api/v1/segments"),
            ("GET", "/api/v1/issues"),
            ("POST", "/api/v1/uploads"),
        ] {
            let mut req = http
                .request(method.parse()?, format!("{}{path}", server.url()))
                .json(&body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await?;
            let status = r.status();
            let b: Value = r.json().await?;
            assert_envelope(status, &b, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert_eq!(server.db.digest()?, before);
    // A wrong password is refused; what it leaves is only its trace for the rate limit and the
    // audit trail (issue 7), no token.
    let tokens = server.db.scalar("SELECT COUNT(*) FROM device_tokens")?;
    let r = http
        .post(format!("{}/api/v1/auth/login", server.url()))
        .json(&json!({"username": "zhangwei", "password": "wrong", "device_name": "x"}))
        .send()
        .await?;
    let status = r.status();
    assert_envelope(
        status,
        &r.json().await?,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        server.db.scalar("SELECT COUNT(*) FROM device_tokens")?,
        tokens
    );
    assert_eq!(
        server
            .db
            .scalar("SELECT COUNT(*) FROM login_attempts WHERE success = FALSE")?,
        1
    );
    assert_eq!(
        server
            .db
            .scalar("SELECT COUNT(*) FROM audit WHERE kind = 'login.failed'")?,
        1
    );
    Ok(())
}

/// tus creation for `bytes` claiming `sha`; returns the upload URL.
async fn create_upload(api: &Api, len: usize, sha: &str) -> Result<String> {
    let meta = format!("sha256 {},content_type {}", b64(sha), b64("image/jpeg"));
    let r = api
        .http
        .post(format!("{}/api/v1/uploads", api.base))
        .bearer_auth(&api.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .header("Upload-Metadata", meta)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(if loc.starts_with("http") {
        loc
    } else {
        format!("{}{loc}", api.base)
    })
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn patch(api: &Api, url: &str, offset: usize, bytes: Vec<u8>) -> Result<(StatusCode, Value)> {
    let r = api
        .http
        .patch(url)
        .bearer_auth(&api.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await?;
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    assert!(!status.is_server_error(), "{status} {body}");
    Ok((status, body))
}

#[tokio::test]
async fn bad_photos_are_refused_and_leave_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let api = Api::new(&server, "zhangwei").await?;
    let before = server.db.digest()?;
    let photos_dir = server.data_dir.join("photos");
    let files_before = count_files(&photos_dir);

    // Bytes that do not match the hash they claim.
    let jpeg = fake_jpeg(300_000, 1);
    let wrong = Sha256::of(b"something else").hex();
    let url = create_upload(&api, jpeg.len(), &wrong).await?;
    let (s, b) = patch(&api, &url, 0, jpeg.clone()).await?;
    assert_envelope(s, &b, StatusCode::from_u16(460)?, "checksum_mismatch");

    // A text file posing as a JPEG (right hash, wrong kind of bytes).
    let text = b"Dear duty lead, this is not a photo of a sand boil.".repeat(100);
    let url = create_upload(&api, text.len(), &Sha256::of(&text).hex()).await?;
    let (s, b) = patch(&api, &url, 0, text).await?;
    assert_envelope(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // A malformed hash, and a photo over 25 MiB, are refused at creation.
    let r = api
        .http
        .post(format!("{}/api/v1/uploads", api.base))
        .bearer_auth(&api.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1000")
        .header("Upload-Metadata", format!("sha256 {}", b64("ABC")))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api
        .http
        .post(format!("{}/api/v1/uploads", api.base))
        .bearer_auth(&api.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", (26 * 1024 * 1024).to_string())
        .header(
            "Upload-Metadata",
            format!("sha256 {}", b64(&Sha256::of(b"x").hex())),
        )
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = api
        .http
        .head(format!(
            "{}/api/v1/photos/{}",
            api.base,
            Sha256::of(&jpeg).hex()
        ))
        .bearer_auth(&api.token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        server.db.digest()?,
        before,
        "a refused upload left rows behind"
    );
    assert_eq!(
        count_files(&photos_dir),
        files_before,
        "a refused upload left a photo behind"
    );
    assert_eq!(
        count_files(&server.data_dir.join("uploads")),
        0,
        "a refused upload left a part file"
    );
    Ok(())
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
