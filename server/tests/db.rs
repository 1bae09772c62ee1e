//! The database layer on both backends: schema parity, migrations that revert, a change log whose
//! cursor never skips a row under concurrent writers, and idempotent push across instances.
//!
//! Every test runs on a fresh SQLite file, and on a fresh PostgreSQL database when
//! `RIVERCHIEF_TEST_DATABASE_URL` names a server (`postgres://postgres@127.0.0.1:PORT/postgres`): each
//! test creates its own `rc_test_<random>` database there and drops it at the end (`db::scratch`). Without the variable
//! the PostgreSQL half is skipped, and says so.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::MigrationHarness;
use rand::Rng;
use riverchief_server::auth::AuthUser;
use riverchief_server::db::scratch::{with_database, ScratchDb};
use riverchief_server::db::{self, changes, Backend, Conn, Db, Location};
use riverchief_shared::alert::{AlertKind, AlertLevel, AlertState};
use riverchief_shared::domain::Role;
use riverchief_shared::id::{DeviceId, MutationId, PatrolId, UserId};
use riverchief_shared::sync::{ChangeEntity, ChangeOp, PushResult, PushStatus};
use riverchief_shared::Limits;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

const PG_URL_VAR: &str = riverchief_server::db::scratch::TEST_DATABASE_ENV;

// ---------------------------------------------------------------------------------------------
// Test databases

/// A fresh, empty database: an SQLite file in a temp folder, or a PostgreSQL database made for this
/// test (dropped when this is dropped).
struct TestDb {
    location: Location,
    _dir: Option<tempfile::TempDir>,
    /// This test's PostgreSQL database, dropped with it.
    _pg: Option<ScratchDb>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            location: Location::Sqlite(dir.path().join("test.sqlite3")),
            _dir: Some(dir),
            _pg: None,
        }
    }

    fn postgres(admin_url: &str) -> TestDb {
        let pg = ScratchDb::create(admin_url, "rc_test").unwrap_or_else(|e| panic!("{e}"));
        TestDb {
            location: Location::Postgres(pg.url().to_owned()),
            _dir: None,
            _pg: Some(pg),
        }
    }

    /// The database opened as the server opens it: migrated, pooled.
    fn open(&self) -> Db {
        Db::open_at(&self.location).unwrap()
    }

    /// A bare connection to the (possibly unmigrated) database.
    fn connect(&self) -> Conn {
        match &self.location {
            Location::Sqlite(path) => {
                Conn::Sqlite(SqliteConnection::establish(&path.to_string_lossy()).unwrap())
            }
            Location::Postgres(url) => Conn::Pg(PgConnection::establish(url).unwrap()),
        }
    }
}

fn pg_url() -> Option<String> {
    ScratchDb::server()
}

/// Says that the PostgreSQL half of a test was skipped, past the test harness's output capture (so
/// that it shows in a CI log even when the test passes).
fn say_skipped(name: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{name}: PostgreSQL skipped ({PG_URL_VAR} is not set); ran on SQLite only"
    );
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL one if the server is given.
fn on_each_backend(name: &str, test: impl Fn(&TestDb)) {
    test(&TestDb::sqlite());
    match pg_url() {
        Some(url) => test(&TestDb::postgres(&url)),
        None => say_skipped(name),
    }
}

#[test]
fn with_database_swaps_only_the_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
}

// ---------------------------------------------------------------------------------------------
// Schema and migrations

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = BigInt)]
    not_null: i64,
    #[diesel(sql_type = BigInt)]
    pk: i64,
}

#[derive(QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// (table, column, portable type, nullable) of every column, without diesel's bookkeeping table.
type Columns = BTreeSet<(String, String, String, bool)>;

/// The portable name of a column type, so the two backends' spellings compare.
fn portable_type(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        // SQLite integers are 64-bit; `INTEGER PRIMARY KEY` is the rowid.
        "integer" | "bigint" => "bigint".into(),
        "real" | "double precision" => "double precision".into(),
        other => other.into(),
    }
}

fn columns(conn: &mut Conn) -> Columns {
    match conn {
        Conn::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
                    p.\"notnull\" AS not_null, p.pk AS pk \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
               AND m.name <> '__diesel_schema_migrations'",
        )
        .load::<SqliteColumn>(c)
        .unwrap()
        .into_iter()
        .map(|r| {
            // An INTEGER PRIMARY KEY is the rowid, which cannot be NULL whatever it declares;
            // any other SQLite primary key can, unless it says NOT NULL (SQLite's old quirk).
            let rowid = r.pk > 0 && r.data_type.eq_ignore_ascii_case("integer");
            let nullable = r.not_null == 0 && !rowid;
            (
                r.table_name,
                r.column_name,
                portable_type(&r.data_type),
                nullable,
            )
        })
        .collect(),
        Conn::Pg(c) => diesel::sql_query(
            "SELECT table_name::TEXT AS table_name, column_name::TEXT AS column_name, \
                    data_type::TEXT AS data_type, is_nullable::TEXT AS is_nullable \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load::<PgColumn>(c)
        .unwrap()
        .into_iter()
        .map(|r| {
            let nullable = r.is_nullable == "YES";
            (
                r.table_name,
                r.column_name,
                portable_type(&r.data_type),
                nullable,
            )
        })
        .collect(),
    }
}

/// Every table (SQLite) or table and sequence (PostgreSQL) but diesel's bookkeeping table.
fn relations(conn: &mut Conn) -> BTreeSet<String> {
    let names: Vec<Name> = match conn {
        Conn::Sqlite(c) => diesel::sql_query(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
               AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations'",
        )
        .load(c)
        .unwrap(),
        Conn::Pg(c) => diesel::sql_query(
            "SELECT c.relname::TEXT AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'p') \
               AND c.relname <> '__diesel_schema_migrations'",
        )
        .load(c)
        .unwrap(),
    };
    names.into_iter().map(|n| n.name).collect()
}

fn migrate_up(conn: &mut Conn) -> usize {
    match conn {
        Conn::Sqlite(c) => c
            .run_pending_migrations(db::SQLITE_MIGRATIONS)
            .unwrap()
            .len(),
        Conn::Pg(c) => c
            .run_pending_migrations(db::POSTGRES_MIGRATIONS)
            .unwrap()
            .len(),
    }
}

fn migrate_down(conn: &mut Conn) -> usize {
    match conn {
        Conn::Sqlite(c) => c
            .revert_all_migrations(db::SQLITE_MIGRATIONS)
            .unwrap()
            .len(),
        Conn::Pg(c) => c
            .revert_all_migrations(db::POSTGRES_MIGRATIONS)
            .unwrap()
            .len(),
    }
}

#[test]
fn both_backends_have_the_same_tables_and_columns() {
    let sqlite = TestDb::sqlite();
    let mut conn = sqlite.connect();
    migrate_up(&mut conn);
    let sqlite_columns = columns(&mut conn);
    assert!(
        sqlite_columns
            .iter()
            .any(|c| c.0 == "changes" && c.1 == "seq"),
        "{sqlite_columns:?}"
    );
    let Some(url) = pg_url() else {
        say_skipped("schema parity");
        return;
    };
    let pg = TestDb::postgres(&url);
    let mut conn = pg.connect();
    migrate_up(&mut conn);
    let pg_columns = columns(&mut conn);
    let only_sqlite: Vec<_> = sqlite_columns.difference(&pg_columns).collect();
    let only_pg: Vec<_> = pg_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "the schemas differ:\n  only on SQLite: {only_sqlite:#?}\n  only on PostgreSQL: {only_pg:#?}"
    );
}

#[test]
fn every_migration_reverts_cleanly() {
    on_each_backend("migrations revert", |t| {
        let mut conn = t.connect();
        let applied = migrate_up(&mut conn);
        assert!(applied > 0);
        let after_up = relations(&mut conn);
        assert!(after_up.contains("changes"), "{after_up:?}");
        let columns_up = columns(&mut conn);

        assert_eq!(migrate_down(&mut conn), applied);
        let left = relations(&mut conn);
        assert!(
            left.is_empty(),
            "{:?}: after reverting every migration these remain: {left:?}",
            t.location.backend()
        );

        assert_eq!(migrate_up(&mut conn), applied);
        assert_eq!(relations(&mut conn), after_up);
        assert_eq!(columns(&mut conn), columns_up);
    });
}

#[test]
fn opening_migrates_once_and_a_second_instance_finds_it_done() {
    on_each_backend("open twice", |t| {
        let first = t.open();
        let second = t.open();
        let epoch_1 = changes::epoch(&mut first.conn().unwrap()).unwrap();
        let epoch_2 = changes::epoch(&mut second.conn().unwrap()).unwrap();
        assert_eq!(epoch_1, epoch_2);
        assert_eq!(first.backend(), t.location.backend());
    });
}

// ---------------------------------------------------------------------------------------------
// The change log under concurrent writers

fn record_one(conn: &mut Conn, label: &str) -> i64 {
    changes::record(
        conn,
        ChangeEntity::Segment,
        label,
        ChangeOp::Upsert,
        &serde_json::json!({ "label": label }),
        &changes::Audience {
            public: true,
            ..changes::Audience::default()
        },
    )
    .unwrap()
}

fn all_seqs(db: &Db) -> Vec<i64> {
    let mut conn = db.conn().unwrap();
    let mut seqs = Vec::new();
    let mut after = 0;
    // Read straight from the table (not through `page`): the truth to compare the reader with.
    loop {
        let batch: Vec<i64> = riverchief_server::db::schema::changes::table
            .select(riverchief_server::db::schema::changes::seq)
            .filter(riverchief_server::db::schema::changes::seq.gt(after))
            .order(riverchief_server::db::schema::changes::seq.asc())
            .limit(1000)
            .load(&mut *conn)
            .unwrap();
        match batch.last() {
            Some(&last) => after = last,
            None => return seqs,
        }
        seqs.extend(batch);
    }
}

/// A client pulling the change log in a loop, as `GET /sync/pull` does, until told to stop; then it
/// drains what is left. Returns every seq it was handed, in order. A row it skipped would be missing:
/// `page` only ever returns rows above the cursor, so a row that commits below it is lost for good.
struct Reader {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<i64>>,
}

impl Reader {
    fn start(db: &Db, limit: usize) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let db = db.clone();
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut conn = db.conn().unwrap();
            let viewer = UserId::new();
            let mut cursor = 0;
            let mut seen = Vec::new();
            let mut pull = |cursor: &mut i64, seen: &mut Vec<i64>| {
                let page = changes::page(&mut conn, viewer, Role::Admin, *cursor, limit).unwrap();
                for c in &page.changes {
                    assert!(
                        c.seq > *cursor,
                        "seq {} handed out below cursor {cursor}",
                        c.seq
                    );
                    seen.push(c.seq);
                }
                assert!(page.next >= *cursor, "the cursor went back");
                *cursor = page.next;
                page.more
            };
            while !flag.load(Ordering::SeqCst) {
                pull(&mut cursor, &mut seen);
                thread::sleep(Duration::from_micros(rand::rng().random_range(0..1500)));
            }
            while pull(&mut cursor, &mut seen) {}
            seen
        });
        Reader { stop, handle }
    }

    fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Transaction A takes a seq and holds it uncommitted; transaction B, on another connection, then
/// records a change and is told to commit at once, ahead of A. With seqs taken at insert and commits
/// in any order, B's higher seq would commit first, a reader would move its cursor past it, and A's
/// lower seq would commit behind the cursor, never to be pulled. B must instead wait: it may not
/// record (so not commit) while A is open.
#[test]
fn a_change_committed_out_of_order_is_never_skipped() {
    on_each_backend("out-of-order commits", |t| {
        let db = t.open();
        let reader = Reader::start(&db, 100);

        let (a_recorded, a_recorded_rx) = mpsc::channel();
        let (a_commit, a_commit_rx) = mpsc::channel::<()>();
        let a = {
            let db = db.clone();
            thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                db::write_transaction(&mut conn, |conn| -> QueryResult<i64> {
                    let seq = record_one(conn, "A");
                    a_recorded.send(seq).unwrap();
                    a_commit_rx.recv().unwrap();
                    Ok(seq)
                })
                .unwrap()
            })
        };
        let seq_a = a_recorded_rx.recv_timeout(Duration::from_secs(20)).unwrap();

        let (b_recorded, b_recorded_rx) = mpsc::channel();
        let (b_commit, b_commit_rx) = mpsc::channel::<()>();
        let b = {
            let db = db.clone();
            thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                db::write_transaction(&mut conn, |conn| -> QueryResult<i64> {
                    let seq = record_one(conn, "B");
                    b_recorded.send(seq).unwrap();
                    b_commit_rx.recv().unwrap();
                    Ok(seq)
                })
                .unwrap()
            })
        };
        // B is told to commit now, ahead of A.
        b_commit.send(()).unwrap();
        assert!(
            b_recorded_rx
                .recv_timeout(Duration::from_millis(700))
                .is_err(),
            "{:?}: B recorded a change while A held seq {seq_a} uncommitted",
            t.location.backend()
        );
        assert!(!b.is_finished(), "B committed while A was open");

        a_commit.send(()).unwrap();
        assert_eq!(a.join().unwrap(), seq_a);
        let seq_b = b_recorded_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(b.join().unwrap(), seq_b);
        assert!(seq_b > seq_a);

        let seen = reader.finish();
        assert_eq!(seen, vec![seq_a, seq_b]);
        assert_eq!(all_seqs(&db), seen);
    });
}

/// Eight writers, each recording changes in fifty transactions of its own with pauses inside (some
/// rolled back), and a reader paging in small pages meanwhile: the reader is handed every committed
/// seq exactly once, in order.
#[test]
fn a_paging_reader_sees_every_change_of_concurrent_writers_once() {
    on_each_backend("concurrent writers", |t| {
        const WRITERS: usize = 8;
        const TRANSACTIONS: usize = 50;
        let db = t.open();
        // The reader is another instance, with a pool of its own (the writers use all of this one's).
        let reader = Reader::start(&t.open(), 7);
        let start = Arc::new(Barrier::new(WRITERS));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let db = db.clone();
                let start = start.clone();
                thread::spawn(move || {
                    let mut conn = db.conn().unwrap();
                    start.wait();
                    let mut committed = Vec::new();
                    for i in 0..TRANSACTIONS {
                        let pause = |max_us| {
                            thread::sleep(Duration::from_micros(
                                rand::rng().random_range(0..max_us),
                            ))
                        };
                        let roll_back = i % 10 == 9;
                        let outcome = db::write_transaction(&mut conn, |conn| {
                            pause(2000);
                            let mut seqs = vec![record_one(conn, &format!("w{w}-{i}"))];
                            if i % 3 == 0 {
                                seqs.push(record_one(conn, &format!("w{w}-{i}b")));
                            }
                            pause(2000);
                            if roll_back {
                                Err(diesel::result::Error::RollbackTransaction)
                            } else {
                                Ok(seqs)
                            }
                        });
                        match outcome {
                            Ok(seqs) => committed.extend(seqs),
                            Err(diesel::result::Error::RollbackTransaction) if roll_back => {}
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                    }
                    committed
                })
            })
            .collect();
        let mut committed: Vec<i64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        committed.sort_unstable();
        let seen = reader.finish();

        let expected = WRITERS * (TRANSACTIONS - TRANSACTIONS / 10)
            + WRITERS
                * (0..TRANSACTIONS)
                    .filter(|i| i % 3 == 0 && i % 10 != 9)
                    .count();
        assert_eq!(committed.len(), expected);
        assert_eq!(
            all_seqs(&db),
            committed,
            "the table holds exactly the committed rows"
        );
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            seen.len(),
            "the reader was handed a seq twice"
        );
        assert_eq!(seen, sorted, "the reader was handed seqs out of order");
        assert_eq!(
            seen,
            committed,
            "{:?}: the reader missed {:?}",
            t.location.backend(),
            committed
                .iter()
                .filter(|s| !seen.contains(s))
                .collect::<Vec<_>>()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Push across instances

/// The demo world seeded, and the patroller zhangwei with the segment he walks.
fn seeded(db: &Db) -> (AuthUser, String) {
    let mut conn = db.conn().unwrap();
    riverchief_server::demo::seed(&mut conn, Some("pw"), chrono::Utc::now()).unwrap();
    let user = db::users::by_username(&mut conn, "zhangwei")
        .unwrap()
        .unwrap()
        .info;
    let segment = db::segments::by_code(&mut conn, "QHL-02").unwrap().unwrap();
    (
        AuthUser {
            id: user.id,
            username: user.username,
            role: user.role,
            token_id: "test-token".into(),
            device_name: "test".into(),
        },
        segment.properties.id.to_string(),
    )
}

fn patrol_start(id: MutationId, seq: u64, patrol: PatrolId, segment: &str) -> serde_json::Value {
    let now = chrono::Utc::now() - chrono::Duration::minutes(1);
    serde_json::json!({
        "id": id,
        "device_seq": seq,
        "at": now,
        "type": "patrol.start",
        "data": { "patrol_id": patrol, "segment_ids": [segment], "started_at": now },
    })
}

/// Pushes `mutations[i]` through instance `i` (its own pool), all at once.
fn push_together(
    instances: &[Db],
    user: &AuthUser,
    device: DeviceId,
    mutations: Vec<serde_json::Value>,
) -> Vec<PushResult> {
    let start = Arc::new(Barrier::new(mutations.len()));
    let threads: Vec<_> = mutations
        .into_iter()
        .zip(instances.iter().cycle())
        .map(|(raw, db)| {
            let db = db.clone();
            let user = user.clone();
            let start = start.clone();
            thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                start.wait();
                let now = chrono::Utc::now();
                riverchief_server::sync::push_one(
                    &mut conn,
                    &user,
                    device,
                    raw,
                    &Limits::DEFAULT,
                    now,
                )
                .unwrap_or_else(|e| panic!("a push failed with a server error: {e}"))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn statuses(results: &[PushResult]) -> Vec<PushStatus> {
    let mut s: Vec<_> = results.iter().map(|r| r.status).collect();
    s.sort_by_key(|s| format!("{s:?}"));
    s
}

#[test]
fn the_same_mutation_at_two_instances_is_applied_once() {
    on_each_backend("same mutation twice", |t| {
        let instances = [t.open(), t.open()];
        let (user, segment) = seeded(&instances[0]);
        let device = DeviceId::new();
        for round in 0..20 {
            let raw = patrol_start(MutationId::new(), round, PatrolId::new(), &segment);
            let results = push_together(&instances, &user, device, vec![raw.clone(), raw]);
            assert_eq!(
                statuses(&results),
                vec![PushStatus::Applied, PushStatus::Duplicate],
                "{:?}, round {round}: {results:?}",
                t.location.backend()
            );
            assert_eq!(results[0].result, results[1].result);
        }
    });
}

#[test]
fn two_mutations_racing_for_one_record_are_one_applied_and_one_refused() {
    on_each_backend("one record, two mutations", |t| {
        let instances = [t.open(), t.open()];
        let (user, segment) = seeded(&instances[0]);
        let device = DeviceId::new();
        for round in 0..20 {
            let patrol = PatrolId::new();
            let results = push_together(
                &instances,
                &user,
                device,
                vec![
                    patrol_start(MutationId::new(), 2 * round, patrol, &segment),
                    patrol_start(MutationId::new(), 2 * round + 1, patrol, &segment),
                ],
            );
            assert_eq!(
                statuses(&results),
                vec![PushStatus::Applied, PushStatus::Rejected],
                "{:?}, round {round}: {results:?}",
                t.location.backend()
            );
            let refused = results
                .iter()
                .find(|r| r.status == PushStatus::Rejected)
                .unwrap();
            assert_eq!(refused.error.as_ref().unwrap().code, "conflict");
        }
        // Each patrol is in the change log once.
        let mut conn = instances[1].conn().unwrap();
        let page = changes::page(&mut conn, user.id, Role::Admin, 0, 1000).unwrap();
        let patrols = page
            .changes
            .iter()
            .filter(|c| c.entity == ChangeEntity::Patrol)
            .count();
        assert_eq!(patrols, 20);
    });
}

#[test]
fn the_backend_follows_the_url_scheme() {
    assert_eq!(
        Location::parse("postgres://u@h/db").unwrap().backend(),
        Backend::Postgres
    );
    assert_eq!(
        Location::parse("postgresql://u@h/db").unwrap().backend(),
        Backend::Postgres
    );
    assert_eq!(
        Location::parse("/var/lib/rc/riverchief.sqlite3").unwrap(),
        Location::Sqlite("/var/lib/rc/riverchief.sqlite3".into())
    );
    assert_eq!(
        Location::parse("sqlite:///var/lib/rc/x.sqlite3").unwrap(),
        Location::Sqlite("/var/lib/rc/x.sqlite3".into())
    );
    assert!(Location::parse("mysql://u@h/db").is_err());
    assert!(Location::parse("").is_err());
    assert_eq!(
        Location::parse("postgres://rc:secret@db:5432/rc")
            .unwrap()
            .to_string(),
        "postgres://rc:***@db:5432/rc"
    );
}

// ---------------------------------------------------------------------------------------------
// Alerts

fn hazard_alert(subject: &str, drill: bool) -> db::alerts::NewAlert {
    db::alerts::NewAlert {
        kind: AlertKind::CriticalHazard,
        subject: subject.to_owned(),
        drill,
        level: AlertLevel::Critical,
        message: "管涌（浑水）".into(),
        message_en: "muddy piping".into(),
        segment_id: None,
        issue_id: None,
        station: None,
        owner: None,
        public: false,
        details: serde_json::json!({}),
    }
}

#[test]
fn an_alert_is_raised_once_while_open_and_again_after_it_resolves() {
    on_each_backend("alert lifecycle", |t| {
        let db = t.open();
        let (someone, _) = seeded(&db);
        let mut conn = db.conn().unwrap();
        let now = chrono::Utc::now();
        let raise = |conn: &mut Conn, drill: bool| {
            db::write_transaction(conn, |c| {
                db::alerts::raise(c, &hazard_alert("issue:x", drill), now)
            })
            .unwrap()
        };
        let first = match raise(&mut conn, false) {
            db::alerts::Raised::New(a) => a,
            other => panic!("expected a new alert, got {other:?}"),
        };
        assert_eq!(first.state, AlertState::Open);
        assert_eq!(
            raise(&mut conn, false),
            db::alerts::Raised::AlreadyOpen(first.clone())
        );
        // A drill alert with the same kind and subject is its own alert.
        let drill = raise(&mut conn, true);
        assert!(matches!(&drill, db::alerts::Raised::New(a) if a.drill && a.id != first.id));

        let acked = db::write_transaction(&mut conn, |c| {
            db::alerts::acknowledge(c, first.id, someone.id, now)
        })
        .unwrap()
        .unwrap();
        assert_eq!(acked.state, AlertState::Acknowledged);
        assert_eq!(acked.acknowledged_by, Some(someone.id));
        assert!(acked.acknowledged_by_name.is_some());
        // Still open for deduplication while acknowledged.
        assert!(matches!(
            raise(&mut conn, false),
            db::alerts::Raised::AlreadyOpen(a) if a.id == first.id
        ));
        let resolved = db::write_transaction(&mut conn, |c| {
            db::alerts::resolve(c, AlertKind::CriticalHazard, "issue:x", false, now)
        })
        .unwrap()
        .unwrap();
        assert_eq!(resolved.state, AlertState::Resolved);
        let again = raise(&mut conn, false);
        assert!(matches!(&again, db::alerts::Raised::New(a) if a.id != first.id));
        // Every change of a real or drill alert is in the change log: raised, raised (drill),
        // acknowledged, resolved, raised again.
        let alert_changes: i64 = db::schema::changes::table
            .filter(db::schema::changes::entity.eq("alert"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(alert_changes, 5);
    });
}

#[test]
fn an_alert_raised_at_two_instances_at_once_is_one_alert() {
    on_each_backend("alert raised twice", |t| {
        let instances = [t.open(), t.open()];
        seeded(&instances[0]);
        for round in 0..10 {
            let subject = format!("segment:{round}");
            let start = Arc::new(Barrier::new(2));
            let threads: Vec<_> = instances
                .iter()
                .map(|db| {
                    let (db, start, subject) = (db.clone(), start.clone(), subject.clone());
                    thread::spawn(move || {
                        let mut conn = db.conn().unwrap();
                        start.wait();
                        db::write_transaction(&mut conn, |c| {
                            db::alerts::raise(c, &hazard_alert(&subject, false), chrono::Utc::now())
                        })
                        .unwrap()
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let new = results
                .iter()
                .filter(|r| matches!(r, db::alerts::Raised::New(_)))
                .count();
            assert_eq!(
                new,
                1,
                "{:?}, round {round}: {results:?}",
                t.location.backend()
            );
            assert_eq!(results[0].alert().id, results[1].alert().id);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Change-log compaction

/// What a client that pulled everything from `cursor` would end with: per record, the newest change.
fn mirror_after(db: &Db, cursor: i64) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut conn = db.conn().unwrap();
    let mut mirror = std::collections::BTreeMap::new();
    let mut after = cursor;
    loop {
        let page = changes::page(&mut conn, UserId::new(), Role::Admin, after, 7).unwrap();
        for c in page.changes {
            mirror.insert(format!("{}/{}", c.entity.as_str(), c.id), c.data);
        }
        after = page.next;
        if !page.more {
            return mirror;
        }
    }
}

#[test]
fn compaction_keeps_what_every_cursor_pulls_and_the_head() {
    on_each_backend("compaction", |t| {
        let db = t.open();
        let mut conn = db.conn().unwrap();
        // Three records written over and over, interleaved.
        for round in 0..20 {
            for label in ["a", "b", "c"] {
                db::write_transaction(&mut conn, |c| {
                    Ok::<_, diesel::result::Error>(changes::record(
                        c,
                        ChangeEntity::Segment,
                        label,
                        ChangeOp::Upsert,
                        &serde_json::json!({ "label": label, "round": round }),
                        &changes::Audience {
                            public: true,
                            ..changes::Audience::default()
                        },
                    ))
                })
                .unwrap()
                .unwrap();
            }
        }
        let seqs = all_seqs(&db);
        let head = changes::max_seq(&mut conn).unwrap();
        let cursors = [0, seqs[5], seqs[30], seqs[58], head];
        let before: Vec<_> = cursors.iter().map(|&c| mirror_after(&db, c)).collect();

        // Nothing is older than a cutoff in the past.
        let past = chrono::Utc::now() - chrono::Duration::hours(1);
        assert_eq!(changes::compact(&mut conn, past, 10).unwrap(), 0);
        assert_eq!(all_seqs(&db), seqs);

        // Everything is older than a cutoff in the future: all but the newest of each record go,
        // in batches smaller than the work.
        let future = chrono::Utc::now() + chrono::Duration::hours(1);
        assert_eq!(changes::compact(&mut conn, future, 10).unwrap(), 57);
        assert_eq!(all_seqs(&db), seqs[57..].to_vec());
        assert_eq!(changes::max_seq(&mut conn).unwrap(), head);
        let after: Vec<_> = cursors.iter().map(|&c| mirror_after(&db, c)).collect();
        assert_eq!(after, before);
        assert_eq!(before[0]["segment/a"]["round"], 19);
        // Idempotent: a second run (another instance) finds nothing.
        assert_eq!(changes::compact(&mut conn, future, 10).unwrap(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Flood watch across instances

#[test]
fn the_overdue_check_at_two_instances_raises_each_alert_once() {
    on_each_backend("overdue check twice", |t| {
        let instances = [t.open(), t.open()];
        seeded(&instances[0]);
        let segments = {
            let mut conn = instances[0].conn().unwrap();
            db::segments::all(&mut conn).unwrap().len()
        };
        for round in 0..5 {
            let start = Arc::new(Barrier::new(2));
            let threads: Vec<_> = instances
                .iter()
                .map(|db| {
                    let (db, start) = (db.clone(), start.clone());
                    thread::spawn(move || {
                        let mut conn = db.conn().unwrap();
                        start.wait();
                        riverchief_server::checks::run(
                            &mut conn,
                            &riverchief_server::coverage::Policy::default(),
                            &riverchief_server::checks::Settings::default(),
                            chrono::Utc::now(),
                        )
                        .unwrap_or_else(|e| panic!("a check failed: {e}"))
                    })
                })
                .collect();
            for th in threads {
                assert_eq!(th.join().unwrap().overdue, segments);
            }
            let mut conn = instances[1].conn().unwrap();
            let open = db::alerts::unresolved_of_kind(&mut conn, AlertKind::SegmentOverdue, false)
                .unwrap();
            assert_eq!(
                open.len(),
                segments,
                "{:?}, round {round}",
                t.location.backend()
            );
        }
    });
}

#[test]
fn the_same_readings_from_two_feeds_at_once_are_stored_once() {
    on_each_backend("readings twice", |t| {
        let instances = [t.open(), t.open()];
        seeded(&instances[0]);
        let t0 = chrono::Utc::now() - chrono::Duration::days(1);
        for round in 0..10i64 {
            let batch: Vec<(usize, riverchief_shared::flood::Reading)> = (0..50i64)
                .map(|i| {
                    let reading = riverchief_shared::flood::Reading {
                        observed_at: t0 + chrono::Duration::minutes(round * 50 + i),
                        level_m: 8.0 + (round * 50 + i) as f64 * 0.001,
                    };
                    (usize::try_from(i).unwrap(), reading)
                })
                .collect();
            let start = Arc::new(Barrier::new(2));
            let threads: Vec<_> = instances
                .iter()
                .map(|db| {
                    let (db, start, batch) = (db.clone(), start.clone(), batch.clone());
                    thread::spawn(move || {
                        let mut conn = db.conn().unwrap();
                        let station = db::flood::station(&mut conn, "DONGSHAN").unwrap().unwrap();
                        start.wait();
                        db::write_transaction(&mut conn, |c| {
                            riverchief_server::flood::ingest(
                                c,
                                &riverchief_server::flood::Settings::default(),
                                &riverchief_server::coverage::Policy::default(),
                                &station,
                                db::flood::Series::Real,
                                &batch,
                                chrono::Utc::now(),
                            )
                        })
                        .unwrap_or_else(|e| panic!("an ingest failed: {e}"))
                    })
                })
                .collect();
            let mut inserted: Vec<usize> = threads
                .into_iter()
                .map(|th| th.join().unwrap().inserted)
                .collect();
            inserted.sort_unstable();
            assert_eq!(
                inserted,
                vec![0, 50],
                "{:?}, round {round}",
                t.location.backend()
            );
        }
    });
}

#[test]
fn one_stock_line_is_the_line_the_whole_view_shows() {
    on_each_backend("one stock line", |t| {
        let db = t.open();
        seeded(&db);
        let mut conn = db.conn().unwrap();
        // No lots: a date no lot is on or before, as the alert after a movement reads it.
        let view = db::stock::view(&mut conn, "0000-00-00").unwrap();
        assert!(!view.is_empty());
        for line in &view {
            assert_eq!(
                db::stock::line(&mut conn, &line.depot_id, &line.item_id).unwrap(),
                Some(line.clone())
            );
        }
        // An item with neither quota nor stock has no line, then a quota gives it one, short of all.
        let depot = view[0].depot_id;
        let item = riverchief_shared::id::ItemId::new();
        db::stock::insert_item(
            &mut conn,
            &db::stock::NewItem {
                id: item,
                code: "TEST-BAGS",
                name: "测试编织袋",
                name_en: None,
                unit: "条",
                category: "bags",
                ages: false,
            },
        )
        .unwrap();
        assert_eq!(db::stock::line(&mut conn, &depot, &item).unwrap(), None);
        db::stock::set_quota(&mut conn, &depot, &item, 40).unwrap();
        let line = db::stock::line(&mut conn, &depot, &item).unwrap().unwrap();
        assert_eq!((line.quota, line.on_hand, line.shortfall), (40, 0, 40));
        assert_eq!(line.item, "TEST-BAGS");
        let whole = db::stock::view(&mut conn, "0000-00-00").unwrap();
        assert!(whole.contains(&line));
        assert_eq!(
            db::stock::line(&mut conn, &riverchief_shared::id::DepotId::new(), &item).unwrap(),
            None
        );
    });
}

#[test]
fn a_drill_is_swept_only_once_its_replay_should_have_ended() {
    use riverchief_server::db::flood as store;
    use riverchief_shared::flood::{DrillState, Reading};
    on_each_backend("drill sweep", |t| {
        let db = t.open();
        let (user, _) = seeded(&db);
        let mut conn = db.conn().unwrap();
        let station = store::station(&mut conn, "DONGSHAN").unwrap().unwrap();
        let t0 = chrono::Utc::now();
        // 10 hours of series at an hour a second: a 10 s replay, started now by a live instance.
        let series: Vec<Reading> = (0..=10)
            .map(|h| Reading {
                observed_at: t0 - chrono::Duration::hours(10 - h),
                level_m: 8.0 + h as f64 * 0.1,
            })
            .collect();
        let id = riverchief_shared::id::DrillId::new();
        store::insert_drill(
            &mut conn,
            &store::DrillRow {
                id,
                station_id: station.id,
                speed: 3600.0,
                state: DrillState::Running,
                readings_total: series.len() as i64,
                series,
                readings_fed: 0,
                started_by: user.id,
                started_at: t0,
                ended_at: None,
            },
        )
        .unwrap();
        let state = |conn: &mut Conn| store::drill(conn, &id, false).unwrap().unwrap().state;
        // Another instance starting during the replay (or within the grace) leaves it alone.
        for later in [0, 10, 60] {
            let at = t0 + chrono::Duration::seconds(later);
            assert_eq!(riverchief_server::drill::sweep(&mut conn, at).unwrap(), 0);
            assert_eq!(state(&mut conn), DrillState::Running, "{later} s");
        }
        // Past its end and the grace, its replay must have died: it is stopped, once.
        let late = t0 + chrono::Duration::seconds(75);
        assert_eq!(riverchief_server::drill::sweep(&mut conn, late).unwrap(), 1);
        assert_eq!(state(&mut conn), DrillState::Stopped);
        assert_eq!(riverchief_server::drill::sweep(&mut conn, late).unwrap(), 0);
    });
}

#[test]
fn a_token_records_its_last_use_at_most_once_per_grain() {
    on_each_backend("token last use", |t| {
        let db = t.open();
        let (user, _) = seeded(&db);
        let mut conn = db.conn().unwrap();
        db::users::insert_token(&mut conn, "hash-of-a-token", user.id, "phone").unwrap();
        let last = |conn: &mut Conn| {
            db::users::by_token(conn, "hash-of-a-token")
                .unwrap()
                .unwrap()
                .last_used_at
        };
        let created = last(&mut conn);
        let now = chrono::Utc::now();
        // Within the grain: nothing is written.
        assert!(!db::users::touch_token(&mut conn, "hash-of-a-token", &created, now).unwrap());
        assert_eq!(last(&mut conn), created);
        // Past it: recorded once; a second request at the same moment finds it fresh.
        let later = now + db::users::LAST_USED_GRAIN + chrono::Duration::minutes(1);
        assert!(db::users::touch_token(&mut conn, "hash-of-a-token", &created, later).unwrap());
        let touched = last(&mut conn);
        assert!(touched > created, "{touched} after {created}");
        assert!(!db::users::touch_token(&mut conn, "hash-of-a-token", &created, later).unwrap());
        assert_eq!(last(&mut conn), touched);
        // The devices list shows it.
        let devices = db::users::devices(&mut conn, user.id).unwrap();
        assert!(
            devices
                .iter()
                .any(|d| d.last_used_at == riverchief_server::db::parse_ts(&touched).unwrap()),
            "{devices:?}"
        );
    });
}
