//! Building and running the HTTP application: [`Application::build`] opens the data directory, migrates
//! the database, binds the listener (port 0 picks a free port, which tests use) and reports the port.

use crate::db::{Db, Location};
use crate::error::{json_config, path_config, query_config};
use crate::photo_store::PhotoStore;
use crate::state::AppState;
use actix_web::{web, App, HttpServer};
use riverchief_shared::Limits;
use std::net::TcpListener;
use std::path::PathBuf;

/// How to run the server. Every field has a command-line flag and a `RIVERCHIEF_*` variable (see cli).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:8080`; port 0 picks a free one.
    pub bind: String,
    /// Where photos and partial uploads live, and the SQLite file unless `database_url` says otherwise.
    pub data_dir: PathBuf,
    /// The database: a `postgres://` URL or an SQLite file path (see [`Location::parse`]); `None` is
    /// the SQLite file `<data_dir>/riverchief.sqlite3`.
    pub database_url: Option<String>,
    /// Seed the Qinhuai demo world (idempotent).
    pub demo: bool,
    /// Fixed password for every demo user (for drills and tests); generated and printed when absent.
    pub demo_password: Option<String>,
    /// What the dashboard page is told (`/config.json`): the base map's tile URL.
    pub dashboard: crate::routes::dashboard::DashboardConfig,
    pub limits: Limits,
    /// HTTP worker threads; `None` = one per core.
    pub workers: Option<usize>,
    /// Where photos and upload chunks are kept: `s3://BUCKET/PREFIX` or `file:///PATH` (see
    /// [`PhotoStore::open`]); `None` is the data directory.
    pub photo_store: Option<String>,
    /// What counts as covered, and how often segments must be covered per flood stage.
    pub coverage: crate::coverage::Policy,
    /// Background housekeeping: change-log compaction and the stale-upload sweep.
    pub housekeeping: crate::maintenance::Housekeeping,
    /// The flood watch's rules (hysteresis margin, rapid rise).
    pub flood: crate::flood::Settings,
    /// The scheduled check's period, the lot-expiry window and the acceptance time (which the issue
    /// lists judge escalations by too).
    pub checks: crate::checks::Settings,
    /// The live alert stream's timing, and webhook retries (backoff base and cap, attempts).
    pub delivery: crate::delivery::DeliveryConfig,
    /// Failed logins allowed per username and per address before 429.
    pub login: crate::auth::LoginLimits,
}

impl Config {
    pub fn new(bind: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            bind: bind.into(),
            data_dir: data_dir.into(),
            database_url: None,
            demo: false,
            demo_password: None,
            dashboard: Default::default(),
            limits: Limits::DEFAULT,
            workers: None,
            photo_store: None,
            coverage: crate::coverage::Policy::default(),
            housekeeping: crate::maintenance::Housekeeping::default(),
            flood: crate::flood::Settings::default(),
            checks: crate::checks::Settings::default(),
            delivery: crate::delivery::DeliveryConfig::default(),
            login: crate::auth::LoginLimits::default(),
        }
    }

    /// The default SQLite file, used when no database URL is given.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("riverchief.sqlite3")
    }

    /// Where the database is.
    pub fn database(&self) -> anyhow::Result<Location> {
        match &self.database_url {
            Some(url) => Location::parse(url).map_err(|e| anyhow::anyhow!("--database-url: {e}")),
            None => Ok(Location::Sqlite(self.database_path())),
        }
    }
}

/// The data directory opened and migrated, ready to serve or to run an admin command on.
pub struct Opened {
    pub db: Db,
    pub photos: PhotoStore,
    /// Demo users and their passwords, when the demo was seeded now.
    pub demo_users: Vec<(String, String)>,
}

/// Opens the data directory: creates it, opens and migrates the database, seeds the demo if asked.
/// Blocking: call it from start-up code or `spawn_blocking`.
pub fn open(config: &Config) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&config.data_dir)?;
    let location = config.database()?;
    let db = Db::open_at(&location)?;
    let photos = PhotoStore::open(&config.data_dir, config.photo_store.as_deref())?;
    let mut conn = db.conn()?;
    // Instances starting together on one PostgreSQL make the epoch and seed the demo one at a time.
    let demo_users = crate::db::with_setup_lock(&mut conn, |conn| -> anyhow::Result<_> {
        crate::db::changes::epoch(conn)?;
        if config.demo {
            crate::demo::seed(conn, config.demo_password.as_deref(), chrono::Utc::now())
        } else {
            Ok(Vec::new())
        }
    })?;
    drop(conn);
    Ok(Opened {
        db,
        photos,
        demo_users,
    })
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    shutdown: crate::delivery::CancellationToken,
    /// Demo users and their passwords, when the demo was seeded by this start.
    pub demo_users: Vec<(String, String)>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let cfg = config.clone();
        let dashboard = web::Data::new(config.dashboard.clone());
        let opened = tokio::task::spawn_blocking(move || open(&cfg)).await??;
        match opened
            .photos
            .sweep_stale_uploads(&opened.db, crate::photo_store::STALE_UPLOAD_AGE)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "deleted stale partial uploads"),
            Err(e) => tracing::warn!(error = %e, "sweeping stale partial uploads"),
        }
        let sweep_db = opened.db.clone();
        match sweep_db
            .run(|conn| -> Result<usize, crate::error::AppError> {
                Ok(crate::drill::sweep(conn, chrono::Utc::now())?)
            })
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "ended drills whose replay died"),
            Err(e) => tracing::warn!(error = %e, "ending drills left running"),
        }
        let listener = TcpListener::bind(&config.bind)?;
        let port = listener.local_addr()?.port();
        // Every background task ends with this token, when the server stops.
        let shutdown = crate::delivery::CancellationToken::new();
        crate::maintenance::spawn(
            opened.db.clone(),
            opened.photos.clone(),
            config.housekeeping,
            shutdown.clone(),
        );
        if let Some(period) = config.checks.period {
            crate::schedule::checks(
                opened.db.clone(),
                config.coverage,
                config.checks,
                period,
                shutdown.clone(),
            );
        }
        let alert_feed = crate::delivery::feed::start(
            opened.db.clone(),
            config.delivery.stream_poll,
            shutdown.clone(),
        )
        .await;
        tokio::spawn(crate::delivery::worker::run(
            opened.db.clone(),
            config.delivery,
            shutdown.clone(),
        ));
        let state = web::Data::new(AppState {
            db: opened.db,
            photos: opened.photos,
            limits: config.limits,
            coverage: config.coverage,
            flood: config.flood,
            delivery: config.delivery,
            alert_feed,
            shutdown: shutdown.clone(),
            login: config.login,
            checks: config.checks,
        });
        let limits = config.limits;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let server = HttpServer::new(move || {
            let m = metrics.clone();
            App::new()
                .app_data(state.clone())
                .app_data(web::Data::from(metrics.clone()))
                .app_data(json_config(limits.max_push_bytes))
                .app_data(query_config())
                .app_data(dashboard.clone())
                .app_data(path_config())
                .wrap(tracing_actix())
                .wrap_fn(move |req, srv| crate::metrics::track(m.clone(), req, srv))
                .configure(crate::routes::configure)
                // Outside `/api/v1` too, a path nobody serves is a 404 in the JSON envelope.
                .default_service(web::to(crate::routes::not_found))
        })
        .listen(listener);
        let mut server = match server {
            // Stopping goes through `AppHandle::stop`, which first ends the streams (actix would
            // wait for them); the command line turns SIGINT and SIGTERM into that.
            Ok(s) => s.disable_signals(),
            Err(e) => {
                shutdown.cancel();
                return Err(e.into());
            }
        };
        if let Some(w) = config.workers {
            server = server.workers(w);
        }
        Ok(Application {
            port,
            server: server.run(),
            shutdown,
            demo_users: opened.demo_users,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        AppHandle {
            server: self.server.handle(),
            shutdown: self.shutdown.clone(),
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
}

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct AppHandle {
    server: actix_web::dev::ServerHandle,
    shutdown: crate::delivery::CancellationToken,
}

impl AppHandle {
    /// Ends the live streams and the background tasks, then stops the server (`graceful`: the
    /// requests in flight finish first).
    pub async fn stop(&self, graceful: bool) {
        self.shutdown.cancel();
        self.server.stop(graceful).await;
    }
}
