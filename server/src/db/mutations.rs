//! The mutation journal: every applied mutation with its payload fingerprint and its result, so that
//! a replay answers `duplicate` with the original result and a reused id with another payload is a
//! conflict. Rejections are never journalled.

use super::schema::mutations;
use super::{parse_id, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::id::{DeviceId, MutationId, UserId};
use serde_json::Value;

/// What the journal remembers of an applied mutation.
#[derive(Debug, Clone)]
pub struct Applied {
    pub user: UserId,
    pub fingerprint: String,
    pub result: Value,
}

pub fn find(conn: &mut Conn, id: MutationId) -> QueryResult<Option<Applied>> {
    let row: Option<(String, String, String)> = mutations::table
        .filter(mutations::id.eq(id.to_string()))
        .select((
            mutations::user_id,
            mutations::fingerprint,
            mutations::result_json,
        ))
        .first(conn)
        .optional()?;
    let Some((user, fingerprint, result_json)) = row else {
        return Ok(None);
    };
    let result = serde_json::from_str(&result_json).map_err(|e| {
        diesel::result::Error::DeserializationError(format!("mutation {id}: {e}").into())
    })?;
    Ok(Some(Applied {
        user: parse_id(&user)?,
        fingerprint,
        result,
    }))
}

/// A journal row, written in the transaction that applied the mutation.
pub struct NewApplied<'a> {
    pub id: MutationId,
    pub device_id: DeviceId,
    pub user: UserId,
    pub device_seq: i64,
    pub kind: &'a str,
    pub fingerprint: &'a str,
    pub result: &'a Value,
}

pub fn insert(conn: &mut Conn, m: &NewApplied<'_>) -> QueryResult<()> {
    diesel::insert_into(mutations::table)
        .values((
            mutations::id.eq(m.id.to_string()),
            mutations::device_id.eq(m.device_id.to_string()),
            mutations::user_id.eq(m.user.to_string()),
            mutations::device_seq.eq(m.device_seq),
            mutations::kind.eq(m.kind),
            mutations::fingerprint.eq(m.fingerprint),
            mutations::result_json.eq(m.result.to_string()),
            mutations::applied_at.eq(super::written_now()),
        ))
        .execute(conn)?;
    Ok(())
}
