//! Users, segment assignments and device tokens.

use super::schema::{device_tokens, user_segments, users};
use super::{insert_or_ignore, parse_id, ts, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::api::{DeviceToken, UserAccount, UserInfo};
use riverchief_shared::domain::Role;
use riverchief_shared::id::{SegmentId, UserId};

/// A user row with what authentication needs.
pub struct UserRow {
    pub info: UserInfo,
    pub password_hash: String,
}

type Columns = (String, String, String, String, String);

fn to_row((id, username, display_name, role, password_hash): Columns) -> QueryResult<UserRow> {
    let role = Role::parse(&role).ok_or_else(|| {
        diesel::result::Error::DeserializationError(format!("user {id}: role {role:?}").into())
    })?;
    Ok(UserRow {
        info: UserInfo {
            id: parse_id(&id)?,
            username,
            display_name,
            role,
        },
        password_hash,
    })
}

const COLUMNS: (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::password_hash,
) = (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::password_hash,
);

pub fn by_username(conn: &mut Conn, username: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::username.eq(username))
        .select(COLUMNS)
        .first::<Columns>(conn)
        .optional()?
        .map(to_row)
        .transpose()
}

pub fn by_id(conn: &mut Conn, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::id.eq(id.to_string()))
        .select(COLUMNS)
        .first::<Columns>(conn)
        .optional()?
        .map(to_row)
        .transpose()
}

/// Creates a user (the password already hashed). Fails with a unique violation if the name is taken.
pub fn insert(conn: &mut Conn, info: &UserInfo, password_hash: &str) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(info.id.to_string()),
            users::username.eq(&info.username),
            users::display_name.eq(&info.display_name),
            users::role.eq(info.role.as_str()),
            users::password_hash.eq(password_hash),
            users::created_at.eq(super::written_now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_password(conn: &mut Conn, id: UserId, password_hash: &str) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(id.to_string())))
        .set(users::password_hash.eq(password_hash))
        .execute(conn)?;
    Ok(())
}

/// Assigns segments to a user (already assigned ones are kept).
pub fn assign_segments(conn: &mut Conn, user: UserId, segments: &[SegmentId]) -> QueryResult<()> {
    for s in segments {
        insert_or_ignore!(
            conn,
            user_segments::table,
            (
                user_segments::user_id.eq(user.to_string()),
                user_segments::segment_id.eq(s.to_string()),
            )
        )?;
    }
    Ok(())
}

pub fn assigned_segments(conn: &mut Conn, user: UserId) -> QueryResult<Vec<SegmentId>> {
    user_segments::table
        .filter(user_segments::user_id.eq(user.to_string()))
        .select(user_segments::segment_id)
        .load::<String>(conn)?
        .iter()
        .map(|s| parse_id(s))
        .collect()
}

/// Makes a token's public id (what admins see and revoke by; the token itself is never stored).
pub fn new_token_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Records a login's token; answers its id.
pub fn insert_token(
    conn: &mut Conn,
    token_hash: &str,
    user: UserId,
    device_name: &str,
) -> QueryResult<String> {
    let now = super::written_now();
    let id = new_token_id();
    diesel::insert_into(device_tokens::table)
        .values((
            device_tokens::token_hash.eq(token_hash),
            device_tokens::user_id.eq(user.to_string()),
            device_tokens::device_name.eq(device_name),
            device_tokens::created_at.eq(&now),
            device_tokens::last_used_at.eq(&now),
            device_tokens::id.eq(&id),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The user behind a live token, and the token's id and device.
pub struct TokenOwner {
    pub user: UserInfo,
    pub token_id: String,
    pub device_name: String,
    /// When the token was last seen (to within [`LAST_USED_GRAIN`]).
    pub last_used_at: String,
}

/// How stale a token's `last_used_at` may get before a request writes it again: often enough for an
/// admin deciding which device to revoke, rarely enough that reads do not become writes.
pub const LAST_USED_GRAIN: chrono::Duration = chrono::Duration::minutes(10);

/// The active user a token hash belongs to, unless the token was revoked.
pub fn by_token(conn: &mut Conn, token_hash: &str) -> QueryResult<Option<TokenOwner>> {
    let row: Option<(String, Option<String>, String, String)> = device_tokens::table
        .filter(device_tokens::token_hash.eq(token_hash))
        .filter(device_tokens::revoked_at.is_null())
        .select((
            device_tokens::user_id,
            device_tokens::id,
            device_tokens::device_name,
            device_tokens::last_used_at,
        ))
        .first(conn)
        .optional()?;
    let Some((user_id, token_id, device_name, last_used_at)) = row else {
        return Ok(None);
    };
    let user = parse_id(&user_id)?;
    if !is_active(conn, user)? {
        return Ok(None);
    }
    Ok(by_id(conn, user)?.map(|r| TokenOwner {
        user: r.info,
        token_id: token_id.unwrap_or_default(),
        device_name,
        last_used_at,
    }))
}

/// Records that a token was used now, when its stored time is older than [`LAST_USED_GRAIN`]
/// (times are stored so that text order is time order). Answers whether it wrote.
pub fn touch_token(
    conn: &mut Conn,
    token_hash: &str,
    last_used_at: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> QueryResult<bool> {
    if last_used_at >= ts(now - LAST_USED_GRAIN).as_str() {
        return Ok(false);
    }
    let n = diesel::update(
        device_tokens::table
            .filter(device_tokens::token_hash.eq(token_hash))
            .filter(device_tokens::last_used_at.lt(ts(now - LAST_USED_GRAIN))),
    )
    .set(device_tokens::last_used_at.eq(ts(now)))
    .execute(conn)?;
    Ok(n > 0)
}

pub fn is_active(conn: &mut Conn, id: UserId) -> QueryResult<bool> {
    Ok(users::table
        .filter(users::id.eq(id.to_string()))
        .select(users::active)
        .first::<bool>(conn)
        .optional()?
        .unwrap_or(false))
}

/// Every user, as admins manage them, by username.
pub fn accounts(conn: &mut Conn) -> QueryResult<Vec<UserAccount>> {
    let ids: Vec<String> = users::table
        .order(users::username.asc())
        .select(users::id)
        .load(conn)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(a) = account(conn, parse_id(&id)?)? {
            out.push(a);
        }
    }
    Ok(out)
}

/// One user as admins manage them.
pub fn account(conn: &mut Conn, id: UserId) -> QueryResult<Option<UserAccount>> {
    let Some(row) = by_id(conn, id)? else {
        return Ok(None);
    };
    let (active, created_at): (bool, String) = users::table
        .filter(users::id.eq(id.to_string()))
        .select((users::active, users::created_at))
        .first(conn)?;
    let mut segment_ids = assigned_segments(conn, id)?;
    segment_ids.sort();
    Ok(Some(UserAccount {
        user: row.info,
        active,
        segment_ids,
        created_at: super::parse_ts(&created_at)?,
    }))
}

pub fn set_role(conn: &mut Conn, id: UserId, role: Role) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(id.to_string())))
        .set(users::role.eq(role.as_str()))
        .execute(conn)?;
    Ok(())
}

pub fn set_display_name(conn: &mut Conn, id: UserId, name: &str) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(id.to_string())))
        .set(users::display_name.eq(name))
        .execute(conn)?;
    Ok(())
}

pub fn set_active(conn: &mut Conn, id: UserId, active: bool) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(id.to_string())))
        .set(users::active.eq(active))
        .execute(conn)?;
    Ok(())
}

/// Replaces the user's segments with `segments`.
pub fn replace_segments(conn: &mut Conn, user: UserId, segments: &[SegmentId]) -> QueryResult<()> {
    diesel::delete(user_segments::table.filter(user_segments::user_id.eq(user.to_string())))
        .execute(conn)?;
    assign_segments(conn, user, segments)
}

/// A user's logins (device tokens), newest first.
pub fn devices(conn: &mut Conn, user: UserId) -> QueryResult<Vec<DeviceToken>> {
    type DeviceRow = (Option<String>, String, String, String, Option<String>);
    let rows: Vec<DeviceRow> = device_tokens::table
        .filter(device_tokens::user_id.eq(user.to_string()))
        .select((
            device_tokens::id,
            device_tokens::device_name,
            device_tokens::created_at,
            device_tokens::last_used_at,
            device_tokens::revoked_at,
        ))
        .order((device_tokens::created_at.desc(), device_tokens::id.desc()))
        .load(conn)?;
    rows.into_iter()
        .map(|(id, device_name, created_at, last_used_at, revoked_at)| {
            Ok(DeviceToken {
                id: id.unwrap_or_default(),
                device_name,
                created_at: super::parse_ts(&created_at)?,
                last_used_at: super::parse_ts(&last_used_at)?,
                revoked_at: revoked_at.as_deref().map(super::parse_ts).transpose()?,
            })
        })
        .collect()
}

/// A token by its id: its user and device name.
pub fn token(conn: &mut Conn, token_id: &str) -> QueryResult<Option<(UserId, String, bool)>> {
    let row: Option<(String, String, Option<String>)> = device_tokens::table
        .filter(device_tokens::id.eq(token_id))
        .select((
            device_tokens::user_id,
            device_tokens::device_name,
            device_tokens::revoked_at,
        ))
        .first(conn)
        .optional()?;
    row.map(|(u, d, r)| Ok((parse_id(&u)?, d, r.is_some())))
        .transpose()
}

/// Revokes a token: it stops working at once. Answers whether it was live.
pub fn revoke_token(conn: &mut Conn, token_id: &str) -> QueryResult<bool> {
    let n = diesel::update(
        device_tokens::table
            .filter(device_tokens::id.eq(token_id))
            .filter(device_tokens::revoked_at.is_null()),
    )
    .set(device_tokens::revoked_at.eq(super::written_now()))
    .execute(conn)?;
    Ok(n > 0)
}

/// Revokes every live token of a user (a password reset, a user switched off); answers how many.
pub fn revoke_all(conn: &mut Conn, user: UserId) -> QueryResult<usize> {
    diesel::update(
        device_tokens::table
            .filter(device_tokens::user_id.eq(user.to_string()))
            .filter(device_tokens::revoked_at.is_null()),
    )
    .set(device_tokens::revoked_at.eq(super::written_now()))
    .execute(conn)
}
