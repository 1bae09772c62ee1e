//! What a patroller does, recorded offline: each action writes its entity and its outbox rows in one
//! local transaction, so that the store never holds an entity the server will not hear about, nor a
//! mutation without its entity.

use crate::capture::{self, CapturedPhoto};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::outbox::{self, OutboxState};
use crate::store;
use chrono::{DateTime, Utc};
use riverchief_shared::domain::{IssueCategory, IssueEventKind, Outflow, Severity, TrackPoint};
use riverchief_shared::geo::Position;
use riverchief_shared::id::{IssueEventId, IssueId, MutationId, PatrolId, SegmentId, UserId};
use riverchief_shared::sync::{
    IssueEventData, IssueReport, Mutation, MutationBody, PatrolFinish, PatrolPoints, PatrolStart,
    StockMove,
};
use riverchief_shared::{FieldError, Limits};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::PathBuf;

/// A problem found on the bank, as the patroller enters it.
#[derive(Debug, Clone)]
pub struct IssueDraft {
    pub segment_id: SegmentId,
    /// The patrol it was found on, if any.
    pub patrol_id: Option<PatrolId>,
    pub location: Position,
    pub category: IssueCategory,
    pub severity: Severity,
    /// Piping only: clear or muddy water.
    pub outflow: Option<Outflow>,
    pub description: String,
    /// Photo files; each is copied into the data directory when the report is recorded.
    pub photos: Vec<PathBuf>,
}

impl Client {
    /// Starts a patrol on the given segments.
    pub async fn start_patrol(
        &self,
        segment_ids: &[SegmentId],
        notes: Option<String>,
        weather: Option<String>,
    ) -> Result<PatrolId> {
        self.start_patrol_at(segment_ids, notes, weather, Utc::now())
            .await
    }

    /// Starts a patrol that began at `started_at` (an imported track).
    pub async fn start_patrol_at(
        &self,
        segment_ids: &[SegmentId],
        notes: Option<String>,
        weather: Option<String>,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<PatrolId> {
        let segment_ids = segment_ids.to_vec();
        let limits = self.limits();
        self.db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let start = PatrolStart {
                patrol_id: PatrolId::new(),
                segment_ids,
                started_at,
                notes,
                weather,
            };
            let patrol_id = start_patrol_in(&tx, start, &limits, Utc::now())?;
            tx.commit()?;
            Ok(patrol_id)
        })
        .await
    }

    /// Records a whole walk at once (an imported track): its start, its points and its finish, in
    /// one local transaction. Either all of it is queued or, when any part is refused (a point two
    /// days ahead, say), nothing is: no empty patrol is left to reach the server and never end.
    pub async fn record_walk(&self, walk: Walk) -> Result<PatrolId> {
        let limits = self.limits();
        self.db(move |conn| {
            let now = Utc::now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let start = PatrolStart {
                patrol_id: PatrolId::new(),
                segment_ids: walk.segment_ids,
                started_at: walk.started_at,
                notes: walk.notes,
                weather: None,
            };
            let patrol_id = start_patrol_in(&tx, start, &limits, now)?;
            append_points(&tx, patrol_id, &walk.points, &limits, now)?;
            finish_patrol_in(&tx, patrol_id, None, walk.ended_at, &limits, now)?;
            tx.commit()?;
            Ok(patrol_id)
        })
        .await
    }

    /// Appends track points to a patrol started on this device and not yet finished. Large tracks
    /// are split into mutations of at most `max_points_per_mutation` points, all recorded at once.
    pub async fn add_points(&self, patrol_id: PatrolId, points: &[TrackPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let points = points.to_vec();
        let limits = self.limits();
        self.db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            open_patrol(&tx, patrol_id)?;
            append_points(&tx, patrol_id, &points, &limits, Utc::now())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Finishes a patrol started on this device.
    pub async fn finish_patrol(&self, patrol_id: PatrolId, notes: Option<String>) -> Result<()> {
        self.finish_patrol_at(patrol_id, notes, Utc::now()).await
    }

    /// Finishes a patrol that ended at `ended_at` (an imported track).
    pub async fn finish_patrol_at(
        &self,
        patrol_id: PatrolId,
        notes: Option<String>,
        ended_at: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let limits = self.limits();
        self.db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            finish_patrol_in(&tx, patrol_id, notes, ended_at, &limits, Utc::now())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Reports a problem. The photos are checked, hashed and copied into the data directory first;
    /// then the issue and its mutation are recorded together. A critical hazard is queued as
    /// urgent and travels ahead of everything else.
    pub async fn report_issue(&self, draft: IssueDraft) -> Result<IssueId> {
        let limits = self.limits();
        // Refuse a bad draft before copying any photo; the queued mutation is validated again,
        // whole, when it is written.
        prevalidate(
            MutationBody::IssueReport(IssueReport {
                issue_id: IssueId::new(),
                segment_id: draft.segment_id,
                patrol_id: draft.patrol_id,
                location: draft.location,
                category: draft.category,
                severity: draft.severity,
                outflow: draft.outflow,
                description: draft.description.clone(),
                reported_at: Utc::now(),
                photos: Vec::new(),
            }),
            draft.photos.len(),
            &limits,
        )?;
        let photos = self.capture_photos(draft.photos.clone()).await?;
        self.db(move |conn| {
            let now = Utc::now();
            let issue_id = IssueId::new();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for photo in &photos {
                crate::photos::record(&tx, photo, now)?;
            }
            // An urgent report jumps the queue; its patrol's start must jump with it, or the
            // server would not know the patrol yet.
            let depends_on = match draft.patrol_id {
                Some(patrol_id) => patrol_start_mutation(&tx, patrol_id)?,
                None => None,
            };
            let report = IssueReport {
                issue_id,
                segment_id: draft.segment_id,
                patrol_id: draft.patrol_id,
                location: draft.location,
                category: draft.category,
                severity: draft.severity,
                outflow: draft.outflow,
                description: draft.description,
                reported_at: now,
                photos: photos.iter().map(|p| p.sha256).collect(),
            };
            let data = serde_json::to_string(&report)?;
            let mutation = outbox::enqueue(
                &tx,
                MutationBody::IssueReport(report),
                depends_on,
                now,
                &limits,
            )?;
            tx.execute(
                "INSERT INTO local_issues (id, mutation_id, segment_id, patrol_id, reported_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    issue_id.to_string(),
                    mutation.id.to_string(),
                    draft.segment_id.to_string(),
                    draft.patrol_id.map(|p| p.to_string()),
                    store::time(now),
                    data
                ],
            )?;
            tx.commit()?;
            Ok(issue_id)
        })
        .await
    }

    /// Adds an event to an issue's history (a comment, a status change, a dispatch), with photos.
    pub async fn add_issue_event(
        &self,
        issue_id: IssueId,
        kind: IssueEventKind,
        note: Option<String>,
        assignee: Option<UserId>,
        duplicate_of: Option<IssueId>,
        photos: Vec<PathBuf>,
    ) -> Result<IssueEventId> {
        self.add_issue_event_due(issue_id, kind, note, assignee, duplicate_of, None, photos)
            .await
    }

    /// [`Client::add_issue_event`] with a due time (for a dispatch).
    #[allow(clippy::too_many_arguments)]
    pub async fn add_issue_event_due(
        &self,
        issue_id: IssueId,
        kind: IssueEventKind,
        note: Option<String>,
        assignee: Option<UserId>,
        duplicate_of: Option<IssueId>,
        due_at: Option<DateTime<Utc>>,
        photos: Vec<PathBuf>,
    ) -> Result<IssueEventId> {
        let limits = self.limits();
        prevalidate(
            MutationBody::IssueEvent(IssueEventData {
                event_id: IssueEventId::new(),
                issue_id,
                kind,
                note: note.clone(),
                assignee,
                duplicate_of,
                photos: Vec::new(),
                due_at,
                based_on: None,
            }),
            photos.len(),
            &limits,
        )?;
        let photos = self.capture_photos(photos).await?;
        self.db(move |conn| {
            let now = Utc::now();
            let event_id = IssueEventId::new();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for photo in &photos {
                crate::photos::record(&tx, photo, now)?;
            }
            let event = IssueEventData {
                event_id,
                issue_id,
                kind,
                note,
                assignee,
                duplicate_of,
                photos: photos.iter().map(|p| p.sha256).collect(),
                due_at,
                based_on: newest_seen_event(&tx, issue_id)?,
            };
            let data = serde_json::to_string(&event)?;
            let mutation =
                outbox::enqueue(&tx, MutationBody::IssueEvent(event), None, now, &limits)?;
            tx.execute(
                "INSERT INTO local_issue_events (id, mutation_id, issue_id, at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    event_id.to_string(),
                    mutation.id.to_string(),
                    issue_id.to_string(),
                    store::time(now),
                    data
                ],
            )?;
            tx.commit()?;
            Ok(event_id)
        })
        .await
    }

    /// Copies each photo into the store (blocking file work, off the async threads).
    async fn capture_photos(&self, paths: Vec<PathBuf>) -> Result<Vec<CapturedPhoto>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let photos_dir = self.photos_dir();
        let max = self.limits().max_photo_bytes;
        let shrink = self.options().photo_shrink;
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|path| capture::capture(path, &photos_dir, max, shrink))
                .collect()
        })
        .await
        .map_err(|e| ClientError::Internal(format!("photo capture failed: {e}")))?
    }
}

/// The newest event of the issue as this device last pulled it: what a step taken now is based on.
fn newest_seen_event(conn: &Connection, issue: IssueId) -> Result<Option<IssueEventId>> {
    let data: Option<String> = conn
        .query_row(
            "SELECT data FROM mirror_issues WHERE id = ?1",
            params![issue.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(data) = data else {
        return Ok(None);
    };
    let mirrored: riverchief_shared::domain::Issue = serde_json::from_str(&data)?;
    Ok(mirrored.events.last().map(|e| e.id))
}

/// Validates a mutation body without its photos, and the number of photos.
impl Client {
    /// Records a stock movement (a patroller: a dispatch to a segment) for the next sync. `depot`,
    /// `item` and `segment` are ids or codes. The server judges it against the stock when it arrives:
    /// more than is on the shelf is rejected with the quantity available, shown in [`Client::status`].
    pub async fn move_stock(
        &self,
        depot: &str,
        item: &str,
        kind: &str,
        quantity: i64,
        segment: Option<&str>,
        note: Option<String>,
    ) -> Result<MutationId> {
        let limits = self.limits();
        let body = MutationBody::StockMove(StockMove {
            movement_id: riverchief_shared::id::MovementId::new(),
            depot: depot.to_owned(),
            item: item.to_owned(),
            kind: riverchief_shared::stock::MovementKind::parse_field(kind, "data.kind")?,
            quantity,
            segment: segment.map(str::to_owned),
            note,
        });
        prevalidate(body.clone(), 0, &limits)?;
        self.db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mutation = outbox::enqueue(&tx, body, None, Utc::now(), &limits)?;
            tx.commit()?;
            Ok(mutation.id)
        })
        .await
    }
}

fn prevalidate(body: MutationBody, photo_count: usize, limits: &Limits) -> Result<()> {
    let now = Utc::now();
    if photo_count > limits.max_photos_per_record {
        return Err(FieldError::new(
            "too_many",
            "data.photos",
            format!(
                "{photo_count} photos; at most {} are allowed",
                limits.max_photos_per_record
            ),
        )
        .into());
    }
    let mutation = Mutation {
        id: MutationId::new(),
        device_seq: 0,
        at: now,
        body,
    };
    mutation.validate(now, limits)?;
    Ok(())
}

/// Queues `points` for an open patrol as `patrol.points` mutations of at most
/// `max_points_per_mutation` each, with their local copies, inside `tx`.
pub(crate) fn append_points(
    tx: &Transaction<'_>,
    patrol_id: PatrolId,
    points: &[TrackPoint],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut count: i64 = tx.query_row(
        "SELECT point_count FROM local_patrols WHERE id = ?1",
        [patrol_id.to_string()],
        |r| r.get(0),
    )?;
    for chunk in points.chunks(limits.max_points_per_mutation.max(1)) {
        let mutation = outbox::enqueue(
            tx,
            MutationBody::PatrolPoints(PatrolPoints {
                patrol_id,
                points: chunk.to_vec(),
            }),
            None,
            now,
            limits,
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO local_track_points (patrol_id, n, t, lon, lat, accuracy_m, mutation_id, mock)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for point in chunk {
            insert.execute(params![
                patrol_id.to_string(),
                count,
                store::time(point.t),
                point.lon.get(),
                point.lat.get(),
                point.accuracy_m,
                mutation.id.to_string(),
                point.mock
            ])?;
            count += 1;
        }
    }
    tx.execute(
        "UPDATE local_patrols SET point_count = ?2 WHERE id = ?1",
        params![patrol_id.to_string(), count],
    )?;
    Ok(())
}

/// A whole walk recorded at once ([`Client::record_walk`]).
#[derive(Debug, Clone)]
pub struct Walk {
    pub segment_ids: Vec<SegmentId>,
    pub notes: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub points: Vec<TrackPoint>,
}

/// Queues a patrol's start and its local row in the caller's transaction.
fn start_patrol_in(
    tx: &Transaction<'_>,
    start: PatrolStart,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<PatrolId> {
    let patrol_id = start.patrol_id;
    let (segment_ids, started_at) = (start.segment_ids.clone(), start.started_at);
    let (notes, weather) = (start.notes.clone(), start.weather.clone());
    let mutation = outbox::enqueue(tx, MutationBody::PatrolStart(start), None, now, limits)?;
    tx.execute(
        "INSERT INTO local_patrols (id, start_mutation, segment_ids, started_at, notes, weather)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            patrol_id.to_string(),
            mutation.id.to_string(),
            serde_json::to_string(&segment_ids)?,
            store::time(started_at),
            notes,
            weather
        ],
    )?;
    Ok(patrol_id)
}

/// Queues a patrol's finish (after the fixes still waiting for their batch) in the caller's
/// transaction.
fn finish_patrol_in(
    tx: &Transaction<'_>,
    patrol_id: PatrolId,
    notes: Option<String>,
    ended_at: DateTime<Utc>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<()> {
    open_patrol(tx, patrol_id)?;
    // The fixes still waiting for their batch go before the finish.
    crate::track::close_batch(tx, patrol_id, limits, now)?;
    outbox::enqueue(
        tx,
        MutationBody::PatrolFinish(PatrolFinish {
            patrol_id,
            ended_at,
            notes: notes.clone(),
        }),
        None,
        now,
        limits,
    )?;
    tx.execute(
        "UPDATE local_patrols SET ended_at = ?2, finish_notes = ?3 WHERE id = ?1",
        params![patrol_id.to_string(), store::time(ended_at), notes],
    )?;
    Ok(())
}

/// Checks that the patrol was started here, is not finished and was not refused by the server;
/// returns its point count.
pub(crate) fn open_patrol(conn: &Connection, patrol_id: PatrolId) -> Result<i64> {
    let row = conn
        .query_row(
            "SELECT ended_at, start_mutation, point_count FROM local_patrols WHERE id = ?1",
            [patrol_id.to_string()],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()?;
    let (ended_at, start_mutation, count) = row.ok_or(ClientError::UnknownPatrol(patrol_id))?;
    if ended_at.is_some() {
        return Err(ClientError::PatrolFinished(patrol_id));
    }
    if let Some((OutboxState::Rejected, error)) = outbox::state_of(conn, &start_mutation)? {
        let message = outbox::error_message(error.as_deref())
            .map(|e| e.message)
            .unwrap_or_default();
        return Err(ClientError::PatrolRejected {
            id: patrol_id,
            message,
        });
    }
    Ok(count)
}

/// The mutation that started a patrol on this device, if it was started here.
fn patrol_start_mutation(conn: &Connection, patrol_id: PatrolId) -> Result<Option<MutationId>> {
    conn.query_row(
        "SELECT start_mutation FROM local_patrols WHERE id = ?1",
        [patrol_id.to_string()],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(|id| store::parse_stored(&id, MutationId::parse))
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientOptions;
    use riverchief_shared::geo::{Lat, Lon};

    fn client(dir: &std::path::Path, limits: Limits) -> Client {
        let options = ClientOptions {
            limits,
            ..ClientOptions::default()
        };
        Client::open(dir, options).expect("open")
    }

    fn point(i: i64) -> TrackPoint {
        TrackPoint {
            t: Utc::now() - chrono::Duration::seconds(1000 - i),
            lon: Lon::parse(118.744, "lon").expect("lon"),
            lat: Lat::parse(32.05 + i as f64 * 1e-5, "lat").expect("lat"),
            accuracy_m: Some(5.0),
            crs: None,
            mock: false,
        }
    }

    fn rows(client: &Client, sql: &str) -> Vec<(String, i64, bool, Option<String>)> {
        let conn = rusqlite::Connection::open(client.db_path()).expect("open");
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn draft(
        segment_id: SegmentId,
        patrol_id: Option<PatrolId>,
        photos: Vec<PathBuf>,
    ) -> IssueDraft {
        IssueDraft {
            segment_id,
            patrol_id,
            location: Position {
                lon: Lon::parse(118.744, "lon").expect("lon"),
                lat: Lat::parse(32.053, "lat").expect("lat"),
            },
            category: IssueCategory::Piping,
            severity: Severity::Major,
            outflow: Some(Outflow::Muddy),
            description: "背水坡脚浑水管涌".into(),
            photos,
        }
    }

    #[tokio::test]
    async fn a_patrol_becomes_ordered_frozen_mutations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            max_points_per_mutation: 4,
            ..Limits::DEFAULT
        };
        let client = client(dir.path(), limits);
        let segment = SegmentId::new();
        let patrol = client
            .start_patrol(&[segment], None, Some("小雨".into()))
            .await
            .expect("start");
        let points: Vec<_> = (0..10).map(point).collect();
        client.add_points(patrol, &points).await.expect("points");

        let shot = dir.path().join("boil.png");
        std::fs::write(&shot, crate::capture::tests::png(&[1; 5000])).expect("write");
        let issue = client
            .report_issue(draft(segment, Some(patrol), vec![shot.clone()]))
            .await
            .expect("report");
        client.finish_patrol(patrol, None).await.expect("finish");

        // 10 points at 4 a mutation make 3 mutations; sequence numbers follow the actions.
        let queued = rows(
            &client,
            "SELECT type, device_seq, urgent, depends_on FROM outbox ORDER BY device_seq",
        );
        let kinds: Vec<_> = queued.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        assert_eq!(
            kinds,
            vec![
                ("patrol.start", 1, false),
                ("patrol.points", 2, false),
                ("patrol.points", 3, false),
                ("patrol.points", 4, false),
                ("issue.report", 5, true),
                ("patrol.finish", 6, false),
            ]
        );
        // The urgent report carries its patrol's start along.
        let start_id = rows(
            &client,
            "SELECT mutation_id, 0, 0, NULL FROM outbox WHERE device_seq = 1",
        )
        .remove(0)
        .0;
        assert_eq!(queued[4].3.as_deref(), Some(start_id.as_str()));

        // Frozen bodies parse back as valid mutations by the server's rules.
        let conn = rusqlite::Connection::open(client.db_path()).expect("open");
        let bodies: Vec<String> = conn
            .prepare("SELECT body FROM outbox ORDER BY device_seq")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for body in &bodies {
            let value: serde_json::Value = serde_json::from_str(body).expect("json");
            Mutation::parse(value, Utc::now(), &limits).expect("valid");
        }

        // The photo was copied; the original may go.
        std::fs::remove_file(&shot).expect("remove");
        let sha = riverchief_shared::photo::Sha256::of(&crate::capture::tests::png(&[1; 5000]));
        assert!(client.photo_path(&sha).exists());

        let status = client.status().await.expect("status");
        assert_eq!(
            (status.pending, status.pending_urgent, status.done),
            (6, 1, 0)
        );
        assert_eq!(status.photos_pending, 1);

        let issues = client.my_issues().await.expect("issues");
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].id, issue);
        assert!(issues[0].critical);
        assert_eq!(
            issues[0].local.as_ref().map(|l| l.state),
            Some(OutboxState::Pending)
        );
        let patrols = client.patrols().await.expect("patrols");
        assert_eq!(patrols.len(), 1);
        assert_eq!(patrols[0].point_count, 10);
        assert!(patrols[0].ended_at.is_some());
    }

    #[tokio::test]
    async fn refuses_what_the_server_would_refuse_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client(dir.path(), Limits::DEFAULT);
        let segment = SegmentId::new();

        let unknown = PatrolId::new();
        assert!(matches!(
            client.add_points(unknown, &[point(1)]).await,
            Err(ClientError::UnknownPatrol(id)) if id == unknown
        ));
        let patrol = client
            .start_patrol(&[segment], None, None)
            .await
            .expect("start");
        client.finish_patrol(patrol, None).await.expect("finish");
        assert!(matches!(
            client.add_points(patrol, &[point(1)]).await,
            Err(ClientError::PatrolFinished(_))
        ));
        assert!(matches!(
            client.finish_patrol(patrol, None).await,
            Err(ClientError::PatrolFinished(_))
        ));
        assert!(matches!(
            client.start_patrol(&[], None, None).await,
            Err(ClientError::Validation(e)) if e.field == "data.segment_ids"
        ));

        // Muddy piping below major: refused before any photo is copied.
        let shot = dir.path().join("boil.png");
        std::fs::write(&shot, crate::capture::tests::png(&[2; 100])).expect("write");
        let mut bad = draft(segment, None, vec![shot.clone()]);
        bad.severity = Severity::Significant;
        assert!(matches!(
            client.report_issue(bad).await,
            Err(ClientError::Validation(e)) if e.field == "data.severity"
        ));
        let text = dir.path().join("note.jpg");
        std::fs::write(&text, "not a photo").expect("write");
        assert!(matches!(
            client.report_issue(draft(segment, None, vec![text])).await,
            Err(ClientError::NotAnImage { .. })
        ));
        assert!(matches!(
            client
                .add_issue_event(IssueId::new(), IssueEventKind::Dispatched, None, None, None, vec![])
                .await,
            Err(ClientError::Validation(e)) if e.field == "data.assignee"
        ));
        let copied = std::fs::read_dir(client.photos_dir())
            .expect("list")
            .count();
        assert_eq!(copied, 0);
        let status = client.status().await.expect("status");
        assert_eq!((status.pending, status.photos_pending), (2, 0));
    }

    #[test]
    fn the_client_and_its_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client(dir.path(), Limits::DEFAULT);
        send_sync(&client);
        send(client.sync(&|_| {}));
        send(client.report_issue(draft(SegmentId::new(), None, vec![])));
        send(client.status());
    }
}
