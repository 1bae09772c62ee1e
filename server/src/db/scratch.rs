//! Throwaway PostgreSQL databases for tests: the one harness every test suite uses. The PostgreSQL
//! pass of `scripts/test` names a server in [`TEST_DATABASE_ENV`]; each test makes its own database
//! there ([`ScratchDb::create`]), which is dropped, with its connections, when the guard is.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The environment variable naming the PostgreSQL server of the test pass
/// (`postgres://postgres@127.0.0.1:PORT/postgres`).
pub const TEST_DATABASE_ENV: &str = "RIVERCHIEF_TEST_DATABASE_URL";

/// Why a test database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("{TEST_DATABASE_ENV}: cannot connect: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("creating a test database: {0}")]
    Create(#[from] diesel::result::Error),
}

/// A database made for one test, dropped when this is dropped.
#[derive(Debug)]
pub struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    /// The server [`TEST_DATABASE_ENV`] names, when the PostgreSQL pass is on.
    pub fn server() -> Option<String> {
        std::env::var(TEST_DATABASE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
    }

    /// A new, empty database `<prefix>_<random>` on the server `admin`.
    pub fn create(admin: &str, prefix: &str) -> Result<ScratchDb, ScratchError> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        PgConnection::establish(admin)?.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(ScratchDb {
            url: with_database(admin, &name),
            admin: admin.to_owned(),
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin) {
            let drop_it = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = admin.batch_execute(&drop_it) {
                tracing::warn!(database = %self.name, error = %e, "dropping a test database");
            }
        }
    }
}

/// `url` with its database name replaced by `name` (a query string is kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    format!("{scheme}://{authority}/{name}{query}")
}
