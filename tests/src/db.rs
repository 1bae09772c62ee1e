//! The server's database as the tests see it: a fresh one per test, on SQLite (a file in the test's
//! data directory) or, when `RIVERCHIEF_TEST_DATABASE_URL` names a PostgreSQL server, a new database
//! created on that server for the test (`riverchief_server::db::scratch::ScratchDb`), dropped when
//! the last clone of its `TestDb` is, so a long-lived server collects nothing. The same suite thus
//! runs on both backends.
//!
//! Tests read the database directly, the way an auditor would: row counts, and a digest of every row
//! of every table (equal digests before and after a refused request mean nothing was written).

use anyhow::Result;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use riverchief_server::db::scratch::ScratchDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the PostgreSQL server for the PostgreSQL pass
/// (e.g. `postgres://postgres@127.0.0.1:5433/postgres`).
pub const PG_ENV: &str = riverchief_server::db::scratch::TEST_DATABASE_ENV;

/// A test's database. Clones share it (servers of one test, instances behind a balancer); a
/// PostgreSQL one is dropped, with its connections, when the last clone is.
#[derive(Debug, Clone)]
pub enum TestDb {
    Sqlite(PathBuf),
    Pg(Arc<ScratchDb>),
}

#[derive(QueryableByName)]
struct Num {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

impl TestDb {
    /// A fresh database for a server whose data directory is `data_dir`: the SQLite default there,
    /// or a new PostgreSQL database when the PostgreSQL pass is on.
    pub fn fresh(data_dir: &Path) -> Result<TestDb> {
        match ScratchDb::server() {
            Some(admin) => Ok(TestDb::Pg(Arc::new(ScratchDb::create(&admin, "rc_test")?))),
            None => Ok(TestDb::Sqlite(data_dir.join("riverchief.sqlite3"))),
        }
    }

    /// The SQLite default inside `data_dir`, whatever the environment says.
    pub fn sqlite_in(data_dir: &Path) -> TestDb {
        TestDb::Sqlite(data_dir.join("riverchief.sqlite3"))
    }

    /// The `--database-url` to give the server (`None` = its SQLite default).
    pub fn url(&self) -> Option<String> {
        match self {
            TestDb::Sqlite(_) => None,
            TestDb::Pg(db) => Some(db.url().to_owned()),
        }
    }

    /// Where the database is, as `Db::open` takes it: the SQLite file's path or the PostgreSQL URL.
    pub fn location(&self) -> String {
        match self {
            TestDb::Sqlite(path) => path.to_string_lossy().into_owned(),
            TestDb::Pg(db) => db.url().to_owned(),
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, TestDb::Pg(_))
    }

    /// One number: `sql` is a query returning one numeric value.
    pub fn scalar(&self, sql: &str) -> Result<i64> {
        match self {
            TestDb::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                Ok(conn.query_row(sql, [], |r| r.get(0))?)
            }
            TestDb::Pg(db) => {
                let mut conn = PgConnection::establish(db.url())?;
                let row: Num = diesel::sql_query(format!("SELECT ({sql})::BIGINT AS n"))
                    .get_result(&mut conn)?;
                Ok(row.n)
            }
        }
    }

    /// A digest of every row of every table.
    pub fn digest(&self) -> Result<String> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match self {
            TestDb::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for t in tables {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1"))?;
                    let cols = stmt.column_count();
                    let mut rows = stmt.query([])?;
                    h.update(t.as_bytes());
                    while let Some(row) = rows.next()? {
                        for i in 0..cols {
                            let v: rusqlite::types::Value = row.get(i)?;
                            h.update(format!("{v:?}|").as_bytes());
                        }
                        h.update(b"\n");
                    }
                }
            }
            TestDb::Pg(db) => {
                let mut conn = PgConnection::establish(db.url())?;
                let tables: Vec<Name> = diesel::sql_query(
                    "SELECT table_name::TEXT AS name FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .load(&mut conn)?;
                for t in tables {
                    // Each row as its text form, sorted: order-independent and complete.
                    let row: Name = diesel::sql_query(format!(
                        "SELECT coalesce(md5(string_agg(t::TEXT, E'\\n' ORDER BY t::TEXT)), '') AS name FROM \"{}\" t",
                        t.name
                    ))
                    .get_result(&mut conn)?;
                    h.update(t.name.as_bytes());
                    h.update(row.name.as_bytes());
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}
