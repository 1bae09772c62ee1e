//! Webhooks and the durable outbox of their deliveries.
//!
//! [`enqueue`] runs inside the transaction of every alert change (`db::alerts::publish`), after the
//! change-log row: one `webhook_deliveries` row per matching webhook, numbered by that row's `seq`.
//! Because change-log rows commit in `seq` order (the change-log lock), so do the deliveries of a
//! webhook, and the head of a webhook's queue is final once it is visible.
//!
//! The sender (`delivery::worker`) takes a due delivery with [`claim`], a conditional `UPDATE` that
//! succeeds for one instance only (on PostgreSQL a concurrent claim waits for the first and then
//! finds the lease taken; on SQLite writers take turns), sends it, and records the answer with
//! [`record_attempt`], which releases the lease. A delivery is due only when no earlier delivery of
//! its webhook is pending ([`due`]): one webhook's receiver sees alert changes in order.

use super::schema::{webhook_deliveries as d, webhooks as w};
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::alert::{Alert, AlertKind};
use riverchief_shared::id::{DeliveryId, UserId, WebhookId};
use riverchief_shared::webhook::{
    AlertEvent, Attempt, Delivery, DeliveryState, NewWebhook, Webhook, WebhookFormat,
};
use std::collections::BTreeMap;

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn to_json<T: serde::Serialize>(v: &T) -> QueryResult<String> {
    serde_json::to_string(v).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = w)]
struct HookRow {
    id: String,
    url: String,
    secret: String,
    kinds: String,
    format: String,
    include_drill: bool,
    created_by: String,
    created_at: String,
}

/// A webhook with its secret, for the sender.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: WebhookId,
    pub url: String,
    pub secret: String,
    pub kinds: Vec<AlertKind>,
    pub format: WebhookFormat,
    pub include_drill: bool,
}

impl Target {
    /// Whether this webhook wants a change of `alert`.
    pub fn wants(&self, alert: &Alert) -> bool {
        (!alert.drill || self.include_drill)
            && (self.kinds.is_empty() || self.kinds.contains(&alert.kind))
    }
}

fn parse_kinds(id: &str, kinds: &str) -> QueryResult<Vec<AlertKind>> {
    kinds
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| AlertKind::parse(k).ok_or_else(|| corrupt(format!("webhook {id}: kind {k:?}"))))
        .collect()
}

fn target(r: &HookRow) -> QueryResult<Target> {
    Ok(Target {
        id: parse_id(&r.id)?,
        url: r.url.clone(),
        secret: r.secret.clone(),
        kinds: parse_kinds(&r.id, &r.kinds)?,
        format: WebhookFormat::parse(&r.format)
            .ok_or_else(|| corrupt(format!("webhook {}: format {:?}", r.id, r.format)))?,
        include_drill: r.include_drill,
    })
}

/// The last few characters of a secret, enough to tell two apart and never enough to use one.
pub fn secret_hint(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 12 {
        return "…".into();
    }
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("…{tail}")
}

fn active_rows(conn: &mut Conn) -> QueryResult<Vec<HookRow>> {
    w::table
        .filter(w::deleted_at.is_null())
        .order(w::created_at.asc())
        .select(HookRow::as_select())
        .load(conn)
}

/// Adds a webhook (already validated at the edge).
pub fn insert(
    conn: &mut Conn,
    new: &NewWebhook,
    by: UserId,
    now: DateTime<Utc>,
) -> QueryResult<Webhook> {
    let id = WebhookId::new();
    let kinds: Vec<&str> = new.kinds.iter().map(|k| k.as_str()).collect();
    diesel::insert_into(w::table)
        .values((
            w::id.eq(id.to_string()),
            w::url.eq(&new.url),
            w::secret.eq(&new.secret),
            w::kinds.eq(kinds.join(",")),
            w::format.eq(new.format.as_str()),
            w::include_drill.eq(new.include_drill),
            w::created_by.eq(by.to_string()),
            w::created_at.eq(ts(now)),
        ))
        .execute(conn)?;
    get(conn, id)?.ok_or_else(|| corrupt(format!("webhook {id} vanished after its insert")))
}

fn shown(conn: &mut Conn, r: HookRow) -> QueryResult<Webhook> {
    let t = target(&r)?;
    let counts: Vec<(String, i64)> = d::table
        .filter(d::webhook_id.eq(&r.id))
        .filter(d::state.eq_any(["pending", "failed"]))
        .group_by(d::state)
        .select((d::state, diesel::dsl::count_star()))
        .load(conn)?;
    let count = |s: &str| {
        counts
            .iter()
            .find(|(state, _)| state == s)
            .map_or(0, |c| c.1)
    };
    Ok(Webhook {
        id: t.id,
        url: r.url,
        secret_hint: secret_hint(&r.secret),
        kinds: t.kinds,
        format: t.format,
        include_drill: r.include_drill,
        created_by: parse_id(&r.created_by)?,
        created_at: parse_ts(&r.created_at)?,
        pending: count("pending"),
        failed: count("failed"),
    })
}

/// Every webhook not deleted, oldest first.
pub fn list(conn: &mut Conn) -> QueryResult<Vec<Webhook>> {
    active_rows(conn)?
        .into_iter()
        .map(|r| shown(conn, r))
        .collect()
}

/// One webhook not deleted.
pub fn get(conn: &mut Conn, id: WebhookId) -> QueryResult<Option<Webhook>> {
    let row: Option<HookRow> = w::table
        .filter(w::id.eq(id.to_string()))
        .filter(w::deleted_at.is_null())
        .select(HookRow::as_select())
        .first(conn)
        .optional()?;
    row.map(|r| shown(conn, r)).transpose()
}

/// Deletes a webhook: it gets no more deliveries, and those still pending are cancelled (its
/// delivery history stays). `false`: no such webhook.
pub fn delete(conn: &mut Conn, id: WebhookId, now: DateTime<Utc>) -> QueryResult<bool> {
    let id = id.to_string();
    let n = diesel::update(
        w::table
            .filter(w::id.eq(&id))
            .filter(w::deleted_at.is_null()),
    )
    .set(w::deleted_at.eq(ts(now)))
    .execute(conn)?;
    if n == 0 {
        return Ok(false);
    }
    diesel::update(
        d::table
            .filter(d::webhook_id.eq(&id))
            .filter(d::state.eq(DeliveryState::Pending.as_str())),
    )
    .set((
        d::state.eq(DeliveryState::Cancelled.as_str()),
        d::lease_until.eq(None::<String>),
        d::leased_by.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(true)
}

/// Queues the change of `alert` recorded in the change log at `seq` for every webhook that wants it.
/// Call it in the transaction of the change, after its change-log row (so under the change-log lock).
pub fn enqueue(conn: &mut Conn, alert: &Alert, seq: i64) -> QueryResult<usize> {
    let rows = active_rows(conn)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let event = AlertEvent::of(alert);
    let alert_json = to_json(alert)?;
    let at = super::written_now();
    let mut n = 0;
    for r in &rows {
        if !target(r)?.wants(alert) {
            continue;
        }
        diesel::insert_into(d::table)
            .values((
                d::id.eq(DeliveryId::new().to_string()),
                d::webhook_id.eq(&r.id),
                d::seq.eq(seq),
                d::alert_id.eq(alert.id.to_string()),
                d::event.eq(event.as_str()),
                d::alert_json.eq(&alert_json),
                d::state.eq(DeliveryState::Pending.as_str()),
                d::attempts.eq(0i64),
                d::next_attempt_at.eq(&at),
                d::history_json.eq("[]"),
                d::created_at.eq(&at),
            ))
            .execute(conn)?;
        n += 1;
    }
    Ok(n)
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = d)]
struct DeliveryRow {
    id: String,
    webhook_id: String,
    seq: i64,
    alert_id: String,
    event: String,
    alert_json: String,
    state: String,
    attempts: i64,
    next_attempt_at: String,
    last_status: Option<i64>,
    last_error: Option<String>,
    history_json: String,
    created_at: String,
    delivered_at: Option<String>,
}

fn delivery(r: DeliveryRow) -> QueryResult<Delivery> {
    let state = DeliveryState::parse(&r.state)
        .ok_or_else(|| corrupt(format!("delivery {}: state {:?}", r.id, r.state)))?;
    let history: Vec<Attempt> = serde_json::from_str(&r.history_json)
        .map_err(|e| corrupt(format!("delivery {}: history: {e}", r.id)))?;
    Ok(Delivery {
        id: parse_id(&r.id)?,
        webhook_id: parse_id(&r.webhook_id)?,
        seq: r.seq,
        alert_id: parse_id(&r.alert_id)?,
        event: AlertEvent::parse(&r.event)
            .ok_or_else(|| corrupt(format!("delivery {}: event {:?}", r.id, r.event)))?,
        state,
        attempts: r.attempts,
        next_attempt_at: if state == DeliveryState::Pending {
            Some(parse_ts(&r.next_attempt_at)?)
        } else {
            None
        },
        last_status: r.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.last_error,
        history,
        created_at: parse_ts(&r.created_at)?,
        delivered_at: r.delivered_at.as_deref().map(parse_ts).transpose()?,
    })
}

/// A webhook's deliveries, newest first.
pub fn deliveries(
    conn: &mut Conn,
    webhook: WebhookId,
    state: Option<DeliveryState>,
    limit: i64,
) -> QueryResult<Vec<Delivery>> {
    let mut q = d::table
        .filter(d::webhook_id.eq(webhook.to_string()))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Some(s) = state {
        q = q.filter(d::state.eq(s.as_str()));
    }
    q.order(d::seq.desc())
        .limit(limit.max(1))
        .load::<DeliveryRow>(conn)?
        .into_iter()
        .map(delivery)
        .collect()
}

/// Whether a webhook exists, deleted or not (its deliveries stay readable).
pub fn exists(conn: &mut Conn, id: WebhookId) -> QueryResult<bool> {
    let n: i64 = w::table
        .filter(w::id.eq(id.to_string()))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Deliveries per state, over every webhook (for `/metrics`).
pub fn counts_by_state(conn: &mut Conn) -> QueryResult<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = d::table
        .group_by(d::state)
        .select((d::state, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// Up to `limit` deliveries that may be sent now: pending, due, not leased, and the earliest pending
/// one of their webhook. Oldest first.
pub fn due(conn: &mut Conn, now: DateTime<Utc>, limit: i64) -> QueryResult<Vec<DeliveryId>> {
    let earlier = diesel::alias!(d as earlier);
    let now = ts(now);
    let ids: Vec<String> = d::table
        .filter(d::state.eq(DeliveryState::Pending.as_str()))
        .filter(d::next_attempt_at.le(&now))
        .filter(d::lease_until.is_null().or(d::lease_until.lt(&now)))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            earlier
                .filter(earlier.field(d::webhook_id).eq(d::webhook_id))
                .filter(earlier.field(d::state).eq(DeliveryState::Pending.as_str()))
                .filter(earlier.field(d::seq).lt(d::seq)),
        )))
        .order(d::seq.asc())
        .limit(limit)
        .select(d::id)
        .load(conn)?;
    ids.iter().map(|s| parse_id(s)).collect()
}

/// A delivery this instance holds the lease of, with what it takes to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: DeliveryId,
    pub target: Target,
    pub event: AlertEvent,
    pub alert: Alert,
    /// Attempts made before this one.
    pub attempts: i64,
    pub history: Vec<Attempt>,
}

/// Takes the lease of a due delivery until `lease_until`, unless another instance holds it or it
/// is no longer pending. One statement: on PostgreSQL a concurrent claim of the same row waits for
/// this one to commit, re-reads the row, and finds the lease taken.
pub fn claim(
    conn: &mut Conn,
    id: DeliveryId,
    me: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> QueryResult<Option<Claimed>> {
    let key = id.to_string();
    let now_s = ts(now);
    let n = diesel::update(
        d::table
            .filter(d::id.eq(&key))
            .filter(d::state.eq(DeliveryState::Pending.as_str()))
            .filter(d::next_attempt_at.le(&now_s))
            .filter(d::lease_until.is_null().or(d::lease_until.lt(&now_s))),
    )
    .set((d::lease_until.eq(ts(lease_until)), d::leased_by.eq(me)))
    .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    let r: DeliveryRow = d::table
        .filter(d::id.eq(&key))
        .select(DeliveryRow::as_select())
        .first(conn)?;
    let (hook, deleted): (HookRow, Option<String>) = w::table
        .filter(w::id.eq(&r.webhook_id))
        .select((HookRow::as_select(), w::deleted_at))
        .first(conn)?;
    if deleted.is_some() {
        // Queued by a transaction that read the webhook just before it was deleted.
        diesel::update(d::table.filter(d::id.eq(&key)))
            .set((
                d::state.eq(DeliveryState::Cancelled.as_str()),
                d::lease_until.eq(None::<String>),
                d::leased_by.eq(None::<String>),
            ))
            .execute(conn)?;
        return Ok(None);
    }
    let alert: Alert = serde_json::from_str(&r.alert_json)
        .map_err(|e| corrupt(format!("delivery {key}: alert: {e}")))?;
    let shown = delivery(r)?;
    Ok(Some(Claimed {
        id,
        target: target(&hook)?,
        event: shown.event,
        alert,
        attempts: shown.attempts,
        history: shown.history,
    }))
}

/// Gives up the leases `me` holds (a stopping instance), so that another instance, or this one
/// restarted, sends those deliveries at once instead of when the leases expire. An attempt that was
/// in flight may then be sent twice: with the same `Idempotency-Key`.
pub fn release_leases(conn: &mut Conn, me: &str) -> QueryResult<usize> {
    diesel::update(
        d::table
            .filter(d::leased_by.eq(me))
            .filter(d::state.eq(DeliveryState::Pending.as_str())),
    )
    .set((
        d::lease_until.eq(None::<String>),
        d::leased_by.eq(None::<String>),
    ))
    .execute(conn)
}

/// What came of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Failed; try again at this time.
    Retry(DateTime<Utc>),
    /// Failed for the last time.
    GiveUp,
}

/// Records an attempt and releases the lease; ignored (`false`) if this instance no longer holds it
/// (it expired and another took it) or the delivery was cancelled meanwhile.
pub fn record_attempt(
    conn: &mut Conn,
    claimed: &Claimed,
    me: &str,
    attempt: Attempt,
    outcome: &Outcome,
) -> QueryResult<bool> {
    let mut history = claimed.history.clone();
    let status = attempt.status.map(i64::from);
    let error = attempt.error.clone();
    let at = ts(attempt.at);
    history.push(attempt);
    let history = to_json(&history)?;
    let (state, next, delivered) = match outcome {
        Outcome::Delivered => (DeliveryState::Delivered, at.clone(), Some(at)),
        Outcome::Retry(next) => (DeliveryState::Pending, ts(*next), None),
        Outcome::GiveUp => (DeliveryState::Failed, at, None),
    };
    let n = diesel::update(
        d::table
            .filter(d::id.eq(claimed.id.to_string()))
            .filter(d::state.eq(DeliveryState::Pending.as_str()))
            .filter(d::leased_by.eq(me)),
    )
    .set((
        d::state.eq(state.as_str()),
        d::attempts.eq(claimed.attempts + 1),
        d::next_attempt_at.eq(next),
        d::lease_until.eq(None::<String>),
        d::leased_by.eq(None::<String>),
        d::last_status.eq(status),
        d::last_error.eq(error),
        d::history_json.eq(history),
        d::delivered_at.eq(delivered),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::db::Db;
    use riverchief_shared::alert::{AlertLevel, AlertState};
    use riverchief_shared::id::AlertId;

    fn alert(kind: AlertKind, drill: bool) -> Alert {
        let t = Utc::now();
        Alert {
            id: AlertId::new(),
            kind,
            subject: "issue:x".into(),
            state: AlertState::Open,
            level: AlertLevel::Critical,
            drill,
            message: "险情".into(),
            message_en: "Hazard".into(),
            segment_id: None,
            issue_id: None,
            station: None,
            details: serde_json::Value::Null,
            raised_at: t,
            updated_at: t,
            acknowledged_at: None,
            acknowledged_by: None,
            acknowledged_by_name: None,
            resolved_at: None,
        }
    }

    fn hook(kinds: Vec<AlertKind>, include_drill: bool) -> NewWebhook {
        NewWebhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "secret".into(),
            kinds,
            format: WebhookFormat::Generic,
            include_drill,
        }
    }

    fn failed(at: DateTime<Utc>) -> Attempt {
        Attempt {
            at,
            status: Some(500),
            error: Some("HTTP 500".into()),
            retry_in_ms: Some(1000),
        }
    }

    #[test]
    fn kinds_and_drills_choose_the_webhooks() {
        let t = |kinds, drill| Target {
            id: WebhookId::new(),
            url: String::new(),
            secret: String::new(),
            kinds,
            format: WebhookFormat::Generic,
            include_drill: drill,
        };
        let hazard = alert(AlertKind::CriticalHazard, false);
        let drill = alert(AlertKind::CriticalHazard, true);
        assert!(t(vec![], false).wants(&hazard));
        assert!(!t(vec![], false).wants(&drill));
        assert!(t(vec![], true).wants(&drill));
        assert!(t(vec![AlertKind::CriticalHazard], false).wants(&hazard));
        assert!(!t(vec![AlertKind::RapidRise], true).wants(&hazard));
        assert_eq!(secret_hint("short"), "…");
        assert_eq!(secret_hint("SEC0123456789abcd"), "…abcd");
    }

    /// Runs `f` on a fresh SQLite database, and on a fresh PostgreSQL database too when the
    /// PostgreSQL pass of `scripts/test` names a server (see `db::scratch`).
    fn on_each_backend(f: impl Fn(&Db)) {
        let dir = tempfile::tempdir().unwrap();
        f(&Db::open(&dir.path().join("t.sqlite3").to_string_lossy()).unwrap());
        let Some(admin) = crate::db::scratch::ScratchDb::server() else {
            return;
        };
        let scratch = crate::db::scratch::ScratchDb::create(&admin, "rc_test_outbox").unwrap();
        let db = Db::open(scratch.url()).unwrap();
        f(&db);
        // The pool's connections end before the database is dropped.
        drop(db);
    }

    /// Many instances race to claim one due delivery: exactly one gets it.
    #[test]
    fn one_claim_wins_a_race() {
        on_each_backend(|db| {
            let mut conn = db.conn().unwrap();
            let now = Utc::now();
            insert(&mut conn, &hook(vec![], false), UserId::new(), now).unwrap();
            enqueue(&mut conn, &alert(AlertKind::CriticalHazard, false), 1).unwrap();
            drop(conn);
            let later = now + chrono::Duration::seconds(1);
            let id = due(&mut db.conn().unwrap(), later, 1).unwrap()[0];
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let winners: usize = (0..6)
                .map(|i| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut conn = db.conn().unwrap();
                        barrier.wait();
                        let lease = later + chrono::Duration::seconds(30);
                        claim(&mut conn, id, &format!("instance-{i}"), later, lease)
                            .unwrap()
                            .is_some() as usize
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .sum();
            assert_eq!(winners, 1);
        });
    }

    /// The outbox on its own: head of line per webhook, one lease at a time, leases that expire,
    /// retries that wait, and a give-up that lets the next one go.
    #[test]
    fn claims_are_exclusive_and_each_webhook_goes_in_order() {
        on_each_backend(outbox_story);
    }

    fn outbox_story(db: &Db) {
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let admin = UserId::new();
        let now = Utc::now();
        let all = insert(c, &hook(vec![], false), admin, now).unwrap();
        let other = insert(c, &hook(vec![AlertKind::RapidRise], true), admin, now).unwrap();
        let (a1, a2) = (
            alert(AlertKind::CriticalHazard, false),
            alert(AlertKind::CriticalHazard, false),
        );
        assert_eq!(enqueue(c, &a1, 10).unwrap(), 1);
        assert_eq!(enqueue(c, &a2, 11).unwrap(), 1);
        assert_eq!(
            enqueue(c, &alert(AlertKind::CriticalHazard, true), 12).unwrap(),
            0
        );
        let later = now + chrono::Duration::seconds(1);

        let due_now = due(c, later, 10).unwrap();
        assert_eq!(due_now.len(), 1, "only the head of the webhook's queue");
        let first = due_now[0];
        let lease = later + chrono::Duration::seconds(30);
        let mine = claim(c, first, "a", later, lease).unwrap().unwrap();
        assert_eq!(mine.alert.id, a1.id);
        assert!(claim(c, first, "b", later, lease).unwrap().is_none());
        assert!(
            due(c, later, 10).unwrap().is_empty(),
            "leased, and the second waits"
        );

        // A failure schedules a retry; the second still waits behind it.
        let retry_at = later + chrono::Duration::seconds(5);
        assert!(record_attempt(c, &mine, "a", failed(later), &Outcome::Retry(retry_at)).unwrap());
        assert!(due(c, later, 10).unwrap().is_empty());
        let at_retry = retry_at + chrono::Duration::milliseconds(1);
        assert_eq!(due(c, at_retry, 10).unwrap(), vec![first]);

        // An instance that dies holding the lease: another takes it once it expires, and the dead
        // one's late answer is ignored.
        let dead = claim(
            c,
            first,
            "a",
            at_retry,
            at_retry + chrono::Duration::seconds(30),
        )
        .unwrap()
        .unwrap();
        assert!(claim(c, first, "b", at_retry, at_retry).unwrap().is_none());
        let expired = at_retry + chrono::Duration::seconds(31);
        let taken = claim(
            c,
            first,
            "b",
            expired,
            expired + chrono::Duration::seconds(30),
        )
        .unwrap()
        .unwrap();
        assert_eq!(taken.attempts, 1);
        assert!(!record_attempt(c, &dead, "a", failed(expired), &Outcome::GiveUp).unwrap());
        assert!(record_attempt(c, &taken, "b", failed(expired), &Outcome::GiveUp).unwrap());

        // Given up: visible as failed, and the webhook's next delivery goes.
        let log = deliveries(c, all.id, None, 10).unwrap();
        assert_eq!(log[1].state, DeliveryState::Failed);
        assert_eq!(log[1].attempts, 2);
        assert_eq!(log[1].history.len(), 2);
        assert_eq!(due(c, expired, 10).unwrap(), vec![log[0].id]);
        assert!(deliveries(c, other.id, None, 10).unwrap().is_empty());

        // Leases of a stopping instance are given back; a deleted webhook's queue is cancelled.
        let next = claim(
            c,
            log[0].id,
            "c",
            expired,
            expired + chrono::Duration::seconds(30),
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.alert.id, a2.id);
        assert_eq!(release_leases(c, "c").unwrap(), 1);
        assert_eq!(due(c, expired, 10).unwrap(), vec![log[0].id]);
        assert!(delete(c, all.id, expired).unwrap());
        assert!(due(c, expired, 10).unwrap().is_empty());
        let counts = counts_by_state(c).unwrap();
        assert_eq!(counts.get("cancelled"), Some(&1));
        assert_eq!(counts.get("failed"), Some(&1));
    }
}
