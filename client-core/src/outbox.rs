//! The outbox: every action the patroller takes becomes one or more mutations queued here, in the
//! same local transaction as the entity it describes.
//!
//! A queued mutation is frozen: its JSON is written once and sent byte for byte the same on every
//! attempt, so that a replay after a lost answer is recognised by the server as a `duplicate`.
//!
//! The order and batching decisions are pure functions ([`push_order_split`], [`next_batch`]) so that
//! they can be tested without a database or a server.

use crate::error::{ClientError, Result};
use crate::store;
use chrono::{DateTime, Utc};
use riverchief_shared::api::ErrorDetail;
use riverchief_shared::id::{DeviceId, MutationId};
use riverchief_shared::photo::Sha256;
use riverchief_shared::sync::{Mutation, MutationBody, PushRequest, PushResult, PushStatus};
use riverchief_shared::Limits;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;
use std::collections::HashMap;

/// Where a queued mutation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Not yet confirmed by the server.
    Pending,
    /// The server applied it (or had applied it before).
    Done,
    /// The server refused it; it is kept with the reason and never retried.
    Rejected,
}

impl OutboxState {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "done" => Ok(Self::Done),
            "rejected" => Ok(Self::Rejected),
            other => Err(ClientError::Internal(format!(
                "unknown outbox state {other:?}"
            ))),
        }
    }
}

/// Queues `body` as a new mutation inside `tx`, after validating it by the server's own rules.
///
/// `depends_on` names a queued mutation that must reach the server before this one even when this
/// one is urgent. The photos the body lists must already be recorded in `photos`.
pub(crate) fn enqueue(
    tx: &Transaction<'_>,
    body: MutationBody,
    depends_on: Option<MutationId>,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Mutation> {
    let seq: i64 = tx.query_row("SELECT next_seq FROM device WHERE id = 1", [], |r| r.get(0))?;
    tx.execute("UPDATE device SET next_seq = next_seq + 1 WHERE id = 1", [])?;
    let mutation = Mutation {
        id: MutationId::new(),
        device_seq: u64::try_from(seq)
            .map_err(|_| ClientError::Internal(format!("negative device_seq {seq}")))?,
        at: now,
        body,
    };
    // Validate the JSON exactly as the server will parse it, not just the Rust value: the server
    // sees only the text.
    let value = serde_json::to_value(&mutation)?;
    Mutation::parse(value.clone(), now, limits)?;
    // Stored as the compact form of the parsed value, which is what every push will send.
    let text = serde_json::to_string(&value)?;
    let urgent = mutation.body.is_urgent();
    tx.execute(
        "INSERT INTO outbox (mutation_id, device_seq, type, body, urgent, depends_on, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            mutation.id.to_string(),
            seq,
            mutation.body.type_name(),
            text,
            urgent,
            depends_on.map(|d| d.to_string()),
            store::time(now),
        ],
    )?;
    for sha in photos_of(&mutation.body) {
        tx.execute(
            "INSERT OR IGNORE INTO photo_refs (sha256, mutation_id) VALUES (?1, ?2)",
            params![sha.hex(), mutation.id.to_string()],
        )?;
    }
    Ok(mutation)
}

fn photos_of(body: &MutationBody) -> &[Sha256] {
    match body {
        MutationBody::IssueReport(r) => &r.photos,
        MutationBody::IssueEvent(e) => &e.photos,
        _ => &[],
    }
}

/// A pending mutation as the push lane sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub id: MutationId,
    pub device_seq: u64,
    pub urgent: bool,
    pub depends_on: Option<MutationId>,
    /// The frozen mutation, parsed back into the JSON value that goes into the push body.
    pub body: Value,
    /// Bytes `body` takes in the push request.
    pub size: usize,
}

/// How many mutations wait for the server.
pub(crate) fn count_pending(conn: &Connection) -> Result<usize> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or_default())
}

/// All pending mutations, in no particular order (see [`push_order_split`]).
pub(crate) fn pending(conn: &Connection) -> Result<Vec<Queued>> {
    let mut stmt = conn.prepare(
        "SELECT mutation_id, device_seq, urgent, depends_on, body
         FROM outbox WHERE state = 'pending'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, seq, urgent, depends_on, text) = row?;
        let body: Value = serde_json::from_str(&text)?;
        let size = serde_json::to_vec(&body)?.len();
        out.push(Queued {
            id: store::parse_stored(&id, MutationId::parse)?,
            device_seq: u64::try_from(seq).unwrap_or_default(),
            urgent,
            depends_on: depends_on
                .as_deref()
                .map(|d| store::parse_stored(d, MutationId::parse))
                .transpose()?,
            body,
            size,
        });
    }
    Ok(out)
}

/// The order pending mutations are pushed in: urgent ones (critical hazard reports) first, each
/// preceded by the pending mutation it depends on (its patrol's start, which the server must know
/// before it accepts a report on that patrol); then everything else in the order it happened.
#[cfg(test)]
pub(crate) fn push_order(rows: Vec<Queued>) -> Vec<Queued> {
    push_order_split(rows).0
}

/// [`push_order`], and how many of the rows at its head are the urgent ones with what they depend
/// on (the part a sync sends before anything else, photos included).
pub(crate) fn push_order_split(mut rows: Vec<Queued>) -> (Vec<Queued>, usize) {
    rows.sort_by_key(|r| r.device_seq);
    let index: HashMap<MutationId, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let mut taken = vec![false; rows.len()];
    let mut order = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        if !rows[i].urgent || taken[i] {
            continue;
        }
        // Walk the dependency chain back. It always points at older rows; the checks against
        // revisiting a row only guard against a damaged store making a cycle.
        let mut chain = Vec::new();
        let mut next = rows[i].depends_on;
        while let Some(dep) = next {
            match index.get(&dep) {
                Some(&j) if j != i && !taken[j] && !chain.contains(&j) => {
                    chain.push(j);
                    next = rows[j].depends_on;
                }
                _ => break,
            }
        }
        for &j in chain.iter().rev() {
            taken[j] = true;
            order.push(j);
        }
        taken[i] = true;
        order.push(i);
    }
    let urgent = order.len();
    order.extend((0..rows.len()).filter(|&i| !taken[i]));
    let mut slots: Vec<Option<Queued>> = rows.into_iter().map(Some).collect();
    let ordered = order.into_iter().filter_map(|i| slots[i].take()).collect();
    (ordered, urgent)
}

/// Bytes of a push request for `device_id` with no mutations: `{"device_id":"…","mutations":[]}`.
pub(crate) fn push_overhead(device_id: DeviceId) -> usize {
    let empty = PushRequest {
        device_id,
        mutations: Vec::new(),
    };
    serde_json::to_vec(&empty).map(|v| v.len()).unwrap_or(64)
}

/// How many of `sizes` (in order) go into the next push: at most `max_count`, and the request body
/// within `max_bytes`. Always at least one when `sizes` is not empty, so that a mutation too large
/// on its own is still sent, alone, for the server to refuse it rather than blocking the queue.
pub(crate) fn next_batch(
    sizes: &[usize],
    overhead: usize,
    max_count: usize,
    max_bytes: usize,
) -> usize {
    let mut total = overhead;
    let mut n = 0;
    for &size in sizes.iter().take(max_count.max(1)) {
        // A comma separates every mutation after the first.
        let added = size + usize::from(n > 0);
        if n > 0 && total + added > max_bytes {
            break;
        }
        total += added;
        n += 1;
    }
    n
}

/// Notes that the mutations are about to be sent (shown by `status`; the count survives crashes).
pub(crate) fn mark_attempt(
    conn: &mut Connection,
    ids: &[MutationId],
    now: DateTime<Utc>,
) -> Result<()> {
    let tx = conn.transaction()?;
    for id in ids {
        tx.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2 WHERE mutation_id = ?1",
            params![id.to_string(), store::time(now)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// What the server's answers to one batch came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// Records the server's answers to `sent`, in one transaction: applied and duplicate rows are done,
/// rejected rows keep the server's error. Answers are matched by id, or by position when the
/// server could not read an id.
pub(crate) fn settle(
    tx: &Transaction<'_>,
    sent: &[MutationId],
    results: &[PushResult],
    now: DateTime<Utc>,
) -> Result<Tally> {
    if results.len() != sent.len() {
        return Err(ClientError::Protocol(format!(
            "{} answers to a push of {} mutations",
            results.len(),
            sent.len()
        )));
    }
    let mut tally = Tally::default();
    for (position, result) in results.iter().enumerate() {
        let id = match result.id {
            Some(id) if sent.contains(&id) => id,
            Some(id) => {
                return Err(ClientError::Protocol(format!(
                    "an answer for mutation {id}, which was not sent"
                )))
            }
            None => sent[position],
        };
        let (state, server_status) = match result.status {
            PushStatus::Applied => {
                tally.applied += 1;
                ("done", "applied")
            }
            PushStatus::Duplicate => {
                tally.duplicates += 1;
                ("done", "duplicate")
            }
            PushStatus::Rejected => {
                tally.rejected += 1;
                ("rejected", "rejected")
            }
        };
        let error = match (&result.error, result.status) {
            (Some(e), _) => Some(serde_json::to_string(e)?),
            (None, PushStatus::Rejected) => Some(serde_json::to_string(&ErrorDetail {
                code: "rejected".into(),
                message: "the server refused this mutation without saying why".into(),
                field: None,
                current_status: None,
            })?),
            (None, _) => None,
        };
        let result_json = result
            .result
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        tx.prepare_cached(
            "UPDATE outbox SET state = ?2, server_status = ?3, result = ?4, error = ?5, settled_at = ?6
             WHERE mutation_id = ?1 AND state = 'pending'",
        )?
        .execute(params![
            id.to_string(),
            state,
            server_status,
            result_json,
            error,
            store::time(now)
        ])?;
    }
    Ok(tally)
}

/// Marks one mutation rejected because the server refused the whole request that carried it alone
/// (it is too large to ever be accepted).
pub(crate) fn reject_alone(
    conn: &Connection,
    id: MutationId,
    error: &ErrorDetail,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'rejected', server_status = 'rejected', error = ?2, settled_at = ?3
         WHERE mutation_id = ?1 AND state = 'pending'",
        params![id.to_string(), serde_json::to_string(error)?, store::time(now)],
    )?;
    Ok(())
}

/// The state of one queued mutation, if it exists.
pub(crate) fn state_of(
    conn: &Connection,
    id: &str,
) -> Result<Option<(OutboxState, Option<String>)>> {
    let row = conn
        .query_row(
            "SELECT state, error FROM outbox WHERE mutation_id = ?1",
            [id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .optional()?;
    row.map(|(state, error)| Ok((OutboxState::parse(&state)?, error)))
        .transpose()
}

/// The message of a stored error JSON, for display.
pub(crate) fn error_message(error: Option<&str>) -> Option<ErrorDetail> {
    error.map(|text| {
        serde_json::from_str::<ErrorDetail>(text).unwrap_or_else(|_| ErrorDetail {
            code: "unknown".into(),
            message: text.to_owned(),
            field: None,
            current_status: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(seq: u64, urgent: bool, depends_on: Option<MutationId>) -> Queued {
        Queued {
            id: MutationId::new(),
            device_seq: seq,
            urgent,
            depends_on,
            body: json!({"seq": seq}),
            size: 10,
        }
    }

    fn seqs(rows: &[Queued]) -> Vec<u64> {
        rows.iter().map(|r| r.device_seq).collect()
    }

    #[test]
    fn urgent_rows_go_first_then_device_order() {
        let rows = vec![
            row(3, false, None),
            row(1, false, None),
            row(4, true, None),
            row(2, false, None),
            row(5, true, None),
        ];
        assert_eq!(seqs(&push_order(rows)), vec![4, 5, 1, 2, 3]);
    }

    #[test]
    fn an_urgent_row_brings_its_patrol_start_along() {
        let start = row(1, false, None);
        let points = row(2, false, None);
        let other_start = row(3, false, None);
        let report = row(4, true, Some(start.id));
        let second_report = row(5, true, Some(start.id));
        let rows = vec![second_report, report, other_start, points, start];
        let (ordered, urgent) = push_order_split(rows.clone());
        // The head a sync sends first: the two reports and the start they depend on.
        assert_eq!(urgent, 3);
        assert_eq!(seqs(&ordered), vec![1, 4, 5, 2, 3]);
        assert_eq!(seqs(&push_order(rows)), vec![1, 4, 5, 2, 3]);
    }

    #[test]
    fn a_dependency_already_sent_is_not_waited_for() {
        let report = row(7, true, Some(MutationId::new()));
        let rows = vec![row(6, false, None), report];
        assert_eq!(seqs(&push_order(rows)), vec![7, 6]);
    }

    #[test]
    fn a_damaged_cycle_does_not_hang_or_drop_rows() {
        let mut a = row(1, false, None);
        let mut b = row(2, true, None);
        a.depends_on = Some(b.id);
        b.depends_on = Some(a.id);
        assert_eq!(seqs(&push_order(vec![a, b])), vec![1, 2]);
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        // overhead 10; each mutation 100 bytes plus a comma after the first.
        let sizes = vec![100; 10];
        assert_eq!(next_batch(&sizes, 10, 4, 10_000), 4);
        assert_eq!(next_batch(&sizes, 10, 100, 10 + 100 + 101 + 101), 3);
        assert_eq!(next_batch(&sizes, 10, 100, 10 + 100 + 101 + 100), 2);
        assert_eq!(next_batch(&[], 10, 100, 1000), 0);
        // A mutation larger than the limit still goes, alone.
        assert_eq!(next_batch(&[5000, 1], 10, 100, 1000), 1);
        assert_eq!(next_batch(&[1, 5000], 10, 100, 1000), 1);
    }

    #[test]
    fn computed_size_matches_the_serialized_request() {
        let device_id = DeviceId::new();
        let mutations: Vec<Value> = (0..7)
            .map(|i| json!({"id": i, "data": {"text": "堤段 K1+250", "n": 1.5}}))
            .collect();
        let sizes: Vec<usize> = mutations
            .iter()
            .map(|m| serde_json::to_vec(m).expect("serialize").len())
            .collect();
        let request = PushRequest {
            device_id,
            mutations,
        };
        let actual = serde_json::to_vec(&request).expect("serialize").len();
        let limit = actual;
        assert_eq!(next_batch(&sizes, push_overhead(device_id), 100, limit), 7);
        assert_eq!(
            next_batch(&sizes, push_overhead(device_id), 100, limit - 1),
            6
        );
    }

    #[test]
    fn frozen_json_is_sent_byte_for_byte() {
        // The push re-parses the stored text into a JSON value; with serde_json's default float
        // parser about 0.3% of coordinates would come back one ULP off (`float_roundtrip` fixes
        // that), and the server would store a point the patroller did not record.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lon = 118.0 + (x % 1_000_000_000_000) as f64 / 1e12;
            let text = serde_json::to_string(&json!({"lon": lon, "lat": 32.05})).expect("text");
            let value: Value = serde_json::from_str(&text).expect("parse");
            assert_eq!(value["lon"].as_f64(), Some(lon));
            assert_eq!(serde_json::to_string(&value).expect("text"), text);
        }
    }

    #[test]
    fn default_limits_fit_a_full_batch_of_full_point_mutations() {
        // 1000 points of ~120 bytes each make ~120 kB: a batch of them must be split by bytes.
        let size = 1000 * 120;
        let sizes = vec![size; 100];
        let n = next_batch(&sizes, 60, 100, Limits::DEFAULT.max_push_bytes);
        assert!(n >= 1 && n * size <= Limits::DEFAULT.max_push_bytes, "{n}");
    }
}
