//! The duty lead's dashboard in a real browser: `tests/browser/dashboard.mjs` (headless Chromium from
//! Debian, driven by playwright-core) against a demo server on a random port, with the real client CLI
//! as the patroller's phone. See that script for the story it plays.
//!
//! Needs `/usr/bin/chromium` (or `RC_CHROMIUM`), `node`, and `npm ci` run in `tests/browser`. Without
//! them the test fails under CI and is skipped loudly elsewhere. It runs in the SQLite pass only: the
//! browser sees nothing that depends on the database backend, and one run of it is slow enough.

use anyhow::{bail, Context, Result};
use riverchief_tests::{TestServer, DEMO_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The whole story takes well under a minute; this is for a machine busy building other things.
const BROWSER_TEST_TIMEOUT: Duration = Duration::from_secs(600);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// What is missing to run the browser test, if anything.
fn missing_tools(root: &Path, chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("{} (apt-get install chromium)", chromium.display()));
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules (run `npm ci` in tests/browser)".into());
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(node, Ok(s) if s.success()) {
        missing.push("node (Node.js 18 or later)".into());
    }
    missing
}

#[tokio::test]
async fn the_duty_lead_watches_the_bank_in_a_browser() -> Result<()> {
    if std::env::var(riverchief_tests::db::PG_ENV).is_ok_and(|v| !v.is_empty()) {
        println!("dashboard browser test: runs in the SQLite pass only; nothing to do here");
        return Ok(());
    }
    let root = workspace_root();
    let chromium =
        PathBuf::from(std::env::var("RC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let missing = missing_tools(&root, &chromium);
    if !missing.is_empty() {
        let what = missing.join(", ");
        if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
            bail!("the dashboard's browser test cannot run under CI: missing {what}");
        }
        eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! SKIPPED: the dashboard's browser test: missing {what}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
        return Ok(());
    }

    let server = TestServer::start_fresh(true).await?;
    let work = tempfile::tempdir()?;
    let screenshots = root.join("target/screenshots");
    const SHOTS: [&str; 2] = ["dashboard-desktop.png", "dashboard-phone.png"];
    for shot in SHOTS {
        // Last run's pictures must not pass for this run's.
        let _ = std::fs::remove_file(screenshots.join(shot));
    }
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("RC_BASE_URL", server.url())
        .env("RC_CLIENT_BIN", env!("CARGO_BIN_EXE_rc-client"))
        .env("RC_DEMO_PASSWORD", DEMO_PASSWORD)
        .env("RC_WORK_DIR", work.path())
        .env("RC_SCREENSHOTS", &screenshots)
        .env("RC_CHROMIUM", &chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(BROWSER_TEST_TIMEOUT, cmd.output())
        .await
        .context("the browser test ran past its timeout")?
        .context("running node tests/browser/dashboard.mjs")?;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
    if !out.status.success() {
        bail!("the browser test failed ({}); output above", out.status);
    }
    for shot in SHOTS {
        let meta = std::fs::metadata(screenshots.join(shot))
            .with_context(|| format!("screenshot {shot} not written"))?;
        assert!(meta.len() > 10_000, "{shot} is suspiciously small");
    }
    Ok(())
}

/// Starts the real server binary with extra `serve` flags; answers the child and its base URL.
async fn server_with(args: &[&str], data_dir: &Path) -> Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rc-server"))
        .args(["serve", "--demo", "--workers", "1", "--bind", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--demo-password")
        .arg(DEMO_PASSWORD)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.strip_prefix("listening on ") {
            let base = addr.trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            riverchief_tests::wait_healthy(&base).await?;
            return Ok((child, base));
        }
    }
    bail!("the server exited before it listened")
}

#[tokio::test]
async fn the_page_is_served_without_a_token_and_revalidated_by_etag() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let http = reqwest::Client::new();

    let page = http.get(format!("{base}/")).send().await?;
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    let etag = header(&page, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert!(page.text().await?.contains("/assets/app.js"));

    let again = http
        .get(format!("{base}/"))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await?.is_empty());

    for (path, ty) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        (
            "/assets/leaflet/leaflet.js",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/leaflet/leaflet.css", "text/css; charset=utf-8"),
        ("/assets/leaflet/images/layers.png", "image/png"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ty, "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        let head = http.head(format!("{base}{path}")).send().await?;
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
    for path in [
        "/assets/nothing.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/server/build.rs",
    ] {
        let r = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(r.status(), 404, "{path}");
    }

    // No base map unless the operator gives one.
    let config: serde_json::Value = http
        .get(format!("{base}/config.json"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(config["tile_url"], serde_json::Value::Null);

    // The API still wants its token; the depots the map draws are there with positions.
    let bare = http.get(format!("{base}/api/v1/depots")).send().await?;
    assert_eq!(bare.status(), 401);
    let token = riverchief_tests::login(&base, "chen").await?;
    let depots: serde_json::Value = http
        .get(format!("{base}/api/v1/depots"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let features = depots["features"].as_array().cloned().unwrap_or_default();
    let codes: Vec<&str> = features
        .iter()
        .filter_map(|f| f["properties"]["code"].as_str())
        .collect();
    assert_eq!(codes, ["FHXA-C", "ZHWY-P"], "{depots}");
    assert!(features.iter().all(|f| f["geometry"]["type"] == "Point"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_operator_sets_the_base_map() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = "https://tiles.example.internal/{z}/{x}/{y}.png";
    let (_child, base) = server_with(
        &["--tile-url", url, "--tile-attribution", "© Example Tiles"],
        dir.path(),
    )
    .await?;
    let config: serde_json::Value = reqwest::get(format!("{base}/config.json"))
        .await?
        .json()
        .await?;
    assert_eq!(config["tile_url"], url);
    assert_eq!(config["tile_attribution"], "© Example Tiles");

    // A template Leaflet cannot fill is refused at start.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rc-server"))
        .args([
            "serve",
            "--tile-url",
            "https://tiles.example.internal/{z}.png",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("never"))
        .output()
        .await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs {x}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
