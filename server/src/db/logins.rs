//! Login attempts, kept in the database so that the rate limit holds across server instances (see
//! [`crate::auth::LoginLimits`]). Rows older than a day are deleted as new ones arrive.

use super::schema::login_attempts;
use super::{parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

/// Appends one attempt, and forgets this name's and this address's attempts older than a day.
pub fn record(
    conn: &mut Conn,
    username: &str,
    address: &str,
    success: bool,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    let old = ts(at - Duration::days(1));
    diesel::delete(
        login_attempts::table
            .filter(
                login_attempts::username
                    .eq(username)
                    .or(login_attempts::address.eq(address)),
            )
            .filter(login_attempts::at.lt(old)),
    )
    .execute(conn)?;
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::username.eq(username),
            login_attempts::address.eq(address),
            login_attempts::at.eq(ts(at)),
            login_attempts::success.eq(success),
        ))
        .execute(conn)?;
    Ok(())
}

/// One attempt as the limit weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub address: String,
    pub at: DateTime<Utc>,
    pub success: bool,
}

/// The attempts on `username` since `since`, oldest first.
pub fn for_username(
    conn: &mut Conn,
    username: &str,
    since: DateTime<Utc>,
) -> QueryResult<Vec<Attempt>> {
    let rows: Vec<(String, String, bool)> = login_attempts::table
        .filter(login_attempts::username.eq(username))
        .filter(login_attempts::at.ge(ts(since)))
        .select((
            login_attempts::address,
            login_attempts::at,
            login_attempts::success,
        ))
        .order((login_attempts::at.asc(), login_attempts::id.asc()))
        .limit(LIMIT)
        .load(conn)?;
    to_attempts(rows)
}

/// The failed attempts from `address` since `since`, oldest first.
pub fn failures_from(
    conn: &mut Conn,
    address: &str,
    since: DateTime<Utc>,
) -> QueryResult<Vec<Attempt>> {
    let rows: Vec<(String, String, bool)> = login_attempts::table
        .filter(login_attempts::address.eq(address))
        .filter(login_attempts::success.eq(false))
        .filter(login_attempts::at.ge(ts(since)))
        .select((
            login_attempts::address,
            login_attempts::at,
            login_attempts::success,
        ))
        .order((login_attempts::at.asc(), login_attempts::id.asc()))
        .limit(LIMIT)
        .load(conn)?;
    to_attempts(rows)
}

/// More than any limit counts; a name under attack does not make the check slow.
const LIMIT: i64 = 1000;

fn to_attempts(rows: Vec<(String, String, bool)>) -> QueryResult<Vec<Attempt>> {
    rows.into_iter()
        .map(|(address, at, success)| {
            Ok(Attempt {
                address,
                at: parse_ts(&at)?,
                success,
            })
        })
        .collect()
}
