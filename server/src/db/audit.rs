//! The audit trail: who did what, when, from which device. Every row is written by [`record`] inside
//! the transaction of the change it describes, so a change and its audit row commit together or not
//! at all. Admins read it through `GET /api/v1/audit` ([`page`]).

use super::schema::audit;
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::api::AuditEntry;
use riverchief_shared::id::UserId;

/// Who acted, and from where. Built from the request's [`crate::auth::AuthUser`], or by hand for
/// logins (no token yet) and the command line (no one).
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub actor_id: Option<UserId>,
    pub actor_name: Option<String>,
    pub token_id: Option<String>,
    pub device_name: Option<String>,
    pub address: Option<String>,
}

impl Who {
    /// The server's own command line, run by whoever operates the machine.
    pub fn cli() -> Who {
        Who {
            actor_name: Some("(server command line)".into()),
            device_name: Some("riverchief-server".into()),
            ..Who::default()
        }
    }
}

/// Appends one row to the trail. Call it inside the transaction of the change it records.
pub fn record(
    conn: &mut Conn,
    who: &Who,
    kind: &str,
    subject: Option<&str>,
    detail: &serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(audit::table)
        .values((
            audit::at.eq(super::written_now()),
            audit::actor_id.eq(who.actor_id.map(|u| u.to_string())),
            audit::actor_name.eq(who.actor_name.as_deref()),
            audit::token_id.eq(who.token_id.as_deref()),
            audit::device_name.eq(who.device_name.as_deref()),
            audit::address.eq(who.address.as_deref()),
            audit::kind.eq(kind),
            audit::subject.eq(subject),
            audit::detail_json.eq(detail.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// What `GET /audit` filters on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The actor's user id.
    pub actor: Option<UserId>,
    /// Kinds to keep; a kind ending in `.` keeps every kind with that prefix (`login.`).
    pub kinds: Vec<String>,
    /// `at >= from`
    pub from: Option<DateTime<Utc>>,
    /// `at < to`
    pub to: Option<DateTime<Utc>>,
    /// Only rows older than this `seq` (the previous page's `next_before`).
    pub before: Option<i64>,
}

type Row = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
);

/// Up to `limit` rows matching `filter`, newest first, and the `before` of the next page.
pub fn page(
    conn: &mut Conn,
    filter: &Filter,
    limit: i64,
) -> QueryResult<(Vec<AuditEntry>, Option<i64>)> {
    let mut query = audit::table
        .select((
            audit::seq,
            audit::at,
            audit::actor_id,
            audit::actor_name,
            audit::token_id,
            audit::device_name,
            audit::address,
            audit::kind,
            audit::subject,
            audit::detail_json,
        ))
        .into_boxed();
    if let Some(a) = filter.actor {
        query = query.filter(audit::actor_id.eq(a.to_string()));
    }
    let exact: Vec<&str> = filter
        .kinds
        .iter()
        .filter(|k| !k.ends_with('.'))
        .map(String::as_str)
        .collect();
    let prefixes: Vec<String> = filter
        .kinds
        .iter()
        .filter(|k| k.ends_with('.'))
        .map(|k| format!("{k}%"))
        .collect();
    if !filter.kinds.is_empty() {
        let mut cond: Box<
            dyn BoxableExpression<audit::table, _, SqlType = diesel::sql_types::Bool>,
        > = Box::new(audit::kind.eq_any(exact));
        for p in prefixes {
            cond = Box::new(cond.or(audit::kind.like(p)));
        }
        query = query.filter(cond);
    }
    if let Some(from) = filter.from {
        query = query.filter(audit::at.ge(ts(from)));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit::at.lt(ts(to)));
    }
    if let Some(before) = filter.before {
        query = query.filter(audit::seq.lt(before));
    }
    let rows: Vec<Row> = query
        .order(audit::seq.desc())
        .limit(limit.saturating_add(1))
        .load(conn)?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let mut entries = Vec::with_capacity(rows.len());
    for (seq, at, actor_id, actor_name, token_id, device_name, address, kind, subject, detail) in
        rows.into_iter().take(usize::try_from(limit).unwrap_or(0))
    {
        entries.push(AuditEntry {
            seq,
            at: parse_ts(&at)?,
            actor_id: actor_id.as_deref().map(parse_id).transpose()?,
            actor_name,
            token_id,
            device_name,
            address,
            kind,
            subject,
            detail: serde_json::from_str(&detail)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?,
        });
    }
    let next = if more {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((entries, next))
}
