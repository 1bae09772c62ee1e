//! All database code lives under this module: the schema, row types and query functions.
//!
//! Query functions take `&mut Conn` and return `QueryResult`, so they compose inside one transaction.
//! Handlers never touch a connection on an async thread: they go through [`Db::run`] (one call, one
//! pooled connection, run on the blocking pool) or [`Db::transaction`] (the same, inside one
//! transaction). Backend-specific SQL stays in this module, each difference in one place.

pub mod changes;
pub mod issues;
pub mod mutations;
pub mod patrols;
pub mod photos;
pub mod schema;
pub mod segments;
pub mod users;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;
use std::time::Duration;

/// The connection type every query function takes.
pub type Conn = SqliteConnection;
pub type QueryResult<T> = diesel::QueryResult<T>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

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

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // The busy timeout makes writers queue instead of failing with SQLITE_BUSY; foreign keys are
        // off by default in SQLite. (WAL is set once, in `open_sqlite`: it is stored in the file.)
        conn.batch_execute(
            "PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A pool of database connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<Conn>>,
}

impl Db {
    /// Opens (creating if needed) the SQLite database at `path` and runs the pending migrations.
    pub fn open_sqlite(path: &Path) -> Result<Db, DbError> {
        // WAL lets readers run beside the one writer. Switching to it takes an exclusive lock, so it
        // is done here on one connection, before the pool opens several at once and they race for it.
        {
            let mut first = SqliteConnection::establish(&path.to_string_lossy())
                .map_err(|e| DbError::Open(e.to_string()))?;
            first.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL;")?;
        }
        let manager = ConnectionManager::<Conn>::new(path.to_string_lossy());
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(manager)?;
        let db = Db { pool };
        db.migrate()?;
        Ok(db)
    }

    /// Runs the pending migrations.
    pub fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get()?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(())
    }

    /// A connection for synchronous code (start-up, CLI commands). Never call this on an async thread.
    pub fn conn(&self) -> Result<PooledConnection<ConnectionManager<Conn>>, DbError> {
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

    /// Runs `f` inside one transaction on the blocking thread pool: everything `f` writes commits
    /// together before this returns, or nothing does.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        self.run(move |conn| write_transaction(conn, f)).await
    }
}

/// Runs `f` in a write transaction. On SQLite it is `BEGIN IMMEDIATE`, which takes the write lock up
/// front so that two writers never deadlock upgrading from read to write.
pub fn write_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    conn.immediate_transaction(f)
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text order is time order. All
/// nine fractional digits are kept: a device time must come back exactly as the device sent it.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
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
