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
