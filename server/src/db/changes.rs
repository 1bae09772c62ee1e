//! The change log: every write that a client may need to mirror appends one row here, in the same
//! transaction as the write, holding the record as it now is and who may see it.
//!
//! Pull pages through the log by `seq`, and a cursor must never pass a row that commits later. So
//! rows must become visible in `seq` order: when a reader sees `seq = n`, every lower `seq` is already
//! committed (or rolled back, never to appear). On SQLite one writer at a time gives that. On
//! PostgreSQL every transaction takes the change-log lock ([`lock`]) before it takes its first `seq`
//! and holds it until it commits, so change-writing transactions take their `seq`s and commit in one
//! order. ARCHITECTURE.md ("Why the change log is correct") has the argument.
//!
//! Two rules for writers follow. Take the lock before reading the state you record (the snapshot
//! functions `issues::record_issue_change` and `patrols::record_change` do), so that the record
//! includes every change committed before yours. And record as late in the transaction as you can:
//! the lock serializes change-writing transactions from their first record to their commit.

use super::schema::{changes, meta, user_segments};
use super::{insert_or_ignore, ts, Conn, Lock, QueryResult};
use diesel::prelude::*;
use riverchief_shared::domain::Role;
use riverchief_shared::id::{DeviceId, SegmentId, UserId};
use riverchief_shared::sync::{Change, ChangeEntity, ChangeOp};
use serde_json::Value;

/// Who may see a change. Duty leads and admins see every change; a patroller sees public changes
/// (segments), their own records, changes on segments assigned to them, and what is dispatched to them.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub public: bool,
    pub owner: Option<UserId>,
    pub segment: Option<SegmentId>,
    pub assignee: Option<UserId>,
}

/// Takes the change-log lock until the transaction ends (a no-op on SQLite, and when already held).
/// Call it inside a write transaction, before reading the state that you will [`record`].
pub fn lock(conn: &mut Conn) -> QueryResult<()> {
    super::lock(conn, Lock::ChangeLog)
}

thread_local! {
    /// Set when the transaction running on this thread records an alert change; read and cleared
    /// when it ends ([`transaction_ended`]).
    static ALERT_RECORDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts transactions that committed alert changes in this process: the live streams' feed wakes
/// on it at once, instead of at its next poll (which still brings other instances' changes).
static ALERT_COMMITS: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// A receiver that changes after each commit of an alert change in this process.
pub fn alert_commits() -> tokio::sync::watch::Receiver<u64> {
    ALERT_COMMITS.subscribe()
}

/// Called by `write_transaction` when a transaction ends: after a commit that recorded an alert
/// change, signals [`alert_commits`].
pub fn transaction_ended(committed: bool) {
    if ALERT_RECORDED.with(|r| r.replace(false)) && committed {
        ALERT_COMMITS.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Appends a change. Call it inside the transaction that made the change, as late as you can.
pub fn record(
    conn: &mut Conn,
    entity: ChangeEntity,
    entity_id: &str,
    op: ChangeOp,
    data: &Value,
    audience: &Audience,
) -> QueryResult<i64> {
    record_from(conn, entity, entity_id, op, data, audience, None)
}

/// [`record`] of a change whose record only `origin` has ever written (and which it therefore
/// holds itself): that device's pull leaves it out when it names itself ([`page_for_device`]).
/// The owner's other devices and everyone else get it as any other change.
#[allow(clippy::too_many_arguments)]
pub fn record_from(
    conn: &mut Conn,
    entity: ChangeEntity,
    entity_id: &str,
    op: ChangeOp,
    data: &Value,
    audience: &Audience,
    origin: Option<DeviceId>,
) -> QueryResult<i64> {
    let op = match op {
        ChangeOp::Upsert => "upsert",
        ChangeOp::Delete => "delete",
    };
    // Before the insert takes its seq: see the module doc.
    lock(conn)?;
    if entity == ChangeEntity::Alert {
        ALERT_RECORDED.with(|r| r.set(true));
    }
    diesel::insert_into(changes::table)
        .values((
            changes::entity.eq(entity.as_str()),
            changes::entity_id.eq(entity_id),
            changes::op.eq(op),
            changes::data_json.eq(data.to_string()),
            changes::public.eq(audience.public),
            changes::owner_id.eq(audience.owner.map(|u| u.to_string())),
            changes::segment_id.eq(audience.segment.map(|s| s.to_string())),
            changes::assignee_id.eq(audience.assignee.map(|u| u.to_string())),
            changes::created_at.eq(super::written_now()),
            changes::origin_device.eq(origin.map(|d| d.to_string())),
        ))
        .returning(changes::seq)
        .get_result(conn)
}

/// The database's epoch: a random id made when the database was created. A cursor from another epoch
/// (a restored or rebuilt database) cannot be served and gets a reset.
pub fn epoch(conn: &mut Conn) -> QueryResult<String> {
    let existing: Option<String> = meta::table
        .filter(meta::key.eq("epoch"))
        .select(meta::value)
        .first(conn)
        .optional()?;
    if let Some(e) = existing {
        return Ok(e);
    }
    let fresh = uuid::Uuid::now_v7().simple().to_string();
    insert_or_ignore!(
        conn,
        meta::table,
        (meta::key.eq("epoch"), meta::value.eq(&fresh))
    )?;
    meta::table
        .filter(meta::key.eq("epoch"))
        .select(meta::value)
        .first(conn)
}

/// The newest sequence number in the log (0 when empty).
pub fn max_seq(conn: &mut Conn) -> QueryResult<i64> {
    changes::table
        .select(diesel::dsl::max(changes::seq))
        .first::<Option<i64>>(conn)
        .map(|m| m.unwrap_or(0))
}

/// One page of changes after `after` that `viewer` may see.
pub struct Page {
    pub changes: Vec<Change>,
    /// The sequence the next page starts after.
    pub next: i64,
    pub more: bool,
}

/// Reads the changes after `after` visible to `viewer`, oldest first, at most `limit`.
pub fn page(
    conn: &mut Conn,
    viewer: UserId,
    role: Role,
    after: i64,
    limit: usize,
) -> QueryResult<Page> {
    page_of(conn, viewer, role, after, limit, None)
}

/// [`page`] as pulled by `device`: without the changes of records only that device has written
/// for this viewer (its own patrols, [`record_from`]), which it holds already. A change of such a
/// record written after another device wrote to it has no origin, and comes to every device; the
/// mirror the device ends with is its own copy of the record or the newest change, whichever is
/// newer, as if nothing had been left out.
pub fn page_for_device(
    conn: &mut Conn,
    viewer: UserId,
    role: Role,
    after: i64,
    limit: usize,
    device: Option<DeviceId>,
) -> QueryResult<Page> {
    page_filtered(conn, viewer, role, after, limit, None, device)
}

/// The newest sequence number of a change to `entity` in `(after, head]` (`None` when there is
/// none), with the head it read first (so the answer is final, as in [`page`]).
pub fn newest_of(
    conn: &mut Conn,
    entity: ChangeEntity,
    after: i64,
) -> QueryResult<(i64, Option<i64>)> {
    let head = max_seq(conn)?;
    let newest = changes::table
        .filter(changes::seq.gt(after))
        .filter(changes::seq.le(head))
        .filter(changes::entity.eq(entity.as_str()))
        .select(diesel::dsl::max(changes::seq))
        .first::<Option<i64>>(conn)?;
    Ok((head, newest))
}

/// [`page`], of the changes to one entity only when `entity` is given (the live alert stream).
pub fn page_of(
    conn: &mut Conn,
    viewer: UserId,
    role: Role,
    after: i64,
    limit: usize,
    entity: Option<ChangeEntity>,
) -> QueryResult<Page> {
    page_filtered(conn, viewer, role, after, limit, entity, None)
}

#[allow(clippy::too_many_arguments)]
fn page_filtered(
    conn: &mut Conn,
    viewer: UserId,
    role: Role,
    after: i64,
    limit: usize,
    entity: Option<ChangeEntity>,
    device: Option<DeviceId>,
) -> QueryResult<Page> {
    // Read the head first: every row at or below it is committed by then (see the module doc; on
    // PostgreSQL each statement reads a fresh snapshot, which sees at least what this one saw), so the
    // page below is final, and when it comes back short the cursor may jump to the head past rows this
    // viewer cannot see. Rows above the head are left for the next pull: lower ones may still be in
    // flight.
    let head = max_seq(conn)?;
    let mut query = changes::table
        .filter(changes::seq.gt(after))
        .filter(changes::seq.le(head))
        .order(changes::seq.asc())
        .limit(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .into_boxed();
    if let Some(entity) = entity {
        query = query.filter(changes::entity.eq(entity.as_str()));
    }
    if let Some(device) = device {
        // Left out: the viewer's own records that only this device wrote.
        query = query.filter(
            changes::origin_device
                .is_null()
                .or(changes::origin_device.ne(device.to_string()))
                .or(changes::owner_id.is_null())
                .or(changes::owner_id.ne(viewer.to_string())),
        );
    }
    if !role.sees_everything() {
        let me = viewer.to_string();
        let my_segments = user_segments::table
            .filter(user_segments::user_id.eq(me.clone()))
            .select(user_segments::segment_id.nullable());
        query = query.filter(
            changes::public
                .eq(true)
                .or(changes::owner_id.eq(me.clone()))
                .or(changes::assignee_id.eq(me))
                .or(changes::segment_id.eq_any(my_segments)),
        );
    }
    let rows: Vec<(i64, String, String, String, String)> = query
        .select((
            changes::seq,
            changes::entity,
            changes::entity_id,
            changes::op,
            changes::data_json,
        ))
        .load(conn)?;
    let more = rows.len() > limit;
    let mut out = Vec::with_capacity(rows.len().min(limit));
    for (seq, entity, entity_id, op, data) in rows.into_iter().take(limit) {
        let entity = ChangeEntity::parse(&entity)
            .ok_or_else(|| corrupt(format!("change {seq}: entity {entity:?}")))?;
        let op = match op.as_str() {
            "upsert" => ChangeOp::Upsert,
            "delete" => ChangeOp::Delete,
            other => return Err(corrupt(format!("change {seq}: op {other:?}"))),
        };
        let data: Value =
            serde_json::from_str(&data).map_err(|e| corrupt(format!("change {seq}: {e}")))?;
        out.push(Change {
            seq,
            entity,
            id: entity_id,
            op,
            data,
        });
    }
    let next = if more {
        out.last().map(|c| c.seq).unwrap_or(after)
    } else {
        head.max(after)
    };
    Ok(Page {
        changes: out,
        next,
        more,
    })
}

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

/// Compacts the log: deletes each change older than `cutoff` that a later change of the same record
/// supersedes, at most `batch` rows per transaction, until none is left; answers how many went.
///
/// Every change holds its record whole, and a client applies changes in `seq` order keeping the
/// newest, so for any cursor the pull after compaction ends in the same mirror as before it: the
/// superseded rows only ever got overwritten. The newest change of every record stays, so the head
/// (and every cursor's validity) is unchanged. What is lost is intermediate history older than the
/// cutoff: a live-stream client resuming from a cursor that old gets the newest state of each alert,
/// not every step (keep the cutoff longer than any client stays away from the stream). One visible
/// difference: when a record's audience changed (an issue re-dispatched to someone else), a device
/// pulling after compaction no longer receives the older copy it would have been allowed to see.
pub fn compact(
    conn: &mut Conn,
    cutoff: chrono::DateTime<chrono::Utc>,
    batch: i64,
) -> QueryResult<usize> {
    let later = diesel::alias!(changes as later);
    let cutoff = ts(cutoff);
    let mut total = 0;
    loop {
        let superseded: Vec<i64> = changes::table
            .filter(changes::created_at.lt(&cutoff))
            .filter(diesel::dsl::exists(
                later
                    .filter(later.field(changes::entity).eq(changes::entity))
                    .filter(later.field(changes::entity_id).eq(changes::entity_id))
                    .filter(later.field(changes::seq).gt(changes::seq))
                    .select(later.field(changes::seq)),
            ))
            .order(changes::seq.asc())
            .select(changes::seq)
            .limit(batch.max(1))
            .load(conn)?;
        if superseded.is_empty() {
            return Ok(total);
        }
        total += super::write_transaction(conn, |conn| {
            diesel::delete(changes::table.filter(changes::seq.eq_any(&superseded))).execute(conn)
        })?;
    }
}
