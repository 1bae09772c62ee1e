//! Alerts: raised, acknowledged and resolved in the caller's write transaction.
//!
//! Deduplication is an idempotent write: the partial unique index `alerts_open_key` holds
//! (kind, subject, drill) of every alert not yet resolved, and [`raise`] inserts with
//! insert-or-ignore. Two instances (or two threads) raising the same alert at once make one row; the
//! loser reads the winner's. Every change of an alert goes through [`publish`], which appends it to
//! the change log (pull, the live stream) in the same transaction.

use super::changes::{self, Audience};
use super::schema::{alerts, users};
use super::{insert_or_ignore, parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::alert::{Alert, AlertKind, AlertLevel, AlertState};
use riverchief_shared::domain::Role;
use riverchief_shared::id::{AlertId, IssueId, SegmentId, UserId};
use riverchief_shared::sync::{ChangeEntity, ChangeOp};
use serde_json::Value;

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub kind: AlertKind,
    /// See [`Alert::subject`].
    pub subject: String,
    pub drill: bool,
    pub level: AlertLevel,
    pub message: String,
    pub message_en: String,
    pub segment_id: Option<SegmentId>,
    pub issue_id: Option<IssueId>,
    pub station: Option<String>,
    /// The user it concerns (the reporter of a critical hazard): sees it on their device.
    pub owner: Option<UserId>,
    /// Patrollers see it too (stage changes, rapid rises); otherwise duty leads, admins, the owner
    /// and the patrollers assigned to `segment_id`.
    pub public: bool,
    pub details: Value,
}

/// What [`raise`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// A new alert.
    New(Alert),
    /// One of the same kind, subject and drill flag was already open (or acknowledged): nothing was
    /// written.
    AlreadyOpen(Alert),
}

impl Raised {
    pub fn alert(&self) -> &Alert {
        match self {
            Raised::New(a) | Raised::AlreadyOpen(a) => a,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = alerts)]
struct Row {
    id: String,
    kind: String,
    subject: String,
    drill: bool,
    level: String,
    message: String,
    message_en: String,
    segment_id: Option<String>,
    issue_id: Option<String>,
    station: Option<String>,
    owner_id: Option<String>,
    public: bool,
    details_json: String,
    raised_at: String,
    updated_at: String,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    resolved_at: Option<String>,
}

/// A stored alert with the facts the wire shape leaves out (who else may see it).
struct Stored {
    alert: Alert,
    owner: Option<UserId>,
    public: bool,
}

/// Rows made into alerts, with the display names of who acknowledged them read in one query.
fn stored(conn: &mut Conn, rows: Vec<Row>) -> QueryResult<Vec<Stored>> {
    let mut ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.acknowledged_by.as_deref())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names: std::collections::HashMap<String, String> = if ids.is_empty() {
        Default::default()
    } else {
        users::table
            .filter(users::id.eq_any(ids))
            .select((users::id, users::display_name))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect()
    };
    rows.into_iter().map(|r| from_row(r, &names)).collect()
}

/// [`stored`] for one row.
fn stored_one(conn: &mut Conn, row: Row) -> QueryResult<Stored> {
    stored(conn, vec![row])?
        .pop()
        .ok_or_else(|| corrupt("an alert row vanished while read".into()))
}

fn from_row(r: Row, names: &std::collections::HashMap<String, String>) -> QueryResult<Stored> {
    let Row {
        id,
        kind,
        subject,
        drill,
        level,
        message,
        message_en,
        segment_id,
        issue_id,
        station,
        owner_id,
        public,
        details_json,
        raised_at,
        updated_at,
        acknowledged_at,
        acknowledged_by,
        resolved_at,
    } = r;
    let kind =
        AlertKind::parse(&kind).ok_or_else(|| corrupt(format!("alert {id}: kind {kind:?}")))?;
    let level =
        AlertLevel::parse(&level).ok_or_else(|| corrupt(format!("alert {id}: level {level:?}")))?;
    let details: Value = serde_json::from_str(&details_json)
        .map_err(|e| corrupt(format!("alert {id}: details: {e}")))?;
    let acknowledged_by_name = acknowledged_by
        .as_deref()
        .and_then(|u| names.get(u).cloned());
    let acknowledged_by: Option<UserId> = acknowledged_by.as_deref().map(parse_id).transpose()?;
    let acknowledged_at = acknowledged_at.as_deref().map(parse_ts).transpose()?;
    let resolved_at = resolved_at.as_deref().map(parse_ts).transpose()?;
    let state = if resolved_at.is_some() {
        AlertState::Resolved
    } else if acknowledged_at.is_some() {
        AlertState::Acknowledged
    } else {
        AlertState::Open
    };
    Ok(Stored {
        alert: Alert {
            id: parse_id(&id)?,
            kind,
            subject,
            state,
            level,
            drill,
            message,
            message_en,
            segment_id: segment_id.as_deref().map(parse_id).transpose()?,
            issue_id: issue_id.as_deref().map(parse_id).transpose()?,
            station,
            details,
            raised_at: parse_ts(&raised_at)?,
            updated_at: parse_ts(&updated_at)?,
            acknowledged_at,
            acknowledged_by,
            acknowledged_by_name,
            resolved_at,
        },
        owner: owner_id.as_deref().map(parse_id).transpose()?,
        public,
    })
}

fn load_one(conn: &mut Conn, id: &str) -> QueryResult<Option<Stored>> {
    let row: Option<Row> = alerts::table
        .filter(alerts::id.eq(id))
        .select(Row::as_select())
        .first(conn)
        .optional()?;
    row.map(|r| stored_one(conn, r)).transpose()
}

fn open_row(
    conn: &mut Conn,
    kind: AlertKind,
    subject: &str,
    drill: bool,
) -> QueryResult<Option<Row>> {
    alerts::table
        .filter(alerts::kind.eq(kind.as_str()))
        .filter(alerts::subject.eq(subject))
        .filter(alerts::drill.eq(drill))
        .filter(alerts::resolved_at.is_null())
        .select(Row::as_select())
        .first(conn)
        .optional()
}

/// The single place every change of an alert passes through, inside its transaction: the change
/// log (pull and the live stream read it) and the webhook outbox.
fn publish(conn: &mut Conn, stored: &Stored) -> QueryResult<()> {
    let data = serde_json::to_value(&stored.alert)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let seq = changes::record(
        conn,
        ChangeEntity::Alert,
        &stored.alert.id.to_string(),
        ChangeOp::Upsert,
        &data,
        &Audience {
            public: stored.public,
            owner: stored.owner,
            segment: stored.alert.segment_id,
            assignee: None,
        },
    )?;
    super::webhooks::enqueue(conn, &stored.alert, seq)?;
    Ok(())
}

/// Raises an alert unless one of the same kind, subject and drill flag is open. Call it inside a
/// write transaction.
pub fn raise(conn: &mut Conn, new: &NewAlert, now: DateTime<Utc>) -> QueryResult<Raised> {
    // The change-log lock first (see `changes`): the insert below may wait on a concurrent raise of
    // the same key, which must not hold a row we need while waiting for the lock we hold.
    changes::lock(conn)?;
    let id = AlertId::new().to_string();
    let at = ts(now);
    let details = serde_json::to_string(&new.details)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let inserted = insert_or_ignore!(
        conn,
        alerts::table,
        (
            alerts::id.eq(&id),
            alerts::kind.eq(new.kind.as_str()),
            alerts::subject.eq(&new.subject),
            alerts::drill.eq(new.drill),
            alerts::level.eq(new.level.as_str()),
            alerts::message.eq(&new.message),
            alerts::message_en.eq(&new.message_en),
            alerts::segment_id.eq(new.segment_id.map(|s| s.to_string())),
            alerts::issue_id.eq(new.issue_id.map(|s| s.to_string())),
            alerts::station.eq(&new.station),
            alerts::owner_id.eq(new.owner.map(|u| u.to_string())),
            alerts::public.eq(new.public),
            alerts::details_json.eq(&details),
            alerts::raised_at.eq(&at),
            alerts::updated_at.eq(&at),
        )
    )?;
    if inserted == 1 {
        let stored = load_one(conn, &id)?
            .ok_or_else(|| corrupt(format!("alert {id} vanished after its insert")))?;
        publish(conn, &stored)?;
        return Ok(Raised::New(stored.alert));
    }
    let row = open_row(conn, new.kind, &new.subject, new.drill)?.ok_or_else(|| {
        corrupt(format!(
            "alert {} {} was neither inserted nor open",
            new.kind.as_str(),
            new.subject
        ))
    })?;
    Ok(Raised::AlreadyOpen(stored_one(conn, row)?.alert))
}

/// Resolves the open alert of this kind, subject and drill flag, if there is one (its cause cleared).
pub fn resolve(
    conn: &mut Conn,
    kind: AlertKind,
    subject: &str,
    drill: bool,
    now: DateTime<Utc>,
) -> QueryResult<Option<Alert>> {
    changes::lock(conn)?;
    let Some(row) = open_row(conn, kind, subject, drill)? else {
        return Ok(None);
    };
    let id = row.id.clone();
    let at = ts(now);
    diesel::update(alerts::table.filter(alerts::id.eq(&id)))
        .set((alerts::resolved_at.eq(&at), alerts::updated_at.eq(&at)))
        .execute(conn)?;
    let stored = load_one(conn, &id)?
        .ok_or_else(|| corrupt(format!("alert {id} vanished while resolved")))?;
    publish(conn, &stored)?;
    Ok(Some(stored.alert))
}

/// Acknowledges an alert. Acknowledging one already acknowledged changes nothing and answers it as
/// it is; a resolved alert not yet acknowledged may still be (the duty lead saw it). `None`: no such
/// alert.
pub fn acknowledge(
    conn: &mut Conn,
    id: AlertId,
    by: UserId,
    now: DateTime<Utc>,
) -> QueryResult<Option<Alert>> {
    changes::lock(conn)?;
    let id = id.to_string();
    let changed = diesel::update(
        alerts::table
            .filter(alerts::id.eq(&id))
            .filter(alerts::acknowledged_at.is_null()),
    )
    .set((
        alerts::acknowledged_at.eq(ts(now)),
        alerts::acknowledged_by.eq(by.to_string()),
        alerts::updated_at.eq(ts(now)),
    ))
    .execute(conn)?;
    let Some(stored) = load_one(conn, &id)? else {
        return Ok(None);
    };
    if changed == 1 {
        publish(conn, &stored)?;
    }
    Ok(Some(stored.alert))
}

/// The open (or acknowledged) alert of this kind, subject and drill flag.
pub fn open_alert(
    conn: &mut Conn,
    kind: AlertKind,
    subject: &str,
    drill: bool,
) -> QueryResult<Option<Alert>> {
    match open_row(conn, kind, subject, drill)? {
        Some(r) => Ok(Some(stored_one(conn, r)?.alert)),
        None => Ok(None),
    }
}

/// Every alert of a kind not yet resolved (for checks that resolve what no longer holds).
pub fn unresolved_of_kind(
    conn: &mut Conn,
    kind: AlertKind,
    drill: bool,
) -> QueryResult<Vec<Alert>> {
    let rows: Vec<Row> = alerts::table
        .filter(alerts::kind.eq(kind.as_str()))
        .filter(alerts::drill.eq(drill))
        .filter(alerts::resolved_at.is_null())
        .order(alerts::raised_at.asc())
        .select(Row::as_select())
        .load(conn)?;
    Ok(stored(conn, rows)?.into_iter().map(|s| s.alert).collect())
}

/// Which alerts a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    /// Open or acknowledged.
    #[default]
    Active,
    One(AlertState),
    All,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: StateFilter,
    pub kind: Option<AlertKind>,
    /// `Some(true)`: only drill alerts; `Some(false)`: only real ones; `None`: both.
    pub drill: Option<bool>,
    pub limit: i64,
}

/// Alerts this viewer may see, newest first. Duty leads and admins see all; a patroller sees public
/// alerts, their own (the receipt of what they reported) and those on their segments.
pub fn list(
    conn: &mut Conn,
    viewer: UserId,
    role: Role,
    filter: &ListFilter,
) -> QueryResult<Vec<Alert>> {
    let mut q = alerts::table.select(Row::as_select()).into_boxed();
    q = match filter.state {
        StateFilter::All => q,
        StateFilter::Active => q.filter(alerts::resolved_at.is_null()),
        StateFilter::One(AlertState::Open) => q
            .filter(alerts::resolved_at.is_null())
            .filter(alerts::acknowledged_at.is_null()),
        StateFilter::One(AlertState::Acknowledged) => q
            .filter(alerts::resolved_at.is_null())
            .filter(alerts::acknowledged_at.is_not_null()),
        StateFilter::One(AlertState::Resolved) => q.filter(alerts::resolved_at.is_not_null()),
    };
    if let Some(k) = filter.kind {
        q = q.filter(alerts::kind.eq(k.as_str()));
    }
    if let Some(d) = filter.drill {
        q = q.filter(alerts::drill.eq(d));
    }
    if !role.sees_everything() {
        let me = viewer.to_string();
        let mine = super::schema::user_segments::table
            .filter(super::schema::user_segments::user_id.eq(me.clone()))
            .select(super::schema::user_segments::segment_id.nullable());
        q = q.filter(
            alerts::public
                .eq(true)
                .or(alerts::owner_id.eq(me))
                .or(alerts::segment_id.eq_any(mine)),
        );
    }
    let rows: Vec<Row> = q
        .order((alerts::raised_at.desc(), alerts::id.desc()))
        .limit(filter.limit.max(1))
        .load(conn)?;
    Ok(stored(conn, rows)?.into_iter().map(|s| s.alert).collect())
}

/// One alert, if this viewer may see it (same rule as [`list`]).
pub fn get(conn: &mut Conn, id: AlertId, viewer: UserId, role: Role) -> QueryResult<Option<Alert>> {
    let Some(stored) = load_one(conn, &id.to_string())? else {
        return Ok(None);
    };
    if role.sees_everything() || stored.public || stored.owner == Some(viewer) {
        return Ok(Some(stored.alert));
    }
    if let Some(seg) = stored.alert.segment_id {
        let assigned: i64 = super::schema::user_segments::table
            .filter(super::schema::user_segments::user_id.eq(viewer.to_string()))
            .filter(super::schema::user_segments::segment_id.eq(seg.to_string()))
            .count()
            .get_result(conn)?;
        if assigned > 0 {
            return Ok(Some(stored.alert));
        }
    }
    Ok(None)
}

/// What the metrics count an unresolved alert by, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedLabels {
    pub kind: String,
    pub level: String,
    pub drill: bool,
    pub acknowledged: bool,
}

/// The labels of every unresolved alert (for the `alerts_active` gauge).
pub fn unresolved_labels(conn: &mut Conn) -> QueryResult<Vec<UnresolvedLabels>> {
    let rows: Vec<(String, String, bool, Option<String>)> = alerts::table
        .filter(alerts::resolved_at.is_null())
        .select((
            alerts::kind,
            alerts::level,
            alerts::drill,
            alerts::acknowledged_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(kind, level, drill, acknowledged_at)| UnresolvedLabels {
            kind,
            level,
            drill,
            acknowledged: acknowledged_at.is_some(),
        })
        .collect())
}
