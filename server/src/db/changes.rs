//! The change log: every write that a client may need to mirror appends one row here, in the same
//! transaction as the write, holding the record as it now is and who may see it.
//!
//! Pull pages through the log by `seq`. On SQLite there is one writer at a time and a row's `seq` is
//! taken inside the writer's transaction, so rows become visible in `seq` order and a cursor never
//! skips a row that commits later.

use super::schema::{changes, meta, user_segments};
use super::{ts, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::domain::Role;
use riverchief_shared::id::{SegmentId, UserId};
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

/// Appends a change. Call it inside the transaction that made the change.
pub fn record(
    conn: &mut Conn,
    entity: ChangeEntity,
    entity_id: &str,
    op: ChangeOp,
    data: &Value,
    audience: &Audience,
) -> QueryResult<i64> {
    let op = match op {
        ChangeOp::Upsert => "upsert",
        ChangeOp::Delete => "delete",
    };
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
            changes::created_at.eq(ts(chrono::Utc::now())),
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
    diesel::insert_or_ignore_into(meta::table)
        .values((meta::key.eq("epoch"), meta::value.eq(&fresh)))
        .execute(conn)?;
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
    // Read the head first: every row at or below it is committed (one writer at a time), so when the
    // page comes back short the cursor may jump to the head past rows this viewer cannot see.
    let head = max_seq(conn)?;
    let mut query = changes::table
        .filter(changes::seq.gt(after))
        .filter(changes::seq.le(head))
        .order(changes::seq.asc())
        .limit(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .into_boxed();
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
