//! `GET /alerts/stream`: every alert change the caller may see, as Server-Sent Events.
//!
//! Each change is `id: <cursor>\nevent: alert\ndata: <Alert JSON>\n\n`, the cursor being the change
//! log's (`"<epoch>.<seq>"`, as in pull), and visibility that of pull and `GET /alerts`.
//!
//! - Resume: the `Last-Event-ID` header (what `EventSource` sends when it reconnects), or
//!   `?since=<cursor>` for tools. The stream goes on after that change; nothing in between is lost.
//! - No cursor: the stream starts now, and first sends the alerts active now (open or acknowledged,
//!   at most 1000) as `alert` events, each with the cursor the stream starts from; so a dashboard
//!   needs only the stream.
//! - A cursor the server cannot serve (another epoch: a rebuilt or restored database; malformed;
//!   ahead of the log) gets `event: reset` first, with a usable cursor as its id: the client drops
//!   what it holds. The active alerts follow, then the changes.
//! - An idle stream sends a comment (`: keepalive`) every 15 s. The stream ends when the server
//!   stops, and when reading the database fails (the client reconnects with its cursor).
//!
//! Each stream holds at most one page of events; a slow reader only slows itself (the feed's watch
//! channel never queues).

use super::endpoint::Endpoint;
use super::sync::cursor_start;
use crate::auth::AuthUser;
use crate::db::alerts::{self, ListFilter, StateFilter};
use crate::db::{changes, Db};
use crate::delivery::CancellationToken;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use riverchief_shared::alert::Alert;
use riverchief_shared::domain::Role;
use riverchief_shared::id::UserId;
use riverchief_shared::sync::ChangeEntity;
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// Alert changes read per query.
const PAGE: usize = 100;
/// Active alerts sent first to a stream without a cursor.
const SNAPSHOT: i64 = 1000;
/// What a client waits before reconnecting (the SSE `retry` field), in milliseconds.
const RETRY_MS: u64 = 2000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/alerts/stream").get(stream).done());
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Resume after this cursor (as `Last-Event-ID` does).
    since: Option<String>,
}

/// One SSE event.
fn event(kind: &str, id: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

fn alert_event(id: &str, alert: &Alert) -> Option<Bytes> {
    serde_json::to_string(alert)
        .ok()
        .map(|data| event("alert", id, &data))
}

/// Where a new stream starts, and what it sends before the changes.
struct Start {
    epoch: String,
    after: i64,
    first: VecDeque<Bytes>,
}

fn start(
    conn: &mut crate::db::Conn,
    viewer: UserId,
    role: Role,
    cursor: Option<&str>,
) -> Result<Start, AppError> {
    let epoch = changes::epoch(conn)?;
    // The head first: everything at or below it is committed, so the active alerts read after it
    // include every change up to it, and the stream goes on from there.
    let head = changes::max_seq(conn)?;
    let resumed = cursor_start(cursor, &epoch, head);
    let mut first = VecDeque::new();
    first.push_back(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
    if cursor.is_some_and(|c| !c.trim().is_empty()) && !resumed.reset {
        return Ok(Start {
            epoch,
            after: resumed.after,
            first,
        });
    }
    let id = format!("{epoch}.{head}");
    if resumed.reset {
        first.push_back(event(
            "reset",
            &id,
            r#"{"reason":"the cursor is not from this database; drop what you hold"}"#,
        ));
    }
    let active = alerts::list(
        conn,
        viewer,
        role,
        &ListFilter {
            state: StateFilter::Active,
            limit: SNAPSHOT,
            ..ListFilter::default()
        },
    )?;
    // Oldest first, as changes come.
    first.extend(active.iter().rev().filter_map(|a| alert_event(&id, a)));
    Ok(Start {
        epoch,
        after: head,
        first,
    })
}

struct Stream {
    db: Db,
    viewer: UserId,
    role: Role,
    epoch: String,
    after: i64,
    pending: VecDeque<Bytes>,
    /// Read the log before waiting again (woken, or the last page was full).
    read: bool,
    feed: watch::Receiver<i64>,
    keepalive: tokio::time::Interval,
    shutdown: CancellationToken,
    /// The hash of the token the stream was opened with: checked again at every keep-alive and, at
    /// most every [`TOKEN_CHECK_EVERY`], before a read, so a revoked token, a deactivated account or a changed role ends the stream
    /// (the client reconnects, and gets 401 or the new role's view).
    token_hash: String,
    /// When the token was last found good.
    token_checked: Option<std::time::Instant>,
}

/// How many streams of this process read the database at once. When an alert wakes every stream,
/// each would otherwise take a thread of the blocking pool to wait for one of the few pooled
/// connections: hundreds of idle threads, each with its stack, for no gain. The reads are short, so
/// a few at a time keep the latency low and the memory flat (see `tests/benches/memory.rs`).
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// A stream checks its token again at most this often on reads (and at every keep-alive).
const TOKEN_CHECK_EVERY: Duration = Duration::from_secs(2);

impl Stream {
    /// Whether the token still stands for the same user with the same role.
    async fn still_allowed(&mut self) -> bool {
        if self
            .token_checked
            .is_some_and(|at| at.elapsed() < TOKEN_CHECK_EVERY)
        {
            return true;
        }
        let (hash, viewer, role) = (self.token_hash.clone(), self.viewer, self.role);
        let Ok(_permit) = READS.acquire().await else {
            return false;
        };
        let owner = self
            .db
            .run(move |c| crate::db::users::by_token(c, &hash).map_err(anyhow::Error::from))
            .await;
        self.token_checked = Some(std::time::Instant::now());
        match owner {
            Ok(Some(o)) => o.user.id == viewer && o.user.role == role,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "alert stream: checking the token; closing the stream");
                false
            }
        }
    }

    /// The next bytes to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.read {
                self.read = false;
                if !self.still_allowed().await {
                    return None;
                }
                let (viewer, role, after) = (self.viewer, self.role, self.after);
                let Ok(permit) = READS.acquire().await else {
                    return None;
                };
                let page = self
                    .db
                    .run(move |c| {
                        changes::page_of(c, viewer, role, after, PAGE, Some(ChangeEntity::Alert))
                            .map_err(anyhow::Error::from)
                    })
                    .await;
                drop(permit);
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "alert stream: reading the change log; closing the stream");
                        return None;
                    }
                };
                for c in &page.changes {
                    let data = c.data.to_string();
                    self.pending.push_back(event(
                        "alert",
                        &format!("{}.{}", self.epoch, c.seq),
                        &data,
                    ));
                }
                self.after = page.next;
                self.read = page.more;
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                changed = self.feed.changed() => {
                    if changed.is_err() {
                        return None; // the feed stopped: the server is stopping
                    }
                    self.read = true;
                }
                _ = self.keepalive.tick() => {
                    self.token_checked = None;
                    if !self.still_allowed().await {
                        return None;
                    }
                    return Some(Bytes::from_static(b": keepalive\n\n"));
                }
            }
        }
    }
}

/// Every alert change the caller may see, live, as Server-Sent Events.
#[utoipa::path(get, path = "/api/v1/alerts/stream", tag = "alerts",
    description = "Roles: any signed-in user (visibility as for `GET /alerts`). A `text/event-stream` \
        that does not end: each change is `id: <cursor>`, `event: alert`, `data: <Alert JSON>`. \
        Without a cursor the active alerts come first. A cursor the server cannot serve gets \
        `event: reset` (with a usable cursor as its id) before the active alerts. An idle stream \
        sends `: keepalive` every 15 s. Resume with `Last-Event-ID` or `since`.",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last cursor received; wins over `since`"),
    ),
    responses(
        (status = 200, description = "The stream; each event's data is an `Alert`", content_type = "text/event-stream",
            headers(("Cache-Control" = String, description = "no-cache"))),
    ))]
async fn stream(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, AppError> {
    let cursor = match req.headers().get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AppError::BadRequest("Last-Event-ID is not text".into()))?
                .to_owned(),
        ),
        None => query.into_inner().since,
    };
    let mut feed = state.alert_feed.clone();
    // Seen before the first read: a change committed after it wakes the stream (see `feed`).
    feed.borrow_and_update();
    let (viewer, role) = (user.id, user.role);
    let token_hash = crate::auth::token_hash(&crate::auth::bearer(&req)?);
    let begin = state
        .db
        .run(move |c| start(c, viewer, role, cursor.as_deref()))
        .await?;
    let every: Duration = state.delivery.keepalive;
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + every,
        every.max(Duration::from_millis(10)),
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let s = Stream {
        db: state.db.clone(),
        viewer,
        role,
        epoch: begin.epoch,
        after: begin.after,
        pending: begin.first,
        // A resumed stream reads at once what happened since its cursor.
        read: true,
        feed,
        keepalive,
        shutdown: state.shutdown.clone(),
        token_hash,
        // Just checked by the extractor.
        token_checked: Some(std::time::Instant::now()),
    };
    let body = futures_util::stream::unfold(s, |mut s| async move {
        s.next()
            .await
            .map(|b| (Ok::<Bytes, actix_web::Error>(b), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
