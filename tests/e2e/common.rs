//! Helpers the e2e modules share: a thin raw-HTTP client, and shortcuts around the real client core.

use anyhow::{anyhow, bail, Result};
use riverchief_client::{Client, ClientOptions, IssueDraft, RetryPolicy};
use riverchief_shared::domain::{IssueCategory, Outflow, Segment, Severity};
use riverchief_shared::geo::{Lat, Lon, Position};
use riverchief_shared::id::{DeviceId, MutationId, PatrolId};
use riverchief_tests::TestServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client with a short retry policy, so that a dead server fails a sync in well under a second.
pub fn open_client(dir: &Path, server: &str) -> Result<Client> {
    let options = ClientOptions {
        server_url: Some(server.to_owned()),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        ..ClientOptions::default()
    };
    Ok(Client::open(dir, options)?)
}

/// A client for a demo user at `server` (a server's or a proxy's URL), logged in and synced once.
pub async fn phone(dir: &Path, server: &str, user: &str) -> Result<Client> {
    let client = open_client(dir, server)?;
    client
        .login(server, user, riverchief_tests::DEMO_PASSWORD, "phone")
        .await?;
    client.sync(&|_| {}).await?;
    Ok(client)
}

/// The mirrored segment with this code.
pub async fn segment(client: &Client, code: &str) -> Result<Segment> {
    client
        .segments()
        .await?
        .into_iter()
        .find(|s| s.properties.code == code)
        .ok_or_else(|| anyhow!("segment {code} not mirrored"))
}

/// A report at `fraction` of the way along the segment's vertices.
#[allow(clippy::too_many_arguments)]
pub fn draft(
    segment: &Segment,
    fraction: f64,
    category: IssueCategory,
    severity: Severity,
    outflow: Option<Outflow>,
    description: &str,
    patrol_id: Option<PatrolId>,
    photos: Vec<PathBuf>,
) -> IssueDraft {
    let line = &segment.line;
    let k = ((line.len() - 1) as f64 * fraction).floor() as usize;
    let (a, b) = (line[k], line[(k + 1).min(line.len() - 1)]);
    let lon = (a[0] + b[0]) / 2.0 + 0.0002; // a few metres landward of the crest line
    let lat = (a[1] + b[1]) / 2.0;
    IssueDraft {
        segment_id: segment.properties.id,
        patrol_id,
        location: Position {
            lon: Lon::parse(lon, "lon").unwrap_or_else(|_| unreachable!()),
            lat: Lat::parse(lat, "lat").unwrap_or_else(|_| unreachable!()),
        },
        category,
        severity,
        outflow,
        description: description.to_owned(),
        photos,
    }
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub fn mutation(seq: u64, kind: &str, data: Value) -> Value {
    json!({"id": MutationId::new(), "device_seq": seq, "type": kind, "at": chrono::Utc::now(), "data": data})
}

/// Raw HTTP as a duty lead's browser or a script would speak it.
pub struct Http {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Http {
    pub fn new(base: &str, token: &str) -> Http {
        Http {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {} {}", r.status(), r.text().await?);
        }
        Ok(r.json().await?)
    }

    pub async fn bytes(&self, path: &str) -> Result<Vec<u8>> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok(r.bytes().await?.to_vec())
    }

    pub async fn push(&self, device: DeviceId, mutations: Vec<Value>) -> Result<Vec<Value>> {
        let r = self
            .http
            .post(format!("{}/api/v1/sync/push", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"device_id": device, "mutations": mutations}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("push: {} {}", r.status(), r.text().await?);
        }
        let body: Value = r.json().await?;
        Ok(body["results"].as_array().cloned().unwrap_or_default())
    }
}

/// The user id behind a demo login.
pub async fn user_id(base: &str, username: &str) -> Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": riverchief_tests::DEMO_PASSWORD, "device_name": "lookup"}))
        .send()
        .await?;
    let body: Value = r.json().await?;
    body["user"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no user in {body}"))
}

/// Adds a user with the server's own CLI, on the live data directory.
pub fn add_user(server: &TestServer, username: &str, role: &str, segments: &[&str]) -> Result<()> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rc-server"));
    cmd.args(["user", "add", "--data-dir"])
        .arg(&server.data_dir);
    if let Some(url) = server.db.url() {
        cmd.arg("--database-url").arg(url);
    }
    cmd.args([
        "--username",
        username,
        "--display-name",
        username,
        "--role",
        role,
        "--password",
        riverchief_tests::DEMO_PASSWORD,
    ]);
    for s in segments {
        cmd.args(["--segment", s]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("user add: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The mutations a device has sent, exactly as frozen in its outbox, in device order.
pub fn sent_mutations(client_dir: &Path) -> Result<Vec<Value>> {
    let conn = rusqlite::Connection::open_with_flags(
        client_dir.join("client.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = conn.prepare("SELECT body FROM outbox ORDER BY device_seq")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
}

/// An answer's status and its body as JSON (the text as a JSON string when it is not JSON).
pub async fn status_and_body(r: reqwest::Response) -> Result<(reqwest::StatusCode, Value)> {
    let status = r.status();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}
