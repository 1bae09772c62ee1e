//! The local SQLite store: schema, migrations, and the small helpers every query uses.
//!
//! The store holds three kinds of data, and they are kept apart on purpose:
//!
//! - what this device recorded (`local_*`, `photos`, `photo_refs`) and its `outbox`: never touched by
//!   a pull, never lost before the server has confirmed it;
//! - the mirror of what the server says (`mirror_*`): thrown away and rebuilt whenever the server asks
//!   for a reset;
//! - the device's own state (`device`, one row): its id, next sequence number, login and pull cursor.
//!
//! Times are stored as RFC 3339 UTC text with a fixed number of fraction digits, so that text order
//! is time order. Ids are stored as hyphenated UUID text.

use crate::error::{ClientError, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use riverchief_shared::alert::Alert;
use riverchief_shared::coverage::CoverageSummary;
use riverchief_shared::domain::{Issue, Patrol, Segment};
use riverchief_shared::id::DeviceId;
use riverchief_shared::sync::{Change, ChangeEntity, ChangeOp, PullResponse};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Schema migrations; `PRAGMA user_version` is the number applied. Append, never edit.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE device (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    device_id       TEXT NOT NULL,
    -- The device_seq the next mutation gets: monotonic, never reused.
    next_seq        INTEGER NOT NULL,
    server_url      TEXT,
    token           TEXT,
    user_json       TEXT,
    pull_cursor     TEXT,
    last_sync_at    TEXT,
    last_sync_error TEXT
);

CREATE TABLE outbox (
    mutation_id     TEXT PRIMARY KEY,
    device_seq      INTEGER NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    -- The serialized Mutation, frozen when written: it is sent as it is, on every attempt.
    body            TEXT NOT NULL,
    urgent          INTEGER NOT NULL CHECK (urgent IN (0, 1)),
    -- A pending mutation that must reach the server first (the patrol.start of an urgent report's
    -- patrol), because urgent rows jump the queue.
    depends_on      TEXT REFERENCES outbox (mutation_id),
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'rejected')),
    server_status   TEXT CHECK (server_status IN ('applied', 'duplicate', 'rejected')),
    result          TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    last_attempt_at TEXT,
    settled_at      TEXT
);
CREATE INDEX outbox_queue ON outbox (state, urgent DESC, device_seq);

CREATE TABLE local_patrols (
    id             TEXT PRIMARY KEY,
    start_mutation TEXT NOT NULL REFERENCES outbox (mutation_id),
    segment_ids    TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    ended_at       TEXT,
    notes          TEXT,
    weather        TEXT,
    finish_notes   TEXT,
    point_count    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE local_track_points (
    patrol_id   TEXT NOT NULL REFERENCES local_patrols (id),
    n           INTEGER NOT NULL,
    t           TEXT NOT NULL,
    lon         REAL NOT NULL,
    lat         REAL NOT NULL,
    accuracy_m  REAL,
    mutation_id TEXT NOT NULL REFERENCES outbox (mutation_id),
    PRIMARY KEY (patrol_id, n)
);

CREATE TABLE local_issues (
    id          TEXT PRIMARY KEY,
    mutation_id TEXT NOT NULL REFERENCES outbox (mutation_id),
    segment_id  TEXT NOT NULL,
    patrol_id   TEXT,
    reported_at TEXT NOT NULL,
    -- The IssueReport payload as queued.
    data        TEXT NOT NULL
);

CREATE TABLE local_issue_events (
    id          TEXT PRIMARY KEY,
    mutation_id TEXT NOT NULL REFERENCES outbox (mutation_id),
    issue_id    TEXT NOT NULL,
    at          TEXT NOT NULL,
    -- The IssueEventData payload as queued.
    data        TEXT NOT NULL
);

CREATE TABLE photos (
    sha256       TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    captured_at  TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'confirmed', 'failed')),
    -- The tus upload's Location as the server gave it (a path, resolved against the server URL in
    -- use), stored before any byte is sent so that a later attempt resumes it.
    upload_url   TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    settled_at   TEXT
);

CREATE TABLE photo_refs (
    sha256      TEXT NOT NULL REFERENCES photos (sha256),
    mutation_id TEXT NOT NULL REFERENCES outbox (mutation_id),
    PRIMARY KEY (sha256, mutation_id)
);

CREATE TABLE mirror_segments (
    id   TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX mirror_segments_code ON mirror_segments (code);

CREATE TABLE mirror_patrols (
    id         TEXT PRIMARY KEY,
    patroller  TEXT NOT NULL,
    started_at TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    data       TEXT NOT NULL
);

CREATE TABLE mirror_issues (
    id          TEXT PRIMARY KEY,
    segment_id  TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    status      TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    data        TEXT NOT NULL
);
"#,
    r#"
-- Coverage summaries per segment (pull entity `coverage`): which segments need walking.
CREATE TABLE mirror_coverage (
    id           TEXT PRIMARY KEY,
    last_covered TEXT,
    due_at       TEXT,
    seq          INTEGER NOT NULL,
    data         TEXT NOT NULL
);
"#,
    r#"
-- Alerts this user may see (pull entity `alert`): stage changes, hazards on their segments, and the
-- acknowledgement of what they reported (the receipt).
CREATE TABLE mirror_alerts (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    state     TEXT NOT NULL,
    drill     INTEGER NOT NULL,
    issue_id  TEXT,
    raised_at TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    data      TEXT NOT NULL
);
"#,
    r#"
-- Fixes handed over by the phone's location API one at a time (`Client::record_fix`), durable at
-- once, until they are closed into a `patrol.points` mutation (by count or age, at finish, at sync).
CREATE TABLE pending_fixes (
    patrol_id   TEXT NOT NULL REFERENCES local_patrols (id),
    n           INTEGER NOT NULL,
    t           TEXT NOT NULL,
    lon         REAL NOT NULL,
    lat         REAL NOT NULL,
    accuracy_m  REAL,
    crs         TEXT,
    mock        INTEGER NOT NULL CHECK (mock IN (0, 1)),
    received_at TEXT NOT NULL,
    PRIMARY KEY (patrol_id, n)
);
-- What the recorder decided about the fixes of a patrol, and the last one it kept (which the next
-- fix is judged against).
ALTER TABLE local_patrols ADD COLUMN fixes_kept INTEGER NOT NULL DEFAULT 0;
ALTER TABLE local_patrols ADD COLUMN fixes_mock INTEGER NOT NULL DEFAULT 0;
ALTER TABLE local_patrols ADD COLUMN fixes_dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE local_patrols ADD COLUMN last_fix_t TEXT;
ALTER TABLE local_patrols ADD COLUMN last_fix_lon REAL;
ALTER TABLE local_patrols ADD COLUMN last_fix_lat REAL;
ALTER TABLE local_track_points ADD COLUMN mock INTEGER NOT NULL DEFAULT 0;
-- A confirmed photo removed from the device (retention or the photo folder's budget).
ALTER TABLE photos ADD COLUMN removed_at TEXT;
-- The size of the file as the camera took it, when it was shrunk at capture.
ALTER TABLE photos ADD COLUMN original_size INTEGER;
"#,
];

/// Opens (creating if needed) and migrates the store at `path`.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    // Several processes (a CLI command while another syncs) may share the file: wait for locks
    // rather than failing at once.
    conn.busy_timeout(Duration::from_secs(15))?;
    // FULL: a phone loses power; a committed action must survive it, not just an app crash.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    migrate(&mut conn)?;
    ensure_device(&conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    loop {
        // Immediate: two processes opening a fresh data dir at once must not both migrate.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(ClientError::SchemaTooNew {
                found: version,
                known,
            });
        }
        let Some(sql) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// The device row is made once per data directory: its id is this installation's identity.
fn ensure_device(conn: &Connection) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO device (id, device_id, next_seq) VALUES (1, ?1, 1)",
        [DeviceId::new().to_string()],
    )?;
    Ok(())
}

/// Runs `f` with commits that do not wait for the disk (`synchronous = NORMAL` instead of the
/// store's `FULL`): in WAL mode they stay in order and survive a crash of the app, and the next
/// `FULL` commit makes them durable with it; only a power cut may undo the last of them. For the
/// sync's own bookkeeping only, which a replay redoes: a push's outcome (a lost one leaves its rows
/// pending, and the server answers their replay `duplicate`), attempt counts, a pull page with its
/// cursor (pulled again). Never for what the patroller recorded.
pub(crate) fn relaxed<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let outcome = f(conn);
    conn.pragma_update(None, "synchronous", "FULL")?;
    outcome
}

/// A time as stored: RFC 3339, UTC, microseconds, `Z`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ClientError::Internal(format!("bad stored time {s:?}: {e}")))
}

pub(crate) fn parse_time_opt(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_time).transpose()
}

/// Parses a stored id (or anything with `parse`) and turns a failure into an internal error: the
/// store only ever holds values this client wrote.
pub(crate) fn parse_stored<T, E: std::fmt::Display>(
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T> {
    parse(s).map_err(|e| ClientError::Internal(format!("bad stored value {s:?}: {e}")))
}

/// Reads a single optional text column of the device row.
pub(crate) fn device_text(conn: &Connection, column: DeviceColumn) -> Result<Option<String>> {
    let sql = format!("SELECT {} FROM device WHERE id = 1", column.name());
    Ok(conn
        .query_row(&sql, [], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

pub(crate) fn set_device_text(
    conn: &Connection,
    column: DeviceColumn,
    value: Option<&str>,
) -> Result<()> {
    let sql = format!("UPDATE device SET {} = ?1 WHERE id = 1", column.name());
    conn.execute(&sql, [value])?;
    Ok(())
}

/// The text columns of the device row, named so that no caller builds SQL from a string.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeviceColumn {
    DeviceId,
    ServerUrl,
    Token,
    UserJson,
    PullCursor,
    LastSyncAt,
    LastSyncError,
}

impl DeviceColumn {
    fn name(self) -> &'static str {
        match self {
            Self::DeviceId => "device_id",
            Self::ServerUrl => "server_url",
            Self::Token => "token",
            Self::UserJson => "user_json",
            Self::PullCursor => "pull_cursor",
            Self::LastSyncAt => "last_sync_at",
            Self::LastSyncError => "last_sync_error",
        }
    }
}

pub(crate) fn device_id(conn: &Connection) -> Result<DeviceId> {
    let text = device_text(conn, DeviceColumn::DeviceId)?
        .ok_or_else(|| ClientError::Internal("the device row is missing".into()))?;
    parse_stored(&text, DeviceId::parse)
}

// The mirror: what the server says, as pulled (the pull lane, `sync::pull`, hands each page here).

/// Applies one page and stores its cursor in one transaction; on `reset`, the mirror is emptied in
/// the same transaction first.
pub(crate) fn apply_page(conn: &mut Connection, page: &PullResponse) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if page.reset {
        forget_mirror(&tx)?;
    }
    for change in &page.changes {
        apply_change(&tx, change)?;
    }
    set_device_text(&tx, DeviceColumn::PullCursor, Some(&page.next))?;
    tx.commit()?;
    Ok(())
}

/// Drops everything mirrored from the server. The outbox and the device's own records are not
/// mirrored data and stay.
pub(crate) fn forget_mirror(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "DELETE FROM mirror_segments; DELETE FROM mirror_patrols; DELETE FROM mirror_issues;\n         DELETE FROM mirror_coverage; DELETE FROM mirror_alerts;",
    )?;
    Ok(())
}

fn apply_change(tx: &Transaction<'_>, change: &Change) -> Result<()> {
    let delete = match change.entity {
        ChangeEntity::Segment => "DELETE FROM mirror_segments WHERE id = ?1",
        ChangeEntity::Patrol => "DELETE FROM mirror_patrols WHERE id = ?1",
        ChangeEntity::Issue => "DELETE FROM mirror_issues WHERE id = ?1",
        ChangeEntity::Coverage => "DELETE FROM mirror_coverage WHERE id = ?1",
        ChangeEntity::Alert => "DELETE FROM mirror_alerts WHERE id = ?1",
    };
    if change.op == ChangeOp::Delete {
        tx.prepare_cached(delete)?.execute([&change.id])?;
        return Ok(());
    }
    let data = serde_json::to_string(&change.data)?;
    let bad = |e: serde_json::Error| {
        ClientError::Protocol(format!(
            "change {} ({} {}) does not hold a valid record: {e}",
            change.seq,
            change.entity.as_str(),
            change.id
        ))
    };
    // Parsed with the shared types, both to check the server's data and to fill the query columns.
    // `seq` guards against an older change overwriting a newer one.
    match change.entity {
        ChangeEntity::Segment => {
            let s: Segment = Deserialize::deserialize(&change.data).map_err(bad)?;
            tx.prepare_cached(
                "INSERT INTO mirror_segments (id, code, name, seq, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET code = excluded.code, name = excluded.name,
                     seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_segments.seq",
            )?
            .execute(params![
                    s.properties.id.to_string(),
                    s.properties.code,
                    s.properties.name,
                    change.seq,
                    data
            ])?;
        }
        ChangeEntity::Patrol => {
            let p: Patrol = Deserialize::deserialize(&change.data).map_err(bad)?;
            tx.prepare_cached(
                "INSERT INTO mirror_patrols (id, patroller, started_at, seq, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET patroller = excluded.patroller,
                     started_at = excluded.started_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_patrols.seq",
            )?
            .execute(params![
                    p.id.to_string(),
                    p.patroller.to_string(),
                    time(p.started_at),
                    change.seq,
                    data
            ])?;
        }
        ChangeEntity::Issue => {
            let i: Issue = Deserialize::deserialize(&change.data).map_err(bad)?;
            tx.prepare_cached(
                "INSERT INTO mirror_issues (id, segment_id, reporter, status, reported_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET segment_id = excluded.segment_id,
                     reporter = excluded.reporter, status = excluded.status,
                     reported_at = excluded.reported_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_issues.seq",
            )?
            .execute(params![
                    i.id.to_string(),
                    i.segment_id.to_string(),
                    i.reporter.to_string(),
                    i.status.as_str(),
                    time(i.reported_at),
                    change.seq,
                    data
            ])?;
        }
        ChangeEntity::Coverage => {
            let c: CoverageSummary = Deserialize::deserialize(&change.data).map_err(bad)?;
            tx.prepare_cached(
                "INSERT INTO mirror_coverage (id, last_covered, due_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET last_covered = excluded.last_covered,
                     due_at = excluded.due_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_coverage.seq",
            )?
            .execute(params![
                c.segment_id.to_string(),
                c.last_covered.map(time),
                c.due_at.map(time),
                change.seq,
                data
            ])?;
        }
        ChangeEntity::Alert => {
            let a: Alert = Deserialize::deserialize(&change.data).map_err(bad)?;
            tx.prepare_cached(
                "INSERT INTO mirror_alerts (id, kind, state, drill, issue_id, raised_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                     drill = excluded.drill, issue_id = excluded.issue_id,
                     raised_at = excluded.raised_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_alerts.seq",
            )?
            .execute(params![
                a.id.to_string(),
                a.kind.as_str(),
                a.state.as_str(),
                a.drill,
                a.issue_id.map(|i| i.to_string()),
                time(a.raised_at),
                change.seq,
                data
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_keeps_the_device_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        let first = {
            let conn = open(&path).expect("open");
            device_id(&conn).expect("device id")
        };
        let conn = open(&path).expect("reopen");
        assert_eq!(device_id(&conn).expect("device id"), first);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        drop(open(&path).expect("open"));
        let conn = Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "user_version", 99)
            .expect("bump version");
        drop(conn);
        assert!(matches!(
            open(&path),
            Err(ClientError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn stored_times_sort_as_text() {
        let a = time(DateTime::from_timestamp(1_700_000_000, 5_000).expect("time"));
        let b = time(DateTime::from_timestamp(1_700_000_000, 40_000_000).expect("time"));
        assert!(a < b, "{a} < {b}");
        assert_eq!(
            parse_time(&a).expect("parse"),
            DateTime::from_timestamp(1_700_000_000, 5_000).expect("time")
        );
    }
}

#[cfg(test)]
mod mirror_tests {
    use super::*;
    use riverchief_shared::domain::{Bank, SegmentProperties};
    use riverchief_shared::id::SegmentId;

    fn segment_change(seq: i64, code: &str, name: &str) -> Change {
        let id = SegmentId::new();
        let segment = Segment {
            properties: SegmentProperties {
                id,
                code: code.into(),
                name: name.into(),
                name_en: None,
                river: "秦淮河".into(),
                bank: Bank::Left,
                length_m: 644.0,
                start_chainage_m: 847.0,
                start_chainage: "K0+847".into(),
                end_chainage: "K1+491".into(),
                patrol_buffer_m: 60.0,
                grid: None,
                gauge_station: None,
            },
            line: vec![[118.744, 32.05], [118.744, 32.056]],
        };
        Change {
            seq,
            entity: ChangeEntity::Segment,
            id: id.to_string(),
            op: ChangeOp::Upsert,
            data: serde_json::to_value(segment).expect("json"),
        }
    }

    fn page(changes: Vec<Change>, next: &str, reset: bool) -> PullResponse {
        PullResponse {
            changes,
            next: next.into(),
            more: false,
            reset,
        }
    }

    fn codes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT code FROM mirror_segments ORDER BY code")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn pages_apply_with_their_cursor_and_a_reset_spares_the_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("db.sqlite3")).expect("open");
        conn.execute(
            "INSERT INTO outbox (mutation_id, device_seq, type, body, urgent, created_at)
             VALUES ('m', 1, 'patrol.start', '{}', 0, '2024-07-03T00:00:00.000000Z')",
            [],
        )
        .expect("queue");

        let first = segment_change(1, "QHL-01", "汉中门大桥—清凉门大桥");
        let mut renamed = first.clone();
        renamed.seq = 3;
        renamed.data["name"] = "改名".into();
        apply_page(
            &mut conn,
            &page(
                vec![
                    first.clone(),
                    segment_change(2, "QHL-02", "清凉门大桥—彩虹桥"),
                    renamed,
                ],
                "e1.3",
                false,
            ),
        )
        .expect("apply");
        assert_eq!(codes(&conn), vec!["QHL-01", "QHL-02"]);
        let name: String = conn
            .query_row(
                "SELECT name FROM mirror_segments WHERE code = 'QHL-01'",
                [],
                |r| r.get(0),
            )
            .expect("name");
        assert_eq!(name, "改名");
        assert_eq!(
            device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
            Some("e1.3".into())
        );

        // A stale change never overwrites a newer one.
        apply_page(&mut conn, &page(vec![first], "e1.4", false)).expect("apply");
        let name: String = conn
            .query_row(
                "SELECT name FROM mirror_segments WHERE code = 'QHL-01'",
                [],
                |r| r.get(0),
            )
            .expect("name");
        assert_eq!(name, "改名");

        // The server's data was rebuilt: the mirror starts again, the queued work stays.
        apply_page(
            &mut conn,
            &page(vec![segment_change(1, "QHR-02", "右岸")], "e2.1", true),
        )
        .expect("apply");
        assert_eq!(codes(&conn), vec!["QHR-02"]);
        let queued: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .expect("count");
        assert_eq!(queued, 1);
        assert_eq!(
            device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
            Some("e2.1".into())
        );

        // A page that cannot be applied leaves the cursor where it was.
        let mut broken = segment_change(2, "X", "x");
        broken.data = serde_json::json!({"not": "a segment"});
        assert!(apply_page(&mut conn, &page(vec![broken], "e2.2", false)).is_err());
        assert_eq!(
            device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
            Some("e2.1".into())
        );
    }
}
