//! Users, segment assignments and device tokens.

use super::schema::{device_tokens, user_segments, users};
use super::{insert_or_ignore, parse_id, ts, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::api::UserInfo;
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
            users::created_at.eq(ts(chrono::Utc::now())),
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

pub fn insert_token(
    conn: &mut Conn,
    token_hash: &str,
    user: UserId,
    device_name: &str,
) -> QueryResult<()> {
    let now = ts(chrono::Utc::now());
    diesel::insert_into(device_tokens::table)
        .values((
            device_tokens::token_hash.eq(token_hash),
            device_tokens::user_id.eq(user.to_string()),
            device_tokens::device_name.eq(device_name),
            device_tokens::created_at.eq(&now),
            device_tokens::last_used_at.eq(&now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The user a token hash belongs to.
pub fn by_token(conn: &mut Conn, token_hash: &str) -> QueryResult<Option<UserInfo>> {
    let user_id: Option<String> = device_tokens::table
        .filter(device_tokens::token_hash.eq(token_hash))
        .select(device_tokens::user_id)
        .first(conn)
        .optional()?;
    match user_id {
        Some(id) => Ok(by_id(conn, parse_id(&id)?)?.map(|r| r.info)),
        None => Ok(None),
    }
}
