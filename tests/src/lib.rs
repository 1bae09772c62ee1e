//! The end-to-end harness: real servers (in-process on port 0, or as a child process that can be
//! killed), real clients in temp folders, a TCP proxy that plays a bad mobile network, and helpers that
//! look into the server's SQLite file the way an auditor would.

use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use riverchief_server::{Application, Config};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod bench;
pub mod db;
pub mod proxy;
pub use db::TestDb;
pub use proxy::{NetMode, Proxy};

/// The password every demo user gets in tests.
pub const DEMO_PASSWORD: &str = "demo-password-for-tests";

/// A server running inside the test process on its own actix system, on a fresh data directory and
/// a fresh database (see [`TestDb`]).
pub struct TestServer {
    pub port: u16,
    pub data_dir: PathBuf,
    pub db: TestDb,
    handle: riverchief_server::app::AppHandle,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A fresh server with the demo world.
    pub async fn start() -> Result<TestServer> {
        Self::start_fresh(false).await
    }

    /// A fresh server with the demo world, its configuration changed by `configure` first (flood
    /// rules, intervals, ...).
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Result<TestServer> {
        let tmp = tempfile::tempdir()?;
        let db = TestDb::fresh(tmp.path())?;
        let mut s = Self::start_on_with(tmp.path(), &db, 0, configure).await?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// The server's database, opened from the test (for library calls with the test's own clock,
    /// such as `riverchief_server::checks::run`).
    pub fn open_db(&self) -> Result<riverchief_server::db::Db> {
        Ok(riverchief_server::db::Db::open(&self.db.location())?)
    }

    /// A fresh server; on SQLite when `force_sqlite`, whatever the PostgreSQL pass says.
    pub async fn start_fresh(force_sqlite: bool) -> Result<TestServer> {
        let tmp = tempfile::tempdir()?;
        let db = if force_sqlite {
            TestDb::sqlite_in(tmp.path())
        } else {
            TestDb::fresh(tmp.path())?
        };
        let mut s = Self::start_on(tmp.path(), &db, 0).await?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// A server on an existing data directory and database, on a given port (0 = any free port).
    /// Several may share one data directory and database: that is how instances behind a load
    /// balancer run.
    pub async fn start_on(data_dir: &Path, db: &TestDb, port: u16) -> Result<TestServer> {
        Self::start_on_with(data_dir, db, port, |_| {}).await
    }

    /// [`TestServer::start_on`], the configuration changed by `configure` first.
    pub async fn start_on_with(
        data_dir: &Path,
        db: &TestDb,
        port: u16,
        configure: impl FnOnce(&mut Config),
    ) -> Result<TestServer> {
        let mut config = Config::new(format!("127.0.0.1:{port}"), data_dir);
        config.database_url = db.url();
        config.demo = true;
        config.demo_password = Some(DEMO_PASSWORD.to_owned());
        config.workers = Some(2);
        configure(&mut config);
        let app = Application::build(config).await?;
        let port = app.port();
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let s = TestServer {
            port,
            data_dir: data_dir.to_path_buf(),
            db: db.clone(),
            handle,
            _tmp: None,
        };
        wait_healthy(&s.url()).await?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops accepting and finishes the requests in flight.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.handle.stop(true).await;
        self._tmp
    }
}

pub async fn wait_healthy(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("server at {base} never became healthy")
}

/// Resident set size of process `pid` in bytes (Linux, from `/proc/<pid>/status`).
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    Ok(kb * 1024)
}

/// A server running as a child process (the real binary), so that tests can SIGKILL it.
pub struct ServerProcess {
    pub port: u16,
    pub data_dir: PathBuf,
    child: Child,
}

impl ServerProcess {
    /// Starts `BINARY serve --demo` on `data_dir`; `port` 0 picks a free one. `binary` is the
    /// server executable (`env!("CARGO_BIN_EXE_rc-server")` from a test).
    pub async fn start(
        binary: &str,
        data_dir: &Path,
        db: &TestDb,
        port: u16,
    ) -> Result<ServerProcess> {
        Self::start_with(binary, data_dir, db, port, &[]).await
    }

    /// [`ServerProcess::start`] with more `serve` flags.
    pub async fn start_with(
        binary: &str,
        data_dir: &Path,
        db: &TestDb,
        port: u16,
        extra: &[&str],
    ) -> Result<ServerProcess> {
        let mut cmd = Command::new(binary);
        // The scheduled checks are off, as in the in-process servers: tests run them with their
        // own clock.
        cmd.args([
            "serve",
            "--demo",
            "--workers",
            "2",
            "--check-period-seconds",
            "0",
        ]);
        cmd.args(extra);
        if let Some(url) = db.url() {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--demo-password")
            .arg(DEMO_PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the server")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let port = tokio::task::spawn_blocking(move || -> Result<u16> {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line?;
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let port = addr.rsplit(':').next().unwrap_or_default().trim().parse()?;
                    // Keep draining stdout so the child never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return Ok(port);
                }
            }
            bail!("the server exited before it listened")
        })
        .await??;
        let p = ServerProcess {
            port,
            data_dir: data_dir.to_path_buf(),
            child,
        };
        wait_healthy(&p.url()).await?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, as a service manager stops it; waits (at most `patience`) for the process to exit and
    /// returns whether it exited successfully.
    pub async fn terminate(mut self, patience: Duration) -> Result<bool> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                bail!("the server did not exit within {patience:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that nothing listens on (yet).
pub fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Logs in over HTTP and returns the bearer token.
pub async fn login(base: &str, username: &str) -> Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": DEMO_PASSWORD, "device_name": "e2e"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login {username}: {} {}", r.status(), r.text().await?);
    }
    let body: serde_json::Value = r.json().await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no token in {body}"))
}

/// Bytes that sniff as a JPEG (SOI + JFIF APP0 marker), then `len` pseudo-random bytes from `seed`.
pub fn fake_jpeg(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let body_len = len.saturating_sub(bytes.len() + 2);
    bytes.extend((0..body_len).map(|_| rng.random::<u8>()));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// Writes a fake JPEG into `dir` and returns its path.
pub fn photo_file(dir: &Path, name: &str, len: usize, seed: u64) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, fake_jpeg(len, seed))?;
    Ok(path)
}

/// A straight walk along a segment line from `from` to `to` (fractions of its vertex path), `n`
/// points one second apart, starting at `t0`.
pub fn walk(
    line: &[[f64; 2]],
    n: usize,
    t0: chrono::DateTime<chrono::Utc>,
) -> Vec<riverchief_shared::domain::TrackPoint> {
    use riverchief_shared::geo::{Lat, Lon};
    let segs = line.len().saturating_sub(1).max(1);
    (0..n)
        .filter_map(|i| {
            let f = i as f64 / (n.max(2) - 1) as f64 * segs as f64;
            let k = (f.floor() as usize).min(segs - 1);
            let r = f - k as f64;
            let a = line.get(k)?;
            let b = line.get(k + 1).unwrap_or(a);
            Some(riverchief_shared::domain::TrackPoint {
                t: t0 + chrono::Duration::seconds(i as i64),
                lon: Lon::parse(a[0] + (b[0] - a[0]) * r, "lon").ok()?,
                lat: Lat::parse(a[1] + (b[1] - a[1]) * r, "lat").ok()?,
                accuracy_m: Some(5.0),
                crs: None,
                mock: false,
            })
        })
        .collect()
}

/// Counters shared with a running proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the client sent towards the server.
    pub upstream: AtomicU64,
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
}

/// Copies one direction, counting, until EOF or until `limit` bytes have passed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Option<(Arc<Counters>, Arc<AtomicU64>)>,
    stop: Arc<AtomicBool>,
    rate: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut n = n;
        if let Some((counters, budget)) = &counter {
            // The budget is the bytes the network may still carry before the "signal" drops; it is
            // shared by every connection, and after one cut it is unlimited again.
            let left = budget.load(Ordering::SeqCst);
            if left != u64::MAX {
                if (n as u64) >= left {
                    n = left as usize;
                    budget.store(u64::MAX, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                    counters.cuts.fetch_add(1, Ordering::SeqCst);
                } else {
                    budget.fetch_sub(n as u64, Ordering::SeqCst);
                }
            }
            counters.upstream.fetch_add(n as u64, Ordering::SeqCst);
        }
        if n > 0 && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        // A slow link: bytes per second, 0 for unlimited.
        let bps = rate.load(Ordering::SeqCst);
        if bps > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bps as f64)).await;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    let _ = to.shutdown().await;
}

pub(crate) async fn splice(
    client: TcpStream,
    target: u16,
    counters: Arc<Counters>,
    budget: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let up = tokio::spawn(pump(
        cr,
        sw,
        Some((counters, budget)),
        stop.clone(),
        rate.clone(),
    ));
    let down = tokio::spawn(pump(sr, cw, None, stop.clone(), rate));
    let _ = up.await;
    // Once the upstream is cut, the downstream goes too: the phone lost its signal.
    stop.store(true, Ordering::SeqCst);
    down.abort();
}

pub(crate) async fn accept_loop(listener: TcpListener, f: impl Fn(TcpStream) + Send + 'static) {
    while let Ok((s, _)) = listener.accept().await {
        f(s);
    }
}

/// A random id-like tag for test names.
pub fn tag() -> String {
    format!("{:08x}", rand::rng().random::<u32>())
}

/// Sends a photo as a standard tus client does: `POST /api/v1/uploads` with its digest and type, then
/// the whole body in one `PATCH` (for benchmarks; the client core has its own resumable uploader).
pub async fn tus_upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    bytes: Vec<u8>,
) -> Result<()> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let sha = riverchief_shared::photo::Sha256::of(&bytes).hex();
    let r = http
        .post(format!("{base}/api/v1/uploads"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", bytes.len().to_string())
        .header(
            "Upload-Metadata",
            format!("sha256 {},content_type {}", b64(&sha), b64("image/jpeg")),
        )
        .send()
        .await?;
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("no Location: {}", r.status()))?
        .to_owned();
    let url = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let r = http
        .patch(url)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await?;
    if r.status().as_u16() != 204 {
        bail!("upload failed: {}", r.status());
    }
    Ok(())
}
