//! What the patroller can look at offline: the mirrored segments, their issues and patrols merged
//! with what this device has recorded, and where the queue stands.

use crate::client::{stored_user, Client};
use crate::error::{ClientError, Result};
use crate::outbox::{self, OutboxState};
use crate::store::{self, DeviceColumn};
use chrono::{DateTime, Utc};
use riverchief_shared::api::{ErrorDetail, UserInfo};
use riverchief_shared::domain::{Issue, IssueCategory, Outflow, Patrol, Segment, Severity};
use riverchief_shared::id::{DeviceId, IssueId, MutationId, PatrolId, SegmentId};
use riverchief_shared::photo::Sha256;
use riverchief_shared::sync::IssueReport;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a record made on this device stands in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalState {
    pub state: OutboxState,
    /// The server's reason, when it refused the record.
    pub error: Option<ErrorDetail>,
}

/// An issue as this device knows it: reported here, pulled from the server, or both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssueSummary {
    pub id: IssueId,
    pub segment_id: SegmentId,
    pub category: IssueCategory,
    pub severity: Severity,
    pub outflow: Option<Outflow>,
    pub description: String,
    pub reported_at: DateTime<Utc>,
    /// Whether it is a critical hazard (raised at once).
    pub critical: bool,
    /// Set when the issue was reported on this device.
    pub local: Option<LocalState>,
    /// Photos reported with it on this device, and how many of them the server has confirmed.
    pub photos_total: usize,
    pub photos_confirmed: usize,
    /// The issue as last pulled from the server (status, events, photo arrival).
    pub server: Option<Issue>,
}

/// A patrol as this device knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatrolSummary {
    pub id: PatrolId,
    pub segment_ids: Vec<SegmentId>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Points recorded on this device, or the server's count for a patrol recorded elsewhere.
    pub point_count: u64,
    /// Set when the patrol was started on this device (the state of its start).
    pub local: Option<LocalState>,
    pub server: Option<Patrol>,
}

/// A mutation the server refused: kept, shown, never retried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedMutation {
    pub id: MutationId,
    pub device_seq: u64,
    /// The mutation type (`issue.report`, ...).
    pub kind: String,
    pub error: ErrorDetail,
    pub created_at: DateTime<Utc>,
}

/// A photo the server refused (bad bytes, not an image, too large).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedPhoto {
    pub sha256: Sha256,
    pub reason: String,
}

/// Where the device stands: what waits to be sent, what was refused, when it last synced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub device_id: DeviceId,
    pub server_url: Option<String>,
    pub user: Option<UserInfo>,
    pub logged_in: bool,
    /// Mutations not yet confirmed by the server, urgent ones included.
    pub pending: usize,
    /// Of those, critical hazard reports.
    pub pending_urgent: usize,
    pub done: usize,
    pub rejected: Vec<RejectedMutation>,
    /// Photos still to be uploaded.
    pub photos_pending: usize,
    /// Their bytes.
    pub photos_pending_bytes: u64,
    pub photos_confirmed: usize,
    pub photos_failed: Vec<FailedPhoto>,
    /// The last sync that finished without an error.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Why the last sync failed, if it did (cleared by a successful one).
    pub last_sync_error: Option<String>,
    /// The pull cursor (opaque, the server's).
    pub cursor: Option<String>,
}

impl Client {
    /// The mirrored segments, by code.
    pub async fn segments(&self) -> Result<Vec<Segment>> {
        self.db(|conn| mirrored(conn, "SELECT data FROM mirror_segments ORDER BY code, id"))
            .await
    }

    /// The coverage summaries pulled from the server: per segment, when it was last covered and when
    /// it falls due at the stage in force. Segments never covered come first, then by due time.
    pub async fn coverage(&self) -> Result<Vec<riverchief_shared::coverage::CoverageSummary>> {
        self.db(|conn| {
            mirrored(
                conn,
                "SELECT data FROM mirror_coverage ORDER BY due_at IS NOT NULL, due_at, id",
            )
        })
        .await
    }

    /// The alerts pulled from the server that this user may see, newest first: stage changes, hazards
    /// on their segments, and what they reported with its acknowledgement (the receipt). Resolved
    /// alerts are kept as history; drill alerts carry `drill`.
    pub async fn alerts(&self) -> Result<Vec<riverchief_shared::alert::Alert>> {
        self.db(|conn| {
            mirrored(
                conn,
                "SELECT data FROM mirror_alerts ORDER BY raised_at DESC, id DESC",
            )
        })
        .await
    }

    /// A segment named by its id, or by its code as in the mirrored data.
    pub async fn resolve_segment(&self, code_or_id: &str) -> Result<SegmentId> {
        if let Ok(id) = SegmentId::parse(code_or_id) {
            return Ok(id);
        }
        let code = code_or_id.trim().to_owned();
        self.db(move |conn| {
            let id = conn
                .query_row(
                    // An exact match wins over one that differs only in case.
                    "SELECT id FROM mirror_segments WHERE code = ?1 COLLATE NOCASE
                     ORDER BY code = ?1 DESC LIMIT 1",
                    [&code],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .ok_or(ClientError::UnknownSegment(code))?;
            store::parse_stored(&id, SegmentId::parse)
        })
        .await
    }

    /// The issues pulled from the server (those this user may see), newest first: their status,
    /// events and photo arrival as the server last reported them.
    pub async fn issues(&self) -> Result<Vec<Issue>> {
        self.db(|conn| {
            mirrored(
                conn,
                "SELECT data FROM mirror_issues ORDER BY reported_at DESC, id DESC",
            )
        })
        .await
    }

    /// Issues reported on this device and issues pulled from the server (those this user may see),
    /// newest first.
    pub async fn my_issues(&self) -> Result<Vec<IssueSummary>> {
        self.db(|conn| {
            let mut by_id: BTreeMap<IssueId, IssueSummary> = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT data FROM mirror_issues")?;
            for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
                let issue: Issue = serde_json::from_str(&row?)?;
                by_id.insert(issue.id, from_server_issue(issue));
            }
            let mut stmt = conn.prepare(
                "SELECT li.data, o.state, o.error FROM local_issues li
                 JOIN outbox o ON o.mutation_id = li.mutation_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut confirmed = conn.prepare_cached(
                "SELECT COUNT(*) FROM photos WHERE sha256 = ?1 AND state = 'confirmed'",
            )?;
            for row in rows {
                let (data, state, error) = row?;
                let report: IssueReport = serde_json::from_str(&data)?;
                let local = LocalState {
                    state: OutboxState::parse(&state)?,
                    error: outbox::error_message(error.as_deref()),
                };
                let total = report.photos.len();
                let mut sent = 0;
                for sha in &report.photos {
                    sent += confirmed.query_row([sha.hex()], |r| r.get::<_, i64>(0))?;
                }
                let sent = usize::try_from(sent).unwrap_or_default();
                let summary = by_id
                    .entry(report.issue_id)
                    .and_modify(|s| s.local = Some(local.clone()))
                    .or_insert_with(|| from_local_report(report, local));
                summary.photos_total = total;
                summary.photos_confirmed = sent;
            }
            let mut out: Vec<_> = by_id.into_values().collect();
            out.sort_by(|a, b| b.reported_at.cmp(&a.reported_at).then(b.id.cmp(&a.id)));
            Ok(out)
        })
        .await
    }

    /// Patrols started on this device and the user's patrols pulled from the server, newest first.
    pub async fn patrols(&self) -> Result<Vec<PatrolSummary>> {
        self.db(|conn| {
            let mut by_id: BTreeMap<PatrolId, PatrolSummary> = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT data FROM mirror_patrols")?;
            for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
                let patrol: Patrol = serde_json::from_str(&row?)?;
                by_id.insert(
                    patrol.id,
                    PatrolSummary {
                        id: patrol.id,
                        segment_ids: patrol.segment_ids.clone(),
                        started_at: patrol.started_at,
                        ended_at: patrol.ended_at,
                        point_count: patrol.point_count,
                        local: None,
                        server: Some(patrol),
                    },
                );
            }
            let mut stmt = conn.prepare(
                "SELECT p.id, p.segment_ids, p.started_at, p.ended_at, p.point_count, o.state, o.error
                 FROM local_patrols p JOIN outbox o ON o.mutation_id = p.start_mutation",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            for row in rows {
                let (id, segment_ids, started_at, ended_at, count, state, error) = row?;
                let id = store::parse_stored(&id, PatrolId::parse)?;
                let local = LocalState {
                    state: OutboxState::parse(&state)?,
                    error: outbox::error_message(error.as_deref()),
                };
                let summary = by_id.entry(id).or_insert_with(|| PatrolSummary {
                    id,
                    segment_ids: Vec::new(),
                    started_at: DateTime::<Utc>::MIN_UTC,
                    ended_at: None,
                    point_count: 0,
                    local: None,
                    server: None,
                });
                // The device's own record is the fresher one for a patrol walked here.
                summary.segment_ids = serde_json::from_str(&segment_ids)?;
                summary.started_at = store::parse_time(&started_at)?;
                summary.ended_at = store::parse_time_opt(ended_at)?;
                summary.point_count = u64::try_from(count).unwrap_or_default();
                summary.local = Some(local);
            }
            let mut out: Vec<_> = by_id.into_values().collect();
            out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
            Ok(out)
        })
        .await
    }

    /// Where the queue and the photos stand.
    pub async fn status(&self) -> Result<Status> {
        let server_override = self.inner.options.server_url.clone();
        let mut status = self.db(read_status).await?;
        if let Some(url) = server_override {
            status.server_url = Some(crate::sync::api::normalize_server_url(&url).unwrap_or(url));
        }
        Ok(status)
    }
}

/// The JSON `data` column of a mirror query, each row parsed as the server sent it.
fn mirrored<T: serde::de::DeserializeOwned>(conn: &mut Connection, sql: &str) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row?)?);
    }
    Ok(out)
}

fn from_server_issue(issue: Issue) -> IssueSummary {
    IssueSummary {
        id: issue.id,
        segment_id: issue.segment_id,
        category: issue.category,
        severity: issue.severity,
        outflow: issue.outflow,
        description: issue.description.clone(),
        reported_at: issue.reported_at,
        critical: issue.critical,
        local: None,
        photos_total: 0,
        photos_confirmed: 0,
        server: Some(issue),
    }
}

fn from_local_report(report: IssueReport, local: LocalState) -> IssueSummary {
    IssueSummary {
        id: report.issue_id,
        segment_id: report.segment_id,
        category: report.category,
        severity: report.severity,
        outflow: report.outflow,
        critical: riverchief_shared::domain::is_critical(
            report.category,
            report.severity,
            report.outflow,
        ),
        description: report.description,
        reported_at: report.reported_at,
        local: Some(local),
        photos_total: 0,
        photos_confirmed: 0,
        server: None,
    }
}

fn count(conn: &Connection, sql: &str) -> Result<usize> {
    let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or_default())
}

fn read_status(conn: &mut Connection) -> Result<Status> {
    let rejected = {
        let mut stmt = conn.prepare(
            "SELECT mutation_id, device_seq, type, error, created_at FROM outbox
             WHERE state = 'rejected' ORDER BY device_seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, seq, kind, error, created_at) = row?;
            out.push(RejectedMutation {
                id: store::parse_stored(&id, MutationId::parse)?,
                device_seq: u64::try_from(seq).unwrap_or_default(),
                kind,
                error: outbox::error_message(error.as_deref()).unwrap_or(ErrorDetail {
                    code: "rejected".into(),
                    message: "refused by the server".into(),
                    field: None,
                    current_status: None,
                }),
                created_at: store::parse_time(&created_at)?,
            });
        }
        out
    };
    let photos_failed = {
        let mut stmt = conn.prepare(
            "SELECT sha256, error FROM photos WHERE state = 'failed' ORDER BY captured_at, sha256",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (sha, reason) = row?;
            out.push(FailedPhoto {
                sha256: store::parse_stored(&sha, |s| Sha256::parse(s, "sha256"))?,
                reason: reason.unwrap_or_default(),
            });
        }
        out
    };
    let user = stored_user(conn)?;
    Ok(Status {
        device_id: store::device_id(conn)?,
        server_url: store::device_text(conn, DeviceColumn::ServerUrl)?,
        logged_in: store::device_text(conn, DeviceColumn::Token)?.is_some(),
        user,
        pending: count(conn, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")?,
        pending_urgent: count(
            conn,
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND urgent = 1",
        )?,
        done: count(conn, "SELECT COUNT(*) FROM outbox WHERE state = 'done'")?,
        rejected,
        photos_pending: crate::photos::count_waiting(conn)?,
        photos_pending_bytes: crate::photos::bytes_waiting(conn)?,
        photos_confirmed: count(
            conn,
            "SELECT COUNT(*) FROM photos WHERE state = 'confirmed'",
        )?,
        photos_failed,
        last_sync_at: store::parse_time_opt(store::device_text(conn, DeviceColumn::LastSyncAt)?)?,
        last_sync_error: store::device_text(conn, DeviceColumn::LastSyncError)?,
        cursor: store::device_text(conn, DeviceColumn::PullCursor)?,
    })
}
