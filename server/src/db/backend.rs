//! Where SQLite and PostgreSQL differ. Every other query function is written once, against [`Conn`];
//! each difference below is one `match` on the backend, and nothing outside this file needs one.
//!
//! - Write transactions ([`write_transaction`]): SQLite `BEGIN IMMEDIATE` takes the one write lock up
//!   front; PostgreSQL starts a plain `BEGIN` (READ COMMITTED) and orders writers with the locks below.
//! - Locks held to the end of the transaction ([`lock`]): on PostgreSQL, transaction-scoped advisory
//!   locks; on SQLite nothing, because `BEGIN IMMEDIATE` already admits one writer at a time.
//! - A lock held across start-up work that several instances may race on ([`with_setup_lock`]).
//! - `INSERT OR IGNORE` / `ON CONFLICT DO NOTHING` ([`insert_or_ignore!`]), and multi-row inserts
//!   ([`execute_batch`]), which diesel's `MultiConnection` cannot express.
//! - Which errors mean "a concurrent writer got there first; try again" ([`is_contention`]).
//!
//! Lock order (PostgreSQL): a transaction takes its mutation locks first, in key order (a push
//! request's transaction takes those of all its mutations, [`lock_in_order`]; a readings
//! transaction takes one readings lock instead); then its issue locks, in key order; then row
//! locks as it writes; the change-log lock last, after which it only reads and
//! appends rows nobody else can conflict with (change-log rows, its own journal row). Every
//! transaction takes them in that order, so they cannot deadlock one another.

use super::Conn;
use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::Integer;
use diesel::{PgConnection, RunQueryDsl, SqliteConnection};
use riverchief_shared::id::{IssueId, MutationId};
use uuid::Uuid;

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Conn {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Pg(_) => Backend::Postgres,
        }
    }
}

/// Runs `f` under a savepoint of the caller's transaction: when `f` fails, what it wrote is rolled
/// back and the transaction goes on (the grouped push's one mutation refused alone).
pub fn savepoint<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<Error>,
{
    conn.transaction(f)
}

/// Runs `f` in a write transaction: everything it writes commits together, or nothing does.
///
/// SQLite: `BEGIN IMMEDIATE`, which takes the write lock up front, so two writers never deadlock
/// upgrading from read to write, and writers run one after another.
/// PostgreSQL: `BEGIN` at READ COMMITTED; writers run side by side and take the [`lock`]s they need.
/// A transaction does not nest: inside one, this fails (on both backends alike).
///
/// Like diesel's own `Connection::transaction`: a failed commit has already been rolled back by the
/// transaction manager and is returned; when `f` fails the transaction is rolled back and `f`'s error
/// returned, unless the rollback itself fails (then that error, since the connection is suspect).
pub fn write_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<Error>,
{
    type Manager = <Conn as Connection>::TransactionManager;
    // Begin on the inner connection with our own SQL; `Conn`'s transaction manager delegates to the
    // inner one, so the commit or rollback below finds the transaction diesel recorded as open.
    match conn {
        Conn::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        // Said explicitly: the locks in this module are designed for it, whatever the server's default.
        Conn::Pg(inner) => AnsiTransactionManager::begin_transaction_sql(
            inner,
            "BEGIN ISOLATION LEVEL READ COMMITTED",
        )?,
    }
    match f(conn) {
        Ok(value) => {
            let committed = Manager::commit_transaction(conn);
            super::changes::transaction_ended(committed.is_ok());
            committed?;
            Ok(value)
        }
        Err(user_error) => {
            super::changes::transaction_ended(false);
            match Manager::rollback_transaction(conn) {
                Ok(()) | Err(Error::BrokenTransactionManager) => Err(user_error),
                Err(rollback_error) => Err(rollback_error.into()),
            }
        }
    }
}

/// What a transaction may lock until it ends.
#[derive(Debug, Clone, Copy)]
pub enum Lock {
    /// The change log: held from just before a transaction takes its first change-log `seq` until it
    /// commits, so that change-writing transactions take their `seq`s and commit in the same order
    /// (see `db::changes` and ARCHITECTURE.md, "Why the change log is correct").
    ChangeLog,
    /// One mutation id: the same mutation arriving at two instances at once is applied by one; the
    /// other waits, then finds its journal row and answers `duplicate`.
    Mutation(MutationId),
    /// One issue: lifecycle steps on an issue are judged against its latest committed status.
    Issue(IssueId),
    /// One station's series of readings (the real one, or a drill's): batches for it are folded one
    /// after another, so two feeds posting the same readings at once store each time once, and a
    /// drill's replay step and its stop do not interleave. Taken first in its transaction.
    Readings { station: Uuid, drill: Option<Uuid> },
}

/// Namespaces of the two-key advisory locks (PostgreSQL keeps the two-key space apart from the
/// one-key space, so these never collide with locks other software takes with one `bigint`).
const NS_CHANGE_LOG: i32 = 0x7263_0001;
const NS_MUTATION: i32 = 0x7263_0002;
const NS_ISSUE: i32 = 0x7263_0003;
/// Held (session-scoped) while one instance migrates or seeds at start-up.
const NS_SETUP: i32 = 0x7263_0004;
const NS_READINGS: i32 = 0x7263_0005;

impl Lock {
    fn key(self) -> (i32, i32) {
        match self {
            Lock::ChangeLog => (NS_CHANGE_LOG, 0),
            Lock::Mutation(id) => (NS_MUTATION, fold(id.as_uuid())),
            Lock::Issue(id) => (NS_ISSUE, fold(id.as_uuid())),
            Lock::Readings { station, drill } => {
                (NS_READINGS, fold(&station) ^ drill.as_ref().map_or(0, fold))
            }
        }
    }
}

/// 32 bits of a UUID for a lock key, mixing all of it (a UUIDv7 starts with its timestamp, so ids
/// made in the same millisecond share their first bytes). Two ids that fold alike merely wait for
/// each other.
fn fold(id: &Uuid) -> i32 {
    let b = id.as_bytes();
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    i32::from_be_bytes((word(0) ^ word(4) ^ word(8) ^ word(12)).to_be_bytes())
}

/// Takes `what` until the current transaction ends (commit or rollback). Taking a lock the
/// transaction already holds returns at once. Call it only inside a transaction.
pub fn lock(conn: &mut Conn, what: Lock) -> diesel::QueryResult<()> {
    match conn {
        // One writer at a time already (`BEGIN IMMEDIATE`).
        Conn::Sqlite(_) => Ok(()),
        Conn::Pg(pg) => {
            let (ns, key) = what.key();
            diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind::<Integer, _>(ns)
                .bind::<Integer, _>(key)
                .execute(pg)
                .map(drop)
        }
    }
}

/// Takes each of `locks` until the current transaction ends, in the order of their keys (sorted
/// in place, repeats dropped), so that two transactions taking several locks of one kind (the
/// mutation ids of two push requests that overlap) take them in the same order and never wait for
/// each other in a cycle. On SQLite nothing, as for [`lock`].
pub fn lock_in_order(conn: &mut Conn, locks: &mut Vec<Lock>) -> diesel::QueryResult<()> {
    if conn.backend() == Backend::Sqlite {
        return Ok(());
    }
    locks.sort_by_key(|l| l.key());
    locks.dedup_by_key(|l| l.key());
    for l in locks.iter() {
        lock(conn, *l)?;
    }
    Ok(())
}

/// Runs `f` while holding the start-up lock, so that instances starting together on one PostgreSQL
/// migrate and seed one after another (the second finds the work done). The lock belongs to the
/// session, not to a transaction: `f` may run several. On SQLite it runs `f` as it is.
pub fn with_setup_lock<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<Error>,
{
    if conn.backend() == Backend::Sqlite {
        return f(conn);
    }
    setup_lock_sql(conn, "SELECT pg_advisory_lock($1, 0)")?;
    let outcome = f(conn);
    // Released even when `f` failed; a connection that cannot release it is broken and drops it.
    let unlocked = setup_lock_sql(conn, "SELECT pg_advisory_unlock($1, 0)");
    let value = outcome?;
    unlocked?;
    Ok(value)
}

fn setup_lock_sql(conn: &mut Conn, sql: &str) -> diesel::QueryResult<()> {
    diesel::sql_query(sql)
        .bind::<Integer, _>(NS_SETUP)
        .execute(conn)
        .map(drop)
}

/// Whether a failed transaction lost a race with a concurrent one and may succeed if run again: a
/// unique violation (someone inserted the same key first), PostgreSQL's serialization failure, or a
/// deadlock (which diesel reports only by its message; SQLSTATE 40P01).
pub fn is_contention(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
        | Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// Executes a multi-row `INSERT` (`diesel::insert_into(t).values(&rows)`) on the inner connection.
/// diesel's `MultiConnection` cannot run one built from `column.eq(value)` tuples (SQLite inserts
/// such rows through its own connection-specific path), so each backend runs it natively.
pub fn execute_batch<Q>(conn: &mut Conn, insert: Q) -> diesel::QueryResult<usize>
where
    Q: ExecuteDsl<SqliteConnection> + ExecuteDsl<PgConnection>,
{
    match conn {
        Conn::Sqlite(inner) => ExecuteDsl::<SqliteConnection>::execute(insert, inner),
        Conn::Pg(inner) => ExecuteDsl::<PgConnection>::execute(insert, inner),
    }
}

/// `INSERT OR IGNORE` on SQLite, `INSERT ... ON CONFLICT DO NOTHING` on PostgreSQL: inserts `values`
/// into `table` unless a row with the same key exists; evaluates to the number of rows inserted
/// (`QueryResult<usize>`). A macro because diesel's `MultiConnection` has no conflict clause and the
/// statement types of the two are not nameable in a function signature.
///
/// `insert_or_ignore!(conn, meta::table, (meta::key.eq("epoch"), meta::value.eq(&fresh)))`
macro_rules! insert_or_ignore {
    ($conn:expr, $table:expr, $values:expr $(,)?) => {{
        let conn: &mut $crate::db::Conn = $conn;
        match conn {
            $crate::db::Conn::Sqlite(inner) => diesel::RunQueryDsl::execute(
                diesel::insert_or_ignore_into($table).values($values),
                inner,
            ),
            $crate::db::Conn::Pg(inner) => diesel::RunQueryDsl::execute(
                diesel::insert_into($table)
                    .values($values)
                    .on_conflict_do_nothing(),
                inner,
            ),
        }
    }};
}
pub(crate) use insert_or_ignore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_mixes_every_part_of_the_id() {
        let a = Uuid::from_u128(0x0192_f0c1_a2b3_7c4d_8e9f_a0b1_c2d3_e4f5);
        let b = Uuid::from_u128(0x0192_f0c1_a2b3_7c4d_8e9f_a0b1_c2d3_e4f6);
        let c = Uuid::from_u128(0x0192_f0c1_a2b4_7c4d_8e9f_a0b1_c2d3_e4f5);
        assert_ne!(fold(&a), fold(&b));
        assert_ne!(fold(&a), fold(&c));
        assert_eq!(fold(&a), fold(&a));
    }
}
