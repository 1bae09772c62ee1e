//! Building and running the HTTP application: [`Application::build`] opens the data directory, migrates
//! the database, binds the listener (port 0 picks a free port, which tests use) and reports the port.

use crate::db::{Db, Location};
use crate::error::{json_config, path_config, query_config};
use crate::photo_store::PhotoStore;
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

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub photos: PhotoStore,
    pub limits: Limits,
    pub coverage: crate::coverage::Policy,
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
            crate::demo::seed(conn, config.demo_password.as_deref())
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
    /// Demo users and their passwords, when the demo was seeded by this start.
    pub demo_users: Vec<(String, String)>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let cfg = config.clone();
        let dashboard = web::Data::new(config.dashboard.clone());
        let opened = tokio::task::spawn_blocking(move || open(&cfg)).await??;
        match crate::routes::uploads::sweep_stale_uploads(
            &opened.db,
            &opened.photos,
            crate::routes::uploads::STALE_UPLOAD_AGE,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "deleted stale partial uploads"),
            Err(e) => tracing::warn!(error = %e, "sweeping stale partial uploads"),
        }
        let listener = TcpListener::bind(&config.bind)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            db: opened.db,
            photos: opened.photos,
            limits: config.limits,
            coverage: config.coverage,
        });
        let limits = config.limits;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(json_config(limits.max_push_bytes))
                .app_data(query_config())
                .app_data(dashboard.clone())
                .app_data(path_config())
                .wrap(tracing_actix())
                .configure(crate::routes::configure)
        })
        .listen(listener)?;
        if let Some(w) = config.workers {
            server = server.workers(w);
        }
        Ok(Application {
            port,
            server: server.run(),
            demo_users: opened.demo_users,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
}
