//! Applying pushed mutations: the server half of the sync protocol.
//!
//! [`push_request`] takes the raw mutations of one push request and answers each with a
//! [`PushResult`] ([`push_one`] is a request of one):
//!
//! 1. Parse and validate each with the shared rules (`Mutation::parse`). A refusal is `rejected`,
//!    naming the field; the id is read from the raw JSON when it is readable.
//! 2. Open one write transaction for the request (group commit; a `stock.move` gets one of its
//!    own, see [`push_request`]). Each mutation runs under its own savepoint: look its id up in the
//!    mutation journal (applied before with the same fingerprint by the same user: `duplicate`,
//!    with the stored result, nothing written; with another payload: `rejected`, `conflict`);
//!    otherwise apply it (one function per mutation type below) and journal the id, fingerprint
//!    and result.
//! 3. At the end of the group, write the change-log rows its patrol mutations deferred (one
//!    snapshot per patrol, one coverage summary per segment, however many batches touched them),
//!    and commit. Only then are the results `applied`.
//!
//! A rule the mutation breaks (unknown reference, someone else's patrol, an impossible lifecycle
//! step) is a [`Failure::Reject`]: its savepoint rolls back, so a rejected mutation writes nothing,
//! and the server keeps no record of it (a fixed-up retry needs a new id). A database failure is a
//! [`Failure::Internal`]: it fails the whole push with a 5xx so the device retries later; the
//! mutations before it in the request are committed and will answer `duplicate` on the retry.
//!
//! Invariant: nothing a device sends can make a write fail in the database. Every reference is
//! checked before it is written, ids are checked for reuse, and repeated items are refused by the
//! shared validation or removed here, so constraint violations cannot turn bad input into a 5xx.
//!
//! Concurrency (several instances on one PostgreSQL, which runs writers side by side): a group's
//! transaction first takes the locks on all its mutation ids, in key order, then the issue locks
//! its steps need, so the same mutation arriving at two instances is applied once and the other
//! answers `duplicate`, and two overlapping requests never wait for each other in a cycle. Two
//! different mutations can still race for one key (two reports with one issue id): the loser fails
//! with a unique violation, or a serialization failure or deadlock; its whole group rolls back and
//! its mutations are run again one transaction each, judged afresh against what the winner
//! committed. A unique violation is never a 5xx: if a mutation's second run hits one too, it is
//! `conflict`. Each apply function below writes its change-log rows last (see `db::changes`), and
//! the group's deferred rows come after all of them.

use crate::auth::AuthUser;
use crate::coverage::Policy;
use crate::db::{self, Conn};
use crate::error::AppError;
use chrono::{DateTime, Utc};
use riverchief_shared::api::ErrorDetail;
use riverchief_shared::domain::{self, Chainage, IssueEventKind, Patrol, Segment, TrackPoint};
use riverchief_shared::geo::{self as rgeo, Position};
use riverchief_shared::id::{DeviceId, MutationId};
use riverchief_shared::sync::{
    IssueEventData, IssueEventResult, IssueReport, IssueReportResult, Mutation, MutationBody,
    PatrolFinish, PatrolPoints, PatrolPointsResult, PatrolResult, PatrolStart, PushResult,
    PushStatus, StockMove, StockMoveResult,
};
use riverchief_shared::{FieldError, Limits};
use serde_json::Value;

/// Why a mutation was not applied.
#[derive(Debug)]
pub enum Failure {
    /// The mutation breaks a rule: answered `rejected`, nothing written.
    Reject(ErrorDetail),
    /// The database refused or failed; [`push_one`] decides whether that is a lost race (run it
    /// again) or a server failure.
    Database(db::QueryError),
    /// The server failed: the whole push fails with a 5xx and is retried.
    Internal(AppError),
}

impl From<db::QueryError> for Failure {
    fn from(e: db::QueryError) -> Self {
        Failure::Database(e)
    }
}

fn reject(code: &str, field: &str, message: impl Into<String>) -> Failure {
    Failure::Reject(ErrorDetail::from(FieldError::new(code, field, message)))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::Internal(AppError::Internal(e.to_string())))
}

fn rejected(id: Option<MutationId>, error: ErrorDetail) -> PushResult {
    PushResult {
        id,
        status: PushStatus::Rejected,
        error: Some(error),
        result: None,
    }
}

/// Parses, checks and applies one raw mutation, received at `now`, in its own transaction. `Err`
/// only for server failures; every refusal is an `Ok` rejected result.
pub fn push_one(
    conn: &mut Conn,
    caller: &AuthUser,
    device_id: DeviceId,
    raw: Value,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<PushResult, AppError> {
    push_one_with(
        conn,
        caller,
        device_id,
        raw,
        limits,
        &Policy::default(),
        now,
    )
}

/// [`push_one`] under a coverage policy other than the default.
pub fn push_one_with(
    conn: &mut Conn,
    caller: &AuthUser,
    device_id: DeviceId,
    raw: Value,
    limits: &Limits,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<PushResult, AppError> {
    let mut results = push_request(
        conn,
        &Pusher {
            caller,
            device_id,
            limits,
            policy,
        },
        vec![raw],
        &mut || now,
    )?;
    results
        .pop()
        .ok_or_else(|| AppError::Internal("a push of one mutation answered nothing".into()))
}

/// Who pushes, and under which rules.
pub struct Pusher<'a> {
    pub caller: &'a AuthUser,
    pub device_id: DeviceId,
    pub limits: &'a Limits,
    pub policy: &'a Policy,
}

/// Parses, checks and applies the raw mutations of one push request, in order, and answers each.
/// `clock` is read once per mutation, as it is parsed (the time it was received).
///
/// Group commit: the mutations are applied in one write transaction, each under its own savepoint,
/// so a refused one rolls back alone; the transaction commits before this returns. A `stock.move`
/// runs in a transaction of its own (see [`groups`]). A lost race (a unique violation, a
/// serialization failure or a deadlock) rolls the whole group back, and its mutations are then
/// applied one transaction each, as [`push_one`] does. A server failure commits the mutations
/// before it (they answer `duplicate` on the retry) and fails the request.
pub fn push_request(
    conn: &mut Conn,
    pusher: &Pusher<'_>,
    raws: Vec<Value>,
    clock: &mut dyn FnMut() -> DateTime<Utc>,
) -> Result<Vec<PushResult>, AppError> {
    let parsed: Vec<Parsed> = raws
        .into_iter()
        .map(|raw| parse(raw, clock(), pusher.limits))
        .collect();
    let mut results: Vec<Option<PushResult>> = vec![None; parsed.len()];
    let mut ready: Vec<(usize, Box<Ready>)> = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Parsed::Refused(r) => results[i] = Some(r),
            Parsed::Ready(r) => ready.push((i, r)),
        }
    }
    for group in groups(&ready) {
        let answered = push_group(conn, pusher, group)?;
        for ((i, _), r) in group.iter().zip(answered) {
            results[*i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| AppError::Internal("a pushed mutation went unanswered".into())))
        .collect()
}

/// A mutation parsed and checked by the shared rules, ready to apply.
struct Ready {
    m: Mutation,
    device_seq: i64,
    fingerprint: String,
    now: DateTime<Utc>,
}

enum Parsed {
    Refused(PushResult),
    Ready(Box<Ready>),
}

fn parse(raw: Value, now: DateTime<Utc>, limits: &Limits) -> Parsed {
    let raw_id = raw
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| MutationId::parse(s).ok());
    let m = match Mutation::parse(raw, now, limits) {
        Ok(m) => m,
        Err(e) => return Parsed::Refused(rejected(raw_id, ErrorDetail::from(e))),
    };
    let Ok(device_seq) = i64::try_from(m.device_seq) else {
        return Parsed::Refused(rejected(
            Some(m.id),
            ErrorDetail::from(FieldError::new(
                "out_of_range",
                "device_seq",
                format!("at most {}", i64::MAX),
            )),
        ));
    };
    let fingerprint = m.fingerprint().hex();
    Parsed::Ready(Box::new(Ready {
        m,
        device_seq,
        fingerprint,
        now,
    }))
}

/// The transactions a request's mutations are applied in: one for all of them, except that each
/// `stock.move` has one of its own. A stock movement updates a balance row that a concurrent
/// movement (from the API or another device) holds while it waits for the change-log lock; in a
/// group that already holds the change-log lock it would wait for that row in turn (PostgreSQL).
/// Alone, it takes the row before the change-log lock, like every other movement.
fn groups(ready: &[(usize, Box<Ready>)]) -> Vec<&[(usize, Box<Ready>)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (k, (_, r)) in ready.iter().enumerate() {
        if matches!(r.m.body, MutationBody::StockMove(_)) {
            if start < k {
                out.push(&ready[start..k]);
            }
            out.push(&ready[k..=k]);
            start = k + 1;
        }
    }
    if start < ready.len() {
        out.push(&ready[start..]);
    }
    out
}

/// How a group's transaction ended, when it committed.
struct Committed {
    results: Vec<PushResult>,
    /// The server failure that stopped the group after `results` (committed): the request fails.
    failed: Option<AppError>,
}

/// Applies a group in one transaction; on a lost race, each of its mutations alone.
fn push_group(
    conn: &mut Conn,
    pusher: &Pusher<'_>,
    group: &[(usize, Box<Ready>)],
) -> Result<Vec<PushResult>, AppError> {
    let attempt =
        |conn: &mut Conn| db::write_transaction(conn, |conn| apply_group(conn, pusher, group));
    let mut outcome = attempt(conn);
    if matches!(&outcome, Err(Failure::Database(e)) if db::is_contention(e)) {
        if let [(_, one)] = group {
            tracing::info!(mutation = %one.m.id, "a concurrent write won a race; applying the mutation again");
            outcome = attempt(conn);
        } else {
            // Nothing of the group committed: each mutation alone, judged against what the
            // winner committed, with its own second try.
            tracing::info!(
                n = group.len(),
                "a concurrent write won a race; applying the group's mutations one by one"
            );
            let mut results = Vec::with_capacity(group.len());
            for one in group {
                results.extend(push_group(conn, pusher, std::slice::from_ref(one))?);
            }
            return Ok(results);
        }
    }
    match outcome {
        Ok(Committed {
            results,
            failed: None,
        }) => Ok(results),
        Ok(Committed {
            failed: Some(e), ..
        }) => Err(e),
        Err(Failure::Reject(detail)) => {
            // Rejections are answered inside the group; one reaching here is a group of one.
            let id = group.first().map(|(_, r)| r.m.id);
            Ok(vec![rejected(id, detail)])
        }
        Err(Failure::Database(e)) if db::unique_violation(&e).is_some() => {
            let error = db::unique_violation(&e).unwrap_or_default();
            let id = group.first().map(|(_, r)| r.m.id);
            tracing::warn!(mutation = ?id, error, "unique violation twice");
            Ok(vec![rejected(
                id,
                ErrorDetail {
                    code: "conflict".into(),
                    message: "another change to the same record was written at the same time; \
                              send this one again with a new id if it still applies"
                        .into(),
                    field: None,
                    current_status: None,
                },
            )])
        }
        Err(Failure::Database(e)) => Err(AppError::from(e)),
        Err(Failure::Internal(e)) => Err(e),
    }
}

/// The change-log rows a group writes once, at its end, for every mutation of it that touched
/// them: one snapshot per patrol, one coverage summary per segment.
#[derive(Default)]
struct Deferred {
    patrols: Vec<riverchief_shared::id::PatrolId>,
    segments: Vec<riverchief_shared::id::SegmentId>,
    /// When the last mutation that moved a segment's coverage was received.
    now: Option<DateTime<Utc>>,
}

impl Deferred {
    fn patrol(&mut self, id: riverchief_shared::id::PatrolId) {
        if !self.patrols.contains(&id) {
            self.patrols.push(id);
        }
    }

    fn merge(&mut self, other: Deferred) {
        for p in other.patrols {
            self.patrol(p);
        }
        for s in other.segments {
            if !self.segments.contains(&s) {
                self.segments.push(s);
            }
        }
        self.now = other.now.or(self.now);
    }

    /// Writes the rows, last in the transaction (the change-log lock is taken here if no mutation
    /// of the group took it before).
    fn record(self, conn: &mut Conn, policy: &Policy) -> db::QueryResult<()> {
        for id in &self.patrols {
            db::patrols::record_change(conn, *id)?;
        }
        if let Some(now) = self.now {
            crate::coverage::record_summaries(conn, policy, &self.segments, now)?;
        }
        Ok(())
    }
}

/// One try at a group, inside its write transaction. `Err` aborts the whole transaction: a lost race
/// (then the caller tries again) or, in a group of one, the mutation's own refusal.
fn apply_group(
    conn: &mut Conn,
    pusher: &Pusher<'_>,
    group: &[(usize, Box<Ready>)],
) -> Result<Committed, Failure> {
    // The locks every mutation of the group will take, taken first and in one order (see
    // `db::backend`): its mutation ids, then the issues its steps are judged on. The same
    // mutations pushed to two instances at once are then applied by one; the other waits here.
    let mut locks: Vec<db::Lock> = group
        .iter()
        .map(|(_, r)| db::Lock::Mutation(r.m.id))
        .collect();
    db::lock_in_order(conn, &mut locks)?;
    let mut issue_locks: Vec<db::Lock> = group
        .iter()
        .filter_map(|(_, r)| match &r.m.body {
            MutationBody::IssueEvent(d) => Some(db::Lock::Issue(d.issue_id)),
            _ => None,
        })
        .collect();
    db::lock_in_order(conn, &mut issue_locks)?;

    let alone = group.len() == 1;
    let mut deferred = Deferred::default();
    let mut results = Vec::with_capacity(group.len());
    let mut failed = None;
    for (_, ready) in group {
        let mut mine = Deferred::default();
        // A savepoint: a refusal or a failure rolls back this mutation alone.
        let outcome = db::savepoint(conn, |conn| apply_once(conn, pusher, ready, &mut mine));
        match outcome {
            Ok(r) => {
                deferred.merge(mine);
                results.push(r);
            }
            Err(Failure::Reject(detail)) if !alone => {
                results.push(rejected(Some(ready.m.id), detail))
            }
            Err(Failure::Database(e)) if alone || db::is_contention(&e) => {
                return Err(Failure::Database(e))
            }
            Err(Failure::Reject(detail)) => return Err(Failure::Reject(detail)),
            Err(Failure::Database(e)) => {
                failed = Some(AppError::from(e));
                break;
            }
            Err(Failure::Internal(e)) => {
                failed = Some(e);
                break;
            }
        }
    }
    deferred.record(conn, pusher.policy)?;
    Ok(Committed { results, failed })
}

/// One mutation, under its savepoint: the journal, then the mutation itself.
fn apply_once(
    conn: &mut Conn,
    pusher: &Pusher<'_>,
    ready: &Ready,
    deferred: &mut Deferred,
) -> Result<PushResult, Failure> {
    let Ready {
        m,
        device_seq,
        fingerprint,
        now,
    } = ready;
    let (caller, device_id) = (pusher.caller, pusher.device_id);
    // The same mutation sent to two instances at once: the second waits here until the first
    // commits, then finds its journal row (the group took this lock already; taking it again
    // returns at once).
    db::lock(conn, db::Lock::Mutation(m.id))?;
    if let Some(prev) = db::mutations::find(conn, m.id)? {
        if prev.fingerprint == *fingerprint && prev.user == caller.id {
            let kept = kept_as_rejected(&prev.result);
            return Ok(PushResult {
                id: Some(m.id),
                status: if kept.is_some() {
                    PushStatus::Rejected
                } else {
                    PushStatus::Duplicate
                },
                error: kept,
                result: Some(prev.result),
            });
        }
        return Err(reject(
            "conflict",
            "id",
            "this mutation id was applied before with a different payload",
        ));
    }
    let result = apply(
        conn,
        caller,
        device_id,
        *device_seq,
        m,
        pusher.policy,
        *now,
        deferred,
    )?;
    db::mutations::insert(
        conn,
        &db::mutations::NewApplied {
            id: m.id,
            device_id,
            user: caller.id,
            device_seq: *device_seq,
            kind: m.body.type_name(),
            fingerprint,
            result: &result,
        },
    )?;
    let kept = kept_as_rejected(&result);
    Ok(PushResult {
        id: Some(m.id),
        status: if kept.is_some() {
            PushStatus::Rejected
        } else {
            PushStatus::Applied
        },
        error: kept,
        result: Some(result),
    })
}

#[allow(clippy::too_many_arguments)]
fn apply(
    conn: &mut Conn,
    caller: &AuthUser,
    device_id: DeviceId,
    device_seq: i64,
    m: &Mutation,
    policy: &Policy,
    now: DateTime<Utc>,
    deferred: &mut Deferred,
) -> Result<Value, Failure> {
    match &m.body {
        MutationBody::PatrolStart(d) => patrol_start(conn, caller, device_id, d, deferred),
        MutationBody::PatrolPoints(d) => {
            let from = (device_id, device_seq);
            patrol_points(conn, caller, from, d, policy, now, deferred)
        }
        MutationBody::PatrolFinish(d) => patrol_finish(conn, caller, device_id, d, deferred),
        MutationBody::IssueReport(d) => issue_report(conn, caller, d, now),
        MutationBody::IssueEvent(d) => issue_event(conn, caller, m, d, now),
        MutationBody::StockMove(d) => stock_move(conn, caller, m, d, now),
    }
}

/// The caller's own patrol, or why not. Nobody writes into another's track, not even a duty lead.
fn own_patrol(
    conn: &mut Conn,
    caller: &AuthUser,
    id: riverchief_shared::id::PatrolId,
) -> Result<Patrol, Failure> {
    let patrol = db::patrols::get(conn, id)?.ok_or_else(|| {
        reject(
            "unknown_reference",
            "data.patrol_id",
            format!("no patrol {id}; push its patrol.start first"),
        )
    })?;
    if patrol.patroller != caller.id {
        return Err(reject(
            "forbidden",
            "data.patrol_id",
            "this patrol belongs to someone else",
        ));
    }
    Ok(patrol)
}

fn patrol_start(
    conn: &mut Conn,
    caller: &AuthUser,
    device_id: DeviceId,
    d: &PatrolStart,
    deferred: &mut Deferred,
) -> Result<Value, Failure> {
    if db::patrols::get(conn, d.patrol_id)?.is_some() {
        return Err(reject(
            "conflict",
            "data.patrol_id",
            format!("patrol {} already exists", d.patrol_id),
        ));
    }
    let mut segment_ids = Vec::with_capacity(d.segment_ids.len());
    for (i, s) in d.segment_ids.iter().enumerate() {
        if !db::segments::exists(conn, *s)? {
            return Err(reject(
                "unknown_reference",
                &format!("data.segment_ids[{i}]"),
                format!("no segment {s}"),
            ));
        }
        if !segment_ids.contains(s) {
            segment_ids.push(*s);
        }
    }
    let patrol = Patrol {
        id: d.patrol_id,
        patroller: caller.id,
        segment_ids,
        started_at: d.started_at,
        ended_at: None,
        point_count: 0,
        notes: d.notes.clone(),
        weather: d.weather.clone(),
    };
    db::patrols::insert(conn, &patrol, device_id)?;
    deferred.patrol(patrol.id);
    to_json(&PatrolResult {
        patrol_id: patrol.id,
        point_count: 0,
    })
}

fn patrol_points(
    conn: &mut Conn,
    caller: &AuthUser,
    (device_id, device_seq): (DeviceId, i64),
    d: &PatrolPoints,
    policy: &Policy,
    now: DateTime<Utc>,
    deferred: &mut Deferred,
) -> Result<Value, Failure> {
    // Points after the finish are accepted: a phone may flush its last fixes late.
    let patrol = own_patrol(conn, caller, d.patrol_id)?;
    db::patrols::written_from(conn, patrol.id, device_id)?;
    // Stored in WGS-84 only: GCJ-02 fixes are converted here, once.
    let points: Vec<TrackPoint> = d.points.iter().map(|p| p.to_wgs84()).collect();
    let point_count = db::patrols::add_points(conn, patrol.id, device_seq, &points)?;
    let moved =
        crate::coverage::apply_points(conn, &policy.rules, patrol.id, patrol.patroller, &points)?;
    // The patrol's snapshot and the moved segments' summaries are written once per group.
    deferred.patrol(patrol.id);
    for s in moved {
        if !deferred.segments.contains(&s) {
            deferred.segments.push(s);
        }
    }
    deferred.now = Some(now);
    to_json(&PatrolPointsResult {
        patrol_id: patrol.id,
        accepted: u64::try_from(d.points.len()).unwrap_or(u64::MAX),
        point_count,
    })
}

fn patrol_finish(
    conn: &mut Conn,
    caller: &AuthUser,
    device_id: DeviceId,
    d: &PatrolFinish,
    deferred: &mut Deferred,
) -> Result<Value, Failure> {
    let patrol = own_patrol(conn, caller, d.patrol_id)?;
    if d.ended_at < patrol.started_at {
        return Err(reject(
            "invalid",
            "data.ended_at",
            format!(
                "the patrol started at {}; it cannot end before that",
                patrol.started_at.to_rfc3339()
            ),
        ));
    }
    db::patrols::written_from(conn, patrol.id, device_id)?;
    db::patrols::finish(conn, patrol.id, d.ended_at, d.notes.as_deref())?;
    deferred.patrol(patrol.id);
    to_json(&PatrolResult {
        patrol_id: patrol.id,
        point_count: patrol.point_count,
    })
}

/// Chainage of a position on a segment: the segment's start chainage plus the distance along the
/// line to the position's projection onto it.
pub fn chainage_at(segment: &Segment, position: Position) -> f64 {
    let line = db::segments::line_string(segment);
    let along = rgeo::locate(&line, position.point())
        .map(|(along, _)| along)
        .filter(|a| a.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, segment.properties.length_m.max(0.0));
    segment.properties.start_chainage_m + along
}

fn issue_report(
    conn: &mut Conn,
    caller: &AuthUser,
    d: &IssueReport,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    if db::issues::exists(conn, d.issue_id)?
        || db::issues::event_exists(conn, db::issues::reported_event_id(d.issue_id))?
    {
        return Err(reject(
            "conflict",
            "data.issue_id",
            format!(
                "{} is already the id of an issue or an issue event",
                d.issue_id
            ),
        ));
    }
    let segment = db::segments::by_id(conn, d.segment_id)?.ok_or_else(|| {
        reject(
            "unknown_reference",
            "data.segment_id",
            format!("no segment {}", d.segment_id),
        )
    })?;
    // The patrol may not have arrived yet (records travel in any order); if it has, it must be ours.
    if let Some(pid) = d.patrol_id {
        if let Some(p) = db::patrols::get(conn, pid)? {
            if p.patroller != caller.id {
                return Err(reject(
                    "forbidden",
                    "data.patrol_id",
                    "this patrol belongs to someone else",
                ));
            }
        }
    }
    let chainage_m = chainage_at(&segment, d.location);
    let critical = domain::is_critical(d.category, d.severity, d.outflow);
    db::issues::insert(
        conn,
        &db::issues::NewIssue {
            id: d.issue_id,
            segment_id: d.segment_id,
            patrol_id: d.patrol_id,
            reporter: caller.id,
            location: d.location,
            chainage_m,
            category: d.category,
            severity: d.severity,
            outflow: d.outflow,
            critical,
            description: &d.description,
            reported_at: d.reported_at,
        },
        now,
    )?;
    db::issues::insert_event(
        conn,
        &db::issues::NewEvent {
            id: db::issues::reported_event_id(d.issue_id),
            issue_id: d.issue_id,
            kind: IssueEventKind::Reported,
            by: caller.id,
            at: d.reported_at,
            note: None,
            assignee: None,
            duplicate_of: None,
            due_at: None,
            rejected: None,
        },
        now,
    )?;
    db::issues::insert_photos(conn, d.issue_id, &d.issue_id.to_string(), &d.photos)?;
    db::audit::record(
        conn,
        &caller.who(),
        "issue.report",
        Some(&d.issue_id.to_string()),
        &serde_json::json!({
            "issue_id": d.issue_id, "to": "reported", "category": d.category,
            "severity": d.severity, "critical": critical, "segment_id": d.segment_id,
        }),
    )?;
    let photos_missing = db::issues::missing_photos(conn, &d.photos)?;
    if let Some(issue) = db::issues::record_issue_change(conn, d.issue_id, now)? {
        crate::alerting::issue_changed(conn, &issue, now)?;
    }
    to_json(&IssueReportResult {
        issue_id: d.issue_id,
        chainage_m,
        chainage: Chainage(chainage_m).to_string(),
        critical,
        photos_missing,
    })
}

fn issue_event(
    conn: &mut Conn,
    caller: &AuthUser,
    m: &Mutation,
    d: &IssueEventData,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    use crate::workflow::{self, Outcome};
    let outcome = workflow::take_step(conn, caller, d, m.at, now, workflow::Source::Device);
    let (status, photos_missing, rejected) = match outcome {
        Ok(Outcome::Applied {
            status,
            photos_missing,
        }) => (status, photos_missing, None),
        Ok(Outcome::Kept { current, reason }) => (
            current,
            Vec::new(),
            Some(ErrorDetail {
                code: "invalid_transition".into(),
                message: format!(
                    "kept in the issue's history as rejected: {}",
                    workflow::naming_status(&reason, current)
                ),
                field: Some("data.kind".into()),
                current_status: Some(current),
            }),
        ),
        Err(refusal) => {
            return Err(match refusal.into_push_detail() {
                Ok(detail) => Failure::Reject(detail),
                Err(e) => Failure::Database(e),
            })
        }
    };
    to_json(&IssueEventResult {
        issue_id: d.issue_id,
        event_id: d.event_id,
        status,
        photos_missing,
        rejected,
    })
}

/// A result journaled for an event kept as rejected ([`IssueEventResult::rejected`]): the error
/// its push result (and every replay) answers.
fn kept_as_rejected(result: &Value) -> Option<ErrorDetail> {
    result
        .get("rejected")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
}

/// A stock movement from a device, judged and recorded by [`crate::supplies::record`] as the API's
/// are.
fn stock_move(
    conn: &mut Conn,
    caller: &AuthUser,
    m: &Mutation,
    d: &StockMove,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    use crate::supplies::{self, MoveError};
    let movement = supplies::Movement {
        id: d.movement_id,
        depot: &d.depot,
        item: &d.item,
        kind: d.kind,
        quantity: d.quantity,
        segment: d.segment.as_deref(),
        note: d.note.as_deref(),
        device_at: Some(m.at),
    };
    match supplies::record(conn, caller, &movement, now) {
        Ok(moved) => to_json(&StockMoveResult {
            movement_id: d.movement_id,
            on_hand: moved.on_hand,
        }),
        Err(MoveError::Refused(r)) => Err(Failure::Reject(ErrorDetail::from(
            r.into_field_error().within("data"),
        ))),
        Err(MoveError::Db(e)) => Err(Failure::Database(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use riverchief_shared::domain::{Bank, SegmentProperties};
    use riverchief_shared::geo::{Lat, Lon};
    use riverchief_shared::id::SegmentId;

    fn segment(start: f64) -> Segment {
        let line = vec![[118.744, 32.05], [118.744, 32.06]];
        let length_m = rgeo::length_m(&geo::LineString::from(
            line.iter().map(|[x, y]| (*x, *y)).collect::<Vec<_>>(),
        ));
        Segment {
            properties: SegmentProperties {
                id: SegmentId::new(),
                code: "T-01".into(),
                name: "test".into(),
                name_en: None,
                river: "test river".into(),
                bank: Bank::Left,
                length_m,
                start_chainage_m: start,
                start_chainage: Chainage(start).to_string(),
                end_chainage: Chainage(start + length_m).to_string(),
                patrol_buffer_m: 60.0,
                grid: None,
                gauge_station: None,
            },
            line,
        }
    }

    fn pos(lon: f64, lat: f64) -> Position {
        Position {
            lon: Lon::parse(lon, "lon").unwrap(),
            lat: Lat::parse(lat, "lat").unwrap(),
        }
    }

    #[test]
    fn chainage_is_start_plus_distance_along() {
        let s = segment(847.0);
        let len = s.properties.length_m;
        // Halfway along, a little off the line to the east.
        let c = chainage_at(&s, pos(118.7441, 32.055));
        assert!((c - (847.0 + len / 2.0)).abs() < 2.0, "{c}");
        // The line is about 1109 m long, so halfway is about 847 + 555 = K1+402.
        assert!(Chainage(c).to_string().starts_with("K1+40"), "{c}");
    }

    #[test]
    fn chainage_beyond_the_ends_clamps_to_them() {
        let s = segment(100.0);
        let len = s.properties.length_m;
        assert!((chainage_at(&s, pos(118.744, 32.0)) - 100.0).abs() < 1e-6);
        assert!((chainage_at(&s, pos(118.744, 32.1)) - (100.0 + len)).abs() < 1e-6);
    }
}
