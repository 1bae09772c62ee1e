//! All database code lives under this module: the schema, row types and query functions.
//!
//! Query functions take `&mut Conn` and return `QueryResult`, so they compose inside one transaction.
//! Handlers never touch a connection on an async thread: they go through [`Db::run`] (one call, one
//! pooled connection, run on the blocking pool) or [`Db::transaction`] (the same, inside one
//! transaction). The backend (SQLite or PostgreSQL) is chosen by the database URL ([`Location`]);
//! backend-specific SQL stays in [`backend`], each difference in one place.

pub mod alerts;
pub mod audit;
pub mod backend;
pub mod changes;
pub mod coverage;
pub mod flood;
pub mod issues;
pub mod logins;
pub mod mutations;
pub mod patrols;
pub mod photos;
pub mod schema;
pub mod scratch;
pub mod segments;
pub mod stock;
pub mod users;
pub mod webhooks;

pub(crate) use backend::insert_or_ignore;
pub use backend::{
    execute_batch, is_contention, lock, lock_in_order, savepoint, with_setup_lock,
    write_transaction, Backend, Lock,
};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The connection every query function takes: SQLite or PostgreSQL, one code path for both. Queries
/// written against it run on either; the few that cannot be written once are in [`backend`].
#[derive(diesel::MultiConnection)]
pub enum Conn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

pub type QueryResult<T> = diesel::QueryResult<T>;
/// Why a query failed. Code outside `db` names it only through this alias.
pub type QueryError = diesel::result::Error;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("opening the database: {0}")]
    Open(String),
    #[error("the database task failed: {0}")]
    Join(String),
}

/// Where the database is: a PostgreSQL URL, or the path of an SQLite file. Chosen by the URL
/// scheme, explicitly: SQLite would take any string as a file name.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://...` and `postgresql://...` are PostgreSQL; `sqlite://PATH` and anything without
    /// a scheme is an SQLite path; any other `scheme://` is refused rather than taken as a file name.
    pub fn parse(url_or_path: &str) -> Result<Location, String> {
        let s = url_or_path.trim();
        if s.is_empty() {
            return Err("the database URL is empty".into());
        }
        match s.split_once("://") {
            Some(("postgres" | "postgresql", _)) => Ok(Location::Postgres(s.to_owned())),
            Some(("sqlite", path)) if !path.is_empty() => Ok(Location::Sqlite(PathBuf::from(path))),
            Some((scheme, _)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                Err(format!(
                    "unsupported database URL scheme {scheme:?}: use postgres://... or an SQLite file path"
                ))
            }
            _ => Ok(Location::Sqlite(PathBuf::from(s))),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Shows the location with any password in a URL replaced by `***`, so it can be logged.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Makes the pool's connections, choosing the backend from the [`Location`] (diesel's own
/// `ConnectionManager` would try each backend in turn and lose the real error), and sets each new
/// connection up for its backend.
#[derive(Debug)]
pub struct Connector {
    location: Location,
}

/// The busy timeout makes SQLite writers queue instead of failing with SQLITE_BUSY; foreign keys are
/// off by default in SQLite. (WAL is set once, in [`Db::open_at`]: it is stored in the file.)
const SQLITE_SESSION: &str =
    "PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";
/// Timestamps are text the server formats itself, so this only keeps `now()` in logs and ad-hoc
/// queries in UTC.
const POSTGRES_SESSION: &str = "SET TIME ZONE 'UTC'";

impl Connector {
    fn establish(&self) -> Result<Conn, DbError> {
        let open = |e: diesel::ConnectionError| DbError::Open(format!("{}: {e}", self.location));
        let conn = match &self.location {
            Location::Sqlite(path) => {
                let mut c = SqliteConnection::establish(&path.to_string_lossy()).map_err(open)?;
                c.batch_execute(SQLITE_SESSION)?;
                Conn::Sqlite(c)
            }
            Location::Postgres(url) => {
                let mut c = PgConnection::establish(url).map_err(open)?;
                c.batch_execute(POSTGRES_SESSION)?;
                Conn::Pg(c)
            }
        };
        Ok(conn)
    }
}

impl ManageConnection for Connector {
    type Connection = Conn;
    type Error = DbError;

    fn connect(&self) -> Result<Conn, DbError> {
        self.establish()
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), DbError> {
        Ok(conn.ping()?)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// A pool of database connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Connector>,
    backend: Backend,
}

impl Db {
    /// Opens the database at `url_or_path` (see [`Location::parse`]), creating an SQLite file if
    /// needed, and runs the pending migrations.
    pub fn open(url_or_path: &str) -> Result<Db, DbError> {
        Db::open_at(&Location::parse(url_or_path).map_err(DbError::Open)?)
    }

    /// Opens the database (an SQLite file and its folder are created if missing) and runs the pending
    /// migrations.
    pub fn open_at(location: &Location) -> Result<Db, DbError> {
        if let Location::Sqlite(path) = location {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbError::Open(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let connector = Connector {
            location: location.clone(),
        };
        // One connection first, so that a database that cannot be reached says why (the pool would
        // only time out), and for what must happen once before the pool opens several.
        let mut first = connector.establish()?;
        if let Conn::Sqlite(c) = &mut first {
            // WAL lets readers run beside the one writer. Switching to it takes an exclusive lock, so
            // it is done here, before the pool opens several connections that would race for it.
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
        }
        migrate(&mut first)?;
        drop(first);
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .build(connector)?;
        Ok(Db {
            pool,
            backend: location.backend(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs the pending migrations.
    pub fn migrate(&self) -> Result<(), DbError> {
        migrate(&mut *self.pool.get()?)
    }

    /// A connection for synchronous code (start-up, CLI commands). Never call this on an async thread.
    pub fn conn(&self) -> Result<PooledConnection<Connector>, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::Join(e.to_string())))?
    }

    /// Runs `f` inside one write transaction on the blocking thread pool: everything `f` writes
    /// commits together before this returns, or nothing does.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        self.run(move |conn| write_transaction(conn, f)).await
    }
}

/// Runs the pending migrations of the connection's backend, under the start-up lock so that instances
/// starting together do not migrate twice.
pub fn migrate(conn: &mut Conn) -> Result<(), DbError> {
    with_setup_lock(conn, |conn| {
        let outcome = match conn {
            Conn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(drop),
            Conn::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop),
        };
        outcome.map_err(|e| DbError::Migration(e.to_string()))
    })
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text order is time order. All
/// nine fractional digits are kept: a device time must come back exactly as the device sent it.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The stamp of a row written now (`created_at`, `recorded_at`): when it was written, never a
/// judgement. This is the one clock the database layer reads; everything that judges time (deadlines,
/// overdue, expiry, leases) takes `now` from the edge as a parameter.
pub fn written_now() -> String {
    ts(chrono::Utc::now())
}

/// Answers once the database does (`GET /healthz`).
pub fn ping(conn: &mut Conn) -> QueryResult<()> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT 1").execute(conn).map(drop)
}

/// A failed query's message when it broke a unique constraint.
pub fn unique_violation(e: &QueryError) -> Option<&str> {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ) => Some(info.message()),
        _ => None,
    }
}

/// A stored row that does not parse (a corrupt row), as a query error.
pub fn corrupt_row<E: std::error::Error + Send + Sync + 'static>(e: E) -> QueryError {
    diesel::result::Error::DeserializationError(Box::new(e))
}

/// Parses a stored timestamp; a malformed one is a corrupt row, reported as a deserialization error.
pub fn parse_ts(s: &str) -> QueryResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// Parses a stored id (the same corrupt-row rule as [`parse_ts`]).
pub fn parse_id<T: std::str::FromStr>(s: &str) -> QueryResult<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse::<T>()
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}
