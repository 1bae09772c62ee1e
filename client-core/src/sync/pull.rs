//! The pull lane: pages of the server's change log into the mirror tables.

use super::api::Api;
use super::retry::retrying;
use super::{ProgressFn, SyncProgress, SyncReport};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::store::{self, DeviceColumn};
use riverchief_shared::alert::Alert;
use riverchief_shared::coverage::CoverageSummary;
use riverchief_shared::domain::{Issue, Patrol, Segment};
use riverchief_shared::sync::{Change, ChangeEntity, ChangeOp, PullResponse};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

pub(crate) async fn pull_all(
    client: &Client,
    api: &Api,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    let policy = client.options().retry;
    let limit = client
        .options()
        .pull_limit
        .clamp(1, client.limits().max_pull_limit.max(1));
    let mut cursor = client
        .db(|conn| store::device_text(conn, DeviceColumn::PullCursor))
        .await?;
    loop {
        let page = retrying(&policy, "pull", |_| api.pull(cursor.as_deref(), limit)).await?;
        let n = page.changes.len();
        let (next, more, reset) = (page.next.clone(), page.more, page.reset);
        if reset {
            tracing::info!("the server asked for a fresh pull; rebuilding the local mirror");
        }
        client.db(move |conn| apply_page(conn, &page)).await?;
        report.pulled += n as u64;
        report.reset |= reset;
        progress(SyncProgress::Pulled { n });
        if !more {
            return Ok(());
        }
        if n == 0 && cursor.as_deref() == Some(next.as_str()) {
            return Err(ClientError::Protocol(
                "the server says more changes wait but the cursor does not move".into(),
            ));
        }
        cursor = Some(next);
    }
}

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
    store::set_device_text(&tx, DeviceColumn::PullCursor, Some(&page.next))?;
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
    let table = match change.entity {
        ChangeEntity::Segment => "mirror_segments",
        ChangeEntity::Patrol => "mirror_patrols",
        ChangeEntity::Issue => "mirror_issues",
        ChangeEntity::Coverage => "mirror_coverage",
        ChangeEntity::Alert => "mirror_alerts",
    };
    if change.op == ChangeOp::Delete {
        tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [&change.id])?;
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
            let s: Segment = serde_json::from_value(change.data.clone()).map_err(bad)?;
            tx.execute(
                "INSERT INTO mirror_segments (id, code, name, seq, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET code = excluded.code, name = excluded.name,
                     seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_segments.seq",
                params![
                    s.properties.id.to_string(),
                    s.properties.code,
                    s.properties.name,
                    change.seq,
                    data
                ],
            )?;
        }
        ChangeEntity::Patrol => {
            let p: Patrol = serde_json::from_value(change.data.clone()).map_err(bad)?;
            tx.execute(
                "INSERT INTO mirror_patrols (id, patroller, started_at, seq, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET patroller = excluded.patroller,
                     started_at = excluded.started_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_patrols.seq",
                params![
                    p.id.to_string(),
                    p.patroller.to_string(),
                    store::time(p.started_at),
                    change.seq,
                    data
                ],
            )?;
        }
        ChangeEntity::Issue => {
            let i: Issue = serde_json::from_value(change.data.clone()).map_err(bad)?;
            tx.execute(
                "INSERT INTO mirror_issues (id, segment_id, reporter, status, reported_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET segment_id = excluded.segment_id,
                     reporter = excluded.reporter, status = excluded.status,
                     reported_at = excluded.reported_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_issues.seq",
                params![
                    i.id.to_string(),
                    i.segment_id.to_string(),
                    i.reporter.to_string(),
                    i.status.as_str(),
                    store::time(i.reported_at),
                    change.seq,
                    data
                ],
            )?;
        }
        ChangeEntity::Coverage => {
            let c: CoverageSummary = serde_json::from_value(change.data.clone()).map_err(bad)?;
            tx.execute(
                "INSERT INTO mirror_coverage (id, last_covered, due_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET last_covered = excluded.last_covered,
                     due_at = excluded.due_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_coverage.seq",
                params![
                    c.segment_id.to_string(),
                    c.last_covered.map(store::time),
                    c.due_at.map(store::time),
                    change.seq,
                    data
                ],
            )?;
        }
        ChangeEntity::Alert => {
            let a: Alert = serde_json::from_value(change.data.clone()).map_err(bad)?;
            tx.execute(
                "INSERT INTO mirror_alerts (id, kind, state, drill, issue_id, raised_at, seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                     drill = excluded.drill, issue_id = excluded.issue_id,
                     raised_at = excluded.raised_at, seq = excluded.seq, data = excluded.data
                 WHERE excluded.seq >= mirror_alerts.seq",
                params![
                    a.id.to_string(),
                    a.kind.as_str(),
                    a.state.as_str(),
                    a.drill,
                    a.issue_id.map(|i| i.to_string()),
                    store::time(a.raised_at),
                    change.seq,
                    data
                ],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let mut conn = store::open(&dir.path().join("db.sqlite3")).expect("open");
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
            store::device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
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
            store::device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
            Some("e2.1".into())
        );

        // A page that cannot be applied leaves the cursor where it was.
        let mut broken = segment_change(2, "X", "x");
        broken.data = serde_json::json!({"not": "a segment"});
        assert!(apply_page(&mut conn, &page(vec![broken], "e2.2", false)).is_err());
        assert_eq!(
            store::device_text(&conn, DeviceColumn::PullCursor).expect("cursor"),
            Some("e2.1".into())
        );
    }
}
